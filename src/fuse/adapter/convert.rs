//! Conversions between the fs layer's types and fuser's, and the reply shapes several handlers
//! share. Pure translation: no decision about files is made here.

use fuser::{
    Errno as FuseErrno, FileAttr, FileType, Generation, INodeNo, ReplyEmpty, ReplyEntry,
    ReplyXattr, Request, TimeOrNow,
};

use super::TTL;
use crate::fs::{Attr, Ctx, Errno, FileKind, TimeSet};

/// The caller of a request.
pub(super) fn ctx(req: &Request) -> Ctx {
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

/// The FUSE file type of a file kind.
pub(super) fn kind(k: FileKind) -> FileType {
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
        blksize: a.blksize,
        flags: 0,
    }
}

/// A `setattr` time as the fs layer takes it.
pub(super) fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(t),
    }
}

/// Answers a request that returns an entry.
pub(super) fn reply_entry(reply: ReplyEntry, r: Result<Attr, Errno>) {
    match r {
        Ok(a) => reply.entry(&TTL, &fattr(&a), Generation(a.generation)),
        Err(e) => reply.error(ferr(e)),
    }
}

/// Answers a request that returns nothing.
pub(super) fn reply_empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(ferr(e)),
    }
}

/// Answers an xattr-style request as the protocol wants: the size when the kernel asks with
/// `size == 0`, `ERANGE` when the value does not fit its buffer.
pub(super) fn reply_xattr(reply: ReplyXattr, size: u32, r: Result<Vec<u8>, Errno>) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(FuseErrno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(ferr(e)),
    }
}
