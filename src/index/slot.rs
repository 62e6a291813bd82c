//! The encoding of one slot word of a radix-tree node (the kernel's `xa_mk_value`,
//! `xa_mk_sibling`, `xa_is_node`).
//!
//! Owns: the bit layout below and nothing else; every other file goes through these helpers.
//!
//! ```text
//!  63                                    5 4   2 1 0
//! +---------------------------------------+-----+---+
//! |               value (59 bits)          | sub | 01|   value entry (canonical slot)
//! +---------------------------------------+-----+---+
//! |                                 0  ...  canon | 10|   sibling: the entry starts at slot `canon`
//! +--------------------------------------------------+
//! |                 node pointer (8-aligned)     | 00|   child node (word != 0)
//! +--------------------------------------------------+
//! |                          0                        |   empty
//! +--------------------------------------------------+
//! ```
//!
//! `sub` is the entry's order relative to the node it lives in (`order - node.shift`,
//! `0..NODE_SHIFT`, at most 7): the
//! entry occupies `2^sub` slots, the canonical one and `2^sub - 1` siblings. Keeping the order in
//! the canonical word lets a reader get value and order with one atomic load (no torn
//! value/order pair), at the price of five bits of value.

use super::node::{NODE_SHIFT, NODE_SLOTS};

/// Largest value an entry may hold.
pub const MAX_VALUE: u64 = (1 << 59) - 1;

const TAG_MASK: u64 = 0b11;
const TAG_VALUE: u64 = 0b01;
const TAG_SIBLING: u64 = 0b10;
const SUB_SHIFT: u32 = 2;
const SUB_MASK: u64 = 0b111;
const VALUE_SHIFT: u32 = 5;

/// The empty slot word.
pub const EMPTY: u64 = 0;

/// What a slot word holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Empty,
    /// A child node (the word is its address).
    Node(usize),
    /// A value entry of relative order `sub`.
    Value {
        sub: u8,
        value: u64,
    },
    /// A sibling of the entry whose canonical slot is at this offset.
    Sibling(u8),
}

/// Decodes a slot word.
#[inline]
pub fn decode(word: u64) -> Slot {
    match word & TAG_MASK {
        0 if word == EMPTY => Slot::Empty,
        0 => Slot::Node(word as usize),
        TAG_VALUE => Slot::Value {
            sub: ((word >> SUB_SHIFT) & SUB_MASK) as u8,
            value: word >> VALUE_SHIFT,
        },
        _ => Slot::Sibling((word >> SUB_SHIFT) as u8),
    }
}

/// Encodes a value entry of relative order `sub` (`value <= MAX_VALUE`, `sub < NODE_SHIFT`).
#[inline]
pub fn mk_value(sub: u8, value: u64) -> u64 {
    debug_assert!(value <= MAX_VALUE && sub < NODE_SHIFT);
    (value << VALUE_SHIFT) | (u64::from(sub) << SUB_SHIFT) | TAG_VALUE
}

/// Encodes a sibling pointing at canonical slot `canon`.
#[inline]
pub fn mk_sibling(canon: u8) -> u64 {
    debug_assert!(usize::from(canon) < NODE_SLOTS);
    (u64::from(canon) << SUB_SHIFT) | TAG_SIBLING
}

/// Encodes a child node pointer.
#[inline]
pub fn mk_node(addr: usize) -> u64 {
    debug_assert!(addr != 0 && addr as u64 & TAG_MASK == 0);
    addr as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_all_kinds() {
        assert_eq!(decode(EMPTY), Slot::Empty);
        assert_eq!(
            decode(mk_value(NODE_SHIFT - 1, MAX_VALUE)),
            Slot::Value {
                sub: NODE_SHIFT - 1,
                value: MAX_VALUE
            }
        );
        assert_eq!(decode(mk_value(0, 0)), Slot::Value { sub: 0, value: 0 });
        let last = (NODE_SLOTS - 1) as u8;
        assert_eq!(decode(mk_sibling(last)), Slot::Sibling(last));
        assert_eq!(decode(mk_sibling(0)), Slot::Sibling(0));
        assert_eq!(decode(mk_node(0x1000)), Slot::Node(0x1000));
    }
}
