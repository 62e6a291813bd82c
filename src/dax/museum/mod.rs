//! The museum: each catalogued bug's detector scenario ([`SCENARIOS`]), shared by the tests
//! (`tests/dax_museum.rs` for invariant checks, `tests/dax_museum_loom.rs` where loom explores
//! the interleavings) and by `daxfs bugs replay`, which runs a scenario from the installed binary
//! and prints its trace.
//!
//! A scenario is written once against a [`Stage`]: it makes mappings (with page metadata, its own
//! wait table and the stage's tracer), spawns named threads and checks its property, returning
//! `Err(what went wrong)` when it does not hold. Under loom the stage's `until` is a no-op (the
//! model checker explores every order); run directly ("directed", for the replay) it waits for
//! the condition, so the schedule that shows the bug is the one taken, and a join that does not
//! finish within [`HANG_AFTER`] of the trace's last event is reported as a hang.
//!
//! Owns: the scenarios and their harness. Keeps: a scenario checks only its own property, so a
//! different bug switched on does not make it fail (where it cannot be avoided, the catalogue's
//! `also_fails` says so).

mod scenarios;

use std::sync::{Arc as StdArc, Mutex as StdMutex};
use std::time::Duration;

#[cfg(not(loom))]
use super::history::BugInfo;
use super::history::{Bug, Bugs};
use super::mapping::{DaxMapping, DaxParts};
use super::page::DaxPages;
use super::trace::{set_thread_label, DaxTracer, TraceLog};
use super::wait::WaitTable;
use super::{DaxError, DaxOptions};
use crate::sync::Arc;

pub use scenarios::SCENARIOS;

/// A directed run reports a hang when a thread it joins makes no progress for this long.
pub const HANG_AFTER: Duration = Duration::from_secs(3);

/// One detector scenario.
pub struct Scenario {
    /// The detector's name (a test function of the same name runs it).
    pub detector: &'static str,
    /// Runs the scenario; `Err` says what went wrong.
    pub run: fn(&Stage) -> Result<(), Failure>,
}

/// What a detector scenario found wrong.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The DAX protocol refused an operation the scenario made.
    #[error("DAX protocol error: {0}")]
    Protocol(#[from] DaxError),
    /// The scenario's property does not hold; says what was seen instead.
    #[error("{0}")]
    Violated(String),
    /// A joined thread made no progress for [`HANG_AFTER`] (directed runs only).
    #[error("{thread} hangs: no progress for {after:?} (a lost wake-up or a deadlock)")]
    Hang {
        /// The thread's name.
        thread: String,
        /// How long it made no progress.
        after: Duration,
    },
    /// A joined thread panicked.
    #[error("{thread} panicked")]
    Panicked {
        /// The thread's name.
        thread: String,
    },
}

impl From<&str> for Failure {
    fn from(what: &str) -> Failure {
        Failure::Violated(what.to_string())
    }
}

/// The scenario of detector `name`.
pub fn scenario(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.detector == name)
}

/// The catalogue entry of bug `bug`'s detector scenario.
pub fn scenario_of(bug: Bug) -> &'static Scenario {
    scenario(bug.info().detector).expect("every catalogued bug has a scenario")
}

static CURRENT: StdMutex<Option<StdArc<TraceLog>>> = StdMutex::new(None);

std::thread_local! {
    /// Stages made on this OS thread: under loom (which runs a model's threads on the thread
    /// that calls it), one per explored schedule of the current test.
    static STAGES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many stages this OS thread made so far.
pub fn stages_made() -> usize {
    STAGES.with(|s| s.get())
}

/// The trace of the stage made last (for a panic hook: loom reports a deadlock by panicking).
pub fn current_trace() -> Vec<String> {
    CURRENT
        .lock()
        .map(|c| c.as_ref().map(|l| l.lines()).unwrap_or_default())
        .unwrap_or_default()
}

/// Where a scenario runs: the bugs on, the trace, the threads.
pub struct Stage {
    bugs: Bugs,
    directed: bool,
    log: StdArc<TraceLog>,
    pages: StdArc<DaxPages>,
}

/// A thread spawned by [`Stage::spawn`].
pub struct Thread<T> {
    name: String,
    handle: crate::sync::thread::JoinHandle<T>,
}

impl Stage {
    /// A stage with `bugs` on; `directed` for a direct run (replay), `false` under loom.
    pub fn new(bugs: Bugs, directed: bool) -> Stage {
        let log = StdArc::new(TraceLog::new());
        STAGES.with(|s| s.set(s.get() + 1));
        if let Ok(mut c) = CURRENT.lock() {
            *c = Some(log.clone());
        }
        let tracer: StdArc<dyn DaxTracer> = log.clone();
        Stage {
            bugs,
            directed,
            pages: StdArc::new(DaxPages::new(bugs, Some(tracer))),
            log,
        }
    }

    /// The bugs on.
    pub fn bugs(&self) -> Bugs {
        self.bugs
    }

    /// The trace.
    pub fn log(&self) -> &StdArc<TraceLog> {
        &self.log
    }

    /// The region's page metadata (shared by the stage's mappings).
    pub fn pages(&self) -> &StdArc<DaxPages> {
        &self.pages
    }

    /// A mapping of inode `inode` with the stage's bugs, page metadata, tracer and a small wait
    /// table of its own.
    pub fn mapping(&self, inode: u64) -> DaxMapping {
        let tracer: StdArc<dyn DaxTracer> = self.log.clone();
        DaxMapping::from_parts(
            inode,
            1,
            DaxParts {
                opts: DaxOptions::with_bugs(self.bugs),
                waits: Some(Arc::new(WaitTable::new(4))),
                pages: Some(self.pages.clone()),
                tracer: Some(tracer),
                ..DaxParts::default()
            },
        )
    }

    /// Names the calling thread `name` in the trace.
    pub fn name_thread(&self, name: &str) {
        set_thread_label(self.log.thread(name));
    }

    /// A trace line of the calling thread.
    pub fn note(&self, what: impl Into<String>) {
        self.log.note(what);
    }

    /// Spawns thread `name` running `f`.
    pub fn spawn<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Thread<T> {
        let label = self.log.thread(name);
        let handle = crate::sync::thread::spawn(move || {
            set_thread_label(label);
            f()
        });
        Thread {
            name: name.to_string(),
            handle,
        }
    }

    /// Waits for a thread's result. Directed: [`Failure::Hang`] when it makes no progress for
    /// [`HANG_AFTER`] (the thread is left behind).
    pub fn join<T>(&self, t: Thread<T>) -> Result<T, Failure> {
        #[cfg(not(loom))]
        {
            let mut lines = self.log.lines().len();
            let mut since = std::time::Instant::now();
            while !t.handle.is_finished() {
                std::thread::sleep(Duration::from_millis(2));
                let now = self.log.lines().len();
                if now != lines {
                    (lines, since) = (now, std::time::Instant::now());
                } else if since.elapsed() > HANG_AFTER {
                    return Err(Failure::Hang {
                        thread: t.name,
                        after: HANG_AFTER,
                    });
                }
            }
        }
        let thread = t.name;
        t.handle.join().map_err(|_| Failure::Panicked { thread })
    }

    /// Directed: waits (up to 10 s) until `cond` holds, so the schedule under study is taken;
    /// under the model checker a no-op (it explores all schedules).
    pub fn until(&self, what: &str, cond: impl Fn() -> bool) {
        if !self.directed {
            return;
        }
        let t = std::time::Instant::now();
        while !cond() {
            if t.elapsed() > Duration::from_secs(10) {
                self.note(format!("(gave up waiting until {what})"));
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The result of one directed run ([`replay`]).
#[derive(Debug)]
pub struct Outcome {
    /// The trace, one line per event.
    pub trace: Vec<String>,
    /// What went wrong, or `None` when the detector's property held.
    pub failure: Option<Failure>,
}

/// Runs bug `info`'s detector scenario directly with `bugs` on, up to `attempts` times until it
/// fails (an interleaving-dependent failure may need a few), and returns the last run.
#[cfg(not(loom))]
pub fn replay(info: &BugInfo, bugs: Bugs, attempts: usize) -> Outcome {
    let sc = scenario(info.detector).expect("every catalogued bug has a scenario");
    let mut last = None;
    for _ in 0..attempts.max(1) {
        let stage = Stage::new(bugs, true);
        stage.name_thread("main");
        let r = (sc.run)(&stage);
        let out = Outcome {
            trace: stage.log.lines(),
            failure: r.err(),
        };
        if out.failure.is_some() {
            return out;
        }
        last = Some(out);
    }
    last.expect("at least one attempt")
}
