//! Namespace operations of the embedded API: lookup/forget, mknod/mkdir/create/symlink, unlink,
//! rmdir, rename (with `RENAME_NOREPLACE` / `RENAME_EXCHANGE`), link, readlink and readdir.
//!
//! Rules: every operation that changes the namespace runs under `ns` and commits one journal
//! transaction before it returns (durable on return).

use super::*;

impl DaxFs {
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Attr> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let p = self.iget(parent)?;
        let pst = p.state.read();
        // "." works on any inode: FUSE resolves exported file handles (open_by_handle_at, NFS
        // export) by looking up "." in the handle's node.
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
            self.iget(ino)?
        };
        inode.lookups.fetch_add(1, Ordering::SeqCst);
        drop(pst);
        let st = inode.state.read();
        Ok(self.attr_of(&inode, &st))
    }

    pub fn forget(&self, ino: Ino, nlookup: u64) {
        let Ok(inode) = self.iget(ino) else { return };
        let _ = inode
            .lookups
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some(v.saturating_sub(nlookup))
            });
        if inode.state.read().rec.nlink == 0 && !self.read_only {
            self.maybe_evict(&inode);
        }
    }

    pub fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let inode = self.iget(ino)?;
        let st = inode.state.read();
        if st.kind() != FileKind::Symlink {
            return Err(Errno::EINVAL);
        }
        let (b, _) = inode.map.lookup(0).ok_or(Errno::EIO)?;
        let mut out = vec![0u8; st.rec.size.min(BLOCK) as usize];
        self.region.read_at(b * BLOCK, &mut out).map_err(eio)?;
        Ok(out)
    }

    /// Creates a regular file, fifo, socket or device node; `mode` carries the `S_IFMT` bits.
    pub fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        ctx: &Ctx,
    ) -> FsResult<Attr> {
        let kind = if mode & libc::S_IFMT == 0 {
            FileKind::Regular
        } else {
            FileKind::from_mode(mode).ok_or(Errno::EINVAL)?
        };
        if matches!(kind, FileKind::Directory | FileKind::Symlink) {
            return Err(Errno::EINVAL);
        }
        let rdev = if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) {
            rdev
        } else {
            0
        };
        let inode = self.create_node(parent, name, kind, mode, rdev, ctx, None)?;
        let st = inode.state.read();
        Ok(self.attr_of(&inode, &st))
    }

    pub fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32, ctx: &Ctx) -> FsResult<Attr> {
        let inode = self.create_node(parent, name, FileKind::Directory, mode, 0, ctx, None)?;
        let st = inode.state.read();
        Ok(self.attr_of(&inode, &st))
    }

    pub fn unlink(&self, parent: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        let _ = ctx;
        self.writable()?;
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if is_dot(name) {
            return Err(Errno::EISDIR);
        }
        self.remove_entry(parent, name, false)
    }

    pub fn rmdir(&self, parent: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        let _ = ctx;
        self.writable()?;
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        match name.as_bytes() {
            b"." => return Err(Errno::EINVAL),
            b".." => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        self.remove_entry(parent, name, true)
    }

    /// Removes `name` from `parent` and drops the link it held (unlink, or rmdir when `dir`):
    /// `EISDIR` / `ENOTDIR` when the entry's kind is not the one asked for, `ENOTEMPTY` for a
    /// directory with entries. Commits one transaction; the inode is evicted if that was its last
    /// link and reference. Context: takes `ns`, then the two inodes' locks.
    fn remove_entry(&self, parent: Ino, name: &OsStr, dir: bool) -> FsResult<()> {
        let ns = self.ns.lock();
        let p = self.iget(parent)?;
        let (ino, kind) = Self::dirent_of(&p, name)?;
        match (dir, kind == FileKind::Directory) {
            (false, true) => return Err(Errno::EISDIR),
            (true, false) => return Err(Errno::ENOTDIR),
            _ => {}
        }
        let t = self.iget(ino)?;
        {
            let mut l = Locked::new(&[&p, &t]);
            if dir && !l.st(ino).dir.as_ref().is_some_and(|d| d.is_empty()) {
                return Err(Errno::ENOTEMPTY);
            }
            let mut tx = Tx::new();
            let now = now_ns();
            self.remove_dirent(&mut tx, &p, l.st(parent), name)?;
            let pst = l.st(parent);
            pst.rec.mtime = now;
            pst.rec.ctime = now;
            if dir {
                // The child's ".." no longer links the parent.
                pst.rec.nlink = pst.rec.nlink.saturating_sub(1);
            }
            self.commit_inode_into(&mut tx, &p, l.st(parent))?;
            let tst = l.st(ino);
            tst.rec.nlink = if dir {
                0
            } else {
                tst.rec.nlink.saturating_sub(1)
            };
            tst.rec.ctime = now;
            self.commit_inode_into(&mut tx, &t, l.st(ino))?;
            self.commit(tx)?;
        }
        drop(ns);
        self.maybe_evict(&t);
        Ok(())
    }

    pub fn symlink(&self, parent: Ino, name: &OsStr, target: &OsStr, ctx: &Ctx) -> FsResult<Attr> {
        let tb = target.as_bytes();
        if tb.is_empty() {
            return Err(Errno::ENOENT);
        }
        if tb.len() >= BLOCK as usize {
            return Err(Errno::ENAMETOOLONG);
        }
        let inode = self.create_node(parent, name, FileKind::Symlink, 0o777, 0, ctx, Some(tb))?;
        let st = inode.state.read();
        Ok(self.attr_of(&inode, &st))
    }

    /// `flags`: 0, `libc::RENAME_NOREPLACE` or `libc::RENAME_EXCHANGE` (others: `EINVAL`).
    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
        ctx: &Ctx,
    ) -> FsResult<()> {
        let _ = ctx;
        self.writable()?;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        if flags & !(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE) != 0 || (noreplace && exchange)
        {
            return Err(Errno::EINVAL);
        }
        check_name(name)?;
        check_name(newname)?;
        if is_dot(name) || is_dot(newname) {
            return Err(Errno::EBUSY);
        }
        let ns = self.ns.lock();
        let p = self.iget(parent)?;
        let np = self.iget(newparent)?;
        let (sino, skind) = Self::dirent_of(&p, name)?;
        let dst = {
            let st = np.state.read();
            if st.rec.nlink == 0 {
                return Err(Errno::ENOENT);
            }
            st.dir
                .as_ref()
                .ok_or(Errno::ENOTDIR)?
                .get(newname)
                .map(|s| (s.ino, s.kind))
        };
        if exchange && dst.is_none() {
            return Err(Errno::ENOENT);
        }
        if noreplace && dst.is_some() {
            return Err(Errno::EEXIST);
        }
        if let Some((dino, _)) = dst {
            if dino == sino {
                return Ok(());
            }
        }
        // The source must not be an ancestor of the destination directory (nor vice versa
        // when the destination is an existing directory that moves or is replaced).
        if skind == FileKind::Directory && self.is_ancestor(sino, newparent) {
            return Err(Errno::EINVAL);
        }
        if let Some((dino, FileKind::Directory)) = dst {
            if self.is_ancestor(dino, parent) {
                return Err(if exchange {
                    Errno::EINVAL
                } else {
                    Errno::ENOTEMPTY
                });
            }
        }
        if !exchange {
            if let Some((_, dkind)) = dst {
                match (skind == FileKind::Directory, dkind == FileKind::Directory) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    _ => {}
                }
            }
        }
        let s = self.iget(sino)?;
        let d = match dst {
            Some((dino, _)) => Some(self.iget(dino)?),
            None => None,
        };
        let mut set: Vec<&Arc<Inode>> = vec![&p, &np, &s];
        if let Some(d) = &d {
            set.push(d);
        }
        let evict = {
            let mut l = Locked::new(&set);
            let mut tx = Tx::new();
            let now = now_ns();
            let sdir = skind == FileKind::Directory;
            let cross = parent != newparent;
            match dst {
                None => {
                    self.add_dirent(&mut tx, &np, l.st(newparent), newname, sino, skind)?;
                    self.remove_dirent(&mut tx, &p, l.st(parent), name)?;
                    if sdir && cross {
                        l.st(parent).rec.nlink -= 1;
                        l.st(newparent).rec.nlink += 1;
                        l.st(sino).rec.parent = newparent;
                    }
                }
                Some((dino, dkind)) if !exchange => {
                    if dkind == FileKind::Directory
                        && !l.st(dino).dir.as_ref().is_some_and(|x| x.is_empty())
                    {
                        return Err(Errno::ENOTEMPTY);
                    }
                    self.set_dirent(&mut tx, &np, l.st(newparent), newname, sino, skind)?;
                    self.remove_dirent(&mut tx, &p, l.st(parent), name)?;
                    let dst_st = l.st(dino);
                    if dkind == FileKind::Directory {
                        dst_st.rec.nlink = 0;
                        dst_st.rec.ctime = now;
                        // The replaced directory's ".." link to newparent goes away.
                        l.st(newparent).rec.nlink -= 1;
                    } else {
                        dst_st.rec.nlink = dst_st.rec.nlink.saturating_sub(1);
                        dst_st.rec.ctime = now;
                    }
                    if sdir && cross {
                        l.st(parent).rec.nlink -= 1;
                        l.st(newparent).rec.nlink += 1;
                        l.st(sino).rec.parent = newparent;
                    }
                }
                Some((dino, dkind)) => {
                    self.set_dirent(&mut tx, &p, l.st(parent), name, dino, dkind)?;
                    self.set_dirent(&mut tx, &np, l.st(newparent), newname, sino, skind)?;
                    if cross {
                        if sdir {
                            l.st(parent).rec.nlink -= 1;
                            l.st(newparent).rec.nlink += 1;
                            l.st(sino).rec.parent = newparent;
                        }
                        if dkind == FileKind::Directory {
                            l.st(newparent).rec.nlink -= 1;
                            l.st(parent).rec.nlink += 1;
                            l.st(dino).rec.parent = parent;
                        }
                    }
                    l.st(dino).rec.ctime = now;
                }
            }
            l.st(sino).rec.ctime = now;
            for pi in [parent, newparent] {
                let st = l.st(pi);
                st.rec.mtime = now;
                st.rec.ctime = now;
            }
            for i in set.iter() {
                self.commit_inode_into(&mut tx, i, l.st(i.ino))?;
            }
            self.commit(tx)?;
            d.as_ref().filter(|_| !exchange).cloned()
        };
        drop(ns);
        if let Some(d) = evict {
            self.maybe_evict(&d);
        }
        Ok(())
    }

    pub fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr, ctx: &Ctx) -> FsResult<Attr> {
        let _ = ctx;
        self.writable()?;
        check_new_name(newname)?;
        let _ns = self.ns.lock();
        let t = self.iget(ino)?;
        let np = self.iget(newparent)?;
        if t.state.read().kind() == FileKind::Directory {
            return Err(Errno::EPERM);
        }
        let mut l = Locked::new(&[&np, &t]);
        {
            let nst = l.st(newparent);
            let dir = nst.dir.as_ref().ok_or(Errno::ENOTDIR)?;
            if nst.rec.nlink == 0 {
                return Err(Errno::ENOENT);
            }
            if dir.get(newname).is_some() {
                return Err(Errno::EEXIST);
            }
        }
        let tst = l.st(ino);
        if tst.rec.nlink == 0 {
            return Err(Errno::ENOENT);
        }
        if tst.rec.nlink >= 65000 {
            return Err(Errno::EMLINK);
        }
        let kind = tst.kind();
        let now = now_ns();
        let mut tx = Tx::new();
        self.add_dirent(&mut tx, &np, l.st(newparent), newname, ino, kind)?;
        let nst = l.st(newparent);
        nst.rec.mtime = now;
        nst.rec.ctime = now;
        self.commit_inode_into(&mut tx, &np, l.st(newparent))?;
        let tst = l.st(ino);
        tst.rec.nlink += 1;
        tst.rec.ctime = now;
        self.commit_inode_into(&mut tx, &t, l.st(ino))?;
        self.commit(tx)?;
        t.lookups.fetch_add(1, Ordering::SeqCst);
        Ok(self.attr_of(&t, l.st(ino)))
    }

    /// Creates and opens a regular file.
    pub fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
        ctx: &Ctx,
    ) -> FsResult<(Attr, u64)> {
        let _ = flags;
        let inode = self.create_node(parent, name, FileKind::Regular, mode, 0, ctx, None)?;
        inode.opens.fetch_add(1, Ordering::SeqCst);
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, inode.ino);
        let st = inode.state.read();
        Ok((self.attr_of(&inode, &st), fh))
    }

    /// Entries after cookie `offset` (0 = from the start, including `.` and `..`).
    pub fn readdir(&self, ino: Ino, offset: u64) -> FsResult<Vec<DirEntry>> {
        let inode = self.iget(ino)?;
        let st = inode.state.read();
        let dir = st.dir.as_ref().ok_or(Errno::ENOTDIR)?;
        if !self.read_only {
            inode.touch_atime(&st, &self.atime, now_ns());
        }
        let mut out = Vec::new();
        if offset < 1 {
            out.push(DirEntry {
                ino,
                name: ".".into(),
                kind: FileKind::Directory,
                next_offset: 1,
            });
        }
        if offset < 2 {
            out.push(DirEntry {
                ino: st.rec.parent.max(1),
                name: "..".into(),
                kind: FileKind::Directory,
                next_offset: 2,
            });
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
}
