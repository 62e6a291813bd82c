//! `O_TMPFILE` on a real mount (FUSE_TMPFILE, issue 13): an unnamed file that no directory
//! lists, link count 0, usable as any file; `linkat` names it (not one opened with `O_EXCL`);
//! its last close frees it; a crash while it is open leaves an orphan that the next mount
//! reclaims (fsck clean after). On `/dev/fuse`, with `-o io_uring` and with `dax=never`.

mod common;

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::Path;

use common::*;

const MODES: [&str; 3] = ["noio_uring", "io_uring", "dax=never,noio_uring"];

/// `open(dir, O_TMPFILE | O_RDWR | extra, 0o640)`.
fn tmpfile(dir: &Path, extra: i32) -> std::io::Result<File> {
    let c = cpath(dir);
    // SAFETY: a plain open of a NUL-terminated path; the fd is owned by the returned File.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), libc::O_TMPFILE | libc::O_RDWR | extra, 0o640) })?;
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// `linkat(AT_FDCWD, "/proc/self/fd/N", AT_FDCWD, to, AT_SYMLINK_FOLLOW)`: names an open file.
fn link_open_file(f: &File, to: &Path) -> std::io::Result<()> {
    let from = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
    let to = cpath(to);
    // SAFETY: two NUL-terminated paths.
    cvt(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })
    .map(|_| ())
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn free_blocks(mnt: &Path) -> u64 {
    nix::sys::statvfs::statvfs(mnt).unwrap().blocks_free() as u64
}

#[test]
fn an_unnamed_file_works_and_linkat_names_it() {
    require_fuse!();
    enable_uring();
    for opts in MODES {
        let r = Region::new("64M");
        let m = r.mount(opts);
        fs::create_dir(m.p("d")).unwrap();
        let mut f = tmpfile(&m.p("d"), 0).unwrap_or_else(|e| panic!("{opts}: O_TMPFILE: {e}"));
        let md = f.metadata().unwrap();
        assert_eq!(md.nlink(), 0, "{opts}: link count of an unnamed file");
        assert!(md.is_file());
        assert_eq!(md.mode() & 0o7777, 0o640 & !0o022 & 0o7777, "{opts}: mode");
        f.write_all(&pattern(1, 100_000)).unwrap();
        f.sync_all().unwrap();
        assert!(
            names(&m.p("d")).is_empty(),
            "{opts}: an unnamed file is listed"
        );
        let mut back = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut back).unwrap();
        assert_eq!(back, pattern(1, 100_000), "{opts}: read back");

        link_open_file(&f, &m.p("d/named")).unwrap_or_else(|e| panic!("{opts}: linkat: {e}"));
        assert_eq!(names(&m.p("d")), ["named"], "{opts}");
        assert_eq!(fs::metadata(m.p("d/named")).unwrap().nlink(), 1, "{opts}");
        drop(f);

        // Opened with O_EXCL: never linkable (the kernel checks), freed at its last close.
        let free = free_blocks(&m.mnt);
        let mut x = tmpfile(&m.mnt, libc::O_EXCL).unwrap();
        x.write_all(&pattern(2, 1 << 20)).unwrap();
        assert!(
            free_blocks(&m.mnt) < free,
            "{opts}: the unnamed file's blocks"
        );
        assert_errno(link_open_file(&x, &m.p("excl")), libc::ENOENT);
        drop(x);
        wait_until(
            &format!("{opts}: blocks of a closed unnamed file freed"),
            std::time::Duration::from_millis(5),
            || free_blocks(&m.mnt) == free,
        );
        m.unmount();
        r.assert_fsck_clean(&format!("{opts}: after unnamed files"));
        let m = r.mount(opts);
        assert_eq!(
            fs::read(m.p("d/named")).unwrap(),
            pattern(1, 100_000),
            "{opts}: remount"
        );
        assert_eq!(names(&m.mnt), ["d"], "{opts}: nothing else appeared");
        m.unmount();
    }
}

/// A crash (SIGKILL of the daemon) while an unnamed file is open and fsynced: fsck names the
/// orphan, the next mount reclaims it, and everything is clean and free again.
#[test]
fn a_crash_leaves_no_orphan_after_the_next_mount() {
    require_fuse!();
    for opts in MODES {
        let r = Region::new("64M");
        let m = r.mount(opts);
        fs::write(m.p("anchor"), b"x").unwrap();
        let free = free_blocks(&m.mnt);
        let mut f = tmpfile(&m.mnt, 0).unwrap();
        f.write_all(&pattern(3, 2 << 20)).unwrap();
        f.sync_all().unwrap();
        m.kill_daemon();
        drop(f);
        daxfs_ok(["umount".as_ref(), m.mnt.as_os_str()]);
        m.disarm();
        let out = daxfs(["fsck".as_ref(), r.path.as_os_str()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && text.contains("orphan inode"),
            "{opts}: fsck after the crash should name the orphan:\n{text}"
        );
        let m = r.mount(opts);
        assert_eq!(names(&m.mnt), ["anchor"], "{opts}");
        assert_eq!(free_blocks(&m.mnt), free, "{opts}: the orphan's blocks");
        m.unmount();
        r.assert_fsck_clean(&format!("{opts}: after the mount reclaimed the orphan"));
    }
}
