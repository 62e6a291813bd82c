//! Bad blocks and the memory-failure hooks: the persistent bad-block table and what the
//! `memory_failure` module needs from the filesystem (inode, reverse map, data area, clearing).
//!
//! Rules: the table is rewritten whole in one journal transaction (durable on return); a block is
//! recorded before its page reports `EIO` (docs/DESIGN.md, "Memory failure"). Locks: the
//! bad-block set (write) → the journal → the allocator mutex, all leaves, so recording is
//! callable with a DAX entry locked.

use std::collections::BTreeSet;
use std::sync::Arc;

use nix::errno::Errno;

use super::commit::commit_inode;
use super::daxfs::DaxFs;
use super::filemap::Rmap;
use super::inode::Inode;
use super::types::{BlockOwner, Ino};
use super::FsResult;
use crate::store::{encode_badblocks, Tx, BADBLK_MAX};

impl DaxFs {
    /// Memory failure: the live inode `ino`.
    pub(crate) fn mf_inode(&self, ino: Ino) -> FsResult<Arc<Inode>> {
        self.inodes.get(ino)
    }

    /// Memory failure: the reverse map (region block → inode, file page).
    pub(crate) fn mf_rmap(&self) -> &Rmap {
        self.inodes.rmap()
    }

    /// Memory failure: the data area `[first block, end block)` (bad blocks must lie in it).
    pub(crate) fn mf_data_area(&self) -> (u64, u64) {
        let sb = self.vol.sb();
        (sb.data_start, sb.total_blocks)
    }

    /// `poison clear` of file page `page`: the page becomes a hole (its data is lost and reads as
    /// zeros), durable on return. Return: the bad block it held, if it was poisoned.
    ///
    /// Context: takes the inode rwsem exclusive (no entry lock held by the caller).
    pub(crate) fn mf_clear_page(&self, ino: Ino, page: u64) -> FsResult<Option<u64>> {
        self.vol.writable()?;
        let inode = self.inodes.get(ino)?;
        let mut st = inode.state.write();
        let Some(b) = inode.map.unpoison(page) else {
            return Ok(None);
        };
        st.map_dirty = true;
        st.dirty = true;
        commit_inode(&self.vol, Tx::new(), &inode, &mut st)?;
        Ok(Some(b))
    }

    /// The persistent bad-block list (region block numbers).
    pub fn bad_blocks(&self) -> Vec<u64> {
        self.vol.bad().iter().copied().collect()
    }

    fn write_bad_table(&self, bad: &BTreeSet<u64>) -> FsResult<()> {
        let list: Vec<u64> = bad.iter().copied().collect();
        let mut tx = Tx::new();
        tx.write(self.vol.sb().badblk_off(), &encode_badblocks(&list));
        self.vol.commit_metadata(&tx)
    }

    /// Records `block` as bad (durable on return). The allocator will never hand it out; a file
    /// still mapping it keeps it until the page is rewritten whole, punched or truncated.
    /// `EINVAL` outside the data area, `ENOSPC` when the table is full.
    ///
    /// A file page mapping the block is poisoned too (lock-then-walk on its DAX entry, without
    /// kernel invalidation: `crate::memory_failure` is the full path, with it).
    pub fn add_bad_block(&self, block: u64) -> FsResult<()> {
        self.record_bad_block(block)?;
        if let BlockOwner::File { ino, page } = self.block_owner(block) {
            if let Ok(inode) = self.inodes.get(ino) {
                inode.map.poison_page(page, block, || Ok(()))?;
            }
        }
        Ok(())
    }

    /// Records `block` in the durable bad-block table only (see [`DaxFs::add_bad_block`]).
    ///
    /// Context: takes the bad-block set, journal and allocator locks (leaves); callable with a
    /// DAX entry locked.
    pub(crate) fn record_bad_block(&self, block: u64) -> FsResult<()> {
        self.vol.writable()?;
        if !self.vol.sb().in_data(block, 1) {
            return Err(Errno::EINVAL);
        }
        let mut bad = self.vol.bad_mut();
        if bad.contains(&block) {
            return Ok(());
        }
        if bad.len() >= BADBLK_MAX {
            return Err(Errno::ENOSPC);
        }
        bad.insert(block);
        if let Err(e) = self.write_bad_table(&bad) {
            bad.remove(&block);
            return Err(e);
        }
        self.vol.allocator().mark_used(block);
        Ok(())
    }

    /// Removes `block` from the bad-block list (durable on return); a file page poisoned on it
    /// becomes a hole (durable first); a free block becomes allocatable again. `ENOENT` when it
    /// was not listed.
    pub fn remove_bad_block(&self, block: u64) -> FsResult<()> {
        self.vol.writable()?;
        let mut owner = self.block_owner(block);
        if let BlockOwner::File { ino, page } = owner {
            // A page poisoned on it becomes a hole first (its data is lost).
            let poisoned = self
                .inodes
                .get(ino)
                .is_ok_and(|i| i.map.poisoned_block(page) == Some(block));
            if poisoned && self.vol.bad().contains(&block) {
                self.mf_clear_page(ino, page)?;
                owner = self.block_owner(block);
            }
        }
        let mut bad = self.vol.bad_mut();
        if !bad.remove(&block) {
            return Err(Errno::ENOENT);
        }
        if let Err(e) = self.write_bad_table(&bad) {
            bad.insert(block);
            return Err(e);
        }
        if owner == BlockOwner::Free {
            self.vol.allocator().free(block);
        }
        Ok(())
    }
}
