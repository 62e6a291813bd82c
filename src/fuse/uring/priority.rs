//! Queue-thread priority: `SCHED_IDLE` while its CPU is otherwise free, normal while contended.
//!
//! Owns: the scheduling policy of the io_uring queue threads and the watchdog that changes it.
//! Why: when a queue thread commits a reply, the kernel wakes the request's sender. The scheduler
//! places a woken task on an idle CPU when there is one, and the queue's CPU is busy at that
//! moment (with the queue thread), so the sender moves to the other CPU, and its next request is
//! served there after a cross-CPU wake-up of that CPU's queue thread, or the reverse. A CPU whose
//! only running task is `SCHED_IDLE` counts as idle, so the sender stays, and sender and queue
//! thread hand the CPU to each other (measured in docs/PERFORMANCE.md).
//!
//! The risk of `SCHED_IDLE` is starvation: with a CPU-bound task on the queue's CPU, the queue
//! thread would get a sliver of it and requests would crawl. Rule kept: the watchdog (a normal
//! thread) samples each queue thread every [`PERIOD`]: its state (`/proc/<pid>/task/<tid>/stat`)
//! and scheduler statistics (`.../schedstat`: CPU time, time spent runnable but waiting, number of
//! runs). A queue thread is starved when it was runnable at two samples in a row without getting
//! any CPU time in between (the wait statistics only grow once it finally runs, so a thread that
//! never runs must be caught this way), or when its average wait per run exceeds [`STARVED_AVG`]
//! (and [`STARVED_TOTAL`] in the period). A starved thread is raised to `SCHED_OTHER` at once, and
//! lowered back to `SCHED_IDLE` only after [`CALM_PERIODS`] calm periods in a row (average wait
//! under [`CALM_AVG`], not stuck runnable).
//!
//! Where the scheduler groups tasks (autogroups per session, CPU cgroups), the daemon's group
//! keeps its share whatever its threads' policy, so only work in the same group can starve a
//! queue thread; the watchdog does not depend on that.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// How often the watchdog samples while a queue is busy.
pub const PERIOD: Duration = Duration::from_millis(5);
/// How often at most while every queue thread sleeps with nothing served: the period doubles
/// from [`PERIOD`] up to this (an idle mount costs the watchdog a few reads per second).
pub const IDLE_PERIOD: Duration = Duration::from_millis(100);
/// Average wait per run above which a queue thread counts as starved. A served request costs a
/// queue thread about a microsecond of waiting (its sender finishing the system call that queued
/// it); a CPU-bound competitor makes it wait whole time slices (milliseconds).
pub const STARVED_AVG: Duration = Duration::from_micros(200);
/// ... and total wait in one period above which it counts as starved (ignores single blips).
pub const STARVED_TOTAL: Duration = Duration::from_millis(1);
/// Average wait per run under which a period counts as calm.
pub const CALM_AVG: Duration = Duration::from_micros(50);
/// Calm periods in a row before a raised queue thread goes back to `SCHED_IDLE` (1 s).
pub const CALM_PERIODS: u32 = 200;

const NOT_STARTED: i32 = 0;
const LEFT: i32 = -1;

/// The queue threads' ids, shared by the threads (which enter and leave) and the watchdog.
#[derive(Debug)]
pub struct Watch {
    tids: Vec<AtomicI32>,
}

/// What the watchdog decided for one queue in one period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Starved: raise the queue thread to normal priority.
    Raise,
    /// Calm for a while: back to `SCHED_IDLE`.
    Lower,
    /// Leave it as it is.
    Keep,
}

/// One observation of a queue thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Cumulative CPU time (ns).
    pub exec_ns: u64,
    /// Cumulative time spent runnable but waiting for a CPU (ns), as of its last run.
    pub wait_ns: u64,
    /// Cumulative number of runs.
    pub runs: u64,
    /// Runnable (state `R`) at the moment of the sample.
    pub runnable: bool,
}

/// One queue's history as the watchdog sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueState {
    prev: Option<Sample>,
    raised: bool,
    calm: u32,
}

impl QueueState {
    /// Feed one sample; returns what to do.
    pub fn sample(&mut self, s: Sample) -> Verdict {
        let Some(p) = self.prev.replace(s) else {
            return Verdict::Keep;
        };
        let stuck = p.runnable && s.runnable && s.exec_ns == p.exec_ns;
        let dw = s.wait_ns.saturating_sub(p.wait_ns);
        let dr = s.runs.saturating_sub(p.runs).max(1);
        let avg = dw / dr;
        if !self.raised {
            let waits = avg > STARVED_AVG.as_nanos() as u64 && dw > STARVED_TOTAL.as_nanos() as u64;
            if stuck || waits {
                self.raised = true;
                self.calm = 0;
                return Verdict::Raise;
            }
            return Verdict::Keep;
        }
        if !stuck && avg < CALM_AVG.as_nanos() as u64 {
            self.calm += 1;
            if self.calm >= CALM_PERIODS {
                self.raised = false;
                self.calm = 0;
                return Verdict::Lower;
            }
        } else {
            self.calm = 0;
        }
        Verdict::Keep
    }
}

impl Watch {
    /// A watchdog of `queues` ring queues, all at `SCHED_IDLE`.
    pub fn new(queues: usize) -> Watch {
        Watch {
            tids: (0..queues).map(|_| AtomicI32::new(NOT_STARTED)).collect(),
        }
    }

    /// Called by queue thread `qid` on start: lowers itself to `SCHED_IDLE` and registers.
    pub fn enter(&self, qid: usize) {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        set_policy(0, libc::SCHED_IDLE);
        self.tids[qid].store(tid, Ordering::Release);
    }

    /// Called by queue thread `qid` when it ends.
    pub fn leave(&self, qid: usize) {
        self.tids[qid].store(LEFT, Ordering::Release);
    }

    /// The watchdog loop; returns once every queue thread has left.
    pub fn run(&self) {
        let pid = std::process::id();
        let mut states = vec![QueueState::default(); self.tids.len()];
        let mut probes: Vec<Option<Probe>> = (0..self.tids.len()).map(|_| None).collect();
        let mut period = PERIOD;
        loop {
            std::thread::sleep(period);
            let mut all_left = true;
            let mut busy = false;
            for (qid, st) in states.iter_mut().enumerate() {
                let tid = self.tids[qid].load(Ordering::Acquire);
                if tid != LEFT {
                    all_left = false;
                }
                if tid == LEFT || tid == NOT_STARTED {
                    continue;
                }
                let probe = match &mut probes[qid] {
                    Some(p) => p,
                    slot => match Probe::open(pid, tid) {
                        Some(p) => slot.insert(p),
                        None => continue,
                    },
                };
                let Some(sample) = probe.read() else {
                    continue;
                };
                busy |= sample.runnable || st.prev.is_some_and(|p| p.runs != sample.runs);
                match st.sample(sample) {
                    Verdict::Raise => {
                        log::debug!("io_uring queue {qid}: waiting for its CPU; normal priority");
                        set_policy(tid, libc::SCHED_OTHER);
                    }
                    Verdict::Lower => {
                        log::debug!("io_uring queue {qid}: CPU free again; SCHED_IDLE");
                        set_policy(tid, libc::SCHED_IDLE);
                    }
                    Verdict::Keep => {}
                }
            }
            if all_left {
                return;
            }
            let raised = states.iter().any(|s| s.raised);
            period = if busy || raised {
                PERIOD
            } else {
                (period * 2).min(IDLE_PERIOD)
            };
        }
    }
}

/// A queue thread's `stat` and `schedstat`, kept open and re-read from offset 0.
struct Probe {
    stat: std::fs::File,
    schedstat: std::fs::File,
    buf: Vec<u8>,
}

impl Probe {
    fn open(pid: u32, tid: i32) -> Option<Probe> {
        let dir = format!("/proc/{pid}/task/{tid}");
        Some(Probe {
            stat: std::fs::File::open(format!("{dir}/stat")).ok()?,
            schedstat: std::fs::File::open(format!("{dir}/schedstat")).ok()?,
            buf: vec![0; 1024],
        })
    }

    /// The thread's state and scheduler statistics now.
    fn read(&mut self) -> Option<Sample> {
        use std::os::unix::fs::FileExt;
        let n = self.schedstat.read_at(&mut self.buf, 0).ok()?;
        let (exec_ns, wait_ns, runs) = parse_schedstat(std::str::from_utf8(&self.buf[..n]).ok()?)?;
        let n = self.stat.read_at(&mut self.buf, 0).ok()?;
        let state = parse_state(std::str::from_utf8(&self.buf[..n]).ok()?)?;
        Some(Sample {
            exec_ns,
            wait_ns,
            runs,
            runnable: state == 'R',
        })
    }
}

/// `schedstat`: CPU time (ns), wait time (ns), runs.
fn parse_schedstat(s: &str) -> Option<(u64, u64, u64)> {
    let mut f = s.split_whitespace();
    let exec = f.next()?.parse().ok()?;
    let wait = f.next()?.parse().ok()?;
    let runs = f.next()?.parse().ok()?;
    Some((exec, wait, runs))
}

/// The state letter of a `stat` line (the field after the parenthesised name, which may itself
/// hold spaces and parentheses).
fn parse_state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

fn set_policy(tid: i32, policy: libc::c_int) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall with a valid parameter block; `tid` is a thread of this process (or 0,
    // the caller). Failure only leaves the policy as it was.
    let r = unsafe { libc::sched_setscheduler(tid, policy, &param) };
    if r != 0 {
        log::warn!(
            "sched_setscheduler({tid}, {policy}): {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields() {
        assert_eq!(parse_schedstat("674640 1200 3\n"), Some((674640, 1200, 3)));
        assert_eq!(parse_schedstat("1 2"), None);
        assert_eq!(parse_state("12 (daxfs-ring-0) R 1 2 3"), Some('R'));
        assert_eq!(parse_state("12 (a) b) S 1"), Some('S'));
        let own = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        assert_eq!(
            parse_state(&own),
            Some('R'),
            "a thread reading its own stat runs"
        );
    }

    #[test]
    fn a_probe_reads_its_own_thread() {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let mut p = Probe::open(std::process::id(), tid).expect("own /proc entries");
        let a = p.read().unwrap();
        assert!(a.runnable, "a thread reading its own stat is running");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        std::thread::sleep(Duration::from_millis(2));
        let b = p.read().unwrap();
        assert!(b.exec_ns > a.exec_ns && b.runs > a.runs, "{a:?} then {b:?}");
    }

    fn s(exec_ns: u64, wait_ns: u64, runs: u64, runnable: bool) -> Sample {
        Sample {
            exec_ns,
            wait_ns,
            runs,
            runnable,
        }
    }

    #[test]
    fn runnable_without_cpu_time_is_starvation() {
        let mut q = QueueState::default();
        assert_eq!(q.sample(s(100, 0, 1, true)), Verdict::Keep);
        // Still runnable, no CPU time, and no wait accounted yet (it has not run since).
        assert_eq!(q.sample(s(100, 0, 1, true)), Verdict::Raise);
    }

    #[test]
    fn runnable_and_progressing_is_not_starvation() {
        let mut q = QueueState::default();
        q.sample(s(100, 0, 1, true));
        assert_eq!(q.sample(s(5_000, 1_000, 9, true)), Verdict::Keep);
        assert_eq!(q.sample(s(5_000, 1_000, 9, false)), Verdict::Keep);
    }

    #[test]
    fn busy_serving_is_not_starvation() {
        // 100k requests in 5 ms-periods: 500 runs, ~1 us wait each.
        let mut q = QueueState::default();
        let (mut e, mut w, mut r) = (0u64, 0u64, 0u64);
        assert_eq!(q.sample(s(e, w, r, false)), Verdict::Keep);
        for i in 0..100 {
            e += 2_000_000;
            w += 500 * 1_000;
            r += 500;
            assert_eq!(q.sample(s(e, w, r, i % 2 == 0)), Verdict::Keep);
        }
    }

    #[test]
    fn a_cpu_hog_raises_and_calm_lowers_after_a_second() {
        let mut q = QueueState::default();
        let (mut e, mut w, mut r) = (0u64, 0u64, 0u64);
        q.sample(s(e, w, r, false));
        // Waited 4 ms in one period for a single run: starved.
        e += 10_000;
        w += 4_000_000;
        r += 1;
        assert_eq!(q.sample(s(e, w, r, false)), Verdict::Raise);
        // Still contended: stays raised.
        for _ in 0..300 {
            e += 10_000;
            w += 3_000_000;
            r += 2;
            assert_eq!(q.sample(s(e, w, r, true)), Verdict::Keep);
        }
        // Calm: lowered after CALM_PERIODS periods, not before.
        for i in 1..=CALM_PERIODS {
            e += 10_000;
            w += 1_000;
            r += 10;
            let v = q.sample(s(e, w, r, false));
            if i < CALM_PERIODS {
                assert_eq!(v, Verdict::Keep, "period {i}");
            } else {
                assert_eq!(v, Verdict::Lower);
            }
        }
    }

    #[test]
    fn one_blip_is_not_starvation() {
        let mut q = QueueState::default();
        q.sample(s(0, 0, 0, false));
        // One 500 us wait: above the average threshold but under the period total.
        assert_eq!(q.sample(s(10_000, 500_000, 1, false)), Verdict::Keep);
    }
}
