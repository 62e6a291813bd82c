//! Exchange of file ranges (`XFS_IOC_EXCHANGE_RANGE`) through the embedded API: what moves, what
//! stays, the checks, atomicity across a reopen, PMD entries after a whole-2-MiB exchange.

mod embedded;

use std::ffi::OsStr;

use daxfs::fs::*;
use daxfs::memory_failure::{inject_file, NoInvalidate};
use embedded::{open, region};

const K: u64 = 4096;

fn n(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn file(fs: &DaxFs, name: &str, fill: u8, len: usize) -> Ino {
    let a = fs
        .mknod(ROOT_INO, n(name), libc::S_IFREG | 0o644, 0, &Ctx::root())
        .unwrap();
    if len > 0 {
        fs.write(a.ino, 0, &vec![fill; len], &Ctx::root()).unwrap();
    }
    a.ino
}

fn read_all(fs: &DaxFs, ino: Ino) -> Vec<u8> {
    let size = fs.getattr(ino).unwrap().size;
    let mut b = vec![0u8; size as usize];
    assert_eq!(fs.read(ino, 0, &mut b).unwrap() as u64, size);
    b
}

fn xr(file1: Ino, o1: u64, file2: Ino, o2: u64, length: u64, flags: u64) -> ExchangeRange {
    ExchangeRange {
        file1,
        file1_offset: o1,
        file2,
        file2_offset: o2,
        length,
        flags,
        fsize_limit: None,
    }
}

#[test]
fn a_middle_range_trades_places_and_survives_a_reopen() {
    let t = region(64 << 20);
    let (a, b) = {
        let fs = open(&t.path);
        let a = file(&fs, "a", b'a', 64 * K as usize);
        let b = file(&fs, "b", b'b', 64 * K as usize);
        let before = fs.getattr(a).unwrap().mtime;
        std::thread::sleep(std::time::Duration::from_millis(5));
        let got = fs
            .exchange_range(&xr(a, 4 * K, b, 8 * K, 3 * K, 0), &Ctx::root())
            .unwrap();
        assert_eq!(got.ranges, vec![(a, 4 * K, 3 * K), (b, 8 * K, 3 * K)]);
        let (ra, rb) = (read_all(&fs, a), read_all(&fs, b));
        for (i, (x, y)) in ra.iter().zip(&rb).enumerate() {
            let i = i as u64;
            let want_a = if (4 * K..7 * K).contains(&i) {
                b'b'
            } else {
                b'a'
            };
            let want_b = if (8 * K..11 * K).contains(&i) {
                b'a'
            } else {
                b'b'
            };
            assert_eq!((*x, *y), (want_a, want_b), "byte {i}");
        }
        assert!(fs.getattr(a).unwrap().mtime > before, "mtime moves");
        fs.close().unwrap();
        (a, b)
    };
    assert_eq!(DaxFs::fsck(&t.path, false).unwrap(), Vec::new());
    let fs = open(&t.path);
    assert_eq!(read_all(&fs, a)[4 * K as usize], b'b');
    assert_eq!(read_all(&fs, b)[8 * K as usize], b'a');
    assert_eq!(read_all(&fs, b)[7 * K as usize], b'b');
}

#[test]
fn to_eof_swaps_contents_and_sizes_and_holes_move_too() {
    let t = region(64 << 20);
    let fs = open(&t.path);
    let a = file(&fs, "a", b'a', (5 * K + 37) as usize);
    let b = file(&fs, "b", b'b', (2 * K) as usize);
    // A hole in a moves to b.
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fs.fallocate(a, K, K, punch, &Ctx::root()).unwrap();
    fs.exchange_range(&xr(a, 0, b, 0, 0, EXCHANGE_RANGE_TO_EOF), &Ctx::root())
        .unwrap();
    assert_eq!(fs.getattr(a).unwrap().size, 2 * K);
    assert_eq!(fs.getattr(b).unwrap().size, 5 * K + 37);
    assert_eq!(read_all(&fs, a), vec![b'b'; 2 * K as usize]);
    let rb = read_all(&fs, b);
    assert!(rb[..K as usize].iter().all(|&c| c == b'a'));
    assert!(
        rb[K as usize..2 * K as usize].iter().all(|&c| c == 0),
        "the hole"
    );
    assert!(rb[2 * K as usize..].iter().all(|&c| c == b'a'));
    fs.close().unwrap();
    assert_eq!(DaxFs::fsck(&t.path, false).unwrap(), Vec::new());
}

#[test]
fn dry_run_file1_written_and_the_same_file() {
    let t = region(64 << 20);
    let fs = open(&t.path);
    let a = file(&fs, "a", b'a', 16 * K as usize);
    let b = fs
        .mknod(ROOT_INO, n("b"), libc::S_IFREG | 0o644, 0, &Ctx::root())
        .unwrap()
        .ino;
    let c = Ctx::root();
    fs.setattr(
        b,
        &SetAttr {
            size: Some(16 * K),
            ..Default::default()
        },
        &c,
    )
    .unwrap();
    fs.write(b, K, &vec![b'1'; K as usize], &c).unwrap();
    fs.write(b, 9 * K, &vec![b'9'; K as usize], &c).unwrap();
    // Dry run: nothing changes.
    let dry = xr(b, 0, a, 0, 16 * K, EXCHANGE_RANGE_DRY_RUN);
    assert_eq!(fs.exchange_range(&dry, &c).unwrap(), Exchanged::default());
    assert_eq!(read_all(&fs, a), vec![b'a'; 16 * K as usize]);
    // Only file1's (b's) written pages trade places.
    let w = xr(b, 0, a, 0, 16 * K, EXCHANGE_RANGE_FILE1_WRITTEN);
    fs.exchange_range(&w, &c).unwrap();
    let ra = read_all(&fs, a);
    for p in 0..16u64 {
        let want = match p {
            1 => b'1',
            9 => b'9',
            _ => b'a',
        };
        assert_eq!(ra[(p * K) as usize], want, "a page {p}");
    }
    let rb = read_all(&fs, b);
    assert_eq!((rb[K as usize], rb[9 * K as usize], rb[0]), (b'a', b'a', 0));
    // Within one file: disjoint ranges are fine, overlapping ones are not.
    fs.exchange_range(&xr(a, 0, a, 8 * K, K, 0), &c).unwrap();
    assert_eq!(read_all(&fs, a)[0], b'a');
    assert_eq!(read_all(&fs, a)[8 * K as usize], b'a');
    fs.exchange_range(&xr(a, K, a, 12 * K, K, 0), &c).unwrap();
    assert_eq!(read_all(&fs, a)[12 * K as usize], b'1');
    assert_eq!(
        fs.exchange_range(&xr(a, 0, a, K, 2 * K, 0), &c),
        Err(Errno::EINVAL)
    );
    fs.close().unwrap();
    assert_eq!(DaxFs::fsck(&t.path, false).unwrap(), Vec::new());
}

#[test]
fn refusals_change_nothing() {
    let t = region(64 << 20);
    let fs = open(&t.path);
    let c = Ctx::root();
    let a = file(&fs, "a", b'a', 8 * K as usize);
    let b = file(&fs, "b", b'b', 8 * K as usize);
    let d = fs.mkdir(ROOT_INO, n("d"), 0o755, &c).unwrap().ino;
    let cases = [
        (xr(a, 0, b, 0, K, 1 << 9), Errno::EINVAL, "unknown flag"),
        (xr(d, 0, b, 0, K, 0), Errno::EISDIR, "a directory"),
        (xr(a, 9 * K, b, 0, K, 0), Errno::EINVAL, "past the end"),
        (xr(a, 100, b, 0, K, 0), Errno::EINVAL, "unaligned"),
        (xr(a, 0, b, 0, K + 1, 0), Errno::EINVAL, "unaligned length"),
        (xr(a, 0, b, 4 * K, 8 * K, 0), Errno::EINVAL, "past b's end"),
        (xr(a, 0, 9999, 0, K, 0), Errno::ENOENT, "no such inode"),
    ];
    for (r, e, what) in cases {
        assert_eq!(fs.exchange_range(&r, &c), Err(e), "{what}");
    }
    let mut limited = xr(a, 0, b, 0, 8 * K, 0);
    limited.fsize_limit = Some(2 * K);
    assert_eq!(fs.exchange_range(&limited, &c), Err(Errno::EINVAL));
    // An immutable file, a poisoned page.
    fs.set_xflags(
        b,
        &XflagsChange {
            xflags: iflags::XFLAG_IMMUTABLE,
            ..Default::default()
        },
        &c,
    )
    .unwrap();
    assert_eq!(
        fs.exchange_range(&xr(a, 0, b, 0, K, 0), &c),
        Err(Errno::EPERM)
    );
    let e = file(&fs, "e", b'e', 8 * K as usize);
    inject_file(&fs, e, 2 * K, K, &NoInvalidate).unwrap();
    assert_eq!(
        fs.exchange_range(&xr(a, 0, e, 0, 4 * K, 0), &c),
        Err(Errno::EIO)
    );
    assert_eq!(read_all(&fs, a), vec![b'a'; 8 * K as usize]);
}

#[test]
fn whole_2mib_runs_keep_pmd_entries() {
    let t = region(64 << 20);
    let fs = open(&t.path);
    let c = Ctx::root();
    let a = file(&fs, "a", b'a', 4 << 20);
    let b = file(&fs, "b", b'b', 4 << 20);
    let pmds = |ino| {
        fs.mappings(ino)
            .unwrap()
            .iter()
            .filter(|m| m.order == 9)
            .count()
    };
    let (pa, pb) = (pmds(a), pmds(b));
    assert!(
        pa > 0 && pb > 0,
        "4 MiB writes map PMD entries ({pa}, {pb})"
    );
    fs.exchange_range(&xr(a, 0, b, 0, 4 << 20, 0), &c).unwrap();
    assert_eq!(
        (pmds(a), pmds(b)),
        (pb, pa),
        "PMD entries move as PMD entries"
    );
    assert_eq!(read_all(&fs, a), vec![b'b'; 4 << 20]);
    fs.close().unwrap();
    assert_eq!(DaxFs::fsck(&t.path, false).unwrap(), Vec::new());
}
