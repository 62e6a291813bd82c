//! The embedded filesystem handle, [`DaxFs`]: every POSIX operation of daxfs, without FUSE.
//!
//! `DaxFs` owns no state of its own beyond the close-once flag; it composes the parts that do
//! (docs/DESIGN.md, "The fs layer"):
//! - [`Volume`] (`volume.rs`): the region, superblock, journal, allocator and bad-block set, and
//!   the commit of a transaction;
//! - [`InodeTable`] (`itable.rs`): live inodes by number and the free inode numbers;
//! - [`Namespace`] (`namespace.rs`, `rename.rs`): the namespace mutex, directory entries, link
//!   counts and eviction;
//! - [`DataPath`] (`io.rs`): open handles, the `dax=` mode, the atime policy, read/write/fsync.
//!
//! The operations on one inode's attributes, xattrs and space are functions over the volume and
//! the inode (`attrs.rs`, `xattrs.rs`, `space.rs`, `commit.rs`). Each method here checks what the
//! call needs (a writable filesystem, a live inode) and hands it to the part that owns it.
//! Lock order across the parts: namespace mutex → inode locks (in inode order) → DAX entry locks
//! (ascending) → leaves (bad-block set → allocator; journal; inode table slots and free list).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::AtomicBool;

use nix::errno::Errno;

use super::atime::AtimeMode;
use super::attrs::{self, attr_of, kill_suid};
use super::commit::commit_inode;
use super::exchange::{ExchangeRange, Exchanged};
use super::iflags;
use super::io::{self, DataPath};
use super::itable::InodeTable;
use super::namespace::{check_removable, Namespace, NewNode};
use super::rename::{self, Place};
use super::space;
use super::time::now_ns;
use super::types::{
    Attr, Ctx, DaxMode, DirEntry, FileKind, Ino, RegionStat, SetAttr, StatFs, XflagsChange,
    SETTABLE_XFLAGS,
};
use super::volume::Volume;
use super::xattrs;
use super::FsResult;
use crate::store::{Tx, BLOCK, MAX_FILE_SIZE};

/// A mounted (opened) daxfs region.
pub struct DaxFs {
    pub(super) vol: Volume,
    pub(super) inodes: InodeTable,
    pub(super) ns: Namespace,
    pub(super) data: DataPath,
    /// Close has run (it runs once, also on drop).
    pub(super) shut: AtomicBool,
}

fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<DaxFs>();
}

/// Namespace operations.
impl DaxFs {
    /// Looks `name` up in `parent`; takes one kernel reference on the inode found.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Attr> {
        self.vol.alive()?;
        self.ns.lookup(&self.inodes, parent, name)
    }

    /// Drops `nlookup` kernel references on `ino`.
    pub fn forget(&self, ino: Ino, nlookup: u64) {
        self.ns.forget(&self.vol, &self.inodes, ino, nlookup)
    }

    /// The target of symlink `ino`.
    pub fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        self.vol.alive()?;
        self.ns.readlink(&self.vol, &self.inodes, ino)
    }

    /// Creates a regular file, fifo, socket or device node; `mode` carries the `S_IFMT` bits and
    /// is final (no umask: [`DaxFs::mknod_with_umask`]).
    pub fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        ctx: &Ctx,
    ) -> FsResult<Attr> {
        self.mknod_with_umask(parent, name, mode, 0, rdev, ctx)
    }

    /// [`DaxFs::mknod`] with the caller's `umask`, which applies unless `parent` has a default
    /// ACL (then the ACL decides: `acl::inherit`).
    pub fn mknod_with_umask(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        ctx: &Ctx,
    ) -> FsResult<Attr> {
        let kind = if mode & libc::S_IFMT == 0 {
            FileKind::Regular
        } else {
            FileKind::from_mode(mode).ok_or(Errno::EINVAL)?
        };
        if matches!(kind, FileKind::Directory | FileKind::Symlink) {
            return Err(Errno::EINVAL);
        }
        let device = matches!(kind, FileKind::CharDevice | FileKind::BlockDevice);
        let node = NewNode {
            kind,
            perm: mode,
            umask,
            rdev: if device { rdev } else { 0 },
            target: None,
        };
        self.create_attr(parent, name, node, ctx)
    }

    /// Creates a directory (`mode` final: [`DaxFs::mkdir_with_umask`]).
    pub fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32, ctx: &Ctx) -> FsResult<Attr> {
        self.mkdir_with_umask(parent, name, mode, 0, ctx)
    }

    /// [`DaxFs::mkdir`] with the caller's `umask` (as [`DaxFs::mknod_with_umask`]).
    pub fn mkdir_with_umask(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        ctx: &Ctx,
    ) -> FsResult<Attr> {
        let node = NewNode {
            kind: FileKind::Directory,
            perm: mode,
            umask,
            rdev: 0,
            target: None,
        };
        self.create_attr(parent, name, node, ctx)
    }

    /// Creates a symlink to `target` (`ENOENT` when empty, `ENAMETOOLONG` from one block).
    pub fn symlink(&self, parent: Ino, name: &OsStr, target: &OsStr, ctx: &Ctx) -> FsResult<Attr> {
        let tb = target.as_bytes();
        if tb.is_empty() {
            return Err(Errno::ENOENT);
        }
        if tb.len() >= BLOCK as usize {
            return Err(Errno::ENAMETOOLONG);
        }
        let node = NewNode {
            kind: FileKind::Symlink,
            perm: 0o777,
            umask: 0,
            rdev: 0,
            target: Some(tb),
        };
        self.create_attr(parent, name, node, ctx)
    }

    fn create_attr(&self, parent: Ino, name: &OsStr, node: NewNode, ctx: &Ctx) -> FsResult<Attr> {
        let inode = self
            .ns
            .create_node(&self.vol, &self.inodes, parent, name, node, ctx)?;
        let st = inode.state.read();
        Ok(attr_of(&inode, &st))
    }

    /// Creates and opens a regular file; returns its attributes and a handle (`mode` final:
    /// [`DaxFs::create_with_umask`]).
    pub fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
        ctx: &Ctx,
    ) -> FsResult<(Attr, u64)> {
        self.create_with_umask(parent, name, mode, 0, flags, ctx)
    }

    /// [`DaxFs::create`] with the caller's `umask` (as [`DaxFs::mknod_with_umask`]).
    pub fn create_with_umask(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        ctx: &Ctx,
    ) -> FsResult<(Attr, u64)> {
        let _ = flags;
        let node = NewNode {
            kind: FileKind::Regular,
            perm: mode,
            umask,
            rdev: 0,
            target: None,
        };
        let inode = self
            .ns
            .create_node(&self.vol, &self.inodes, parent, name, node, ctx)?;
        let fh = self.data.new_handle(&inode);
        let st = inode.state.read();
        Ok((attr_of(&inode, &st), fh))
    }

    /// Removes the non-directory `name` from `parent`.
    pub fn unlink(&self, parent: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        let _ = ctx;
        self.vol.writable()?;
        check_removable(name, false)?;
        self.ns
            .remove_entry(&self.vol, &self.inodes, parent, name, false)
    }

    /// Removes the empty directory `name` from `parent`.
    pub fn rmdir(&self, parent: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        let _ = ctx;
        self.vol.writable()?;
        check_removable(name, true)?;
        self.ns
            .remove_entry(&self.vol, &self.inodes, parent, name, true)
    }

    /// `flags`: 0 or `libc::RENAME_NOREPLACE`, `libc::RENAME_EXCHANGE`, `libc::RENAME_WHITEOUT`
    /// (others, or an exchange with another flag: `EINVAL`); a whiteout is owned by `ctx`.
    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
        ctx: &Ctx,
    ) -> FsResult<()> {
        let from = Place { dir: parent, name };
        let to = Place {
            dir: newparent,
            name: newname,
        };
        rename::rename(&self.ns, &self.vol, &self.inodes, (from, to), flags, ctx)
    }

    /// A new hard link `newname` in `newparent` to `ino`.
    pub fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr, ctx: &Ctx) -> FsResult<Attr> {
        let _ = ctx;
        self.ns
            .link(&self.vol, &self.inodes, ino, newparent, newname)
    }

    /// Entries after cookie `offset` (0 = from the start, including `.` and `..`).
    pub fn readdir(&self, ino: Ino, offset: u64) -> FsResult<Vec<DirEntry>> {
        self.vol.alive()?;
        self.ns
            .readdir(&self.vol, &self.inodes, self.data.atime(), ino, offset)
    }
}

/// The data path.
impl DaxFs {
    /// Opens an inode; `flags` are the `open(2)` flags. Returns a file handle.
    pub fn open_file(&self, ino: Ino, flags: i32, ctx: &Ctx) -> FsResult<u64> {
        self.vol.alive()?;
        let inode = self.inodes.get(ino)?;
        self.data.open(&self.vol, &inode, flags, ctx)
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
        self.vol.alive()?;
        let inode = self.inodes.get(ino)?;
        self.data.read_with(&self.vol, &inode, offset, size, f)
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
    /// `fs/privs.rs`) made by the caller: `true` when the kernel sets `FUSE_WRITE_KILL_SUIDGID`
    /// (handle_killpriv_v2) or the writer is not root. Also returns whether the write dropped
    /// them (the mode changed behind the kernel's attribute cache).
    pub fn write_dropping_privs(
        &self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        ctx: &Ctx,
        kill_priv: bool,
    ) -> FsResult<(usize, bool)> {
        self.vol.writable()?;
        let inode = self.inodes.get(ino)?;
        self.data
            .write(&self.vol, &inode, offset, data, ctx, kill_priv)
    }

    /// `close(2)` of one descriptor of the handle: makes written data and metadata durable.
    pub fn flush(&self, ino: Ino, fh: u64) -> FsResult<()> {
        let _ = fh;
        self.vol.alive()?;
        if self.vol.read_only() {
            return Ok(());
        }
        let inode = self.inodes.get(ino)?;
        self.data.flush(&self.vol, &inode)
    }

    /// Last close of the handle: the last close of the file trims its preallocation; the file
    /// is made durable; an unlinked inode is evicted when this was its last use.
    pub fn release(&self, ino: Ino, fh: u64) -> FsResult<()> {
        let inode = self.inodes.get(ino)?;
        let last = self.data.drop_handle(&inode, fh);
        if self.vol.read_only() || self.vol.is_down() {
            return Ok(());
        }
        if last {
            io::trim_after_last_close(&self.vol, &inode)?;
        }
        let r = io::fsync(&self.vol, &inode, false);
        if inode.state.read().rec.nlink == 0 {
            self.ns.maybe_evict(&self.vol, &self.inodes, &inode);
        }
        r
    }

    /// Makes `ino` durable (`datasync`: timestamps alone need no commit).
    pub fn fsync(&self, ino: Ino, datasync: bool) -> FsResult<()> {
        self.vol.writable()?;
        let inode = self.inodes.get(ino)?;
        io::fsync(&self.vol, &inode, datasync)
    }

    /// Copies `len` bytes between regular files through the data path; returns the bytes copied.
    pub fn copy_file_range(
        &self,
        ino_in: Ino,
        off_in: u64,
        ino_out: Ino,
        off_out: u64,
        len: u64,
        ctx: &Ctx,
    ) -> FsResult<u64> {
        io::copy_file_range(
            &self.data,
            &self.vol,
            &self.inodes,
            (ino_in, off_in),
            (ino_out, off_out),
            len,
            ctx,
        )
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
        self.vol.writable()?;
        let inode = self.inodes.get(ino)?;
        let mut st = inode.state.write();
        st.require_regular(Errno::ENODEV)?;
        iflags::may_fallocate(st.rec.flags, mode)?;
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = offset.checked_add(len).ok_or(Errno::EFBIG)?;
        if end > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let mut tx = Tx::new();
        space::fallocate_locked(
            &self.vol,
            &mut tx,
            &inode,
            &mut st,
            offset,
            end,
            mode,
            now_ns(),
        )?;
        let killed = kill_suid(&mut st, ctx);
        commit_inode(&self.vol, tx, &inode, &mut st)?;
        Ok(killed)
    }

    /// Exchanges two file ranges atomically (`XFS_IOC_EXCHANGE_RANGE`; see `exchange.rs` for
    /// the checks and errors). Return: the byte ranges whose contents moved (the kernel's caches
    /// of them are stale).
    pub fn exchange_range(&self, req: &ExchangeRange, ctx: &Ctx) -> FsResult<Exchanged> {
        super::exchange::exchange_range(&self.vol, &self.inodes, req, ctx)
    }

    /// `whence`: `SEEK_DATA` or `SEEK_HOLE` (others are the kernel's).
    pub fn lseek(&self, ino: Ino, offset: u64, whence: i32) -> FsResult<u64> {
        self.vol.alive()?;
        let inode = self.inodes.get(ino)?;
        let st = inode.state.read();
        space::lseek(&inode, &st, offset, whence)
    }
}

/// Attributes and extended attributes.
impl DaxFs {
    /// The attributes of `ino`.
    pub fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        self.vol.alive()?;
        let inode = self.inodes.get(ino)?;
        let st = inode.state.read();
        Ok(attr_of(&inode, &st))
    }

    /// Changes what `set` names; durable on return.
    pub fn setattr(&self, ino: Ino, set: &SetAttr, ctx: &Ctx) -> FsResult<Attr> {
        self.vol.writable()?;
        let inode = self.inodes.get(ino)?;
        attrs::setattr(&self.vol, &inode, set, ctx)
    }

    /// Sets the per-inode flags (`FS_IOC_FSSETXATTR`'s `fsx_xflags`, e.g. `FS_XFLAG_DAX`);
    /// only the owner or root may. Durable on return.
    pub fn set_flags(&self, ino: Ino, flags: u32, ctx: &Ctx) -> FsResult<Attr> {
        self.vol.writable()?;
        let inode = self.inodes.get(ino)?;
        attrs::set_flags(&self.vol, &inode, flags, ctx)
    }

    /// `FS_IOC_FSSETXATTR`: sets the per-inode flags and the extent size hint (`fsx_extsize`
    /// under `FS_XFLAG_EXTSIZE` for a file or `FS_XFLAG_EXTSZINHERIT` for a directory; see
    /// `attrs::set_flags_and_extsize` for its rules); a bit outside [`SETTABLE_XFLAGS`] and
    /// those two, or any project id or CoW extent size, is `EOPNOTSUPP`. The hint is kept,
    /// reported and inherited; the allocator does not use it (it already allocates 2 MiB runs
    /// where it can). Return: whether `FS_XFLAG_DAX` changed (the data path changes at the next
    /// open).
    ///
    /// [`SETTABLE_XFLAGS`]: super::types::SETTABLE_XFLAGS
    pub fn set_xflags(&self, ino: Ino, want: &XflagsChange, ctx: &Ctx) -> FsResult<bool> {
        let hint = iflags::XFLAG_EXTSIZE | iflags::XFLAG_EXTSZINHERIT;
        if want.projid != 0 || want.cowextsize != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let extsize = Some((want.xflags & hint, want.extsize));
        self.change_xflags(ino, want.xflags & !hint, extsize, ctx)
    }

    /// `FS_IOC_SETFLAGS` (`xflags` from its `FS_*_FL` word): as [`DaxFs::set_xflags`], but the
    /// extent size hint stays as it is (the ioctl has no spelling for it).
    pub fn set_flags_keeping_hint(&self, ino: Ino, xflags: u32, ctx: &Ctx) -> FsResult<bool> {
        self.change_xflags(ino, xflags, None, ctx)
    }

    /// Sets the stored flags (and with `extsize`, the hint: `attrs::set_flags_and_extsize`).
    /// Return: whether `FS_XFLAG_DAX` changed.
    fn change_xflags(
        &self,
        ino: Ino,
        flags: u32,
        extsize: Option<(u32, u32)>,
        ctx: &Ctx,
    ) -> FsResult<bool> {
        if flags & !SETTABLE_XFLAGS != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        self.vol.writable()?;
        let inode = self.inodes.get(ino)?;
        let (_, old) = attrs::set_flags_and_extsize(&self.vol, &inode, flags, extsize, ctx)?;
        Ok((flags ^ old) & crate::ioctl::FS_XFLAG_DAX != 0)
    }

    /// `FS_IOC_FSGETXATTR`: `(fsx_xflags, fsx_extsize)` of `ino` (the hint in bytes; its flag
    /// is in the flags when there is one).
    pub fn fsxattr(&self, ino: Ino) -> FsResult<(u32, u32)> {
        self.vol.alive()?;
        let inode = self.inodes.get(ino)?;
        let st = inode.state.read();
        Ok(attrs::fsxattr_of(&st))
    }

    /// Filesystem statistics.
    pub fn statfs(&self) -> FsResult<StatFs> {
        Ok(self.vol.statfs(self.inodes.free_count()))
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
        self.vol.writable()?;
        let inode = self.inodes.get(ino)?;
        xattrs::setxattr(&self.vol, &inode, name, value, flags, ctx)
    }

    /// The value of xattr `name` (`ENODATA` when absent).
    pub fn getxattr(&self, ino: Ino, name: &OsStr) -> FsResult<Vec<u8>> {
        self.vol.alive()?;
        xattrs::getxattr(&*self.inodes.get(ino)?, name)
    }

    /// Names, each NUL-terminated, concatenated.
    pub fn listxattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        self.vol.alive()?;
        Ok(xattrs::listxattr(&*self.inodes.get(ino)?))
    }

    /// Removes xattr `name` (`ENODATA` when absent).
    pub fn removexattr(&self, ino: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        self.vol.writable()?;
        let inode = self.inodes.get(ino)?;
        xattrs::removexattr(&self.vol, &inode, name, ctx)
    }
}

/// The filesystem as a whole.
impl DaxFs {
    /// Region statistics.
    pub fn region_stat(&self) -> RegionStat {
        let used = self.vol.sb().inodes_total - self.inodes.free_count();
        self.vol.stat(used)
    }

    /// `FITRIM` (`fstrim(8)`): hands the free blocks of region bytes `[start, start + len)`, in
    /// runs of at least `minlen` bytes, back to the storage under the region (a region file
    /// punches them out of its backing file). Return: the bytes handed back. `EPERM` for a
    /// caller other than root (the kernel filesystems' `CAP_SYS_ADMIN`); see
    /// `Volume::trim` for the rest.
    pub fn trim(&self, start: u64, len: u64, minlen: u64, ctx: &Ctx) -> FsResult<u64> {
        if ctx.uid != 0 {
            return Err(Errno::EPERM);
        }
        self.vol.trim(start, len, minlen)
    }

    /// How the kernel should access handle `fh` of an inode with flags `xflags`: directly by
    /// the `dax=` mode (and `FS_XFLAG_DAX` under `dax=inode`), else through the page cache,
    /// which keeps what earlier opens cached except under `strictatime`, where every open's
    /// reads must reach the filesystem to move atime (see `Opened::keep_cache`).
    pub(super) fn opened(&self, fh: u64, xflags: u32) -> super::api::Opened {
        super::api::Opened {
            fh,
            direct: self.direct_access(xflags),
            keep_cache: self.data.atime().get().0 != AtimeMode::Strict,
        }
    }

    /// Sets which reads update atime (default relatime). Any time, e.g. at remount.
    pub fn set_atime_mode(&self, mode: AtimeMode, nodiratime: bool) {
        self.data.atime().set(mode, nodiratime);
    }

    /// The dax mode the filesystem was opened with.
    pub fn dax_mode(&self) -> DaxMode {
        self.data.dax()
    }

    /// Whether a file with per-inode flags `flags` is accessed directly (see `DataPath`).
    pub fn direct_access(&self, flags: u32) -> bool {
        self.data.direct(flags)
    }
}
