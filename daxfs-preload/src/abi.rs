//! The daemon's interface as the library sees it: the `#[repr(C)]` structs and request numbers of
//! `DAXFS_IOC_DIRECT_INFO` / `DAXFS_IOC_GET_FMAP` (the daemon's `src/ioctl/direct.rs`) and the
//! lease messages (its `src/direct/wire.rs`), written again here so that the library links only
//! libc. Rules: sizes and numbers are asserted at compile time against the published values; a
//! change on either side is an ABI change (the daemon's tests check the same values).

pub const PAGE: u64 = 4096;
pub const PMD_PAGES: u64 = 512;
pub const ABI_VERSION: u32 = 1;
/// `_IOWR(0xDA, 7, DaxfsDirectInfo)`.
pub const IOC_DIRECT_INFO: u64 = 0xd0b0_da07;
/// `_IOWR(0xDA, 8, DaxfsFmap)`.
pub const IOC_GET_FMAP: u64 = 0xe048_da08;
/// `FUSE_SUPER_MAGIC`: only files of FUSE mounts are asked.
pub const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

pub const DIRECT_AVAILABLE: u32 = 1;
pub const DIRECT_INODE_DAX: u32 = 2;
pub const DIRECT_READ_ONLY: u32 = 4;

pub const FMAP_LEASE: u32 = 1;
pub const FMAP_ALLOCATE: u32 = 2;
pub const FMAP_WRITE: u32 = 4;
pub const FMAP_DATA: u32 = 1;
pub const FMAP_HOLE: u32 = 2;
pub const FMAP_POISONED: u32 = 3;
pub const FMAP_MORE: u32 = 1;
pub const FMAP_EXTENTS_PER_CALL: usize = 256;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct DirectInfo {
    pub version: u32,
    pub size: u32,
    pub flags: u32,
    pub _reserved: u32,
    pub daemon_pid: u32,
    pub region_kind: u32,
    pub region_dev: u64,
    pub region_ino: u64,
    pub region_size: u64,
    pub mount_id: u64,
    pub socket_len: u32,
    pub path_len: u32,
    pub socket: [u8; 112],
    pub region_path: [u8; 4096],
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct FmapExtent {
    pub page: u64,
    pub nr_pages: u64,
    pub region_offset: u64,
    pub kind: u32,
    pub order: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Fmap {
    pub version: u32,
    pub size: u32,
    pub flags: u32,
    pub count: u32,
    pub token: u64,
    pub epoch: u64,
    pub first: u64,
    pub end: u64,
    pub cursor: u64,
    pub file_size: u64,
    pub out_flags: u32,
    pub _reserved: u32,
    pub extents: [FmapExtent; FMAP_EXTENTS_PER_CALL],
}

const _: () = assert!(std::mem::size_of::<DirectInfo>() == 4272);
const _: () = assert!(std::mem::size_of::<FmapExtent>() == 32);
const _: () = assert!(std::mem::size_of::<Fmap>() == 8264);
// The request numbers encode the sizes (bits 16..30).
const _: () = assert!((IOC_DIRECT_INFO >> 16) & 0x3fff == 4272);
const _: () = assert!((IOC_GET_FMAP >> 16) & 0x3fff == 8264);

impl DirectInfo {
    pub const fn request() -> DirectInfo {
        DirectInfo {
            version: ABI_VERSION,
            size: std::mem::size_of::<DirectInfo>() as u32,
            flags: 0,
            _reserved: 0,
            daemon_pid: 0,
            region_kind: 0,
            region_dev: 0,
            region_ino: 0,
            region_size: 0,
            mount_id: 0,
            socket_len: 0,
            path_len: 0,
            socket: [0; 112],
            region_path: [0; 4096],
        }
    }
}

impl Fmap {
    pub const fn request() -> Fmap {
        Fmap {
            version: ABI_VERSION,
            size: std::mem::size_of::<Fmap>() as u32,
            flags: 0,
            count: 0,
            token: 0,
            epoch: 0,
            first: 0,
            end: 0,
            cursor: 0,
            file_size: 0,
            out_flags: 0,
            _reserved: 0,
            extents: [FmapExtent {
                page: 0,
                nr_pages: 0,
                region_offset: 0,
                kind: 0,
                order: 0,
            }; FMAP_EXTENTS_PER_CALL],
        }
    }
}

/// Lease message kinds and revocation reasons.
pub const MSG_WELCOME: u32 = 1;
pub const MSG_REVOKE: u32 = 2;
pub const MSG_ACK: u32 = 3;
pub const MSG_REGISTER: u32 = 4;
pub const MSG_SYNC: u32 = 5;
pub const MSG_SYNCED: u32 = 6;
pub const MSG_RELEASE: u32 = 7;
pub const MSG_EXTENT: u32 = 8;
pub const EXTENT_DATA: u32 = 1;
pub const EXTENT_HOLE: u32 = 2;
pub const REASON_EXTEND: u32 = 4;
pub const REASON_INVALIDATE: u32 = 5;
pub const ACCESS_RW: u64 = 3;

/// One lease message (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Msg {
    pub kind: u32,
    pub reason: u32,
    pub seq: u64,
    pub ino: u64,
    pub first: u64,
    pub end: u64,
    pub arg: u64,
    pub arg2: u64,
    pub _pad: u64,
}

const _: () = assert!(std::mem::size_of::<Msg>() == 64);

impl Msg {
    pub const fn new(kind: u32) -> Msg {
        Msg {
            kind,
            reason: 0,
            seq: 0,
            ino: 0,
            first: 0,
            end: 0,
            arg: 0,
            arg2: 0,
            _pad: 0,
        }
    }
}
