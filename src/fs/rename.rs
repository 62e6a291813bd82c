//! `rename(2)` with `RENAME_NOREPLACE` and `RENAME_EXCHANGE`: checked first (every errno decided
//! before anything changes), then applied as one of three moves, committed as one transaction.
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
use super::inode::Inode;
use super::itable::InodeTable;
use super::names::{check_name, is_dot};
use super::namespace::{Locked, Namespace};
use super::time::now_ns;
use super::types::{FileKind, Ino};
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

/// `flags`: 0, `libc::RENAME_NOREPLACE` or `libc::RENAME_EXCHANGE` (others: `EINVAL`).
pub(super) fn rename(
    ns: &Namespace,
    vol: &Volume,
    inodes: &InodeTable,
    from: Place<'_>,
    to: Place<'_>,
    flags: u32,
) -> FsResult<()> {
    vol.writable()?;
    let exchange = check_flags(flags)?;
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
    let mut set: Vec<&Arc<Inode>> = vec![&p, &np, &s];
    set.extend(d.as_ref());
    apply(vol, &set, from, to, (sino, skind), mv)?;
    drop(guard);
    if let (Move::Replace(..), Some(d)) = (mv, &d) {
        ns.maybe_evict(vol, inodes, d);
    }
    Ok(())
}

/// Whether `flags` ask for an exchange; `EINVAL` for unknown flags or both at once.
fn check_flags(flags: u32) -> FsResult<bool> {
    let noreplace = flags & libc::RENAME_NOREPLACE != 0;
    let exchange = flags & libc::RENAME_EXCHANGE != 0;
    if flags & !(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE) != 0 || (noreplace && exchange) {
        return Err(Errno::EINVAL);
    }
    Ok(exchange)
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

/// Applies a checked rename to the locked set (`p`, `np`, source, destination) and commits it.
fn apply(
    vol: &Volume,
    set: &[&Arc<Inode>],
    from: Place<'_>,
    to: Place<'_>,
    (sino, skind): (Ino, FileKind),
    mv: Move,
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
            remove_dirent(&mut tx, p, l.st(from.dir), from.name)?;
        }
        Move::Replace(dino, dkind) => {
            let ddir = dkind == FileKind::Directory;
            if ddir && !l.st(dino).dir.as_ref().is_some_and(|x| x.is_empty()) {
                return Err(Errno::ENOTEMPTY);
            }
            set_dirent(&mut tx, np, l.st(to.dir), to.name, src)?;
            remove_dirent(&mut tx, p, l.st(from.dir), from.name)?;
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
    vol.commit(tx)
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
