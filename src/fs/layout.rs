//! Layout leases as the filesystem sees them: the hook through which it breaks the direct
//! mappings of a file range before it changes the range's layout (docs/DESIGN.md, "Direct
//! mapping"), the analogue of `dax_layout_busy_page()` / `break_layouts()` in fs/dax.c users.
//!
//! Owns: [`LayoutBreaker`] (implemented above this layer by the lease manager, `crate::direct`),
//! [`LayoutChange`] (why a range is revoked), [`FileLayout`] (what `DaxFs::file_layout` reports)
//! and the quarantine of blocks freed while a holder had not acknowledged ([`Quarantine`]).
//!
//! Rules kept:
//! - A change that frees blocks (truncate, punch, eviction) breaks the layouts of the range
//!   *before* it unmaps the blocks; when a holder did not acknowledge in time the breaker returns
//!   a [`FenceId`] and the freed blocks are quarantined under it: they stay allocated (never
//!   reused, so a stale mapping never shows another file's data) until the breaker lifts the
//!   fence (the holder acknowledged late, or exited).
//! - A quarantined block enters the allocator only after the transaction that freed it is
//!   durable ([`Quarantine::on_commit`] and [`Quarantine::lift`] decide it together, under one
//!   mutex), as every other freed block.
//! - Changes that free nothing (allocation into a hole, growth of the file) break the layouts of
//!   the range too, so a holder maps it again, but no fence is needed.
//! - The fast path costs one atomic load when no process holds a lease ([`LayoutBreaker::active`]).

use std::collections::HashMap;

use parking_lot::Mutex;

use super::Ino;

/// Why a range of a file is revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutChange {
    /// The file was truncated to `size` bytes: pages from `size.div_ceil(4096)` on are gone.
    Truncate {
        /// The new size in bytes.
        size: u64,
    },
    /// A hole was punched: the pages' blocks are freed.
    Punch,
    /// Blocks were allocated into holes of the range (their zero pages are stale).
    Fill,
    /// The file grew to `size` bytes: pages that were past the end of the file are valid now.
    Extend {
        /// The new size in bytes.
        size: u64,
    },
    /// Memory failure or its clearing changed the range (poison invalidation, `poison clear`).
    Invalidate,
}

/// A holder that did not acknowledge a revocation in time: blocks freed under it are held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FenceId(pub u64);

/// The direct-mapping lease manager, as the filesystem calls it.
pub trait LayoutBreaker: Send + Sync {
    /// Whether some process may hold a lease on `ino` (a cheap, conservative check).
    fn active(&self, ino: Ino) -> bool;

    /// Revokes pages `[first, end)` of `ino` in every process that holds a lease on part of the
    /// range and waits (bounded) for each to acknowledge. Return: `None` when every holder
    /// acknowledged (or there was none), else the fence under which blocks freed by this change
    /// must be quarantined.
    ///
    /// Context: may sleep up to the lease timeout; called with the inode lock (and possibly DAX
    /// entry locks of the range) held: the holders' acknowledgement never needs either.
    fn break_layouts(&self, ino: Ino, first: u64, end: u64, why: LayoutChange) -> Option<FenceId>;

    /// Revokes pages `[first, end)` of `ino` for a growth to `size` bytes, telling the holders
    /// the new layout of the range first (`hints`: at most a few extents, in file order) so they
    /// map it before they acknowledge. The default sends no hints.
    ///
    /// Context: as [`LayoutBreaker::break_layouts`].
    fn break_extended(
        &self,
        ino: Ino,
        first: u64,
        end: u64,
        size: u64,
        hints: &[LayoutExtent],
    ) -> Option<FenceId> {
        let _ = hints;
        self.break_layouts(ino, first, end, LayoutChange::Extend { size })
    }
}

/// One extent of a file range, as [`crate::fs::DaxFs::file_layout`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutExtent {
    /// Pages `[page, +nr)` are region blocks `[block, +nr)`; `order` 9 when they are exactly one
    /// PMD entry, else 0.
    Data {
        /// First file page.
        page: u64,
        /// Pages.
        nr: u64,
        /// Region block of the first page.
        block: u64,
        /// The DAX entry order (9 or 0).
        order: u8,
    },
    /// Pages `[page, +nr)` are a hole.
    Hole {
        /// First file page.
        page: u64,
        /// Pages.
        nr: u64,
    },
    /// Page `page` is poisoned (its bad block is `block`).
    Poisoned {
        /// The file page.
        page: u64,
        /// Its bad block.
        block: u64,
    },
}

impl LayoutExtent {
    /// The extent's first page and page count.
    pub fn span(&self) -> (u64, u64) {
        match *self {
            LayoutExtent::Data { page, nr, .. } | LayoutExtent::Hole { page, nr } => (page, nr),
            LayoutExtent::Poisoned { page, .. } => (page, 1),
        }
    }
}

/// What [`crate::fs::DaxFs::file_layout`] asks for besides the extents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayoutRequest {
    /// Allocate the holes inside the file first (a writable shared mapping is being made).
    pub allocate: bool,
    /// Update mtime and ctime (the caller writes through a mapping).
    pub write: bool,
}

/// A file range's layout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileLayout {
    /// File size in bytes (pages from `size.div_ceil(4096)` on are past the end: not reported).
    pub size: u64,
    /// Extents covering `[first, min(end, eof page))` in order, without gaps.
    pub extents: Vec<LayoutExtent>,
}

/// Blocks freed while a fence was up: allocated, not reusable, until the fence lifts and the
/// freeing transaction is durable.
#[derive(Default, Debug)]
pub struct Quarantine {
    inner: Mutex<QuarantineInner>,
}

#[derive(Default, Debug)]
struct QuarantineInner {
    /// block -> (fence, whether the transaction that freed it is durable).
    held: HashMap<u64, (FenceId, bool)>,
    by_fence: HashMap<FenceId, Vec<u64>>,
}

impl Quarantine {
    /// Holds `blocks` (about to be freed by a transaction) under `fence`.
    pub fn hold(&self, fence: FenceId, blocks: impl IntoIterator<Item = u64>) {
        let mut q = self.inner.lock();
        let q = &mut *q;
        let list = q.by_fence.entry(fence).or_default();
        for b in blocks {
            q.held.insert(b, (fence, false));
            list.push(b);
        }
    }

    /// Whether nothing is held (the commit path skips the lookup then).
    pub fn is_empty(&self) -> bool {
        self.inner.lock().held.is_empty()
    }

    /// The freeing transaction of `blocks` is durable. Return: `None` when none of them is held
    /// (free them all), else those to give to the allocator now; the held ones are marked
    /// durable and wait for their fence.
    pub fn on_commit(&self, blocks: &[u64]) -> Option<Vec<u64>> {
        let mut q = self.inner.lock();
        if q.held.is_empty() {
            return None;
        }
        let mut free = Vec::with_capacity(blocks.len());
        for &b in blocks {
            match q.held.get_mut(&b) {
                Some(e) => e.1 = true,
                None => free.push(b),
            }
        }
        Some(free)
    }

    /// Lifts `fence`. Return: its blocks whose transaction is durable (free them now); the others
    /// are simply released and will be freed by their commit.
    pub fn lift(&self, fence: FenceId) -> Vec<u64> {
        let mut q = self.inner.lock();
        let Some(list) = q.by_fence.remove(&fence) else {
            return Vec::new();
        };
        let mut free = Vec::new();
        for b in list {
            if let Some((f, durable)) = q.held.get(&b).copied() {
                if f == fence {
                    q.held.remove(&b);
                    if durable {
                        free.push(b);
                    }
                }
            }
        }
        free
    }

    /// Number of blocks held.
    pub fn len(&self) -> usize {
        self.inner.lock().held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{FenceId, LayoutExtent, Quarantine};

    #[test]
    fn quarantine_frees_after_both_commit_and_lift() {
        let q = Quarantine::default();
        assert!(q.is_empty());
        q.hold(FenceId(1), [10, 11]);
        q.hold(FenceId(2), [20]);
        assert_eq!(q.len(), 3);
        // Commit first: held blocks stay out; others go.
        assert_eq!(q.on_commit(&[10, 11, 12]), Some(vec![12]));
        // Lift after commit: freed now.
        assert_eq!(q.lift(FenceId(1)), vec![10, 11]);
        // Lift before commit: released, the commit frees it.
        assert_eq!(q.lift(FenceId(2)), Vec::<u64>::new());
        assert!(q.is_empty());
        assert_eq!(q.on_commit(&[20]), None);
        assert_eq!(q.lift(FenceId(9)), Vec::<u64>::new());
    }

    #[test]
    fn extent_spans() {
        assert_eq!(LayoutExtent::Hole { page: 3, nr: 4 }.span(), (3, 4));
        assert_eq!(LayoutExtent::Poisoned { page: 7, block: 9 }.span(), (7, 1));
        let d = LayoutExtent::Data {
            page: 512,
            nr: 512,
            block: 1024,
            order: 9,
        };
        assert_eq!(d.span(), (512, 512));
    }
}
