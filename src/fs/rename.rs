//! `rename(2)` with `RENAME_NOREPLACE`, `RENAME_EXCHANGE` and `RENAME_WHITEOUT`: checked first
//! (every errno decided before anything changes), then applied as one of three moves, committed as
//! one transaction. A whiteout (overlayfs's "this name is deleted" marker: a character device
//! 0:0, mode 0, owned by the caller) takes the source name in the same transaction, so no one ever
//! sees the name missing, as the kernel's `vfs_rename` with `RENAME_WHITEOUT` promises.
//!
//! Rules it keeps: a directory never moves under itself (`EINVAL`); a replaced directory must be
//! empty (`ENOTEMPTY`); a rename onto the same inode does nothing; a directory that changes parent
//! takes its `..` link along ([`reparent`]). Context: runs under the namespace mutex, with the
//! inodes involved locked in inode order ([`Locked`]).

use std::ffi::OsStr;
use std::sync::Arc;

use nix::errno::Errno;

use super::commit::inode_into;
use super::dirents::{add_dirent, dirent_of, remove_dirent, set_dirent};
use super::iflags;
use super::inode::{IState, Inode};
use super::itable::InodeTable;
use super::names::{check_name, is_dot};
use super::namespace::{new_record, Locked, Namespace, NewNode};
use super::time::now_ns;
use super::types::{Ctx, FileKind, Ino};
use super::volume::Volume;
use super::FsResult;
use crate::store::Tx;

/// One side of a rename: a directory and a name in it.
#[derive(Clone, Copy)]
pub(super) struct Place<'a> {
    /// The directory.
    pub dir: Ino,
    /// The name in it.
    pub name: &'a OsStr,
}

/// What a checked rename does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Move {
    /// The destination name is free: the entry moves.
    ToFree,
    /// The destination's inode loses that name (and is evicted if it was the last link).
    Replace(Ino, FileKind),
    /// Source and destination swap (`RENAME_EXCHANGE`).
    Exchange(Ino, FileKind),
}

/// `flags`: 0 or `libc::RENAME_NOREPLACE`, `libc::RENAME_EXCHANGE`, `libc::RENAME_WHITEOUT`
/// (`EINVAL` for others, for an exchange with either of the others); `ctx` owns the whiteout.
pub(super) fn rename(
    ns: &Namespace,
    vol: &Volume,
    inodes: &InodeTable,
    (from, to): (Place<'_>, Place<'_>),
    flags: u32,
    ctx: &Ctx,
) -> FsResult<()> {
    vol.writable()?;
    let exchange = check_flags(flags)?;
    let whiteout = flags & libc::RENAME_WHITEOUT != 0;
    check_name(from.name)?;
    check_name(to.name)?;
    if is_dot(from.name) || is_dot(to.name) {
        return Err(Errno::EBUSY);
    }
    let guard = ns.lock();
    let p = inodes.get(from.dir)?;
    let np = inodes.get(to.dir)?;
    let (sino, skind) = dirent_of(&p, from.name)?;
    let dst = destination(&np, to.name)?;
    let noreplace = flags & libc::RENAME_NOREPLACE != 0;
    let mv = match (dst, exchange) {
        (None, true) => return Err(Errno::ENOENT),
        (Some(_), false) if noreplace => return Err(Errno::EEXIST),
        (Some((dino, _)), _) if dino == sino => return Ok(()),
        (None, false) => Move::ToFree,
        (Some((dino, dkind)), false) => Move::Replace(dino, dkind),
        (Some((dino, dkind)), true) => Move::Exchange(dino, dkind),
    };
    check_move(inodes, from.dir, to.dir, (sino, skind), mv)?;
    let s = inodes.get(sino)?;
    let d = match mv {
        Move::ToFree => None,
        Move::Replace(dino, _) | Move::Exchange(dino, _) => Some(inodes.get(dino)?),
    };
    let w = if whiteout {
        Some(new_whiteout(vol, inodes, &p, ctx)?)
    } else {
        None
    };
    let mut set: Vec<&Arc<Inode>> = vec![&p, &np, &s];
    set.extend(d.as_ref());
    let res = apply(
        vol,
        &set,
        (from, to),
        (sino, skind),
        mv,
        w.as_ref().map(|w| &w.0),
    );
    match (res, w) {
        (Err(e), Some((w, gen))) => {
            inodes.put_free(w.ino, gen);
            return Err(e);
        }
        (Err(e), None) => return Err(e),
        (Ok(()), Some((w, _))) => inodes.install(w),
        (Ok(()), None) => {}
    }
    drop(guard);
    if let (Move::Replace(..), Some(d)) = (mv, &d) {
        ns.maybe_evict(vol, inodes, d);
    }
    Ok(())
}

/// Whether `flags` ask for an exchange; `EINVAL` for unknown flags, or an exchange with
/// `RENAME_NOREPLACE` or `RENAME_WHITEOUT` (as `do_renameat2`).
fn check_flags(flags: u32) -> FsResult<bool> {
    let known = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE | libc::RENAME_WHITEOUT;
    let exchange = flags & libc::RENAME_EXCHANGE != 0;
    let others = flags & (libc::RENAME_NOREPLACE | libc::RENAME_WHITEOUT) != 0;
    if flags & !known != 0 || (exchange && others) {
        return Err(Errno::EINVAL);
    }
    Ok(exchange)
}

/// A whiteout for a name in directory `p`: a new character device 0:0 with mode 0 (the kernel's
/// `WHITEOUT_MODE` and `WHITEOUT_DEV`), owned by `ctx`, not yet in the table. Return: the inode
/// and the generation its number had (for `put_free` if the rename fails).
fn new_whiteout(
    vol: &Volume,
    inodes: &InodeTable,
    p: &Inode,
    ctx: &Ctx,
) -> FsResult<(Arc<Inode>, u64)> {
    let (ino, gen) = inodes.take_free(vol)?;
    let node = NewNode {
        kind: FileKind::CharDevice,
        perm: 0,
        umask: 0,
        rdev: 0,
        target: None,
    };
    let rec = new_record(p.ino, &p.state.read().rec, &node, ctx, gen + 1, now_ns());
    Ok((inodes.make(ino, IState::new(rec)), gen))
}

/// What `name` names in the destination directory `np` (`ENOENT` when it was removed,
/// `ENOTDIR` when it is not a directory).
fn destination(np: &Inode, name: &OsStr) -> FsResult<Option<(Ino, FileKind)>> {
    let st = np.state.read();
    if st.rec.nlink == 0 {
        return Err(Errno::ENOENT);
    }
    Ok(st
        .dir
        .as_ref()
        .ok_or(Errno::ENOTDIR)?
        .get(name)
        .map(|s| (s.ino, s.kind)))
}

/// The errno decisions that need the inodes' kinds and ancestry: a directory moving under itself
/// (`EINVAL`), a destination directory that is an ancestor of the source's parent (`ENOTEMPTY`,
/// or `EINVAL` for an exchange), and a kind mismatch on replace (`ENOTDIR` / `EISDIR`).
fn check_move(
    inodes: &InodeTable,
    parent: Ino,
    newparent: Ino,
    (sino, skind): (Ino, FileKind),
    mv: Move,
) -> FsResult<()> {
    let sdir = skind == FileKind::Directory;
    if sdir && Namespace::is_ancestor(inodes, sino, newparent) {
        return Err(Errno::EINVAL);
    }
    let (dino, dkind, exchange) = match mv {
        Move::ToFree => return Ok(()),
        Move::Replace(i, k) => (i, k, false),
        Move::Exchange(i, k) => (i, k, true),
    };
    let ddir = dkind == FileKind::Directory;
    if ddir && Namespace::is_ancestor(inodes, dino, parent) {
        return Err(if exchange {
            Errno::EINVAL
        } else {
            Errno::ENOTEMPTY
        });
    }
    match (exchange, sdir, ddir) {
        (false, true, false) => Err(Errno::ENOTDIR),
        (false, false, true) => Err(Errno::EISDIR),
        _ => Ok(()),
    }
}

/// Immutable and append-only (`iflags`): the source directory loses an entry, the destination
/// gains one (and loses one when replacing or exchanging), the moved inodes change.
fn check_iflags(
    l: &mut Locked<'_>,
    from: &Place<'_>,
    to: &Place<'_>,
    sino: Ino,
    mv: Move,
) -> FsResult<()> {
    iflags::may_remove_entry(l.st(from.dir).rec.flags)?;
    iflags::may_add_entry(l.st(to.dir).rec.flags)?;
    iflags::may_change_inode(l.st(sino).rec.flags)?;
    if let Move::Replace(d, _) | Move::Exchange(d, _) = mv {
        iflags::may_remove_entry(l.st(to.dir).rec.flags)?;
        iflags::may_change_inode(l.st(d).rec.flags)?;
    }
    Ok(())
}

/// Applies a checked rename to the locked set (`p`, `np`, source, destination) and commits it;
/// the whiteout `w`, when given, takes the source name in the same transaction.
fn apply(
    vol: &Volume,
    set: &[&Arc<Inode>],
    (from, to): (Place<'_>, Place<'_>),
    (sino, skind): (Ino, FileKind),
    mv: Move,
    w: Option<&Arc<Inode>>,
) -> FsResult<()> {
    let (p, np) = (set[0], set[1]);
    let mut l = Locked::new(set);
    check_iflags(&mut l, &from, &to, sino, mv)?;
    let mut tx = Tx::new();
    let now = now_ns();
    let cross = from.dir != to.dir;
    let src = (sino, skind);
    let sdir = skind == FileKind::Directory;
    match mv {
        Move::ToFree => {
            add_dirent(vol, &mut tx, np, l.st(to.dir), to.name, src)?;
            vacate(&mut tx, p, l.st(from.dir), from.name, w)?;
        }
        Move::Replace(dino, dkind) => {
            let ddir = dkind == FileKind::Directory;
            if ddir && !l.st(dino).dir.as_ref().is_some_and(|x| x.is_empty()) {
                return Err(Errno::ENOTEMPTY);
            }
            set_dirent(&mut tx, np, l.st(to.dir), to.name, src)?;
            vacate(&mut tx, p, l.st(from.dir), from.name, w)?;
            drop_replaced(&mut l, dino, ddir, to.dir, now);
        }
        Move::Exchange(dino, dkind) => {
            set_dirent(&mut tx, p, l.st(from.dir), from.name, (dino, dkind))?;
            set_dirent(&mut tx, np, l.st(to.dir), to.name, src)?;
            if cross && dkind == FileKind::Directory {
                reparent(&mut l, dino, to.dir, from.dir);
            }
            l.st(dino).rec.ctime = now;
        }
    }
    if cross && sdir {
        reparent(&mut l, sino, from.dir, to.dir);
    }
    l.st(sino).rec.ctime = now;
    for pi in [from.dir, to.dir] {
        let st = l.st(pi);
        st.rec.mtime = now;
        st.rec.ctime = now;
    }
    for i in set {
        inode_into(vol, &mut tx, i, l.st(i.ino))?;
    }
    if let Some(w) = w {
        inode_into(vol, &mut tx, w, &mut w.state.write())?;
    }
    vol.commit(tx)
}

/// The source name after its inode moved away: gone, or naming the whiteout `w`.
fn vacate(
    tx: &mut Tx,
    p: &Inode,
    pst: &mut IState,
    name: &OsStr,
    w: Option<&Arc<Inode>>,
) -> FsResult<()> {
    match w {
        Some(w) => set_dirent(tx, p, pst, name, (w.ino, FileKind::CharDevice)),
        None => remove_dirent(tx, p, pst, name).map(|_| ()),
    }
}

/// The replaced inode `dino` loses the name in `newparent`: a directory loses all its links (and
/// its `..` link to `newparent` goes away), anything else one link.
fn drop_replaced(l: &mut Locked<'_>, dino: Ino, ddir: bool, newparent: Ino, now: i64) {
    let dst = l.st(dino);
    if ddir {
        dst.rec.nlink = 0;
        dst.rec.ctime = now;
        l.st(newparent).rec.nlink -= 1;
    } else {
        dst.rec.nlink = dst.rec.nlink.saturating_sub(1);
        dst.rec.ctime = now;
    }
}

/// Directory `ino` moves from directory `old` to `new`: its `..` link moves with it.
fn reparent(l: &mut Locked<'_>, ino: Ino, old: Ino, new: Ino) {
    l.st(old).rec.nlink -= 1;
    l.st(new).rec.nlink += 1;
    l.st(ino).rec.parent = new;
}
