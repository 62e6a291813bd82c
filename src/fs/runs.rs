//! Runs of file pages on consecutive region blocks: `page → block` kept as `(first page, first
//! block, count)` runs that coalesce when they touch (consecutive pages on consecutive blocks) and
//! split when a page in the middle leaves. One map node per run, whatever its length: an inode's
//! poisoned pages (a poisoned GiB is one run) live here.
//!
//! Context: a plain data structure; the owner serializes access.

use std::collections::BTreeMap;

/// `page → block` runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRuns {
    map: BTreeMap<u64, (u64, u64)>,
}

impl PageRuns {
    /// No pages.
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
