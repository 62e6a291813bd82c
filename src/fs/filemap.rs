//! One inode's file page → region block map: a [`DaxMapping`] (DAX entries in the multi-order
//! index) plus the inode's poisoned pages.
//!
//! Entry values are DAX entries ([`DaxEntry`]): the region block of the entry's first page and the
//! `LOCKED | PMD | ZERO | EMPTY` flags. A 2 MiB-aligned file range backed by a 2 MiB-aligned run of
//! 512 region blocks is ONE order-9 (PMD) entry; everything else is order-0 (PTE) entries.
//!
//! Every change and every data access goes through the entry protocol of `crate::dax`:
//! - [`FileMap::map`] (write allocation, fallocate, mount-time load) grabs a locked `EMPTY` entry
//!   with `grab_mapping_entry`, installs the block into it and unlocks it;
//! - [`FileMap::lock_range`] locks every entry of a page range in ascending order (reads send
//!   their reply, writes copy their bytes, while the entries are locked);
//! - [`FileMap::unmap_range`] (truncate, punch hole, eviction) locks each entry, erases it or, if a
//!   PMD entry is only partly covered, splits it into PTE entries first;
//! - `FileMap::poison_range` (memory failure only; crate-private) is the lock-then-walk step:
//!   lock the entries covering the range (the whole PMD entry for any sub-page), derive the
//!   mapping size from the entries, and split them around the poisoned pages.
//!
//! A poisoned page has no DAX entry (nothing may map it) but still owns its bad block: it is kept
//! in a per-inode `page → block` set, so the persistent block map ([`FileMap::entries`] includes
//! poisoned pages as order-0 entries) and the reverse map still see it, and a read that includes
//! it fails with `EIO`. The set is rebuilt at mount from the bad-block table.
//!
//! Lock order: inode rwsem (held by the callers of everything but `poison_range`) → entry locks in
//! ascending file order → the poisoned-set mutex (a leaf; never held while sleeping on an entry).
//! Memory failure takes no inode rwsem at all.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::dax::{DaxEntry, DaxEntryGuard, DaxError, DaxMapping, DaxMappingInfo, DaxOptions};
use crate::index::Entry;

use super::runs::PageRuns;

pub use crate::geometry::{PMD_ORDER, PMD_PAGES};

thread_local! {
    /// Reused guard vectors: a read or write locks its entries without allocating.
    static GUARDS: RefCell<Vec<Vec<DaxEntryGuard>>> = const { RefCell::new(Vec::new()) };
}

/// What [`FileMap::poison_range`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoisonedRange {
    /// Pages newly poisoned, as `(page, block, count)` runs.
    pub runs: Vec<(u64, u64, u64)>,
    /// Pages of the range that were poisoned already.
    pub already: u64,
    /// Pages of the range with no block (holes).
    pub holes: u64,
    /// The entries changed, as `(first page, pages)`: whole entries (512 pages for a PMD), the
    /// ranges to unmap from user mappings.
    pub unmap: Vec<(u64, u64)>,
}

/// The reverse map of one filesystem: region block → (inode, file page) for every block a file
/// map holds (mapped by an entry or poisoned), as runs keyed by first block. Kept in step by
/// [`FileMap`] (a block enters before its entry is installed and leaves after its entry is
/// erased), so it never misses a mapped block; memory failure verifies its answer under the entry
/// lock. Context: one mutex, a leaf, taken on allocation and unmapping, never on reads.
#[derive(Default)]
pub struct Rmap {
    runs: Mutex<BTreeMap<u64, (u64, u64, u64)>>,
}

impl Rmap {
    /// An empty reverse map.
    pub fn new() -> Rmap {
        Rmap::default()
    }

    /// Notes that blocks `[block, +len)` back pages `[page, +len)` of inode `ino`.
    pub fn insert(&self, block: u64, len: u64, ino: u64, page: u64) {
        self.runs.lock().insert(block, (len, ino, page));
    }

    /// Forgets blocks `[block, +len)`, cutting the runs that hold them.
    pub fn remove(&self, block: u64, len: u64) {
        let end = block + len;
        let mut runs = self.runs.lock();
        let mut touched = Vec::new();
        for (&s, &(l, ino, pg)) in runs.range(..end).rev() {
            if s + l <= block {
                break;
            }
            touched.push((s, l, ino, pg));
        }
        for (s, l, ino, pg) in touched {
            runs.remove(&s);
            if s < block {
                runs.insert(s, (block - s, ino, pg));
            }
            if s + l > end {
                runs.insert(end, (s + l - end, ino, pg + (end - s)));
            }
        }
    }

    /// `(ino, page)` holding `block`, if any.
    pub fn lookup(&self, block: u64) -> Option<(u64, u64)> {
        let runs = self.runs.lock();
        let (&s, &(l, ino, pg)) = runs.range(..=block).next_back()?;
        (block < s + l).then_some((ino, pg + (block - s)))
    }

    /// The runs holding blocks of `[first, end)`, cut to it: `(block, len, ino, page)`.
    pub fn within(&self, first: u64, end: u64) -> Vec<(u64, u64, u64, u64)> {
        let runs = self.runs.lock();
        let from = match runs.range(..=first).next_back() {
            Some((&s, &(l, _, _))) if s + l > first => s,
            _ => first,
        };
        let mut out = Vec::new();
        for (&s, &(l, ino, pg)) in runs.range(from..end) {
            let (a, z) = (s.max(first), (s + l).min(end));
            if a < z {
                out.push((a, z - a, ino, pg + (a - s)));
            }
        }
        out
    }

    /// Number of runs.
    pub fn runs(&self) -> usize {
        self.runs.lock().len()
    }
}

/// A file's block map.
pub struct FileMap {
    dax: DaxMapping,
    rmap: std::sync::OnceLock<std::sync::Arc<Rmap>>,
    mapped: AtomicU64,
    poisoned: Mutex<PageRuns>,
    npoisoned: AtomicU64,
}

/// Entries of a page range, locked in ascending order; unlocked on drop.
pub struct RangeLock {
    guards: Vec<DaxEntryGuard>,
}

impl RangeLock {
    /// Adds a locked entry (one created in a hole of the range), keeping file order.
    pub fn insert(&mut self, g: DaxEntryGuard) {
        let i = self.guards.partition_point(|h| h.index() < g.index());
        self.guards.insert(i, g);
    }

    /// The locked entries in file order.
    pub fn guards(&self) -> &[DaxEntryGuard] {
        &self.guards
    }

    /// The region block of file page `page` and the first page after its entry, if a locked entry
    /// covers it.
    pub fn block_of(&self, page: u64) -> Option<(u64, u64)> {
        let i = self
            .guards
            .partition_point(|g| g.index() + (1u64 << g.order()) <= page);
        let g = self.guards.get(i)?;
        let b = g.block_of(page).ok()??;
        Some((b, g.index() + (1u64 << g.order())))
    }
}

impl Drop for RangeLock {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut self.guards);
        v.clear(); // unlocks, in ascending order
        GUARDS.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < 4 {
                p.push(v);
            }
        });
    }
}

fn eio(e: DaxError) -> nix::errno::Errno {
    log::error!("daxfs: DAX entry protocol: {e}");
    nix::errno::Errno::EIO
}

impl FileMap {
    /// The map of inode `ino` (generation `generation`): its own DAX mapping.
    pub fn new(ino: u64, generation: u64) -> FileMap {
        FileMap::with_options(ino, generation, DaxOptions::default())
    }

    /// As [`FileMap::new`], with DAX options (the historical bugs to reproduce).
    pub fn with_options(ino: u64, generation: u64, opts: DaxOptions) -> FileMap {
        FileMap {
            dax: DaxMapping::new(ino, generation, opts),
            rmap: std::sync::OnceLock::new(),
            mapped: AtomicU64::new(0),
            poisoned: Mutex::new(PageRuns::new()),
            npoisoned: AtomicU64::new(0),
        }
    }

    /// Attaches the filesystem's reverse map (once, before the first block is mapped).
    pub fn attach_rmap(&self, rmap: std::sync::Arc<Rmap>) {
        let _ = self.rmap.set(rmap);
    }

    fn rmap_insert(&self, block: u64, len: u64, page: u64) {
        if let Some(r) = self.rmap.get() {
            r.insert(block, len, self.dax.inode(), page);
        }
    }

    fn rmap_remove(&self, block: u64, len: u64) {
        if let Some(r) = self.rmap.get() {
            r.remove(block, len);
        }
    }

    /// The inode's DAX mapping (entry locks, `daxfs stat --mappings`).
    pub fn dax(&self) -> &DaxMapping {
        &self.dax
    }

    /// Inode eviction: sleepers on this inode's entries wake and bail out.
    pub fn evict(&self) {
        self.dax.evict();
    }

    /// The region block holding file page `page` and the order of the entry covering it
    /// (lock-free snapshot; `None` for holes, placeholders and poisoned pages).
    pub fn lookup(&self, page: u64) -> Option<(u64, u8)> {
        let e = self.dax.index().load(page)?;
        let d = DaxEntry::from_raw(e.value);
        d.has_block()
            .then(|| (d.block() + (page - e.index), e.order))
    }

    /// Maps `[page, page + 2^order)` to blocks `[block, ..)` through a locked entry
    /// (`grab_mapping_entry`, insert, unlock). `page` (and for order 9, `block`) must be aligned
    /// and the range unmapped.
    ///
    /// Context: inode rwsem exclusive (or the inode not yet visible); may sleep.
    pub fn map(&self, page: u64, order: u8, block: u64) -> Result<(), nix::errno::Errno> {
        self.map_locked(page, order, block)?.unlock().map_err(eio)
    }

    /// As [`FileMap::map`], but returns the new entry still locked (write allocation installs
    /// blocks into locked entries and copies before unlocking). Creating an entry in a hole never
    /// waits, so this may be called while holding other entries of the inode.
    pub fn map_locked(
        &self,
        page: u64,
        order: u8,
        block: u64,
    ) -> Result<DaxEntryGuard, nix::errno::Errno> {
        let mut g = self.dax.grab_mapping_entry(page, order).map_err(eio)?;
        if g.order() != order || g.entry().has_block() || g.index() != page {
            log::error!("daxfs: mapping page {page} order {order} over {g:?}");
            if !g.entry().has_block() {
                let _ = g.delete();
            }
            return Err(nix::errno::Errno::EIO);
        }
        self.rmap_insert(block, 1 << order, page);
        if let Err(e) = g.insert(block, false) {
            let _ = g.delete();
            self.rmap_remove(block, 1 << order);
            return Err(eio(e));
        }
        self.mapped.fetch_add(1 << order, Ordering::Relaxed);
        Ok(g)
    }

    /// Locks every entry covering a page of `[first, end)`, in ascending order (holes and
    /// poisoned pages have none). One entry lock per PMD/PTE entry touched; no allocation once
    /// the thread's guard vector has grown.
    ///
    /// Context: may sleep on locked entries; the caller must not hold other entry locks of this
    /// inode (ascending order is the only order entries are locked in).
    pub fn lock_range(&self, first: u64, end: u64) -> Result<RangeLock, nix::errno::Errno> {
        let guards = GUARDS.with(|p| p.borrow_mut().pop()).unwrap_or_default();
        let mut rl = RangeLock { guards };
        let index = self.dax.index();
        let mut p = first;
        while p < end {
            if index.load(p).is_none() {
                // A hole: skip a whole empty PMD range at once.
                if p % PMD_PAGES == 0 && index.find_conflict(p, PMD_ORDER).is_none() {
                    p += PMD_PAGES;
                } else {
                    p += 1;
                }
                continue;
            }
            match self.dax.lock_entry(p).map_err(eio)? {
                Some(g) => {
                    p = g.index() + (1u64 << g.order());
                    rl.guards.push(g);
                }
                None => p += 1, // removed while we looked (memory failure)
            }
        }
        Ok(rl)
    }

    /// Unmaps file pages `[start, end)` (waiting for locked entries; a PMD entry straddling the
    /// boundary is split into PTE entries first) and forgets poisoned pages there. Returns the
    /// freed region blocks as (first, count) runs (bad blocks included: the caller's commit
    /// keeps them out of the allocator).
    ///
    /// Context: inode rwsem exclusive; may sleep.
    pub fn unmap_range(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut freed = Vec::new();
        if start >= end {
            return freed;
        }
        for snap in self.dax.index().range(start, end) {
            let mut at = snap.index.max(start);
            let stop = snap.end().min(end);
            while at < stop {
                let g = match self.dax.lock_entry(at) {
                    Ok(Some(g)) => g,
                    Ok(None) => {
                        at += 1; // a hole punched by memory failure
                        continue;
                    }
                    Err(e) => {
                        log::error!("daxfs: unmap page {at}: {e}");
                        return freed;
                    }
                };
                let (s, e) = (g.index(), g.index() + (1u64 << g.order()));
                if s >= start && e <= end {
                    match g.delete() {
                        Ok(v) => {
                            if v.has_block() {
                                freed.push((v.block(), e - s));
                                self.mapped.fetch_sub(e - s, Ordering::Relaxed);
                                self.rmap_remove(v.block(), e - s);
                            }
                        }
                        Err(err) => log::error!("daxfs: unmap page {at}: {err}"),
                    }
                    at = e;
                } else if let Err(err) = g.split_and_unlock(None) {
                    log::error!("daxfs: split at page {s}: {err}");
                    return freed;
                }
            }
        }
        if self.npoisoned.load(Ordering::Acquire) > 0 {
            let gone = self.poisoned.lock().remove(start, end);
            for (_, b, n) in gone {
                self.rmap_remove(b, n);
                freed.push((b, n));
                self.mapped.fetch_sub(n, Ordering::Relaxed);
                self.npoisoned.fetch_sub(n, Ordering::AcqRel);
            }
        }
        freed
    }

    /// Erases the entries of `[start, end)` held in `locks` (entries this thread created for a
    /// write that then failed). Return: the freed (block, count) runs.
    pub fn unmap_held(&self, locks: &mut RangeLock, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut freed = Vec::new();
        let mut kept = Vec::with_capacity(locks.guards.len());
        for g in locks.guards.drain(..) {
            if g.index() < start || g.index() >= end {
                kept.push(g);
                continue;
            }
            let n = 1u64 << g.order();
            match g.delete() {
                Ok(v) if v.has_block() => {
                    self.rmap_remove(v.block(), n);
                    freed.push((v.block(), n));
                    self.mapped.fetch_sub(n, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => log::error!("daxfs: erasing a held entry: {e}"),
            }
        }
        locks.guards = kept;
        freed
    }

    /// Memory failure of file pages `[first, end)` in one step, lock-then-walk over the range:
    /// locks every entry covering a page of it (ascending; a PMD entry as a whole), takes blocks
    /// and mapping sizes from the locked entries, keeps the pages `keep(page, block)` accepts,
    /// runs `record` with their blocks as ranges (the durable record; on an error nothing has
    /// changed), marks them poisoned, erases their PTE entries and splits PMD entries around them
    /// (the rest of a PMD stays mapped by PTE entries, or the entry goes when all of it is
    /// poisoned), and unlocks everything at the new orders.
    ///
    /// Context: takes no inode rwsem (a reader holding the rwsem shared may hold an entry we
    /// wait for; we never wait for the rwsem while holding an entry); may sleep; `record` runs
    /// with the entries locked. Crate-private: memory failure is the only caller (the public
    /// path is `crate::memory_failure`, which records, then invalidates).
    pub(crate) fn poison_range(
        &self,
        first: u64,
        end: u64,
        keep: impl Fn(u64, u64) -> bool,
        record: impl FnOnce(&[(u64, u64)]) -> Result<(), nix::errno::Errno>,
    ) -> Result<PoisonedRange, nix::errno::Errno> {
        let mut locks = self.lock_range(first, end)?;
        let mut out = PoisonedRange::default();
        // Per locked entry: the sub-range of its pages to poison.
        let mut cut: Vec<Option<(u64, u64)>> = Vec::with_capacity(locks.guards.len());
        for g in &locks.guards {
            let (s, e) = (g.index().max(first), (g.index() + g.nr_pages()).min(end));
            let Some(b0) = g.block_of(s).ok().flatten() else {
                cut.push(None);
                continue;
            };
            let kept: Vec<u64> = (s..e).filter(|&p| keep(p, b0 + (p - s))).collect();
            match (kept.first(), kept.last()) {
                (Some(&a), Some(&z)) if (z - a + 1) as usize == kept.len() => {
                    out.runs.push((a, b0 + (a - s), z - a + 1));
                    cut.push(Some((a, z + 1)));
                }
                (None, _) => cut.push(None),
                _ => return Err(nix::errno::Errno::EIO), // blocks of one entry are consecutive
            }
        }
        out.already = self
            .poisoned_runs(first, end)
            .iter()
            .map(|r| r.2)
            .sum::<u64>();
        let mapped: u64 = locks
            .guards
            .iter()
            .filter(|g| g.entry().has_block())
            .map(|g| (g.index() + g.nr_pages()).min(end) - g.index().max(first))
            .sum();
        out.holes = (end - first).saturating_sub(mapped + out.already);
        if out.runs.is_empty() {
            return Ok(out);
        }
        let blocks: Vec<(u64, u64)> = out.runs.iter().map(|&(_, b, n)| (b, n)).collect();
        record(&blocks)?;
        {
            let mut p = self.poisoned.lock();
            for &(page, b, n) in &out.runs {
                p.insert(page, b, n);
            }
        }
        let total: u64 = out.runs.iter().map(|r| r.2).sum();
        self.npoisoned.fetch_add(total, Ordering::AcqRel);
        for (g, c) in std::mem::take(&mut locks.guards).into_iter().zip(cut) {
            let Some((a, z)) = c else { continue };
            out.unmap.push((g.index(), g.nr_pages()));
            let whole = a == g.index() && z == g.index() + g.nr_pages();
            if g.order() == PMD_ORDER && !whole {
                g.split_and_unlock_holes(a..z).map_err(eio)?;
            } else {
                g.delete().map_err(eio)?;
            }
        }
        Ok(out)
    }

    /// Splits the PMD entry covering `page` into 512 PTE entries of the same blocks (locked
    /// while it is split). Return: whether there was a PMD entry to split.
    ///
    /// Context: may sleep on the entry lock.
    pub fn split_pmd(&self, page: u64) -> Result<bool, nix::errno::Errno> {
        match self.dax.lock_entry(page).map_err(eio)? {
            Some(g) if g.order() == PMD_ORDER => {
                g.split_and_unlock(None).map_err(eio)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Forgets the poison of `page` (a whole-page write remaps it, `poison clear` makes it a hole).
    /// Return: the bad block it held.
    ///
    /// Context: inode rwsem exclusive.
    pub(crate) fn unpoison(&self, page: u64) -> Option<u64> {
        let (_, b, _) = *self.poisoned.lock().remove(page, page + 1).first()?;
        self.rmap_remove(b, 1);
        self.npoisoned.fetch_sub(1, Ordering::AcqRel);
        self.mapped.fetch_sub(1, Ordering::Relaxed);
        Some(b)
    }

    /// Forgets the poison of the pages of `[first, end)` (`poison clear` makes them holes).
    /// Return: the `(page, block, count)` runs they held.
    ///
    /// Context: inode rwsem exclusive.
    pub(crate) fn unpoison_range(&self, first: u64, end: u64) -> Vec<(u64, u64, u64)> {
        if self.npoisoned.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let runs = self.poisoned.lock().remove(first, end);
        for &(_, b, n) in &runs {
            self.rmap_remove(b, n);
            self.npoisoned.fetch_sub(n, Ordering::AcqRel);
            self.mapped.fetch_sub(n, Ordering::Relaxed);
        }
        runs
    }

    /// Whether some page of `[first, end)` is poisoned (no lock when the inode has no poison).
    pub fn any_poisoned(&self, first: u64, end: u64) -> bool {
        self.npoisoned.load(Ordering::Acquire) > 0 && self.poisoned.lock().any_within(first, end)
    }

    /// The bad block of poisoned page `page`.
    pub fn poisoned_block(&self, page: u64) -> Option<u64> {
        if self.npoisoned.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.poisoned.lock().get(page)
    }

    /// Poisoned pages of `[first, end)` with their bad blocks.
    pub fn poisoned_in(&self, first: u64, end: u64) -> Vec<(u64, u64)> {
        if self.npoisoned.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        self.poisoned_runs(first, end)
            .into_iter()
            .flat_map(|(p, b, n)| (0..n).map(move |i| (p + i, b + i)))
            .collect()
    }

    /// Poisoned pages of `[first, end)` as `(page, block, count)` runs.
    pub fn poisoned_runs(&self, first: u64, end: u64) -> Vec<(u64, u64, u64)> {
        if self.npoisoned.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        self.poisoned.lock().within(first, end)
    }

    /// Number of poisoned pages.
    pub fn poisoned_count(&self) -> u64 {
        self.npoisoned.load(Ordering::Acquire)
    }

    /// Entries intersecting `[start, end)` with `value` = region block of the entry's first page,
    /// in file order; poisoned pages appear as order-0 entries (they still own their blocks).
    pub fn entries_in(&self, start: u64, end: u64) -> Vec<Entry> {
        let out: Vec<Entry> = self
            .dax
            .index()
            .range(start, end)
            .into_iter()
            .filter_map(|e| {
                let d = DaxEntry::from_raw(e.value);
                d.has_block().then_some(Entry {
                    value: d.block(),
                    ..e
                })
            })
            .collect();
        if self.npoisoned.load(Ordering::Acquire) == 0 {
            return out;
        }
        // One linear merge of the two sorted lists (a failed GiB is 262,144 poisoned pages: no
        // insertion per page).
        let runs = self.poisoned_runs(start, end);
        let total: u64 = runs.iter().map(|r| r.2).sum();
        let mut merged = Vec::with_capacity(out.len() + total as usize);
        let mut entries = out.into_iter().peekable();
        for (p0, b0, n) in runs {
            for i in 0..n {
                let page = p0 + i;
                while let Some(e) = entries.next_if(|e| e.end() <= page) {
                    merged.push(e);
                }
                if entries.peek().is_some_and(|e| e.contains(page)) {
                    continue; // being poisoned right now: the entry still covers it
                }
                merged.push(Entry {
                    index: page,
                    order: 0,
                    value: b0 + i,
                });
            }
        }
        merged.extend(entries);
        merged
    }

    /// All entries, in file order (see [`FileMap::entries_in`]).
    pub fn entries(&self) -> Vec<Entry> {
        self.entries_in(0, u64::MAX)
    }

    /// The DAX entries themselves (flags included), for `daxfs stat --mappings`.
    pub fn dax_entries(&self) -> Vec<DaxMappingInfo> {
        self.dax.mappings()
    }

    /// Number of pages holding a block (poisoned pages included).
    pub fn mapped_pages(&self) -> u64 {
        self.mapped.load(Ordering::Relaxed)
    }

    /// The first page at or after `page` holding data (poisoned pages are data).
    pub fn next_data(&self, page: u64) -> Option<u64> {
        if self.lookup(page).is_some() || self.poisoned_block(page).is_some() {
            return Some(page);
        }
        self.entries_in(page, u64::MAX)
            .first()
            .map(|e| e.index.max(page))
    }

    /// The first unmapped page at or after `page`.
    pub fn next_hole(&self, page: u64) -> u64 {
        let mut p = page;
        for e in self.entries_in(page, u64::MAX) {
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
    use super::{FileMap, PoisonedRange, Rmap, PMD_ORDER};

    /// Poisons page `page` if it still maps `block` (one lock-then-walk step of one page).
    fn poison1(
        m: &FileMap,
        page: u64,
        block: u64,
        record: impl FnOnce(&[(u64, u64)]) -> Result<(), nix::errno::Errno>,
    ) -> Result<PoisonedRange, nix::errno::Errno> {
        m.poison_range(page, page + 1, |_, b| b == block, record)
    }

    #[test]
    fn rmap_follows_map_unmap_and_poison() {
        let r = std::sync::Arc::new(Rmap::new());
        let m = FileMap::new(9, 1);
        m.attach_rmap(r.clone());
        m.map(512, PMD_ORDER, 1024).unwrap();
        m.map(3, 0, 77).unwrap();
        assert_eq!(r.lookup(1024 + 100), Some((9, 612)));
        assert_eq!(r.lookup(77), Some((9, 3)));
        assert_eq!(r.lookup(78), None);
        poison1(&m, 700, 1024 + 188, |_| Ok(())).unwrap();
        assert_eq!(
            r.lookup(1024 + 188),
            Some((9, 700)),
            "a poisoned page keeps its block"
        );
        m.unmap_range(600, 610);
        assert_eq!(r.lookup(1024 + 90), None);
        assert_eq!(r.lookup(1024 + 87), Some((9, 599)));
        assert_eq!(r.lookup(1024 + 98), Some((9, 610)));
        assert_eq!(m.unpoison(700), Some(1024 + 188));
        assert_eq!(r.lookup(1024 + 188), None);
        m.unmap_range(0, u64::MAX);
        assert_eq!(r.runs(), 0);
    }

    #[test]
    fn pmd_split_on_partial_unmap() {
        let m = FileMap::new(9, 1);
        m.map(512, PMD_ORDER, 1024).unwrap();
        m.map(3, 0, 77).unwrap();
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
        let all = m.unmap_range(0, u64::MAX);
        assert_eq!(all.iter().map(|r| r.1).sum::<u64>(), 503);
        assert!(m.entries().is_empty());
        m.dax().check_invariants().unwrap();
    }

    #[test]
    fn a_pmd_run_is_one_locked_entry_and_range_locks_are_released() {
        let m = FileMap::new(10, 1);
        m.map(0, PMD_ORDER, 2048).unwrap();
        m.map(512, 0, 5000).unwrap();
        let e = m.dax_entries();
        assert_eq!(e.len(), 2);
        assert!(e[0].entry.is_pmd() && e[0].order == 9 && e[0].entry.block() == 2048);
        {
            let rl = m.lock_range(100, 600).unwrap();
            assert_eq!(rl.guards().len(), 2);
            assert_eq!(rl.block_of(100), Some((2148, 512)));
            assert_eq!(rl.block_of(512), Some((5000, 513)));
            assert_eq!(rl.block_of(513), None);
            assert!(m.dax_entries().iter().all(|x| x.entry.is_locked()));
        }
        m.dax().check_invariants().unwrap();
    }

    #[test]
    fn poison_splits_a_pmd_and_keeps_the_block_in_the_map() {
        let m = FileMap::new(11, 1);
        m.map(0, PMD_ORDER, 4096).unwrap();
        let mut recorded = Vec::new();
        let r = poison1(&m, 300, 4096 + 300, |b| {
            recorded = b.to_vec();
            Ok(())
        })
        .unwrap();
        assert_eq!(recorded, vec![(4096 + 300, 1)]);
        assert_eq!(r.runs, vec![(300, 4096 + 300, 1)]);
        assert_eq!(r.unmap, vec![(0, 512)], "the whole PMD entry is unmapped");
        let e = m.dax_entries();
        assert_eq!(e.len(), 511);
        assert!(e.iter().all(|x| x.order == 0 && !x.entry.is_locked()));
        assert!(!e.iter().any(|x| x.index == 300));
        assert_eq!(m.lookup(300), None);
        assert_eq!(m.lookup(301), Some((4096 + 301, 0)));
        assert!(m.any_poisoned(0, 512) && !m.any_poisoned(301, 512));
        // The persistent map still sees one run of 512 blocks.
        let ent = m.entries();
        assert_eq!(ent.len(), 512);
        assert_eq!(ent[300].value, 4096 + 300);
        assert_eq!(m.mapped_pages(), 512);
        let again = poison1(&m, 300, 4396, |_| panic!("nothing new to record")).unwrap();
        assert_eq!((again.already, again.runs.len()), (1, 0));
        let moved = poison1(&m, 301, 999, |_| panic!("nothing to record")).unwrap();
        assert!(moved.runs.is_empty() && moved.unmap.is_empty());
        // A failed record leaves nothing changed.
        assert_eq!(
            poison1(&m, 5, 4101, |_| Err(nix::errno::Errno::ENOSPC)),
            Err(nix::errno::Errno::ENOSPC)
        );
        assert_eq!(m.lookup(5), Some((4101, 0)));
        assert_eq!(m.poisoned_count(), 1);
        // Truncating over it forgets it.
        let freed = m.unmap_range(256, 512);
        assert_eq!(freed.iter().map(|r| r.1).sum::<u64>(), 256);
        assert_eq!(m.poisoned_count(), 0);
        m.dax().check_invariants().unwrap();
    }

    #[test]
    fn entries_merge_poisoned_runs_in_file_order() {
        let m = FileMap::new(12, 1);
        m.map(0, PMD_ORDER, 8192).unwrap();
        m.map(1024, 0, 100).unwrap();
        m.map(2048, PMD_ORDER, 16384).unwrap();
        // A run inside the first PMD (split around it), pages before and after the PTE entry.
        m.poison_range(10, 20, |_, _| true, |_| Ok(())).unwrap();
        m.poison_range(2048 + 500, 2048 + 512, |_, _| true, |_| Ok(()))
            .unwrap();
        let e = m.entries();
        let idx: Vec<u64> = e.iter().map(|x| x.index).collect();
        let mut sorted = idx.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(idx, sorted, "file order, no page twice");
        let pages: u64 = e.iter().map(|x| 1u64 << x.order).sum();
        assert_eq!(
            pages,
            512 + 1 + 512,
            "every page once, the poisoned ones included"
        );
        for x in &e {
            let want = match x.index {
                p if p < 512 => 8192 + p,
                1024 => 100,
                p => 16384 + (p - 2048),
            };
            assert_eq!(x.value, want, "page {}", x.index);
        }
        // A window in the middle of a run.
        let w = m.entries_in(15, 1025);
        assert_eq!(w.first().map(|x| (x.index, x.value)), Some((15, 8192 + 15)));
        assert_eq!(w.last().map(|x| x.index), Some(1024));
    }
}
