//! The daemon side of the control ioctls (`crate::ioctl`) and of `FS_IOC_FSGETXATTR`.
//!
//! Owns: decoding a request's bytes (header, version, size, flags), calling the embedded API,
//! and encoding the answer. It decides no policy: poison permission, ranges, alignment and file
//! kind are checked by `memory_failure` (once, before anything changes: `EPERM` for a caller that
//! is neither root nor the mount's owner, `EINVAL` for a bad range); a bad version or size is
//! `EINVAL` here; an unknown request number is `ENOTTY`, as a driver answers.

use super::caller_fds;
use super::notify::{KernelNotifier, Notification};
use crate::fs::{
    iflags, Ctx, DaxFs, Errno, ExchangeRange, FsResult, Ino, ShutdownMode, XflagsChange,
    EXCHANGE_RANGE_ALL_FLAGS,
};
use crate::ioctl::xfs::{
    goingdown_flags, ExchangeRangeArg, XFS_IOC_EXCHANGE_RANGE, XFS_IOC_GOINGDOWN,
};
use crate::ioctl::*;
use crate::memory_failure as mf;

/// Who sends a control request.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    /// The requesting thread's credentials.
    pub ctx: Ctx,
    /// The uid the daemon runs as (the mount's owner).
    pub owner_uid: u32,
}

/// One ioctl as the kernel sent it.
#[derive(Clone, Copy, Debug)]
pub struct Ioctl<'a> {
    /// Who sent it.
    pub caller: Caller,
    /// The inode it was issued on.
    pub ino: Ino,
    /// The request number.
    pub cmd: u32,
    /// Its input bytes.
    pub input: &'a [u8],
}

/// Where an ioctl's answer goes: the output bytes (at most `_IOC_SIZE(cmd)`) or the errno.
pub type Reply = Box<dyn FnOnce(FsResult<Vec<u8>>) + Send>;

/// Handles one ioctl on inode `ino`; `reply` gets the answer, on this thread or (poison inject
/// and clear, which answer only once the kernel dropped the range: `super::notify`) on the
/// notifier thread. Memory failure invalidates through `inval` (the notifier, or the
/// direct-mapping service's invalidator, which revokes direct mappings first).
///
/// Context: runs in a session thread; may sleep in the fs layer; never waits for the kernel.
pub fn handle(
    fs: &DaxFs,
    notifier: &KernelNotifier,
    inval: &dyn mf::Invalidator,
    req: Ioctl<'_>,
    reply: Reply,
) {
    let Ioctl {
        caller,
        ino,
        cmd,
        input,
    } = req;
    if fs.is_shut_down() && cmd != XFS_IOC_GOINGDOWN {
        return reply(Err(Errno::EIO));
    }
    match cmd {
        XFS_IOC_GOINGDOWN => match going_down(fs, caller, input) {
            // The kernel's caches go too (pages, attributes, user mappings of every inode), so
            // that nothing is served from them: then the answer.
            Ok(()) => {
                let notes = fs
                    .live_inodes()
                    .into_iter()
                    .map(|i| Notification::data(i, 0, 0))
                    .collect();
                notifier.post(notes, Some(Box::new(move || reply(Ok(Vec::new())))));
            }
            Err(e) => reply(Err(e)),
        },
        DAXFS_IOC_INJECT_POISON
        | DAXFS_IOC_CLEAR_POISON
        | DAXFS_IOC_INJECT_POISON_REPORT
        | DAXFS_IOC_CLEAR_POISON_REPORT => poison(fs, inval, caller, ino, cmd, input, reply),
        // The moved ranges' cached pages and both files' attributes go, then the answer.
        XFS_IOC_EXCHANGE_RANGE => match exchange_range(fs, caller, ino, input) {
            Ok(ranges) if !ranges.is_empty() => {
                let notes = ranges
                    .into_iter()
                    .map(|(i, off, len)| Notification::data(i, off, len))
                    .collect();
                notifier.post(notes, Some(Box::new(move || reply(Ok(Vec::new())))));
            }
            r => reply(r.map(|_| Vec::new())),
        },
        FS_IOC_FSSETXATTR | FS_IOC_SETFLAGS => {
            let r = if cmd == FS_IOC_SETFLAGS {
                set_fl(fs, caller, ino, input)
            } else {
                set_xattr(fs, caller, ino, input)
            };
            let changed = r.as_ref().ok().copied();
            reply(r.map(|_| Vec::new()));
            // Posted after the reply: the kernel holds the inode lock until it has it.
            match changed {
                // The data path changes at the next open: drop cached pages so a later
                // page-cache open cannot see bytes older than direct writes.
                Some(true) => notifier.post(vec![Notification::data(ino, 0, 0)], None),
                // The ctime may have moved.
                Some(false) => notifier.post(vec![Notification::attrs(ino)], None),
                None => {}
            }
        }
        FITRIM => reply(trim(fs, caller, input)),
        _ => reply(answer(fs, ino, cmd, input)),
    }
}

/// `XFS_IOC_EXCHANGE_RANGE` issued on `ino` (file2): resolves the caller's `file1_fd` through
/// `/proc` (`caller_fds`: never opened) and makes the checks only the fds allow, as the kernel
/// does before the filesystem sees the request: a non-zero pad or an unknown flag `EINVAL`, no
/// such fd `EBADF`, a file on another mount `EXDEV`, a file not open read-write or open
/// `O_APPEND` `EBADF`. Return: the ranges whose contents moved.
fn exchange_range(
    fs: &DaxFs,
    caller: Caller,
    ino: Ino,
    input: &[u8],
) -> FsResult<Vec<(Ino, u64, u64)>> {
    let arg = ExchangeRangeArg::decode(input).ok_or(Errno::EINVAL)?;
    if arg.pad != 0 || arg.flags & !EXCHANGE_RANGE_ALL_FLAGS != 0 {
        return Err(Errno::EINVAL);
    }
    let pid = caller.ctx.pid;
    let f1 = caller_fds::fd_info(pid, arg.file1_fd)?;
    // file2's descriptor number is not in the request: the caller's fds open on it tell its
    // mount and mode (an empty list: the fd table is unreadable; the fs layer still checks
    // that file1's number is a live inode).
    let ours: Vec<_> = caller_fds::fds_of_inode(pid, ino);
    if !ours.is_empty() && !ours.iter().any(|f| f.mnt_id == f1.mnt_id) {
        return Err(Errno::EXDEV);
    }
    let usable = |f: &caller_fds::FdInfo| f.read_write() && !f.append();
    if !usable(&f1)
        || (!ours.is_empty() && !ours.iter().any(|f| f.mnt_id == f1.mnt_id && usable(f)))
    {
        return Err(Errno::EBADF);
    }
    let req = ExchangeRange {
        file1: f1.ino,
        file1_offset: arg.file1_offset,
        file2: ino,
        file2_offset: arg.file2_offset,
        length: arg.length,
        flags: arg.flags,
        fsize_limit: caller_fds::fsize_limit(pid),
    };
    Ok(fs.exchange_range(&req, &caller.ctx)?.ranges)
}

/// `XFS_IOC_GOINGDOWN`: the flags arrive only from a caller that sends them (never through
/// FUSE, which sends no input for an `_IOR` request: then the strictest mode).
fn going_down(fs: &DaxFs, caller: Caller, input: &[u8]) -> FsResult<()> {
    let flags = goingdown_flags(input);
    log::info!(
        "daxfs: XFS_IOC_GOINGDOWN with {} input bytes: flags {flags}",
        input.len()
    );
    fs.shut_down(ShutdownMode::from_xfs_flags(flags)?, &caller.ctx)
}

/// `FITRIM` (issued on any inode of the mount, usually its root): the range in, the bytes
/// discarded out in `len`.
fn trim(fs: &DaxFs, caller: Caller, input: &[u8]) -> FsResult<Vec<u8>> {
    let mut r = FstrimRange::read_from(input).ok_or(Errno::EINVAL)?;
    r.len = fs.trim(r.start, r.len, r.minlen, &caller.ctx)?;
    Ok(r.as_bytes().to_vec())
}

/// The requests answered at once.
fn answer(fs: &DaxFs, ino: Ino, cmd: u32, input: &[u8]) -> FsResult<Vec<u8>> {
    match cmd {
        DAXFS_IOC_STAT => {
            let _req: DaxfsStat = check_header(input)?;
            let s = fs.region_stat();
            let mut out = DaxfsStat::new_request();
            out.region_size = s.size;
            out.block_size = s.block_size;
            out.used_blocks = s.used_blocks;
            out.free_blocks = s.free_blocks;
            out.free_2m_runs = s.free_2m_runs;
            out.inodes_used = s.inodes_used;
            out.inodes_total = s.inodes_total;
            out.bad_blocks = s.bad_blocks;
            Ok(out.as_bytes().to_vec())
        }
        DAXFS_IOC_GET_MAPPINGS => {
            let req: DaxfsMappings = check_header(input)?;
            let all = fs.mappings(ino)?;
            Ok(mappings_page(&all, req.cursor).as_bytes().to_vec())
        }
        DAXFS_IOC_LIST_BADBLOCKS => {
            let req: DaxfsBadBlocks = check_header(input)?;
            Ok(badblocks_page(&mf::list(fs), req.cursor)
                .as_bytes()
                .to_vec())
        }
        FS_IOC_FSGETXATTR => {
            let (fsx_xflags, fsx_extsize) = fs.fsxattr(ino)?;
            let x = FsXattr {
                fsx_xflags,
                fsx_extsize,
                ..FsXattr::default()
            };
            Ok(x.as_bytes().to_vec())
        }
        FS_IOC_GETFLAGS => {
            let a = fs.getattr(ino)?;
            Ok(iflags::to_fl(a.flags).to_ne_bytes().to_vec())
        }
        _ => Err(Errno::ENOTTY),
    }
}

/// `FS_IOC_FSSETXATTR`: decoded here, decided by the fs layer. Return: whether `FS_XFLAG_DAX`
/// changed.
fn set_xattr(fs: &DaxFs, caller: Caller, ino: Ino, input: &[u8]) -> FsResult<bool> {
    let want = FsXattr::read_from(input).ok_or(Errno::EINVAL)?;
    let change = XflagsChange {
        xflags: want.fsx_xflags,
        extsize: want.fsx_extsize,
        projid: want.fsx_projid,
        cowextsize: want.fsx_cowextsize,
    };
    fs.set_xflags(ino, &change, &caller.ctx)
}

/// `FS_IOC_SETFLAGS` (an `int` of `FS_*_FL`, as `fuse_fileattr_set` sends it); as [`set_xattr`].
fn set_fl(fs: &DaxFs, caller: Caller, ino: Ino, input: &[u8]) -> FsResult<bool> {
    let word: [u8; 4] = input
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(Errno::EINVAL)?;
    fs.set_flags_keeping_hint(ino, iflags::from_fl(u32::from_ne_bytes(word))?, &caller.ctx)
}

/// `DAXFS_IOC_INJECT_POISON` / `DAXFS_IOC_CLEAR_POISON` and their `_REPORT` forms: decoded
/// here; permitted, validated and handled by `memory_failure`; answered once the range is
/// unmapped (the `_REPORT` forms with what was done).
fn poison(
    fs: &DaxFs,
    inval: &dyn mf::Invalidator,
    caller: Caller,
    ino: Ino,
    cmd: u32,
    input: &[u8],
    reply: Reply,
) {
    let report = matches!(
        cmd,
        DAXFS_IOC_INJECT_POISON_REPORT | DAXFS_IOC_CLEAR_POISON_REPORT
    );
    // Decoding only: the header, the flags and the reserved field. Who may do it, the range,
    // its alignment and the file kind are memory_failure's to decide (once).
    let checked = (|| {
        let req: DaxfsPoisonReport = if report {
            check_header(input)?
        } else {
            let r: DaxfsPoison = check_header(input)?;
            DaxfsPoisonReport {
                flags: r.flags,
                _reserved: r._reserved,
                offset: r.offset,
                len: r.len,
                ..DaxfsPoisonReport::new_request()
            }
        };
        mf::check_caller(caller.ctx.uid, caller.owner_uid)?;
        if req.flags & !POISON_BY_REGION != 0 || req._reserved != 0 {
            return Err(Errno::EINVAL);
        }
        Ok(req)
    })();
    let req = match checked {
        Ok(r) => r,
        Err(e) => return reply(Err(e)),
    };
    let (off, len, by_region) = (req.offset, req.len, req.flags & POISON_BY_REGION != 0);
    let done = move |r: FsResult<DaxfsPoisonReport>| {
        reply(r.map(|a| {
            if report {
                a.as_bytes().to_vec()
            } else {
                Vec::new()
            }
        }))
    };
    let inject = matches!(
        cmd,
        DAXFS_IOC_INJECT_POISON | DAXFS_IOC_INJECT_POISON_REPORT
    );
    let injected = move |r: FsResult<mf::Injected>| r.map(|i| injected_report(req, &i));
    let cleared = move |r: FsResult<mf::Cleared>| r.map(|c| cleared_report(req, &c));
    match (inject, by_region) {
        (true, true) => {
            mf::inject_region_then(fs, off, len, inval, Box::new(move |r| done(injected(r))))
        }
        (true, false) => mf::inject_file_then(
            fs,
            ino,
            off,
            len,
            inval,
            Box::new(move |r| done(injected(r))),
        ),
        (false, true) => {
            mf::clear_region_then(fs, off, len, inval, Box::new(move |r| done(cleared(r))))
        }
        (false, false) => mf::clear_file_then(
            fs,
            ino,
            off,
            len,
            inval,
            Box::new(move |r| done(cleared(r))),
        ),
    }
}

/// The answer of an inject request `req`.
fn injected_report(req: DaxfsPoisonReport, i: &mf::Injected) -> DaxfsPoisonReport {
    DaxfsPoisonReport {
        start: i.range.0,
        end: i.range.1,
        pages: i.pages_poisoned(),
        blocks: i.blocks,
        already: i.already,
        holes: i.holes,
        files: i.files(),
        ..req
    }
}

/// The answer of a clear request `req`.
fn cleared_report(req: DaxfsPoisonReport, c: &mf::Cleared) -> DaxfsPoisonReport {
    DaxfsPoisonReport {
        start: c.range.0,
        end: c.range.1,
        pages: c.pages_cleared(),
        blocks: c.blocks,
        already: c.already,
        holes: 0,
        files: c.files(),
        ..req
    }
}

/// A page filled by [`fill_page`]: entries written, the cursor for the next call, more left.
struct Page {
    count: u32,
    cursor: u64,
    more: bool,
}

/// Copies into `out` the items of `all` (sorted by start) whose start is `>= cursor`, as many as
/// fit. `span` gives an item's (start, end); the returned cursor is the end of the last item
/// copied (or `cursor` when none was), so the next call resumes after it.
fn fill_page<T, E>(
    all: &[T],
    cursor: u64,
    out: &mut [E],
    span: impl Fn(&T) -> (u64, u64),
    convert: impl Fn(&T) -> E,
) -> Page {
    let mut rest = all.iter().filter(|x| span(x).0 >= cursor).peekable();
    let mut page = Page {
        count: 0,
        cursor,
        more: false,
    };
    for slot in out.iter_mut() {
        let Some(x) = rest.next() else { break };
        *slot = convert(x);
        page.cursor = span(x).1;
        page.count += 1;
    }
    page.more = rest.peek().is_some();
    page
}

/// One page of the bad-block list starting at `cursor` (ranges with `region_offset >= cursor`).
pub fn badblocks_page(all: &[mf::BadRange], cursor: u64) -> DaxfsBadBlocks {
    let mut out = DaxfsBadBlocks::new_request();
    let page = fill_page(
        all,
        cursor,
        &mut out.entries[..BADBLOCKS_PER_CALL],
        |b| (b.region_offset, b.region_offset + b.len),
        |b| DaxfsBadBlock {
            region_offset: b.region_offset,
            len: b.len,
            ino: b.ino.unwrap_or(0),
            file_offset: b.file_offset.unwrap_or(u64::MAX),
        },
    );
    out.count = page.count;
    out.cursor = page.cursor;
    if page.more {
        out.flags |= MORE;
    }
    out
}

const _: () = assert!(crate::fs::MappingInfo::POISONED == MAPPING_POISONED);

/// One page of `mappings` starting at `cursor` (entries with `file_index >= cursor`).
pub fn mappings_page(all: &[crate::fs::MappingInfo], cursor: u64) -> DaxfsMappings {
    let mut out = DaxfsMappings::new_request();
    let page = fill_page(
        all,
        cursor,
        &mut out.entries[..MAPPINGS_PER_CALL],
        |m| (m.file_index, m.file_index + (1u64 << m.order.min(63))),
        |m| DaxfsMapping {
            file_index: m.file_index,
            region_block: m.region_block,
            flags: m.flags,
            order: m.order,
            _pad: [0; 3],
        },
    );
    out.count = page.count;
    out.cursor = page.cursor;
    if page.more {
        out.flags |= MORE;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::MappingInfo;

    fn m(i: u64, order: u8) -> MappingInfo {
        MappingInfo {
            file_index: i,
            order,
            region_block: 1000 + i,
            flags: 0,
        }
    }

    #[test]
    fn pages_walk_every_entry_once() {
        let all: Vec<_> = (0..300).map(|i| m(i * 512, 9)).collect();
        let mut seen = Vec::new();
        let mut cursor = 0;
        loop {
            let p = mappings_page(&all, cursor);
            seen.extend(p.entries[..p.count as usize].iter().map(|e| e.file_index));
            cursor = p.cursor;
            if p.flags & MORE == 0 {
                break;
            }
        }
        let want: Vec<_> = all.iter().map(|e| e.file_index).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn page_of_nothing_and_cursor_past_end() {
        let p = mappings_page(&[], 0);
        assert_eq!((p.count, p.flags), (0, 0));
        let p = mappings_page(&[m(0, 0), m(1, 0)], 2);
        assert_eq!(p.count, 0);
        let p = mappings_page(&[m(0, 9), m(512, 0)], 0);
        assert_eq!(p.count, 2);
        assert_eq!(p.entries[0].order, 9);
        assert_eq!(p.cursor, 513);
    }

    #[test]
    fn badblock_pages_walk_every_range_once() {
        let all: Vec<_> = (0..150u64)
            .map(|i| mf::BadRange {
                region_offset: (100 + 2 * i) * 4096,
                len: 4096,
                ino: (i % 2 == 0).then_some(5),
                file_offset: (i % 2 == 0).then_some(i * 4096),
            })
            .collect();
        let mut seen = Vec::new();
        let mut cursor = 0;
        loop {
            let p = badblocks_page(&all, cursor);
            seen.extend(p.entries[..p.count as usize].iter().copied());
            cursor = p.cursor;
            if p.flags & MORE == 0 {
                break;
            }
        }
        assert_eq!(seen.len(), 150);
        assert_eq!(seen[0].ino, 5);
        assert_eq!(seen[1].ino, 0);
        assert_eq!(seen[1].file_offset, u64::MAX);
        assert_eq!(seen[149].region_offset, (100 + 298) * 4096);
    }
}
