//! Unnamed files through the embedded API (`DaxFs::tmpfile`, `fs/tmpfile.rs`): link count 0, no
//! entry, linkable once; evicted at the last release; an orphan after a crash, reclaimed by the
//! next open.

use std::ffi::OsStr;

use daxfs::fs::*;

mod embedded;

fn root() -> Ctx {
    Ctx::root()
}

#[test]
fn an_unnamed_file_has_no_entry_until_linked() {
    let r = embedded::region(64 << 20);
    let fs = r.open();
    let (a, fh) = fs
        .tmpfile(ROOT_INO, 0o600, 0, libc::O_RDWR, &root())
        .unwrap();
    assert_eq!(a.nlink, 0);
    assert_eq!(a.kind, FileKind::Regular);
    assert_eq!(fs.write(a.ino, 0, b"hello", &root()).unwrap(), 5);
    let listed = fs.readdir(ROOT_INO, 0).unwrap();
    assert!(listed.iter().all(|e| e.ino != a.ino), "listed before link");
    let l = fs
        .link(a.ino, ROOT_INO, OsStr::new("now"), &root())
        .unwrap();
    assert_eq!(l.nlink, 1);
    fs.release(a.ino, fh).unwrap();
    fs.close().unwrap();
    let fs = r.open();
    let got = fs.lookup(ROOT_INO, OsStr::new("now")).unwrap();
    let mut b = [0u8; 5];
    assert_eq!(fs.read(got.ino, 0, &mut b).unwrap(), 5);
    assert_eq!(&b, b"hello");
    fs.close().unwrap();
}

#[test]
fn an_unlinked_named_file_is_not_linkable_but_a_tmpfile_is_once() {
    let r = embedded::region(64 << 20);
    let fs = r.open();
    let (a, _fh) = fs
        .create(ROOT_INO, OsStr::new("f"), 0o644, libc::O_RDWR, &root())
        .unwrap();
    fs.unlink(ROOT_INO, OsStr::new("f"), &root()).unwrap();
    assert_eq!(
        fs.link(a.ino, ROOT_INO, OsStr::new("g"), &root())
            .map(|_| ()),
        Err(Errno::ENOENT)
    );
    let (t, _fh) = fs
        .tmpfile(ROOT_INO, 0o600, 0, libc::O_RDWR, &root())
        .unwrap();
    fs.link(t.ino, ROOT_INO, OsStr::new("t"), &root()).unwrap();
    fs.unlink(ROOT_INO, OsStr::new("t"), &root()).unwrap();
    assert_eq!(
        fs.link(t.ino, ROOT_INO, OsStr::new("t2"), &root())
            .map(|_| ()),
        Err(Errno::ENOENT),
        "linkable only until its first name"
    );
    fs.close().unwrap();
}

#[test]
fn the_last_release_frees_it_and_a_crash_leaves_an_orphan_the_next_open_reclaims() {
    let r = embedded::region(64 << 20);
    let fs = r.open();
    let before = fs.statfs().unwrap().bfree;
    let (a, fh) = fs
        .tmpfile(ROOT_INO, 0o600, 0, libc::O_RDWR, &root())
        .unwrap();
    fs.write(a.ino, 0, &vec![7u8; 1 << 20], &root()).unwrap();
    fs.release(a.ino, fh).unwrap();
    fs.forget(a.ino, 1);
    assert_eq!(
        fs.statfs().unwrap().bfree,
        before,
        "freed at the last release"
    );

    let (b, _fh) = fs
        .tmpfile(ROOT_INO, 0o600, 0, libc::O_RDWR, &root())
        .unwrap();
    fs.write(b.ino, 0, &vec![8u8; 1 << 20], &root()).unwrap();
    fs.fsync(b.ino, false).unwrap();
    // A crash: the filesystem is dropped without close (shut down first: close persists nothing).
    fs.shut_down(ShutdownMode::NoLogFlush, &root()).unwrap();
    drop(fs);
    let problems = DaxFs::fsck(&r.path, false).unwrap();
    assert_eq!(problems.len(), 1, "the orphan: {problems:?}");
    let fs = r.open();
    assert_eq!(fs.statfs().unwrap().bfree, before, "reclaimed at open");
    fs.close().unwrap();
    assert!(DaxFs::fsck(&r.path, false).unwrap().is_empty());
}
