//! Attributes: getattr/setattr, inode flags (`FS_XFLAG_*`), statfs, and dropping the set-id bits.
//!
//! Rules: setattr commits before it returns; a size change goes through the space module's
//! truncate under the inode lock.

use super::*;

impl DaxFs {
    /// Drops S_ISUID/S_ISGID after a modification by `ctx` ([`privs`]; uid 0 has `CAP_FSETID`).
    /// Returns whether the mode changed (then the kernel's cached mode is stale).
    pub(super) fn kill_suid(st: &mut IState, ctx: &Ctx) -> bool {
        let drop = privs::bits_to_drop(st.rec.mode, st.rec.gid, ctx, ctx.uid == 0);
        Self::drop_mode_bits(st, drop)
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

    pub fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        let inode = self.iget(ino)?;
        let st = inode.state.read();
        Ok(self.attr_of(&inode, &st))
    }

    pub fn setattr(&self, ino: Ino, set: &SetAttr, ctx: &Ctx) -> FsResult<Attr> {
        self.writable()?;
        let inode = self.iget(ino)?;
        let mut st = inode.state.write();
        let t = now_ns();
        let mut tx = Tx::new();
        if let Some(size) = set.size {
            require_regular(st.kind(), Errno::EINVAL)?;
            if size > MAX_FILE_SIZE {
                return Err(Errno::EFBIG);
            }
            self.truncate_locked(&mut tx, &inode, &mut st, size)?;
            st.rec.mtime = t;
            Self::kill_suid(&mut st, ctx);
        }
        if set.uid.is_some() || set.gid.is_some() {
            if let Some(u) = set.uid {
                st.rec.uid = u;
            }
            if let Some(g) = set.gid {
                st.rec.gid = g;
            }
            // As chown_common(): a chown of a non-directory always drops S_ISUID, and S_ISGID
            // when group-executable (whoever asks; an explicit mode below wins).
            if st.kind() != FileKind::Directory {
                let mut drop = libc::S_ISUID;
                if st.rec.mode & libc::S_IXGRP != 0 {
                    drop |= libc::S_ISGID;
                }
                Self::drop_mode_bits(&mut st, drop);
            }
        }
        if let Some(m) = set.mode {
            let mut m = m & 0o7777;
            if ctx.uid != 0 && ctx.gid != st.rec.gid {
                m &= !libc::S_ISGID;
            }
            st.rec.mode = (st.rec.mode & libc::S_IFMT) | m;
        }
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
        self.commit_inode_into(&mut tx, &inode, &mut st)?;
        self.commit(tx)?;
        Ok(self.attr_of(&inode, &st))
    }

    pub fn statfs(&self) -> FsResult<StatFs> {
        let a = self.alloc.lock();
        let ffree = self.free_inos.lock().len() as u64;
        Ok(StatFs {
            blocks: a.data_blocks(),
            bfree: a.free_blocks(),
            bavail: a.available_blocks(),
            files: self.sb.inodes_total,
            ffree,
            bsize: BLOCK as u32,
            namelen: NAME_MAX as u32,
            frsize: BLOCK as u32,
        })
    }

    /// Sets the per-inode flags (`FS_IOC_FSSETXATTR`'s `fsx_xflags`, e.g. `FS_XFLAG_DAX`);
    /// only the owner or root may. Durable on return.
    pub fn set_flags(&self, ino: Ino, flags: u32, ctx: &Ctx) -> FsResult<Attr> {
        self.writable()?;
        let inode = self.iget(ino)?;
        let mut st = inode.state.write();
        if ctx.uid != 0 && ctx.uid != st.rec.uid {
            return Err(Errno::EPERM);
        }
        st.rec.flags = flags;
        st.rec.ctime = now_ns();
        let mut tx = Tx::new();
        self.commit_inode_into(&mut tx, &inode, &mut st)?;
        self.commit(tx)?;
        Ok(self.attr_of(&inode, &st))
    }
}
