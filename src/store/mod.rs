//! The on-media format of daxfs: layout, journal, allocator, and the image loader used by open
//! and fsck.
//!
//! # Layout (4 KiB blocks, little-endian)
//!
//! | blocks | what |
//! |---|---|
//! | 0 | superblock: magic `DAXFS\0sb`, version, region size, layout fields, crc32c |
//! | 1 .. 17 | metadata journal (16 blocks): header + redo records ([`journal`]) |
//! | 17 | bad-block table: bad ranges `(first block, count)`, 252 inline, the rest in a chain of range blocks in the data area ([`badtable`]) |
//! | 18 .. 18+M | inode-chunk map (version 2): one bit per 512-record chunk of the inode table in use ([`ichunk`]) |
//! | 18+M .. 18+M+I | inode table: 256-byte records, each with its own crc32c; record 0 unused, inode 1 = root; only chunks marked in the map are ever read |
//! | data_start .. | data area: file data, directory blocks, block-map chain blocks, xattr blocks, symlink targets |
//!
//! - **Block maps**: an inode holds up to 4 extents `(file page, region block, length)` inline;
//!   more go to a chain of block-map blocks (169 extents each, crc32c, owner inode) written
//!   copy-on-write: new chain blocks are written and persisted, then the inode record pointing at
//!   them is committed through the journal, then the old chain is freed.
//! - **Directories** are files of 272-byte slots (15 per block; inode, crc32c, type, name ≤ 255).
//!   A slot's index is its stable readdir cookie. The parent of a directory is in its inode record.
//! - **Bad blocks** are ranges, copy-on-write like block maps: new range blocks written and
//!   persisted, then the table block naming them committed through the journal, then the old
//!   chain freed. The old fixed list (format 1) is still read and rewritten as ranges on the first
//!   change.
//! - **Symlinks** keep their target (< 4096 bytes) in one data block at file page 0.
//! - **Xattrs**: one area per inode of 1..=17 contiguous blocks (`DXXA`, crc32c; room for a
//!   64 KiB value or ~1,900 small attributes), rewritten copy-on-write.
//!
//! # Crash consistency
//!
//! Metadata changes (inode records, directory slots, the bad-block table) go through the redo
//! journal ([`journal::Journal::commit`]): records + checksummed header persisted, then applied
//! home, then the header cleared; replayed at open. Ordering for data: a newly allocated block is
//! written (and zeroed where not written) and persisted before the transaction that adds it to a
//! block map commits, so a crash never exposes a stale block. Blocks unreferenced by a transaction
//! are reusable only after it is durable. The allocator lives in DRAM and is rebuilt at open from
//! the block maps, so allocations that never committed are simply free again. Inodes with link
//! count 0 (unlinked while open) are orphans and are reclaimed at the next open.

pub mod alloc;
pub mod badtable;
pub mod corrupt;
pub mod ichunk;
pub mod image;
pub mod journal;
pub mod kind;
pub mod layout;

pub use alloc::Allocator;
pub use badtable::{BadRanges, BadTable};
pub use corrupt::{CorruptReason, DecodeError, JournalDamage, LayoutError};
pub use ichunk::{ChunkMap, ChunkMapError, ICHUNK_INODES};
pub use image::{read_superblock, Fix, Image, LoadedInode, Problem, SuperblockError};
pub use journal::{Journal, JournalError, Tx};
pub use kind::FileKind;
pub use layout::*;
