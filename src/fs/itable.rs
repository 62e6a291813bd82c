//! The inode table in DRAM: one slot per inode number holding the live inode, the free inode
//! numbers with the generation of their last use, and which chunks of the on-media table are in
//! use (`store::ichunk`).
//!
//! Owns: which inode numbers are live and which are free, and handing out a new chunk of the
//! on-media table when the free numbers run out (zeroed and persisted, then marked in use by one
//! journal transaction, before any of its numbers is free). Slots exist only for chunks in use,
//! so DRAM grows with the chunks used, not with the region. A slot holds an `Arc<Inode>`, so an
//! inode looked up stays usable (as an evicted inode) after it leaves the table.
//! Locks: each slot's rwlock is a leaf, held only to copy an `Arc` in or out. The free list's
//! mutex is held to copy numbers in or out, and while a new chunk is marked (then it takes the
//! journal's mutex inside: free list before journal, never the other way).
//! Every inode the table makes is attached to the filesystem's reverse map (memory failure) and
//! gets the mount's DAX mapping options (the historical bugs switched on, docs/DAX-BUGS.md).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use nix::errno::Errno;
use parking_lot::{Mutex, RwLock};

use super::inode::{IState, Inode};
use super::types::Ino;
use super::volume::{eio, Volume};
use super::FsResult;
use crate::dax::DaxOptions;
use crate::memory_failure::Rmap;
use crate::store::{ChunkMap, Tx, ICHUNK_INODES, INODE_SIZE};

type Slots = Box<[RwLock<Option<Arc<Inode>>>]>;

/// Chunks per group of the slot directory: a 1 TiB region's 128 Ki chunks are 2 Ki groups, so the
/// directory made at mount is 48 KiB, whatever the region's size, and only groups holding a live
/// inode exist.
const GROUP_CHUNKS: u64 = 64;

/// The slots of [`GROUP_CHUNKS`] chunks, each made on first use.
type Group = Box<[OnceLock<Slots>]>;

/// The free numbers and the chunks in use.
struct Free {
    /// Free inode numbers of chunks in use → generation of their last use.
    nums: BTreeMap<u64, u64>,
    /// Which chunks of the on-media table are in use.
    chunks: ChunkMap,
}

/// Live inodes by number, and the free numbers.
pub(crate) struct InodeTable {
    /// Two levels, each made on first use: groups of chunks, then one group of slots per chunk
    /// of the table (cost by use: nothing per unused chunk).
    groups: Vec<OnceLock<Group>>,
    inodes_total: u64,
    free: Mutex<Free>,
    /// Region block → (inode, file page), kept by the file maps.
    rmap: Arc<Rmap>,
    /// Options of every inode's DAX mapping.
    dax_opts: DaxOptions,
}

impl InodeTable {
    /// A table for inode numbers `1..=inodes_total` whose chunks in use are `chunks`; of their
    /// numbers, those listed in `free` are free, the others are to be [`Self::install`]ed.
    pub(super) fn new(
        inodes_total: u64,
        chunks: ChunkMap,
        free: impl IntoIterator<Item = (u64, u64)>,
        dax_opts: DaxOptions,
    ) -> Self {
        let mut groups = Vec::new();
        groups.resize_with(
            chunks.chunks().div_ceil(GROUP_CHUNKS) as usize,
            OnceLock::new,
        );
        InodeTable {
            groups,
            inodes_total,
            free: Mutex::new(Free {
                nums: free.into_iter().collect(),
                chunks,
            }),
            rmap: Arc::new(Rmap::new()),
            dax_opts,
        }
    }

    /// The slot of `ino`, its chunk's group made on first use (`None` when out of range).
    fn slot(&self, ino: Ino) -> Option<&RwLock<Option<Arc<Inode>>>> {
        let c = ino / ICHUNK_INODES;
        let group = self
            .groups
            .get((c / GROUP_CHUNKS) as usize)?
            .get_or_init(|| {
                (0..GROUP_CHUNKS)
                    .map(|_| OnceLock::new())
                    .collect::<Vec<_>>()
                    .into_boxed_slice()
            });
        let g = group[(c % GROUP_CHUNKS) as usize].get_or_init(|| {
            (0..ICHUNK_INODES)
                .map(|_| RwLock::new(None))
                .collect::<Vec<_>>()
                .into_boxed_slice()
        });
        Some(&g[(ino % ICHUNK_INODES) as usize])
    }

    /// Inode numbers of chunk `c` (record 0 is never an inode).
    fn chunk_inos(&self, c: u64) -> std::ops::Range<u64> {
        (c * ICHUNK_INODES).max(1)..((c + 1) * ICHUNK_INODES).min(self.inodes_total + 1)
    }

    /// A new in-DRAM inode `ino` with state `st`, its file map attached to the reverse map (not
    /// yet in the table).
    pub(super) fn make(&self, ino: Ino, st: IState) -> Arc<Inode> {
        let inode = Arc::new(Inode::new(ino, st, self.dax_opts));
        inode.map.attach_rmap(self.rmap.clone());
        inode
    }

    /// Puts a live inode in its slot.
    pub(super) fn install(&self, inode: Arc<Inode>) {
        if let Some(s) = self.slot(inode.ino) {
            *s.write() = Some(inode);
        }
    }

    /// The live inode `ino` (`ENOENT` when free or out of range).
    pub(super) fn get(&self, ino: Ino) -> FsResult<Arc<Inode>> {
        let c = ino / ICHUNK_INODES;
        self.groups
            .get((c / GROUP_CHUNKS) as usize)
            .and_then(|g| g.get())
            .and_then(|g| g[(c % GROUP_CHUNKS) as usize].get())
            .and_then(|g| g[(ino % ICHUNK_INODES) as usize].read().clone())
            .ok_or(Errno::ENOENT)
    }

    /// Every live inode, in inode order.
    pub(super) fn live(&self) -> Vec<Arc<Inode>> {
        self.groups
            .iter()
            .filter_map(|g| g.get())
            .flat_map(|g| g.iter().filter_map(|c| c.get()))
            .flat_map(|g| g.iter().filter_map(|s| s.read().clone()))
            .collect()
    }

    /// Takes the lowest free inode number: `(ino, generation of its last use)`. When no number
    /// of the chunks in use is free, the lowest unused chunk is made ready on `vol` first;
    /// `ENOSPC` when every chunk is in use and full, `EIO` when the new chunk cannot be written.
    pub(super) fn take_free(&self, vol: &Volume) -> FsResult<(Ino, u64)> {
        let mut free = self.free.lock();
        if free.nums.is_empty() {
            self.add_chunk(vol, &mut free)?;
        }
        free.nums.pop_first().ok_or(Errno::ENOSPC)
    }

    /// Zeroes and persists the lowest unused chunk's records, marks it in use through the
    /// journal, then makes its numbers free (generation 0: never used).
    fn add_chunk(&self, vol: &Volume, free: &mut Free) -> FsResult<()> {
        vol.writable()?;
        let c = free.chunks.first_unused().ok_or(Errno::ENOSPC)?;
        let inos = self.chunk_inos(c);
        let sb = vol.sb();
        let (off, len) = (
            sb.inode_off(inos.start),
            (inos.end - inos.start) * INODE_SIZE,
        );
        vol.region().reserve(off, len).map_err(eio)?;
        vol.region().zero(off, len).map_err(eio)?;
        vol.region().persist(off, len).map_err(eio)?;
        let recs = free.chunks.set_tx(c).ok_or(Errno::ENOSPC)?;
        let mut tx = Tx::new();
        for (at, bytes) in &recs {
            tx.write(*at, bytes);
        }
        vol.commit(tx)?;
        free.chunks.set(c);
        free.nums.extend(inos.map(|i| (i, 0)));
        Ok(())
    }

    /// Returns a number taken by [`Self::take_free`] that was not used after all.
    pub(super) fn put_free(&self, ino: Ino, generation: u64) {
        self.free.lock().nums.insert(ino, generation);
    }

    /// Empties `ino`'s slot after eviction; the number becomes free with `generation`.
    pub(super) fn remove(&self, ino: Ino, generation: u64) {
        if let Some(s) = self.slot(ino) {
            *s.write() = None;
        }
        self.free.lock().nums.insert(ino, generation);
    }

    /// Free inode numbers: those of chunks in use, and every number of the unused chunks.
    pub(super) fn free_count(&self) -> u64 {
        let free = self.free.lock();
        let in_used: u64 = free
            .chunks
            .used()
            .map(|c| self.chunk_inos(c).count() as u64)
            .sum();
        free.nums.len() as u64 + (self.inodes_total - in_used)
    }

    /// The reverse map (region block → inode, file page).
    pub(super) fn rmap(&self) -> &Rmap {
        &self.rmap
    }
}

#[cfg(test)]
mod tests {
    use super::{InodeTable, GROUP_CHUNKS};
    use crate::dax::DaxOptions;
    use crate::fs::inode::IState;
    use crate::store::{ChunkMap, InodeRec, ICHUNK_INODES};

    #[test]
    fn slots_are_made_by_use_across_groups() {
        let chunks = 3 * GROUP_CHUNKS + 5;
        let total = chunks * ICHUNK_INODES - 1;
        let t = InodeTable::new(total, ChunkMap::empty(chunks, 0), [], DaxOptions::default());
        assert_eq!(t.groups.len(), 4, "one directory entry per group of chunks");
        assert!(
            t.groups.iter().all(|g| g.get().is_none()),
            "nothing made yet"
        );
        let far = (3 * GROUP_CHUNKS + 4) * ICHUNK_INODES + 7;
        let near = ICHUNK_INODES + 1;
        for ino in [far, near, total] {
            let rec = InodeRec {
                mode: 0o100644,
                ..InodeRec::default()
            };
            t.install(t.make(ino, IState::new(rec)));
        }
        assert_eq!(t.get(far).map(|i| i.ino), Ok(far));
        assert_eq!(t.get(near).map(|i| i.ino), Ok(near));
        assert!(t.get(far + 1).is_err() && t.get(2).is_err());
        assert!(
            t.get(total + ICHUNK_INODES * GROUP_CHUNKS).is_err(),
            "out of range"
        );
        let live: Vec<u64> = t.live().iter().map(|i| i.ino).collect();
        assert_eq!(live, vec![near, far, total], "inode order");
        let made = t.groups.iter().filter(|g| g.get().is_some()).count();
        assert_eq!(made, 2, "only the groups holding inodes are made");
    }
}
