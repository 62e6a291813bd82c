//! Attributes of one inode: the `Attr` view, `setattr`, the per-inode flags (`FS_XFLAG_*`) and
//! dropping the set-id bits.
//!
//! Rules it keeps: `setattr` and flag changes commit before they return; a size change goes
//! through the space module's truncate; set-id bits are dropped by the rule of [`privs`] (a
//! modification by a caller without `CAP_FSETID`) or of `chown_common` (a chown of a
//! non-directory); a chmod updates the access ACL in the same commit. Context: every change runs
//! with the inode lock held exclusive.

use std::sync::atomic::Ordering;

use nix::errno::Errno;

use super::commit::commit_inode;
use super::iflags;
use super::inode::{IState, Inode};
use super::privs;
use super::space::truncate_locked;
use super::time::{from_time, now_ns, to_time};
use super::types::{Attr, Ctx, FileKind, SetAttr, TimeSet};
use super::volume::Volume;
use super::xattrs;
use super::FsResult;
use crate::store::{self, Tx, BLOCK, MAX_FILE_SIZE};

/// The attributes of `inode` with state `st`. Context: inode lock held (either mode).
pub(super) fn attr_of(inode: &Inode, st: &IState) -> Attr {
    let r = &st.rec;
    let xb = store::xattr_area_blocks(&st.xattrs);
    Attr {
        ino: inode.ino,
        kind: st.kind(),
        perm: (r.mode & 0o7777) as u16,
        nlink: r.nlink,
        uid: r.uid,
        gid: r.gid,
        size: r.size,
        blocks: (inode.map.mapped_pages() + xb) * (BLOCK / 512),
        blksize: BLOCK as u32,
        atime: to_time(inode.atime.load(Ordering::Relaxed)),
        mtime: to_time(r.mtime),
        ctime: to_time(r.ctime),
        crtime: to_time(r.crtime),
        rdev: r.rdev,
        generation: r.generation,
        flags: r.flags,
    }
}

/// Drops S_ISUID/S_ISGID after a modification by `ctx` ([`privs`]; uid 0 has `CAP_FSETID`).
/// Returns whether the mode changed (then the kernel's cached mode is stale).
pub(super) fn kill_suid(st: &mut IState, ctx: &Ctx) -> bool {
    let drop = privs::bits_to_drop(st.rec.mode, st.rec.gid, ctx, ctx.uid == 0);
    drop_mode_bits(st, drop)
}

/// Clears `bits` of the mode (and bumps ctime) if any is set; returns whether it did.
pub(super) fn drop_mode_bits(st: &mut IState, bits: u32) -> bool {
    if st.rec.mode & bits == 0 {
        return false;
    }
    st.rec.mode &= !bits;
    st.rec.ctime = now_ns();
    st.dirty = true;
    true
}

/// `setattr`: size, owner, mode and times in that order, one transaction.
pub(super) fn setattr(vol: &Volume, inode: &Inode, set: &SetAttr, ctx: &Ctx) -> FsResult<Attr> {
    let mut st = inode.state.write();
    let explicit = set.mode.is_some()
        || set.uid.is_some()
        || set.gid.is_some()
        || set.size.is_some()
        || matches!(set.atime, Some(TimeSet::At(_)))
        || matches!(set.mtime, Some(TimeSet::At(_)));
    iflags::may_setattr(st.rec.flags, explicit)?;
    let t = now_ns();
    let mut tx = Tx::new();
    if let Some(size) = set.size {
        st.require_regular(Errno::EINVAL)?;
        if size > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        truncate_locked(vol, &mut tx, inode, &mut st, size)?;
        st.rec.mtime = t;
        kill_suid(&mut st, ctx);
    }
    if set.uid.is_some() || set.gid.is_some() {
        set_owner(&mut st, set.uid, set.gid);
    }
    if let Some(m) = set.mode {
        set_mode(&mut st, m, ctx);
        xattrs::chmod_acl_into(vol, &mut tx, &mut st)?;
    }
    set_times(inode, &mut st, set, t);
    commit_inode(vol, tx, inode, &mut st)?;
    Ok(attr_of(inode, &st))
}

/// chown: as `chown_common()`, a chown of a non-directory always drops S_ISUID, and S_ISGID
/// when group-executable (whoever asks; an explicit mode in the same setattr wins).
fn set_owner(st: &mut IState, uid: Option<u32>, gid: Option<u32>) {
    if let Some(u) = uid {
        st.rec.uid = u;
    }
    if let Some(g) = gid {
        st.rec.gid = g;
    }
    if st.kind() != FileKind::Directory {
        let mut drop = libc::S_ISUID;
        if st.rec.mode & libc::S_IXGRP != 0 {
            drop |= libc::S_ISGID;
        }
        drop_mode_bits(st, drop);
    }
}

/// chmod: the permission bits; S_ISGID is dropped for a caller (not root) outside the file's
/// group (its fsgid and supplementary groups: `privs::in_group`). An access ACL follows
/// (`xattrs::chmod_acl_into`).
fn set_mode(st: &mut IState, mode: u32, ctx: &Ctx) {
    let mut m = mode & 0o7777;
    if m & libc::S_ISGID != 0 && ctx.uid != 0 && !privs::in_group(ctx, st.rec.gid) {
        m &= !libc::S_ISGID;
    }
    st.rec.mode = (st.rec.mode & libc::S_IFMT) | m;
}

/// utimens: atime, mtime as asked (`now` is `t`), ctime as given or `t`.
fn set_times(inode: &Inode, st: &mut IState, set: &SetAttr, t: i64) {
    match set.atime {
        Some(TimeSet::Now) => inode.atime.store(t, Ordering::Relaxed),
        Some(TimeSet::At(x)) => inode.atime.store(from_time(x), Ordering::Relaxed),
        None => {}
    }
    match set.mtime {
        Some(TimeSet::Now) => st.rec.mtime = t,
        Some(TimeSet::At(x)) => st.rec.mtime = from_time(x),
        None => {}
    }
    st.rec.ctime = set.ctime.map_or(t, from_time);
}

/// Sets the per-inode flags (`FS_IOC_FSSETXATTR`'s `fsx_xflags`: `iflags::SETTABLE`); only the
/// owner or root may, and only root changes immutable or append-only (`EPERM`). Durable on
/// return.
pub(super) fn set_flags(vol: &Volume, inode: &Inode, flags: u32, ctx: &Ctx) -> FsResult<Attr> {
    set_flags_and_extsize(vol, inode, flags, None, ctx).map(|(a, _)| a)
}

/// [`set_flags`], and with `extsize` = `Some((flag, bytes))` the extent size hint too, in one
/// commit, everything checked before anything changes. `flag` is the caller's
/// `FS_XFLAG_EXTSIZE` / `FS_XFLAG_EXTSZINHERIT` bits: without one the hint is cleared, as xfs
/// keeps a hint only under its flag. Errors as xfs: `EINVAL` for a hint that is not a multiple
/// of the block size or larger than [`iflags::MAX_EXTSIZE_BLOCKS`], `FS_XFLAG_EXTSIZE` on
/// anything but a regular file or `FS_XFLAG_EXTSZINHERIT` on anything but a directory, and a
/// changed hint on a file that already has blocks. Return: the attributes and the flags before.
pub(super) fn set_flags_and_extsize(
    vol: &Volume,
    inode: &Inode,
    flags: u32,
    extsize: Option<(u32, u32)>,
    ctx: &Ctx,
) -> FsResult<(Attr, u32)> {
    let mut st = inode.state.write();
    if ctx.uid != 0 && ctx.uid != st.rec.uid {
        return Err(Errno::EPERM);
    }
    iflags::check_change(st.rec.flags, flags, ctx.uid == 0)?;
    let blocks = match extsize {
        None => st.rec.extsize,
        Some((flag, bytes)) => {
            let kind = st.kind();
            if flag & iflags::XFLAG_EXTSIZE != 0 && kind != FileKind::Regular
                || flag & iflags::XFLAG_EXTSZINHERIT != 0 && kind != FileKind::Directory
            {
                return Err(Errno::EINVAL);
            }
            let bytes = if flag == 0 { 0 } else { bytes };
            if u64::from(bytes) % BLOCK != 0
                || u64::from(bytes) / BLOCK > u64::from(iflags::MAX_EXTSIZE_BLOCKS)
            {
                return Err(Errno::EINVAL);
            }
            let blocks = (u64::from(bytes) / BLOCK) as u32;
            if blocks != st.rec.extsize
                && kind == FileKind::Regular
                && (inode.map.mapped_pages() > 0 || inode.map.poisoned_count() > 0)
            {
                return Err(Errno::EINVAL);
            }
            blocks
        }
    };
    let old = st.rec.flags;
    if flags == old && blocks == st.rec.extsize {
        return Ok((attr_of(inode, &st), old));
    }
    st.rec.flags = flags;
    st.rec.extsize = blocks;
    st.rec.ctime = now_ns();
    commit_inode(vol, Tx::new(), inode, &mut st)?;
    Ok((attr_of(inode, &st), old))
}

/// `FS_IOC_FSGETXATTR`'s `fsx_xflags` and `fsx_extsize` (bytes) of an inode: the stored flags,
/// with `FS_XFLAG_EXTSIZE` (a file) or `FS_XFLAG_EXTSZINHERIT` (a directory) when it has a hint.
pub(super) fn fsxattr_of(st: &IState) -> (u32, u32) {
    let mut x = st.rec.flags;
    if st.rec.extsize != 0 {
        x |= match st.kind() {
            FileKind::Directory => iflags::XFLAG_EXTSZINHERIT,
            _ => iflags::XFLAG_EXTSIZE,
        };
    }
    (x, (u64::from(st.rec.extsize) * BLOCK) as u32)
}
