//! Bad blocks as ranges: the in-DRAM set ([`BadRanges`]) and the on-media bad-block table that
//! persists it (format 2, ranges; format 1, the old fixed list of block numbers, is still read).
//!
//! The set keeps `(first block, count)` ranges as the kernel's `badblocks` does: adding a range
//! merges it with every range it overlaps or touches, removing the middle of a range splits it.
//! Memory is one map node per range, whatever the number of blocks (a failed 4 GiB range is one
//! entry).
//!
//! On media, format 2 (written by this code) is a header in the fixed table block with up to
//! [`BAD_INLINE`] ranges inline, and a chain of range blocks ([`BAD_PER_CHAIN`] ranges each) in the
//! data area for the rest:
//!
//! ```text
//! table block: 0 magic "DXB2"  4 crc32c of [8, 64 + 16 * inline)  8 total ranges u64
//!              16 first chain block u64 (0: none)  24 chain blocks u64  32 generation u64
//!              40 inline u32  44.. reserved  64.. inline ranges { first u64, count u64 }
//! chain block: 0 magic "DXBC"  4 crc32c of [8, 32 + 16 * count)  8 count u32  12 position u32
//!              16 next chain block u64 (0: last)  24 generation u64  32.. ranges
//! ```
//!
//! Rules: ranges are stored sorted and disjoint; every chain block carries the header's
//! generation and its position, so a stale or misplaced block is detected, never trusted. An
//! update is copy-on-write and crash consistent: the new chain is written to fresh blocks and
//! persisted, then the header naming it is committed through the journal (the one atomic step),
//! then the old chain is freed; a crash leaves the old set or the new one.
//!
//! Format 1 (`DXBB`: count u32 and up to 510 block numbers) is decoded into ranges; the first
//! change of the set rewrites the table in format 2 (the upgrade happens on first write).

use std::collections::BTreeMap;

use super::corrupt::DecodeError;
use super::layout::{get32, get64, put32, put64, BLOCK};

/// Header bytes of the format-2 table block.
pub const BAD_HDR: usize = 64;
/// Header bytes of a chain block.
pub const BAD_CHAIN_HDR: usize = 32;
/// Bytes of one stored range.
pub const BAD_RANGE_SIZE: usize = 16;
/// Ranges held inline in the table block.
pub const BAD_INLINE: usize = (BLOCK as usize - BAD_HDR) / BAD_RANGE_SIZE;
/// Ranges per chain block.
pub const BAD_PER_CHAIN: usize = (BLOCK as usize - BAD_CHAIN_HDR) / BAD_RANGE_SIZE;

const V2_MAGIC: u32 = u32::from_le_bytes(*b"DXB2");
const CHAIN_MAGIC: u32 = u32::from_le_bytes(*b"DXBC");
const V1_MAGIC: u32 = u32::from_le_bytes(*b"DXBB");
const V1_HDR: usize = 16;
const V1_MAX: usize = (BLOCK as usize - V1_HDR) / 8;

/// A set of bad region blocks, kept as coalesced `(first, count)` ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BadRanges {
    map: BTreeMap<u64, u64>,
    blocks: u64,
}

impl BadRanges {
    /// The empty set.
    pub fn new() -> BadRanges {
        BadRanges::default()
    }

    /// Number of bad blocks.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Number of (coalesced) ranges.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no block is bad.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether block `b` is bad.
    pub fn contains(&self, b: u64) -> bool {
        self.map
            .range(..=b)
            .next_back()
            .is_some_and(|(&s, &n)| b < s + n)
    }

    /// Every range, in block order.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.map.iter().map(|(&s, &n)| (s, n))
    }

    /// The bad parts of `[first, end)`, in block order.
    pub fn within(&self, first: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        if first >= end {
            return out;
        }
        let from = match self.map.range(..=first).next_back() {
            Some((&s, &n)) if s + n > first => s,
            _ => first,
        };
        for (&s, &n) in self.map.range(from..end) {
            let (a, b) = (s.max(first), (s + n).min(end));
            if a < b {
                out.push((a, b - a));
            }
        }
        out
    }

    /// Number of bad blocks in `[first, end)`.
    pub fn count_within(&self, first: u64, end: u64) -> u64 {
        self.within(first, end).iter().map(|r| r.1).sum()
    }

    /// Adds `[first, first + n)`, merging with the ranges it overlaps or touches. Return: the
    /// number of blocks that were not bad before.
    pub fn insert(&mut self, first: u64, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let (mut s, mut e) = (first, first + n);
        let already = self.count_within(s, e);
        let from = match self.map.range(..=s).next_back() {
            Some((&rs, &rn)) if rs + rn >= s => rs,
            _ => s,
        };
        let touched: Vec<(u64, u64)> = self
            .map
            .range(from..=e)
            .map(|(&rs, &rn)| (rs, rn))
            .collect();
        for (rs, rn) in touched {
            self.map.remove(&rs);
            self.blocks -= rn;
            s = s.min(rs);
            e = e.max(rs + rn);
        }
        self.map.insert(s, e - s);
        self.blocks += e - s;
        n - already
    }

    /// Removes `[first, first + n)`, splitting the ranges it cuts. Return: the blocks removed,
    /// as ranges.
    pub fn remove(&mut self, first: u64, n: u64) -> Vec<(u64, u64)> {
        let end = first.saturating_add(n);
        let gone = self.within(first, end);
        let from = match self.map.range(..=first).next_back() {
            Some((&rs, &rn)) if rs + rn > first => rs,
            _ => first,
        };
        let touched: Vec<(u64, u64)> = self
            .map
            .range(from..end)
            .map(|(&rs, &rn)| (rs, rn))
            .collect();
        for (rs, rn) in touched {
            self.map.remove(&rs);
            self.blocks -= rn;
            if rs < first {
                self.map.insert(rs, first - rs);
                self.blocks += first - rs;
            }
            if rs + rn > end {
                self.map.insert(end, rs + rn - end);
                self.blocks += rs + rn - end;
            }
        }
        gone
    }
}

/// The format-2 table block as decoded: the inline ranges and where the rest is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadHeader {
    /// Ranges in all (inline and chained).
    pub total: u64,
    /// The first chain block (0: none).
    pub chain: u64,
    /// Chain blocks.
    pub chain_blocks: u64,
    /// The generation every chain block must carry.
    pub generation: u64,
    /// The inline ranges.
    pub inline: Vec<(u64, u64)>,
}

/// A decoded bad-block table block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadTable {
    /// Format 1: the old fixed list of block numbers.
    V1(Vec<u64>),
    /// Format 2: ranges, maybe continued in a chain.
    V2(BadHeader),
}

/// Chain blocks needed for `n` ranges.
pub fn bad_chain_blocks(n: usize) -> usize {
    n.saturating_sub(BAD_INLINE).div_ceil(BAD_PER_CHAIN)
}

fn put_ranges(b: &mut [u8], at: usize, ranges: &[(u64, u64)]) {
    for (i, &(s, n)) in ranges.iter().enumerate() {
        put64(b, at + i * BAD_RANGE_SIZE, s);
        put64(b, at + i * BAD_RANGE_SIZE + 8, n);
    }
}

fn get_ranges(b: &[u8], at: usize, n: usize) -> Vec<(u64, u64)> {
    (0..n)
        .map(|i| {
            let o = at + i * BAD_RANGE_SIZE;
            (get64(b, o), get64(b, o + 8))
        })
        .collect()
}

/// Encodes `ranges` (sorted, disjoint) as a table block and its chain blocks, one per block of
/// `chain` (which must hold [`bad_chain_blocks`] blocks). Return: the table block's bytes and the
/// chain blocks' bytes, in chain order.
pub fn encode_bad_table(
    ranges: &[(u64, u64)],
    chain: &[u64],
    generation: u64,
) -> (Vec<u8>, Vec<Vec<u8>>) {
    assert_eq!(chain.len(), bad_chain_blocks(ranges.len()), "chain length");
    let inline = ranges.len().min(BAD_INLINE);
    let mut h = vec![0u8; BAD_HDR + inline * BAD_RANGE_SIZE];
    put32(&mut h, 0, V2_MAGIC);
    put64(&mut h, 8, ranges.len() as u64);
    put64(&mut h, 16, chain.first().copied().unwrap_or(0));
    put64(&mut h, 24, chain.len() as u64);
    put64(&mut h, 32, generation);
    put32(&mut h, 40, inline as u32);
    put_ranges(&mut h, BAD_HDR, &ranges[..inline]);
    let crc = crc32c::crc32c(&h[8..]);
    put32(&mut h, 4, crc);
    let mut blocks = Vec::with_capacity(chain.len());
    for (i, part) in ranges[inline..].chunks(BAD_PER_CHAIN).enumerate() {
        let mut c = vec![0u8; BAD_CHAIN_HDR + part.len() * BAD_RANGE_SIZE];
        put32(&mut c, 0, CHAIN_MAGIC);
        put32(&mut c, 8, part.len() as u32);
        put32(&mut c, 12, i as u32);
        put64(&mut c, 16, chain.get(i + 1).copied().unwrap_or(0));
        put64(&mut c, 24, generation);
        put_ranges(&mut c, BAD_CHAIN_HDR, part);
        let crc = crc32c::crc32c(&c[8..]);
        put32(&mut c, 4, crc);
        blocks.push(c);
    }
    (h, blocks)
}

/// Decodes the table block (either format).
pub fn decode_bad_table(b: &[u8]) -> Result<BadTable, DecodeError> {
    match get32(b, 0) {
        V1_MAGIC => {
            let n = get32(b, 8) as usize;
            if n > V1_MAX {
                return Err(DecodeError::BadTableCount);
            }
            if crc32c::crc32c(&b[8..V1_HDR + n * 8]) != get32(b, 4) {
                return Err(DecodeError::BadTableChecksum);
            }
            Ok(BadTable::V1(
                (0..n).map(|i| get64(b, V1_HDR + i * 8)).collect(),
            ))
        }
        V2_MAGIC => {
            let inline = get32(b, 40) as usize;
            let total = get64(b, 8);
            if inline > BAD_INLINE || (inline as u64) > total {
                return Err(DecodeError::BadTableCount);
            }
            if crc32c::crc32c(&b[8..BAD_HDR + inline * BAD_RANGE_SIZE]) != get32(b, 4) {
                return Err(DecodeError::BadTableChecksum);
            }
            let h = BadHeader {
                total,
                chain: get64(b, 16),
                chain_blocks: get64(b, 24),
                generation: get64(b, 32),
                inline: get_ranges(b, BAD_HDR, inline),
            };
            let rest = (total - inline as u64).div_ceil(BAD_PER_CHAIN as u64);
            if (inline < BAD_INLINE && total != inline as u64)
                || h.chain_blocks != rest
                || (h.chain == 0) != (rest == 0)
            {
                return Err(DecodeError::BadTableCount);
            }
            Ok(BadTable::V2(h))
        }
        _ => Err(DecodeError::BadTableMagic),
    }
}

/// Decodes chain block number `position` of a table of generation `generation`. Return: the next
/// chain block (0: last) and its ranges.
pub fn decode_bad_chain(
    b: &[u8],
    generation: u64,
    position: u64,
) -> Result<(u64, Vec<(u64, u64)>), DecodeError> {
    if get32(b, 0) != CHAIN_MAGIC {
        return Err(DecodeError::BadChainMagic);
    }
    let n = get32(b, 8) as usize;
    if n == 0 || n > BAD_PER_CHAIN {
        return Err(DecodeError::BadTableCount);
    }
    if crc32c::crc32c(&b[8..BAD_CHAIN_HDR + n * BAD_RANGE_SIZE]) != get32(b, 4) {
        return Err(DecodeError::BadTableChecksum);
    }
    if get64(b, 24) != generation || u64::from(get32(b, 12)) != position {
        return Err(DecodeError::BadChainStale);
    }
    Ok((get64(b, 16), get_ranges(b, BAD_CHAIN_HDR, n)))
}

/// The format-1 encoding of `blocks` (tests of the upgrade; this code never writes it).
pub fn encode_bad_table_v1(blocks: &[u64]) -> Vec<u8> {
    let n = blocks.len().min(V1_MAX);
    let mut b = vec![0u8; V1_HDR + n * 8];
    put32(&mut b, 0, V1_MAGIC);
    put32(&mut b, 8, n as u32);
    for (i, &x) in blocks[..n].iter().enumerate() {
        put64(&mut b, V1_HDR + i * 8, x);
    }
    let crc = crc32c::crc32c(&b[8..]);
    put32(&mut b, 4, crc);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_ranges_coalesce_and_a_middle_clear_splits() {
        let mut s = BadRanges::new();
        assert_eq!(s.insert(10, 5), 5);
        assert_eq!(s.insert(15, 5), 5, "adjacent");
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![(10, 10)]);
        assert_eq!(s.insert(5, 7), 5, "overlapping: only the new blocks count");
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![(5, 15)]);
        assert_eq!(s.insert(30, 1), 1);
        assert_eq!(s.insert(20, 10), 10, "fills the gap up to both neighbours");
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![(5, 26)]);
        assert_eq!(s.remove(10, 3), vec![(10, 3)]);
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![(5, 5), (13, 18)]);
        assert_eq!(s.blocks(), 23);
        assert!(s.contains(5) && !s.contains(10) && s.contains(30) && !s.contains(31));
        assert_eq!(s.within(8, 15), vec![(8, 2), (13, 2)]);
        assert_eq!(s.remove(0, 100), vec![(5, 5), (13, 18)]);
        assert!(s.is_empty() && s.blocks() == 0);
    }

    #[test]
    fn a_million_blocks_in_a_thousand_ranges_is_a_thousand_nodes() {
        let mut s = BadRanges::new();
        for i in 0..1000u64 {
            s.insert(i * 2000, 1000);
        }
        assert_eq!((s.len(), s.blocks()), (1000, 1_000_000));
    }

    #[test]
    fn table_roundtrip_inline_and_chained() {
        for n in [0usize, 1, BAD_INLINE, BAD_INLINE + 1, 1000] {
            let ranges: Vec<(u64, u64)> = (0..n as u64).map(|i| (100 + i * 3, 2)).collect();
            let chain: Vec<u64> = (0..bad_chain_blocks(n) as u64).map(|i| 900 + i).collect();
            let (h, blocks) = encode_bad_table(&ranges, &chain, 7);
            let mut hb = vec![0u8; BLOCK as usize];
            hb[..h.len()].copy_from_slice(&h);
            let BadTable::V2(hdr) = decode_bad_table(&hb).unwrap() else {
                panic!("format 2 expected");
            };
            let mut got = hdr.inline.clone();
            let mut next = hdr.chain;
            let mut pos = 0;
            while next != 0 {
                let i = chain.iter().position(|&c| c == next).unwrap();
                let mut cb = vec![0u8; BLOCK as usize];
                cb[..blocks[i].len()].copy_from_slice(&blocks[i]);
                let (nx, r) = decode_bad_chain(&cb, 7, pos).unwrap();
                assert_eq!(
                    decode_bad_chain(&cb, 8, pos),
                    Err(DecodeError::BadChainStale)
                );
                got.extend(r);
                next = nx;
                pos += 1;
            }
            assert_eq!(got, ranges, "{n} ranges");
            hb[70] ^= 1;
            if n > 0 {
                assert_eq!(decode_bad_table(&hb), Err(DecodeError::BadTableChecksum));
            }
        }
    }

    #[test]
    fn format_1_still_decodes() {
        let mut b = vec![0u8; BLOCK as usize];
        let v1 = encode_bad_table_v1(&[3, 4, 9]);
        b[..v1.len()].copy_from_slice(&v1);
        assert_eq!(decode_bad_table(&b), Ok(BadTable::V1(vec![3, 4, 9])));
        b[20] ^= 1;
        assert_eq!(decode_bad_table(&b), Err(DecodeError::BadTableChecksum));
    }
}
