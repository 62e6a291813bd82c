//! Randomized stress of the embedded API from many threads: per-file writers checking their own
//! data, readers racing writers, namespace churn (create/rename/link/unlink/mkdir/rmdir) racing
//! readdir and lookup. It must neither deadlock (a watchdog aborts) nor corrupt: every writer's
//! file matches its model, and fsck is clean afterwards.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use daxfs::fs::*;

mod embedded;
use rand::Rng;

#[test]
fn many_threads_no_deadlock_no_corruption() {
    let region = embedded::region_with_inodes(256 << 20, Some(8192));
    let path = region.path.clone();
    let fs = Arc::new(region.open());
    let c = Ctx::root();
    let shared = fs
        .mkdir(ROOT_INO, OsStr::new("shared"), 0o755, &c)
        .unwrap()
        .ino;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    {
        let done = done.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            while !done.load(Ordering::SeqCst) {
                if t.elapsed() > Duration::from_secs(120) {
                    eprintln!("deadlock: stress did not finish in 120 s");
                    std::process::abort();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    }
    let mut hs = Vec::new();
    // Writers with a private model each.
    for w in 0..3 {
        let fs = fs.clone();
        let stop = stop.clone();
        hs.push(std::thread::spawn(move || {
            let c = Ctx::root();
            let (a, fh) = fs
                .create(ROOT_INO, OsStr::new(&format!("w{w}")), 0o644, 0, &c)
                .unwrap();
            let mut model: Vec<u8> = Vec::new();
            let mut rng = rand::rng();
            let mut ops = 0u64;
            while !stop.load(Ordering::Relaxed) {
                ops += 1;
                match rng.random_range(0..10) {
                    0 => {
                        let n = rng.random_range(0..(6 << 20));
                        fs.setattr(
                            a.ino,
                            &SetAttr {
                                size: Some(n as u64),
                                ..Default::default()
                            },
                            &c,
                        )
                        .unwrap();
                        model.resize(n, 0);
                    }
                    1 => fs.fsync(a.ino, rng.random()).unwrap(),
                    2 => {
                        let off = rng.random_range(0..(4 << 20));
                        let len = rng.random_range(1..(1 << 20));
                        fs.fallocate(
                            a.ino,
                            off as u64,
                            len as u64,
                            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                            &c,
                        )
                        .unwrap();
                        let end = (off + len).min(model.len());
                        if off < end {
                            model[off..end].fill(0);
                        }
                    }
                    _ => {
                        let off = rng.random_range(0..(5 << 20));
                        let len = rng.random_range(1..(600 << 10));
                        let v = (ops % 251) as u8;
                        let data = vec![v; len];
                        fs.write(a.ino, off as u64, &data, &c).unwrap();
                        if model.len() < off + len {
                            model.resize(off + len, 0);
                        }
                        model[off..off + len].fill(v);
                    }
                }
                if ops % 7 == 0 {
                    let mut b = vec![0u8; model.len()];
                    let n = fs.read(a.ino, 0, &mut b).unwrap();
                    assert_eq!(n, model.len());
                    assert!(b == model, "writer {w}: file differs from its model");
                }
            }
            fs.release(a.ino, fh).unwrap();
            (a.ino, model)
        }));
    }
    // Readers racing writer 0's file (by name) and the shared directory.
    let mut rhs = Vec::new();
    for _ in 0..2 {
        let fs = fs.clone();
        let stop = stop.clone();
        rhs.push(std::thread::spawn(move || {
            let mut rng = rand::rng();
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(a) = fs.lookup(ROOT_INO, OsStr::new("w0")) {
                    let off = rng.random_range(0..(6u64 << 20));
                    let _ = fs
                        .read_with(a.ino, off, rng.random_range(1..(1 << 20)), |s| s.len())
                        .unwrap();
                    let _ = fs.lseek(a.ino, off, libc::SEEK_DATA);
                    fs.forget(a.ino, 1);
                    reads += 1;
                }
                let mut cookie = 0;
                loop {
                    let ents = fs.readdir(shared, cookie).unwrap();
                    let Some(last) = ents.first() else { break };
                    cookie = last.next_offset;
                    for e in ents.iter().skip(2) {
                        let _ = fs.getattr(e.ino);
                    }
                }
            }
            reads
        }));
    }
    // Namespace churn in the shared directory.
    for t in 0..2 {
        let fs = fs.clone();
        let stop = stop.clone();
        hs.push(std::thread::spawn(move || {
            let c = Ctx::root();
            let mut rng = rand::rng();
            let name = |k: u32| format!("n{}", k);
            while !stop.load(Ordering::Relaxed) {
                let k = rng.random_range(0..40u32);
                let k2 = rng.random_range(0..40u32);
                let r = match rng.random_range(0..8) {
                    0 => fs
                        .mknod(shared, OsStr::new(&name(k)), libc::S_IFREG | 0o644, 0, &c)
                        .map(|a| fs.forget(a.ino, 1)),
                    1 => fs
                        .mkdir(shared, OsStr::new(&name(k)), 0o755, &c)
                        .map(|a| fs.forget(a.ino, 1)),
                    2 => fs.unlink(shared, OsStr::new(&name(k)), &c),
                    3 => fs.rmdir(shared, OsStr::new(&name(k)), &c),
                    4 => fs.rename(
                        shared,
                        OsStr::new(&name(k)),
                        shared,
                        OsStr::new(&name(k2)),
                        0,
                        &c,
                    ),
                    5 => fs.rename(
                        shared,
                        OsStr::new(&name(k)),
                        shared,
                        OsStr::new(&name(k2)),
                        libc::RENAME_EXCHANGE,
                        &c,
                    ),
                    6 => fs.lookup(shared, OsStr::new(&name(k))).and_then(|a| {
                        let r = fs.link(a.ino, shared, OsStr::new(&format!("l{t}{k2}")), &c);
                        fs.forget(a.ino, 1);
                        r.map(|l| fs.forget(l.ino, 1))
                    }),
                    _ => fs
                        .symlink(shared, OsStr::new(&name(k)), OsStr::new("target"), &c)
                        .map(|a| fs.forget(a.ino, 1)),
                };
                if let Err(e) = r {
                    assert!(
                        matches!(
                            e,
                            Errno::ENOENT
                                | Errno::EEXIST
                                | Errno::ENOTEMPTY
                                | Errno::EISDIR
                                | Errno::ENOTDIR
                                | Errno::EPERM
                                | Errno::EINVAL
                        ),
                        "unexpected {e}"
                    );
                }
            }
            (0, Vec::new())
        }));
    }
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let results: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    let reads: u64 = rhs.into_iter().map(|h| h.join().unwrap()).sum();
    done.store(true, Ordering::SeqCst);
    assert!(reads > 0);
    let fs = Arc::into_inner(fs).unwrap();
    fs.close().unwrap();
    let probs = DaxFs::fsck(&path, false).unwrap();
    assert!(probs.is_empty(), "{probs:?}");
    // Writers' files are intact after reopen.
    let fs = DaxFs::open(&path, &OpenOptions::default()).unwrap();
    for (ino, model) in results.into_iter().filter(|r| r.0 != 0) {
        let mut b = vec![0u8; model.len()];
        assert_eq!(fs.read(ino, 0, &mut b).unwrap(), model.len());
        assert!(b == model, "inode {ino} differs after reopen");
    }
}
