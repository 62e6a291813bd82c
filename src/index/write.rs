//! The writers: `xas_store`, `xas_erase`, `xas_split`, `xas_update` and marks, with the tree
//! growing (`xas_expand`), shrinking (`xas_shrink`) and mark propagation.
//!
//! Rules kept:
//! - Called only through [`IndexGuard`](super::IndexGuard), i.e. with the index's mutex held: one
//!   writer at a time, so writer-side reads see the latest state.
//! - New nodes are filled completely before one `Release` store links them (a chain built for a
//!   new entry, a full subtree built for a split), so readers never see half-built nodes.
//! - Slot stores inside a node are ordered so that a concurrent reader sees either the old or the
//!   new entry: when an entry grows or a new one replaces a larger one, the canonical slot is
//!   written before its siblings and a removed larger entry's canonical slot is cleared last;
//!   a split writes the trailing pieces first and the canonical slot last.
//! - A node is retired only after the slot (or `head`) pointing to it was overwritten.
//! - Marks: a value's mark bit lives at its canonical offset; a child's bit in its parent is the
//!   OR of the child's bitmap (`mark_fixup` keeps it so after each change). New entries are
//!   unmarked; split pieces inherit the marks.
//! - Empty nodes are freed on erase, and a root holding only a child at slot 0 is replaced by
//!   that child (`xas_shrink`).

use std::sync::atomic::Ordering::Relaxed;

use crate::sync::atomic::Ordering::{Acquire, Release};

use super::node::{Node, NODE_SHIFT, NODE_SLOTS, OFF_MASK};
use super::read::{beyond_root, node_ref};
use super::reclaim::Guard;
use super::slot::{self, Slot};
use super::tree::Index;
use super::{align_down, Entry, IndexError, Mark};

/// First index covered by `node`'s slot 0, given any index `i` below it.
#[inline]
fn node_base(i: u64, shift: u8) -> u64 {
    align_down(i, shift + NODE_SHIFT)
}

/// Writes slot `off` of `node`, keeping the node's non-empty count.
#[inline]
fn set_slot(node: &Node, off: usize, word: u64) {
    let old = node.slots[off].load(Acquire);
    if old == word {
        return;
    }
    node.slots[off].store(word, Release);
    match (old == slot::EMPTY, word == slot::EMPTY) {
        (true, false) => node.add_count(1),
        (false, true) => node.add_count(-1),
        _ => {}
    }
}

/// Clears both marks on slots `a..a + n`.
#[inline]
fn clear_marks(node: &Node, a: usize, n: usize) {
    for m in &node.marks {
        m.clear_range(a, n);
    }
}

impl Index {
    fn alloc_node(&self, shift: u8) -> *mut Node {
        self.nodes.fetch_add(1, Relaxed);
        Node::alloc(shift)
    }

    /// Retires an unlinked node.
    fn retire_node(&self, node: *const Node, guard: &Guard) {
        self.nodes.fetch_sub(1, Relaxed);
        // SAFETY: callers pass a node they just unlinked (its slot or `head` was overwritten),
        // retired once; they do not touch it afterwards.
        unsafe { self.retired.retire(guard, node as *mut Node) };
    }

    /// Builds, unlinked, the nodes from `top_shift` down to `shift` on the path to `i`, the
    /// bottom one holding an entry of relative order `sub` at `i`. Returns the top node.
    fn build_chain(&self, i: u64, top_shift: u8, shift: u8, sub: u8, value: u64) -> *mut Node {
        let bottom = self.alloc_node(shift);
        // SAFETY: freshly allocated, not shared yet.
        let b = unsafe { &*bottom };
        let n = 1usize << sub;
        let a = ((i >> shift) & OFF_MASK) as usize & !(n - 1);
        set_slot(b, a, slot::mk_value(sub, value));
        for j in a + 1..a + n {
            set_slot(b, j, slot::mk_sibling(a as u8));
        }
        let mut child = bottom;
        let mut sh = shift;
        while sh < top_shift {
            sh += NODE_SHIFT;
            let parent = self.alloc_node(sh);
            let off = ((i >> sh) & OFF_MASK) as usize;
            // SAFETY: both nodes are fresh and private to this writer.
            let (p, c) = unsafe { (&*parent, &*child) };
            c.set_parent(parent, off);
            set_slot(p, off, slot::mk_node(child as usize));
            child = parent;
        }
        child
    }

    /// Builds, unlinked, a full subtree of `shift` whose every index is covered by entries of
    /// order `order_shift + sub` with `value` and the marks in `marks` (bit per mark).
    fn build_full(&self, shift: u8, order_shift: u8, sub: u8, value: u64, marks: u8) -> *mut Node {
        let node = self.alloc_node(shift);
        // SAFETY: freshly allocated, not shared yet.
        let n = unsafe { &*node };
        let step = if shift == order_shift {
            let step = 1usize << sub;
            for a in (0..NODE_SLOTS).step_by(step) {
                set_slot(n, a, slot::mk_value(sub, value));
                for j in a + 1..a + step {
                    set_slot(n, j, slot::mk_sibling(a as u8));
                }
            }
            step
        } else {
            for off in 0..NODE_SLOTS {
                let child = self.build_full(shift - NODE_SHIFT, order_shift, sub, value, marks);
                // SAFETY: fresh and private to this writer.
                unsafe { &*child }.set_parent(node, off);
                set_slot(n, off, slot::mk_node(child as usize));
            }
            1
        };
        for (m, bits) in n.marks.iter().enumerate() {
            if marks >> m & 1 != 0 {
                bits.init_every(step);
            }
        }
        node
    }

    /// Keeps the mark bits of `node`'s ancestors equal to the OR of their children's bitmaps.
    fn mark_fixup<'g>(&self, mut node: &'g Node, guard: &'g Guard) {
        loop {
            let parent = node.parent();
            if parent.is_null() {
                return;
            }
            // SAFETY: the parent of a linked node is linked; the writer holds the lock.
            let p = unsafe { node_ref(parent as usize, guard) };
            let off = node.offset();
            let mut changed = false;
            for (m, pm) in node.marks.iter().zip(&p.marks) {
                let want = m.any();
                if want != pm.get(off) {
                    if want {
                        pm.set(off);
                    } else {
                        pm.clear(off);
                    }
                    changed = true;
                }
            }
            if !changed {
                return;
            }
            node = p;
        }
    }

    /// Adds levels above the root until it has at least `shift` (`xas_expand`).
    fn xas_expand<'g>(&self, mut root: &'g Node, shift: u8, guard: &'g Guard) -> &'g Node {
        while root.shift < shift {
            let top = self.alloc_node(root.shift + NODE_SHIFT);
            // SAFETY: fresh and private until published below.
            let t = unsafe { &*top };
            let old = root as *const Node as *mut Node;
            set_slot(t, 0, slot::mk_node(old as usize));
            for (tm, m) in t.marks.iter().zip(&root.marks) {
                if m.any() {
                    tm.init_every(NODE_SLOTS);
                }
            }
            root.set_parent(top, 0);
            self.head.store(slot::mk_node(top as usize), Release);
            // SAFETY: just linked as the root; the writer holds the lock.
            root = unsafe { node_ref(top as usize, guard) };
        }
        root
    }

    /// Stores an entry of `order` at the aligned index `i`, removing whatever intersects its
    /// range (`xas_store`). Returns the removed entries in index order.
    pub(super) fn xas_store(&self, i: u64, order: u8, value: u64, guard: &Guard) -> Vec<Entry> {
        let shift = order / NODE_SHIFT * NODE_SHIFT;
        let sub = order % NODE_SHIFT;
        let mut need = shift;
        while beyond_root(i, need) {
            need += NODE_SHIFT;
        }
        let mut removed = Vec::new();
        let Some(root) = self.root(guard) else {
            let top = self.build_chain(i, need, shift, sub, value);
            self.head.store(slot::mk_node(top as usize), Release);
            self.entries.fetch_add(1, Relaxed);
            return removed;
        };
        let mut node = self.xas_expand(root, need, guard);
        loop {
            let sh = node.shift;
            if sh == shift {
                self.store_in_node(node, i, sub, value, &mut removed, guard);
                break;
            }
            let off = ((i >> sh) & OFF_MASK) as usize;
            match slot::decode(node.slots[off].load(Acquire)) {
                Slot::Node(addr) => {
                    // SAFETY: a linked child; the writer holds the lock.
                    node = unsafe { node_ref(addr, guard) };
                }
                Slot::Empty => {
                    let top = self.build_chain(i, sh - NODE_SHIFT, shift, sub, value);
                    // SAFETY: fresh and private until linked below.
                    unsafe { &*top }.set_parent(node as *const Node as *mut Node, off);
                    set_slot(node, off, slot::mk_node(top as usize));
                    break;
                }
                Slot::Value { .. } | Slot::Sibling(_) => {
                    // A larger entry covers `i`: replace it with a chain holding the new entry.
                    let (c, csub, cval) = canonical(node, off);
                    removed.push(Entry {
                        index: node_base(i, sh) + ((c as u64) << sh),
                        order: sh + csub,
                        value: cval,
                    });
                    let top = self.build_chain(i, sh - NODE_SHIFT, shift, sub, value);
                    // SAFETY: fresh and private until linked below.
                    unsafe { &*top }.set_parent(node as *const Node as *mut Node, off);
                    for j in c + 1..c + (1 << csub) {
                        if j != off {
                            set_slot(node, j, slot::EMPTY);
                        }
                    }
                    set_slot(node, off, slot::mk_node(top as usize));
                    clear_marks(node, c, 1);
                    clear_marks(node, off, 1);
                    if c != off {
                        set_slot(node, c, slot::EMPTY);
                    }
                    self.mark_fixup(node, guard);
                    break;
                }
            }
        }
        self.entries.fetch_add(1, Relaxed);
        self.entries.fetch_sub(removed.len(), Relaxed);
        removed
    }

    /// The store inside the node of the entry's level.
    fn store_in_node(
        &self,
        node: &Node,
        i: u64,
        sub: u8,
        value: u64,
        removed: &mut Vec<Entry>,
        guard: &Guard,
    ) {
        let sh = node.shift;
        let base = node_base(i, sh);
        let n = 1usize << sub;
        let a = ((i >> sh) & OFF_MASK) as usize & !(n - 1);
        let bigger = match slot::decode(node.slots[a].load(Acquire)) {
            Slot::Sibling(c) => Some(usize::from(c)),
            Slot::Value { sub: s2, .. } if s2 > sub => Some(a),
            _ => None,
        };
        if let Some(c) = bigger {
            // One larger entry [c, c + 2^csub) contains [a, a + n).
            let (c, csub, cval) = canonical(node, c);
            removed.push(Entry {
                index: base + ((c as u64) << sh),
                order: sh + csub,
                value: cval,
            });
            for j in c + 1..c + (1 << csub) {
                if j < a || j >= a + n {
                    set_slot(node, j, slot::EMPTY);
                }
            }
            set_slot(node, a, slot::mk_value(sub, value));
            for j in a + 1..a + n {
                set_slot(node, j, slot::mk_sibling(a as u8));
            }
            clear_marks(node, c, 1);
            clear_marks(node, a, 1);
            if c < a {
                set_slot(node, c, slot::EMPTY);
            }
        } else {
            // Everything intersecting [a, a + n) lies inside it.
            let mut subtrees = Vec::new();
            for j in a..a + n {
                let at = base + ((j as u64) << sh);
                match slot::decode(node.slots[j].load(Acquire)) {
                    Slot::Value { sub, value } => removed.push(Entry {
                        index: at,
                        order: sh + sub,
                        value,
                    }),
                    Slot::Node(addr) => {
                        // SAFETY: a linked child; the writer holds the lock.
                        let child = unsafe { node_ref(addr, guard) };
                        self.collect_entries(child, sh - NODE_SHIFT, at, removed, guard);
                        subtrees.push(addr);
                    }
                    Slot::Empty | Slot::Sibling(_) => {}
                }
            }
            set_slot(node, a, slot::mk_value(sub, value));
            for j in a + 1..a + n {
                set_slot(node, j, slot::mk_sibling(a as u8));
            }
            clear_marks(node, a, n);
            for addr in subtrees {
                // SAFETY: the slot pointing to it was just overwritten.
                let child = unsafe { node_ref(addr, guard) };
                self.retire_subtree(child, guard);
            }
        }
        self.mark_fixup(node, guard);
    }

    /// Collects the entries of a subtree (in index order) without changing it.
    fn collect_entries(
        &self,
        node: &Node,
        shift: u8,
        base: u64,
        out: &mut Vec<Entry>,
        guard: &Guard,
    ) {
        for off in 0..NODE_SLOTS {
            let at = base + ((off as u64) << shift);
            match slot::decode(node.slots[off].load(Acquire)) {
                Slot::Value { sub, value } => out.push(Entry {
                    index: at,
                    order: shift + sub,
                    value,
                }),
                Slot::Node(addr) => {
                    // SAFETY: a child of a linked node; the writer holds the lock.
                    let child = unsafe { node_ref(addr, guard) };
                    self.collect_entries(child, shift - NODE_SHIFT, at, out, guard);
                }
                Slot::Empty | Slot::Sibling(_) => {}
            }
        }
    }

    /// Retires every node of an unlinked subtree.
    fn retire_subtree(&self, node: &Node, guard: &Guard) {
        for s in &node.slots {
            if let Slot::Node(addr) = slot::decode(s.load(Acquire)) {
                // SAFETY: a child of a subtree this writer unlinked; allocated until `guard` drops.
                self.retire_subtree(unsafe { node_ref(addr, guard) }, guard);
            }
        }
        self.retire_node(node, guard);
    }

    /// Replaces the value of the entry covering `i`, keeping its order and marks.
    pub(super) fn xas_update(
        &self,
        i: u64,
        value: u64,
        guard: &Guard,
    ) -> Result<Entry, IndexError> {
        let f = self.xas_load(i, guard).ok_or(IndexError::NotFound)?;
        // SAFETY: found under the writer lock.
        let node = unsafe { &*f.node };
        let sub = f.entry.order - node.shift;
        set_slot(node, f.canon, slot::mk_value(sub, value));
        Ok(Entry { value, ..f.entry })
    }

    /// Removes the entry covering `i` (`xas_store(NULL)`), then frees emptied nodes.
    pub(super) fn xas_erase(&self, i: u64, guard: &Guard) -> Option<Entry> {
        let f = self.xas_load(i, guard)?;
        // SAFETY: found under the writer lock.
        let node = unsafe { &*f.node };
        let n = 1usize << (f.entry.order - node.shift);
        for j in f.canon + 1..f.canon + n {
            set_slot(node, j, slot::EMPTY);
        }
        set_slot(node, f.canon, slot::EMPTY);
        clear_marks(node, f.canon, 1);
        self.entries.fetch_sub(1, Relaxed);
        self.xas_shrink(node, guard);
        Some(f.entry)
    }

    /// Frees empty nodes from `node` upwards, fixes the marks above, and lowers the root while
    /// it only holds a child at slot 0 (`xas_shrink` / `xas_delete_node`).
    fn xas_shrink<'g>(&self, mut node: &'g Node, guard: &'g Guard) {
        while node.count() == 0 {
            let parent = node.parent();
            if parent.is_null() {
                self.head.store(slot::EMPTY, Release);
                self.retire_node(node, guard);
                return;
            }
            // SAFETY: the parent of a linked node is linked; the writer holds the lock.
            let p = unsafe { node_ref(parent as usize, guard) };
            let off = node.offset();
            set_slot(p, off, slot::EMPTY);
            clear_marks(p, off, 1);
            self.retire_node(node, guard);
            node = p;
        }
        self.mark_fixup(node, guard);
        while let Some(root) = self.root(guard) {
            if root.count() != 1 {
                break;
            }
            let Slot::Node(addr) = slot::decode(root.slots[0].load(Acquire)) else {
                break;
            };
            // SAFETY: a linked child; the writer holds the lock.
            let child = unsafe { node_ref(addr, guard) };
            child.set_parent(std::ptr::null_mut(), 0);
            self.head.store(slot::mk_node(addr), Release);
            self.retire_node(root, guard);
        }
    }

    /// Splits the entry covering `i` into entries of `new_order` (`xas_split`).
    pub(super) fn xas_split(&self, i: u64, new_order: u8, guard: &Guard) -> Result<(), IndexError> {
        let f = self.xas_load(i, guard).ok_or(IndexError::NotFound)?;
        if new_order >= f.entry.order {
            return Err(IndexError::BadSplitOrder);
        }
        // SAFETY: found under the writer lock.
        let node = unsafe { &*f.node };
        let sh = node.shift;
        let sub = f.entry.order - sh;
        let c = f.canon;
        let value = f.entry.value;
        let mut marks = 0u8;
        for (m, bits) in node.marks.iter().enumerate() {
            if bits.get(c) {
                marks |= 1 << m;
            }
        }
        let new_shift = new_order / NODE_SHIFT * NODE_SHIFT;
        let nsub = new_order % NODE_SHIFT;
        if new_shift == sh {
            let step = 1usize << nsub;
            let pieces = 1usize << (sub - nsub);
            for k in (1..pieces).rev() {
                let a = c + k * step;
                for (m, bits) in node.marks.iter().enumerate() {
                    if marks >> m & 1 != 0 {
                        bits.set(a);
                    }
                }
                set_slot(node, a, slot::mk_value(nsub, value));
                for j in a + 1..a + step {
                    set_slot(node, j, slot::mk_sibling(a as u8));
                }
            }
            set_slot(node, c, slot::mk_value(nsub, value));
        } else {
            for j in (c..c + (1 << sub)).rev() {
                let child = self.build_full(sh - NODE_SHIFT, new_shift, nsub, value, marks);
                // SAFETY: fresh and private until linked below.
                unsafe { &*child }.set_parent(node as *const Node as *mut Node, j);
                for (m, bits) in node.marks.iter().enumerate() {
                    if marks >> m & 1 != 0 {
                        bits.set(j);
                    }
                }
                set_slot(node, j, slot::mk_node(child as usize));
            }
        }
        self.entries
            .fetch_add((1usize << (f.entry.order - new_order)) - 1, Relaxed);
        Ok(())
    }

    /// Sets or clears `mark` on the entry covering `i` (`xas_set_mark` / `xas_clear_mark`).
    pub(super) fn xas_set_mark(
        &self,
        i: u64,
        mark: Mark,
        set: bool,
        guard: &Guard,
    ) -> Result<(), IndexError> {
        let f = self.xas_load(i, guard).ok_or(IndexError::NotFound)?;
        // SAFETY: found under the writer lock.
        let node = unsafe { &*f.node };
        let bits = &node.marks[mark as usize];
        if set {
            bits.set(f.canon);
        } else {
            bits.clear(f.canon);
        }
        self.mark_fixup(node, guard);
        Ok(())
    }
}

/// The canonical slot, relative order and value of the entry occupying slot `off` of `node`.
fn canonical(node: &Node, off: usize) -> (usize, u8, u64) {
    let c = match slot::decode(node.slots[off].load(Acquire)) {
        Slot::Sibling(c) => usize::from(c),
        _ => off,
    };
    match slot::decode(node.slots[c].load(Acquire)) {
        Slot::Value { sub, value } => (c, sub, value),
        other => unreachable!("writer sees a sibling without its entry: {other:?}"),
    }
}
