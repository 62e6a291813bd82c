//! DAX entries and their lock protocol, modelled on the kernel's `fs/dax.c`.
//!
//! Each inode's file-offset → region mappings live in a [`crate::index::Index`] as DAX entries:
//! a region block number plus the flags `LOCKED | PMD | ZERO | EMPTY` ([`entry`], the only place
//! that knows the encoding). A PMD entry is an order-9 index entry mapping 2 MiB; a PTE entry an
//! order-0 entry mapping 4 KiB. The entry lock is a bit in the entry; threads that find it held
//! sleep on a hashed wait queue keyed by (inode, aligned first index of the entry) ([`wait`]).
//! [`DaxMapping`] ([`mapping`]) is one inode's index with the protocol; a locked entry is a
//! [`DaxEntryGuard`] ([`guard`]) that unlocks on drop.
//!
//! # Rules
//!
//! 1. **Look up with a conflict query, under the index writer lock.** `get_unlocked_entry(i, k)`
//!    asks the index for the first entry anywhere in the order-`k` range around `i`
//!    (`find_conflict`), so a PMD request over PTE entries sees them (and falls back to PTE; it
//!    never erases them, locked or not), and a PTE request inside a PMD entry gets the PMD entry.
//! 2. **Always re-look-up after sleeping.** The entry we slept on may have been deleted, split or
//!    replaced; nothing seen before the sleep is used after it.
//! 3. **No lost wake-up.** A sleeper registers on its wait-queue bucket *before* it releases the
//!    index writer lock under which it saw the entry locked; every change of a locked entry
//!    (unlock, delete, split, downgrade) happens under that lock and is followed by a wake-up of
//!    the entry's key. Wake-ups go to all sleepers of a bucket; each re-checks (hash collisions).
//!    Lock order: index writer lock → wait-queue bucket mutex.
//! 4. **Unlock stores the unlocked value at the same order.** `dax_unlock_entry` refuses a value
//!    with `LOCKED` set (`debug_assert!`, and [`DaxError::LockedValue`] in release builds) and a
//!    value whose `PMD` bit disagrees with the order of the entry it replaces. The mapping size
//!    of an entry always comes from the entry ([`DaxEntry::size`]), never from the caller.
//! 5. **Inode lifetime across sleeps.** A [`DaxMapping`] is a handle on an `Arc`; a sleeper holds
//!    one, so the index it sleeps on stays allocated. [`DaxMapping::evict`] marks the mapping dead
//!    under the index writer lock and wakes all its sleepers; a sleeper re-checks liveness after
//!    every wake-up (before touching the index) and returns [`DaxError::Evicted`]. An inode id
//!    reused by a new inode gets a new `DaxMapping` (and generation), so an old sleeper never
//!    locks the new inode's entries; it only may see a spurious wake-up of a shared key.
//! 6. **Never call an `Index` reader method while holding its writer guard** (the reference
//!    index's readers take the same mutex).
//!
//! # The 2018 regression switch
//!
//! [`DaxOptions::regression_9f32d221`] gives the protocol the semantics of kernel commit
//! 9f32d221301c ("dax: Convert dax_lock_mapping_entry to XArray") before its fixes, to show the
//! bugs side by side with the fixed protocol: lookups are plain loads of the requested order (a
//! PMD-order lookup over PTE entries sees nothing, and the fault then stores a PMD entry over
//! them — "dax: Fix missed wakeup with PMD faults"); a waiter does not look up again after
//! sleeping but uses the entry it saw before (and locking it stores it back, resurrecting a
//! deleted entry); and the page-lock unlock path (`dax_unlock_page`, the kernel's
//! `dax_unlock_mapping_entry`) rebuilds the entry from its block without the `PMD` bit ("dax: Fix
//! dax_unlock_mapping_entry for PMD pages"). Liveness is re-checked in both modes.

pub mod entry;
pub mod guard;
pub mod invariant;
pub mod mapping;
pub mod wait;

pub use entry::{
    dax_entry_order, dax_entry_size, dax_is_locked, dax_is_pmd, dax_to_block, DaxEntry, DAX_EMPTY,
    DAX_LOCKED, DAX_PMD, DAX_ZERO, PAGE_SIZE, PMD_ORDER, PMD_PAGES, PMD_SIZE, PTE_ORDER,
};
pub use guard::DaxEntryGuard;
pub use invariant::Violation;
pub use mapping::{DaxMapping, DaxMappingInfo, Lookup, UnmapHook};
pub use wait::{WaitKey, WaitTable, WAIT_TABLE_BUCKETS};

use crate::index::IndexError;

/// Name of the environment variable [`DaxOptions::from_env`] reads (`1` turns the switch on).
pub const REGRESSION_ENV: &str = "DAXFS_REGRESSION_9F32D221";

/// Run-time options of a [`DaxMapping`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaxOptions {
    /// Reproduce kernel commit 9f32d221301c before its fixes (see the module documentation).
    pub regression_9f32d221: bool,
}

impl DaxOptions {
    /// Options from the environment: the switch is on when [`REGRESSION_ENV`] is `1`.
    pub fn from_env() -> DaxOptions {
        DaxOptions {
            regression_9f32d221: std::env::var(REGRESSION_ENV).is_ok_and(|v| v == "1"),
        }
    }
}

/// Errors of the DAX entry protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DaxError {
    /// The inode was evicted (possibly while we slept on one of its entries).
    #[error("inode {inode} was evicted")]
    Evicted { inode: u64 },
    /// Only orders 0 (PTE) and 9 (PMD) are DAX entry orders.
    #[error("order {0} is not a DAX entry order (0 = PTE, 9 = PMD)")]
    BadOrder(u8),
    /// Unlock was asked to store a value that still has `LOCKED` set.
    #[error("refusing to unlock by storing a locked value ({0:#x})")]
    LockedValue(u64),
    /// There is no locked entry where the caller holds one (corruption or a caller bug).
    #[error("no locked entry at index {0}")]
    NotLocked(u64),
    /// The value's `PMD` bit disagrees with the order of the entry it would replace.
    #[error("entry at index {index} has order {held}, the new value encodes order {value}")]
    OrderMismatch { index: u64, held: u8, value: u8 },
    /// The block cannot be mapped by this entry (too large, or a PMD block not 2 MiB-aligned).
    #[error("block {0} cannot be mapped by this entry")]
    BadBlock(u64),
    /// An index outside the locked entry.
    #[error("index {0} is outside the locked entry")]
    OutOfEntry(u64),
    /// The index refused an operation.
    #[error(transparent)]
    Index(#[from] IndexError),
}
