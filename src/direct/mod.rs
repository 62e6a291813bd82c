//! Direct mapping, the daemon's side (docs/DESIGN.md, "Direct mapping"): layout leases for
//! processes that map daxfs files straight from the region under `daxfs exec`, and their
//! revocation before the layout changes.
//!
//! The kernel cannot map daemon memory into an application through `/dev/fuse`, so the
//! `daxfs-preload` library does it the famfs way: it asks for a file's extent map
//! (`DAXFS_IOC_GET_FMAP`, [`crate::ioctl::direct`]), opens the region itself (the kernel's
//! `open()` permission check is the security check) and maps the region ranges at the addresses
//! the application asked for. The daemon stays the only authority on the layout: every such
//! mapping is a **layout lease** ([`leases`]), held over a connection to the mount's lease
//! socket ([`server`], protocol in [`wire`] over [`seqpacket`]). Before the filesystem changes a
//! leased range (truncate, punch, allocation into a hole, growth past the old end, poison and
//! its clearing) it calls the [`crate::fs::layout::LayoutBreaker`] this module implements: every
//! holder is told to revoke the range and the change waits, bounded, for each to acknowledge, as
//! `dax_layout_busy_page()` / `break_layouts()` wait for page pins in the kernel. A holder that
//! does not answer is named in the log and fenced: blocks the change frees stay quarantined
//! (allocated, never reused) until it acknowledges or its process no longer maps the region, so
//! a freed block is never reachable through an old mapping. [`service`] ties it to a mount: the
//! two ioctls and the memory-failure hook ([`service::LeaseInvalidator`]).
//!
//! Layering: above `fs` and `memory_failure` (it implements their hooks), below `fuse` (the
//! adapter routes the two ioctls here). Nothing here knows FUSE.
//!
//! Limits: the lease is per process and per file range, not per mapping (a process that
//! unmapped part of a range still receives its revocations and acknowledges them at once);
//! quarantine lasts for the daemon's life (a process that never answers and never exits keeps
//! its blocks until unmount; at the next mount they are free again, and a process still mapping
//! the region across a daemon restart is not protected: the library fences all its mappings when
//! its lease connection ends).

pub mod leases;
pub mod seqpacket;
pub mod server;
pub mod service;
pub mod wire;

pub use leases::LeaseTable;
pub use service::{DirectService, LeaseInvalidator};
