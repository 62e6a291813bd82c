//! Per-opcode request counters of the FUSE adapter (`DAXFS_IOC_REQ_STATS`, `daxfs stat --requests`).
//!
//! Owns: one `AtomicU64` per FUSE opcode slot, indexed by the kernel's opcode number
//! (`include/uapi/linux/fuse.h`: `FUSE_WRITE` = 16, `FUSE_GETXATTR` = 22, ...), and the encoding
//! of a snapshot into a [`DaxfsReqStats`] answer. Rules kept: each handler of the adapter counts
//! its own opcode once, first thing, before any work (so failed requests count too); counting is a
//! `Relaxed` `fetch_add` on a counter of its own (no lock, no ordering with anything else: a
//! snapshot is a set of independent monotonic counters, not an atomic cut). Opcodes the adapter
//! does not implement (fuser answers them `ENOSYS` itself, e.g. `ACCESS`, `RELEASEDIR`) are not
//! counted. `BATCH_FORGET` is counted per node, as `FORGET` (fuser splits it into `forget` calls). Slot 0 (no opcode is 0)
//! counts the requests of any opcode that arrived through a FUSE-over-io_uring ring
//! ([`RING_SLOT`], `fuse/uring.rs`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::fs::{Errno, FsResult};
use crate::ioctl::{check_header, DaxfsReqStats, Pod, Versioned, REQ_STATS_SLOTS};

/// The kernel's FUSE opcode numbers of the requests the adapter handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
    /// `FUSE_LOOKUP`.
    Lookup = 1,
    /// `FUSE_FORGET`.
    Forget = 2,
    /// `FUSE_GETATTR`.
    Getattr = 3,
    /// `FUSE_SETATTR`.
    Setattr = 4,
    /// `FUSE_READLINK`.
    Readlink = 5,
    /// `FUSE_SYMLINK`.
    Symlink = 6,
    /// `FUSE_MKNOD`.
    Mknod = 8,
    /// `FUSE_MKDIR`.
    Mkdir = 9,
    /// `FUSE_UNLINK`.
    Unlink = 10,
    /// `FUSE_RMDIR`.
    Rmdir = 11,
    /// `FUSE_RENAME`.
    Rename = 12,
    /// `FUSE_LINK`.
    Link = 13,
    /// `FUSE_OPEN`.
    Open = 14,
    /// `FUSE_READ`.
    Read = 15,
    /// `FUSE_WRITE`.
    Write = 16,
    /// `FUSE_STATFS`.
    Statfs = 17,
    /// `FUSE_RELEASE`.
    Release = 18,
    /// `FUSE_FSYNC`.
    Fsync = 20,
    /// `FUSE_SETXATTR`.
    Setxattr = 21,
    /// `FUSE_GETXATTR`.
    Getxattr = 22,
    /// `FUSE_LISTXATTR`.
    Listxattr = 23,
    /// `FUSE_REMOVEXATTR`.
    Removexattr = 24,
    /// `FUSE_FLUSH`.
    Flush = 25,
    /// `FUSE_INIT`.
    Init = 26,
    /// `FUSE_OPENDIR`.
    Opendir = 27,
    /// `FUSE_READDIR`.
    Readdir = 28,
    /// `FUSE_FSYNCDIR`.
    Fsyncdir = 30,
    /// `FUSE_CREATE`.
    Create = 35,
    /// `FUSE_IOCTL`.
    Ioctl = 39,
    /// `FUSE_FALLOCATE`.
    Fallocate = 43,
    /// `FUSE_READDIRPLUS`.
    Readdirplus = 44,
    /// `FUSE_LSEEK`.
    Lseek = 46,
    /// `FUSE_COPY_FILE_RANGE`.
    CopyFileRange = 47,
    /// `FUSE_TMPFILE`.
    Tmpfile = 51,
    /// `FUSE_STATX`.
    Statx = 52,
}

impl Op {
    /// Every counted opcode, in opcode order.
    pub const ALL: [Op; 35] = [
        Op::Lookup,
        Op::Forget,
        Op::Getattr,
        Op::Setattr,
        Op::Readlink,
        Op::Symlink,
        Op::Mknod,
        Op::Mkdir,
        Op::Unlink,
        Op::Rmdir,
        Op::Rename,
        Op::Link,
        Op::Open,
        Op::Read,
        Op::Write,
        Op::Statfs,
        Op::Release,
        Op::Fsync,
        Op::Setxattr,
        Op::Getxattr,
        Op::Listxattr,
        Op::Removexattr,
        Op::Flush,
        Op::Init,
        Op::Opendir,
        Op::Readdir,
        Op::Fsyncdir,
        Op::Create,
        Op::Ioctl,
        Op::Fallocate,
        Op::Readdirplus,
        Op::Lseek,
        Op::CopyFileRange,
        Op::Tmpfile,
        Op::Statx,
    ];

    /// The kernel's opcode number (the slot in [`DaxfsReqStats::counts`]).
    pub const fn opcode(self) -> usize {
        self as usize
    }

    /// The kernel's name without the `FUSE_` prefix (`"GETXATTR"`).
    pub const fn name(self) -> &'static str {
        match self {
            Op::Lookup => "LOOKUP",
            Op::Forget => "FORGET",
            Op::Getattr => "GETATTR",
            Op::Setattr => "SETATTR",
            Op::Readlink => "READLINK",
            Op::Symlink => "SYMLINK",
            Op::Mknod => "MKNOD",
            Op::Mkdir => "MKDIR",
            Op::Unlink => "UNLINK",
            Op::Rmdir => "RMDIR",
            Op::Rename => "RENAME",
            Op::Link => "LINK",
            Op::Open => "OPEN",
            Op::Read => "READ",
            Op::Write => "WRITE",
            Op::Statfs => "STATFS",
            Op::Release => "RELEASE",
            Op::Fsync => "FSYNC",
            Op::Setxattr => "SETXATTR",
            Op::Getxattr => "GETXATTR",
            Op::Listxattr => "LISTXATTR",
            Op::Removexattr => "REMOVEXATTR",
            Op::Flush => "FLUSH",
            Op::Init => "INIT",
            Op::Opendir => "OPENDIR",
            Op::Readdir => "READDIR",
            Op::Fsyncdir => "FSYNCDIR",
            Op::Create => "CREATE",
            Op::Ioctl => "IOCTL",
            Op::Fallocate => "FALLOCATE",
            Op::Readdirplus => "READDIRPLUS",
            Op::Lseek => "LSEEK",
            Op::CopyFileRange => "COPY_FILE_RANGE",
            Op::Tmpfile => "TMPFILE",
            Op::Statx => "STATX",
        }
    }

    /// The opcode whose kernel name (with or without `FUSE_`, any case) is `name`.
    pub fn from_name(name: &str) -> Option<Op> {
        let n = name.to_ascii_uppercase();
        let n = n.strip_prefix("FUSE_").unwrap_or(&n);
        Op::ALL.into_iter().find(|op| op.name() == n)
    }

    /// The opcode counted in slot `slot`.
    pub fn from_opcode(slot: usize) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.opcode() == slot)
    }
}

const _: () = assert!((Op::CopyFileRange as usize) < REQ_STATS_SLOTS);

/// The slot that counts requests served through FUSE-over-io_uring rings (every opcode; no FUSE
/// opcode is 0, so the slot is free).
pub const RING_SLOT: usize = 0;

/// The counters of one mount.
#[derive(Debug)]
pub struct RequestStats {
    counts: [AtomicU64; REQ_STATS_SLOTS],
}

impl Default for RequestStats {
    fn default() -> Self {
        RequestStats {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl RequestStats {
    /// Counts one `op` request.
    ///
    /// Context: any session thread; never blocks.
    #[inline]
    pub fn count(&self, op: Op) {
        self.counts[op.opcode()].fetch_add(1, Ordering::Relaxed);
    }

    /// The current count of `op`.
    /// Count a request that arrived through FUSE-over-io_uring (slot 0: no FUSE opcode is 0).
    #[inline]
    pub fn count_ring(&self) {
        self.counts[RING_SLOT].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests that arrived through FUSE-over-io_uring.
    pub fn ring(&self) -> u64 {
        self.counts[RING_SLOT].load(Ordering::Relaxed)
    }

    /// Requests of opcode `op` so far.
    pub fn get(&self, op: Op) -> u64 {
        self.counts[op.opcode()].load(Ordering::Relaxed)
    }

    /// Answers `DAXFS_IOC_REQ_STATS`: checks the header, snapshots every slot.
    ///
    /// Return: the answer's bytes, or `EINVAL` for a bad header or nonzero `flags`.
    pub fn ioctl_answer(&self, input: &[u8]) -> FsResult<Vec<u8>> {
        let req: DaxfsReqStats = check_header(input)?;
        if req.flags != 0 {
            return Err(Errno::EINVAL);
        }
        let mut out = DaxfsReqStats::new_request();
        out.nr_slots = REQ_STATS_SLOTS as u32;
        for (o, c) in out.counts.iter_mut().zip(&self.counts) {
            *o = c.load(Ordering::Relaxed);
        }
        Ok(out.as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_are_the_kernels() {
        // Spot checks against include/uapi/linux/fuse.h.
        assert_eq!(Op::Write.opcode(), 16);
        assert_eq!(Op::Getxattr.opcode(), 22);
        assert_eq!(Op::Ioctl.opcode(), 39);
        assert_eq!(Op::CopyFileRange.opcode(), 47);
        // ALL is sorted, without duplicates, and names round-trip.
        for w in Op::ALL.windows(2) {
            assert!(w[0].opcode() < w[1].opcode(), "{:?} {:?}", w[0], w[1]);
        }
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.name()), Some(op));
            assert_eq!(Op::from_opcode(op.opcode()), Some(op));
        }
        assert_eq!(Op::from_name("fuse_getxattr"), Some(Op::Getxattr));
        assert_eq!(Op::from_name("ACCESS"), None);
        assert_eq!(Op::from_opcode(7), None);
    }

    #[test]
    fn counts_land_in_their_slot_only() {
        let s = RequestStats::default();
        for _ in 0..3 {
            s.count(Op::Write);
        }
        s.count(Op::Getxattr);
        let out = s
            .ioctl_answer(DaxfsReqStats::new_request().as_bytes())
            .unwrap();
        let a = DaxfsReqStats::read_from(&out).unwrap();
        assert_eq!(a.nr_slots as usize, REQ_STATS_SLOTS);
        assert_eq!(a.counts[16], 3);
        assert_eq!(a.counts[22], 1);
        assert_eq!(a.counts.iter().sum::<u64>(), 4);
        assert_eq!(s.get(Op::Write), 3);
    }

    #[test]
    fn bad_requests_are_einval() {
        let s = RequestStats::default();
        let mut r = DaxfsReqStats::new_request();
        r.flags = 1;
        assert_eq!(s.ioctl_answer(r.as_bytes()), Err(Errno::EINVAL));
        let mut r = DaxfsReqStats::new_request();
        r.version = 7;
        assert_eq!(s.ioctl_answer(r.as_bytes()), Err(Errno::EINVAL));
        assert_eq!(s.ioctl_answer(&[0u8; 4]), Err(Errno::EINVAL));
    }

    #[test]
    fn concurrent_counts_are_not_lost() {
        let s = RequestStats::default();
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    for _ in 0..10_000 {
                        s.count(Op::Read);
                    }
                });
            }
        });
        assert_eq!(s.get(Op::Read), 40_000);
    }
}
