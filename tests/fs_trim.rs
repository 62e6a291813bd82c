//! `FITRIM` through the embedded API (no FUSE): free blocks are punched out of the region file
//! (its allocated size drops, the bytes reported match), file data and fsck are untouched, the
//! punched space is reserved again when it is allocated, and ext4's argument errors.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;

use daxfs::fs::*;

mod embedded;
use embedded::{open, region};

fn n(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Bytes the backing filesystem holds for the region file.
fn allocated(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).unwrap().blocks() * 512
}

#[test]
fn trim_hands_free_blocks_back_and_keeps_data() {
    let t = region(64 << 20);
    let fs = open(&t.path);
    let c = Ctx::root();
    let (keep, _) = fs.create(ROOT_INO, n("keep"), 0o644, 0, &c).unwrap();
    let data: Vec<u8> = (0..(3 << 20)).map(|i| (i % 251) as u8).collect();
    fs.write(keep.ino, 0, &data, &c).unwrap();
    let (gone, fh) = fs.create(ROOT_INO, n("gone"), 0o644, 0, &c).unwrap();
    fs.write(gone.ino, 0, &vec![0x5a; 20 << 20], &c).unwrap();
    fs.fsync(gone.ino, false).unwrap();
    fs.release(gone.ino, fh).unwrap();
    fs.unlink(ROOT_INO, n("gone"), &c).unwrap();
    fs.forget(gone.ino, 1);
    fs.fsync(keep.ino, false).unwrap();
    let before = allocated(&t.path);
    let stat = fs.region_stat();
    let trimmed = fs.trim(0, u64::MAX, 0, &c).unwrap();
    let after = allocated(&t.path);
    // Every free block is reported once (no minlen), and the file lost about that much storage
    // (the unlinked file's 20 MiB at least).
    assert_eq!(trimmed, stat.free_blocks * 4096, "{stat:?}");
    assert!(before - after >= 20 << 20, "before {before} after {after}");
    assert!(
        before - after <= trimmed,
        "before {before} after {after} trimmed {trimmed}"
    );
    let mut got = vec![0u8; data.len()];
    assert_eq!(fs.read(keep.ino, 0, &mut got).unwrap(), data.len());
    assert!(got == data, "the kept file's bytes changed");
    // A second trim finds the same free blocks (the allocator does not know what was punched)
    // and punches nothing more.
    assert_eq!(fs.trim(0, u64::MAX, 0, &c).unwrap(), trimmed);
    assert_eq!(allocated(&t.path), after);
    // minlen larger than every free run but the big one: fewer bytes.
    let big = fs.trim(0, u64::MAX, 8 << 20, &c).unwrap();
    assert!(big > 0 && big <= trimmed, "{big} of {trimmed}");
    // Allocating into punched space reserves it again, and the data is what was written.
    let (again, _) = fs.create(ROOT_INO, n("again"), 0o644, 0, &c).unwrap();
    fs.write(again.ino, 0, &vec![0x33; 8 << 20], &c).unwrap();
    assert!(allocated(&t.path) >= after + (8 << 20));
    let mut b = vec![0u8; 8 << 20];
    fs.read(again.ino, 0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0x33));
    fs.close().unwrap();
    assert_eq!(DaxFs::fsck(&t.path, false).unwrap(), Vec::new());
}

#[test]
fn trim_rejects_what_ext4_rejects() {
    let t = region(32 << 20);
    let fs = open(&t.path);
    let c = Ctx::root();
    let size = 32u64 << 20;
    assert_eq!(fs.trim(0, 0, 0, &c), Err(Errno::EINVAL), "len 0");
    assert_eq!(
        fs.trim(0, 100, 0, &c),
        Err(Errno::EINVAL),
        "len under a block"
    );
    assert_eq!(
        fs.trim(size, 1 << 20, 0, &c),
        Err(Errno::EINVAL),
        "start at the end"
    );
    assert_eq!(
        fs.trim(u64::MAX, 1 << 20, 0, &c),
        Err(Errno::EINVAL),
        "start 2^64-1"
    );
    assert_eq!(
        fs.trim(0, u64::MAX, size * 2, &c),
        Err(Errno::EINVAL),
        "minlen"
    );
    let user = Ctx {
        uid: 1000,
        gid: 1000,
        pid: 1,
    };
    assert_eq!(fs.trim(0, u64::MAX, 0, &user), Err(Errno::EPERM));
    // A length past the end is cut at the end; a start inside the region counts from there.
    let all = fs.trim(0, u64::MAX, 0, &c).unwrap();
    let tail = fs.trim(10 << 20, u64::MAX, 0, &c).unwrap();
    assert!(tail < all && tail > 0, "{tail} of {all}");
    fs.close().unwrap();
    let ro = DaxFs::open(
        &t.path,
        &OpenOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ro.trim(0, u64::MAX, 0, &c), Err(Errno::EROFS));
}
