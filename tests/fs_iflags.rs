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

/// The extent size hint (`FS_IOC_FSSETXATTR`'s `fsx_extsize`, xfstests generic/367): kept under
/// `FS_XFLAG_EXTSIZE` on a file while it has no blocks, refused once it has (`EINVAL`), cleared
/// with 0, reported with its flag, inherited from a directory's `FS_XFLAG_EXTSZINHERIT`, and
/// persistent; `FS_IOC_SETFLAGS` keeps it.
#[test]
fn extent_size_hints_follow_xfs() {
    use daxfs::fs::iflags::{XFLAG_EXTSIZE, XFLAG_EXTSZINHERIT};
    let r = region(64 << 20);
    let c = Ctx::root();
    let set = |fs: &DaxFs, ino: Ino, xflags: u32, extsize: u32| {
        fs.set_xflags(
            ino,
            &XflagsChange {
                xflags,
                extsize,
                ..Default::default()
            },
            &c,
        )
    };
    let (empty, dir, sub);
    {
        let fs = r.open();
        empty = fs
            .mknod(ROOT_INO, n("empty"), libc::S_IFREG | 0o644, 0, &c)
            .unwrap()
            .ino;
        set(&fs, empty, XFLAG_EXTSIZE, 8192).unwrap();
        assert_eq!(fs.fsxattr(empty).unwrap(), (XFLAG_EXTSIZE, 8192));
        // Not a multiple of the block size; the directory flag on a file.
        assert_eq!(set(&fs, empty, XFLAG_EXTSIZE, 1000), Err(Errno::EINVAL));
        assert_eq!(
            set(&fs, empty, XFLAG_EXTSZINHERIT, 8192),
            Err(Errno::EINVAL)
        );
        // A file with blocks may not change its hint; the same hint is no change.
        let full = file(&fs, ROOT_INO, "full");
        assert_eq!(set(&fs, full, XFLAG_EXTSIZE, 8192), Err(Errno::EINVAL));
        assert_eq!(fs.fsxattr(full).unwrap(), (0, 0));
        // A directory's hint is inherited by a file and a directory made in it.
        dir = fs.mkdir(ROOT_INO, n("d"), 0o755, &c).unwrap().ino;
        assert_eq!(set(&fs, dir, XFLAG_EXTSIZE, 16384), Err(Errno::EINVAL));
        set(&fs, dir, XFLAG_EXTSZINHERIT, 16384).unwrap();
        let f = fs
            .mknod(dir, n("f"), libc::S_IFREG | 0o644, 0, &c)
            .unwrap()
            .ino;
        assert_eq!(fs.fsxattr(f).unwrap(), (XFLAG_EXTSIZE, 16384));
        sub = fs.mkdir(dir, n("sub"), 0o755, &c).unwrap().ino;
        assert_eq!(fs.fsxattr(sub).unwrap(), (XFLAG_EXTSZINHERIT, 16384));
        let link = fs.symlink(dir, n("l"), OsStr::new("f"), &c).unwrap().ino;
        assert_eq!(fs.fsxattr(link).unwrap(), (0, 0));
        // Other flags keep the hint; a user who does not own the file may not change it.
        set(&fs, empty, XFLAG_EXTSIZE | XFLAG_NODUMP, 8192).unwrap();
        let user = Ctx {
            uid: 1000,
            gid: 1000,
            pid: 1,
        };
        assert_eq!(
            fs.set_xflags(
                empty,
                &XflagsChange {
                    xflags: 0,
                    ..Default::default()
                },
                &user
            ),
            Err(EPERM)
        );
        fs.close().unwrap();
    }
    let fs = r.open();
    assert_eq!(
        fs.fsxattr(empty).unwrap(),
        (XFLAG_EXTSIZE | XFLAG_NODUMP, 8192)
    );
    assert_eq!(fs.fsxattr(dir).unwrap(), (XFLAG_EXTSZINHERIT, 16384));
    assert_eq!(fs.fsxattr(sub).unwrap(), (XFLAG_EXTSZINHERIT, 16384));
    // Cleared with 0 (or without the flag).
    set(&fs, empty, XFLAG_EXTSIZE | XFLAG_NODUMP, 0).unwrap();
    assert_eq!(fs.fsxattr(empty).unwrap(), (XFLAG_NODUMP, 0));
    set(&fs, dir, 0, 16384).unwrap();
    assert_eq!(fs.fsxattr(dir).unwrap(), (0, 0));
    fs.close().unwrap();
    assert_eq!(DaxFs::fsck(&r.path, false).unwrap(), Vec::new());
}
