//! The radix-tree node: 64 slot words, two mark bitmaps, and writer-only bookkeeping (the kernel's
//! `struct xa_node`).
//!
//! Owns: node layout and allocation. Rules kept:
//! - `slots` and `marks` are read by lock-free readers: they are `crate::sync::atomic` atomics
//!   (loom's under `cfg(loom)`), written with `Release` and read with `Acquire`.
//! - `offset`, `count` and `parent` are touched only by the writer holding the index's mutex;
//!   they are std atomics used with `Relaxed` ordering purely for interior mutability (the mutex
//!   orders them), so loom does not need to model them.
//! - `shift` never changes after allocation.
//!
//! Size: 64 x 8-byte slots + 16 bytes of marks + 16 bytes of header = 544 bytes, i.e. 8.5 bytes
//! per slot when every slot holds an order-0 entry.

use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering::Relaxed};

use crate::sync::atomic::AtomicU64;

/// Bits of index consumed per level.
pub const NODE_SHIFT: u8 = 6;
/// Slots per node.
pub const NODE_SLOTS: usize = 1 << NODE_SHIFT;

/// One radix-tree node.
#[repr(C)]
pub struct Node {
    /// Slot words, encoded as in `slot.rs`.
    pub slots: [AtomicU64; NODE_SLOTS],
    /// Per-mark bitmaps: bit `o` set when the entry whose canonical slot is `o` carries the mark,
    /// or when the child node in slot `o` has any entry with the mark (propagated upwards).
    pub marks: [AtomicU64; 2],
    /// The index bits below this node's slots: slot `o` covers `2^shift` indices.
    pub shift: u8,
    /// Writer-only: this node's slot offset in its parent.
    offset: AtomicU8,
    /// Writer-only: number of non-empty slots (values, siblings and children).
    count: AtomicU8,
    /// Writer-only: the parent node, null for the root.
    parent: AtomicPtr<Node>,
}

impl Node {
    /// A new empty node at `shift`, boxed and leaked; the caller owns it until it is freed with
    /// [`Node::free`] (directly or through `reclaim`).
    pub fn alloc(shift: u8) -> *mut Node {
        Box::into_raw(Box::new(Node {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            marks: std::array::from_fn(|_| AtomicU64::new(0)),
            shift,
            offset: AtomicU8::new(0),
            count: AtomicU8::new(0),
            parent: AtomicPtr::new(std::ptr::null_mut()),
        }))
    }

    /// Frees a node returned by [`Node::alloc`] (not its children).
    ///
    /// # Safety
    /// `node` came from [`Node::alloc`], is not freed yet, and no reference to it is used after.
    pub unsafe fn free(node: *mut Node) {
        // SAFETY: per the contract, `node` is a live allocation from `Box::into_raw`.
        drop(unsafe { Box::from_raw(node) });
    }

    pub fn offset(&self) -> usize {
        usize::from(self.offset.load(Relaxed))
    }
    pub fn count(&self) -> usize {
        usize::from(self.count.load(Relaxed))
    }
    pub fn parent(&self) -> *mut Node {
        self.parent.load(Relaxed)
    }
    /// Writer-only: links this node under `parent` at `offset` (bookkeeping only; the caller
    /// publishes the slot).
    pub fn set_parent(&self, parent: *mut Node, offset: usize) {
        self.parent.store(parent, Relaxed);
        self.offset.store(offset as u8, Relaxed);
    }
    /// Writer-only: adjusts the non-empty slot count.
    pub fn add_count(&self, delta: isize) {
        let c = self.count() as isize + delta;
        debug_assert!((0..=NODE_SLOTS as isize).contains(&c));
        self.count.store(c as u8, Relaxed);
    }
}
