//! The ioctls of a daxfs mount, past the adapter: each goes to the direct-mapping service
//! (`DAXFS_IOC_DIRECT_INFO`, `DAXFS_IOC_GET_FMAP`) or to [`super::control`] (stat, mappings,
//! poison, bad blocks, `FS_IOC_FS{GET,SET}XATTR`).
//!
//! Owns: the [`IoctlHandler`] the adapter calls for every ioctl but `DAXFS_IOC_REQ_STATS` (the
//! adapter's own counters), and its daxfs implementation [`DaxIoctls`], which knows who owns the
//! mount (the poison permission rule) and which invalidator memory failure uses: the
//! direct-mapping service's, which revokes direct mappings before the kernel's, or the plain
//! kernel notifier. Context: runs in a session thread; never waits for the kernel.

use std::sync::Arc;

use super::control::{self, Caller, Ioctl, Reply};
use super::notify::{KernelNotifier, Notification, Then};
use crate::direct::DirectService;
use crate::fs::{Ctx, DaxFs, Ino};
use crate::ioctl::direct::is_direct_request;
use crate::memory_failure::Invalidator;

/// Where the adapter hands an ioctl: `reply` gets the output bytes or the errno, on this thread
/// or later from another (one that serves no requests).
pub trait IoctlHandler: Send + Sync {
    /// Handles ioctl `cmd` on inode `ino` with input `input`, from caller `ctx`.
    fn ioctl(&self, ctx: Ctx, ino: Ino, cmd: u32, input: &[u8], reply: Reply);
}

/// The ioctls of a mounted [`DaxFs`].
pub struct DaxIoctls {
    fs: Arc<DaxFs>,
    notifier: KernelNotifier,
    /// The daemon's uid (the mount owner), for owner-only control requests.
    owner_uid: u32,
    direct: Option<Arc<DirectService>>,
}

impl DaxIoctls {
    /// The ioctls of `fs`, notifying the kernel through `notifier`, with direct mapping served
    /// by `direct` when there is one.
    pub fn new(
        fs: Arc<DaxFs>,
        notifier: KernelNotifier,
        direct: Option<Arc<DirectService>>,
    ) -> DaxIoctls {
        DaxIoctls {
            fs,
            notifier,
            owner_uid: nix::unistd::geteuid().as_raw(),
            direct,
        }
    }
}

/// Whether a direct-mapping request changes the file's times: a `GET_FMAP` with `FMAP_WRITE`
/// (a writable shared mapping made or faulted in).
fn moves_times(cmd: u32, input: &[u8]) -> bool {
    use crate::ioctl::direct::{DaxfsFmap, DAXFS_IOC_GET_FMAP, FMAP_WRITE};
    let at = std::mem::offset_of!(DaxfsFmap, flags);
    let flags = input
        .get(at..at + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    cmd == DAXFS_IOC_GET_FMAP && flags & FMAP_WRITE != 0
}

impl IoctlHandler for DaxIoctls {
    fn ioctl(&self, ctx: Ctx, ino: Ino, cmd: u32, input: &[u8], reply: Reply) {
        if let Some(d) = self.direct.as_ref().filter(|_| is_direct_request(cmd)) {
            let r = d.handle_ioctl(&self.fs, &ctx, ino, cmd, input);
            if r.is_ok() && moves_times(cmd, input) {
                // The mapping write moved mtime/ctime: the kernel's cached attributes go first
                // (attributes only: no page lock, no cycle with a fault), then the answer, so a
                // `stat` after the first store sees the new times.
                let then: Then = Box::new(move || reply(r));
                return self
                    .notifier
                    .post(vec![Notification::attrs(ino)], Some(then));
            }
            return reply(r);
        }
        let caller = Caller {
            ctx,
            owner_uid: self.owner_uid,
        };
        // Memory failure revokes direct mappings before the kernel's (`crate::direct`).
        let inval = self.direct.as_ref().map(|d| d.invalidator(&self.notifier));
        let inval: &dyn Invalidator = match &inval {
            Some(i) => i,
            None => &self.notifier,
        };
        let req = Ioctl {
            caller,
            ino,
            cmd,
            input,
        };
        control::handle(&self.fs, &self.notifier, inval, req, reply);
    }
}
