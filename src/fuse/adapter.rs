//! The fuser `Filesystem` implementation over [`DaxFs`]: request in, embedded-API call, reply out.
//!
//! Owns: the translation between FUSE requests/replies and the embedded API, the INIT negotiation
//! and the open flags that select the data path (`dax=`). Rules kept (virtiofsd style): no
//! filesystem logic here — every decision about files is the `fs` layer's; errors are passed
//! through as the errno the fs layer chose; a reply is sent exactly once on every path.
//!
//! Reference counting: the kernel counts one lookup per successful LOOKUP, CREATE, MKNOD, MKDIR,
//! SYMLINK, LINK and per READDIRPLUS entry other than `.` and `..`; the fs layer takes one
//! reference in each of those calls and drops them in `forget`. A READDIRPLUS entry that does not
//! fit the reply buffer is forgotten again at once.
//!
//! Every handler counts its opcode first thing ([`super::stats`]); `DAXFS_IOC_REQ_STATS` is
//! answered here from those counters, every other ioctl goes to [`super::control`].

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    CopyFileRangeFlags, Errno as FuseErrno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};

use super::control;
use super::notify::{KernelNotifier, Notification};
use super::stats::{Op, RequestStats};
use crate::direct::DirectService;
use crate::fs::{Attr, Ctx, DaxFs, DaxMode, Errno, FileKind, SetAttr, TimeSet};
use crate::ioctl::direct::is_direct_request;
use crate::ioctl::{DAXFS_IOC_REQ_STATS, FS_XFLAG_DAX};

/// Attribute and entry time-to-live: the kernel revalidates after this.
pub const TTL: Duration = Duration::from_secs(1);
/// Largest WRITE the kernel sends (and READ it asks for with `max_pages`).
pub const MAX_WRITE: u32 = 1 << 20;

/// The adapter: one per mount, shared by all session threads.
pub struct DaxFuse {
    fs: Arc<DaxFs>,
    dax: DaxMode,
    notifier: KernelNotifier,
    /// The daemon's uid (the mount owner), for owner-only control requests.
    owner_uid: u32,
    /// `FUSE_HANDLE_KILLPRIV_V2` was negotiated: the kernel flags the writes that must drop
    /// S_ISUID/S_ISGID (`FUSE_WRITE_KILL_SUIDGID`).
    killpriv_v2: bool,
    /// Requests received, per opcode (counted first thing in every handler).
    stats: Arc<RequestStats>,
    /// Before INIT: whether to ask for FUSE-over-io_uring; after: whether it was negotiated.
    io_uring: Arc<AtomicBool>,
    /// The direct-mapping service (`daxfs exec`): its two ioctls, and the memory-failure
    /// revocation of direct mappings.
    direct: Option<Arc<DirectService>>,
}

impl DaxFuse {
    /// Wraps an opened filesystem.
    pub fn new(fs: Arc<DaxFs>, dax: DaxMode, notifier: KernelNotifier) -> DaxFuse {
        DaxFuse {
            fs,
            dax,
            notifier,
            owner_uid: nix::unistd::geteuid().as_raw(),
            killpriv_v2: false,
            stats: Arc::new(RequestStats::default()),
            io_uring: Arc::new(AtomicBool::new(false)),
            direct: None,
        }
    }

    /// Serves direct mappings (`daxfs exec`) through `d`.
    pub fn set_direct(&mut self, d: Arc<DirectService>) {
        self.direct = Some(d);
    }

    /// The per-opcode request counters of this mount.
    pub fn stats(&self) -> &RequestStats {
        &self.stats
    }

    /// The counters, shared (for the io_uring queue threads).
    pub fn stats_handle(&self) -> Arc<RequestStats> {
        self.stats.clone()
    }

    /// Ask for FUSE-over-io_uring at INIT. The returned flag tells, once the session is
    /// initialized, whether the kernel agreed (it offers it only with `fuse.enable_uring=1`).
    pub fn request_io_uring(&mut self) -> Arc<AtomicBool> {
        self.io_uring.store(true, Ordering::Relaxed);
        self.io_uring.clone()
    }

    /// The fs layer changed `ino`'s mode as a side effect (S_ISUID/S_ISGID dropped by a write
    /// or fallocate). After a WRITE or FALLOCATE the kernel invalidates only size and times
    /// (`FUSE_STATX_MODSIZE`), so `stat -c %A` (a statx for the mode alone) would keep showing
    /// the cached bits for up to [`TTL`]: drop the cached attributes, then `reply`, so the
    /// caller's next stat sees the new mode. Both from the notifier thread: a serving thread never
    /// sends a notification (`super::notify`).
    fn reply_after_mode_change(&self, ino: u64, reply: impl FnOnce() + Send + 'static) {
        self.notifier
            .post(vec![Notification::attrs(ino)], Some(Box::new(reply)));
    }

    /// The open flags that select the data path for an inode with attribute `flags`.
    fn fopen_flags(&self, attr_flags: u32) -> FopenFlags {
        let direct = match self.dax {
            DaxMode::Always => true,
            DaxMode::Never => false,
            DaxMode::Inode => attr_flags & FS_XFLAG_DAX != 0,
        };
        if direct {
            FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES
        } else {
            FopenFlags::FOPEN_KEEP_CACHE
        }
    }
}

fn ctx(req: &Request) -> Ctx {
    Ctx {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

/// Converts an fs-layer errno into fuser's.
pub(crate) fn ferr(e: Errno) -> FuseErrno {
    FuseErrno::from_i32(e as i32)
}

fn kind(k: FileKind) -> FileType {
    match k {
        FileKind::Regular => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

/// Converts fs-layer attributes into fuser's.
pub(crate) fn fattr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.crtime,
        kind: kind(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}

fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(t),
    }
}

fn reply_entry(reply: ReplyEntry, r: Result<Attr, Errno>) {
    match r {
        Ok(a) => reply.entry(&TTL, &fattr(&a), Generation(a.generation)),
        Err(e) => reply.error(ferr(e)),
    }
}

fn reply_empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(ferr(e)),
    }
}

/// Answers an xattr-style request: the size when `size == 0`, `ERANGE` when it does not fit.
fn reply_xattr(reply: ReplyXattr, size: u32, r: Result<Vec<u8>, Errno>) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(FuseErrno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(ferr(e)),
    }
}

impl Filesystem for DaxFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        self.stats.count(Op::Init);
        let caps = config.capabilities();
        let mut want = InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_BIG_WRITES
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_HANDLE_KILLPRIV_V2
            | InitFlags::FUSE_HAS_IOCTL_DIR
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_EXPORT_SUPPORT
            | InitFlags::FUSE_MAX_PAGES
            // POSIX ACLs: the kernel checks them (default_permissions is always on) and leaves
            // the umask to us, who apply it only without a default ACL (`fs::acl`).
            | InitFlags::FUSE_POSIX_ACL
            | InitFlags::FUSE_DONT_MASK;
        if self.dax != DaxMode::Never {
            // Shared mmap of FOPEN_DIRECT_IO files: faults arrive as READ requests.
            want |= InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP;
        }
        let uring =
            self.io_uring.load(Ordering::Relaxed) && caps.contains(InitFlags::FUSE_OVER_IO_URING);
        if uring {
            want |= InitFlags::FUSE_OVER_IO_URING;
        }
        self.io_uring.store(uring, Ordering::Relaxed);
        let _ = config.add_capabilities(want & caps);
        self.killpriv_v2 = caps.contains(InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(MAX_WRITE);
        // Room for readahead and async direct I/O from several threads (kernel default: 12).
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        log::info!(
            "FUSE init: kernel ABI {:?}, negotiated {:?}",
            config.kernel_abi(),
            want & caps
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.stats.count(Op::Lookup);
        reply_entry(reply, self.fs.lookup(parent.0, name));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.stats.count(Op::Forget);
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.stats.count(Op::Getattr);
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &fattr(&a)),
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.stats.count(Op::Setattr);
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            ctime,
            fh: fh.map(|f| f.0),
        };
        match self.fs.setattr(ino.0, &set, &ctx(req)) {
            Ok(a) => reply.attr(&TTL, &fattr(&a)),
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.stats.count(Op::Readlink);
        match self.fs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.stats.count(Op::Mknod);
        let r = self
            .fs
            .mknod_with_umask(parent.0, name, mode, umask, rdev, &ctx(req));
        reply_entry(reply, r);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.stats.count(Op::Mkdir);
        let r = self
            .fs
            .mkdir_with_umask(parent.0, name, mode, umask, &ctx(req));
        reply_entry(reply, r);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.stats.count(Op::Unlink);
        reply_empty(reply, self.fs.unlink(parent.0, name, &ctx(req)));
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.stats.count(Op::Rmdir);
        reply_empty(reply, self.fs.rmdir(parent.0, name, &ctx(req)));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.stats.count(Op::Symlink);
        reply_entry(
            reply,
            self.fs
                .symlink(parent.0, link_name, target.as_os_str(), &ctx(req)),
        );
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.stats.count(Op::Rename);
        reply_empty(
            reply,
            self.fs.rename(
                parent.0,
                name,
                newparent.0,
                newname,
                flags.bits(),
                &ctx(req),
            ),
        );
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.stats.count(Op::Link);
        reply_entry(reply, self.fs.link(ino.0, newparent.0, newname, &ctx(req)));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.stats.count(Op::Open);
        // Only dax=inode needs the inode's flags to choose the data path.
        let attr_flags = if self.dax == DaxMode::Inode {
            match self.fs.getattr(ino.0) {
                Ok(a) => a.flags,
                Err(e) => return reply.error(ferr(e)),
            }
        } else {
            0
        };
        match self.fs.open_file(ino.0, flags.0, &ctx(req)) {
            Ok(fh) => reply.opened(FileHandle(fh), self.fopen_flags(attr_flags)),
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.stats.count(Op::Read);
        // One copy: the fs layer hands us the bytes in the mapping; fuser writes them to
        // /dev/fuse with writev.
        let mut reply = Some(reply);
        let r = self.fs.read_with(ino.0, offset, size, |data| {
            if let Some(reply) = reply.take() {
                reply.data(data);
            }
        });
        if let (Err(e), Some(reply)) = (r, reply.take()) {
            reply.error(ferr(e));
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.stats.count(Op::Write);
        let kill_priv = if self.killpriv_v2 {
            write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID)
        } else {
            req.uid() != 0
        };
        match self
            .fs
            .write_dropping_privs(ino.0, offset, data, &ctx(req), kill_priv)
        {
            Ok((n, true)) => self.reply_after_mode_change(ino.0, move || reply.written(n as u32)),
            Ok((n, false)) => reply.written(n as u32),
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.stats.count(Op::Flush);
        reply_empty(reply, self.fs.flush(ino.0, fh.0));
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.stats.count(Op::Release);
        reply_empty(reply, self.fs.release(ino.0, fh.0));
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.stats.count(Op::Fsync);
        reply_empty(reply, self.fs.fsync(ino.0, datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.stats.count(Op::Opendir);
        // Directory streams are stateless (cookies); check the inode is a directory.
        match self.fs.getattr(ino.0) {
            Ok(a) if a.kind == FileKind::Directory => {
                reply.opened(FileHandle(0), FopenFlags::empty())
            }
            Ok(_) => reply.error(FuseErrno::ENOTDIR),
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.stats.count(Op::Readdir);
        match self.fs.readdir(ino.0, offset) {
            Ok(entries) => {
                for e in entries {
                    if reply.add(INodeNo(e.ino), e.next_offset, kind(e.kind), &e.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.stats.count(Op::Readdirplus);
        let entries = match self.fs.readdir(ino.0, offset) {
            Ok(v) => v,
            Err(e) => return reply.error(ferr(e)),
        };
        for e in entries {
            let dots = e.name == "." || e.name == "..";
            // `.` and `..` are not counted by the kernel: no reference for them.
            let attr = if dots {
                self.fs.getattr(e.ino)
            } else {
                self.fs.lookup(ino.0, &e.name)
            };
            let Ok(a) = attr else {
                // Removed since readdir listed it: skip the entry.
                continue;
            };
            let full = reply.add(
                INodeNo(a.ino),
                e.next_offset,
                &e.name,
                &TTL,
                &fattr(&a),
                Generation(a.generation),
            );
            if full {
                if !dots {
                    self.fs.forget(a.ino, 1);
                }
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.stats.count(Op::Fsyncdir);
        reply_empty(reply, self.fs.fsync(ino.0, datasync));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.stats.count(Op::Statfs);
        match self.fs.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.stats.count(Op::Setxattr);
        reply_empty(
            reply,
            self.fs.setxattr(ino.0, name, value, flags, &ctx(req)),
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.stats.count(Op::Getxattr);
        reply_xattr(reply, size, self.fs.getxattr(ino.0, name));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.stats.count(Op::Listxattr);
        reply_xattr(reply, size, self.fs.listxattr(ino.0));
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.stats.count(Op::Removexattr);
        reply_empty(reply, self.fs.removexattr(ino.0, name, &ctx(req)));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.stats.count(Op::Create);
        let r = self
            .fs
            .create_with_umask(parent.0, name, mode, umask, flags, &ctx(req));
        match r {
            Ok((a, fh)) => reply.created(
                &TTL,
                &fattr(&a),
                Generation(a.generation),
                FileHandle(fh),
                self.fopen_flags(a.flags),
            ),
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn ioctl(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: ReplyIoctl,
    ) {
        self.stats.count(Op::Ioctl);
        if cmd == DAXFS_IOC_REQ_STATS {
            // Answered here: the counters are the adapter's, not the fs layer's.
            match self.stats.ioctl_answer(in_data) {
                Ok(out) if out.len() <= out_size as usize => reply.ioctl(0, &out),
                Ok(_) => reply.error(FuseErrno::EINVAL),
                Err(e) => reply.error(ferr(e)),
            }
            return;
        }
        // The answer may come later, from the notifier thread (poison: `super::control`).
        let answer = move |r: Result<Vec<u8>, Errno>| match r {
            Ok(out) if out.len() <= out_size as usize => reply.ioctl(0, &out),
            Ok(_) => reply.error(FuseErrno::EINVAL),
            Err(e) => reply.error(ferr(e)),
        };
        match &self.direct {
            Some(d) if is_direct_request(cmd) => {
                answer(d.handle_ioctl(&self.fs, &ctx(req), ino.0, cmd, in_data))
            }
            _ => {
                let caller = control::Caller {
                    ctx: ctx(req),
                    owner_uid: self.owner_uid,
                };
                // Memory failure revokes direct mappings before the kernel's (`crate::direct`).
                let inval = self.direct.as_ref().map(|d| d.invalidator(&self.notifier));
                let inval: &dyn crate::memory_failure::Invalidator = match &inval {
                    Some(i) => i,
                    None => &self.notifier,
                };
                let req = control::Ioctl {
                    caller,
                    ino: ino.0,
                    cmd,
                    input: in_data,
                };
                control::handle(&self.fs, &self.notifier, inval, req, Box::new(answer));
            }
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.stats.count(Op::Fallocate);
        let r = self
            .fs
            .fallocate_dropping_privs(ino.0, offset, length, mode, &ctx(req));
        if r == Ok(true) {
            return self.reply_after_mode_change(ino.0, move || reply.ok());
        }
        reply_empty(reply, r.map(|_| ()));
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        self.stats.count(Op::Lseek);
        if offset < 0 {
            return reply.error(FuseErrno::ENXIO);
        }
        match self.fs.lseek(ino.0, offset as u64, whence) {
            Ok(o) => reply.offset(o as i64),
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn copy_file_range(
        &self,
        req: &Request,
        ino_in: INodeNo,
        _fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        _fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        self.stats.count(Op::CopyFileRange);
        if !flags.is_empty() {
            return reply.error(FuseErrno::EINVAL);
        }
        // The reply carries a u32 count: copy at most 4 GiB - 4 KiB per request.
        let len = len.min(u64::from(u32::MAX) & !4095);
        match self
            .fs
            .copy_file_range(ino_in.0, offset_in, ino_out.0, offset_out, len, &ctx(req))
        {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(ferr(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{MkfsOptions, OpenOptions};

    fn open_fs(dir: &Path) -> Arc<DaxFs> {
        let region = dir.join("region");
        DaxFs::mkfs(
            &region,
            &MkfsOptions {
                size: Some(32 << 20),
                inodes: None,
            },
        )
        .unwrap();
        Arc::new(DaxFs::open(&region, &OpenOptions::default()).unwrap())
    }

    #[test]
    fn dax_mode_selects_the_data_path() {
        let dir = tempfile::tempdir().unwrap();
        let fs = open_fs(dir.path());
        let n = KernelNotifier::new();
        let always = DaxFuse::new(fs.clone(), DaxMode::Always, n.clone());
        assert!(always.fopen_flags(0).contains(FopenFlags::FOPEN_DIRECT_IO));
        let never = DaxFuse::new(fs.clone(), DaxMode::Never, n.clone());
        assert!(!never
            .fopen_flags(FS_XFLAG_DAX)
            .contains(FopenFlags::FOPEN_DIRECT_IO));
        assert!(never.fopen_flags(0).contains(FopenFlags::FOPEN_KEEP_CACHE));
        let inode = DaxFuse::new(fs, DaxMode::Inode, n);
        assert!(inode
            .fopen_flags(FS_XFLAG_DAX)
            .contains(FopenFlags::FOPEN_DIRECT_IO));
        assert!(!inode.fopen_flags(0).contains(FopenFlags::FOPEN_DIRECT_IO));
    }

    #[test]
    fn attributes_convert_field_by_field() {
        let dir = tempfile::tempdir().unwrap();
        let fs = open_fs(dir.path());
        let a = fs
            .mknod(
                crate::fs::ROOT_INO,
                OsStr::new("dev"),
                libc::S_IFCHR | 0o640,
                0x0103,
                &Ctx {
                    uid: 7,
                    gid: 8,
                    pid: 1,
                },
            )
            .unwrap();
        let f = fattr(&a);
        assert_eq!(f.ino, INodeNo(a.ino));
        assert_eq!(f.kind, FileType::CharDevice);
        assert_eq!(f.perm, 0o640);
        assert_eq!((f.uid, f.gid, f.rdev), (7, 8, 0x0103));
        assert_eq!((f.size, f.nlink, f.mtime), (a.size, a.nlink, a.mtime));
        assert_eq!(ferr(Errno::ENOTEMPTY).code(), libc::ENOTEMPTY);
    }
}
