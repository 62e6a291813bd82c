//! The inode-chunk map (format version 2): which chunks of the inode table hold inode records.
//!
//! The inode table is divided into chunks of [`ICHUNK_INODES`] records (chunk `c` holds inode
//! numbers `[c * ICHUNK_INODES, (c + 1) * ICHUNK_INODES)`; record 0 is unused and lies in chunk 0).
//! A chunk whose bit is clear was never handed out: its bytes are never read (mkfs does not even
//! zero them), so mount and fsck read only the chunks in use, whatever the region's size.
//!
//! Rules it keeps:
//! - A chunk is *initialised* before its bit is set: its records are zeroed and persisted, then
//!   the bit is set by one journal transaction ([`ChunkMap::set_tx`]). A crash before that commit
//!   leaves a zeroed chunk with a clear bit (never read); after it, a chunk of free records. No
//!   inode of a chunk is used before its bit is durable.
//! - Bits are never cleared: a chunk stays in the table once used (the table's high-water mark).
//! - Each map block carries a magic, its index and a crc32c; decoding names what is wrong and a
//!   damaged map is fatal (mount refuses, fsck says why it cannot repair it).
//! - Version 1 regions have no map: every chunk counts as in use ([`ChunkMap::all_used`]), so they
//!   are read whole, as before, and never upgraded in place.
//!
//! Map block layout:
//! ```text
//! 0 magic "DXIC"  4 crc32c of [8, 4096)  8 block index u32  12 reserved u32  16.. bits (LSB first)
//! ```

use super::layout::{get32, put32, BLOCK};

/// Inode records per chunk (32 blocks of the inode table).
pub const ICHUNK_INODES: u64 = 512;
/// Header bytes of a map block.
pub const ICHUNK_HDR: usize = 16;
/// Chunks one map block covers.
pub const ICHUNKS_PER_BLOCK: u64 = (BLOCK - ICHUNK_HDR as u64) * 8;

const ICHUNK_MAGIC: u32 = u32::from_le_bytes(*b"DXIC");

/// Chunks of a table of inode numbers `0..=inodes_total`.
pub fn chunks_for(inodes_total: u64) -> u64 {
    (inodes_total + 1).div_ceil(ICHUNK_INODES)
}

/// Map blocks for a table of inode numbers `0..=inodes_total`.
pub fn map_blocks_for(inodes_total: u64) -> u64 {
    chunks_for(inodes_total).div_ceil(ICHUNKS_PER_BLOCK)
}

/// What is wrong with a map block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkMapError {
    /// The block does not start with the map magic.
    #[error("inode-chunk map block {0} has a bad magic")]
    Magic(u64),
    /// The block's crc32c does not match.
    #[error("inode-chunk map block {0} checksum mismatch")]
    Checksum(u64),
    /// The block records another index than its position.
    #[error("inode-chunk map block {0} records index {1}")]
    Index(u64, u32),
    /// A bit is set for a chunk past the end of the inode table.
    #[error("inode-chunk map marks chunk {0}, past the end of the inode table")]
    PastEnd(u64),
    /// Chunk 0 (the root inode's) is not marked.
    #[error("inode-chunk map does not mark chunk 0 (the root inode's)")]
    RootChunk,
}

/// The map in DRAM: one bit per chunk.
#[derive(Clone, Debug)]
pub struct ChunkMap {
    words: Vec<u64>,
    chunks: u64,
    /// Region byte offset of map block 0 (`None`: a version-1 region without a map).
    off: Option<u64>,
}

impl ChunkMap {
    /// An empty map of `chunks` chunks stored at region offset `off`.
    pub fn empty(chunks: u64, off: u64) -> ChunkMap {
        ChunkMap {
            words: vec![0; chunks.div_ceil(64) as usize],
            chunks,
            off: Some(off),
        }
    }

    /// A version-1 table: every chunk in use, nothing on media.
    pub fn all_used(chunks: u64) -> ChunkMap {
        let mut m = ChunkMap {
            words: vec![u64::MAX; chunks.div_ceil(64) as usize],
            chunks,
            off: None,
        };
        m.clear_tail();
        m
    }

    fn clear_tail(&mut self) {
        if self.chunks % 64 != 0 {
            if let Some(w) = self.words.last_mut() {
                *w &= (1u64 << (self.chunks % 64)) - 1;
            }
        }
    }

    /// Decodes the map from its blocks (`bytes` holds all of them, in order).
    pub fn decode(chunks: u64, off: u64, bytes: &[u8]) -> Result<ChunkMap, ChunkMapError> {
        let mut m = ChunkMap::empty(chunks, off);
        for (i, b) in bytes.chunks(BLOCK as usize).enumerate() {
            let i = i as u64;
            if b.len() < BLOCK as usize || get32(b, 0) != ICHUNK_MAGIC {
                return Err(ChunkMapError::Magic(i));
            }
            if crc32c::crc32c(&b[8..]) != get32(b, 4) {
                return Err(ChunkMapError::Checksum(i));
            }
            if get32(b, 8) as u64 != i {
                return Err(ChunkMapError::Index(i, get32(b, 8)));
            }
            for (k, byte) in b[ICHUNK_HDR..].iter().enumerate() {
                for bit in 0..8 {
                    if byte & (1 << bit) == 0 {
                        continue;
                    }
                    let c = i * ICHUNKS_PER_BLOCK + k as u64 * 8 + bit;
                    if c >= chunks {
                        return Err(ChunkMapError::PastEnd(c));
                    }
                    m.words[(c / 64) as usize] |= 1 << (c % 64);
                }
            }
        }
        if !m.is_used(0) {
            return Err(ChunkMapError::RootChunk);
        }
        Ok(m)
    }

    /// Whether the map is stored on media (format version 2).
    pub fn on_media(&self) -> bool {
        self.off.is_some()
    }

    /// Chunks of the table.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// Whether chunk `c` is in use.
    pub fn is_used(&self, c: u64) -> bool {
        c < self.chunks && self.words[(c / 64) as usize] & (1 << (c % 64)) != 0
    }

    /// Marks chunk `c` in use (in DRAM only; see [`Self::set_tx`]).
    pub fn set(&mut self, c: u64) {
        if c < self.chunks {
            self.words[(c / 64) as usize] |= 1 << (c % 64);
        }
    }

    /// The chunks in use, in order.
    pub fn used(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &bits)| {
            (0..64)
                .filter(move |b| bits & (1u64 << b) != 0)
                .map(move |b| w as u64 * 64 + b)
        })
    }

    /// Chunks in use.
    pub fn used_count(&self) -> u64 {
        self.words.iter().map(|w| w.count_ones() as u64).sum()
    }

    /// The lowest chunk not in use.
    pub fn first_unused(&self) -> Option<u64> {
        let w = self.words.iter().position(|&w| w != u64::MAX)?;
        let c = w as u64 * 64 + (!self.words[w]).trailing_zeros() as u64;
        (c < self.chunks).then_some(c)
    }

    /// The bytes of map block `i` as this map says.
    pub fn encode_block(&self, i: u64) -> Vec<u8> {
        let mut b = vec![0u8; BLOCK as usize];
        put32(&mut b, 0, ICHUNK_MAGIC);
        put32(&mut b, 8, i as u32);
        let first = i * ICHUNKS_PER_BLOCK;
        for c in first..(first + ICHUNKS_PER_BLOCK).min(self.chunks) {
            if self.is_used(c) {
                let k = (c - first) as usize;
                b[ICHUNK_HDR + k / 8] |= 1 << (k % 8);
            }
        }
        let crc = crc32c::crc32c(&b[8..]);
        put32(&mut b, 4, crc);
        b
    }

    /// The records that mark chunk `c` on media: `(region offset, bytes)` of its map block's
    /// crc32c and of the byte holding its bit, as they are once `c` is set. `None` for a
    /// version-1 map.
    pub fn set_tx(&self, c: u64) -> Option<Vec<(u64, Vec<u8>)>> {
        let off = self.off?;
        let mut next = self.clone();
        next.set(c);
        let i = c / ICHUNKS_PER_BLOCK;
        let block = next.encode_block(i);
        let k = ICHUNK_HDR + ((c % ICHUNKS_PER_BLOCK) / 8) as usize;
        let at = off + i * BLOCK;
        Some(vec![
            (at + 4, block[4..8].to_vec()),
            (at + k as u64, vec![block[k]]),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_and_set_tx() {
        let chunks = ICHUNKS_PER_BLOCK + 70;
        let mut m = ChunkMap::empty(chunks, 4096);
        m.set(0);
        m.set(5);
        m.set(ICHUNKS_PER_BLOCK + 3);
        let mut bytes: Vec<u8> = (0..2).flat_map(|i| m.encode_block(i)).collect();
        let d = ChunkMap::decode(chunks, 4096, &bytes).unwrap();
        assert_eq!(
            d.used().collect::<Vec<_>>(),
            vec![0, 5, ICHUNKS_PER_BLOCK + 3]
        );
        assert_eq!(d.first_unused(), Some(1));
        // Applying set_tx's records gives the encoding of the map with the bit set.
        for (off, data) in m.set_tx(7).unwrap() {
            let o = (off - 4096) as usize;
            bytes[o..o + data.len()].copy_from_slice(&data);
        }
        let d = ChunkMap::decode(chunks, 4096, &bytes).unwrap();
        assert!(d.is_used(7));
        assert_eq!(d.used_count(), 4);
        bytes[100] ^= 2;
        assert_eq!(
            ChunkMap::decode(chunks, 4096, &bytes).unwrap_err(),
            ChunkMapError::Checksum(0)
        );
    }

    #[test]
    fn past_end_root_and_v1() {
        let mut m = ChunkMap::empty(10, 0);
        m.set(1);
        let b = m.encode_block(0);
        assert_eq!(
            ChunkMap::decode(10, 0, &b).unwrap_err(),
            ChunkMapError::RootChunk
        );
        let mut wide = ChunkMap::empty(20, 0);
        wide.set(0);
        wide.set(15);
        let b = wide.encode_block(0);
        assert_eq!(
            ChunkMap::decode(10, 0, &b).unwrap_err(),
            ChunkMapError::PastEnd(15)
        );
        let v1 = ChunkMap::all_used(70);
        assert_eq!(v1.used_count(), 70);
        assert_eq!(v1.first_unused(), None);
        assert!(v1.set_tx(3).is_none());
    }
}
