//! Atomic exchange of two file ranges, the `XFS_IOC_EXCHANGE_RANGE` operation (xfs_io
//! `exchangerange`): the blocks behind `length` bytes at `file1_offset` of one file trade places
//! with those at `file2_offset` of the other (or of the same file), in one journal commit, so after
//! a crash either both ranges are exchanged or neither.
//!
//! Checks, all made before anything changes and in the kernel's order (`xfs_exchange_range` and
//! `xfs_exchange_range_checks`, with a 4 KiB allocation unit): unknown flags `EINVAL`; a directory
//! `EISDIR`, another non-regular file `EINVAL`; an immutable or append-only inode `EPERM`; a range
//! starting past its file's end, an unaligned start, an offset that wraps, a range ending past
//! its file's end (unless `TO_EOF`), a length past the caller's file-size limit (an exchange is a
//! write), an unaligned length that does not end at a file's end, an overlap within one file:
//! `EINVAL`. The caller's fds (open mode, same mount) are checked by the FUSE adapter, which alone
//! sees them.
//!
//! The exchange itself swaps block-map entries, never data: both ranges' direct mappings are
//! revoked first (an unacknowledged holder makes it `EBUSY` before any change: a moved block must
//! not stay mapped into the other file), both files' pending data is persisted, the ranges are
//! unmapped and each file maps the other's blocks (PMD entries where a 2 MiB-aligned run lands on
//! a 2 MiB-aligned page), then `TO_EOF` swaps the sizes, both files get new mtime/ctime and lose
//! S_ISUID/S_ISGID as after a write. A range holding a poisoned page is refused with `EIO`
//! (its bad block would move to the other file). `FILE1_WRITTEN` exchanges only the pages where
//! file1 has blocks; `DRY_RUN` stops after the checks; `DSYNC` needs nothing more (every commit is
//! durable on return).
//!
//! Context: takes the two inode locks exclusive in inode order (one for the same file), then DAX
//! entry locks through the block maps; the caller invalidates the kernel's caches of both ranges
//! after it returns.

use std::sync::Arc;

use nix::errno::Errno;

use super::attrs::kill_suid;
use super::commit::{inode_into, persist_data};
use super::filemap::{run_entries, FileMap};
use super::iflags;
use super::inode::{IState, Inode};
use super::itable::InodeTable;
use super::layout::LayoutChange;
use super::space::init_uninit;
use super::time::now_ns;
use super::types::{Ctx, Ino};
use super::volume::Volume;
use super::FsResult;
use crate::store::{Tx, BLOCK, MAX_FILE_SIZE};

/// Exchange to the end of both files and swap their sizes (`length` is ignored).
pub const EXCHANGE_RANGE_TO_EOF: u64 = 1 << 0;
/// Flush both files before returning (daxfs commits durably anyway).
pub const EXCHANGE_RANGE_DSYNC: u64 = 1 << 1;
/// Check everything, change nothing.
pub const EXCHANGE_RANGE_DRY_RUN: u64 = 1 << 2;
/// Exchange only the pages where file1 has blocks (its written parts).
pub const EXCHANGE_RANGE_FILE1_WRITTEN: u64 = 1 << 3;
/// Every flag a caller may pass.
pub const EXCHANGE_RANGE_ALL_FLAGS: u64 = EXCHANGE_RANGE_TO_EOF
    | EXCHANGE_RANGE_DSYNC
    | EXCHANGE_RANGE_DRY_RUN
    | EXCHANGE_RANGE_FILE1_WRITTEN;

/// One exchange request (`struct xfs_exchange_range` with file1 resolved to an inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExchangeRange {
    /// The other file (the ioctl's `file1_fd`).
    pub file1: Ino,
    /// Byte offset in file1.
    pub file1_offset: u64,
    /// The file the request was issued on.
    pub file2: Ino,
    /// Byte offset in file2.
    pub file2_offset: u64,
    /// Bytes to exchange (ignored with `TO_EOF`).
    pub length: u64,
    /// `EXCHANGE_RANGE_*` flags.
    pub flags: u64,
    /// The caller's file-size limit (`RLIMIT_FSIZE`), `None` for unlimited.
    pub fsize_limit: Option<u64>,
}

/// What an exchange changed: the byte ranges whose contents moved, as `(ino, offset, len)` (the
/// kernel's cached pages of them are stale), empty for a dry run or an empty range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exchanged {
    /// Ranges to invalidate.
    pub ranges: Vec<(Ino, u64, u64)>,
}

/// The two inodes of an exchange, locked exclusive in inode order (once for the same file).
struct Pair<'a> {
    one: parking_lot::RwLockWriteGuard<'a, IState>,
    two: Option<parking_lot::RwLockWriteGuard<'a, IState>>,
    first_is_file1: bool,
}

impl Pair<'_> {
    fn st1(&mut self) -> &mut IState {
        match (&mut self.two, self.first_is_file1) {
            (Some(t), false) => t,
            _ => &mut self.one,
        }
    }
    fn st2(&mut self) -> &mut IState {
        match (&mut self.two, self.first_is_file1) {
            (Some(t), true) => t,
            _ => &mut self.one,
        }
    }
}

fn lock_pair<'a>(i1: &'a Inode, i2: &'a Inode) -> Pair<'a> {
    if i1.ino == i2.ino {
        return Pair {
            one: i1.state.write(),
            two: None,
            first_is_file1: true,
        };
    }
    let first_is_file1 = i1.ino < i2.ino;
    let (a, b) = if first_is_file1 { (i1, i2) } else { (i2, i1) };
    let one = a.state.write();
    Pair {
        one,
        two: Some(b.state.write()),
        first_is_file1,
    }
}

/// The checked request: page ranges and the byte length to exchange.
#[derive(Clone, Copy, Debug)]
struct Plan {
    p1: u64,
    p2: u64,
    pages: u64,
    length: u64,
}

/// `xfs_exchange_range_checks` with a 4 KiB allocation unit (see the module documentation).
fn check(req: &ExchangeRange, size1: u64, size2: u64, same: bool) -> FsResult<Plan> {
    let (o1, o2) = (req.file1_offset, req.file2_offset);
    if o1 > size1 || o2 > size2 {
        return Err(Errno::EINVAL);
    }
    let to_eof = req.flags & EXCHANGE_RANGE_TO_EOF != 0;
    let length = if to_eof {
        (size1 - o1).max(size2 - o2)
    } else {
        req.length
    };
    if o1 % BLOCK != 0 || o2 % BLOCK != 0 {
        return Err(Errno::EINVAL);
    }
    let (e1, e2) = match (o1.checked_add(length), o2.checked_add(length)) {
        (Some(a), Some(b)) if a <= i64::MAX as u64 && b <= i64::MAX as u64 => (a, b),
        _ => return Err(Errno::EINVAL),
    };
    if !to_eof && (e1 > size1 || e2 > size2) {
        return Err(Errno::EINVAL);
    }
    // An exchange writes both ranges: the caller's file-size limit and the format's maximum
    // cut the length, and a cut length is refused (as generic_write_check_limits is used).
    let limit = req.fsize_limit.unwrap_or(u64::MAX).min(MAX_FILE_SIZE);
    if length > 0 && (e1 > limit || e2 > limit) {
        return Err(if o1 >= limit || o2 >= limit {
            Errno::EFBIG
        } else {
            Errno::EINVAL
        });
    }
    let blen = if e1 == size1 {
        size1.div_ceil(BLOCK) * BLOCK - o1
    } else if e2 == size2 {
        size2.div_ceil(BLOCK) * BLOCK - o2
    } else if length % BLOCK != 0 {
        return Err(Errno::EINVAL);
    } else {
        length
    };
    if same && o2 + blen > o1 && o1 + blen > o2 {
        return Err(Errno::EINVAL);
    }
    if length % BLOCK != 0 {
        // A partial last block may only be exchanged at the end of both files (or of the
        // file whose end the range reaches, when the other's range ends there too).
        let mut b = length;
        if e2 < size2 {
            b &= !(BLOCK - 1);
        }
        if o1 + b < size1 {
            b &= !(BLOCK - 1);
        }
        if b != length {
            return Err(Errno::EINVAL);
        }
    }
    Ok(Plan {
        p1: o1 / BLOCK,
        p2: o2 / BLOCK,
        pages: length.div_ceil(BLOCK),
        length,
    })
}

/// The blocks behind pages `[first, first + n)` of `map` as `(page - first, block, count)` runs.
fn runs_of(map: &FileMap, first: u64, n: u64) -> Vec<(u64, u64, u64)> {
    map.entries_in(first, first + n)
        .into_iter()
        .map(|e| {
            let (s, t) = (e.index.max(first), e.end().min(first + n));
            (s - first, e.value + (s - e.index), t - s)
        })
        .collect()
}

/// Maps the `(relative page, block, count)` runs at page `base` of `map`: PMD entries where an
/// aligned run of 512 lands on an aligned page, PTE entries elsewhere.
fn map_runs(map: &FileMap, base: u64, runs: &[(u64, u64, u64)]) -> FsResult<()> {
    for &(rel, block, n) in runs {
        for (p, order, b) in run_entries(base + rel, block, n) {
            map.map(p, order, b)?;
        }
    }
    Ok(())
}

/// The relative page runs `(start, count)` to exchange: the whole range, or with
/// `FILE1_WRITTEN` the pages where file1 has blocks.
fn selection(map1: &FileMap, plan: &Plan, written_only: bool) -> Vec<(u64, u64)> {
    if !written_only {
        return vec![(0, plan.pages)];
    }
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (rel, _, n) in runs_of(map1, plan.p1, plan.pages) {
        match out.last_mut() {
            Some(last) if last.0 + last.1 == rel => last.1 += n,
            _ => out.push((rel, n)),
        }
    }
    out
}

/// Exchanges the ranges of `req` (see the module documentation). `ctx` is the caller (set-id
/// bits are dropped as for its write).
pub(super) fn exchange_range(
    vol: &Volume,
    inodes: &InodeTable,
    req: &ExchangeRange,
    ctx: &Ctx,
) -> FsResult<Exchanged> {
    vol.writable()?;
    if req.flags & !EXCHANGE_RANGE_ALL_FLAGS != 0 {
        return Err(Errno::EINVAL);
    }
    let i1: Arc<Inode> = inodes.get(req.file1)?;
    let i2: Arc<Inode> = inodes.get(req.file2)?;
    let same = i1.ino == i2.ino;
    let mut pair = lock_pair(&i1, &i2);
    pair.st1().require_regular(Errno::EINVAL)?;
    pair.st2().require_regular(Errno::EINVAL)?;
    iflags::may_change_inode(pair.st1().rec.flags)?;
    iflags::may_change_inode(pair.st2().rec.flags)?;
    let (size1, size2) = (pair.st1().rec.size, pair.st2().rec.size);
    let plan = check(req, size1, size2, same)?;
    if req.flags & EXCHANGE_RANGE_DRY_RUN != 0 || plan.length == 0 {
        return Ok(Exchanged::default());
    }
    if i1.map.any_poisoned(plan.p1, plan.p1 + plan.pages)
        || i2.map.any_poisoned(plan.p2, plan.p2 + plan.pages)
    {
        return Err(Errno::EIO);
    }
    for (ino, p) in [(i1.ino, plan.p1), (i2.ino, plan.p2)] {
        if let Some(fence) = vol.break_layouts(ino, p, p + plan.pages, LayoutChange::Punch) {
            vol.lift_fence(fence);
            log::warn!("daxfs: exchange-range on inode {ino}: a direct mapping did not let go");
            return Err(Errno::EBUSY);
        }
    }
    // No stale bytes may move: zero preallocated pages, persist pending data of both files.
    init_uninit(vol, &i1, pair.st1(), u64::MAX, None)?;
    persist_data(vol, &i1, pair.st1())?;
    if !same {
        init_uninit(vol, &i2, pair.st2(), u64::MAX, None)?;
        persist_data(vol, &i2, pair.st2())?;
    }
    let written_only = req.flags & EXCHANGE_RANGE_FILE1_WRITTEN != 0;
    for (rel, n) in selection(&i1.map, &plan, written_only) {
        let (a, b) = (plan.p1 + rel, plan.p2 + rel);
        let runs1 = runs_of(&i1.map, a, n);
        let runs2 = runs_of(&i2.map, b, n);
        // The freed lists are the blocks being moved, not freed: nothing goes to the allocator.
        i1.map.unmap_range(a, a + n);
        i2.map.unmap_range(b, b + n);
        map_runs(&i1.map, a, &runs2)?;
        map_runs(&i2.map, b, &runs1)?;
    }
    if req.flags & EXCHANGE_RANGE_TO_EOF != 0 && !same {
        pair.st1().rec.size = size2;
        pair.st2().rec.size = size1;
    }
    let now = now_ns();
    let mut tx = Tx::new();
    for (inode, first) in [(&i1, true), (&i2, false)] {
        if !first && same {
            break;
        }
        let st = if first { pair.st1() } else { pair.st2() };
        st.map_dirty = true;
        st.dirty = true;
        st.rec.mtime = now;
        st.rec.ctime = now;
        kill_suid(st, ctx);
        inode_into(vol, &mut tx, inode, st)?;
    }
    vol.commit(tx)?;
    let mut ranges = vec![(i1.ino, plan.p1 * BLOCK, plan.pages * BLOCK)];
    ranges.push((i2.ino, plan.p2 * BLOCK, plan.pages * BLOCK));
    Ok(Exchanged { ranges })
}

#[cfg(test)]
mod tests {
    use super::{check, ExchangeRange, EXCHANGE_RANGE_TO_EOF};
    use nix::errno::Errno;

    fn req(o1: u64, o2: u64, len: u64, flags: u64) -> ExchangeRange {
        ExchangeRange {
            file1: 2,
            file1_offset: o1,
            file2: 3,
            file2_offset: o2,
            length: len,
            flags,
            fsize_limit: None,
        }
    }

    #[test]
    fn checks_follow_the_kernel() {
        let k = 4096;
        // Whole blocks inside both files.
        let p = check(&req(k, 2 * k, 3 * k, 0), 10 * k, 10 * k, false).unwrap();
        assert_eq!((p.p1, p.p2, p.pages), (1, 2, 3));
        // Past the end, unaligned start, unaligned length in the middle.
        for (o1, o2, len) in [(11 * k, 0, k), (1, 0, k), (0, 0, k + 1), (0, 9 * k, 2 * k)] {
            assert_eq!(
                check(&req(o1, o2, len, 0), 10 * k, 10 * k, false).map(|_| ()),
                Err(Errno::EINVAL),
                "{o1} {o2} {len}"
            );
        }
        // A partial last block at the end of both files is fine.
        let p = check(&req(0, 0, 2 * k + 37, 0), 2 * k + 37, 2 * k + 37, false).unwrap();
        assert_eq!(p.pages, 3);
        // TO_EOF: the longer remainder.
        let p = check(&req(0, 0, 0, EXCHANGE_RANGE_TO_EOF), 3 * k, 5 * k, false).unwrap();
        assert_eq!((p.pages, p.length), (5, 5 * k));
        // Overlap within one file.
        assert_eq!(
            check(&req(0, 2 * k, 3 * k, 0), 10 * k, 10 * k, true).map(|_| ()),
            Err(Errno::EINVAL)
        );
        assert!(check(&req(0, 3 * k, 3 * k, 0), 10 * k, 10 * k, true).is_ok());
        // The caller's file-size limit cuts the length: refused.
        let mut r = req(0, 0, 4 * k, 0);
        r.fsize_limit = Some(2 * k);
        assert_eq!(
            check(&r, 10 * k, 10 * k, false).map(|_| ()),
            Err(Errno::EINVAL)
        );
        r.file1_offset = 2 * k;
        r.file2_offset = 2 * k;
        assert_eq!(
            check(&r, 10 * k, 10 * k, false).map(|_| ()),
            Err(Errno::EFBIG)
        );
    }
}
