//! Instrumentation of the entry protocol: an optional [`DaxTracer`] a mapping reports its entry
//! locks, sleeps and wake-ups to (`None` in production: one branch per event), and
//! [`TraceLog`], a tracer that keeps them as readable lines for `daxfs bugs replay` and the
//! museum's detectors ("which thread held which entry, who slept on which wait-queue key, who
//! was woken").
//!
//! Threads are named by a small label ([`set_thread_label`]) kept in a thread-local; label 0 is
//! an unnamed thread. Owns nothing the protocol depends on: removing every tracer changes no
//! behaviour.

use std::fmt;
use std::sync::Mutex as StdMutex;

use super::wait::{WaitKey, WakeMode};

// loom's `thread_local!` takes no `const` initializer.
#[cfg(not(loom))]
std::thread_local! {
    static LABEL: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}
#[cfg(loom)]
loom::thread_local! {
    static LABEL: std::cell::Cell<u32> = std::cell::Cell::new(0);
}

/// Names the calling thread for traces (see [`TraceLog::thread`]).
pub fn set_thread_label(label: u32) {
    LABEL.with(|l| l.set(label));
}

/// The calling thread's trace label (0 when unnamed).
pub fn thread_label() -> u32 {
    LABEL.with(|l| l.get())
}

/// One event of the entry protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// An entry was locked (`dax_lock_entry`).
    Locked {
        /// The entry's first index.
        index: u64,
        /// Its order.
        order: u8,
        /// Who locked it, for what.
        what: String,
    },
    /// A locked entry was unlocked, waking `mode` of its key.
    Unlocked {
        /// The entry's first index.
        index: u64,
        /// Its order.
        order: u8,
        /// Who unlocked it, and how it woke.
        what: String,
    },
    /// The thread registered on `key` and sleeps.
    Sleep {
        /// The wait-queue key.
        key: WaitKey,
        /// An exclusive sleeper (woken one at a time).
        exclusive: bool,
        /// What it waits for.
        why: String,
    },
    /// The thread's sleep on `key` ended.
    Woken {
        /// The wait-queue key.
        key: WaitKey,
    },
    /// A wake-up of `key` woke the threads labelled `woke`.
    Wake {
        /// The wait-queue key.
        key: WaitKey,
        /// Next or all.
        mode: WakeMode,
        /// The labels of the threads woken.
        woke: Vec<u32>,
    },
    /// A locked entry was erased.
    Erased {
        /// The entry's first index.
        index: u64,
        /// Its order.
        order: u8,
    },
    /// Anything else worth a line (pins, scans, faults).
    Note(String),
}

/// Receives the protocol's events. Context: called with the index lock or a wait-queue bucket
/// lock possibly held: must not call back into the mapping.
pub trait DaxTracer: Send + Sync {
    /// One event, from the thread labelled `thread`.
    fn event(&self, thread: u32, ev: TraceEvent);
}

/// A tracer that records every event as a line; threads are named by [`TraceLog::thread`].
#[derive(Default)]
pub struct TraceLog {
    names: StdMutex<Vec<String>>,
    lines: StdMutex<Vec<String>>,
}

fn key_str(k: &WaitKey) -> String {
    format!("(inode {}, index {})", k.inode, k.index)
}

impl TraceLog {
    /// An empty log.
    pub fn new() -> TraceLog {
        TraceLog::default()
    }

    /// Registers a thread name. Return: the label to pass to [`set_thread_label`] (from 1).
    pub fn thread(&self, name: &str) -> u32 {
        let mut n = self.names.lock().unwrap();
        n.push(name.to_string());
        n.len() as u32
    }

    fn name(&self, label: u32) -> String {
        let n = self.names.lock().unwrap();
        match label {
            0 => "main".to_string(),
            l => n
                .get(l as usize - 1)
                .cloned()
                .unwrap_or_else(|| format!("T{l}")),
        }
    }

    /// Adds a line of the calling thread (a scenario step).
    pub fn note(&self, what: impl Into<String>) {
        self.event(thread_label(), TraceEvent::Note(what.into()));
    }

    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Forgets the lines (a new model-checker iteration); keeps the thread names.
    pub fn clear(&self) {
        self.lines.lock().unwrap().clear();
    }
}

impl DaxTracer for TraceLog {
    fn event(&self, thread: u32, ev: TraceEvent) {
        let who = self.name(thread);
        let line = match ev {
            TraceEvent::Locked { index, order, what } => {
                format!("{who}: locks entry {index} (order {order}) {what}")
            }
            TraceEvent::Unlocked { index, order, what } => {
                format!("{who}: unlocks entry {index} (order {order}) {what}")
            }
            TraceEvent::Sleep {
                key,
                exclusive,
                why,
            } => format!(
                "{who}: sleeps on wait-queue key {} ({}) {why}",
                key_str(&key),
                if exclusive { "exclusive" } else { "shared" }
            ),
            TraceEvent::Woken { key } => format!("{who}: wakes up from key {}", key_str(&key)),
            TraceEvent::Wake { key, mode, woke } => {
                let names: Vec<String> = woke.iter().map(|l| self.name(*l)).collect();
                let mode = match mode {
                    WakeMode::Next => "wake-next",
                    WakeMode::All => "wake-all",
                };
                if names.is_empty() {
                    format!("{who}: {mode} on key {}: nobody was waiting", key_str(&key))
                } else {
                    format!(
                        "{who}: {mode} on key {}: woke {}",
                        key_str(&key),
                        names.join(", ")
                    )
                }
            }
            TraceEvent::Erased { index, order } => {
                format!("{who}: erases entry {index} (order {order})")
            }
            TraceEvent::Note(s) => format!("{who}: {s}"),
        };
        self.lines.lock().unwrap().push(line);
    }
}

impl fmt::Debug for TraceLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceLog")
            .field("lines", &self.lines.lock().unwrap().len())
            .finish()
    }
}
