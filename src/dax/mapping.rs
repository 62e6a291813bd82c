//! One inode's DAX mapping: its entry index, liveness, and the entry protocol of `fs/dax.c`
//! (`get_unlocked_entry`, `grab_mapping_entry`, `dax_lock_entry`, `dax_unlock_entry`,
//! `dax_lock_page`, `dax_delete_mapping_entry`, ...). The rules are in the module
//! documentation of [`crate::dax`]; every function here keeps them.

use crate::index::{align_down, Entry, Index, IndexGuard, Mark};
use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::sync::Arc;

use super::entry::{DaxEntry, DAX_LOCKED, DAX_PMD, PMD_ORDER, PMD_PAGES, PTE_ORDER};
use super::guard::DaxEntryGuard;
use super::invariant::Violation;
use super::wait::{WaitKey, WaitTable, WAIT_TABLE_BUCKETS};
use super::{DaxError, DaxOptions};

/// Called with `(first index, number of pages)` to unmap a range from every user mapping before
/// a `ZERO` PMD entry is downgraded (the kernel's `unmap_mapping_pages`).
///
/// Context: called without the index lock but with the PMD entry locked by the caller; it must
/// not lock entries of this mapping in that range (it would wait for itself).
pub type UnmapHook = Box<dyn Fn(u64, u64) + Send + Sync>;

/// What [`DaxMapping::get_unlocked_entry`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Nothing in the range: the caller may store a new entry of the wanted order.
    Nothing,
    /// A smaller entry lies in the wanted range: fall back to a smaller order
    /// (the kernel's `XA_RETRY_ENTRY` / `VM_FAULT_FALLBACK`). Never waited on.
    Conflict(Entry),
    /// An unlocked entry at least as large as wanted, covering the index.
    Found(Entry),
}

/// One entry as listed by [`DaxMapping::mappings`] (`daxfs stat --mappings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaxMappingInfo {
    /// Aligned first file page index.
    pub index: u64,
    /// Index order (0 = PTE, 9 = PMD).
    pub order: u8,
    /// The entry value.
    pub entry: DaxEntry,
}

struct Inner {
    inode: u64,
    generation: u64,
    opts: DaxOptions,
    index: Index,
    alive: AtomicBool,
    sleepers: AtomicUsize,
    waits: Arc<WaitTable>,
    unmap: Option<UnmapHook>,
}

/// A handle on one inode's DAX mapping (cheap to clone; the last handle frees it).
#[derive(Clone)]
pub struct DaxMapping {
    inner: Arc<Inner>,
}

#[cfg(not(loom))]
fn global_wait_table() -> Arc<WaitTable> {
    static TABLE: std::sync::OnceLock<Arc<WaitTable>> = std::sync::OnceLock::new();
    TABLE
        .get_or_init(|| Arc::new(WaitTable::new(WAIT_TABLE_BUCKETS)))
        .clone()
}

/// Under loom every model has its own (small) table: loom objects cannot outlive a model.
#[cfg(loom)]
fn global_wait_table() -> Arc<WaitTable> {
    Arc::new(WaitTable::new(WAIT_TABLE_BUCKETS.min(4)))
}

fn check_order(order: u8) -> Result<(), DaxError> {
    if order == PTE_ORDER || order == PMD_ORDER {
        Ok(())
    } else {
        Err(DaxError::BadOrder(order))
    }
}

impl DaxMapping {
    /// A mapping for inode `inode` (generation `generation`) using the process-wide wait table.
    pub fn new(inode: u64, generation: u64, opts: DaxOptions) -> DaxMapping {
        Self::with_parts(inode, generation, opts, global_wait_table(), None)
    }

    /// A mapping with its own wait table and an optional unmap hook.
    pub fn with_parts(
        inode: u64,
        generation: u64,
        opts: DaxOptions,
        waits: Arc<WaitTable>,
        unmap: Option<UnmapHook>,
    ) -> DaxMapping {
        DaxMapping {
            inner: Arc::new(Inner {
                inode,
                generation,
                opts,
                index: Index::new(),
                alive: AtomicBool::new(true),
                sleepers: AtomicUsize::new(0),
                waits,
                unmap,
            }),
        }
    }

    /// The inode id.
    pub fn inode(&self) -> u64 {
        self.inner.inode
    }

    /// The inode generation this mapping belongs to.
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// The options.
    pub fn options(&self) -> DaxOptions {
        self.inner.opts
    }

    /// Whether [`DaxMapping::evict`] has not been called.
    pub fn is_alive(&self) -> bool {
        self.inner.alive.load(Ordering::SeqCst)
    }

    /// Number of threads currently registered as sleeping on one of this mapping's entries.
    pub fn sleepers(&self) -> usize {
        self.inner.sleepers.load(Ordering::SeqCst)
    }

    /// Read access to the entry index (for listing, marks, writeback scans).
    /// Writers must go through the protocol; never call this while holding a writer guard.
    pub fn index(&self) -> &Index {
        &self.inner.index
    }

    /// Whether two handles are the same mapping.
    pub fn same(&self, other: &DaxMapping) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn regression(&self) -> bool {
        self.inner.opts.regression_9f32d221
    }

    fn key(&self, index: u64) -> WaitKey {
        WaitKey {
            inode: self.inner.inode,
            index,
        }
    }

    fn evicted(&self) -> DaxError {
        DaxError::Evicted {
            inode: self.inner.inode,
        }
    }

    /// `dax_wake_entry`: wakes all sleepers on the entry starting at `start` (wake-all).
    ///
    /// Context: takes a wait-queue bucket mutex; callable with or without the index lock.
    pub fn dax_wake_entry(&self, start: u64) {
        self.inner.waits.wake(self.key(start));
    }

    /// The lookup of the wanted order: a conflict query (or, under the regression switch, a
    /// plain load that only sees an entry at least as large as the wanted order).
    fn lookup(&self, g: &IndexGuard<'_>, index: u64, order: u8) -> Option<Entry> {
        if self.regression() {
            g.load(align_down(index, order))
                .filter(|e| e.order >= order)
        } else {
            g.find_conflict(index, order)
        }
    }

    /// The protocol's `get_unlocked_entry`, on a held writer guard.
    ///
    /// Context: enter with the writer lock held; returns it held. May sleep (the lock is then
    /// dropped and taken again).
    fn get_unlocked<'a>(
        &'a self,
        mut g: IndexGuard<'a>,
        index: u64,
        order: u8,
    ) -> (IndexGuard<'a>, Result<Lookup, DaxError>) {
        let inner = &*self.inner;
        loop {
            if !inner.alive.load(Ordering::SeqCst) {
                return (g, Err(self.evicted()));
            }
            let Some(e) = self.lookup(&g, index, order) else {
                return (g, Ok(Lookup::Nothing));
            };
            if e.order < order {
                return (g, Ok(Lookup::Conflict(e)));
            }
            let seen = DaxEntry::from_raw(e.value);
            if !seen.is_locked() {
                return (g, Ok(Lookup::Found(e)));
            }
            // Register before releasing the index lock: an unlock needs the index lock to
            // change the entry and then our bucket's mutex to wake us (no lost wake-up).
            let sleeper = inner.waits.prepare(self.key(e.index));
            inner.sleepers.fetch_add(1, Ordering::SeqCst);
            drop(g);
            sleeper.sleep();
            inner.sleepers.fetch_sub(1, Ordering::SeqCst);
            g = inner.index.lock();
            if !inner.alive.load(Ordering::SeqCst) {
                return (g, Err(self.evicted()));
            }
            if self.regression() {
                // 9f32d221: trust what we saw before sleeping.
                let stale = Entry {
                    value: seen.unlocked().raw(),
                    ..e
                };
                return (g, Ok(Lookup::Found(stale)));
            }
        }
    }

    /// `get_unlocked_entry`: waits until the entry covering the order-`order` range around
    /// `index` is unlocked and returns what is there. The result is a snapshot: the index lock
    /// is released on return, so use [`DaxMapping::grab_mapping_entry`] or
    /// [`DaxMapping::lock_entry`] to act on it.
    ///
    /// Context: may sleep. Return: `Err(Evicted)` if the inode was evicted.
    pub fn get_unlocked_entry(&self, index: u64, order: u8) -> Result<Lookup, DaxError> {
        check_order(order)?;
        let g = self.inner.index.lock();
        let (g, found) = self.get_unlocked(g, index, order);
        drop(g);
        found
    }

    /// `put_unlocked_entry`: gives up an entry returned by `get_unlocked_entry` without locking
    /// it, waking other sleepers of its key.
    pub fn put_unlocked_entry(&self, found: &Lookup) {
        if let Lookup::Found(e) = found {
            self.dax_wake_entry(e.index);
        }
    }

    /// `dax_lock_entry`: sets `LOCKED` on the entry `e` found under the held writer lock.
    fn dax_lock_entry(&self, g: &mut IndexGuard<'_>, e: Entry) -> Result<DaxEntry, DaxError> {
        let locked = DaxEntry::from_raw(e.value).locked();
        if self.regression() {
            // 9f32d221: xas_store at the entry's slot, whatever is there now.
            g.store(e.index, e.order, locked.raw())?;
        } else {
            g.update(e.index, locked.raw())?;
        }
        Ok(locked)
    }

    fn guard(&self, e_index: u64, order: u8, entry: DaxEntry, page: bool) -> DaxEntryGuard {
        DaxEntryGuard::new(self.clone(), e_index, order, entry, page)
    }

    /// `grab_mapping_entry`: finds or creates the entry for a fault at `index` of order `order`
    /// (0 = PTE, 9 = PMD) and returns it locked.
    ///
    /// - A PMD request over PTE entries in its 2 MiB range falls back to PTE order (the PTE
    ///   entries are kept, also when locked by another thread; we do not wait for them).
    /// - A PTE request inside a PMD entry with a block returns the PMD entry (check
    ///   [`DaxEntryGuard::order`]).
    /// - A PTE request inside an `EMPTY` or `ZERO` PMD entry downgrades it: once it is unlocked
    ///   we lock it, unmap it (`ZERO`: through the unmap hook), erase it and store a PTE entry.
    /// - A new entry is stored `EMPTY | LOCKED` (plus `PMD` at order 9).
    ///
    /// Context: may sleep. Return: the locked entry; `Err(Evicted)`, `Err(BadOrder)`.
    pub fn grab_mapping_entry(&self, index: u64, order: u8) -> Result<DaxEntryGuard, DaxError> {
        check_order(order)?;
        let inner = &*self.inner;
        let mut order = order;
        loop {
            let g = inner.index.lock();
            let (mut g, found) = self.get_unlocked(g, index, order);
            match found? {
                Lookup::Conflict(_) => {
                    // VM_FAULT_FALLBACK: the fault is retried at PTE order.
                    drop(g);
                    order = PTE_ORDER;
                }
                Lookup::Found(e) => {
                    let seen = DaxEntry::from_raw(e.value);
                    let downgrade = order == PTE_ORDER && e.order > PTE_ORDER && !seen.has_block();
                    if !downgrade {
                        let locked = self.dax_lock_entry(&mut g, e)?;
                        return Ok(self.guard(e.index, e.order, locked, false));
                    }
                    // Keep the entry ours while the lock may be dropped for unmapping.
                    self.dax_lock_entry(&mut g, e)?;
                    if seen.is_zero() {
                        if let Some(unmap) = &inner.unmap {
                            drop(g);
                            unmap(e.index, 1 << e.order);
                            g = inner.index.lock();
                        }
                    }
                    g.erase(e.index);
                    let pte = DaxEntry::empty(PTE_ORDER).locked();
                    g.store(index, PTE_ORDER, pte.raw())?;
                    drop(g);
                    self.dax_wake_entry(e.index);
                    return Ok(self.guard(index, PTE_ORDER, pte, false));
                }
                Lookup::Nothing => {
                    let start = align_down(index, order);
                    let new = DaxEntry::empty(order).locked();
                    let removed = g.store(start, order, new.raw())?;
                    drop(g);
                    debug_assert!(
                        self.regression() || removed.is_empty(),
                        "conflict query missed {removed:?}"
                    );
                    // Only under the regression switch: entries were stored over. Wake their
                    // sleepers so they at least re-check (the kernel left them sleeping).
                    for old in &removed {
                        self.dax_wake_entry(old.index);
                    }
                    return Ok(self.guard(start, order, new, false));
                }
            }
        }
    }

    fn lock_entry_inner(&self, index: u64, page: bool) -> Result<Option<DaxEntryGuard>, DaxError> {
        let g = self.inner.index.lock();
        let (mut g, found) = self.get_unlocked(g, index, PTE_ORDER);
        match found? {
            Lookup::Found(e) => {
                let locked = self.dax_lock_entry(&mut g, e)?;
                Ok(Some(self.guard(e.index, e.order, locked, page)))
            }
            // An order-0 lookup has no smaller entry to conflict with.
            Lookup::Nothing | Lookup::Conflict(_) => Ok(None),
        }
    }

    /// Locks the entry covering `index` (any order), waiting for it; `None` if there is none.
    /// Locking any sub-page of a PMD entry locks the whole entry.
    ///
    /// Context: may sleep. Return: `Err(Evicted)` if the inode was evicted.
    pub fn lock_entry(&self, index: u64) -> Result<Option<DaxEntryGuard>, DaxError> {
        self.lock_entry_inner(index, false)
    }

    /// `dax_lock_page` (memory failure): as [`DaxMapping::lock_entry`]; the returned guard's
    /// [`DaxEntryGuard::size`] is the effective mapping size (2 MiB or 4 KiB) from the entry,
    /// and dropping it is `dax_unlock_page`.
    ///
    /// Context: may sleep. Return: `Err(Evicted)` if the inode was evicted or dies meanwhile.
    pub fn lock_entry_for_page(&self, index: u64) -> Result<Option<DaxEntryGuard>, DaxError> {
        self.lock_entry_inner(index, true)
    }

    /// `dax_unlock_entry`: stores `value` (which must be unlocked and encode the order of the
    /// locked entry covering `index`) and wakes the entry's sleepers.
    ///
    /// Return: `Err(LockedValue)` (and a `debug_assert!` failure) for a locked value;
    /// `Err(NotLocked)` if no locked entry covers `index`; `Err(OrderMismatch)`.
    pub fn dax_unlock_entry(&self, index: u64, value: DaxEntry) -> Result<(), DaxError> {
        self.unlock_at(index, None, value, true)
    }

    /// Unlocks the locked entry covering `index` (at `expect = (start, order)` if given).
    pub(super) fn unlock_at(
        &self,
        index: u64,
        expect: Option<(u64, u8)>,
        value: DaxEntry,
        check_order: bool,
    ) -> Result<(), DaxError> {
        if value.is_locked() {
            debug_assert!(false, "dax_unlock_entry with a locked value {value:?}");
            return Err(DaxError::LockedValue(value.raw()));
        }
        let mut g = self.inner.index.lock();
        let cur = Self::locked_at(&g, index, expect)?;
        if check_order && cur.order != value.order() {
            return Err(DaxError::OrderMismatch {
                index: cur.index,
                held: cur.order,
                value: value.order(),
            });
        }
        g.update(cur.index, value.raw())?;
        drop(g);
        self.dax_wake_entry(cur.index);
        Ok(())
    }

    /// The locked entry covering `index`, checked against the expected start and order.
    fn locked_at(
        g: &IndexGuard<'_>,
        index: u64,
        expect: Option<(u64, u8)>,
    ) -> Result<Entry, DaxError> {
        let cur = g.load(index).ok_or(DaxError::NotLocked(index))?;
        let matches = expect.is_none_or(|(s, o)| cur.index == s && cur.order == o);
        if !matches || cur.value & DAX_LOCKED == 0 {
            return Err(DaxError::NotLocked(index));
        }
        Ok(cur)
    }

    /// The page-lock unlock (`dax_unlock_page`); under the regression switch it rebuilds the
    /// entry from its block alone, as `dax_unlock_mapping_entry` did before its fix.
    pub(super) fn unlock_page(
        &self,
        start: u64,
        order: u8,
        held: DaxEntry,
    ) -> Result<(), DaxError> {
        if self.regression() {
            let rebuilt = DaxEntry::new(held.block(), 0).ok_or(DaxError::BadBlock(held.block()))?;
            return self.unlock_at(start, Some((start, order)), rebuilt, false);
        }
        self.unlock_at(start, Some((start, order)), held.unlocked(), true)
    }

    /// `dax_insert_entry` on a held entry: stores `new` (locked) and optionally marks it dirty.
    pub(super) fn insert_locked(
        &self,
        start: u64,
        order: u8,
        new: DaxEntry,
        dirty: bool,
    ) -> Result<(), DaxError> {
        debug_assert!(new.is_locked());
        let mut g = self.inner.index.lock();
        let cur = Self::locked_at(&g, start, Some((start, order)))?;
        g.update(cur.index, new.raw())?;
        if dirty {
            g.set_mark(cur.index, Mark::Dirty)?;
        }
        Ok(())
    }

    /// Erases a held entry and wakes its sleepers (they re-look-up and find it gone).
    pub(super) fn delete_locked(&self, start: u64, order: u8) -> Result<DaxEntry, DaxError> {
        let mut g = self.inner.index.lock();
        let cur = Self::locked_at(&g, start, Some((start, order)))?;
        g.erase(cur.index);
        drop(g);
        self.dax_wake_entry(cur.index);
        Ok(DaxEntry::from_raw(cur.value).unlocked())
    }

    /// Splits a held PMD entry into PTE entries (each mapping its own block, `hole` left
    /// empty) and unlocks them all in one step under the writer lock.
    pub(super) fn split_locked(
        &self,
        start: u64,
        order: u8,
        hole: Option<u64>,
    ) -> Result<(), DaxError> {
        if order != PMD_ORDER {
            return Err(DaxError::BadOrder(order));
        }
        if let Some(h) = hole {
            if !(start..start + PMD_PAGES).contains(&h) {
                return Err(DaxError::OutOfEntry(h));
            }
        }
        let mut g = self.inner.index.lock();
        let cur = Self::locked_at(&g, start, Some((start, order)))?;
        let held = DaxEntry::from_raw(cur.value);
        g.split(start, PTE_ORDER)?;
        let flags = held.flags() & !(DAX_PMD | DAX_LOCKED);
        for i in 0..PMD_PAGES {
            let at = start + i;
            if hole == Some(at) {
                g.erase(at);
                continue;
            }
            let block = if held.has_block() {
                held.block() + i
            } else {
                0
            };
            let pte = DaxEntry::new(block, flags).ok_or(DaxError::BadBlock(block))?;
            g.update(at, pte.raw())?;
        }
        drop(g);
        self.dax_wake_entry(start);
        Ok(())
    }

    /// `dax_delete_mapping_entry` (truncate): waits for the entry covering `index` to be
    /// unlocked, then erases it (the whole entry, PMD or PTE).
    ///
    /// Context: may sleep. Return: the erased entry, if there was one.
    pub fn dax_delete_mapping_entry(&self, index: u64) -> Result<Option<DaxEntry>, DaxError> {
        let g = self.inner.index.lock();
        let (mut g, found) = self.get_unlocked(g, index, PTE_ORDER);
        match found? {
            Lookup::Found(e) => {
                let erased = g.erase(e.index);
                drop(g);
                self.dax_wake_entry(e.index);
                Ok(erased.map(|x| DaxEntry::from_raw(x.value)))
            }
            Lookup::Nothing | Lookup::Conflict(_) => Ok(None),
        }
    }

    /// `dax_invalidate_mapping_entry_sync`: erases the entry covering `index` once unlocked,
    /// unless it is marked `Dirty` or `Towrite` (then it is kept).
    ///
    /// Context: may sleep. Return: whether an entry was erased.
    pub fn dax_invalidate_mapping_entry(&self, index: u64) -> Result<bool, DaxError> {
        let Some(held) = self.lock_entry(index)? else {
            return Ok(false);
        };
        let start = held.index();
        let marked = self.inner.index.get_mark(start, Mark::Dirty)
            || self.inner.index.get_mark(start, Mark::Towrite);
        if marked {
            held.unlock()?;
            return Ok(false);
        }
        held.delete()?;
        Ok(true)
    }

    /// Truncate / punch hole: removes every entry inside `[first, end)` (page indices). A PMD
    /// entry only partly inside is first split into PTE entries, whose covered part is removed.
    ///
    /// Context: may sleep. Return: the number of pages whose entries were removed.
    pub fn dax_delete_range(&self, first: u64, end: u64) -> Result<u64, DaxError> {
        let mut removed = 0;
        let mut at = first;
        while at < end {
            let Some(next) = self.inner.index.range(at, end).into_iter().next() else {
                break;
            };
            let probe = next.index.max(at);
            let Some(held) = self.lock_entry(probe)? else {
                continue; // gone meanwhile: look again
            };
            let (s, e) = (held.index(), held.index() + (1u64 << held.order()));
            if s >= first && e <= end {
                held.delete()?;
                removed += e - s;
                at = e;
            } else if held.order() > PTE_ORDER {
                held.split_and_unlock(None)?;
            } else {
                // A PTE entry is always inside; only other orders (never stored here) get here.
                drop(held);
                at = e;
            }
        }
        Ok(removed)
    }

    /// Eviction: marks the mapping dead and wakes all its sleepers, which return
    /// `Err(Evicted)`. Later protocol calls also return it; unlocks of held entries still work.
    pub fn evict(&self) {
        let g = self.inner.index.lock();
        self.inner.alive.store(false, Ordering::SeqCst);
        let sleepers = self.inner.sleepers.load(Ordering::SeqCst);
        drop(g);
        if sleepers > 0 {
            self.inner.waits.wake_inode(self.inner.inode);
        }
    }

    /// Every entry, in index order (for `daxfs stat --mappings`).
    pub fn mappings(&self) -> Vec<DaxMappingInfo> {
        self.inner
            .index
            .range(0, u64::MAX)
            .into_iter()
            .map(|e| DaxMappingInfo {
                index: e.index,
                order: e.order,
                entry: DaxEntry::from_raw(e.value),
            })
            .collect()
    }

    /// Checks the quiescent invariants: no entry locked, every entry of order 0 or 9 with its
    /// `PMD` bit matching its order, PMD blocks 2 MiB-aligned. Return: the first violation.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        for m in self.mappings() {
            let (index, order, entry) = (m.index, m.order, m.entry);
            if entry.is_locked() {
                return Err(Violation::Locked { index, entry });
            }
            if order != PTE_ORDER && order != PMD_ORDER {
                return Err(Violation::Order { index, order });
            }
            if entry.order() != order {
                let encoded = entry.order();
                return Err(Violation::EncodedOrder {
                    index,
                    order,
                    encoded,
                    entry,
                });
            }
            if order == PMD_ORDER && entry.has_block() && entry.block() % PMD_PAGES != 0 {
                return Err(Violation::UnalignedPmd { index });
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for DaxMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaxMapping")
            .field("inode", &self.inner.inode)
            .field("generation", &self.inner.generation)
            .field("alive", &self.is_alive())
            .field("opts", &self.inner.opts)
            .finish()
    }
}
