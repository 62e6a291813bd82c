//! The mapped persistent-memory region.
//!
//! This module owns the one shared mapping (`MAP_SHARED`) of the region and the one durability
//! primitive, [`Region::persist`]. A region is a regular file (created sparse at the size asked), a
//! block device (`/dev/pmemN`, or a loop device standing in for one) or a device-DAX character
//! device (`/dev/daxN.M`).
//!
//! Rules it keeps:
//! - It knows nothing of files, inodes or FUSE: callers address it by byte offset.
//! - Every access is bounds-checked against the mapped length; an out-of-range access is an error,
//!   never undefined behaviour.
//! - `persist(off, len)` returns only when the bytes in that range are durable: `msync(MS_SYNC)`
//!   for files and block devices (whose mappings go through the page cache), and a CPU cache
//!   write-back plus store fence for device DAX, whose mapping *is* the media. A region file on
//!   tmpfs or ramfs is as durable as it can be once the store is done: the kernel's `msync` there
//!   ends in a no-op fsync (the page cache *is* the backing store, and nothing of it survives a
//!   reboot), so `persist` only fences and spares the system call ([`Region::volatile_backing`]).
//!   Stores to a `MAP_SHARED` mapping are in the page cache as soon as they are made, so on every
//!   kind a `kill -9` of the daemon loses nothing that was stored.
//! - The region is locked with `flock(LOCK_EX | LOCK_NB)` for as long as a [`Region`] lives, so a
//!   region that is already mounted (or being checked) is refused with [`RegionError::Busy`].
//! - A region file gets storage before it is first stored to ([`Region::reserve`], see
//!   [`crate::backing`]): a full filesystem under it is an error, never a `SIGBUS`.
//! - An open that creates or grows a file and then fails leaves the file as it found it.
//!
//! Concurrency: the mapping is plain shared memory. The layers above decide who may touch which
//! bytes when (metadata under the store's locks, file data under DAX entry locks); this module only
//! offers raw, bounds-checked copies and pointer access.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use memmap2::{MmapOptions, MmapRaw};

use crate::backing::Backing;
use crate::geometry::PAGE_SIZE;

/// What kind of object backs the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionKind {
    /// A regular file: emulated pmem (put it on tmpfs for speed, on a disk for persistence).
    File,
    /// A block device such as `/dev/pmemN` or a loop device.
    BlockDevice,
    /// A device-DAX character device such as `/dev/dax0.0`.
    DaxDevice,
}

/// Errors from opening or accessing a region.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    /// An I/O error on the region (open, stat, lock).
    #[error("{path}: {source}")]
    Io {
        /// The region path as given.
        path: PathBuf,
        /// What the system call said.
        #[source]
        source: io::Error,
    },
    /// Another process holds the region lock.
    #[error("{path}: region is in use (already mounted, or being checked); unmount it first")]
    Busy {
        /// The region path as given.
        path: PathBuf,
    },
    /// The region file does not exist and no size to create it was given.
    #[error("{path} does not exist; give --size to create a region file of that size")]
    NeedSize {
        /// The region path as given.
        path: PathBuf,
    },
    /// The region does not exist.
    #[error(
        "{path} does not exist: give a region made by `daxfs mkfs` (a file, /dev/pmemN or /dev/daxN.M)"
    )]
    Missing {
        /// The region path as given.
        path: PathBuf,
    },
    /// The region is smaller than a filesystem needs.
    #[error("{path}: size {} is too small (a region needs at least {})", human(*.size), human(*.min))]
    TooSmall {
        /// The region path as given.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The smallest size accepted.
        min: u64,
    },
    /// The path is neither a regular file nor a block or DAX device.
    #[error(
        "{path} is not a daxfs region: a {what}, not a regular file, block device or DAX device"
    )]
    BadKind {
        /// The region path as given.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// A character device that is not a device-DAX one.
    #[error(
        "{path} is not a daxfs region: a character device that is not a DAX device (/dev/daxN.M)"
    )]
    NotDax {
        /// The region path as given.
        path: PathBuf,
    },
    /// `mmap` of the region failed.
    #[error("{path}: cannot map {}: {}", human(*.size), map_failure(.source))]
    Map {
        /// The region path as given.
        path: PathBuf,
        /// Bytes to map.
        size: u64,
        /// What `mmap` said.
        source: io::Error,
    },
    /// A region file could not be created at the size asked.
    #[error("{path}: cannot make a region file of {}: {}", human(*.size), create_failure(.source))]
    Create {
        /// The region path as given.
        path: PathBuf,
        /// The size asked.
        size: u64,
        /// What the system said.
        source: io::Error,
    },
    /// The filesystem holding a region file has no space for its blocks.
    #[error("{path}: the filesystem under the region has no space left for it ({source})")]
    NoSpace {
        /// The region path as given.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// An access outside the mapped region (a caller bug; never undefined behaviour).
    #[error("region access [{off:#x}, +{len:#x}) is outside the region of {size:#x} bytes")]
    OutOfRange {
        /// First byte asked for.
        off: u64,
        /// Bytes asked for.
        len: u64,
        /// The region's size.
        size: u64,
    },
}

/// The smallest region we accept: enough for the superblock, journal and a few data blocks.
pub const MIN_REGION_SIZE: u64 = 16 << 20;

/// A mapped pmem region. Dropping it unmaps and unlocks.
pub struct Region {
    map: MmapRaw,
    file: File,
    len: u64,
    kind: RegionKind,
    /// The backing file lives on tmpfs/ramfs: `msync` would be a no-op.
    volatile_backing: bool,
    /// For a region file: the chunks already given storage.
    backing: Option<Backing>,
    path: PathBuf,
}

impl Drop for Region {
    /// Releases the region's `flock` explicitly before the descriptor closes. The lock belongs to
    /// the open file description, which a child forked by another thread (a test spawning a
    /// process, the daemon starting a helper) shares until it execs; closing our descriptor alone
    /// would leave the region locked for that window, and the next open of the region (a mount
    /// right after mkfs) would find it busy. `LOCK_UN` releases it for every copy at once.
    fn drop(&mut self) {
        // SAFETY: flock on the valid file descriptor this Region owns; no memory is passed.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("kind", &self.kind)
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RegionError + '_ {
    move |source| RegionError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Region {
    /// Opens (and with `create_size`, creates or grows a regular file to) a region and maps it.
    ///
    /// `create_size` is only honoured for regular files; for devices the size is the device's.
    /// The region is `flock`ed exclusively; a second open fails with [`RegionError::Busy`]. When
    /// it fails after creating or growing the file, the file is removed or shrunk back.
    pub fn open(path: &Path, create_size: Option<u64>) -> Result<Region, RegionError> {
        let existed = path.exists();
        if !existed && create_size.is_none() {
            return Err(RegionError::Missing {
                path: path.to_owned(),
            });
        }
        if let Some(size) = create_size.filter(|&s| s & !(PAGE_SIZE - 1) < MIN_REGION_SIZE) {
            if !existed {
                return Err(RegionError::TooSmall {
                    path: path.to_owned(),
                    size,
                    min: MIN_REGION_SIZE,
                });
            }
        }
        if path.is_dir() {
            return Err(RegionError::BadKind {
                path: path.to_owned(),
                what: "directory",
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create_size.is_some())
            .truncate(false)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(io_err(path))?;
        Self::lock(&file, path)?;
        let old_len = file.metadata().map_err(io_err(path))?.len();
        let r = Self::map(file, path, create_size);
        if r.is_err() {
            undo_create(path, existed, old_len);
        }
        r
    }

    /// The rest of [`Region::open`] on the opened, locked file: size, kind, mapping.
    fn map(file: File, path: &Path, create_size: Option<u64>) -> Result<Region, RegionError> {
        let meta = file.metadata().map_err(io_err(path))?;
        let ft = meta.file_type();
        let (kind, len) = if ft.is_file() {
            let mut len = meta.len();
            if let Some(want) = create_size {
                if want > len {
                    file.set_len(want).map_err(|e| RegionError::Create {
                        path: path.to_owned(),
                        size: want,
                        source: e,
                    })?;
                    len = want;
                }
            }
            (RegionKind::File, len)
        } else if ft.is_block_device() {
            (
                RegionKind::BlockDevice,
                block_device_size(&file).map_err(io_err(path))?,
            )
        } else if ft.is_char_device() {
            let size = dax_device_size(meta.rdev()).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => RegionError::NotDax {
                    path: path.to_owned(),
                },
                _ => io_err(path)(e),
            })?;
            (RegionKind::DaxDevice, size)
        } else {
            return Err(RegionError::BadKind {
                path: path.to_owned(),
                what: if ft.is_fifo() { "fifo" } else { "socket" },
            });
        };
        // Round down to whole pages: a trailing partial page is never used.
        let len = len & !(PAGE_SIZE - 1);
        if len < MIN_REGION_SIZE {
            return Err(RegionError::TooSmall {
                path: path.to_owned(),
                size: len,
                min: MIN_REGION_SIZE,
            });
        }
        let map = MmapOptions::new()
            .len(len as usize)
            .map_raw(&file)
            .map_err(|e| RegionError::Map {
                path: path.to_owned(),
                size: len,
                source: e,
            })?;
        let volatile_backing = kind == RegionKind::File && on_memory_fs(&file);
        Ok(Region {
            map,
            file,
            len,
            kind,
            volatile_backing,
            backing: (kind == RegionKind::File).then(|| Backing::new(len)),
            path: path.to_owned(),
        })
    }

    fn lock(file: &File, path: &Path) -> Result<(), RegionError> {
        // SAFETY: flock on a valid, owned file descriptor; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Err(RegionError::Busy {
                path: path.to_owned(),
            })
        } else {
            Err(io_err(path)(err))
        }
    }

    /// Length of the mapping in bytes (a multiple of [`PAGE_SIZE`]).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: a region is at least [`MIN_REGION_SIZE`] bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of 4 KiB pages in the region.
    pub fn pages(&self) -> u64 {
        self.len / PAGE_SIZE
    }

    /// What backs the region.
    pub fn kind(&self) -> RegionKind {
        self.kind
    }

    /// Whether the region is a file on tmpfs or ramfs, where `msync` is a no-op and `persist`
    /// therefore only fences.
    pub fn volatile_backing(&self) -> bool {
        self.volatile_backing
    }

    /// The path the region was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file of the region (for `fstat`, `fallocate` on the backing file, and so on).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Gives `[off, off + len)` storage before it is first stored to (a region file only; a
    /// device has its storage). Return: [`RegionError::NoSpace`] when the filesystem under the
    /// region cannot hold it.
    pub fn reserve(&self, off: u64, len: u64) -> Result<(), RegionError> {
        self.check(off, len)?;
        let Some(b) = &self.backing else {
            return Ok(());
        };
        b.reserve(&self.file, off, len)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::EDQUOT) => RegionError::NoSpace {
                    path: self.path.clone(),
                    source,
                },
                _ => io_err(&self.path)(source),
            })
    }

    /// Hands `[off, off + len)` back to the storage under the region (`FITRIM`): a region file
    /// punches the range out of its backing file. Return: `false` when the region's kind cannot
    /// discard (a block or DAX device: daxfs issues no device discard).
    ///
    /// Context: nothing may store to the range meanwhile (the caller holds it free).
    pub fn discard(&self, off: u64, len: u64) -> Result<bool, RegionError> {
        self.check(off, len)?;
        let Some(b) = &self.backing else {
            return Ok(false);
        };
        b.discard(&self.file, off, len)
            .map_err(io_err(&self.path))?;
        Ok(true)
    }

    fn check(&self, off: u64, len: u64) -> Result<(), RegionError> {
        match off.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(RegionError::OutOfRange {
                off,
                len,
                size: self.len,
            }),
        }
    }

    /// Base pointer of the mapping.
    pub fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Pointer to byte `off` of a range of `len` bytes, after a bounds check.
    pub fn ptr(&self, off: u64, len: u64) -> Result<*mut u8, RegionError> {
        self.check(off, len)?;
        // SAFETY: off + len <= self.len (checked above), so the offset stays inside the mapping.
        Ok(unsafe { self.base().add(off as usize) })
    }

    /// Copies `buf.len()` bytes at `off` out of the region.
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<(), RegionError> {
        let src = self.ptr(off, buf.len() as u64)?;
        // SAFETY: `src` is valid for buf.len() bytes (bounds-checked); `buf` is a distinct
        // allocation, so the ranges do not overlap. Concurrent writers to the same region bytes are
        // excluded by the caller's locks (store metadata locks or DAX entry locks).
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into the region at `off`. Not durable until [`Region::persist`].
    pub fn write_at(&self, off: u64, data: &[u8]) -> Result<(), RegionError> {
        let dst = self.ptr(off, data.len() as u64)?;
        // SAFETY: `dst` is valid for data.len() bytes (bounds-checked) in a writable shared
        // mapping; `data` cannot alias the mapping mutably. Exclusion of other writers to these
        // bytes is the caller's (see the module comment).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }

    /// Fills `[off, off + len)` with zeros. Not durable until [`Region::persist`].
    pub fn zero(&self, off: u64, len: u64) -> Result<(), RegionError> {
        let dst = self.ptr(off, len)?;
        // SAFETY: `dst` is valid for `len` bytes (bounds-checked) in a writable shared mapping.
        unsafe { std::ptr::write_bytes(dst, 0, len as usize) };
        Ok(())
    }

    /// A shared view of `[off, off + len)`.
    ///
    /// # Safety
    /// The caller must ensure no thread writes these bytes while the slice lives (hold the DAX
    /// entry locks, or the store lock, that cover the range).
    pub unsafe fn slice(&self, off: u64, len: u64) -> Result<&[u8], RegionError> {
        let p = self.ptr(off, len)?;
        // SAFETY: bounds-checked pointer into a mapping that lives as long as `self`; absence of
        // concurrent writers is the caller's obligation (see `# Safety`).
        Ok(unsafe { std::slice::from_raw_parts(p, len as usize) })
    }

    /// A mutable view of `[off, off + len)`.
    ///
    /// # Safety
    /// The caller must have exclusive access to these bytes while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, off: u64, len: u64) -> Result<&mut [u8], RegionError> {
        let p = self.ptr(off, len)?;
        // SAFETY: bounds-checked pointer into a writable mapping that lives as long as `self`;
        // exclusivity is the caller's obligation (see `# Safety`).
        Ok(unsafe { std::slice::from_raw_parts_mut(p, len as usize) })
    }

    /// Makes `[off, off + len)` durable. This is the one durability primitive of daxfs.
    pub fn persist(&self, off: u64, len: u64) -> Result<(), RegionError> {
        if len == 0 {
            return Ok(());
        }
        self.check(off, len)?;
        match self.kind {
            RegionKind::File if self.volatile_backing => {
                // tmpfs/ramfs: the page cache is the backing store and its fsync is a no-op;
                // order our stores before whatever the caller does next, and stop there.
                std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
            RegionKind::File | RegionKind::BlockDevice => {
                let start = off & !(PAGE_SIZE - 1);
                let end = off + len;
                self.map
                    .flush_range(start as usize, (end - start) as usize)
                    .map_err(io_err(&self.path))
            }
            RegionKind::DaxDevice => {
                cache_writeback(self.base(), off, len);
                Ok(())
            }
        }
    }

    /// Makes the whole region durable.
    pub fn persist_all(&self) -> Result<(), RegionError> {
        self.persist(0, self.len)
    }
}

/// Leaves the file at `path` as an open that failed found it: removed when it created it, shrunk
/// back when it grew it.
pub(crate) fn undo_create(path: &Path, existed: bool, old_len: u64) {
    if !existed {
        let _ = std::fs::remove_file(path);
    } else if let Ok(f) = OpenOptions::new().write(true).open(path) {
        if f.metadata().is_ok_and(|m| m.is_file() && m.len() > old_len) {
            let _ = f.set_len(old_len);
        }
    }
}

/// A byte count in words: `4096 bytes`, `16 MiB`, `999 TiB` (whole units when exact).
fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut s = format!("{n} bytes");
    for (i, u) in UNITS.iter().enumerate() {
        let unit = 1u64 << (10 * (i + 1));
        if n >= unit {
            s = if n % unit == 0 {
                format!("{} {u}", n / unit)
            } else {
                format!("{:.1} {u}", n as f64 / unit as f64)
            };
        }
    }
    s
}

/// Why a region of that size cannot be mapped, in words.
fn map_failure(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOMEM) => {
            "larger than this machine lets a process map (address space or memory \
            overcommit limit); give a smaller --size"
                .into()
        }
        Some(libc::ENODEV) => "the filesystem under it does not support shared mappings".into(),
        _ => e.to_string(),
    }
}

/// Why a region file of that size cannot be made, in words.
fn create_failure(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EFBIG) | Some(libc::EINVAL) => {
            "larger than the filesystem under it allows for one file; give a smaller --size".into()
        }
        Some(libc::ENOSPC) => "no space left on the filesystem under it".into(),
        _ => e.to_string(),
    }
}

/// Writes back the CPU cache lines of `[off, off + len)` and fences, for device DAX.
fn cache_writeback(base: *mut u8, off: u64, len: u64) {
    #[cfg(target_arch = "x86_64")]
    {
        const LINE: u64 = 64;
        let mut line = off & !(LINE - 1);
        while line < off + len {
            // SAFETY: `line` lies within [off & !63, off + len), inside the mapping whose bounds
            // the caller checked; clflush only needs a mapped address and does not modify data.
            unsafe { std::arch::x86_64::_mm_clflush(base.add(line as usize)) };
            line += LINE;
        }
        // SAFETY: sfence has no memory-safety preconditions.
        unsafe { std::arch::x86_64::_mm_sfence() };
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (base, off, len);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// Whether `file` lives on a filesystem whose `fsync` is a no-op (tmpfs, ramfs).
fn on_memory_fs(file: &File) -> bool {
    match nix::sys::statfs::fstatfs(file) {
        Ok(st) => {
            // RAMFS_MAGIC (0x858458f6) has no constant in nix.
            const RAMFS_MAGIC: i64 = 0x8584_58f6;
            let t = st.filesystem_type();
            t == nix::sys::statfs::TMPFS_MAGIC || t.0 == RAMFS_MAGIC
        }
        Err(_) => false,
    }
}

fn block_device_size(file: &File) -> io::Result<u64> {
    // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    let mut size: u64 = 0;
    // SAFETY: the fd is a valid open block device and `size` is a valid u64 out-parameter, which
    // is what BLKGETSIZE64 writes.
    unsafe { blkgetsize64(file.as_raw_fd(), &mut size) }.map_err(io::Error::from)?;
    Ok(size)
}

fn dax_device_size(rdev: u64) -> io::Result<u64> {
    let major = libc::major(rdev);
    let minor = libc::minor(rdev);
    let p = format!("/sys/dev/char/{major}:{minor}/size");
    let s = std::fs::read_to_string(&p)?;
    s.trim()
        .parse::<u64>()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{p}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_sparse_file_and_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.img");
        let r = Region::open(&p, Some(32 << 20)).unwrap();
        assert_eq!(r.len(), 32 << 20);
        assert_eq!(r.kind(), RegionKind::File);
        r.write_at(4096, b"hello").unwrap();
        r.persist(4096, 5).unwrap();
        let mut b = [0u8; 5];
        r.read_at(4096, &mut b).unwrap();
        assert_eq!(&b, b"hello");
        // Sparse: far fewer blocks allocated than the size.
        let meta = std::fs::metadata(&p).unwrap();
        assert!(meta.blocks() * 512 < 32 << 20);
    }

    #[test]
    fn memory_backing_is_detected() {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            let dir = tempfile::tempdir_in(shm).unwrap();
            let r = Region::open(&dir.path().join("r.img"), Some(16 << 20)).unwrap();
            assert!(r.volatile_backing());
            r.write_at(0, b"x").unwrap();
            r.persist(0, 1).unwrap();
        }
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let r = Region::open(&dir.path().join("r.img"), Some(16 << 20)).unwrap();
        // The repository lives on a disk filesystem, never on tmpfs in our CI.
        let on_tmpfs = on_memory_fs(r.file());
        assert_eq!(r.volatile_backing(), on_tmpfs);
    }

    #[test]
    fn out_of_range_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let r = Region::open(&dir.path().join("r.img"), Some(16 << 20)).unwrap();
        assert!(matches!(
            r.write_at((16 << 20) - 2, b"abc"),
            Err(RegionError::OutOfRange { .. })
        ));
        assert!(r.read_at(u64::MAX, &mut [0u8; 2]).is_err());
        assert!(r.persist(0, (16 << 20) + 1).is_err());
    }

    #[test]
    fn second_open_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.img");
        let _r = Region::open(&p, Some(16 << 20)).unwrap();
        assert!(matches!(
            Region::open(&p, None),
            Err(RegionError::Busy { .. })
        ));
    }

    #[test]
    fn a_closed_region_is_free_while_a_forked_child_still_holds_its_descriptor() {
        // A child forked while the region is open shares the locked open file description until
        // it execs or exits; here it sleeps until we tell it to go, so the window is certain.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.img");
        let r = Region::open(&p, Some(16 << 20)).unwrap();
        let (rd, wr) = nix::unistd::pipe().unwrap();
        // SAFETY: the child only calls async-signal-safe functions (read, _exit) before exiting.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let mut b = [0u8; 1];
            // SAFETY: read into a valid one-byte buffer from the pipe's read end, then _exit.
            unsafe {
                libc::read(rd.as_raw_fd(), b.as_mut_ptr().cast(), 1);
                libc::_exit(0);
            }
        }
        drop(r);
        let reopened = Region::open(&p, None);
        nix::unistd::write(&wr, b"x").unwrap();
        let mut status = 0;
        // SAFETY: waits for the child forked above; status is a valid out pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            reopened.is_ok(),
            "the region stayed locked by the forked child's copy of the descriptor: {:?}",
            reopened.err()
        );
    }

    #[test]
    fn missing_file_needs_size_and_small_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Region::open(&dir.path().join("none"), None),
            Err(RegionError::Missing { .. })
        ));
        assert!(matches!(
            Region::open(&dir.path().join("small"), Some(1 << 20)),
            Err(RegionError::TooSmall { .. })
        ));
        assert!(
            !dir.path().join("small").exists(),
            "a refused size made a file"
        );
    }

    #[test]
    fn a_failed_open_leaves_no_file_it_made() {
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let p = dir.path().join("huge");
        // 999 TiB: more than a process can map (47-bit address space).
        let e = Region::open(&p, Some(999 << 40)).unwrap_err();
        assert!(
            matches!(e, RegionError::Map { .. } | RegionError::Create { .. }),
            "{e}"
        );
        assert!(!e.to_string().contains("os error"), "{e}");
        assert!(!p.exists(), "the failed open left {}", p.display());
        // A grown file is shrunk back.
        std::fs::write(&p, vec![1u8; 4096]).unwrap();
        assert!(Region::open(&p, Some(999 << 40)).is_err());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 4096);
    }

    #[test]
    fn what_is_not_a_region_is_named() {
        let e = Region::open(Path::new("/dev/null"), None).unwrap_err();
        assert!(matches!(e, RegionError::NotDax { .. }), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = Region::open(dir.path(), None).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let e = Region::open(&dir.path().join("none"), None).unwrap_err();
        assert!(!e.to_string().contains("--size"), "{e}");
    }

    #[test]
    fn reserve_gives_a_region_file_storage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.img");
        let r = Region::open(&p, Some(32 << 20)).unwrap();
        let before = std::fs::metadata(&p).unwrap().blocks() * 512;
        r.reserve(8 << 20, 4096).unwrap();
        let after = std::fs::metadata(&p).unwrap().blocks() * 512;
        assert!(after >= before + (2 << 20) - 4096, "{before} -> {after}");
        assert!(r.reserve(32 << 20, 1).is_err());
    }
}
