//! Layouts for direct mappings: a file range's extents as `DAXFS_IOC_GET_FMAP` reports them,
//! the layout-breaker hook and the quarantine of blocks freed under an unacknowledged lease
//! (docs/DESIGN.md, "Direct mapping"; the rules are in `crate::fs::layout`).

use super::*;
use crate::fs::layout::{
    FenceId, FileLayout, LayoutBreaker, LayoutChange, LayoutExtent, LayoutRequest,
};

impl DaxFs {
    /// Installs the lease manager (once; later calls are ignored). Return: whether it was
    /// installed.
    pub fn set_layout_breaker(&self, b: Arc<dyn LayoutBreaker>) -> bool {
        self.layouts.set(b).is_ok()
    }

    /// Breaks the direct mappings of pages `[first, end)` of `ino` (see
    /// [`LayoutBreaker::break_layouts`]); one atomic load when nobody holds a lease.
    pub(super) fn break_layouts(
        &self,
        ino: Ino,
        first: u64,
        end: u64,
        why: LayoutChange,
    ) -> Option<FenceId> {
        let b = self.layouts.get()?;
        if first >= end || !b.active(ino) {
            return None;
        }
        b.break_layouts(ino, first, end, why)
    }

    /// The file grew from `old` to `new` bytes: pages that were past its end are valid now, so
    /// direct mappings that map them as past the end must map them again.
    pub(super) fn break_extended(&self, ino: Ino, old: u64, new: u64) {
        let (first, end) = (old.div_ceil(BLOCK), new.div_ceil(BLOCK));
        self.break_layouts(ino, first, end, LayoutChange::Extend { size: new });
    }

    /// Adds blocks freed by a change to `tx`, held in quarantine under `fence` when a holder did
    /// not acknowledge the change's revocation.
    pub(super) fn free_after_layout_break(
        &self,
        tx: &mut Tx,
        fence: Option<FenceId>,
        freed: Vec<(u64, u64)>,
    ) {
        for (b, n) in freed {
            if let Some(f) = fence {
                self.quarantine.hold(f, b..b + n);
            }
            tx.free_after.extend(b..b + n);
        }
    }

    /// Lifts a fence: its quarantined blocks whose freeing is durable return to the allocator
    /// (the others when their transaction commits).
    pub fn lift_fence(&self, fence: FenceId) {
        let free = self.quarantine.lift(fence);
        if free.is_empty() {
            return;
        }
        let bad = self.bad.read();
        let mut a = self.alloc.lock();
        for b in free {
            if !bad.contains(&b) {
                a.free(b);
            }
        }
    }

    /// Whether the filesystem was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Number of blocks held in quarantine.
    pub fn quarantined_blocks(&self) -> usize {
        self.quarantine.len()
    }

    /// Whether `ino` is accessed directly: `dax=always`, or `dax=inode` with `FS_XFLAG_DAX`.
    /// Only such files get direct mappings.
    pub fn is_dax_inode(&self, ino: Ino) -> FsResult<bool> {
        let inode = self.iget(ino)?;
        let flags = inode.state.read().rec.flags;
        Ok(match self.dax {
            DaxMode::Always => true,
            DaxMode::Never => false,
            DaxMode::Inode => flags & crate::ioctl::FS_XFLAG_DAX != 0,
        })
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
        if first >= end || max == 0 {
            return Err(Errno::EINVAL);
        }
        if !self.is_dax_inode(ino)? {
            return Err(Errno::EOPNOTSUPP);
        }
        let inode = self.iget(ino)?;
        if req.allocate || req.write {
            self.writable()?;
            let mut st = inode.state.write();
            require_regular(st.kind(), Errno::EINVAL)?;
            let eof = st.rec.size.div_ceil(BLOCK);
            let mut changed = false;
            if req.allocate && first < eof.min(end) {
                changed |=
                    self.fill_range(&inode, &mut st, first, eof.min(end), None, false, None)?;
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
                let mut tx = Tx::new();
                self.commit_inode_into(&mut tx, &inode, &mut st)?;
                self.commit(tx)?;
            }
            let l = Self::layout_of(&inode, &st, first, end, max);
            lease(&l);
            Ok(l)
        } else {
            let st = inode.state.read();
            require_regular(st.kind(), Errno::EINVAL)?;
            let l = Self::layout_of(&inode, &st, first, end, max);
            lease(&l);
            Ok(l)
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
                (
                    Some(LayoutExtent::Hole { page: lp, nr: ln }),
                    LayoutExtent::Hole { page, nr },
                ) if *lp + *ln == page => {
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
}
