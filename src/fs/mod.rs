//! POSIX semantics over the on-media store and the DAX entries: the embedded API.
//!
//! **Contract.** The methods of [`DaxFs`] are the embedded API that tests and tools drive
//! without FUSE. The filesystem logic lives here and below; the FUSE adapter only translates
//! requests (docs/DESIGN.md, "The fs layer").
//!
//! Conventions:
//! - Inode numbers are `u64`; the root is [`ROOT_INO`] (1, as FUSE wants).
//! - Errors are `Errno` values, exactly what a FUSE reply or a syscall would return.
//! - Modes passed to create/mknod/mkdir are final (the kernel has applied the umask); the
//!   `*_with_umask` variants take the umask, applied unless the parent has a default ACL.
//! - Permission checks are the kernel's (`default_permissions`); this layer enforces ownership
//!   rules that only the filesystem can (suid/sgid clearing, sticky semantics are the kernel's).
//!   The caller's [`Ctx`] decides the owner of new inodes and the set-id rules; namespace changes
//!   (unlink, rmdir, rename, link) take it for a uniform API and do not consult it.
//! - `lookup` (and `create`, `mknod`, `mkdir`, `symlink`, `link`) take one kernel reference on the
//!   returned inode; `forget` drops them. An unlinked inode lives until its last reference and its
//!   last open handle are gone.
//!
//! Layout: [`DaxFs`] (`daxfs.rs`) composes the parts that own the state — the volume
//! (`volume.rs`), the inode table (`itable.rs`), the namespace (`namespace.rs`, `rename.rs`) and
//! the data path (`io.rs`); the operations on one inode are functions in `attrs.rs`, `xattrs.rs`,
//! `space.rs`, `dirents.rs` and `commit.rs`; `lifecycle.rs` (mkfs, open, close), `fsck.rs`,
//! `inspect.rs`, `probe.rs` (what a region holds, for mkfs), `badblocks.rs` and `file_layout.rs`
//! (direct mappings; the lease types are in [`layout`]) hold the rest. Each file's top comment
//! says what it owns and which locks it takes.

pub mod acl;
mod api;
pub mod atime;
mod attrs;
mod badblocks;
mod commit;
mod daxfs;
mod dirents;
mod exchange;
mod file_layout;
pub mod filemap;
mod fsck;
pub mod iflags;
mod inode;
mod inspect;
mod io;
mod itable;
pub mod layout;
mod lifecycle;
mod names;
mod namespace;
mod privs;
mod probe;
mod rename;
mod shutdown;
mod space;
mod time;
mod tmpfile;
mod types;
mod volume;
mod xattrs;

pub use api::{FileSystem, KillPriv, Opened, Written};
pub use daxfs::DaxFs;
pub use exchange::{
    ExchangeRange, Exchanged, EXCHANGE_RANGE_ALL_FLAGS, EXCHANGE_RANGE_DRY_RUN,
    EXCHANGE_RANGE_DSYNC, EXCHANGE_RANGE_FILE1_WRITTEN, EXCHANGE_RANGE_TO_EOF,
};
pub use probe::RegionContents;
pub use shutdown::ShutdownMode;

pub use types::*;

pub use nix::errno::Errno;

/// Result of a filesystem operation.
pub type FsResult<T> = Result<T, Errno>;
