//! The poisoned pages of one inode: memory failure's record of which file pages are poisoned and
//! which bad block each still holds (docs/DESIGN.md, "Memory failure").
//!
//! A poisoned page has no DAX entry (nothing may map it) but keeps its bad block, so the
//! persistent block map and the reverse map still see the block, and a read that includes the
//! page fails with `EIO`. The set is a run map ([`PageRuns`]: `(first page, first block, count)`
//! runs that coalesce and split), so a poisoned GiB is one node.
//!
//! Ownership: each `FileMap` holds one [`PoisonedPages`], opaque to the filesystem. Only memory
//! failure marks pages (`PoisonedPages::mark` is private to this module, used by lock-then-walk
//! in `walk.rs` with the entries locked); the filesystem reads the set and forgets pages it
//! unmaps (truncate, punch hole, a whole-page write, `poison clear`).
//!
//! Context: one mutex, a leaf (never held while sleeping on an entry), skipped entirely while the
//! inode has no poisoned page (an atomic count).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// `page → block` runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PageRuns {
    map: BTreeMap<u64, (u64, u64)>,
}

impl PageRuns {
    /// No pages.
    #[cfg(test)]
    pub fn new() -> PageRuns {
        PageRuns::default()
    }

    /// Number of runs.
    #[cfg(test)]
    pub fn runs(&self) -> usize {
        self.map.len()
    }

    /// The block of `page`.
    pub fn get(&self, page: u64) -> Option<u64> {
        let (&p, &(b, n)) = self.map.range(..=page).next_back()?;
        (page < p + n).then_some(b + (page - p))
    }

    /// The runs intersecting pages `[first, end)`, cut to it: `(page, block, count)`.
    pub fn within(&self, first: u64, end: u64) -> Vec<(u64, u64, u64)> {
        let mut out = Vec::new();
        if first >= end {
            return out;
        }
        let from = match self.map.range(..=first).next_back() {
            Some((&p, &(_, n))) if p + n > first => p,
            _ => first,
        };
        for (&p, &(b, n)) in self.map.range(from..end) {
            let (s, e) = (p.max(first), (p + n).min(end));
            if s < e {
                out.push((s, b + (s - p), e - s));
            }
        }
        out
    }

    /// Whether any page of `[first, end)` is held.
    pub fn any_within(&self, first: u64, end: u64) -> bool {
        if first >= end {
            return false;
        }
        if self.get(first).is_some() {
            return true;
        }
        self.map.range(first..end).next().is_some()
    }

    /// Adds pages `[page, page + n)` on blocks `[block, block + n)` (none of them held),
    /// coalescing with the runs it continues.
    pub fn insert(&mut self, page: u64, block: u64, n: u64) {
        if n == 0 {
            return;
        }
        let (mut p, mut b, mut len) = (page, block, n);
        if let Some((&lp, &(lb, ln))) = self.map.range(..page).next_back() {
            if lp + ln == page && lb + ln == block {
                self.map.remove(&lp);
                (p, b, len) = (lp, lb, ln + n);
            }
        }
        if let Some(&(rb, rn)) = self.map.get(&(page + n)) {
            if rb == block + n {
                self.map.remove(&(page + n));
                len += rn;
            }
        }
        self.map.insert(p, (b, len));
    }

    /// Removes pages `[first, end)`, splitting the runs it cuts. Return: what was removed, as
    /// `(page, block, count)` runs.
    pub fn remove(&mut self, first: u64, end: u64) -> Vec<(u64, u64, u64)> {
        let gone = self.within(first, end);
        for &(s, _, n) in &gone {
            let (&p, &(b, len)) = self.map.range(..=s).next_back().expect("a run holds it");
            self.map.remove(&p);
            if p < s {
                self.map.insert(p, (b, s - p));
            }
            if p + len > s + n {
                self.map.insert(s + n, (b + (s + n - p), p + len - (s + n)));
            }
        }
        gone
    }
}

/// One inode's poisoned pages, with the bad block each holds.
#[derive(Debug, Default)]
pub struct PoisonedPages {
    runs: Mutex<PageRuns>,
    count: AtomicU64,
}

impl PoisonedPages {
    /// No poisoned page.
    pub fn new() -> PoisonedPages {
        PoisonedPages::default()
    }

    /// Number of poisoned pages (no lock).
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Marks the `(page, block, count)` runs poisoned (none of their pages poisoned yet).
    ///
    /// Context: lock-then-walk only, with the entries covering the pages locked.
    pub(super) fn mark(&self, runs: &[(u64, u64, u64)]) {
        let mut set = self.runs.lock();
        for &(page, block, n) in runs {
            set.insert(page, block, n);
        }
        let total: u64 = runs.iter().map(|r| r.2).sum();
        self.count.fetch_add(total, Ordering::AcqRel);
    }

    /// Forgets the poisoned pages of `[first, end)` (they are unmapped, rewritten or cleared).
    /// Return: the `(page, block, count)` runs they held.
    pub fn forget(&self, first: u64, end: u64) -> Vec<(u64, u64, u64)> {
        if self.count() == 0 {
            return Vec::new();
        }
        let gone = self.runs.lock().remove(first, end);
        let total: u64 = gone.iter().map(|r| r.2).sum();
        self.count.fetch_sub(total, Ordering::AcqRel);
        gone
    }

    /// Whether some page of `[first, end)` is poisoned.
    pub fn any_within(&self, first: u64, end: u64) -> bool {
        self.count() > 0 && self.runs.lock().any_within(first, end)
    }

    /// The bad block of poisoned page `page`.
    pub fn block_of(&self, page: u64) -> Option<u64> {
        if self.count() == 0 {
            return None;
        }
        self.runs.lock().get(page)
    }

    /// The poisoned pages of `[first, end)` as `(page, block, count)` runs.
    pub fn within(&self, first: u64, end: u64) -> Vec<(u64, u64, u64)> {
        if self.count() == 0 {
            return Vec::new();
        }
        self.runs.lock().within(first, end)
    }
}

#[cfg(test)]
mod tests {
    use super::PageRuns;

    #[test]
    fn runs_coalesce_and_split() {
        let mut r = PageRuns::new();
        r.insert(10, 100, 5);
        r.insert(15, 105, 5);
        assert_eq!(r.runs(), 1, "consecutive pages on consecutive blocks");
        r.insert(20, 500, 1);
        assert_eq!(r.runs(), 2, "another block run");
        assert_eq!(
            (r.get(12), r.get(20), r.get(21)),
            (Some(102), Some(500), None)
        );
        assert_eq!(r.remove(12, 14), vec![(12, 102, 2)]);
        assert_eq!(
            r.within(0, 100),
            vec![(10, 100, 2), (14, 104, 6), (20, 500, 1)]
        );
        assert_eq!(r.within(0, 100).iter().map(|x| x.2).sum::<u64>(), 9);
        assert!(r.any_within(11, 12) && !r.any_within(12, 14) && r.any_within(0, 11));
        r.insert(12, 102, 2);
        assert_eq!(r.runs(), 2, "filling the gap joins both sides");
        assert_eq!(r.remove(0, u64::MAX).len(), 2);
        assert_eq!(r.runs(), 0);
    }
}
