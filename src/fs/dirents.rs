//! Directory entries on media: adding, re-pointing and removing the slots of a directory's blocks
//! and keeping its in-DRAM [`Dir`](super::inode::Dir) in step.
//!
//! Rules it keeps: a new directory block is zeroed and persisted before a transaction references
//! it; every slot change goes into the caller's transaction, which commits it whole. Context: the
//! caller holds the namespace mutex and the directory's inode lock exclusive.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;

use super::inode::{IState, Inode, Slot};
use super::types::{FileKind, Ino};
use super::volume::Volume;
use super::FsResult;
use crate::store::{dirent_off, Dirent, Tx, DIRENTS_PER_BLOCK, DIRENT_SIZE};

/// The (inode, kind) that entry `name` of directory `p` names: `ENOTDIR` when `p` is not a
/// directory, `ENOENT` when there is no such entry. Context: takes `p`'s lock shared.
pub(super) fn dirent_of(p: &Inode, name: &OsStr) -> FsResult<(Ino, FileKind)> {
    let st = p.state.read();
    let s = st
        .dir
        .as_ref()
        .ok_or(Errno::ENOTDIR)?
        .get(name)
        .ok_or(Errno::ENOENT)?;
    Ok((s.ino, s.kind))
}

/// Puts a new entry in directory `p`, growing it by a zeroed block if needed.
pub(super) fn add_dirent(
    vol: &Volume,
    tx: &mut Tx,
    p: &Inode,
    pst: &mut IState,
    name: &OsStr,
    (ino, kind): (Ino, FileKind),
) -> FsResult<()> {
    let s = pst.dir.as_ref().ok_or(Errno::ENOTDIR)?.next_free();
    let page = s as u64 / DIRENTS_PER_BLOCK;
    let block = match p.map.lookup(page) {
        Some((b, _)) => b,
        None => grow_dir(vol, p, pst, page)?,
    };
    let de = Dirent {
        ino,
        kind,
        name: name.as_bytes().to_vec(),
    };
    tx.write(dirent_off(block, s as u64), &de.encode());
    pst.dir.as_mut().expect("dir").insert(
        s,
        Slot {
            ino,
            kind,
            name: name.to_owned(),
        },
    );
    Ok(())
}

/// Maps a fresh zeroed block at directory page `page`; the directory grows over it.
fn grow_dir(vol: &Volume, p: &Inode, pst: &mut IState, page: u64) -> FsResult<u64> {
    let goal = page
        .checked_sub(1)
        .and_then(|q| p.map.lookup(q))
        .map(|x| x.0 + 1);
    let b = vol.alloc_block(goal)?;
    vol.write_fresh_block(b, &[])?;
    if let Err(e) = p.map.map(page, 0, b) {
        vol.free_unused([b]);
        return Err(e);
    }
    let bytes = (page + 1) * crate::store::BLOCK;
    pst.rec.size = pst.rec.size.max(bytes);
    pst.map_dirty = true;
    let dir = pst.dir.as_mut().expect("dir");
    let cap = ((page + 1) * DIRENTS_PER_BLOCK) as usize;
    for i in dir.slots.len()..cap {
        dir.free.insert(i);
    }
    dir.slots.resize(dir.slots.len().max(cap), None);
    Ok(b)
}

/// The region offset of slot `s` of directory `p`.
fn slot_off(p: &Inode, s: usize) -> FsResult<u64> {
    let page = s as u64 / DIRENTS_PER_BLOCK;
    let (b, _) = p.map.lookup(page).ok_or(Errno::EIO)?;
    Ok(dirent_off(b, s as u64))
}

/// Removes entry `name` of directory `p`; returns what it named.
pub(super) fn remove_dirent(
    tx: &mut Tx,
    p: &Inode,
    pst: &mut IState,
    name: &OsStr,
) -> FsResult<Slot> {
    let dir = pst.dir.as_mut().ok_or(Errno::ENOTDIR)?;
    let (s, slot) = dir.remove(name).ok_or(Errno::ENOENT)?;
    tx.write(slot_off(p, s)?, &[0u8; DIRENT_SIZE as usize]);
    Ok(slot)
}

/// Points the existing entry `name` of `p` at (`ino`, `kind`).
pub(super) fn set_dirent(
    tx: &mut Tx,
    p: &Inode,
    pst: &mut IState,
    name: &OsStr,
    (ino, kind): (Ino, FileKind),
) -> FsResult<()> {
    let dir = pst.dir.as_mut().ok_or(Errno::ENOTDIR)?;
    let s = *dir.names.get(name).ok_or(Errno::ENOENT)?;
    let slot = dir.slots[s].as_mut().ok_or(Errno::EIO)?;
    slot.ino = ino;
    slot.kind = kind;
    let de = Dirent {
        ino,
        kind,
        name: name.as_bytes().to_vec(),
    };
    tx.write(slot_off(p, s)?, &de.encode());
    Ok(())
}
