//! Corrupted and truncated regions are refused at open with an error naming the problem (each
//! corruption its own reason), never a panic; fsck lists the problem and `--repair` fixes what it
//! can. Random byte flips in metadata areas give Ok or a clean error.

use std::ffi::OsStr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use daxfs::fs::*;

mod embedded;
use daxfs::store::{
    self, CorruptReason, DecodeError, Dirent, InodeRec, JournalDamage, LayoutError, Superblock,
    BLOCK, SB_SIZE,
};
use daxfs::Error;
use rand::Rng;

struct Info {
    a: Ino,
    e: Ino,
    frag: Ino,
    root_dir_block: u64,
    a_block: u64,
}

/// A populated region: files, a directory, a symlink, a fragmented file (chained block map) and
/// xattrs.
fn build(path: &Path) -> Info {
    DaxFs::mkfs(
        path,
        &MkfsOptions {
            size: Some(32 << 20),
            inodes: Some(1024),
        },
    )
    .unwrap();
    let fs = DaxFs::open(path, &OpenOptions::default()).unwrap();
    let c = Ctx::root();
    let (a, _) = fs.create(ROOT_INO, OsStr::new("a"), 0o644, 0, &c).unwrap();
    fs.write(a.ino, 0, b"content of a", &c).unwrap();
    fs.setxattr(a.ino, OsStr::new("user.k"), b"v", 0, &c)
        .unwrap();
    let d = fs.mkdir(ROOT_INO, OsStr::new("d"), 0o755, &c).unwrap();
    let (e, _) = fs.create(d.ino, OsStr::new("e"), 0o644, 0, &c).unwrap();
    fs.write(e.ino, 0, &[5u8; 10000], &c).unwrap();
    fs.symlink(ROOT_INO, OsStr::new("l"), OsStr::new("a"), &c)
        .unwrap();
    let (frag, _) = fs
        .create(ROOT_INO, OsStr::new("frag"), 0o644, 0, &c)
        .unwrap();
    for p in 0..12u64 {
        fs.write(frag.ino, p * 2 * 4096, &[p as u8; 4096], &c)
            .unwrap();
    }
    let root_dir_block = fs.mappings(ROOT_INO).unwrap()[0].region_block;
    let a_block = fs.mappings(a.ino).unwrap()[0].region_block;
    fs.close().unwrap();
    assert!(DaxFs::fsck(path, false).unwrap().is_empty());
    Info {
        a: a.ino,
        e: e.ino,
        frag: frag.ino,
        root_dir_block,
        a_block,
    }
}

fn raw(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

fn read_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    raw(path).read_exact_at(&mut b, off).unwrap();
    b
}

fn write_at(path: &Path, off: u64, b: &[u8]) {
    raw(path).write_all_at(b, off).unwrap();
}

fn sb(path: &Path) -> Superblock {
    Superblock::decode(&read_at(path, 0, SB_SIZE)).unwrap()
}

fn rec(path: &Path, ino: Ino) -> InodeRec {
    let s = sb(path);
    InodeRec::decode(&read_at(path, s.inode_off(ino), 256)).unwrap()
}

fn put_rec(path: &Path, ino: Ino, r: &InodeRec) {
    let s = sb(path);
    write_at(path, s.inode_off(ino), &r.encode());
}

/// Offset of the root directory slot naming `name`.
fn root_slot(path: &Path, info: &Info, name: &str) -> u64 {
    let base = info.root_dir_block * BLOCK;
    for s in 0..15u64 {
        let off = base + s * 272;
        if let Ok(Some(d)) = Dirent::decode(&read_at(path, off, 272)) {
            if d.name == name.as_bytes() {
                return off;
            }
        }
    }
    panic!("no slot {name}");
}

type Mutate = fn(&Path, &Info);
/// Whether a reason is the one a case expects.
type Expect = fn(&CorruptReason) -> bool;

fn cases() -> Vec<(&'static str, Mutate, Expect)> {
    vec![
        (
            "bad magic",
            |p, _| write_at(p, 0, b"NOTDAXFS"),
            |r| *r == CorruptReason::NotDaxfs,
        ),
        (
            "superblock checksum",
            |p, _| {
                let mut b = read_at(p, 0, SB_SIZE);
                b[40] ^= 0x10;
                write_at(p, 0, &b);
            },
            |r| matches!(r, CorruptReason::SuperblockChecksum { .. }),
        ),
        (
            "newer version",
            |p, _| {
                let mut s = sb(p);
                s.version = 99;
                write_at(p, 0, &s.encode());
            },
            |r| *r == CorruptReason::NewerVersion { version: 99 },
        ),
        (
            "truncated region",
            |p, _| raw(p).set_len(24 << 20).unwrap(),
            |r| matches!(r, CorruptReason::Truncated { len, .. } if *len == 24 << 20),
        ),
        (
            "bad block size",
            |p, _| {
                let mut s = sb(p);
                s.block_size = 8192;
                write_at(p, 0, &s.encode());
            },
            |r| *r == CorruptReason::Layout(LayoutError::BlockSize(8192)),
        ),
        (
            "bad inode table layout",
            |p, _| {
                let mut s = sb(p);
                s.inodes_total += 1000;
                write_at(p, 0, &s.encode());
            },
            |r| *r == CorruptReason::Layout(LayoutError::InodeTableLocation),
        ),
        (
            "inode record checksum",
            |p, i| {
                let s = sb(p);
                let mut b = read_at(p, s.inode_off(i.e), 256);
                b[24] ^= 0x40;
                write_at(p, s.inode_off(i.e), &b);
            },
            |r| {
                matches!(
                    r,
                    CorruptReason::Inode {
                        what: DecodeError::RecordChecksum,
                        ..
                    }
                )
            },
        ),
        (
            "journal header garbage",
            |p, _| write_at(p, sb(p).journal_off(), b"GARBAGE!"),
            |r| *r == CorruptReason::Journal(JournalDamage::UnknownMagic),
        ),
        (
            "journal record outside metadata",
            |p, _| {
                // A well-formed, committed transaction whose record targets the superblock.
                let mut body = vec![0u8; 24];
                body[8] = 4; // len 4, off 0
                let mut hdr = [0u8; 64];
                hdr[..8].copy_from_slice(b"DXJOURNL");
                hdr[16] = 1;
                hdr[24] = 24;
                hdr[32..36].copy_from_slice(&crc32c::crc32c(&body).to_le_bytes());
                let hc = crc32c::crc32c(&hdr[..36]);
                hdr[36..40].copy_from_slice(&hc.to_le_bytes());
                let off = sb(p).journal_off();
                write_at(p, off + 64, &body);
                write_at(p, off, &hdr);
            },
            |r| {
                let bad = JournalDamage::RecordOutside {
                    index: 0,
                    off: 0,
                    len: 4,
                };
                *r == CorruptReason::Journal(bad)
            },
        ),
        (
            "block map outside the region",
            |p, i| {
                let mut r = rec(p, i.a);
                r.inline[0].block = 1 << 40;
                put_rec(p, i.a, &r);
            },
            |r| matches!(r, CorruptReason::MapOutside { block, .. } if *block == 1 << 40),
        ),
        (
            "directory entry to a free inode",
            |p, i| {
                let off = root_slot(p, i, "a");
                let d = Dirent {
                    ino: 900,
                    kind: FileKind::Regular,
                    name: b"a".to_vec(),
                };
                write_at(p, off, &d.encode());
            },
            |r| matches!(r, CorruptReason::DirentToFree { dir: 1, ino: 900, name } if name == "a"),
        ),
        (
            "directory entry checksum",
            |p, i| {
                let off = root_slot(p, i, "d");
                let mut b = read_at(p, off, 272);
                b[16] = b'X';
                write_at(p, off, &b);
            },
            |r| {
                let bad = DecodeError::DirentChecksum;
                matches!(r, CorruptReason::Slot { dir: 1, what, .. } if *what == bad)
            },
        ),
        (
            "doubly-used block",
            |p, i| {
                let mut r = rec(p, i.e);
                r.inline[0].block = i.a_block;
                put_rec(p, i.e, &r);
            },
            |r| matches!(r, CorruptReason::BlockUsedTwice { .. }),
        ),
        (
            "block map chain checksum",
            |p, i| {
                let r = rec(p, i.frag);
                assert_ne!(r.map_chain, 0, "frag must have a chained map");
                let off = r.map_chain * BLOCK + 40;
                let mut b = read_at(p, off, 1);
                b[0] ^= 1;
                write_at(p, off, &b);
            },
            |r| {
                matches!(
                    r,
                    CorruptReason::Inode {
                        what: DecodeError::ChainChecksum,
                        ..
                    }
                )
            },
        ),
        (
            "xattr block checksum",
            |p, i| {
                let r = rec(p, i.a);
                let off = r.xattr_block * BLOCK + 20;
                let mut b = read_at(p, off, 1);
                b[0] ^= 1;
                write_at(p, off, &b);
            },
            |r| {
                matches!(
                    r,
                    CorruptReason::Inode {
                        what: DecodeError::XattrChecksum,
                        ..
                    }
                )
            },
        ),
        (
            "bad-block table checksum",
            |p, _| {
                let off = sb(p).badblk_off() + 8;
                write_at(p, off, &[3]);
            },
            |r| *r == CorruptReason::BadTable(DecodeError::BadTableChecksum),
        ),
        (
            "directory with an absurd size",
            |p, i| {
                let d = root_slot(p, i, "d");
                let dino = Dirent::decode(&read_at(p, d, 272)).unwrap().unwrap().ino;
                let mut r = rec(p, dino);
                r.size = 1 << 50;
                put_rec(p, dino, &r);
            },
            |r| matches!(r, CorruptReason::BadSize { size, .. } if *size == 1 << 50),
        ),
        (
            "root not a directory",
            |p, _| {
                let mut r = rec(p, ROOT_INO);
                r.mode = libc::S_IFREG | 0o644;
                put_rec(p, ROOT_INO, &r);
            },
            |r| *r == CorruptReason::RootMissing,
        ),
    ]
}

#[test]
fn each_corruption_is_refused_with_its_own_reason() {
    let dir = embedded::scratch_dir();
    let all = cases();
    let mut reasons = Vec::new();
    for (i, (what, mutate, expect)) in all.iter().enumerate() {
        let path: PathBuf = dir.path().join(format!("r{i}.img"));
        let info = build(&path);
        mutate(&path, &info);
        let reason = match DaxFs::open(&path, &OpenOptions::default()) {
            Ok(_) => panic!("{what}: corrupted region was accepted"),
            Err(e @ Error::Corrupt { .. }) => {
                // The message names the region and the problem.
                let msg = e.to_string();
                let Error::Corrupt { path: p, reason } = e else {
                    unreachable!()
                };
                assert_eq!(p, path, "{what}");
                assert!(msg.contains(&path.display().to_string()), "{what}: {msg}");
                assert!(msg.contains(&reason.to_string()), "{what}: {msg}");
                reason
            }
            Err(e) => panic!("{what}: not refused as corrupt: {e:?}"),
        };
        assert!(expect(&reason), "{what}: got {reason:?}");
        assert!(reason.is_fatal(), "{what}: {reason:?}");
        // fsck reports it too (or refuses the same way when the superblock itself is bad).
        match DaxFs::fsck(&path, false) {
            Ok(probs) => assert!(probs.iter().any(expect), "{what}: fsck found {probs:?}"),
            Err(Error::Corrupt { reason, .. }) => {
                assert!(expect(&reason), "{what}: fsck {reason:?}")
            }
            Err(e) => panic!("{what}: fsck: {e:?}"),
        }
        reasons.push(reason);
        std::fs::remove_file(&path).unwrap();
    }
    // Each corruption has its own reason: no other case's expectation matches it.
    for (i, r) in reasons.iter().enumerate() {
        for (j, (what, _, expect)) in all.iter().enumerate() {
            assert_eq!(
                expect(r),
                i == j,
                "case {i} ({r:?}) against case {j} ({what})"
            );
        }
    }
    assert!(reasons.len() >= 10);
}

#[test]
fn fsck_repair_makes_region_mountable() {
    let dir = embedded::scratch_dir();
    // Corruptions below the superblock are repairable.
    let repairable = [6usize, 9, 10, 11, 12, 13, 14, 15];
    let all = cases();
    for &k in &repairable {
        let (what, mutate, _) = all[k];
        let path = dir.path().join(format!("rep{k}.img"));
        let info = build(&path);
        mutate(&path, &info);
        let fixed = DaxFs::fsck(&path, true).unwrap();
        assert!(!fixed.is_empty(), "{what}: repair found nothing");
        let after = DaxFs::fsck(&path, false).unwrap();
        assert!(after.is_empty(), "{what}: still {after:?}");
        let fs = DaxFs::open(&path, &OpenOptions::default())
            .unwrap_or_else(|e| panic!("{what}: after repair: {e}"));
        // The untouched file in the subdirectory survives unless it was the victim.
        if k != 6 && k != 12 {
            let d = fs.lookup(ROOT_INO, OsStr::new("d"));
            if let Ok(d) = d {
                assert_eq!(fs.lookup(d.ino, OsStr::new("e")).unwrap().size, 10000);
            }
        }
        drop(fs);
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn fsck_finds_wrong_link_count_and_unreachable_inode() {
    let dir = embedded::scratch_dir();
    let path = dir.path().join("links.img");
    let info = build(&path);
    let mut r = rec(&path, info.a);
    r.nlink = 3;
    put_rec(&path, info.a, &r);
    // An in-use inode that no directory names.
    let mut lost = rec(&path, info.a);
    lost.nlink = 1;
    lost.nextents = 0;
    lost.xattr_block = 0;
    lost.inline = Default::default();
    put_rec(&path, 300, &lost); // in chunk 0, which mkfs marks in use
                                // Still mountable (not fatal).
    drop(DaxFs::open(&path, &OpenOptions::default()).unwrap());
    let probs = DaxFs::fsck(&path, false).unwrap();
    assert!(
        probs.iter().any(|p| matches!(
            p,
            CorruptReason::WrongLinkCount { ino, nlink: 3, want: 1 } if *ino == info.a
        )),
        "{probs:?}"
    );
    assert!(
        probs.contains(&CorruptReason::Unreachable { ino: 300, nlink: 1 }),
        "{probs:?}"
    );
    assert!(probs.iter().all(|p| !p.is_fatal()), "{probs:?}");
    DaxFs::fsck(&path, true).unwrap();
    assert!(DaxFs::fsck(&path, false).unwrap().is_empty());
    let fs = DaxFs::open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(fs.getattr(info.a).unwrap().nlink, 1);
    assert_eq!(fs.getattr(700), Err(Errno::ENOENT));
}

#[test]
fn random_metadata_flips_never_panic() {
    let dir = embedded::scratch_dir();
    let path = dir.path().join("fuzz.img");
    let info = build(&path);
    let pristine = std::fs::read(&path).unwrap();
    let s = sb(&path);
    let meta_end = s.data_start * BLOCK;
    let hot: Vec<(u64, u64)> = vec![
        (0, SB_SIZE as u64),
        (s.journal_off(), 64),
        (s.badblk_off(), 64),
        (s.inode_off(1), 256 * 16),
        (info.root_dir_block * BLOCK, 15 * 272),
        (rec(&path, info.frag).map_chain * BLOCK, 512),
        (0, meta_end),
    ];
    let mut rng = rand::rng();
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..60 {
        std::fs::write(&path, &pristine).unwrap();
        for _ in 0..rng.random_range(1..4) {
            let (base, len) = hot[rng.random_range(0..hot.len())];
            let off = base + rng.random_range(0..len);
            let mut b = read_at(&path, off, 1);
            b[0] ^= 1 << rng.random_range(0..8);
            write_at(&path, off, &b);
        }
        match DaxFs::open(&path, &OpenOptions::default()) {
            Ok(fs) => {
                ok += 1;
                // Whatever was accepted must be usable.
                let _ = fs.readdir(ROOT_INO, 0);
                let _ = fs.mknod(
                    ROOT_INO,
                    OsStr::new("new"),
                    libc::S_IFREG | 0o644,
                    0,
                    &Ctx::root(),
                );
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
        }
        let _ = DaxFs::fsck(&path, true);
    }
    assert!(refused > 0, "no flip was detected ({ok} accepted)");
    let _ = store::VERSION;
}
