//! The shut-down state of an opened filesystem: what `XFS_IOC_GOINGDOWN` (xfstests' `godown`,
//! `xfs_io -c shutdown`) does to a kernel filesystem, for daxfs.
//!
//! Owns: the going-down flag and the rule it keeps — once the filesystem is shut down, **nothing
//! more reaches the media** and every operation fails with `EIO` until the filesystem is closed
//! (unmount); the next open recovers from the journal exactly what was durable at the instant of
//! the shutdown, as after a power cut. The flag is checked at two places:
//! - the *soft* gate, at the entry of every embedded-API operation ([`Volume::alive`], also
//!   inside [`Volume::writable`]), so callers get `EIO` at once;
//! - the *hard* gate, [`Volume::commit`] and [`Volume::commit_metadata`]: an operation that
//!   passed the entry check before the shutdown and commits after it gets `EIO` and its
//!   transaction never reaches the journal. A commit already under way completes first (it is
//!   atomic, as a log write in flight at a power cut either made it or did not): the shutdown
//!   returns only after it, so nothing at all is committed once the ioctl has returned.
//!
//! Close after a shutdown persists nothing (no dirty inode written, no orphan evicted, no
//! preallocation trimmed): what was not durable is lost, as in a crash; the next read-write open
//! reclaims the orphans. Releases, forgets and flushes after the shutdown change only DRAM.
//!
//! The modes are XFS's (`XFS_FSOP_GOING_FLAGS_*`). daxfs commits every namespace and attribute
//! change before it returns (its journal is synchronous), so the log flush of `LOGFLUSH` has
//! nothing to add and `LOGFLUSH` equals `NOLOGFLUSH`: only what was already durable survives —
//! data written without `fsync` or `close` may lose its new blocks and size. `DEFAULT` first
//! makes every inode durable (as XFS freezes the device first), then goes down.
//!
//! [`Volume::alive`]: super::volume::Volume::alive
//! [`Volume::writable`]: super::volume::Volume::writable
//! [`Volume::commit`]: super::volume::Volume::commit
//! [`Volume::commit_metadata`]: super::volume::Volume::commit_metadata

use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use parking_lot::RwLock;

use super::daxfs::DaxFs;
use super::io::fsync;
use super::types::{Ctx, Ino};
use super::FsResult;

/// How to shut down (`XFS_FSOP_GOING_FLAGS_DEFAULT`, `_LOGFLUSH`, `_NOLOGFLUSH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Make everything durable first (`XFS_FSOP_GOING_FLAGS_DEFAULT`, 0).
    Sync,
    /// Flush the log, not the data (`XFS_FSOP_GOING_FLAGS_LOGFLUSH`, 1): for daxfs, whose
    /// journal is synchronous, the same as [`ShutdownMode::NoLogFlush`].
    LogFlush,
    /// Stop at once (`XFS_FSOP_GOING_FLAGS_NOLOGFLUSH`, 2): a power cut.
    NoLogFlush,
}

impl ShutdownMode {
    /// The mode of XFS flag value `flags` (`EINVAL` for any other value, as XFS answers).
    pub fn from_xfs_flags(flags: u32) -> FsResult<ShutdownMode> {
        match flags {
            0 => Ok(ShutdownMode::Sync),
            1 => Ok(ShutdownMode::LogFlush),
            2 => Ok(ShutdownMode::NoLogFlush),
            _ => Err(Errno::EINVAL),
        }
    }
}

/// The going-down flag of a volume.
#[derive(Debug, Default)]
pub(crate) struct GoingDown {
    /// The soft gate's flag (one load per operation).
    down: AtomicBool,
    /// The hard gate: held shared around each journal commit, exclusive to go down, so that when
    /// [`GoingDown::set`] returns no commit is under way and none starts again.
    gate: RwLock<bool>,
}

impl GoingDown {
    /// `EIO` once shut down.
    pub(super) fn check(&self) -> FsResult<()> {
        if self.is_down() {
            Err(Errno::EIO)
        } else {
            Ok(())
        }
    }

    /// Whether the volume is shut down.
    pub(super) fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Shuts the volume down, after the commits under way. Return: whether this call did
    /// (false: it already was).
    pub(super) fn set(&self) -> bool {
        let mut gate = self.gate.write();
        *gate = true;
        !self.down.swap(true, Ordering::SeqCst)
    }

    /// Runs `commit` unless the volume is shut down (`EIO`); a shutdown waits for it.
    ///
    /// Context: a leaf lock taken before the journal's; `commit` must not commit again.
    pub(super) fn commit<T>(&self, commit: impl FnOnce() -> FsResult<T>) -> FsResult<T> {
        let gate = self.gate.read();
        if *gate {
            return Err(Errno::EIO);
        }
        commit()
    }
}

impl DaxFs {
    /// Shuts the filesystem down (`XFS_IOC_GOINGDOWN`): from now on every operation fails with
    /// `EIO` and nothing more is written to the region; close persists nothing. Only root may
    /// (`EPERM`, as XFS's `CAP_SYS_ADMIN` check). Shutting down a shut-down filesystem is a
    /// no-op, also on a read-only one (nothing is written there anyway).
    pub fn shut_down(&self, mode: ShutdownMode, ctx: &Ctx) -> FsResult<()> {
        if ctx.uid != 0 {
            return Err(Errno::EPERM);
        }
        if self.vol.is_down() {
            return Ok(());
        }
        if mode == ShutdownMode::Sync && !self.vol.read_only() {
            for inode in self.inodes.live() {
                if inode.state.read().rec.nlink > 0 {
                    fsync(&self.vol, &inode, false)?;
                }
            }
        }
        if self.vol.go_down() {
            log::warn!(
                "daxfs: {}: shut down ({mode:?}); every operation fails with EIO until unmount",
                self.vol.region().path().display()
            );
        }
        Ok(())
    }

    /// The numbers of the inodes in DRAM (those the kernel may cache): after a shutdown the
    /// adapter drops the kernel's cached pages and attributes of each, so that reads served from
    /// the page cache fail with `EIO` too.
    pub fn live_inodes(&self) -> Vec<Ino> {
        self.inodes.live().iter().map(|i| i.ino).collect()
    }

    /// Whether the filesystem was shut down.
    pub fn is_shut_down(&self) -> bool {
        self.vol.is_down()
    }
}
