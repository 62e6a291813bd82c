//! Issue 11's long mixed memory-failure stress on real mounts, one test per configuration:
//! `/dev/fuse` with `--threads 1` and with the default thread count, and `-o io_uring`, each with
//! `dax=always` and `dax=never`; `DAXFS_STRESS_SECS` seconds each (default 20: 120 s across the
//! matrix), one configuration at a time. `scripts/stress` runs it longer and prints a table.
//!
//! Forked children (a task stuck in the kernel never blocks the harness; see tests/poison_util)
//! share one model of every file (tests/poison_stress/model.rs):
//! - an owner per file: pwrite (read back), pread, mmap reads, truncate, punch hole, verified
//!   against the model (owner.rs);
//! - the poisoner: file and region injections, file and region clears, sweeps (poisoner.rs);
//! - two mmap readers touching every page, surviving `SIGBUS` (mapper.rs).
//!
//! Fails on: a task of the test or the daemon in D state for more than 5 s without running
//! (measured continuously, watch.rs), no progress for 60 s, any read, write or mmap read that
//! differs from the model outside the pages that may be poisoned (or `EIO`/`SIGBUS` there), a bad
//! range listed whose pages read, anything left unreadable after clearing everything, an unmount
//! slower than 20 s, fsck not clean. A failure aborts the FUSE connection first, so nothing stays
//! blocked, then reports the kernel stacks of the stuck tasks.
//!
//! Each run prints one `poison-stress summary:` line (`--nocapture`): operations per kind, poison
//! operations, mmap pages, SIGBUS taken, the longest D state, the unmount time, fsck.

mod common;
mod poison_util;

#[path = "poison_stress/mapper.rs"]
mod mapper;
#[path = "poison_stress/model.rs"]
mod model;
#[path = "poison_stress/owner.rs"]
mod owner;
#[path = "poison_stress/poisoner.rs"]
mod poisoner;
#[path = "poison_stress/watch.rs"]
mod watch;

use std::ffi::OsStr;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use model::*;
use watch::Watch;

/// No progress of any child for this long is a hang.
const HANG: Duration = Duration::from_secs(60);
/// The limit for an unmount.
const UMOUNT_LIMIT: Duration = Duration::from_secs(20);

/// One configuration at a time: the checks are correctness, and the machine is busy enough.
static SERIAL: Mutex<()> = Mutex::new(());

struct Config {
    name: &'static str,
    /// `--threads N` (`None`: the daemon's default).
    threads: Option<usize>,
    uring: bool,
    dax: &'static str,
}

fn secs() -> u64 {
    std::env::var("DAXFS_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// `DAXFS_STRESS_SEED`, or one from the clock (printed, to replay a run's choices).
fn seed() -> u64 {
    std::env::var("DAXFS_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// Mounts with the configuration's options; for io_uring, checks that requests go through the
/// rings (another test may have turned `enable_uring` off: set it again and remount).
fn mount(r: &Region, cfg: &Config) -> MountGuard {
    let opts = format!(
        "dax={}{}",
        cfg.dax,
        if cfg.uring {
            ",io_uring"
        } else {
            ",noio_uring"
        }
    );
    for _ in 0..5 {
        if cfg.uring {
            assert!(enable_uring());
        }
        let mut args: Vec<&OsStr> = vec!["mount".as_ref(), r.path.as_os_str(), r.mnt.as_os_str()];
        let threads = cfg.threads.map(|t| t.to_string());
        if let Some(t) = &threads {
            args.extend([OsStr::new("--threads"), t.as_ref()]);
        }
        args.extend([OsStr::new("-o"), opts.as_ref()]);
        daxfs_ok(&args);
        let m = MountGuard::adopt(&r.path, &r.mnt);
        if !cfg.uring || request_counters(&m).get("IO_URING").copied().unwrap_or(0) > 0 {
            return m;
        }
        eprintln!("the mount fell back to /dev/fuse (enable_uring was off at INIT): again");
        m.unmount();
    }
    panic!("could not get an io_uring mount");
}

/// Writes the files (in 2 MiB pieces: PMD entries) and fills their models.
fn make_files(m: &MountGuard, model: &Model) -> Vec<PathBuf> {
    (0..NFILES)
        .map(|fi| {
            let path = m.p(&format!("s{fi}"));
            let data = pattern(fi as u64 + 1, (PAGES * PAGE) as usize);
            let f = std::fs::File::create(&path).unwrap();
            for at in (0..data.len()).step_by(2 << 20) {
                f.write_all_at(&data[at..(at + (2 << 20)).min(data.len())], at as u64)
                    .unwrap();
            }
            let fm = &model.files[fi];
            let mut lk = fm.lock();
            lk.apply_write(0, &data);
            fm.ino.store(f.metadata().unwrap().ino(), SeqCst);
            path
        })
        .collect()
}

/// Forks a child running `f`; its error (or panic) goes to the model's first error.
fn child(model: &Model, role: String, f: impl FnOnce() -> Result<(), String>) -> i32 {
    poison_util::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let msg = match r {
            Ok(Ok(())) => return,
            Ok(Err(msg)) => msg,
            Err(_) => "panicked".to_string(),
        };
        model.stats.set_error(&format!("{role}: {msg}"));
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(1) }
    })
}

/// Waits (watching) until `until` or until a child ends. Return: why it stopped early, if it did
/// (an error, a D state over the limit, a hang, a child that ended).
fn watch_while(
    w: &mut Watch,
    model: &Model,
    pids: &mut Vec<i32>,
    until: Instant,
    expect_exit: bool,
) -> Result<(), String> {
    // Per child: its steps when they last moved.
    let mut last = (model.stats.steps(), [Instant::now(); ROLES]);
    while Instant::now() < until && !pids.is_empty() {
        std::thread::sleep(Duration::from_millis(50));
        if let Some(report) = w.tick(pids) {
            return Err(report);
        }
        if let Some(e) = model.stats.error() {
            return Err(e);
        }
        for (pid, code) in reap(pids) {
            pids.retain(|&p| p != pid);
            if !expect_exit || code != 0 {
                let e = model.stats.error().unwrap_or_default();
                return Err(format!("child {pid} ended with {code}: {e}"));
            }
        }
        let steps = model.stats.steps();
        for (role, &n) in steps.iter().enumerate() {
            if n != last.0[role] {
                last.1[role] = Instant::now();
            } else if !expect_exit && last.1[role].elapsed() > HANG {
                return Err(format!(
                    "child {role} (owners 0..{NFILES}, poisoner {POISONER}, then mmap readers) \
                     made no progress for {HANG:?} (hang or starved):\n{}",
                    poison_util::hang_report(&[&pids[..], &[w.daemon]].concat())
                ));
            }
        }
        last.0 = steps;
    }
    if expect_exit && !pids.is_empty() {
        return Err(format!(
            "children {pids:?} did not finish:\n{}",
            poison_util::hang_report(&[&pids[..], &[w.daemon]].concat())
        ));
    }
    Ok(())
}

/// The children of `pids` that have ended (reaped, without waiting): `(pid, exit code or
/// -signal)`.
fn reap(pids: &[i32]) -> Vec<(i32, i32)> {
    let mut done = Vec::new();
    for &pid in pids {
        let mut st = 0;
        // SAFETY: reaping our own child without blocking.
        if unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) } == pid {
            let code = if libc::WIFSIGNALED(st) {
                -libc::WTERMSIG(st)
            } else {
                libc::WEXITSTATUS(st)
            };
            done.push((pid, code));
        }
    }
    done
}

/// `daxfs umount`, watched. Return: how long it took.
fn unmount(w: &mut Watch, mnt: &Path) -> Result<Duration, String> {
    let t = Instant::now();
    let mut c = Command::new(daxfs_bin())
        .arg("umount")
        .arg(mnt)
        .spawn()
        .map_err(|e| format!("run daxfs umount: {e}"))?;
    loop {
        if let Some(st) = c.try_wait().map_err(|e| e.to_string())? {
            if !st.success() {
                return Err(format!("daxfs umount: {st}"));
            }
            break;
        }
        if let Some(report) = w.tick(&[c.id() as i32]) {
            let _ = c.kill();
            return Err(report);
        }
        if t.elapsed() > UMOUNT_LIMIT {
            let report = poison_util::hang_report(&[c.id() as i32, w.daemon]);
            let _ = c.kill();
            return Err(format!(
                "unmount not done after {UMOUNT_LIMIT:?}:\n{report}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let d = t.elapsed();
    wait_until(
        "daemon gone after umount",
        Duration::from_millis(20),
        || !daxfs::fuse::mounts::daemon_alive(w.daemon as u32),
    );
    Ok(d)
}

fn summary(
    cfg: &Config,
    secs: u64,
    seed: u64,
    model: &Model,
    w: &Watch,
    umount: Duration,
) -> String {
    let mut s = format!(
        "poison-stress summary: config={} secs={secs} seed={seed}",
        cfg.name
    );
    for (k, name) in KINDS {
        s.push_str(&format!(" {name}={}", model.stats.get(k)));
    }
    s.push_str(&format!(
        " max_dstate_ms={} dstate_samples={} umount_ms={} fsck=clean",
        w.worst.0.as_millis(),
        w.samples,
        umount.as_millis()
    ));
    s
}

/// The children, the run, the final check (in a child), the unmount. Return: the unmount time.
fn stress(
    cfg: &Config,
    m: &MountGuard,
    w: &mut Watch,
    model: &Model,
    secs: u64,
    seed: u64,
) -> Result<Duration, String> {
    let paths = make_files(m, model);
    let mut pids = Vec::new();
    for (fi, path) in paths.iter().enumerate() {
        let path = path.clone();
        pids.push(child(model, format!("owner of file {fi}"), move || {
            owner::run(model, fi, &path, seed ^ (fi as u64 + 1))
        }));
    }
    let (p2, mnt) = (paths.clone(), m.mnt.clone());
    pids.push(child(model, "poisoner".into(), move || {
        poisoner::run(model, &p2, &mnt, seed ^ 0x9015)
    }));
    for k in 0..MAPPERS {
        let p2 = paths.clone();
        pids.push(child(model, format!("mmap reader {k}"), move || {
            mapper::run(model, k, &p2, seed ^ (0x3a9 + k as u64))
        }));
    }
    let run = (|| {
        let until = Instant::now() + Duration::from_secs(secs);
        watch_while(w, model, &mut pids, until, false)?;
        model.stats.stop.store(1, SeqCst);
        watch_while(w, model, &mut pids, Instant::now() + HANG, true)?;
        let (p2, mnt) = (paths.clone(), m.mnt.clone());
        pids.push(child(model, "final check".into(), move || {
            poisoner::final_check(model, &p2, &mnt)
        }));
        watch_while(w, model, &mut pids, Instant::now() + 2 * HANG, true)
    })();
    if let Err(e) = run {
        // Only the children not reaped yet: a reaped pid may belong to someone else by now.
        w.recover(&pids);
        return Err(format!("{}: {e}", cfg.name));
    }
    unmount(w, &m.mnt).map_err(|e| {
        w.recover(&[]);
        format!("{}: {e}", cfg.name)
    })
}

fn run(cfg: Config) {
    require_fuse!();
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if cfg.uring && !enable_uring() {
        return;
    }
    let (secs, seed) = (secs(), seed());
    eprintln!(
        "poison-stress {}: {secs} s, DAXFS_STRESS_SEED={seed}",
        cfg.name
    );
    let r = Region::new("256M");
    let m = mount(&r, &cfg);
    let conn = poison_util::connection_of(&m.mnt);
    let mut w = Watch::new(&m.mnt, conn, m.pid as i32);
    let shm = SharedModel::new();
    let model = shm.get();
    let umount = match stress(&cfg, &m, &mut w, model, secs, seed) {
        Ok(d) => {
            m.disarm();
            d
        }
        Err(e) => {
            drop(m);
            panic!("{e}");
        }
    };
    r.assert_fsck_clean(&format!("after the stress {}", cfg.name));
    let st = &model.stats;
    let line = summary(&cfg, secs, seed, model, &w, umount);
    eprintln!("{line}");
    for (k, what) in [
        (Kind::Write, "writes"),
        (Kind::Read, "verified reads"),
        (Kind::MmapPages, "mmap pages read"),
        (Kind::InjectFile, "file injections"),
        (Kind::InjectRegion, "region injections"),
        (Kind::ClearedPages, "poisoned pages cleared"),
    ] {
        assert!(st.get(k) > 0, "{}: no {what} happened: {line}", cfg.name);
    }
}

#[test]
fn dev_fuse_threads_1_dax_always() {
    run(Config {
        name: "/dev/fuse --threads 1 dax=always",
        threads: Some(1),
        uring: false,
        dax: "always",
    });
}

// Once ignored: a short buffered write at a page boundary the model did not explain (`short write
// 3671 of [65961, +10761)`, two CI runs of 2026-12-02 beside a CPU hog). Not reproduced since (six
// 30 s runs beside two busy loops, 2026-12-03); a failure now prints the daemon's entries of the
// pages it stopped at, poisoned ones flagged, so that the next one says which side is wrong.
#[test]
fn dev_fuse_threads_1_dax_never() {
    run(Config {
        name: "/dev/fuse --threads 1 dax=never",
        threads: Some(1),
        uring: false,
        dax: "never",
    });
}

#[test]
fn dev_fuse_default_threads_dax_always() {
    run(Config {
        name: "/dev/fuse dax=always",
        threads: None,
        uring: false,
        dax: "always",
    });
}

#[test]
fn dev_fuse_default_threads_dax_never() {
    run(Config {
        name: "/dev/fuse dax=never",
        threads: None,
        uring: false,
        dax: "never",
    });
}

#[test]
fn io_uring_dax_always() {
    run(Config {
        name: "io_uring dax=always",
        threads: None,
        uring: true,
        dax: "always",
    });
}

// Once ignored: a short buffered write at a page boundary the model did not explain (`short write
// 3671 of [65961, +10761)`, two CI runs of 2026-12-02 beside a CPU hog). Not reproduced since (six
// 30 s runs beside two busy loops, 2026-12-03); a failure now prints the daemon's entries of the
// pages it stopped at, poisoned ones flagged, so that the next one says which side is wrong.
#[test]
fn io_uring_dax_never() {
    run(Config {
        name: "io_uring dax=never",
        threads: None,
        uring: true,
        dax: "never",
    });
}

/// The D-state check can fail: with the daemon stopped, a read waits for its `READ` reply while
/// holding the page-cache folio locked, and a second read of the same page waits for that lock;
/// the watch must report a task that has waited 5 s in D state without running, and the recovery
/// (aborting the connection) must free both readers.
///
/// A reader waiting for its reply sleeps interruptibly at first (state S: FUSE's
/// `request_wait_answer`); a signal with a handler moves it to the killable wait (state D) for the
/// rest of the request. So the readers get `SIGUSR1` (a no-op handler, inherited across the fork)
/// until the watch reports: the D state is made, not hoped for. The daemon is resumed by a guard
/// even when an assertion fails, so the unmount never waits for a stopped daemon.
#[test]
fn the_watch_reports_a_task_blocked_in_d_state() {
    require_fuse!();
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let r = Region::new("64M");
    let cfg = Config {
        name: "/dev/fuse --threads 1 dax=never",
        threads: Some(1),
        uring: false,
        dax: "never",
    };
    let m = mount(&r, &cfg);
    std::fs::write(m.p("f"), pattern(9, 1 << 20)).unwrap();
    // Remount: nothing of the file is cached, so the reads below go to the daemon.
    m.unmount();
    let m = mount(&r, &cfg);
    let mut w = Watch::new(&m.mnt, poison_util::connection_of(&m.mnt), m.pid as i32);
    let f = std::fs::File::open(m.p("f")).unwrap();
    /// Sends SIGCONT to the daemon when dropped.
    struct Resume(i32);
    impl Drop for Resume {
        fn drop(&mut self) {
            // SAFETY: signalling the mount's daemon, which this test started.
            unsafe { libc::kill(self.0, libc::SIGCONT) };
        }
    }
    extern "C" fn ignore(_: libc::c_int) {}
    // SAFETY: a no-op handler for a signal nothing else in this process uses; the forked readers
    // inherit it, so SIGUSR1 interrupts their wait instead of killing them.
    unsafe { libc::signal(libc::SIGUSR1, ignore as *const () as libc::sighandler_t) };
    // SAFETY: as in Resume::drop.
    unsafe { libc::kill(m.pid as i32, libc::SIGSTOP) };
    let resume = Resume(m.pid as i32);
    // A stop takes effect when each of the daemon's threads next runs (late on a busy machine):
    // until then it may still serve the reads. Wait until every thread is stopped.
    let daemon = m.pid as i32;
    wait_until(
        "the daemon's threads to stop",
        Duration::from_millis(10),
        || {
            poison_util::tasks_of(&[daemon])
                .iter()
                .all(|&(p, t)| poison_util::task_state(p, t) == Some('T'))
        },
    );
    let read = |f: &std::fs::File| {
        let mut b = vec![0u8; PAGE as usize];
        let _ = f.read_at(&mut b, 0);
    };
    let first = poison_util::spawn(|| read(&f));
    std::thread::sleep(Duration::from_millis(300));
    let second = poison_util::spawn(|| read(&f));
    let t = Instant::now();
    let report = loop {
        for pid in [first, second] {
            // SAFETY: signalling our own children (the handler is a no-op).
            unsafe { libc::kill(pid, libc::SIGUSR1) };
        }
        if let Some(report) = w.tick(&[first, second]) {
            break report;
        }
        assert!(
            t.elapsed() < DEADLINE,
            "no task reported after {DEADLINE:?}; longest D state {:?}; the readers:\n{}\n{}",
            w.worst,
            poison_util::task_report(first, first),
            poison_util::task_report(second, second)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    w.recover(&[first, second]);
    drop(resume);
    drop(m);
    assert!(report.contains("in D state for"), "{report}");
    assert!(w.worst.0 > watch::D_LIMIT, "{:?}", w.worst);
    eprintln!("reported: {report}");
}
