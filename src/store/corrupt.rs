//! What is wrong with a region: one variant per kind of damage, carrying the numbers that locate
//! it, for the decoders ([`DecodeError`]), the superblock checks ([`LayoutError`]), the journal
//! replay ([`JournalDamage`]) and the image loader ([`CorruptReason`]).
//!
//! Rules it keeps: every message comes from `Display` and names what is wrong and, where the user
//! can act, what to do (docs/DESIGN.md, "Errors"); callers and tests match variants, never message
//! text. [`CorruptReason::is_fatal`] is the one place that decides whether a problem makes serving
//! the region unsafe (open refuses it) or only untidy (fsck lists it, open serves the region).

/// A damaged on-media structure, as its decoder finds it (the caller adds where it is).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// An inode record's crc32c does not match.
    #[error("record checksum mismatch")]
    RecordChecksum,
    /// A block-map chain block does not start with its magic.
    #[error("block map chain block has a bad magic")]
    ChainMagic,
    /// A block-map chain block claims more extents than fit.
    #[error("block map chain block has a bad extent count")]
    ChainCount,
    /// A block-map chain block's crc32c does not match.
    #[error("block map chain checksum mismatch")]
    ChainChecksum,
    /// A block-map chain block names another inode as its owner.
    #[error("block map chain block belongs to another inode")]
    ChainOwner,
    /// A directory slot's crc32c does not match.
    #[error("entry checksum mismatch")]
    DirentChecksum,
    /// A directory slot has an unknown file-type code.
    #[error("entry has a bad file type")]
    DirentKind,
    /// A directory slot's name is empty, `.`, `..` or holds `/` or NUL.
    #[error("entry has an invalid name")]
    DirentName,
    /// An xattr area does not start with its magic.
    #[error("xattr block has a bad magic")]
    XattrMagic,
    /// An xattr area claims more bytes than an area may hold.
    #[error("xattr block has a bad length")]
    XattrLength,
    /// Fewer bytes were given than the xattr area spans.
    #[error("xattr area is short")]
    XattrShort,
    /// An xattr area's crc32c does not match.
    #[error("xattr block checksum mismatch")]
    XattrChecksum,
    /// An xattr entry runs past the used bytes of its area.
    #[error("xattr block entries overrun")]
    XattrOverrun,
    /// The bad-block table does not start with its magic.
    #[error("bad-block table has a bad magic")]
    BadTableMagic,
    /// The bad-block table claims more entries than fit.
    #[error("bad-block table has a bad count")]
    BadTableCount,
    /// The bad-block table's crc32c does not match.
    #[error("bad-block table checksum mismatch")]
    BadTableChecksum,
    /// A bad-block range block does not start with its magic.
    #[error("bad-block range block has a bad magic")]
    BadChainMagic,
    /// A bad-block range block belongs to another version of the table or another position.
    #[error("bad-block range block is stale (another table generation or position)")]
    BadChainStale,
}

/// A superblock layout field that does not describe this format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Format version 0 (never written).
    #[error("version 0")]
    Version0,
    /// A block size other than the page size.
    #[error("block size {0} (expected {expected})", expected = crate::geometry::PAGE_SIZE)]
    BlockSize(u32),
    /// An inode record size other than this format's.
    #[error("inode size {0} (expected {expected})", expected = crate::store::layout::INODE_SIZE)]
    InodeSize(u32),
    /// The byte size is not the block count times the block size.
    #[error("size does not match the block count")]
    SizeMismatch,
    /// The journal is not where this format puts it.
    #[error("journal location")]
    JournalLocation,
    /// The bad-block table is not where this format puts it.
    #[error("bad-block table location")]
    BadTableLocation,
    /// The inode-chunk map is not of the size this format gives it.
    #[error("inode-chunk map location")]
    ChunkMapLocation,
    /// An inode count below 2 or absurdly large.
    #[error("inode count {0}")]
    InodeCount(u64),
    /// The inode table is not where this format puts it, or of the wrong size.
    #[error("inode table location")]
    InodeTableLocation,
    /// The data area does not follow the inode table inside the region.
    #[error("data area location")]
    DataAreaLocation,
}

/// What makes a committed journal transaction unusable (a torn one is just dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JournalDamage {
    /// The header is neither zero nor a journal header.
    #[error("header has an unknown magic")]
    UnknownMagic,
    /// Record `0` runs past the end of the checksummed body.
    #[error("record {0} overruns the body")]
    RecordOverrun(usize),
    /// A record targets bytes outside the metadata areas (the superblock, the journal itself, or
    /// past the region).
    #[error("record {index} targets [{off:#x}, +{len:#x}) outside the metadata areas")]
    RecordOutside {
        /// The record's position in the transaction.
        index: usize,
        /// Its region byte offset.
        off: u64,
        /// Its length in bytes.
        len: usize,
    },
}

/// One thing wrong with a region, as mount and fsck find it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CorruptReason {
    /// Block 0 does not hold a daxfs superblock.
    #[error("not a daxfs region (bad magic in the superblock); run `daxfs mkfs` to format it")]
    NotDaxfs,
    /// The superblock's crc32c does not match.
    #[error(
        "bad superblock checksum (stored {stored:#010x}, computed {computed:#010x}); run `daxfs fsck`"
    )]
    SuperblockChecksum {
        /// The checksum on media.
        stored: u32,
        /// The checksum of the bytes on media.
        computed: u32,
    },
    /// The region was formatted by a newer daxfs.
    #[error(
        "newer on-media version {version} (this daxfs supports up to {supported}); use a newer daxfs",
        supported = crate::store::layout::VERSION
    )]
    NewerVersion {
        /// The version on media.
        version: u32,
    },
    /// A superblock layout field is wrong.
    #[error("bad layout: {0}")]
    Layout(LayoutError),
    /// The region is shorter than the superblock says.
    #[error("truncated region: it has {len} bytes but the superblock says {size}")]
    Truncated {
        /// The region's length.
        len: u64,
        /// The size the superblock records.
        size: u64,
    },
    /// A committed journal transaction cannot be replayed.
    #[error("bad journal: {0}")]
    Journal(JournalDamage),
    /// The bad-block table is damaged.
    #[error("{0}")]
    BadTable(DecodeError),
    /// The inode-chunk map (which parts of the inode table hold inodes) is damaged. Not
    /// repairable: which chunks hold inodes cannot be told from the table's bytes alone.
    #[error(
        "{0}; the inodes cannot be located without it, so neither mount nor `daxfs fsck --repair` \
         can use this region (restore it from a backup)"
    )]
    ChunkMap(crate::store::ichunk::ChunkMapError),
    /// The bad-block table's ranges are not sorted and disjoint, or one is empty.
    #[error("bad-block table range [{first}, +{count}) overlaps or precedes the one before it, or is empty")]
    BadTableOrder {
        /// The range's first block.
        first: u64,
        /// Its length in blocks.
        count: u64,
    },
    /// The bad-block table's range chain points outside the data area, loops, or claims a block
    /// something else holds.
    #[error("bad-block table range chain is damaged at block {block}")]
    BadTableChain {
        /// The chain block named.
        block: u64,
    },
    /// The bad-block table lists a block outside the data area.
    #[error("bad-block table lists block {block} outside the data area")]
    BadBlockOutsideData {
        /// The listed block.
        block: u64,
    },
    /// An inode record's mode has no valid file type.
    #[error("corrupt inode {ino}: bad file type in mode {mode:#o}")]
    InodeKind {
        /// The inode.
        ino: u64,
        /// Its mode.
        mode: u32,
    },
    /// A structure of inode `ino` (its record, block-map chain or xattr area) is damaged.
    #[error("corrupt inode {ino}: {what}")]
    Inode {
        /// The inode.
        ino: u64,
        /// What its decoder found.
        what: DecodeError,
    },
    /// Inode 1 is missing or not a directory.
    #[error("root inode 1 is missing or not a directory")]
    RootMissing,
    /// A block-map chain link points outside the data area.
    #[error("corrupt inode {ino}: block map chain points outside the region (block {block})")]
    ChainOutside {
        /// The inode.
        ino: u64,
        /// The chain block named.
        block: u64,
    },
    /// A block-map chain revisits a block or is longer than its extents need.
    #[error("corrupt inode {ino}: block map chain loops")]
    ChainLoops {
        /// The inode.
        ino: u64,
    },
    /// The block map holds another number of extents than the record says.
    #[error("corrupt inode {ino}: block map holds {found} extents, the inode says {recorded}")]
    ExtentCount {
        /// The inode.
        ino: u64,
        /// Extents found in the chain.
        found: u64,
        /// Extents the record claims.
        recorded: u64,
    },
    /// An extent is empty, out of file order, or maps blocks outside the data area.
    #[error(
        "corrupt inode {ino}: block map points outside the region or is unordered (file page \
         {page}, block {block}, {len} blocks)"
    )]
    MapOutside {
        /// The inode.
        ino: u64,
        /// The extent's first file page.
        page: u64,
        /// Its first region block.
        block: u64,
        /// Its length in blocks.
        len: u64,
    },
    /// An extent ends past the largest file.
    #[error("corrupt inode {ino}: block map extent beyond the largest file")]
    ExtentBeyondMax {
        /// The inode.
        ino: u64,
    },
    /// The xattr area's first block is outside the data area.
    #[error("corrupt inode {ino}: xattr block {block} outside the region")]
    XattrOutside {
        /// The inode.
        ino: u64,
        /// The xattr block named.
        block: u64,
    },
    /// The xattr area runs past the data area.
    #[error("corrupt inode {ino}: xattr area {block} runs outside the region")]
    XattrAreaOutside {
        /// The inode.
        ino: u64,
        /// The area's first block.
        block: u64,
    },
    /// Two users claim one block (the second is dropped).
    #[error("block {block} is used twice (second user: inode {ino})")]
    BlockUsedTwice {
        /// The block.
        block: u64,
        /// The second inode claiming it.
        ino: u64,
    },
    /// A size that the block map contradicts (directories) or past the largest file.
    #[error("corrupt inode {ino}: bad size {size}")]
    BadSize {
        /// The inode.
        ino: u64,
        /// The recorded size.
        size: u64,
    },
    /// An extent size hint past the largest, or on an inode that is neither a regular file nor
    /// a directory.
    #[error("corrupt inode {ino}: extent size hint of {blocks} blocks")]
    BadExtsize {
        /// The inode.
        ino: u64,
        /// The recorded hint, in blocks.
        blocks: u32,
    },
    /// A symlink whose target length is 0 or does not fit its block.
    #[error("corrupt inode {ino}: symlink of length {size}")]
    SymlinkLength {
        /// The inode.
        ino: u64,
        /// The recorded length.
        size: u64,
    },
    /// A directory entry names an inode that is free or was dropped as corrupt.
    #[error("directory {dir} entry '{name}' points to a free or corrupt inode {ino}")]
    DirentToFree {
        /// The directory.
        dir: u64,
        /// The entry's name (lossy UTF-8).
        name: String,
        /// The inode it names.
        ino: u64,
    },
    /// A directory entry's type differs from its inode's.
    #[error("directory {dir} entry '{name}': type differs from inode {ino}")]
    DirentKindMismatch {
        /// The directory.
        dir: u64,
        /// The entry's name (lossy UTF-8).
        name: String,
        /// The inode it names.
        ino: u64,
    },
    /// Two entries of one directory have the same name.
    #[error("directory {dir}: duplicate entry '{name}'")]
    DuplicateEntry {
        /// The directory.
        dir: u64,
        /// The name (lossy UTF-8).
        name: String,
    },
    /// A directory slot is damaged.
    #[error("directory {dir} slot {slot}: {what}")]
    Slot {
        /// The directory.
        dir: u64,
        /// The slot index.
        slot: u64,
        /// What its decoder found.
        what: DecodeError,
    },
    /// A directory is named by more than one entry (or the root is named at all).
    #[error("directory {ino} is linked more than once (in directory {dir})")]
    DirLinkedTwice {
        /// The directory linked again.
        ino: u64,
        /// The directory holding the extra entry.
        dir: u64,
    },
    /// A link count that the directory entries contradict.
    #[error("wrong link count on inode {ino}: {nlink}, should be {want}")]
    WrongLinkCount {
        /// The inode.
        ino: u64,
        /// The recorded count.
        nlink: u32,
        /// The count the entries give.
        want: u32,
    },
    /// An unlinked inode still allocated (left by a crash while it was open).
    #[error("orphan inode {ino}")]
    Orphan {
        /// The inode.
        ino: u64,
    },
    /// An in-use inode no directory names.
    #[error("unreachable inode {ino} (link count {nlink}, no entry)")]
    Unreachable {
        /// The inode.
        ino: u64,
        /// Its recorded link count.
        nlink: u32,
    },
    /// A directory whose recorded parent is not the directory naming it.
    #[error("directory {ino} records parent {recorded}, is in {actual}")]
    WrongParent {
        /// The directory.
        ino: u64,
        /// The parent its record names.
        recorded: u64,
        /// The directory that names it.
        actual: u64,
    },
}

impl CorruptReason {
    /// Whether serving the region with this problem would be unsafe (open refuses it). Link
    /// counts, orphans, unreachable inodes and parent pointers are only untidy: the data and the
    /// namespace are consistent, fsck tidies them.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            CorruptReason::WrongLinkCount { .. }
                | CorruptReason::Orphan { .. }
                | CorruptReason::Unreachable { .. }
                | CorruptReason::WrongParent { .. }
        )
    }

    /// Whether `daxfs fsck --repair` can fix it: everything below the superblock and the
    /// journal (those name their own remedy in their message).
    pub fn is_repairable(&self) -> bool {
        !matches!(
            self,
            CorruptReason::NotDaxfs
                | CorruptReason::SuperblockChecksum { .. }
                | CorruptReason::NewerVersion { .. }
                | CorruptReason::Layout(_)
                | CorruptReason::Truncated { .. }
                | CorruptReason::Journal(_)
                | CorruptReason::ChunkMap(_)
        )
    }
}
