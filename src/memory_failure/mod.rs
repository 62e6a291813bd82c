//! Memory failure: poison injected through the control ioctl, handled as the kernel's fsdax
//! `memory_failure()` path does (DESIGN.md, "Memory failure").
//!
//! For each failed 4 KiB region block:
//! 1. **Reverse map** ([`rmap`]) the block to (inode, file page); a block no file maps (free, or
//!    file-system metadata) is just recorded bad and, being bad, never allocated.
//! 2. **Lock-then-walk** ([`handler`], `FileMap::poison_page`): lock the DAX entry covering the
//!    page (`lock_entry_for_page`: any sub-page of a PMD entry locks the whole 2 MiB entry), check
//!    it still maps the block (else the block moved: map it again), and only then take the
//!    effective mapping size from the entry (2 MiB or 4 KiB; never from page metadata).
//! 3. Mark the page poisoned, **record** the bad block durably (`DaxFs::add_bad_block`), split a
//!    PMD entry so the other 511 pages stay mapped by PTE entries (a PTE entry is erased), unlock at
//!    the new order; then **invalidate** the whole range the entry mapped in the kernel through an
//!    [`Invalidator`] (the FUSE adapter sends `notify_inval_inode`, so mmap users fault again and
//!    get `SIGBUS` on the poisoned page).
//! 4. From then on a read including the page fails as a whole with `EIO`, a write covering the
//!    whole page clears the poison (the page gets a fresh block), a partial write gets `EIO`, and
//!    punch hole, truncate and [`records::clear_file`]/[`records::clear_region`] clear it. At mount
//!    the per-inode poisoned pages are rebuilt from the bad-block table and the block maps.
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
//! The kernel invalidation is sent **after** the entry is unlocked, not under it (the kernel
//! unmaps under the entry lock): a FUSE `notify_inval_inode` waits for page locks held by
//! in-flight `READ` requests (mmap faults), and those wait for our entry lock. Nothing is lost by
//! the delay: the page is marked poisoned before the unlock, so any `READ` served meanwhile
//! already fails with `EIO`.

pub mod handler;
pub mod records;
pub mod rmap;

use parking_lot::Mutex;

use crate::fs::Ino;

pub use handler::{inject_file, inject_region, Injected};
pub use records::{clear_file, clear_region, list, BadRange};

/// Drops the kernel's cached data and user mappings of a file range (FUSE:
/// `notify_inval_inode`). Implemented by the FUSE adapter; [`NoInvalidate`] and
/// [`RecordingInvalidator`] serve embedded use and tests.
pub trait Invalidator: Send + Sync {
    /// Invalidates bytes `[offset, offset + len)` of inode `ino`.
    ///
    /// Context: called without any daxfs lock held; may sleep.
    fn inval_inode(&self, ino: Ino, offset: u64, len: u64);
}

/// An [`Invalidator`] that does nothing (no kernel in an embedded use).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoInvalidate;

impl Invalidator for NoInvalidate {
    fn inval_inode(&self, _ino: Ino, _offset: u64, _len: u64) {}
}

/// An [`Invalidator`] that records its calls (tests).
#[derive(Debug, Default)]
pub struct RecordingInvalidator {
    calls: Mutex<Vec<(Ino, u64, u64)>>,
}

impl RecordingInvalidator {
    /// A recorder with no calls.
    pub fn new() -> RecordingInvalidator {
        RecordingInvalidator::default()
    }

    /// The `(ino, offset, len)` of every call so far, in order.
    pub fn calls(&self) -> Vec<(Ino, u64, u64)> {
        self.calls.lock().clone()
    }
}

impl Invalidator for RecordingInvalidator {
    fn inval_inode(&self, ino: Ino, offset: u64, len: u64) {
        self.calls.lock().push((ino, offset, len));
    }
}
