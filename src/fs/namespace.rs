//! The namespace: directory entries, link counts and inode lifetime (lookup references, eviction).
//!
//! Owns: the namespace mutex. Rules it keeps (docs/DESIGN.md, "Lock order", "Durability"):
//! - Every change to directory entries or link counts (create, unlink, rmdir, rename, link) and
//!   every eviction runs under the namespace mutex and commits one journal transaction before it
//!   returns: durable on return.
//! - Lock order: namespace mutex → inode locks, several at once only here, in increasing inode
//!   number ([`Locked`] sorts them) → leaves (allocator, journal, bad-block set). Lookups and
//!   readdir take only the directory's inode lock, shared, and no namespace mutex.
//! - A new inode takes its mode and ACLs from its parent's default ACL, or the umask without one
//!   (`acl::inherit`), committed with its entry.
//! - `lookup`, `create`, `mknod`, `mkdir`, `symlink` and `link` take one kernel reference on the
//!   inode they return; `forget` drops them; an unlinked inode is evicted (its blocks and record
//!   freed) when its last reference and last open handle are gone.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use nix::errno::Errno;
use parking_lot::{Mutex, MutexGuard, RwLockWriteGuard};

use super::acl;
use super::atime::AtimePolicy;
use super::attrs::attr_of;
use super::commit::inode_into;
use super::dirents::{add_dirent, dirent_of, remove_dirent};
use super::iflags;
use super::inode::{Dir, IState, Inode};
use super::itable::InodeTable;
use super::layout::LayoutChange;
use super::names::{check_new_name, is_dot};
use super::time::now_ns;
use super::types::{Attr, Ctx, DirEntry, FileKind, Ino, NAME_MAX, ROOT_INO};
use super::volume::{eio, Volume};
use super::xattrs;
use super::FsResult;
use crate::store::{self, InodeRec, Tx, BLOCK};

/// The namespace mutex (see the module comment for what it serializes).
#[derive(Default)]
pub(crate) struct Namespace {
    lock: Mutex<()>,
}

/// Lock set of a namespace operation: write guards of distinct inodes, taken in increasing inode
/// number. Context: only under the namespace mutex.
pub(super) struct Locked<'a> {
    g: Vec<(Ino, RwLockWriteGuard<'a, IState>)>,
}

impl<'a> Locked<'a> {
    /// Locks `inodes` (duplicates once), lowest inode number first.
    pub(super) fn new(inodes: &[&'a Arc<Inode>]) -> Locked<'a> {
        let mut sorted: Vec<&'a Arc<Inode>> = inodes.to_vec();
        sorted.sort_by_key(|i| i.ino);
        sorted.dedup_by_key(|i| i.ino);
        Locked {
            g: sorted
                .into_iter()
                .map(|i| (i.ino, i.state.write()))
                .collect(),
        }
    }

    /// The locked state of `ino`. Panics when `ino` is not in the set (a caller bug).
    pub(super) fn st(&mut self, ino: Ino) -> &mut IState {
        &mut self
            .g
            .iter_mut()
            .find(|(n, _)| *n == ino)
            .expect("inode in lock set")
            .1
    }
}

/// What a new inode is: its kind and permission bits, device number, symlink target.
pub(super) struct NewNode<'a> {
    /// Its type.
    pub kind: FileKind,
    /// Permission bits as asked.
    pub perm: u32,
    /// The caller's umask, applied unless the parent has a default ACL (`acl::inherit`); 0 when
    /// the kernel applied it already.
    pub umask: u32,
    /// Device number (device nodes only).
    pub rdev: u32,
    /// A symlink's target.
    pub target: Option<&'a [u8]>,
}

/// The per-inode flags a new inode of `kind` takes from its parent directory's `parent_flags`:
/// `FS_XFLAG_DAX`, for directories and regular files only (as `xfs_inode_inherit_flags` and
/// ext4's `ext4_mask_flags` do). A later rename keeps an inode's flags; a copy is a new inode.
fn inherited_flags(parent_flags: u32, kind: FileKind) -> u32 {
    match kind {
        FileKind::Directory | FileKind::Regular => parent_flags & crate::ioctl::FS_XFLAG_DAX,
        _ => 0,
    }
}

impl Namespace {
    /// Takes the namespace mutex.
    pub(super) fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock()
    }

    /// Looks `name` up in `parent` and takes a kernel reference on what it names. `.` works on
    /// any inode: FUSE resolves exported file handles (open_by_handle_at, NFS export) by looking
    /// up `.` in the handle's node.
    pub(super) fn lookup(&self, inodes: &InodeTable, parent: Ino, name: &OsStr) -> FsResult<Attr> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let p = inodes.get(parent)?;
        let pst = p.state.read();
        let ino = match name.as_bytes() {
            b"." => parent,
            b".." if pst.dir.is_some() => pst.rec.parent.max(1),
            _ => {
                let dir = pst.dir.as_ref().ok_or(Errno::ENOTDIR)?;
                dir.get(name).ok_or(Errno::ENOENT)?.ino
            }
        };
        let inode = if ino == parent {
            p.clone()
        } else {
            inodes.get(ino)?
        };
        inode.lookups.fetch_add(1, Ordering::SeqCst);
        drop(pst);
        let st = inode.state.read();
        Ok(attr_of(&inode, &st))
    }

    /// Drops `nlookup` kernel references; evicts the inode if that unpinned an unlinked one.
    pub(super) fn forget(&self, vol: &Volume, inodes: &InodeTable, ino: Ino, nlookup: u64) {
        let Ok(inode) = inodes.get(ino) else { return };
        let _ = inode
            .lookups
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some(v.saturating_sub(nlookup))
            });
        if inode.state.read().rec.nlink == 0 && !vol.read_only() && !vol.is_down() {
            self.maybe_evict(vol, inodes, &inode);
        }
    }

    /// Creates an inode `node` named `name` in `parent`; takes one lookup reference.
    pub(super) fn create_node(
        &self,
        vol: &Volume,
        inodes: &InodeTable,
        parent: Ino,
        name: &OsStr,
        node: NewNode<'_>,
        ctx: &Ctx,
    ) -> FsResult<Arc<Inode>> {
        vol.writable()?;
        check_new_name(name)?;
        let _ns = self.lock();
        let p = inodes.get(parent)?;
        let mut pst = p.state.write();
        let pdir = pst.dir.as_ref().ok_or(Errno::ENOTDIR)?;
        if pst.rec.nlink == 0 {
            return Err(Errno::ENOENT);
        }
        iflags::may_add_entry(pst.rec.flags)?;
        if pdir.get(name).is_some() {
            return Err(Errno::EEXIST);
        }
        let (ino, gen) = inodes.take_free(vol)?;
        let t = now_ns();
        let default = pst.xattrs.iter().find(|(k, _)| k == acl::DEFAULT);
        let inherited = acl::inherit(
            default.map(|(_, v)| v.as_slice()),
            node.kind.mode_bits() | (node.perm & 0o7777),
            node.umask,
        );
        let node = NewNode {
            perm: inherited.mode & 0o7777,
            ..node
        };
        let rec = new_record(parent, &pst.rec, &node, ctx, gen + 1, t);
        let inode = inodes.make(ino, IState::new(rec));
        let res = (|| -> FsResult<()> {
            let mut st = inode.state.write();
            if node.kind == FileKind::Directory {
                st.dir = Some(Dir::default());
            }
            if let Some(target) = node.target {
                write_symlink(vol, &inode, &mut st, target)?;
            }
            let mut tx = Tx::new();
            let mut added = Ok(());
            if !inherited.xattrs.is_empty() {
                added = xattrs::area_into(vol, &mut tx, &mut st, inherited.xattrs);
            }
            if let Err(e) =
                added.and_then(|_| add_dirent(vol, &mut tx, &p, &mut pst, name, (ino, node.kind)))
            {
                let freed = inode.map.unmap_range(0, u64::MAX);
                vol.free_unused(freed.into_iter().flat_map(|(b, n)| b..b + n));
                xattrs::discard_area(vol, &mut st);
                return Err(e);
            }
            if node.kind == FileKind::Directory {
                pst.rec.nlink += 1;
            }
            pst.rec.mtime = t;
            pst.rec.ctime = t;
            inode_into(vol, &mut tx, &p, &mut pst)?;
            inode_into(vol, &mut tx, &inode, &mut st)?;
            vol.commit(tx)
        })();
        if let Err(e) = res {
            inodes.put_free(ino, gen);
            return Err(e);
        }
        inode.lookups.store(1, Ordering::SeqCst);
        inodes.install(inode.clone());
        Ok(inode)
    }

    /// Removes `name` from `parent` and drops the link it held (unlink, or rmdir when `dir`):
    /// `EISDIR` / `ENOTDIR` when the entry's kind is not the one asked for, `ENOTEMPTY` for a
    /// directory with entries. Commits one transaction; the inode is evicted if that was its last
    /// link and reference. Context: takes the namespace mutex, then the two inodes' locks.
    pub(super) fn remove_entry(
        &self,
        vol: &Volume,
        inodes: &InodeTable,
        parent: Ino,
        name: &OsStr,
        dir: bool,
    ) -> FsResult<()> {
        let ns = self.lock();
        let p = inodes.get(parent)?;
        let (ino, kind) = dirent_of(&p, name)?;
        match (dir, kind == FileKind::Directory) {
            (false, true) => return Err(Errno::EISDIR),
            (true, false) => return Err(Errno::ENOTDIR),
            _ => {}
        }
        let t = inodes.get(ino)?;
        {
            let mut l = Locked::new(&[&p, &t]);
            iflags::may_remove_entry(l.st(parent).rec.flags)?;
            iflags::may_change_inode(l.st(ino).rec.flags)?;
            if dir && !l.st(ino).dir.as_ref().is_some_and(|d| d.is_empty()) {
                return Err(Errno::ENOTEMPTY);
            }
            let mut tx = Tx::new();
            let now = now_ns();
            remove_dirent(&mut tx, &p, l.st(parent), name)?;
            let pst = l.st(parent);
            pst.rec.mtime = now;
            pst.rec.ctime = now;
            if dir {
                // The child's ".." no longer links the parent.
                pst.rec.nlink = pst.rec.nlink.saturating_sub(1);
            }
            inode_into(vol, &mut tx, &p, l.st(parent))?;
            let tst = l.st(ino);
            tst.rec.nlink = if dir {
                0
            } else {
                tst.rec.nlink.saturating_sub(1)
            };
            tst.rec.ctime = now;
            inode_into(vol, &mut tx, &t, l.st(ino))?;
            vol.commit(tx)?;
        }
        drop(ns);
        self.maybe_evict(vol, inodes, &t);
        Ok(())
    }

    /// A new hard link `newname` in `newparent` to `ino` (not a directory: `EPERM`).
    pub(super) fn link(
        &self,
        vol: &Volume,
        inodes: &InodeTable,
        ino: Ino,
        newparent: Ino,
        newname: &OsStr,
    ) -> FsResult<Attr> {
        vol.writable()?;
        check_new_name(newname)?;
        let _ns = self.lock();
        let t = inodes.get(ino)?;
        let np = inodes.get(newparent)?;
        if t.state.read().kind() == FileKind::Directory {
            return Err(Errno::EPERM);
        }
        let mut l = Locked::new(&[&np, &t]);
        check_link_target(l.st(newparent), newname)?;
        check_link_source(l.st(ino))?;
        iflags::may_add_entry(l.st(newparent).rec.flags)?;
        iflags::may_change_inode(l.st(ino).rec.flags)?;
        let kind = l.st(ino).kind();
        let now = now_ns();
        let mut tx = Tx::new();
        add_dirent(vol, &mut tx, &np, l.st(newparent), newname, (ino, kind))?;
        let nst = l.st(newparent);
        nst.rec.mtime = now;
        nst.rec.ctime = now;
        inode_into(vol, &mut tx, &np, l.st(newparent))?;
        let tst = l.st(ino);
        tst.rec.nlink += 1;
        tst.linkable = false;
        tst.rec.ctime = now;
        inode_into(vol, &mut tx, &t, l.st(ino))?;
        vol.commit(tx)?;
        t.lookups.fetch_add(1, Ordering::SeqCst);
        Ok(attr_of(&t, l.st(ino)))
    }

    /// The target of symlink `ino` (`EINVAL` for anything else).
    pub(super) fn readlink(
        &self,
        vol: &Volume,
        inodes: &InodeTable,
        ino: Ino,
    ) -> FsResult<Vec<u8>> {
        let inode = inodes.get(ino)?;
        let st = inode.state.read();
        if st.kind() != FileKind::Symlink {
            return Err(Errno::EINVAL);
        }
        let (b, _) = inode.map.lookup(0).ok_or(Errno::EIO)?;
        let mut out = vec![0u8; st.rec.size.min(BLOCK) as usize];
        vol.region().read_at(b * BLOCK, &mut out).map_err(eio)?;
        Ok(out)
    }

    /// Entries of directory `ino` after cookie `offset` (0 = from the start, with `.` and `..`);
    /// a slot's cookie is its index + 3. Updates atime by `atime` unless read-only.
    pub(super) fn readdir(
        &self,
        vol: &Volume,
        inodes: &InodeTable,
        atime: &AtimePolicy,
        ino: Ino,
        offset: u64,
    ) -> FsResult<Vec<DirEntry>> {
        let inode = inodes.get(ino)?;
        let st = inode.state.read();
        let dir = st.dir.as_ref().ok_or(Errno::ENOTDIR)?;
        if !vol.read_only() {
            inode.touch_atime(&st, atime, now_ns());
        }
        let dot = |name: &str, ino, next_offset| DirEntry {
            ino,
            name: name.into(),
            kind: FileKind::Directory,
            next_offset,
        };
        let mut out = Vec::new();
        if offset < 1 {
            out.push(dot(".", ino, 1));
        }
        if offset < 2 {
            out.push(dot("..", st.rec.parent.max(1), 2));
        }
        let start = offset.saturating_sub(2) as usize;
        for (s, slot) in dir.slots.iter().enumerate().skip(start) {
            if let Some(slot) = slot {
                out.push(DirEntry {
                    ino: slot.ino,
                    name: slot.name.clone(),
                    kind: slot.kind,
                    next_offset: s as u64 + 3,
                });
            }
        }
        Ok(out)
    }

    /// Whether directory `anc` is `d` or one of its ancestors (a rename must not move a
    /// directory under itself). Context: under the namespace mutex; takes one inode lock at a
    /// time, shared.
    pub(super) fn is_ancestor(inodes: &InodeTable, anc: Ino, mut d: Ino) -> bool {
        for _ in 0..4096 {
            if d == anc {
                return true;
            }
            if d == ROOT_INO {
                return false;
            }
            match inodes.get(d) {
                Ok(i) => d = i.state.read().rec.parent,
                Err(_) => return false,
            }
        }
        false
    }

    /// Evicts `inode` if it is unlinked and unreferenced: its blocks, chain and xattr area are
    /// freed and its record cleared in one transaction. Context: takes the namespace mutex; no
    /// inode lock held.
    pub(super) fn maybe_evict(&self, vol: &Volume, inodes: &InodeTable, inode: &Arc<Inode>) {
        let _ns = self.lock();
        let mut st = inode.state.write();
        if st.evicted
            || inode.ino == ROOT_INO
            || st.rec.nlink > 0
            || inode.lookups.load(Ordering::SeqCst) > 0
            || inode.opens.load(Ordering::SeqCst) > 0
        {
            return;
        }
        let mut tx = Tx::new();
        let why = LayoutChange::Truncate { size: 0 };
        let fence = vol.break_layouts(inode.ino, 0, u64::MAX, why);
        let freed = inode.map.unmap_range(0, u64::MAX);
        vol.free_after_layout_break(&mut tx, fence, freed);
        inode.map.evict();
        tx.free_after.append(&mut st.chain);
        if st.rec.xattr_block != 0 {
            let xb = st.rec.xattr_block;
            tx.free_after
                .extend(xb..xb + store::xattr_area_blocks(&st.xattrs));
        }
        let generation = st.rec.generation;
        let rec = InodeRec {
            generation,
            ..Default::default()
        };
        tx.write(vol.sb().inode_off(inode.ino), &rec.encode());
        if let Err(e) = vol.commit(tx) {
            log::error!("daxfs: cannot free inode {}: {e}", inode.ino);
            return;
        }
        st.evicted = true;
        st.rec = rec;
        inodes.remove(inode.ino, generation);
    }

    /// Evicts the inodes left unlinked by a crash (orphans), at open.
    pub(super) fn reclaim_orphans(&self, vol: &Volume, inodes: &InodeTable) {
        for inode in inodes.live() {
            if inode.state.read().rec.nlink == 0 {
                log::info!("daxfs: reclaiming orphan inode {}", inode.ino);
                self.maybe_evict(vol, inodes, &inode);
            }
        }
    }
}

/// The record of a new inode `node` in the directory with record `prec`: owner from `ctx`, the
/// group and S_ISGID of an S_ISGID directory, the inherited flags, times `t`.
pub(super) fn new_record(
    parent: Ino,
    prec: &InodeRec,
    node: &NewNode<'_>,
    ctx: &Ctx,
    generation: u64,
    t: i64,
) -> InodeRec {
    let kind = node.kind;
    let sgid_dir = prec.mode & libc::S_ISGID != 0;
    let mut mode = kind.mode_bits() | (node.perm & 0o7777);
    if sgid_dir && kind == FileKind::Directory {
        mode |= libc::S_ISGID;
    }
    let dir = kind == FileKind::Directory;
    InodeRec {
        mode,
        nlink: if dir { 2 } else { 1 },
        uid: ctx.uid,
        gid: if sgid_dir { prec.gid } else { ctx.gid },
        rdev: node.rdev,
        generation,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        parent: if dir { parent } else { 0 },
        flags: inherited_flags(prec.flags, kind),
        // A directory's extent size hint goes to new files and directories in it (xfs's
        // EXTSZINHERIT); other kinds take none.
        extsize: match kind {
            FileKind::Directory | FileKind::Regular => prec.extsize,
            _ => 0,
        },
        ..Default::default()
    }
}

/// Writes a symlink's target to a fresh block at file page 0 (persisted before it is committed).
fn write_symlink(vol: &Volume, inode: &Inode, st: &mut IState, target: &[u8]) -> FsResult<()> {
    let b = vol.alloc_block(None)?;
    vol.write_fresh_block(b, target)?;
    if let Err(e) = inode.map.map(0, 0, b) {
        vol.free_unused([b]);
        return Err(e);
    }
    st.rec.size = target.len() as u64;
    st.map_dirty = true;
    Ok(())
}

/// Whether `newname` may be added to the directory `nst`: `ENOTDIR`, `ENOENT` for a removed
/// directory, `EEXIST`.
fn check_link_target(nst: &IState, newname: &OsStr) -> FsResult<()> {
    let dir = nst.dir.as_ref().ok_or(Errno::ENOTDIR)?;
    if nst.rec.nlink == 0 {
        return Err(Errno::ENOENT);
    }
    if dir.get(newname).is_some() {
        return Err(Errno::EEXIST);
    }
    Ok(())
}

/// Whether the inode `tst` may get one more link: `ENOENT` when unlinked, `EMLINK` past 65000.
fn check_link_source(tst: &IState) -> FsResult<()> {
    if tst.rec.nlink == 0 && !tst.linkable {
        return Err(Errno::ENOENT);
    }
    if tst.rec.nlink >= 65000 {
        return Err(Errno::EMLINK);
    }
    Ok(())
}

/// A name check shared by unlink and rmdir: `ENAMETOOLONG` past [`NAME_MAX`].
pub(super) fn check_len(name: &OsStr) -> FsResult<()> {
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

/// `unlink`'s refusal of `.` and `..` (`EISDIR`), `rmdir`'s (`EINVAL` for `.`, `ENOTEMPTY` for
/// `..`).
pub(super) fn check_removable(name: &OsStr, dir: bool) -> FsResult<()> {
    check_len(name)?;
    match (dir, name.as_bytes()) {
        (false, _) if is_dot(name) => Err(Errno::EISDIR),
        (true, b".") => Err(Errno::EINVAL),
        (true, b"..") => Err(Errno::ENOTEMPTY),
        _ => Ok(()),
    }
}
