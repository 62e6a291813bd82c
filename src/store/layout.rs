//! Byte layout of every on-media structure, and its encoding and decoding.
//!
//! This module owns the bit-exact format (see the table in `store/mod.rs`). Everything is
//! little-endian. Each structure that is read back from media carries a crc32c, and decoding checks
//! it: a decoder never trusts a length or a block number it has not range-checked, and returns a
//! named problem ([`DecodeError`], [`CorruptReason`], [`LayoutError`]) instead of panicking on
//! garbage.

use super::corrupt::{CorruptReason, DecodeError, LayoutError};
use super::ichunk::map_blocks_for;
use super::kind::FileKind;
use crate::geometry::PAGE_SIZE;

/// Filesystem block size: one block is one region page (the unit of a PTE-order DAX entry).
pub const BLOCK: u64 = PAGE_SIZE;

/// Superblock magic, at byte 0 of the region.
pub const SB_MAGIC: [u8; 8] = *b"DAXFS\x00sb";
/// On-media format version written by this code (2: the inode-chunk map, `store::ichunk`).
/// Version 1 (no map: the whole inode table is in use) is still read and written on request.
pub const VERSION: u32 = 2;
/// Bytes of the superblock structure (the rest of block 0 is zero).
pub const SB_SIZE: usize = 128;
/// Bytes per inode record.
pub const INODE_SIZE: u64 = 256;
/// Inode records per block.
pub const INODES_PER_BLOCK: u64 = BLOCK / INODE_SIZE;
/// Journal blocks (header + body).
pub const JOURNAL_BLOCKS: u64 = 16;
/// Bad-block table blocks.
pub const BADBLK_BLOCKS: u64 = 1;
/// Extents held inline in an inode record.
pub const INLINE_EXTENTS: usize = 4;
/// Bytes per extent.
pub const EXTENT_SIZE: usize = 24;
/// Header bytes of a block-map chain block.
pub const CHAIN_HDR: usize = 32;
/// Extents per chain block.
pub const EXTENTS_PER_CHAIN: usize = (BLOCK as usize - CHAIN_HDR) / EXTENT_SIZE;
/// Bytes per directory slot.
pub const DIRENT_SIZE: u64 = 272;
/// Directory slots per directory block.
pub const DIRENTS_PER_BLOCK: u64 = 15;
/// Header bytes of an xattr block.
pub const XATTR_HDR: usize = 16;
/// The largest extent size hint, in blocks (xfs's `XFS_MAX_BMBT_EXTLEN`, 2^21; through
/// `fsx_extsize`, a `u32` of bytes, at most 2^20 - 1 can be set).
pub const MAX_EXTSIZE_BLOCKS: u32 = 1 << 21;
/// Largest file size: 2^63 - 1 bytes, the kernel's `MAX_LFS_FILESIZE` (FUSE's `s_maxbytes`), as
/// ext4 with huge files and xfs allow. Extents carry 64-bit pages; nothing in the daemon is
/// sized by a file's length (sparse files cost what they map).
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;

const CHAIN_MAGIC: u32 = u32::from_le_bytes(*b"DXMP");
const XATTR_MAGIC: u32 = u32::from_le_bytes(*b"DXXA");

/// Reads the little-endian `u32` at byte `o` of `b`.
pub fn get32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
/// Reads the little-endian `u64` at byte `o` of `b`.
pub fn get64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}
/// Writes `v` as a little-endian `u32` at byte `o` of `b`.
pub fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
/// Writes `v` as a little-endian `u64` at byte `o` of `b`.
pub fn put64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

/// The superblock (block 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// On-media format version of this region (1 or 2).
    pub version: u32,
    /// Region bytes at mkfs.
    pub size: u64,
    /// Block size in bytes ([`BLOCK`]).
    pub block_size: u32,
    /// Inode record size in bytes ([`INODE_SIZE`]).
    pub inode_size: u32,
    /// First block of the journal.
    pub journal_start: u64,
    /// Journal length in blocks.
    pub journal_blocks: u64,
    /// First block of the bad-block table.
    pub badblk_start: u64,
    /// Bad-block table length in blocks (the head block of the range table).
    pub badblk_blocks: u64,
    /// Blocks of the inode-chunk map (version 2; 0 in version 1), right after the bad-block table.
    pub ichunk_blocks: u64,
    /// First block of the inode table.
    pub itable_start: u64,
    /// Inode table length in blocks.
    pub itable_blocks: u64,
    /// Highest inode number (records 0..=inodes_total exist; 0 is unused).
    pub inodes_total: u64,
    /// First block of the data area (after the inode table).
    pub data_start: u64,
    /// Blocks in the region.
    pub total_blocks: u64,
    /// mkfs time (ns since the epoch), also a format instance id.
    pub created: u64,
}

impl Superblock {
    /// The layout mkfs uses for a region of `len` bytes with `inodes` inodes.
    pub fn for_region(len: u64, inodes: u64, created: u64) -> Superblock {
        Superblock::for_region_version(len, inodes, created, VERSION)
    }

    /// As [`Self::for_region`], in format `version` (1 or 2).
    pub fn for_region_version(len: u64, inodes: u64, created: u64, version: u32) -> Superblock {
        let total_blocks = len / BLOCK;
        let itable_blocks = (inodes + 1).div_ceil(INODES_PER_BLOCK);
        let journal_start = 1;
        let badblk_start = journal_start + JOURNAL_BLOCKS;
        let ichunk_blocks = if version >= 2 {
            map_blocks_for(inodes)
        } else {
            0
        };
        let itable_start = badblk_start + BADBLK_BLOCKS + ichunk_blocks;
        Superblock {
            version,
            ichunk_blocks,
            size: total_blocks * BLOCK,
            block_size: BLOCK as u32,
            inode_size: INODE_SIZE as u32,
            journal_start,
            journal_blocks: JOURNAL_BLOCKS,
            badblk_start,
            badblk_blocks: BADBLK_BLOCKS,
            itable_start,
            itable_blocks,
            inodes_total: inodes,
            data_start: itable_start + itable_blocks,
            total_blocks,
            created,
        }
    }

    /// Encodes the superblock into its on-media bytes, with its crc32c.
    pub fn encode(&self) -> [u8; SB_SIZE] {
        let mut b = [0u8; SB_SIZE];
        b[0..8].copy_from_slice(&SB_MAGIC);
        put32(&mut b, 8, self.version);
        put64(&mut b, 16, self.size);
        put32(&mut b, 24, self.block_size);
        put32(&mut b, 28, self.inode_size);
        put64(&mut b, 32, self.journal_start);
        put64(&mut b, 40, self.journal_blocks);
        put64(&mut b, 48, self.badblk_start);
        put64(&mut b, 56, self.badblk_blocks);
        put64(&mut b, 64, self.itable_start);
        put64(&mut b, 72, self.itable_blocks);
        put64(&mut b, 80, self.inodes_total);
        put64(&mut b, 88, self.data_start);
        put64(&mut b, 96, self.total_blocks);
        put64(&mut b, 104, self.created);
        put32(&mut b, 112, self.ichunk_blocks as u32);
        let crc = crc32c::crc32c(&b[..SB_SIZE - 4]);
        put32(&mut b, SB_SIZE - 4, crc);
        b
    }

    /// Decodes and checks magic, checksum and version (not the layout: see [`Self::check_layout`]).
    pub fn decode(b: &[u8]) -> Result<Superblock, CorruptReason> {
        if b.len() < SB_SIZE || b[0..8] != SB_MAGIC {
            return Err(CorruptReason::NotDaxfs);
        }
        let computed = crc32c::crc32c(&b[..SB_SIZE - 4]);
        let stored = get32(b, SB_SIZE - 4);
        if computed != stored {
            return Err(CorruptReason::SuperblockChecksum { stored, computed });
        }
        let version = get32(b, 8);
        if version > VERSION {
            return Err(CorruptReason::NewerVersion { version });
        }
        if version == 0 {
            return Err(CorruptReason::Layout(LayoutError::Version0));
        }
        Ok(Superblock {
            version,
            size: get64(b, 16),
            block_size: get32(b, 24),
            inode_size: get32(b, 28),
            journal_start: get64(b, 32),
            journal_blocks: get64(b, 40),
            badblk_start: get64(b, 48),
            badblk_blocks: get64(b, 56),
            itable_start: get64(b, 64),
            itable_blocks: get64(b, 72),
            inodes_total: get64(b, 80),
            data_start: get64(b, 88),
            total_blocks: get64(b, 96),
            created: get64(b, 104),
            ichunk_blocks: get32(b, 112) as u64,
        })
    }

    /// Checks that the layout fields describe this format exactly.
    pub fn check_layout(&self) -> Result<(), LayoutError> {
        if self.block_size as u64 != BLOCK {
            return Err(LayoutError::BlockSize(self.block_size));
        }
        if self.inode_size as u64 != INODE_SIZE {
            return Err(LayoutError::InodeSize(self.inode_size));
        }
        if self.size != self.total_blocks.wrapping_mul(BLOCK) {
            return Err(LayoutError::SizeMismatch);
        }
        if self.journal_start != 1 || self.journal_blocks != JOURNAL_BLOCKS {
            return Err(LayoutError::JournalLocation);
        }
        if self.badblk_start != self.journal_start + self.journal_blocks
            || self.badblk_blocks != BADBLK_BLOCKS
        {
            return Err(LayoutError::BadTableLocation);
        }
        if self.inodes_total < 2 || self.inodes_total > (1 << 40) {
            return Err(LayoutError::InodeCount(self.inodes_total));
        }
        let ichunk_blocks = if self.version >= 2 {
            map_blocks_for(self.inodes_total)
        } else {
            0
        };
        if self.ichunk_blocks != ichunk_blocks {
            return Err(LayoutError::ChunkMapLocation);
        }
        if self.itable_start != self.badblk_start + self.badblk_blocks + self.ichunk_blocks
            || self.itable_blocks != (self.inodes_total + 1).div_ceil(INODES_PER_BLOCK)
        {
            return Err(LayoutError::InodeTableLocation);
        }
        if self.data_start != self.itable_start + self.itable_blocks
            || self.data_start >= self.total_blocks
        {
            return Err(LayoutError::DataAreaLocation);
        }
        Ok(())
    }

    /// Region byte offset of inode record `ino`.
    pub fn inode_off(&self, ino: u64) -> u64 {
        self.itable_start * BLOCK + ino * INODE_SIZE
    }
    /// Region byte offset of the journal.
    pub fn journal_off(&self) -> u64 {
        self.journal_start * BLOCK
    }
    /// Region byte offset of the bad-block table.
    pub fn badblk_off(&self) -> u64 {
        self.badblk_start * BLOCK
    }
    /// Region byte offset of the inode-chunk map (version 2).
    pub fn ichunk_off(&self) -> u64 {
        (self.badblk_start + self.badblk_blocks) * BLOCK
    }
    /// Whether `[block, block + len)` lies inside the data area.
    pub fn in_data(&self, block: u64, len: u64) -> bool {
        block >= self.data_start
            && block
                .checked_add(len)
                .is_some_and(|e| e <= self.total_blocks)
    }
}

/// One extent of a block map: file pages `[page, page + len)` live in region blocks
/// `[block, block + len)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extent {
    /// First file page of the extent.
    pub page: u64,
    /// First region block of the extent.
    pub block: u64,
    /// Length in pages (and blocks).
    pub len: u64,
}

impl Extent {
    fn encode(&self, b: &mut [u8]) {
        put64(b, 0, self.page);
        put64(b, 8, self.block);
        put64(b, 16, self.len);
    }
    fn decode(b: &[u8]) -> Extent {
        Extent {
            page: get64(b, 0),
            block: get64(b, 8),
            len: get64(b, 16),
        }
    }
}

/// An inode record (256 bytes in the inode table).
///
/// ```text
///   0 mode u32 (0 = free)   4 nlink u32   8 uid u32  12 gid u32  16 flags u32  20 rdev u32
///  24 size u64             32 generation u64
///  40 atime i64 ns  48 mtime  56 ctime  64 crtime
///  72 parent u64 (directories)          80 xattr block u64 (0 = none)
///  88 map chain head u64 (0 = none)     96 extent count u64
/// 104 4 inline extents (24 bytes each) when extent count <= 4
/// 200 extent size hint u32, in blocks (0 = none; regions made before it hold 0 here)
/// 252 crc32c of bytes [0, 252)
/// ```
/// An all-zero record is a never-used free inode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InodeRec {
    /// File type and permission bits (`st_mode`); 0 marks a free record.
    pub mode: u32,
    /// Hard-link count.
    pub nlink: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Inode flags (the `FS_*_FL` bits daxfs keeps).
    pub flags: u32,
    /// Device number of a character or block special file.
    pub rdev: u32,
    /// File size in bytes.
    pub size: u64,
    /// Generation number: raised each time the inode number is used again, so an old handle to it goes stale.
    pub generation: u64,
    /// Last access time, ns since the epoch.
    pub atime: i64,
    /// Last data modification time, ns since the epoch.
    pub mtime: i64,
    /// Last status change time, ns since the epoch.
    pub ctime: i64,
    /// Creation (birth) time, ns since the epoch.
    pub crtime: i64,
    /// Parent directory's inode number (directories only; 0 otherwise).
    pub parent: u64,
    /// Block holding the inode's extended attributes (0 = none).
    pub xattr_block: u64,
    /// First block of the block-map chain (0 = none: the extents are inline).
    pub map_chain: u64,
    /// Number of extents in the block map.
    pub nextents: u64,
    /// The block map itself when `nextents` ≤ [`INLINE_EXTENTS`].
    pub inline: [Extent; INLINE_EXTENTS],
    /// Extent size hint in blocks (`fsx_extsize`; 0 = none): kept and reported, inherited by
    /// new files and directories of a directory that has one.
    pub extsize: u32,
}

impl InodeRec {
    /// Whether the record is free (never used, or released).
    pub fn is_free(&self) -> bool {
        self.mode == 0
    }
    /// The file type the mode names, if it is a known one.
    pub fn kind(&self) -> Option<FileKind> {
        FileKind::from_mode(self.mode)
    }

    /// Encodes the record into its 256 on-media bytes, with its crc32c.
    pub fn encode(&self) -> [u8; INODE_SIZE as usize] {
        let mut b = [0u8; INODE_SIZE as usize];
        put32(&mut b, 0, self.mode);
        put32(&mut b, 4, self.nlink);
        put32(&mut b, 8, self.uid);
        put32(&mut b, 12, self.gid);
        put32(&mut b, 16, self.flags);
        put32(&mut b, 20, self.rdev);
        put64(&mut b, 24, self.size);
        put64(&mut b, 32, self.generation);
        put64(&mut b, 40, self.atime as u64);
        put64(&mut b, 48, self.mtime as u64);
        put64(&mut b, 56, self.ctime as u64);
        put64(&mut b, 64, self.crtime as u64);
        put64(&mut b, 72, self.parent);
        put64(&mut b, 80, self.xattr_block);
        put64(&mut b, 88, self.map_chain);
        put64(&mut b, 96, self.nextents);
        for (i, e) in self.inline.iter().enumerate() {
            e.encode(&mut b[104 + i * EXTENT_SIZE..]);
        }
        put32(&mut b, 200, self.extsize);
        let crc = crc32c::crc32c(&b[..252]);
        put32(&mut b, 252, crc);
        b
    }

    /// Decodes a record; `Err` is a checksum mismatch.
    pub fn decode(b: &[u8]) -> Result<InodeRec, DecodeError> {
        if b.iter().all(|&x| x == 0) {
            return Ok(InodeRec::default());
        }
        if crc32c::crc32c(&b[..252]) != get32(b, 252) {
            return Err(DecodeError::RecordChecksum);
        }
        let mut inline = [Extent::default(); INLINE_EXTENTS];
        for (i, e) in inline.iter_mut().enumerate() {
            *e = Extent::decode(&b[104 + i * EXTENT_SIZE..]);
        }
        Ok(InodeRec {
            mode: get32(b, 0),
            nlink: get32(b, 4),
            uid: get32(b, 8),
            gid: get32(b, 12),
            flags: get32(b, 16),
            rdev: get32(b, 20),
            size: get64(b, 24),
            generation: get64(b, 32),
            atime: get64(b, 40) as i64,
            mtime: get64(b, 48) as i64,
            ctime: get64(b, 56) as i64,
            crtime: get64(b, 64) as i64,
            parent: get64(b, 72),
            xattr_block: get64(b, 80),
            map_chain: get64(b, 88),
            nextents: get64(b, 96),
            inline,
            extsize: get32(b, 200),
        })
    }
}

/// Encodes one block-map chain block holding `ext` (at most [`EXTENTS_PER_CHAIN`]).
///
/// ```text
/// 0 magic "DXMP"  4 crc32c of [8, 32 + 24 * count)  8 ino u64  16 next block u64 (0 = last)
/// 24 count u32  28 reserved   32.. extents
/// ```
pub fn encode_chain(ino: u64, next: u64, ext: &[Extent]) -> Vec<u8> {
    debug_assert!(ext.len() <= EXTENTS_PER_CHAIN);
    let mut b = vec![0u8; BLOCK as usize];
    put32(&mut b, 0, CHAIN_MAGIC);
    put64(&mut b, 8, ino);
    put64(&mut b, 16, next);
    put32(&mut b, 24, ext.len() as u32);
    for (i, e) in ext.iter().enumerate() {
        e.encode(&mut b[CHAIN_HDR + i * EXTENT_SIZE..]);
    }
    let end = CHAIN_HDR + ext.len() * EXTENT_SIZE;
    let crc = crc32c::crc32c(&b[8..end]);
    put32(&mut b, 4, crc);
    b
}

/// Decodes a chain block: (next, extents).
pub fn decode_chain(ino: u64, b: &[u8]) -> Result<(u64, Vec<Extent>), DecodeError> {
    if get32(b, 0) != CHAIN_MAGIC {
        return Err(DecodeError::ChainMagic);
    }
    let count = get32(b, 24) as usize;
    if count > EXTENTS_PER_CHAIN {
        return Err(DecodeError::ChainCount);
    }
    let end = CHAIN_HDR + count * EXTENT_SIZE;
    if crc32c::crc32c(&b[8..end]) != get32(b, 4) {
        return Err(DecodeError::ChainChecksum);
    }
    if get64(b, 8) != ino {
        return Err(DecodeError::ChainOwner);
    }
    let ext = (0..count)
        .map(|i| Extent::decode(&b[CHAIN_HDR + i * EXTENT_SIZE..]))
        .collect();
    Ok((get64(b, 16), ext))
}

/// A directory slot (272 bytes; 15 per directory block).
///
/// ```text
/// 0 ino u64 (0 = empty)  8 crc32c of [0,8) ++ [12, 16 + namelen)  12 kind u8  13 namelen u8
/// 14 reserved u16        16 name (up to 255 bytes)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirent {
    /// Inode number of the entry (never 0 for a used slot).
    pub ino: u64,
    /// File type, cached in the entry for `readdir`.
    pub kind: FileKind,
    /// Entry name (1 to 255 bytes, no `/` or NUL).
    pub name: Vec<u8>,
}

fn dirent_crc(b: &[u8], namelen: usize) -> u32 {
    let c = crc32c::crc32c(&b[0..8]);
    crc32c::crc32c_append(c, &b[12..16 + namelen])
}

impl Dirent {
    /// Encodes the entry into its on-media slot, with its crc32c.
    pub fn encode(&self) -> [u8; DIRENT_SIZE as usize] {
        let mut b = [0u8; DIRENT_SIZE as usize];
        let n = self.name.len().min(255);
        put64(&mut b, 0, self.ino);
        b[12] = self.kind.code();
        b[13] = n as u8;
        b[16..16 + n].copy_from_slice(&self.name[..n]);
        let crc = dirent_crc(&b, n);
        put32(&mut b, 8, crc);
        b
    }
    /// `Ok(None)` for an empty slot.
    pub fn decode(b: &[u8]) -> Result<Option<Dirent>, DecodeError> {
        let ino = get64(b, 0);
        if ino == 0 {
            return Ok(None);
        }
        let n = b[13] as usize;
        if dirent_crc(b, n) != get32(b, 8) {
            return Err(DecodeError::DirentChecksum);
        }
        let kind = FileKind::from_code(b[12]).ok_or(DecodeError::DirentKind)?;
        let name = b[16..16 + n].to_vec();
        if name.is_empty()
            || name.contains(&b'/')
            || name.contains(&0)
            || name == b"."
            || name == b".."
        {
            return Err(DecodeError::DirentName);
        }
        Ok(Some(Dirent { ino, kind, name }))
    }
}

/// Region byte offset of directory slot `slot`, given the block holding its page.
pub fn dirent_off(block: u64, slot: u64) -> u64 {
    block * BLOCK + (slot % DIRENTS_PER_BLOCK) * DIRENT_SIZE
}

/// Most blocks an inode's xattr area may span (room for one 64 KiB value).
pub const XATTR_MAX_BLOCKS: usize = 17;
/// Largest total of (8 + name + value) bytes over all xattrs of one inode.
pub const XATTR_SPACE: usize = XATTR_MAX_BLOCKS * BLOCK as usize - XATTR_HDR;
/// Largest single xattr value (the kernel's XATTR_SIZE_MAX).
pub const XATTR_VALUE_MAX: usize = 65536;
const XATTR_ENT: usize = 8;

/// Bytes the xattr area of `x` takes (header included).
pub fn xattr_area_len(x: &[(Vec<u8>, Vec<u8>)]) -> usize {
    XATTR_HDR
        + x.iter()
            .map(|(n, v)| XATTR_ENT + n.len() + v.len())
            .sum::<usize>()
}

/// Blocks the xattr area of `x` takes (0 when there are none).
pub fn xattr_area_blocks(x: &[(Vec<u8>, Vec<u8>)]) -> u64 {
    if x.is_empty() {
        0
    } else {
        (xattr_area_len(x) as u64).div_ceil(BLOCK)
    }
}

/// Encodes an inode's xattr area: one or more contiguous blocks.
///
/// ```text
/// 0 magic "DXXA"  4 crc32c of [8, 16 + used)  8 used u32  12 count u32
/// 16.. entries: name_len u8, reserved [u8; 3], value_len u32, name, value
/// ```
/// The area spans `ceil((16 + used) / 4096)` blocks. Returns `None` when the entries do not fit
/// in [`XATTR_SPACE`].
pub fn encode_xattrs(x: &[(Vec<u8>, Vec<u8>)]) -> Option<Vec<u8>> {
    let len = xattr_area_len(x);
    if len - XATTR_HDR > XATTR_SPACE
        || x.iter()
            .any(|(n, v)| n.len() > 255 || n.is_empty() || v.len() > XATTR_VALUE_MAX)
    {
        return None;
    }
    let mut b = vec![0u8; len.next_multiple_of(BLOCK as usize)];
    let mut at = XATTR_HDR;
    for (n, v) in x {
        b[at] = n.len() as u8;
        put32(&mut b, at + 4, v.len() as u32);
        b[at + XATTR_ENT..at + XATTR_ENT + n.len()].copy_from_slice(n);
        b[at + XATTR_ENT + n.len()..at + XATTR_ENT + n.len() + v.len()].copy_from_slice(v);
        at += XATTR_ENT + n.len() + v.len();
    }
    put32(&mut b, 0, XATTR_MAGIC);
    put32(&mut b, 8, (at - XATTR_HDR) as u32);
    put32(&mut b, 12, x.len() as u32);
    let crc = crc32c::crc32c(&b[8..at]);
    put32(&mut b, 4, crc);
    Some(b)
}

/// An inode's extended attributes: (name, value) pairs in insertion order.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The number of blocks of an xattr area, from its first block.
pub fn xattr_blocks(first: &[u8]) -> Result<u64, DecodeError> {
    if get32(first, 0) != XATTR_MAGIC {
        return Err(DecodeError::XattrMagic);
    }
    let used = get32(first, 8) as usize;
    if used > XATTR_SPACE {
        return Err(DecodeError::XattrLength);
    }
    Ok(((XATTR_HDR + used) as u64).div_ceil(BLOCK))
}

/// Decodes a whole xattr area (all its blocks).
pub fn decode_xattrs(b: &[u8]) -> Result<Xattrs, DecodeError> {
    let n = xattr_blocks(b)?;
    let used = get32(b, 8) as usize;
    if (b.len() as u64) < n * BLOCK {
        return Err(DecodeError::XattrShort);
    }
    if crc32c::crc32c(&b[8..XATTR_HDR + used]) != get32(b, 4) {
        return Err(DecodeError::XattrChecksum);
    }
    let count = get32(b, 12) as usize;
    let mut out = Vec::new();
    let mut at = XATTR_HDR;
    let end = XATTR_HDR + used;
    for _ in 0..count {
        if at + XATTR_ENT > end {
            return Err(DecodeError::XattrOverrun);
        }
        let nl = b[at] as usize;
        let vl = get32(b, at + 4) as usize;
        if nl == 0 || vl > XATTR_VALUE_MAX || at + XATTR_ENT + nl + vl > end {
            return Err(DecodeError::XattrOverrun);
        }
        let s = at + XATTR_ENT;
        out.push((b[s..s + nl].to_vec(), b[s + nl..s + nl + vl].to_vec()));
        at = s + nl + vl;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_roundtrip_and_checks() {
        let sb = Superblock::for_region(64 << 20, 4096, 7);
        sb.check_layout().unwrap();
        assert_eq!((sb.version, sb.ichunk_blocks, sb.itable_start), (2, 1, 19));
        let v1 = Superblock::for_region_version(64 << 20, 4096, 7, 1);
        v1.check_layout().unwrap();
        assert_eq!((v1.ichunk_blocks, v1.itable_start), (0, 18));
        assert_eq!(Superblock::decode(&v1.encode()).unwrap(), v1);
        let mut bad = sb.clone();
        bad.ichunk_blocks = 0;
        assert_eq!(bad.check_layout(), Err(LayoutError::ChunkMapLocation));
        let mut b = sb.encode();
        assert_eq!(Superblock::decode(&b).unwrap(), sb);
        b[20] ^= 1;
        assert!(matches!(
            Superblock::decode(&b),
            Err(CorruptReason::SuperblockChecksum { .. })
        ));
        b[0] = b'X';
        assert_eq!(Superblock::decode(&b), Err(CorruptReason::NotDaxfs));
    }

    #[test]
    fn inode_dirent_chain_xattr_roundtrip() {
        let r = InodeRec {
            mode: libc::S_IFREG | 0o644,
            nlink: 1,
            size: 12345,
            mtime: -5,
            nextents: 1,
            inline: [
                Extent {
                    page: 1,
                    block: 2,
                    len: 3,
                },
                Extent::default(),
                Extent::default(),
                Extent::default(),
            ],
            ..Default::default()
        };
        let mut b = r.encode();
        assert_eq!(InodeRec::decode(&b).unwrap(), r);
        b[30] ^= 4;
        assert_eq!(InodeRec::decode(&b), Err(DecodeError::RecordChecksum));
        assert!(InodeRec::decode(&[0u8; 256]).unwrap().is_free());

        let d = Dirent {
            ino: 9,
            kind: FileKind::Symlink,
            name: b"abc".to_vec(),
        };
        assert_eq!(Dirent::decode(&d.encode()).unwrap(), Some(d));
        let ext: Vec<Extent> = (0..10)
            .map(|i| Extent {
                page: i,
                block: 100 + i,
                len: 1,
            })
            .collect();
        let c = encode_chain(5, 77, &ext);
        assert_eq!(decode_chain(5, &c).unwrap(), (77, ext));
        assert_eq!(decode_chain(6, &c), Err(DecodeError::ChainOwner));
        let x = vec![(b"user.a".to_vec(), b"v".to_vec())];
        assert_eq!(decode_xattrs(&encode_xattrs(&x).unwrap()).unwrap(), x);
        let big = vec![
            (b"user.a".to_vec(), vec![7u8; 65536]),
            (b"user.b".to_vec(), vec![8u8; 100]),
        ];
        let e = encode_xattrs(&big).unwrap();
        assert_eq!(e.len() as u64, xattr_area_blocks(&big) * BLOCK);
        assert_eq!(xattr_blocks(&e).unwrap(), 17);
        assert_eq!(decode_xattrs(&e).unwrap(), big);
        let too_big = vec![(b"user.a".to_vec(), vec![0u8; 65537])];
        assert!(encode_xattrs(&too_big).is_none());
    }
}
