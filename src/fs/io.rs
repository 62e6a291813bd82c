//! The data path: open handles, read, write, flush, release, fsync and copy_file_range.
//!
//! Owns: the open-handle table (handle → inode), the `dax=` mode (which files are accessed
//! directly) and the mount's atime policy. Rules it keeps (docs/DESIGN.md, "Durability", "The
//! DAX entry protocol"): bytes move between the caller's buffer and the region mapping under the
//! range's DAX entry locks (no daemon-side cache); a read that includes a poisoned page fails as a
//! whole with `EIO`; writes note dirty pages, and `fsync`, `flush` and `release` persist data
//! before the metadata that points at it. Lock order: inode lock (shared for reads, exclusive for
//! writes) → the range's DAX entry locks, ascending → the allocator mutex (allocating writes).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use parking_lot::Mutex;

use super::atime::AtimePolicy;
use super::attrs::{drop_mode_bits, kill_suid};
use super::commit::{commit_inode, persist_data};
use super::filemap::{RangeLock, PMD_PAGES};
use super::iflags;
use super::inode::{IState, Inode};
use super::privs;
use super::space::{fill_range, init_uninit, trim_prealloc, truncate_locked};
use super::time::now_ns;
use super::types::{Ctx, DaxMode, FileKind, Ino};
use super::volume::{eio, Volume};
use super::xattrs::drop_capability;
use super::FsResult;
use crate::store::{Tx, BLOCK, MAX_FILE_SIZE};

thread_local! {
    /// Reused buffer for reads whose blocks are not contiguous in the region.
    static GATHER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Open handles and how files are accessed.
pub(crate) struct DataPath {
    handles: Mutex<HashMap<u64, Ino>>,
    next_fh: AtomicU64,
    dax: DaxMode,
    atime: AtimePolicy,
}

impl DataPath {
    /// No handles open yet; files accessed by `dax`.
    pub(super) fn new(dax: DaxMode) -> DataPath {
        DataPath {
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            dax,
            atime: AtimePolicy::default(),
        }
    }

    /// The `dax=` mode.
    pub(super) fn dax(&self) -> DaxMode {
        self.dax
    }

    /// Which reads update atime.
    pub(super) fn atime(&self) -> &AtimePolicy {
        &self.atime
    }

    /// Whether an inode with per-inode flags `flags` is accessed directly (no kernel page cache):
    /// always with `dax=always`, never with `dax=never`, by `FS_XFLAG_DAX` with `dax=inode`.
    pub(super) fn direct(&self, flags: u32) -> bool {
        match self.dax {
            DaxMode::Always => true,
            DaxMode::Never => false,
            DaxMode::Inode => flags & crate::ioctl::FS_XFLAG_DAX != 0,
        }
    }

    /// A new handle on `inode` (counts as an open).
    pub(super) fn new_handle(&self, inode: &Inode) -> u64 {
        inode.opens.fetch_add(1, Ordering::SeqCst);
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, inode.ino);
        fh
    }

    /// Opens `inode` with `open(2)` flags: `EISDIR`/`EROFS` for a write open of a directory or
    /// on a read-only filesystem; `O_TRUNC` truncates a regular file (durable on return).
    pub(super) fn open(&self, vol: &Volume, inode: &Inode, flags: i32, ctx: &Ctx) -> FsResult<u64> {
        let acc = flags & libc::O_ACCMODE;
        let (kind, iflag) = {
            let st = inode.state.read();
            (st.kind(), st.rec.flags)
        };
        iflags::may_open(iflag, flags)?;
        if acc != libc::O_RDONLY {
            vol.writable()?;
            if kind == FileKind::Directory {
                return Err(Errno::EISDIR);
            }
        }
        if flags & libc::O_TRUNC != 0 && acc != libc::O_RDONLY && kind == FileKind::Regular {
            let mut st = inode.state.write();
            if st.rec.size != 0 {
                let mut tx = Tx::new();
                truncate_locked(vol, &mut tx, inode, &mut st, 0)?;
                let t = now_ns();
                st.rec.mtime = t;
                st.rec.ctime = t;
                kill_suid(&mut st, ctx);
                commit_inode(vol, tx, inode, &mut st)?;
            }
        }
        Ok(self.new_handle(inode))
    }

    /// Reads up to `size` bytes at `offset` and hands them to `f` as one slice: straight from the
    /// region mapping when the range is contiguous there, else gathered (holes read as zeros). The
    /// bytes are stable while `f` runs (DAX entries are locked). Short only at end of file.
    /// A range that includes a poisoned page fails as a whole with `EIO`.
    pub(super) fn read_with<R>(
        &self,
        vol: &Volume,
        inode: &Inode,
        offset: u64,
        size: u32,
        f: impl FnOnce(&[u8]) -> R,
    ) -> FsResult<R> {
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
        if !vol.read_only() {
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
        if let Some(b0) = contiguous_block(&locks, first, last) {
            // SAFETY: the DAX entries mapping these blocks are locked (and the inode's shared
            // lock held) for the lifetime of the slice: every writer of this file's blocks
            // (write, truncate, fallocate, eviction, memory failure) locks the entries first, and
            // a block is only reused after its entry was erased.
            let s = unsafe { vol.region().slice(b0 * BLOCK + offset % BLOCK, len) }.map_err(eio)?;
            let r = f(s);
            drop(locks);
            return Ok(r);
        }
        let mut buf = GATHER.with(|g| std::mem::take(&mut *g.borrow_mut()));
        gather(vol, &locks, offset, len, &mut buf)?;
        let r = f(&buf);
        drop(locks);
        GATHER.with(|g| *g.borrow_mut() = buf);
        Ok(r)
    }

    /// Writes `data` at `offset`, dropping S_ISUID/S_ISGID when `kill_priv` (by the rule of
    /// [`privs`], with the caller's groups). Returns the bytes written and whether the mode
    /// changed (the kernel's cached attributes are stale then).
    pub(super) fn write(
        &self,
        vol: &Volume,
        inode: &Inode,
        offset: u64,
        data: &[u8],
        ctx: &Ctx,
        kill_priv: bool,
    ) -> FsResult<(usize, bool)> {
        vol.writable()?;
        let mut st = inode.state.write();
        st.require_regular(Errno::EINVAL)?;
        iflags::may_write(st.rec.flags, offset, st.rec.size)?;
        if data.is_empty() {
            return Ok((0, false));
        }
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        if end > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        // Lock the range's entries first: from here on memory failure cannot poison a page of
        // the range until the bytes are copied (new entries are created locked, below).
        let mut locks = inode.map.lock_range(first, last + 1)?;
        if inode.map.any_poisoned(first, last + 1) {
            clear_poison_for_write(vol, inode, &mut st, offset, end)?;
        }
        allocate_for_write(vol, inode, &mut st, offset, end, &mut locks)?;
        copy_in(vol, &locks, offset, data)?;
        drop(locks);
        st.mark_data(first, last + 1);
        if end > st.rec.size {
            let old = st.rec.size;
            st.rec.size = end;
            st.dirty = true;
            vol.break_extended(inode.ino, &inode.map, old, end);
        }
        let t = now_ns();
        st.rec.mtime = t;
        st.rec.ctime = t;
        st.times_dirty = true;
        // The kernel flagged a writer without CAP_FSETID; the sgid rule needs the caller's groups.
        let killed = kill_priv && {
            let drop = privs::bits_to_drop(st.rec.mode, st.rec.gid, ctx, false);
            drop_mode_bits(&mut st, drop)
        };
        drop_capability(vol, inode, &mut st)?;
        Ok((data.len(), killed))
    }

    /// `close(2)` of one descriptor of the handle: makes written data and metadata durable.
    pub(super) fn flush(&self, vol: &Volume, inode: &Inode) -> FsResult<()> {
        if vol.read_only() {
            return Ok(());
        }
        fsync(vol, inode, false)
    }

    /// Forgets handle `fh` of `inode`. Return: whether it was the inode's last open handle.
    pub(super) fn drop_handle(&self, inode: &Inode, fh: u64) -> bool {
        self.handles.lock().remove(&fh).is_some()
            && inode
                .opens
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                == Ok(1)
    }
}

/// At the last close of a file: frees preallocated pages still past EOF; the trimmed blocks are
/// freed once the map without them is durable.
pub(super) fn trim_after_last_close(vol: &Volume, inode: &Inode) -> FsResult<()> {
    let mut st = inode.state.write();
    if st.prealloc.0 < st.prealloc.1 && !st.evicted {
        let mut tx = Tx::new();
        trim_prealloc(&mut tx, inode, &mut st);
        commit_inode(vol, tx, inode, &mut st)?;
    }
    Ok(())
}

/// `fsync`: commits the inode's record and block map (after its data) when they changed, else
/// persists its dirty data only; `datasync` skips a commit for changed timestamps alone.
pub(super) fn fsync(vol: &Volume, inode: &Inode, datasync: bool) -> FsResult<()> {
    vol.writable()?;
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
        commit_inode(vol, Tx::new(), inode, &mut st)
    } else {
        persist_data(vol, inode, &mut st)
    }
}

/// The region block where `[first, last]` starts when its pages are contiguous in the region.
fn contiguous_block(locks: &RangeLock, first: u64, last: u64) -> Option<u64> {
    let (b0, _) = locks.block_of(first)?;
    let mut p = first;
    let mut expect = b0;
    while p <= last {
        match locks.block_of(p) {
            Some((b, run_end)) if b == expect => {
                expect = b + (run_end - p);
                p = run_end;
            }
            _ => return None,
        }
    }
    Some(b0)
}

/// Copies file bytes `[offset, offset + len)` into `buf` (resized), holes as zeros.
fn gather(
    vol: &Volume,
    locks: &RangeLock,
    offset: u64,
    len: u64,
    buf: &mut Vec<u8>,
) -> FsResult<()> {
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
            vol.region()
                .read_at(b * BLOCK + at % BLOCK, dst)
                .map_err(eio)?;
        }
        at = run_end;
    }
    Ok(())
}

/// Writing over poisoned pages: a write covering a whole bad page remaps it to a fresh block
/// (clearing the poison, as a pmem "clear error" does); a partial write gets `EIO`.
fn clear_poison_for_write(
    vol: &Volume,
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
        if let Some(b) = inode.map.unpoison(p) {
            vol.release_bad(b, 1);
        }
        st.map_dirty = true;
        st.dirty = true;
    }
    Ok(())
}

/// Allocates the unmapped pages a write of `[offset, end)` covers (zeroing around it), with the
/// hugepage policy: an extending write that continues the file (no hole before it) and is large,
/// or lands past the first 2 MiB, preallocates whole 2 MiB-aligned runs.
fn allocate_for_write(
    vol: &Volume,
    inode: &Inode,
    st: &mut IState,
    offset: u64,
    end: u64,
    locks: &mut RangeLock,
) -> FsResult<()> {
    let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
    let extending = end > st.rec.size;
    if extending {
        init_uninit(vol, inode, st, last + 1, Some((offset, end)))?;
    }
    let len = end - offset;
    let prealloc = extending
        && offset <= st.rec.size
        && (len >= PMD_PAGES * BLOCK / 4 || offset >= PMD_PAGES * BLOCK);
    let written = Some((offset, end));
    fill_range(
        vol,
        inode,
        st,
        first,
        last + 1,
        written,
        prealloc,
        Some(locks),
    )?;
    Ok(())
}

/// Copies `data` into the locked, mapped range at `offset`.
fn copy_in(vol: &Volume, locks: &RangeLock, offset: u64, data: &[u8]) -> FsResult<()> {
    let end = offset + data.len() as u64;
    let mut at = offset;
    while at < end {
        let page = at / BLOCK;
        let (b, entry_end) = locks.block_of(page).ok_or(Errno::EIO)?;
        let run_end = (entry_end * BLOCK).min(end);
        let src = &data[(at - offset) as usize..(run_end - offset) as usize];
        vol.region()
            .write_at(b * BLOCK + at % BLOCK, src)
            .map_err(eio)?;
        at = run_end;
    }
    Ok(())
}

/// Copies `len` bytes from `ino_in` at `off_in` to `ino_out` at `off_out` through the data
/// path, 1 MiB at a time (`EINVAL` for overlapping ranges of one file, `EISDIR`/`EINVAL` for
/// anything but regular files). Returns the bytes copied (short at the source's end of file).
#[allow(clippy::too_many_arguments)]
pub(super) fn copy_file_range(
    data: &DataPath,
    vol: &Volume,
    inodes: &super::itable::InodeTable,
    (ino_in, off_in): (Ino, u64),
    (ino_out, off_out): (Ino, u64),
    len: u64,
    ctx: &Ctx,
) -> FsResult<u64> {
    vol.writable()?;
    for i in [ino_in, ino_out] {
        match inodes.get(i)?.state.read().kind() {
            FileKind::Regular => {}
            FileKind::Directory => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
    }
    {
        let st = inodes.get(ino_out)?;
        let st = st.state.read();
        iflags::may_write(st.rec.flags, off_out, st.rec.size)?;
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
        let src = inodes.get(ino_in)?;
        let n = data.read_with(vol, &src, off_in + done, want, |s| {
            buf.clear();
            buf.extend_from_slice(s);
            s.len()
        })?;
        if n == 0 {
            break;
        }
        let dst = inodes.get(ino_out)?;
        data.write(vol, &dst, off_out + done, &buf[..n], ctx, ctx.uid != 0)?;
        done += n as u64;
    }
    Ok(done)
}
