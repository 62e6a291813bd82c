//! The lock-free readers: `xas_load` and the ordered walk behind `find_conflict`, `range` and
//! `find_marked`.
//!
//! Rules kept:
//! - Readers run inside a [`Guard`] (epoch pin); every node they dereference was reachable from
//!   `head` after they pinned, so it is not freed before the guard drops.
//! - Every slot word is read with one `Acquire` load; nodes are fully initialized before the
//!   `Release` store that links them, so a reader sees a node's contents as published.
//! - A sibling slot is resolved by reading its canonical slot; if that no longer holds an entry
//!   covering the sibling (a writer is replacing the entry), the lookup restarts from the root.
//!   Writers order their slot stores so that this happens only while a store/erase is in flight.
//! - Readers only know the root's `shift`; a child's shift is its parent's minus `NODE_SHIFT`, so
//!   a lookup touches one cache line per level.

use crate::sync::atomic::Ordering::Acquire;

use super::node::{Node, NODE_SHIFT, NODE_SLOTS, OFF_MASK};
use super::reclaim::Guard;
use super::slot::{self, Slot};
use super::tree::Index;
use super::{align_down, Entry, Mark};

/// Where an entry was found: its node and canonical slot offset.
pub(super) struct Found {
    pub node: *const Node,
    pub canon: usize,
    pub entry: Entry,
}

/// Dereferences a node word read from a slot or `head`.
///
/// # Safety
/// `addr` was read (Acquire) from a slot or `head` while `_guard` was pinned, or by the writer
/// holding the lock (who alone unlinks nodes).
#[inline]
pub(super) unsafe fn node_ref(addr: usize, _guard: &Guard) -> &Node {
    // SAFETY: per the contract the node was linked after the pin began (or the writer holds the
    // lock), so it is allocated and initialized until the guard drops.
    unsafe { &*(addr as *const Node) }
}

/// Whether `i` is beyond the range a root of `shift` covers.
#[inline]
pub(super) fn beyond_root(i: u64, shift: u8) -> bool {
    let bits = u32::from(shift) + u32::from(NODE_SHIFT);
    bits < 64 && i >> bits != 0
}

impl Index {
    /// The root node, if any.
    #[inline]
    pub(super) fn root<'g>(&self, guard: &'g Guard) -> Option<&'g Node> {
        match slot::decode(self.head.load(Acquire)) {
            // SAFETY: `addr` was just read from `head` under `guard`.
            Slot::Node(addr) => Some(unsafe { node_ref(addr, guard) }),
            _ => None,
        }
    }

    /// The entry covering `i`, with its node and canonical slot (`xas_load`).
    #[inline]
    pub(super) fn xas_load(&self, i: u64, guard: &Guard) -> Option<Found> {
        'restart: loop {
            let mut node = self.root(guard)?;
            let mut shift = node.shift;
            if beyond_root(i, shift) {
                return None;
            }
            loop {
                debug_assert_eq!(node.shift, shift);
                let off = ((i >> shift) & OFF_MASK) as usize;
                match slot::decode(node.slots[off].load(Acquire)) {
                    Slot::Empty => return None,
                    Slot::Node(addr) => {
                        // SAFETY: `addr` was read from a slot of a reachable node under `guard`.
                        node = unsafe { node_ref(addr, guard) };
                        shift -= NODE_SHIFT;
                    }
                    Slot::Value { sub, value } => {
                        return Some(found(node, shift, off, i, sub, value));
                    }
                    Slot::Sibling(c) => {
                        let c = usize::from(c);
                        match slot::decode(node.slots[c].load(Acquire)) {
                            Slot::Value { sub, value } if c < off && (off - c) >> sub == 0 => {
                                return Some(found(node, shift, c, i, sub, value));
                            }
                            // A writer is replacing the entry: look again.
                            _ => continue 'restart,
                        }
                    }
                }
            }
        }
    }

    /// The first entry in the order-`order` aligned range around `i` (`xas_find_conflict`).
    pub(super) fn xas_find_conflict(&self, i: u64, order: u8, guard: &Guard) -> Option<Entry> {
        let start = align_down(i, order);
        let last = start + ((1u64 << order.min(63)) - 1);
        let mut found = None;
        self.walk(start, last, None, guard, &mut |e| {
            found = Some(e);
            false
        });
        found
    }

    /// Whether the entry covering `i` has `mark` (`xas_get_mark`).
    pub(super) fn xas_get_mark(&self, i: u64, mark: Mark, guard: &Guard) -> bool {
        match self.xas_load(i, guard) {
            Some(f) => {
                // SAFETY: `f.node` was reached under `guard`.
                let node = unsafe { &*f.node };
                node.marks[mark as usize].get(f.canon)
            }
            None => false,
        }
    }

    /// Calls `f` on each entry that covers `start` or begins in `[start, last]`, in index
    /// order, only entries carrying `mark` if given, until `f` returns false.
    pub(super) fn walk(
        &self,
        start: u64,
        last: u64,
        mark: Option<Mark>,
        guard: &Guard,
        f: &mut dyn FnMut(Entry) -> bool,
    ) {
        let Some(root) = self.root(guard) else {
            return;
        };
        if beyond_root(start, root.shift) || last < start {
            return;
        }
        walk_node(root, root.shift, 0, start, last, mark, guard, f);
    }
}

#[inline]
fn found(node: &Node, shift: u8, canon: usize, i: u64, sub: u8, value: u64) -> Found {
    let order = shift + sub;
    Found {
        node,
        canon,
        entry: Entry {
            index: align_down(i, order),
            order,
            value,
        },
    }
}

/// The walk inside `node` (of `shift`, covering indices from `base`); returns false to stop.
#[allow(clippy::too_many_arguments)]
fn walk_node(
    node: &Node,
    shift: u8,
    base: u64,
    start: u64,
    last: u64,
    mark: Option<Mark>,
    guard: &Guard,
    f: &mut dyn FnMut(Entry) -> bool,
) -> bool {
    let rel_last = (last - base) >> shift;
    let last_off = if rel_last > OFF_MASK {
        NODE_SLOTS - 1
    } else {
        rel_last as usize
    };
    let marked = |off: usize| match mark {
        Some(m) => node.marks[m as usize].get(off),
        None => true,
    };
    let mut off = 0;
    if start > base {
        off = ((start - base) >> shift) as usize;
        // The entry covering `start` may begin at an earlier slot of this node.
        if let Slot::Sibling(c) = slot::decode(node.slots[off].load(Acquire)) {
            let c = usize::from(c);
            if let Slot::Value { sub, value } = slot::decode(node.slots[c].load(Acquire)) {
                if c < off && (off - c) >> sub == 0 {
                    if marked(c) {
                        let e = Entry {
                            index: base + ((c as u64) << shift),
                            order: shift + sub,
                            value,
                        };
                        if !f(e) {
                            return false;
                        }
                    }
                    off = c + (1 << sub);
                }
            }
        }
    }
    while off <= last_off {
        if let Some(m) = mark {
            match node.marks[m as usize].next_set(off) {
                Some(o) if o <= last_off => off = o,
                _ => break,
            }
        }
        let at = base + ((off as u64) << shift);
        match slot::decode(node.slots[off].load(Acquire)) {
            Slot::Empty | Slot::Sibling(_) => off += 1,
            Slot::Value { sub, value } => {
                let e = Entry {
                    index: at,
                    order: shift + sub,
                    value,
                };
                if !f(e) {
                    return false;
                }
                off += 1 << sub;
            }
            Slot::Node(addr) => {
                // SAFETY: `addr` was read from a slot of a reachable node under `guard`.
                let child = unsafe { node_ref(addr, guard) };
                if !walk_node(child, shift - NODE_SHIFT, at, start, last, mark, guard, f) {
                    return false;
                }
                off += 1;
            }
        }
    }
    true
}
