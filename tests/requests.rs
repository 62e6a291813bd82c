//! FUSE request counts on a real mount (issue 6, acceptance 3): the write path makes no GETXATTR
//! round trip per write (`FUSE_HANDLE_KILLPRIV_V2` is negotiated, so the kernel does not ask for
//! `security.capability` before every write), shown with the daemon's per-opcode counters read
//! through `daxfs stat --requests --json` (`DAXFS_IOC_REQ_STATS`).

mod common;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

use common::*;

/// 4 KiB pwrites per file.
const N: u64 = 1000;

/// The mount's request counters, by opcode name.
fn counters(m: &MountGuard) -> BTreeMap<String, u64> {
    let out = daxfs_ok([
        "stat".as_ref(),
        "--requests".as_ref(),
        m.mnt.as_os_str(),
        "--json".as_ref(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("stat --requests --json is JSON");
    v["requests"]
        .as_object()
        .expect("a requests object")
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().expect("counts are integers")))
        .collect()
}

/// `after[op] - before[op]`.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, op: &str) -> u64 {
    let (b, a) = (before[op], after[op]);
    assert!(a >= b, "{op} went backwards: {b} -> {a}");
    a - b
}

/// Writes N 4 KiB pwrites to a fresh file on a `dax=MODE` mount; returns the counter deltas of
/// the writes alone (the file is opened before and closed after the two reads).
fn write_deltas(dax: &str) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let r = Region::new("64M");
    let m = r.mount(&format!("dax={dax}"));
    let path = m.p("f");
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let block = pattern(7, 4096);
    let before = counters(&m);
    for i in 0..N {
        f.write_all_at(&block, i * 4096).unwrap();
    }
    let after = counters(&m);
    drop(f);
    // The data is really there (the counters measured real writes).
    let back = std::fs::read(&path).unwrap();
    assert_eq!(back.len() as u64, N * 4096);
    assert!(back.chunks(4096).all(|c| c == block.as_slice()));
    m.unmount();
    (before, after)
}

#[test]
fn dax_always_writes_make_no_getxattr() {
    require_fuse!();
    let (before, after) = write_deltas("always");
    eprintln!(
        "dax=always: WRITE +{} GETXATTR +{} GETATTR +{}",
        delta(&before, &after, "WRITE"),
        delta(&before, &after, "GETXATTR"),
        delta(&before, &after, "GETATTR")
    );
    assert_eq!(delta(&before, &after, "GETXATTR"), 0);
    // Direct I/O: every pwrite is its own WRITE request.
    assert!(delta(&before, &after, "WRITE") >= N);
}

#[test]
fn dax_never_writes_make_no_getxattr() {
    require_fuse!();
    let (before, after) = write_deltas("never");
    eprintln!(
        "dax=never: WRITE +{} GETXATTR +{} GETATTR +{}",
        delta(&before, &after, "WRITE"),
        delta(&before, &after, "GETXATTR"),
        delta(&before, &after, "GETATTR")
    );
    assert_eq!(delta(&before, &after, "GETXATTR"), 0);
    // Page cache without writeback caching: writes still reach the daemon.
    assert!(delta(&before, &after, "WRITE") >= 1);
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
    let before = counters(&m);
    // SAFETY: valid NUL-terminated strings; a null buffer with size 0 asks for the size only.
    let rc = unsafe { libc::getxattr(c.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    assert_errno(cvt(rc as libc::c_int), libc::ENODATA);
    let after = counters(&m);
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
