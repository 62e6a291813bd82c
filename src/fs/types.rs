//! Plain data types of the embedded API.

use std::ffi::OsString;
use std::time::SystemTime;

/// An inode number.
pub type Ino = u64;

/// The root directory's inode number.
pub const ROOT_INO: Ino = 1;

/// Longest file name, in bytes.
pub const NAME_MAX: usize = 255;

pub use crate::store::FileKind;

/// Attributes of an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// File type.
    pub kind: FileKind,
    /// Permission bits (`0o7777`).
    pub perm: u16,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Allocated space in 512-byte units.
    pub blocks: u64,
    /// Preferred I/O size (`st_blksize`): one block.
    pub blksize: u32,
    /// Last access.
    pub atime: SystemTime,
    /// Last data change.
    pub mtime: SystemTime,
    /// Last status change.
    pub ctime: SystemTime,
    /// Creation.
    pub crtime: SystemTime,
    /// Device number of a device node (else 0).
    pub rdev: u32,
    /// Generation number (changes when an inode number is reused).
    pub generation: u64,
    /// Per-inode flags (`FS_XFLAG_DAX` and friends).
    pub flags: u32,
}

/// Who is asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    /// The caller's fsuid.
    pub uid: u32,
    /// The caller's fsgid.
    pub gid: u32,
    /// The calling thread (for its supplementary groups).
    pub pid: u32,
}

impl Ctx {
    /// The superuser.
    pub fn root() -> Ctx {
        Ctx {
            uid: 0,
            gid: 0,
            pid: 0,
        }
    }
}

/// A time to set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSet {
    /// The current time.
    Now,
    /// This time.
    At(SystemTime),
}

/// Changes requested by `setattr`; `None` leaves a field alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Permission bits (`0o7777`); the file type bits are ignored.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate or extend).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeSet>,
    /// New modification time.
    pub mtime: Option<TimeSet>,
    /// New status-change time (only as a side effect the kernel asks for).
    pub ctime: Option<SystemTime>,
    /// The open file the change comes through, if any.
    pub fh: Option<u64>,
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number of the entry.
    pub ino: Ino,
    /// Its name.
    pub name: OsString,
    /// Its file type.
    pub kind: FileKind,
    /// Cookie to pass to `readdir` to continue after this entry.
    pub next_offset: u64,
}

/// Filesystem statistics (`statfs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatFs {
    /// Data blocks in all.
    pub blocks: u64,
    /// Free data blocks.
    pub bfree: u64,
    /// Free data blocks for unprivileged users.
    pub bavail: u64,
    /// Inodes in all.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Block size.
    pub bsize: u32,
    /// Longest name.
    pub namelen: u32,
    /// Fragment size (= block size).
    pub frsize: u32,
}

/// Region-level statistics (`daxfs stat`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RegionStat {
    /// Region size in bytes.
    pub size: u64,
    /// Block size in bytes.
    pub block_size: u64,
    /// Blocks in use (metadata, data, bad).
    pub used_blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Free, 2 MiB-aligned runs of 512 blocks.
    pub free_2m_runs: u64,
    /// Inodes in use.
    pub inodes_used: u64,
    /// Inodes the table holds.
    pub inodes_total: u64,
    /// Blocks recorded bad.
    pub bad_blocks: u64,
}

/// One DAX mapping of a file, as `daxfs stat --mappings` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MappingInfo {
    /// First file page (4 KiB index) covered.
    pub file_index: u64,
    /// 0 for a PTE entry, 9 for a PMD entry.
    pub order: u8,
    /// First region block.
    pub region_block: u64,
    /// DAX entry flags (`LOCKED`, `PMD`, `ZERO`, `EMPTY`) as named bits, or
    /// [`MappingInfo::POISONED`] alone for a poisoned page (order 0), which has no DAX entry.
    pub flags: u32,
}

impl MappingInfo {
    /// `flags` of a poisoned page: no entry maps it (reads get `EIO`, mmap `SIGBUS`), its bad
    /// block `region_block` is still the file's. Outside the DAX entry flag bits.
    pub const POISONED: u32 = 1 << 8;

    /// Whether this is a poisoned page.
    pub fn poisoned(&self) -> bool {
        self.flags & Self::POISONED != 0
    }
}

/// Options for [`DaxFs::mkfs`](super::DaxFs::mkfs).
#[derive(Clone, Debug, Default)]
pub struct MkfsOptions {
    /// Size for a new (or grown) region file; ignored for devices.
    pub size: Option<u64>,
    /// Number of inodes; `None` picks one per 16 KiB of region, at least 1024.
    pub inodes: Option<u64>,
}

/// How `dax=` was asked for at mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DaxMode {
    /// Every file is accessed directly (FUSE `FOPEN_DIRECT_IO`, no kernel page cache).
    #[default]
    Always,
    /// The kernel page cache is used.
    Never,
    /// Per inode, by the `FS_XFLAG_DAX` flag.
    Inode,
}

/// Options for [`DaxFs::open`](super::DaxFs::open).
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Serve the region read-only: every change fails with `EROFS` (a committed journal
    /// transaction is still replayed at open).
    pub read_only: bool,
    /// With `read_only`: do not replay a committed journal transaction (`norecovery`, as xfs
    /// and ext4's `noload`): the region is served as the last replay left it, which may lack
    /// or half-show the last commit. Ignored on a writable open, which must replay.
    pub no_recovery: bool,
    /// The data path (`dax=`).
    pub dax: DaxMode,
    /// Historical `fs/dax.c` bugs every inode's DAX mapping reproduces (docs/DAX-BUGS.md);
    /// empty (the default) is today's kernel behaviour.
    pub dax_bugs: crate::dax::Bugs,
}

/// Who uses a region block (see [`DaxFs::block_owner`](super::DaxFs::block_owner)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockOwner {
    /// Free (possibly bad).
    Free,
    /// Superblock, journal, bad-block table or inode table.
    Layout,
    /// File page `page` of inode `ino` (regular file, directory or symlink data).
    File {
        /// The inode.
        ino: Ino,
        /// The file page.
        page: u64,
    },
    /// A block-map chain block or the xattr block of inode `ino`.
    InodeMeta {
        /// The inode.
        ino: Ino,
    },
}

/// The `FS_XFLAG_*` bits daxfs stores; setting any other is `EOPNOTSUPP`.
pub const SETTABLE_XFLAGS: u32 = super::iflags::SETTABLE;

/// What `FS_IOC_FSSETXATTR` asks for (the fields of `struct fsxattr` a filesystem may keep).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XflagsChange {
    /// `fsx_xflags`: only [`SETTABLE_XFLAGS`] bits.
    pub xflags: u32,
    /// `fsx_extsize`: the extent size hint in bytes, kept when `xflags` has
    /// `FS_XFLAG_EXTSIZE` (a file) or `FS_XFLAG_EXTSZINHERIT` (a directory), else cleared.
    pub extsize: u32,
    /// `fsx_projid`: must be 0 (no project quotas).
    pub projid: u32,
    /// `fsx_cowextsize`: must be 0.
    pub cowextsize: u32,
}
