//! A locked DAX entry: what `grab_mapping_entry`, `lock_entry` and `lock_entry_for_page` return.
//!
//! The guard owns the entry lock. It unlocks on drop (storing the unlocked value at the same
//! order and waking sleepers), or is consumed by [`DaxEntryGuard::unlock`],
//! [`DaxEntryGuard::delete`] or [`DaxEntryGuard::split_and_unlock`]. It holds a
//! [`DaxMapping`] handle, so the mapping outlives it even if the inode is evicted meanwhile
//! (the unlock then still works and releases the lock).

use super::entry::{DaxEntry, DAX_PMD, DAX_ZERO, PMD_ORDER, PMD_PAGES};
use super::mapping::DaxMapping;
use super::DaxError;

/// A locked DAX entry (the entry lock of `fs/dax.c`).
#[must_use = "dropping the guard unlocks the entry at once"]
pub struct DaxEntryGuard {
    mapping: DaxMapping,
    index: u64,
    order: u8,
    entry: DaxEntry,
    page: bool,
    done: bool,
}

impl DaxEntryGuard {
    pub(super) fn new(
        mapping: DaxMapping,
        index: u64,
        order: u8,
        entry: DaxEntry,
        page: bool,
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
        if self.page {
            self.mapping.unlock_page(self.index, self.order, self.entry)
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
    pub fn split_and_unlock(mut self, hole: Option<u64>) -> Result<(), DaxError> {
        match self.mapping.split_locked(self.index, self.order, hole) {
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
