//! The inode table on demand (format version 2, `store::ichunk`): mkfs marks only chunk 0 of the
//! inode table, creating files marks more chunks as they are needed, open and fsck read only the
//! marked chunks, a version-1 region (the format before the map) still mounts and works, a damaged
//! map is refused with its reason, and a SIGKILL at any moment of a create-heavy workload (chunk
//! allocations included) leaves a consistent filesystem.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daxfs::fs::*;
use daxfs::region::Region;
use daxfs::store::{read_superblock, ChunkMap, CorruptReason, ICHUNK_INODES};

mod embedded;

fn c() -> Ctx {
    Ctx::root()
}

fn create(fs: &DaxFs, name: &str) {
    let (a, fh) = fs
        .create(ROOT_INO, OsStr::new(name), 0o644, 0, &c())
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    fs.release(a.ino, fh).unwrap();
}

fn names(fs: &DaxFs) -> HashSet<OsString> {
    fs.readdir(ROOT_INO, 0)
        .unwrap()
        .into_iter()
        .skip(2)
        .map(|e| e.name)
        .collect()
}

/// The superblock's version and the chunks marked in the map (of a closed region).
fn chunk_map(path: &Path) -> (u32, ChunkMap) {
    let region = Region::open(path, None).unwrap();
    let sb = read_superblock(&region).unwrap();
    let chunks = (sb.inodes_total + 1).div_ceil(ICHUNK_INODES);
    if sb.version < 2 {
        return (sb.version, ChunkMap::all_used(chunks));
    }
    let mut b = vec![0u8; (sb.ichunk_blocks * 4096) as usize];
    region.read_at(sb.ichunk_off(), &mut b).unwrap();
    (
        sb.version,
        ChunkMap::decode(chunks, sb.ichunk_off(), &b).unwrap(),
    )
}

fn write_bytes(path: &Path, off: u64, b: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(b, off).unwrap();
}

#[test]
fn chunks_are_marked_on_demand_and_survive_remount() {
    let r = embedded::region_with_inodes(64 << 20, Some(8192));
    let (v, m) = chunk_map(&r.path);
    assert_eq!(v, 2);
    assert_eq!(m.used().collect::<Vec<_>>(), vec![0]);
    let n = 2 * ICHUNK_INODES as usize + 10;
    {
        let fs = r.open();
        for i in 0..n {
            create(&fs, &format!("f{i}"));
        }
        let st = fs.region_stat();
        assert_eq!(st.inodes_used, n as u64 + 1);
        assert_eq!(st.inodes_total, 8192);
        assert_eq!(fs.statfs().unwrap().ffree, 8192 - n as u64 - 1);
    }
    // Root + n files need inode numbers up to n + 1: chunks 0, 1 and 2.
    let (_, m) = chunk_map(&r.path);
    assert_eq!(m.used().collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(DaxFs::fsck(&r.path, false).unwrap().is_empty());
    let fs = r.open();
    assert_eq!(names(&fs).len(), n);
    assert_eq!(fs.region_stat().inodes_used, n as u64 + 1);
    // Freed numbers are reused before a new chunk is taken.
    for i in 0..20 {
        fs.unlink(ROOT_INO, OsStr::new(&format!("f{i}")), &c())
            .unwrap();
    }
    for i in 0..20 {
        create(&fs, &format!("g{i}"));
    }
    drop(fs);
    assert_eq!(chunk_map(&r.path).1.used_count(), 3);
}

#[test]
fn unmarked_chunks_are_never_read_and_are_zeroed_when_taken() {
    let r = embedded::region_with_inodes(64 << 20, Some(4096));
    // Garbage where chunk 1 of the inode table lies: a region reused without zeroing.
    let off = {
        let region = Region::open(&r.path, None).unwrap();
        read_superblock(&region).unwrap().inode_off(ICHUNK_INODES)
    };
    write_bytes(&r.path, off, &vec![0xa5u8; (ICHUNK_INODES * 256) as usize]);
    assert!(DaxFs::fsck(&r.path, false).unwrap().is_empty());
    {
        let fs = r.open();
        for i in 0..ICHUNK_INODES + 5 {
            create(&fs, &format!("f{i}"));
        }
    }
    let probs = DaxFs::fsck(&r.path, false).unwrap();
    assert!(probs.is_empty(), "{probs:?}");
    let fs = r.open();
    assert_eq!(names(&fs).len(), ICHUNK_INODES as usize + 5);
}

#[test]
fn version_1_region_still_mounts_and_works() {
    let dir = embedded::scratch_dir();
    let path = dir.path().join("v1.img");
    let opts = MkfsOptions {
        size: Some(64 << 20),
        inodes: Some(4096),
    };
    DaxFs::mkfs_format(&path, &opts, 1).unwrap();
    {
        let region = Region::open(&path, None).unwrap();
        let sb = read_superblock(&region).unwrap();
        // The old layout: no map, the inode table right after the bad-block table.
        assert_eq!((sb.version, sb.ichunk_blocks, sb.itable_start), (1, 0, 18));
    }
    let n = ICHUNK_INODES as usize + 3;
    {
        let fs = embedded::open(&path);
        for i in 0..n {
            create(&fs, &format!("f{i}"));
        }
        assert_eq!(fs.statfs().unwrap().ffree, 4096 - n as u64 - 1);
    }
    assert!(DaxFs::fsck(&path, false).unwrap().is_empty());
    let fs = embedded::open(&path);
    assert_eq!(names(&fs).len(), n);
    drop(fs);
    // Kept as version 1 (not upgraded in place).
    assert_eq!(chunk_map(&path).0, 1);
}

#[test]
fn damaged_chunk_map_is_refused_with_its_reason() {
    let r = embedded::region_with_inodes(64 << 20, Some(4096));
    let off = {
        let region = Region::open(&r.path, None).unwrap();
        read_superblock(&region).unwrap().ichunk_off()
    };
    // A bit flipped (chunk 3 marked) without the checksum following.
    write_bytes(&r.path, off + 16, &[0b1001]);
    let probs = DaxFs::fsck(&r.path, false).unwrap();
    assert!(
        matches!(probs.as_slice(), [CorruptReason::ChunkMap(_)]),
        "{probs:?}"
    );
    assert!(probs[0].is_fatal() && !probs[0].is_repairable());
    assert!(probs[0].to_string().contains("checksum"), "{}", probs[0]);
    let err = DaxFs::open(&r.path, &OpenOptions::default())
        .err()
        .expect("open of a region with a damaged chunk map");
    assert!(err.to_string().contains("inode-chunk map"), "{err}");
    // Repair does not pretend: the problem is still there.
    DaxFs::fsck(&r.path, true).unwrap();
    assert!(!DaxFs::fsck(&r.path, false).unwrap().is_empty());
}

const KILL_ROUNDS: usize = 12;

#[test]
fn itable_crash_child() {
    // Only does something when re-executed by `sigkill_during_chunk_allocations`.
    let (Ok(region), Ok(log), Ok(round)) = (
        std::env::var("DAXFS_ITABLE_REGION"),
        std::env::var("DAXFS_ITABLE_LOG"),
        std::env::var("DAXFS_ITABLE_ROUND"),
    ) else {
        return;
    };
    let fs = DaxFs::open(Path::new(&region), &OpenOptions::default()).unwrap();
    let mut log = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    for i in 0.. {
        let name = format!("r{round}_{i}");
        create(&fs, &name);
        // One write(2) per name, after the create is durable.
        log.write_all(format!("{name}\n").as_bytes()).unwrap();
    }
}

/// SIGKILL at random moments of a workload that creates files as fast as it can, so that new
/// chunks are taken all the time (one per 512 creates). After each kill: the region opens, fsck
/// finds nothing, every create that returned is there, and the map marks every chunk in use.
#[test]
fn sigkill_during_chunk_allocations() {
    if std::env::var("DAXFS_ITABLE_REGION").is_ok() {
        return;
    }
    let dir = embedded::scratch_dir();
    let region = dir.path().join("region.img");
    let log = dir.path().join("names.log");
    std::fs::write(&log, b"").unwrap();
    let opts = MkfsOptions {
        size: Some(256 << 20),
        inodes: Some(1 << 17),
    };
    DaxFs::mkfs(&region, &opts).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut logged = 0;
    for round in 0..KILL_ROUNDS {
        let before = logged;
        let mut ch = Command::new(&exe)
            .args(["itable_crash_child", "--exact", "--nocapture"])
            .args(["--test-threads=1"])
            .env("DAXFS_ITABLE_REGION", &region)
            .env("DAXFS_ITABLE_LOG", &log)
            .env("DAXFS_ITABLE_ROUND", round.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait (generously) until the child has created a few hundred files more, then kill it
        // after a varying number of further creates.
        let want = before + 300 + 97 * round;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            logged = std::fs::read_to_string(&log).unwrap().lines().count();
            if logged >= want {
                break;
            }
            assert!(ch.try_wait().unwrap().is_none(), "child exited early");
            assert!(Instant::now() < deadline, "child made no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: kill(2) on our own child's pid; no memory is passed.
        let rc = unsafe { libc::kill(ch.id() as i32, libc::SIGKILL) };
        assert_eq!(rc, 0);
        ch.wait().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        let want: Vec<&str> = text.lines().collect();
        logged = want.len();
        let probs = DaxFs::fsck(&region, false).unwrap();
        assert!(probs.is_empty(), "round {round}: {probs:?}");
        let fs = embedded::open(&region);
        let have = names(&fs);
        for n in &want {
            assert!(have.contains(OsStr::new(n)), "round {round}: {n} lost");
        }
        // At most the one create in flight at each kill is there without its log line.
        assert!(have.len() <= want.len() + round + 1, "round {round}");
        let used = fs.region_stat().inodes_used;
        drop(fs);
        let marked = chunk_map(&region).1.used_count();
        assert!(
            marked >= (used + 1).div_ceil(ICHUNK_INODES),
            "round {round}"
        );
    }
}
