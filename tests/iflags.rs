//! Inode flags on a real mount (`FS_IOC_GETFLAGS` / `FS_IOC_SETFLAGS`, issue 13): immutable and
//! append-only are enforced by daxfs (the kernel's FUSE inode does not carry them) with ext4's
//! `EPERM`, a non-root owner cannot set them, and they survive a remount. Under every `dax=`
//! mode and `-o io_uring`.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

const FS_IMMUTABLE_FL: libc::c_int = 0x10;
const FS_APPEND_FL: libc::c_int = 0x20;
const FS_NODUMP_FL: libc::c_int = 0x40;

fn getflags(p: &Path) -> libc::c_int {
    let f = fs::File::open(p).unwrap();
    let mut v: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int to the pointer given.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut v) };
    assert_eq!(r, 0, "GETFLAGS: {}", std::io::Error::last_os_error());
    v
}

fn setflags(p: &Path, v: libc::c_int) -> std::io::Result<i32> {
    let f = fs::File::open(p).unwrap();
    // SAFETY: FS_IOC_SETFLAGS reads one int from the pointer given.
    cvt(unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &v) })
}

#[test]
fn immutable_and_append_only_are_enforced_and_persist() {
    require_fuse!();
    for opts in option_sets() {
        let r = Region::new("64M");
        let m = r.mount(opts);
        let (i, a) = (m.p("imm"), m.p("app"));
        fs::write(&i, b"fixed").unwrap();
        fs::write(&a, b"log").unwrap();
        setflags(&i, FS_IMMUTABLE_FL | FS_NODUMP_FL).unwrap();
        setflags(&a, FS_APPEND_FL).unwrap();
        assert_eq!(getflags(&i), FS_IMMUTABLE_FL | FS_NODUMP_FL, "{opts}");
        assert_errno(OpenOptions::new().write(true).open(&i), libc::EPERM);
        assert_errno(fs::remove_file(&i), libc::EPERM);
        assert_errno(fs::rename(&i, m.p("other")), libc::EPERM);
        assert_errno(fs::hard_link(&i, m.p("link")), libc::EPERM);
        assert_errno(
            fs::set_permissions(&i, fs::Permissions::from_mode(0o600)),
            libc::EPERM,
        );
        assert_errno(OpenOptions::new().write(true).open(&a), libc::EPERM);
        assert_errno(fs::remove_file(&a), libc::EPERM);
        let mut f = OpenOptions::new().append(true).open(&a).unwrap();
        f.write_all(b"+more").unwrap();
        drop(f);
        // chown is an attribute change: refused even for root.
        assert_errno(
            std::os::unix::fs::chown(&a, Some(1000), Some(1000)),
            libc::EPERM,
        );
        m.unmount();
        let m = r.mount(opts);
        assert_eq!(fs::read(m.p("imm")).unwrap(), b"fixed", "{opts}");
        assert_eq!(fs::read(m.p("app")).unwrap(), b"log+more", "{opts}");
        assert_eq!(getflags(&m.p("imm")), FS_IMMUTABLE_FL | FS_NODUMP_FL);
        assert_eq!(getflags(&m.p("app")), FS_APPEND_FL, "{opts}");
        setflags(&m.p("imm"), 0).unwrap();
        setflags(&m.p("app"), 0).unwrap();
        fs::remove_file(m.p("imm")).unwrap();
        fs::remove_file(m.p("app")).unwrap();
        m.unmount();
        r.assert_fsck_clean(opts);
    }
}

#[test]
fn only_root_sets_immutable() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    fs::set_permissions(&m.mnt, fs::Permissions::from_mode(0o755)).unwrap();
    let f = m.p("mine");
    fs::write(&f, b"").unwrap();
    std::os::unix::fs::chown(&f, Some(1000), Some(1000)).unwrap();
    let c = cpath(&f);
    let code = as_user(1000, 1000, || {
        // SAFETY: plain syscalls on a valid C string in the child.
        unsafe {
            let fd = libc::open(c.as_ptr(), libc::O_RDONLY);
            if fd < 0 {
                return 100;
            }
            let v: libc::c_int = FS_IMMUTABLE_FL;
            if libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &v) == 0 {
                return 0;
            }
            let e = last_errno();
            let d: libc::c_int = FS_NODUMP_FL;
            if libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &d) != 0 {
                return 101;
            }
            e
        }
    });
    assert_eq!(code, libc::EPERM, "owner without CAP_LINUX_IMMUTABLE");
    assert_eq!(getflags(&f), FS_NODUMP_FL, "the owner sets nodump");
    m.unmount();
}
