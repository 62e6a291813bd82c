//! The volume: the mapped region as the filesystem uses it — its superblock, the metadata journal,
//! the block allocator and the set of bad blocks — and the step every change ends with,
//! [`Volume::commit`] (docs/DESIGN.md, "Durability").
//!
//! Owns: which blocks are free, which are bad, and the rule that a block a transaction stops
//! referencing returns to the allocator only after that transaction is durable (and never when it
//! is bad). Locks: the bad-block set (read) and then the allocator mutex, nested in that order
//! only; the journal's mutex alone. All three are leaves: none is held while waiting for an inode
//! lock or a DAX entry lock.

use std::collections::BTreeSet;

use nix::errno::Errno;
use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::types::{RegionStat, StatFs, NAME_MAX};
use super::FsResult;
use crate::region::Region;
use crate::store::{Allocator, Journal, Superblock, Tx, BLOCK};

/// Blocks kept back from data allocations for block-map chain blocks.
const META_RESERVE: u64 = 32;

/// The region, its layout, journal, allocator and bad blocks.
pub(crate) struct Volume {
    region: Region,
    sb: Superblock,
    journal: Journal,
    alloc: Mutex<Allocator>,
    bad: RwLock<BTreeSet<u64>>,
    read_only: bool,
}

/// Logs an I/O error of the region and turns it into `EIO`.
pub(super) fn eio<E: std::fmt::Display>(e: E) -> Errno {
    log::error!("daxfs: I/O error: {e}");
    Errno::EIO
}

impl Volume {
    /// The volume of an opened region: `alloc` as the image loader rebuilt it, `bad` the
    /// bad-block table.
    pub(super) fn new(
        region: Region,
        sb: Superblock,
        mut alloc: Allocator,
        bad: BTreeSet<u64>,
        read_only: bool,
    ) -> Volume {
        alloc.set_reserve(META_RESERVE);
        Volume {
            journal: Journal::new(&sb),
            region,
            sb,
            alloc: Mutex::new(alloc),
            bad: RwLock::new(bad),
            read_only,
        }
    }

    /// The mapped region.
    pub(super) fn region(&self) -> &Region {
        &self.region
    }

    /// The superblock (the layout; never changes while open).
    pub(super) fn sb(&self) -> &Superblock {
        &self.sb
    }

    /// Whether the filesystem was opened read-only.
    pub(super) fn read_only(&self) -> bool {
        self.read_only
    }

    /// `EROFS` on a read-only filesystem.
    pub(super) fn writable(&self) -> FsResult<()> {
        if self.read_only {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// The allocator, locked. Context: a leaf; take the bad-block set first if both are needed.
    pub(super) fn allocator(&self) -> MutexGuard<'_, Allocator> {
        self.alloc.lock()
    }

    /// One block near `goal` (`ENOSPC` when none is left for data).
    pub(super) fn alloc_block(&self, goal: Option<u64>) -> FsResult<u64> {
        self.alloc.lock().alloc_near(goal).ok_or(Errno::ENOSPC)
    }

    /// Returns blocks that were never referenced by a committed transaction (a failed step).
    pub(super) fn free_unused(&self, blocks: impl IntoIterator<Item = u64>) {
        let mut a = self.alloc.lock();
        for b in blocks {
            a.free(b);
        }
    }

    /// Writes `data` to block `b` (zero-padded to the block) and persists it: a fresh block's
    /// contents are durable before any transaction references it.
    pub(super) fn write_fresh_block(&self, b: u64, data: &[u8]) -> FsResult<()> {
        let at = b * BLOCK;
        if data.len() < BLOCK as usize {
            self.region
                .zero(at + data.len() as u64, BLOCK - data.len() as u64)
                .map_err(eio)?;
        }
        self.region.write_at(at, data).map_err(eio)?;
        self.region.persist(at, BLOCK).map_err(eio)
    }

    /// Commits `tx`, then returns its freed blocks to the allocator (bad blocks stay out).
    ///
    /// Context: takes the journal mutex, then the bad-block set and the allocator.
    pub(super) fn commit(&self, tx: Tx) -> FsResult<()> {
        self.journal.commit(&self.region, &tx).map_err(eio)?;
        if !tx.free_after.is_empty() {
            let bad = self.bad.read();
            let mut a = self.alloc.lock();
            for &b in &tx.free_after {
                if !bad.contains(&b) {
                    a.free(b);
                }
            }
        }
        Ok(())
    }

    /// Commits `tx` without freeing anything (the bad-block table's own updates).
    pub(super) fn commit_metadata(&self, tx: &Tx) -> FsResult<()> {
        self.journal.commit(&self.region, tx).map_err(eio)
    }

    /// The bad-block set, for reading.
    pub(super) fn bad(&self) -> RwLockReadGuard<'_, BTreeSet<u64>> {
        self.bad.read()
    }

    /// The bad-block set, for changing (memory failure and `poison clear`).
    pub(super) fn bad_mut(&self) -> RwLockWriteGuard<'_, BTreeSet<u64>> {
        self.bad.write()
    }

    /// Region statistics, given the inode counts the inode table keeps.
    pub(super) fn stat(&self, inodes_used: u64) -> RegionStat {
        // The lock order (bad-block set before allocator) also for this count.
        let bad_blocks = self.bad.read().len() as u64;
        let a = self.alloc.lock();
        RegionStat {
            size: self.sb.size,
            block_size: BLOCK,
            used_blocks: self.sb.total_blocks - a.free_blocks(),
            free_blocks: a.free_blocks(),
            free_2m_runs: a.free_2m_runs(),
            inodes_used,
            inodes_total: self.sb.inodes_total,
            bad_blocks,
        }
    }

    /// `statfs`, given the free inode count.
    pub(super) fn statfs(&self, ffree: u64) -> StatFs {
        let a = self.alloc.lock();
        StatFs {
            blocks: a.data_blocks(),
            bfree: a.free_blocks(),
            bavail: a.available_blocks(),
            files: self.sb.inodes_total,
            ffree,
            bsize: BLOCK as u32,
            namelen: NAME_MAX as u32,
            frsize: BLOCK as u32,
        }
    }
}
