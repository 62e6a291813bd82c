//! # daxfs
//!
//! A filesystem whose files live in a persistent-memory region (a file, `/dev/pmemN` or
//! `/dev/daxN.M`) mapped with `mmap`, served through FUSE. File data is read and written straight
//! in the mapping (DAX style); there is no private data cache in the daemon.
//!
//! Each inode keeps its file-offset → region mappings in a multi-order entry index modelled on the
//! kernel's XArray ([`index`]), holding DAX entries ([`dax`]) of PMD (2 MiB) and PTE (4 KiB) size
//! with per-entry locks, following `fs/dax.c`. Memory failures injected through the control ioctl
//! ([`ioctl`]) are handled as the kernel does ([`memory_failure`]).
//!
//! Layers, bottom to top (nothing imports a layer above it):
//! [`geometry`] (constants only) → [`region`] → [`index`] → [`dax`] → [`store`] → [`fs`] →
//! [`memory_failure`] → [`direct`] → [`fuse`]. [`direct`] holds the layout leases of processes
//! that map files straight from the region (`daxfs exec`).

// Every public item of the library says what it is (`scripts/test` runs clippy with
// `-D warnings`, so a missing doc fails it); `unsafe` rules are in Cargo.toml's [lints].
#![warn(missing_docs)]

pub mod backing;
pub mod dax;
pub mod direct;
mod error;
pub mod fs;
pub mod fuse;
pub mod geometry;
pub mod index;
pub mod ioctl;
pub mod memory_failure;
pub mod region;
pub mod store;
pub mod sync;

pub use error::{Error, RepairError};
