//! The inode table in DRAM: one slot per inode number holding the live inode, and the free inode
//! numbers with the generation of their last use.
//!
//! Owns: which inode numbers are live and which are free. A slot holds an `Arc<Inode>`, so an
//! inode looked up stays usable (as an evicted inode) after it leaves the table. Locks: each
//! slot's rwlock and the free list's mutex are leaves, held only to copy an `Arc` in or out.
//! Every inode the table makes is attached to the filesystem's reverse map (memory failure) and
//! gets the mount's DAX mapping options (the historical bugs switched on, docs/DAX-BUGS.md).

use std::collections::BTreeMap;
use std::sync::Arc;

use nix::errno::Errno;
use parking_lot::{Mutex, RwLock};

use super::filemap::Rmap;
use super::inode::{IState, Inode};
use super::types::Ino;
use super::FsResult;
use crate::dax::DaxOptions;

/// Live inodes by number, and the free numbers.
pub(crate) struct InodeTable {
    slots: Vec<RwLock<Option<Arc<Inode>>>>,
    /// Free inode numbers → generation of their last use.
    free: Mutex<BTreeMap<u64, u64>>,
    /// Region block → (inode, file page), kept by the file maps.
    rmap: Arc<Rmap>,
    /// Options of every inode's DAX mapping.
    dax_opts: DaxOptions,
}

impl InodeTable {
    /// A table for inode numbers `1..=inodes_total`, all free until [`Self::install`]ed except
    /// those not listed in `free`.
    pub(super) fn new(
        inodes_total: u64,
        free: impl IntoIterator<Item = (u64, u64)>,
        dax_opts: DaxOptions,
    ) -> Self {
        let mut slots = Vec::with_capacity(inodes_total as usize + 1);
        slots.resize_with(inodes_total as usize + 1, || RwLock::new(None));
        InodeTable {
            slots,
            free: Mutex::new(free.into_iter().collect()),
            rmap: Arc::new(Rmap::new()),
            dax_opts,
        }
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
        let ino = inode.ino as usize;
        *self.slots[ino].write() = Some(inode);
    }

    /// The live inode `ino` (`ENOENT` when free or out of range).
    pub(super) fn get(&self, ino: Ino) -> FsResult<Arc<Inode>> {
        self.slots
            .get(ino as usize)
            .and_then(|s| s.read().clone())
            .ok_or(Errno::ENOENT)
    }

    /// Every live inode, in inode order.
    pub(super) fn live(&self) -> Vec<Arc<Inode>> {
        self.slots.iter().filter_map(|s| s.read().clone()).collect()
    }

    /// Takes the lowest free inode number: `(ino, generation of its last use)`; `ENOSPC` when
    /// none is free.
    pub(super) fn take_free(&self) -> FsResult<(Ino, u64)> {
        self.free.lock().pop_first().ok_or(Errno::ENOSPC)
    }

    /// Returns a number taken by [`Self::take_free`] that was not used after all.
    pub(super) fn put_free(&self, ino: Ino, generation: u64) {
        self.free.lock().insert(ino, generation);
    }

    /// Empties `ino`'s slot after eviction; the number becomes free with `generation`.
    pub(super) fn remove(&self, ino: Ino, generation: u64) {
        *self.slots[ino as usize].write() = None;
        self.free.lock().insert(ino, generation);
    }

    /// Free inode numbers.
    pub(super) fn free_count(&self) -> u64 {
        self.free.lock().len() as u64
    }

    /// The reverse map (region block → inode, file page).
    pub(super) fn rmap(&self) -> &Rmap {
        &self.rmap
    }
}
