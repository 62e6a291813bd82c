//! Directory entries and new inodes: adding, replacing and removing the entries of a directory's
//! blocks, and creating an inode with its first entry.
//!
//! Rules: callers hold `ns` and the locks of the directory (and inode) they change; every change
//! goes into the caller's transaction, which commits it whole.

use super::*;

impl DaxFs {
    /// The (inode, kind) that entry `name` of directory `p` names: `ENOTDIR` when `p` is not a
    /// directory, `ENOENT` when there is no such entry. Context: takes `p`'s lock shared.
    pub(super) fn dirent_of(p: &Inode, name: &OsStr) -> FsResult<(Ino, FileKind)> {
        let st = p.state.read();
        let s = st
            .dir
            .as_ref()
            .ok_or(Errno::ENOTDIR)?
            .get(name)
            .ok_or(Errno::ENOENT)?;
        Ok((s.ino, s.kind))
    }

    /// Puts a new entry in directory `p`, growing it by a zeroed block if needed.
    pub(super) fn add_dirent(
        &self,
        tx: &mut Tx,
        p: &Inode,
        pst: &mut IState,
        name: &OsStr,
        ino: Ino,
        kind: FileKind,
    ) -> FsResult<()> {
        let s = pst.dir.as_ref().ok_or(Errno::ENOTDIR)?.next_free();
        let page = s as u64 / DIRENTS_PER_BLOCK;
        let block = match p.map.lookup(page) {
            Some((b, _)) => b,
            None => {
                let goal = page
                    .checked_sub(1)
                    .and_then(|q| p.map.lookup(q))
                    .map(|x| x.0 + 1);
                let b = self.alloc_block(goal)?;
                self.region.zero(b * BLOCK, BLOCK).map_err(eio)?;
                self.region.persist(b * BLOCK, BLOCK).map_err(eio)?;
                if let Err(e) = p.map.map(page, 0, b) {
                    self.alloc.lock().free(b);
                    return Err(e);
                }
                pst.rec.size = pst.rec.size.max((page + 1) * BLOCK);
                pst.map_dirty = true;
                let dir = pst.dir.as_mut().expect("dir");
                let cap = ((page + 1) * DIRENTS_PER_BLOCK) as usize;
                for i in dir.slots.len()..cap {
                    dir.free.insert(i);
                }
                dir.slots.resize(dir.slots.len().max(cap), None);
                b
            }
        };
        let de = Dirent {
            ino,
            kind,
            name: name.as_bytes().to_vec(),
        };
        tx.write(store::dirent_off(block, s as u64), &de.encode());
        pst.dir.as_mut().expect("dir").insert(
            s,
            Slot {
                ino,
                kind,
                name: name.to_owned(),
            },
        );
        Ok(())
    }

    pub(super) fn slot_off(p: &Inode, s: usize) -> FsResult<u64> {
        let page = s as u64 / DIRENTS_PER_BLOCK;
        let (b, _) = p.map.lookup(page).ok_or(Errno::EIO)?;
        Ok(store::dirent_off(b, s as u64))
    }

    pub(super) fn remove_dirent(
        &self,
        tx: &mut Tx,
        p: &Inode,
        pst: &mut IState,
        name: &OsStr,
    ) -> FsResult<Slot> {
        let dir = pst.dir.as_mut().ok_or(Errno::ENOTDIR)?;
        let (s, slot) = dir.remove(name).ok_or(Errno::ENOENT)?;
        tx.write(Self::slot_off(p, s)?, &[0u8; DIRENT_SIZE as usize]);
        Ok(slot)
    }

    /// Points the existing entry `name` of `p` at (`ino`, `kind`).
    pub(super) fn set_dirent(
        &self,
        tx: &mut Tx,
        p: &Inode,
        pst: &mut IState,
        name: &OsStr,
        ino: Ino,
        kind: FileKind,
    ) -> FsResult<()> {
        let dir = pst.dir.as_mut().ok_or(Errno::ENOTDIR)?;
        let s = *dir.names.get(name).ok_or(Errno::ENOENT)?;
        let slot = dir.slots[s].as_mut().ok_or(Errno::EIO)?;
        slot.ino = ino;
        slot.kind = kind;
        let de = Dirent {
            ino,
            kind,
            name: name.as_bytes().to_vec(),
        };
        tx.write(Self::slot_off(p, s)?, &de.encode());
        Ok(())
    }

    /// Creates an inode of `kind` named `name` in `parent`; takes one lookup reference.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn create_node(
        &self,
        parent: Ino,
        name: &OsStr,
        kind: FileKind,
        perm: u32,
        rdev: u32,
        ctx: &Ctx,
        target: Option<&[u8]>,
    ) -> FsResult<Arc<Inode>> {
        self.writable()?;
        check_new_name(name)?;
        let _ns = self.ns.lock();
        let p = self.iget(parent)?;
        let mut pst = p.state.write();
        let pdir = pst.dir.as_ref().ok_or(Errno::ENOTDIR)?;
        if pst.rec.nlink == 0 {
            return Err(Errno::ENOENT);
        }
        if pdir.get(name).is_some() {
            return Err(Errno::EEXIST);
        }
        let (ino, gen) = self.free_inos.lock().pop_first().ok_or(Errno::ENOSPC)?;
        let t = now_ns();
        let sgid_dir = pst.rec.mode & libc::S_ISGID != 0;
        let mut mode = kind.mode_bits() | (perm & 0o7777);
        if sgid_dir && kind == FileKind::Directory {
            mode |= libc::S_ISGID;
        }
        let rec = InodeRec {
            mode,
            nlink: if kind == FileKind::Directory { 2 } else { 1 },
            uid: ctx.uid,
            gid: if sgid_dir { pst.rec.gid } else { ctx.gid },
            rdev,
            generation: gen + 1,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            parent: if kind == FileKind::Directory {
                parent
            } else {
                0
            },
            flags: inherited_flags(pst.rec.flags, kind),
            ..Default::default()
        };
        let inode = Arc::new(Inode::new(ino, IState::new(rec), self.dax_opts));
        inode.map.attach_rmap(self.rmap.clone());
        let res = (|| -> FsResult<()> {
            let mut st = inode.state.write();
            if kind == FileKind::Directory {
                st.dir = Some(Dir::default());
            }
            let mut tx = Tx::new();
            if let Some(target) = target {
                let b = self.alloc_block(None)?;
                let mut blk = vec![0u8; BLOCK as usize];
                blk[..target.len()].copy_from_slice(target);
                self.region.write_at(b * BLOCK, &blk).map_err(eio)?;
                self.region.persist(b * BLOCK, BLOCK).map_err(eio)?;
                if let Err(e) = inode.map.map(0, 0, b) {
                    self.alloc.lock().free(b);
                    return Err(e);
                }
                st.rec.size = target.len() as u64;
                st.map_dirty = true;
            }
            if let Err(e) = self.add_dirent(&mut tx, &p, &mut pst, name, ino, kind) {
                for (b, n) in inode.map.unmap_range(0, u64::MAX) {
                    let mut a = self.alloc.lock();
                    (b..b + n).for_each(|x| a.free(x));
                }
                return Err(e);
            }
            if kind == FileKind::Directory {
                pst.rec.nlink += 1;
            }
            pst.rec.mtime = t;
            pst.rec.ctime = t;
            self.commit_inode_into(&mut tx, &p, &mut pst)?;
            self.commit_inode_into(&mut tx, &inode, &mut st)?;
            self.commit(tx)
        })();
        if let Err(e) = res {
            self.free_inos.lock().insert(ino, gen);
            return Err(e);
        }
        inode.lookups.store(1, Ordering::SeqCst);
        *self.table[ino as usize].write() = Some(inode.clone());
        Ok(inode)
    }

    /// Checks that moving directory `moved` under `dest` does not make it its own ancestor.
    pub(super) fn is_ancestor(&self, anc: Ino, mut d: Ino) -> bool {
        for _ in 0..4096 {
            if d == anc {
                return true;
            }
            if d == ROOT_INO {
                return false;
            }
            match self.iget(d) {
                Ok(i) => d = i.state.read().rec.parent,
                Err(_) => return false,
            }
        }
        false
    }
}
