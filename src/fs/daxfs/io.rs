//! The data path: open, read, write, flush, release, fsync and copy_file_range.
//!
//! Rules: bytes move between the caller's buffer and the region mapping under the range's DAX
//! entry locks (no daemon-side cache); writes note dirty pages and `fsync`/`flush`/`release`
//! persist data before the metadata that points at it.

use super::*;

impl DaxFs {
    /// Opens an inode; `flags` are the `open(2)` flags. Returns a file handle.
    pub fn open_file(&self, ino: Ino, flags: i32, ctx: &Ctx) -> FsResult<u64> {
        let inode = self.iget(ino)?;
        let acc = flags & libc::O_ACCMODE;
        {
            let kind = inode.state.read().kind();
            if acc != libc::O_RDONLY {
                self.writable()?;
                if kind == FileKind::Directory {
                    return Err(Errno::EISDIR);
                }
            }
            if flags & libc::O_TRUNC != 0 && acc != libc::O_RDONLY && kind == FileKind::Regular {
                let mut st = inode.state.write();
                if st.rec.size != 0 {
                    let mut tx = Tx::new();
                    self.truncate_locked(&mut tx, &inode, &mut st, 0)?;
                    let t = now_ns();
                    st.rec.mtime = t;
                    st.rec.ctime = t;
                    Self::kill_suid(&mut st, ctx);
                    self.commit_inode_into(&mut tx, &inode, &mut st)?;
                    self.commit(tx)?;
                }
            }
        }
        inode.opens.fetch_add(1, Ordering::SeqCst);
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, ino);
        Ok(fh)
    }

    /// Reads up to `size` bytes at `offset` and hands them to `f` as one slice: straight from the
    /// region mapping when the range is contiguous there, else gathered (holes read as zeros). The
    /// bytes are stable while `f` runs (DAX entries are locked). Short only at end of file.
    /// A range that includes a poisoned page fails as a whole with `EIO`.
    pub fn read_with<R>(
        &self,
        ino: Ino,
        offset: u64,
        size: u32,
        f: impl FnOnce(&[u8]) -> R,
    ) -> FsResult<R> {
        let inode = self.iget(ino)?;
        let st = inode.state.read();
        match st.kind() {
            FileKind::Regular | FileKind::Symlink => {}
            FileKind::Directory => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        let fsize = st.rec.size;
        if offset >= fsize || size == 0 {
            return Ok(f(&[]));
        }
        if !self.read_only {
            inode.touch_atime(&st, &self.atime, now_ns());
        }
        let len = (fsize - offset).min(size as u64);
        let first = offset / BLOCK;
        let last = (offset + len - 1) / BLOCK;
        // Lock the DAX entries of the range (ascending; one lock per PMD/PTE entry), then look
        // for poison: memory failure marks a page poisoned while it holds the page's entry, so
        // after locking we either see the mark or hold the entry until our reply is sent.
        let locks = inode.map.lock_range(first, last + 1)?;
        if inode.map.any_poisoned(first, last + 1) {
            return Err(Errno::EIO);
        }
        // Contiguous in the region?
        let mut contiguous = None;
        if let Some((b0, _)) = locks.block_of(first) {
            let mut p = first;
            let mut expect = b0;
            let mut ok = true;
            while p <= last {
                match locks.block_of(p) {
                    Some((b, run_end)) if b == expect => {
                        expect = b + (run_end - p);
                        p = run_end;
                    }
                    _ => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                contiguous = Some(b0);
            }
        }
        if let Some(b0) = contiguous {
            // SAFETY: the DAX entries mapping these blocks are locked (and the inode's shared
            // lock held) for the lifetime of the slice: every writer of this file's blocks
            // (write, truncate, fallocate, eviction, memory failure) locks the entries first, and
            // a block is only reused after its entry was erased.
            let s = unsafe { self.region.slice(b0 * BLOCK + offset % BLOCK, len) }.map_err(eio)?;
            let r = f(s);
            drop(locks);
            return Ok(r);
        }
        let mut buf = GATHER.with(|g| std::mem::take(&mut *g.borrow_mut()));
        buf.clear();
        buf.resize(len as usize, 0);
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let page = at / BLOCK;
            let (run_end, src) = match locks.block_of(page) {
                Some((b, run_end)) => ((run_end * BLOCK).min(end), Some(b)),
                None => (((page + 1) * BLOCK).min(end), None),
            };
            let dst = &mut buf[(at - offset) as usize..(run_end - offset) as usize];
            if let Some(b) = src {
                self.region
                    .read_at(b * BLOCK + at % BLOCK, dst)
                    .map_err(eio)?;
            }
            at = run_end;
        }
        let r = f(&buf);
        drop(locks);
        GATHER.with(|g| *g.borrow_mut() = buf);
        Ok(r)
    }

    /// Convenience: reads into `buf`, returns the number of bytes read.
    pub fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        let size = buf.len().min(u32::MAX as usize) as u32;
        self.read_with(ino, offset, size, |s| {
            buf[..s.len()].copy_from_slice(s);
            s.len()
        })
    }

    /// Writes `data` at `offset`; a writer other than root drops the set-id bits.
    pub fn write(&self, ino: Ino, offset: u64, data: &[u8], ctx: &Ctx) -> FsResult<usize> {
        self.write_dropping_privs(ino, offset, data, ctx, ctx.uid != 0)
            .map(|(n, _)| n)
    }

    /// As [`Self::write`], with the decision to drop S_ISUID/S_ISGID (by the rule of
    /// `fs/privs.rs`) made by the caller: the FUSE adapter passes `true` when the kernel sets
    /// `FUSE_WRITE_KILL_SUIDGID` (handle_killpriv_v2) or the writer is not root. Also returns
    /// whether the write dropped them (the mode changed behind the kernel's attribute cache: the
    /// FUSE adapter invalidates it).
    pub fn write_dropping_privs(
        &self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        ctx: &Ctx,
        kill_priv: bool,
    ) -> FsResult<(usize, bool)> {
        self.writable()?;
        let inode = self.iget(ino)?;
        let mut st = inode.state.write();
        require_regular(st.kind(), Errno::EINVAL)?;
        if data.is_empty() {
            return Ok((0, false));
        }
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        if end > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let first = offset / BLOCK;
        let last = (end - 1) / BLOCK;
        // Lock the range's entries first: from here on memory failure cannot poison a page of
        // the range until the bytes are copied (new entries are created locked, below).
        let mut locks = inode.map.lock_range(first, last + 1)?;
        if inode.map.any_poisoned(first, last + 1) {
            self.clear_poison_for_write(&inode, &mut st, offset, end)?;
        }
        let extending = end > st.rec.size;
        if extending {
            self.init_uninit(&inode, &mut st, last + 1, Some((offset, end)))?;
        }
        // Hugepage policy: an extending write that continues the file (no hole before it) and is
        // large, or lands past the first 2 MiB, preallocates whole 2 MiB-aligned runs.
        let prealloc = extending
            && offset <= st.rec.size
            && (data.len() as u64 >= PMD_PAGES * BLOCK / 4 || offset >= PMD_PAGES * BLOCK);
        self.fill_range(
            &inode,
            &mut st,
            first,
            last + 1,
            Some((offset, end)),
            prealloc,
            Some(&mut locks),
        )?;
        let mut at = offset;
        while at < end {
            let page = at / BLOCK;
            let (b, entry_end) = locks.block_of(page).ok_or(Errno::EIO)?;
            let run_end = (entry_end * BLOCK).min(end);
            let src = &data[(at - offset) as usize..(run_end - offset) as usize];
            self.region
                .write_at(b * BLOCK + at % BLOCK, src)
                .map_err(eio)?;
            at = run_end;
        }
        drop(locks);
        st.mark_data(first, last + 1);
        if end > st.rec.size {
            let old = st.rec.size;
            st.rec.size = end;
            st.dirty = true;
            self.break_extended(inode.ino, old, end);
        }
        let t = now_ns();
        st.rec.mtime = t;
        st.rec.ctime = t;
        st.times_dirty = true;
        // The kernel flagged a writer without CAP_FSETID; the sgid rule needs the caller's groups.
        let killed = kill_priv && {
            let drop = privs::bits_to_drop(st.rec.mode, st.rec.gid, ctx, false);
            Self::drop_mode_bits(&mut st, drop)
        };
        // A write drops file capabilities whoever writes (the kernel's file_remove_privs); under
        // FUSE_HANDLE_KILLPRIV_V2 that is the filesystem's job. The check is one scan of a
        // usually empty list; the commit happens only when the attribute is there.
        if st
            .xattrs
            .iter()
            .any(|(k, _)| k.as_slice() == b"security.capability")
        {
            let mut x = st.xattrs.clone();
            x.retain(|(k, _)| k.as_slice() != b"security.capability");
            self.set_xattrs_locked(&inode, &mut st, x)?;
        }
        Ok((data.len(), killed))
    }

    /// Writing over poisoned pages: a write covering a whole bad page remaps it to a fresh block
    /// (clearing the poison, as a pmem "clear error" does); a partial write gets `EIO`.
    pub(super) fn clear_poison_for_write(
        &self,
        inode: &Inode,
        st: &mut IState,
        offset: u64,
        end: u64,
    ) -> FsResult<()> {
        let first = offset / BLOCK;
        let last = (end - 1) / BLOCK;
        let poisoned = inode.map.poisoned_in(first, last + 1);
        if poisoned
            .iter()
            .any(|&(p, _)| offset > p * BLOCK || end < (p + 1) * BLOCK)
        {
            return Err(Errno::EIO);
        }
        for (p, _) in poisoned {
            // The bad block stays recorded (and out of the allocator); the page gets a fresh one.
            inode.map.unpoison(p);
            st.map_dirty = true;
            st.dirty = true;
        }
        Ok(())
    }

    /// `close(2)` of one descriptor of the handle: makes written data and metadata durable.
    pub fn flush(&self, ino: Ino, fh: u64) -> FsResult<()> {
        let _ = fh;
        if self.read_only {
            return Ok(());
        }
        self.fsync(ino, false)
    }

    /// Last close of the handle.
    pub fn release(&self, ino: Ino, fh: u64) -> FsResult<()> {
        let inode = self.iget(ino)?;
        let last = if self.handles.lock().remove(&fh).is_some() {
            inode
                .opens
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                == Ok(1)
        } else {
            false
        };
        if self.read_only {
            return Ok(());
        }
        if last {
            let mut st = inode.state.write();
            if st.prealloc.0 < st.prealloc.1 && !st.evicted {
                let mut tx = Tx::new();
                self.trim_prealloc(&mut tx, &inode, &mut st);
                // The trimmed blocks are freed once the map without them is durable.
                self.commit_inode_into(&mut tx, &inode, &mut st)?;
                self.commit(tx)?;
            }
        }
        let r = self.fsync(ino, false);
        if inode.state.read().rec.nlink == 0 {
            self.maybe_evict(&inode);
        }
        r
    }

    pub fn fsync(&self, ino: Ino, datasync: bool) -> FsResult<()> {
        self.writable()?;
        let inode = self.iget(ino)?;
        {
            // Fast path (close of a clean file): nothing to persist, no exclusive lock.
            let st = inode.state.read();
            let clean = !st.dirty
                && !st.map_dirty
                && !st.times_dirty
                && !inode.atime_dirty.load(Ordering::Relaxed)
                && st.dirty_lo >= st.dirty_hi
                && st.uninit.0 >= st.uninit.1;
            if clean || st.evicted {
                return Ok(());
            }
        }
        let mut st = inode.state.write();
        if st.evicted {
            return Ok(());
        }
        let times = st.times_dirty || inode.atime_dirty.load(Ordering::Relaxed);
        if st.dirty || st.map_dirty || (!datasync && times) {
            let mut tx = Tx::new();
            self.commit_inode_into(&mut tx, &inode, &mut st)?;
            self.commit(tx)
        } else {
            self.persist_data(&inode, &mut st)
        }
    }

    pub fn copy_file_range(
        &self,
        ino_in: Ino,
        off_in: u64,
        ino_out: Ino,
        off_out: u64,
        len: u64,
        ctx: &Ctx,
    ) -> FsResult<u64> {
        self.writable()?;
        for i in [ino_in, ino_out] {
            match self.iget(i)?.state.read().kind() {
                FileKind::Regular => {}
                FileKind::Directory => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
        }
        if ino_in == ino_out
            && off_in < off_out.saturating_add(len)
            && off_out < off_in.saturating_add(len)
        {
            return Err(Errno::EINVAL);
        }
        const CHUNK: u64 = 1 << 20;
        let mut done = 0u64;
        let mut buf = Vec::new();
        while done < len {
            let want = (len - done).min(CHUNK) as u32;
            let n = self.read_with(ino_in, off_in + done, want, |s| {
                buf.clear();
                buf.extend_from_slice(s);
                s.len()
            })?;
            if n == 0 {
                break;
            }
            self.write(ino_out, off_out + done, &buf[..n], ctx)?;
            done += n as u64;
        }
        Ok(done)
    }
}
