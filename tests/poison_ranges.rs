//! Memory failure at hardware scale, through the embedded API (issue 11, items 2 and 3): bad
//! blocks are ranges, persistent and crash consistent, and an inject or clear is one atomic step
//! whatever its size.
//! (1) 1,000,000 bad pages in 1,000 disjoint ranges survive a reopen, coalesce and split like the
//! kernel's badblocks, stay out of the allocator, and fsck is clean; (2) the old fixed table
//! still mounts and is rewritten as ranges on its first change; (3) a whole PMD and a GiB are
//! poisoned by one call each (whole range EIO, neighbours intact, the PMD entry split or gone);
//! (4) a failed inject leaves nothing poisoned; (5) the range chain is copy-on-write and a stale
//! chain block is found by fsck, never trusted.

mod embedded;

use std::ffi::OsStr;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use daxfs::fs::*;
use daxfs::memory_failure::{self as mf, NoInvalidate, RecordingInvalidator};
use daxfs::store::badtable::{bad_chain_blocks, encode_bad_table_v1};
use daxfs::store::{CorruptReason, DecodeError};
use embedded::{open, region};

const PAGE: u64 = 4096;
/// The bad-block table's block (the fixed layout: after the superblock and the 16-block journal).
const TABLE_OFF: u64 = 17 * PAGE;

fn blocks(r: &[(u64, u64)]) -> u64 {
    r.iter().map(|x| x.1).sum()
}

fn table_magic(path: &std::path::Path) -> [u8; 4] {
    let f = std::fs::File::open(path).unwrap();
    let mut m = [0u8; 4];
    f.read_exact_at(&mut m, TABLE_OFF).unwrap();
    m
}

#[test]
fn a_million_bad_pages_in_a_thousand_ranges_persist_coalesce_split_and_fsck_clean() {
    let t = region(8 << 30);
    let fs = t.open();
    let free0 = fs.region_stat().free_blocks;
    let first = 65_536; // 256 MiB: past the metadata of an 8 GiB region
    let started = Instant::now();
    for i in 0..1000u64 {
        let at = (first + i * 1500) * PAGE;
        let r = mf::inject_region(&fs, at, 1000 * PAGE, &NoInvalidate).unwrap();
        assert_eq!(r.blocks, 1000, "range {i}: every block newly bad");
    }
    eprintln!(
        "1,000 region injects of 1,000 pages: {:?}",
        started.elapsed()
    );
    let want: Vec<(u64, u64)> = (0..1000u64).map(|i| (first + i * 1500, 1000)).collect();
    assert_eq!(fs.bad_ranges(), want);
    let st = fs.region_stat();
    assert_eq!(st.bad_blocks, 1_000_000);
    assert!(
        st.free_blocks + 1_000_000 <= free0,
        "bad blocks left the allocator"
    );
    assert_eq!(fs.bad_table_blocks().len(), bad_chain_blocks(1000));
    // Nothing allocated lands on a bad block.
    let (a, _) = fs
        .create(ROOT_INO, OsStr::new("f"), 0o644, 0, &Ctx::root())
        .unwrap();
    fs.write(a.ino, 0, &vec![7u8; 64 << 20], &Ctx::root())
        .unwrap();
    for m in fs.mappings(a.ino).unwrap() {
        let (s, e) = (m.region_block, m.region_block + (1u64 << m.order));
        assert!(
            want.iter().all(|&(b, n)| e <= b || s >= b + n),
            "block run {s}..{e} overlaps a bad range"
        );
    }
    fs.close().unwrap();
    assert_eq!(DaxFs::fsck(&t.path, false).unwrap(), vec![]);

    let fs = t.open();
    assert_eq!(fs.bad_ranges(), want, "the ranges survive a reopen");
    // An adjacent inject coalesces; clearing the middle of a range splits it.
    let r0 = want[0];
    mf::inject_region(&fs, (r0.0 + r0.1) * PAGE, 10 * PAGE, &NoInvalidate).unwrap();
    assert_eq!(fs.bad_ranges()[0], (r0.0, 1010));
    assert_eq!(fs.bad_ranges().len(), 1000);
    let cleared = mf::clear_region(&fs, (r0.0 + 100) * PAGE, 50 * PAGE, &NoInvalidate).unwrap();
    assert_eq!((cleared.blocks, cleared.already), (50, 0));
    assert_eq!(cleared.range, ((r0.0 + 100) * PAGE, (r0.0 + 150) * PAGE));
    assert_eq!(fs.bad_ranges()[..2], [(r0.0, 100), (r0.0 + 150, 860)]);
    assert_eq!(blocks(&fs.bad_ranges()), 1_000_000 + 10 - 50);
    fs.close().unwrap();
    assert_eq!(DaxFs::fsck(&t.path, false).unwrap(), vec![]);
    let fs = t.open();
    assert_eq!(fs.bad_ranges().len(), 1001);
    assert_eq!(fs.region_stat().bad_blocks, 999_960);
}

#[test]
fn the_old_fixed_table_mounts_and_is_rewritten_as_ranges_on_its_first_change() {
    let t = region(64 << 20);
    let v1 = encode_bad_table_v1(&[10_005, 10_000, 10_001]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&t.path)
        .unwrap()
        .write_all_at(&v1, TABLE_OFF)
        .unwrap();
    let fs = t.open();
    assert_eq!(fs.bad_ranges(), vec![(10_000, 2), (10_005, 1)]);
    assert_eq!(&table_magic(&t.path), b"DXBB", "reading does not rewrite");
    mf::inject_region(&fs, 10_002 * PAGE, PAGE, &NoInvalidate).unwrap();
    assert_eq!(&table_magic(&t.path), b"DXB2", "the first change upgrades");
    fs.close().unwrap();
    assert_eq!(DaxFs::fsck(&t.path, false).unwrap(), vec![]);
    let fs = t.open();
    assert_eq!(fs.bad_ranges(), vec![(10_000, 3), (10_005, 1)]);
}

/// A file of `len` bytes written with a pattern, its mapping PMD entries where possible.
fn pattern_file(fs: &DaxFs, name: &str, len: u64) -> (Ino, impl Fn(u64) -> Vec<u8>) {
    let (a, _) = fs
        .create(ROOT_INO, OsStr::new(name), 0o644, 0, &Ctx::root())
        .unwrap();
    let page = |p: u64| -> Vec<u8> {
        let mut v = vec![(p % 251) as u8; PAGE as usize];
        v[..8].copy_from_slice(&p.to_le_bytes());
        v
    };
    let chunk = 8 << 20;
    let mut at = 0;
    while at < len {
        let buf: Vec<u8> = (at / PAGE..(at + chunk).min(len) / PAGE)
            .flat_map(page)
            .collect();
        fs.write(a.ino, at, &buf, &Ctx::root()).unwrap();
        at += chunk;
    }
    (a.ino, page)
}

#[test]
fn a_whole_pmd_and_a_gib_are_poisoned_by_one_call_each() {
    let t = region(1600 << 20);
    let fs = t.open();
    let len = (1 << 30) + (8 << 20);
    let (ino, page) = pattern_file(&fs, "big", len);
    let pmds = fs.mappings(ino).unwrap();
    assert!(pmds.iter().all(|m| m.order == 9), "the file is PMD-mapped");
    let mut buf = vec![0u8; PAGE as usize];

    // One PMD.
    let inval = RecordingInvalidator::new();
    let started = Instant::now();
    let r = mf::inject_file(&fs, ino, 0, 2 << 20, &inval).unwrap();
    eprintln!("inject of one PMD: {:?}", started.elapsed());
    assert_eq!(r.pages, vec![(ino, 0, 512)]);
    assert_eq!(r.blocks, 512);
    assert_eq!(
        inval.calls(),
        vec![(ino, 0, 2 << 20)],
        "unmapped as one 2 MiB unit"
    );
    assert_eq!(fs.bad_ranges(), vec![(pmds[0].region_block, 512)]);
    for p in 0..512 {
        assert_eq!(
            fs.read(ino, p * PAGE, &mut buf),
            Err(Errno::EIO),
            "page {p}"
        );
    }
    fs.read(ino, 512 * PAGE, &mut buf).unwrap();
    assert_eq!(buf, page(512));
    let (bad, m): (Vec<_>, Vec<_>) = fs
        .mappings(ino)
        .unwrap()
        .into_iter()
        .partition(|e| e.poisoned());
    assert_eq!(
        bad.iter().map(|e| e.file_index).collect::<Vec<_>>(),
        (0..512).collect::<Vec<_>>(),
        "the mappings show each poisoned page"
    );
    assert!(
        m.iter().all(|e| e.file_index >= 512),
        "the PMD entry is gone"
    );
    assert_eq!(
        (m[0].file_index, m[0].order),
        (512, 9),
        "its neighbour is intact"
    );

    // One GiB (from 4 MiB on), in one call.
    let inval = RecordingInvalidator::new();
    let started = Instant::now();
    let r = mf::inject_file(&fs, ino, 4 << 20, 1 << 30, &inval).unwrap();
    eprintln!("inject of 1 GiB: {:?}", started.elapsed());
    assert_eq!(r.pages_poisoned(), 262_144);
    assert_eq!(r.blocks, 262_144);
    assert_eq!(
        inval.calls().len(),
        512,
        "every PMD entry of the GiB invalidated"
    );
    assert_eq!(blocks(&fs.bad_ranges()), 512 + 262_144);
    let (gib0, gib1) = (1024, 1024 + 262_144);
    for p in (gib0..gib1).step_by(997).chain([gib0, gib1 - 1]) {
        assert_eq!(
            fs.read(ino, p * PAGE, &mut buf),
            Err(Errno::EIO),
            "page {p}"
        );
    }
    for p in [512, gib0 - 1, gib1, len / PAGE - 1] {
        fs.read(ino, p * PAGE, &mut buf).unwrap();
        assert_eq!(buf, page(p), "page {p} around the poisoned GiB");
    }
    let listed = mf::list(&fs);
    assert_eq!(
        blocks(&listed.iter().map(|b| (0, b.len / PAGE)).collect::<Vec<_>>()),
        512 + 262_144
    );
    assert!(listed.iter().all(|b| b.ino == Some(ino)));
    fs.close().unwrap();
    assert_eq!(DaxFs::fsck(&t.path, false).unwrap(), vec![]);
    let fs = t.open();
    assert_eq!(blocks(&fs.bad_ranges()), 512 + 262_144);
    assert_eq!(fs.read(ino, (gib0 + 5) * PAGE, &mut buf), Err(Errno::EIO));
    fs.read(ino, gib1 * PAGE, &mut buf).unwrap();
    assert_eq!(buf, page(gib1), "after remount too");
    // Clearing the GiB is one call too: its pages become holes, its blocks leave the table.
    let c = mf::clear_file(&fs, ino, 4 << 20, 1 << 30, &NoInvalidate).unwrap();
    assert_eq!(
        (c.pages_cleared(), c.blocks, c.already),
        (262_144, 262_144, 0)
    );
    assert_eq!((c.range, c.files()), ((4 << 20, (4 << 20) + (1 << 30)), 1));
    assert_eq!(blocks(&fs.bad_ranges()), 512);
    fs.read(ino, (gib0 + 5) * PAGE, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0), "a cleared page reads zeros");
}

#[test]
fn a_failed_inject_leaves_nothing_poisoned() {
    let t = region(64 << 20);
    let fs = t.open();
    let (ino, page) = pattern_file(&fs, "f", 1 << 20);
    // Beyond the end of the file partway.
    assert_eq!(
        mf::inject_file(&fs, ino, 512 << 10, 1 << 20, &NoInvalidate).map(|_| ()),
        Err(Errno::EINVAL)
    );
    // Beyond the end of the region partway.
    let blk = fs.file_block(ino, 0).unwrap().unwrap();
    let size = fs.region_stat().size;
    assert_eq!(
        mf::inject_region(&fs, size - PAGE, 2 * PAGE, &NoInvalidate).map(|_| ()),
        Err(Errno::EINVAL)
    );
    assert!(fs.bad_ranges().is_empty());
    let mut buf = vec![0u8; PAGE as usize];
    for p in 0..256 {
        fs.read(ino, p * PAGE, &mut buf).unwrap();
        assert_eq!(buf, page(p));
    }
    // A read-only filesystem refuses before anything changes, too.
    fs.close().unwrap();
    let ro = DaxFs::open(
        &t.path,
        &OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        mf::inject_region(&ro, blk * PAGE, PAGE, &NoInvalidate).map(|_| ()),
        Err(Errno::EROFS)
    );
    assert_eq!(
        mf::inject_file(&ro, ino, 0, 4 * PAGE, &NoInvalidate).map(|_| ()),
        Err(Errno::EROFS)
    );
    assert!(ro.bad_ranges().is_empty());
    ro.read(ino, 0, &mut buf).unwrap();
    assert_eq!(buf, page(0));
}

#[test]
fn the_range_chain_is_copy_on_write_and_a_stale_chain_block_is_never_trusted() {
    let t = region(256 << 20);
    let fs = t.open();
    let first = 20_000;
    for i in 0..300u64 {
        mf::inject_region(&fs, (first + i * 3) * PAGE, PAGE, &NoInvalidate).unwrap();
    }
    let old = fs.bad_table_blocks();
    assert_eq!(old.len(), 1, "300 ranges: 252 inline, one range block");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&t.path)
        .unwrap();
    let mut stale = vec![0u8; PAGE as usize];
    f.read_exact_at(&mut stale, old[0] * PAGE).unwrap();
    mf::inject_region(&fs, (first + 900) * PAGE, PAGE, &NoInvalidate).unwrap();
    let new = fs.bad_table_blocks();
    assert_eq!(new.len(), 1);
    assert_ne!(new, old, "the new chain went to a fresh block");
    fs.close().unwrap();
    assert_eq!(DaxFs::fsck(&t.path, false).unwrap(), vec![]);
    // The previous version of the range block, where the table now points (what a torn update
    // that reused blocks would leave): found, not served.
    f.write_all_at(&stale, new[0] * PAGE).unwrap();
    let found = DaxFs::fsck(&t.path, false).unwrap();
    assert!(
        found.contains(&CorruptReason::BadTable(DecodeError::BadChainStale)),
        "{found:?}"
    );
    assert!(DaxFs::open(&t.path, &OpenOptions::default()).is_err());
    // fsck --repair resets the damaged table: then fsck is clean and the region mounts, with
    // no bad range left (the damaged record cannot be trusted for any of them).
    let repaired = DaxFs::fsck(&t.path, true).unwrap();
    assert!(
        repaired.contains(&CorruptReason::BadTable(DecodeError::BadChainStale)),
        "{repaired:?}"
    );
    assert_eq!(DaxFs::fsck(&t.path, false).unwrap(), vec![]);
    let fs = DaxFs::open(&t.path, &OpenOptions::default()).unwrap();
    assert!(fs.bad_ranges().is_empty(), "{:?}", fs.bad_ranges());
    mf::inject_region(&fs, (first + 5) * PAGE, PAGE, &NoInvalidate).unwrap();
    assert_eq!(
        fs.bad_ranges(),
        vec![(first + 5, 1)],
        "the reset table takes new ranges"
    );
    fs.close().unwrap();
    assert_eq!(DaxFs::fsck(&t.path, false).unwrap(), vec![]);
}

#[test]
fn region_inject_poisons_every_file_page_on_the_range_in_one_record() {
    let t = region(64 << 20);
    let fs = open(&t.path);
    let (ino, page) = pattern_file(&fs, "f", 4 << 20);
    let b0 = fs.file_block(ino, 0).unwrap().unwrap();
    assert_eq!(
        fs.file_block(ino, 1023).unwrap(),
        Some(b0 + 1023),
        "contiguous"
    );
    let inval = RecordingInvalidator::new();
    // Pages 100..700: across the boundary of two PMD entries.
    let r = mf::inject_region(&fs, (b0 + 100) * PAGE, 600 * PAGE, &inval).unwrap();
    assert_eq!((r.blocks, r.pages_poisoned()), (600, 600));
    assert_eq!(
        inval.calls(),
        vec![(ino, 0, 2 << 20), (ino, 2 << 20, 2 << 20)]
    );
    assert_eq!(fs.bad_ranges(), vec![(b0 + 100, 600)]);
    let mut buf = vec![0u8; PAGE as usize];
    for p in [0, 99, 700, 1023] {
        fs.read(ino, p * PAGE, &mut buf).unwrap();
        assert_eq!(buf, page(p), "page {p}");
    }
    for p in [100, 511, 512, 699] {
        assert_eq!(
            fs.read(ino, p * PAGE, &mut buf),
            Err(Errno::EIO),
            "page {p}"
        );
    }
    let (bad, m): (Vec<_>, Vec<_>) = fs
        .mappings(ino)
        .unwrap()
        .into_iter()
        .partition(|e| e.poisoned());
    assert_eq!(bad.len(), 600, "the mappings show each poisoned page");
    assert_eq!(
        m.len(),
        100 + 324,
        "both PMD entries split into the pages that remain"
    );
    assert!(m.iter().all(|e| e.order == 0));
    let listed = mf::list(&fs);
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].ino, listed[0].file_offset, listed[0].len),
        (Some(ino), Some(100 * PAGE), 600 * PAGE)
    );
}
