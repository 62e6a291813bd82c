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
//!    the entry's key. As in the kernel, faults sleep exclusively and an unlock wakes the next
//!    sleeper (which takes the lock, or passes the wake-up on with `put_unlocked_entry`);
//!    erasing, splitting or downgrading an entry, making it the zero page, and eviction wake all.
//!    The memory-failure page lock sleeps non-exclusively. Woken sleepers re-check (hash
//!    collisions). Lock order: index writer lock → wait-queue bucket mutex.
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
//! 6. **Index readers may run under the writer guard** (they are lock-free); a lookup that must
//!    be exact against writers uses the guard's own `load`/`find_conflict`.
//!
//! # Historical semantics
//!
//! [`DaxOptions::bugs`] selects kernel bugs of the catalogue in [`history`] (docs/DAX-BUGS.md):
//! each is one deviation, named by the fix's commit id and consulted at one decision point, with
//! the kernel code it reproduces described beside it. The default (no bug) is today's kernel.
//! The wait queues follow the kernel's exclusive/non-exclusive waits and wake-next/wake-all
//! ([`wait`]); page owners and pins ([`page`]) and the busy-page scan serve the bugs of memory
//! failure and break-layouts. [`trace`] is an optional tracer that `daxfs bugs replay` uses;
//! [`museum`] holds each bug's detector scenario, shared by the tests and the CLI.

pub mod entry;
pub mod guard;
pub mod history;
pub mod invariant;
pub mod mapping;
pub mod museum;
pub mod page;
pub mod trace;
pub mod wait;

pub use entry::{
    dax_entry_order, dax_entry_size, dax_is_locked, dax_is_pmd, dax_to_block, DaxEntry, DAX_EMPTY,
    DAX_LOCKED, DAX_PMD, DAX_ZERO, PAGE_SIZE, PMD_ORDER, PMD_PAGES, PMD_SIZE, PTE_ORDER,
};
pub use guard::DaxEntryGuard;
pub use history::{Bug, Bugs, BUGS_ENV, REGRESSION_ENV};
pub use invariant::Violation;
pub use mapping::{DaxMapping, DaxMappingInfo, DaxParts, HoleFault, Lookup, UnmapHook};
pub use page::{DaxPages, PageOwner};
pub use trace::{DaxTracer, TraceEvent, TraceLog};
pub use wait::{WaitKey, WaitTable, WakeMode, WAIT_TABLE_BUCKETS};

use crate::index::IndexError;

/// Run-time options of a [`DaxMapping`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaxOptions {
    /// The historical bugs to reproduce ([`history`]); empty (the default) is today's kernel.
    pub bugs: Bugs,
}

impl DaxOptions {
    /// Options reproducing `bugs`.
    pub const fn with_bugs(bugs: Bugs) -> DaxOptions {
        DaxOptions { bugs }
    }

    /// Options from the environment ([`Bugs::from_env`]: `DAXFS_DAX_BUGS`, and
    /// `DAXFS_REGRESSION_9F32D221=1`). An unknown bug id is reported on stderr and ignored.
    pub fn from_env() -> DaxOptions {
        match Bugs::from_env() {
            Ok(bugs) => DaxOptions { bugs },
            Err(e) => {
                eprintln!("daxfs: {BUGS_ENV}: {e}");
                DaxOptions::default()
            }
        }
    }
}

/// Errors of the DAX entry protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DaxError {
    /// The inode was evicted (possibly while we slept on one of its entries).
    #[error("inode {inode} was evicted")]
    Evicted {
        /// The inode.
        inode: u64,
    },
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
    OrderMismatch {
        /// The entry's index.
        index: u64,
        /// The order of the entry in the index.
        held: u8,
        /// The order the new value encodes.
        value: u8,
    },
    /// The block cannot be mapped by this entry (too large, or a PMD block not 2 MiB-aligned).
    #[error("block {0} cannot be mapped by this entry")]
    BadBlock(u64),
    /// An index outside the locked entry.
    #[error("index {0} is outside the locked entry")]
    OutOfEntry(u64),
    /// A freed mapping was touched (the lifetime check of [`DaxMapping::destroy`]).
    #[error("use after free: inode {inode} (generation {generation}) was freed")]
    UseAfterFree {
        /// The inode.
        inode: u64,
        /// Its generation when it was freed.
        generation: u64,
    },
    /// The index refused an operation.
    #[error(transparent)]
    Index(#[from] IndexError),
}
