//! The direct-mapping control requests: how a process under `daxfs exec` finds out that a file is
//! on daxfs and where its pages are in the region (docs/DESIGN.md, "Direct mapping").
//!
//! Owns: the request numbers and `#[repr(C)]` structs of `DAXFS_IOC_DIRECT_INFO` and
//! `DAXFS_IOC_GET_FMAP` (the analogue of famfs's `GET_FMAP`), and their argument checks. The rules
//! of the parent module hold (fixed sizes encoded in the numbers, a `version, size` header, lists
//! paged with a cursor).
//!
//! | request | number | value | struct | bytes |
//! |---|---|---|---|---|
//! | `DAXFS_IOC_DIRECT_INFO` | `_IOWR(0xDA, 7, DaxfsDirectInfo)` | `0xd0b0da07` | [`DaxfsDirectInfo`] | 4272 |
//! | `DAXFS_IOC_GET_FMAP` | `_IOWR(0xDA, 8, DaxfsFmap)` | `0xe048da08` | [`DaxfsFmap`] | 8264 |
//!
//! `DIRECT_INFO` (any file of the mount) names the region (path, device and inode numbers, size)
//! and the daemon's lease socket. `GET_FMAP` (on the file) returns the extents of a page range:
//! data extents with their region offset and entry order, holes, poisoned pages; pages at or
//! after `file_size.div_ceil(4096)` are past the end of the file and not reported. With
//! [`FMAP_LEASE`] the daemon first records a *layout lease* of the range for the lease
//! connection `token` names (it will revoke the range there before it changes it); with
//! [`FMAP_ALLOCATE`] it first allocates the holes inside the file (as a write fault would), with
//! [`FMAP_WRITE`] it updates mtime and ctime (a write through the mapping). Allocation, lease
//! and time update happen on the call whose `cursor` is `first`; later pages only report.

use std::mem::size_of;

use nix::errno::Errno;

use super::{ioc, Pod, Versioned, DAXFS_ABI_VERSION, DAXFS_IOC_MAGIC, IOC_READ, IOC_WRITE};

/// Bytes of [`DaxfsDirectInfo::socket`]: a `sun_path` (abstract name, leading NUL included).
pub const SOCKET_NAME_MAX: usize = 112;
/// Bytes of [`DaxfsDirectInfo::region_path`] (`PATH_MAX`).
pub const REGION_PATH_MAX: usize = 4096;

/// [`DaxfsDirectInfo::flags`]: the daemon offers direct mappings (its lease socket is up).
pub const DIRECT_AVAILABLE: u32 = 1;
/// [`DaxfsDirectInfo::flags`]: the file the request was issued on is accessed directly
/// (`dax=always`, or `dax=inode` with `FS_XFLAG_DAX`): only such files are mapped directly.
pub const DIRECT_INODE_DAX: u32 = 2;
/// [`DaxfsDirectInfo::flags`]: the mount is read-only.
pub const DIRECT_READ_ONLY: u32 = 4;

/// `DAXFS_IOC_DIRECT_INFO`: the region and the lease socket of a mount.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaxfsDirectInfo {
    /// [`DAXFS_ABI_VERSION`].
    pub version: u32,
    /// `size_of` this struct.
    pub size: u32,
    /// Out: [`DIRECT_AVAILABLE`], [`DIRECT_INODE_DAX`], [`DIRECT_READ_ONLY`].
    pub flags: u32,
    /// Zero.
    pub _reserved: u32,
    /// Out: the daemon's pid (the lease socket's peer).
    pub daemon_pid: u32,
    /// Out: 0 regular file, 1 block device, 2 device DAX.
    pub region_kind: u32,
    /// Out: `st_dev` and `st_ino` of the region, to check that the path opens the same object.
    pub region_dev: u64,
    /// Out: `st_ino` of the region.
    pub region_ino: u64,
    /// Out: region size in bytes.
    pub region_size: u64,
    /// Out: a random number naming this mount's daemon (changes on every mount).
    pub mount_id: u64,
    /// Out: valid bytes of `socket` and `region_path`.
    pub socket_len: u32,
    /// Out: valid bytes of `region_path`.
    pub path_len: u32,
    /// Out: the lease socket's `sun_path` (an abstract name: starts with a NUL byte).
    pub socket: [u8; SOCKET_NAME_MAX],
    /// Out: the region's absolute path.
    pub region_path: [u8; REGION_PATH_MAX],
}

/// [`DaxfsFmap::flags`]: record a layout lease of the range for connection `token`.
pub const FMAP_LEASE: u32 = 1;
/// [`DaxfsFmap::flags`]: allocate the holes of the range inside the file first (zeroed, durable
/// on return, as `MAP_SYNC` needs). Needs a lease connection with write access to the region.
pub const FMAP_ALLOCATE: u32 = 2;
/// [`DaxfsFmap::flags`]: the caller writes through a mapping: update mtime and ctime.
pub const FMAP_WRITE: u32 = 4;
const FMAP_KNOWN_FLAGS: u32 = FMAP_LEASE | FMAP_ALLOCATE | FMAP_WRITE;

/// [`DaxfsFmapExtent::kind`]: pages backed by region bytes `[region_offset, +nr_pages * 4096)`.
pub const FMAP_DATA: u32 = 1;
/// [`DaxfsFmapExtent::kind`]: a hole (reads as zeros; nothing in the region).
pub const FMAP_HOLE: u32 = 2;
/// [`DaxfsFmapExtent::kind`]: poisoned pages (`region_offset` is the bad block's).
pub const FMAP_POISONED: u32 = 3;

/// One extent of a file's map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaxfsFmapExtent {
    /// First file page (4 KiB index).
    pub page: u64,
    /// Pages in the extent.
    pub nr_pages: u64,
    /// Region byte offset of `page` ([`FMAP_DATA`], [`FMAP_POISONED`]); 0 for holes.
    pub region_offset: u64,
    /// [`FMAP_DATA`], [`FMAP_HOLE`] or [`FMAP_POISONED`].
    pub kind: u32,
    /// Order of the DAX entry behind a data extent: 9 when it is one whole PMD entry (2 MiB, both
    /// `page` and `region_offset` aligned), else 0.
    pub order: u32,
}

/// Extents per `DAXFS_IOC_GET_FMAP` call.
pub const FMAP_EXTENTS_PER_CALL: usize = 256;

/// `DAXFS_IOC_GET_FMAP`: a page of a file range's extents.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaxfsFmap {
    /// [`DAXFS_ABI_VERSION`].
    pub version: u32,
    /// `size_of` this struct.
    pub size: u32,
    /// In: [`FMAP_LEASE`], [`FMAP_ALLOCATE`], [`FMAP_WRITE`].
    pub flags: u32,
    /// Out: valid entries in `extents`.
    pub count: u32,
    /// In: the lease connection's token (from its welcome message); 0 without a lease.
    pub token: u64,
    /// In: the caller's registration counter for this file (a release with a smaller epoch does
    /// not drop the lease this call records).
    pub epoch: u64,
    /// In: the page range `[first, end)`.
    pub first: u64,
    /// End of the page range (exclusive).
    pub end: u64,
    /// In: first page to report (`first` on the first call). Out: where the next call resumes.
    pub cursor: u64,
    /// Out: the file size in bytes.
    pub file_size: u64,
    /// Out: [`super::MORE`] when extents remain after this page.
    pub out_flags: u32,
    /// Zero.
    pub _reserved: u32,
    /// Out: the extents, `count` of them valid, in file order.
    pub extents: [DaxfsFmapExtent; FMAP_EXTENTS_PER_CALL],
}

/// `_IOWR(0xDA, 7, DaxfsDirectInfo)`.
pub const DAXFS_IOC_DIRECT_INFO: u32 = ioc(
    IOC_READ | IOC_WRITE,
    DAXFS_IOC_MAGIC,
    7,
    size_of::<DaxfsDirectInfo>(),
);
/// `_IOWR(0xDA, 8, DaxfsFmap)`.
pub const DAXFS_IOC_GET_FMAP: u32 = ioc(
    IOC_READ | IOC_WRITE,
    DAXFS_IOC_MAGIC,
    8,
    size_of::<DaxfsFmap>(),
);

// SAFETY: #[repr(C)], only u64/u32/u8 fields and arrays laid out without implicit padding
// (checked by the size assertions below).
unsafe impl Pod for DaxfsDirectInfo {}
// SAFETY: see above.
unsafe impl Pod for DaxfsFmapExtent {}
// SAFETY: see above.
unsafe impl Pod for DaxfsFmap {}

const _: () = assert!(size_of::<DaxfsDirectInfo>() == 64 + SOCKET_NAME_MAX + REGION_PATH_MAX);
const _: () = assert!(size_of::<DaxfsFmapExtent>() == 32);
const _: () = assert!(size_of::<DaxfsFmap>() == 72 + 32 * FMAP_EXTENTS_PER_CALL);

versioned!(DaxfsDirectInfo, DaxfsFmap);

/// Checks a `GET_FMAP` request's arguments. Return: `EINVAL` for unknown flags, a reserved field
/// set, an empty or inverted range, or a cursor outside it.
pub fn check_fmap(f: &DaxfsFmap) -> Result<(), Errno> {
    if f.flags & !FMAP_KNOWN_FLAGS != 0 || f._reserved != 0 {
        return Err(Errno::EINVAL);
    }
    if f.first >= f.end || f.cursor < f.first || f.cursor > f.end {
        return Err(Errno::EINVAL);
    }
    if f.flags & (FMAP_LEASE | FMAP_ALLOCATE | FMAP_WRITE) != 0 && f.token == 0 {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// Whether `cmd` is one of this module's requests.
pub fn is_direct_request(cmd: u32) -> bool {
    matches!(cmd, DAXFS_IOC_DIRECT_INFO | DAXFS_IOC_GET_FMAP)
}

/// The name of a direct-mapping request number, for messages.
pub fn request_name(cmd: u32) -> Option<&'static str> {
    Some(match cmd {
        DAXFS_IOC_DIRECT_INFO => "DAXFS_IOC_DIRECT_INFO",
        DAXFS_IOC_GET_FMAP => "DAXFS_IOC_GET_FMAP",
        _ => return None,
    })
}

impl DaxfsDirectInfo {
    /// The lease socket's name (`sun_path` bytes).
    pub fn socket_name(&self) -> &[u8] {
        &self.socket[..(self.socket_len as usize).min(SOCKET_NAME_MAX)]
    }

    /// The region path's bytes.
    pub fn region_path_bytes(&self) -> &[u8] {
        &self.region_path[..(self.path_len as usize).min(REGION_PATH_MAX)]
    }
}

#[cfg(test)]
mod tests {
    use super::super::{check_header, ioc_dir, ioc_size};
    use super::*;

    #[test]
    fn numbers_and_sizes() {
        assert_eq!(
            DAXFS_IOC_DIRECT_INFO as u64,
            nix::request_code_readwrite!(0xDA, 7, size_of::<DaxfsDirectInfo>()) as u64
        );
        assert_eq!(
            DAXFS_IOC_GET_FMAP as u64,
            nix::request_code_readwrite!(0xDA, 8, size_of::<DaxfsFmap>()) as u64
        );
        // The published values (a change breaks the ABI).
        assert_eq!(DAXFS_IOC_DIRECT_INFO, 0xd0b0_da07);
        assert_eq!(DAXFS_IOC_GET_FMAP, 0xe048_da08);
        for cmd in [DAXFS_IOC_DIRECT_INFO, DAXFS_IOC_GET_FMAP] {
            assert_eq!(ioc_dir(cmd), IOC_READ | IOC_WRITE);
            assert!(is_direct_request(cmd) && request_name(cmd).is_some());
            assert!(super::super::request_name(cmd).is_some());
        }
        assert_eq!(ioc_size(DAXFS_IOC_GET_FMAP), size_of::<DaxfsFmap>());
        assert!(!is_direct_request(super::super::DAXFS_IOC_STAT));
    }

    #[test]
    fn fmap_arguments() {
        let mut f = DaxfsFmap::new_request();
        assert_eq!(check_header::<DaxfsFmap>(f.as_bytes()), Ok(f));
        f.first = 4;
        f.end = 8;
        f.cursor = 4;
        assert_eq!(check_fmap(&f), Ok(()));
        let mut e = f;
        e.end = 4;
        assert_eq!(check_fmap(&e), Err(Errno::EINVAL), "empty range");
        let mut c = f;
        c.cursor = 9;
        assert_eq!(check_fmap(&c), Err(Errno::EINVAL), "cursor past the range");
        let mut u = f;
        u.flags = 8;
        assert_eq!(check_fmap(&u), Err(Errno::EINVAL), "unknown flag");
        let mut t = f;
        t.flags = FMAP_ALLOCATE;
        assert_eq!(
            check_fmap(&t),
            Err(Errno::EINVAL),
            "allocation needs a token"
        );
        t.token = 7;
        assert_eq!(check_fmap(&t), Ok(()));
    }

    #[test]
    fn info_accessors_clamp() {
        let mut i = DaxfsDirectInfo::new_request();
        i.socket_len = 5000;
        i.path_len = 3;
        i.region_path[..3].copy_from_slice(b"/rg");
        assert_eq!(i.socket_name().len(), SOCKET_NAME_MAX);
        assert_eq!(i.region_path_bytes(), b"/rg");
    }
}
