//! The embedded filesystem handle: every POSIX operation of daxfs, without FUSE.
//!
//! Owns the POSIX semantics over the on-media store (`crate::store`): the inode table in DRAM,
//! namespace operations, the data path, durability points and file handles. This file holds the
//! handle itself (mkfs, open, fsck, close), the inode table and the commit helpers every operation
//! shares; the operations live in the submodules, one group each: `dirents` (directory blocks and
//! new inodes), `namespace`, `io` (the data path), `space` (allocation, truncate, fallocate,
//! holes), `attrs`, `xattrs`, `inspect` (read-only views) and `badblocks` (bad-block table and
//! memory-failure hooks).
//!
//! Rules it keeps:
//! - Locks: `ns` (one mutex) serializes namespace operations (create, unlink, rename, link, ...,
//!   eviction); under it, any set of inode locks may be taken. Outside it, at most one inode lock is
//!   held at a time, so there is no lock-order cycle. The allocator and journal mutexes are leaves.
//!   The read/write path takes only the inode's own lock (shared for reads, exclusive for writes)
//!   and, for allocating writes, the allocator mutex.
//! - Durability: namespace operations, setattr, fallocate and xattr changes commit a journal
//!   transaction before returning. Writes only copy into the mapping and note the dirty page range
//!   and whether the block map/size changed; `fsync`, `flush` and `release` persist the data first,
//!   then commit the inode record and block map (data before metadata). Overwrites of allocated
//!   blocks are never persisted before then.
//! - A newly allocated block is zeroed wherever the write does not cover it, so holes and stale
//!   data never show.
//! - Every inode commit persists that inode's dirty data first, so a committed block map never
//!   points to blocks whose contents are not durable.

mod attrs;
mod badblocks;
mod dirents;
mod inspect;
mod io;
mod layout;
mod namespace;
mod space;
mod xattrs;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock, RwLockWriteGuard};

use super::atime::{AtimeMode, AtimePolicy};
use super::filemap::{RangeLock, Rmap, PMD_ORDER, PMD_PAGES};
use super::inode::{Dir, IState, Inode, Slot};
use super::privs;
use super::*;
use crate::error::RepairError;
use crate::region::Region;
use crate::store::{
    self, encode_badblocks, encode_chain, encode_xattrs, read_superblock, Allocator, CorruptReason,
    Dirent, Extent, Fix, Image, InodeRec, Journal, JournalError, Superblock, SuperblockError, Tx,
    BADBLK_MAX, BLOCK, DIRENTS_PER_BLOCK, DIRENT_SIZE, EXTENTS_PER_CHAIN, INLINE_EXTENTS,
    MAX_FILE_SIZE, XATTR_VALUE_MAX,
};

/// Options for [`DaxFs::mkfs`].
#[derive(Clone, Debug, Default)]
pub struct MkfsOptions {
    /// Size for a new (or grown) region file; ignored for devices.
    pub size: Option<u64>,
    /// Number of inodes; `None` picks one per 16 KiB of region, at least 1024.
    pub inodes: Option<u64>,
}

/// How `dax=` was asked for at mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DaxMode {
    /// Every file is accessed directly (FUSE `FOPEN_DIRECT_IO`, no kernel page cache).
    #[default]
    Always,
    /// The kernel page cache is used.
    Never,
    /// Per inode, by the `FS_XFLAG_DAX` flag.
    Inode,
}

/// Options for [`DaxFs::open`].
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    pub read_only: bool,
    pub dax: DaxMode,
    /// Historical `fs/dax.c` bugs every inode's DAX mapping reproduces (docs/DAX-BUGS.md);
    /// empty (the default) is today's kernel behaviour.
    pub dax_bugs: crate::dax::Bugs,
}

/// Who uses a region block (see [`DaxFs::block_owner`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockOwner {
    /// Free (possibly bad).
    Free,
    /// Superblock, journal, bad-block table or inode table.
    Layout,
    /// File page `page` of inode `ino` (regular file, directory or symlink data).
    File { ino: Ino, page: u64 },
    /// A block-map chain block or the xattr block of inode `ino`.
    InodeMeta { ino: Ino },
}

/// A mounted (opened) daxfs region.
pub struct DaxFs {
    region: Region,
    sb: Superblock,
    dax: DaxMode,
    read_only: bool,
    journal: Journal,
    alloc: Mutex<Allocator>,
    table: Vec<RwLock<Option<Arc<Inode>>>>,
    /// Free inode numbers → generation of their last use.
    free_inos: Mutex<BTreeMap<u64, u64>>,
    ns: Mutex<()>,
    bad: RwLock<BTreeSet<u64>>,
    bad_any: AtomicBool,
    /// Region block → (inode, file page), kept by the file maps (memory failure's reverse map).
    rmap: Arc<Rmap>,
    handles: Mutex<HashMap<u64, Ino>>,
    next_fh: AtomicU64,
    shut: AtomicBool,
    /// Which reads update atime (the mount's noatime/relatime/strictatime/nodiratime).
    atime: AtimePolicy,
    /// Options of every inode's DAX mapping (the historical bugs switched on).
    dax_opts: crate::dax::DaxOptions,
    /// The direct-mapping lease manager, once the daemon installed one (`fs::layout`).
    layouts: std::sync::OnceLock<Arc<dyn super::layout::LayoutBreaker>>,
    /// Blocks freed while a lease holder had not acknowledged the change (`fs::layout`).
    quarantine: super::layout::Quarantine,
}

/// The per-inode flags a new inode of `kind` takes from its parent directory's `parent_flags`:
/// `FS_XFLAG_DAX`, for directories and regular files only (as `xfs_inode_inherit_flags` and
/// ext4's `ext4_mask_flags` do). A later rename keeps an inode's flags; a copy is a new inode.
fn inherited_flags(parent_flags: u32, kind: FileKind) -> u32 {
    match kind {
        FileKind::Directory | FileKind::Regular => parent_flags & crate::ioctl::FS_XFLAG_DAX,
        _ => 0,
    }
}

fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<DaxFs>();
}

/// Blocks kept back from data allocations for block-map chain blocks.
const META_RESERVE: u64 = 32;

thread_local! {
    static GATHER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn eio<E: std::fmt::Display>(e: E) -> Errno {
    log::error!("daxfs: I/O error: {e}");
    Errno::EIO
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn to_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn from_time(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_nanos().min(i64::MAX as u128) as i64),
    }
}

fn check_name(name: &OsStr) -> FsResult<()> {
    let b = name.as_bytes();
    if b.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if b.is_empty() || b.contains(&b'/') || b.contains(&0) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// A name for a new entry (create, mkdir, link, ...): a valid name, and not `.` or `..`, which
/// always exist (`EEXIST`).
fn check_new_name(name: &OsStr) -> FsResult<()> {
    check_name(name)?;
    if is_dot(name) {
        return Err(Errno::EEXIST);
    }
    Ok(())
}

/// `Ok` for a regular file; `EISDIR` for a directory, `other` for any other kind (each caller's
/// errno: `EINVAL` for write and truncate, `ENODEV` for fallocate).
fn require_regular(kind: FileKind, other: Errno) -> FsResult<()> {
    match kind {
        FileKind::Regular => Ok(()),
        FileKind::Directory => Err(Errno::EISDIR),
        _ => Err(other),
    }
}

fn is_dot(name: &OsStr) -> bool {
    name.as_bytes() == b"." || name.as_bytes() == b".."
}

fn corrupt(path: &Path, reason: CorruptReason) -> crate::Error {
    crate::Error::Corrupt {
        path: path.to_path_buf(),
        reason,
    }
}

/// Reads the superblock and replays a committed journal transaction: what open and fsck do first.
fn recover(region: &Region, path: &Path) -> Result<Superblock, crate::Error> {
    let sb = read_superblock(region).map_err(|e| match e {
        SuperblockError::Region(e) => crate::Error::Region(e),
        SuperblockError::Corrupt(reason) => corrupt(path, reason),
    })?;
    Journal::replay(region, &sb).map_err(|e| match e {
        JournalError::Damaged(d) => corrupt(path, CorruptReason::Journal(d)),
        source => crate::Error::Journal {
            path: path.to_path_buf(),
            source,
        },
    })?;
    Ok(sb)
}

/// Builds the block-map extents (merged runs) of a map.
fn extents_of(map: &super::filemap::FileMap) -> Vec<Extent> {
    let mut out: Vec<Extent> = Vec::new();
    for e in map.entries() {
        let len = 1u64 << e.order;
        if let Some(l) = out.last_mut() {
            if l.page + l.len == e.index && l.block + l.len == e.value {
                l.len += len;
                continue;
            }
        }
        out.push(Extent {
            page: e.index,
            block: e.value,
            len,
        });
    }
    out
}

/// Lock set of a namespace operation: write guards of distinct inodes, found by number.
struct Locked<'a> {
    g: Vec<(Ino, RwLockWriteGuard<'a, IState>)>,
}

impl<'a> Locked<'a> {
    fn new(inodes: &[&'a Arc<Inode>]) -> Locked<'a> {
        let mut g: Vec<(Ino, RwLockWriteGuard<'a, IState>)> = Vec::new();
        for i in inodes {
            if !g.iter().any(|(n, _)| *n == i.ino) {
                g.push((i.ino, i.state.write()));
            }
        }
        Locked { g }
    }
    fn st(&mut self, ino: Ino) -> &mut IState {
        &mut self
            .g
            .iter_mut()
            .find(|(n, _)| *n == ino)
            .expect("inode in lock set")
            .1
    }
}

impl DaxFs {
    /// Formats `path` as a fresh daxfs region (creating a sparse file of `opts.size` if needed).
    pub fn mkfs(path: &Path, opts: &MkfsOptions) -> Result<RegionStat, crate::Error> {
        let region = Region::open(path, opts.size)?;
        let len = region.len();
        let max_inodes = (len / 4 / store::INODE_SIZE).max(2);
        let inodes = opts
            .inodes
            .unwrap_or((len / (16 << 10)).max(1024))
            .clamp(2, max_inodes);
        let sb = Superblock::for_region(len, inodes, now_ns() as u64);
        if sb.data_start + 64 > sb.total_blocks {
            return Err(crate::Error::TooSmall {
                path: path.to_path_buf(),
                len,
                inodes,
            });
        }
        let meta = sb.data_start * BLOCK;
        region.zero(0, meta)?;
        region.write_at(sb.badblk_off(), &encode_badblocks(&[]))?;
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

    /// Opens a formatted region: validates the superblock and metadata (refusing a bad region with
    /// an [`crate::Error`] that names the problem), replays the journal, takes the region lock.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<DaxFs, crate::Error> {
        let region = Region::open(path, None)?;
        let sb = recover(&region, path)?;
        let img = Image::load(&region, sb.clone());
        if let Some(p) = img.first_fatal() {
            return Err(corrupt(path, p.reason.clone()));
        }
        let fs = DaxFs::from_image(region, img, opts);
        if !fs.read_only {
            fs.reclaim_orphans();
        }
        Ok(fs)
    }

    fn from_image(region: Region, img: Image, opts: &OpenOptions) -> DaxFs {
        let sb = img.sb.clone();
        let bad: BTreeSet<u64> = img.bad.iter().copied().collect();
        let rmap = Arc::new(Rmap::new());
        let mut table = Vec::with_capacity(sb.inodes_total as usize + 1);
        table.resize_with(sb.inodes_total as usize + 1, || RwLock::new(None));
        for (ino, li) in img.inodes {
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
            let inode = Inode::new(ino, st, crate::dax::DaxOptions::with_bugs(opts.dax_bugs));
            inode.map.attach_rmap(rmap.clone());
            for e in &li.extents {
                let (mut p, mut b, end) = (e.page, e.block, e.page + e.len);
                while p < end {
                    let order = if p % PMD_PAGES == 0 && b % PMD_PAGES == 0 && end - p >= PMD_PAGES
                    {
                        PMD_ORDER
                    } else {
                        0
                    };
                    if let Err(err) = inode.map.map(p, order, b) {
                        log::error!("daxfs: inode {ino}: cannot map page {p}: {err}");
                    }
                    p += 1 << order;
                    b += 1 << order;
                }
                // Pages on bad blocks are poisoned again (their entries split around them).
                for &bb in bad.range(e.block..e.block + e.len) {
                    let _ = inode
                        .map
                        .poison_page(e.page + (bb - e.block), bb, || Ok(()));
                }
            }
            table[ino as usize] = RwLock::new(Some(Arc::new(inode)));
        }
        let mut alloc = img.alloc;
        alloc.set_reserve(META_RESERVE);
        DaxFs {
            journal: Journal::new(&sb),
            region,
            dax: opts.dax,
            read_only: opts.read_only,
            alloc: Mutex::new(alloc),
            table,
            free_inos: Mutex::new(img.free_inodes.into_iter().collect()),
            ns: Mutex::new(()),
            bad_any: AtomicBool::new(!bad.is_empty()),
            bad: RwLock::new(bad),
            rmap,
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            shut: AtomicBool::new(false),
            atime: AtimePolicy::default(),
            dax_opts: crate::dax::DaxOptions::with_bugs(opts.dax_bugs),
            layouts: std::sync::OnceLock::new(),
            quarantine: Default::default(),
            sb,
        }
    }

    fn live_inodes(&self) -> Vec<Arc<Inode>> {
        self.table.iter().filter_map(|s| s.read().clone()).collect()
    }

    fn reclaim_orphans(&self) {
        for inode in self.live_inodes() {
            if inode.state.read().rec.nlink == 0 {
                log::info!("daxfs: reclaiming orphan inode {}", inode.ino);
                self.maybe_evict(&inode);
            }
        }
    }

    /// Checks a region that is not mounted; returns each problem found (empty when clean).
    /// With `repair`, fixes what it can and returns what it fixed (a region that still has
    /// problems after repair shows them at the next check).
    ///
    /// A committed journal transaction is replayed first (that is recovery, not repair).
    pub fn fsck(path: &Path, repair: bool) -> Result<Vec<CorruptReason>, crate::Error> {
        let region = Region::open(path, None)?;
        let sb = recover(&region, path)?;
        let journal = Journal::new(&sb);
        let mut found: Vec<CorruptReason> = Vec::new();
        for pass in 0..6 {
            let img = Image::load(&region, sb.clone());
            if img.problems.is_empty() {
                break;
            }
            for p in &img.problems {
                if !found.contains(&p.reason) {
                    found.push(p.reason.clone());
                }
            }
            if !repair {
                break;
            }
            if pass == 5 {
                log::warn!("{}: some problems could not be repaired", path.display());
                break;
            }
            for p in &img.problems {
                let mut tx = Tx::new();
                let fixed = Self::repair_one(&region, &sb, &p.fix, &mut tx)
                    .and_then(|()| Ok(journal.commit(&region, &tx)?));
                fixed.map_err(|source| crate::Error::Repair {
                    path: path.to_path_buf(),
                    source,
                })?;
            }
        }
        Ok(found)
    }

    fn repair_one(
        region: &Region,
        sb: &Superblock,
        fix: &Fix,
        tx: &mut Tx,
    ) -> Result<(), RepairError> {
        let read_rec = |ino: u64| -> Result<InodeRec, RepairError> {
            let mut b = [0u8; store::INODE_SIZE as usize];
            region.read_at(sb.inode_off(ino), &mut b)?;
            InodeRec::decode(&b).map_err(|what| RepairError::Record { ino, what })
        };
        match *fix {
            Fix::None => {}
            Fix::ClearInode(ino) => {
                let generation = read_rec(ino).map(|r| r.generation).unwrap_or(0);
                let r = InodeRec {
                    generation,
                    ..Default::default()
                };
                tx.write(sb.inode_off(ino), &r.encode());
            }
            Fix::DropDirent { off } => {
                if off >= sb.data_start * BLOCK {
                    tx.write(off, &[0u8; DIRENT_SIZE as usize]);
                }
            }
            Fix::SetNlink { ino, nlink } => {
                let mut r = read_rec(ino)?;
                r.nlink = nlink;
                tx.write(sb.inode_off(ino), &r.encode());
            }
            Fix::SetParent { ino, parent } => {
                let mut r = read_rec(ino)?;
                r.parent = parent;
                tx.write(sb.inode_off(ino), &r.encode());
            }
            Fix::DropXattrs(ino) => {
                let mut r = read_rec(ino)?;
                r.xattr_block = 0;
                tx.write(sb.inode_off(ino), &r.encode());
            }
            Fix::ResetBadTable => tx.write(sb.badblk_off(), &encode_badblocks(&[])),
        }
        Ok(())
    }

    /// Region statistics.
    pub fn region_stat(&self) -> RegionStat {
        let a = self.alloc.lock();
        RegionStat {
            size: self.sb.size,
            block_size: BLOCK,
            used_blocks: self.sb.total_blocks - a.free_blocks(),
            free_blocks: a.free_blocks(),
            free_2m_runs: a.free_2m_runs(),
            inodes_used: self.sb.inodes_total - self.free_inos.lock().len() as u64,
            inodes_total: self.sb.inodes_total,
            bad_blocks: self.bad.read().len() as u64,
        }
    }

    /// Sets which reads update atime (default relatime). Any time, e.g. at remount.
    pub fn set_atime_mode(&self, mode: AtimeMode, nodiratime: bool) {
        self.atime.set(mode, nodiratime);
    }

    /// The dax mode the filesystem was opened with.
    pub fn dax_mode(&self) -> DaxMode {
        self.dax
    }

    /// Persists everything and releases the region (also done on drop).
    pub fn close(self) -> Result<(), crate::Error> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<(), crate::Error> {
        if self.shut.swap(true, Ordering::SeqCst) || self.read_only {
            return Ok(());
        }
        let mut err = None;
        for inode in self.live_inodes() {
            let orphan = inode.state.read().rec.nlink == 0;
            if orphan {
                inode.lookups.store(0, Ordering::SeqCst);
                inode.opens.store(0, Ordering::SeqCst);
                self.maybe_evict(&inode);
            } else if let Err(e) = self.fsync(inode.ino, false) {
                err = Some(e);
            }
        }
        match err {
            Some(errno) => Err(crate::Error::Close {
                path: self.region.path().to_path_buf(),
                errno,
            }),
            None => Ok(()),
        }
    }

    // ---- internal helpers ----

    fn iget(&self, ino: Ino) -> FsResult<Arc<Inode>> {
        self.table
            .get(ino as usize)
            .and_then(|s| s.read().clone())
            .ok_or(Errno::ENOENT)
    }

    fn writable(&self) -> FsResult<()> {
        if self.read_only {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    fn attr_of(&self, inode: &Inode, st: &IState) -> Attr {
        let r = &st.rec;
        let xb = store::xattr_area_blocks(&st.xattrs);
        Attr {
            ino: inode.ino,
            kind: st.kind(),
            perm: (r.mode & 0o7777) as u16,
            nlink: r.nlink,
            uid: r.uid,
            gid: r.gid,
            size: r.size,
            blocks: (inode.map.mapped_pages() + xb) * (BLOCK / 512),
            atime: to_time(inode.atime.load(Ordering::Relaxed)),
            mtime: to_time(r.mtime),
            ctime: to_time(r.ctime),
            crtime: to_time(r.crtime),
            rdev: r.rdev,
            generation: r.generation,
            flags: r.flags,
        }
    }

    /// Persists the inode's dirty data pages.
    fn persist_data(&self, inode: &Inode, st: &mut IState) -> FsResult<()> {
        if st.dirty_lo >= st.dirty_hi {
            return Ok(());
        }
        let (lo, hi) = (st.dirty_lo, st.dirty_hi);
        let mut run: Option<(u64, u64)> = None;
        for e in inode.map.entries_in(lo, hi) {
            let s = e.index.max(lo);
            let end = e.end().min(hi);
            let b = e.value + (s - e.index);
            let n = end - s;
            match &mut run {
                Some((rb, rn)) if *rb + *rn == b => *rn += n,
                _ => {
                    if let Some((rb, rn)) = run {
                        self.region.persist(rb * BLOCK, rn * BLOCK).map_err(eio)?;
                    }
                    run = Some((b, n));
                }
            }
        }
        if let Some((rb, rn)) = run {
            self.region.persist(rb * BLOCK, rn * BLOCK).map_err(eio)?;
        }
        st.dirty_lo = u64::MAX;
        st.dirty_hi = 0;
        Ok(())
    }

    /// Adds the inode's record (and, copy-on-write, its block map) to `tx`, after persisting its
    /// dirty data. Context: inode lock held exclusive.
    fn commit_inode_into(&self, tx: &mut Tx, inode: &Inode, st: &mut IState) -> FsResult<()> {
        if st.rec.nlink > 0 {
            // Media never sees a mapped block with stale contents.
            self.init_uninit(inode, st, u64::MAX, None)?;
            self.persist_data(inode, st)?;
        }
        if st.map_dirty || st.rec.nextents as usize > INLINE_EXTENTS && st.chain.is_empty() {
            let ext = extents_of(&inode.map);
            st.rec.nextents = ext.len() as u64;
            if ext.len() <= INLINE_EXTENTS {
                st.rec.inline = Default::default();
                st.rec.inline[..ext.len()].copy_from_slice(&ext);
                st.rec.map_chain = 0;
                tx.free_after.append(&mut st.chain);
            } else {
                let n = ext.len().div_ceil(EXTENTS_PER_CHAIN);
                let mut blocks = Vec::with_capacity(n);
                {
                    let mut a = self.alloc.lock();
                    for _ in 0..n {
                        match a.alloc_meta(blocks.last().map(|b| b + 1)) {
                            Some(b) => blocks.push(b),
                            None => {
                                for b in blocks {
                                    a.free(b);
                                }
                                return Err(Errno::ENOSPC);
                            }
                        }
                    }
                }
                for (i, chunk) in ext.chunks(EXTENTS_PER_CHAIN).enumerate() {
                    let next = blocks.get(i + 1).copied().unwrap_or(0);
                    let b = encode_chain(inode.ino, next, chunk);
                    self.region.write_at(blocks[i] * BLOCK, &b).map_err(eio)?;
                    self.region.persist(blocks[i] * BLOCK, BLOCK).map_err(eio)?;
                }
                st.rec.inline = Default::default();
                st.rec.map_chain = blocks[0];
                tx.free_after.append(&mut st.chain);
                st.chain = blocks;
            }
            st.map_dirty = false;
        }
        inode.atime_dirty.store(false, Ordering::Relaxed);
        st.rec.atime = inode.atime.load(Ordering::Relaxed);
        tx.write(self.sb.inode_off(inode.ino), &st.rec.encode());
        st.dirty = false;
        st.times_dirty = false;
        Ok(())
    }

    /// Commits `tx`, then returns its freed blocks to the allocator (bad blocks stay out).
    fn commit(&self, tx: Tx) -> FsResult<()> {
        self.journal.commit(&self.region, &tx).map_err(eio)?;
        if !tx.free_after.is_empty() {
            // Blocks held by a layout fence stay allocated (`fs::layout`).
            let held = self.quarantine.on_commit(&tx.free_after);
            let free = held.as_deref().unwrap_or(&tx.free_after);
            let bad = self.bad.read();
            let mut a = self.alloc.lock();
            for &b in free {
                if !bad.contains(&b) {
                    a.free(b);
                }
            }
        }
        Ok(())
    }

    /// Evicts `inode` if it is unlinked and unreferenced. Context: takes `ns`; no inode lock held.
    fn maybe_evict(&self, inode: &Arc<Inode>) {
        let _ns = self.ns.lock();
        let mut st = inode.state.write();
        if st.evicted
            || inode.ino == ROOT_INO
            || st.rec.nlink > 0
            || inode.lookups.load(Ordering::SeqCst) > 0
            || inode.opens.load(Ordering::SeqCst) > 0
        {
            return;
        }
        let mut tx = Tx::new();
        let fence = self.break_layouts(
            inode.ino,
            0,
            u64::MAX,
            super::layout::LayoutChange::Truncate { size: 0 },
        );
        let freed = inode.map.unmap_range(0, u64::MAX);
        self.free_after_layout_break(&mut tx, fence, freed);
        inode.map.evict();
        tx.free_after.append(&mut st.chain);
        if st.rec.xattr_block != 0 {
            let xb = st.rec.xattr_block;
            tx.free_after
                .extend(xb..xb + store::xattr_area_blocks(&st.xattrs));
        }
        let generation = st.rec.generation;
        let rec = InodeRec {
            generation,
            ..Default::default()
        };
        tx.write(self.sb.inode_off(inode.ino), &rec.encode());
        if let Err(e) = self.commit(tx) {
            log::error!("daxfs: cannot free inode {}: {e}", inode.ino);
            return;
        }
        st.evicted = true;
        st.rec = rec;
        *self.table[inode.ino as usize].write() = None;
        self.free_inos.lock().insert(inode.ino, generation);
    }

    fn alloc_block(&self, goal: Option<u64>) -> FsResult<u64> {
        self.alloc.lock().alloc_near(goal).ok_or(Errno::ENOSPC)
    }
}

impl Drop for DaxFs {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::error!("daxfs: {e}");
        }
    }
}
