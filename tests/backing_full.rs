//! A region file larger than the filesystem under it: mkfs and mount warn with the numbers, and
//! when that filesystem runs out the daemon answers `ENOSPC` (or `EIO`) and keeps serving, with
//! nothing already written lost (it must never die of `SIGBUS` on its own mapping). On a small
//! tmpfs of its own, on `/dev/fuse`, under `-o io_uring` and in each `dax=` mode.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A tmpfs of `size` mounted on a directory of its own; unmounted on drop.
struct SmallTmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SmallTmpfs {
    fn new(size: &str) -> SmallTmpfs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fs");
        fs::create_dir(&path).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("mount(8) (util-linux) is needed");
        assert!(st.success(), "mount -t tmpfs failed: {st}");
        SmallTmpfs { _dir: dir, path }
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `chunk`-sized pieces to `p` (each followed by fsync, so that a page-cache mode reports
/// the daemon's answer) until one fails. Return: the bytes written and the error.
fn fill_until_error(p: &Path, chunk: usize, limit: u64) -> (u64, std::io::Error) {
    let mut f = create_rw(p);
    let buf = pattern(7, chunk);
    let mut done = 0u64;
    while done < limit {
        let r = f.write(&buf).and_then(|n| f.sync_all().map(|()| n));
        match r {
            Ok(0) => return (done, std::io::Error::from_raw_os_error(libc::ENOSPC)),
            Ok(n) => done += n as u64,
            Err(e) => return (done, e),
        }
    }
    panic!("{} took {limit} bytes on a 64 MiB tmpfs", p.display());
}

fn full_backing_store(opts: &str) {
    require_fuse!();
    if opts.split(',').any(|o| o == "io_uring") {
        assert!(enable_uring(), "FUSE-over-io_uring is not available");
    }
    let small = SmallTmpfs::new("64M");
    let region = small.path.join("region");
    // mkfs of 128 MiB on 64 MiB: formats, and warns with the numbers.
    let o = daxfs([
        OsStr::new("mkfs"),
        region.as_os_str(),
        "--size".as_ref(),
        "128M".as_ref(),
    ]);
    assert!(o.status.success(), "mkfs: {}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("warning") && e.contains("128.0 MiB") && e.contains("free"),
        "mkfs did not warn of the 64 MiB under a 128 MiB region: {e}"
    );
    let dir = scratch();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mut args = vec![
        OsStr::new("mount"),
        region.as_os_str(),
        mnt.as_os_str(),
        "--threads".as_ref(),
        "2".as_ref(),
    ];
    if !opts.is_empty() {
        args.extend(["-o".as_ref(), OsStr::new(opts)]);
    }
    let o = daxfs(&args);
    assert!(o.status.success(), "mount: {}", stderr(&o));
    let m = MountGuard::adopt(&region, &mnt);
    assert!(
        stderr(&o).contains("warning"),
        "mount did not warn: {}",
        stderr(&o)
    );

    let kept = pattern(3, 8 << 20);
    fs::write(m.p("kept"), &kept).unwrap();
    let (written, err) = fill_until_error(&m.p("filler"), 1 << 20, 256 << 20);
    let errno = err.raw_os_error();
    assert!(
        errno == Some(libc::ENOSPC) || errno == Some(libc::EIO),
        "the full backing store gave {err} after {written} bytes"
    );
    assert!(written > 16 << 20, "ENOSPC after only {written} bytes");
    assert!(
        daxfs::fuse::mounts::daemon_alive(m.pid),
        "the daemon died when its backing store ran out ({opts})"
    );
    // It keeps serving: what was written reads back, blocks it has are rewritten in place,
    // metadata answers.
    let mut back = Vec::new();
    fs::File::open(m.p("kept"))
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(
        back == kept,
        "the file written before the store ran out changed"
    );
    let new = pattern(5, 8 << 20);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(m.p("kept"))
        .unwrap();
    f.write_all(&new).unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert!(
        fs::read(m.p("kept")).unwrap() == new,
        "the rewrite in place did not read back"
    );
    assert_eq!(fs::metadata(m.p("filler")).unwrap().len(), written);
    fs::remove_file(m.p("filler")).unwrap();
    assert!(daxfs::fuse::mounts::daemon_alive(m.pid));
    m.unmount();
    let out = daxfs_ok([OsStr::new("fsck"), region.as_os_str()]);
    assert!(out.contains("clean"), "fsck after ENOSPC: {out}");
}

#[test]
fn full_backing_store_is_enospc_on_dev_fuse() {
    full_backing_store("");
}

#[test]
fn full_backing_store_is_enospc_under_io_uring() {
    full_backing_store("io_uring");
}

#[test]
fn full_backing_store_is_enospc_with_dax_never() {
    full_backing_store("dax=never");
}

#[test]
fn full_backing_store_is_enospc_with_dax_inode() {
    full_backing_store("dax=inode");
}
