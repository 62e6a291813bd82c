//! Pinning for readers and deferred freeing of unlinked nodes.
//!
//! Owns: the memory-reclamation policy. Rule kept: a node is handed to [`Retired::retire`] only
//! after it has been unlinked from the tree (no slot and no `head` points to it), so a reader
//! that can still reach it is one that pinned before the unlink; crossbeam-epoch frees it only
//! after every such reader has unpinned.
//!
//! Under `cfg(loom)` crossbeam-epoch cannot run (it uses its own atomics and thread-locals that
//! loom does not model), so the swap is: [`pin`] returns a dummy guard and retired nodes are kept
//! on a list freed when the index is dropped (at the end of the model run, when no reader is
//! left). This is the only difference between the checked and the shipped code.

use super::node::Node;

#[cfg(not(loom))]
pub use crossbeam_epoch::Guard;

/// Pins the current thread (an RCU read-side section): nodes reachable now stay allocated until
/// the guard drops.
#[cfg(not(loom))]
#[inline]
pub fn pin() -> Guard {
    crossbeam_epoch::pin()
}

/// Under loom: a dummy guard (nothing is freed before the index drops).
#[cfg(loom)]
pub struct Guard(());

#[cfg(loom)]
pub fn pin() -> Guard {
    Guard(())
}

/// The index's retirement policy (zero-sized except under loom).
#[derive(Default)]
pub struct Retired {
    #[cfg(loom)]
    list: std::sync::Mutex<Vec<usize>>,
}

impl Retired {
    /// Frees `node` once no reader can hold a reference to it.
    ///
    /// # Safety
    /// `node` came from [`Node::alloc`], has been unlinked from the tree, is retired only once,
    /// and the caller does not use it after this call returns except through `guard`'s lifetime.
    #[cfg(not(loom))]
    pub unsafe fn retire(&self, guard: &Guard, node: *mut Node) {
        let addr = node as usize;
        // SAFETY: the node is unlinked, so only readers pinned before the unlink can reach it;
        // the epoch scheme runs the closure after all of them unpinned. The closure only owns
        // an address (no borrowed data), and it frees the node exactly once.
        unsafe {
            guard.defer_unchecked(move || Node::free(addr as *mut Node));
        }
    }

    /// Under loom: keeps `node` until the index is dropped.
    ///
    /// # Safety
    /// As the non-loom version.
    #[cfg(loom)]
    pub unsafe fn retire(&self, _guard: &Guard, node: *mut Node) {
        self.list.lock().unwrap().push(node as usize);
    }
}

#[cfg(loom)]
impl Drop for Retired {
    fn drop(&mut self) {
        for addr in self.list.get_mut().unwrap().drain(..) {
            // SAFETY: each address was retired once, is unlinked, and the index (hence every
            // reader borrowing it) is gone.
            unsafe { Node::free(addr as *mut Node) };
        }
    }
}
