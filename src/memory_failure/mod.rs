//! Memory failure: poison injected through the control ioctl, handled as the kernel's fsdax
//! `memory_failure()` path does (docs/DESIGN.md, "Memory failure").
//!
//! An inject names a file range or a region range; it is validated whole first (`EINVAL` before
//! anything changes) and then applied as ranges, never a page at a time. Every policy check is
//! made here, once: who may inject or clear ([`check_caller`], `policy.rs`), and the range,
//! alignment and file kind (`handler::region_blocks` / `handler::file_pages`, at the start of
//! each inject and clear). The control ioctl (`fuse/control.rs`) only decodes the request and
//! encodes the answer.
//!
//! This module owns every piece of memory-failure state: the reverse map ([`Rmap`], one per
//! mount), each inode's poisoned pages ([`PoisonedPages`], held opaquely by its block map), the
//! lock-then-walk step (`walk.rs`, the only code that marks a page poisoned), the bad-block
//! records (through the narrow `DaxFs::mf_*` hooks of `fs/badblocks.rs`) and the invalidation
//! after inject and clear (through the adapter's [`Invalidator`]). The steps:
//!
//! 1. **Reverse map** ([`rmap`], `Rmap::within`): a region range splits into runs of blocks held
//!    by one (inode, file page) run; blocks no file maps (free, or file-system metadata) are just
//!    recorded bad and, being bad, never allocated.
//! 2. **Lock-then-walk** ([`handler`], `walk::poison_range`): lock every DAX entry covering a
//!    page of the inode range (ascending; any sub-page of a PMD entry locks the whole 2 MiB
//!    entry), check the entries still map the expected blocks (else they moved: look again), and
//!    only then take the effective mapping size from each entry (2 MiB or 4 KiB; never from page
//!    metadata).
//! 3. **Record** the bad blocks durably, as ranges, in ONE copy-on-write update of the bad-block
//!    table (`DaxFs::mf_record_bad`): all of them or, on an error, none (nothing was marked yet,
//!    so a failed inject leaves nothing poisoned). A region inject records its whole range first
//!    and then poisons the file pages on it. Then mark the pages poisoned, erase their PTE
//!    entries and split PMD entries around them so the other pages stay mapped by PTE entries (a
//!    wholly poisoned PMD entry goes), unlock at the new orders; then **invalidate** every whole
//!    entry range that changed in the kernel through an [`Invalidator`] (the FUSE adapter sends
//!    `notify_inval_inode`, so mmap users fault again and get `SIGBUS` on the poisoned pages).
//! 4. From then on a read including a poisoned page fails as a whole with `EIO`, a write
//!    covering the whole page clears the poison (the page gets a fresh block), a partial write
//!    gets `EIO`, and punch hole, truncate and [`records::clear_file`]/[`records::clear_region`]
//!    clear it (clear: the pages become holes in one commit, then their blocks leave the table in
//!    one update). At mount the per-inode poisoned runs are rebuilt from the bad-block table and
//!    the block maps.
//!
//! Memory is per range, not per page: the bad-block set, the per-inode poisoned pages
//! ([`PoisonedPages`]) and the reverse map are all run maps, so a poisoned GiB costs a few map
//! nodes, and `list` walks ranges and owner runs.
//!
//! # Lock order (no deadlock with reads, writes, faults, truncates, other injections)
//!
//! inode rwsem → DAX entry locks (ascending file order, one inode at a time) → {bad-block set,
//! journal, allocator, poisoned-page set} (leaves). Memory failure takes **no inode rwsem at all**
//! while it holds an entry lock: the reverse map reads the block maps lock-free, and the entry
//! lock is its only sleeping lock. Readers hold the rwsem shared and their entries until the reply
//! is sent; they never wait for memory failure while holding something it waits for. Writers
//! create entries only in holes (while holding the allocator mutex): creating an entry never
//! waits for an entry lock, so the allocator mutex that recording a bad block takes under an
//! entry lock closes no cycle.
//!
//! The kernel invalidation is handed over **after** the entry is unlocked, not under it (the
//! kernel unmaps under the entry lock): a FUSE `notify_inval_inode` waits for page locks held by
//! in-flight `READ` requests (mmap faults), and those wait for our entry lock. Nothing is lost by
//! the delay: the page is marked poisoned before the unlock, so any `READ` served meanwhile
//! already fails with `EIO`. And it is handed over, never waited for: inject and clear run on a
//! thread that serves FUSE requests, and the kernel's invalidation may wait for a request queued
//! behind that very thread (rule 7). The [`Invalidator`] takes the ranges and a continuation; the
//! result of an inject or clear goes to the caller's continuation (`inject_file_then`, ...) only
//! once the ranges are dropped, so the ioctl still answers after the range is unmapped from every
//! user mapping. The plain forms (`inject_file`, ...) wait for it, for embedded use.

pub mod handler;
pub mod poisoned;
mod policy;
pub mod records;
pub mod rmap;
pub(crate) mod walk;

use parking_lot::Mutex;

use crate::fs::{FsResult, Ino};

pub use handler::{inject_file, inject_file_then, inject_region, inject_region_then, Injected};
pub use poisoned::PoisonedPages;
pub use policy::check_caller;
pub use records::{
    clear_file, clear_file_then, clear_region, clear_region_then, list, BadRange, Cleared,
};
pub use rmap::Rmap;

/// A file byte range to unmap: `(ino, offset, len)`.
pub type FileRange = (Ino, u64, u64);

/// What runs once the kernel has dropped the ranges (see [`Invalidator::invalidate`]).
pub type Done = Box<dyn FnOnce() + Send>;

/// Drops the kernel's cached data and user mappings of file ranges (FUSE: `notify_inval_inode`
/// from the adapter's notifier thread). Implemented by the FUSE adapter; [`NoInvalidate`] and
/// [`RecordingInvalidator`] serve embedded use and tests.
pub trait Invalidator: Send + Sync {
    /// Unmaps every range of `ranges` from every user mapping and drops the kernel's cached pages
    /// of them, then runs `done` exactly once, on any thread, now or later.
    ///
    /// Context: called without any daxfs lock held, possibly on a thread that serves FUSE
    /// requests, so it must not wait for the kernel itself (docs/DESIGN.md, "Memory failure", rule 7):
    /// the kernel's invalidation may wait for a request queued behind the calling thread.
    fn invalidate(&self, ranges: Vec<FileRange>, done: Done);
}

/// An [`Invalidator`] that does nothing (no kernel in an embedded use).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoInvalidate;

impl Invalidator for NoInvalidate {
    fn invalidate(&self, _ranges: Vec<FileRange>, done: Done) {
        done();
    }
}

/// An [`Invalidator`] that records its ranges (tests).
#[derive(Debug, Default)]
pub struct RecordingInvalidator {
    calls: Mutex<Vec<FileRange>>,
}

impl RecordingInvalidator {
    /// A recorder with no calls.
    pub fn new() -> RecordingInvalidator {
        RecordingInvalidator::default()
    }

    /// The `(ino, offset, len)` of every range so far, in order.
    pub fn calls(&self) -> Vec<FileRange> {
        self.calls.lock().clone()
    }
}

impl Invalidator for RecordingInvalidator {
    fn invalidate(&self, ranges: Vec<FileRange>, done: Done) {
        self.calls.lock().extend(ranges);
        done();
    }
}

/// A result handed to a continuation (the asynchronous forms of inject and clear).
pub type Then<T> = Box<dyn FnOnce(FsResult<T>) + Send>;

/// Runs the asynchronous form `start` and waits for its result.
///
/// Context: blocks until the invalidation is done: never call it on a thread that serves FUSE
/// requests with an invalidator that sends kernel notifications.
fn wait<T: Send + 'static>(start: impl FnOnce(Then<T>)) -> FsResult<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    start(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.recv().unwrap_or(Err(crate::fs::Errno::EIO))
}

/// File page runs `(ino, first page, pages)`: how many pages, and how many distinct files.
fn runs_summary(runs: &[(Ino, u64, u64)]) -> (u64, u64) {
    let mut inos: Vec<Ino> = runs.iter().map(|r| r.0).collect();
    inos.sort_unstable();
    inos.dedup();
    (runs.iter().map(|r| r.2).sum(), inos.len() as u64)
}

/// Sorts and merges duplicate ranges.
fn dedup(mut v: Vec<FileRange>) -> Vec<FileRange> {
    v.sort_unstable();
    v.dedup();
    v
}
