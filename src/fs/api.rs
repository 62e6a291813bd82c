//! The interface the FUSE adapter serves: [`FileSystem`], and its implementation by [`DaxFs`].
//!
//! Like virtiofsd's `FileSystem` trait under its protocol server, this is the one boundary
//! between `crate::fuse` and the filesystem (docs/DESIGN.md, "The fs layer", "The FUSE
//! adapter"): the adapter decodes a request, calls one method, encodes what it returns. The
//! methods speak this layer's types ([`Attr`], [`Ctx`], [`DirEntry`], [`Errno`]), never a wire
//! struct, and every POSIX rule and errno decision is made behind them: `opendir` of a
//! non-directory, the set-id rule of a write whether or not the kernel flags it, `lseek` before
//! the start, unknown `copy_file_range` flags, which files are accessed directly (`dax=`).
//!
//! Conventions are the fs layer's (`crate::fs`): the calls that return an entry (`lookup`,
//! `mknod`, `mkdir`, `symlink`, `link`, `create`, and each entry `readdirplus` hands on) take one
//! kernel reference on it, which `forget` drops. Every method has a default that answers
//! `ENOSYS`, as the kernel expects from a filesystem that does not implement a request, so a
//! partial implementation (a test's fake) is short.

use std::ffi::OsStr;

use nix::errno::Errno;

use super::daxfs::DaxFs;
use super::types::{Attr, Ctx, DirEntry, FileKind, Ino, SetAttr, StatFs};
use super::FsResult;

/// An opened file: its handle and how the kernel should access it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The handle later requests on the open file carry.
    pub fh: u64,
    /// Access the file directly (no kernel page cache; `FOPEN_DIRECT_IO`), else cached.
    pub direct: bool,
    /// A cached open keeps the pages earlier opens cached (`FOPEN_KEEP_CACHE`). False under
    /// `strictatime`: then each open's reads reach the filesystem again, which is what moves
    /// atime (a page-cache hit never reaches the daemon).
    pub keep_cache: bool,
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Bytes written.
    pub bytes: usize,
    /// The write dropped S_ISUID/S_ISGID: the kernel's cached mode is stale.
    pub mode_changed: bool,
}

/// Who decides whether a write drops the set-id bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillPriv {
    /// The kernel handles `FUSE_HANDLE_KILLPRIV_V2` and flagged the write (`true`: drop them if
    /// the file's rule says so) or not.
    Flagged(bool),
    /// The kernel does not flag writes: the filesystem applies the rule with the caller.
    Unflagged,
}

/// The filesystem operations the FUSE adapter calls, one per request it serves.
///
/// Errors are the errno the syscall returns. Context: any method may be called from several
/// session threads at once and may sleep; none may wait for a kernel notification.
#[allow(unused_variables)]
pub trait FileSystem: Send + Sync {
    /// Whether any file may be opened for direct access (then shared mmap of such files needs
    /// `FUSE_DIRECT_IO_ALLOW_MMAP` at INIT).
    fn may_open_direct(&self) -> bool {
        false
    }
    /// Looks `name` up in directory `parent`.
    fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Attr> {
        Err(Errno::ENOSYS)
    }
    /// Drops `nlookup` kernel references on `ino`.
    fn forget(&self, ino: Ino, nlookup: u64) {}
    /// The attributes of `ino`.
    fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        Err(Errno::ENOSYS)
    }
    /// Changes the attributes `set` names.
    fn setattr(&self, ino: Ino, set: &SetAttr, ctx: &Ctx) -> FsResult<Attr> {
        Err(Errno::ENOSYS)
    }
    /// The target of symlink `ino`.
    fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        Err(Errno::ENOSYS)
    }
    /// Creates a node; `mode` carries the `S_IFMT` bits and the permissions, `umask` the
    /// caller's umask (the kernel leaves it to the filesystem: `FUSE_DONT_MASK`).
    #[allow(clippy::too_many_arguments)]
    fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        ctx: &Ctx,
    ) -> FsResult<Attr> {
        Err(Errno::ENOSYS)
    }
    /// Creates a directory (`umask` as for [`Self::mknod`]).
    fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32, umask: u32, ctx: &Ctx) -> FsResult<Attr> {
        Err(Errno::ENOSYS)
    }
    /// Removes the non-directory `name`.
    fn unlink(&self, parent: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// Removes the empty directory `name`.
    fn rmdir(&self, parent: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// Creates a symlink to `target`.
    fn symlink(&self, parent: Ino, name: &OsStr, target: &OsStr, ctx: &Ctx) -> FsResult<Attr> {
        Err(Errno::ENOSYS)
    }
    /// `rename(2)`; `flags` are `RENAME_NOREPLACE` / `RENAME_EXCHANGE` / `RENAME_WHITEOUT` bits.
    #[allow(clippy::too_many_arguments)]
    fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
        ctx: &Ctx,
    ) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// Adds the name `newname` in `newparent` for `ino`.
    fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr, ctx: &Ctx) -> FsResult<Attr> {
        Err(Errno::ENOSYS)
    }
    /// Opens `ino` with the `open(2)` `flags`.
    fn open(&self, ino: Ino, flags: i32, ctx: &Ctx) -> FsResult<Opened> {
        Err(Errno::ENOSYS)
    }
    /// Creates and opens a regular file (`umask` as for [`Self::mknod`]).
    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        ctx: &Ctx,
    ) -> FsResult<(Attr, Opened)> {
        Err(Errno::ENOSYS)
    }
    /// Creates and opens an unnamed regular file in `parent` (`O_TMPFILE`).
    fn tmpfile(
        &self,
        parent: Ino,
        mode: u32,
        umask: u32,
        flags: i32,
        ctx: &Ctx,
    ) -> FsResult<(Attr, Opened)> {
        Err(Errno::ENOSYS)
    }
    /// Reads up to `size` bytes at `offset` and hands them to `reply` (once, on success).
    fn read(&self, ino: Ino, offset: u64, size: u32, reply: &mut dyn FnMut(&[u8])) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// Writes `data` at `offset`; `kill` says who decides about the set-id bits.
    fn write(
        &self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        kill: KillPriv,
        ctx: &Ctx,
    ) -> FsResult<Written> {
        Err(Errno::ENOSYS)
    }
    /// A `close` of handle `fh`.
    fn flush(&self, ino: Ino, fh: u64) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// The last close of handle `fh`.
    fn release(&self, ino: Ino, fh: u64) -> FsResult<()> {
        Ok(())
    }
    /// Makes `ino` durable (its data only, with `datasync`).
    fn fsync(&self, ino: Ino, datasync: bool) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// Opens directory `ino` for reading; returns the handle.
    fn opendir(&self, ino: Ino) -> FsResult<u64> {
        Err(Errno::ENOSYS)
    }
    /// The entries of directory `ino` from cookie `offset` on.
    fn readdir(&self, ino: Ino, offset: u64) -> FsResult<Vec<DirEntry>> {
        Err(Errno::ENOSYS)
    }
    /// The entries of directory `ino` from `offset` on, each with its attributes, handed to
    /// `add` until it returns `true` (the reply is full; that entry was not taken). Every entry
    /// taken other than `.` and `..` carries one kernel reference.
    fn readdirplus(
        &self,
        ino: Ino,
        offset: u64,
        add: &mut dyn FnMut(&DirEntry, &Attr) -> bool,
    ) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// Makes directory `ino` durable.
    fn fsyncdir(&self, ino: Ino, datasync: bool) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// Filesystem statistics.
    fn statfs(&self) -> FsResult<StatFs> {
        Err(Errno::ENOSYS)
    }
    /// Sets extended attribute `name`; `flags` are `XATTR_CREATE` / `XATTR_REPLACE`.
    fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        ctx: &Ctx,
    ) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// The value of extended attribute `name`.
    fn getxattr(&self, ino: Ino, name: &OsStr) -> FsResult<Vec<u8>> {
        Err(Errno::ENOSYS)
    }
    /// The names of `ino`'s extended attributes, each NUL-terminated.
    fn listxattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        Err(Errno::ENOSYS)
    }
    /// Removes extended attribute `name`.
    fn removexattr(&self, ino: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// `fallocate(2)` with `mode`. Return: whether it dropped S_ISUID/S_ISGID.
    fn fallocate(&self, ino: Ino, offset: u64, len: u64, mode: i32, ctx: &Ctx) -> FsResult<bool> {
        Err(Errno::ENOSYS)
    }
    /// `lseek(2)` with `SEEK_DATA` or `SEEK_HOLE` from `offset` (as the caller gave it).
    fn lseek(&self, ino: Ino, offset: i64, whence: i32) -> FsResult<u64> {
        Err(Errno::ENOSYS)
    }
    /// Copies `len` bytes between regular files; `flags` as `copy_file_range(2)` got them.
    #[allow(clippy::too_many_arguments)]
    fn copy_file_range(
        &self,
        ino_in: Ino,
        off_in: u64,
        ino_out: Ino,
        off_out: u64,
        len: u64,
        flags: u32,
        ctx: &Ctx,
    ) -> FsResult<u64> {
        Err(Errno::ENOSYS)
    }
}

/// daxfs's answers: each method hands the request to the embedded API, after the decisions that
/// belong to no single operation there.
impl FileSystem for DaxFs {
    fn may_open_direct(&self) -> bool {
        self.dax_mode() != super::types::DaxMode::Never
    }
    fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Attr> {
        DaxFs::lookup(self, parent, name)
    }
    fn forget(&self, ino: Ino, nlookup: u64) {
        DaxFs::forget(self, ino, nlookup)
    }
    fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        DaxFs::getattr(self, ino)
    }
    fn setattr(&self, ino: Ino, set: &SetAttr, ctx: &Ctx) -> FsResult<Attr> {
        DaxFs::setattr(self, ino, set, ctx)
    }
    fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        DaxFs::readlink(self, ino)
    }
    fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        ctx: &Ctx,
    ) -> FsResult<Attr> {
        self.mknod_with_umask(parent, name, mode, umask, rdev, ctx)
    }
    fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32, umask: u32, ctx: &Ctx) -> FsResult<Attr> {
        self.mkdir_with_umask(parent, name, mode, umask, ctx)
    }
    fn unlink(&self, parent: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        DaxFs::unlink(self, parent, name, ctx)
    }
    fn rmdir(&self, parent: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        DaxFs::rmdir(self, parent, name, ctx)
    }
    fn symlink(&self, parent: Ino, name: &OsStr, target: &OsStr, ctx: &Ctx) -> FsResult<Attr> {
        DaxFs::symlink(self, parent, name, target, ctx)
    }
    fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
        ctx: &Ctx,
    ) -> FsResult<()> {
        DaxFs::rename(self, parent, name, newparent, newname, flags, ctx)
    }
    fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr, ctx: &Ctx) -> FsResult<Attr> {
        DaxFs::link(self, ino, newparent, newname, ctx)
    }
    /// The data path follows `dax=`: `inode` reads the inode's `FS_XFLAG_DAX` before opening.
    fn open(&self, ino: Ino, flags: i32, ctx: &Ctx) -> FsResult<Opened> {
        let attr_flags = match self.dax_mode() {
            super::types::DaxMode::Inode => DaxFs::getattr(self, ino)?.flags,
            _ => 0,
        };
        let fh = self.open_file(ino, flags, ctx)?;
        Ok(self.opened(fh, attr_flags))
    }
    fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        ctx: &Ctx,
    ) -> FsResult<(Attr, Opened)> {
        let (a, fh) = self.create_with_umask(parent, name, mode, umask, flags, ctx)?;
        let o = self.opened(fh, a.flags);
        Ok((a, o))
    }
    fn tmpfile(
        &self,
        parent: Ino,
        mode: u32,
        umask: u32,
        flags: i32,
        ctx: &Ctx,
    ) -> FsResult<(Attr, Opened)> {
        let (a, fh) = DaxFs::tmpfile(self, parent, mode, umask, flags, ctx)?;
        let o = self.opened(fh, a.flags);
        Ok((a, o))
    }
    fn read(&self, ino: Ino, offset: u64, size: u32, reply: &mut dyn FnMut(&[u8])) -> FsResult<()> {
        self.read_with(ino, offset, size, |data| reply(data))
    }
    /// Without `FUSE_HANDLE_KILLPRIV_V2` every write by a caller other than root may drop the
    /// set-id bits (root has `CAP_FSETID`); the file's own rule is `privs`'s.
    fn write(
        &self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        kill: KillPriv,
        ctx: &Ctx,
    ) -> FsResult<Written> {
        let kill = match kill {
            KillPriv::Flagged(flagged) => flagged,
            KillPriv::Unflagged => ctx.uid != 0,
        };
        let (bytes, mode_changed) = self.write_dropping_privs(ino, offset, data, ctx, kill)?;
        Ok(Written {
            bytes,
            mode_changed,
        })
    }
    fn flush(&self, ino: Ino, fh: u64) -> FsResult<()> {
        DaxFs::flush(self, ino, fh)
    }
    fn release(&self, ino: Ino, fh: u64) -> FsResult<()> {
        DaxFs::release(self, ino, fh)
    }
    fn fsync(&self, ino: Ino, datasync: bool) -> FsResult<()> {
        DaxFs::fsync(self, ino, datasync)
    }
    /// Directory streams are stateless (the cookies are slot indices): handle 0, after checking
    /// that `ino` is a directory (`ENOTDIR`).
    fn opendir(&self, ino: Ino) -> FsResult<u64> {
        match DaxFs::getattr(self, ino)?.kind {
            FileKind::Directory => Ok(0),
            _ => Err(Errno::ENOTDIR),
        }
    }
    fn readdir(&self, ino: Ino, offset: u64) -> FsResult<Vec<DirEntry>> {
        DaxFs::readdir(self, ino, offset)
    }
    /// An entry removed since the listing is skipped; `.` and `..` take no reference; the entry
    /// that did not fit gives its reference back at once.
    fn readdirplus(
        &self,
        ino: Ino,
        offset: u64,
        add: &mut dyn FnMut(&DirEntry, &Attr) -> bool,
    ) -> FsResult<()> {
        for e in DaxFs::readdir(self, ino, offset)? {
            let dots = e.name == "." || e.name == "..";
            let attr = if dots {
                DaxFs::getattr(self, e.ino)
            } else {
                DaxFs::lookup(self, ino, &e.name)
            };
            let Ok(a) = attr else {
                continue;
            };
            if add(&e, &a) {
                if !dots {
                    DaxFs::forget(self, a.ino, 1);
                }
                break;
            }
        }
        Ok(())
    }
    fn fsyncdir(&self, ino: Ino, datasync: bool) -> FsResult<()> {
        DaxFs::fsync(self, ino, datasync)
    }
    fn statfs(&self) -> FsResult<StatFs> {
        DaxFs::statfs(self)
    }
    fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        ctx: &Ctx,
    ) -> FsResult<()> {
        DaxFs::setxattr(self, ino, name, value, flags, ctx)
    }
    fn getxattr(&self, ino: Ino, name: &OsStr) -> FsResult<Vec<u8>> {
        DaxFs::getxattr(self, ino, name)
    }
    fn listxattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        DaxFs::listxattr(self, ino)
    }
    fn removexattr(&self, ino: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        DaxFs::removexattr(self, ino, name, ctx)
    }
    fn fallocate(&self, ino: Ino, offset: u64, len: u64, mode: i32, ctx: &Ctx) -> FsResult<bool> {
        self.fallocate_dropping_privs(ino, offset, len, mode, ctx)
    }
    /// An offset before the start of the file is `ENXIO` (as `SEEK_DATA`/`SEEK_HOLE` past the
    /// end is).
    fn lseek(&self, ino: Ino, offset: i64, whence: i32) -> FsResult<u64> {
        let offset = u64::try_from(offset).map_err(|_| Errno::ENXIO)?;
        DaxFs::lseek(self, ino, offset, whence)
    }
    /// No `copy_file_range` flag is defined: any is `EINVAL`.
    fn copy_file_range(
        &self,
        ino_in: Ino,
        off_in: u64,
        ino_out: Ino,
        off_out: u64,
        len: u64,
        flags: u32,
        ctx: &Ctx,
    ) -> FsResult<u64> {
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        DaxFs::copy_file_range(self, ino_in, off_in, ino_out, off_out, len, ctx)
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::{FileSystem, KillPriv};
    use crate::fs::{Ctx, DaxFs, Errno, XflagsChange};
    use crate::fs::{DaxMode, MkfsOptions, OpenOptions, ROOT_INO};
    use crate::ioctl::FS_XFLAG_DAX;

    fn open(dir: &std::path::Path, dax: DaxMode) -> DaxFs {
        let region = dir.join("region");
        if !region.exists() {
            let mkfs = MkfsOptions {
                size: Some(32 << 20),
                inodes: None,
            };
            DaxFs::mkfs(&region, &mkfs).unwrap();
        }
        let opts = OpenOptions {
            dax,
            ..OpenOptions::default()
        };
        DaxFs::open(&region, &opts).unwrap()
    }

    fn user() -> Ctx {
        Ctx {
            uid: 1000,
            gid: 1000,
            pid: 1,
        }
    }

    /// `dax=` decides the data path of each open: always, never, or by the inode's flag.
    #[test]
    fn open_and_create_choose_the_data_path_by_dax_mode() {
        let dir = tempfile::tempdir().unwrap();
        let name = OsStr::new("f");
        for (mode, plain, flagged) in [
            (DaxMode::Always, true, true),
            (DaxMode::Never, false, false),
            (DaxMode::Inode, false, true),
        ] {
            let fs = open(dir.path(), mode);
            let ino = match FileSystem::lookup(&fs, ROOT_INO, name) {
                Ok(a) => a.ino,
                Err(_) => {
                    let (a, o) =
                        FileSystem::create(&fs, ROOT_INO, name, 0o644, 0, 0, &user()).unwrap();
                    assert_eq!(o.direct, plain, "{mode:?}: create");
                    FileSystem::release(&fs, a.ino, o.fh).unwrap();
                    a.ino
                }
            };
            fs.set_flags(ino, 0, &user()).unwrap();
            let o = FileSystem::open(&fs, ino, libc::O_RDWR, &user()).unwrap();
            assert_eq!(o.direct, plain, "{mode:?} without FS_XFLAG_DAX");
            FileSystem::release(&fs, ino, o.fh).unwrap();
            fs.set_flags(ino, FS_XFLAG_DAX, &user()).unwrap();
            let o = FileSystem::open(&fs, ino, libc::O_RDWR, &user()).unwrap();
            assert_eq!(o.direct, flagged, "{mode:?} with FS_XFLAG_DAX");
            FileSystem::release(&fs, ino, o.fh).unwrap();
            assert_eq!(fs.may_open_direct(), mode != DaxMode::Never);
            FileSystem::forget(&fs, ino, 1);
        }
    }

    /// The errno decisions the adapter used to make are the filesystem's.
    #[test]
    fn policy_lives_below_the_adapter() {
        let dir = tempfile::tempdir().unwrap();
        let fs = open(dir.path(), DaxMode::Always);
        let (a, o) =
            FileSystem::create(&fs, ROOT_INO, OsStr::new("f"), 0o644, 0, 0, &user()).unwrap();
        assert_eq!(FileSystem::opendir(&fs, a.ino), Err(Errno::ENOTDIR));
        assert_eq!(FileSystem::opendir(&fs, ROOT_INO), Ok(0));
        assert_eq!(
            FileSystem::lseek(&fs, a.ino, -1, libc::SEEK_DATA),
            Err(Errno::ENXIO)
        );
        assert_eq!(
            FileSystem::copy_file_range(&fs, a.ino, 0, a.ino, 4096, 1, 1, &user()),
            Err(Errno::EINVAL)
        );
        let bad = XflagsChange {
            // FS_XFLAG_REALTIME: not one daxfs keeps.
            xflags: 0x1,
            ..XflagsChange::default()
        };
        assert_eq!(fs.set_xflags(a.ino, &bad, &user()), Err(Errno::EOPNOTSUPP));
        let projid = XflagsChange {
            projid: 1,
            ..XflagsChange::default()
        };
        assert_eq!(
            fs.set_xflags(a.ino, &projid, &user()),
            Err(Errno::EOPNOTSUPP)
        );
        let dax = XflagsChange {
            xflags: FS_XFLAG_DAX,
            ..XflagsChange::default()
        };
        assert_eq!(fs.set_xflags(a.ino, &dax, &user()), Ok(true));
        assert_eq!(fs.set_xflags(a.ino, &dax, &user()), Ok(false));
        FileSystem::release(&fs, a.ino, o.fh).unwrap();
    }

    /// Without `FUSE_HANDLE_KILLPRIV_V2` the filesystem decides: a write by anyone but root
    /// drops S_ISUID; with it, the kernel's flag decides.
    #[test]
    fn the_kill_priv_rule_applies_with_or_without_the_kernels_flag() {
        let dir = tempfile::tempdir().unwrap();
        let fs = open(dir.path(), DaxMode::Always);
        let (a, o) =
            FileSystem::create(&fs, ROOT_INO, OsStr::new("s"), 0o4755, 0, 0, &user()).unwrap();
        let root = Ctx::root();
        let suid = |fs: &DaxFs| FileSystem::getattr(fs, a.ino).unwrap().perm & 0o4000;
        let w = FileSystem::write(&fs, a.ino, 0, b"x", KillPriv::Unflagged, &root).unwrap();
        assert_eq!((w.bytes, w.mode_changed, suid(&fs)), (1, false, 0o4000));
        let w = FileSystem::write(&fs, a.ino, 0, b"x", KillPriv::Flagged(false), &user()).unwrap();
        assert_eq!((w.mode_changed, suid(&fs)), (false, 0o4000));
        let w = FileSystem::write(&fs, a.ino, 0, b"x", KillPriv::Unflagged, &user()).unwrap();
        assert_eq!((w.mode_changed, suid(&fs)), (true, 0));
        FileSystem::release(&fs, a.ino, o.fh).unwrap();
    }
}
