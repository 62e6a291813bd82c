//! The memory-failure deadlock (DESIGN.md "Memory failure", rule 7): a poison inject/clear loop
//! and an mmap reader of the same file, both pinned to one CPU.
//!
//! The cycle this catches: the thread serving the poison ioctl sends `notify_inval_inode`; the
//! kernel's `invalidate_inode_pages2_range` waits for a page-cache folio that the reader's fault
//! has locked; that fault's `READ` is queued behind the ioctl, on the same io_uring queue (the
//! reader runs on the same CPU) or on the single `/dev/fuse` thread (`--threads 1`). If the
//! serving thread waits for the notification, nothing ever moves again.
//!
//! Each case runs `DAXFS_DEADLOCK_SECS` (default 10) seconds; no progress of either child for
//! 20 s is a hang: the test then records every stuck task's kernel stack, aborts the FUSE
//! connection (so every blocked task wakes), kills the children, unmounts and fails. Cases:
//! io_uring and `/dev/fuse --threads 1`, each with `dax=always` and `dax=never`.

mod common;
mod poison_util;

use std::ffi::OsStr;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use daxfs::ioctl::*;
use poison_util::*;

/// Pages of the test file (4 MiB: two PMD entries to start with).
const PAGES: u64 = 1024;
/// No progress for this long is a hang.
const HANG: Duration = Duration::from_secs(20);

const POISONER: usize = 0;
const READER: usize = 1;

fn run_secs() -> u64 {
    std::env::var("DAXFS_DEADLOCK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// Mounts `r` with `opts` and `threads` session threads; with `uring`, checks that requests really
/// go through the rings (another test may have turned `enable_uring` off meanwhile: set it again
/// and remount, a few times).
fn mount(r: &Region, opts: &str, threads: usize, uring: bool) -> MountGuard {
    for _ in 0..5 {
        if uring {
            assert!(enable_uring());
        }
        daxfs_ok([
            OsStr::new("mount"),
            r.path.as_os_str(),
            r.mnt.as_os_str(),
            "--threads".as_ref(),
            threads.to_string().as_ref(),
            "-o".as_ref(),
            opts.as_ref(),
        ]);
        let m = MountGuard::adopt(&r.path, &r.mnt);
        if !uring || request_counters(&m).get("IO_URING").copied().unwrap_or(0) > 0 {
            return m;
        }
        eprintln!("the mount fell back to /dev/fuse (enable_uring was off at INIT): again");
        m.unmount();
    }
    panic!("could not get an io_uring mount");
}

/// The poisoner child: for page after page, write it whole (a fresh block), inject poison into
/// it (the daemon unmaps the entry's range from every user mapping before it replies), clear it.
fn poison_loop(c: &Counters, path: &std::ffi::CStr, page_data: &[u8]) {
    pin(0);
    // SAFETY: opening a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR) };
    if fd < 0 {
        child_fail(c, POISONER, errno());
    }
    let mut i = 0u64;
    while c.stop.load(Ordering::Relaxed) == 0 {
        let page = (i * 37) % PAGES;
        i += 1;
        // SAFETY: writing one page from a buffer made before the fork.
        let n = unsafe {
            libc::pwrite(
                fd,
                page_data.as_ptr() as *const libc::c_void,
                PAGE as usize,
                (page * PAGE) as i64,
            )
        };
        if n != PAGE as isize {
            child_fail(c, POISONER, if n < 0 { errno() } else { libc::EIO });
        }
        for cmd in [DAXFS_IOC_INJECT_POISON, DAXFS_IOC_CLEAR_POISON] {
            let e = poison_fd(fd, cmd, 0, page * PAGE, PAGE);
            if e != 0 {
                child_fail(c, POISONER, e);
            }
        }
        c.ops[POISONER].fetch_add(1, Ordering::Relaxed);
    }
}

/// The reader child: maps the file and touches every page, again and again (each pass faults
/// the pages the poisoner invalidated, with readahead around them).
fn read_loop(c: &Counters, path: &std::ffi::CStr) {
    pin(0);
    survive_sigbus(Some(c));
    // SAFETY: opening a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        child_fail(c, READER, errno());
    }
    while c.stop.load(Ordering::Relaxed) == 0 {
        if let Err(e) = mmap_pass(fd, PAGES * PAGE) {
            child_fail(c, READER, e);
        }
        c.ops[READER].fetch_add(1, Ordering::Relaxed);
    }
}

fn deadlock_case(uring: bool, dax: &str) {
    require_fuse!();
    if uring && !enable_uring() {
        return;
    }
    let what = format!(
        "{} dax={dax}",
        if uring {
            "io_uring"
        } else {
            "/dev/fuse --threads 1"
        }
    );
    let r = Region::new("64M");
    let opts = if uring {
        format!("dax={dax},io_uring")
    } else {
        format!("dax={dax},noio_uring")
    };
    let m = mount(&r, &opts, if uring { 2 } else { 1 }, uring);
    let conn = connection_of(&m.mnt);
    let path = m.p("f");
    let data = pattern(5, (PAGES * PAGE) as usize);
    let f = std::fs::File::create(&path).unwrap();
    f.write_all_at(&data[..2 << 20], 0).unwrap();
    f.write_all_at(&data[2 << 20..], 2 << 20).unwrap();
    drop(f);

    let shared = Shared::new();
    let cpath = c_path(&path);
    let page_data = pattern(9, PAGE as usize);
    let c = shared.get();
    let kids = vec![
        spawn(|| poison_loop(c, &cpath, &page_data)),
        spawn(|| read_loop(c, &cpath)),
    ];

    let run = Duration::from_secs(run_secs());
    let t0 = Instant::now();
    let mut last = [(0u64, Instant::now()); 2];
    let mut hung = None;
    let mut exited = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if t0.elapsed() >= run {
            c.stop.store(1, Ordering::Relaxed);
            let (done, all) = wait_children(&kids, Duration::from_millis(1));
            exited.extend(done);
            if all || exited.len() == kids.len() {
                break;
            }
        }
        if shared.error().is_some() && c.stop.load(Ordering::Relaxed) == 0 {
            c.stop.store(1, Ordering::Relaxed);
        }
        for (role, l) in last.iter_mut().enumerate() {
            let n = shared.ops(role);
            if n != l.0 {
                *l = (n, Instant::now());
            } else if l.1.elapsed() > HANG && !exited.iter().any(|e| e.0 == kids[role]) {
                let mut pids = kids.clone();
                pids.push(m.pid as i32);
                hung = Some(format!(
                    "{what}: no progress of the {} for {} s ({} poison ops, {} mmap passes); \
                     stuck tasks:\n{}",
                    ["poisoner", "reader"][role],
                    HANG.as_secs(),
                    shared.ops(POISONER),
                    shared.ops(READER),
                    hang_report(&pids)
                ));
            }
        }
        if hung.is_some() {
            break;
        }
    }
    if let Some(report) = hung {
        // Recover: wake every blocked task, reap the children, leave no mount behind (the guard
        // unmounts and kills the daemon).
        abort_connection(&m.mnt, conn);
        let left = kill_children(&kids, Duration::from_secs(20));
        drop(m);
        panic!("DEADLOCK {report}\n(children left unreaped: {left:?})");
    }
    let (poisons, passes, sigbus) = (
        shared.ops(POISONER),
        shared.ops(READER),
        c.sigbus.load(Ordering::Relaxed),
    );
    eprintln!("{what}: {poisons} inject/clear rounds, {passes} mmap passes, {sigbus} SIGBUS");
    if let Some((role, e)) = shared.error() {
        panic!(
            "{what}: the {} failed: {}",
            ["poisoner", "reader"][role],
            std::io::Error::from_raw_os_error(e)
        );
    }
    for (pid, code) in &exited {
        assert_eq!(*code, 0, "{what}: child {pid} ended with {code}");
    }
    assert!(
        poisons > 10 && passes > 10,
        "{what}: too little happened ({poisons} poison rounds, {passes} mmap passes)"
    );
    let t = Instant::now();
    m.unmount();
    assert!(t.elapsed() < HANG, "{what}: unmount took {:?}", t.elapsed());
    r.assert_fsck_clean(&what);
}

#[test]
fn io_uring_dax_always_poison_loop_against_mmap_reader_on_one_cpu() {
    deadlock_case(true, "always");
}

#[test]
fn io_uring_dax_never_poison_loop_against_mmap_reader_on_one_cpu() {
    deadlock_case(true, "never");
}

#[test]
fn dev_fuse_one_thread_dax_always_poison_loop_against_mmap_reader() {
    deadlock_case(false, "always");
}

#[test]
fn dev_fuse_one_thread_dax_never_poison_loop_against_mmap_reader() {
    deadlock_case(false, "never");
}
