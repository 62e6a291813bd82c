//! Reading and checking the whole on-media image: the one loader behind `open` and `fsck`.
//!
//! [`Image::load`] reads the inode-chunk map, walks the chunks of the inode table it marks (all of
//! a version-1 table; nothing else of the table is touched), every block map (inline extents and chain blocks), xattr
//! blocks, directories and the bad-block table, rebuilds the allocator, and records every
//! inconsistency as a [`Problem`] with the [`Fix`] that repair applies. `open` refuses a region
//! with any *fatal* problem (naming the first one); fsck lists them all. Non-fatal problems (wrong
//! link counts, orphans, unreachable inodes) do not make serving the region unsafe.
//!
//! It never panics on garbage: every count, length and block number read from media is checked
//! before it is used.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::region::{Region, RegionError};

use super::alloc::Allocator;
use super::badtable::{decode_bad_chain, decode_bad_table, BadRanges, BadTable};
use super::corrupt::{CorruptReason, DecodeError};
use super::ichunk::{chunks_for, ChunkMap, ICHUNK_INODES};
use super::kind::FileKind;
use super::layout::{
    decode_chain, decode_xattrs, dirent_off, xattr_blocks, Dirent, Extent, InodeRec, Superblock,
    Xattrs, BLOCK, DIRENTS_PER_BLOCK, DIRENT_SIZE, INLINE_EXTENTS, INODE_SIZE, MAX_EXTSIZE_BLOCKS,
    MAX_FILE_SIZE, SB_SIZE,
};

/// An in-use inode as found on media.
#[derive(Clone, Debug, Default)]
pub struct LoadedInode {
    /// Its record.
    pub rec: InodeRec,
    /// Extents in file order.
    pub extents: Vec<Extent>,
    /// Chain blocks holding the extents (when not inline).
    pub chain: Vec<u64>,
    /// Extended attributes, name and value.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Directories: (slot, entry).
    pub dirents: Vec<(u64, Dirent)>,
}

impl LoadedInode {
    /// The block holding file page `page`, if mapped.
    pub fn block_of(&self, page: u64) -> Option<u64> {
        self.extents
            .iter()
            .find(|e| page >= e.page && page < e.page + e.len)
            .map(|e| e.block + (page - e.page))
    }
}

/// What repair does about a problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fix {
    /// Nothing automatic.
    None,
    /// Free the inode (its blocks return to the pool at the next open).
    ClearInode(u64),
    /// Empty the directory slot at this region offset.
    DropDirent {
        /// The slot's region offset.
        off: u64,
    },
    /// Set the link count.
    SetNlink {
        /// The inode.
        ino: u64,
        /// The link count the directories give it.
        nlink: u32,
    },
    /// Set a directory's parent.
    SetParent {
        /// The directory.
        ino: u64,
        /// The directory that holds its entry.
        parent: u64,
    },
    /// Drop the inode's xattrs.
    DropXattrs(u64),
    /// Rewrite the bad-block table as empty.
    ResetBadTable,
}

/// One inconsistency.
#[derive(Clone, Debug)]
pub struct Problem {
    /// What is wrong.
    pub reason: CorruptReason,
    /// What repair does about it.
    pub fix: Fix,
}

impl Problem {
    /// Whether serving the region would be unsafe (open refuses).
    pub fn fatal(&self) -> bool {
        self.reason.is_fatal()
    }
}

/// The parsed image.
#[derive(Debug)]
pub struct Image {
    /// The superblock it was loaded with.
    pub sb: Superblock,
    /// In-use inodes that passed every check.
    pub inodes: BTreeMap<u64, LoadedInode>,
    /// Free inode numbers (in chunks in use) with the generation of their last use.
    pub free_inodes: Vec<(u64, u64)>,
    /// Which chunks of the inode table are in use.
    pub ichunks: ChunkMap,
    /// The bad blocks the table lists (inside the data area).
    pub bad: BadRanges,
    /// The bad blocks no file or metadata structure claims.
    pub bad_free: BadRanges,
    /// The table's range chain blocks, in chain order (claimed like any metadata block).
    pub bad_chain: Vec<u64>,
    /// The table's generation (format 2), or 0.
    pub bad_generation: u64,
    /// Whether the table is in the old format 1 (rewritten as ranges on its first change).
    pub bad_v1: bool,
    /// The allocator with every claimed block and every bad block marked used.
    pub alloc: Allocator,
    /// Everything found wrong, in the order found.
    pub problems: Vec<Problem>,
}

/// Why [`read_superblock`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SuperblockError {
    /// The superblock could not be read.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The superblock is not usable.
    #[error(transparent)]
    Corrupt(#[from] CorruptReason),
}

/// Reads and checks the superblock against the region.
pub fn read_superblock(region: &Region) -> Result<Superblock, SuperblockError> {
    let mut b = [0u8; SB_SIZE];
    region.read_at(0, &mut b)?;
    let sb = Superblock::decode(&b)?;
    sb.check_layout().map_err(CorruptReason::Layout)?;
    if region.len() < sb.size {
        return Err(CorruptReason::Truncated {
            len: region.len(),
            size: sb.size,
        }
        .into());
    }
    Ok(sb)
}

/// An inode's block map as read from media, before its blocks are claimed.
struct BlockMap {
    extents: Vec<Extent>,
    chain: Vec<u64>,
}

impl Image {
    /// Loads everything. Never fails: problems are collected in `problems`.
    pub fn load(region: &Region, sb: Superblock) -> Image {
        let mut img = Image {
            alloc: Allocator::new(sb.data_start, sb.total_blocks),
            ichunks: ChunkMap::all_used(chunks_for(sb.inodes_total)),
            sb,
            inodes: BTreeMap::new(),
            free_inodes: Vec::new(),
            bad: BadRanges::new(),
            bad_free: BadRanges::new(),
            bad_chain: Vec::new(),
            bad_generation: 0,
            bad_v1: false,
            problems: Vec::new(),
        };
        img.load_badblocks(region);
        if !img.load_chunk_map(region) {
            return img;
        }
        img.load_inodes(region);
        img.load_maps(region);
        img.load_dirs(region);
        img.check_links();
        // Bad blocks are never handed out (a bad block still mapped by a file stays its owner).
        // Those nothing claimed are held by the bad-block table alone.
        let mut free = BadRanges::new();
        for (first, n) in img.bad.ranges() {
            for b in first..first + n {
                if img.alloc.mark_used(b) {
                    free.insert(b, 1);
                }
            }
        }
        img.bad_free = free;
        img
    }

    /// The first fatal problem, if any.
    pub fn first_fatal(&self) -> Option<&Problem> {
        self.problems.iter().find(|p| p.fatal())
    }

    fn problem(&mut self, fix: Fix, reason: CorruptReason) {
        self.problems.push(Problem { reason, fix });
    }

    /// Reads the bad-block table (either format) and its range chain, claims the chain blocks
    /// and checks every range: sorted, disjoint, non-empty, inside the data area. Any damage is a
    /// problem whose repair resets the table (the ranges read so far are kept for serving).
    fn load_badblocks(&mut self, region: &Region) {
        let mut b = vec![0u8; BLOCK as usize];
        if region.read_at(self.sb.badblk_off(), &mut b).is_err() {
            return;
        }
        let ranges = match decode_bad_table(&b) {
            Ok(BadTable::V1(list)) => {
                self.bad_v1 = true;
                let mut v: Vec<(u64, u64)> = list.into_iter().map(|x| (x, 1)).collect();
                v.sort_unstable();
                v.dedup();
                v
            }
            Ok(BadTable::V2(h)) => {
                self.bad_generation = h.generation;
                let mut v = h.inline;
                match self.load_bad_chain(region, h.chain, h.generation, &mut v) {
                    Err(reason) => self.problem(Fix::ResetBadTable, reason),
                    Ok(()) if v.len() as u64 != h.total => self.problem(
                        Fix::ResetBadTable,
                        CorruptReason::BadTable(DecodeError::BadTableCount),
                    ),
                    Ok(()) => {}
                }
                v
            }
            Err(e) => return self.problem(Fix::ResetBadTable, CorruptReason::BadTable(e)),
        };
        let mut prev_end = 0;
        for (first, count) in ranges {
            if count == 0 || first < prev_end {
                self.problem(
                    Fix::ResetBadTable,
                    CorruptReason::BadTableOrder { first, count },
                );
                continue;
            }
            if !self.sb.in_data(first, count) {
                self.problem(
                    Fix::ResetBadTable,
                    CorruptReason::BadBlockOutsideData { block: first },
                );
                continue;
            }
            prev_end = first + count;
            self.bad.insert(first, count);
        }
    }

    /// Reads the inode-chunk map of a version-2 region (a version-1 table is in use whole).
    /// Returns false when it is damaged: nothing else can be loaded then.
    fn load_chunk_map(&mut self, region: &Region) -> bool {
        if self.sb.version < 2 {
            return true;
        }
        let mut b = vec![0u8; (self.sb.ichunk_blocks * BLOCK) as usize];
        let chunks = chunks_for(self.sb.inodes_total);
        let read = region.read_at(self.sb.ichunk_off(), &mut b);
        match read.map(|()| ChunkMap::decode(chunks, self.sb.ichunk_off(), &b)) {
            Ok(Ok(m)) => {
                self.ichunks = m;
                true
            }
            Ok(Err(e)) => {
                self.problem(Fix::None, CorruptReason::ChunkMap(e));
                false
            }
            Err(_) => false,
        }
    }

    /// Decodes every record of the chunks in use.
    /// Follows the bad-block table's range chain from `next`, appending its ranges to `out`.
    fn load_bad_chain(
        &mut self,
        region: &Region,
        mut next: u64,
        generation: u64,
        out: &mut Vec<(u64, u64)>,
    ) -> Result<(), CorruptReason> {
        let mut blk = vec![0u8; BLOCK as usize];
        while next != 0 {
            if !self.sb.in_data(next, 1) || !self.alloc.mark_used(next) {
                return Err(CorruptReason::BadTableChain { block: next });
            }
            self.bad_chain.push(next);
            region
                .read_at(next * BLOCK, &mut blk)
                .map_err(|_| CorruptReason::BadTableChain { block: next })?;
            let pos = self.bad_chain.len() as u64 - 1;
            let (n, r) =
                decode_bad_chain(&blk, generation, pos).map_err(CorruptReason::BadTable)?;
            out.extend(r);
            next = n;
        }
        Ok(())
    }

    fn load_inodes(&mut self, region: &Region) {
        let mut buf = vec![0u8; (ICHUNK_INODES * INODE_SIZE) as usize];
        let used: Vec<u64> = self.ichunks.used().collect();
        for c in used {
            let first = (c * ICHUNK_INODES).max(1);
            let end = ((c + 1) * ICHUNK_INODES).min(self.sb.inodes_total + 1);
            let b = &mut buf[..((end - first) * INODE_SIZE) as usize];
            if region.read_at(self.sb.inode_off(first), b).is_err() {
                break;
            }
            for k in 0..end - first {
                let rb = &b[(k * INODE_SIZE) as usize..((k + 1) * INODE_SIZE) as usize];
                self.load_record(first + k, rb);
            }
        }
        match self.inodes.get(&1) {
            Some(r) if r.rec.kind() == Some(FileKind::Directory) => {}
            _ => self.problem(Fix::None, CorruptReason::RootMissing),
        }
    }

    /// Decodes inode record `ino`: free (noted with its generation), in use, or a problem.
    fn load_record(&mut self, ino: u64, b: &[u8]) {
        match InodeRec::decode(b) {
            Ok(rec) if rec.is_free() => self.free_inodes.push((ino, rec.generation)),
            Ok(rec) if rec.kind().is_none() => self.problem(
                Fix::ClearInode(ino),
                CorruptReason::InodeKind {
                    ino,
                    mode: rec.mode,
                },
            ),
            Ok(rec) => {
                self.inodes.insert(
                    ino,
                    LoadedInode {
                        rec,
                        ..Default::default()
                    },
                );
            }
            Err(what) => self.problem(Fix::ClearInode(ino), CorruptReason::Inode { ino, what }),
        }
    }

    /// Reads and checks every inode's block map and xattr area and claims their blocks; an inode
    /// whose map is damaged, or claims a block twice, is dropped (and repair clears it).
    fn load_maps(&mut self, region: &Region) {
        let inos: Vec<u64> = self.inodes.keys().copied().collect();
        let mut blk = vec![0u8; BLOCK as usize];
        for ino in inos {
            let rec = self.inodes[&ino].rec.clone();
            match self.load_inode_map(region, ino, &rec, &mut blk) {
                // A symlink whose target cannot be right is dropped, its blocks still claimed.
                Ok(_)
                    if rec.kind() == Some(FileKind::Symlink)
                        && (rec.size == 0 || rec.size >= BLOCK) =>
                {
                    let size = rec.size;
                    self.problem(
                        Fix::ClearInode(ino),
                        CorruptReason::SymlinkLength { ino, size },
                    );
                    self.inodes.remove(&ino);
                }
                Ok((map, xattrs)) => {
                    let li = self.inodes.get_mut(&ino).expect("present");
                    li.extents = map.extents;
                    li.chain = map.chain;
                    li.xattrs = xattrs;
                }
                Err(reason) => {
                    self.problem(Fix::ClearInode(ino), reason);
                    self.inodes.remove(&ino);
                }
            }
        }
    }

    /// One inode of [`Self::load_maps`]: its block map (checked), its claimed blocks, its xattrs,
    /// and the size checks that need the map. On `Err` nothing stays claimed.
    fn load_inode_map(
        &mut self,
        region: &Region,
        ino: u64,
        rec: &InodeRec,
        blk: &mut [u8],
    ) -> Result<(BlockMap, Xattrs), CorruptReason> {
        let map = self.read_block_map(region, ino, rec, blk)?;
        self.check_extents(ino, &map.extents)?;
        let mut claimed = Vec::new();
        let r = self.claim_map(ino, rec, &map, region, blk, &mut claimed);
        if r.is_err() {
            for c in claimed {
                self.alloc.free(c);
            }
        }
        r.map(|x| (map, x))
    }

    /// The extents of `rec`: inline, or followed along the chain blocks.
    fn read_block_map(
        &self,
        region: &Region,
        ino: u64,
        rec: &InodeRec,
        blk: &mut [u8],
    ) -> Result<BlockMap, CorruptReason> {
        let mut map = BlockMap {
            extents: Vec::new(),
            chain: Vec::new(),
        };
        if rec.nextents as usize <= INLINE_EXTENTS && rec.map_chain == 0 {
            map.extents
                .extend_from_slice(&rec.inline[..rec.nextents as usize]);
            return Ok(map);
        }
        let mut next = rec.map_chain;
        while next != 0 {
            if !self.sb.in_data(next, 1) {
                return Err(CorruptReason::ChainOutside { ino, block: next });
            }
            if map.chain.contains(&next) || map.chain.len() as u64 > rec.nextents {
                return Err(CorruptReason::ChainLoops { ino });
            }
            map.chain.push(next);
            if region.read_at(next * BLOCK, blk).is_err() {
                break;
            }
            let (n, ext) =
                decode_chain(ino, blk).map_err(|what| CorruptReason::Inode { ino, what })?;
            map.extents.extend(ext);
            next = n;
        }
        if map.extents.len() as u64 != rec.nextents {
            return Err(CorruptReason::ExtentCount {
                ino,
                found: map.extents.len() as u64,
                recorded: rec.nextents,
            });
        }
        Ok(map)
    }

    /// Every extent non-empty, in file order, inside the data area and below the largest file.
    fn check_extents(&self, ino: u64, extents: &[Extent]) -> Result<(), CorruptReason> {
        let mut last_end = 0u64;
        for e in extents {
            if e.len == 0 || e.page < last_end || !self.sb.in_data(e.block, e.len) {
                return Err(CorruptReason::MapOutside {
                    ino,
                    page: e.page,
                    block: e.block,
                    len: e.len,
                });
            }
            match e.page.checked_add(e.len) {
                Some(end) if end <= MAX_FILE_SIZE.div_ceil(BLOCK) => last_end = end,
                _ => return Err(CorruptReason::ExtentBeyondMax { ino }),
            }
        }
        Ok(())
    }

    /// Claims the map's chain and data blocks and the xattr area in the allocator (each block
    /// once: a second claim is a doubly-used block), reads the xattrs, then checks the sizes.
    /// Every block claimed is pushed to `claimed`, so the caller can release them on `Err`.
    fn claim_map(
        &mut self,
        ino: u64,
        rec: &InodeRec,
        map: &BlockMap,
        region: &Region,
        blk: &mut [u8],
        claimed: &mut Vec<u64>,
    ) -> Result<Xattrs, CorruptReason> {
        let data = map.extents.iter().flat_map(|e| e.block..e.block + e.len);
        for b in map.chain.iter().copied().chain(data) {
            self.claim(ino, b, claimed)?;
        }
        let xattrs = match rec.xattr_block {
            0 => Vec::new(),
            xb => self.load_xattrs(region, ino, xb, blk, claimed)?,
        };
        let map_end = map.extents.last().map_or(0, |e| e.page + e.len);
        let size_bad = match rec.kind() {
            Some(FileKind::Directory) => rec.size != map_end * BLOCK,
            _ => rec.size > MAX_FILE_SIZE,
        };
        if size_bad {
            return Err(CorruptReason::BadSize {
                ino,
                size: rec.size,
            });
        }
        let hint_kind = matches!(
            rec.kind(),
            Some(FileKind::Directory) | Some(FileKind::Regular)
        );
        if rec.extsize != 0 && (!hint_kind || rec.extsize > MAX_EXTSIZE_BLOCKS) {
            return Err(CorruptReason::BadExtsize {
                ino,
                blocks: rec.extsize,
            });
        }
        Ok(xattrs)
    }

    /// Marks block `b` used by `ino`; a block already used is a doubly-used block.
    fn claim(&mut self, ino: u64, b: u64, claimed: &mut Vec<u64>) -> Result<(), CorruptReason> {
        if !self.alloc.mark_used(b) {
            return Err(CorruptReason::BlockUsedTwice { block: b, ino });
        }
        claimed.push(b);
        Ok(())
    }

    /// Claims and decodes the xattr area at block `xb`. A damaged area is a problem of its own
    /// (repair drops the xattrs, the inode stays); only a doubly-used block fails the inode.
    fn load_xattrs(
        &mut self,
        region: &Region,
        ino: u64,
        xb: u64,
        blk: &mut [u8],
        claimed: &mut Vec<u64>,
    ) -> Result<Xattrs, CorruptReason> {
        let nblocks = if self.sb.in_data(xb, 1) && region.read_at(xb * BLOCK, blk).is_ok() {
            xattr_blocks(blk).map_err(|what| CorruptReason::Inode { ino, what })
        } else {
            Err(CorruptReason::XattrOutside { ino, block: xb })
        };
        let n = match nblocks {
            Ok(n) if self.sb.in_data(xb, n) => n,
            Ok(_) => {
                self.problem(
                    Fix::DropXattrs(ino),
                    CorruptReason::XattrAreaOutside { ino, block: xb },
                );
                return Ok(Vec::new());
            }
            Err(reason) => {
                self.problem(Fix::DropXattrs(ino), reason);
                return Ok(Vec::new());
            }
        };
        for b in xb..xb + n {
            self.claim(ino, b, claimed)?;
        }
        let mut area = vec![0u8; (n * BLOCK) as usize];
        if region.read_at(xb * BLOCK, &mut area).is_err() {
            return Ok(Vec::new());
        }
        match decode_xattrs(&area) {
            Ok(x) => Ok(x),
            Err(what) => {
                self.problem(Fix::DropXattrs(ino), CorruptReason::Inode { ino, what });
                Ok(Vec::new())
            }
        }
    }

    fn load_dirs(&mut self, region: &Region) {
        let dirs: Vec<u64> = self
            .inodes
            .iter()
            .filter(|(_, l)| l.rec.kind() == Some(FileKind::Directory))
            .map(|(&i, _)| i)
            .collect();
        let mut blk = vec![0u8; BLOCK as usize];
        for d in dirs {
            let ents = self.load_dir(region, d, &mut blk);
            self.inodes.get_mut(&d).expect("present").dirents = ents;
        }
    }

    /// The entries of directory `d` that name a live inode of the right type, once per name.
    fn load_dir(&mut self, region: &Region, d: u64, blk: &mut [u8]) -> Vec<(u64, Dirent)> {
        let extents = self.inodes[&d].extents.clone();
        let npages = self.inodes[&d].rec.size / BLOCK;
        let mut ents = Vec::new();
        let mut names = HashSet::new();
        for e in &extents {
            for p in e.page..(e.page + e.len).min(npages) {
                let b = e.block + (p - e.page);
                if region.read_at(b * BLOCK, blk).is_err() {
                    continue;
                }
                for s in 0..DIRENTS_PER_BLOCK {
                    let slot = p * DIRENTS_PER_BLOCK + s;
                    let so = (s * DIRENT_SIZE) as usize;
                    let raw = &blk[so..so + DIRENT_SIZE as usize];
                    if let Some(de) = self.check_slot(d, slot, dirent_off(b, slot), raw, &mut names)
                    {
                        ents.push((slot, de));
                    }
                }
            }
        }
        ents
    }

    /// Slot `slot` of directory `d` (at region offset `off`): its entry if it is sound, else
    /// `None` (empty, or a problem recorded).
    fn check_slot(
        &mut self,
        dir: u64,
        slot: u64,
        off: u64,
        raw: &[u8],
        names: &mut HashSet<Vec<u8>>,
    ) -> Option<Dirent> {
        let de = match Dirent::decode(raw) {
            Ok(de) => de?,
            Err(what) => {
                self.problem(
                    Fix::DropDirent { off },
                    CorruptReason::Slot { dir, slot, what },
                );
                return None;
            }
        };
        let target = self.inodes.get(&de.ino).map(|l| l.rec.kind());
        let name = String::from_utf8_lossy(&de.name).into_owned();
        let ino = de.ino;
        let reason = match target {
            None => CorruptReason::DirentToFree { dir, name, ino },
            Some(k) if k != Some(de.kind) => CorruptReason::DirentKindMismatch { dir, name, ino },
            Some(_) if !names.insert(de.name.clone()) => {
                CorruptReason::DuplicateEntry { dir, name }
            }
            Some(_) => return Some(de),
        };
        self.problem(Fix::DropDirent { off }, reason);
        None
    }

    fn check_links(&mut self) {
        let links = self.count_links();
        let inos: Vec<u64> = self.inodes.keys().copied().collect();
        for ino in inos {
            self.check_inode_links(ino, &links);
        }
    }

    /// Counts the entries naming each inode and each directory's subdirectories; a directory named
    /// twice (or the root named at all) is a problem of its own and not counted again.
    fn count_links(&mut self) -> Links {
        let mut links = Links::default();
        let mut extra = Vec::new();
        for (&d, l) in &self.inodes {
            for (slot, de) in &l.dirents {
                *links.refs.entry(de.ino).or_default() += 1;
                if de.kind != FileKind::Directory {
                    continue;
                }
                if links.parent_of.contains_key(&de.ino) || de.ino == 1 {
                    let off = l
                        .block_of(slot / DIRENTS_PER_BLOCK)
                        .map(|b| dirent_off(b, *slot))
                        .unwrap_or(0);
                    extra.push(Problem {
                        reason: CorruptReason::DirLinkedTwice {
                            ino: de.ino,
                            dir: d,
                        },
                        fix: Fix::DropDirent { off },
                    });
                    continue;
                }
                links.parent_of.insert(de.ino, d);
                *links.subdirs.entry(d).or_default() += 1;
            }
        }
        self.problems.extend(extra);
        links
    }

    /// Checks inode `ino`'s link count (and a directory's parent) against the counted entries.
    fn check_inode_links(&mut self, ino: u64, links: &Links) {
        let l = &self.inodes[&ino];
        let r = links.refs.get(&ino).copied().unwrap_or(0);
        let is_dir = l.rec.kind() == Some(FileKind::Directory);
        let nlink = l.rec.nlink;
        let recorded = l.rec.parent;
        let subdirs = links.subdirs.get(&ino).copied().unwrap_or(0);
        if ino != 1 && r == 0 {
            let reason = if nlink == 0 {
                CorruptReason::Orphan { ino }
            } else {
                CorruptReason::Unreachable { ino, nlink }
            };
            self.problem(Fix::ClearInode(ino), reason);
            return;
        }
        let want = if is_dir || ino == 1 { 2 + subdirs } else { r };
        if nlink != want {
            self.problem(
                Fix::SetNlink { ino, nlink: want },
                CorruptReason::WrongLinkCount { ino, nlink, want },
            );
        }
        if is_dir && ino != 1 {
            let actual = links.parent_of.get(&ino).copied().unwrap_or(1);
            if recorded != actual {
                self.problem(
                    Fix::SetParent {
                        ino,
                        parent: actual,
                    },
                    CorruptReason::WrongParent {
                        ino,
                        recorded,
                        actual,
                    },
                );
            }
        }
    }
}

/// Who names whom, as the directory entries say.
#[derive(Default)]
struct Links {
    /// Entries naming each inode.
    refs: HashMap<u64, u32>,
    /// Subdirectories of each directory.
    subdirs: HashMap<u64, u32>,
    /// The directory naming each directory.
    parent_of: HashMap<u64, u64>,
}
