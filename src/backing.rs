//! The space of the filesystem under a region file: blocks are reserved in the backing file before
//! they are first used, and a region larger than the space left under it is reported.
//!
//! A region file is sparse: its pages get storage when they are first touched through the shared
//! mapping. On a full filesystem (a small tmpfs, a full disk) that first touch cannot get storage
//! and the kernel kills the process with `SIGBUS`, with no way to answer the one request that
//! needed the page. This module makes that impossible instead of catching it: [`Backing::reserve`]
//! `fallocate`s a range before anything stores to it, so running out is an `ENOSPC` returned to the
//! caller that asked for the blocks. mkfs reserves the metadata area (journal, bad-block table,
//! inode table) before writing it; the filesystem reserves every block it allocates before its
//! first use.
//!
//! Rules it keeps:
//! - It knows nothing of files or inodes: callers give byte ranges of the region.
//! - Reservation is by 2 MiB chunk, remembered in a bitmap, so a chunk costs one `fallocate` in
//!   the region's life (per open); when a whole chunk no longer fits, only the range asked for is
//!   reserved (and nothing is remembered), so the last free bytes are still usable.
//! - Only regions that are regular files need it; block and DAX devices have their storage.
//! - `fallocate` never changes data that is already there: reserving a used range is harmless.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes in one reservation chunk (a PMD run).
const CHUNK: u64 = crate::geometry::PMD_PAGES * crate::geometry::PAGE_SIZE;

/// The chunks of a region file already reserved in the backing filesystem.
#[derive(Debug)]
pub(crate) struct Backing {
    /// One bit per 2 MiB chunk; set once the whole chunk is allocated in the file.
    reserved: Vec<AtomicU64>,
    len: u64,
}

impl Backing {
    /// Nothing reserved yet, for a region of `len` bytes.
    pub(crate) fn new(len: u64) -> Backing {
        let chunks = len.div_ceil(CHUNK);
        Backing {
            reserved: (0..chunks.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            len,
        }
    }

    /// Gives `[off, off + len)` storage in `file` before it is first used. Return: `ENOSPC` (or the
    /// filesystem's other error) when the filesystem under the region cannot hold it.
    pub(crate) fn reserve(&self, file: &File, off: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let end = off.saturating_add(len).min(self.len);
        let mut c = off / CHUNK;
        while c * CHUNK < end {
            let (word, bit) = (&self.reserved[(c / 64) as usize], 1u64 << (c % 64));
            if word.load(Ordering::Acquire) & bit == 0 {
                let start = c * CHUNK;
                let chunk_len = CHUNK.min(self.len - start);
                match fallocate(file, 0, start, chunk_len) {
                    Ok(()) => {
                        word.fetch_or(bit, Ordering::AcqRel);
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                        // The whole chunk does not fit: reserve only what is asked for in it.
                        let (lo, hi) = (start.max(off), (start + chunk_len).min(end));
                        fallocate(file, 0, lo, hi - lo)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            c += 1;
        }
        Ok(())
    }

    /// Hands `[off, off + len)` of `file` back to the filesystem under it
    /// (`fallocate(PUNCH_HOLE)`): the range reads zeros and holds no storage. The chunks it
    /// touches are no longer counted as reserved, so the next allocation there reserves again.
    ///
    /// Context: the caller guarantees that nothing stores to the range meanwhile (free blocks,
    /// under the allocator lock).
    pub(crate) fn discard(&self, file: &File, off: u64, len: u64) -> io::Result<()> {
        let end = off.saturating_add(len).min(self.len);
        if off >= end {
            return Ok(());
        }
        let mut c = off / CHUNK;
        while c * CHUNK < end {
            self.reserved[(c / 64) as usize].fetch_and(!(1u64 << (c % 64)), Ordering::AcqRel);
            c += 1;
        }
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        fallocate(file, mode, off, end - off)
    }
}

/// `fallocate(2)` with `mode` on `file`, retried on `EINTR`: 0 only allocates (no data is
/// changed); `PUNCH_HOLE | KEEP_SIZE` frees the range (the caller holds it unused).
fn fallocate(file: &File, mode: i32, off: u64, len: u64) -> io::Result<()> {
    loop {
        // SAFETY: fallocate(2) on an owned, open descriptor; no memory is passed, and what the
        // mode changes in the file is the caller's to allow (see above).
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, off as i64, len as i64) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// A sparse region file and the space left under it: what mkfs and mount warn about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackingSpace {
    /// The region's size.
    pub size: u64,
    /// Bytes of it the backing filesystem already holds.
    pub allocated: u64,
    /// Bytes still free in the backing filesystem (for this user).
    pub fs_free: u64,
}

impl BackingSpace {
    /// Bytes of the region that have no storage yet.
    pub fn unbacked(&self) -> u64 {
        self.size.saturating_sub(self.allocated)
    }

    /// Whether filling the region would run the filesystem under it out of space.
    pub fn short(&self) -> bool {
        self.unbacked() > self.fs_free
    }
}

/// The space of region file `path` (`None` for a device or anything that is not a regular file).
pub fn backing_space(path: &Path) -> io::Result<Option<BackingSpace>> {
    let md = std::fs::metadata(path)?;
    if !md.is_file() {
        return Ok(None);
    }
    let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    let fs_free = u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size()));
    Ok(Some(BackingSpace {
        size: md.len(),
        allocated: md.blocks().saturating_mul(512).min(md.len()),
        fs_free,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_allocates_the_chunk_and_remembers_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r");
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        f.set_len(8 * CHUNK).unwrap();
        let b = Backing::new(8 * CHUNK);
        assert!(std::fs::metadata(&p).unwrap().blocks() == 0);
        b.reserve(&f, CHUNK + 4096, 4096).unwrap();
        let blocks = std::fs::metadata(&p).unwrap().blocks() * 512;
        assert!(blocks >= CHUNK, "one whole chunk reserved: {blocks}");
        assert!(blocks < 2 * CHUNK, "only the chunk asked for: {blocks}");
        assert_eq!(b.reserved[0].load(Ordering::Relaxed), 0b10);
        // A range over two chunks reserves both.
        b.reserve(&f, 3 * CHUNK - 4096, 8192).unwrap();
        assert_eq!(b.reserved[0].load(Ordering::Relaxed), 0b1110);
        let space = backing_space(&p).unwrap().unwrap();
        assert_eq!(space.size, 8 * CHUNK);
        assert!(space.allocated >= 3 * CHUNK && space.unbacked() <= 5 * CHUNK);
    }

    #[test]
    fn devices_have_no_backing_space() {
        assert_eq!(backing_space(Path::new("/dev/null")).unwrap(), None);
    }
}
