//! The `daxfs` command line: help texts, errors that name the problem, stat output, the control
//! ioctl ABI checks, and a block-device region through a loop device.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use common::*;
use daxfs::ioctl::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn help_for_every_command() {
    let top = daxfs(["--help"]);
    assert!(top.status.success());
    let text = stdout(&top);
    for sub in [
        "mkfs",
        "mount",
        "umount",
        "fsck",
        "stat",
        "poison",
        "install-helper",
    ] {
        assert!(text.contains(sub), "--help lacks {sub}");
        let o = daxfs([sub, "--help"]);
        assert!(o.status.success(), "{sub} --help failed");
        assert!(
            stdout(&o).contains("Usage: daxfs"),
            "{sub} --help: {}",
            stdout(&o)
        );
    }
    for sub in ["inject", "list", "clear"] {
        let o = daxfs(["poison", sub, "--help"]);
        assert!(o.status.success());
        assert!(stdout(&o).contains(&format!("Usage: daxfs poison {sub}")));
    }
    let o = daxfs(["mount", "--help"]);
    for word in ["--threads", "--foreground", "--log", "-o"] {
        assert!(stdout(&o).contains(word), "mount --help lacks {word}");
    }
}

#[test]
fn errors_name_the_problem() {
    let dir = scratch();
    let img = dir.path().join("new.img");
    // New file without --size.
    let o = daxfs([OsStr::new("mkfs"), img.as_os_str()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--size"), "{}", stderr(&o));
    assert!(!img.exists());
    // Bad size.
    let o = daxfs([
        OsStr::new("mkfs"),
        img.as_os_str(),
        "--size".as_ref(),
        "12Q".as_ref(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bad size '12Q'"), "{}", stderr(&o));
    // Missing region at mount.
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let o = daxfs([OsStr::new("mount"), img.as_os_str(), mnt.as_os_str()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    // Unknown option.
    let o = daxfs([
        OsStr::new("mount"),
        img.as_os_str(),
        mnt.as_os_str(),
        "-o".as_ref(),
        "dax=maybe".as_ref(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("dax=maybe"), "{}", stderr(&o));
    // umount of something not mounted.
    let o = daxfs([OsStr::new("umount"), mnt.as_os_str()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not mounted"), "{}", stderr(&o));
    // Poison needs a target; zero length is refused before any ioctl.
    let o = daxfs(["poison", "inject", "--offset", "0"]);
    assert!(!o.status.success());
    let o = daxfs([
        "poison",
        "inject",
        "/nonexistent",
        "--offset",
        "0",
        "--len",
        "0",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--len"), "{}", stderr(&o));
    // No panics anywhere.
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn mount_refusals_and_stat() {
    require_fuse!();
    let r = Region::new("64M");
    // stat of the unmounted region, text and JSON.
    let text = daxfs_ok([OsStr::new("stat"), r.path.as_os_str()]);
    for field in [
        "size:",
        "used:",
        "free:",
        "free 2M runs:",
        "inodes:",
        "bad blocks:",
    ] {
        assert!(text.contains(field), "stat lacks {field}: {text}");
    }
    let json: serde_json::Value = serde_json::from_str(&daxfs_ok([
        OsStr::new("stat"),
        r.path.as_os_str(),
        "--json".as_ref(),
    ]))
    .unwrap();
    assert_eq!(json["size"].as_u64(), Some(64 << 20));
    assert!(json["free_blocks"].as_u64().unwrap() > 0);

    let m = r.mount("");
    // The same region cannot be mounted twice.
    let other = r.dir.path().join("mnt2");
    fs::create_dir(&other).unwrap();
    let o = daxfs([OsStr::new("mount"), r.path.as_os_str(), other.as_os_str()]);
    assert!(
        !o.status.success(),
        "second mount of a mounted region succeeded"
    );
    assert!(!stderr(&o).is_empty());
    assert!(
        !fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(other.to_str().unwrap()),
        "the refused mount left a mount behind"
    );

    // stat through the mount (DAXFS_IOC_STAT) agrees with the region.
    fs::write(m.p("f"), pattern(1, 3 << 20)).unwrap();
    let via: serde_json::Value = serde_json::from_str(&daxfs_ok([
        OsStr::new("stat"),
        m.mnt.as_os_str(),
        "--json".as_ref(),
    ]))
    .unwrap();
    assert_eq!(via["size"].as_u64(), Some(64 << 20));
    assert!(via["used_blocks"].as_u64().unwrap() >= (3 << 20) / 4096);
    assert!(via["inodes_used"].as_u64().unwrap() >= 2);

    // stat --mappings lists the file's entries in order.
    let maps = daxfs_ok([
        OsStr::new("stat"),
        "--mappings".as_ref(),
        m.p("f").as_os_str(),
    ]);
    let lines: Vec<&str> = maps.lines().collect();
    assert!(!lines.is_empty(), "no mappings for a 3 MiB file");
    // Entries are in file order, do not overlap, and cover every page of the 3 MiB (768 pages);
    // entries past the end are allowed (the allocator may preallocate until the last release).
    let mut next = 0u64;
    for l in &lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f.len(), 4, "{l}");
        let span = match f[1] {
            "pmd" => 512,
            "pte" => 1,
            o => panic!("order {o} in {l}"),
        };
        let index: u64 = f[0].parse().unwrap();
        assert!(index >= next, "overlapping or unordered entries:\n{maps}");
        assert_eq!(index, next, "page {next} not mapped:\n{maps}");
        next = index + span;
    }
    assert!(
        next >= 768,
        "3 MiB = 768 pages, mapped up to {next}:\n{maps}"
    );
    let j: serde_json::Value = serde_json::from_str(&daxfs_ok([
        OsStr::new("stat"),
        "--mappings".as_ref(),
        m.p("f").as_os_str(),
        "--json".as_ref(),
    ]))
    .unwrap();
    assert_eq!(j.as_array().unwrap().len(), lines.len());

    // The control ABI refuses a wrong version or size with EINVAL.
    let f = fs::File::open(&m.mnt).unwrap();
    let mut s = DaxfsStat::new_request();
    s.version = 99;
    // SAFETY: DAXFS_IOC_STAT's size is that of DaxfsStat.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), DAXFS_IOC_STAT as _, &mut s as *mut DaxfsStat) };
    assert_eq!(rc, -1);
    assert_eq!(last_errno(), libc::EINVAL);
    let mut s = DaxfsStat::new_request();
    // SAFETY: as above.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), DAXFS_IOC_STAT as _, &mut s as *mut DaxfsStat) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    assert_eq!(s.region_size, 64 << 20);
    drop(f);
    // Poison requests are validated before anything else.
    let o = daxfs([
        OsStr::new("poison"),
        "inject".as_ref(),
        m.p("f").as_os_str(),
        "--offset".as_ref(),
        "100M".as_ref(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("offset 100 MiB is past the end of"),
        "{}",
        stderr(&o)
    );
    let o = daxfs([
        OsStr::new("poison"),
        "inject".as_ref(),
        "--region".as_ref(),
        m.mnt.as_os_str(),
        "--offset".as_ref(),
        "100".as_ref(),
    ]);
    assert!(!o.status.success(), "unaligned region offset accepted");
    // Only root or the mount's owner may inject poison: EPERM before anything else.
    let file = m.p("f");
    let errno = as_user(65534, 65534, || {
        let Ok(f) = fs::File::open(&file) else {
            return 254;
        };
        let mut p = DaxfsPoison::new_request();
        p.len = 4096;
        // SAFETY: DAXFS_IOC_INJECT_POISON's size is that of DaxfsPoison.
        let rc = unsafe {
            libc::ioctl(
                f.as_raw_fd(),
                DAXFS_IOC_INJECT_POISON as _,
                &mut p as *mut DaxfsPoison,
            )
        };
        if rc == 0 {
            0
        } else {
            last_errno()
        }
    });
    assert_eq!(errno, libc::EPERM, "a non-root user injected poison");
    m.unmount();
}

#[test]
fn corrupt_region_is_refused_with_a_reason() {
    require_fuse!();
    let r = Region::new("32M");
    // Overwrite the superblock area with garbage.
    let mut img = fs::read(&r.path).unwrap();
    for (i, b) in img[..4096].iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    fs::write(&r.path, &img).unwrap();
    let o = daxfs([OsStr::new("mount"), r.path.as_os_str(), r.mnt.as_os_str()]);
    assert!(!o.status.success(), "a corrupt region was mounted");
    let e = stderr(&o);
    assert!(e.contains(r.path.to_str().unwrap()) && e.len() > 20, "{e}");
    assert!(!e.contains("panicked"), "{e}");
    let o = daxfs([OsStr::new("fsck"), r.path.as_os_str()]);
    assert!(!o.status.success(), "fsck passed a corrupt region");
    // A file that is not daxfs at all.
    let plain = r.dir.path().join("plain");
    fs::write(&plain, vec![0u8; 1 << 20]).unwrap();
    let o = daxfs([OsStr::new("mount"), plain.as_os_str(), r.mnt.as_os_str()]);
    assert!(!o.status.success());
    assert!(!stderr(&o).is_empty());
}

/// A loop device over a file, detached on drop.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn block_device_region_through_a_loop_device() {
    require_fuse!();
    let dir = scratch();
    let backing = dir.path().join("backing");
    fs::File::create(&backing)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&backing)
        .output()
        .expect("losetup (util-linux) is needed");
    assert!(out.status.success(), "losetup: {}", stderr(&out));
    let dev = Loop(stdout(&out).trim().to_string());
    daxfs_ok(["mkfs", dev.0.as_str()]);
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let m = MountGuard::mount(std::path::Path::new(&dev.0), &mnt, "");
    let data = pattern(42, 5 << 20);
    fs::write(m.p("on-a-block-device"), &data).unwrap();
    m.unmount();
    let m = MountGuard::mount(std::path::Path::new(&dev.0), &mnt, "");
    assert_eq!(fs::read(m.p("on-a-block-device")).unwrap(), data);
    let st: serde_json::Value = serde_json::from_str(&daxfs_ok([
        OsStr::new("stat"),
        m.mnt.as_os_str(),
        "--json".as_ref(),
    ]))
    .unwrap();
    assert_eq!(st["size"].as_u64(), Some(64 << 20));
    m.unmount();
    let o = daxfs_ok(["fsck", dev.0.as_str()]);
    assert!(o.contains("clean"), "{o}");
}

#[test]
fn sigterm_unmounts_cleanly_and_foreground_mode_serves() {
    require_fuse!();
    let r = Region::new("32M");
    let m = r.mount("");
    fs::write(m.p("f"), b"before sigterm").unwrap();
    let (pid, mnt) = (m.pid, m.mnt.clone());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_until(
        "the daemon exits on SIGTERM",
        Duration::from_millis(10),
        || !daxfs::fuse::mounts::daemon_alive(pid),
    );
    m.disarm();
    assert!(
        daxfs::fuse::mounts::find_fuse_mount(&mnt).is_none(),
        "SIGTERM left the mount behind"
    );
    r.assert_fsck_clean("after SIGTERM");

    // --foreground serves in this process's child until unmounted.
    let mut child = Command::new(daxfs_bin())
        .arg("mount")
        .arg(&r.path)
        .arg(&r.mnt)
        .arg("--foreground")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "the foreground mount appears",
        Duration::from_millis(10),
        || {
            daxfs::fuse::mounts::find_fuse_mount(&mnt).is_some()
                && daxfs::fuse::mounts::lookup(&mnt).is_some()
        },
    );
    let g = MountGuard::adopt(&r.path, &r.mnt);
    assert_eq!(g.pid, child.id());
    assert_eq!(fs::read(g.p("f")).unwrap(), b"before sigterm");
    g.unmount();
    let st = child.wait().unwrap();
    assert!(st.success(), "foreground daemon exited with {st}");
}
