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
//! - memory failure's lock-then-walk (`crate::memory_failure::walk`) locks with
//!   [`FileMap::lock_range`] and splits the entries around the poisoned pages.
//!
//! What this map holds but does not own: the inode's poisoned pages ([`PoisonedPages`]) and a
//! handle on the filesystem's reverse map ([`Rmap`]), both memory failure's types. A poisoned page
//! has no DAX entry but still owns its bad block, so the persistent block map
//! ([`FileMap::entries`] includes poisoned pages as order-0 entries) and the reverse map still
//! see it; this map keeps the reverse map in step with every block it installs or erases, and
//! forgets poisoned pages it unmaps; only memory failure marks pages poisoned.
//!
//! Lock order: inode rwsem (held by the callers of everything here; memory failure takes none)
//! → entry locks in ascending file order → the poisoned-set and reverse-map mutexes (leaves;
//! never held while sleeping on an entry).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::dax::{DaxEntry, DaxEntryGuard, DaxError, DaxMapping, DaxMappingInfo, DaxOptions};
use crate::index::Entry;
use crate::memory_failure::{PoisonedPages, Rmap};

pub use crate::geometry::{PMD_ORDER, PMD_PAGES};

thread_local! {
    /// Reused guard vectors: a read or write locks its entries without allocating.
    static GUARDS: RefCell<Vec<Vec<DaxEntryGuard>>> = const { RefCell::new(Vec::new()) };
}

/// The entries that map a run of `n` file pages from `page` onto consecutive region blocks from
/// `block`, as `(page, order, block)`: one PMD entry wherever the page and the block are both
/// 2 MiB-aligned and 512 pages remain, PTE entries elsewhere (mount, exchange-range).
pub fn run_entries(page: u64, block: u64, n: u64) -> impl Iterator<Item = (u64, u8, u64)> {
    let end = page + n;
    let mut at = (page, block);
    std::iter::from_fn(move || {
        let (p, b) = at;
        if p >= end {
            return None;
        }
        let pmd = p % PMD_PAGES == 0 && b % PMD_PAGES == 0 && end - p >= PMD_PAGES;
        let order = if pmd { PMD_ORDER } else { 0 };
        at = (p + (1 << order), b + (1 << order));
        Some((p, order, b))
    })
}

/// A file's block map.
pub struct FileMap {
    dax: DaxMapping,
    rmap: std::sync::OnceLock<std::sync::Arc<Rmap>>,
    mapped: AtomicU64,
    poisoned: PoisonedPages,
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

    /// Takes the locked entries out (the caller unlocks or changes each; dropping one unlocks it).
    pub fn take_guards(&mut self) -> Vec<DaxEntryGuard> {
        std::mem::take(&mut self.guards)
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
            poisoned: PoisonedPages::new(),
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
        for (_, b, n) in self.poisoned.forget(start, end) {
            self.rmap_remove(b, n);
            freed.push((b, n));
            self.mapped.fetch_sub(n, Ordering::Relaxed);
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
        let (_, b, _) = *self.poisoned.forget(page, page + 1).first()?;
        self.rmap_remove(b, 1);
        self.mapped.fetch_sub(1, Ordering::Relaxed);
        Some(b)
    }

    /// Forgets the poison of the pages of `[first, end)` (`poison clear` makes them holes).
    /// Return: the `(page, block, count)` runs they held.
    ///
    /// Context: inode rwsem exclusive.
    pub(crate) fn unpoison_range(&self, first: u64, end: u64) -> Vec<(u64, u64, u64)> {
        let runs = self.poisoned.forget(first, end);
        for &(_, b, n) in &runs {
            self.rmap_remove(b, n);
            self.mapped.fetch_sub(n, Ordering::Relaxed);
        }
        runs
    }

    /// Whether some page of `[first, end)` is poisoned (no lock when the inode has no poison).
    pub fn any_poisoned(&self, first: u64, end: u64) -> bool {
        self.poisoned.any_within(first, end)
    }

    /// The bad block of poisoned page `page`.
    pub fn poisoned_block(&self, page: u64) -> Option<u64> {
        self.poisoned.block_of(page)
    }

    /// Poisoned pages of `[first, end)` with their bad blocks.
    pub fn poisoned_in(&self, first: u64, end: u64) -> Vec<(u64, u64)> {
        self.poisoned_runs(first, end)
            .into_iter()
            .flat_map(|(p, b, n)| (0..n).map(move |i| (p + i, b + i)))
            .collect()
    }

    /// Poisoned pages of `[first, end)` as `(page, block, count)` runs.
    pub fn poisoned_runs(&self, first: u64, end: u64) -> Vec<(u64, u64, u64)> {
        self.poisoned.within(first, end)
    }

    /// Number of poisoned pages.
    pub fn poisoned_count(&self) -> u64 {
        self.poisoned.count()
    }

    /// The inode's poisoned pages (memory failure marks them; see [`PoisonedPages`]).
    pub fn poisoned(&self) -> &PoisonedPages {
        &self.poisoned
    }

    /// Entries intersecting `[start, end)` that map blocks, with `value` = region block of the
    /// entry's first page, in file order; poisoned pages are left out (see
    /// [`FileMap::entries_in`] for a list with them).
    pub fn data_entries_in(&self, start: u64, end: u64) -> Vec<Entry> {
        self.dax
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
            .collect()
    }

    /// Entries intersecting `[start, end)` with `value` = region block of the entry's first page,
    /// in file order; poisoned pages appear as order-0 entries (they still own their blocks).
    pub fn entries_in(&self, start: u64, end: u64) -> Vec<Entry> {
        let out = self.data_entries_in(start, end);
        if self.poisoned.count() == 0 {
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
    use super::{FileMap, PMD_ORDER};

    #[test]
    fn runs_map_pmd_entries_only_where_both_sides_are_aligned() {
        let v: Vec<_> = super::run_entries(510, 1022, 516).collect();
        assert_eq!(
            v.len(),
            2 + 1 + 2,
            "2 PTEs, one PMD at page 512 / block 1024, 2 PTEs"
        );
        assert_eq!(v[2], (512, PMD_ORDER, 1024));
        assert_eq!(v[4], (1025, 0, 1537));
        // Misaligned blocks: PTE entries only.
        assert!(super::run_entries(0, 1, 1024).all(|(_, o, _)| o == 0));
        assert_eq!(super::run_entries(7, 9, 0).count(), 0);
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
}
