//! Erasing entries and ending inodes: truncate and invalidation (`__dax_invalidate_entry`),
//! punch hole, eviction and the end of the inode (`destroy`, with the read-side section that
//! memory failure uses to reach a mapping that may be dying), and the read fault on a hole
//! (`dax_load_hole`) and mount-time loading of entries. Erasing wakes every sleeper
//! (`wake_erased`); keeping an entry the caller did not lock passes the wake-up on.

use super::super::entry::{DaxEntry, DAX_PMD, PMD_ORDER, PMD_PAGES, PTE_ORDER};
use super::super::trace::TraceEvent;
use super::super::DaxError;
use super::{check_order, DaxMapping, HoleFault, Lookup};
use crate::index::{align_down, Mark};
use crate::sync::atomic::Ordering;

impl DaxMapping {
    /// `dax_delete_mapping_entry` (truncate): waits for the entry covering `index` to be
    /// unlocked, then erases it (the whole entry, PMD or PTE).
    ///
    /// Context: may sleep. Return: the erased entry, if there was one.
    pub fn dax_delete_mapping_entry(&self, index: u64) -> Result<Option<DaxEntry>, DaxError> {
        self.dax_invalidate_entry(index, true)
            .map(|r| r.map(|e| e.unlocked()))
    }

    /// `dax_invalidate_mapping_entry_sync`: erases the entry covering `index` once unlocked,
    /// unless it is marked `Dirty` or `Towrite` (then it is kept).
    ///
    /// Context: may sleep. Return: whether an entry was erased.
    pub fn dax_invalidate_mapping_entry(&self, index: u64) -> Result<bool, DaxError> {
        Ok(self.dax_invalidate_entry(index, false)?.is_some())
    }

    /// `__dax_invalidate_entry`: `get_unlocked_entry`, then erase the entry (`trunc`, or when
    /// it is clean) and wake every sleeper, or keep it and pass the wake-up on.
    fn dax_invalidate_entry(&self, index: u64, trunc: bool) -> Result<Option<DaxEntry>, DaxError> {
        let g = self.inner.index.lock();
        let (mut g, found) = self.get_unlocked(g, index, PTE_ORDER);
        let e = match found? {
            Lookup::Found(e) => e,
            Lookup::Nothing | Lookup::Conflict(_) => return Ok(None),
        };
        let marked = self.inner.index.get_mark(e.index, Mark::Dirty)
            || self.inner.index.get_mark(e.index, Mark::Towrite);
        if !trunc && marked {
            drop(g);
            self.put_unlocked_entry(&Lookup::Found(e));
            return Ok(None);
        }
        g.erase(e.index);
        drop(g);
        let erased = DaxEntry::from_raw(e.value);
        self.disassociate(erased);
        self.trace(|| TraceEvent::Erased {
            index: e.index,
            order: e.order,
        });
        self.wake_erased(e.index);
        Ok(Some(erased))
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

    /// The end of the inode (`destroy_inode` after eviction): evicts, waits for the threads
    /// inside a read-side section on the mapping (`synchronize_rcu`), and marks the mapping
    /// freed. From then on any touch of it is a use after free, which the lifetime check of
    /// the index lock reports as [`DaxError::UseAfterFree`] (the memory stays allocated: Rust
    /// handles keep it; the check is what a freed inode would be).
    ///
    /// Context: may wait for readers; hold no entry lock of this mapping.
    pub fn destroy(&self) {
        self.evict();
        loop {
            let readers = self.inner.rcu_readers.lock();
            if *readers == 0 {
                let g = self.inner.index.lock();
                self.inner.freed.store(true, Ordering::SeqCst);
                drop(g);
                break;
            }
            drop(readers);
            crate::sync::thread::yield_now();
        }
        self.trace(|| TraceEvent::Note(format!("inode {} freed", self.inner.inode)));
    }

    /// Whether [`DaxMapping::destroy`] was called.
    pub fn is_freed(&self) -> bool {
        self.inner.freed.load(Ordering::SeqCst)
    }

    /// `rcu_read_lock` on the mapping, then `inode is alive?`: [`DaxMapping::destroy`] cannot
    /// complete until the matching [`DaxMapping::rcu_read_unlock`].
    ///
    /// Return: whether the inode is alive (not evicted).
    pub(super) fn rcu_read_lock_alive(&self) -> bool {
        let mut readers = self.inner.rcu_readers.lock();
        *readers += 1;
        self.inner.alive.load(Ordering::SeqCst)
    }

    /// Ends a read-side section.
    pub(super) fn rcu_read_unlock(&self) {
        *self.inner.rcu_readers.lock() -= 1;
    }

    /// A read fault on file page `index` (`dax_iomap_pte_fault` without allocation): a hole
    /// gets the zero page (`dax_load_hole` stores a `ZERO` entry and unlocks it, waking every
    /// waiter), a mapped page its block. A fault that finds the `ZERO` entry uses the zero page
    /// without the entry lock: it is never written.
    ///
    /// Context: may sleep. Return: what was mapped; `Err(Evicted)`.
    pub fn dax_load_hole(&self, index: u64) -> Result<HoleFault, DaxError> {
        let g = self.inner.index.lock();
        let (g, found) = self.get_unlocked(g, index, PTE_ORDER);
        if let Lookup::Found(e) = found? {
            if DaxEntry::from_raw(e.value).is_zero() {
                drop(g);
                self.trace(|| TraceEvent::Note(format!("maps the zero page at {index}")));
                return Ok(HoleFault::ZeroPage);
            }
        }
        drop(g);
        let mut held = self.grab_mapping_entry(index, PTE_ORDER)?;
        let got = if let Some(b) = held.block_of(index)? {
            HoleFault::Mapped(b)
        } else {
            if held.entry().is_empty() {
                held.insert_zero()?;
            }
            self.trace(|| TraceEvent::Note(format!("maps the zero page at {index}")));
            HoleFault::ZeroPage
        };
        held.unlock()?;
        Ok(got)
    }

    /// Loads a mapped, unlocked entry of `order` at `index` into an empty range without the
    /// fault path (the persisted block map at mount, before the inode is visible).
    ///
    /// Return: `Err(BadOrder/BadBlock)`; `Err(NotLocked(index))` if the range is not empty.
    pub fn dax_load_entry(&self, index: u64, order: u8, block: u64) -> Result<(), DaxError> {
        check_order(order)?;
        let pmd = order == PMD_ORDER;
        if pmd && block % PMD_PAGES != 0 {
            return Err(DaxError::BadBlock(block));
        }
        let e =
            DaxEntry::new(block, if pmd { DAX_PMD } else { 0 }).ok_or(DaxError::BadBlock(block))?;
        let start = align_down(index, order);
        let mut g = self.lock_index()?;
        if g.find_conflict(start, order).is_some() {
            return Err(DaxError::NotLocked(index));
        }
        g.store(start, order, e.raw())?;
        drop(g);
        self.associate(start, e);
        Ok(())
    }
}
