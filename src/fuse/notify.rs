//! Kernel cache invalidation for changes the kernel did not make itself.
//!
//! Owns: the FUSE `Notifier` of the session, available before the session loop runs and shareable
//! with lower layers (the memory-failure path invalidates the mapped range of a poisoned page so
//! mmap users fault again, DESIGN.md "Memory failure" step 3). Rules kept: `inval_entry` is never
//! sent while a request on that directory is being answered (the kernel holds the directory lock
//! and waits for our reply: a deadlock); callers send it after replying. `ENOENT` from the kernel (inode not
//! cached) counts as success.

use std::ffi::OsStr;
use std::io;
use std::sync::{Arc, OnceLock};

use fuser::{INodeNo, Notifier};

use crate::fs::Ino;

/// A handle on the session's notifier; cheap to clone. Before the session is up (or in an
/// embedded, unmounted use) notifications are no-ops.
#[derive(Clone, Default)]
pub struct KernelNotifier {
    slot: Arc<OnceLock<Notifier>>,
}

impl std::fmt::Debug for KernelNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelNotifier")
            .field("connected", &self.slot.get().is_some())
            .finish()
    }
}

impl KernelNotifier {
    /// An unconnected notifier.
    pub fn new() -> KernelNotifier {
        KernelNotifier::default()
    }

    /// Connects the session's notifier (once; later calls are ignored).
    pub fn connect(&self, n: Notifier) {
        let _ = self.slot.set(n);
    }

    /// Whether a session is connected.
    pub fn is_connected(&self) -> bool {
        self.slot.get().is_some()
    }

    /// Drops the kernel's cached attributes of `ino` and its cached data (and user mappings) in
    /// `[offset, offset + len)`; `len == 0` means to the end of the file, a negative `offset`
    /// means attributes only.
    ///
    /// Context: may sleep (writes to `/dev/fuse`); takes no daxfs locks.
    pub fn inval_inode(&self, ino: Ino, offset: i64, len: i64) -> io::Result<()> {
        match self.slot.get() {
            Some(n) => ignore_enoent(n.inval_inode(INodeNo(ino), offset, len)),
            None => Ok(()),
        }
    }

    /// Drops the kernel's cached dentry `name` in `parent`.
    ///
    /// Context: may sleep; must not be called while a request on `parent` is being answered.
    pub fn inval_entry(&self, parent: Ino, name: &OsStr) -> io::Result<()> {
        match self.slot.get() {
            Some(n) => ignore_enoent(n.inval_entry(INodeNo(parent), name)),
            None => Ok(()),
        }
    }
}

fn ignore_enoent(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconnected_notifier_is_a_no_op() {
        let n = KernelNotifier::new();
        assert!(!n.is_connected());
        assert!(n.inval_inode(5, 0, 0).is_ok());
        assert!(n.inval_entry(1, OsStr::new("x")).is_ok());
        let c = n.clone();
        assert!(!c.is_connected());
    }

    #[test]
    fn enoent_is_success() {
        assert!(ignore_enoent(Err(io::Error::from_raw_os_error(libc::ENOENT))).is_ok());
        assert!(ignore_enoent(Err(io::Error::from_raw_os_error(libc::EIO))).is_err());
    }
}
