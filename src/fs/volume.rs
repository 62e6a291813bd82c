//! The volume: the mapped region as the filesystem uses it — its superblock, the metadata journal,
//! the block allocator, the set of bad blocks and the hook to the direct-mapping leases — and the
//! step every change ends with, [`Volume::commit`] (docs/DESIGN.md, "Durability", "Direct
//! mapping").
//!
//! Owns: which blocks are free, which are bad, which are quarantined, and the rule that a block a
//! transaction stops referencing returns to the allocator only after that transaction is durable,
//! never when it is bad, and not while a direct-mapping holder that did not acknowledge the change
//! may still map it ([`Quarantine`]); and the rule that a freshly allocated block gets storage in a
//! region file before anything is stored to it ([`Volume::reserve`]: `ENOSPC`, never `SIGBUS`,
//! when the filesystem under the region is full). A change of a file's layout breaks the direct
//! mappings of the range first ([`Volume::break_layouts`]). Locks: the bad-block set, then the bad
//! blocks held by nothing else (`bad_free`), the table's chain state, and the allocator mutex,
//! nested in that order only; the journal's and the quarantine's mutexes alone.
//! All are leaves: none is held while waiting for an inode lock or a DAX entry lock, nor while
//! breaking a layout (which may sleep, bounded).

use std::sync::{Arc, OnceLock};

use nix::errno::Errno;
use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use super::filemap::FileMap;
use super::layout::{FenceId, LayoutBreaker, LayoutChange, LayoutExtent, Quarantine};
use super::shutdown::GoingDown;
use super::types::{Ino, RegionStat, StatFs, NAME_MAX};
use super::FsResult;
use crate::region::{Region, RegionError};
use crate::store::badtable::{bad_chain_blocks, encode_bad_table};
use crate::store::{Allocator, BadRanges, Journal, Superblock, Tx, BLOCK};

/// Blocks kept back from data allocations for block-map chain blocks.
const META_RESERVE: u64 = 32;

/// The bad-block table as the image loader found it.
pub(super) struct BadTableState {
    /// The bad blocks.
    pub set: BadRanges,
    /// Those no file or metadata structure holds.
    pub free: BadRanges,
    /// The table's range chain blocks and generation.
    pub chain: Vec<u64>,
    pub generation: u64,
}

/// The region, its layout, journal, allocator and bad blocks.
pub(crate) struct Volume {
    region: Region,
    sb: Superblock,
    journal: Journal,
    alloc: Mutex<Allocator>,
    bad: RwLock<BadRanges>,
    /// The bad-block table's range chain on media and its generation (changed under `bad`).
    bad_chain: Mutex<(Vec<u64>, u64)>,
    /// The bad blocks nothing else holds (free when recorded, or released since): clearing
    /// them returns them to the allocator.
    bad_free: Mutex<BadRanges>,
    read_only: bool,
    /// The direct-mapping lease manager, once the daemon installed one (`fs::layout`).
    layouts: OnceLock<Arc<dyn LayoutBreaker>>,
    /// Blocks freed while a lease holder had not acknowledged the change (`fs::layout`).
    quarantine: Quarantine,
    /// Shut down (`fs::shutdown`): nothing more is committed.
    down: GoingDown,
}

/// Logs an I/O error of the region and turns it into `EIO`.
pub(super) fn eio<E: std::fmt::Display>(e: E) -> Errno {
    log::error!("daxfs: I/O error: {e}");
    Errno::EIO
}

impl Volume {
    /// The volume of an opened region: `alloc` as the image loader rebuilt it, `bad` the
    /// bad-block table with its range chain blocks and generation.
    pub(super) fn new(
        region: Region,
        sb: Superblock,
        mut alloc: Allocator,
        bad: BadTableState,
        read_only: bool,
    ) -> Volume {
        alloc.set_reserve(META_RESERVE);
        Volume {
            journal: Journal::new(&sb),
            region,
            sb,
            alloc: Mutex::new(alloc),
            bad: RwLock::new(bad.set),
            bad_chain: Mutex::new((bad.chain, bad.generation)),
            bad_free: Mutex::new(bad.free),
            read_only,
            layouts: OnceLock::new(),
            quarantine: Quarantine::default(),
            down: GoingDown::default(),
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

    /// `EIO` once shut down (`fs::shutdown`): the check at the entry of every operation.
    pub(super) fn alive(&self) -> FsResult<()> {
        self.down.check()
    }

    /// Whether the volume was shut down.
    pub(super) fn is_down(&self) -> bool {
        self.down.is_down()
    }

    /// Shuts the volume down. Return: whether this call did.
    pub(super) fn go_down(&self) -> bool {
        self.down.set()
    }

    /// `EIO` once shut down, `EROFS` on a read-only filesystem.
    pub(super) fn writable(&self) -> FsResult<()> {
        self.alive()?;
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

    /// `FITRIM`: hands the free blocks of bytes `[start, start + len)` in runs of at least
    /// `minlen` bytes back to the storage under the region, as ext4 and xfs do for their device.
    /// Return: the bytes handed back. Errors as ext4's: `EINVAL` when `len` is less than a
    /// block, `start` is at or past the end of the region or `minlen` is larger than the
    /// region; `EOPNOTSUPP` when the region cannot discard (a device); `EROFS` read-only.
    ///
    /// Context: takes the allocator lock one window of about 1 GiB at a time, so allocations
    /// wait at most one window's punches; blocks freed meanwhile are trimmed by the next call.
    pub(super) fn trim(&self, start: u64, len: u64, minlen: u64) -> FsResult<u64> {
        const WINDOW: u64 = 1 << 18; // blocks (1 GiB)
        self.writable()?;
        let total = self.region.len() / BLOCK;
        let (first, min) = (start / BLOCK, (minlen / BLOCK).max(1));
        if len < BLOCK || first >= total || min > total {
            return Err(Errno::EINVAL);
        }
        let end = first.saturating_add(len / BLOCK).min(total);
        let mut trimmed = 0;
        let mut at = first;
        while at < end {
            let a = self.alloc.lock();
            let (runs, next) = a.free_runs(at, end, min, WINDOW);
            for (b, n) in runs {
                match self.region.discard(b * BLOCK, n * BLOCK) {
                    Ok(true) => trimmed += n,
                    Ok(false) => return Err(Errno::EOPNOTSUPP),
                    Err(e) => {
                        log::error!("daxfs: FITRIM: {e}");
                        return Err(Errno::EIO);
                    }
                }
            }
            drop(a);
            at = next.max(at + 1);
        }
        Ok(trimmed * BLOCK)
    }

    /// One block near `goal` (`ENOSPC` when none is left for data, or the filesystem under a
    /// region file has no storage for it).
    pub(super) fn alloc_block(&self, goal: Option<u64>) -> FsResult<u64> {
        let mut a = self.alloc.lock();
        let b = a.alloc_near(goal).ok_or(Errno::ENOSPC)?;
        if let Err(e) = self.reserve(b, 1) {
            a.free(b);
            return Err(e);
        }
        Ok(b)
    }

    /// Gives blocks `[first, first + n)` storage in a region file before their first use (see
    /// [`crate::backing`]): every freshly allocated block goes through here before anything is
    /// stored to it. `ENOSPC` when the filesystem under the region is full, `EIO` on another
    /// failure; the caller frees the blocks.
    pub(super) fn reserve(&self, first: u64, n: u64) -> FsResult<()> {
        match self.region.reserve(first * BLOCK, n * BLOCK) {
            Ok(()) => Ok(()),
            Err(RegionError::NoSpace { .. }) => Err(Errno::ENOSPC),
            Err(e) => {
                log::error!("daxfs: {e}");
                Err(Errno::EIO)
            }
        }
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

    /// Commits `tx`, then returns its freed blocks to the allocator (bad blocks stay out, and
    /// quarantined ones until their fence lifts).
    ///
    /// Context: takes the shutdown gate (shared) and the journal mutex, then the quarantine, the
    /// bad-block set and the allocator.
    pub(super) fn commit(&self, tx: Tx) -> FsResult<()> {
        // After a shutdown nothing reaches the journal (`fs::shutdown`, the hard gate).
        self.down
            .commit(|| self.journal.commit(&self.region, &tx).map_err(eio))?;
        if !tx.free_after.is_empty() {
            let held = self.quarantine.on_commit(&tx.free_after);
            self.free_durable(held.as_deref().unwrap_or(&tx.free_after));
        }
        Ok(())
    }

    /// Returns blocks whose freeing is durable to the allocator, except bad ones.
    fn free_durable(&self, blocks: &[u64]) {
        let bad = self.bad.read();
        let mut held = self.bad_free.lock();
        let mut a = self.alloc.lock();
        for &b in blocks {
            if bad.contains(b) {
                held.insert(b, 1);
            } else {
                a.free(b);
            }
        }
    }

    /// Installs the lease manager (once; later calls are ignored). Return: whether it was
    /// installed.
    pub(super) fn set_layout_breaker(&self, b: Arc<dyn LayoutBreaker>) -> bool {
        self.layouts.set(b).is_ok()
    }

    /// Breaks the direct mappings of pages `[first, end)` of `ino` (see
    /// [`LayoutBreaker::break_layouts`]); one atomic load when nobody holds a lease.
    ///
    /// Context: may sleep (bounded) waiting for holders; called with the inode lock held.
    pub(super) fn break_layouts(
        &self,
        ino: Ino,
        first: u64,
        end: u64,
        why: LayoutChange,
    ) -> Option<FenceId> {
        self.breaker_for(ino, first, end)?
            .break_layouts(ino, first, end, why)
    }

    /// The lease manager when some process may map pages `[first, end)` of `ino` (a non-empty
    /// range of an inode with a lease); one atomic load when nobody holds a lease.
    fn breaker_for(&self, ino: Ino, first: u64, end: u64) -> Option<&Arc<dyn LayoutBreaker>> {
        let b = self.layouts.get()?;
        (first < end && b.active(ino)).then_some(b)
    }

    /// The file grew from `old` to `new` bytes: pages that were past its end are valid now, so
    /// direct mappings that map them as past the end must map them again. The holders are told
    /// the new pages' layout (from `map`, the file's index) so they map them before they
    /// acknowledge (see `crate::direct::wire`, `EXTENT`).
    pub(super) fn break_extended(&self, ino: Ino, map: &FileMap, old: u64, new: u64) {
        let (first, end) = (old.div_ceil(BLOCK), new.div_ceil(BLOCK));
        let Some(b) = self.breaker_for(ino, first, end) else {
            return;
        };
        let hints = growth_layout(map, first, end);
        b.break_extended(ino, first, end, new, &hints);
    }

    /// Adds blocks freed by a change to `tx`, held in quarantine under `fence` when a holder did
    /// not acknowledge the change's revocation.
    pub(super) fn free_after_layout_break(
        &self,
        tx: &mut Tx,
        fence: Option<FenceId>,
        freed: Vec<(u64, u64)>,
    ) {
        for (b, n) in freed {
            if let Some(f) = fence {
                self.quarantine.hold(f, b..b + n);
            }
            tx.free_after.extend(b..b + n);
        }
    }

    /// Lifts a fence: its quarantined blocks whose freeing is durable return to the allocator
    /// (the others when their transaction commits).
    pub(super) fn lift_fence(&self, fence: FenceId) {
        let free = self.quarantine.lift(fence);
        if !free.is_empty() {
            self.free_durable(&free);
        }
    }

    /// Number of blocks held in quarantine.
    pub(super) fn quarantined_blocks(&self) -> usize {
        self.quarantine.len()
    }

    /// The bad-block set, for reading.
    pub(super) fn bad(&self) -> RwLockReadGuard<'_, BadRanges> {
        self.bad.read()
    }

    /// Records blocks `[first, first + n)` (inside the data area) bad, durable on return; the
    /// allocator never hands them out from then on. Return: the blocks that were not bad
    /// before. All or nothing: on an error the set and the allocator are as before.
    ///
    /// Context: takes the bad-block set (write), then the allocator and the journal (leaves);
    /// callable with DAX entry locks held.
    pub(super) fn record_bad(&self, ranges: &[(u64, u64)]) -> FsResult<u64> {
        self.writable()?;
        let mut bad = self.bad.write();
        let mut new = bad.clone();
        let added: u64 = ranges.iter().map(|&(s, n)| new.insert(s, n)).sum();
        if added == 0 {
            return Ok(0);
        }
        // Take the newly bad blocks out of the allocator first, so no range block of the new
        // table lands on one.
        let mut taken = BadRanges::new();
        {
            let mut a = self.alloc.lock();
            for &(s, n) in ranges {
                for b in (s..s + n).filter(|&b| a.mark_used(b)) {
                    taken.insert(b, 1);
                }
            }
        }
        if let Err(e) = self.store_bad(&new) {
            let mut a = self.alloc.lock();
            for (s, n) in taken.ranges() {
                (s..s + n).for_each(|b| a.free(b));
            }
            return Err(e);
        }
        *bad = new;
        let mut held = self.bad_free.lock();
        for (s, n) in taken.ranges() {
            held.insert(s, n);
        }
        Ok(added)
    }

    /// Removes `ranges` from the bad-block set, durable on return; the removed blocks nothing
    /// else holds return to the allocator. Return: the blocks that were bad, as ranges.
    ///
    /// Context: as [`Volume::record_bad`].
    pub(super) fn unrecord_bad(&self, ranges: &[(u64, u64)]) -> FsResult<Vec<(u64, u64)>> {
        self.writable()?;
        let mut bad = self.bad.write();
        let mut new = bad.clone();
        let gone: Vec<(u64, u64)> = ranges.iter().flat_map(|&(s, n)| new.remove(s, n)).collect();
        if gone.is_empty() {
            return Ok(gone);
        }
        self.store_bad(&new)?;
        *bad = new;
        let mut held = self.bad_free.lock();
        let mut a = self.alloc.lock();
        for &(s, n) in &gone {
            for (fs, fnn) in held.remove(s, n) {
                (fs..fs + fnn).for_each(|b| a.free(b));
            }
        }
        Ok(gone)
    }

    /// Writes `new` as the bad-block table, copy-on-write: fresh range blocks written and
    /// persisted, then the table block naming them committed through the journal, then the old
    /// range blocks freed (a crash leaves the old table or the new one).
    ///
    /// Context: the caller holds the bad-block set (write); takes the chain state, the allocator
    /// and the journal.
    fn store_bad(&self, new: &BadRanges) -> FsResult<()> {
        let ranges: Vec<(u64, u64)> = new.ranges().collect();
        let mut st = self.bad_chain.lock();
        let mut chain: Vec<u64> = Vec::with_capacity(bad_chain_blocks(ranges.len()));
        {
            let mut a = self.alloc.lock();
            while chain.len() < chain.capacity() {
                let Some(b) = a.alloc_meta(chain.last().map(|&b| b + 1)) else {
                    for &b in &chain {
                        a.free(b);
                    }
                    return Err(Errno::ENOSPC);
                };
                chain.push(b);
            }
        }
        let generation = st.1 + 1;
        let (table, blocks) = encode_bad_table(&ranges, &chain, generation);
        let mut tx = Tx::new();
        tx.write(self.sb.badblk_off(), &table);
        tx.free_after = st.0.clone();
        // After a shutdown nothing reaches the region (`fs::shutdown`, the hard gate).
        let written = self.down.commit(|| {
            chain.iter().zip(&blocks).try_for_each(|(&b, data)| {
                self.reserve(b, 1)?;
                self.write_fresh_block(b, data)
            })?;
            self.journal.commit(&self.region, &tx).map_err(eio)
        });
        let mut a = self.alloc.lock();
        if let Err(e) = written {
            for &b in &chain {
                a.free(b);
            }
            return Err(e);
        }
        for &b in &st.0 {
            if !new.contains(b) {
                a.free(b);
            }
        }
        *st = (chain, generation);
        Ok(())
    }

    /// A file stopped holding bad blocks `[first, first + n)` without a transaction freeing it (a whole-page write
    /// remapped a poisoned page, `poison clear` made it a hole): clearing them returns them to the
    /// allocator.
    pub(super) fn release_bad(&self, first: u64, n: u64) {
        let bad = self.bad.read();
        let mut held = self.bad_free.lock();
        for (s, len) in bad.within(first, first + n) {
            held.insert(s, len);
        }
    }

    /// The bad-block table's range chain blocks (tests, fsck).
    pub(super) fn bad_chain(&self) -> Vec<u64> {
        self.bad_chain.lock().0.clone()
    }

    /// Region statistics, given the inode counts the inode table keeps.
    pub(super) fn stat(&self, inodes_used: u64) -> RegionStat {
        // The lock order (bad-block set before allocator) also for this count.
        let bad_blocks = self.bad.read().blocks();
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

/// The layout of pages `[first, end)` of a file that just grew over them, for the holders'
/// hints: data runs (one per index entry, clipped to the range) and the holes between them, in
/// file order, at most [`crate::direct::wire::MAX_EXTENT_HINTS`] extents. Poisoned pages are
/// not in the index and are left out (the fault path reports them).
fn growth_layout(map: &FileMap, first: u64, end: u64) -> Vec<LayoutExtent> {
    let max = crate::direct::wire::MAX_EXTENT_HINTS;
    let mut out = Vec::new();
    let mut at = first;
    for e in map.data_entries_in(first, end) {
        if out.len() + 2 > max {
            return out;
        }
        let (a, b) = (e.index.max(first), e.end().min(end));
        if a >= b {
            continue;
        }
        if a > at {
            out.push(LayoutExtent::Hole {
                page: at,
                nr: a - at,
            });
        }
        out.push(LayoutExtent::Data {
            page: a,
            nr: b - a,
            block: e.value + (a - e.index),
            order: 0,
        });
        at = b;
    }
    if at < end && out.len() < max {
        out.push(LayoutExtent::Hole {
            page: at,
            nr: end - at,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{growth_layout, FileMap, LayoutExtent};

    #[test]
    fn growth_layout_clips_entries_and_fills_holes() {
        let map = FileMap::new(7, 1);
        map.map(0, 9, 1024).unwrap(); // pages [0, 512) at blocks [1024, 1536)
        map.map(600, 0, 77).unwrap();
        let got = growth_layout(&map, 500, 700);
        assert_eq!(
            got,
            vec![
                LayoutExtent::Data {
                    page: 500,
                    nr: 12,
                    block: 1524,
                    order: 0
                },
                LayoutExtent::Hole { page: 512, nr: 88 },
                LayoutExtent::Data {
                    page: 600,
                    nr: 1,
                    block: 77,
                    order: 0
                },
                LayoutExtent::Hole { page: 601, nr: 99 },
            ]
        );
        // A range with nothing mapped is one hole; a long alternation stops at the limit.
        assert_eq!(
            growth_layout(&map, 800, 900),
            vec![LayoutExtent::Hole { page: 800, nr: 100 }]
        );
        for p in (1000..1100).step_by(2) {
            map.map(p, 0, p).unwrap();
        }
        let long = growth_layout(&map, 1000, 1100);
        assert!(long.len() <= crate::direct::wire::MAX_EXTENT_HINTS);
        assert_eq!(long[1], LayoutExtent::Hole { page: 1001, nr: 1 });
    }
}
