//! `XFS_IOC_EXCHANGE_RANGE` through the kernel on every transport and mode: the caller's
//! `file1_fd` is found through `/proc`, contents and sizes trade places and the kernel's caches
//! follow (pages read before the exchange are not served after it), and the fd checks the daemon
//! makes for the kernel (`EBADF`, `EXDEV`).

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use common::*;
use daxfs::fs::EXCHANGE_RANGE_TO_EOF;
use daxfs::ioctl::xfs::{ExchangeRangeArg, XFS_IOC_EXCHANGE_RANGE};

const K: u64 = 4096;

/// Issues the exchange on `file2` with `file1`'s descriptor.
fn exchange(
    file2: &File,
    file1_fd: i32,
    o1: u64,
    o2: u64,
    len: u64,
    flags: u64,
) -> std::io::Result<i32> {
    let arg = ExchangeRangeArg {
        file1_fd,
        pad: 0,
        file1_offset: o1,
        file2_offset: o2,
        length: len,
        flags,
    }
    .encode();
    // SAFETY: the request reads 40 bytes from `arg`, which lives across the call.
    cvt(unsafe { libc::ioctl(file2.as_raw_fd(), XFS_IOC_EXCHANGE_RANGE as _, arg.as_ptr()) })
}

fn rw(p: &std::path::Path) -> File {
    OpenOptions::new().read(true).write(true).open(p).unwrap()
}

fn whole(p: &std::path::Path) -> Vec<u8> {
    let mut v = Vec::new();
    File::open(p).unwrap().read_to_end(&mut v).unwrap();
    v
}

#[test]
fn exchange_range_through_the_kernel_on_every_mode() {
    require_fuse!();
    for opts in option_sets() {
        let r = Region::new("64M");
        let m = r.mount(opts);
        fs::write(m.p("a"), vec![b'a'; 16 * K as usize]).unwrap();
        fs::write(m.p("b"), vec![b'b'; 8 * K as usize]).unwrap();
        let (a, b) = (rw(&m.p("a")), rw(&m.p("b")));
        // Cache b's pages (page-cache modes) before the exchange.
        assert_eq!(whole(&m.p("b"))[K as usize], b'b');
        exchange(&b, a.as_raw_fd(), 2 * K, K, 2 * K, 0).unwrap_or_else(|e| panic!("{opts}: {e}"));
        let mut page = [0u8; 4096];
        b.read_exact_at(&mut page, K).unwrap();
        assert!(
            page.iter().all(|&c| c == b'a'),
            "{opts}: b's page 1 is a's page 2"
        );
        a.read_exact_at(&mut page, 3 * K).unwrap();
        assert!(
            page.iter().all(|&c| c == b'b'),
            "{opts}: a's page 3 is b's page 2"
        );
        assert_eq!(
            whole(&m.p("b"))[3 * K as usize],
            b'b',
            "{opts}: the rest stays"
        );
        // To the end of both files: the sizes trade places too.
        exchange(&b, a.as_raw_fd(), 0, 0, 0, EXCHANGE_RANGE_TO_EOF).unwrap();
        assert_eq!(fs::metadata(m.p("a")).unwrap().len(), 8 * K, "{opts}");
        assert_eq!(fs::metadata(m.p("b")).unwrap().len(), 16 * K, "{opts}");
        assert_eq!(whole(&m.p("b"))[15 * K as usize], b'a', "{opts}");
        // The fd checks: read-only file1, a file on another filesystem, no such fd.
        let ro = File::open(m.p("a")).unwrap();
        assert_errno(exchange(&b, ro.as_raw_fd(), 0, 0, K, 0), libc::EBADF);
        let other = tempfile::tempfile().unwrap();
        other.set_len(16 * K).unwrap();
        assert_errno(exchange(&b, other.as_raw_fd(), 0, 0, K, 0), libc::EXDEV);
        assert_errno(exchange(&b, 4000, 0, 0, K, 0), libc::EBADF);
        assert_errno(exchange(&b, a.as_raw_fd(), 0, 0, K + 1, 0), libc::EINVAL);
        drop((a, b, ro));
        m.unmount();
        r.assert_fsck_clean(opts);
    }
}
