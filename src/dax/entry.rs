//! The DAX entry encoding: the one place that knows how an index value packs a region block
//! number and the entry flags (the kernel's `dax_make_entry` / `dax_to_pfn` / `DAX_*` bits).
//!
//! ```text
//!  63     59 58                                     4     3      2      1       0
//! +---------+----------------------------------------+-------+------+-----+--------+
//! | 0 (idx) |      region block number (55 bits)     | EMPTY | ZERO | PMD | LOCKED |
//! +---------+----------------------------------------+-------+------+-----+--------+
//! ```
//!
//! The top five bits stay zero: the index keeps values below 2^59 (it uses the top bits of its
//! slot words). 2^55 blocks of 4 KiB are 128 EiB, far beyond any region.
//!
//! - `LOCKED`: the entry lock (the kernel's `DAX_LOCKED`); held by one thread, others sleep on the
//!   entry's wait queue ([`super::wait`]).
//! - `PMD`: the entry maps 2 MiB (order [`PMD_ORDER`]); without it 4 KiB (order [`PTE_ORDER`]).
//!   The mapping size of an entry is derived from this bit ([`DaxEntry::size`]), never assumed.
//! - `ZERO`: a hole mapped read-only to zeroes (the kernel's huge/4 KiB zero page); no block.
//! - `EMPTY`: a placeholder that reserves the range while a fault fills it; no block.
//!
//! Rules kept here: the block number always fits in 55 bits ([`DaxEntry::new`] refuses more),
//! and the value of an entry stored in the index at order `k` has `PMD` set iff `k == PMD_ORDER`
//! (checked by the mapping's invariant check, not by the encoding itself).

/// The entry lock bit.
pub const DAX_LOCKED: u64 = 1 << 0;
/// The entry maps a 2 MiB (PMD) range.
pub const DAX_PMD: u64 = 1 << 1;
/// The entry maps the zero page (a read fault on a hole).
pub const DAX_ZERO: u64 = 1 << 2;
/// The entry is a placeholder without a block.
pub const DAX_EMPTY: u64 = 1 << 3;
/// Number of flag bits below the block number.
pub const DAX_SHIFT: u32 = 4;
/// All flag bits.
pub const DAX_FLAGS: u64 = (1 << DAX_SHIFT) - 1;
/// Bits of an entry value (the index accepts values up to `2^59 - 1`).
pub const DAX_VALUE_BITS: u32 = 59;
/// Largest block number an entry can hold.
pub const DAX_MAX_BLOCK: u64 = (1 << (DAX_VALUE_BITS - DAX_SHIFT)) - 1;

pub use crate::geometry::{PAGE_SIZE, PMD_ORDER, PMD_PAGES, PMD_SIZE, PTE_ORDER};

/// One DAX entry value as stored in the index.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DaxEntry(u64);

impl DaxEntry {
    /// Builds an entry from a region block number and flags (`dax_make_entry`).
    ///
    /// Return: `None` when `block` does not fit in the entry or `flags` has unknown bits.
    pub fn new(block: u64, flags: u64) -> Option<DaxEntry> {
        if block > DAX_MAX_BLOCK || flags & !DAX_FLAGS != 0 {
            return None;
        }
        Some(DaxEntry((block << DAX_SHIFT) | flags))
    }

    /// A new placeholder of the given order (`EMPTY`, plus `PMD` for a PMD order), unlocked.
    pub fn empty(order: u8) -> DaxEntry {
        let pmd = if order >= PMD_ORDER { DAX_PMD } else { 0 };
        DaxEntry(DAX_EMPTY | pmd)
    }

    /// Reinterprets a raw index value.
    pub const fn from_raw(v: u64) -> DaxEntry {
        DaxEntry(v)
    }

    /// The raw index value.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The region block number (`dax_to_pfn`); meaningless for `EMPTY` and `ZERO` entries.
    pub const fn block(self) -> u64 {
        self.0 >> DAX_SHIFT
    }

    /// The flag bits.
    pub const fn flags(self) -> u64 {
        self.0 & DAX_FLAGS
    }

    /// Whether the entry lock is held.
    pub const fn is_locked(self) -> bool {
        self.0 & DAX_LOCKED != 0
    }

    /// Whether the entry maps 2 MiB.
    pub const fn is_pmd(self) -> bool {
        self.0 & DAX_PMD != 0
    }

    /// Whether the entry maps the zero page.
    pub const fn is_zero(self) -> bool {
        self.0 & DAX_ZERO != 0
    }

    /// Whether the entry is a placeholder.
    pub const fn is_empty(self) -> bool {
        self.0 & DAX_EMPTY != 0
    }

    /// Whether the entry maps a region block (neither `EMPTY` nor `ZERO`).
    pub const fn has_block(self) -> bool {
        self.0 & (DAX_EMPTY | DAX_ZERO) == 0
    }

    /// The same entry with the lock bit set.
    pub const fn locked(self) -> DaxEntry {
        DaxEntry(self.0 | DAX_LOCKED)
    }

    /// The same entry with the lock bit clear.
    pub const fn unlocked(self) -> DaxEntry {
        DaxEntry(self.0 & !DAX_LOCKED)
    }

    /// The order the entry encodes (`dax_entry_order`): [`PMD_ORDER`] for PMD, else 0.
    pub const fn order(self) -> u8 {
        if self.is_pmd() {
            PMD_ORDER
        } else {
            PTE_ORDER
        }
    }

    /// Number of 4 KiB pages the entry maps (512 or 1).
    pub const fn nr_pages(self) -> u64 {
        1 << self.order()
    }

    /// Bytes the entry maps (2 MiB or 4 KiB), derived from the entry.
    pub const fn size(self) -> u64 {
        PAGE_SIZE << self.order()
    }
}

impl std::fmt::Debug for DaxEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DaxEntry(block {}", self.block())?;
        for (bit, name) in [
            (DAX_LOCKED, "LOCKED"),
            (DAX_PMD, "PMD"),
            (DAX_ZERO, "ZERO"),
            (DAX_EMPTY, "EMPTY"),
        ] {
            if self.0 & bit != 0 {
                write!(f, " {name}")?;
            }
        }
        write!(f, ")")
    }
}

/// `dax_to_block`: the region block number of a raw entry value.
pub const fn dax_to_block(v: u64) -> u64 {
    DaxEntry::from_raw(v).block()
}

/// `dax_is_locked` on a raw entry value.
pub const fn dax_is_locked(v: u64) -> bool {
    DaxEntry::from_raw(v).is_locked()
}

/// `dax_is_pmd_entry` on a raw entry value.
pub const fn dax_is_pmd(v: u64) -> bool {
    DaxEntry::from_raw(v).is_pmd()
}

/// `dax_entry_order` on a raw entry value: 9 for a PMD entry, else 0.
pub const fn dax_entry_order(v: u64) -> u8 {
    DaxEntry::from_raw(v).order()
}

/// Bytes mapped by a raw entry value: 2 MiB for a PMD entry, else 4 KiB.
pub const fn dax_entry_size(v: u64) -> u64 {
    DaxEntry::from_raw(v).size()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_block_and_flags() {
        let e = DaxEntry::new(0x1234_5678, DAX_PMD).unwrap();
        assert_eq!(e.block(), 0x1234_5678);
        assert!(e.is_pmd() && !e.is_locked() && !e.is_empty() && !e.is_zero());
        assert!(e.has_block());
        let l = e.locked();
        assert!(l.is_locked());
        assert_eq!(l.block(), e.block());
        assert_eq!(l.unlocked(), e);
        assert_eq!(dax_to_block(l.raw()), 0x1234_5678);
        assert!(dax_is_locked(l.raw()) && dax_is_pmd(l.raw()));
    }

    #[test]
    fn order_and_size_come_from_the_pmd_bit() {
        let pmd = DaxEntry::new(512, DAX_PMD).unwrap();
        let pte = DaxEntry::new(512, 0).unwrap();
        assert_eq!((pmd.order(), pmd.size(), pmd.nr_pages()), (9, 2 << 20, 512));
        assert_eq!((pte.order(), pte.size(), pte.nr_pages()), (0, 4096, 1));
        assert_eq!(dax_entry_order(pmd.raw()), 9);
        assert_eq!(dax_entry_size(pte.raw()), 4096);
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(DaxEntry::new(DAX_MAX_BLOCK + 1, 0).is_none());
        let max = DaxEntry::new(DAX_MAX_BLOCK, DAX_FLAGS).unwrap();
        assert_eq!(
            max.raw(),
            (1 << DAX_VALUE_BITS) - 1,
            "values stay below 2^59"
        );
        assert!(DaxEntry::new(1, 1 << DAX_SHIFT).is_none());
    }

    #[test]
    fn empty_entries_have_no_block() {
        assert!(DaxEntry::empty(PMD_ORDER).is_pmd());
        assert!(!DaxEntry::empty(PTE_ORDER).is_pmd());
        assert!(!DaxEntry::empty(0).has_block());
        assert_eq!(
            format!("{:?}", DaxEntry::empty(9).locked()),
            "DaxEntry(block 0 LOCKED PMD EMPTY)"
        );
    }
}
