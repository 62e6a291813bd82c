//! Memory failure at hardware scale on real mounts (docs/DESIGN.md, "Memory failure"), on
//! /dev/fuse and `-o io_uring`, with `dax=always` and `dax=never`:
//! (1) a whole PMD and a GiB of a PMD-mapped 1 GiB+ file are poisoned by one ioctl each: the
//! whole range reads EIO (every page of the PMD, the first, last and a sample of the GiB's
//! pages), mmap gets SIGBUS there (a mapping faulted in before the inject and a fresh one), the
//! pages around it read their data, and `daxfs poison list` shows one `<sector> <count>` line each;
//! (2) 1,000,000 bad pages in 1,000 disjoint region ranges survive an unmount and a `kill -9` of
//! the daemon, `poison list` still shows the 1,000 lines, and fsck is clean;
//! (3) a failed inject (a range beyond EOF or beyond the region partway) leaves nothing poisoned.
//!
//! The big file is fallocated (its blocks really mapped and zeroed: a region file on tmpfs, so
//! a few hundred ms per configuration) and only sampled pages carry a pattern.

mod common;
mod poison_util;

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use daxfs::ioctl::*;
use poison_util::{poison_fd, spawn, survive_sigbus, wait_children, Shared, SIGBUS_TAKEN};

const PAGE: u64 = 4096;
const PMD: u64 = 2 << 20;
const GIB: u64 = 1 << 30;
/// The big file: the poisoned PMD at 0, an intact PMD entry, the poisoned GiB from 4 MiB, then
/// 4 MiB intact.
const BIG: u64 = GIB + (8 << 20);
/// First and end page of the poisoned GiB.
const GIB0: u64 = (4 << 20) / PAGE;
const GIB1: u64 = GIB0 + GIB / PAGE;

#[derive(Clone, Copy, Debug)]
struct Cfg {
    uring: bool,
    dax: &'static str,
}

const CONFIGS: [Cfg; 4] = [
    Cfg {
        uring: false,
        dax: "always",
    },
    Cfg {
        uring: false,
        dax: "never",
    },
    Cfg {
        uring: true,
        dax: "always",
    },
    Cfg {
        uring: true,
        dax: "never",
    },
];

/// Mounts with the configuration's options; for io_uring, checks that requests go through the
/// rings (another test may have turned `enable_uring` off: set it again and remount).
fn mount(r: &Region, cfg: Cfg) -> MountGuard {
    let opts = format!(
        "dax={}{}",
        cfg.dax,
        if cfg.uring { ",io_uring" } else { "" }
    );
    for _ in 0..5 {
        if cfg.uring {
            assert!(enable_uring(), "FUSE-over-io_uring is needed");
        }
        let m = r.mount(&opts);
        if !cfg.uring || request_counters(&m).get("IO_URING").copied().unwrap_or(0) > 0 {
            return m;
        }
        eprintln!("the mount fell back to /dev/fuse (enable_uring was off at INIT): again");
        m.unmount();
    }
    panic!("could not get an io_uring mount");
}

/// The content of sampled page `p`: its index, then a fill byte.
fn stamp(p: u64) -> Vec<u8> {
    let mut v = vec![(p % 251) as u8 | 1; PAGE as usize];
    v[..8].copy_from_slice(&p.to_le_bytes());
    v
}

fn read_page(f: &File, p: u64) -> std::io::Result<Vec<u8>> {
    let mut b = vec![0u8; PAGE as usize];
    f.read_exact_at(&mut b, p * PAGE).map(|()| b)
}

/// `daxfs stat --mappings FILE` as `(file index, pages, region block)`.
fn mappings(file: &Path) -> Vec<(u64, u64, u64)> {
    daxfs_ok([OsStr::new("stat"), "--mappings".as_ref(), file.as_os_str()])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = if f[1] == "pmd" { 512 } else { 1 };
            (f[0].parse().unwrap(), n, f[2].parse().unwrap())
        })
        .collect()
}

/// The region block ranges `(first, count)` behind file pages `[first, end)`, coalesced.
fn block_ranges(maps: &[(u64, u64, u64)], first: u64, end: u64) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = Vec::new();
    for &(idx, n, blk) in maps {
        let (s, e) = (idx.max(first), (idx + n).min(end));
        if s >= e {
            continue;
        }
        let b = blk + (s - idx);
        match v.last_mut() {
            Some(last) if last.0 + last.1 == b => last.1 += e - s,
            _ => v.push((b, e - s)),
        }
    }
    v.sort();
    v
}

/// `daxfs poison list MNT` lines, as expected for block ranges (sysfs: 512-byte sectors).
fn sysfs_lines(ranges: &[(u64, u64)]) -> String {
    ranges
        .iter()
        .map(|&(b, n)| format!("{} {}\n", b * 8, n * 8))
        .collect()
}

fn poison_list(mnt: &Path) -> String {
    daxfs_ok([OsStr::new("poison"), "list".as_ref(), mnt.as_os_str()])
}

fn stat_json(mnt: &Path) -> serde_json::Value {
    serde_json::from_str(&daxfs_ok([
        OsStr::new("stat"),
        mnt.as_os_str(),
        "--json".as_ref(),
    ]))
    .unwrap()
}

/// A shared read-only mapping of `len` bytes of `f` (unmapped on drop).
struct Mmap {
    ptr: *const u8,
    len: usize,
}

impl Mmap {
    fn new(f: &File, len: u64) -> Mmap {
        // SAFETY: a fresh shared read-only mapping of an open descriptor; checked for failure.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        Mmap {
            ptr: p as *const u8,
            len: len as usize,
        }
    }

    /// The first 8 bytes of page `p` (faulting it in). Only where no SIGBUS can come, or in a
    /// child that survives it.
    fn head(&self, p: u64) -> u64 {
        let off = (p * PAGE) as usize;
        assert!(off + 8 <= self.len);
        // SAFETY: inside the live mapping; volatile so every load faults.
        let b: [u8; 8] =
            std::array::from_fn(|i| unsafe { std::ptr::read_volatile(self.ptr.add(off + i)) });
        u64::from_le_bytes(b)
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once.
        unsafe { libc::munmap(self.ptr as *mut _, self.len) };
    }
}

/// In a forked child that survives SIGBUS: every page of `bad` must raise SIGBUS and every page
/// of `good` must read its stamp without one, through each mapping. Return: `(SIGBUS taken on
/// bad pages, good pages read right)` over all mappings.
fn mmap_check(maps: &[&Mmap], bad: &[u64], good: &[u64]) -> (u64, u64) {
    let shared = Shared::new();
    let c = shared.get();
    let pid = spawn(|| {
        survive_sigbus(None);
        for m in maps {
            for &p in bad {
                let before = SIGBUS_TAKEN.load(Ordering::SeqCst);
                m.head(p);
                if SIGBUS_TAKEN.load(Ordering::SeqCst) > before {
                    c.ops[0].fetch_add(1, Ordering::Relaxed);
                }
            }
            for &p in good {
                let before = SIGBUS_TAKEN.load(Ordering::SeqCst);
                let h = m.head(p);
                if SIGBUS_TAKEN.load(Ordering::SeqCst) == before && h == p {
                    c.ops[1].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    let (done, all) = wait_children(&[pid], Duration::from_secs(300));
    assert!(all, "the mmap reader did not finish");
    assert_eq!(done, vec![(pid, 0)], "the mmap reader's exit");
    (shared.ops(0), shared.ops(1))
}

/// The sampled pages of the poisoned GiB: its first and last, the first and last of every
/// 64th PMD entry, and every 997th page.
fn gib_samples() -> Vec<u64> {
    let mut v: Vec<u64> = (GIB0..GIB1).step_by(997).collect();
    for pmd in (GIB0 / 512..GIB1 / 512).step_by(64) {
        v.extend([pmd * 512, pmd * 512 + 511]);
    }
    v.extend([GIB0, GIB1 - 1]);
    v.sort();
    v.dedup();
    v
}

/// The pages around the poisoned ranges, each of which must keep its data.
const AROUND: [u64; 6] = [512, 700, GIB0 - 1, GIB1, GIB1 + 511, BIG / PAGE - 1];

fn pmd_and_gib(cfg: Cfg) {
    require_fuse!();
    let r = Region::new("1200M");
    let m = mount(&r, cfg);
    let path = m.p("big");
    let f = create_rw(&path);
    // SAFETY: fallocate on an open descriptor, no pointers involved.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, BIG as i64) };
    cvt(rc).expect("fallocate the big file");
    let bad: Vec<u64> = (0..512).chain(gib_samples()).collect();
    for &p in bad.iter().chain(&AROUND) {
        f.write_all_at(&stamp(p), p * PAGE).unwrap();
    }
    let maps = mappings(&path);
    assert!(
        maps.len() as u64 == BIG / PMD && maps.iter().all(|e| e.1 == 512),
        "{cfg:?}: the file is PMD-mapped: {:?}",
        &maps[..maps.len().min(4)]
    );
    // A mapping faulted in before the failure: the invalidation must drop its pages.
    let old = Mmap::new(&f, BIG);
    for &p in bad.iter().chain(&AROUND) {
        assert_eq!(old.head(p), p, "{cfg:?}: page {p} before the inject");
    }

    let t = Instant::now();
    assert_eq!(
        poison_fd(f.as_raw_fd(), DAXFS_IOC_INJECT_POISON, 0, 0, PMD),
        0
    );
    let t_pmd = t.elapsed();
    let t = Instant::now();
    assert_eq!(
        poison_fd(f.as_raw_fd(), DAXFS_IOC_INJECT_POISON, 0, GIB0 * PAGE, GIB),
        0
    );
    eprintln!(
        "{cfg:?}: inject of one PMD {t_pmd:?}, of 1 GiB {:?} (ioctl round trip)",
        t.elapsed()
    );

    for &p in &bad {
        assert_errno(read_page(&f, p), libc::EIO);
    }
    for &p in &AROUND {
        assert_eq!(read_page(&f, p).unwrap(), stamp(p), "{cfg:?}: page {p}");
    }
    let fresh = Mmap::new(&f, BIG);
    let (sigbus, good) = mmap_check(&[&old, &fresh], &bad, &AROUND);
    assert_eq!(
        (sigbus, good),
        (2 * bad.len() as u64, 2 * AROUND.len() as u64),
        "{cfg:?}: SIGBUS on every sampled poisoned page, none around"
    );
    drop((old, fresh));

    let mut want = block_ranges(&maps, 0, 512);
    want.extend(block_ranges(&maps, GIB0, GIB1));
    want.sort();
    assert_eq!(
        want.len(),
        2,
        "{cfg:?}: the fallocated blocks are contiguous"
    );
    assert_eq!(poison_list(&m.mnt), sysfs_lines(&want), "{cfg:?}");
    assert_eq!(
        stat_json(&m.mnt)["bad_blocks"].as_u64(),
        Some(512 + GIB / PAGE)
    );
    drop(f);
    m.unmount();
    r.assert_fsck_clean(&format!("{cfg:?} after the PMD and the GiB"));
}

#[test]
fn pmd_and_gib_in_one_call_each_dev_fuse_dax_always() {
    pmd_and_gib(CONFIGS[0]);
}

#[test]
fn pmd_and_gib_in_one_call_each_dev_fuse_dax_never() {
    pmd_and_gib(CONFIGS[1]);
}

#[test]
fn pmd_and_gib_in_one_call_each_io_uring_dax_always() {
    pmd_and_gib(CONFIGS[2]);
}

#[test]
fn pmd_and_gib_in_one_call_each_io_uring_dax_never() {
    pmd_and_gib(CONFIGS[3]);
}

/// 1,000 disjoint region ranges of 1,000 pages, 500 pages apart, from block 65,536 (256 MiB,
/// past the metadata of an 8 GiB region).
fn million_ranges() -> Vec<(u64, u64)> {
    (0..1000u64).map(|i| (65_536 + i * 1500, 1000)).collect()
}

fn inject_region(root: &File, (block, n): (u64, u64)) {
    assert_eq!(
        poison_fd(
            root.as_raw_fd(),
            DAXFS_IOC_INJECT_POISON,
            POISON_BY_REGION,
            block * PAGE,
            n * PAGE
        ),
        0,
        "inject blocks {block}+{n}"
    );
}

/// A 4 MiB file of stamped pages, on none of the ranges. Return: its path.
fn keep_file(m: &MountGuard, ranges: &[(u64, u64)]) -> std::path::PathBuf {
    let path = m.p("keep");
    let data: Vec<u8> = (0..1024).flat_map(stamp).collect();
    std::fs::write(&path, data).unwrap();
    for (_, n, b) in mappings(&path) {
        assert!(
            ranges.iter().all(|&(s, k)| b + n <= s || b >= s + k),
            "setup: the file's blocks {b}+{n} lie on a range to poison"
        );
    }
    path
}

fn assert_keep_intact(path: &Path, when: &str) {
    let f = File::open(path).unwrap();
    for p in (0..1024).step_by(37).chain([1023]) {
        assert_eq!(read_page(&f, p).unwrap(), stamp(p), "{when}: page {p}");
    }
}

fn million(cfg: Cfg) {
    require_fuse!();
    let r = Region::new("8G");
    let ranges = million_ranges();
    let m = mount(&r, cfg);
    let keep = keep_file(&m, &ranges);
    let root = File::open(&m.mnt).unwrap();
    let t = Instant::now();
    for &rg in &ranges[..999] {
        inject_region(&root, rg);
    }
    eprintln!(
        "{cfg:?}: 999 region injects of 1,000 pages: {:?}",
        t.elapsed()
    );
    assert_eq!(poison_list(&m.mnt), sysfs_lines(&ranges[..999]));
    drop(root);
    m.unmount();

    let m = mount(&r, cfg);
    assert_eq!(
        poison_list(&m.mnt),
        sysfs_lines(&ranges[..999]),
        "{cfg:?}: after an unmount"
    );
    // The last range from this daemon, which then dies without closing anything.
    inject_region(&File::open(&m.mnt).unwrap(), ranges[999]);
    m.kill_daemon();
    let out = daxfs(["umount".as_ref(), m.mnt.as_os_str()]);
    assert!(
        out.status.success(),
        "umount of the dead mount: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.disarm();

    let m = mount(&r, cfg);
    let list = poison_list(&m.mnt);
    assert_eq!(list.lines().count(), 1000, "{cfg:?}: after kill -9");
    assert_eq!(list, sysfs_lines(&ranges), "{cfg:?}: after kill -9");
    assert_eq!(stat_json(&m.mnt)["bad_blocks"].as_u64(), Some(1_000_000));
    assert_keep_intact(&keep, &format!("{cfg:?} after kill -9"));
    m.unmount();
    r.assert_fsck_clean(&format!("{cfg:?} with 1,000,000 bad pages"));
}

#[test]
fn a_million_bad_pages_survive_unmount_and_kill_9_dev_fuse() {
    million(CONFIGS[0]);
}

#[test]
fn a_million_bad_pages_survive_unmount_and_kill_9_io_uring() {
    million(CONFIGS[3]);
}

fn failed_inject(cfg: Cfg) {
    require_fuse!();
    let r = Region::new("64M");
    let m = mount(&r, cfg);
    let path = m.p("f");
    let pages: Vec<u64> = (0..256).collect();
    let data: Vec<u8> = pages.iter().copied().flat_map(stamp).collect();
    std::fs::write(&path, data).unwrap();
    let f = File::open(&path).unwrap();
    let fd = f.as_raw_fd();
    // From the middle of the 1 MiB file to 512 KiB past its end.
    assert_eq!(
        poison_fd(fd, DAXFS_IOC_INJECT_POISON, 0, 512 << 10, 1 << 20),
        libc::EINVAL
    );
    // The CLI says so and fails.
    let out = daxfs([
        OsStr::new("poison"),
        "inject".as_ref(),
        path.as_os_str(),
        "--offset".as_ref(),
        "512k".as_ref(),
        "--len".as_ref(),
        "1M".as_ref(),
    ]);
    assert!(!out.status.success(), "{cfg:?}: the CLI inject succeeded");
    assert!(!out.stderr.is_empty(), "{cfg:?}: the CLI said nothing");
    // The last page of the region and one beyond it.
    let size = stat_json(&m.mnt)["size"]
        .as_u64()
        .expect("stat --json size");
    let root = File::open(&m.mnt).unwrap();
    assert_eq!(
        poison_fd(
            root.as_raw_fd(),
            DAXFS_IOC_INJECT_POISON,
            POISON_BY_REGION,
            size - PAGE,
            2 * PAGE
        ),
        libc::EINVAL
    );
    assert_eq!(poison_list(&m.mnt), "", "{cfg:?}: nothing poisoned");
    assert_eq!(stat_json(&m.mnt)["bad_blocks"].as_u64(), Some(0));
    for &p in &pages {
        assert_eq!(read_page(&f, p).unwrap(), stamp(p), "{cfg:?}: page {p}");
    }
    let map = Mmap::new(&f, 1 << 20);
    assert_eq!(
        mmap_check(&[&map], &[], &pages),
        (0, 256),
        "{cfg:?}: every page maps its data"
    );
    drop((map, f, root));
    m.unmount();
    r.assert_fsck_clean(&format!("{cfg:?} after the failed injects"));
}

#[test]
fn a_failed_inject_leaves_nothing_poisoned_dev_fuse_dax_always() {
    failed_inject(CONFIGS[0]);
}

#[test]
fn a_failed_inject_leaves_nothing_poisoned_dev_fuse_dax_never() {
    failed_inject(CONFIGS[1]);
}

#[test]
fn a_failed_inject_leaves_nothing_poisoned_io_uring_dax_always() {
    failed_inject(CONFIGS[2]);
}

#[test]
fn a_failed_inject_leaves_nothing_poisoned_io_uring_dax_never() {
    failed_inject(CONFIGS[3]);
}
