//! The FUSE adapter: daxfs served through `/dev/fuse` with fuser 0.18.
//!
//! Like virtiofsd's server over its `FileSystem` trait, this layer only translates: requests are
//! decoded by fuser, handed to a [`crate::fs::FileSystem`] (daxfs's is [`crate::fs::DaxFs`]) and
//! the answers encoded back (docs/DESIGN.md, "The FUSE adapter"). It knows nothing of the
//! on-media layout and decides nothing about files.
//!
//! - [`adapter`]: the `fuser::Filesystem` implementation and the INIT negotiation (1 MiB writes,
//!   readdirplus, parallel dirops, `HANDLE_KILLPRIV_V2`, `DIRECT_IO_ALLOW_MMAP`, export support for
//!   file handles).
//! - [`ioctls`]: where an ioctl goes: the direct-mapping service or [`control`].
//! - [`control`]: the control ioctls of [`crate::ioctl`] and `FS_IOC_FS{GET,SET}XATTR`.
//! - [`stats`]: per-opcode request counters (`DAXFS_IOC_REQ_STATS`).
//! - [`notify`]: kernel cache invalidation for lower layers (poison unmaps through it).
//! - [`options`]: the `-o` mount options.
//! - [`daemon`]: open, mount, readiness, serve, unmount on SIGTERM/SIGINT, close.
//! - [`error`]: why a mount, remount or unmount did not happen.
//! - [`mounts`]: the mount table, the daemon registry and `unmount` (also of dead mounts).
//! - [`share`]: the mount helper's second mount of a served region (a bind mount).
//! - [`uring`]: FUSE-over-io_uring (`-o io_uring`): per-CPU ring queues served on their CPU.
//!
//! The data path follows `dax=`: `always` opens every file with `FOPEN_DIRECT_IO` (the kernel page
//! cache is bypassed; shared mmap still works because `FUSE_DIRECT_IO_ALLOW_MMAP` is negotiated and
//! its faults arrive as READ requests), `never` uses the page cache (`FOPEN_KEEP_CACHE`: every
//! change goes through the kernel, except poison, which invalidates explicitly), `inode` decides
//! per inode by `FS_XFLAG_DAX`. Writeback caching is not used: it would defer durability past
//! `close` and move mtime/size ownership to the kernel.

pub mod adapter;
pub mod caller_fds;
pub mod control;
pub mod daemon;
pub mod error;
pub mod ioctls;
pub mod mounts;
pub mod notify;
pub mod options;
pub mod share;
pub mod stats;
pub mod uring;

pub use adapter::DaxFuse;
pub use daemon::{default_threads, serve, MountSpec};
pub use error::{MountError, OpenError, OptionError};
pub use mounts::{unmount, Unmounted};
pub use notify::KernelNotifier;
pub use options::{parse_options, uring_offered, MountConfig, Transport};
