//! Layouts for direct mappings: a file range's extents as `DAXFS_IOC_GET_FMAP` reports them,
//! and the embedded API of the layout-breaker hook and the quarantine, which the volume keeps
//! (docs/DESIGN.md, "Direct mapping"; the rules are in `crate::fs::layout`).
//!
//! Context: `file_layout` takes the inode lock (exclusive when it allocates or writes), then the
//! allocator mutex; the lease callback runs with the inode lock held.

use std::sync::Arc;

use nix::errno::Errno;

use super::commit::commit_inode;
use super::daxfs::DaxFs;
use super::inode::{IState, Inode};
use super::layout::{FenceId, FileLayout, LayoutBreaker, LayoutExtent, LayoutRequest};
use super::space::fill_range;
use super::time::now_ns;
use super::types::Ino;
use super::FsResult;
use crate::store::{Tx, BLOCK};

impl DaxFs {
    /// Installs the lease manager (once; later calls are ignored). Return: whether it was
    /// installed.
    pub fn set_layout_breaker(&self, b: Arc<dyn LayoutBreaker>) -> bool {
        self.vol.set_layout_breaker(b)
    }

    /// Lifts a fence: its quarantined blocks whose freeing is durable return to the allocator
    /// (the others when their transaction commits).
    pub fn lift_fence(&self, fence: FenceId) {
        self.vol.lift_fence(fence)
    }

    /// Whether the filesystem was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.vol.read_only()
    }

    /// Number of blocks held in quarantine.
    pub fn quarantined_blocks(&self) -> usize {
        self.vol.quarantined_blocks()
    }

    /// Whether `ino` is accessed directly: `dax=always`, or `dax=inode` with `FS_XFLAG_DAX`.
    /// Only such files get direct mappings.
    pub fn is_dax_inode(&self, ino: Ino) -> FsResult<bool> {
        let inode = self.inodes.get(ino)?;
        let flags = inode.state.read().rec.flags;
        Ok(self.data.direct(flags))
    }

    /// The layout of pages `[first, end)` of regular file `ino` (at most `max` extents, from
    /// `first`; pages past the end of the file are not reported), after allocating the range's
    /// holes inside the file (`req.allocate`, durable on return) and updating mtime/ctime
    /// (`req.write`). `lease` runs while the inode lock is still held, so the lease it records
    /// is in place before any later change of the layout can look for holders.
    ///
    /// Return: `EOPNOTSUPP` for a file that is not accessed directly ([`Self::is_dax_inode`]),
    /// `EINVAL` for anything but a regular file or an empty range, `EROFS`/`ENOSPC` from
    /// allocation.
    ///
    /// Context: takes the inode lock (exclusive with `allocate` or `write`); may sleep, and may
    /// break other holders' layouts of the holes it fills.
    pub fn file_layout(
        &self,
        ino: Ino,
        first: u64,
        end: u64,
        max: usize,
        req: LayoutRequest,
        lease: impl FnOnce(&FileLayout),
    ) -> FsResult<FileLayout> {
        self.vol.alive()?;
        if first >= end || max == 0 {
            return Err(Errno::EINVAL);
        }
        if !self.is_dax_inode(ino)? {
            return Err(Errno::EOPNOTSUPP);
        }
        let inode = self.inodes.get(ino)?;
        if req.allocate || req.write {
            self.vol.writable()?;
            let mut st = inode.state.write();
            st.require_regular(Errno::EINVAL)?;
            let eof = st.rec.size.div_ceil(BLOCK);
            let mut changed = false;
            if req.allocate && first < eof.min(end) {
                let stop = eof.min(end);
                changed |= fill_range(&self.vol, &inode, &mut st, first, stop, None, false, None)?;
            }
            if req.write {
                let t = now_ns();
                st.rec.mtime = t;
                st.rec.ctime = t;
                st.times_dirty = true;
            }
            if changed {
                // The blocks are zeroed and mapped; the block map is durable before any store
                // through the new mapping can retire (MAP_SYNC).
                commit_inode(&self.vol, Tx::new(), &inode, &mut st)?;
            }
            let l = layout_of(&inode, &st, first, end, max);
            lease(&l);
            Ok(l)
        } else {
            let st = inode.state.read();
            st.require_regular(Errno::EINVAL)?;
            let l = layout_of(&inode, &st, first, end, max);
            lease(&l);
            Ok(l)
        }
    }
}

/// The extents of `[first, min(end, eof))` (at most `max`). Context: inode lock held.
fn layout_of(inode: &Inode, st: &IState, first: u64, end: u64, max: usize) -> FileLayout {
    let size = st.rec.size;
    let stop = end.min(size.div_ceil(BLOCK));
    let mut out = FileLayout {
        size,
        extents: Vec::new(),
    };
    if first >= stop {
        return out;
    }
    let poisoned: std::collections::BTreeMap<u64, u64> =
        inode.map.poisoned_in(first, stop).into_iter().collect();
    let mut at = first;
    // Appends `x`, merging it into the last extent when it continues it.
    let push = |out: &mut FileLayout, x: LayoutExtent| {
        let merged = match (out.extents.last_mut(), x) {
            (
                Some(LayoutExtent::Data {
                    page: lp,
                    nr: ln,
                    block: lb,
                    order: lo,
                }),
                LayoutExtent::Data {
                    page,
                    nr,
                    block,
                    order,
                },
            ) if *lo == order && *lp + *ln == page && *lb + *ln == block => {
                *ln += nr;
                true
            }
            (Some(LayoutExtent::Hole { page: lp, nr: ln }), LayoutExtent::Hole { page, nr })
                if *lp + *ln == page =>
            {
                *ln += nr;
                true
            }
            _ => false,
        };
        if !merged {
            out.extents.push(x);
        }
    };
    for e in inode.map.entries_in(first, stop) {
        if out.extents.len() >= max {
            return out;
        }
        let s = e.index.max(first);
        let t = e.end().min(stop);
        if s > at {
            push(
                &mut out,
                LayoutExtent::Hole {
                    page: at,
                    nr: s - at,
                },
            );
        }
        if e.order == 0 && poisoned.get(&e.index) == Some(&e.value) {
            push(
                &mut out,
                LayoutExtent::Poisoned {
                    page: e.index,
                    block: e.value,
                },
            );
        } else {
            let whole = e.index >= first && e.end() <= stop;
            push(
                &mut out,
                LayoutExtent::Data {
                    page: s,
                    nr: t - s,
                    block: e.value + (s - e.index),
                    order: if whole { e.order } else { 0 },
                },
            );
        }
        at = t;
    }
    if at < stop && out.extents.len() < max {
        push(
            &mut out,
            LayoutExtent::Hole {
                page: at,
                nr: stop - at,
            },
        );
    }
    out
}
