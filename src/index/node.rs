//! The radix-tree node: `NODE_SLOTS` slot words, two mark bitmaps, and writer-only bookkeeping
//! (the kernel's `struct xa_node`).
//!
//! Owns: node layout and allocation. Rules kept:
//! - `slots` and `marks` are read by lock-free readers: they are `crate::sync::atomic` atomics
//!   (loom's under `cfg(loom)`), written with `Release` and read with `Acquire`.
//! - `offset`, `count` and `parent` are touched only by the writer holding the index's mutex;
//!   they are std atomics used with `Relaxed` ordering purely for interior mutability (the mutex
//!   orders them), so loom does not need to model them.
//! - `shift` never changes after allocation.
//!
//! Width: `NODE_SHIFT` index bits per level (the kernel's `XA_CHUNK_SHIFT`). Everything else in
//! the index is written against these constants; `NODE_SHIFT` may be 6, 7 or 8 (the slot encoding
//! keeps a relative order below 8 in 3 bits and a sibling's canonical offset in 8 bits). It is 6,
//! as in the kernel: 64 x 8-byte slots + 16 bytes of marks + 16 bytes of header = 544 bytes, 8.6
//! bytes per slot when every slot holds an order-0 entry, and a PMD (order-9) entry is 8 sibling
//! slots of a shift-6 node exactly as in `fs/dax.c`'s XArray. 8 (256 slots, 2 KiB nodes) makes the
//! 1 M-entry lookup about a fifth faster (3 levels instead of 4) but costs every small file's
//! index a 2 KiB node instead of 544 bytes; measured in `docs/PERFORMANCE-index.md`, not taken.

use std::sync::atomic::{AtomicPtr, AtomicU16, AtomicU8, Ordering::Relaxed};

use crate::sync::atomic::AtomicU64;
use crate::sync::atomic::Ordering::{Acquire, Release};

/// Bits of index consumed per level.
pub const NODE_SHIFT: u8 = 6;
/// Slots per node.
pub const NODE_SLOTS: usize = 1 << NODE_SHIFT;
/// Mask of a slot offset inside a node.
pub const OFF_MASK: u64 = NODE_SLOTS as u64 - 1;
/// 64-bit words per mark bitmap.
const MARK_WORDS: usize = NODE_SLOTS.div_ceil(64);

const _: () = assert!(NODE_SHIFT >= 6 && NODE_SHIFT <= 8, "see the module comment");

/// One mark's bitmap over a node's slots (bit `o` for slot `o`).
pub struct MarkBits([AtomicU64; MARK_WORDS]);

impl MarkBits {
    fn new() -> Self {
        MarkBits(std::array::from_fn(|_| AtomicU64::new(0)))
    }
    /// Whether bit `off` is set.
    #[inline]
    pub fn get(&self, off: usize) -> bool {
        self.0[off / 64].load(Acquire) >> (off % 64) & 1 != 0
    }
    /// Writer-only: sets bit `off`.
    pub fn set(&self, off: usize) {
        self.0[off / 64].fetch_or(1 << (off % 64), Release);
    }
    /// Writer-only: clears bit `off`.
    pub fn clear(&self, off: usize) {
        self.clear_range(off, 1);
    }
    /// Writer-only: clears bits `a..a + n`, touching only words that have one of them set.
    pub fn clear_range(&self, a: usize, n: usize) {
        let end = a + n;
        let mut o = a;
        while o < end {
            let w = o / 64;
            let hi = end.min((w + 1) * 64);
            let len = hi - o;
            let bits = if len == 64 {
                u64::MAX
            } else {
                ((1u64 << len) - 1) << (o % 64)
            };
            if self.0[w].load(Acquire) & bits != 0 {
                self.0[w].fetch_and(!bits, Release);
            }
            o = hi;
        }
    }
    /// Whether any bit is set.
    pub fn any(&self) -> bool {
        self.0.iter().any(|w| w.load(Acquire) != 0)
    }
    /// Writer-only, on a node not yet linked: sets the bits of offsets `0, step, 2 * step, ...`.
    pub fn init_every(&self, step: usize) {
        for off in (0..NODE_SLOTS).step_by(step) {
            let w = &self.0[off / 64];
            w.store(w.load(Relaxed) | 1 << (off % 64), Relaxed);
        }
    }
    /// The first set bit at or after `off`, if any.
    #[inline]
    pub fn next_set(&self, off: usize) -> Option<usize> {
        let mut w = off / 64;
        let mut bits = self.0.get(w)?.load(Acquire) >> (off % 64) << (off % 64);
        loop {
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
            w += 1;
            bits = self.0.get(w)?.load(Acquire);
        }
    }
}

/// One radix-tree node.
#[repr(C)]
pub struct Node {
    /// Slot words, encoded as in `slot.rs`.
    pub slots: [AtomicU64; NODE_SLOTS],
    /// Per-mark bitmaps: bit `o` set when the entry whose canonical slot is `o` carries the mark,
    /// or when the child node in slot `o` has any entry with the mark (propagated upwards).
    pub marks: [MarkBits; 2],
    /// The index bits below this node's slots: slot `o` covers `2^shift` indices.
    pub shift: u8,
    /// Writer-only: this node's slot offset in its parent.
    offset: AtomicU8,
    /// Writer-only: number of non-empty slots (values, siblings and children).
    count: AtomicU16,
    /// Writer-only: the parent node, null for the root.
    parent: AtomicPtr<Node>,
}

impl Node {
    /// A new empty node at `shift`, boxed and leaked; the caller owns it until it is freed with
    /// [`Node::free`] (directly or through `reclaim`).
    pub fn alloc(shift: u8) -> *mut Node {
        Box::into_raw(Box::new(Node {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            marks: [MarkBits::new(), MarkBits::new()],
            shift,
            offset: AtomicU8::new(0),
            count: AtomicU16::new(0),
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
        self.count.store(c as u16, Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn mark_bits_across_words() {
        let m = MarkBits::new();
        assert_eq!(m.next_set(0), None);
        assert!(!m.any());
        // With more than 64 slots, `mid` and `last` lie in other words than slot 0.
        let (mid, last) = (NODE_SLOTS / 2, NODE_SLOTS - 1);
        for off in [0, mid, last] {
            m.set(off);
            assert!(m.get(off));
        }
        assert_eq!(m.next_set(1), Some(mid));
        assert_eq!(m.next_set(mid + 1), Some(last));
        assert_eq!(m.next_set(last), Some(last));
        m.clear_range(1, last - 1);
        assert!(!m.get(mid) && m.get(0) && m.get(last));
        m.clear_range(0, NODE_SLOTS);
        assert!(!m.any());
        m.init_every(2);
        assert!(m.get(0) && !m.get(1) && m.get(last - 1) && !m.get(last));
        m.clear(last - 1);
        assert_eq!(m.next_set(last - 2), None);
    }
}
