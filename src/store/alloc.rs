//! The block allocator: a DRAM bitmap of region blocks, hugepage-aware.
//!
//! The allocator is never persisted: at open it is rebuilt from the block maps, chain blocks, xattr
//! blocks and the bad-block table, so it needs no journaling. A block freed by an operation is
//! handed back only after the transaction that unreferences it is durable (see `Tx::free_after`),
//! so a crash can never leave two files pointing at one block.
//!
//! Hugepage awareness (after WineFS): the data area is viewed as 2 MiB chunks of 512 blocks aligned
//! to region block numbers that are multiples of 512. [`Allocator::alloc_huge`] hands out a wholly
//! free chunk; small allocations ([`Allocator::alloc_near`]) prefer the goal block (to keep a file
//! contiguous), then partially used chunks, and break a free chunk only when no partial chunk has
//! space, so free 2 MiB runs survive mixed workloads. Bad blocks are marked used and never handed
//! out.
//!
//! A small reserve ([`Allocator::set_reserve`]) is kept for block-map chain blocks
//! ([`Allocator::alloc_meta`]): data allocations fail with ENOSPC first, so committing a block map
//! (which may need a new chain block, e.g. during unlink or truncate) does not fail on a full
//! region.
//!
//! Cost by use, not by size: the bitmap (a set bit is a used block) and the per-chunk used counts
//! start as zero-filled allocations, so building an allocator touches only the words of the
//! layout blocks and of the tail past the region; the rest stays untouched memory (no RSS) until a
//! block there is used. Scans read untouched words as zeros without making them resident.
//!
//! Context: callers serialize access (the fs keeps it behind a mutex).

use crate::geometry::PMD_PAGES;

/// The DRAM allocator.
#[derive(Debug, Clone)]
pub struct Allocator {
    bits: Vec<u64>,
    /// Used blocks per 2 MiB chunk (layout blocks and blocks past the region count as used).
    chunk_used: Vec<u16>,
    free: u64,
    total: u64,
    data_start: u64,
    cursor: usize,
    huge_cursor: usize,
    reserve: u64,
}

impl Allocator {
    /// All blocks in `[data_start, total)` free, the rest used.
    pub fn new(data_start: u64, total: u64) -> Allocator {
        let nchunks = total.div_ceil(PMD_PAGES) as usize;
        let data_start = data_start.min(total);
        let mut a = Allocator {
            bits: vec![0; (nchunks * PMD_PAGES as usize) / 64],
            chunk_used: vec![0; nchunks],
            free: total - data_start,
            total,
            data_start,
            cursor: 0,
            huge_cursor: 0,
            reserve: 0,
        };
        a.set_used_range(0, data_start);
        a.set_used_range(total, nchunks as u64 * PMD_PAGES);
        a
    }

    /// Marks `[from, to)` used without counting them as allocated (layout and tail blocks).
    fn set_used_range(&mut self, from: u64, to: u64) {
        let mut b = from;
        while b < to {
            if b % 64 == 0 && to - b >= 64 {
                self.bits[(b / 64) as usize] = u64::MAX;
                self.chunk_used[(b / PMD_PAGES) as usize] += 64;
                b += 64;
            } else {
                self.bits[(b / 64) as usize] |= 1u64 << (b % 64);
                self.chunk_used[(b / PMD_PAGES) as usize] += 1;
                b += 1;
            }
        }
    }

    /// Free blocks of 2 MiB chunk `c`.
    fn chunk_free(&self, c: usize) -> u64 {
        PMD_PAGES - self.chunk_used[c] as u64
    }

    /// Whether block `b` is free.
    pub fn is_free(&self, b: u64) -> bool {
        b < self.total && self.bits[(b / 64) as usize] & (1u64 << (b % 64)) == 0
    }

    /// Marks `b` used; returns false when it already was (or is out of range).
    pub fn mark_used(&mut self, b: u64) -> bool {
        if !self.is_free(b) {
            return false;
        }
        self.bits[(b / 64) as usize] |= 1u64 << (b % 64);
        self.chunk_used[(b / PMD_PAGES) as usize] += 1;
        self.free -= 1;
        true
    }

    /// Returns `b` to the free pool (ignores blocks outside the data area and free blocks).
    pub fn free(&mut self, b: u64) {
        if b < self.data_start || b >= self.total || self.is_free(b) {
            return;
        }
        self.bits[(b / 64) as usize] &= !(1u64 << (b % 64));
        self.chunk_used[(b / PMD_PAGES) as usize] -= 1;
        self.free += 1;
    }

    /// Free blocks in the data area.
    pub fn free_blocks(&self) -> u64 {
        self.free
    }
    /// Free blocks that data allocations may use.
    pub fn available_blocks(&self) -> u64 {
        self.free.saturating_sub(self.reserve)
    }
    /// Keeps `n` blocks for [`Self::alloc_meta`] only.
    pub fn set_reserve(&mut self, n: u64) {
        self.reserve = n;
    }
    /// Blocks in the data area.
    pub fn data_blocks(&self) -> u64 {
        self.total - self.data_start
    }
    /// Wholly free, 2 MiB-aligned runs.
    pub fn free_2m_runs(&self) -> u64 {
        self.chunk_used.iter().filter(|&&u| u == 0).count() as u64
    }

    /// The free runs inside blocks `[first, end)` of at least `min` blocks each, as `(start,
    /// len)` in block order (`FITRIM`), scanning about `window` blocks: it stops at the first
    /// used block (or used chunk's end) past the window, so a window never cuts a run. Return: the runs and the block
    /// where the scan stopped (`end` when it reached it). Wholly used and wholly free 2 MiB
    /// chunks cost one count each; only partly used chunks are read bit by bit.
    pub fn free_runs(&self, first: u64, end: u64, min: u64, window: u64) -> (Vec<(u64, u64)>, u64) {
        let end = end.min(self.total);
        let min = min.max(1);
        let mut out = Vec::new();
        let mut run: Option<(u64, u64)> = None;
        let close = |run: &mut Option<(u64, u64)>, out: &mut Vec<(u64, u64)>| {
            if let Some((s, n)) = run.take() {
                if n >= min {
                    out.push((s, n));
                }
            }
        };
        let mut b = first.max(self.data_start);
        let stop = b.saturating_add(window);
        while b < end {
            if b >= stop && run.is_none() {
                return (out, b);
            }
            let c = (b / PMD_PAGES) as usize;
            let chunk_end = ((c as u64 + 1) * PMD_PAGES).min(end);
            match self.chunk_used[c] as u64 {
                0 => {
                    let (s, n) = run.unwrap_or((b, 0));
                    run = Some((s, n + (chunk_end - b)));
                    b = chunk_end;
                }
                PMD_PAGES => {
                    close(&mut run, &mut out);
                    b = chunk_end;
                }
                _ => {
                    while b < chunk_end {
                        if self.is_free(b) {
                            let (s, n) = run.unwrap_or((b, 0));
                            run = Some((s, n + 1));
                        } else {
                            close(&mut run, &mut out);
                            if b >= stop {
                                return (out, b);
                            }
                        }
                        b += 1;
                    }
                }
            }
        }
        close(&mut run, &mut out);
        (out, end)
    }

    /// A wholly free, 2 MiB-aligned run of 512 blocks; returns its first block.
    pub fn alloc_huge(&mut self) -> Option<u64> {
        if self.available_blocks() < PMD_PAGES {
            return None;
        }
        let n = self.chunk_used.len();
        for k in 0..n {
            let c = (self.huge_cursor + k) % n;
            if self.chunk_used[c] == 0 {
                let first = c as u64 * PMD_PAGES;
                for w in 0..(PMD_PAGES / 64) {
                    self.bits[(first / 64 + w) as usize] = u64::MAX;
                }
                self.chunk_used[c] = PMD_PAGES as u16;
                self.free -= PMD_PAGES;
                self.huge_cursor = c;
                return Some(first);
            }
        }
        None
    }

    /// One block: `goal` if free, else from a partially used chunk, else from a free chunk.
    pub fn alloc_near(&mut self, goal: Option<u64>) -> Option<u64> {
        if self.available_blocks() == 0 {
            return None;
        }
        self.alloc_meta(goal)
    }

    /// As [`Self::alloc_near`], but may use the reserve (block-map chain blocks).
    pub fn alloc_meta(&mut self, goal: Option<u64>) -> Option<u64> {
        if let Some(g) = goal {
            if g >= self.data_start && self.mark_used(g) {
                return Some(g);
            }
        }
        if self.free == 0 {
            return None;
        }
        let n = self.chunk_used.len();
        let pick = (0..n)
            .map(|k| (self.cursor + k) % n)
            .find(|&c| self.chunk_free(c) > 0 && self.chunk_free(c) < PMD_PAGES)
            .or_else(|| {
                (0..n)
                    .map(|k| (self.cursor + k) % n)
                    .find(|&c| self.chunk_free(c) > 0)
            })?;
        self.cursor = pick;
        let first_word = pick * (PMD_PAGES as usize / 64);
        for w in first_word..first_word + PMD_PAGES as usize / 64 {
            if self.bits[w] != u64::MAX {
                let b = w as u64 * 64 + (!self.bits[w]).trailing_zeros() as u64;
                let ok = self.mark_used(b);
                debug_assert!(ok);
                return Some(b);
            }
        }
        None
    }

    /// `n` contiguous free blocks (first fit from the small-allocation cursor); returns the first.
    pub fn alloc_run(&mut self, n: u64) -> Option<u64> {
        if n == 0 || self.available_blocks() < n {
            return None;
        }
        if n == 1 {
            return self.alloc_near(None);
        }
        let start0 = (self.cursor as u64 * PMD_PAGES).max(self.data_start);
        for (from, to) in [(start0, self.total), (self.data_start, start0)] {
            let mut run = 0u64;
            let mut b = from;
            while b < to {
                if self.is_free(b) {
                    run += 1;
                    if run == n {
                        let first = b + 1 - n;
                        for x in first..=b {
                            self.mark_used(x);
                        }
                        return Some(first);
                    }
                } else {
                    run = 0;
                }
                b += 1;
            }
        }
        None
    }

    /// Iterates the blocks that are in use in the data area (for stat/fsck).
    pub fn used_blocks(&self) -> u64 {
        self.data_blocks() - self.free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_and_small_allocation() {
        let mut a = Allocator::new(100, 4096);
        assert_eq!(a.free_blocks(), 3996);
        // Chunks 1..8 are wholly free (chunk 0 holds metadata blocks 0..100).
        assert_eq!(a.free_2m_runs(), 7);
        let h = a.alloc_huge().unwrap();
        assert_eq!(h % 512, 0);
        assert!(h >= 512);
        // Small allocations go into the partial chunk 0 first.
        let s = a.alloc_near(None).unwrap();
        assert!((100..512).contains(&s));
        assert_eq!(a.alloc_near(Some(s + 1)), Some(s + 1));
        assert_eq!(a.free_2m_runs(), 6);
        a.free(s);
        assert!(a.is_free(s));
        assert!(!a.mark_used(5));
    }

    #[test]
    fn free_runs_follow_the_bitmap_and_windows_never_cut_a_run() {
        let mut a = Allocator::new(100, 4096);
        for b in [200, 201, 700, 1536] {
            assert!(a.mark_used(b));
        }
        // The model: every free block of [first, end), grouped into maximal runs.
        let model = |a: &Allocator, first: u64, end: u64, min: u64| -> Vec<(u64, u64)> {
            let mut out: Vec<(u64, u64)> = Vec::new();
            for b in first..end {
                if !a.is_free(b) {
                    continue;
                }
                match out.last_mut() {
                    Some((s, n)) if *s + *n == b => *n += 1,
                    _ => out.push((b, 1)),
                }
            }
            out.retain(|r| r.1 >= min);
            out
        };
        for (first, end, min) in [(0, 4096, 1), (150, 3000, 1), (0, 4096, 600), (201, 202, 1)] {
            let (runs, next) = a.free_runs(first, end, min, u64::MAX);
            assert_eq!(runs, model(&a, first, end, min), "{first}..{end} min {min}");
            assert_eq!(next, end);
        }
        assert_eq!(a.free_runs(0, 4096, 1, u64::MAX).0[0], (100, 100));
        // Windows: the scan stops at the first used block past the window, never inside a run;
        // walking window by window gives the same runs.
        let mut at = 0;
        let mut all = Vec::new();
        while at < 4096 {
            let (runs, next) = a.free_runs(at, 4096, 1, 64);
            assert!(next > at);
            assert!(
                next == 4096 || !a.is_free(next) || !a.is_free(next - 1),
                "stopped at {next}, inside a run"
            );
            all.extend(runs);
            at = next;
        }
        assert_eq!(all, model(&a, 0, 4096, 1));
    }

    #[test]
    fn exhaustion_and_reuse() {
        let mut a = Allocator::new(10, 1024);
        let mut got = Vec::new();
        while let Some(b) = a.alloc_near(None) {
            got.push(b);
        }
        assert_eq!(got.len(), 1014);
        assert_eq!(a.free_blocks(), 0);
        assert!(a.alloc_huge().is_none());
        for b in 512..1024 {
            a.free(b);
        }
        a.set_reserve(10);
        assert_eq!(a.available_blocks(), 502);
        assert_eq!(a.alloc_huge(), None);
        a.set_reserve(0);
        assert_eq!(a.alloc_huge(), Some(512));
        a.free(600);
        a.set_reserve(1);
        assert_eq!(a.alloc_near(None), None);
        assert_eq!(a.alloc_meta(None), Some(600));
        a.set_reserve(0);
        for b in 700..710 {
            a.free(b);
        }
        a.free(712);
        assert_eq!(a.alloc_run(10), Some(700));
        assert_eq!(a.alloc_run(2), None);
        assert!(!a.is_free(709));
    }
}
