//! Kernel notifications (`notify_inval_inode`, `notify_inval_entry`), sent by a thread that serves
//! no requests.
//!
//! Owns: the session's FUSE `Notifier` and the notifier thread (`daxfs-notify`), which sends every
//! notification daxfs makes and then runs what must follow it (typically: the reply of the request
//! that asked for it). Request-serving threads only [`KernelNotifier::post`] a job and go back to
//! serving.
//!
//! # Why no deadlock (docs/DESIGN.md "Memory failure", rule 7)
//!
//! A notification may wait for requests to be served:
//! - `notify_inval_inode` with a data range runs `invalidate_inode_pages2_range`, which locks each
//!   page-cache folio of the range. A folio locked by a fault or readahead whose `READ` is not
//!   answered yet makes it wait for that `READ`; a dirty folio of a shared writable mapping
//!   (`dax=never`) is written back first, waiting for a `WRITE`.
//! - `notify_inval_entry` takes the directory's inode lock, which the kernel holds while a request
//!   on that directory waits for its reply.
//!
//! So a thread that sends one may wait for any request. If that thread served requests, the
//! request it waits for can be queued behind it: always with one `/dev/fuse` thread, and on an
//! io_uring queue (one thread per CPU) whenever the faulting task runs on the queue's CPU. That was
//! the deadlock. The rules that exclude it:
//! 1. No serving thread (a `/dev/fuse` session thread, an io_uring queue thread) sends a
//!    notification or waits for the notifier thread: `post` only pushes onto an unbounded channel.
//! 2. A reply that must come after a notification is moved into the job and sent by the notifier
//!    thread once the notifications returned: a poison inject or clear still answers only after
//!    the range is unmapped from every user mapping; a write that dropped S_ISUID/S_ISGID answers
//!    after the cached mode is dropped. The serving thread meanwhile serves other requests. (On an
//!    io_uring queue the reply is committed by the queue thread: `uring.rs` hands the entry back
//!    to it.)
//! 3. Serving threads wait only for daxfs's own locks (inode rwsem, DAX entry locks and leaf
//!    mutexes), whose holders never wait for a notification: memory failure unlocks its entries
//!    before it posts, and nothing waits for the notifier thread.
//!
//! Then every chain of waits that starts at the notifier thread (kernel folio or inode lock ->
//! request -> serving thread -> daxfs lock -> its holder, a serving thread) ends at a thread that
//! is running; none leads back to the notifier thread, so there is no cycle. The notifier thread
//! works its jobs in order, so notifications keep the order they were posted in.
//!
//! Other rules kept: `ENOENT` from the kernel (inode not cached) counts as success; before the
//! session is up (or in an embedded, unmounted use) notifications are no-ops and what follows them
//! runs at once.

use std::ffi::OsString;
use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use fuser::{INodeNo, Notifier};

use crate::fs::Ino;

/// One notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    /// Drop the cached attributes of `ino` and its cached data (and user mappings) in
    /// `[offset, offset + len)`; `len == 0` means to the end of the file, a negative `offset`
    /// means attributes only.
    Inode {
        /// The inode.
        ino: Ino,
        /// First byte of the data range (negative: attributes only).
        offset: i64,
        /// Bytes in the range (0: to the end).
        len: i64,
    },
    /// Drop the cached dentry `name` in directory `parent`.
    Entry {
        /// The directory.
        parent: Ino,
        /// The name in it.
        name: OsString,
    },
}

impl Notification {
    /// Attributes of `ino` only (takes no page lock).
    pub fn attrs(ino: Ino) -> Notification {
        Notification::Inode {
            ino,
            offset: -1,
            len: 0,
        }
    }

    /// Bytes `[offset, offset + len)` of `ino` (and its attributes); `len == 0`: to the end.
    pub fn data(ino: Ino, offset: u64, len: u64) -> Notification {
        Notification::Inode {
            ino,
            offset: offset.min(i64::MAX as u64) as i64,
            len: len.min(i64::MAX as u64) as i64,
        }
    }
}

/// What runs on the notifier thread after a job's notifications.
pub type Then = Box<dyn FnOnce() + Send>;

struct Job {
    notes: Vec<Notification>,
    then: Option<Then>,
}

#[derive(Default)]
struct Shared {
    /// The channel to the notifier thread, once the session is connected.
    tx: OnceLock<Mutex<mpsc::Sender<Job>>>,
}

/// A handle on the session's notifier thread; cheap to clone.
#[derive(Clone, Default)]
pub struct KernelNotifier {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KernelNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelNotifier")
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl KernelNotifier {
    /// An unconnected notifier.
    pub fn new() -> KernelNotifier {
        KernelNotifier::default()
    }

    /// Connects the session's notifier and starts the notifier thread (once; later calls are
    /// ignored). The thread ends when every handle is dropped, after the jobs posted so far.
    pub fn connect(&self, n: Notifier) -> io::Result<()> {
        let (tx, rx) = mpsc::channel::<Job>();
        if self.shared.tx.set(Mutex::new(tx)).is_err() {
            return Ok(());
        }
        std::thread::Builder::new()
            .name("daxfs-notify".into())
            .spawn(move || run(&n, rx))
            .map(drop)
    }

    /// Whether a session is connected.
    pub fn is_connected(&self) -> bool {
        self.shared.tx.get().is_some()
    }

    /// Sends `notes` from the notifier thread, then runs `then` there. Unconnected: `then` runs
    /// now, on the calling thread.
    ///
    /// Context: never blocks (any thread, serving threads included); takes no daxfs lock.
    pub fn post(&self, notes: Vec<Notification>, then: Option<Then>) {
        let job = Job { notes, then };
        let job = match self.shared.tx.get() {
            Some(tx) => match tx.lock().unwrap_or_else(|e| e.into_inner()).send(job) {
                Ok(()) => return,
                Err(mpsc::SendError(job)) => job, // the thread is gone (session over)
            },
            None => job,
        };
        if let Some(then) = job.then {
            then();
        }
    }
}

/// Memory failure's unmapping: `notify_inval_inode` for each range from the notifier thread, so
/// user mappings of it fault again (and a poisoned page's fault gets `SIGBUS`); `done` (the
/// poison ioctl's reply) follows.
impl crate::memory_failure::Invalidator for KernelNotifier {
    fn invalidate(&self, ranges: Vec<crate::memory_failure::FileRange>, done: Then) {
        let notes = ranges
            .into_iter()
            .map(|(ino, off, len)| Notification::data(ino, off, len))
            .collect();
        self.post(notes, Some(done));
    }
}

/// The notifier thread: each job's notifications in order, then its continuation.
fn run(n: &Notifier, rx: mpsc::Receiver<Job>) {
    for job in rx {
        for note in &job.notes {
            if let Err(e) = send(n, note) {
                log::warn!("kernel notification {note:?} failed: {e}");
            }
        }
        if let Some(then) = job.then {
            then();
        }
    }
}

/// Sends one notification (may sleep in the kernel: see the module comment).
fn send(n: &Notifier, note: &Notification) -> io::Result<()> {
    ignore_enoent(match note {
        &Notification::Inode { ino, offset, len } => n.inval_inode(INodeNo(ino), offset, len),
        Notification::Entry { parent, name } => n.inval_entry(INodeNo(*parent), name),
    })
}

fn ignore_enoent(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn unconnected_notifier_runs_the_continuation_at_once() {
        let n = KernelNotifier::new();
        assert!(!n.is_connected());
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        n.clone().post(
            vec![Notification::data(5, 0, 0)],
            Some(Box::new(move || r.store(true, Ordering::SeqCst))),
        );
        assert!(ran.load(Ordering::SeqCst));
        n.post(vec![Notification::attrs(1)], None);
    }

    #[test]
    fn ranges_saturate_and_attrs_are_negative() {
        assert_eq!(
            Notification::data(3, u64::MAX, 4096),
            Notification::Inode {
                ino: 3,
                offset: i64::MAX,
                len: 4096
            }
        );
        assert!(matches!(
            Notification::attrs(3),
            Notification::Inode { offset: -1, .. }
        ));
    }

    #[test]
    fn enoent_is_success() {
        assert!(ignore_enoent(Err(io::Error::from_raw_os_error(libc::ENOENT))).is_ok());
        assert!(ignore_enoent(Err(io::Error::from_raw_os_error(libc::EIO))).is_err());
    }
}
