//! The crate's error type for whole-region operations (mkfs, mount, fsck).
//!
//! Every variant's message names what is wrong, so a user reading it knows what to do.

use crate::region::RegionError;

/// Errors from mkfs, open (mount) and fsck.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The region is not usable as daxfs; the string names the problem.
    #[error("{path}: {problem}")]
    Corrupt { path: String, problem: String },
    #[error("{0}")]
    Other(String),
}
