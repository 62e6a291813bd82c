//! One inode's DAX mapping: its entry index, liveness, and the entry protocol of `fs/dax.c`
//! (`get_unlocked_entry`, `grab_mapping_entry`, `dax_lock_entry`, `dax_unlock_entry`,
//! `dax_delete_mapping_entry`, ...). The rules are in the module documentation of
//! [`crate::dax`]; every function here keeps them. The memory-failure page lock is in
//! `mapping/lockpage.rs`, the busy-page scan (break layouts) in `mapping/layout.rs`.
//!
//! Each historical bug of [`super::history`] is consulted at its one decision point here or in
//! those files (`self.bugs().is(Bug::X)`), beside a description of the kernel code it reproduces.

mod layout;
mod lockpage;
mod teardown;

use crate::index::{align_down, Entry, Index, IndexGuard, Mark};
use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::sync::Arc;

use super::entry::{DaxEntry, DAX_LOCKED, DAX_PMD, PMD_ORDER, PMD_PAGES, PTE_ORDER};
use super::guard::DaxEntryGuard;
use super::history::{Bug, Bugs};
use super::invariant::Violation;
use super::page::DaxPages;
use super::trace::{thread_label, DaxTracer, TraceEvent};
use super::wait::{WaitKey, WaitTable, WakeMode, WAIT_TABLE_BUCKETS};
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

/// What a read fault on a hole found ([`DaxMapping::dax_load_hole`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoleFault {
    /// The page is a hole: the zero page is mapped read-only (no entry lock is held for it).
    ZeroPage,
    /// The page is mapped to this region block.
    Mapped(u64),
}

/// The optional parts of a mapping ([`DaxMapping::from_parts`]); `Default` is production's.
#[derive(Default)]
pub struct DaxParts {
    /// Run-time options (the historical bugs to reproduce).
    pub opts: DaxOptions,
    /// The wait table (default: the process-wide one).
    pub waits: Option<Arc<WaitTable>>,
    /// Unmaps a page range from user mappings (ZERO downgrade, busy-page scan).
    pub unmap: Option<UnmapHook>,
    /// The region's page metadata (owners and pins); `None` keeps none.
    pub pages: Option<std::sync::Arc<DaxPages>>,
    /// Receives the protocol's events (`None` in production).
    pub tracer: Option<std::sync::Arc<dyn DaxTracer>>,
}

struct Inner {
    inode: u64,
    generation: u64,
    opts: DaxOptions,
    index: Index,
    alive: AtomicBool,
    /// Set by [`DaxMapping::destroy`]: the inode's memory is gone; any touch is a use after free.
    freed: AtomicBool,
    /// Threads inside a read-side section that keeps the mapping from being freed (the
    /// kernel's `rcu_read_lock` over `page->mapping`); `destroy` waits for them. A mutex, not
    /// an atomic: the reader's "count, then check alive" and destroy's "evict, then check the
    /// count" must not both miss each other (loom's atomics are not sequentially consistent).
    rcu_readers: crate::sync::Mutex<usize>,
    sleepers: AtomicUsize,
    /// User mappings of the file (`mapping_mapped`).
    mmaps: AtomicUsize,
    waits: Arc<WaitTable>,
    unmap: Option<UnmapHook>,
    pages: Option<std::sync::Arc<DaxPages>>,
    tracer: Option<std::sync::Arc<dyn DaxTracer>>,
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

/// Slots of one XArray node (`XA_CHUNK_SIZE`): what a PMD-order `xas_load` saw (bug
/// 0e40de0338d0).
const XA_CHUNK_SIZE: u64 = 64;

pub(super) fn check_order(order: u8) -> Result<(), DaxError> {
    if order == PTE_ORDER || order == PMD_ORDER {
        Ok(())
    } else {
        Err(DaxError::BadOrder(order))
    }
}

impl DaxMapping {
    /// A mapping for inode `inode` (generation `generation`) using the process-wide wait table.
    pub fn new(inode: u64, generation: u64, opts: DaxOptions) -> DaxMapping {
        Self::from_parts(
            inode,
            generation,
            DaxParts {
                opts,
                ..DaxParts::default()
            },
        )
    }

    /// A mapping with its own wait table and an optional unmap hook.
    pub fn with_parts(
        inode: u64,
        generation: u64,
        opts: DaxOptions,
        waits: Arc<WaitTable>,
        unmap: Option<UnmapHook>,
    ) -> DaxMapping {
        Self::from_parts(
            inode,
            generation,
            DaxParts {
                opts,
                waits: Some(waits),
                unmap,
                ..DaxParts::default()
            },
        )
    }

    /// A mapping with the given parts.
    pub fn from_parts(inode: u64, generation: u64, parts: DaxParts) -> DaxMapping {
        DaxMapping {
            inner: Arc::new(Inner {
                inode,
                generation,
                opts: parts.opts,
                index: Index::new(),
                alive: AtomicBool::new(true),
                freed: AtomicBool::new(false),
                rcu_readers: crate::sync::Mutex::new(0),
                sleepers: AtomicUsize::new(0),
                mmaps: AtomicUsize::new(0),
                waits: parts.waits.unwrap_or_else(global_wait_table),
                unmap: parts.unmap,
                pages: parts.pages,
                tracer: parts.tracer,
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

    /// The historical bugs this mapping reproduces.
    pub(super) fn bugs(&self) -> Bugs {
        self.inner.opts.bugs
    }

    /// The region's page metadata, if the mapping keeps it.
    pub fn pages(&self) -> Option<&std::sync::Arc<DaxPages>> {
        self.inner.pages.as_ref()
    }

    pub(super) fn trace(&self, ev: impl FnOnce() -> TraceEvent) {
        if let Some(t) = &self.inner.tracer {
            t.event(thread_label(), ev());
        }
    }

    /// Adds a free-form line to the trace (scenario steps).
    pub fn trace_note(&self, what: impl FnOnce() -> String) {
        self.trace(|| TraceEvent::Note(what()));
    }

    fn key(&self, index: u64) -> WaitKey {
        WaitKey {
            inode: self.inner.inode,
            index,
        }
    }

    /// `dax_entry_waitqueue`: the key a thread that looked up `index` with a request of
    /// `order` sleeps on when it finds the locked entry `seen`: the request's (aligned) index,
    /// aligned further to the PMD start when the entry is a PMD entry, so that every sub-page
    /// of a PMD entry shares one key. For the waits the protocol allows (entries at least as
    /// large as the request) this is the entry's first index, the key its unlock wakes.
    fn waitqueue_key(&self, index: u64, order: u8, seen: DaxEntry) -> WaitKey {
        let i = align_down(index, order);
        self.key(if seen.is_pmd() {
            align_down(i, PMD_ORDER)
        } else {
            i
        })
    }

    /// The index writer lock, with the lifetime check: a mapping that was freed
    /// ([`DaxMapping::destroy`]) must never be touched again.
    ///
    /// Return: `Err(UseAfterFree)` (logged) if it was.
    pub(super) fn lock_index(&self) -> Result<IndexGuard<'_>, DaxError> {
        let g = self.inner.index.lock();
        if self.inner.freed.load(Ordering::SeqCst) {
            drop(g);
            let e = DaxError::UseAfterFree {
                inode: self.inner.inode,
                generation: self.inner.generation,
            };
            log::error!("{e}");
            self.trace(|| TraceEvent::Note(format!("USE AFTER FREE: {e}")));
            return Err(e);
        }
        Ok(g)
    }

    /// Registers on `key`, releases the index lock and sleeps until woken.
    fn sleep_on(&self, g: IndexGuard<'_>, key: WaitKey, exclusive: bool, why: &str) {
        let inner = &*self.inner;
        let sleeper = inner.waits.prepare(key, exclusive);
        inner.sleepers.fetch_add(1, Ordering::SeqCst);
        self.trace(|| TraceEvent::Sleep {
            key,
            exclusive,
            why: why.to_string(),
        });
        drop(g);
        sleeper.sleep();
        inner.sleepers.fetch_sub(1, Ordering::SeqCst);
        self.trace(|| TraceEvent::Woken { key });
    }

    fn associate(&self, start: u64, entry: DaxEntry) {
        if let (Some(p), true) = (&self.inner.pages, entry.has_block()) {
            p.associate(
                entry.block(),
                entry.nr_pages(),
                self.inner.inode,
                self.inner.generation,
                start,
            );
        }
    }

    fn disassociate(&self, entry: DaxEntry) {
        if let (Some(p), true) = (&self.inner.pages, entry.has_block()) {
            p.disassociate(entry.block(), entry.nr_pages());
        }
    }

    fn evicted(&self) -> DaxError {
        DaxError::Evicted {
            inode: self.inner.inode,
        }
    }

    /// `dax_wake_entry`: wakes the sleepers on the entry starting at `start` that `mode` names.
    ///
    /// Context: takes a wait-queue bucket mutex; callable with or without the index lock.
    pub fn dax_wake_entry(&self, start: u64, mode: WakeMode) {
        let key = self.key(start);
        if self.inner.tracer.is_none() {
            self.inner.waits.wake(key, mode);
            return;
        }
        let mut woke = Vec::new();
        self.inner.waits.wake_traced(key, mode, |l| woke.push(l));
        self.trace(|| TraceEvent::Wake { key, mode, woke });
    }

    /// The wake-up after an entry was erased (delete, invalidate, truncate): every sleeper must
    /// look again and find it gone.
    fn wake_erased(&self, start: u64) {
        // Bug 237388320def ("dax: Wake up all waiters after invalidating dax entry"):
        // `__dax_invalidate_entry` stored NULL and then called `put_unlocked_entry`, which woke
        // only the next waiter. Several invalidations (`invalidate_inode_pages2` in parallel,
        // virtiofs `make -j`) may sleep on one entry: the one woken finds nothing, so it wakes
        // nobody, and the next one sleeps forever. The fix passes WAKE_ALL there.
        let mode = if self.bugs().is(Bug::InvalidateWakeOne) {
            WakeMode::Next
        } else {
            WakeMode::All
        };
        self.dax_wake_entry(start, mode);
    }

    /// The lookup of the wanted order: a conflict query.
    fn lookup(&self, g: &IndexGuard<'_>, index: u64, order: u8) -> Option<Entry> {
        // Bug 0e40de0338d0 ("dax: Fix huge page faults"): the converted fault handlers looked
        // up a PMD-sized range with `xas_load`, which returns an entry of at least the
        // xa_state's order, or a smaller one only if it sits in the slots of the first node
        // walked: a PTE entry further on (at 1023 for a PMD at 512) was not seen, and the PMD
        // fault stored its entry over it, locked or not. The fix uses `xas_find_conflict`,
        // which visits the whole range. Modelled as a lookup that sees only entries at least as
        // large as the request or a smaller one within the first node's 64 slots.
        if self.bugs().is(Bug::HugePageFaults) && order > PTE_ORDER {
            let start = align_down(index, order);
            g.find_conflict(index, order)
                .filter(|e| e.order >= order || e.index < start + XA_CHUNK_SIZE)
        } else {
            g.find_conflict(index, order)
        }
    }

    /// The protocol's `get_unlocked_entry`, on a held writer guard: sleeps (exclusively, as
    /// the kernel's `prepare_to_wait_exclusive`) while the entry covering the range is locked.
    /// A thread woken by an unlock holds that entry's only wake-up: it must lock the entry, or
    /// pass the wake-up on with [`DaxMapping::put_unlocked_entry`].
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
            let seen = DaxEntry::from_raw(e.value);
            if e.order < order {
                // Bug 23c84eb78375 ("dax: Fix missed wakeup with PMD faults"): the old
                // `get_unlocked_entry` had no order test: a PMD fault that found a locked PTE
                // entry slept until it was unlocked, on the key of its own PMD-aligned index
                // (512), while the PTE entry's unlock woke the key of 1023: nobody ever woke it
                // (RocksDB hangs). The fix returns a conflict at once, so a fault never waits
                // for a smaller entry.
                let waits = seen.is_locked() && self.bugs().is(Bug::PmdMissedWakeup);
                // Bug 6370740e5f8e ("fs/dax: Fix pmd vs pte conflict detection"): that fix
                // put its order test after the lock test, so an *unlocked* smaller entry was
                // returned as the entry found; the PMD fault locked a PTE entry elsewhere in
                // its range and could not map a huge page (a v5.3 performance regression, no
                // PMD mappings once any PTE entry existed). The fix tests the order first.
                if !seen.is_locked() && self.bugs().is(Bug::PmdPteConflict) {
                    return (g, Ok(Lookup::Found(e)));
                }
                if !waits {
                    return (g, Ok(Lookup::Conflict(e)));
                }
            } else if !seen.is_locked() {
                return (g, Ok(Lookup::Found(e)));
            }
            // Register before releasing the index lock: an unlock needs the index lock to
            // change the entry and then our bucket's mutex to wake us (no lost wake-up).
            let key = self.waitqueue_key(index, order, seen);
            self.sleep_on(g, key, true, "waiting for the entry lock");
            g = inner.index.lock();
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
    /// it, passing the wake-up this thread may hold on to the next sleeper of its key
    /// (`WAKE_NEXT`).
    pub fn put_unlocked_entry(&self, found: &Lookup) {
        // Bug 61c30c98ef17 ("dax: Fix missed wakeup in put_unlocked_entry()"): when the wake
        // mode became a parameter, the test guarding the wake-up was inverted: it woke the
        // next waiter only when the entry *was* a conflict (retry) entry, i.e. never for the
        // entry we had been woken for. The next exclusive sleeper was left asleep.
        let bug = self.bugs().is(Bug::PutUnlockedInverted);
        match found {
            Lookup::Found(e) if !bug => self.dax_wake_entry(e.index, WakeMode::Next),
            Lookup::Conflict(e) if bug => self.dax_wake_entry(e.index, WakeMode::Next),
            _ => {}
        }
    }

    /// `dax_lock_entry`: sets `LOCKED` on the entry `e` found under the held writer lock.
    fn dax_lock_entry(&self, g: &mut IndexGuard<'_>, e: Entry) -> Result<DaxEntry, DaxError> {
        let locked = DaxEntry::from_raw(e.value).locked();
        g.update(e.index, locked.raw())?;
        self.trace(|| TraceEvent::Locked {
            index: e.index,
            order: e.order,
            what: format!("{:?}", locked.unlocked()),
        });
        Ok(locked)
    }

    fn guard(&self, e_index: u64, order: u8, entry: DaxEntry, page: Option<u64>) -> DaxEntryGuard {
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
                        return Ok(self.guard(e.index, e.order, locked, None));
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
                    self.dax_wake_entry(e.index, WakeMode::All);
                    return Ok(self.guard(index, PTE_ORDER, pte, None));
                }
                Lookup::Nothing => {
                    let start = align_down(index, order);
                    let new = DaxEntry::empty(order).locked();
                    let removed = g.store(start, order, new.raw())?;
                    drop(g);
                    self.trace(|| TraceEvent::Locked {
                        index: start,
                        order,
                        what: "(new EMPTY entry)".to_string(),
                    });
                    debug_assert!(
                        self.bugs().is(Bug::HugePageFaults) || removed.is_empty(),
                        "conflict query missed {removed:?}"
                    );
                    // Only under bug 0e40de0338d0: entries were stored over. Wake their
                    // sleepers so they at least re-check (the kernel left them sleeping).
                    for old in &removed {
                        self.disassociate(DaxEntry::from_raw(old.value));
                        self.dax_wake_entry(old.index, WakeMode::All);
                    }
                    return Ok(self.guard(start, order, new, None));
                }
            }
        }
    }

    /// Locks the entry covering `index` (any order), waiting for it; `None` if there is none.
    /// Locking any sub-page of a PMD entry locks the whole entry.
    ///
    /// Context: may sleep. Return: `Err(Evicted)` if the inode was evicted.
    pub fn lock_entry(&self, index: u64) -> Result<Option<DaxEntryGuard>, DaxError> {
        let g = self.inner.index.lock();
        let (mut g, found) = self.get_unlocked(g, index, PTE_ORDER);
        match found? {
            Lookup::Found(e) => {
                let locked = self.dax_lock_entry(&mut g, e)?;
                Ok(Some(self.guard(e.index, e.order, locked, None)))
            }
            // An order-0 lookup has no smaller entry to conflict with; an entry that vanished
            // while we slept was erased, and erasing wakes every sleeper.
            Lookup::Nothing | Lookup::Conflict(_) => Ok(None),
        }
    }

    /// `dax_lock_page` (memory failure): as [`DaxMapping::lock_entry`]; the returned guard's
    /// [`DaxEntryGuard::size`] is the effective mapping size (2 MiB or 4 KiB) from the entry,
    /// and dropping it is `dax_unlock_page`. See [`DaxMapping::dax_lock_page`].
    ///
    /// Context: may sleep. Return: `Err(Evicted)` if the inode was evicted or dies meanwhile.
    pub fn lock_entry_for_page(&self, index: u64) -> Result<Option<DaxEntryGuard>, DaxError> {
        self.dax_lock_page(index, None)
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
        self.trace(|| TraceEvent::Unlocked {
            index: cur.index,
            order: cur.order,
            what: format!("{value:?}"),
        });
        // Bug 965d004af540 ("dax: fix deadlock with DAX 4k holes"): when a hole's read fault
        // replaced its empty entry by the zero page, it woke only one waiter. The other read
        // faults of the hole use the zero page without taking the entry lock (it is never
        // written), so the woken one never unlocks anything and wakes nobody: with three
        // readers the third slept forever. The fix wakes all waiters when the entry becomes
        // the zero page; every other unlock wakes the next (the woken one takes the lock and
        // its own unlock wakes the next in turn).
        let mode = if value.is_zero() && !self.bugs().is(Bug::DaxHoles4k) {
            WakeMode::All
        } else {
            WakeMode::Next
        };
        self.dax_wake_entry(cur.index, mode);
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
        drop(g);
        let old = DaxEntry::from_raw(cur.value);
        if old.unlocked() != new.unlocked() {
            self.disassociate(old);
            self.associate(start, new);
        }
        Ok(())
    }

    /// Marks the held entry at `start` dirty (a write fault on an already mapped entry).
    pub(super) fn mark_dirty_locked(&self, start: u64, order: u8) -> Result<(), DaxError> {
        let mut g = self.inner.index.lock();
        let cur = Self::locked_at(&g, start, Some((start, order)))?;
        g.set_mark(cur.index, Mark::Dirty)?;
        Ok(())
    }

    /// Erases a held entry and wakes its sleepers (they re-look-up and find it gone).
    pub(super) fn delete_locked(&self, start: u64, order: u8) -> Result<DaxEntry, DaxError> {
        let mut g = self.inner.index.lock();
        let cur = Self::locked_at(&g, start, Some((start, order)))?;
        g.erase(cur.index);
        drop(g);
        let erased = DaxEntry::from_raw(cur.value).unlocked();
        self.disassociate(erased);
        self.trace(|| TraceEvent::Erased {
            index: cur.index,
            order: cur.order,
        });
        self.wake_erased(cur.index);
        Ok(erased)
    }

    /// Splits a held PMD entry into PTE entries (each mapping its own block, `hole` left
    /// empty) and unlocks them all in one step under the writer lock.
    pub(super) fn split_locked(
        &self,
        start: u64,
        order: u8,
        hole: std::ops::Range<u64>,
    ) -> Result<(), DaxError> {
        if order != PMD_ORDER {
            return Err(DaxError::BadOrder(order));
        }
        if !hole.is_empty() && (hole.start < start || hole.end > start + PMD_PAGES) {
            return Err(DaxError::OutOfEntry(hole.start));
        }
        let mut g = self.inner.index.lock();
        let cur = Self::locked_at(&g, start, Some((start, order)))?;
        let held = DaxEntry::from_raw(cur.value);
        g.split(start, PTE_ORDER)?;
        let flags = held.flags() & !(DAX_PMD | DAX_LOCKED);
        for i in 0..PMD_PAGES {
            let at = start + i;
            if hole.contains(&at) {
                g.erase(at);
                if let (Some(p), true) = (&self.inner.pages, held.has_block()) {
                    p.disassociate(held.block() + i, 1);
                }
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
        self.dax_wake_entry(start, WakeMode::All);
        Ok(())
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
            .field("freed", &self.is_freed())
            .finish()
    }
}
