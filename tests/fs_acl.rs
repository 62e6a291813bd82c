//! POSIX ACLs through the embedded API (no FUSE): the ACL xattrs and the mode kept in step,
//! inheritance at create with and without a default ACL, chmod of an ACL, who may set them,
//! and that they survive close + reopen.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use daxfs::fs::acl::{Acl, Entry, ACCESS, DEFAULT};
use daxfs::fs::*;

mod embedded;
use embedded::region;

fn n(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn user(uid: u32) -> Ctx {
    Ctx {
        uid,
        gid: uid,
        pid: 0,
    }
}

const U: u32 = u32::MAX;

/// `user::U,user:1000:N,group::G,mask::M,other::O` (the named entry and the mask when `named`).
fn acl(u: u16, named: Option<u16>, g: u16, mask: u16, o: u16) -> Vec<u8> {
    let mut entries = vec![Entry {
        tag: 0x01,
        perm: u,
        id: U,
    }];
    if let Some(p) = named {
        entries.push(Entry {
            tag: 0x02,
            perm: p,
            id: 1000,
        });
    }
    entries.push(Entry {
        tag: 0x04,
        perm: g,
        id: U,
    });
    if named.is_some() {
        entries.push(Entry {
            tag: 0x10,
            perm: mask,
            id: U,
        });
    }
    entries.push(Entry {
        tag: 0x20,
        perm: o,
        id: U,
    });
    Acl { entries }.encode()
}

fn name(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn access_of(fs: &DaxFs, ino: Ino) -> Option<Acl> {
    fs.getxattr(ino, name(ACCESS))
        .ok()
        .map(|v| Acl::parse(&v).unwrap())
}

#[test]
fn access_acl_sets_the_mode_and_an_equivalent_one_is_not_stored() {
    let r = region(64 << 20);
    let fs = r.open();
    let c = Ctx::root();
    let f = fs
        .mknod(ROOT_INO, n("f"), libc::S_IFREG | 0o644, 0, &c)
        .unwrap();
    fs.setxattr(f.ino, name(ACCESS), &acl(7, Some(4), 5, 6, 0), 0, &c)
        .unwrap();
    let a = fs.getattr(f.ino).unwrap();
    assert_eq!(a.perm, 0o760, "owner 7, mask 6 as the group class, other 0");
    assert!(access_of(&fs, f.ino).is_some());
    // Only base entries: the mode says it, the stored ACL goes.
    fs.setxattr(f.ino, name(ACCESS), &acl(6, None, 4, 0, 4), 0, &c)
        .unwrap();
    assert_eq!(fs.getattr(f.ino).unwrap().perm, 0o644);
    assert_eq!(fs.getxattr(f.ino, name(ACCESS)), Err(Errno::ENODATA));
    assert!(fs.listxattr(f.ino).unwrap().is_empty());
    // Removing an absent ACL is fine (setfacl -b); a malformed one is refused.
    fs.removexattr(f.ino, name(ACCESS), &c).unwrap();
    assert_eq!(
        fs.setxattr(f.ino, name(ACCESS), &[2, 0, 0, 0, 1], 0, &c),
        Err(Errno::EINVAL)
    );
}

#[test]
fn who_may_set_acls_and_where() {
    let r = region(64 << 20);
    let fs = r.open();
    let owner = user(1000);
    let f = fs
        .mknod(ROOT_INO, n("f"), libc::S_IFREG | 0o644, 0, &owner)
        .unwrap();
    let v = acl(7, Some(4), 5, 7, 0);
    assert_eq!(
        fs.setxattr(f.ino, name(ACCESS), &v, 0, &user(2000)),
        Err(Errno::EPERM)
    );
    assert_eq!(
        fs.setxattr(f.ino, name(DEFAULT), &v, 0, &owner),
        Err(Errno::EACCES),
        "a default ACL only on a directory"
    );
    let l = fs.symlink(ROOT_INO, n("l"), n("f"), &owner).unwrap();
    assert_eq!(
        fs.setxattr(l.ino, name(ACCESS), &v, 0, &owner),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        fs.setxattr(f.ino, n("system.other"), &v, 0, &owner),
        Err(Errno::EOPNOTSUPP)
    );
    fs.setxattr(f.ino, name(ACCESS), &v, 0, &owner).unwrap();
}

#[test]
fn setting_an_acl_drops_setgid_for_a_caller_outside_the_group() {
    let r = region(64 << 20);
    let fs = r.open();
    let c = Ctx::root();
    let f = fs
        .mknod(ROOT_INO, n("f"), libc::S_IFREG | 0o2755, 0, &c)
        .unwrap();
    let g = fs
        .mknod(ROOT_INO, n("g"), libc::S_IFREG | 0o2755, 0, &c)
        .unwrap();
    for ino in [f.ino, g.ino] {
        let set = SetAttr {
            uid: Some(1000),
            gid: Some(3000),
            ..Default::default()
        };
        fs.setattr(ino, &set, &c).unwrap();
        let mode = SetAttr {
            mode: Some(0o2755),
            ..Default::default()
        };
        fs.setattr(ino, &mode, &c).unwrap();
    }
    let v = acl(7, Some(5), 5, 5, 5);
    // Owner 1000 is not in group 3000 (pid 0: no supplementary groups to read).
    fs.setxattr(f.ino, name(ACCESS), &v, 0, &user(1000))
        .unwrap();
    assert_eq!(fs.getattr(f.ino).unwrap().perm, 0o755);
    // Root keeps it (CAP_FSETID).
    fs.setxattr(g.ino, name(ACCESS), &v, 0, &c).unwrap();
    assert_eq!(fs.getattr(g.ino).unwrap().perm, 0o2755);
}

#[test]
fn chmod_moves_the_mask_and_keeps_named_entries() {
    let r = region(64 << 20);
    let fs = r.open();
    let c = Ctx::root();
    let f = fs
        .mknod(ROOT_INO, n("f"), libc::S_IFREG | 0o644, 0, &c)
        .unwrap();
    fs.setxattr(f.ino, name(ACCESS), &acl(7, Some(6), 5, 7, 4), 0, &c)
        .unwrap();
    let set = SetAttr {
        mode: Some(0o640),
        ..Default::default()
    };
    fs.setattr(f.ino, &set, &c).unwrap();
    let want = Acl::parse(&acl(6, Some(6), 5, 4, 0)).unwrap();
    assert_eq!(access_of(&fs, f.ino), Some(want));
    assert_eq!(fs.getattr(f.ino).unwrap().perm, 0o640);
}

#[test]
fn inheritance_from_a_default_acl_replaces_the_umask_and_survives_reopen() {
    let r = region(64 << 20);
    let (d, f, sub, plain);
    let dflt = acl(7, Some(7), 5, 7, 0);
    {
        let fs = r.open();
        let c = Ctx::root();
        d = fs.mkdir(ROOT_INO, n("d"), 0o755, &c).unwrap().ino;
        fs.setxattr(d, name(DEFAULT), &dflt, 0, &c).unwrap();
        let (a, fh) = fs
            .create_with_umask(d, n("f"), libc::S_IFREG | 0o666, 0o077, 0, &c)
            .unwrap();
        fs.release(a.ino, fh).unwrap();
        f = a.ino;
        assert_eq!(
            fs.getattr(f).unwrap().perm,
            0o660,
            "umask ignored: mask 7 & 6"
        );
        sub = fs
            .mkdir_with_umask(d, n("sub"), 0o777, 0o077, &c)
            .unwrap()
            .ino;
        assert_eq!(fs.getattr(sub).unwrap().perm, 0o770);
        plain = fs
            .mknod_with_umask(ROOT_INO, n("p"), libc::S_IFREG | 0o666, 0o027, 0, &c)
            .unwrap()
            .ino;
        assert_eq!(fs.getattr(plain).unwrap().perm, 0o640, "no default: umask");
        fs.close().unwrap();
    }
    let fs = r.open();
    assert_eq!(
        access_of(&fs, f),
        Some(Acl::parse(&acl(6, Some(7), 5, 6, 0)).unwrap())
    );
    assert_eq!(fs.getxattr(sub, name(DEFAULT)).unwrap(), dflt);
    assert!(access_of(&fs, sub).is_some());
    assert_eq!(fs.getxattr(f, name(DEFAULT)), Err(Errno::ENODATA));
    assert_eq!(fs.getxattr(plain, name(ACCESS)), Err(Errno::ENODATA));
    assert_eq!(fs.getattr(f).unwrap().perm, 0o660);
    fs.close().unwrap();
    let problems = DaxFs::fsck(&r.path, false).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}
