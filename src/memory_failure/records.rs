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
use super::{dedup, wait, Invalidator, Then};
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
/// durable, then the block leaves the table and, unused, returns to the allocator). Return:
/// whether it was listed, and the file page that became a hole.
fn clear_block(fs: &DaxFs, block: u64) -> FsResult<(bool, Option<(Ino, u64)>)> {
    let owner = owner_of(fs, block);
    match fs.remove_bad_block(block) {
        Ok(()) => Ok((
            true,
            match owner {
                super::rmap::Owner::Poisoned { ino, page } => Some((ino, page)),
                _ => None,
            },
        )),
        Err(Errno::ENOENT) => Ok((false, None)),
        Err(e) => Err(e),
    }
}

/// Hands the pages that became holes to `inval` (they read zeros now: the kernel must drop
/// whatever it cached), then `then` gets `res`.
fn finish(holes: Vec<(Ino, u64)>, res: FsResult<u64>, inval: &dyn Invalidator, then: Then<u64>) {
    let ranges = dedup(
        holes
            .iter()
            .map(|&(ino, p)| (ino, p * BLOCK, BLOCK))
            .collect(),
    );
    if ranges.is_empty() {
        return then(res);
    }
    inval.invalidate(ranges, Box::new(move || then(res)));
}

/// `poison clear --region`: clears every bad block of the region range (validated as for
/// injection: `EINVAL` before anything changes); `then` gets the number of blocks cleared once
/// the file pages that became holes are dropped from the kernel's caches.
///
/// Context: takes inode rwsems one at a time; never waits for the kernel.
pub fn clear_region_then(
    fs: &DaxFs,
    offset: u64,
    len: u64,
    inval: &dyn Invalidator,
    then: Then<u64>,
) {
    let (first, end) = match region_blocks(fs, offset, len) {
        Ok(r) => r,
        Err(e) => return then(Err(e)),
    };
    let bad: Vec<u64> = fs
        .bad_blocks()
        .into_iter()
        .filter(|b| (first..end).contains(b))
        .collect();
    let (mut n, mut holes, mut res) = (0, Vec::new(), Ok(()));
    for b in bad {
        match clear_block(fs, b) {
            Ok((listed, hole)) => {
                n += u64::from(listed);
                holes.extend(hole);
            }
            Err(e) => {
                res = Err(e);
                break;
            }
        }
    }
    finish(holes, res.map(|()| n), inval, then);
}

/// [`clear_region_then`], waiting for the result.
///
/// Context: blocks until the invalidation is done (never on a FUSE serving thread).
pub fn clear_region(fs: &DaxFs, offset: u64, len: u64, inval: &dyn Invalidator) -> FsResult<u64> {
    wait(|then| clear_region_then(fs, offset, len, inval, then))
}

/// `poison clear FILE`: clears the poisoned pages of bytes `[offset, offset + len)` of `ino`
/// (they become holes); `then` gets the number of pages cleared once the kernel dropped them.
///
/// Context: takes the inode rwsem per page; never waits for the kernel.
pub fn clear_file_then(
    fs: &DaxFs,
    ino: Ino,
    offset: u64,
    len: u64,
    inval: &dyn Invalidator,
    then: Then<u64>,
) {
    let (first, end, inode) = match file_pages(fs, ino, offset, len).and_then(|(f, e)| {
        let inode = fs.mf_inode(ino)?;
        Ok((f, e, inode))
    }) {
        Ok(r) => r,
        Err(e) => return then(Err(e)),
    };
    let (mut holes, mut res) = (Vec::new(), Ok(()));
    for (page, _) in inode.map.poisoned_in(first, end) {
        let r = fs.mf_clear_page(ino, page).and_then(|b| match b {
            Some(b) => match fs.remove_bad_block(b) {
                Ok(()) | Err(Errno::ENOENT) => Ok(true),
                Err(e) => Err(e),
            },
            None => Ok(false),
        });
        match r {
            Ok(true) => holes.push((ino, page)),
            Ok(false) => {}
            Err(e) => {
                res = Err(e);
                break;
            }
        }
    }
    let n = holes.len() as u64;
    finish(holes, res.map(|()| n), inval, then);
}

/// [`clear_file_then`], waiting for the result.
///
/// Context: blocks until the invalidation is done (never on a FUSE serving thread).
pub fn clear_file(
    fs: &DaxFs,
    ino: Ino,
    offset: u64,
    len: u64,
    inval: &dyn Invalidator,
) -> FsResult<u64> {
    wait(|then| clear_file_then(fs, ino, offset, len, inval, then))
}
