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

/// The free numbers and the chunks in use.
struct Free {
    /// Free inode numbers of chunks in use → generation of their last use.
    nums: BTreeMap<u64, u64>,
    /// Which chunks of the on-media table are in use.
    chunks: ChunkMap,
}

/// Live inodes by number, and the free numbers.
pub(crate) struct InodeTable {
    /// One lazily made group of slots per chunk of the table.
    slots: Vec<OnceLock<Slots>>,
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
        let mut slots = Vec::with_capacity(chunks.chunks() as usize);
        slots.resize_with(chunks.chunks() as usize, OnceLock::new);
        InodeTable {
            slots,
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
        let group = self.slots.get((ino / ICHUNK_INODES) as usize)?;
        let g = group.get_or_init(|| {
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
        self.slots
            .get((ino / ICHUNK_INODES) as usize)
            .and_then(|g| g.get())
            .and_then(|g| g[(ino % ICHUNK_INODES) as usize].read().clone())
            .ok_or(Errno::ENOENT)
    }

    /// Every live inode, in inode order.
    pub(super) fn live(&self) -> Vec<Arc<Inode>> {
        self.slots
            .iter()
            .filter_map(|g| g.get())
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
