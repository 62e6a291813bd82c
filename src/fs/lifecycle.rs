//! A region's life as a filesystem: mkfs, open (recovery, then the in-DRAM state rebuilt from the
//! image), and close (everything persisted, orphans evicted).
//!
//! Rules it keeps (docs/DESIGN.md, "Durability", "Errors"): open replays a committed journal
//! transaction, then refuses a region with any fatal problem, naming the first; pages on bad
//! blocks are poisoned again as they are mapped; orphans left by a crash are evicted at a
//! read-write open. Close persists every inode and evicts unlinked ones; it runs once (also on
//! drop).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::daxfs::DaxFs;
use super::filemap::run_entries;
use super::inode::{Dir, IState, Inode, Slot};
use super::io::{fsync, DataPath};
use super::itable::InodeTable;
use super::namespace::Namespace;
use super::time::now_ns;
use super::types::{FileKind, MkfsOptions, OpenOptions, RegionStat};
use super::volume::{BadTableState, Volume};
use crate::dax::DaxOptions;
use crate::region::{Region, RegionError};
use crate::store::ichunk::chunks_for;
use crate::store::{
    self, badtable::encode_bad_table, read_superblock, Allocator, BadRanges, ChunkMap,
    CorruptReason, Extent, Image, InodeRec, Journal, JournalError, LoadedInode, Superblock,
    SuperblockError, BLOCK, DIRENTS_PER_BLOCK, ICHUNK_INODES, INODE_SIZE,
};

impl DaxFs {
    /// Formats `path` as a fresh daxfs region (creating a sparse file of `opts.size` if needed).
    /// When it fails, a file it created is removed and a file it grew is shrunk back.
    pub fn mkfs(path: &Path, opts: &MkfsOptions) -> Result<RegionStat, crate::Error> {
        DaxFs::mkfs_format(path, opts, store::VERSION)
    }

    /// As [`Self::mkfs`], in on-media format `version`: 2 (the current one) or 1, the format
    /// before the inode-chunk map, whose whole inode table is written and read (for
    /// compatibility tests and regions shared with older daxfs). Other versions are treated as 2.
    pub fn mkfs_format(
        path: &Path,
        opts: &MkfsOptions,
        version: u32,
    ) -> Result<RegionStat, crate::Error> {
        let version = if version == 1 { 1 } else { store::VERSION };
        let existed = path.exists();
        if !existed && opts.size.is_none() {
            return Err(RegionError::NeedSize {
                path: path.to_path_buf(),
            }
            .into());
        }
        let old_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let region = Region::open(path, opts.size)?;
        let r = format(&region, path, opts, version);
        if r.is_err() {
            drop(region);
            crate::region::undo_create(path, existed, old_len);
        }
        r
    }

    /// Opens a formatted region: validates the superblock and metadata (refusing a bad region with
    /// an [`crate::Error`] that names the problem), replays the journal, takes the region lock.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<DaxFs, crate::Error> {
        let region = Region::open(path, None)?;
        let sb = if opts.read_only && opts.no_recovery {
            superblock(&region, path)?
        } else {
            recover(&region, path)?
        };
        let img = Image::load(&region, sb.clone());
        if let Some(p) = img.first_fatal() {
            return Err(corrupt(path, p.reason.clone()));
        }
        let fs = DaxFs::from_image(region, img, opts);
        if !fs.vol.read_only() {
            fs.ns.reclaim_orphans(&fs.vol, &fs.inodes);
        }
        Ok(fs)
    }

    /// The in-DRAM filesystem of a loaded, sound image.
    fn from_image(region: Region, img: Image, opts: &OpenOptions) -> DaxFs {
        let bad = BadTableState {
            set: img.bad,
            free: img.bad_free,
            chain: img.bad_chain,
            generation: img.bad_generation,
        };
        let dax_opts = DaxOptions::with_bugs(opts.dax_bugs);
        let inodes = InodeTable::new(img.sb.inodes_total, img.ichunks, img.free_inodes, dax_opts);
        for (ino, li) in img.inodes {
            let extents = li.extents.clone();
            let inode = inodes.make(ino, inode_state(li));
            map_extents(&inode, &extents, &bad.set);
            inodes.install(inode);
        }
        DaxFs {
            vol: Volume::new(region, img.sb, img.alloc, bad, opts.read_only),
            inodes,
            ns: Namespace::default(),
            data: DataPath::new(opts.dax),
            shut: AtomicBool::new(false),
        }
    }

    /// Persists everything and releases the region (also done on drop).
    pub fn close(self) -> Result<(), crate::Error> {
        self.shutdown()
    }

    /// Close, once: orphans are evicted (references and opens no longer count), every other inode
    /// made durable. Return: the first persistence error.
    pub(super) fn shutdown(&self) -> Result<(), crate::Error> {
        if self.shut.swap(true, Ordering::SeqCst) || self.vol.read_only() {
            return Ok(());
        }
        if self.vol.is_down() {
            // Shut down (`fs::shutdown`): what was not durable is lost, as in a crash.
            return Ok(());
        }
        let mut err = None;
        for inode in self.inodes.live() {
            let orphan = inode.state.read().rec.nlink == 0;
            if orphan {
                inode.lookups.store(0, Ordering::SeqCst);
                inode.opens.store(0, Ordering::SeqCst);
                self.ns.maybe_evict(&self.vol, &self.inodes, &inode);
            } else if let Err(e) = fsync(&self.vol, &inode, false) {
                err = Some(e);
            }
        }
        match err {
            Some(errno) => Err(crate::Error::Close {
                path: self.vol.region().path().to_path_buf(),
                errno,
            }),
            None => Ok(()),
        }
    }
}

impl Drop for DaxFs {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::error!("daxfs: {e}");
        }
    }
}

/// mkfs on the opened region: the layout for its size, the empty image.
fn format(
    region: &Region,
    path: &Path,
    opts: &MkfsOptions,
    version: u32,
) -> Result<RegionStat, crate::Error> {
    let len = region.len();
    let max_inodes = (len / 4 / store::INODE_SIZE).max(2);
    let inodes = opts
        .inodes
        .unwrap_or((len / (16 << 10)).max(1024))
        .clamp(2, max_inodes);
    let sb = Superblock::for_region_version(len, inodes, now_ns() as u64, version);
    if sb.data_start + 64 > sb.total_blocks {
        return Err(crate::Error::TooSmall {
            path: path.to_path_buf(),
            len,
            inodes,
        });
    }
    write_empty_image(region, &sb)?;
    let a = Allocator::new(sb.data_start, sb.total_blocks);
    Ok(RegionStat {
        size: sb.size,
        block_size: BLOCK,
        used_blocks: sb.total_blocks - a.free_blocks(),
        free_blocks: a.free_blocks(),
        free_2m_runs: a.free_2m_runs(),
        inodes_used: 1,
        inodes_total: inodes,
        bad_blocks: 0,
    })
}

/// mkfs's metadata: zeroed journal, an empty bad-block table, the inode-chunk map marking chunk 0,
/// chunk 0 of the inode table zeroed, the root directory; the superblock written last, once the
/// rest is durable. Nothing else is written (the other chunks are never read until marked), so
/// mkfs costs the same at any size. A version-1 image zeroes its whole inode table instead.
fn write_empty_image(region: &Region, sb: &Superblock) -> Result<(), crate::Error> {
    let meta = if sb.version >= 2 {
        let chunk0 = ICHUNK_INODES.min(sb.inodes_total + 1) * INODE_SIZE;
        sb.inode_off(0) + chunk0
    } else {
        sb.data_start * BLOCK
    };
    // Storage first: a full filesystem under a region file is an error here, not a SIGBUS.
    region.reserve(0, meta)?;
    region.zero(0, meta)?;
    region.write_at(sb.badblk_off(), &encode_bad_table(&[], &[], 1).0)?;
    if sb.version >= 2 {
        let mut map = ChunkMap::empty(chunks_for(sb.inodes_total), sb.ichunk_off());
        map.set(0);
        for i in 0..sb.ichunk_blocks {
            region.write_at(sb.ichunk_off() + i * BLOCK, &map.encode_block(i))?;
        }
    }
    let t = now_ns();
    let root = InodeRec {
        mode: libc::S_IFDIR | 0o755,
        nlink: 2,
        generation: 1,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        parent: 1,
        ..Default::default()
    };
    region.write_at(sb.inode_off(1), &root.encode())?;
    region.persist(BLOCK, meta - BLOCK)?;
    region.write_at(0, &sb.encode())?;
    region.persist(0, BLOCK)?;
    Ok(())
}

pub(super) fn corrupt(path: &Path, reason: CorruptReason) -> crate::Error {
    crate::Error::Corrupt {
        path: path.to_path_buf(),
        reason,
    }
}

/// Reads and checks the superblock (a bad one is a corrupt region named by `path`).
fn superblock(region: &Region, path: &Path) -> Result<Superblock, crate::Error> {
    read_superblock(region).map_err(|e| match e {
        SuperblockError::Region(e) => crate::Error::Region(e),
        SuperblockError::Corrupt(reason) => corrupt(path, reason),
    })
}

/// Reads the superblock and replays a committed journal transaction: what open and fsck do first.
pub(super) fn recover(region: &Region, path: &Path) -> Result<Superblock, crate::Error> {
    let sb = superblock(region, path)?;
    Journal::replay(region, &sb).map_err(|e| match e {
        JournalError::Damaged(d) => corrupt(path, CorruptReason::Journal(d)),
        source => crate::Error::Journal {
            path: path.to_path_buf(),
            source,
        },
    })?;
    Ok(sb)
}

/// The in-DRAM state of a loaded inode: its record, chain, xattrs and, for a directory, its
/// entries with every slot of its blocks (used or free).
fn inode_state(li: LoadedInode) -> IState {
    let mut st = IState::new(li.rec);
    st.chain = li.chain;
    st.xattrs = li.xattrs;
    if st.kind() == FileKind::Directory {
        let mut d = Dir::default();
        let cap = (st.rec.size / BLOCK * DIRENTS_PER_BLOCK) as usize;
        for (slot, de) in li.dirents {
            d.insert(
                slot as usize,
                Slot {
                    ino: de.ino,
                    kind: de.kind,
                    name: OsString::from_vec(de.name),
                },
            );
        }
        for s in d.slots.len()..cap {
            d.free.insert(s);
        }
        d.slots.resize(d.slots.len().max(cap), None);
        st.dir = Some(d);
    }
    st
}

/// Maps a loaded inode's extents as DAX entries (PMD where a 2 MiB-aligned run backs a 2
/// MiB-aligned range), then poisons its pages on bad blocks again, a run at a time (their entries
/// split around them).
fn map_extents(inode: &Arc<Inode>, extents: &[Extent], bad: &BadRanges) {
    let ino = inode.ino;
    for e in extents {
        for (p, order, b) in run_entries(e.page, e.block, e.len) {
            if let Err(err) = inode.map.map(p, order, b) {
                log::error!("daxfs: inode {ino}: cannot map page {p}: {err}");
            }
        }
        for (bb, n) in bad.within(e.block, e.block + e.len) {
            let first = e.page + (bb - e.block);
            if let Err(err) = crate::memory_failure::walk::restore(&inode.map, first, first + n) {
                log::error!("daxfs: inode {ino}: cannot poison pages {first}+{n}: {err}");
            }
        }
    }
}
