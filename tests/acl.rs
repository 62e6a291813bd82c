//! POSIX ACLs on a real mount (`FUSE_POSIX_ACL`, issue 13): the kernel checks access through
//! them, a default ACL is inherited and replaces the umask, chmod and setfacl keep mode and ACL
//! in step, setting an ACL drops S_ISGID for an owner outside the group, and they persist. Each
//! under `/dev/fuse` with every `dax=` mode and under `-o io_uring`.

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use daxfs::fs::acl::{Acl, Entry};

use common::*;

const ACCESS: &str = "system.posix_acl_access";
const DEFAULT: &str = "system.posix_acl_default";
const UNDEF: u32 = u32::MAX;

fn entry(tag: u16, perm: u16, id: u32) -> Entry {
    Entry { tag, perm, id }
}

/// `user::u, user:1000:named, group::g, mask::m, other::o`.
fn acl_with_user(u: u16, named: u16, g: u16, m: u16, o: u16) -> Vec<u8> {
    Acl {
        entries: vec![
            entry(0x01, u, UNDEF),
            entry(0x02, named, 1000),
            entry(0x04, g, UNDEF),
            entry(0x10, m, UNDEF),
            entry(0x20, o, UNDEF),
        ],
    }
    .encode()
}

fn set(p: &Path, name: &str, v: &[u8]) -> std::io::Result<i32> {
    let n = CString::new(name).unwrap();
    // SAFETY: valid C strings and a value buffer of the given length.
    cvt(unsafe { libc::setxattr(cpath(p).as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) })
}

fn get(p: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe {
        libc::getxattr(
            cpath(p).as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().mode() & 0o7777
}

/// Opens `p` read-only as `uid:uid`: 0 or the errno.
fn read_as(uid: u32, p: &Path) -> i32 {
    let c = cpath(p);
    as_user(uid, uid, || {
        // SAFETY: a valid C string; the fd is closed at once.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
        if fd < 0 {
            return last_errno();
        }
        // SAFETY: our own fd.
        unsafe { libc::close(fd) };
        0
    })
}

#[test]
fn kernel_checks_access_through_the_acl() {
    require_fuse!();
    for opts in option_sets() {
        let r = Region::new("64M");
        let m = r.mount(opts);
        let f = m.p("secret");
        fs::write(&f, b"x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        // Traversal of the mount root for the test users.
        fs::set_permissions(&m.mnt, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(read_as(1000, &f), libc::EACCES, "{opts}: before the ACL");
        set(&f, ACCESS, &acl_with_user(6, 4, 0, 4, 0)).unwrap();
        assert_eq!(mode(&f), 0o640, "{opts}: the mask is the group class");
        assert_eq!(read_as(1000, &f), 0, "{opts}: user:1000:r-- lets 1000 read");
        assert_eq!(
            read_as(1001, &f),
            libc::EACCES,
            "{opts}: others still cannot"
        );
        // chmod g-r narrows the mask: the named entry no longer grants reading.
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        let got = Acl::parse(&get(&f, ACCESS).unwrap()).unwrap();
        assert_eq!(
            got.entries[3],
            entry(0x10, 0, UNDEF),
            "{opts}: mask follows chmod"
        );
        assert_eq!(
            got.entries[1],
            entry(0x02, 4, 1000),
            "{opts}: named entry kept"
        );
        assert_eq!(read_as(1000, &f), libc::EACCES, "{opts}: masked out");
        m.unmount();
        r.assert_fsck_clean(opts);
    }
}

#[test]
fn default_acl_is_inherited_and_replaces_the_umask() {
    require_fuse!();
    for opts in option_sets() {
        let r = Region::new("64M");
        let m = r.mount(opts);
        let d = m.p("d");
        fs::create_dir(&d).unwrap();
        let dflt = acl_with_user(7, 7, 5, 7, 0);
        set(&d, DEFAULT, &dflt).unwrap();
        let (dc, pc) = (cpath(&d.join("f")), cpath(&m.p("plain")));
        let (sc, nc) = (cpath(&d.join("sub")), cpath(&d.join("node")));
        // In a child: the umask is per process and the test threads share one.
        let code = as_user(0, 0, || {
            // SAFETY: plain syscalls on valid C strings in the child.
            unsafe {
                libc::umask(0o077);
                let fd = libc::open(dc.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o666);
                let fd2 = libc::open(pc.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o666);
                if fd < 0
                    || fd2 < 0
                    || libc::mkdir(sc.as_ptr(), 0o777) != 0
                    || libc::mknod(nc.as_ptr(), libc::S_IFIFO | 0o666, 0) != 0
                {
                    return last_errno();
                }
                libc::close(fd);
                libc::close(fd2);
            }
            0
        });
        assert_eq!(code, 0, "{opts}: creating");
        assert_eq!(mode(&d.join("f")), 0o660, "{opts}: ACL, not umask 077");
        assert_eq!(mode(&d.join("node")), 0o660, "{opts}: mknod too");
        assert_eq!(mode(&d.join("sub")), 0o770, "{opts}: mkdir too");
        assert_eq!(mode(&m.p("plain")), 0o600, "{opts}: no default ACL: umask");
        let fa = Acl::parse(&get(&d.join("f"), ACCESS).unwrap()).unwrap();
        assert_eq!(fa.entries[3], entry(0x10, 6, UNDEF), "{opts}: mask 7 & 6");
        assert_errno(get(&m.p("plain"), ACCESS), libc::ENODATA);
        m.unmount();
        // Persisted: the subdirectory still carries the default, and it still applies.
        let m = r.mount(opts);
        assert_eq!(get(&m.p("d/sub"), DEFAULT).unwrap(), dflt, "{opts}");
        fs::write(m.p("d/sub/g"), b"").unwrap();
        assert!(
            get(&m.p("d/sub/g"), ACCESS).is_ok(),
            "{opts}: inherited twice"
        );
        m.unmount();
        r.assert_fsck_clean(opts);
    }
}

#[test]
fn setting_an_acl_drops_setgid_outside_the_group() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    fs::set_permissions(&m.mnt, fs::Permissions::from_mode(0o755)).unwrap();
    let f = m.p("sgid");
    fs::write(&f, b"").unwrap();
    std::os::unix::fs::chown(&f, Some(1000), Some(3000)).unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o2755)).unwrap();
    let c = cpath(&f);
    let v = acl_with_user(7, 5, 5, 5, 5);
    let n = CString::new(ACCESS).unwrap();
    let code = as_user(1000, 1000, || {
        // SAFETY: valid C strings and a value of the given length.
        let rc = unsafe { libc::setxattr(c.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
        if rc != 0 {
            return last_errno();
        }
        0
    });
    assert_eq!(code, 0, "the owner may set an ACL");
    assert_eq!(mode(&f), 0o755, "owner outside group 3000: S_ISGID dropped");
    m.unmount();
}
