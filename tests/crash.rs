//! Crash consistency (issue 2, acceptance 4): a workload writes and fsyncs files, renames and
//! unlinks while the daemon is SIGKILLed at random moments (at least 50 kills). After each kill,
//! `daxfs umount` clears the dead mount; after remounting every change that completed (fsync,
//! rename, unlink returned) is there, byte for byte, and after unmounting `daxfs fsck` is clean.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};

/// What the workload knows survived: name → content seed and length (None = must not exist).
type Expect = BTreeMap<String, Option<(u64, usize)>>;

/// Runs operations until one fails (the daemon died) or `stop` is set. Every operation that
/// returned success is recorded in `expect`; a name whose operation failed midway is dropped from
/// `expect` (either outcome is allowed) and never used again.
fn workload(mnt: &Path, cycle: usize, seed: u64, expect: &Mutex<Expect>, stop: &AtomicBool) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let op = rng.random_range(0..10);
        if op < 7 {
            // Create, write, fsync a new file.
            let name = format!("c{cycle:03}-{n:05}");
            let len = rng.random_range(0..200_000usize);
            let s = rng.random::<u64>();
            let r = (|| -> std::io::Result<()> {
                let mut f = OpenOptions::new()
                    .create_new(true)
                    .write(true)
                    .open(mnt.join(&name))?;
                f.write_all(&pattern(s, len))?;
                f.sync_all()
            })();
            match r {
                Ok(()) => {
                    expect.lock().unwrap().insert(name, Some((s, len)));
                }
                Err(_) => return,
            }
        } else {
            // Rename or unlink a file written earlier.
            let victim = {
                let e = expect.lock().unwrap();
                let live: Vec<_> = e.iter().filter(|(_, v)| v.is_some()).collect();
                if live.is_empty() {
                    continue;
                }
                let (k, v) = live[rng.random_range(0..live.len())];
                (k.clone(), *v)
            };
            if op < 9 {
                let to = format!("r{cycle:03}-{n:05}");
                // Either outcome is allowed until rename returns.
                expect.lock().unwrap().remove(&victim.0);
                match fs::rename(mnt.join(&victim.0), mnt.join(&to)) {
                    Ok(()) => {
                        let mut e = expect.lock().unwrap();
                        e.insert(victim.0, None);
                        e.insert(to, victim.1);
                    }
                    Err(_) => return,
                }
            } else {
                expect.lock().unwrap().remove(&victim.0);
                match fs::remove_file(mnt.join(&victim.0)) {
                    Ok(()) => {
                        expect.lock().unwrap().insert(victim.0, None);
                    }
                    Err(_) => return,
                }
            }
        }
    }
}

fn verify(mnt: &Path, expect: &Expect) {
    for (name, want) in expect {
        let p = mnt.join(name);
        match want {
            Some((s, len)) => {
                let got = fs::read(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(got.len(), *len, "{name}: length");
                assert!(got == pattern(*s, *len), "{name}: content differs");
            }
            None => assert!(
                fs::symlink_metadata(&p).is_err(),
                "{name} was removed but is back"
            ),
        }
    }
}

#[test]
fn fsynced_files_survive_sigkill() {
    require_fuse!();
    let kills: usize = std::env::var("DAXFS_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let r = Region::new("512M");
    let expect = Arc::new(Mutex::new(Expect::new()));
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xDA5F5);
    let start = Instant::now();
    let mut m = r.mount("");
    for cycle in 0..kills {
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (mnt, expect, stop) = (m.mnt.clone(), expect.clone(), stop.clone());
            let seed = rng.random();
            std::thread::spawn(move || workload(&mnt, cycle, seed, &expect, &stop))
        };
        std::thread::sleep(Duration::from_millis(rng.random_range(5..80)));
        m.kill_daemon();
        stop.store(true, Ordering::Relaxed);
        worker.join().expect("workload thread");
        // The mount is dead now; `daxfs umount` must clear it. On FUSE-over-io_uring (the
        // default when the kernel offers it) a request may get ECANCELED while the kernel tears
        // the dead daemon's rings down, before it aborts the connection: ENOTCONN from then on.
        let mut errno = Ok(());
        wait_until(
            "the dead mount to answer ENOTCONN",
            Duration::from_millis(20),
            || {
                let probe = fs::symlink_metadata(m.mnt.join(format!(".probe-{cycle}")));
                errno = probe.map(drop).map_err(|e| e.raw_os_error());
                !matches!(errno, Err(Some(libc::ECANCELED)))
            },
        );
        assert!(
            matches!(errno, Err(Some(libc::ENOTCONN | libc::ECONNABORTED))),
            "a lookup on the dead mount must fail with ENOTCONN/ECONNABORTED, got {errno:?}"
        );
        let out = daxfs(["umount".as_ref(), m.mnt.as_os_str()]);
        assert!(
            out.status.success(),
            "umount of dead mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        m.disarm();
        // Remount (recovery runs, orphans of the crash are reclaimed): every completed change
        // is there; after a clean unmount fsck finds nothing.
        let again = r.mount("");
        verify(&again.mnt, &expect.lock().unwrap());
        again.unmount();
        r.assert_fsck_clean(&format!("after kill {cycle}"));
        m = r.mount("");
    }
    let e = expect.lock().unwrap();
    verify(&m.mnt, &e);
    let live = e.values().filter(|v| v.is_some()).count();
    assert!(live > 0, "the workload never completed a write");
    eprintln!(
        "{kills} kills, {live} files verified, {} removals, {:.1}s",
        e.len() - live,
        start.elapsed().as_secs_f64()
    );
    m.unmount();
}
