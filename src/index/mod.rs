//! A generic multi-order entry index, modelled on the Linux kernel's XArray (`lib/xarray.c`).
//!
//! Maps `u64` indices to `u64` values. An entry of order `k` stored at index `i` covers the aligned
//! range `[i & !(2^k - 1), +2^k)`; a lookup of any index in that range returns it.
//!
//! **Contract (fixed; implementations must keep it).** See docs/DESIGN.md, "The multi-order
//! index".
//!
//! - Readers (`load`, `find_conflict`, `get_mark`, `find_marked`, `range`) never block on writers.
//! - Writers take [`Index::lock`] (one mutex per index) and mutate through the guard, so
//!   a find-then-store sequence is atomic with respect to other writers.
//! - `find_conflict(i, k)` returns the first entry present anywhere in the order-`k` range around
//!   `i`, including smaller entries: a range holding smaller entries is never reported empty.
//! - `store(i, k, v)` replaces everything intersecting the order-`k` range with one entry.
//! - Marks belong to entries (an entry's marks go away when it is erased or replaced).
//! - Values must be `<= MAX_VALUE` (`2^59 - 1`): the top bits of a slot word carry the tag and the
//!   entry's order (see `slot.rs`). Larger values are refused with [`IndexError::ValueTooLarge`].
//!
//! **Design choices** (where the kernel's XArray was a guide, not a spec):
//! - A radix tree of 64-slot nodes (`NODE_SHIFT` = 6 index bits per level, up to 11 levels for
//!   64-bit indices, as the kernel's `XA_CHUNK_SHIFT`). An entry of order `k` lives in the node
//!   of shift `6 * (k / 6)` as a canonical slot plus `2^(k % 6) - 1` sibling slots, as the kernel
//!   stores multi-order entries (a PMD entry: 8 slots of a shift-6 node). The code is written
//!   against `node::NODE_SHIFT` (6, 7 or 8 work); 256-slot nodes make a 1 M-entry lookup about a
//!   fifth faster but cost every index a 2 KiB node instead of 544 bytes (measured in
//!   `docs/PERFORMANCE-index.md`; not taken, for the many small files' sake).
//! - The canonical slot word carries the value *and* the entry's order, so a reader gets both from
//!   one atomic load; siblings name their canonical slot and a reader re-validates that the
//!   canonical entry still covers it (else it restarts), so it never returns a torn entry.
//! - `head` is always empty or a node (no single-entry head as in the kernel): one less case for
//!   every reader, at the cost of one node for a one-entry index.
//! - Lock-free `find_conflict`/`range` read each slot once: against a concurrent writer they
//!   return entries present during the call, not an atomic snapshot (as the kernel's RCU walks);
//!   the guard's versions are exact. [`Index::reader`] pins once for a batch of lookups.
//! - Memory: 544-byte nodes, so dense order-0 entries cost about 8.6 bytes each (upper levels
//!   included); a PMD (order-9) entry takes 8 slots of a shift-6 node (about 69 bytes).
//!
//! **Layout of this module.**
//! - `slot.rs`: the encoding of one 64-bit slot word (empty / node / value / sibling).
//! - `node.rs`: the radix-tree node (`NODE_SLOTS` slots) with its mark bitmaps.
//! - `reclaim.rs`: pinning and deferred freeing of unlinked nodes (crossbeam-epoch; under
//!   `cfg(loom)` a leak-until-drop list loom can check).
//! - `read.rs`: the lock-free readers (`xas_load`, the ordered walk behind `find_conflict`,
//!   `range` and `find_marked`).
//! - `tree.rs`: the [`Index`] object and its public API, wiring readers and writers.
//! - `write.rs`: the writers behind [`IndexGuard`] (`xas_store`, `xas_split`, marks, shrinking).
//! - `model.rs`: the `BTreeMap` model used by property tests and benchmarks ([`ModelIndex`]).
//!
//! Concurrency is checked by `tests/index_loom.rs`
//! (`RUSTFLAGS="--cfg loom" cargo test --release --test index_loom`) and stressed by
//! `tests/index_stress.rs`; `tests/index_proptest.rs` compares the index with the model.

mod model;
mod node;
mod read;
mod reclaim;
mod slot;
mod tree;
mod write;

#[doc(hidden)]
pub use model::{ModelIndex, ModelIndexGuard};
pub use tree::{Index, IndexGuard, Reader};

/// Largest value an entry may hold (values use the low 59 bits of a slot word).
pub const MAX_VALUE: u64 = slot::MAX_VALUE;

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
        i >= self.index && (i - self.index) >> self.order == 0
    }
}

/// A per-entry mark (used for writeback, as the kernel's `PAGECACHE_TAG_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mark {
    /// Changed since the last writeback (`PAGECACHE_TAG_DIRTY`).
    Dirty = 0,
    /// Selected for the writeback in progress (`PAGECACHE_TAG_TOWRITE`).
    Towrite = 1,
}

/// Errors from index writers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// An order above [`MAX_ORDER`].
    #[error("order {0} exceeds MAX_ORDER")]
    OrderTooLarge(u8),
    /// No entry where the operation needs one.
    #[error("no entry at that index")]
    NotFound,
    /// A split to an order not below the entry's.
    #[error("split order must be smaller than the entry's order")]
    BadSplitOrder,
    /// A value above [`MAX_VALUE`].
    #[error("value {0:#x} exceeds MAX_VALUE (2^59 - 1)")]
    ValueTooLarge(u64),
}

/// First index of the order-`order` aligned range containing `i`.
pub fn align_down(i: u64, order: u8) -> u64 {
    if order >= 64 {
        0
    } else {
        i & !((1u64 << order) - 1)
    }
}
