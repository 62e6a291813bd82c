//! Unnamed files: `open(2)` with `O_TMPFILE` (FUSE_TMPFILE), and `linkat(2)` giving one a name.
//!
//! Owns: the creation of a regular file that no directory names. Rules it keeps (as ext4 and
//! xfs, `open(2)`): the new inode is owned as a file created in the directory would be (owner
//! from the caller, group and S_ISGID from an S_ISGID directory, the inherited flags, the
//! directory's default ACL or else the umask), has link
//! count 0 and is *linkable* until `link` names it (the kernel refuses to link one opened with
//! `O_EXCL`: it checks `I_LINKABLE` itself). It lives while it is open or referenced, then is
//! evicted like any unlinked file. Its record is committed with link count 0 at creation, so a
//! crash (or a shutdown) leaves an orphan that `fsck` reports and the next read-write mount
//! reclaims — never a name, never a leak. The directory itself does not change (no entry, no
//! mtime). Context: the namespace mutex, then the directory's and the new inode's locks (the
//! new inode is not reachable by anyone else yet).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use nix::errno::Errno;

use super::acl;
use super::attrs::attr_of;
use super::commit::inode_into;
use super::daxfs::DaxFs;
use super::inode::{IState, Inode};
use super::itable::InodeTable;
use super::namespace::{new_record, Namespace, NewNode};
use super::time::now_ns;
use super::types::{Attr, Ctx, FileKind, Ino};
use super::volume::Volume;
use super::xattrs;
use super::FsResult;
use crate::store::Tx;

impl Namespace {
    /// Creates a linkable regular file with no name, seen from directory `parent`; takes one
    /// lookup reference. `perm`: the permission bits asked for; `umask` applies unless `parent`
    /// has a default ACL, which the file then inherits (`acl::inherit`, as a named file).
    pub(super) fn create_unnamed(
        &self,
        vol: &Volume,
        inodes: &InodeTable,
        parent: Ino,
        perm: u32,
        umask: u32,
        ctx: &Ctx,
    ) -> FsResult<Arc<Inode>> {
        vol.writable()?;
        let _ns = self.lock();
        let p = inodes.get(parent)?;
        let pst = p.state.read();
        if pst.dir.is_none() {
            return Err(Errno::ENOTDIR);
        }
        if pst.rec.nlink == 0 {
            return Err(Errno::ENOENT);
        }
        let default = pst.xattrs.iter().find(|(k, _)| k == acl::DEFAULT);
        let inherited = acl::inherit(
            default.map(|(_, v)| v.as_slice()),
            libc::S_IFREG | (perm & 0o7777),
            umask,
        );
        let node = NewNode {
            kind: FileKind::Regular,
            perm: inherited.mode & 0o7777,
            umask: 0,
            rdev: 0,
            target: None,
        };
        let (ino, gen) = inodes.take_free(vol)?;
        let mut rec = new_record(parent, &pst.rec, &node, ctx, gen + 1, now_ns());
        drop(pst);
        rec.nlink = 0;
        let mut st = IState::new(rec);
        st.linkable = true;
        let inode = inodes.make(ino, st);
        let res = {
            let mut st = inode.state.write();
            let mut tx = Tx::new();
            let mut r = Ok(());
            if !inherited.xattrs.is_empty() {
                r = xattrs::area_into(vol, &mut tx, &mut st, inherited.xattrs);
            }
            let r = r
                .and_then(|()| inode_into(vol, &mut tx, &inode, &mut st))
                .and_then(|()| vol.commit(tx));
            if r.is_err() {
                xattrs::discard_area(vol, &mut st);
            }
            r
        };
        if let Err(e) = res {
            inodes.put_free(ino, gen);
            return Err(e);
        }
        inode.lookups.store(1, Ordering::SeqCst);
        inodes.install(inode.clone());
        Ok(inode)
    }
}

impl DaxFs {
    /// Creates and opens an unnamed regular file in directory `parent` (`O_TMPFILE`) with
    /// `mode`'s permission bits less `umask` (0 when the kernel applied it), or the parent's
    /// default ACL. Returns its attributes (link count 0) and a handle; [`DaxFs::link`] may name
    /// it later. `flags` are the `open(2)` flags (the kernel has checked them).
    pub fn tmpfile(
        &self,
        parent: Ino,
        mode: u32,
        umask: u32,
        flags: i32,
        ctx: &Ctx,
    ) -> FsResult<(Attr, u64)> {
        let _ = flags;
        if mode & libc::S_IFMT != 0 && mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Errno::EINVAL);
        }
        let inode =
            self.ns
                .create_unnamed(&self.vol, &self.inodes, parent, mode & 0o7777, umask, ctx)?;
        let fh = self.data.new_handle(&inode);
        let st = inode.state.read();
        Ok((attr_of(&inode, &st), fh))
    }
}
