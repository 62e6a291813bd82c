//! Shared helpers of the memory-failure tests that must survive a hang (`poison_deadlock`, the
//! stress in `poison`): workloads in forked child processes that count their progress in shared
//! memory, a watchdog for progress and D-state tasks, and recovery that aborts the FUSE connection
//! so that no hung task, mount or daemon is left behind when a test fails.
//!
//! Why child processes: a task stuck in the kernel on a FUSE request cannot be killed or joined
//! until the connection is aborted; in a forked child it never blocks the test harness, and it is
//! reaped after the abort. The children call only plain syscalls (no locks of the parent's threads
//! are taken after `fork`; buffers are made before it).

#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use daxfs::ioctl::*;

pub const PAGE: u64 = 4096;

/// Counters shared between the test and its children (one anonymous shared page).
#[repr(C)]
pub struct Counters {
    /// Set by the parent: children finish their current step and exit.
    pub stop: AtomicU64,
    /// Work done, one slot per child role (see the workloads).
    pub ops: [AtomicU64; 8],
    /// First error a child met: `(role + 1) << 32 | errno` (0: none).
    pub error: AtomicU64,
    /// SIGBUS taken by mmap readers (expected on poisoned pages).
    pub sigbus: AtomicU64,
}

/// A [`Counters`] page shared across `fork`.
pub struct Shared {
    ptr: *mut Counters,
}

// SAFETY: the counters are atomics in a mapping that lives as long as `Shared`.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    pub fn new() -> Shared {
        // SAFETY: a fresh anonymous shared mapping, zero-filled (all counters 0); checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "{}", io::Error::last_os_error());
        Shared {
            ptr: p as *mut Counters,
        }
    }

    pub fn get(&self) -> &Counters {
        // SAFETY: the mapping is page-sized, zero-initialised atomics are valid, and it lives as
        // long as `self`.
        unsafe { &*self.ptr }
    }

    /// Total of every role's counter.
    pub fn total(&self) -> u64 {
        self.get()
            .ops
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn ops(&self, role: usize) -> u64 {
        self.get().ops[role].load(Ordering::Relaxed)
    }

    /// The first child error, as `(role, errno)`.
    pub fn error(&self) -> Option<(usize, i32)> {
        match self.get().error.load(Ordering::Relaxed) {
            0 => None,
            e => Some(((e >> 32) as usize - 1, e as u32 as i32)),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once.
        unsafe { libc::munmap(self.ptr as *mut _, PAGE as usize) };
    }
}

/// Records a child's error (first one wins) and ends the child.
pub fn child_fail(c: &Counters, role: usize, errno: i32) -> ! {
    let _ = c.error.compare_exchange(
        0,
        ((role as u64 + 1) << 32) | errno as u32 as u64,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    // SAFETY: leaving the child without running the parent's destructors.
    unsafe { libc::_exit(1) }
}

/// The calling thread's errno.
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Pins the calling process (a child) to `cpu`.
pub fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Forks a child running `f` (which must only make syscalls and touch memory made before the
/// fork); the child exits 0 when `f` returns. Return: its pid.
pub fn spawn(f: impl FnOnce()) -> i32 {
    // SAFETY: the child runs `f` (plain syscalls on memory prepared before the fork) and leaves
    // with _exit, never returning into the test harness.
    match unsafe { libc::fork() } {
        0 => {
            f();
            // SAFETY: leaving the child without running the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        -1 => panic!("fork: {}", io::Error::last_os_error()),
        pid => pid,
    }
}

/// A NUL-terminated path for the children's `open`.
pub fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// The poison ioctl on an open descriptor (file range, or region range with `POISON_BY_REGION`).
/// Return: 0 or the errno.
pub fn poison_fd(fd: i32, cmd: u32, flags: u32, offset: u64, len: u64) -> i32 {
    let mut p = DaxfsPoison::new_request();
    p.flags = flags;
    p.offset = offset;
    p.len = len;
    // SAFETY: both poison requests encode the size of DaxfsPoison; `p` lives across the call.
    let rc = unsafe { libc::ioctl(fd, cmd as _, &mut p as *mut DaxfsPoison) };
    if rc < 0 {
        errno()
    } else {
        0
    }
}

// ---- mmap readers that survive SIGBUS ----

static SIGBUS_COUNTER: AtomicU64 = AtomicU64::new(0);

/// SIGBUS taken by this process since [`survive_sigbus`] (each forked child has its own copy):
/// a reader compares it before and after a load to tell which page faulted.
pub static SIGBUS_TAKEN: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; `si_addr` is the
    // faulting address. Mapping an anonymous page over the faulting page (MAP_FIXED) is
    // async-signal-safe (a syscall) and lets the faulting load complete, reading zeros.
    unsafe {
        let addr = ((*info).si_addr() as usize) & !(PAGE as usize - 1);
        libc::mmap(
            addr as *mut libc::c_void,
            PAGE as usize,
            libc::PROT_READ,
            libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        let c = SIGBUS_COUNTER.load(Ordering::Relaxed) as *const Counters;
        if !c.is_null() {
            (*c).sigbus.fetch_add(1, Ordering::Relaxed);
        }
    }
    SIGBUS_TAKEN.fetch_add(1, Ordering::SeqCst);
}

/// In a child: SIGBUS on a mapped page replaces that page by zeros and counts it in
/// [`SIGBUS_TAKEN`], and in `c` when given.
pub fn survive_sigbus(c: Option<&Counters>) {
    let c = c.map_or(std::ptr::null(), |c| c as *const Counters);
    SIGBUS_COUNTER.store(c as u64, Ordering::Relaxed);
    // SAFETY: installing a handler in the child; the sigaction struct is fully initialised.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus
            as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
            as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

/// In a child: maps `len` bytes of `fd` shared and reads one byte of every page (faulting them
/// in through the kernel's page cache and readahead), then unmaps. Return: the sum of the bytes
/// read (so the reads are not optimised away), or the mmap errno.
pub fn mmap_pass(fd: i32, len: u64) -> Result<u64, i32> {
    // SAFETY: a fresh shared read-only mapping of an open descriptor; checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(errno());
    }
    let mut sum = 0u64;
    for page in 0..len / PAGE {
        // SAFETY: inside the live mapping; a poisoned page raises SIGBUS, which the handler of
        // `survive_sigbus` turns into a zero page.
        sum += u64::from(unsafe {
            std::ptr::read_volatile((p as *const u8).add((page * PAGE) as usize))
        });
    }
    // SAFETY: unmapping our own mapping.
    unsafe { libc::munmap(p, len as usize) };
    Ok(sum)
}

// ---- watching: progress, D state, kernel stacks ----

/// The pids (and their threads) a watchdog looks at.
pub fn tasks_of(pids: &[i32]) -> Vec<(i32, i32)> {
    let mut v = Vec::new();
    for &pid in pids {
        if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) {
            for t in rd.flatten() {
                if let Ok(tid) = t.file_name().to_string_lossy().parse() {
                    v.push((pid, tid));
                }
            }
        }
    }
    v
}

/// The state letter of a task (`/proc/PID/task/TID/stat`, field 3), if it still exists.
pub fn task_state(pid: i32, tid: i32) -> Option<char> {
    let s = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    // comm may contain spaces and parentheses: the state follows the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// A task's name and kernel stack, for a hang report.
pub fn task_report(pid: i32, tid: i32) -> String {
    let comm = fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
    let stack = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stack")).unwrap_or_default();
    let stack: Vec<&str> = stack.lines().take(12).collect();
    format!(
        "  {pid}/{tid} {} [{}]\n    {}",
        comm.trim(),
        task_state(pid, tid).unwrap_or('?'),
        stack.join("\n    ")
    )
}

/// Tracks how long each task has been in D state (sampled).
#[derive(Default)]
pub struct DStateWatch {
    since: HashMap<(i32, i32), Instant>,
    /// The longest continuous D state seen, and by whom.
    pub worst: (Duration, Option<(i32, i32)>),
}

impl DStateWatch {
    /// Samples every task of `pids`. Return: a task continuously in D state for longer than
    /// `limit`, if any.
    pub fn sample(&mut self, pids: &[i32], limit: Duration) -> Option<(i32, i32)> {
        self.sample_tasks(&tasks_of(pids), limit)
    }

    /// As [`DStateWatch::sample`], for the given `(pid, tid)` tasks.
    pub fn sample_tasks(&mut self, tasks: &[(i32, i32)], limit: Duration) -> Option<(i32, i32)> {
        let now = Instant::now();
        let mut seen = Vec::new();
        let mut over = None;
        for &(pid, tid) in tasks {
            if task_state(pid, tid) == Some('D') {
                let t0 = *self.since.entry((pid, tid)).or_insert(now);
                let d = now - t0;
                if d > self.worst.0 {
                    self.worst = (d, Some((pid, tid)));
                }
                if d > limit {
                    over = Some((pid, tid));
                }
                seen.push((pid, tid));
            }
        }
        self.since.retain(|k, _| seen.contains(k));
        over
    }
}

/// Everything stuck: a report of every task of `pids` that is in D state (or all, if none is).
pub fn hang_report(pids: &[i32]) -> String {
    let tasks = tasks_of(pids);
    let d: Vec<_> = tasks
        .iter()
        .filter(|(p, t)| task_state(*p, *t) == Some('D'))
        .collect();
    let pick: Vec<_> = if d.is_empty() {
        tasks.iter().collect()
    } else {
        d
    };
    pick.iter()
        .map(|(p, t)| task_report(*p, *t))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- recovery ----

/// The FUSE connection of a mount (its number in `/sys/fs/fuse/connections`: the minor of the
/// mount's device). Read it while the mount still answers.
pub fn connection_of(mnt: &Path) -> u64 {
    let dev = fs::metadata(mnt).expect("stat the mount").dev();
    libc::minor(dev) as u64
}

/// Aborts FUSE connection `conn` of the mount on `mnt`: every waiting request ends with an error,
/// so no task stays blocked on it. Through fusectl when mounted, else `umount -f` (the kernel's
/// `umount_begin` aborts the connection before the busy check), then a lazy unmount.
pub fn abort_connection(mnt: &Path, conn: u64) {
    let ctl = PathBuf::from(format!("/sys/fs/fuse/connections/{conn}/abort"));
    if ctl.exists() {
        let _ = fs::write(&ctl, "1");
    }
    let _ = nix::mount::umount2(mnt, nix::mount::MntFlags::MNT_FORCE);
    let _ = nix::mount::umount2(mnt, nix::mount::MntFlags::MNT_DETACH);
}

/// Kills and reaps the children, waiting up to `limit` for each. Return: the pids that did not
/// go away.
pub fn kill_children(pids: &[i32], limit: Duration) -> Vec<i32> {
    let mut left = Vec::new();
    for &pid in pids {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for &pid in pids {
        let t = Instant::now();
        loop {
            let mut st = 0;
            // SAFETY: reaping our own child without blocking.
            let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
            if r == pid || r < 0 {
                break;
            }
            if t.elapsed() > limit {
                left.push(pid);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    left
}

/// Waits for every child to exit by itself within `limit`. Return: `(pid, exit code or -signal)`
/// of those that exited, and whether all did.
pub fn wait_children(pids: &[i32], limit: Duration) -> (Vec<(i32, i32)>, bool) {
    let t = Instant::now();
    let mut done = Vec::new();
    let mut left: Vec<i32> = pids.to_vec();
    while !left.is_empty() && t.elapsed() < limit {
        left.retain(|&pid| {
            let mut st = 0;
            // SAFETY: reaping our own child without blocking.
            let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
            if r == pid {
                let code = if libc::WIFSIGNALED(st) {
                    -libc::WTERMSIG(st)
                } else {
                    libc::WEXITSTATUS(st)
                };
                done.push((pid, code));
                false
            } else {
                r >= 0
            }
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    let all = left.is_empty();
    (done, all)
}
