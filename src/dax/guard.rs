//! A locked DAX entry: what `grab_mapping_entry`, `lock_entry` and `lock_entry_for_page` return.
//!
//! The guard owns the entry lock. It unlocks on drop (storing the unlocked value at the same
//! order and waking sleepers), or is consumed by [`DaxEntryGuard::unlock`],
//! [`DaxEntryGuard::delete`] or [`DaxEntryGuard::split_and_unlock`]. It holds a
//! [`DaxMapping`] handle, so the mapping outlives it even if the inode is evicted meanwhile
//! (the unlock then still works and releases the lock).

use super::entry::{DaxEntry, DAX_PMD, DAX_ZERO, PMD_ORDER, PMD_PAGES};
use super::history::Bug;
use super::mapping::DaxMapping;
use super::DaxError;

/// A locked DAX entry (the entry lock of `fs/dax.c`).
#[must_use = "dropping the guard unlocks the entry at once"]
pub struct DaxEntryGuard {
    mapping: DaxMapping,
    index: u64,
    order: u8,
    entry: DaxEntry,
    /// The page index locked through `dax_lock_page`, if this is a page lock.
    page: Option<u64>,
    done: bool,
}

impl DaxEntryGuard {
    pub(super) fn new(
        mapping: DaxMapping,
        index: u64,
        order: u8,
        entry: DaxEntry,
        page: Option<u64>,
    ) -> DaxEntryGuard {
        DaxEntryGuard {
            mapping,
            index,
            order,
            entry,
            page,
            done: false,
        }
    }

    /// The mapping the entry belongs to.
    pub fn mapping(&self) -> &DaxMapping {
        &self.mapping
    }

    /// Aligned first page index of the entry.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The entry's order in the index (0 = PTE, 9 = PMD).
    pub fn order(&self) -> u8 {
        self.order
    }

    /// The entry value (with `LOCKED` set).
    pub fn entry(&self) -> DaxEntry {
        self.entry
    }

    /// Effective mapping size in bytes, derived from the entry (2 MiB for PMD, else 4 KiB).
    pub fn size(&self) -> u64 {
        self.entry.size()
    }

    /// Pages mapped by the entry, derived from the entry (512 or 1).
    pub fn nr_pages(&self) -> u64 {
        self.entry.nr_pages()
    }

    /// Whether page index `i` lies inside the entry.
    pub fn covers(&self, i: u64) -> bool {
        i >= self.index && i - self.index < (1u64 << self.order)
    }

    /// The region block mapped at page index `i` (`None` for `EMPTY`/`ZERO` entries).
    pub fn block_of(&self, i: u64) -> Result<Option<u64>, DaxError> {
        if !self.covers(i) {
            return Err(DaxError::OutOfEntry(i));
        }
        Ok(self
            .entry
            .has_block()
            .then(|| self.entry.block() + (i - self.index)))
    }

    /// `dax_insert_entry`: makes the held entry map region block `block` (for a PMD entry the
    /// first of 512 blocks, 2 MiB-aligned), optionally marking it `Dirty`. Stays locked.
    ///
    /// Return: `Err(BadBlock)` for a block out of range or unaligned for a PMD entry.
    pub fn insert(&mut self, block: u64, dirty: bool) -> Result<(), DaxError> {
        let pmd = self.order == PMD_ORDER;
        if pmd && block % PMD_PAGES != 0 {
            return Err(DaxError::BadBlock(block));
        }
        let flags = if pmd { DAX_PMD } else { 0 };
        let new = DaxEntry::new(block, flags)
            .ok_or(DaxError::BadBlock(block))?
            .locked();
        self.mapping
            .insert_locked(self.index, self.order, new, dirty)?;
        self.entry = new;
        Ok(())
    }

    /// `dax_insert_entry` as a fault calls it: a fault of `fault_order` at `fault_index` maps
    /// region block `block` (for the fault's page range). If the held entry is `EMPTY` or
    /// `ZERO` (and of the fault's order) the new mapping replaces it, moving the pages'
    /// (mapping, index) association; an entry that already maps blocks is left alone (a PTE
    /// fault inside a PMD entry uses the PMD mapping) and only marked dirty if asked.
    ///
    /// Return: `Err(OutOfEntry)` for a fault outside the entry, `Err(BadBlock)`.
    pub fn dax_insert_entry(
        &mut self,
        fault_index: u64,
        fault_order: u8,
        block: u64,
        dirty: bool,
    ) -> Result<(), DaxError> {
        if !self.covers(fault_index) {
            return Err(DaxError::OutOfEntry(fault_index));
        }
        let held = self.entry;
        // Bug 1571c029a2ff ("dax: Fix xarray entry association for mixed mappings"): the
        // kernel moved the association whenever the new mapping's size differed from the
        // entry's, before deciding whether to store it at all. A PTE fault inside a mapped PMD
        // entry disassociated the PMD's 512 pages and associated only its own page, then left
        // the PMD entry in place: 511 pages had no owner, and memory failure on them found no
        // process to notify. The fix (dis)associates only when the entry is replaced.
        if self.mapping.bugs().is(Bug::MixedAssociation) && held.order() != fault_order {
            if let Some(p) = self.mapping.pages() {
                if held.has_block() {
                    p.disassociate(held.block(), held.nr_pages());
                }
                let n = 1u64 << fault_order;
                let start = fault_index & !(n - 1);
                p.associate(
                    block,
                    n,
                    self.mapping.inode(),
                    self.mapping.generation(),
                    start,
                );
            }
        }
        if (held.is_empty() || held.is_zero()) && fault_order == self.order {
            return self.insert(block, dirty);
        }
        if dirty {
            self.mapping.mark_dirty_locked(self.index, self.order)?;
        }
        Ok(())
    }

    /// Makes the held entry a `ZERO` entry (a read fault on a hole). Stays locked.
    pub fn insert_zero(&mut self) -> Result<(), DaxError> {
        let flags = DAX_ZERO | if self.order == PMD_ORDER { DAX_PMD } else { 0 };
        let new = DaxEntry::new(0, flags).expect("block 0 fits").locked();
        self.mapping
            .insert_locked(self.index, self.order, new, false)?;
        self.entry = new;
        Ok(())
    }

    /// `dax_unlock_entry` / `dax_unlock_page`: stores the unlocked value at the same order and
    /// wakes sleepers.
    pub fn unlock(mut self) -> Result<(), DaxError> {
        self.done = true;
        self.release()
    }

    fn release(&self) -> Result<(), DaxError> {
        if let Some(page) = self.page {
            self.mapping
                .unlock_page(self.index, self.order, self.entry, page)
        } else {
            self.mapping.unlock_at(
                self.index,
                Some((self.index, self.order)),
                self.entry.unlocked(),
                true,
            )
        }
    }

    /// Erases the held entry (truncate, punch hole) and wakes sleepers, which find it gone.
    ///
    /// Return: the erased value, unlocked.
    pub fn delete(mut self) -> Result<DaxEntry, DaxError> {
        self.done = true;
        self.mapping.delete_locked(self.index, self.order)
    }

    /// Splits the held PMD entry into 512 PTE entries (each mapping its own block; `hole`, if
    /// given, left without entry — a poisoned page) and unlocks them at the new order.
    ///
    /// Return: `Err(BadOrder)` if the entry is not a PMD entry (it stays locked by the guard,
    /// which is then dropped and unlocks it); `Err(OutOfEntry)` for a hole outside it.
    pub fn split_and_unlock(self, hole: Option<u64>) -> Result<(), DaxError> {
        self.split_and_unlock_holes(hole.map_or(0..0, |h| h..h + 1))
    }

    /// As [`Self::split_and_unlock`], leaving every page of `holes` without entry (poisoned
    /// pages; an empty range leaves none). `Err(OutOfEntry)` when `holes` is not inside the entry.
    pub fn split_and_unlock_holes(mut self, holes: std::ops::Range<u64>) -> Result<(), DaxError> {
        match self.mapping.split_locked(self.index, self.order, holes) {
            Ok(()) => {
                self.done = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for DaxEntryGuard {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.release() {
                log::error!(
                    "inode {}: unlocking DAX entry at {} failed: {e}",
                    self.mapping.inode(),
                    self.index
                );
            }
        }
    }
}

impl std::fmt::Debug for DaxEntryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaxEntryGuard")
            .field("inode", &self.mapping.inode())
            .field("index", &self.index)
            .field("order", &self.order)
            .field("entry", &self.entry)
            .finish()
    }
}
