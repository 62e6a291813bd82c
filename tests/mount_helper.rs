//! `mount -t fuse.daxfs REGION MNT` through the `mount.fuse.daxfs` helper, `umount MNT`, and the
//! two things xfstests checks about a FUSE mount: `df -T` says `fuse`, and `findmnt` gives the
//! region path as the source.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use daxfs::fuse::mounts;

/// Points `/sbin/mount.fuse.daxfs` at this build for the test and restores what was there.
/// Tests that use the helper link run one at a time (one restores it when it ends).
static HELPER: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct HelperLink {
    link: PathBuf,
    previous: Option<PathBuf>,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl HelperLink {
    fn install() -> HelperLink {
        let serial = HELPER.lock().unwrap_or_else(|e| e.into_inner());
        let link = PathBuf::from("/sbin/mount.fuse.daxfs");
        let previous = fs::read_link(&link).ok();
        daxfs_ok(["install-helper", "--dir", "/sbin"]);
        assert_eq!(
            fs::read_link(&link).unwrap(),
            daxfs_bin().canonicalize().unwrap()
        );
        HelperLink {
            link,
            previous,
            _serial: serial,
        }
    }
}

impl Drop for HelperLink {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.link);
        if let Some(p) = &self.previous {
            let _ = std::os::unix::fs::symlink(p, &self.link);
        }
    }
}

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output().expect("run command")
}

fn wait_daemon_gone(pid: u32) {
    wait_until(
        &format!("daemon {pid} exits"),
        Duration::from_millis(10),
        || !mounts::daemon_alive(pid),
    );
}

fn field(out: &str, line_with: &Path, col: usize) -> String {
    out.lines()
        .find(|l| l.contains(line_with.to_str().unwrap()))
        .and_then(|l| l.split_whitespace().nth(col))
        .unwrap_or_default()
        .to_string()
}

/// The per-mount options of `mnt` in /proc/mounts (`rw,nosuid,nodev,relatime,...`), split.
fn proc_mounts_options(mnt: &Path) -> Vec<String> {
    let mnt = mounts::resolve_mountpoint(mnt);
    let table = fs::read_to_string("/proc/mounts").unwrap();
    let line = table
        .lines()
        .find(|l| l.split_whitespace().nth(1) == mnt.to_str())
        .unwrap_or_else(|| panic!("{} not in /proc/mounts:\n{table}", mnt.display()));
    let opts = line.split_whitespace().nth(3).unwrap_or_default();
    opts.split(',').map(str::to_string).collect()
}

#[test]
fn mount_t_fuse_daxfs_and_umount() {
    require_fuse!();
    let _link = HelperLink::install();
    let r = Region::new("64M");
    let o = run(Command::new("mount")
        .args(["-t", "fuse.daxfs"])
        .arg(&r.path)
        .arg(&r.mnt));
    assert!(
        o.status.success(),
        "mount -t fuse.daxfs: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let g = MountGuard::adopt(&r.path, &r.mnt);
    // df -T: the type is plain fuse.
    let df = run(Command::new("df").arg("-T").arg(&g.mnt));
    let df = String::from_utf8_lossy(&df.stdout).into_owned();
    assert_eq!(field(&df, &r.path, 1), "fuse", "df -T:\n{df}");
    // findmnt: the source is the region path exactly as given.
    let fm = run(Command::new("findmnt")
        .args(["-n", "-o", "SOURCE,FSTYPE", "--mountpoint"])
        .arg(&g.mnt));
    let fm = String::from_utf8_lossy(&fm.stdout).into_owned();
    let mut cols = fm.split_whitespace();
    assert_eq!(cols.next(), r.path.to_str(), "findmnt: {fm}");
    assert_eq!(cols.next(), Some("fuse"), "findmnt: {fm}");
    let by_source = run(Command::new("findmnt").arg("-n").arg("-S").arg(&r.path));
    assert!(
        by_source.status.success(),
        "findmnt -S REGION finds nothing"
    );
    fs::write(g.p("hello"), b"via mount(8)").unwrap();
    // Mounted by root without options (mount(8) passes only "rw"): dev and suid, as a kernel
    // filesystem mounted by root.
    let opts = proc_mounts_options(&g.mnt);
    assert!(
        !opts.iter().any(|o| o == "nodev" || o == "nosuid"),
        "root mount without options: {opts:?}"
    );

    // umount(8) unmounts; the daemon exits and releases the region.
    let pid = g.pid;
    let o = run(Command::new("umount").arg(&g.mnt));
    assert!(
        o.status.success(),
        "umount: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    g.disarm();
    wait_daemon_gone(pid);

    // Options mount(8) passes are accepted; daxfs's own too.
    let o = run(Command::new("mount")
        .args([
            "-t",
            "fuse.daxfs",
            "-o",
            "rw,nosuid,nodev,relatime,dax=never",
        ])
        .arg(&r.path)
        .arg(&r.mnt));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let g = MountGuard::adopt(&r.path, &r.mnt);
    assert_eq!(fs::read(g.p("hello")).unwrap(), b"via mount(8)");

    // xfstests' _scratch_remount: mount -o remount,ro / remount,rw through the helper.
    let remount = |opts: &str| {
        let o = run(Command::new("mount")
            .args(["-t", "fuse.daxfs", "-o", opts])
            .arg(&r.path)
            .arg(&r.mnt));
        assert!(
            o.status.success(),
            "{opts}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    remount("remount,ro");
    let e = fs::write(g.p("new"), b"x").unwrap_err();
    // The mount's own dax= may be named again (as mount(8) and xfstests pass every option);
    // another one is refused.
    remount("remount,ro,dax=never");
    let o = run(Command::new("mount")
        .args(["-t", "fuse.daxfs", "-o", "remount,ro,dax=always"])
        .arg(&r.path)
        .arg(&r.mnt));
    assert!(!o.status.success(), "dax= changed by a remount");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot be changed by a remount"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    assert_eq!(fs::read(g.p("hello")).unwrap(), b"via mount(8)");
    remount("remount,rw");
    fs::write(g.p("new"), b"x").unwrap();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.contains(g.mnt.to_str().unwrap()))
        .unwrap();
    assert!(
        line.contains(" rw,nosuid,nodev"),
        "flags kept across remounts: {line}"
    );
    g.unmount();

    // An explicit nodev is honoured (and suid stays the root default).
    let o = run(Command::new("mount")
        .args(["-t", "fuse.daxfs", "-o", "nodev"])
        .arg(&r.path)
        .arg(&r.mnt));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let g = MountGuard::adopt(&r.path, &r.mnt);
    let opts = proc_mounts_options(&g.mnt);
    assert!(
        opts.iter().any(|o| o == "nodev") && !opts.iter().any(|o| o == "nosuid"),
        "-o nodev: {opts:?}"
    );
    g.unmount();

    // An unknown option is refused with a message and leaves no mount.
    let o = run(Command::new("mount")
        .args(["-t", "fuse.daxfs", "-o", "frobnicate"])
        .arg(&r.path)
        .arg(&r.mnt));
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("frobnicate"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(mounts::find_fuse_mount(&mounts::resolve_mountpoint(&r.mnt)).is_none());
}

/// Detaches a mount point on drop (for mounts without a registered daemon: bind mounts).
struct Detach(PathBuf);

impl Drop for Detach {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// xfstests generic/732: mount(8) of a region that is already mounted shares the running mount
/// (the helper bind-mounts it: one daemon, one filesystem), as a kernel filesystem mounted twice
/// shares its superblock; `daxfs mount` itself still refuses, and a conflicting `dax=` too.
#[test]
fn a_second_mount_t_fuse_daxfs_shares_the_first() {
    require_fuse!();
    let _link = HelperLink::install();
    let r = Region::new("64M");
    let mount8 = |opts: &str, mnt: &Path| {
        let mut c = Command::new("mount");
        c.args(["-t", "fuse.daxfs"]);
        if !opts.is_empty() {
            c.args(["-o", opts]);
        }
        run(c.arg(&r.path).arg(mnt))
    };
    let o = mount8("", &r.mnt);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let g = MountGuard::adopt(&r.path, &r.mnt);
    let mnt2 = r.dir.path().join("mnt2");
    let mnt3 = r.dir.path().join("mnt3");
    fs::create_dir(&mnt2).unwrap();
    fs::create_dir(&mnt3).unwrap();
    let o = mount8("", &mnt2);
    assert!(
        o.status.success(),
        "second mount: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _b2 = Detach(mnt2.clone());
    // One filesystem: generic/732's renames, seen through the other mount point.
    fs::create_dir(g.p("A")).unwrap();
    fs::create_dir(g.p("B")).unwrap();
    fs::write(g.p("A/f"), b"732").unwrap();
    fs::rename(g.p("A/f"), g.p("B/f")).unwrap();
    assert_eq!(fs::read(mnt2.join("B/f")).unwrap(), b"732");
    fs::rename(mnt2.join("B/f"), mnt2.join("A/f")).unwrap();
    assert_eq!(fs::read(g.p("A/f")).unwrap(), b"732");
    fs::rename(g.p("A/f"), g.p("B/f")).unwrap();
    // `daxfs mount` refuses a mounted region (issue 2); a different dax= is refused too.
    let o = daxfs(["mount".as_ref(), r.path.as_os_str(), mnt3.as_os_str()]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("already mounted"), "{e}");
    let o = mount8("dax=never", &mnt3);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("dax=always") && e.contains("dax=never"), "{e}");
    assert!(mounts::find_fuse_mount(&mounts::resolve_mountpoint(&mnt3)).is_none());
    // Per-mount flags apply to the new mount point only.
    let o = mount8("ro", &mnt3);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let b3 = Detach(mnt3.clone());
    assert_eq!(fs::read(mnt3.join("B/f")).unwrap(), b"732");
    let e = fs::write(mnt3.join("x"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    fs::write(g.p("x"), b"x").unwrap();
    assert!(proc_mounts_options(&mnt3).iter().any(|o| o == "ro"));
    assert!(proc_mounts_options(&g.mnt).iter().any(|o| o == "rw"));
    assert!(run(Command::new("umount").arg(&mnt3)).status.success());
    drop(b3);
    // Unmounting the first mount point leaves the second working (the daemon lives on);
    // unmounting the last one ends the daemon.
    let pid = g.pid;
    assert!(run(Command::new("umount").arg(&g.mnt)).status.success());
    g.disarm();
    assert_eq!(fs::read(mnt2.join("B/f")).unwrap(), b"732");
    fs::write(mnt2.join("after"), b"still served").unwrap();
    assert!(mounts::daemon_alive(pid));
    assert!(run(Command::new("umount").arg(&mnt2)).status.success());
    wait_daemon_gone(pid);
    // What was written through the second mount point is there at the next mount.
    let g = r.mount("");
    assert_eq!(fs::read(g.p("after")).unwrap(), b"still served");
    g.unmount();
}
