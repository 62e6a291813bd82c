//! Per-inode flags (`chattr`): which daxfs stores, their two ioctl spellings (`FS_IOC_GETFLAGS`'s
//! `FS_*_FL` and `FS_IOC_FSGETXATTR`'s `FS_XFLAG_*`), and what immutable and append-only forbid.
//!
//! Owns: the policy that the VFS keeps for local filesystems through `IS_IMMUTABLE` /
//! `IS_APPEND` and cannot for FUSE (the kernel's inode does not carry our flags), so daxfs checks
//! it on every operation, with ext4's errno (`EPERM`):
//! - immutable: no data change (open for writing, write, truncate, fallocate), no attribute or
//!   xattr change, no new link, no unlink or rename of it, no entry added to or removed from it;
//! - append-only: times only set to now, data only appended (open for writing needs `O_APPEND`, writes only at or past
//!   the end, no truncate, fallocate only plain or `KEEP_SIZE`), no attribute or xattr
//!   change, no new link, no unlink or rename of it, entries only added to it (none removed);
//! - changing immutable or append-only needs root (`CAP_LINUX_IMMUTABLE`); the flags themselves
//!   stay changeable on an immutable inode (that is how it is cleared).
//!
//! Flags are stored as `FS_XFLAG_*` bits in the inode record. Pure functions, no locks.

use nix::errno::Errno;

use super::FsResult;
use crate::ioctl::FS_XFLAG_DAX;

/// `FS_XFLAG_IMMUTABLE`: no change at all.
pub const XFLAG_IMMUTABLE: u32 = 0x0000_0008;
/// `FS_XFLAG_APPEND`: data only appended, entries only added.
pub const XFLAG_APPEND: u32 = 0x0000_0010;
/// `FS_XFLAG_SYNC`: synchronous writes (daxfs commits every change before it returns anyway).
pub const XFLAG_SYNC: u32 = 0x0000_0020;
/// `FS_XFLAG_NOATIME`: reads leave atime alone.
pub const XFLAG_NOATIME: u32 = 0x0000_0040;
/// `FS_XFLAG_NODUMP`: kept for backup tools.
pub const XFLAG_NODUMP: u32 = 0x0000_0080;
/// `FS_XFLAG_DAX`: direct access under `dax=inode`.
pub const XFLAG_DAX: u32 = FS_XFLAG_DAX;

/// `FS_XFLAG_EXTSIZE`: a regular file has an extent size hint (reported when it has one; not
/// stored as a flag: the hint is the record's `extsize`).
pub const XFLAG_EXTSIZE: u32 = 0x0000_0800;
/// `FS_XFLAG_EXTSZINHERIT`: a directory's hint, inherited by what is created in it.
pub const XFLAG_EXTSZINHERIT: u32 = 0x0000_1000;
/// The largest extent size hint, in blocks (the on-media bound).
pub use crate::store::MAX_EXTSIZE_BLOCKS;

/// The `fsx_xflags` bits daxfs stores; setting any other is `EOPNOTSUPP`.
pub const SETTABLE: u32 =
    XFLAG_IMMUTABLE | XFLAG_APPEND | XFLAG_SYNC | XFLAG_NOATIME | XFLAG_NODUMP | XFLAG_DAX;

/// `FS_*_FL` of `<linux/fs.h>` and the `FS_XFLAG_*` bit each stands for.
const FL_PAIRS: [(u32, u32); 6] = [
    (0x0000_0008, XFLAG_SYNC),      // FS_SYNC_FL
    (0x0000_0010, XFLAG_IMMUTABLE), // FS_IMMUTABLE_FL
    (0x0000_0020, XFLAG_APPEND),    // FS_APPEND_FL
    (0x0000_0040, XFLAG_NODUMP),    // FS_NODUMP_FL
    (0x0000_0080, XFLAG_NOATIME),   // FS_NOATIME_FL
    (0x0200_0000, XFLAG_DAX),       // FS_DAX_FL
];

/// The `FS_IOC_GETFLAGS` word of stored `xflags`.
pub fn to_fl(xflags: u32) -> u32 {
    FL_PAIRS
        .iter()
        .filter(|(_, x)| xflags & x != 0)
        .fold(0, |acc, (f, _)| acc | f)
}

/// The `xflags` of an `FS_IOC_SETFLAGS` word; `EOPNOTSUPP` for a flag daxfs does not keep.
pub fn from_fl(fl: u32) -> FsResult<u32> {
    let known = FL_PAIRS.iter().fold(0, |acc, (f, _)| acc | f);
    if fl & !known != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    Ok(FL_PAIRS
        .iter()
        .filter(|(f, _)| fl & f != 0)
        .fold(0, |acc, (_, x)| acc | x))
}

/// Whether a caller may change `old` to `new`: only root changes immutable or append-only
/// (`CAP_LINUX_IMMUTABLE`); unknown bits are `EOPNOTSUPP`.
pub fn check_change(old: u32, new: u32, root: bool) -> FsResult<()> {
    if new & !SETTABLE != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    if (old ^ new) & (XFLAG_IMMUTABLE | XFLAG_APPEND) != 0 && !root {
        return Err(Errno::EPERM);
    }
    Ok(())
}

fn locked(flags: u32) -> bool {
    flags & (XFLAG_IMMUTABLE | XFLAG_APPEND) != 0
}

/// Attributes, xattrs, a new link, unlink or rename of the inode itself.
pub fn may_change_inode(flags: u32) -> FsResult<()> {
    if locked(flags) {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// `setattr`: nothing on immutable; on append-only only times set to now (`utime(NULL)`):
/// `explicit` is a mode, owner, size or explicit time change (`notify_change`).
pub fn may_setattr(flags: u32, explicit: bool) -> FsResult<()> {
    if flags & XFLAG_IMMUTABLE != 0 || (explicit && flags & XFLAG_APPEND != 0) {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// Adding an entry to a directory with `flags`.
pub fn may_add_entry(flags: u32) -> FsResult<()> {
    if flags & XFLAG_IMMUTABLE != 0 {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// Removing (or replacing) an entry of a directory with `flags`.
pub fn may_remove_entry(flags: u32) -> FsResult<()> {
    may_change_inode(flags)
}

/// Opening with `open_flags`: writing needs neither immutable nor (without `O_APPEND`)
/// append-only; `O_TRUNC` needs neither.
pub fn may_open(flags: u32, open_flags: i32) -> FsResult<()> {
    let writing = open_flags & libc::O_ACCMODE != libc::O_RDONLY;
    let trunc = writing && open_flags & libc::O_TRUNC != 0;
    let imm = flags & XFLAG_IMMUTABLE != 0;
    let app = flags & XFLAG_APPEND != 0;
    if writing && (imm || (app && open_flags & libc::O_APPEND == 0)) || trunc && locked(flags) {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// Writing data at `offset` of a file of `size`: append-only takes writes at or past the end.
pub fn may_write(flags: u32, offset: u64, size: u64) -> FsResult<()> {
    if flags & XFLAG_IMMUTABLE != 0 || (flags & XFLAG_APPEND != 0 && offset < size) {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// `fallocate` with `mode`: none on immutable; on append-only only plain (optionally `KEEP_SIZE`)
/// preallocation (`vfs_fallocate`).
pub fn may_fallocate(flags: u32, mode: i32) -> FsResult<()> {
    if flags & XFLAG_IMMUTABLE != 0
        || (flags & XFLAG_APPEND != 0 && mode & !libc::FALLOC_FL_KEEP_SIZE != 0)
    {
        return Err(Errno::EPERM);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{
        check_change, from_fl, may_add_entry, may_change_inode, may_fallocate, may_open,
        may_remove_entry, may_setattr, may_write, to_fl, Errno, FL_PAIRS, XFLAG_APPEND, XFLAG_DAX,
        XFLAG_IMMUTABLE, XFLAG_NOATIME, XFLAG_NODUMP, XFLAG_SYNC,
    };

    #[test]
    fn fl_words_round_trip() {
        for (f, x) in FL_PAIRS {
            assert_eq!(to_fl(x), f);
            assert_eq!(from_fl(f).unwrap(), x);
        }
        assert_eq!(from_fl(0x30).unwrap(), XFLAG_IMMUTABLE | XFLAG_APPEND);
        assert_eq!(from_fl(0x0000_0004), Err(Errno::EOPNOTSUPP), "FS_COMPR_FL");
    }

    #[test]
    fn only_root_locks_and_unlocks() {
        assert_eq!(check_change(0, XFLAG_IMMUTABLE, false), Err(Errno::EPERM));
        assert_eq!(check_change(XFLAG_APPEND, 0, false), Err(Errno::EPERM));
        check_change(0, XFLAG_NOATIME | XFLAG_NODUMP, false).unwrap();
        check_change(0, XFLAG_IMMUTABLE, true).unwrap();
        assert_eq!(check_change(0, 0x1, true), Err(Errno::EOPNOTSUPP));
    }

    #[test]
    fn immutable_and_append_rules() {
        let (i, a) = (XFLAG_IMMUTABLE, XFLAG_APPEND);
        assert_eq!(may_open(i, libc::O_WRONLY), Err(Errno::EPERM));
        may_open(i, libc::O_RDONLY).unwrap();
        assert_eq!(may_open(a, libc::O_WRONLY), Err(Errno::EPERM));
        may_open(a, libc::O_WRONLY | libc::O_APPEND).unwrap();
        assert_eq!(
            may_open(a, libc::O_WRONLY | libc::O_APPEND | libc::O_TRUNC),
            Err(Errno::EPERM)
        );
        assert_eq!(may_write(a, 3, 10), Err(Errno::EPERM));
        may_write(a, 10, 10).unwrap();
        assert_eq!(may_write(i, 10, 10), Err(Errno::EPERM));
        may_fallocate(a, libc::FALLOC_FL_KEEP_SIZE).unwrap();
        may_fallocate(a, 0).unwrap();
        let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        assert_eq!(may_fallocate(a, punch), Err(Errno::EPERM));
        assert_eq!(
            may_fallocate(i, libc::FALLOC_FL_KEEP_SIZE),
            Err(Errno::EPERM)
        );
        may_setattr(a, false).unwrap();
        assert_eq!(may_setattr(a, true), Err(Errno::EPERM));
        assert_eq!(may_setattr(i, false), Err(Errno::EPERM));
        may_add_entry(a).unwrap();
        assert_eq!(may_add_entry(i), Err(Errno::EPERM));
        assert_eq!(may_remove_entry(a), Err(Errno::EPERM));
        assert_eq!(may_change_inode(i), Err(Errno::EPERM));
        may_change_inode(XFLAG_NOATIME | XFLAG_SYNC | XFLAG_NODUMP | XFLAG_DAX).unwrap();
    }
}
