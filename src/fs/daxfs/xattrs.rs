//! Extended attributes: name checks by namespace (`user.`, `trusted.`, `security.`, `system.`)
//! and get/set/list/remove.
//!
//! Rules: changes commit before they return; `trusted.*` needs root.

use super::*;

impl DaxFs {
    pub(super) fn set_xattrs_locked(
        &self,
        inode: &Inode,
        st: &mut IState,
        x: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> FsResult<()> {
        let mut tx = Tx::new();
        let old = st.rec.xattr_block;
        let old_n = store::xattr_area_blocks(&st.xattrs);
        if x.is_empty() {
            st.rec.xattr_block = 0;
        } else {
            let area = encode_xattrs(&x).ok_or(Errno::ENOSPC)?;
            let n = area.len() as u64 / BLOCK;
            let b = self.alloc.lock().alloc_run(n).ok_or(Errno::ENOSPC)?;
            self.region.write_at(b * BLOCK, &area).map_err(eio)?;
            self.region.persist(b * BLOCK, n * BLOCK).map_err(eio)?;
            st.rec.xattr_block = b;
        }
        if old != 0 {
            tx.free_after.extend(old..old + old_n);
        }
        st.rec.ctime = now_ns();
        st.xattrs = x;
        self.commit_inode_into(&mut tx, inode, st)?;
        self.commit(tx)
    }

    // ---- the embedded API ----

    pub(super) fn check_xattr_name(name: &OsStr, kind: FileKind, ctx: &Ctx) -> FsResult<()> {
        let b = name.as_bytes();
        if b.len() > 255 {
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

    /// `flags`: 0, `XATTR_CREATE` or `XATTR_REPLACE`.
    pub fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        ctx: &Ctx,
    ) -> FsResult<()> {
        self.writable()?;
        let inode = self.iget(ino)?;
        let mut st = inode.state.write();
        Self::check_xattr_name(name, st.kind(), ctx)?;
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
        self.set_xattrs_locked(&inode, &mut st, x)
    }

    pub fn getxattr(&self, ino: Ino, name: &OsStr) -> FsResult<Vec<u8>> {
        let inode = self.iget(ino)?;
        let st = inode.state.read();
        if name.len() > 255 {
            return Err(Errno::ERANGE);
        }
        st.xattrs
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v.clone())
            .ok_or(Errno::ENODATA)
    }

    /// Names, each NUL-terminated, concatenated.
    pub fn listxattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let inode = self.iget(ino)?;
        let st = inode.state.read();
        let mut out = Vec::new();
        for (k, _) in &st.xattrs {
            out.extend_from_slice(k);
            out.push(0);
        }
        Ok(out)
    }

    pub fn removexattr(&self, ino: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        self.writable()?;
        let inode = self.iget(ino)?;
        let mut st = inode.state.write();
        Self::check_xattr_name(name, st.kind(), ctx)?;
        let mut x = st.xattrs.clone();
        let before = x.len();
        x.retain(|(k, _)| k != name.as_bytes());
        if x.len() == before {
            return Err(Errno::ENODATA);
        }
        self.set_xattrs_locked(&inode, &mut st, x)
    }
}
