//! Bad-block records: the list (`daxfs poison list`, as `/sys/block/pmemX/badblocks` prints it,
//! with the owning file where known) and clearing (`daxfs poison clear`).
//!
//! The durable record is the region's bad-block table, ranges (`DaxFs::mf_record_bad` /
//! `mf_unrecord_bad`). Clearing poisoned file pages turns them into holes (their data is lost and
//! reads as zeros), durable in one commit per inode range, and only then removes their blocks
//! from the table, which returns the ones nothing else holds to the allocator. Lock order: the
//! inode rwsem is taken by `DaxFs::mf_clear_pages` with no entry lock held.

use super::handler::{file_pages, region_blocks};
use super::{dedup, wait, Invalidator, Then};
use crate::fs::{DaxFs, FsResult, Ino};
use crate::store::BLOCK;

/// One bad range: consecutive bad blocks with the same owner and consecutive file offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BadRange {
    /// Byte offset in the region.
    pub region_offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// The inode whose page holds it (`None`: free or metadata).
    pub ino: Option<Ino>,
    /// Byte offset in that file.
    pub file_offset: Option<u64>,
}

/// What a clear did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cleared {
    /// The byte range acted on, `[start, end)`: the request widened to whole pages.
    pub range: (u64, u64),
    /// File pages cleared (holes now), as `(ino, first page, pages)` runs.
    pub pages: Vec<(Ino, u64, u64)>,
    /// Blocks removed from the bad-block table.
    pub blocks: u64,
    /// A file range: its pages that were not poisoned. A region range: its blocks that were not
    /// recorded bad.
    pub already: u64,
}

impl Cleared {
    /// File pages cleared.
    pub fn pages_cleared(&self) -> u64 {
        super::runs_summary(&self.pages).0
    }

    /// The files whose pages this call cleared.
    pub fn files(&self) -> u64 {
        super::runs_summary(&self.pages).1
    }
}

/// Every bad range, in region order, cut where the owner changes.
///
/// Context: the bad-block set (read) and the reverse map's mutex, one range at a time; cost is
/// per range and owner run, not per block.
pub fn list(fs: &DaxFs) -> Vec<BadRange> {
    let mut out = Vec::new();
    let unowned = |out: &mut Vec<BadRange>, s: u64, e: u64| {
        if s < e {
            out.push(BadRange {
                region_offset: s * BLOCK,
                len: (e - s) * BLOCK,
                ino: None,
                file_offset: None,
            });
        }
    };
    for (first, n) in fs.bad_ranges() {
        let mut at = first;
        for (b, len, ino, page) in fs.mf_rmap().within(first, first + n) {
            unowned(&mut out, at, b);
            at = b + len;
            if let Some(l) = out.last_mut() {
                let follows = l.ino == Some(ino)
                    && l.region_offset + l.len == b * BLOCK
                    && l.file_offset.map(|f| f + l.len) == Some(page * BLOCK);
                if follows {
                    l.len += len * BLOCK;
                    continue;
                }
            }
            out.push(BadRange {
                region_offset: b * BLOCK,
                len: len * BLOCK,
                ino: Some(ino),
                file_offset: Some(page * BLOCK),
            });
        }
        unowned(&mut out, at, first + n);
    }
    out
}

/// Hands the pages that became holes to `inval` (they read zeros now: the kernel must drop
/// whatever it cached), then `then` gets `res`.
/// (Also after an error: the pages cleared before it are holes already.)
fn finish(
    holes: Vec<(Ino, u64, u64)>,
    res: FsResult<Cleared>,
    inval: &dyn Invalidator,
    then: Then<Cleared>,
) {
    let ranges = dedup(
        holes
            .iter()
            .map(|&(ino, p, n)| (ino, p * BLOCK, n * BLOCK))
            .collect(),
    );
    if ranges.is_empty() {
        return then(res);
    }
    inval.invalidate(ranges, Box::new(move || then(res)));
}

/// Clears the poisoned pages of `[first, end)` of `ino` whose blocks `keep` accepts: they become
/// holes (durable), their blocks leave the table. Return: the blocks unrecorded.
fn clear_pages(
    fs: &DaxFs,
    ino: Ino,
    (first, end): (u64, u64),
    holes: &mut Vec<(Ino, u64, u64)>,
) -> FsResult<u64> {
    let runs = fs.mf_clear_pages(ino, first, end)?;
    holes.extend(runs.iter().map(|&(p, _, n)| (ino, p, n)));
    let blocks: Vec<(u64, u64)> = runs.iter().map(|&(_, b, n)| (b, n)).collect();
    fs.mf_unrecord_bad(&blocks)
}

/// `poison clear --region`: clears every bad block of the region range (validated as for
/// injection: `EINVAL` before anything changes): file pages poisoned on them become holes, then
/// the range leaves the table. `then` gets what was cleared once the file pages that became holes
/// are dropped from the kernel's caches.
///
/// Context: takes inode rwsems one at a time; never waits for the kernel.
pub fn clear_region_then(
    fs: &DaxFs,
    offset: u64,
    len: u64,
    inval: &dyn Invalidator,
    then: Then<Cleared>,
) {
    let (first, end) = match region_blocks(fs, offset, len) {
        Ok(r) => r,
        Err(e) => return then(Err(e)),
    };
    let (mut n, mut holes) = (0, Vec::new());
    let res = (|| {
        for (block, len, ino, page) in fs.mf_rmap().within(first, end) {
            let Ok(inode) = fs.mf_inode(ino) else {
                continue;
            };
            for (p, b, k) in inode.map.poisoned_runs(page, page + len) {
                if b == block + (p - page) {
                    n += clear_pages(fs, ino, (p, p + k), &mut holes)?;
                }
            }
        }
        n += fs.mf_unrecord_bad(&[(first, end - first)])?;
        Ok(Cleared {
            range: (first * BLOCK, end * BLOCK),
            pages: holes.clone(),
            blocks: n,
            already: (end - first) - n,
        })
    })();
    finish(holes, res, inval, then);
}

/// [`clear_region_then`], waiting for the result.
///
/// Context: blocks until the invalidation is done (never on a FUSE serving thread).
pub fn clear_region(
    fs: &DaxFs,
    offset: u64,
    len: u64,
    inval: &dyn Invalidator,
) -> FsResult<Cleared> {
    wait(|then| clear_region_then(fs, offset, len, inval, then))
}

/// `poison clear FILE`: clears the poisoned pages of bytes `[offset, offset + len)` of `ino`
/// (they become holes, in one commit); `then` gets what was cleared once the kernel dropped
/// them.
///
/// Context: takes the inode rwsem once; never waits for the kernel.
pub fn clear_file_then(
    fs: &DaxFs,
    ino: Ino,
    offset: u64,
    len: u64,
    inval: &dyn Invalidator,
    then: Then<Cleared>,
) {
    let mut holes = Vec::new();
    let res = file_pages(fs, ino, offset, len).and_then(|(first, end)| {
        let blocks = clear_pages(fs, ino, (first, end), &mut holes)?;
        let cleared: u64 = holes.iter().map(|h| h.2).sum();
        Ok(Cleared {
            range: (first * BLOCK, end * BLOCK),
            pages: holes.clone(),
            blocks,
            already: (end - first) - cleared,
        })
    });
    finish(holes, res, inval, then);
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
) -> FsResult<Cleared> {
    wait(|then| clear_file_then(fs, ino, offset, len, inval, then))
}
