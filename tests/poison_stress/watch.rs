//! The parent's watch over the stress: how long each task (of the children, the daemon, an
//! unmount) has been in D state, measured continuously, and what to do on a hang.
//!
//! Continuous, not sampled: a task found in D state at two samples counts as blocked in between
//! only if it did not run in between, i.e. its context-switch counts (`/proc/PID/task/TID/status`)
//! did not move. A task that sleeps in D state for a thousand short FUSE requests in a row (on a
//! busy machine, most of the time) is never taken for one stuck for seconds.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::poison_util::{
    abort_connection, hang_report, kill_children, task_report, task_state, tasks_of,
};

/// The limit: no task in D state longer than this.
pub const D_LIMIT: Duration = Duration::from_secs(5);

/// Context switches (voluntary + involuntary) of a task so far.
fn switches(pid: i32, tid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    let mut n = 0;
    for l in s.lines() {
        if let Some(v) = l
            .strip_prefix("voluntary_ctxt_switches:")
            .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        {
            n += v.trim().parse::<u64>().ok()?;
        }
    }
    Some(n)
}

pub struct Watch {
    pub mnt: PathBuf,
    pub conn: u64,
    pub daemon: i32,
    /// Per task in D state: since when, and its context switches then.
    blocked: HashMap<(i32, i32), (Instant, u64)>,
    /// Longest continuous D state seen, and by which task.
    pub worst: (Duration, Option<(i32, i32)>),
    /// Samples taken (for the summary).
    pub samples: u64,
}

impl Watch {
    pub fn new(mnt: &Path, conn: u64, daemon: i32) -> Watch {
        Watch {
            mnt: mnt.to_path_buf(),
            conn,
            daemon,
            blocked: HashMap::new(),
            worst: (Duration::ZERO, None),
            samples: 0,
        }
    }

    /// Samples every task of `pids` and of the daemon. Return: a report when one has been in D
    /// state, without running, for longer than [`D_LIMIT`].
    pub fn tick(&mut self, pids: &[i32]) -> Option<String> {
        let mut all = pids.to_vec();
        all.push(self.daemon);
        let now = Instant::now();
        let mut still = HashMap::new();
        let mut over = None;
        for (pid, tid) in tasks_of(&all) {
            if task_state(pid, tid) != Some('D') {
                continue;
            }
            let Some(sw) = switches(pid, tid) else {
                continue;
            };
            let since = match self.blocked.get(&(pid, tid)) {
                Some(&(t0, sw0)) if sw0 == sw => t0,
                _ => now,
            };
            let d = now - since;
            if d > self.worst.0 {
                self.worst = (d, Some((pid, tid)));
            }
            if d > D_LIMIT {
                over = Some((pid, tid, d));
            }
            still.insert((pid, tid), (since, sw));
        }
        self.blocked = still;
        self.samples += 1;
        over.map(|(pid, tid, d)| {
            format!(
                "task {pid}/{tid} in D state for {d:?} (limit {D_LIMIT:?}):\n{}\nall D-state \
                 tasks of the test and the daemon:\n{}",
                task_report(pid, tid),
                hang_report(&all)
            )
        })
    }

    /// After a failure: aborts the FUSE connection (every blocked task wakes) and kills `pids`.
    pub fn recover(&self, pids: &[i32]) {
        abort_connection(&self.mnt, self.conn);
        let left = kill_children(pids, Duration::from_secs(30));
        if !left.is_empty() {
            eprintln!("children {left:?} did not go away after the abort");
        }
    }
}
