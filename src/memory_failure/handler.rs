//! The memory-failure handler: inject poison into a file range or a region range, one
//! lock-then-walk step per inode range (see the module documentation of
//! [`crate::memory_failure`] for the steps, the lock order and why it is atomic).

use std::cell::Cell;

use super::{dedup, wait, Invalidator, Then};
use crate::fs::{DaxFs, Errno, FileKind, FsResult, Ino};
use crate::store::BLOCK;

/// How often the owners of a region range are looked up again when blocks move under us.
const MAX_RETRIES: usize = 8;

/// What an injection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    /// The byte range acted on, `[start, end)`: the request widened to whole pages.
    pub range: (u64, u64),
    /// Blocks newly recorded bad.
    pub blocks: u64,
    /// File pages poisoned by this call, as `(ino, first page, pages)` runs.
    pub pages: Vec<(Ino, u64, u64)>,
    /// A file range: its pages that were poisoned already. A region range: its blocks that were
    /// recorded bad already.
    pub already: u64,
    /// Pages of a file range that are holes: no media there, nothing poisoned.
    pub holes: u64,
    /// Ranges invalidated in the kernel, as `(ino, offset, len)` (whole entries: 2 MiB or 4 KiB).
    pub invalidated: Vec<(Ino, u64, u64)>,
}

impl Injected {
    /// File pages poisoned by this call.
    pub fn pages_poisoned(&self) -> u64 {
        super::runs_summary(&self.pages).0
    }

    /// The files whose pages this call poisoned.
    pub fn files(&self) -> u64 {
        super::runs_summary(&self.pages).1
    }
}

/// Lock-then-walk on pages `[first, end)` of `ino`: poisons the pages `keep` accepts, recording
/// their blocks with `record` under the entry locks (see [`super::walk`]).
fn poison_pages(
    fs: &DaxFs,
    ino: Ino,
    (first, end): (u64, u64),
    keep: impl Fn(u64, u64) -> bool,
    record: bool,
    out: &mut Injected,
) -> FsResult<()> {
    let inode = fs.mf_inode(ino)?;
    let added = Cell::new(0);
    let r = super::walk::poison_range(&inode.map, first, end, keep, |blocks| {
        if record {
            added.set(fs.mf_record_bad(blocks)?);
        }
        Ok(())
    })?;
    out.blocks += added.get();
    out.already += r.already;
    out.holes += r.holes;
    out.pages
        .extend(r.runs.iter().map(|&(p, _, n)| (ino, p, n)));
    out.invalidated
        .extend(r.unmap.iter().map(|&(p, n)| (ino, p * BLOCK, n * BLOCK)));
    Ok(())
}

/// Hands the collected invalidations (every entry is unlocked by now) to `inval`, which runs
/// `then` with `res` once the kernel has dropped them.
fn finish(out: Injected, res: FsResult<()>, inval: &dyn Invalidator, then: Then<Injected>) {
    let ranges = dedup(out.invalidated.clone());
    let r = res.map(|()| out);
    if ranges.is_empty() {
        return then(r);
    }
    inval.invalidate(ranges, Box::new(move || then(r)));
}

/// Injects poison into the region blocks of `[offset, offset + len)` (a region offset; must be
/// 4 KiB-aligned, non-empty and inside the data area: `EINVAL` otherwise, before anything
/// changes). The whole range is recorded bad in one durable update first (all or nothing: on an
/// error nothing is bad); then every file page on one of its blocks is poisoned, one inode range
/// at a time. `then` gets the result once the poisoned ranges are unmapped from every user
/// mapping.
///
/// Context: may sleep on entry locks; holds entries of one inode at a time; never waits for the
/// kernel.
pub fn inject_region_then(
    fs: &DaxFs,
    offset: u64,
    len: u64,
    inval: &dyn Invalidator,
    then: Then<Injected>,
) {
    let (first, end) = match region_blocks(fs, offset, len) {
        Ok(r) => r,
        Err(e) => return then(Err(e)),
    };
    let mut out = Injected {
        range: (first * BLOCK, end * BLOCK),
        ..Injected::default()
    };
    match fs.mf_record_bad(&[(first, end - first)]) {
        Ok(n) => out.blocks = n,
        Err(e) => return then(Err(e)),
    }
    let mut res = Ok(());
    for _ in 0..MAX_RETRIES {
        let todo = unpoisoned_owners(fs, first, end);
        if todo.is_empty() {
            break;
        }
        for (block, n, ino, page) in todo {
            let keep = move |p: u64, b: u64| b == block + (p - page);
            match poison_pages(fs, ino, (page, page + n), keep, false, &mut out) {
                Ok(()) | Err(Errno::ENOENT) => {} // evicted meanwhile: its blocks are free
                Err(e) => res = Err(e),
            }
        }
        if res.is_err() {
            break;
        }
    }
    out.already = (end - first) - out.blocks;
    finish(out, res, inval, then);
}

/// The reverse-map runs of blocks `[first, end)` whose file pages are not poisoned on them yet,
/// as `(block, len, ino, page)`.
fn unpoisoned_owners(fs: &DaxFs, first: u64, end: u64) -> Vec<(u64, u64, u64, u64)> {
    let mut out = Vec::new();
    for (block, n, ino, page) in fs.mf_rmap().within(first, end) {
        let done: u64 = match fs.mf_inode(ino) {
            Ok(inode) => inode
                .map
                .poisoned_runs(page, page + n)
                .iter()
                .filter(|&&(p, b, _)| b == block + (p - page))
                .map(|r| r.2)
                .sum(),
            Err(_) => continue,
        };
        if done < n {
            out.push((block, n, ino, page));
        }
    }
    out
}

/// [`inject_region_then`], waiting for the result.
///
/// Context: blocks until the invalidation is done (never on a FUSE serving thread).
pub fn inject_region(
    fs: &DaxFs,
    offset: u64,
    len: u64,
    inval: &dyn Invalidator,
) -> FsResult<Injected> {
    wait(|then| inject_region_then(fs, offset, len, inval, then))
}

/// Injects poison into the blocks mapping bytes `[offset, offset + len)` of regular file `ino`
/// (widened to whole pages; holes have no media and are counted, not poisoned). `EINVAL` for a
/// zero length, a range past the end of the file or a file that is not regular, before anything
/// changes. One lock-then-walk step over the whole range: its entries are locked, all its blocks
/// recorded in one durable update (on an error nothing is poisoned), then its pages marked and
/// unmapped. `then` as for [`inject_region_then`].
///
/// Context: may sleep on entry locks (this inode's, ascending); never waits for the kernel.
pub fn inject_file_then(
    fs: &DaxFs,
    ino: Ino,
    offset: u64,
    len: u64,
    inval: &dyn Invalidator,
    then: Then<Injected>,
) {
    let range = match file_pages(fs, ino, offset, len) {
        Ok(r) => r,
        Err(e) => return then(Err(e)),
    };
    let mut out = Injected {
        range: (range.0 * BLOCK, range.1 * BLOCK),
        ..Injected::default()
    };
    let res = poison_pages(fs, ino, range, |_, _| true, true, &mut out);
    if res.is_err() {
        // Nothing was poisoned (the record failed before any page was marked).
        return then(res.map(|()| out));
    }
    finish(out, res, inval, then);
}

/// [`inject_file_then`], waiting for the result.
///
/// Context: blocks until the invalidation is done (never on a FUSE serving thread).
pub fn inject_file(
    fs: &DaxFs,
    ino: Ino,
    offset: u64,
    len: u64,
    inval: &dyn Invalidator,
) -> FsResult<Injected> {
    wait(|then| inject_file_then(fs, ino, offset, len, inval, then))
}

/// Validates a region range: the blocks `[first, end)`.
pub(crate) fn region_blocks(fs: &DaxFs, offset: u64, len: u64) -> FsResult<(u64, u64)> {
    let end = offset.checked_add(len).ok_or(Errno::EINVAL)?;
    let (data_start, total) = fs.mf_data_area();
    if len == 0 || offset % BLOCK != 0 || offset / BLOCK < data_start {
        return Err(Errno::EINVAL);
    }
    let last = end.div_ceil(BLOCK);
    if last > total {
        return Err(Errno::EINVAL);
    }
    Ok((offset / BLOCK, last))
}

/// Validates a file range: the pages `[first, end)`.
pub(crate) fn file_pages(fs: &DaxFs, ino: Ino, offset: u64, len: u64) -> FsResult<(u64, u64)> {
    let a = fs.getattr(ino)?;
    if a.kind != FileKind::Regular {
        return Err(Errno::EINVAL);
    }
    let end = offset.checked_add(len).ok_or(Errno::EINVAL)?;
    if len == 0 || end > a.size {
        return Err(Errno::EINVAL);
    }
    Ok((offset / BLOCK, end.div_ceil(BLOCK)))
}
