//! Extended attributes of one inode: name checks by namespace (`user.`, `trusted.`, `security.`,
//! the two POSIX ACLs of `system.`; others `EOPNOTSUPP`) and get/set/list/remove.
//!
//! Rules it keeps: the xattr area is rewritten copy-on-write (new blocks written and persisted,
//! the record committed, the old area freed after); changes commit before they return;
//! `trusted.*` needs root; `user.*` only on regular files and directories. ACLs ([`acl`]): only
//! the owner or root sets them (`EPERM`), none on symlinks (`EOPNOTSUPP`), a default ACL only on
//! a directory (`EACCES`); setting the access ACL sets the mode's permission bits in the same
//! commit (and drops S_ISGID for a caller outside the file's group, as `posix_acl_update_mode`),
//! and one the mode alone expresses is not stored; removing an absent ACL succeeds. Context:
//! changes run with the inode lock held exclusive, reads shared.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;

use super::acl::{self, Acl};
use super::commit::commit_inode;
use super::iflags;
use super::inode::{IState, Inode};
use super::privs;
use super::time::now_ns;
use super::types::{Ctx, FileKind};
use super::volume::{eio, Volume};
use super::FsResult;
use crate::store::{self, encode_xattrs, Tx, Xattrs, BLOCK, XATTR_VALUE_MAX};

/// Longest xattr name, in bytes (`XATTR_NAME_MAX`).
const XATTR_NAME_MAX: usize = 255;

/// Replaces the inode's xattrs with `x`: a fresh area (or none), committed with the inode.
pub(super) fn set_xattrs_locked(
    vol: &Volume,
    inode: &Inode,
    st: &mut IState,
    x: Xattrs,
) -> FsResult<()> {
    let mut tx = Tx::new();
    area_into(vol, &mut tx, st, x)?;
    st.rec.ctime = now_ns();
    commit_inode(vol, tx, inode, st)
}

/// Writes `x` as the inode's new xattr area (fresh blocks, persisted; none when empty) and
/// puts the old area in `tx.free_after`; the record that names it commits with `tx`.
pub(super) fn area_into(vol: &Volume, tx: &mut Tx, st: &mut IState, x: Xattrs) -> FsResult<()> {
    let old = st.rec.xattr_block;
    let old_n = store::xattr_area_blocks(&st.xattrs);
    if x.is_empty() {
        st.rec.xattr_block = 0;
    } else {
        let area = encode_xattrs(&x).ok_or(Errno::ENOSPC)?;
        let n = area.len() as u64 / BLOCK;
        let b = vol.allocator().alloc_run(n).ok_or(Errno::ENOSPC)?;
        if let Err(e) = vol.reserve(b, n) {
            vol.free_unused(b..b + n);
            return Err(e);
        }
        vol.region().write_at(b * BLOCK, &area).map_err(eio)?;
        vol.region().persist(b * BLOCK, n * BLOCK).map_err(eio)?;
        st.rec.xattr_block = b;
    }
    if old != 0 {
        tx.free_after.extend(old..old + old_n);
    }
    st.xattrs = x;
    Ok(())
}

/// Frees the area of an inode that never committed (a failed create).
pub(super) fn discard_area(vol: &Volume, st: &mut IState) {
    let b = st.rec.xattr_block;
    if b != 0 {
        let n = store::xattr_area_blocks(&st.xattrs);
        vol.free_unused(b..b + n);
        st.rec.xattr_block = 0;
    }
}

/// Whether `ctx` may set or remove `name` on an inode in state `st`.
fn check_name(name: &OsStr, st: &IState, ctx: &Ctx) -> FsResult<()> {
    let b = name.as_bytes();
    let kind = st.kind();
    iflags::may_change_inode(st.rec.flags)?;
    if b.len() > XATTR_NAME_MAX {
        return Err(Errno::ERANGE);
    }
    if acl::is_acl_name(b) {
        if kind == FileKind::Symlink {
            return Err(Errno::EOPNOTSUPP);
        }
        if ctx.uid != 0 && ctx.uid != st.rec.uid {
            return Err(Errno::EPERM);
        }
        if b == acl::DEFAULT && kind != FileKind::Directory {
            return Err(Errno::EACCES);
        }
        return Ok(());
    }
    let suffix_ok = |p: &[u8]| b.len() > p.len();
    if b.starts_with(b"user.") {
        if !suffix_ok(b"user.") {
            return Err(Errno::EINVAL);
        }
        if !matches!(kind, FileKind::Regular | FileKind::Directory) {
            return Err(Errno::EPERM);
        }
    } else if b.starts_with(b"trusted.") {
        if !suffix_ok(b"trusted.") {
            return Err(Errno::EINVAL);
        }
        if ctx.uid != 0 {
            return Err(Errno::EPERM);
        }
    } else if b.starts_with(b"security.") {
        if !suffix_ok(b"security.") {
            return Err(Errno::EINVAL);
        }
    } else {
        return Err(Errno::EOPNOTSUPP);
    }
    Ok(())
}

/// `setxattr`; `flags`: 0, `XATTR_CREATE` or `XATTR_REPLACE`.
pub(super) fn setxattr(
    vol: &Volume,
    inode: &Inode,
    name: &OsStr,
    value: &[u8],
    flags: i32,
    ctx: &Ctx,
) -> FsResult<()> {
    let mut st = inode.state.write();
    check_name(name, &st, ctx)?;
    if flags & !(libc::XATTR_CREATE | libc::XATTR_REPLACE) != 0 {
        return Err(Errno::EINVAL);
    }
    let n = name.as_bytes();
    if value.len() > XATTR_VALUE_MAX {
        return Err(Errno::E2BIG);
    }
    let mut x = st.xattrs.clone();
    let old_mode = st.rec.mode;
    let mut value = Some(value);
    if acl::is_acl_name(n) {
        let mut a = Acl::parse(value.unwrap_or_default())?;
        if n == acl::ACCESS {
            set_access_mode(&mut st, &mut a, ctx);
            if a.is_equiv_to_mode() {
                value = None;
            }
        }
    }
    let at = x.iter().position(|(k, _)| k == n);
    match (at, value) {
        (Some(_), _) if flags & libc::XATTR_CREATE != 0 => return Err(Errno::EEXIST),
        (None, _) if flags & libc::XATTR_REPLACE != 0 => return Err(Errno::ENODATA),
        (Some(i), Some(v)) => x[i].1 = v.to_vec(),
        (None, Some(v)) => x.push((n.to_vec(), v.to_vec())),
        (Some(i), None) => {
            x.remove(i);
        }
        (None, None) => {}
    }
    let r = set_xattrs_locked(vol, inode, &mut st, x);
    if r.is_err() {
        st.rec.mode = old_mode;
    }
    r
}

/// The mode an access ACL implies: its permission bits, S_ISGID dropped for a caller (not
/// root) outside the file's group.
fn set_access_mode(st: &mut IState, a: &mut Acl, ctx: &Ctx) {
    let mut mode = (st.rec.mode & !0o777) | a.mode_bits();
    if ctx.uid != 0 && !privs::in_group(ctx, st.rec.gid) {
        mode &= !libc::S_ISGID;
    }
    if mode != st.rec.mode {
        st.rec.mode = mode;
        st.dirty = true;
    }
}

/// `chmod` of an inode with an access ACL: its owner, group-class and other entries follow
/// `mode` (`posix_acl_chmod`); the new area goes into `tx`. Nothing when there is none.
pub(super) fn chmod_acl_into(vol: &Volume, tx: &mut Tx, st: &mut IState) -> FsResult<()> {
    let Some(i) = st.xattrs.iter().position(|(k, _)| k == acl::ACCESS) else {
        return Ok(());
    };
    let Ok(mut a) = Acl::parse(&st.xattrs[i].1) else {
        return Ok(());
    };
    a.chmod(st.rec.mode);
    let mut x = st.xattrs.clone();
    x[i].1 = a.encode();
    area_into(vol, tx, st, x)
}

/// `getxattr`: the value (`ENODATA` when absent).
pub(super) fn getxattr(inode: &Inode, name: &OsStr) -> FsResult<Vec<u8>> {
    let st = inode.state.read();
    if name.len() > XATTR_NAME_MAX {
        return Err(Errno::ERANGE);
    }
    st.xattrs
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .map(|(_, v)| v.clone())
        .ok_or(Errno::ENODATA)
}

/// `listxattr`: the names, each NUL-terminated, concatenated.
pub(super) fn listxattr(inode: &Inode) -> Vec<u8> {
    let st = inode.state.read();
    let mut out = Vec::new();
    for (k, _) in &st.xattrs {
        out.extend_from_slice(k);
        out.push(0);
    }
    out
}

/// `removexattr` (`ENODATA` when absent).
pub(super) fn removexattr(vol: &Volume, inode: &Inode, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
    let mut st = inode.state.write();
    check_name(name, &st, ctx)?;
    let mut x = st.xattrs.clone();
    let before = x.len();
    x.retain(|(k, _)| k != name.as_bytes());
    if x.len() == before {
        if acl::is_acl_name(name.as_bytes()) {
            return Ok(());
        }
        return Err(Errno::ENODATA);
    }
    set_xattrs_locked(vol, inode, &mut st, x)
}

/// A write drops file capabilities whoever writes (the kernel's `file_remove_privs`); under
/// `FUSE_HANDLE_KILLPRIV_V2` that is the filesystem's job. The check is one scan of a usually
/// empty list; the commit happens only when the attribute is there.
pub(super) fn drop_capability(vol: &Volume, inode: &Inode, st: &mut IState) -> FsResult<()> {
    const CAP: &[u8] = b"security.capability";
    if !st.xattrs.iter().any(|(k, _)| k.as_slice() == CAP) {
        return Ok(());
    }
    let mut x = st.xattrs.clone();
    x.retain(|(k, _)| k.as_slice() != CAP);
    set_xattrs_locked(vol, inode, st, x)
}
