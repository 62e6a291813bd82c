//! FUSE-over-io_uring on a real mount (`-o io_uring`, issue 6): requests are served through the
//! per-CPU rings (the daemon's `IO_URING` counter covers them), files, directories, xattrs and
//! mmap behave as through `/dev/fuse`, the queue threads are one per possible CPU, each pinned to
//! its CPU at `SCHED_IDLE` (normal with `io_uring_sched=normal`), a queue starved by a CPU-bound
//! task is raised to normal priority and lowered again once calm, and a kernel that does not
//! offer io_uring gets the `/dev/fuse` path.
//!
//! The tests change the fuse module's `enable_uring` parameter (global), so they take a lock and
//! run one at a time. In CI a missing parameter fails them; elsewhere they are skipped.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::*;

const PARAM: &str = "/sys/module/fuse/parameters/enable_uring";

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The start of every test here: FUSE is there, the lock is taken, `enable_uring` is set as
/// asked. `None`: skip (outside CI only; both checks fail loudly in CI).
fn setup(uring: bool) -> Option<MutexGuard<'static, ()>> {
    if !fuse_available() {
        return None;
    }
    let s = serial();
    set_uring(uring).then_some(s)
}

/// Sets `enable_uring`; false (skip) when the kernel has no FUSE-over-io_uring, which fails in CI.
fn set_uring(on: bool) -> bool {
    if !Path::new(PARAM).exists() {
        let why = format!("{PARAM} is missing (kernel without CONFIG_FUSE_IO_URING)");
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("FUSE-over-io_uring tests cannot run in CI: {why}");
        }
        eprintln!("SKIPPED: {why}");
        return false;
    }
    std::fs::write(PARAM, if on { "1" } else { "0" }).expect("write enable_uring");
    true
}

fn get(c: &BTreeMap<String, u64>, k: &str) -> u64 {
    c.get(k).copied().unwrap_or(0)
}

/// The daemon's threads named `daxfs-ring-*`: (name, tid).
fn ring_threads(pid: u32) -> Vec<(String, i32)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let e = e.unwrap();
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let comm = comm.trim().to_string();
        if comm.starts_with("daxfs-ring-") {
            v.push((comm, e.file_name().to_string_lossy().parse().unwrap()));
        }
    }
    v.sort();
    v
}

/// Whether the daemon has a thread named `name`.
fn has_thread(pid: u32, name: &str) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .any(|e| {
            std::fs::read_to_string(e.unwrap().path().join("comm"))
                .unwrap_or_default()
                .trim()
                == name
        })
}

/// `sched_getscheduler(tid)`.
fn policy(tid: i32) -> i32 {
    // SAFETY: plain syscall; a bad tid only gives -1.
    unsafe { libc::sched_getscheduler(tid) }
}

fn policy_name(p: i32) -> &'static str {
    match p {
        libc::SCHED_IDLE => "SCHED_IDLE",
        libc::SCHED_OTHER => "SCHED_OTHER",
        _ => "another policy",
    }
}

/// Waits until queue thread `tid` runs at `want`. Return: how long it took.
///
/// A queue that served a request on a busy CPU (the mount's own first requests, on a loaded
/// machine) may have been raised by the watchdog; idle again, it is lowered after the calm
/// second, so a test waits for the state it needs instead of assuming a calm start.
fn wait_policy(tid: i32, want: i32, what: &str) -> Duration {
    wait_until(
        &format!("{what}: queue thread {tid} at {}", policy_name(want)),
        Duration::from_millis(2),
        || policy(tid) == want,
    )
}

/// Mounts `r` with `opts` (which name `io_uring`) and waits until the rings serve: a thread per
/// queue is there and a request came through a ring. `daxfs mount` returns once the mount answers
/// requests; until every queue has registered its entries (the queue threads start after that),
/// the kernel sends them through `/dev/fuse`, which on a busy machine can last a while.
fn mount_rings(r: &Region, opts: &str) -> MountGuard {
    let m = r.mount(opts);
    let queues = daxfs::fuse::uring::possible_cpus();
    wait_until(
        &format!("{opts}: all {queues} ring queues serve"),
        Duration::from_millis(10),
        || ring_threads(m.pid).len() == queues && get(&request_counters(&m), "IO_URING") > 0,
    );
    m
}

#[test]
fn requests_go_through_the_rings() {
    let Some(_s) = setup(true) else {
        return;
    };
    let r = Region::new("64M");
    let m = mount_rings(&r, "dax=always,io_uring");
    let f = create_rw(&m.p("f"));
    let before = request_counters(&m);
    let n = 1000u64;
    for i in 0..n {
        f.write_all_at(&pattern(i, 4096), i * 4096).unwrap();
    }
    let mut buf = vec![0u8; 4096];
    for i in (0..n).rev() {
        f.read_exact_at(&mut buf, i * 4096).unwrap();
        assert_eq!(buf, pattern(i, 4096), "block {i}");
    }
    let after = request_counters(&m);
    let writes = get(&after, "WRITE") - get(&before, "WRITE");
    let reads = get(&after, "READ") - get(&before, "READ");
    let ring = get(&after, "IO_URING") - get(&before, "IO_URING");
    eprintln!("WRITE +{writes}, READ +{reads}, IO_URING +{ring}");
    assert!(writes >= n && reads >= n, "WRITE +{writes}, READ +{reads}");
    assert!(
        ring >= writes + reads,
        "only {ring} of {} requests came through the rings",
        writes + reads
    );
    assert_eq!(get(&after, "GETXATTR"), get(&before, "GETXATTR"));
    drop(f);
    m.unmount();
    r.assert_fsck_clean("after io_uring writes");
}

/// Files, directories, xattrs, big writes, truncation and shared mmap through the rings, in
/// both data modes; then the image is clean.
fn exercise(dax: &str) {
    let r = Region::new("128M");
    let m = mount_rings(&r, &format!("dax={dax},io_uring"));
    let before = request_counters(&m);
    std::fs::create_dir(m.p("d")).unwrap();
    for i in 0..50u64 {
        std::fs::write(m.p(&format!("d/f{i}")), pattern(i, (i as usize) * 1000)).unwrap();
    }
    let mut names: Vec<_> = std::fs::read_dir(m.p("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 50);
    std::fs::rename(m.p("d/f7"), m.p("d/seven")).unwrap();
    assert_eq!(std::fs::read(m.p("d/seven")).unwrap(), pattern(7, 7000));
    std::os::unix::fs::symlink("seven", m.p("d/link")).unwrap();
    assert_eq!(std::fs::read(m.p("d/link")).unwrap(), pattern(7, 7000));

    // Writes larger than one ring payload (1 MiB) are split by the kernel.
    let big = pattern(99, 3 * 1024 * 1024 + 123);
    std::fs::write(m.p("big"), &big).unwrap();
    assert_eq!(std::fs::read(m.p("big")).unwrap(), big);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.p("big"))
        .unwrap();
    f.set_len(5000).unwrap();
    assert_eq!(std::fs::metadata(m.p("big")).unwrap().len(), 5000);

    // Shared mmap: a store through the mapping is read back by read(2).
    f.set_len(8192).unwrap();
    // SAFETY: a fresh shared mapping of an open file, unmapped below; nothing else maps it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: in bounds of the 8 KiB mapping made above.
    unsafe {
        std::ptr::copy_nonoverlapping(b"ring".as_ptr(), (p as *mut u8).add(4100), 4);
        assert_eq!(libc::msync(p, 8192, libc::MS_SYNC), 0);
        libc::munmap(p, 8192);
    }
    let mut back = [0u8; 4];
    f.read_exact_at(&mut back, 4100).unwrap();
    assert_eq!(&back, b"ring");
    drop(f);

    // xattrs.
    let path = cpath(&m.p("d/seven"));
    let name = std::ffi::CString::new("user.ring").unwrap();
    // SAFETY: valid C strings and buffers for the calls' lengths.
    unsafe {
        assert_eq!(
            libc::setxattr(path.as_ptr(), name.as_ptr(), b"v1".as_ptr().cast(), 2, 0),
            0
        );
        let mut v = [0u8; 8];
        let n = libc::getxattr(path.as_ptr(), name.as_ptr(), v.as_mut_ptr().cast(), v.len());
        assert_eq!(n, 2);
        assert_eq!(&v[..2], b"v1");
    }

    for i in 0..50u64 {
        if i != 7 {
            std::fs::remove_file(m.p(&format!("d/f{i}"))).unwrap();
        }
    }
    std::fs::remove_file(m.p("d/seven")).unwrap();
    std::fs::remove_file(m.p("d/link")).unwrap();
    std::fs::remove_dir(m.p("d")).unwrap();
    let after = request_counters(&m);
    assert!(
        get(&after, "IO_URING") > get(&before, "IO_URING") + 200,
        "dax={dax}: the rings served {} requests",
        get(&after, "IO_URING") - get(&before, "IO_URING")
    );
    m.unmount();
    r.assert_fsck_clean(&format!("after the io_uring exercise, dax={dax}"));
}

#[test]
fn files_directories_xattrs_and_mmap_work_through_the_rings() {
    let Some(_s) = setup(true) else {
        return;
    };
    exercise("always");
    exercise("never");
}

#[test]
fn one_pinned_idle_queue_thread_per_possible_cpu() {
    let Some(_s) = setup(true) else {
        return;
    };
    let r = Region::new("64M");
    for (opts, want) in [
        ("io_uring", libc::SCHED_IDLE),
        ("io_uring,io_uring_sched=normal", libc::SCHED_OTHER),
    ] {
        let m = mount_rings(&r, opts);
        std::fs::write(m.p("x"), b"x").unwrap();
        let threads = ring_threads(m.pid);
        assert_eq!(
            threads.len(),
            daxfs::fuse::uring::possible_cpus(),
            "{opts}: {threads:?}"
        );
        if want == libc::SCHED_IDLE {
            // Started right after the queues.
            wait_until(
                &format!("{opts}: the watchdog thread starts"),
                Duration::from_millis(10),
                || has_thread(m.pid, "daxfs-ringwatch"),
            );
        } else {
            assert!(
                !has_thread(m.pid, "daxfs-ringwatch"),
                "{opts}: a watchdog for queues that are not SCHED_IDLE"
            );
        }
        for (qid, (name, tid)) in threads.iter().enumerate() {
            assert_eq!(name, &format!("daxfs-ring-{qid}"));
            if want == libc::SCHED_IDLE {
                // On a busy machine the watchdog may have raised a queue that served `x`.
                wait_policy(*tid, want, opts);
            } else {
                assert_eq!(policy(*tid), want, "{opts}: {name}");
            }
            let status =
                std::fs::read_to_string(format!("/proc/{}/task/{tid}/status", m.pid)).unwrap();
            let allowed = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap()
                .trim()
                .to_string();
            assert_eq!(allowed, qid.to_string(), "{opts}: {name} is pinned");
        }
        m.unmount();
    }
}

/// Turns `kernel.sched_autogroup_enabled` off until dropped (restores the old value).
struct Autogroups(Option<String>);

impl Autogroups {
    const PATH: &'static str = "/proc/sys/kernel/sched_autogroup_enabled";

    fn off() -> Autogroups {
        let old = std::fs::read_to_string(Self::PATH).ok();
        if old.is_some() {
            std::fs::write(Self::PATH, "0").expect("turn autogroups off");
        }
        Autogroups(old)
    }
}

impl Drop for Autogroups {
    fn drop(&mut self) {
        if let Some(old) = self.0.take() {
            let _ = std::fs::write(Self::PATH, old.trim());
        }
    }
}

fn pin_self(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
}

/// The watchdog raises a queue thread starved by a CPU hog and lowers it once calm. Holds on a
/// busy machine: it waits for queue 0 to be at `SCHED_IDLE` before it makes the contention (the
/// mount's own requests may have had it raised), makes the contention itself (a hog and a writer
/// on CPU 0), and waits for each change with a deadline.
#[test]
fn a_starved_queue_is_raised_and_lowered_when_calm() {
    let Some(_s) = setup(true) else {
        return;
    };
    // With autogroups on, the daemon (its own session) is a scheduling group of its own and gets
    // its group's share whatever its threads' policy, so a hog elsewhere cannot starve it; they
    // are turned off before the daemon starts, so that its threads, the hog and the writer are
    // all in one group and compete directly. (A task's group is chosen when it is created or
    // moved: switching autogroups off later leaves a running daemon in its own group, which is
    // how this test once waited in vain.)
    let flat = Autogroups::off();
    let r = Region::new("64M");
    let m = mount_rings(&r, "io_uring");
    let f = Arc::new(create_rw(&m.p("f")));
    let q0 = ring_threads(m.pid)
        .into_iter()
        .find(|(n, _)| n == "daxfs-ring-0")
        .expect("queue 0")
        .1;
    let calm = wait_policy(q0, libc::SCHED_IDLE, "before the contention");
    eprintln!("queue 0 at SCHED_IDLE after {calm:?}");

    // A CPU-bound thread and a writer, both on CPU 0: queue 0's thread must wait for the hog.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let hog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            pin_self(0);
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        })
    };
    let writer = {
        let (stop, writes, f) = (stop.clone(), writes.clone(), f.clone());
        std::thread::spawn(move || {
            pin_self(0);
            let block = pattern(1, 4096);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                f.write_all_at(&block, (i % 256) * 4096).unwrap();
                i += 1;
                writes.store(i, Ordering::Relaxed);
            }
        })
    };
    // Stop the contention whatever happens below (a panic would leave the threads spinning).
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stopper = StopOnDrop(stop);
    let raised_after = wait_policy(q0, libc::SCHED_OTHER, "behind a CPU hog on CPU 0");
    // Raised, the queue serves the writer although the hog still runs.
    let at_raise = writes.load(Ordering::Relaxed);
    let progress = wait_until(
        "100 writes served by the raised queue",
        Duration::from_millis(2),
        || writes.load(Ordering::Relaxed) >= at_raise + 100,
    );
    drop(flat);
    drop(stopper);
    hog.join().unwrap();
    writer.join().unwrap();
    eprintln!(
        "raised after {raised_after:?} ({at_raise} writes by then), then 100 writes in \
         {progress:?}"
    );

    // Calm again: lowered after the watchdog's calm second.
    let lowered_after = wait_policy(q0, libc::SCHED_IDLE, "after the hog ended");
    eprintln!("lowered {lowered_after:?} after the hog ended");
    drop(f);
    m.unmount();
}

#[test]
fn a_remount_may_name_the_transport_in_force_but_not_change_it() {
    let Some(_s) = setup(true) else {
        return;
    };
    let r = Region::new("64M");
    let m = mount_rings(&r, "io_uring");
    let remount = |opts: &str| {
        daxfs([
            "mount".as_ref(),
            r.path.as_os_str(),
            m.mnt.as_os_str(),
            "-o".as_ref(),
            opts.as_ref(),
        ])
    };
    // xfstests' _scratch_remount passes every mount option again.
    let o = remount("remount,ro,dev,suid,io_uring");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_errno(std::fs::write(m.p("f"), b"x"), libc::EROFS);
    let o = remount("remount,rw,io_uring,io_uring_sched=idle");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(m.p("f"), b"x").unwrap();
    for change in ["remount,noio_uring", "remount,io_uring_sched=normal"] {
        let o = remount(change);
        assert!(!o.status.success(), "{change} accepted");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("cannot be changed by a remount"),
            "{change}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert!(!ring_threads(m.pid).is_empty(), "still served by the rings");
    m.unmount();
}

#[test]
fn without_kernel_support_the_mount_serves_through_dev_fuse() {
    let Some(_s) = setup(false) else {
        return;
    };
    let r = Region::new("64M");
    let m = r.mount("io_uring");
    std::fs::write(m.p("f"), pattern(3, 10_000)).unwrap();
    assert_eq!(std::fs::read(m.p("f")).unwrap(), pattern(3, 10_000));
    let c = request_counters(&m);
    assert!(get(&c, "WRITE") >= 1);
    assert_eq!(get(&c, "IO_URING"), 0, "no ring without enable_uring");
    assert!(ring_threads(m.pid).is_empty());
    m.unmount();
    set_uring(true);
}

/// The transport `daxfs stat --json MOUNTPOINT` reports.
fn transport_of(m: &MountGuard) -> String {
    let out = daxfs_ok([
        std::ffi::OsStr::new("stat"),
        m.mnt.as_os_str(),
        "--json".as_ref(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["transport"].as_str().unwrap_or("none").to_string()
}

/// `io_uring=auto` is the default: the rings when the fuse module offers them, `/dev/fuse`
/// quietly when it does not; `noio_uring` forces `/dev/fuse`. `daxfs stat` and the log say which.
#[test]
fn auto_is_the_default_and_stat_and_the_log_name_the_transport() {
    let Some(_s) = setup(true) else {
        return;
    };
    let r = Region::new("64M");
    for (opts, want) in [
        ("", "io_uring"),
        ("io_uring=auto", "io_uring"),
        ("noio_uring", "dev_fuse"),
    ] {
        let log = r.dir.path().join("daemon.log");
        let _ = std::fs::remove_file(&log);
        let mut args = vec![
            std::ffi::OsStr::new("mount"),
            r.path.as_os_str(),
            r.mnt.as_os_str(),
            "--log".as_ref(),
            log.as_os_str(),
        ];
        if !opts.is_empty() {
            args.extend([std::ffi::OsStr::new("-o"), std::ffi::OsStr::new(opts)]);
        }
        daxfs_ok(&args);
        let m = MountGuard::adopt(&r.path, &r.mnt);
        std::fs::write(m.p("f"), pattern(1, 10_000)).unwrap();
        assert_eq!(transport_of(&m), want, "-o {opts:?}");
        let rings = get(&request_counters(&m), "IO_URING");
        assert_eq!(
            rings > 0,
            want == "io_uring",
            "-o {opts:?}: {rings} ring requests"
        );
        let text = daxfs_ok([std::ffi::OsStr::new("stat"), m.mnt.as_os_str()]);
        let line = if want == "io_uring" {
            "transport:      io_uring"
        } else {
            "transport:      /dev/fuse"
        };
        assert!(text.contains(line), "-o {opts:?}: {text}");
        m.unmount();
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let says = if want == "io_uring" {
            "transport: io_uring"
        } else {
            "transport: /dev/fuse"
        };
        assert!(
            logged.contains(says),
            "-o {opts:?}: log lacks {says:?}:\n{logged}"
        );
    }
    // Without the module's consent the default is /dev/fuse, with no warning.
    assert!(set_uring(false));
    let log = r.dir.path().join("daemon-off.log");
    daxfs_ok([
        std::ffi::OsStr::new("mount"),
        r.path.as_os_str(),
        r.mnt.as_os_str(),
        "--log".as_ref(),
        log.as_os_str(),
    ]);
    let m = MountGuard::adopt(&r.path, &r.mnt);
    assert_eq!(transport_of(&m), "dev_fuse");
    // A remount may name the transport the default picked, not the other.
    let remount = |o: &str| {
        daxfs([
            std::ffi::OsStr::new("mount"),
            r.path.as_os_str(),
            r.mnt.as_os_str(),
            "-o".as_ref(),
            o.as_ref(),
        ])
    };
    assert!(remount("remount,noio_uring").status.success());
    assert!(!remount("remount,io_uring").status.success());
    m.unmount();
    set_uring(true);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains("transport: /dev/fuse"), "{logged}");
    assert!(!logged.contains("WARN"), "io_uring=auto warned:\n{logged}");
}
