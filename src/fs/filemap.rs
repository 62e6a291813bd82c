//! One inode's file page → region block map, over the multi-order [`Index`].
//!
//! Entry values are region block numbers of the entry's first page. A 2 MiB-aligned file range
//! backed by a 2 MiB-aligned run of 512 region blocks is one order-9 (PMD) entry; everything else is
//! order-0 (PTE) entries. Unmapping part of a PMD entry splits it first (as `split_huge_pmd`).
//!
//! This is the narrow seam where the DAX entry protocol (`src/dax`) will plug in to lock entries on
//! the data path: [`FileMap::lookup`], [`FileMap::map`], [`FileMap::unmap_range`] and
//! [`FileMap::entries`] are the whole interface.
//!
//! Context: mutations are serialized by the owning inode's exclusive lock; lookups run under its
//! shared lock. The index itself is also safe for concurrent use.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::index::{Entry, Index};

/// Order of a PMD (2 MiB) entry.
pub const PMD_ORDER: u8 = 9;
/// Pages in a PMD entry.
pub const PMD_PAGES: u64 = 1 << PMD_ORDER;

/// A file's block map.
#[derive(Default)]
pub struct FileMap {
    index: Index,
    mapped: AtomicU64,
}

impl FileMap {
    pub fn new() -> FileMap {
        FileMap::default()
    }

    /// The region block holding file page `page` and the order of the entry covering it.
    pub fn lookup(&self, page: u64) -> Option<(u64, u8)> {
        let e = self.index.load(page)?;
        Some((e.value + (page - e.index), e.order))
    }

    /// Maps `[page, page + 2^order)` to blocks `[block, ..)`. `page` (and for order 9, `block`)
    /// must be aligned and the range unmapped.
    pub fn map(&self, page: u64, order: u8, block: u64) {
        debug_assert_eq!(page & ((1 << order) - 1), 0);
        let mut g = self.index.lock();
        debug_assert!(
            g.find_conflict(page, order).is_none(),
            "mapping over an entry"
        );
        let _ = g.store(page, order, block);
        self.mapped.fetch_add(1 << order, Ordering::Relaxed);
    }

    /// Unmaps file pages `[start, end)`; returns the freed region blocks as (first, count) runs.
    /// A PMD entry straddling the boundary is split to PTE entries first.
    pub fn unmap_range(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut freed = Vec::new();
        if start >= end {
            return freed;
        }
        let ents = self.index.range(start, end);
        let mut g = self.index.lock();
        for e in ents {
            if e.index >= start && e.end() <= end {
                g.erase(e.index);
                freed.push((e.value, 1 << e.order));
                self.mapped.fetch_sub(1 << e.order, Ordering::Relaxed);
                continue;
            }
            // Partially covered: split to order 0 and fix each piece's block.
            let _ = g.split(e.index, 0);
            for p in e.index..e.end() {
                if p >= start && p < end {
                    g.erase(p);
                    freed.push((e.value + (p - e.index), 1));
                    self.mapped.fetch_sub(1, Ordering::Relaxed);
                } else {
                    let _ = g.update(p, e.value + (p - e.index));
                }
            }
        }
        freed
    }

    /// Splits the PMD entry covering `page` into 512 PTE entries (same blocks). Returns whether
    /// there was a PMD entry to split.
    pub fn split_pmd(&self, page: u64) -> bool {
        let Some(e) = self.index.load(page) else {
            return false;
        };
        if e.order == 0 {
            return false;
        }
        let mut g = self.index.lock();
        if g.split(e.index, 0).is_err() {
            return false;
        }
        for p in e.index..e.end() {
            let _ = g.update(p, e.value + (p - e.index));
        }
        true
    }

    /// Entries intersecting `[start, end)`, in file order.
    pub fn entries_in(&self, start: u64, end: u64) -> Vec<Entry> {
        self.index.range(start, end)
    }

    /// All entries, in file order.
    pub fn entries(&self) -> Vec<Entry> {
        self.index.range(0, u64::MAX)
    }

    /// Number of mapped pages.
    pub fn mapped_pages(&self) -> u64 {
        self.mapped.load(Ordering::Relaxed)
    }

    /// The first mapped page at or after `page`.
    pub fn next_data(&self, page: u64) -> Option<u64> {
        if self.index.load(page).is_some() {
            return Some(page);
        }
        self.index
            .range(page, u64::MAX)
            .first()
            .map(|e| e.index.max(page))
    }

    /// The first unmapped page at or after `page`.
    pub fn next_hole(&self, page: u64) -> u64 {
        let mut p = page;
        for e in self.index.range(page, u64::MAX) {
            if e.index > p {
                return p;
            }
            p = p.max(e.end());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmd_split_on_partial_unmap() {
        let m = FileMap::new();
        m.map(512, PMD_ORDER, 1024);
        m.map(3, 0, 77);
        assert_eq!(m.lookup(700), Some((1024 + 188, PMD_ORDER)));
        assert_eq!(m.mapped_pages(), 513);
        let freed = m.unmap_range(600, 610);
        assert_eq!(freed.len(), 10);
        assert_eq!(freed[0], (1024 + 88, 1));
        assert_eq!(m.lookup(599), Some((1024 + 87, 0)));
        assert_eq!(m.lookup(605), None);
        assert_eq!(m.lookup(610), Some((1024 + 98, 0)));
        assert_eq!(m.mapped_pages(), 503);
        assert_eq!(m.next_data(4), Some(512));
        assert_eq!(m.next_hole(512), 600);
        assert_eq!(m.next_hole(3), 4);
        m.map(2048, PMD_ORDER, 4096);
        assert!(m.split_pmd(2100));
        assert_eq!(m.lookup(2100), Some((4096 + 52, 0)));
        assert_eq!(m.lookup(2048 + 511), Some((4096 + 511, 0)));
        assert!(!m.split_pmd(2100));
        let all = m.unmap_range(0, u64::MAX);
        assert_eq!(all.iter().map(|r| r.1).sum::<u64>(), 503 + 512);
        assert!(m.entries().is_empty());
    }
}
