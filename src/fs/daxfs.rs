//! The embedded filesystem handle: every POSIX operation of daxfs, without FUSE.
//!
//! CONTRACT STUB: the signatures are fixed; the bodies are being written (issue 2).

use std::ffi::OsStr;
use std::path::Path;

use super::*;

/// Options for [`DaxFs::mkfs`].
#[derive(Clone, Debug, Default)]
pub struct MkfsOptions {
    /// Size for a new (or grown) region file; ignored for devices.
    pub size: Option<u64>,
    /// Number of inodes; `None` picks one per 16 KiB of region, at least 1024.
    pub inodes: Option<u64>,
}

/// How `dax=` was asked for at mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DaxMode {
    /// Every file is accessed directly (FUSE `FOPEN_DIRECT_IO`, no kernel page cache).
    #[default]
    Always,
    /// The kernel page cache is used.
    Never,
    /// Per inode, by the `FS_XFLAG_DAX` flag.
    Inode,
}

/// Options for [`DaxFs::open`].
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    pub read_only: bool,
    pub dax: DaxMode,
}

/// A mounted (opened) daxfs region.
pub struct DaxFs {
    _private: (),
}

#[allow(unused_variables)]
impl DaxFs {
    /// Formats `path` as a fresh daxfs region (creating a sparse file of `opts.size` if needed).
    pub fn mkfs(path: &Path, opts: &MkfsOptions) -> Result<RegionStat, crate::Error> {
        todo!()
    }
    /// Opens a formatted region: validates the superblock and metadata (refusing a bad region with
    /// an [`crate::Error`] that names the problem), replays the journal, takes the region lock.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<DaxFs, crate::Error> {
        todo!()
    }
    /// Checks a region that is not mounted; returns each problem found (empty when clean).
    /// With `repair`, fixes what it can and returns what it fixed.
    pub fn fsck(path: &Path, repair: bool) -> Result<Vec<String>, crate::Error> {
        todo!()
    }
    /// Region statistics.
    pub fn region_stat(&self) -> RegionStat {
        todo!()
    }
    /// The dax mode the filesystem was opened with.
    pub fn dax_mode(&self) -> DaxMode {
        todo!()
    }
    /// Persists everything and releases the region (also done on drop).
    pub fn close(self) -> Result<(), crate::Error> {
        todo!()
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Attr> {
        todo!()
    }
    pub fn forget(&self, ino: Ino, nlookup: u64) {
        todo!()
    }
    pub fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        todo!()
    }
    pub fn setattr(&self, ino: Ino, set: &SetAttr, ctx: &Ctx) -> FsResult<Attr> {
        todo!()
    }
    pub fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        todo!()
    }
    /// Creates a regular file, fifo, socket or device node; `mode` carries the `S_IFMT` bits.
    pub fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        ctx: &Ctx,
    ) -> FsResult<Attr> {
        todo!()
    }
    pub fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32, ctx: &Ctx) -> FsResult<Attr> {
        todo!()
    }
    pub fn unlink(&self, parent: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        todo!()
    }
    pub fn rmdir(&self, parent: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        todo!()
    }
    pub fn symlink(&self, parent: Ino, name: &OsStr, target: &OsStr, ctx: &Ctx) -> FsResult<Attr> {
        todo!()
    }
    /// `flags`: 0, `libc::RENAME_NOREPLACE` or `libc::RENAME_EXCHANGE` (others: `EINVAL`).
    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
        ctx: &Ctx,
    ) -> FsResult<()> {
        todo!()
    }
    pub fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr, ctx: &Ctx) -> FsResult<Attr> {
        todo!()
    }
    /// Opens an inode; `flags` are the `open(2)` flags. Returns a file handle.
    pub fn open_file(&self, ino: Ino, flags: i32, ctx: &Ctx) -> FsResult<u64> {
        todo!()
    }
    /// Creates and opens a regular file.
    pub fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
        ctx: &Ctx,
    ) -> FsResult<(Attr, u64)> {
        todo!()
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
        todo!()
    }
    /// Convenience: reads into `buf`, returns the number of bytes read.
    pub fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        todo!()
    }
    pub fn write(&self, ino: Ino, offset: u64, data: &[u8], ctx: &Ctx) -> FsResult<usize> {
        todo!()
    }
    /// `close(2)` of one descriptor of the handle: makes written data and metadata durable.
    pub fn flush(&self, ino: Ino, fh: u64) -> FsResult<()> {
        todo!()
    }
    /// Last close of the handle.
    pub fn release(&self, ino: Ino, fh: u64) -> FsResult<()> {
        todo!()
    }
    pub fn fsync(&self, ino: Ino, datasync: bool) -> FsResult<()> {
        todo!()
    }
    /// Entries after cookie `offset` (0 = from the start, including `.` and `..`).
    pub fn readdir(&self, ino: Ino, offset: u64) -> FsResult<Vec<DirEntry>> {
        todo!()
    }
    pub fn statfs(&self) -> FsResult<StatFs> {
        todo!()
    }
    /// `mode`: 0, `FALLOC_FL_KEEP_SIZE`, `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`,
    /// `FALLOC_FL_ZERO_RANGE` (optionally with `KEEP_SIZE`); others `EOPNOTSUPP`.
    pub fn fallocate(&self, ino: Ino, offset: u64, len: u64, mode: i32, ctx: &Ctx) -> FsResult<()> {
        todo!()
    }
    /// `whence`: `SEEK_DATA` or `SEEK_HOLE` (others are the kernel's).
    pub fn lseek(&self, ino: Ino, offset: u64, whence: i32) -> FsResult<u64> {
        todo!()
    }
    /// `flags`: 0, `XATTR_CREATE` or `XATTR_REPLACE`.
    pub fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        ctx: &Ctx,
    ) -> FsResult<()> {
        todo!()
    }
    pub fn getxattr(&self, ino: Ino, name: &OsStr) -> FsResult<Vec<u8>> {
        todo!()
    }
    /// Names, each NUL-terminated, concatenated.
    pub fn listxattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        todo!()
    }
    pub fn removexattr(&self, ino: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        todo!()
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
        todo!()
    }
    /// The file's DAX mappings, in file order (issue 3 fills in PMD/PTE entries).
    pub fn mappings(&self, ino: Ino) -> FsResult<Vec<MappingInfo>> {
        todo!()
    }
}
