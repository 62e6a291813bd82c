//! Extended attributes of one inode: name checks by namespace (`user.`, `trusted.`, `security.`;
//! others `EOPNOTSUPP`) and get/set/list/remove.
//!
//! Rules it keeps: the xattr area is rewritten copy-on-write (new blocks written and persisted,
//! the record committed, the old area freed after); changes commit before they return;
//! `trusted.*` needs root; `user.*` only on regular files and directories. Context: changes run
//! with the inode lock held exclusive, reads shared.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;

use super::commit::commit_inode;
use super::inode::{IState, Inode};
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
    st.rec.ctime = now_ns();
    st.xattrs = x;
    commit_inode(vol, tx, inode, st)
}

/// Whether `ctx` may set or remove `name` on an inode of `kind`.
fn check_name(name: &OsStr, kind: FileKind, ctx: &Ctx) -> FsResult<()> {
    let b = name.as_bytes();
    if b.len() > XATTR_NAME_MAX {
        return Err(Errno::ERANGE);
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
    check_name(name, st.kind(), ctx)?;
    if flags & !(libc::XATTR_CREATE | libc::XATTR_REPLACE) != 0 {
        return Err(Errno::EINVAL);
    }
    let n = name.as_bytes();
    if value.len() > XATTR_VALUE_MAX {
        return Err(Errno::E2BIG);
    }
    let mut x = st.xattrs.clone();
    match x.iter_mut().find(|(k, _)| k == n) {
        Some(_) if flags & libc::XATTR_CREATE != 0 => return Err(Errno::EEXIST),
        Some((_, v)) => *v = value.to_vec(),
        None if flags & libc::XATTR_REPLACE != 0 => return Err(Errno::ENODATA),
        None => x.push((n.to_vec(), value.to_vec())),
    }
    set_xattrs_locked(vol, inode, &mut st, x)
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
    check_name(name, st.kind(), ctx)?;
    let mut x = st.xattrs.clone();
    let before = x.len();
    x.retain(|(k, _)| k != name.as_bytes());
    if x.len() == before {
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
