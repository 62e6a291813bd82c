//! The index object and its public API: [`Index`] (lock-free readers), [`Reader`] (a pinned
//! reader for batches of lookups) and [`IndexGuard`] (the serialized writer).
//!
//! Owns: the tree's root word, the writer mutex and the counters. The algorithms live in
//! `read.rs` (readers) and `write.rs` (writers); this file only wires them to the API and frees
//! the tree on drop.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::sync::atomic::AtomicU64;
use crate::sync::{Mutex, MutexGuard};

use super::node::Node;
use super::reclaim::{self, Guard, Retired};
use super::slot::{self, Slot};
use super::{align_down, Entry, IndexError, Mark};

/// A multi-order index: a radix tree of `NODE_SLOTS`-slot nodes (see the module documentation).
pub struct Index {
    /// The root: `slot::EMPTY` or a node word (never a value: even a lone entry lives in a node).
    pub(super) head: AtomicU64,
    /// Serializes writers ([`IndexGuard`] holds it).
    pub(super) lock: Mutex<()>,
    /// Number of entries; written only under `lock`.
    pub(super) entries: AtomicUsize,
    /// Number of allocated (linked) nodes; written only under `lock`.
    pub(super) nodes: AtomicUsize,
    pub(super) retired: Retired,
}

/// Writer access to an [`Index`]; holding it serializes against other writers.
pub struct IndexGuard<'a> {
    pub(super) index: &'a Index,
    _lock: MutexGuard<'a, ()>,
}

/// A pinned reader: lookups through it share one epoch pin (one `rcu_read_lock` section), which
/// is cheaper than [`Index::load`]'s pin per call. Nodes unlinked meanwhile are not freed until
/// it drops, so do not keep it across long waits.
pub struct Reader<'a> {
    index: &'a Index,
    guard: Guard,
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Index {
            head: AtomicU64::new(slot::EMPTY),
            lock: Mutex::new(()),
            entries: AtomicUsize::new(0),
            nodes: AtomicUsize::new(0),
            retired: Retired::default(),
        }
    }
    /// The entry covering `i`, if any.
    ///
    /// Context: lock-free; pins the epoch for the call.
    #[inline]
    pub fn load(&self, i: u64) -> Option<Entry> {
        let guard = reclaim::pin();
        self.xas_load(i, &guard).map(|f| f.entry)
    }
    /// The first entry present in the order-`order` range around `i` (any size), if any.
    ///
    /// Context: lock-free. Against concurrent writers each slot is read once, so the answer
    /// is an entry that was present during the call; use [`IndexGuard::find_conflict`] for a
    /// find-then-store sequence.
    pub fn find_conflict(&self, i: u64, order: u8) -> Option<Entry> {
        let guard = reclaim::pin();
        self.xas_find_conflict(i, order, &guard)
    }
    /// Whether the entry covering `i` carries `mark`.
    pub fn get_mark(&self, i: u64, mark: Mark) -> bool {
        let guard = reclaim::pin();
        self.xas_get_mark(i, mark, &guard)
    }
    /// The first entry at or after `start` (including one covering `start`) with `mark`.
    pub fn find_marked(&self, start: u64, mark: Mark) -> Option<Entry> {
        let guard = reclaim::pin();
        let mut found = None;
        self.walk(start, u64::MAX, Some(mark), &guard, &mut |e| {
            found = Some(e);
            false
        });
        found
    }
    /// All entries intersecting `[start, end)`, in index order.
    pub fn range(&self, start: u64, end: u64) -> Vec<Entry> {
        let guard = reclaim::pin();
        let mut out = Vec::new();
        if end <= start {
            // Only an entry covering `start` that begins before `end` can qualify.
            out.extend(
                self.xas_load(start, &guard)
                    .map(|f| f.entry)
                    .filter(|e| e.index < end),
            );
            return out;
        }
        self.walk(start, end - 1, None, &guard, &mut |e| {
            out.push(e);
            true
        });
        out
    }
    /// Number of entries (of any order).
    pub fn len(&self) -> usize {
        self.entries.load(Relaxed)
    }
    /// Whether the index holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes of memory in use: the index object plus its nodes (deferred frees not counted).
    pub fn memory_usage(&self) -> usize {
        std::mem::size_of::<Self>() + self.nodes.load(Relaxed) * std::mem::size_of::<Node>()
    }
    /// Takes the writer lock.
    ///
    /// Context: may sleep on the index's mutex.
    pub fn lock(&self) -> IndexGuard<'_> {
        IndexGuard {
            index: self,
            _lock: self.lock.lock(),
        }
    }
    /// A pinned reader for a batch of lookups.
    pub fn reader(&self) -> Reader<'_> {
        Reader {
            index: self,
            guard: reclaim::pin(),
        }
    }
    /// Number of nodes in the tree (for tests and memory accounting).
    #[doc(hidden)]
    pub fn node_count(&self) -> usize {
        self.nodes.load(Relaxed)
    }
}

impl Reader<'_> {
    /// As [`Index::load`], inside this reader's pin.
    #[inline]
    pub fn load(&self, i: u64) -> Option<Entry> {
        self.index.xas_load(i, &self.guard).map(|f| f.entry)
    }
    /// As [`Index::find_conflict`], inside this reader's pin.
    pub fn find_conflict(&self, i: u64, order: u8) -> Option<Entry> {
        self.index.xas_find_conflict(i, order, &self.guard)
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        if let Slot::Node(addr) =
            slot::decode(self.head.load(crate::sync::atomic::Ordering::Relaxed))
        {
            // SAFETY: `&mut self` means no reader or writer borrows the index; the tree's
            // linked nodes are owned by it and freed once here (retired ones are owned by
            // `Retired`/the epoch collector, and are no longer linked).
            unsafe { free_subtree(addr as *mut Node) };
        }
    }
}

/// Frees `node` and every node below it.
///
/// # Safety
/// The subtree is linked nowhere else, no reader can reach it, and it is freed only once.
unsafe fn free_subtree(node: *mut Node) {
    // SAFETY: the caller guarantees the subtree is exclusively ours and still allocated.
    let n = unsafe { &*node };
    for s in &n.slots {
        if let Slot::Node(child) = slot::decode(s.load(crate::sync::atomic::Ordering::Relaxed)) {
            // SAFETY: a child of an exclusively owned subtree is exclusively owned too.
            unsafe { free_subtree(child as *mut Node) };
        }
    }
    // SAFETY: all children are freed; `n` is not used past this point.
    unsafe { Node::free(node) };
}

impl IndexGuard<'_> {
    /// As [`Index::load`], under the writer lock.
    pub fn load(&self, i: u64) -> Option<Entry> {
        let guard = reclaim::pin();
        self.index.xas_load(i, &guard).map(|f| f.entry)
    }
    /// As [`Index::find_conflict`], under the writer lock (exact: no writer runs meanwhile).
    pub fn find_conflict(&self, i: u64, order: u8) -> Option<Entry> {
        let guard = reclaim::pin();
        self.index.xas_find_conflict(i, order, &guard)
    }
    /// Replaces everything intersecting the order-`order` range around `i` with one entry.
    /// Returns the entries removed, in index order.
    pub fn store(&mut self, i: u64, order: u8, value: u64) -> Result<Vec<Entry>, IndexError> {
        if order > super::MAX_ORDER {
            return Err(IndexError::OrderTooLarge(order));
        }
        if value > slot::MAX_VALUE {
            return Err(IndexError::ValueTooLarge(value));
        }
        let guard = reclaim::pin();
        Ok(self
            .index
            .xas_store(align_down(i, order), order, value, &guard))
    }
    /// Replaces the value of the entry covering `i`, keeping its order and marks.
    pub fn update(&mut self, i: u64, value: u64) -> Result<Entry, IndexError> {
        if value > slot::MAX_VALUE {
            return Err(IndexError::ValueTooLarge(value));
        }
        let guard = reclaim::pin();
        self.index.xas_update(i, value, &guard)
    }
    /// Removes the entry covering `i`.
    pub fn erase(&mut self, i: u64) -> Option<Entry> {
        let guard = reclaim::pin();
        self.index.xas_erase(i, &guard)
    }
    /// Splits the entry covering `i` into `2^(order - new_order)` entries of `new_order`, each
    /// with the same value and marks.
    pub fn split(&mut self, i: u64, new_order: u8) -> Result<(), IndexError> {
        let guard = reclaim::pin();
        self.index.xas_split(i, new_order, &guard)
    }
    /// Sets `mark` on the entry covering `i`.
    pub fn set_mark(&mut self, i: u64, mark: Mark) -> Result<(), IndexError> {
        let guard = reclaim::pin();
        self.index.xas_set_mark(i, mark, true, &guard)
    }
    /// Clears `mark` on the entry covering `i`.
    pub fn clear_mark(&mut self, i: u64, mark: Mark) -> Result<(), IndexError> {
        let guard = reclaim::pin();
        self.index.xas_set_mark(i, mark, false, &guard)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::index::node::{NODE_SHIFT, NODE_SLOTS};
    use crate::index::MAX_ORDER;

    fn e(index: u64, order: u8, value: u64) -> Entry {
        Entry {
            index,
            order,
            value,
        }
    }

    #[test]
    fn seed_d_pte_load_inside_pmd_returns_pmd() {
        let idx = Index::new();
        idx.lock().store(512, 9, 77).unwrap();
        for i in [512, 513, 700, 1023] {
            assert_eq!(idx.load(i), Some(e(512, 9, 77)), "load({i})");
            assert_eq!(idx.find_conflict(i, 0), Some(e(512, 9, 77)));
        }
        assert_eq!(idx.load(511), None);
        assert_eq!(idx.load(1024), None);
    }

    #[test]
    fn seed_a_index_pte_at_1023_conflicts_with_pmd_at_512() {
        let idx = Index::new();
        idx.lock().store(1023, 0, 5).unwrap();
        assert_eq!(
            idx.load(512),
            None,
            "a plain PMD-index load sees nothing at 512"
        );
        assert_eq!(idx.find_conflict(512, 9), Some(e(1023, 0, 5)));
        assert_eq!(idx.find_conflict(700, 9), Some(e(1023, 0, 5)));
        assert_eq!(idx.lock().find_conflict(512, 9), Some(e(1023, 0, 5)));
        assert_eq!(idx.find_conflict(1024, 9), None);
    }

    #[test]
    fn store_replaces_smaller_and_larger_entries() {
        let idx = Index::new();
        let mut g = idx.lock();
        g.store(3, 0, 1).unwrap();
        g.store(100, 0, 2).unwrap();
        let removed = g.store(0, 9, 9).unwrap();
        assert_eq!(removed, vec![e(3, 0, 1), e(100, 0, 2)]);
        assert_eq!(g.load(300), Some(e(0, 9, 9)));
        let removed = g.store(64, 0, 4).unwrap();
        assert_eq!(removed, vec![e(0, 9, 9)]);
        assert_eq!(g.load(64), Some(e(64, 0, 4)));
        assert_eq!(g.load(0), None);
        assert_eq!(g.load(65), None);
        drop(g);
        assert_eq!(idx.len(), 1);
    }

    #[test]
    fn every_order_round_trips_and_erase_frees_nodes() {
        let idx = Index::new();
        for order in 0..=MAX_ORDER {
            let i = (3u64 << order) + (1 << order) / 2;
            let mut g = idx.lock();
            g.store(i, order, u64::from(order)).unwrap();
            let want = e(3 << order, order, u64::from(order));
            assert_eq!(g.load(i), Some(want));
            assert_eq!(g.load(3 << order), Some(want));
            assert_eq!(g.load((4 << order) - 1), Some(want));
            assert_eq!(g.load((3 << order) - 1), None);
            assert_eq!(g.erase(i), Some(want));
            assert!(g.load(i).is_none());
        }
        assert_eq!(idx.len(), 0);
        assert_eq!(idx.node_count(), 0);
    }

    #[test]
    fn high_indices_and_limits() {
        let idx = Index::new();
        let mut g = idx.lock();
        g.store(u64::MAX, 0, 1).unwrap();
        g.store(1 << 63, 24, 2).unwrap();
        assert_eq!(g.load(u64::MAX), Some(e(u64::MAX, 0, 1)));
        assert_eq!(g.load((1 << 63) + 12345), Some(e(1 << 63, 24, 2)));
        assert_eq!(
            g.store(0, MAX_ORDER + 1, 1),
            Err(IndexError::OrderTooLarge(25))
        );
        assert_eq!(
            g.store(0, 0, 1 << 59),
            Err(IndexError::ValueTooLarge(1 << 59))
        );
        assert_eq!(
            g.update(u64::MAX, 1 << 60),
            Err(IndexError::ValueTooLarge(1 << 60))
        );
        drop(g);
        assert_eq!(idx.range(0, u64::MAX), vec![e(1 << 63, 24, 2)]);
        assert_eq!(idx.find_conflict(u64::MAX, 24), Some(e(u64::MAX, 0, 1)));
    }

    #[test]
    fn split_keeps_value_and_marks() {
        let idx = Index::new();
        let mut g = idx.lock();
        g.store(1 << 12, 12, 42).unwrap();
        g.set_mark(5000, Mark::Dirty).unwrap();
        g.split(4096, 9).unwrap();
        g.split(4096 + 512, 0).unwrap();
        g.split(4096 + 1024, 4).unwrap();
        drop(g);
        assert_eq!(idx.len(), 8 - 2 + 512 + 32);
        assert_eq!(idx.load(4096), Some(e(4096, 9, 42)));
        assert_eq!(idx.load(4096 + 513), Some(e(4096 + 513, 0, 42)));
        assert_eq!(idx.load(4096 + 1024 + 17), Some(e(4096 + 1024 + 16, 4, 42)));
        assert!(idx.get_mark(4096 + 600, Mark::Dirty));
        assert!(!idx.get_mark(4096 + 600, Mark::Towrite));
        assert_eq!(
            idx.find_marked(4096 + 600, Mark::Dirty),
            Some(e(4096 + 600, 0, 42))
        );
        assert_eq!(
            idx.lock().split(4096 + 600, 0),
            Err(IndexError::BadSplitOrder)
        );
    }

    #[test]
    fn marks_propagate_and_clear() {
        let idx = Index::new();
        let mut g = idx.lock();
        for i in [10u64, 5000, 1 << 40] {
            g.store(i, 0, i).unwrap();
        }
        g.set_mark(5000, Mark::Towrite).unwrap();
        g.set_mark(1 << 40, Mark::Towrite).unwrap();
        drop(g);
        assert_eq!(idx.find_marked(0, Mark::Towrite), Some(e(5000, 0, 5000)));
        assert_eq!(
            idx.find_marked(5001, Mark::Towrite),
            Some(e(1 << 40, 0, 1 << 40))
        );
        assert_eq!(idx.find_marked(0, Mark::Dirty), None);
        let mut g = idx.lock();
        g.clear_mark(5000, Mark::Towrite).unwrap();
        assert_eq!(g.erase(1 << 40).map(|e| e.value), Some(1 << 40));
        drop(g);
        assert_eq!(idx.find_marked(0, Mark::Towrite), None);
        assert_eq!(
            idx.lock().set_mark(77, Mark::Dirty),
            Err(IndexError::NotFound)
        );
    }

    #[test]
    fn range_and_covering_start() {
        let idx = Index::new();
        let mut g = idx.lock();
        g.store(0, 9, 1).unwrap();
        g.store(600, 0, 2).unwrap();
        g.store(4096, 12, 3).unwrap();
        drop(g);
        assert_eq!(idx.range(100, 601), vec![e(0, 9, 1), e(600, 0, 2)]);
        assert_eq!(idx.range(601, 5000), vec![e(4096, 12, 3)]);
        assert_eq!(idx.range(5000, 3), vec![]);
        assert_eq!(idx.range(5000, 4097), vec![e(4096, 12, 3)]);
    }

    #[test]
    fn dense_pte_memory_is_under_10_bytes_per_entry() {
        let idx = Index::new();
        let mut g = idx.lock();
        let n = 1u64 << 16;
        for i in 0..n {
            g.store(i, 0, i).unwrap();
        }
        drop(g);
        let per = idx.memory_usage() as f64 / n as f64;
        assert!(per <= 10.0, "{per} bytes per entry");
        // O(1) per PMD entry: `2^(9 % NODE_SHIFT)` slots of the node of shift
        // `9 / NODE_SHIFT * NODE_SHIFT` each (8 slots of a 64-slot node, 2 of a 256-slot one).
        let pmd = Index::new();
        for k in 0..64u64 {
            pmd.lock().store(k << 9, 9, k).unwrap();
        }
        let per_node = NODE_SLOTS >> (9 % NODE_SHIFT);
        let leaves = 64usize.div_ceil(per_node);
        assert_eq!(
            pmd.node_count(),
            leaves + usize::from(leaves > 1),
            "{per_node} PMD entries per node, plus a root above them if they need several"
        );
        assert!(pmd.memory_usage() / 64 <= 100, "O(1) bytes per PMD entry");
    }
}
