//! DAX entries on the filesystem's data path (issue 3, "In the filesystem" and acceptance 4):
//! PMD entries for 2 MiB-aligned runs, splitting on punch hole, reads served under entry locks,
//! truncate waiting for a locked entry, eviction of the mapping. Mounted tests use the shared
//! mount guard (`tests/common`).

mod common;

use std::ffi::OsStr;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use common::embedded::{open, region};
use common::*;
use daxfs::dax::{DAX_LOCKED, DAX_PMD};
use daxfs::fs::*;

/// `daxfs stat --mappings FILE` as `(file index, "pmd"|"pte", region block, flags)`.
fn mappings(file: &Path) -> Vec<(u64, String, u64, u64)> {
    daxfs_ok([OsStr::new("stat"), "--mappings".as_ref(), file.as_os_str()])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 4, "{l}");
            (
                f[0].parse().unwrap(),
                f[1].to_string(),
                f[2].parse().unwrap(),
                u64::from_str_radix(f[3].trim_start_matches("0x"), 16).unwrap(),
            )
        })
        .collect()
}

#[test]
fn four_mib_in_2m_pieces_is_two_pmd_entries_and_a_punched_page_splits_one() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    let path = m.p("big");
    let data = pattern(7, 4 << 20);
    {
        let f = std::fs::File::create(&path).unwrap();
        f.write_all_at(&data[..2 << 20], 0).unwrap();
        f.write_all_at(&data[2 << 20..], 2 << 20).unwrap();
    }
    let maps = mappings(&path);
    assert_eq!(maps.len(), 2, "{maps:?}");
    assert_eq!((maps[0].0, maps[0].1.as_str()), (0, "pmd"));
    assert_eq!((maps[1].0, maps[1].1.as_str()), (512, "pmd"));
    for e in &maps {
        assert_eq!(e.2 % 512, 0, "PMD block not 2 MiB-aligned: {e:?}");
        assert_eq!(e.3, DAX_PMD, "flags of an unlocked PMD entry: {e:?}");
    }
    let pmd0 = maps[0].2;

    // Punch one 4 KiB page: the first entry becomes 511 PTE entries, the second stays PMD.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&path)
        .unwrap();
    // SAFETY: fallocate on an open descriptor with plain integer arguments.
    let rc = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            100 * 4096,
            4096,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let maps = mappings(&path);
    assert_eq!(maps.len(), 512, "511 PTE + 1 PMD expected");
    for (i, e) in maps[..511].iter().enumerate() {
        let page = if i < 100 { i as u64 } else { i as u64 + 1 };
        assert_eq!(
            (e.0, e.1.as_str(), e.2, e.3),
            (page, "pte", pmd0 + page, 0),
            "entry {i}"
        );
    }
    assert_eq!((maps[511].0, maps[511].1.as_str()), (512, "pmd"));
    // The bytes around the hole are intact; the hole reads zeros.
    let mut b = vec![0u8; 3 * 4096];
    f.read_exact_at(&mut b, 99 * 4096).unwrap();
    assert_eq!(&b[..4096], &data[99 * 4096..100 * 4096]);
    assert!(b[4096..8192].iter().all(|&x| x == 0));
    assert_eq!(&b[8192..], &data[101 * 4096..102 * 4096]);
    drop(f);
    m.unmount();
    // After a remount the map is rebuilt the same way: PTE entries around the hole, one PMD.
    let m = r.mount("");
    let maps = mappings(&m.p("big"));
    assert_eq!(maps.len(), 512);
    assert_eq!(maps[511].1, "pmd");
    m.unmount();
}

#[test]
fn a_read_sends_its_reply_while_the_entries_are_locked() {
    let t = region(64 << 20);
    let fs = open(&t.path);
    let (a, _) = fs
        .create(ROOT_INO, OsStr::new("f"), 0o644, 0, &Ctx::root())
        .unwrap();
    fs.fallocate(a.ino, 0, 4 << 20, 0, &Ctx::root()).unwrap();
    fs.write(a.ino, (2 << 20) - 4096, &[9u8; 8192], &Ctx::root())
        .unwrap();
    let dax = fs.dax_mapping(a.ino).unwrap();
    let locked_during = fs
        .read_with(a.ino, (2 << 20) - 4096, 8192, |s| {
            assert_eq!(s, &[9u8; 8192][..]);
            dax.mappings()
                .iter()
                .filter(|m| m.entry.is_locked())
                .map(|m| (m.index, m.order))
                .collect::<Vec<_>>()
        })
        .unwrap();
    // Both PMD entries the read touched were locked while the reply was sent, and only those.
    assert_eq!(locked_during, vec![(0, 9), (512, 9)]);
    assert!(dax
        .mappings()
        .iter()
        .all(|m| m.entry.flags() & DAX_LOCKED == 0));
    dax.check_invariants().unwrap();
}

#[test]
fn truncate_waits_for_a_locked_entry_and_eviction_kills_the_mapping() {
    let t = region(64 << 20);
    let fs = std::sync::Arc::new(open(&t.path));
    let (a, fh) = fs
        .create(ROOT_INO, OsStr::new("f"), 0o644, 0, &Ctx::root())
        .unwrap();
    fs.write(a.ino, 0, &[1u8; 3 << 20], &Ctx::root()).unwrap();
    let dax = fs.dax_mapping(a.ino).unwrap();
    let held = dax.lock_entry(700).unwrap().expect("entry at page 700");
    assert_eq!(held.order(), 9, "page 700 lies in the second PMD entry");
    let (tx, rx) = mpsc::channel();
    let fs2 = fs.clone();
    let h = std::thread::spawn(move || {
        let set = SetAttr {
            size: Some(4096),
            ..Default::default()
        };
        fs2.setattr(a.ino, &set, &Ctx::root()).unwrap();
        tx.send(()).unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "truncate did not wait for the locked entry"
    );
    drop(held);
    rx.recv_timeout(Duration::from_secs(10))
        .expect("truncate never finished after the unlock");
    h.join().unwrap();
    let maps = dax.mappings();
    assert_eq!(maps.len(), 1, "{maps:?}");
    assert_eq!((maps[0].index, maps[0].order), (0, 0));
    dax.check_invariants().unwrap();
    // Unlink + last close + forget evicts the inode and its mapping.
    fs.unlink(ROOT_INO, OsStr::new("f"), &Ctx::root()).unwrap();
    fs.release(a.ino, fh).unwrap();
    fs.forget(a.ino, 1);
    assert!(!dax.is_alive(), "evicted inode's DAX mapping still alive");
    assert!(dax.lock_entry(0).is_err());
}
