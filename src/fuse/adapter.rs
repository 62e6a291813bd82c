//! The fuser `Filesystem` implementation over a [`FileSystem`]: request in, one trait call,
//! reply out.
//!
//! Owns: the translation between FUSE requests/replies and the [`FileSystem`] trait, the INIT
//! negotiation, the open flags that carry the filesystem's choice of data path, and the
//! per-opcode counters. Rules kept (virtiofsd style, docs/DESIGN.md, "The FUSE adapter"): no
//! filesystem logic here — every decision about files and every errno is the filesystem's; the
//! adapter only reshapes what the protocol needs (a u32 byte count, an xattr size probe, a
//! readdir buffer that is full); a reply is sent exactly once on every path. The adapter is
//! generic over the filesystem: daxfs serves [`DaxFs`], the adapter's tests a fake
//! (`tests/fuse_adapter.rs`).
//!
//! Reference counting: the kernel counts one lookup per successful LOOKUP, CREATE, MKNOD, MKDIR,
//! SYMLINK, LINK and per READDIRPLUS entry other than `.` and `..`; the filesystem takes one
//! reference in each of those calls and drops them in `forget`.
//!
//! Every handler counts its opcode first thing ([`super::stats`]); `DAXFS_IOC_REQ_STATS` is
//! answered here from those counters, every other ioctl goes to the mount's
//! [`IoctlHandler`] (`ENOTTY` without one). Conversions are in `adapter/convert.rs`.

mod convert;

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    CopyFileRangeFlags, Errno as FuseErrno, FileHandle, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyStatx, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};

use super::ioctls::{DaxIoctls, IoctlHandler};
use super::notify::{KernelNotifier, Notification};
use super::stats::{Op, RequestStats};
use crate::direct::DirectService;
use crate::fs::{DaxFs, Errno, FileSystem, KillPriv, SetAttr};
use crate::ioctl::{
    check_header, DaxfsServerInfo, Pod, Versioned, DAXFS_IOC_REQ_STATS, DAXFS_IOC_SERVER_INFO,
    TRANSPORT_DEV_FUSE, TRANSPORT_IO_URING,
};
use convert::{ctx, kind, reply_empty, reply_entry, reply_xattr, time_set};
pub(crate) use convert::{fattr, ferr};

/// Attribute and entry time-to-live: the kernel revalidates after this.
pub const TTL: Duration = Duration::from_secs(1);
/// Largest WRITE the kernel sends (and READ it asks for with `max_pages`).
pub const MAX_WRITE: u32 = 1 << 20;

/// The adapter: one per mount, shared by all session threads.
pub struct DaxFuse<F: FileSystem = DaxFs> {
    fs: Arc<F>,
    notifier: KernelNotifier,
    /// `FUSE_HANDLE_KILLPRIV_V2` was negotiated: the kernel flags the writes that must drop
    /// S_ISUID/S_ISGID (`FUSE_WRITE_KILL_SUIDGID`).
    killpriv_v2: bool,
    /// Requests received, per opcode (counted first thing in every handler).
    stats: Arc<RequestStats>,
    /// Before INIT: whether to ask for FUSE-over-io_uring; after: whether it was negotiated.
    io_uring: Arc<AtomicBool>,
    /// Where ioctls other than `DAXFS_IOC_REQ_STATS` go.
    ioctls: Option<Arc<dyn IoctlHandler>>,
}

impl DaxFuse<DaxFs> {
    /// Serves an opened daxfs, with its control ioctls.
    pub fn new(fs: Arc<DaxFs>, notifier: KernelNotifier) -> DaxFuse<DaxFs> {
        let ioctls = Arc::new(DaxIoctls::new(fs.clone(), notifier.clone(), None));
        let mut a = DaxFuse::with_fs(fs, notifier);
        a.ioctls = Some(ioctls);
        a
    }

    /// Serves direct mappings (`daxfs exec`) through `d`.
    pub fn set_direct(&mut self, d: Arc<DirectService>) {
        let ioctls = DaxIoctls::new(self.fs.clone(), self.notifier.clone(), Some(d));
        self.ioctls = Some(Arc::new(ioctls));
    }
}

impl<F: FileSystem> DaxFuse<F> {
    /// Serves any [`FileSystem`], without ioctls (each answered `ENOTTY`) until
    /// [`Self::set_ioctls`].
    pub fn with_fs(fs: Arc<F>, notifier: KernelNotifier) -> DaxFuse<F> {
        DaxFuse {
            fs,
            notifier,
            killpriv_v2: false,
            stats: Arc::new(RequestStats::default()),
            io_uring: Arc::new(AtomicBool::new(false)),
            ioctls: None,
        }
    }

    /// Hands every ioctl but `DAXFS_IOC_REQ_STATS` to `h`.
    pub fn set_ioctls(&mut self, h: Arc<dyn IoctlHandler>) {
        self.ioctls = Some(h);
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

    /// Answers `DAXFS_IOC_SERVER_INFO`: the transport agreed at INIT. `EINVAL` for a bad header
    /// or nonzero `flags`.
    fn server_info(&self, input: &[u8]) -> Result<Vec<u8>, Errno> {
        let q: DaxfsServerInfo = check_header(input)?;
        if q.flags != 0 {
            return Err(Errno::EINVAL);
        }
        let mut out = DaxfsServerInfo::new_request();
        out.transport = if self.io_uring.load(Ordering::Relaxed) {
            TRANSPORT_IO_URING
        } else {
            TRANSPORT_DEV_FUSE
        };
        Ok(out.as_bytes().to_vec())
    }

    /// The filesystem changed `ino`'s mode as a side effect (S_ISUID/S_ISGID dropped by a write
    /// or fallocate). After a WRITE or FALLOCATE the kernel invalidates only size and times
    /// (`FUSE_STATX_MODSIZE`), so `stat -c %A` (a statx for the mode alone) would keep showing
    /// the cached bits for up to [`TTL`]: drop the cached attributes, then `reply`, so the
    /// caller's next stat sees the new mode. Both from the notifier thread: a serving thread never
    /// sends a notification (`super::notify`).
    fn reply_after_mode_change(&self, ino: u64, reply: impl FnOnce() + Send + 'static) {
        self.notifier
            .post(vec![Notification::attrs(ino)], Some(Box::new(reply)));
    }
}

/// The open flags that carry the filesystem's choice of data path.
fn fopen_flags(o: &crate::fs::Opened) -> FopenFlags {
    if o.direct {
        FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES
    } else if o.keep_cache {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::empty()
    }
}

impl<F: FileSystem + 'static> Filesystem for DaxFuse<F> {
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
            // the umask to the filesystem, which applies it only without a default ACL.
            | InitFlags::FUSE_POSIX_ACL
            | InitFlags::FUSE_DONT_MASK;
        if self.fs.may_open_direct() {
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

    /// `statx(2)` asking for the birth time: the attributes of `getattr` with `crtime` as
    /// `btime`. The `STATX_ATTR_*` bits are not answered: the kernel (6.18) takes only the mask
    /// and the fields from a FUSE server.
    fn statx(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: Option<FileHandle>,
        _flags: u32,
        _mask: u32,
        reply: ReplyStatx,
    ) {
        self.stats.count(Op::Statx);
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.statx(
                &TTL,
                &fattr(&a),
                libc::STATX_BASIC_STATS | libc::STATX_BTIME,
                0,
                0,
            ),
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
        let r = self.fs.mknod(parent.0, name, mode, umask, rdev, &ctx(req));
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
        let r = self.fs.mkdir(parent.0, name, mode, umask, &ctx(req));
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
        match self.fs.open(ino.0, flags.0, &ctx(req)) {
            Ok(o) => reply.opened(FileHandle(o.fh), fopen_flags(&o)),
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
        let r = self.fs.read(ino.0, offset, size, &mut |data| {
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
        let kill = if self.killpriv_v2 {
            KillPriv::Flagged(write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID))
        } else {
            KillPriv::Unflagged
        };
        match self.fs.write(ino.0, offset, data, kill, &ctx(req)) {
            Ok(w) if w.mode_changed => {
                self.reply_after_mode_change(ino.0, move || reply.written(w.bytes as u32))
            }
            Ok(w) => reply.written(w.bytes as u32),
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
        match self.fs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
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
        let r = self.fs.readdirplus(ino.0, offset, &mut |e, a| {
            reply.add(
                INodeNo(a.ino),
                e.next_offset,
                &e.name,
                &TTL,
                &fattr(a),
                Generation(a.generation),
            )
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(ferr(e)),
        }
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
        reply_empty(reply, self.fs.fsyncdir(ino.0, datasync));
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
            .create(parent.0, name, mode, umask, flags, &ctx(req));
        match r {
            Ok((a, o)) => reply.created(
                &TTL,
                &fattr(&a),
                Generation(a.generation),
                FileHandle(o.fh),
                fopen_flags(&o),
            ),
            Err(e) => reply.error(ferr(e)),
        }
    }

    /// `O_TMPFILE` (FUSE_TMPFILE, the vendored fuser's addition): answered as a CREATE.
    fn tmpfile(
        &self,
        req: &Request,
        parent: INodeNo,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.stats.count(Op::Tmpfile);
        match self.fs.tmpfile(parent.0, mode, umask, flags, &ctx(req)) {
            Ok((a, o)) => reply.created(
                &TTL,
                &fattr(&a),
                Generation(a.generation),
                FileHandle(o.fh),
                fopen_flags(&o),
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
        // The answer may come later, from the notifier thread (poison: `super::control`).
        let answer = move |r: Result<Vec<u8>, Errno>| match r {
            Ok(out) if out.len() <= out_size as usize => reply.ioctl(0, &out),
            Ok(_) => reply.error(FuseErrno::EINVAL),
            Err(e) => reply.error(ferr(e)),
        };
        match cmd {
            // Answered here: the counters are the adapter's, not the fs layer's.
            DAXFS_IOC_REQ_STATS => return answer(self.stats.ioctl_answer(in_data)),
            // Answered here: the transport was agreed by this adapter at INIT.
            DAXFS_IOC_SERVER_INFO => return answer(self.server_info(in_data)),
            _ => {}
        }
        match &self.ioctls {
            Some(h) => h.ioctl(ctx(req), ino.0, cmd, in_data, Box::new(answer)),
            None => answer(Err(Errno::ENOTTY)),
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
        let r = self.fs.fallocate(ino.0, offset, length, mode, &ctx(req));
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
        match self.fs.lseek(ino.0, offset, whence) {
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
        // The reply carries a u32 count: copy at most 4 GiB - 4 KiB per request.
        let len = len.min(u64::from(u32::MAX) & !4095);
        let c = ctx(req);
        let flags = flags.bits() as u32;
        match self
            .fs
            .copy_file_range(ino_in.0, offset_in, ino_out.0, offset_out, len, flags, &c)
        {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(ferr(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{Ctx, MkfsOptions, OpenOptions};

    #[test]
    fn open_flags_carry_the_filesystems_choice_of_data_path() {
        let o = |direct, keep_cache| crate::fs::Opened {
            fh: 1,
            direct,
            keep_cache,
        };
        let direct = fopen_flags(&o(true, true));
        assert!(direct.contains(FopenFlags::FOPEN_DIRECT_IO));
        assert!(direct.contains(FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES));
        assert!(!direct.contains(FopenFlags::FOPEN_KEEP_CACHE));
        let cached = fopen_flags(&o(false, true));
        assert!(cached.contains(FopenFlags::FOPEN_KEEP_CACHE));
        assert!(!cached.contains(FopenFlags::FOPEN_DIRECT_IO));
        // strictatime: a cached open drops what earlier opens cached.
        let strict = fopen_flags(&o(false, false));
        assert!(!strict.contains(FopenFlags::FOPEN_KEEP_CACHE));
        assert!(!strict.contains(FopenFlags::FOPEN_DIRECT_IO));
    }

    #[test]
    fn attributes_convert_field_by_field() {
        let dir = tempfile::tempdir().unwrap();
        let region = dir.path().join("region");
        let mkfs = MkfsOptions {
            size: Some(32 << 20),
            inodes: None,
        };
        DaxFs::mkfs(&region, &mkfs).unwrap();
        let fs = DaxFs::open(&region, &OpenOptions::default()).unwrap();
        let ctx = Ctx {
            uid: 7,
            gid: 8,
            pid: 1,
        };
        let name = OsStr::new("dev");
        let a = fs
            .mknod(
                crate::fs::ROOT_INO,
                name,
                libc::S_IFCHR | 0o640,
                0x0103,
                &ctx,
            )
            .unwrap();
        let f = fattr(&a);
        assert_eq!(f.ino, INodeNo(a.ino));
        assert_eq!(f.kind, fuser::FileType::CharDevice);
        assert_eq!(f.perm, 0o640);
        assert_eq!((f.uid, f.gid, f.rdev), (7, 8, 0x0103));
        assert_eq!((f.size, f.nlink, f.mtime), (a.size, a.nlink, a.mtime));
        assert_eq!((f.blksize, f.blocks), (4096, a.blocks));
        assert_eq!(ferr(Errno::ENOTEMPTY).code(), libc::ENOTEMPTY);
    }
}
