//! The embedded filesystem handle: every POSIX operation of daxfs, without FUSE.
//!
//! Owns the POSIX semantics over the on-media store (`crate::store`): the inode table in DRAM,
//! namespace operations, the data path, durability points and file handles.
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
use crate::region::Region;
use crate::store::{
    self, encode_badblocks, encode_chain, encode_xattrs, read_superblock, Allocator, Dirent,
    Extent, Fix, Image, InodeRec, Journal, Superblock, Tx, BADBLK_MAX, BLOCK, DIRENTS_PER_BLOCK,
    DIRENT_SIZE, EXTENTS_PER_CHAIN, INLINE_EXTENTS, MAX_FILE_SIZE, XATTR_VALUE_MAX,
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

fn is_dot(name: &OsStr) -> bool {
    name.as_bytes() == b"." || name.as_bytes() == b".."
}

fn corrupt(path: &Path, problem: impl Into<String>) -> crate::Error {
    crate::Error::Corrupt {
        path: path.display().to_string(),
        problem: problem.into(),
    }
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
            return Err(crate::Error::Other(format!(
                "{}: region of {len} bytes is too small for {inodes} inodes",
                path.display()
            )));
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
        let sb = read_superblock(&region).map_err(|p| corrupt(path, p))?;
        Journal::replay(&region, &sb).map_err(|p| corrupt(path, p))?;
        let img = Image::load(&region, sb.clone());
        if let Some(p) = img.first_fatal() {
            return Err(corrupt(
                path,
                format!("{} (run `daxfs fsck --repair`)", p.what),
            ));
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
            let inode = Inode::new(ino, st);
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
    /// With `repair`, fixes what it can and returns what it fixed.
    ///
    /// A committed journal transaction is replayed first (that is recovery, not repair).
    pub fn fsck(path: &Path, repair: bool) -> Result<Vec<String>, crate::Error> {
        let region = Region::open(path, None)?;
        let sb = read_superblock(&region).map_err(|p| corrupt(path, p))?;
        Journal::replay(&region, &sb).map_err(|p| corrupt(path, p))?;
        let journal = Journal::new(&sb);
        let mut found: Vec<String> = Vec::new();
        for pass in 0..6 {
            let img = Image::load(&region, sb.clone());
            if img.problems.is_empty() {
                break;
            }
            for p in &img.problems {
                if !found.contains(&p.what) {
                    found.push(p.what.clone());
                }
            }
            if !repair {
                break;
            }
            if pass == 5 {
                found.push("some problems could not be repaired".into());
                break;
            }
            for p in &img.problems {
                let mut tx = Tx::new();
                Self::repair_one(&region, &sb, &p.fix, &mut tx)
                    .map_err(|e| crate::Error::Other(format!("{}: repair: {e}", path.display())))?;
                journal
                    .commit(&region, &tx)
                    .map_err(|e| crate::Error::Other(format!("{}: repair: {e}", path.display())))?;
            }
        }
        Ok(found)
    }

    fn repair_one(region: &Region, sb: &Superblock, fix: &Fix, tx: &mut Tx) -> Result<(), String> {
        let read_rec = |ino: u64| -> Result<InodeRec, String> {
            let mut b = [0u8; store::INODE_SIZE as usize];
            region
                .read_at(sb.inode_off(ino), &mut b)
                .map_err(|e| e.to_string())?;
            InodeRec::decode(&b)
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
            Some(e) => Err(crate::Error::Other(format!(
                "{}: cannot persist on close: {e}",
                self.region.path().display()
            ))),
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
            let bad = self.bad.read();
            let mut a = self.alloc.lock();
            for &b in &tx.free_after {
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
        for (b, n) in inode.map.unmap_range(0, u64::MAX) {
            tx.free_after.extend(b..b + n);
        }
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

    /// Puts a new entry in directory `p`, growing it by a zeroed block if needed.
    fn add_dirent(
        &self,
        tx: &mut Tx,
        p: &Inode,
        pst: &mut IState,
        name: &OsStr,
        ino: Ino,
        kind: FileKind,
    ) -> FsResult<()> {
        let s = pst.dir.as_ref().ok_or(Errno::ENOTDIR)?.next_free();
        let page = s as u64 / DIRENTS_PER_BLOCK;
        let block = match p.map.lookup(page) {
            Some((b, _)) => b,
            None => {
                let goal = page
                    .checked_sub(1)
                    .and_then(|q| p.map.lookup(q))
                    .map(|x| x.0 + 1);
                let b = self.alloc_block(goal)?;
                self.region.zero(b * BLOCK, BLOCK).map_err(eio)?;
                self.region.persist(b * BLOCK, BLOCK).map_err(eio)?;
                if let Err(e) = p.map.map(page, 0, b) {
                    self.alloc.lock().free(b);
                    return Err(e);
                }
                pst.rec.size = pst.rec.size.max((page + 1) * BLOCK);
                pst.map_dirty = true;
                let dir = pst.dir.as_mut().expect("dir");
                let cap = ((page + 1) * DIRENTS_PER_BLOCK) as usize;
                for i in dir.slots.len()..cap {
                    dir.free.insert(i);
                }
                dir.slots.resize(dir.slots.len().max(cap), None);
                b
            }
        };
        let de = Dirent {
            ino,
            kind,
            name: name.as_bytes().to_vec(),
        };
        tx.write(store::dirent_off(block, s as u64), &de.encode());
        pst.dir.as_mut().expect("dir").insert(
            s,
            Slot {
                ino,
                kind,
                name: name.to_owned(),
            },
        );
        Ok(())
    }

    fn slot_off(p: &Inode, s: usize) -> FsResult<u64> {
        let page = s as u64 / DIRENTS_PER_BLOCK;
        let (b, _) = p.map.lookup(page).ok_or(Errno::EIO)?;
        Ok(store::dirent_off(b, s as u64))
    }

    fn remove_dirent(
        &self,
        tx: &mut Tx,
        p: &Inode,
        pst: &mut IState,
        name: &OsStr,
    ) -> FsResult<Slot> {
        let dir = pst.dir.as_mut().ok_or(Errno::ENOTDIR)?;
        let (s, slot) = dir.remove(name).ok_or(Errno::ENOENT)?;
        tx.write(Self::slot_off(p, s)?, &[0u8; DIRENT_SIZE as usize]);
        Ok(slot)
    }

    /// Points the existing entry `name` of `p` at (`ino`, `kind`).
    fn set_dirent(
        &self,
        tx: &mut Tx,
        p: &Inode,
        pst: &mut IState,
        name: &OsStr,
        ino: Ino,
        kind: FileKind,
    ) -> FsResult<()> {
        let dir = pst.dir.as_mut().ok_or(Errno::ENOTDIR)?;
        let s = *dir.names.get(name).ok_or(Errno::ENOENT)?;
        let slot = dir.slots[s].as_mut().ok_or(Errno::EIO)?;
        slot.ino = ino;
        slot.kind = kind;
        let de = Dirent {
            ino,
            kind,
            name: name.as_bytes().to_vec(),
        };
        tx.write(Self::slot_off(p, s)?, &de.encode());
        Ok(())
    }

    /// Creates an inode of `kind` named `name` in `parent`; takes one lookup reference.
    #[allow(clippy::too_many_arguments)]
    fn create_node(
        &self,
        parent: Ino,
        name: &OsStr,
        kind: FileKind,
        perm: u32,
        rdev: u32,
        ctx: &Ctx,
        target: Option<&[u8]>,
    ) -> FsResult<Arc<Inode>> {
        self.writable()?;
        check_name(name)?;
        if is_dot(name) {
            return Err(Errno::EEXIST);
        }
        let _ns = self.ns.lock();
        let p = self.iget(parent)?;
        let mut pst = p.state.write();
        let pdir = pst.dir.as_ref().ok_or(Errno::ENOTDIR)?;
        if pst.rec.nlink == 0 {
            return Err(Errno::ENOENT);
        }
        if pdir.get(name).is_some() {
            return Err(Errno::EEXIST);
        }
        let (ino, gen) = self.free_inos.lock().pop_first().ok_or(Errno::ENOSPC)?;
        let t = now_ns();
        let sgid_dir = pst.rec.mode & libc::S_ISGID != 0;
        let mut mode = kind.mode_bits() | (perm & 0o7777);
        if sgid_dir && kind == FileKind::Directory {
            mode |= libc::S_ISGID;
        }
        let rec = InodeRec {
            mode,
            nlink: if kind == FileKind::Directory { 2 } else { 1 },
            uid: ctx.uid,
            gid: if sgid_dir { pst.rec.gid } else { ctx.gid },
            rdev,
            generation: gen + 1,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            parent: if kind == FileKind::Directory {
                parent
            } else {
                0
            },
            flags: inherited_flags(pst.rec.flags, kind),
            ..Default::default()
        };
        let inode = Arc::new(Inode::new(ino, IState::new(rec)));
        inode.map.attach_rmap(self.rmap.clone());
        let res = (|| -> FsResult<()> {
            let mut st = inode.state.write();
            if kind == FileKind::Directory {
                st.dir = Some(Dir::default());
            }
            let mut tx = Tx::new();
            if let Some(target) = target {
                let b = self.alloc_block(None)?;
                let mut blk = vec![0u8; BLOCK as usize];
                blk[..target.len()].copy_from_slice(target);
                self.region.write_at(b * BLOCK, &blk).map_err(eio)?;
                self.region.persist(b * BLOCK, BLOCK).map_err(eio)?;
                if let Err(e) = inode.map.map(0, 0, b) {
                    self.alloc.lock().free(b);
                    return Err(e);
                }
                st.rec.size = target.len() as u64;
                st.map_dirty = true;
            }
            if let Err(e) = self.add_dirent(&mut tx, &p, &mut pst, name, ino, kind) {
                for (b, n) in inode.map.unmap_range(0, u64::MAX) {
                    let mut a = self.alloc.lock();
                    (b..b + n).for_each(|x| a.free(x));
                }
                return Err(e);
            }
            if kind == FileKind::Directory {
                pst.rec.nlink += 1;
            }
            pst.rec.mtime = t;
            pst.rec.ctime = t;
            self.commit_inode_into(&mut tx, &p, &mut pst)?;
            self.commit_inode_into(&mut tx, &inode, &mut st)?;
            self.commit(tx)
        })();
        if let Err(e) = res {
            self.free_inos.lock().insert(ino, gen);
            return Err(e);
        }
        inode.lookups.store(1, Ordering::SeqCst);
        *self.table[ino as usize].write() = Some(inode.clone());
        Ok(inode)
    }

    /// Allocates every unmapped page of `[first, end)`; new blocks are zeroed except where
    /// `written` (byte range) will be overwritten. Whole unmapped 2 MiB-aligned chunks of the range
    /// get a 2 MiB-aligned run (order-9 entry). Returns whether anything was allocated.
    /// On ENOSPC, pages allocated by this call are unmapped again.
    ///
    /// With `prealloc` (an extending write), an unmapped 2 MiB-aligned chunk at the end of the
    /// range gets a whole 2 MiB run even if the write covers only its start; the pages past the
    /// write are left uninitialized (`IState::uninit`, beyond EOF, zeroed before they can become
    /// visible or reach media) and trimmed at the last release if still unused.
    #[allow(clippy::too_many_arguments)]
    fn fill_range(
        &self,
        inode: &Inode,
        st: &mut IState,
        first: u64,
        end: u64,
        written: Option<(u64, u64)>,
        prealloc: bool,
        mut locks: Option<&mut RangeLock>,
    ) -> FsResult<bool> {
        let mut new: Vec<(u64, u64, u64)> = Vec::new(); // (page, block, pages)
        let mut p = first;
        // Allocation goal: the block after the previous page's, computed only when needed.
        let mut goal: Option<Option<u64>> = None;
        let mut guard = None;
        let mut failed = None;
        while p < end {
            if let Some((b, order)) = inode.map.lookup(p) {
                let run = (1u64 << order) - (p & ((1u64 << order) - 1));
                goal = Some(Some(b + run));
                p += run;
                continue;
            }
            if inode.map.poisoned_block(p).is_some() {
                // Poisoned: owns its bad block until rewritten whole, punched or cleared.
                p += 1;
                continue;
            }
            let g = *goal.get_or_insert_with(|| {
                p.checked_sub(1)
                    .and_then(|q| inode.map.lookup(q))
                    .map(|x| x.0 + 1)
            });
            let a = guard.get_or_insert_with(|| self.alloc.lock());
            if p % PMD_PAGES == 0
                && (p + PMD_PAGES <= end || prealloc)
                && inode.map.entries_in(p, p + PMD_PAGES).is_empty()
            {
                if let Some(h) = a.alloc_huge() {
                    if let Err(e) = Self::install(inode, locks.as_deref_mut(), p, PMD_ORDER, h) {
                        (h..h + PMD_PAGES).for_each(|x| a.free(x));
                        failed = Some(e);
                        break;
                    }
                    new.push((p, h, PMD_PAGES));
                    p += PMD_PAGES;
                    goal = Some(Some(h + PMD_PAGES));
                    continue;
                }
            }
            match a.alloc_near(g) {
                Some(b) => {
                    if let Err(e) = Self::install(inode, locks.as_deref_mut(), p, 0, b) {
                        a.free(b);
                        failed = Some(e);
                        break;
                    }
                    match new.last_mut() {
                        Some((lp, lb, ln)) if *lp + *ln == p && *lb + *ln == b => *ln += 1,
                        _ => new.push((p, b, 1)),
                    }
                    goal = Some(Some(b + 1));
                    p += 1;
                }
                None => {
                    failed = Some(Errno::ENOSPC);
                    break;
                }
            }
        }
        drop(guard);
        if let Some(err) = failed {
            for &(np, _, n) in &new {
                // Entries we hold (a write's) are erased through their guards; waiting for
                // them in `unmap_range` would wait for ourselves.
                let freed = match locks.as_deref_mut() {
                    Some(l) => inode.map.unmap_held(l, np, np + n),
                    None => inode.map.unmap_range(np, np + n),
                };
                let mut a = self.alloc.lock();
                for (b, c) in freed {
                    (b..b + c).for_each(|x| a.free(x));
                }
            }
            return Err(err);
        }
        if new.is_empty() {
            return Ok(false);
        }
        for &(np, nb, n) in &new {
            let (s, mut e) = (np * BLOCK, (np + n) * BLOCK);
            if np + n > end {
                // A preallocated chunk: pages past the write stay uninitialized.
                let init_end = end.max(np);
                st.uninit = (init_end, np + n);
                st.prealloc = (init_end, np + n);
                e = init_end * BLOCK;
            }
            let (ws, we) = written.map_or((s, s), |(a, b)| (a.clamp(s, e), b.clamp(s, e)));
            let base = nb * BLOCK;
            if ws > s {
                self.region.zero(base, ws - s).map_err(eio)?;
            }
            if we < e {
                let from = we.max(ws);
                self.region.zero(base + (from - s), e - from).map_err(eio)?;
            }
            st.mark_data(np, e / BLOCK);
        }
        st.map_dirty = true;
        st.dirty = true;
        Ok(true)
    }

    /// Installs a new block into a new locked entry: kept locked in `locks` (a write copies into
    /// it before unlocking), else unlocked at once.
    fn install(
        inode: &Inode,
        locks: Option<&mut RangeLock>,
        page: u64,
        order: u8,
        block: u64,
    ) -> FsResult<()> {
        match locks {
            Some(l) => {
                l.insert(inode.map.map_locked(page, order, block)?);
                Ok(())
            }
            None => inode.map.map(page, order, block),
        }
    }

    /// Zeroes the uninitialized preallocated pages below page `upto`, except the bytes in
    /// `written` (about to be overwritten). Called before the file size grows over them and before
    /// the block map is committed. Context: inode lock exclusive.
    fn init_uninit(
        &self,
        inode: &Inode,
        st: &mut IState,
        upto: u64,
        written: Option<(u64, u64)>,
    ) -> FsResult<()> {
        let (lo, hi) = st.uninit;
        let zhi = hi.min(upto);
        if lo >= zhi {
            return Ok(());
        }
        let (s, e) = (lo * BLOCK, zhi * BLOCK);
        match written {
            Some((ws, we)) if ws < e && we > s => {
                self.zero_mapped(inode, st, s, ws.max(s))?;
                self.zero_mapped(inode, st, we.min(e), e)?;
            }
            _ => self.zero_mapped(inode, st, s, e)?,
        }
        st.uninit = if zhi >= hi { (0, 0) } else { (zhi, hi) };
        Ok(())
    }

    /// Frees preallocated pages still past EOF (at the last release). Context: inode lock
    /// exclusive.
    fn trim_prealloc(&self, tx: &mut Tx, inode: &Inode, st: &mut IState) {
        let (lo, hi) = st.prealloc;
        let lo = lo.max(st.rec.size.div_ceil(BLOCK));
        if lo < hi {
            let freed = inode.map.unmap_range(lo, hi);
            if !freed.is_empty() {
                st.map_dirty = true;
                st.dirty = true;
            }
            for (b, n) in freed {
                tx.free_after.extend(b..b + n);
            }
        }
        st.prealloc = (0, 0);
        st.uninit = (0, 0);
    }

    /// Zeroes file bytes `[s, e)` where mapped (both inside one page or spanning pages), noting
    /// them dirty.
    fn zero_mapped(&self, inode: &Inode, st: &mut IState, s: u64, e: u64) -> FsResult<()> {
        let mut at = s;
        while at < e {
            let page = at / BLOCK;
            let pe = ((page + 1) * BLOCK).min(e);
            if let Some((b, _)) = inode.map.lookup(page) {
                self.region
                    .zero(b * BLOCK + at % BLOCK, pe - at)
                    .map_err(eio)?;
                st.mark_data(page, page + 1);
            }
            at = pe;
        }
        Ok(())
    }

    /// Sets the size, freeing blocks past it when shrinking. Context: inode lock exclusive.
    fn truncate_locked(
        &self,
        tx: &mut Tx,
        inode: &Inode,
        st: &mut IState,
        new: u64,
    ) -> FsResult<()> {
        let old = st.rec.size;
        if new < old {
            if new % BLOCK != 0 {
                let pe = (new / BLOCK + 1) * BLOCK;
                self.zero_mapped(inode, st, new, pe)?;
                self.persist_data(inode, st)?;
            }
            let freed = inode.map.unmap_range(new.div_ceil(BLOCK), u64::MAX);
            if !freed.is_empty() {
                st.map_dirty = true;
            }
            st.uninit = (0, 0);
            st.prealloc = (0, 0);
            for (b, n) in freed {
                tx.free_after.extend(b..b + n);
            }
        } else if new > old {
            if old % BLOCK != 0 {
                let pe = ((old / BLOCK + 1) * BLOCK).min(new);
                self.zero_mapped(inode, st, old, pe)?;
            }
            self.init_uninit(inode, st, new.div_ceil(BLOCK), None)?;
        }
        st.rec.size = new;
        st.dirty = true;
        Ok(())
    }

    /// Drops S_ISUID/S_ISGID after a modification by `ctx` ([`privs`]; uid 0 has `CAP_FSETID`).
    /// Returns whether the mode changed (then the kernel's cached mode is stale).
    fn kill_suid(st: &mut IState, ctx: &Ctx) -> bool {
        let drop = privs::bits_to_drop(st.rec.mode, st.rec.gid, ctx, ctx.uid == 0);
        Self::drop_mode_bits(st, drop)
    }

    /// Clears `bits` of the mode (and bumps ctime) if any is set; returns whether it did.
    fn drop_mode_bits(st: &mut IState, bits: u32) -> bool {
        if st.rec.mode & bits == 0 {
            return false;
        }
        st.rec.mode &= !bits;
        st.rec.ctime = now_ns();
        st.dirty = true;
        true
    }

    /// Checks that moving directory `moved` under `dest` does not make it its own ancestor.
    fn is_ancestor(&self, anc: Ino, mut d: Ino) -> bool {
        for _ in 0..4096 {
            if d == anc {
                return true;
            }
            if d == ROOT_INO {
                return false;
            }
            match self.iget(d) {
                Ok(i) => d = i.state.read().rec.parent,
                Err(_) => return false,
            }
        }
        false
    }

    fn set_xattrs_locked(
        &self,
        inode: &Inode,
        st: &mut IState,
        x: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> FsResult<()> {
        let mut tx = Tx::new();
        let old = st.rec.xattr_block;
        let old_n = store::xattr_area_blocks(&st.xattrs);
        if x.is_empty() {
            st.rec.xattr_block = 0;
        } else {
            let area = encode_xattrs(&x).ok_or(Errno::ENOSPC)?;
            let n = area.len() as u64 / BLOCK;
            let b = self.alloc.lock().alloc_run(n).ok_or(Errno::ENOSPC)?;
            self.region.write_at(b * BLOCK, &area).map_err(eio)?;
            self.region.persist(b * BLOCK, n * BLOCK).map_err(eio)?;
            st.rec.xattr_block = b;
        }
        if old != 0 {
            tx.free_after.extend(old..old + old_n);
        }
        st.rec.ctime = now_ns();
        st.xattrs = x;
        self.commit_inode_into(&mut tx, inode, st)?;
        self.commit(tx)
    }

    // ---- the embedded API ----

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Attr> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let p = self.iget(parent)?;
        let pst = p.state.read();
        // "." works on any inode: FUSE resolves exported file handles (open_by_handle_at, NFS
        // export) by looking up "." in the handle's node.
        let ino = match name.as_bytes() {
            b"." => parent,
            b".." if pst.dir.is_some() => pst.rec.parent.max(1),
            _ => {
                let dir = pst.dir.as_ref().ok_or(Errno::ENOTDIR)?;
                dir.get(name).ok_or(Errno::ENOENT)?.ino
            }
        };
        let inode = if ino == parent {
            p.clone()
        } else {
            self.iget(ino)?
        };
        inode.lookups.fetch_add(1, Ordering::SeqCst);
        drop(pst);
        let st = inode.state.read();
        Ok(self.attr_of(&inode, &st))
    }

    pub fn forget(&self, ino: Ino, nlookup: u64) {
        let Ok(inode) = self.iget(ino) else { return };
        let _ = inode
            .lookups
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some(v.saturating_sub(nlookup))
            });
        if inode.state.read().rec.nlink == 0 && !self.read_only {
            self.maybe_evict(&inode);
        }
    }

    pub fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        let inode = self.iget(ino)?;
        let st = inode.state.read();
        Ok(self.attr_of(&inode, &st))
    }

    pub fn setattr(&self, ino: Ino, set: &SetAttr, ctx: &Ctx) -> FsResult<Attr> {
        self.writable()?;
        let inode = self.iget(ino)?;
        let mut st = inode.state.write();
        let t = now_ns();
        let mut tx = Tx::new();
        if let Some(size) = set.size {
            match st.kind() {
                FileKind::Regular => {}
                FileKind::Directory => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
            if size > MAX_FILE_SIZE {
                return Err(Errno::EFBIG);
            }
            self.truncate_locked(&mut tx, &inode, &mut st, size)?;
            st.rec.mtime = t;
            Self::kill_suid(&mut st, ctx);
        }
        if set.uid.is_some() || set.gid.is_some() {
            if let Some(u) = set.uid {
                st.rec.uid = u;
            }
            if let Some(g) = set.gid {
                st.rec.gid = g;
            }
            // As chown_common(): a chown of a non-directory always drops S_ISUID, and S_ISGID
            // when group-executable (whoever asks; an explicit mode below wins).
            if st.kind() != FileKind::Directory {
                let mut drop = libc::S_ISUID;
                if st.rec.mode & libc::S_IXGRP != 0 {
                    drop |= libc::S_ISGID;
                }
                Self::drop_mode_bits(&mut st, drop);
            }
        }
        if let Some(m) = set.mode {
            let mut m = m & 0o7777;
            if ctx.uid != 0 && ctx.gid != st.rec.gid {
                m &= !libc::S_ISGID;
            }
            st.rec.mode = (st.rec.mode & libc::S_IFMT) | m;
        }
        match set.atime {
            Some(TimeSet::Now) => inode.atime.store(t, Ordering::Relaxed),
            Some(TimeSet::At(x)) => inode.atime.store(from_time(x), Ordering::Relaxed),
            None => {}
        }
        match set.mtime {
            Some(TimeSet::Now) => st.rec.mtime = t,
            Some(TimeSet::At(x)) => st.rec.mtime = from_time(x),
            None => {}
        }
        st.rec.ctime = set.ctime.map_or(t, from_time);
        self.commit_inode_into(&mut tx, &inode, &mut st)?;
        self.commit(tx)?;
        Ok(self.attr_of(&inode, &st))
    }

    pub fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let inode = self.iget(ino)?;
        let st = inode.state.read();
        if st.kind() != FileKind::Symlink {
            return Err(Errno::EINVAL);
        }
        let (b, _) = inode.map.lookup(0).ok_or(Errno::EIO)?;
        let mut out = vec![0u8; st.rec.size.min(BLOCK) as usize];
        self.region.read_at(b * BLOCK, &mut out).map_err(eio)?;
        Ok(out)
    }

    /// Creates a regular file, fifo, socket or device node; `mode` carries the `S_IFMT` bits.
    pub fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        ctx: &Ctx,
    ) -> FsResult<Attr> {
        let kind = if mode & libc::S_IFMT == 0 {
            FileKind::Regular
        } else {
            FileKind::from_mode(mode).ok_or(Errno::EINVAL)?
        };
        if matches!(kind, FileKind::Directory | FileKind::Symlink) {
            return Err(Errno::EINVAL);
        }
        let rdev = if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) {
            rdev
        } else {
            0
        };
        let inode = self.create_node(parent, name, kind, mode, rdev, ctx, None)?;
        let st = inode.state.read();
        Ok(self.attr_of(&inode, &st))
    }

    pub fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32, ctx: &Ctx) -> FsResult<Attr> {
        let inode = self.create_node(parent, name, FileKind::Directory, mode, 0, ctx, None)?;
        let st = inode.state.read();
        Ok(self.attr_of(&inode, &st))
    }

    pub fn unlink(&self, parent: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        let _ = ctx;
        self.writable()?;
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if is_dot(name) {
            return Err(Errno::EISDIR);
        }
        let ns = self.ns.lock();
        let p = self.iget(parent)?;
        let (ino, kind) = {
            let pst = p.state.read();
            let s = pst
                .dir
                .as_ref()
                .ok_or(Errno::ENOTDIR)?
                .get(name)
                .ok_or(Errno::ENOENT)?;
            (s.ino, s.kind)
        };
        if kind == FileKind::Directory {
            return Err(Errno::EISDIR);
        }
        let t = self.iget(ino)?;
        {
            let mut l = Locked::new(&[&p, &t]);
            let mut tx = Tx::new();
            let now = now_ns();
            self.remove_dirent(&mut tx, &p, l.st(parent), name)?;
            let pst = l.st(parent);
            pst.rec.mtime = now;
            pst.rec.ctime = now;
            self.commit_inode_into(&mut tx, &p, l.st(parent))?;
            let tst = l.st(ino);
            tst.rec.nlink = tst.rec.nlink.saturating_sub(1);
            tst.rec.ctime = now;
            self.commit_inode_into(&mut tx, &t, l.st(ino))?;
            self.commit(tx)?;
        }
        drop(ns);
        self.maybe_evict(&t);
        Ok(())
    }

    pub fn rmdir(&self, parent: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        let _ = ctx;
        self.writable()?;
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        match name.as_bytes() {
            b"." => return Err(Errno::EINVAL),
            b".." => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        let ns = self.ns.lock();
        let p = self.iget(parent)?;
        let (ino, kind) = {
            let pst = p.state.read();
            let s = pst
                .dir
                .as_ref()
                .ok_or(Errno::ENOTDIR)?
                .get(name)
                .ok_or(Errno::ENOENT)?;
            (s.ino, s.kind)
        };
        if kind != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        let t = self.iget(ino)?;
        {
            let mut l = Locked::new(&[&p, &t]);
            if !l.st(ino).dir.as_ref().is_some_and(|d| d.is_empty()) {
                return Err(Errno::ENOTEMPTY);
            }
            let mut tx = Tx::new();
            let now = now_ns();
            self.remove_dirent(&mut tx, &p, l.st(parent), name)?;
            let pst = l.st(parent);
            pst.rec.mtime = now;
            pst.rec.ctime = now;
            pst.rec.nlink = pst.rec.nlink.saturating_sub(1);
            self.commit_inode_into(&mut tx, &p, l.st(parent))?;
            let tst = l.st(ino);
            tst.rec.nlink = 0;
            tst.rec.ctime = now;
            self.commit_inode_into(&mut tx, &t, l.st(ino))?;
            self.commit(tx)?;
        }
        drop(ns);
        self.maybe_evict(&t);
        Ok(())
    }

    pub fn symlink(&self, parent: Ino, name: &OsStr, target: &OsStr, ctx: &Ctx) -> FsResult<Attr> {
        let tb = target.as_bytes();
        if tb.is_empty() {
            return Err(Errno::ENOENT);
        }
        if tb.len() >= BLOCK as usize {
            return Err(Errno::ENAMETOOLONG);
        }
        let inode = self.create_node(parent, name, FileKind::Symlink, 0o777, 0, ctx, Some(tb))?;
        let st = inode.state.read();
        Ok(self.attr_of(&inode, &st))
    }

    /// `flags`: 0, `libc::RENAME_NOREPLACE` or `libc::RENAME_EXCHANGE` (others: `EINVAL`).
    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
        ctx: &Ctx,
    ) -> FsResult<()> {
        let _ = ctx;
        self.writable()?;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        if flags & !(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE) != 0 || (noreplace && exchange)
        {
            return Err(Errno::EINVAL);
        }
        check_name(name)?;
        check_name(newname)?;
        if is_dot(name) || is_dot(newname) {
            return Err(Errno::EBUSY);
        }
        let ns = self.ns.lock();
        let p = self.iget(parent)?;
        let np = self.iget(newparent)?;
        let (sino, skind) = {
            let st = p.state.read();
            let s = st
                .dir
                .as_ref()
                .ok_or(Errno::ENOTDIR)?
                .get(name)
                .ok_or(Errno::ENOENT)?;
            (s.ino, s.kind)
        };
        let dst = {
            let st = np.state.read();
            if st.rec.nlink == 0 {
                return Err(Errno::ENOENT);
            }
            st.dir
                .as_ref()
                .ok_or(Errno::ENOTDIR)?
                .get(newname)
                .map(|s| (s.ino, s.kind))
        };
        if exchange && dst.is_none() {
            return Err(Errno::ENOENT);
        }
        if noreplace && dst.is_some() {
            return Err(Errno::EEXIST);
        }
        if let Some((dino, _)) = dst {
            if dino == sino {
                return Ok(());
            }
        }
        // The source must not be an ancestor of the destination directory (nor vice versa
        // when the destination is an existing directory that moves or is replaced).
        if skind == FileKind::Directory && self.is_ancestor(sino, newparent) {
            return Err(Errno::EINVAL);
        }
        if let Some((dino, FileKind::Directory)) = dst {
            if self.is_ancestor(dino, parent) {
                return Err(if exchange {
                    Errno::EINVAL
                } else {
                    Errno::ENOTEMPTY
                });
            }
        }
        if !exchange {
            if let Some((_, dkind)) = dst {
                match (skind == FileKind::Directory, dkind == FileKind::Directory) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    _ => {}
                }
            }
        }
        let s = self.iget(sino)?;
        let d = match dst {
            Some((dino, _)) => Some(self.iget(dino)?),
            None => None,
        };
        let mut set: Vec<&Arc<Inode>> = vec![&p, &np, &s];
        if let Some(d) = &d {
            set.push(d);
        }
        let evict = {
            let mut l = Locked::new(&set);
            let mut tx = Tx::new();
            let now = now_ns();
            let sdir = skind == FileKind::Directory;
            let cross = parent != newparent;
            match dst {
                None => {
                    self.add_dirent(&mut tx, &np, l.st(newparent), newname, sino, skind)?;
                    self.remove_dirent(&mut tx, &p, l.st(parent), name)?;
                    if sdir && cross {
                        l.st(parent).rec.nlink -= 1;
                        l.st(newparent).rec.nlink += 1;
                        l.st(sino).rec.parent = newparent;
                    }
                }
                Some((dino, dkind)) if !exchange => {
                    if dkind == FileKind::Directory
                        && !l.st(dino).dir.as_ref().is_some_and(|x| x.is_empty())
                    {
                        return Err(Errno::ENOTEMPTY);
                    }
                    self.set_dirent(&mut tx, &np, l.st(newparent), newname, sino, skind)?;
                    self.remove_dirent(&mut tx, &p, l.st(parent), name)?;
                    let dst_st = l.st(dino);
                    if dkind == FileKind::Directory {
                        dst_st.rec.nlink = 0;
                        dst_st.rec.ctime = now;
                        // The replaced directory's ".." link to newparent goes away.
                        l.st(newparent).rec.nlink -= 1;
                    } else {
                        dst_st.rec.nlink = dst_st.rec.nlink.saturating_sub(1);
                        dst_st.rec.ctime = now;
                    }
                    if sdir && cross {
                        l.st(parent).rec.nlink -= 1;
                        l.st(newparent).rec.nlink += 1;
                        l.st(sino).rec.parent = newparent;
                    }
                }
                Some((dino, dkind)) => {
                    self.set_dirent(&mut tx, &p, l.st(parent), name, dino, dkind)?;
                    self.set_dirent(&mut tx, &np, l.st(newparent), newname, sino, skind)?;
                    if cross {
                        if sdir {
                            l.st(parent).rec.nlink -= 1;
                            l.st(newparent).rec.nlink += 1;
                            l.st(sino).rec.parent = newparent;
                        }
                        if dkind == FileKind::Directory {
                            l.st(newparent).rec.nlink -= 1;
                            l.st(parent).rec.nlink += 1;
                            l.st(dino).rec.parent = parent;
                        }
                    }
                    l.st(dino).rec.ctime = now;
                }
            }
            l.st(sino).rec.ctime = now;
            for pi in [parent, newparent] {
                let st = l.st(pi);
                st.rec.mtime = now;
                st.rec.ctime = now;
            }
            for i in set.iter() {
                self.commit_inode_into(&mut tx, i, l.st(i.ino))?;
            }
            self.commit(tx)?;
            d.as_ref().filter(|_| !exchange).cloned()
        };
        drop(ns);
        if let Some(d) = evict {
            self.maybe_evict(&d);
        }
        Ok(())
    }

    pub fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr, ctx: &Ctx) -> FsResult<Attr> {
        let _ = ctx;
        self.writable()?;
        check_name(newname)?;
        if is_dot(newname) {
            return Err(Errno::EEXIST);
        }
        let _ns = self.ns.lock();
        let t = self.iget(ino)?;
        let np = self.iget(newparent)?;
        if t.state.read().kind() == FileKind::Directory {
            return Err(Errno::EPERM);
        }
        let mut l = Locked::new(&[&np, &t]);
        {
            let nst = l.st(newparent);
            let dir = nst.dir.as_ref().ok_or(Errno::ENOTDIR)?;
            if nst.rec.nlink == 0 {
                return Err(Errno::ENOENT);
            }
            if dir.get(newname).is_some() {
                return Err(Errno::EEXIST);
            }
        }
        let tst = l.st(ino);
        if tst.rec.nlink == 0 {
            return Err(Errno::ENOENT);
        }
        if tst.rec.nlink >= 65000 {
            return Err(Errno::EMLINK);
        }
        let kind = tst.kind();
        let now = now_ns();
        let mut tx = Tx::new();
        self.add_dirent(&mut tx, &np, l.st(newparent), newname, ino, kind)?;
        let nst = l.st(newparent);
        nst.rec.mtime = now;
        nst.rec.ctime = now;
        self.commit_inode_into(&mut tx, &np, l.st(newparent))?;
        let tst = l.st(ino);
        tst.rec.nlink += 1;
        tst.rec.ctime = now;
        self.commit_inode_into(&mut tx, &t, l.st(ino))?;
        self.commit(tx)?;
        t.lookups.fetch_add(1, Ordering::SeqCst);
        Ok(self.attr_of(&t, l.st(ino)))
    }

    /// Opens an inode; `flags` are the `open(2)` flags. Returns a file handle.
    pub fn open_file(&self, ino: Ino, flags: i32, ctx: &Ctx) -> FsResult<u64> {
        let inode = self.iget(ino)?;
        let acc = flags & libc::O_ACCMODE;
        {
            let kind = inode.state.read().kind();
            if acc != libc::O_RDONLY {
                self.writable()?;
                if kind == FileKind::Directory {
                    return Err(Errno::EISDIR);
                }
            }
            if flags & libc::O_TRUNC != 0 && acc != libc::O_RDONLY && kind == FileKind::Regular {
                let mut st = inode.state.write();
                if st.rec.size != 0 {
                    let mut tx = Tx::new();
                    self.truncate_locked(&mut tx, &inode, &mut st, 0)?;
                    let t = now_ns();
                    st.rec.mtime = t;
                    st.rec.ctime = t;
                    Self::kill_suid(&mut st, ctx);
                    self.commit_inode_into(&mut tx, &inode, &mut st)?;
                    self.commit(tx)?;
                }
            }
        }
        inode.opens.fetch_add(1, Ordering::SeqCst);
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, ino);
        Ok(fh)
    }

    /// Creates and opens a regular file.
    pub fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
        ctx: &Ctx,
    ) -> FsResult<(Attr, u64)> {
        let _ = flags;
        let inode = self.create_node(parent, name, FileKind::Regular, mode, 0, ctx, None)?;
        inode.opens.fetch_add(1, Ordering::SeqCst);
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, inode.ino);
        let st = inode.state.read();
        Ok((self.attr_of(&inode, &st), fh))
    }

    /// Reads up to `size` bytes at `offset` and hands them to `f` as one slice: straight from the
    /// region mapping when the range is contiguous there, else gathered (holes read as zeros). The
    /// bytes are stable while `f` runs (DAX entries are locked). Short only at end of file.
    /// A range that includes a poisoned page fails as a whole with `EIO`.
    pub fn read_with<R>(
        &self,
        ino: Ino,
        offset: u64,
        size: u32,
        f: impl FnOnce(&[u8]) -> R,
    ) -> FsResult<R> {
        let inode = self.iget(ino)?;
        let st = inode.state.read();
        match st.kind() {
            FileKind::Regular | FileKind::Symlink => {}
            FileKind::Directory => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        let fsize = st.rec.size;
        if offset >= fsize || size == 0 {
            return Ok(f(&[]));
        }
        if !self.read_only {
            inode.touch_atime(&st, &self.atime, now_ns());
        }
        let len = (fsize - offset).min(size as u64);
        let first = offset / BLOCK;
        let last = (offset + len - 1) / BLOCK;
        // Lock the DAX entries of the range (ascending; one lock per PMD/PTE entry), then look
        // for poison: memory failure marks a page poisoned while it holds the page's entry, so
        // after locking we either see the mark or hold the entry until our reply is sent.
        let locks = inode.map.lock_range(first, last + 1)?;
        if inode.map.any_poisoned(first, last + 1) {
            return Err(Errno::EIO);
        }
        // Contiguous in the region?
        let mut contiguous = None;
        if let Some((b0, _)) = locks.block_of(first) {
            let mut p = first;
            let mut expect = b0;
            let mut ok = true;
            while p <= last {
                match locks.block_of(p) {
                    Some((b, run_end)) if b == expect => {
                        expect = b + (run_end - p);
                        p = run_end;
                    }
                    _ => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                contiguous = Some(b0);
            }
        }
        if let Some(b0) = contiguous {
            // SAFETY: the DAX entries mapping these blocks are locked (and the inode's shared
            // lock held) for the lifetime of the slice: every writer of this file's blocks
            // (write, truncate, fallocate, eviction, memory failure) locks the entries first, and
            // a block is only reused after its entry was erased.
            let s = unsafe { self.region.slice(b0 * BLOCK + offset % BLOCK, len) }.map_err(eio)?;
            let r = f(s);
            drop(locks);
            return Ok(r);
        }
        let mut buf = GATHER.with(|g| std::mem::take(&mut *g.borrow_mut()));
        buf.clear();
        buf.resize(len as usize, 0);
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let page = at / BLOCK;
            let (run_end, src) = match locks.block_of(page) {
                Some((b, run_end)) => ((run_end * BLOCK).min(end), Some(b)),
                None => (((page + 1) * BLOCK).min(end), None),
            };
            let dst = &mut buf[(at - offset) as usize..(run_end - offset) as usize];
            if let Some(b) = src {
                self.region
                    .read_at(b * BLOCK + at % BLOCK, dst)
                    .map_err(eio)?;
            }
            at = run_end;
        }
        let r = f(&buf);
        drop(locks);
        GATHER.with(|g| *g.borrow_mut() = buf);
        Ok(r)
    }

    /// Convenience: reads into `buf`, returns the number of bytes read.
    pub fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> FsResult<usize> {
        let size = buf.len().min(u32::MAX as usize) as u32;
        self.read_with(ino, offset, size, |s| {
            buf[..s.len()].copy_from_slice(s);
            s.len()
        })
    }

    pub fn write(&self, ino: Ino, offset: u64, data: &[u8], ctx: &Ctx) -> FsResult<usize> {
        self.write_kill_priv(ino, offset, data, ctx, ctx.uid != 0)
    }

    /// As [`Self::write`], with the decision to drop S_ISUID (and S_ISGID when group-executable)
    /// made by the caller: the FUSE adapter passes `true` when the kernel sets
    /// `FUSE_WRITE_KILL_SUIDGID` (handle_killpriv_v2) or the writer is not root.
    pub fn write_kill_priv(
        &self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        ctx: &Ctx,
        kill_priv: bool,
    ) -> FsResult<usize> {
        self.write_dropping_privs(ino, offset, data, ctx, kill_priv)
            .map(|(n, _)| n)
    }

    /// As [`Self::write_kill_priv`]; also returns whether the write dropped S_ISUID/S_ISGID
    /// (the mode changed behind the kernel's attribute cache: the FUSE adapter invalidates it).
    pub fn write_dropping_privs(
        &self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        ctx: &Ctx,
        kill_priv: bool,
    ) -> FsResult<(usize, bool)> {
        self.writable()?;
        let inode = self.iget(ino)?;
        let mut st = inode.state.write();
        match st.kind() {
            FileKind::Regular => {}
            FileKind::Directory => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        if data.is_empty() {
            return Ok((0, false));
        }
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        if end > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let first = offset / BLOCK;
        let last = (end - 1) / BLOCK;
        // Lock the range's entries first: from here on memory failure cannot poison a page of
        // the range until the bytes are copied (new entries are created locked, below).
        let mut locks = inode.map.lock_range(first, last + 1)?;
        if inode.map.any_poisoned(first, last + 1) {
            self.clear_poison_for_write(&inode, &mut st, offset, end)?;
        }
        let extending = end > st.rec.size;
        if extending {
            self.init_uninit(&inode, &mut st, last + 1, Some((offset, end)))?;
        }
        // Hugepage policy: an extending write that continues the file (no hole before it) and is
        // large, or lands past the first 2 MiB, preallocates whole 2 MiB-aligned runs.
        let prealloc = extending
            && offset <= st.rec.size
            && (data.len() as u64 >= PMD_PAGES * BLOCK / 4 || offset >= PMD_PAGES * BLOCK);
        self.fill_range(
            &inode,
            &mut st,
            first,
            last + 1,
            Some((offset, end)),
            prealloc,
            Some(&mut locks),
        )?;
        let mut at = offset;
        while at < end {
            let page = at / BLOCK;
            let (b, entry_end) = locks.block_of(page).ok_or(Errno::EIO)?;
            let run_end = (entry_end * BLOCK).min(end);
            let src = &data[(at - offset) as usize..(run_end - offset) as usize];
            self.region
                .write_at(b * BLOCK + at % BLOCK, src)
                .map_err(eio)?;
            at = run_end;
        }
        drop(locks);
        st.mark_data(first, last + 1);
        if end > st.rec.size {
            st.rec.size = end;
            st.dirty = true;
        }
        let t = now_ns();
        st.rec.mtime = t;
        st.rec.ctime = t;
        st.times_dirty = true;
        // The kernel flagged a writer without CAP_FSETID; the sgid rule needs the caller's groups.
        let killed = kill_priv && {
            let drop = privs::bits_to_drop(st.rec.mode, st.rec.gid, ctx, false);
            Self::drop_mode_bits(&mut st, drop)
        };
        // A write drops file capabilities whoever writes (the kernel's file_remove_privs); under
        // FUSE_HANDLE_KILLPRIV_V2 that is the filesystem's job. The check is one scan of a
        // usually empty list; the commit happens only when the attribute is there.
        if st
            .xattrs
            .iter()
            .any(|(k, _)| k.as_slice() == b"security.capability")
        {
            let mut x = st.xattrs.clone();
            x.retain(|(k, _)| k.as_slice() != b"security.capability");
            self.set_xattrs_locked(&inode, &mut st, x)?;
        }
        Ok((data.len(), killed))
    }

    /// Writing over poisoned pages: a write covering a whole bad page remaps it to a fresh block
    /// (clearing the poison, as a pmem "clear error" does); a partial write gets `EIO`.
    fn clear_poison_for_write(
        &self,
        inode: &Inode,
        st: &mut IState,
        offset: u64,
        end: u64,
    ) -> FsResult<()> {
        let first = offset / BLOCK;
        let last = (end - 1) / BLOCK;
        let poisoned = inode.map.poisoned_in(first, last + 1);
        if poisoned
            .iter()
            .any(|&(p, _)| offset > p * BLOCK || end < (p + 1) * BLOCK)
        {
            return Err(Errno::EIO);
        }
        for (p, _) in poisoned {
            // The bad block stays recorded (and out of the allocator); the page gets a fresh one.
            inode.map.unpoison(p);
            st.map_dirty = true;
            st.dirty = true;
        }
        Ok(())
    }

    /// `close(2)` of one descriptor of the handle: makes written data and metadata durable.
    pub fn flush(&self, ino: Ino, fh: u64) -> FsResult<()> {
        let _ = fh;
        if self.read_only {
            return Ok(());
        }
        self.fsync(ino, false)
    }

    /// Last close of the handle.
    pub fn release(&self, ino: Ino, fh: u64) -> FsResult<()> {
        let inode = self.iget(ino)?;
        let last = if self.handles.lock().remove(&fh).is_some() {
            inode
                .opens
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                == Ok(1)
        } else {
            false
        };
        if self.read_only {
            return Ok(());
        }
        if last {
            let mut st = inode.state.write();
            if st.prealloc.0 < st.prealloc.1 && !st.evicted {
                let mut tx = Tx::new();
                self.trim_prealloc(&mut tx, &inode, &mut st);
                // The trimmed blocks are freed once the map without them is durable.
                self.commit_inode_into(&mut tx, &inode, &mut st)?;
                self.commit(tx)?;
            }
        }
        let r = self.fsync(ino, false);
        if inode.state.read().rec.nlink == 0 {
            self.maybe_evict(&inode);
        }
        r
    }

    pub fn fsync(&self, ino: Ino, datasync: bool) -> FsResult<()> {
        self.writable()?;
        let inode = self.iget(ino)?;
        {
            // Fast path (close of a clean file): nothing to persist, no exclusive lock.
            let st = inode.state.read();
            let clean = !st.dirty
                && !st.map_dirty
                && !st.times_dirty
                && !inode.atime_dirty.load(Ordering::Relaxed)
                && st.dirty_lo >= st.dirty_hi
                && st.uninit.0 >= st.uninit.1;
            if clean || st.evicted {
                return Ok(());
            }
        }
        let mut st = inode.state.write();
        if st.evicted {
            return Ok(());
        }
        let times = st.times_dirty || inode.atime_dirty.load(Ordering::Relaxed);
        if st.dirty || st.map_dirty || (!datasync && times) {
            let mut tx = Tx::new();
            self.commit_inode_into(&mut tx, &inode, &mut st)?;
            self.commit(tx)
        } else {
            self.persist_data(&inode, &mut st)
        }
    }

    /// Entries after cookie `offset` (0 = from the start, including `.` and `..`).
    pub fn readdir(&self, ino: Ino, offset: u64) -> FsResult<Vec<DirEntry>> {
        let inode = self.iget(ino)?;
        let st = inode.state.read();
        let dir = st.dir.as_ref().ok_or(Errno::ENOTDIR)?;
        if !self.read_only {
            inode.touch_atime(&st, &self.atime, now_ns());
        }
        let mut out = Vec::new();
        if offset < 1 {
            out.push(DirEntry {
                ino,
                name: ".".into(),
                kind: FileKind::Directory,
                next_offset: 1,
            });
        }
        if offset < 2 {
            out.push(DirEntry {
                ino: st.rec.parent.max(1),
                name: "..".into(),
                kind: FileKind::Directory,
                next_offset: 2,
            });
        }
        let start = offset.saturating_sub(2) as usize;
        for (s, slot) in dir.slots.iter().enumerate().skip(start) {
            if let Some(slot) = slot {
                out.push(DirEntry {
                    ino: slot.ino,
                    name: slot.name.clone(),
                    kind: slot.kind,
                    next_offset: s as u64 + 3,
                });
            }
        }
        Ok(out)
    }

    pub fn statfs(&self) -> FsResult<StatFs> {
        let a = self.alloc.lock();
        let ffree = self.free_inos.lock().len() as u64;
        Ok(StatFs {
            blocks: a.data_blocks(),
            bfree: a.free_blocks(),
            bavail: a.available_blocks(),
            files: self.sb.inodes_total,
            ffree,
            bsize: BLOCK as u32,
            namelen: NAME_MAX as u32,
            frsize: BLOCK as u32,
        })
    }

    /// `mode`: 0, `FALLOC_FL_KEEP_SIZE`, `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`,
    /// `FALLOC_FL_ZERO_RANGE` (optionally with `KEEP_SIZE`); others `EOPNOTSUPP`.
    pub fn fallocate(&self, ino: Ino, offset: u64, len: u64, mode: i32, ctx: &Ctx) -> FsResult<()> {
        self.fallocate_dropping_privs(ino, offset, len, mode, ctx)
            .map(|_| ())
    }

    /// As [`Self::fallocate`]; returns whether it dropped S_ISUID/S_ISGID (as a write by `ctx`
    /// does: FUSE_FALLOCATE carries no kill flag, the rule is applied here with the caller).
    pub fn fallocate_dropping_privs(
        &self,
        ino: Ino,
        offset: u64,
        len: u64,
        mode: i32,
        ctx: &Ctx,
    ) -> FsResult<bool> {
        self.writable()?;
        let inode = self.iget(ino)?;
        let mut st = inode.state.write();
        match st.kind() {
            FileKind::Regular => {}
            FileKind::Directory => return Err(Errno::EISDIR),
            _ => return Err(Errno::ENODEV),
        }
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = offset.checked_add(len).ok_or(Errno::EFBIG)?;
        if end > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let keep = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        let op = mode & !libc::FALLOC_FL_KEEP_SIZE;
        let now = now_ns();
        let mut tx = Tx::new();
        match op {
            // Both allocate the range; ZERO_RANGE then zeroes what was already mapped there.
            0 | libc::FALLOC_FL_ZERO_RANGE => {
                if !keep && end > st.rec.size {
                    self.init_uninit(&inode, &mut st, end.div_ceil(BLOCK), None)?;
                }
                self.fill_range(
                    &inode,
                    &mut st,
                    offset / BLOCK,
                    end.div_ceil(BLOCK),
                    None,
                    false,
                    None,
                )?;
                if op == libc::FALLOC_FL_ZERO_RANGE {
                    self.zero_mapped(&inode, &mut st, offset, end)?;
                    st.rec.mtime = now;
                    st.rec.ctime = now;
                }
            }
            libc::FALLOC_FL_PUNCH_HOLE => {
                if !keep {
                    return Err(Errno::EOPNOTSUPP);
                }
                let fp = offset.div_ceil(BLOCK);
                let lp = end / BLOCK;
                if fp >= lp {
                    self.zero_mapped(&inode, &mut st, offset, end)?;
                } else {
                    self.zero_mapped(&inode, &mut st, offset, fp * BLOCK)?;
                    self.zero_mapped(&inode, &mut st, lp * BLOCK, end)?;
                    let freed = inode.map.unmap_range(fp, lp);
                    if !freed.is_empty() {
                        st.map_dirty = true;
                    }
                    for (b, n) in freed {
                        tx.free_after.extend(b..b + n);
                    }
                }
                st.rec.mtime = now;
                st.rec.ctime = now;
            }
            _ => return Err(Errno::EOPNOTSUPP),
        }
        if !keep && end > st.rec.size {
            st.rec.size = end;
            st.rec.ctime = now;
            st.rec.mtime = now;
        }
        let killed = Self::kill_suid(&mut st, ctx);
        self.commit_inode_into(&mut tx, &inode, &mut st)?;
        self.commit(tx)?;
        Ok(killed)
    }

    /// `whence`: `SEEK_DATA` or `SEEK_HOLE` (others are the kernel's).
    pub fn lseek(&self, ino: Ino, offset: u64, whence: i32) -> FsResult<u64> {
        let inode = self.iget(ino)?;
        let st = inode.state.read();
        let size = st.rec.size;
        if offset >= size {
            return Err(Errno::ENXIO);
        }
        match whence {
            libc::SEEK_DATA => {
                let p = inode.map.next_data(offset / BLOCK).ok_or(Errno::ENXIO)?;
                let at = (p * BLOCK).max(offset);
                if at >= size {
                    Err(Errno::ENXIO)
                } else {
                    Ok(at)
                }
            }
            libc::SEEK_HOLE => {
                let p = inode.map.next_hole(offset / BLOCK);
                Ok((p * BLOCK).max(offset).min(size))
            }
            _ => Err(Errno::EINVAL),
        }
    }

    fn check_xattr_name(name: &OsStr, kind: FileKind, ctx: &Ctx) -> FsResult<()> {
        let b = name.as_bytes();
        if b.len() > 255 {
            return Err(Errno::ERANGE);
        }
        let suffix_ok = |p: &[u8]| b.len() > p.len();
        if b.starts_with(b"user.") {
            if !suffix_ok(b"user.") {
                return Err(Errno::EINVAL);
            }
            if !matches!(kind, FileKind::Regular | FileKind::Directory) {
                return Err(Errno::EPERM);
            }
        } else if b.starts_with(b"trusted.") {
            if !suffix_ok(b"trusted.") {
                return Err(Errno::EINVAL);
            }
            if ctx.uid != 0 {
                return Err(Errno::EPERM);
            }
        } else if b.starts_with(b"security.") {
            if !suffix_ok(b"security.") {
                return Err(Errno::EINVAL);
            }
        } else {
            return Err(Errno::EOPNOTSUPP);
        }
        Ok(())
    }

    /// `flags`: 0, `XATTR_CREATE` or `XATTR_REPLACE`.
    pub fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        ctx: &Ctx,
    ) -> FsResult<()> {
        self.writable()?;
        let inode = self.iget(ino)?;
        let mut st = inode.state.write();
        Self::check_xattr_name(name, st.kind(), ctx)?;
        if flags & !(libc::XATTR_CREATE | libc::XATTR_REPLACE) != 0 {
            return Err(Errno::EINVAL);
        }
        let n = name.as_bytes();
        if value.len() > XATTR_VALUE_MAX {
            return Err(Errno::E2BIG);
        }
        let mut x = st.xattrs.clone();
        match x.iter_mut().find(|(k, _)| k == n) {
            Some(_) if flags & libc::XATTR_CREATE != 0 => return Err(Errno::EEXIST),
            Some((_, v)) => *v = value.to_vec(),
            None if flags & libc::XATTR_REPLACE != 0 => return Err(Errno::ENODATA),
            None => x.push((n.to_vec(), value.to_vec())),
        }
        self.set_xattrs_locked(&inode, &mut st, x)
    }

    pub fn getxattr(&self, ino: Ino, name: &OsStr) -> FsResult<Vec<u8>> {
        let inode = self.iget(ino)?;
        let st = inode.state.read();
        if name.len() > 255 {
            return Err(Errno::ERANGE);
        }
        st.xattrs
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v.clone())
            .ok_or(Errno::ENODATA)
    }

    /// Names, each NUL-terminated, concatenated.
    pub fn listxattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let inode = self.iget(ino)?;
        let st = inode.state.read();
        let mut out = Vec::new();
        for (k, _) in &st.xattrs {
            out.extend_from_slice(k);
            out.push(0);
        }
        Ok(out)
    }

    pub fn removexattr(&self, ino: Ino, name: &OsStr, ctx: &Ctx) -> FsResult<()> {
        self.writable()?;
        let inode = self.iget(ino)?;
        let mut st = inode.state.write();
        Self::check_xattr_name(name, st.kind(), ctx)?;
        let mut x = st.xattrs.clone();
        let before = x.len();
        x.retain(|(k, _)| k != name.as_bytes());
        if x.len() == before {
            return Err(Errno::ENODATA);
        }
        self.set_xattrs_locked(&inode, &mut st, x)
    }

    pub fn copy_file_range(
        &self,
        ino_in: Ino,
        off_in: u64,
        ino_out: Ino,
        off_out: u64,
        len: u64,
        ctx: &Ctx,
    ) -> FsResult<u64> {
        self.writable()?;
        for i in [ino_in, ino_out] {
            match self.iget(i)?.state.read().kind() {
                FileKind::Regular => {}
                FileKind::Directory => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
        }
        if ino_in == ino_out
            && off_in < off_out.saturating_add(len)
            && off_out < off_in.saturating_add(len)
        {
            return Err(Errno::EINVAL);
        }
        const CHUNK: u64 = 1 << 20;
        let mut done = 0u64;
        let mut buf = Vec::new();
        while done < len {
            let want = (len - done).min(CHUNK) as u32;
            let n = self.read_with(ino_in, off_in + done, want, |s| {
                buf.clear();
                buf.extend_from_slice(s);
                s.len()
            })?;
            if n == 0 {
                break;
            }
            self.write(ino_out, off_out + done, &buf[..n], ctx)?;
            done += n as u64;
        }
        Ok(done)
    }

    /// The file's DAX entries, in file order: PMD (order 9) and PTE (order 0) entries with their
    /// region block and flags (`LOCKED`, `PMD`, `ZERO`, `EMPTY` bits of [`crate::dax`]).
    pub fn mappings(&self, ino: Ino) -> FsResult<Vec<MappingInfo>> {
        let inode = self.iget(ino)?;
        let _st = inode.state.read();
        Ok(inode
            .map
            .dax_entries()
            .into_iter()
            .map(|m| MappingInfo {
                file_index: m.index,
                order: m.order,
                region_block: m.entry.block(),
                flags: m.entry.flags() as u32,
            })
            .collect())
    }

    // ---- additions for memory failure and tools ----

    /// Splits the PMD (2 MiB) mapping covering file page `page` of `ino` into 4 KiB mappings of
    /// the same blocks (memory failure keeps the other 511 pages usable this way). Returns whether
    /// a PMD entry was split. The on-media block map does not change.
    pub fn split_pmd(&self, ino: Ino, page: u64) -> FsResult<bool> {
        let inode = self.iget(ino)?;
        let _st = inode.state.write();
        inode.map.split_pmd(page)
    }

    /// Sets the per-inode flags (`FS_IOC_FSSETXATTR`'s `fsx_xflags`, e.g. `FS_XFLAG_DAX`);
    /// only the owner or root may. Durable on return.
    pub fn set_flags(&self, ino: Ino, flags: u32, ctx: &Ctx) -> FsResult<Attr> {
        self.writable()?;
        let inode = self.iget(ino)?;
        let mut st = inode.state.write();
        if ctx.uid != 0 && ctx.uid != st.rec.uid {
            return Err(Errno::EPERM);
        }
        st.rec.flags = flags;
        st.rec.ctime = now_ns();
        let mut tx = Tx::new();
        self.commit_inode_into(&mut tx, &inode, &mut st)?;
        self.commit(tx)?;
        Ok(self.attr_of(&inode, &st))
    }

    /// The mapped region (for memory-failure handling and tools).
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The region block holding file page `page` of `ino`, if mapped.
    pub fn file_block(&self, ino: Ino, page: u64) -> FsResult<Option<u64>> {
        let inode = self.iget(ino)?;
        let _st = inode.state.read();
        Ok(inode.map.lookup(page).map(|x| x.0))
    }

    /// Reverse map: who uses region block `block` (scans the in-DRAM maps).
    pub fn block_owner(&self, block: u64) -> BlockOwner {
        if block < self.sb.data_start {
            return BlockOwner::Layout;
        }
        for inode in self.live_inodes() {
            let st = inode.state.read();
            let xb = st.rec.xattr_block;
            let in_xattr =
                xb != 0 && block >= xb && block < xb + store::xattr_area_blocks(&st.xattrs);
            if st.chain.contains(&block) || in_xattr {
                return BlockOwner::InodeMeta { ino: inode.ino };
            }
            for e in inode.map.entries() {
                if block >= e.value && block < e.value + (1u64 << e.order) {
                    return BlockOwner::File {
                        ino: inode.ino,
                        page: e.index + (block - e.value),
                    };
                }
            }
        }
        BlockOwner::Free
    }

    /// The DAX mapping of `ino` (its entries and their locks), for tools and embedded tests of
    /// the entry protocol.
    pub fn dax_mapping(&self, ino: Ino) -> FsResult<crate::dax::DaxMapping> {
        Ok(self.iget(ino)?.map.dax().clone())
    }

    /// Memory failure: the live inode `ino`.
    pub(crate) fn mf_inode(&self, ino: Ino) -> FsResult<Arc<Inode>> {
        self.iget(ino)
    }

    /// Memory failure: the reverse map (region block → inode, file page).
    pub(crate) fn mf_rmap(&self) -> &Rmap {
        &self.rmap
    }

    /// Memory failure: the data area `[first block, end block)` (bad blocks must lie in it).
    pub(crate) fn mf_data_area(&self) -> (u64, u64) {
        (self.sb.data_start, self.sb.total_blocks)
    }

    /// `poison clear` of file page `page`: the page becomes a hole (its data is lost and reads as
    /// zeros), durable on return. Return: the bad block it held, if it was poisoned.
    ///
    /// Context: takes the inode rwsem exclusive (no entry lock held by the caller).
    pub(crate) fn mf_clear_page(&self, ino: Ino, page: u64) -> FsResult<Option<u64>> {
        self.writable()?;
        let inode = self.iget(ino)?;
        let mut st = inode.state.write();
        let Some(b) = inode.map.unpoison(page) else {
            return Ok(None);
        };
        st.map_dirty = true;
        st.dirty = true;
        let mut tx = Tx::new();
        self.commit_inode_into(&mut tx, &inode, &mut st)?;
        self.commit(tx)?;
        Ok(Some(b))
    }

    /// The persistent bad-block list (region block numbers).
    pub fn bad_blocks(&self) -> Vec<u64> {
        self.bad.read().iter().copied().collect()
    }

    fn write_bad_table(&self, bad: &BTreeSet<u64>) -> FsResult<()> {
        let list: Vec<u64> = bad.iter().copied().collect();
        let mut tx = Tx::new();
        tx.write(self.sb.badblk_off(), &encode_badblocks(&list));
        self.journal.commit(&self.region, &tx).map_err(eio)
    }

    /// Records `block` as bad (durable on return). The allocator will never hand it out; a file
    /// still mapping it keeps it until the page is rewritten whole, punched or truncated.
    /// `EINVAL` outside the data area, `ENOSPC` when the table is full.
    ///
    /// A file page mapping the block is poisoned too (lock-then-walk on its DAX entry, without
    /// kernel invalidation: `crate::memory_failure` is the full path, with it).
    pub fn add_bad_block(&self, block: u64) -> FsResult<()> {
        self.record_bad_block(block)?;
        if let BlockOwner::File { ino, page } = self.block_owner(block) {
            if let Ok(inode) = self.iget(ino) {
                inode.map.poison_page(page, block, || Ok(()))?;
            }
        }
        Ok(())
    }

    /// Records `block` in the durable bad-block table only (see [`DaxFs::add_bad_block`]).
    ///
    /// Context: takes the bad-block set, journal and allocator locks (leaves); callable with a
    /// DAX entry locked.
    pub(crate) fn record_bad_block(&self, block: u64) -> FsResult<()> {
        self.writable()?;
        if !self.sb.in_data(block, 1) {
            return Err(Errno::EINVAL);
        }
        let mut bad = self.bad.write();
        if bad.contains(&block) {
            return Ok(());
        }
        if bad.len() >= BADBLK_MAX {
            return Err(Errno::ENOSPC);
        }
        bad.insert(block);
        if let Err(e) = self.write_bad_table(&bad) {
            bad.remove(&block);
            return Err(e);
        }
        self.alloc.lock().mark_used(block);
        self.bad_any.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Removes `block` from the bad-block list (durable on return); a file page poisoned on it
    /// becomes a hole (durable first); a free block becomes allocatable again. `ENOENT` when it was not listed.
    pub fn remove_bad_block(&self, block: u64) -> FsResult<()> {
        self.writable()?;
        let mut owner = self.block_owner(block);
        if let BlockOwner::File { ino, page } = owner {
            // A page poisoned on it becomes a hole first (its data is lost).
            let poisoned = self
                .iget(ino)
                .is_ok_and(|i| i.map.poisoned_block(page) == Some(block));
            if poisoned && self.bad.read().contains(&block) {
                self.mf_clear_page(ino, page)?;
                owner = self.block_owner(block);
            }
        }
        let mut bad = self.bad.write();
        if !bad.remove(&block) {
            return Err(Errno::ENOENT);
        }
        if let Err(e) = self.write_bad_table(&bad) {
            bad.insert(block);
            return Err(e);
        }
        if owner == BlockOwner::Free {
            self.alloc.lock().free(block);
        }
        self.bad_any.store(!bad.is_empty(), Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for DaxFs {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::error!("daxfs: {e}");
        }
    }
}
