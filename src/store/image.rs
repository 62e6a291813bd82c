//! Reading and checking the whole on-media image: the one loader behind `open` and `fsck`.
//!
//! [`Image::load`] walks the inode table, every block map (inline extents and chain blocks), xattr
//! blocks, directories and the bad-block table, rebuilds the allocator, and records every
//! inconsistency as a [`Problem`] with the [`Fix`] that repair applies. `open` refuses a region
//! with any *fatal* problem (naming the first one); fsck lists them all. Non-fatal problems (wrong
//! link counts, orphans, unreachable inodes) do not make serving the region unsafe.
//!
//! It never panics on garbage: every count, length and block number read from media is checked
//! before it is used.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::fs::FileKind;
use crate::region::Region;

use super::alloc::Allocator;
use super::layout::*;

/// An in-use inode as found on media.
#[derive(Clone, Debug, Default)]
pub struct LoadedInode {
    pub rec: InodeRec,
    /// Extents in file order.
    pub extents: Vec<Extent>,
    /// Chain blocks holding the extents (when not inline).
    pub chain: Vec<u64>,
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
    DropDirent { off: u64 },
    /// Set the link count.
    SetNlink { ino: u64, nlink: u32 },
    /// Set a directory's parent.
    SetParent { ino: u64, parent: u64 },
    /// Drop the inode's xattrs.
    DropXattrs(u64),
    /// Rewrite the bad-block table as empty.
    ResetBadTable,
}

/// One inconsistency.
#[derive(Clone, Debug)]
pub struct Problem {
    pub what: String,
    /// Whether serving the region would be unsafe (open refuses).
    pub fatal: bool,
    pub fix: Fix,
}

/// The parsed image.
#[derive(Debug)]
pub struct Image {
    pub sb: Superblock,
    pub inodes: BTreeMap<u64, LoadedInode>,
    /// Free inode numbers with the generation of their last use.
    pub free_inodes: Vec<(u64, u64)>,
    pub bad: Vec<u64>,
    pub alloc: Allocator,
    pub problems: Vec<Problem>,
}

/// Reads and checks the superblock against the region.
pub fn read_superblock(region: &Region) -> Result<Superblock, String> {
    let mut b = [0u8; SB_SIZE];
    region.read_at(0, &mut b).map_err(|e| e.to_string())?;
    let sb = Superblock::decode(&b)?;
    sb.check_layout()?;
    if region.len() < sb.size {
        return Err(format!(
            "truncated region: it has {} bytes but the superblock says {}",
            region.len(),
            sb.size
        ));
    }
    Ok(sb)
}

impl Image {
    /// Loads everything. Never fails: problems are collected in `problems`.
    pub fn load(region: &Region, sb: Superblock) -> Image {
        let mut img = Image {
            alloc: Allocator::new(sb.data_start, sb.total_blocks),
            sb,
            inodes: BTreeMap::new(),
            free_inodes: Vec::new(),
            bad: Vec::new(),
            problems: Vec::new(),
        };
        img.load_badblocks(region);
        img.load_inodes(region);
        img.load_maps(region);
        img.load_dirs(region);
        img.check_links();
        // Bad blocks are never handed out (a bad block still mapped by a file stays its owner).
        for &b in &img.bad {
            img.alloc.mark_used(b);
        }
        img
    }

    /// The first fatal problem, if any.
    pub fn first_fatal(&self) -> Option<&Problem> {
        self.problems.iter().find(|p| p.fatal)
    }

    fn problem(&mut self, fatal: bool, fix: Fix, what: String) {
        self.problems.push(Problem { what, fatal, fix });
    }

    fn load_badblocks(&mut self, region: &Region) {
        let mut b = vec![0u8; BLOCK as usize];
        if region.read_at(self.sb.badblk_off(), &mut b).is_err() {
            return;
        }
        match decode_badblocks(&b) {
            Ok(list) => {
                for x in list {
                    if x < self.sb.data_start || x >= self.sb.total_blocks {
                        self.problem(
                            true,
                            Fix::ResetBadTable,
                            format!("bad-block table lists block {x} outside the data area"),
                        );
                    } else {
                        self.bad.push(x);
                    }
                }
            }
            Err(e) => self.problem(true, Fix::ResetBadTable, e),
        }
    }

    fn load_inodes(&mut self, region: &Region) {
        let per_chunk = 1024u64;
        let mut buf = vec![0u8; (per_chunk * INODE_SIZE) as usize];
        let mut ino = 1;
        while ino <= self.sb.inodes_total {
            let n = per_chunk.min(self.sb.inodes_total + 1 - ino);
            let b = &mut buf[..(n * INODE_SIZE) as usize];
            if region.read_at(self.sb.inode_off(ino), b).is_err() {
                break;
            }
            for k in 0..n {
                let i = ino + k;
                let rb = &b[(k * INODE_SIZE) as usize..((k + 1) * INODE_SIZE) as usize];
                match InodeRec::decode(rb) {
                    Ok(rec) if rec.is_free() => self.free_inodes.push((i, rec.generation)),
                    Ok(rec) => {
                        if rec.kind().is_none() {
                            self.problem(
                                true,
                                Fix::ClearInode(i),
                                format!("corrupt inode {i}: bad file type in mode {:#o}", rec.mode),
                            );
                            continue;
                        }
                        self.inodes.insert(
                            i,
                            LoadedInode {
                                rec,
                                ..Default::default()
                            },
                        );
                    }
                    Err(e) => {
                        self.problem(true, Fix::ClearInode(i), format!("corrupt inode {i}: {e}"))
                    }
                }
            }
            ino += n;
        }
        match self.inodes.get(&1) {
            Some(r) if r.rec.kind() == Some(FileKind::Directory) => {}
            _ => self.problem(
                true,
                Fix::None,
                "root inode 1 is missing or not a directory".into(),
            ),
        }
    }

    fn load_maps(&mut self, region: &Region) {
        let inos: Vec<u64> = self.inodes.keys().copied().collect();
        let mut blk = vec![0u8; BLOCK as usize];
        for ino in inos {
            let rec = self.inodes[&ino].rec.clone();
            let mut extents = Vec::new();
            let mut chain = Vec::new();
            let mut bad: Option<String> = None;
            if rec.nextents as usize <= INLINE_EXTENTS && rec.map_chain == 0 {
                extents.extend_from_slice(&rec.inline[..rec.nextents as usize]);
            } else {
                let mut next = rec.map_chain;
                while next != 0 {
                    if !self.sb.in_data(next, 1) {
                        bad = Some(format!(
                            "corrupt inode {ino}: block map chain points outside the region \
                             (block {next})"
                        ));
                        break;
                    }
                    if chain.contains(&next) || chain.len() as u64 > rec.nextents {
                        bad = Some(format!("corrupt inode {ino}: block map chain loops"));
                        break;
                    }
                    chain.push(next);
                    if region.read_at(next * BLOCK, &mut blk).is_err() {
                        break;
                    }
                    match decode_chain(ino, &blk) {
                        Ok((n, ext)) => {
                            extents.extend(ext);
                            next = n;
                        }
                        Err(e) => {
                            bad = Some(format!("corrupt inode {ino}: {e}"));
                            break;
                        }
                    }
                }
                if bad.is_none() && extents.len() as u64 != rec.nextents {
                    bad = Some(format!(
                        "corrupt inode {ino}: block map holds {} extents, the inode says {}",
                        extents.len(),
                        rec.nextents
                    ));
                }
            }
            if bad.is_none() {
                let mut last_end = 0u64;
                for e in &extents {
                    if e.len == 0 || e.page < last_end || !self.sb.in_data(e.block, e.len) {
                        bad = Some(format!(
                            "corrupt inode {ino}: block map points outside the region or is \
                             unordered (file page {}, block {}, {} blocks)",
                            e.page, e.block, e.len
                        ));
                        break;
                    }
                    match e.page.checked_add(e.len) {
                        Some(end) if end <= MAX_FILE_SIZE / BLOCK => last_end = end,
                        _ => {
                            bad = Some(format!(
                                "corrupt inode {ino}: block map extent beyond the largest file"
                            ));
                            break;
                        }
                    }
                }
            }
            if let Some(what) = bad {
                self.problem(true, Fix::ClearInode(ino), what);
                self.inodes.remove(&ino);
                continue;
            }
            // Claim the blocks; a block claimed twice is a doubly-used block.
            let mut dup = None;
            let mut claimed: Vec<u64> = Vec::new();
            'claim: for b in chain
                .iter()
                .copied()
                .chain(extents.iter().flat_map(|e| e.block..e.block + e.len))
            {
                if !self.alloc.mark_used(b) {
                    dup = Some(b);
                    break 'claim;
                }
                claimed.push(b);
            }
            let mut xattrs = Vec::new();
            if dup.is_none() && rec.xattr_block != 0 {
                let xb = rec.xattr_block;
                let nblocks =
                    if self.sb.in_data(xb, 1) && region.read_at(xb * BLOCK, &mut blk).is_ok() {
                        xattr_blocks(&blk)
                    } else {
                        Err(format!("xattr block {xb} outside the region"))
                    };
                match nblocks {
                    Ok(n) if self.sb.in_data(xb, n) => {
                        for b in xb..xb + n {
                            if !self.alloc.mark_used(b) {
                                dup = Some(b);
                                break;
                            }
                            claimed.push(b);
                        }
                        let mut area = vec![0u8; (n * BLOCK) as usize];
                        if dup.is_none() && region.read_at(xb * BLOCK, &mut area).is_ok() {
                            match decode_xattrs(&area) {
                                Ok(x) => xattrs = x,
                                Err(e) => self.problem(
                                    true,
                                    Fix::DropXattrs(ino),
                                    format!("corrupt inode {ino}: {e}"),
                                ),
                            }
                        }
                    }
                    Ok(_) => self.problem(
                        true,
                        Fix::DropXattrs(ino),
                        format!("corrupt inode {ino}: xattr area {xb} runs outside the region"),
                    ),
                    Err(e) => self.problem(
                        true,
                        Fix::DropXattrs(ino),
                        format!("corrupt inode {ino}: {e}"),
                    ),
                }
            }
            if let Some(b) = dup {
                for c in claimed {
                    self.alloc.free(c);
                }
                self.problem(
                    true,
                    Fix::ClearInode(ino),
                    format!("block {b} is used twice (second user: inode {ino})"),
                );
                self.inodes.remove(&ino);
                continue;
            }
            let map_end = extents.last().map_or(0, |e| e.page + e.len);
            let size_bad = match rec.kind() {
                Some(FileKind::Directory) => rec.size != map_end * BLOCK,
                _ => rec.size > MAX_FILE_SIZE,
            };
            if size_bad {
                for c in claimed {
                    self.alloc.free(c);
                }
                self.problem(
                    true,
                    Fix::ClearInode(ino),
                    format!("corrupt inode {ino}: bad size {}", rec.size),
                );
                self.inodes.remove(&ino);
                continue;
            }
            let li = self.inodes.get_mut(&ino).expect("present");
            li.extents = extents;
            li.chain = chain;
            li.xattrs = xattrs;
            let kind = li.rec.kind();
            let size = li.rec.size;
            if kind == Some(FileKind::Symlink) && (size == 0 || size >= BLOCK) {
                self.problem(
                    true,
                    Fix::ClearInode(ino),
                    format!("corrupt inode {ino}: symlink of length {size}"),
                );
                self.inodes.remove(&ino);
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
            let extents = self.inodes[&d].extents.clone();
            let npages = self.inodes[&d].rec.size / BLOCK;
            let mut ents = Vec::new();
            let mut names = HashSet::new();
            for e in &extents {
                for p in e.page..(e.page + e.len).min(npages) {
                    let b = e.block + (p - e.page);
                    if region.read_at(b * BLOCK, &mut blk).is_err() {
                        continue;
                    }
                    for s in 0..DIRENTS_PER_BLOCK {
                        let slot = p * DIRENTS_PER_BLOCK + s;
                        let so = (s * DIRENT_SIZE) as usize;
                        let off = dirent_off(b, slot);
                        match Dirent::decode(&blk[so..so + DIRENT_SIZE as usize]) {
                            Ok(None) => {}
                            Ok(Some(de)) => {
                                let target = self.inodes.get(&de.ino).map(|l| l.rec.kind());
                                let name = String::from_utf8_lossy(&de.name).into_owned();
                                match target {
                                    None => self.problem(
                                        true,
                                        Fix::DropDirent { off },
                                        format!(
                                            "directory {d} entry '{name}' points to a free or \
                                             corrupt inode {}",
                                            de.ino
                                        ),
                                    ),
                                    Some(k) if k != Some(de.kind) => self.problem(
                                        true,
                                        Fix::DropDirent { off },
                                        format!(
                                            "directory {d} entry '{name}': type differs from \
                                             inode {}",
                                            de.ino
                                        ),
                                    ),
                                    Some(_) if !names.insert(de.name.clone()) => self.problem(
                                        true,
                                        Fix::DropDirent { off },
                                        format!("directory {d}: duplicate entry '{name}'"),
                                    ),
                                    Some(_) => ents.push((slot, de)),
                                }
                            }
                            Err(e) => self.problem(
                                true,
                                Fix::DropDirent { off },
                                format!("directory {d} slot {slot}: {e}"),
                            ),
                        }
                    }
                }
            }
            self.inodes.get_mut(&d).expect("present").dirents = ents;
        }
    }

    fn check_links(&mut self) {
        let mut refs: HashMap<u64, u32> = HashMap::new();
        let mut subdirs: HashMap<u64, u32> = HashMap::new();
        let mut parent_of: HashMap<u64, u64> = HashMap::new();
        let mut extra = Vec::new();
        for (&d, l) in &self.inodes {
            for (slot, de) in &l.dirents {
                *refs.entry(de.ino).or_default() += 1;
                if de.kind == FileKind::Directory {
                    if parent_of.contains_key(&de.ino) || de.ino == 1 {
                        let off = l
                            .block_of(slot / DIRENTS_PER_BLOCK)
                            .map(|b| dirent_off(b, *slot))
                            .unwrap_or(0);
                        extra.push(Problem {
                            what: format!(
                                "directory {} is linked more than once (in directory {d})",
                                de.ino
                            ),
                            fatal: true,
                            fix: Fix::DropDirent { off },
                        });
                        continue;
                    }
                    parent_of.insert(de.ino, d);
                    *subdirs.entry(d).or_default() += 1;
                }
            }
        }
        self.problems.extend(extra);
        let inos: Vec<u64> = self.inodes.keys().copied().collect();
        for ino in inos {
            let l = &self.inodes[&ino];
            let r = refs.get(&ino).copied().unwrap_or(0);
            let is_dir = l.rec.kind() == Some(FileKind::Directory);
            let nlink = l.rec.nlink;
            let rec_parent = l.rec.parent;
            if ino == 1 {
                let want = 2 + subdirs.get(&1).copied().unwrap_or(0);
                if nlink != want {
                    self.problem(
                        false,
                        Fix::SetNlink { ino, nlink: want },
                        format!("wrong link count on inode 1: {nlink}, should be {want}"),
                    );
                }
                continue;
            }
            if r == 0 {
                if nlink == 0 {
                    self.problem(false, Fix::ClearInode(ino), format!("orphan inode {ino}"));
                } else {
                    self.problem(
                        false,
                        Fix::ClearInode(ino),
                        format!("unreachable inode {ino} (link count {nlink}, no entry)"),
                    );
                }
                continue;
            }
            let want = if is_dir {
                2 + subdirs.get(&ino).copied().unwrap_or(0)
            } else {
                r
            };
            if nlink != want {
                self.problem(
                    false,
                    Fix::SetNlink { ino, nlink: want },
                    format!("wrong link count on inode {ino}: {nlink}, should be {want}"),
                );
            }
            if is_dir {
                let p = parent_of.get(&ino).copied().unwrap_or(1);
                if rec_parent != p {
                    self.problem(
                        false,
                        Fix::SetParent { ino, parent: p },
                        format!("directory {ino} records parent {rec_parent}, is in {p}"),
                    );
                }
            }
        }
    }
}
