//! The commit step of an inode: persist its dirty data, then put its record (and, copy-on-write,
//! its block map) into a journal transaction (docs/DESIGN.md, "Durability").
//!
//! Rules it keeps: data before metadata — every inode commit persists that inode's dirty data
//! first (zeroing preallocated pages first), so a committed block map never points to blocks whose
//! contents are not durable; a block-map chain is written to fresh blocks and persisted before the
//! record naming it commits, and the old chain is freed only after (`Tx::free_after`).
//! Context: the caller holds the inode lock exclusive; takes the allocator mutex (a leaf).

use std::sync::atomic::Ordering;

use nix::errno::Errno;

use super::filemap::FileMap;
use super::inode::{IState, Inode};
use super::space::init_uninit;
use super::volume::{eio, Volume};
use super::FsResult;
use crate::store::{encode_chain, Extent, Tx, BLOCK, EXTENTS_PER_CHAIN, INLINE_EXTENTS};

/// Persists the inode's dirty data pages, merging runs of adjacent blocks.
pub(super) fn persist_data(vol: &Volume, inode: &Inode, st: &mut IState) -> FsResult<()> {
    if st.dirty_lo >= st.dirty_hi {
        return Ok(());
    }
    let (lo, hi) = (st.dirty_lo, st.dirty_hi);
    let persist = |(b, n): (u64, u64)| vol.region().persist(b * BLOCK, n * BLOCK).map_err(eio);
    let mut run: Option<(u64, u64)> = None;
    for e in inode.map.entries_in(lo, hi) {
        let s = e.index.max(lo);
        let end = e.end().min(hi);
        let b = e.value + (s - e.index);
        let n = end - s;
        match &mut run {
            Some((rb, rn)) if *rb + *rn == b => *rn += n,
            _ => {
                if let Some(r) = run {
                    persist(r)?;
                }
                run = Some((b, n));
            }
        }
    }
    if let Some(r) = run {
        persist(r)?;
    }
    st.dirty_lo = u64::MAX;
    st.dirty_hi = 0;
    Ok(())
}

/// Adds the inode's record (and, copy-on-write, its block map) to `tx`, after persisting its
/// dirty data. Context: inode lock held exclusive.
pub(super) fn inode_into(
    vol: &Volume,
    tx: &mut Tx,
    inode: &Inode,
    st: &mut IState,
) -> FsResult<()> {
    if st.rec.nlink > 0 {
        // Media never sees a mapped block with stale contents.
        init_uninit(vol, inode, st, u64::MAX, None)?;
        persist_data(vol, inode, st)?;
    }
    if st.map_dirty || st.rec.nextents as usize > INLINE_EXTENTS && st.chain.is_empty() {
        block_map_into(vol, tx, inode, st)?;
    }
    inode.atime_dirty.store(false, Ordering::Relaxed);
    st.rec.atime = inode.atime.load(Ordering::Relaxed);
    tx.write(vol.sb().inode_off(inode.ino), &st.rec.encode());
    st.dirty = false;
    st.times_dirty = false;
    Ok(())
}

/// Commits `tx` with this inode in it (the end of most single-inode changes). Context: inode
/// lock held exclusive.
pub(super) fn commit_inode(
    vol: &Volume,
    mut tx: Tx,
    inode: &Inode,
    st: &mut IState,
) -> FsResult<()> {
    inode_into(vol, &mut tx, inode, st)?;
    vol.commit(tx)
}

/// Puts the block map in the record (up to [`INLINE_EXTENTS`] extents) or in a fresh chain of
/// block-map blocks; the old chain is freed after the transaction.
fn block_map_into(vol: &Volume, tx: &mut Tx, inode: &Inode, st: &mut IState) -> FsResult<()> {
    let ext = extents_of(&inode.map);
    st.rec.nextents = ext.len() as u64;
    let chain = if ext.len() <= INLINE_EXTENTS {
        None
    } else {
        Some(write_chain(vol, inode.ino, &ext)?)
    };
    st.rec.inline = Default::default();
    tx.free_after.append(&mut st.chain);
    match chain {
        None => {
            st.rec.inline[..ext.len()].copy_from_slice(&ext);
            st.rec.map_chain = 0;
        }
        Some(blocks) => {
            st.rec.map_chain = blocks[0];
            st.chain = blocks;
        }
    }
    st.map_dirty = false;
    Ok(())
}

/// Writes `ext` to freshly allocated chain blocks (persisted); returns them in chain order.
fn write_chain(vol: &Volume, ino: u64, ext: &[Extent]) -> FsResult<Vec<u64>> {
    let n = ext.len().div_ceil(EXTENTS_PER_CHAIN);
    let mut blocks = Vec::with_capacity(n);
    {
        let mut a = vol.allocator();
        for _ in 0..n {
            let got = a.alloc_meta(blocks.last().map(|b| b + 1));
            let backed = got.map(|b| (b, vol.reserve(b, 1)));
            match backed {
                Some((b, Ok(()))) => blocks.push(b),
                Some((b, Err(e))) => {
                    a.free(b);
                    blocks.into_iter().for_each(|b| a.free(b));
                    return Err(e);
                }
                None => {
                    blocks.into_iter().for_each(|b| a.free(b));
                    return Err(Errno::ENOSPC);
                }
            }
        }
    }
    for (i, chunk) in ext.chunks(EXTENTS_PER_CHAIN).enumerate() {
        let next = blocks.get(i + 1).copied().unwrap_or(0);
        vol.write_fresh_block(blocks[i], &encode_chain(ino, next, chunk))?;
    }
    Ok(blocks)
}

/// The block-map extents (merged runs) of a map.
fn extents_of(map: &FileMap) -> Vec<Extent> {
    let mut out: Vec<Extent> = Vec::new();
    for e in map.entries() {
        let len = 1u64 << e.order;
        if let Some(l) = out.last_mut() {
            if l.page + l.len == e.index && l.block + l.len == e.value {
                l.len += len;
                continue;
            }
        }
        out.push(Extent {
            page: e.index,
            block: e.value,
            len,
        });
    }
    out
}
