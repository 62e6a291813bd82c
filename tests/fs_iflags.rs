//! Immutable, append-only and noatime through the embedded API (no FUSE): what each forbids,
//! with ext4's `EPERM`, who may set them, and that they persist across close + reopen.

use std::ffi::OsStr;

use daxfs::fs::iflags::{XFLAG_APPEND, XFLAG_IMMUTABLE, XFLAG_NOATIME, XFLAG_NODUMP};
use daxfs::fs::*;

mod embedded;
use embedded::region;

fn n(s: &str) -> &OsStr {
    OsStr::new(s)
}

const EPERM: Errno = Errno::EPERM;

fn file(fs: &DaxFs, dir: Ino, name: &str) -> Ino {
    let c = Ctx::root();
    let a = fs
        .mknod(dir, n(name), libc::S_IFREG | 0o644, 0, &c)
        .unwrap();
    fs.write(a.ino, 0, b"data", &c).unwrap();
    a.ino
}

#[test]
fn immutable_forbids_every_change_until_cleared() {
    let r = region(64 << 20);
    let fs = r.open();
    let c = Ctx::root();
    let d = fs.mkdir(ROOT_INO, n("d"), 0o755, &c).unwrap().ino;
    let f = file(&fs, d, "f");
    fs.set_flags(f, XFLAG_IMMUTABLE, &c).unwrap();
    assert_eq!(fs.open_file(f, libc::O_WRONLY, &c), Err(EPERM));
    assert_eq!(fs.write(f, 4, b"x", &c), Err(EPERM));
    assert_eq!(fs.fallocate(f, 0, 4096, 0, &c), Err(EPERM));
    let chmod = SetAttr {
        mode: Some(0o600),
        ..Default::default()
    };
    assert_eq!(fs.setattr(f, &chmod, &c).map(|_| ()), Err(EPERM));
    assert_eq!(fs.setxattr(f, n("user.a"), b"1", 0, &c), Err(EPERM));
    assert_eq!(fs.unlink(d, n("f"), &c), Err(EPERM));
    assert_eq!(fs.rename(d, n("f"), d, n("g"), 0, &c), Err(EPERM));
    assert_eq!(fs.link(f, d, n("h"), &c).map(|_| ()), Err(EPERM));
    fs.open_file(f, libc::O_RDONLY, &c).unwrap();
    // An immutable directory takes no new entry and loses none.
    let g = file(&fs, d, "g");
    fs.set_flags(d, XFLAG_IMMUTABLE, &c).unwrap();
    assert_eq!(fs.mkdir(d, n("sub"), 0o755, &c).map(|_| ()), Err(EPERM));
    assert_eq!(fs.unlink(d, n("g"), &c), Err(EPERM));
    assert_eq!(fs.rename(d, n("g"), ROOT_INO, n("g"), 0, &c), Err(EPERM));
    fs.set_flags(d, 0, &c).unwrap();
    fs.unlink(d, n("g"), &c).unwrap();
    let _ = g;
    // Persisted; cleared, everything works again.
    fs.close().unwrap();
    let fs = r.open();
    assert_eq!(fs.getattr(f).unwrap().flags, XFLAG_IMMUTABLE);
    assert_eq!(fs.write(f, 0, b"x", &c), Err(EPERM));
    fs.set_flags(f, 0, &c).unwrap();
    fs.write(f, 0, b"x", &c).unwrap();
    fs.unlink(d, n("f"), &c).unwrap();
}

#[test]
fn append_only_takes_appends_only() {
    let r = region(64 << 20);
    let fs = r.open();
    let c = Ctx::root();
    let f = file(&fs, ROOT_INO, "f");
    fs.set_flags(f, XFLAG_APPEND, &c).unwrap();
    assert_eq!(fs.open_file(f, libc::O_WRONLY, &c), Err(EPERM));
    fs.open_file(f, libc::O_WRONLY | libc::O_APPEND, &c)
        .unwrap();
    assert_eq!(
        fs.open_file(f, libc::O_WRONLY | libc::O_APPEND | libc::O_TRUNC, &c),
        Err(EPERM)
    );
    assert_eq!(fs.write(f, 0, b"over", &c), Err(EPERM));
    fs.write(f, 4, b"more", &c).unwrap();
    let trunc = SetAttr {
        size: Some(0),
        ..Default::default()
    };
    assert_eq!(fs.setattr(f, &trunc, &c).map(|_| ()), Err(EPERM));
    let touch = SetAttr {
        atime: Some(TimeSet::Now),
        mtime: Some(TimeSet::Now),
        ..Default::default()
    };
    fs.setattr(f, &touch, &c).unwrap();
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    assert_eq!(fs.fallocate(f, 0, 4096, punch, &c), Err(EPERM));
    fs.fallocate(f, 0, 8192, libc::FALLOC_FL_KEEP_SIZE, &c)
        .unwrap();
    assert_eq!(fs.unlink(ROOT_INO, n("f"), &c), Err(EPERM));
    assert_eq!(fs.getattr(f).unwrap().size, 8);
    // An append-only directory: entries come, none go.
    let d = fs.mkdir(ROOT_INO, n("d"), 0o755, &c).unwrap().ino;
    fs.set_flags(d, XFLAG_APPEND, &c).unwrap();
    file(&fs, d, "new");
    assert_eq!(fs.unlink(d, n("new"), &c), Err(EPERM));
}

#[test]
fn only_root_locks_and_flags_show_in_getattr() {
    let r = region(64 << 20);
    let fs = r.open();
    let c = Ctx::root();
    let owner = Ctx {
        uid: 1000,
        gid: 1000,
        pid: 0,
    };
    let f = fs
        .mknod(ROOT_INO, n("f"), libc::S_IFREG | 0o644, 0, &owner)
        .unwrap()
        .ino;
    assert_eq!(
        fs.set_flags(f, XFLAG_IMMUTABLE, &owner).map(|_| ()),
        Err(EPERM)
    );
    fs.set_flags(f, XFLAG_NODUMP | XFLAG_NOATIME, &owner)
        .unwrap();
    assert_eq!(fs.getattr(f).unwrap().flags, XFLAG_NODUMP | XFLAG_NOATIME);
    fs.set_flags(f, XFLAG_APPEND, &c).unwrap();
    assert_eq!(fs.set_flags(f, 0, &owner).map(|_| ()), Err(EPERM));
    assert_eq!(fs.set_flags(f, 0x1, &c).map(|_| ()), Err(Errno::EOPNOTSUPP));
}
