//! The hugepage-aware allocator through the embedded API: 2 MiB-aligned files get 2 MiB-aligned
//! region blocks (order-9 mappings), and ENOSPC is clean and recoverable.

use std::ffi::OsStr;

use daxfs::fs::*;

mod embedded;
use embedded::{open, region_with_inodes};

const MB2: u64 = 2 << 20;

/// Fills every free block with 0xee, then frees them all: stale bytes would show afterwards.
fn fill_with_junk(fs: &DaxFs) {
    let c = Ctx::root();
    let (junk, jfh) = fs
        .create(ROOT_INO, OsStr::new("junk"), 0o644, 0, &c)
        .unwrap();
    let chunk = vec![0xeeu8; 1 << 20];
    let mut off = 0;
    while fs.write(junk.ino, off, &chunk, &c).is_ok() {
        off += 1 << 20;
    }
    while fs.write(junk.ino, off, &chunk[..4096], &c).is_ok() {
        off += 4096;
    }
    assert_eq!(fs.statfs().unwrap().bavail, 0);
    fs.release(junk.ino, jfh).unwrap();
    fs.unlink(ROOT_INO, OsStr::new("junk"), &c).unwrap();
    fs.forget(junk.ino, 1);
}

fn assert_pmd_mapped(maps: &[MappingInfo], chunks: u64) {
    assert_eq!(maps.len() as u64, chunks, "{maps:?}");
    for (i, m) in maps.iter().enumerate() {
        assert_eq!(m.order, 9, "{m:?}");
        assert_eq!(m.file_index, i as u64 * 512);
        assert_eq!(
            m.region_block % 512,
            0,
            "region block not 2 MiB aligned: {m:?}"
        );
    }
}

#[test]
fn file_written_in_2m_pieces_gets_2m_aligned_blocks() {
    let t = region_with_inodes(128 << 20, Some(1024));
    let path = t.path.clone();
    let ino;
    {
        let fs = open(&path);
        // Fragment the free space with small files first.
        for i in 0..20 {
            let (a, _) = fs
                .create(
                    ROOT_INO,
                    OsStr::new(&format!("small{i}")),
                    0o644,
                    0,
                    &Ctx::root(),
                )
                .unwrap();
            fs.write(a.ino, 0, &[1u8; 5000], &Ctx::root()).unwrap();
        }
        let (a, fh) = fs
            .create(ROOT_INO, OsStr::new("big"), 0o644, 0, &Ctx::root())
            .unwrap();
        ino = a.ino;
        let piece: Vec<u8> = (0..MB2).map(|i| (i % 251) as u8).collect();
        for k in 0..8u64 {
            fs.write(a.ino, k * MB2, &piece, &Ctx::root()).unwrap();
        }
        assert_pmd_mapped(&fs.mappings(a.ino).unwrap(), 8);
        // The data path serves a whole 2 MiB piece as one slice from the mapping.
        let ok = fs
            .read_with(a.ino, 3 * MB2, MB2 as u32, |s| s == &piece[..])
            .unwrap();
        assert!(ok);
        fs.release(a.ino, fh).unwrap();
        fs.close().unwrap();
    }
    // The block map survives reopen with the same PMD entries.
    let fs = open(&path);
    assert_pmd_mapped(&fs.mappings(ino).unwrap(), 8);
    let st = fs.getattr(ino).unwrap();
    assert_eq!(st.size, 8 * MB2);
    assert_eq!(st.blocks, 8 * MB2 / 512);
}

#[test]
fn large_write_and_fallocate_use_2m_runs_small_ones_do_not_break_them() {
    let t = region_with_inodes(64 << 20, Some(1024));
    let path = t.path.clone();
    let fs = open(&path);
    let runs0 = fs.region_stat().free_2m_runs;
    let (a, _) = fs
        .create(ROOT_INO, OsStr::new("grow"), 0o644, 0, &Ctx::root())
        .unwrap();
    // One 6 MiB write at 0: three PMD entries.
    fs.write(a.ino, 0, &vec![7u8; 3 * MB2 as usize], &Ctx::root())
        .unwrap();
    assert_pmd_mapped(&fs.mappings(a.ino).unwrap(), 3);
    let (b, _) = fs
        .create(ROOT_INO, OsStr::new("falloc"), 0o644, 0, &Ctx::root())
        .unwrap();
    fs.fallocate(b.ino, 0, 2 * MB2, 0, &Ctx::root()).unwrap();
    assert_pmd_mapped(&fs.mappings(b.ino).unwrap(), 2);
    let runs1 = fs.region_stat().free_2m_runs;
    assert_eq!(runs0 - runs1, 5);
    // Many small files fill partial chunks before breaking whole free runs.
    for i in 0..50 {
        let (c, _) = fs
            .create(
                ROOT_INO,
                OsStr::new(&format!("s{i}")),
                0o644,
                0,
                &Ctx::root(),
            )
            .unwrap();
        fs.write(c.ino, 0, &[1u8; 4096], &Ctx::root()).unwrap();
        for m in fs.mappings(c.ino).unwrap() {
            assert_eq!(m.order, 0);
        }
    }
    // 50 blocks fit in the partial first chunk, so no whole run is broken.
    assert_eq!(fs.region_stat().free_2m_runs, runs1);
}

#[test]
fn enospc_then_recovers_after_free() {
    let t = region_with_inodes(32 << 20, Some(1024));
    let path = t.path.clone();
    let fs = open(&path);
    let c = Ctx::root();
    let mut files = Vec::new();
    let chunk = vec![0xabu8; 1 << 20];
    let mut full = false;
    'outer: for i in 0..100 {
        let (a, fh) = fs
            .create(ROOT_INO, OsStr::new(&format!("f{i}")), 0o644, 0, &c)
            .unwrap();
        files.push((a.ino, fh, format!("f{i}")));
        for k in 0..4u64 {
            match fs.write(a.ino, k << 20, &chunk, &c) {
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e, Errno::ENOSPC);
                    full = true;
                    break 'outer;
                }
            }
        }
    }
    assert!(full, "the region never filled");
    assert_eq!(fs.statfs().unwrap().bfree, fs.statfs().unwrap().bfree);
    // A failed write leaves no half-allocated pages past EOF.
    let (last, _, _) = files.last().unwrap();
    let at = fs.getattr(*last).unwrap();
    assert_eq!(at.blocks * 512, at.size.next_multiple_of(4096));
    // fallocate also fails cleanly.
    assert_eq!(
        fs.fallocate(*last, 64 << 20, 1 << 20, 0, &c),
        Err(Errno::ENOSPC)
    );
    // Everything written so far reads back.
    let mut buf = vec![0u8; 1 << 20];
    let (first, _, _) = &files[0];
    assert_eq!(fs.read(*first, 0, &mut buf).unwrap(), 1 << 20);
    assert_eq!(buf, chunk);
    // Free some space: delete half the files.
    for (ino, fh, name) in files.iter().step_by(2) {
        fs.release(*ino, *fh).unwrap();
        fs.unlink(ROOT_INO, OsStr::new(name), &c).unwrap();
        fs.forget(*ino, 1);
    }
    let free = fs.statfs().unwrap().bfree;
    assert!(free >= 2 * 256, "space was not returned: {free}");
    // Writing works again, including a fresh 2 MiB-aligned run if one was freed whole.
    let (n, fh) = fs
        .create(ROOT_INO, OsStr::new("again"), 0o644, 0, &c)
        .unwrap();
    fs.write(n.ino, 0, &chunk, &c).unwrap();
    fs.fsync(n.ino, false).unwrap();
    fs.release(n.ino, fh).unwrap();
    for (ino, fh, _) in files.iter().skip(1).step_by(2) {
        fs.release(*ino, *fh).unwrap();
    }
    fs.close().unwrap();
    let probs = DaxFs::fsck(&path, false).unwrap();
    assert!(probs.is_empty(), "{probs:?}");
    let fs = open(&path);
    let a = fs.lookup(ROOT_INO, OsStr::new("again")).unwrap();
    assert_eq!(fs.read(a.ino, 0, &mut buf).unwrap(), 1 << 20);
    assert_eq!(buf, chunk);
}

#[test]
fn inode_exhaustion_is_enospc() {
    let t = region_with_inodes(32 << 20, Some(1024));
    let path = t.path.clone();
    let fs = open(&path);
    let mut made = 0;
    loop {
        match fs.mknod(
            ROOT_INO,
            OsStr::new(&format!("n{made}")),
            libc::S_IFREG | 0o644,
            0,
            &Ctx::root(),
        ) {
            Ok(_) => made += 1,
            Err(e) => {
                assert_eq!(e, Errno::ENOSPC);
                break;
            }
        }
    }
    assert_eq!(made, 1023);
    assert_eq!(fs.statfs().unwrap().ffree, 0);
    let ino5 = fs.lookup(ROOT_INO, OsStr::new("n5")).unwrap().ino;
    fs.unlink(ROOT_INO, OsStr::new("n5"), &Ctx::root()).unwrap();
    // Still referenced by the kernel (mknod + lookup): not freed yet.
    assert_eq!(fs.statfs().unwrap().ffree, 0);
    fs.forget(ino5, 2);
    assert_eq!(fs.statfs().unwrap().ffree, 1);
    let again = fs
        .mknod(
            ROOT_INO,
            OsStr::new("again"),
            libc::S_IFREG | 0o644,
            0,
            &Ctx::root(),
        )
        .unwrap();
    // The number is reused with a new generation.
    assert_eq!(again.ino, ino5);
    assert!(again.generation > 1);
}

#[test]
fn streaming_small_writes_get_pmd_runs_and_prealloc_is_never_stale() {
    let t = region_with_inodes(64 << 20, Some(1024));
    let path = t.path.clone();
    let c = Ctx::root();
    let ino;
    {
        let fs = open(&path);
        // Dirty the free space so that stale bytes would show.
        fill_with_junk(&fs);
        // A FUSE-like stream: 128 KiB writes, 6 MiB + 100 bytes.
        let (a, fh) = fs
            .create(ROOT_INO, OsStr::new("stream"), 0o644, 0, &c)
            .unwrap();
        ino = a.ino;
        let total = 3 * MB2 + 100;
        let piece = vec![0x11u8; 128 << 10];
        let mut off = 0u64;
        while off < total {
            let n = (total - off).min(piece.len() as u64) as usize;
            fs.write(a.ino, off, &piece[..n], &c).unwrap();
            off += n as u64;
        }
        let maps = fs.mappings(a.ino).unwrap();
        // The first 2 MiB is PTE-mapped (the file was small); the next two chunks are PMDs.
        let pmds: Vec<_> = maps.iter().filter(|m| m.order == 9).collect();
        assert_eq!(pmds.len(), 3, "{maps:?}");
        assert!(pmds
            .iter()
            .all(|m| m.region_block % 512 == 0 && m.file_index % 512 == 0));
        // Growing the file over the preallocated tail shows zeros, never stale bytes.
        fs.setattr(
            a.ino,
            &SetAttr {
                size: Some(4 * MB2 - 10),
                ..Default::default()
            },
            &c,
        )
        .unwrap();
        let mut buf = vec![1u8; MB2 as usize];
        let got = fs.read(a.ino, 3 * MB2, &mut buf).unwrap();
        assert_eq!(got as u64, MB2 - 10);
        assert!(buf[..100].iter().all(|&x| x == 0x11));
        assert!(
            buf[100..got].iter().all(|&x| x == 0),
            "stale bytes in a preallocated block"
        );
        fs.release(a.ino, fh).unwrap();
        fs.close().unwrap();
    }
    let fs = open(&path);
    assert_eq!(fs.getattr(ino).unwrap().size, 4 * MB2 - 10);
    let mut buf = vec![1u8; MB2 as usize];
    let got = fs.read(ino, 3 * MB2, &mut buf).unwrap();
    assert!(buf[100..got].iter().all(|&x| x == 0));
    drop(fs);
    assert!(DaxFs::fsck(&path, false).unwrap().is_empty());
}

#[test]
fn preallocated_tail_is_zeroed_before_commit() {
    let t = region_with_inodes(64 << 20, Some(1024));
    let path = t.path.clone();
    let c = Ctx::root();
    let fs = open(&path);
    fill_with_junk(&fs);
    let (a, _fh) = fs.create(ROOT_INO, OsStr::new("f"), 0o644, 0, &c).unwrap();
    fs.write(a.ino, 0, &vec![1u8; 600 << 10], &c).unwrap();
    fs.fsync(a.ino, false).unwrap();
    // The whole run is mapped (still open, not trimmed) and every byte past EOF is zero.
    let m = fs.mappings(a.ino).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].order, 9);
    let mut blk = vec![0u8; (MB2 - (600 << 10)) as usize];
    fs.region()
        .read_at(m[0].region_block * 4096 + (600 << 10), &mut blk)
        .unwrap();
    assert!(blk.iter().all(|&x| x == 0));
}

#[test]
fn poisoned_pmd_is_split_and_stays_split_after_reopen() {
    let t = region_with_inodes(64 << 20, Some(1024));
    let path = t.path.clone();
    let c = Ctx::root();
    let ino;
    let bad;
    {
        let fs = open(&path);
        let (a, fh) = fs.create(ROOT_INO, OsStr::new("f"), 0o644, 0, &c).unwrap();
        ino = a.ino;
        fs.write(a.ino, 0, &vec![9u8; 2 * MB2 as usize], &c)
            .unwrap();
        fs.release(a.ino, fh).unwrap();
        assert_pmd_mapped(&fs.mappings(a.ino).unwrap(), 2);
        bad = fs.file_block(a.ino, 700).unwrap().unwrap();
        // Recording the bad block poisons page 700: its PMD entry is split around it (the
        // poisoned page has no entry), so there is nothing left for split_pmd to split.
        daxfs::memory_failure::inject_region(
            &fs,
            (bad) * 4096,
            4096,
            &daxfs::memory_failure::NoInvalidate,
        )
        .map(|_| ())
        .unwrap();
        assert!(!fs.split_pmd(a.ino, 700).unwrap());
        assert!(fs.split_pmd(a.ino, 10).unwrap());
        assert!(!fs.split_pmd(a.ino, 10).unwrap());
        let m = fs.mappings(a.ino).unwrap();
        assert_eq!(
            m.len(),
            512 + 512,
            "511 entries and the poisoned page's line"
        );
        assert!(m.iter().all(|e| e.order == 0));
        let bad_lines: Vec<_> = m.iter().filter(|e| e.poisoned()).collect();
        assert_eq!(bad_lines.len(), 1);
        assert_eq!(
            (bad_lines[0].file_index, bad_lines[0].region_block),
            (700, bad)
        );
        // Other pages of the split range still read; the bad one fails.
        let mut b = vec![0u8; 4096];
        assert_eq!(fs.read(a.ino, 699 * 4096, &mut b).unwrap(), 4096);
        assert_eq!(fs.read(a.ino, 700 * 4096, &mut b), Err(Errno::EIO));
        fs.close().unwrap();
    }
    let fs = open(&path);
    let m = fs.mappings(ino).unwrap();
    assert_eq!(
        m.len(),
        1 + 512,
        "the bad run was merged back into a PMD entry (511 entries and the poisoned page)"
    );
    assert_eq!(m[0].order, 9, "the clean run is a PMD entry again");
    assert_eq!(fs.bad_ranges(), vec![(bad, 1)]);
}
