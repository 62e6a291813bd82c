//! The crate's error type for whole-region operations (mkfs, open, fsck, close).
//!
//! Every variant's message names what is wrong, so a user reading it knows what to do; what a
//! region's media holds wrong is a [`CorruptReason`], matched by variant (docs/DESIGN.md,
//! "Errors").

use std::path::PathBuf;

use nix::errno::Errno;

use crate::region::RegionError;
use crate::store::{CorruptReason, DecodeError, JournalError};

/// Errors from mkfs, open (mount), fsck and close.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The region could not be opened, mapped or accessed.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The region is not usable as daxfs: `reason` names the problem (and `daxfs fsck
    /// --repair` as the remedy where repair can fix it).
    #[error("{}: {reason}{}", .path.display(), repair_hint(.reason))]
    Corrupt {
        /// The region.
        path: PathBuf,
        /// What is wrong (the first fatal problem at open).
        reason: CorruptReason,
    },
    /// mkfs: the region cannot hold the layout with this many inodes.
    #[error("{}: region of {len} bytes is too small for {inodes} inodes", .path.display())]
    TooSmall {
        /// The region.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
        /// The inodes asked for.
        inodes: u64,
    },
    /// Replaying the journal failed on the region (a damaged journal is [`Error::Corrupt`]).
    #[error("{}: {source}", .path.display())]
    Journal {
        /// The region.
        path: PathBuf,
        /// What failed.
        source: JournalError,
    },
    /// fsck --repair could not apply a fix.
    #[error("{}: repair: {source}", .path.display())]
    Repair {
        /// The region.
        path: PathBuf,
        /// What failed.
        source: RepairError,
    },
    /// close: the filesystem could not be made durable.
    #[error("{}: cannot persist on close: {errno}", .path.display())]
    Close {
        /// The region.
        path: PathBuf,
        /// The first error seen.
        errno: Errno,
    },
}

/// Why a repair step failed.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// Reading the record to fix failed.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The record to fix no longer decodes.
    #[error("inode {ino}: {what}")]
    Record {
        /// The inode.
        ino: u64,
        /// What its decoder found.
        what: DecodeError,
    },
    /// Committing the fix failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// The remedy appended to a problem that `daxfs fsck --repair` can fix.
fn repair_hint(reason: &CorruptReason) -> &'static str {
    if reason.is_repairable() {
        " (run `daxfs fsck --repair`)"
    } else {
        ""
    }
}
