//! What [`DaxMapping::check_invariants`](super::DaxMapping::check_invariants) finds wrong with a
//! quiescent mapping (docs/DESIGN.md, "The DAX entry protocol").

use super::entry::DaxEntry;

/// A broken invariant of a quiescent DAX mapping: the first one found, with where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// An entry is still locked although nobody holds it.
    #[error("entry at {index} left locked: {entry:?}")]
    Locked {
        /// The entry's first index.
        index: u64,
        /// The entry.
        entry: DaxEntry,
    },
    /// An entry of an order other than PTE or PMD.
    #[error("entry at {index} has order {order}")]
    Order {
        /// The entry's first index.
        index: u64,
        /// Its order in the index.
        order: u8,
    },
    /// An entry whose `PMD` bit disagrees with the order it is stored at.
    #[error("entry at {index} of order {order} encodes order {encoded}: {entry:?}")]
    EncodedOrder {
        /// The entry's first index.
        index: u64,
        /// Its order in the index.
        order: u8,
        /// The order its value encodes.
        encoded: u8,
        /// The entry.
        entry: DaxEntry,
    },
    /// A PMD entry whose block is not 2 MiB-aligned.
    #[error("PMD entry at {index} has unaligned block")]
    UnalignedPmd {
        /// The entry's first index.
        index: u64,
    },
}
