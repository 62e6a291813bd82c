//! The memory-failure handler: one failed region block at a time, lock-then-walk (see the module
//! documentation of [`crate::memory_failure`] for the steps and the lock order).

use super::rmap::owner_of;
use super::{dedup, wait, Invalidator, Then};
use crate::fs::filemap::Poisoned;
use crate::fs::{DaxFs, Errno, FileKind, FsResult, Ino};
use crate::store::BLOCK;

/// How often a block that keeps moving under us is looked up again before it is just recorded.
const MAX_RETRIES: usize = 8;

/// What an injection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    /// Blocks newly or again recorded bad.
    pub blocks: u64,
    /// File pages poisoned by this call, as `(ino, page)`.
    pub pages: Vec<(Ino, u64)>,
    /// Ranges invalidated in the kernel, as `(ino, offset, len)` (whole entries: 2 MiB or 4 KiB).
    pub invalidated: Vec<(Ino, u64, u64)>,
}

/// `memory_failure()` for region block `block`; `hint` is where the caller believes it is mapped.
///
/// Context: takes no inode rwsem; may sleep on one DAX entry lock at a time.
fn fail_block(
    fs: &DaxFs,
    block: u64,
    hint: Option<(Ino, u64)>,
    out: &mut Injected,
) -> FsResult<()> {
    let mut hint = hint;
    let mut recorded = false;
    for _ in 0..MAX_RETRIES {
        let owner = match hint.take() {
            Some((ino, page)) => Some((ino, page)),
            None => owner_of(fs, block).file(),
        };
        let Some((ino, page)) = owner else {
            if recorded {
                return Ok(());
            }
            // Free or metadata: recorded bad, hence never allocated again. A writer may have
            // been handed the block just before: look once more after recording.
            fs.record_bad_block(block)?;
            out.blocks += 1;
            recorded = true;
            continue;
        };
        let Ok(inode) = fs.mf_inode(ino) else {
            continue; // evicted meanwhile
        };
        let r = inode
            .map
            .poison_page(page, block, || fs.record_bad_block(block))?;
        match r {
            Poisoned::Mapped { first, nr_pages } => {
                if !recorded {
                    out.blocks += 1;
                }
                out.pages.push((ino, page));
                out.invalidated.push((ino, first * BLOCK, nr_pages * BLOCK));
                return Ok(());
            }
            Poisoned::Already => {
                if !recorded {
                    out.blocks += 1;
                }
                return Ok(());
            }
            Poisoned::Moved => {}
        }
    }
    // Still moving after the retries: keep it recorded; the owner learns of it at next mount.
    fs.record_bad_block(block)?;
    if !recorded {
        out.blocks += 1;
    }
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
/// changes). Every block is handled by the memory-failure path; `then` gets the result once the
/// poisoned ranges are unmapped from every user mapping (also after an error partway: what was
/// poisoned is unmapped first).
///
/// Context: may sleep on entry locks; takes no lock across blocks; never waits for the kernel.
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
    let mut out = Injected::default();
    let mut res = Ok(());
    for b in first..end {
        if let Err(e) = fail_block(fs, b, None, &mut out) {
            res = Err(e);
            break;
        }
    }
    finish(out, res, inval, then);
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
/// (widened to whole pages; holes have no media and are skipped). `EINVAL` for a zero length, a
/// range past the end of the file or a file that is not regular, before anything changes. `then`
/// as for [`inject_region_then`].
///
/// Context: may sleep on entry locks; takes no lock across pages; never waits for the kernel.
pub fn inject_file_then(
    fs: &DaxFs,
    ino: Ino,
    offset: u64,
    len: u64,
    inval: &dyn Invalidator,
    then: Then<Injected>,
) {
    let (first, end, inode) = match file_pages(fs, ino, offset, len).and_then(|(f, e)| {
        let inode = fs.mf_inode(ino)?;
        Ok((f, e, inode))
    }) {
        Ok(r) => r,
        Err(e) => return then(Err(e)),
    };
    let mut out = Injected::default();
    let mut res = Ok(());
    for page in first..end {
        let at = match inode.map.lookup(page) {
            Some((b, _)) => Some(b),
            None => inode.map.poisoned_block(page),
        };
        let Some(block) = at else { continue };
        if let Err(e) = fail_block(fs, block, Some((ino, page)), &mut out) {
            res = Err(e);
            break;
        }
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
