//! What the `memory_failure` module needs from the filesystem: the live inode, the reverse map,
//! the data area, the durable bad-block record (ranges, `Volume::record_bad`) and turning
//! poisoned pages into holes. Nothing here unmaps from the kernel: `crate::memory_failure` owns
//! inject and clear and calls these crate-private hooks; the only public part is the read-only
//! list of bad ranges.
//!
//! Rules: a block is recorded before its page reports `EIO` (docs/DESIGN.md, "Memory failure");
//! a record change is one copy-on-write table update (all of it or none, durable on return).
//! Locks: the bad-block set (write) → the journal and the allocator (leaves), so recording is
//! callable with DAX entries locked; clearing takes the inode rwsem with no entry lock held.

use std::sync::Arc;

use nix::errno::Errno;

use super::commit::commit_inode;
use super::daxfs::DaxFs;
use super::inode::Inode;
use super::types::Ino;
use super::FsResult;
use crate::memory_failure::Rmap;
use crate::store::Tx;

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

    /// `poison clear` of the poisoned pages of `[first, end)` of `ino`: they become holes (their
    /// data is lost and reads as zeros), durable on return (one commit). Return: the bad blocks
    /// they held, as `(page, block, count)` runs.
    ///
    /// Context: takes the inode rwsem exclusive (no entry lock held by the caller).
    pub(crate) fn mf_clear_pages(
        &self,
        ino: Ino,
        first: u64,
        end: u64,
    ) -> FsResult<Vec<(u64, u64, u64)>> {
        self.vol.writable()?;
        let inode = self.inodes.get(ino)?;
        let mut st = inode.state.write();
        let runs = inode.map.unpoison_range(first, end);
        if runs.is_empty() {
            return Ok(runs);
        }
        st.map_dirty = true;
        st.dirty = true;
        // Held by nothing now: clearing the blocks returns them to the allocator.
        for &(_, b, n) in &runs {
            self.vol.release_bad(b, n);
        }
        commit_inode(&self.vol, Tx::new(), &inode, &mut st)?;
        Ok(runs)
    }

    /// Memory failure: records the block ranges `(first, count)` bad (durable on return, all or
    /// none; `EINVAL` if one is outside the data area, before anything changes). Return: the
    /// blocks newly recorded.
    ///
    /// Context: bad-block set, journal, allocator (leaves); callable with DAX entries locked.
    pub(crate) fn mf_record_bad(&self, ranges: &[(u64, u64)]) -> FsResult<u64> {
        if ranges.iter().any(|&(b, n)| !self.vol.sb().in_data(b, n)) {
            return Err(Errno::EINVAL);
        }
        self.vol.record_bad(ranges)
    }

    /// Memory failure: removes the block ranges from the bad-block record (durable on return);
    /// the removed blocks no file holds return to the allocator. Return: the blocks removed.
    ///
    /// Context: as [`DaxFs::mf_record_bad`].
    pub(crate) fn mf_unrecord_bad(&self, ranges: &[(u64, u64)]) -> FsResult<u64> {
        let gone = self.vol.unrecord_bad(ranges)?;
        Ok(gone.iter().map(|r| r.1).sum())
    }

    /// The bad blocks, as coalesced `(first block, count)` ranges in block order.
    pub fn bad_ranges(&self) -> Vec<(u64, u64)> {
        self.vol.bad().ranges().collect()
    }

    /// The bad-block table's range blocks on media (tests of the table's copy-on-write).
    pub fn bad_table_blocks(&self) -> Vec<u64> {
        self.vol.bad_chain()
    }
}
