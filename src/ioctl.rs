//! The control ioctl ABI shared by the daemon (the `fuse` adapter) and the `daxfs` command line.
//!
//! Owns: the request numbers, the `#[repr(C)]` argument structs and the validation of a request's
//! header and arguments. It knows nothing of how requests are carried out.
//!
//! ## Why the numbers look like this
//!
//! FUSE forwards an ioctl on a regular FUSE mount only in its *restricted* form: the kernel
//! (`fs/fuse/ioctl.c`, `fuse_do_ioctl`) takes the input size from `_IOC_SIZE(cmd)` when the
//! direction has `_IOC_WRITE`, and the output size from `_IOC_SIZE(cmd)` when it has `_IOC_READ`,
//! copies that many bytes from/to the user pointer, and never retries with other buffers. So every
//! request number encodes its struct's exact size, and every struct is fixed-size (lists come in
//! pages with a cursor). Ioctls work on any open file of the mount, directories included (the
//! mount root is how region-wide requests are addressed; ABI >= 7.18).
//!
//! ## Rules every request keeps
//!
//! - Magic [`DAXFS_IOC_MAGIC`] (`0xDA`), numbers 1..=11 (7 and 8, the direct-mapping requests of
//!   `daxfs exec`, are in [`direct`]).
//! - Every struct starts with `version: u32, size: u32`. The caller sets `version` to
//!   [`DAXFS_ABI_VERSION`] and `size` to `size_of` the struct; anything else is `EINVAL`
//!   ([`check_header`]). A later ABI version appends fields and bumps both.
//! - All requests are `_IOWR` (the header is always read back, answers are written back)
//!   except `INJECT_POISON` and `CLEAR_POISON`, which only take input (`_IOW`). Their reporting
//!   forms `INJECT_POISON_REPORT` and `CLEAR_POISON_REPORT` (9 and 10) take the same input and
//!   answer what was done ([`DaxfsPoisonReport`]); the `_IOW` forms stay for older callers.
//!
//! | request | number | value | struct | bytes |
//! |---|---|---|---|---|
//! | `DAXFS_IOC_STAT` | `_IOWR(0xDA, 1, DaxfsStat)` | `0xc048da01` | [`DaxfsStat`] | 72 |
//! | `DAXFS_IOC_GET_MAPPINGS` | `_IOWR(0xDA, 2, DaxfsMappings)` | `0xcc18da02` | [`DaxfsMappings`] | 3096 |
//! | `DAXFS_IOC_INJECT_POISON` | `_IOW(0xDA, 3, DaxfsPoison)` | `0x4020da03` | [`DaxfsPoison`] | 32 |
//! | `DAXFS_IOC_CLEAR_POISON` | `_IOW(0xDA, 4, DaxfsPoison)` | `0x4020da04` | [`DaxfsPoison`] | 32 |
//! | `DAXFS_IOC_LIST_BADBLOCKS` | `_IOWR(0xDA, 5, DaxfsBadBlocks)` | `0xc818da05` | [`DaxfsBadBlocks`] | 2072 |
//! | `DAXFS_IOC_REQ_STATS` | `_IOWR(0xDA, 6, DaxfsReqStats)` | `0xc210da06` | [`DaxfsReqStats`] | 528 |
//! | `DAXFS_IOC_DIRECT_INFO` | `_IOWR(0xDA, 7, DaxfsDirectInfo)` | `0xd0b0da07` | [`direct::DaxfsDirectInfo`] | 4272 |
//! | `DAXFS_IOC_GET_FMAP` | `_IOWR(0xDA, 8, DaxfsFmap)` | `0xe048da08` | [`direct::DaxfsFmap`] | 8264 |
//! | `DAXFS_IOC_INJECT_POISON_REPORT` | `_IOWR(0xDA, 9, DaxfsPoisonReport)` | `0xc058da09` | [`DaxfsPoisonReport`] | 88 |
//! | `DAXFS_IOC_CLEAR_POISON_REPORT` | `_IOWR(0xDA, 10, DaxfsPoisonReport)` | `0xc058da0a` | [`DaxfsPoisonReport`] | 88 |
//! | `DAXFS_IOC_SERVER_INFO` | `_IOWR(0xDA, 11, DaxfsServerInfo)` | `0xc010da0b` | [`DaxfsServerInfo`] | 16 |

use std::mem::size_of;

use nix::errno::Errno;

/// The ioctl "type" byte of every daxfs request.
pub const DAXFS_IOC_MAGIC: u8 = 0xDA;
/// The ABI version this build speaks.
pub const DAXFS_ABI_VERSION: u32 = 1;

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
/// `_IOC_WRITE`: user space writes, the driver reads (input).
pub const IOC_WRITE: u32 = 1;
/// `_IOC_READ`: the driver writes, user space reads (output).
pub const IOC_READ: u32 = 2;

/// The kernel's `_IOC(dir, type, nr, size)` (asm-generic layout, as on x86-64 and arm64).
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    assert!(size < (1 << IOC_SIZEBITS));
    (dir << IOC_DIRSHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}

/// `_IOC_SIZE(cmd)`.
pub const fn ioc_size(cmd: u32) -> usize {
    ((cmd >> IOC_SIZESHIFT) & ((1 << IOC_SIZEBITS) - 1)) as usize
}

/// `_IOC_DIR(cmd)`.
pub const fn ioc_dir(cmd: u32) -> u32 {
    cmd >> IOC_DIRSHIFT
}

/// Region statistics (`daxfs stat MOUNTPOINT`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaxfsStat {
    /// [`DAXFS_ABI_VERSION`].
    pub version: u32,
    /// `size_of` this struct.
    pub size: u32,
    /// Region size in bytes.
    pub region_size: u64,
    /// Out: block size in bytes.
    pub block_size: u64,
    /// Out: blocks in use.
    pub used_blocks: u64,
    /// Out: free blocks.
    pub free_blocks: u64,
    /// Free, 2 MiB-aligned runs of 512 blocks.
    pub free_2m_runs: u64,
    /// Out: inodes in use.
    pub inodes_used: u64,
    /// Out: inodes the table holds.
    pub inodes_total: u64,
    /// Out: blocks recorded bad.
    pub bad_blocks: u64,
}

/// One DAX mapping of a file.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaxfsMapping {
    /// First file page (4 KiB index) covered.
    pub file_index: u64,
    /// First region block.
    pub region_block: u64,
    /// Entry flags (`LOCKED`, `PMD`, `ZERO`, `EMPTY`), as the `dax` layer names them, or
    /// [`MAPPING_POISONED`] for a poisoned page (which has no entry; order 0).
    pub flags: u32,
    /// 0 = PTE (4 KiB), 9 = PMD (2 MiB).
    pub order: u8,
    /// Zero.
    pub _pad: [u8; 3],
}

/// `DaxfsMapping::flags` of a poisoned page: nothing maps it, `region_block` is its bad block.
pub const MAPPING_POISONED: u32 = 1 << 8;

/// Entries per `DAXFS_IOC_GET_MAPPINGS` call.
pub const MAPPINGS_PER_CALL: usize = 128;

/// `DAXFS_IOC_GET_MAPPINGS`: a page of a file's mappings.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaxfsMappings {
    /// [`DAXFS_ABI_VERSION`].
    pub version: u32,
    /// `size_of` this struct.
    pub size: u32,
    /// In: report entries whose `file_index >= cursor`. Out: the cursor for the next call.
    pub cursor: u64,
    /// Out: valid entries in `entries`.
    pub count: u32,
    /// Out: [`MORE`] when entries remain after this page.
    pub flags: u32,
    /// Out: the entries, `count` of them valid.
    pub entries: [DaxfsMapping; MAPPINGS_PER_CALL],
}

/// `flags` bit of paged answers: call again with the returned cursor.
pub const MORE: u32 = 1;

/// `DaxfsPoison::flags`: the offset is a region offset (ioctl on any file of the mount, usually
/// its root); without it the offset is in the file the ioctl is issued on.
pub const POISON_BY_REGION: u32 = 1;
const POISON_KNOWN_FLAGS: u32 = POISON_BY_REGION;

/// `DAXFS_IOC_INJECT_POISON` / `DAXFS_IOC_CLEAR_POISON`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaxfsPoison {
    /// [`DAXFS_ABI_VERSION`].
    pub version: u32,
    /// `size_of` this struct.
    pub size: u32,
    /// 0 or [`POISON_BY_REGION`].
    pub flags: u32,
    /// Zero.
    pub _reserved: u32,
    /// Byte offset in the file or region.
    pub offset: u64,
    /// Length in bytes (> 0).
    pub len: u64,
}

/// `DAXFS_IOC_INJECT_POISON_REPORT` / `DAXFS_IOC_CLEAR_POISON_REPORT`: the input of
/// [`DaxfsPoison`], then what the request did. Page and block counts are 4 KiB units.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaxfsPoisonReport {
    /// [`DAXFS_ABI_VERSION`].
    pub version: u32,
    /// `size_of` this struct.
    pub size: u32,
    /// In: 0 or [`POISON_BY_REGION`].
    pub flags: u32,
    /// Zero.
    pub _reserved: u32,
    /// In: byte offset in the file or region.
    pub offset: u64,
    /// In: length in bytes (> 0).
    pub len: u64,
    /// Out: the byte range acted on, `[start, end)`: the request widened to whole pages.
    pub start: u64,
    /// Out: see `start`.
    pub end: u64,
    /// Out: file pages newly poisoned (inject) or cleared, now holes (clear).
    pub pages: u64,
    /// Out: region blocks newly recorded bad (inject) or removed from the table (clear).
    pub blocks: u64,
    /// Out: pages (file requests) or blocks (region requests) of the range already in the
    /// requested state: poisoned already (inject), not poisoned (clear).
    pub already: u64,
    /// Out: pages of a file range with no block (inject: nothing to poison there).
    pub holes: u64,
    /// Out: files whose pages changed.
    pub files: u64,
}

impl DaxfsPoisonReport {
    /// The request part, as [`DaxfsPoison`] carries it.
    pub fn request(&self) -> DaxfsPoison {
        DaxfsPoison {
            version: self.version,
            size: size_of::<DaxfsPoison>() as u32,
            flags: self.flags,
            _reserved: self._reserved,
            offset: self.offset,
            len: self.len,
        }
    }
}

/// One bad range.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaxfsBadBlock {
    /// Byte offset in the region.
    pub region_offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Owning inode, 0 when free.
    pub ino: u64,
    /// Offset in the owning file, `u64::MAX` when unknown or free.
    pub file_offset: u64,
}

/// Records per `DAXFS_IOC_LIST_BADBLOCKS` call.
pub const BADBLOCKS_PER_CALL: usize = 64;

/// `DAXFS_IOC_LIST_BADBLOCKS`: a page of the bad-block list.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaxfsBadBlocks {
    /// [`DAXFS_ABI_VERSION`].
    pub version: u32,
    /// `size_of` this struct.
    pub size: u32,
    /// In: report ranges with `region_offset >= cursor`. Out: the cursor for the next call.
    pub cursor: u64,
    /// Out: valid entries in `entries`.
    pub count: u32,
    /// Out: [`MORE`].
    pub flags: u32,
    /// Out: the ranges, `count` of them valid.
    pub entries: [DaxfsBadBlock; BADBLOCKS_PER_CALL],
}

/// Counter slots of `DAXFS_IOC_REQ_STATS`: one per FUSE opcode number below 64.
pub const REQ_STATS_SLOTS: usize = 64;

/// `DAXFS_IOC_REQ_STATS`: the daemon's per-opcode request counters (`daxfs stat --requests`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaxfsReqStats {
    /// [`DAXFS_ABI_VERSION`].
    pub version: u32,
    /// `size_of` this struct.
    pub size: u32,
    /// In: 0 (no flags defined yet; anything else is `EINVAL`).
    pub flags: u32,
    /// Out: valid slots in `counts` ([`REQ_STATS_SLOTS`]).
    pub nr_slots: u32,
    /// Out: requests received since mount, indexed by the kernel's FUSE opcode number
    /// (`FUSE_WRITE` = 16, `FUSE_GETXATTR` = 22, ...; `include/uapi/linux/fuse.h`). Opcodes the
    /// daemon does not implement stay 0.
    pub counts: [u64; REQ_STATS_SLOTS],
}

/// `DaxfsServerInfo::transport`: requests come by reads of `/dev/fuse`.
pub const TRANSPORT_DEV_FUSE: u32 = 1;
/// `DaxfsServerInfo::transport`: requests come through FUSE-over-io_uring rings.
pub const TRANSPORT_IO_URING: u32 = 2;

/// `DAXFS_IOC_SERVER_INFO`: how the daemon serves the mount (`daxfs stat MOUNTPOINT`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaxfsServerInfo {
    /// [`DAXFS_ABI_VERSION`].
    pub version: u32,
    /// `size_of` this struct.
    pub size: u32,
    /// In: 0 (no flags defined yet; anything else is `EINVAL`).
    pub flags: u32,
    /// Out: [`TRANSPORT_DEV_FUSE`] or [`TRANSPORT_IO_URING`], as agreed with the kernel at INIT.
    pub transport: u32,
}

/// `_IOWR(0xDA, 11, DaxfsServerInfo)`.
pub const DAXFS_IOC_SERVER_INFO: u32 = ioc(
    IOC_READ | IOC_WRITE,
    DAXFS_IOC_MAGIC,
    11,
    size_of::<DaxfsServerInfo>(),
);

/// `_IOWR(0xDA, 1, DaxfsStat)`.
pub const DAXFS_IOC_STAT: u32 = ioc(
    IOC_READ | IOC_WRITE,
    DAXFS_IOC_MAGIC,
    1,
    size_of::<DaxfsStat>(),
);
/// `_IOWR(0xDA, 2, DaxfsMappings)`.
pub const DAXFS_IOC_GET_MAPPINGS: u32 = ioc(
    IOC_READ | IOC_WRITE,
    DAXFS_IOC_MAGIC,
    2,
    size_of::<DaxfsMappings>(),
);
/// `_IOW(0xDA, 3, DaxfsPoison)`.
pub const DAXFS_IOC_INJECT_POISON: u32 =
    ioc(IOC_WRITE, DAXFS_IOC_MAGIC, 3, size_of::<DaxfsPoison>());
/// `_IOW(0xDA, 4, DaxfsPoison)`.
pub const DAXFS_IOC_CLEAR_POISON: u32 =
    ioc(IOC_WRITE, DAXFS_IOC_MAGIC, 4, size_of::<DaxfsPoison>());
/// `_IOWR(0xDA, 9, DaxfsPoisonReport)`.
pub const DAXFS_IOC_INJECT_POISON_REPORT: u32 = ioc(
    IOC_READ | IOC_WRITE,
    DAXFS_IOC_MAGIC,
    9,
    size_of::<DaxfsPoisonReport>(),
);
/// `_IOWR(0xDA, 10, DaxfsPoisonReport)`.
pub const DAXFS_IOC_CLEAR_POISON_REPORT: u32 = ioc(
    IOC_READ | IOC_WRITE,
    DAXFS_IOC_MAGIC,
    10,
    size_of::<DaxfsPoisonReport>(),
);
/// `_IOWR(0xDA, 5, DaxfsBadBlocks)`.
pub const DAXFS_IOC_LIST_BADBLOCKS: u32 = ioc(
    IOC_READ | IOC_WRITE,
    DAXFS_IOC_MAGIC,
    5,
    size_of::<DaxfsBadBlocks>(),
);

/// `_IOWR(0xDA, 6, DaxfsReqStats)`.
pub const DAXFS_IOC_REQ_STATS: u32 = ioc(
    IOC_READ | IOC_WRITE,
    DAXFS_IOC_MAGIC,
    6,
    size_of::<DaxfsReqStats>(),
);

/// `struct fsxattr` of `<linux/fs.h>` (`FS_IOC_FSGETXATTR` / `FS_IOC_FSSETXATTR`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsXattr {
    /// `FS_XFLAG_*` bits.
    pub fsx_xflags: u32,
    /// Extent size hint (daxfs: 0).
    pub fsx_extsize: u32,
    /// Extents (out only).
    pub fsx_nextents: u32,
    /// Project id (daxfs: 0).
    pub fsx_projid: u32,
    /// CoW extent size hint (daxfs: 0).
    pub fsx_cowextsize: u32,
    /// Zero.
    pub fsx_pad: [u8; 8],
}
/// `struct fstrim_range` of `<linux/fs.h>` (`FITRIM`): in, the byte range and the shortest run
/// worth discarding; out, `len` = the bytes discarded.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FstrimRange {
    /// First byte of the filesystem to consider.
    pub start: u64,
    /// Bytes to consider (out: bytes discarded).
    pub len: u64,
    /// Shortest free run to discard, in bytes.
    pub minlen: u64,
}
/// `FITRIM` = `_IOWR('X', 121, struct fstrim_range)` (`fstrim(8)`, on the mount's root).
pub const FITRIM: u32 = ioc(IOC_READ | IOC_WRITE, b'X', 121, size_of::<FstrimRange>());
/// `FS_IOC_GETFLAGS` = `_IOR('f', 1, long)` (the kernel's FUSE client sends it with an `int`).
pub const FS_IOC_GETFLAGS: u32 = ioc(IOC_READ, b'f', 1, size_of::<libc::c_long>());
/// `FS_IOC_SETFLAGS` = `_IOW('f', 2, long)`.
pub const FS_IOC_SETFLAGS: u32 = ioc(IOC_WRITE, b'f', 2, size_of::<libc::c_long>());
/// `FS_IOC_FSGETXATTR` = `_IOR('X', 31, struct fsxattr)`.
pub const FS_IOC_FSGETXATTR: u32 = ioc(IOC_READ, b'X', 31, size_of::<FsXattr>());
/// `FS_IOC_FSSETXATTR` = `_IOW('X', 32, struct fsxattr)`.
pub const FS_IOC_FSSETXATTR: u32 = ioc(IOC_WRITE, b'X', 32, size_of::<FsXattr>());
/// `FS_XFLAG_DAX`: the per-inode DAX flag (`dax=inode`).
pub const FS_XFLAG_DAX: u32 = 0x0000_8000;

/// A plain-old-data argument struct: every bit pattern is valid, no padding holes that matter.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain only integers and arrays of integers (or of such
/// structs), and have no implicit padding, so that any byte string of the right length is a
/// valid value and every value can be viewed as bytes.
pub unsafe trait Pod: Copy + 'static {
    /// An all-zero value.
    fn zeroed() -> Self {
        // SAFETY: the trait's contract says all-zero bytes are a valid value.
        unsafe { std::mem::zeroed() }
    }
    /// The value's bytes.
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: `Self` has no padding (trait contract), so all `size_of` bytes are initialised.
        unsafe { std::slice::from_raw_parts(self as *const Self as *const u8, size_of::<Self>()) }
    }
    /// The value's bytes, writable.
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `as_bytes`; any bytes written keep the value valid (trait contract).
        unsafe { std::slice::from_raw_parts_mut(self as *mut Self as *mut u8, size_of::<Self>()) }
    }
    /// Reads a value from the front of `bytes`; `None` when `bytes` is too short.
    fn read_from(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Self>() {
            return None;
        }
        let mut v = Self::zeroed();
        v.as_bytes_mut()
            .copy_from_slice(&bytes[..size_of::<Self>()]);
        Some(v)
    }
}

// SAFETY: all these structs are #[repr(C)], made only of u64/u32/u8 fields laid out without
// implicit padding (checked by the size assertions below and the unit tests).
unsafe impl Pod for DaxfsStat {}
// SAFETY: see above.
unsafe impl Pod for DaxfsMapping {}
// SAFETY: see above.
unsafe impl Pod for DaxfsMappings {}
// SAFETY: see above.
unsafe impl Pod for DaxfsPoison {}
// SAFETY: see above.
unsafe impl Pod for DaxfsPoisonReport {}
// SAFETY: see above.
unsafe impl Pod for DaxfsServerInfo {}
// SAFETY: see above.
unsafe impl Pod for DaxfsBadBlock {}
// SAFETY: see above.
unsafe impl Pod for DaxfsBadBlocks {}
// SAFETY: see above.
unsafe impl Pod for DaxfsReqStats {}
// SAFETY: see above.
unsafe impl Pod for FsXattr {}
// SAFETY: see above (three u64).
unsafe impl Pod for FstrimRange {}

const _: () = assert!(size_of::<DaxfsStat>() == 72);
const _: () = assert!(size_of::<DaxfsMapping>() == 24);
const _: () = assert!(size_of::<DaxfsMappings>() == 24 + 24 * MAPPINGS_PER_CALL);
const _: () = assert!(size_of::<DaxfsPoison>() == 32);
const _: () = assert!(size_of::<DaxfsPoisonReport>() == 88);
const _: () = assert!(size_of::<DaxfsServerInfo>() == 16);
const _: () = assert!(size_of::<DaxfsBadBlock>() == 32);
const _: () = assert!(size_of::<DaxfsBadBlocks>() == 24 + 32 * BADBLOCKS_PER_CALL);
const _: () = assert!(size_of::<DaxfsReqStats>() == 16 + 8 * REQ_STATS_SLOTS);
const _: () = assert!(size_of::<FsXattr>() == 28);

/// A request struct with the common header.
pub trait Versioned: Pod {
    /// A zeroed struct with `version` and `size` filled in for this build.
    fn new_request() -> Self;
    /// The header fields `(version, size)`.
    fn header(&self) -> (u32, u32);
}

macro_rules! versioned {
    ($($t:ty),*) => {$(
        impl Versioned for $t {
            fn new_request() -> Self {
                let mut v = Self::zeroed();
                v.version = DAXFS_ABI_VERSION;
                v.size = size_of::<Self>() as u32;
                v
            }
            fn header(&self) -> (u32, u32) {
                (self.version, self.size)
            }
        }
    )*};
}
versioned!(
    DaxfsStat,
    DaxfsMappings,
    DaxfsPoison,
    DaxfsPoisonReport,
    DaxfsServerInfo,
    DaxfsBadBlocks,
    DaxfsReqStats
);

pub mod direct;
pub mod xfs;

/// Decodes a request's input bytes and checks its header.
///
/// Return: the struct, or `EINVAL` when the input is short, the version is not
/// [`DAXFS_ABI_VERSION`] or the size field is not this struct's size.
pub fn check_header<T: Versioned>(input: &[u8]) -> Result<T, Errno> {
    let v = T::read_from(input).ok_or(Errno::EINVAL)?;
    let (version, size) = v.header();
    if version != DAXFS_ABI_VERSION || size as usize != size_of::<T>() {
        return Err(Errno::EINVAL);
    }
    Ok(v)
}

/// Checks a poison request's arguments against the space it addresses.
///
/// `limit` is the region size for [`POISON_BY_REGION`], else the file size. Region offsets must
/// be 4 KiB-aligned (bad blocks are whole blocks); a file range is widened to whole pages by the
/// handler. Return: `EINVAL` for unknown flags, a zero length, an overflowing or out-of-range
/// range, or an unaligned region offset.
pub fn check_poison(p: &DaxfsPoison, limit: u64) -> Result<(), Errno> {
    if p.flags & !POISON_KNOWN_FLAGS != 0 || p._reserved != 0 {
        return Err(Errno::EINVAL);
    }
    if p.len == 0 {
        return Err(Errno::EINVAL);
    }
    let end = p.offset.checked_add(p.len).ok_or(Errno::EINVAL)?;
    if end > limit {
        return Err(Errno::EINVAL);
    }
    if p.flags & POISON_BY_REGION != 0 && p.offset % 4096 != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// The name of a daxfs request number, for messages.
pub fn request_name(cmd: u32) -> Option<&'static str> {
    Some(match cmd {
        DAXFS_IOC_STAT => "DAXFS_IOC_STAT",
        DAXFS_IOC_GET_MAPPINGS => "DAXFS_IOC_GET_MAPPINGS",
        DAXFS_IOC_INJECT_POISON => "DAXFS_IOC_INJECT_POISON",
        DAXFS_IOC_CLEAR_POISON => "DAXFS_IOC_CLEAR_POISON",
        DAXFS_IOC_INJECT_POISON_REPORT => "DAXFS_IOC_INJECT_POISON_REPORT",
        DAXFS_IOC_CLEAR_POISON_REPORT => "DAXFS_IOC_CLEAR_POISON_REPORT",
        DAXFS_IOC_SERVER_INFO => "DAXFS_IOC_SERVER_INFO",
        DAXFS_IOC_LIST_BADBLOCKS => "DAXFS_IOC_LIST_BADBLOCKS",
        DAXFS_IOC_REQ_STATS => "DAXFS_IOC_REQ_STATS",
        _ => return direct::request_name(cmd),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_nix_macros() {
        assert_eq!(
            DAXFS_IOC_STAT as u64,
            nix::request_code_readwrite!(0xDA, 1, size_of::<DaxfsStat>()) as u64
        );
        assert_eq!(
            DAXFS_IOC_INJECT_POISON as u64,
            nix::request_code_write!(0xDA, 3, size_of::<DaxfsPoison>()) as u64
        );
        assert_eq!(
            DAXFS_IOC_LIST_BADBLOCKS as u64,
            nix::request_code_readwrite!(0xDA, 5, size_of::<DaxfsBadBlocks>()) as u64
        );
        // The published values (a change here breaks the ABI: bump DAXFS_ABI_VERSION instead).
        assert_eq!(DAXFS_IOC_STAT, 0xc048_da01);
        assert_eq!(DAXFS_IOC_GET_MAPPINGS, 0xcc18_da02);
        assert_eq!(DAXFS_IOC_INJECT_POISON, 0x4020_da03);
        assert_eq!(DAXFS_IOC_CLEAR_POISON, 0x4020_da04);
        assert_eq!(DAXFS_IOC_LIST_BADBLOCKS, 0xc818_da05);
        assert_eq!(DAXFS_IOC_REQ_STATS, 0xc210_da06);
        assert_eq!(DAXFS_IOC_INJECT_POISON_REPORT, 0xc058_da09);
        assert_eq!(DAXFS_IOC_CLEAR_POISON_REPORT, 0xc058_da0a);
        assert_eq!(DAXFS_IOC_SERVER_INFO, 0xc010_da0b);
        assert_eq!(
            DAXFS_IOC_CLEAR_POISON_REPORT as u64,
            nix::request_code_readwrite!(0xDA, 10, size_of::<DaxfsPoisonReport>()) as u64
        );
        assert_eq!(
            DAXFS_IOC_REQ_STATS as u64,
            nix::request_code_readwrite!(0xDA, 6, size_of::<DaxfsReqStats>()) as u64
        );
        // The well-known values of <linux/fs.h>.
        assert_eq!(FS_IOC_FSGETXATTR, 0x801c_581f);
        assert_eq!(FS_IOC_FSSETXATTR, 0x401c_5820);
        assert_eq!(FITRIM, 0xc018_5879);
    }

    #[test]
    fn sizes_are_encoded_for_fuse() {
        for (cmd, size) in [
            (DAXFS_IOC_STAT, size_of::<DaxfsStat>()),
            (DAXFS_IOC_GET_MAPPINGS, size_of::<DaxfsMappings>()),
            (DAXFS_IOC_INJECT_POISON, size_of::<DaxfsPoison>()),
            (DAXFS_IOC_CLEAR_POISON, size_of::<DaxfsPoison>()),
            (
                DAXFS_IOC_INJECT_POISON_REPORT,
                size_of::<DaxfsPoisonReport>(),
            ),
            (
                DAXFS_IOC_CLEAR_POISON_REPORT,
                size_of::<DaxfsPoisonReport>(),
            ),
            (DAXFS_IOC_LIST_BADBLOCKS, size_of::<DaxfsBadBlocks>()),
            (DAXFS_IOC_REQ_STATS, size_of::<DaxfsReqStats>()),
        ] {
            assert_eq!(ioc_size(cmd), size);
            assert_ne!(
                ioc_dir(cmd) & IOC_WRITE,
                0,
                "every request carries a header"
            );
            assert!(request_name(cmd).is_some());
        }
        assert_eq!(ioc_dir(DAXFS_IOC_INJECT_POISON), IOC_WRITE);
        assert_eq!(ioc_dir(DAXFS_IOC_STAT), IOC_READ | IOC_WRITE);
    }

    #[test]
    fn header_round_trip_and_rejections() {
        let s = DaxfsStat::new_request();
        let got: DaxfsStat = check_header(s.as_bytes()).unwrap();
        assert_eq!(got, s);
        let mut bad = s;
        bad.version = 2;
        assert_eq!(
            check_header::<DaxfsStat>(bad.as_bytes()),
            Err(Errno::EINVAL)
        );
        let mut bad = s;
        bad.size = 8;
        assert_eq!(
            check_header::<DaxfsStat>(bad.as_bytes()),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check_header::<DaxfsStat>(&s.as_bytes()[..10]),
            Err(Errno::EINVAL)
        );
        let m = DaxfsMappings::new_request();
        assert_eq!(m.size as usize, size_of::<DaxfsMappings>());
        assert!(check_header::<DaxfsMappings>(m.as_bytes()).is_ok());
    }

    #[test]
    fn poison_arguments() {
        let mut p = DaxfsPoison::new_request();
        p.offset = 4096;
        p.len = 4096;
        assert_eq!(check_poison(&p, 1 << 20), Ok(()));
        // Zero length.
        let mut z = p;
        z.len = 0;
        assert_eq!(check_poison(&z, 1 << 20), Err(Errno::EINVAL));
        // Past the end and overflowing.
        let mut e = p;
        e.offset = (1 << 20) - 4096;
        e.len = 8192;
        assert_eq!(check_poison(&e, 1 << 20), Err(Errno::EINVAL));
        let mut o = p;
        o.offset = u64::MAX - 10;
        assert_eq!(check_poison(&o, u64::MAX), Err(Errno::EINVAL));
        // Unknown flag, reserved field.
        let mut f = p;
        f.flags = 4;
        assert_eq!(check_poison(&f, 1 << 20), Err(Errno::EINVAL));
        let mut r = p;
        r._reserved = 1;
        assert_eq!(check_poison(&r, 1 << 20), Err(Errno::EINVAL));
        // Region offsets must be aligned; file offsets need not be.
        let mut u = p;
        u.offset = 100;
        assert_eq!(check_poison(&u, 1 << 20), Ok(()));
        u.flags = POISON_BY_REGION;
        assert_eq!(check_poison(&u, 1 << 20), Err(Errno::EINVAL));
    }

    #[test]
    fn pod_read_from_short_input_is_none() {
        assert!(DaxfsPoison::read_from(&[0u8; 31]).is_none());
        let mut p = DaxfsPoison::new_request();
        p.offset = 0x1122_3344_5566_7788;
        let back = DaxfsPoison::read_from(p.as_bytes()).unwrap();
        assert_eq!(back.offset, 0x1122_3344_5566_7788);
    }
}
