//! Bad-block records: the list (`daxfs poison list`, as `/sys/block/pmemX/badblocks` prints it,
//! with the owning file where known) and clearing (`daxfs poison clear`).
//!
//! The durable record is the region's bad-block table (`DaxFs::add_bad_block` /
//! `remove_bad_block`). Clearing a poisoned file page turns it into a hole (its data is lost and
//! reads as zeros), durable, and only then removes the block from the table, which returns it to
//! the allocator. Lock order: the inode rwsem is taken by `DaxFs::mf_clear_page` with no entry
//! lock held.

use super::handler::{file_pages, region_blocks};
use super::rmap::owner_of;
use crate::fs::{DaxFs, Errno, FsResult, Ino};
use crate::store::BLOCK;

/// One bad range: consecutive bad blocks with the same owner and consecutive file offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BadRange {
    /// Byte offset in the region.
    pub region_offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// The inode whose poisoned page holds it (`None`: free or metadata).
    pub ino: Option<Ino>,
    /// Byte offset in that file.
    pub file_offset: Option<u64>,
}

/// Every bad range, in region order.
///
/// Context: lock-free reverse-map scans; may be slow with very many bad blocks and files.
pub fn list(fs: &DaxFs) -> Vec<BadRange> {
    let mut out: Vec<BadRange> = Vec::new();
    for b in fs.bad_blocks() {
        let owner = owner_of(fs, b).file();
        let (ino, file_offset) = match owner {
            Some((ino, page)) => (Some(ino), Some(page * BLOCK)),
            None => (None, None),
        };
        if let Some(last) = out.last_mut() {
            let follows = last.region_offset + last.len == b * BLOCK
                && last.ino == ino
                && match (last.file_offset, file_offset) {
                    (Some(lf), Some(f)) => lf + last.len == f,
                    (None, None) => true,
                    _ => false,
                };
            if follows {
                last.len += BLOCK;
                continue;
            }
        }
        out.push(BadRange {
            region_offset: b * BLOCK,
            len: BLOCK,
            ino,
            file_offset,
        });
    }
    out
}

/// Clears one bad block (`DaxFs::remove_bad_block`: a file page poisoned on it becomes a hole,
/// durable, then the block leaves the table and, unused, returns to the allocator).
fn clear_block(fs: &DaxFs, block: u64) -> FsResult<bool> {
    match fs.remove_bad_block(block) {
        Ok(()) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `poison clear --region`: clears every bad block of the region range (validated as for
/// injection: `EINVAL` before anything changes). Return: the number of blocks cleared.
pub fn clear_region(fs: &DaxFs, offset: u64, len: u64) -> FsResult<u64> {
    let (first, end) = region_blocks(fs, offset, len)?;
    let bad: Vec<u64> = fs
        .bad_blocks()
        .into_iter()
        .filter(|b| (first..end).contains(b))
        .collect();
    let mut n = 0;
    for b in bad {
        n += u64::from(clear_block(fs, b)?);
    }
    Ok(n)
}

/// `poison clear FILE`: clears the poisoned pages of bytes `[offset, offset + len)` of `ino`
/// (they become holes). Return: the number of pages cleared.
pub fn clear_file(fs: &DaxFs, ino: Ino, offset: u64, len: u64) -> FsResult<u64> {
    let (first, end) = file_pages(fs, ino, offset, len)?;
    let inode = fs.mf_inode(ino)?;
    let mut n = 0;
    for (page, _) in inode.map.poisoned_in(first, end) {
        if let Some(b) = fs.mf_clear_page(ino, page)? {
            match fs.remove_bad_block(b) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
            n += 1;
        }
    }
    Ok(n)
}
