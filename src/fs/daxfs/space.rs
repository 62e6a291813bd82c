//! Space of a file: allocating blocks for a range (2 MiB runs and PMD entries where they fit),
//! preallocation past EOF and its trim, zeroing, truncate, fallocate and `SEEK_DATA`/`SEEK_HOLE`.
//!
//! Rules: a new block is zeroed wherever no write covers it; preallocated pages past EOF are
//! zeroed before they become visible; the inode lock is held exclusive.

use super::*;
use crate::fs::layout::LayoutChange;

impl DaxFs {
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
        &self,
        inode: &Inode,
        st: &mut IState,
        first: u64,
        end: u64,
        written: Option<(u64, u64)>,
        prealloc: bool,
        mut locks: Option<&mut RangeLock>,
    ) -> FsResult<bool> {
        let mut new: Vec<(u64, u64, u64)> = Vec::new(); // (page, block, pages)
        let mut p = first;
        // Allocation goal: the block after the previous page's, computed only when needed.
        let mut goal: Option<Option<u64>> = None;
        let mut guard = None;
        let mut failed = None;
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
            let a = guard.get_or_insert_with(|| self.alloc.lock());
            if p % PMD_PAGES == 0
                && (p + PMD_PAGES <= end || prealloc)
                && inode.map.entries_in(p, p + PMD_PAGES).is_empty()
            {
                if let Some(h) = a.alloc_huge() {
                    if let Err(e) = Self::install(inode, locks.as_deref_mut(), p, PMD_ORDER, h) {
                        (h..h + PMD_PAGES).for_each(|x| a.free(x));
                        failed = Some(e);
                        break;
                    }
                    new.push((p, h, PMD_PAGES));
                    p += PMD_PAGES;
                    goal = Some(Some(h + PMD_PAGES));
                    continue;
                }
            }
            match a.alloc_near(g) {
                Some(b) => {
                    if let Err(e) = Self::install(inode, locks.as_deref_mut(), p, 0, b) {
                        a.free(b);
                        failed = Some(e);
                        break;
                    }
                    match new.last_mut() {
                        Some((lp, lb, ln)) if *lp + *ln == p && *lb + *ln == b => *ln += 1,
                        _ => new.push((p, b, 1)),
                    }
                    goal = Some(Some(b + 1));
                    p += 1;
                }
                None => {
                    failed = Some(Errno::ENOSPC);
                    break;
                }
            }
        }
        drop(guard);
        if let Some(err) = failed {
            for &(np, _, n) in &new {
                // Entries we hold (a write's) are erased through their guards; waiting for
                // them in `unmap_range` would wait for ourselves.
                let freed = match locks.as_deref_mut() {
                    Some(l) => inode.map.unmap_held(l, np, np + n),
                    None => inode.map.unmap_range(np, np + n),
                };
                let mut a = self.alloc.lock();
                for (b, c) in freed {
                    (b..b + c).for_each(|x| a.free(x));
                }
            }
            return Err(err);
        }
        if new.is_empty() {
            return Ok(false);
        }
        for &(np, nb, n) in &new {
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
                self.region.zero(base, ws - s).map_err(eio)?;
            }
            if we < e {
                let from = we.max(ws);
                self.region.zero(base + (from - s), e - from).map_err(eio)?;
            }
            st.mark_data(np, e / BLOCK);
        }
        st.map_dirty = true;
        st.dirty = true;
        // Direct mappings of these holes map zeros: they must map the new blocks instead.
        let (lo, hi) = new.iter().fold((u64::MAX, 0), |(lo, hi), &(np, _, n)| {
            (lo.min(np), hi.max(np + n))
        });
        self.break_layouts(inode.ino, lo, hi, LayoutChange::Fill);
        Ok(true)
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
        &self,
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
                self.zero_mapped(inode, st, s, ws.max(s))?;
                self.zero_mapped(inode, st, we.min(e), e)?;
            }
            _ => self.zero_mapped(inode, st, s, e)?,
        }
        st.uninit = if zhi >= hi { (0, 0) } else { (zhi, hi) };
        Ok(())
    }

    /// Frees preallocated pages still past EOF (at the last release). Context: inode lock
    /// exclusive.
    pub(super) fn trim_prealloc(&self, tx: &mut Tx, inode: &Inode, st: &mut IState) {
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
        &self,
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
                self.region
                    .zero(b * BLOCK + at % BLOCK, pe - at)
                    .map_err(eio)?;
                st.mark_data(page, page + 1);
            }
            at = pe;
        }
        Ok(())
    }

    /// Sets the size, freeing blocks past it when shrinking. Context: inode lock exclusive.
    pub(super) fn truncate_locked(
        &self,
        tx: &mut Tx,
        inode: &Inode,
        st: &mut IState,
        new: u64,
    ) -> FsResult<()> {
        let old = st.rec.size;
        if new < old {
            if new % BLOCK != 0 {
                let pe = (new / BLOCK + 1) * BLOCK;
                self.zero_mapped(inode, st, new, pe)?;
                self.persist_data(inode, st)?;
            }
            // Direct mappings of the pages past the new end go first (break_layouts).
            let fence = self.break_layouts(
                inode.ino,
                new.div_ceil(BLOCK),
                u64::MAX,
                LayoutChange::Truncate { size: new },
            );
            let freed = inode.map.unmap_range(new.div_ceil(BLOCK), u64::MAX);
            if !freed.is_empty() {
                st.map_dirty = true;
            }
            st.uninit = (0, 0);
            st.prealloc = (0, 0);
            self.free_after_layout_break(tx, fence, freed);
        } else if new > old {
            if old % BLOCK != 0 {
                let pe = ((old / BLOCK + 1) * BLOCK).min(new);
                self.zero_mapped(inode, st, old, pe)?;
            }
            self.init_uninit(inode, st, new.div_ceil(BLOCK), None)?;
        }
        st.rec.size = new;
        st.dirty = true;
        if new > old {
            self.break_extended(inode.ino, old, new);
        }
        Ok(())
    }

    /// `mode`: 0, `FALLOC_FL_KEEP_SIZE`, `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`,
    /// `FALLOC_FL_ZERO_RANGE` (optionally with `KEEP_SIZE`); others `EOPNOTSUPP`.
    pub fn fallocate(&self, ino: Ino, offset: u64, len: u64, mode: i32, ctx: &Ctx) -> FsResult<()> {
        self.fallocate_dropping_privs(ino, offset, len, mode, ctx)
            .map(|_| ())
    }

    /// As [`Self::fallocate`]; returns whether it dropped S_ISUID/S_ISGID (as a write by `ctx`
    /// does: FUSE_FALLOCATE carries no kill flag, the rule is applied here with the caller).
    pub fn fallocate_dropping_privs(
        &self,
        ino: Ino,
        offset: u64,
        len: u64,
        mode: i32,
        ctx: &Ctx,
    ) -> FsResult<bool> {
        self.writable()?;
        let inode = self.iget(ino)?;
        let mut st = inode.state.write();
        require_regular(st.kind(), Errno::ENODEV)?;
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = offset.checked_add(len).ok_or(Errno::EFBIG)?;
        if end > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let keep = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        let op = mode & !libc::FALLOC_FL_KEEP_SIZE;
        let now = now_ns();
        let mut tx = Tx::new();
        match op {
            // Both allocate the range; ZERO_RANGE then zeroes what was already mapped there.
            0 | libc::FALLOC_FL_ZERO_RANGE => {
                if !keep && end > st.rec.size {
                    self.init_uninit(&inode, &mut st, end.div_ceil(BLOCK), None)?;
                }
                self.fill_range(
                    &inode,
                    &mut st,
                    offset / BLOCK,
                    end.div_ceil(BLOCK),
                    None,
                    false,
                    None,
                )?;
                if op == libc::FALLOC_FL_ZERO_RANGE {
                    self.zero_mapped(&inode, &mut st, offset, end)?;
                    st.rec.mtime = now;
                    st.rec.ctime = now;
                }
            }
            libc::FALLOC_FL_PUNCH_HOLE => {
                if !keep {
                    return Err(Errno::EOPNOTSUPP);
                }
                let fp = offset.div_ceil(BLOCK);
                let lp = end / BLOCK;
                if fp >= lp {
                    self.zero_mapped(&inode, &mut st, offset, end)?;
                } else {
                    self.zero_mapped(&inode, &mut st, offset, fp * BLOCK)?;
                    self.zero_mapped(&inode, &mut st, lp * BLOCK, end)?;
                    let fence = self.break_layouts(inode.ino, fp, lp, LayoutChange::Punch);
                    let freed = inode.map.unmap_range(fp, lp);
                    if !freed.is_empty() {
                        st.map_dirty = true;
                    }
                    self.free_after_layout_break(&mut tx, fence, freed);
                }
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
            self.break_extended(inode.ino, old, end);
        }
        let killed = Self::kill_suid(&mut st, ctx);
        self.commit_inode_into(&mut tx, &inode, &mut st)?;
        self.commit(tx)?;
        Ok(killed)
    }

    /// `whence`: `SEEK_DATA` or `SEEK_HOLE` (others are the kernel's).
    pub fn lseek(&self, ino: Ino, offset: u64, whence: i32) -> FsResult<u64> {
        let inode = self.iget(ino)?;
        let st = inode.state.read();
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
}
