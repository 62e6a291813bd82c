//! A generic multi-order entry index, modelled on the Linux kernel's XArray.
//!
//! Maps `u64` indices to `u64` values. An entry of order `k` stored at index `i` covers the aligned
//! range `[i & !(2^k - 1), +2^k)`; a lookup of any index in that range returns it.
//!
//! **Contract (fixed; implementations must keep it).** See `../shared/DESIGN.md`, "The multi-order
//! index". This file currently holds the API with a simple reference implementation
//! (`Mutex<BTreeMap>`), which the lock-free radix-tree implementation replaces; the reference
//! stays as the model for property tests.
//!
//! - Readers (`load`, `find_conflict`, `get_mark`, `find_marked`, `range`) never block on writers.
//! - Writers take [`Index::lock`] (one parking_lot mutex per index) and mutate through the guard, so
//!   a find-then-store sequence is atomic with respect to other writers.
//! - `find_conflict(i, k)` returns the first entry present anywhere in the order-`k` range around
//!   `i`, including smaller entries: a range holding smaller entries is never reported empty.
//! - `store(i, k, v)` replaces everything intersecting the order-`k` range with one entry.
//! - Marks belong to entries (an entry's marks go away when it is erased or replaced).

mod reference;

pub use reference::{Index, IndexGuard};

/// Largest supported order: 2^MAX_ORDER slots per entry (order 18 = 1 GiB of 4 KiB pages).
pub const MAX_ORDER: u8 = 24;

/// One entry as seen by a reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The aligned first index the entry covers.
    pub index: u64,
    /// The entry covers `1 << order` indices.
    pub order: u8,
    /// The stored value.
    pub value: u64,
}

impl Entry {
    /// One past the last index covered.
    pub fn end(&self) -> u64 {
        self.index + (1u64 << self.order)
    }
    /// Whether `i` lies inside this entry.
    pub fn contains(&self, i: u64) -> bool {
        i >= self.index && i < self.end()
    }
}

/// A per-entry mark (used for writeback, as the kernel's `PAGECACHE_TAG_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mark {
    Dirty = 0,
    Towrite = 1,
}

/// Errors from index writers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("order {0} exceeds MAX_ORDER")]
    OrderTooLarge(u8),
    #[error("no entry at that index")]
    NotFound,
    #[error("split order must be smaller than the entry's order")]
    BadSplitOrder,
}

/// First index of the order-`order` aligned range containing `i`.
pub fn align_down(i: u64, order: u8) -> u64 {
    if order >= 64 {
        0
    } else {
        i & !((1u64 << order) - 1)
    }
}
