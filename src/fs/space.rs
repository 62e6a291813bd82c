//! Space of a file: allocating blocks for a range (2 MiB runs and PMD entries where they fit),
//! preallocation past EOF and its trim, zeroing, truncate, fallocate and `SEEK_DATA`/`SEEK_HOLE`.
//!
//! Rules it keeps: a new block is zeroed wherever no write covers it; preallocated pages past EOF
//! are zeroed before they become visible or reach media; blocks a change unmaps are freed only
//! after its transaction (`Tx::free_after`). Context: every function here runs with the inode lock
//! held exclusive (shared for [`lseek`]); allocation takes the allocator mutex (a leaf) and never
//! waits for an entry lock while holding it (entries are created only in holes).

use nix::errno::Errno;

use super::commit::persist_data;
use super::filemap::{RangeLock, PMD_ORDER, PMD_PAGES};
use super::inode::{IState, Inode};
use super::layout::LayoutChange;
use super::volume::{eio, Volume};
use super::FsResult;
use crate::store::{Allocator, Tx, BLOCK};

/// Blocks newly installed by one [`fill_range`]: runs of `(file page, region block, pages)`.
type NewRuns = Vec<(u64, u64, u64)>;

/// Allocates every unmapped page of `[first, end)`; new blocks are zeroed except where
/// `written` (byte range) will be overwritten. Whole unmapped 2 MiB-aligned chunks of the range
/// get a 2 MiB-aligned run (order-9 entry). Returns whether anything was allocated.
/// On ENOSPC, pages allocated by this call are unmapped again.
///
/// With `prealloc` (an extending write), an unmapped 2 MiB-aligned chunk at the end of the
/// range gets a whole 2 MiB run even if the write covers only its start; the pages past the
/// write are left uninitialized (`IState::uninit`, beyond EOF, zeroed before they can become
/// visible or reach media) and trimmed at the last release if still unused.
#[allow(clippy::too_many_arguments)]
pub(super) fn fill_range(
    vol: &Volume,
    inode: &Inode,
    st: &mut IState,
    first: u64,
    end: u64,
    written: Option<(u64, u64)>,
    prealloc: bool,
    mut locks: Option<&mut RangeLock>,
) -> FsResult<bool> {
    let mut new = NewRuns::new();
    if let Err(err) = allocate_range(vol, inode, first, end, prealloc, &mut locks, &mut new) {
        undo_allocation(vol, inode, &new, locks);
        return Err(err);
    }
    if new.is_empty() {
        return Ok(false);
    }
    zero_new_runs(vol, st, &new, end, written)?;
    st.map_dirty = true;
    st.dirty = true;
    // Direct mappings of these holes map zeros: they must map the new blocks instead.
    let (lo, hi) = new.iter().fold((u64::MAX, 0), |(lo, hi), &(np, _, n)| {
        (lo.min(np), hi.max(np + n))
    });
    vol.break_layouts(inode.ino, lo, hi, LayoutChange::Fill);
    Ok(true)
}

/// The allocation loop of [`fill_range`]: walks `[first, end)`, skipping mapped and poisoned
/// pages, installing a 2 MiB run where a whole unmapped chunk starts, else single blocks near the
/// previous one. Every installed run is pushed to `new` (also when it then fails).
fn allocate_range(
    vol: &Volume,
    inode: &Inode,
    first: u64,
    end: u64,
    prealloc: bool,
    locks: &mut Option<&mut RangeLock>,
    new: &mut NewRuns,
) -> FsResult<()> {
    let mut p = first;
    // Allocation goal: the block after the previous page's, computed only when needed.
    let mut goal: Option<Option<u64>> = None;
    let mut guard = None;
    while p < end {
        if let Some((b, order)) = inode.map.lookup(p) {
            let run = (1u64 << order) - (p & ((1u64 << order) - 1));
            goal = Some(Some(b + run));
            p += run;
            continue;
        }
        if inode.map.poisoned_block(p).is_some() {
            // Poisoned: owns its bad block until rewritten whole, punched or cleared.
            p += 1;
            continue;
        }
        let g = *goal.get_or_insert_with(|| {
            p.checked_sub(1)
                .and_then(|q| inode.map.lookup(q))
                .map(|x| x.0 + 1)
        });
        let a = guard.get_or_insert_with(|| vol.allocator());
        let whole_chunk = p % PMD_PAGES == 0 && (p + PMD_PAGES <= end || prealloc);
        if whole_chunk && inode.map.entries_in(p, p + PMD_PAGES).is_empty() {
            if let Some(h) = install_huge(vol, a, inode, locks, p)? {
                new.push((p, h, PMD_PAGES));
                p += PMD_PAGES;
                goal = Some(Some(h + PMD_PAGES));
                continue;
            }
        }
        let b = a.alloc_near(g).ok_or(Errno::ENOSPC)?;
        if let Err(e) = vol
            .reserve(b, 1)
            .and_then(|()| install(inode, locks.as_deref_mut(), p, 0, b))
        {
            a.free(b);
            return Err(e);
        }
        match new.last_mut() {
            Some((lp, lb, ln)) if *lp + *ln == p && *lb + *ln == b => *ln += 1,
            _ => new.push((p, b, 1)),
        }
        goal = Some(Some(b + 1));
        p += 1;
    }
    Ok(())
}

/// A free 2 MiB run installed as one PMD entry at file page `p`: `Ok(None)` when no free run is
/// left (the caller falls back to single blocks).
fn install_huge(
    vol: &Volume,
    a: &mut Allocator,
    inode: &Inode,
    locks: &mut Option<&mut RangeLock>,
    p: u64,
) -> FsResult<Option<u64>> {
    let Some(h) = a.alloc_huge() else {
        return Ok(None);
    };
    if let Err(e) = vol
        .reserve(h, PMD_PAGES)
        .and_then(|()| install(inode, locks.as_deref_mut(), p, PMD_ORDER, h))
    {
        (h..h + PMD_PAGES).for_each(|x| a.free(x));
        return Err(e);
    }
    Ok(Some(h))
}

/// Unmaps and frees the runs a failed [`fill_range`] installed. Entries we hold (a write's) are
/// erased through their guards: waiting for them in `unmap_range` would wait for ourselves.
fn undo_allocation(vol: &Volume, inode: &Inode, new: &NewRuns, mut locks: Option<&mut RangeLock>) {
    for &(np, _, n) in new {
        let freed = match locks.as_deref_mut() {
            Some(l) => inode.map.unmap_held(l, np, np + n),
            None => inode.map.unmap_range(np, np + n),
        };
        vol.free_unused(freed.into_iter().flat_map(|(b, c)| b..b + c));
    }
}

/// Zeroes the new runs except the `written` bytes, noting them dirty; a run reaching past `end`
/// (preallocated) leaves its pages past `end` uninitialized, recorded in `st`.
fn zero_new_runs(
    vol: &Volume,
    st: &mut IState,
    new: &NewRuns,
    end: u64,
    written: Option<(u64, u64)>,
) -> FsResult<()> {
    for &(np, nb, n) in new {
        let (s, mut e) = (np * BLOCK, (np + n) * BLOCK);
        if np + n > end {
            // A preallocated chunk: pages past the write stay uninitialized.
            let init_end = end.max(np);
            st.uninit = (init_end, np + n);
            st.prealloc = (init_end, np + n);
            e = init_end * BLOCK;
        }
        let (ws, we) = written.map_or((s, s), |(a, b)| (a.clamp(s, e), b.clamp(s, e)));
        let base = nb * BLOCK;
        if ws > s {
            vol.region().zero(base, ws - s).map_err(eio)?;
        }
        if we < e {
            let from = we.max(ws);
            vol.region()
                .zero(base + (from - s), e - from)
                .map_err(eio)?;
        }
        st.mark_data(np, e / BLOCK);
    }
    Ok(())
}

/// Installs a new block into a new locked entry: kept locked in `locks` (a write copies into
/// it before unlocking), else unlocked at once.
pub(super) fn install(
    inode: &Inode,
    locks: Option<&mut RangeLock>,
    page: u64,
    order: u8,
    block: u64,
) -> FsResult<()> {
    match locks {
        Some(l) => {
            l.insert(inode.map.map_locked(page, order, block)?);
            Ok(())
        }
        None => inode.map.map(page, order, block),
    }
}

/// Zeroes the uninitialized preallocated pages below page `upto`, except the bytes in
/// `written` (about to be overwritten). Called before the file size grows over them and before
/// the block map is committed. Context: inode lock exclusive.
pub(super) fn init_uninit(
    vol: &Volume,
    inode: &Inode,
    st: &mut IState,
    upto: u64,
    written: Option<(u64, u64)>,
) -> FsResult<()> {
    let (lo, hi) = st.uninit;
    let zhi = hi.min(upto);
    if lo >= zhi {
        return Ok(());
    }
    let (s, e) = (lo * BLOCK, zhi * BLOCK);
    match written {
        Some((ws, we)) if ws < e && we > s => {
            zero_mapped(vol, inode, st, s, ws.max(s))?;
            zero_mapped(vol, inode, st, we.min(e), e)?;
        }
        _ => zero_mapped(vol, inode, st, s, e)?,
    }
    st.uninit = if zhi >= hi { (0, 0) } else { (zhi, hi) };
    Ok(())
}

/// Frees preallocated pages still past EOF (at the last release). Context: inode lock
/// exclusive.
pub(super) fn trim_prealloc(tx: &mut Tx, inode: &Inode, st: &mut IState) {
    let (lo, hi) = st.prealloc;
    let lo = lo.max(st.rec.size.div_ceil(BLOCK));
    if lo < hi {
        let freed = inode.map.unmap_range(lo, hi);
        if !freed.is_empty() {
            st.map_dirty = true;
            st.dirty = true;
        }
        for (b, n) in freed {
            tx.free_after.extend(b..b + n);
        }
    }
    st.prealloc = (0, 0);
    st.uninit = (0, 0);
}

/// Zeroes file bytes `[s, e)` where mapped (both inside one page or spanning pages), noting
/// them dirty.
pub(super) fn zero_mapped(
    vol: &Volume,
    inode: &Inode,
    st: &mut IState,
    s: u64,
    e: u64,
) -> FsResult<()> {
    let mut at = s;
    while at < e {
        let page = at / BLOCK;
        let pe = ((page + 1) * BLOCK).min(e);
        if let Some((b, _)) = inode.map.lookup(page) {
            vol.region()
                .zero(b * BLOCK + at % BLOCK, pe - at)
                .map_err(eio)?;
            st.mark_data(page, page + 1);
        }
        at = pe;
    }
    Ok(())
}

/// Unmaps file pages `[first, end)`, queueing their blocks to be freed after `tx`. Direct
/// mappings of the range are broken first (`why`); blocks a holder may still map are quarantined.
#[allow(clippy::too_many_arguments)]
fn unmap_into(
    vol: &Volume,
    tx: &mut Tx,
    inode: &Inode,
    st: &mut IState,
    first: u64,
    end: u64,
    why: LayoutChange,
) {
    let fence = vol.break_layouts(inode.ino, first, end, why);
    let freed = inode.map.unmap_range(first, end);
    if !freed.is_empty() {
        st.map_dirty = true;
    }
    vol.free_after_layout_break(tx, fence, freed);
}

/// Sets the size, freeing blocks past it when shrinking. Context: inode lock exclusive.
pub(super) fn truncate_locked(
    vol: &Volume,
    tx: &mut Tx,
    inode: &Inode,
    st: &mut IState,
    new: u64,
) -> FsResult<()> {
    let old = st.rec.size;
    if new < old {
        if new % BLOCK != 0 {
            let pe = (new / BLOCK + 1) * BLOCK;
            zero_mapped(vol, inode, st, new, pe)?;
            persist_data(vol, inode, st)?;
        }
        // Direct mappings of the pages past the new end go first (break_layouts).
        let first = new.div_ceil(BLOCK);
        let why = LayoutChange::Truncate { size: new };
        unmap_into(vol, tx, inode, st, first, u64::MAX, why);
        st.uninit = (0, 0);
        st.prealloc = (0, 0);
    } else if new > old {
        if old % BLOCK != 0 {
            let pe = ((old / BLOCK + 1) * BLOCK).min(new);
            zero_mapped(vol, inode, st, old, pe)?;
        }
        init_uninit(vol, inode, st, new.div_ceil(BLOCK), None)?;
    }
    st.rec.size = new;
    st.dirty = true;
    if new > old {
        vol.break_extended(inode.ino, &inode.map, old, new);
    }
    Ok(())
}

/// `fallocate(2)` on a locked regular file: `mode` 0, `FALLOC_FL_KEEP_SIZE`,
/// `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`, `FALLOC_FL_ZERO_RANGE` (optionally with
/// `KEEP_SIZE`); others `EOPNOTSUPP`. Changes go into `tx`; `now` is the change time.
/// Context: inode lock exclusive.
#[allow(clippy::too_many_arguments)]
pub(super) fn fallocate_locked(
    vol: &Volume,
    tx: &mut Tx,
    inode: &Inode,
    st: &mut IState,
    offset: u64,
    end: u64,
    mode: i32,
    now: i64,
) -> FsResult<()> {
    let keep = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
    let op = mode & !libc::FALLOC_FL_KEEP_SIZE;
    match op {
        // Both allocate the range; ZERO_RANGE then zeroes what was already mapped there.
        0 | libc::FALLOC_FL_ZERO_RANGE => {
            if !keep && end > st.rec.size {
                init_uninit(vol, inode, st, end.div_ceil(BLOCK), None)?;
            }
            let (first, last) = (offset / BLOCK, end.div_ceil(BLOCK));
            fill_range(vol, inode, st, first, last, None, false, None)?;
            if op == libc::FALLOC_FL_ZERO_RANGE {
                zero_mapped(vol, inode, st, offset, end)?;
                st.rec.mtime = now;
                st.rec.ctime = now;
            }
        }
        libc::FALLOC_FL_PUNCH_HOLE => {
            if !keep {
                return Err(Errno::EOPNOTSUPP);
            }
            punch_hole(vol, tx, inode, st, offset, end)?;
            st.rec.mtime = now;
            st.rec.ctime = now;
        }
        _ => return Err(Errno::EOPNOTSUPP),
    }
    if !keep && end > st.rec.size {
        let old = st.rec.size;
        st.rec.size = end;
        st.rec.ctime = now;
        st.rec.mtime = now;
        vol.break_extended(inode.ino, &inode.map, old, end);
    }
    Ok(())
}

/// Punches bytes `[offset, end)`: partial pages are zeroed, whole pages unmapped (freed after
/// `tx`).
fn punch_hole(
    vol: &Volume,
    tx: &mut Tx,
    inode: &Inode,
    st: &mut IState,
    offset: u64,
    end: u64,
) -> FsResult<()> {
    let fp = offset.div_ceil(BLOCK);
    let lp = end / BLOCK;
    if fp >= lp {
        return zero_mapped(vol, inode, st, offset, end);
    }
    zero_mapped(vol, inode, st, offset, fp * BLOCK)?;
    zero_mapped(vol, inode, st, lp * BLOCK, end)?;
    unmap_into(vol, tx, inode, st, fp, lp, LayoutChange::Punch);
    Ok(())
}

/// `SEEK_DATA` / `SEEK_HOLE` from `offset` (others `EINVAL`); `ENXIO` at or past the end of
/// file, or when no data follows. Context: inode lock shared.
pub(super) fn lseek(inode: &Inode, st: &IState, offset: u64, whence: i32) -> FsResult<u64> {
    let size = st.rec.size;
    if offset >= size {
        return Err(Errno::ENXIO);
    }
    match whence {
        libc::SEEK_DATA => {
            let p = inode.map.next_data(offset / BLOCK).ok_or(Errno::ENXIO)?;
            let at = (p * BLOCK).max(offset);
            if at >= size {
                Err(Errno::ENXIO)
            } else {
                Ok(at)
            }
        }
        libc::SEEK_HOLE => {
            let p = inode.map.next_hole(offset / BLOCK);
            Ok((p * BLOCK).max(offset).min(size))
        }
        _ => Err(Errno::EINVAL),
    }
}
