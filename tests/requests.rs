//! FUSE request counts on a real mount (issue 6, acceptance 3): the write path makes no GETXATTR
//! round trip per write (`FUSE_HANDLE_KILLPRIV_V2` is negotiated, so the kernel does not ask for
//! `security.capability` before every write), shown with the daemon's per-opcode counters read
//! through `daxfs stat --requests --json` (`DAXFS_IOC_REQ_STATS`).

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use common::*;

/// 4 KiB pwrites per file.
const N: u64 = 1000;

/// `after[op] - before[op]`.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, op: &str) -> u64 {
    let (b, a) = (before[op], after[op]);
    assert!(a >= b, "{op} went backwards: {b} -> {a}");
    a - b
}

type Counters = BTreeMap<String, u64>;

/// Writes two batches of N 4 KiB pwrites to a fresh file on a `dax=MODE` mount; returns the
/// counters before, between and after the batches (the file is opened before the first read and
/// closed after the last).
fn write_batches(dax: &str) -> (Counters, Counters, Counters) {
    let r = Region::new("64M");
    let m = r.mount(&format!("dax={dax}"));
    let path = m.p("f");
    let f = create_rw(&path);
    let block = pattern(7, 4096);
    let before = request_counters(&m);
    for i in 0..N {
        f.write_all_at(&block, i * 4096).unwrap();
    }
    let mid = request_counters(&m);
    for i in 0..N {
        f.write_all_at(&block, (N + i) * 4096).unwrap();
    }
    let after = request_counters(&m);
    drop(f);
    // The data is really there (the counters measured real writes).
    let back = std::fs::read(&path).unwrap();
    assert_eq!(back.len() as u64, 2 * N * 4096);
    assert!(back.chunks(4096).all(|c| c == block.as_slice()));
    m.unmount();
    (before, mid, after)
}

#[test]
fn dax_always_writes_make_no_getxattr() {
    require_fuse!();
    let (before, mid, after) = write_batches("always");
    eprintln!(
        "dax=always, {N} pwrites x2: WRITE +{} +{}, GETXATTR +{} +{}",
        delta(&before, &mid, "WRITE"),
        delta(&mid, &after, "WRITE"),
        delta(&before, &mid, "GETXATTR"),
        delta(&mid, &after, "GETXATTR")
    );
    // killpriv v2: the direct-I/O write path never asks for security.capability.
    assert_eq!(delta(&before, &after, "GETXATTR"), 0);
    // Direct I/O: every pwrite is its own WRITE request.
    assert!(delta(&before, &mid, "WRITE") >= N);
    assert!(delta(&mid, &after, "WRITE") >= N);
}

#[test]
fn dax_never_writes_make_no_getxattr_per_write() {
    require_fuse!();
    let (before, mid, after) = write_batches("never");
    eprintln!(
        "dax=never, {N} pwrites x2: WRITE +{} +{}, GETXATTR +{} +{}",
        delta(&before, &mid, "WRITE"),
        delta(&mid, &after, "WRITE"),
        delta(&before, &mid, "GETXATTR"),
        delta(&mid, &after, "GETXATTR")
    );
    // The page-cache write path (kiocb_modified) may probe security.capability once on the first
    // write, after which the kernel marks the inode S_NOSEC; never once per write.
    assert!(delta(&before, &mid, "GETXATTR") <= 1);
    assert_eq!(delta(&mid, &after, "GETXATTR"), 0);
    // Page cache without writeback caching: writes still reach the daemon.
    assert!(delta(&before, &mid, "WRITE") >= 1);
    assert!(delta(&mid, &after, "WRITE") >= 1);
}

#[test]
fn one_getxattr_call_counts_exactly_one() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    let path = m.p("g");
    File::create(&path).unwrap();
    // Settle the dentry and attributes so the counted call is the getxattr alone.
    std::fs::metadata(&path).unwrap();
    let c = cpath(&path);
    let name = c"user.absent";
    let before = request_counters(&m);
    // SAFETY: valid NUL-terminated strings; a null buffer with size 0 asks for the size only.
    let rc = unsafe { libc::getxattr(c.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    assert_errno(cvt(rc as libc::c_int), libc::ENODATA);
    let after = request_counters(&m);
    assert_eq!(delta(&before, &after, "GETXATTR"), 1);
    assert_eq!(delta(&before, &after, "WRITE"), 0);
    // The reads themselves go through the counted IOCTL handler.
    assert!(delta(&before, &after, "IOCTL") >= 1);
    m.unmount();
}

#[test]
fn requests_need_a_mount_point() {
    require_fuse!();
    let dir = scratch();
    let out = daxfs([
        "stat".as_ref(),
        "--requests".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mount point"), "unhelpful error: {err}");
}
