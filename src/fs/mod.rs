//! POSIX semantics over the on-media store and the DAX entries: the embedded API.
//!
//! **Contract (fixed; the FUSE adapter and the tests are written against it).** Method names and
//! signatures below are the interface between the `fuse` adapter and this layer. The filesystem
//! logic lives here and below; the adapter only translates requests.
//!
//! Conventions:
//! - Inode numbers are `u64`; the root is [`ROOT_INO`] (1, as FUSE wants).
//! - Errors are `Errno` values, exactly what a FUSE reply or a syscall would return.
//! - Modes passed to create/mknod/mkdir are final (the kernel has applied the umask).
//! - Permission checks are the kernel's (`default_permissions`); this layer enforces ownership
//!   rules that only the filesystem can (suid/sgid clearing, sticky semantics are the kernel's).
//! - `lookup` (and `create`, `mknod`, `mkdir`, `symlink`, `link`) take one kernel reference on the
//!   returned inode; `forget` drops them. An unlinked inode lives until its last reference and its
//!   last open handle are gone.

pub mod atime;
mod daxfs;
pub mod filemap;
mod inode;
pub mod layout;
mod privs;
mod types;

pub use daxfs::{BlockOwner, DaxFs, DaxMode, MkfsOptions, OpenOptions};

pub use types::*;

pub use nix::errno::Errno;

/// Result of a filesystem operation.
pub type FsResult<T> = Result<T, Errno>;
