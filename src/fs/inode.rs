//! The in-DRAM inode: attributes, block map, directory contents, reference counts.
//!
//! Each live inode is an `Arc<Inode>` in the inode table (indexed by inode number). Its
//! [`Inode::state`] is the `i_rwsem` analogue: reads and lookups take it shared; writes, truncate,
//! attribute and namespace changes take it exclusive. Several inodes are locked at once only by
//! namespace operations, under the namespace mutex, in increasing inode number (the namespace's
//! lock set sorts them); everything else holds at most one inode lock (docs/DESIGN.md, "Lock
//! order").
//!
//! `lookups` counts kernel references (lookup/create/... minus forget), `opens` open handles; an
//! inode whose link count is 0 is evicted (blocks and record freed) when both reach 0.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use parking_lot::RwLock;

use nix::errno::Errno;

use crate::store::InodeRec;

use super::atime::AtimePolicy;
use super::filemap::FileMap;
use super::iflags;
use super::types::{FileKind, Ino};
use super::FsResult;

/// One directory slot in DRAM.
#[derive(Clone, Debug)]
pub struct Slot {
    pub ino: Ino,
    pub kind: FileKind,
    pub name: OsString,
}

/// A directory's entries: `slots[i]` is the on-media slot `i` (cookie `i + 3`).
#[derive(Default, Debug)]
pub struct Dir {
    pub slots: Vec<Option<Slot>>,
    pub names: HashMap<OsString, usize>,
    pub free: BTreeSet<usize>,
}

impl Dir {
    pub fn get(&self, name: &OsStr) -> Option<&Slot> {
        self.names.get(name).and_then(|&s| self.slots[s].as_ref())
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
    /// Puts `slot` at index `s` (growing the vector).
    pub fn insert(&mut self, s: usize, slot: Slot) {
        if self.slots.len() <= s {
            for i in self.slots.len()..s {
                self.free.insert(i);
            }
            self.slots.resize(s + 1, None);
        }
        self.free.remove(&s);
        self.names.insert(slot.name.clone(), s);
        self.slots[s] = Some(slot);
    }
    pub fn remove(&mut self, name: &OsStr) -> Option<(usize, Slot)> {
        let s = self.names.remove(name)?;
        let slot = self.slots[s].take()?;
        self.free.insert(s);
        Some((s, slot))
    }
    /// The slot a new entry would take.
    pub fn next_free(&self) -> usize {
        self.free.first().copied().unwrap_or(self.slots.len())
    }
}

/// Mutable state under the inode lock.
#[derive(Debug)]
pub struct IState {
    pub rec: InodeRec,
    pub dir: Option<Dir>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Current on-media block-map chain blocks.
    pub chain: Vec<u64>,
    /// The record (size, mode, owner, ...) differs from media.
    pub dirty: bool,
    /// The block map differs from media.
    pub map_dirty: bool,
    /// Only timestamps differ from media (fdatasync may skip them).
    pub times_dirty: bool,
    /// File pages `[dirty_lo, dirty_hi)` hold data not yet persisted.
    pub dirty_lo: u64,
    pub dirty_hi: u64,
    /// Preallocated pages `[lo, hi)` past EOF not yet zeroed.
    pub uninit: (u64, u64),
    /// Preallocated pages `[lo, hi)` past EOF, trimmed at the last release if still past EOF.
    pub prealloc: (u64, u64),
    /// Freed (record cleared); no longer usable.
    pub evicted: bool,
    /// An unnamed `O_TMPFILE` inode that `link` may still name (`fs::tmpfile`); DRAM only: after
    /// a crash it is an orphan, reclaimed at mount.
    pub linkable: bool,
}

impl IState {
    pub fn new(rec: InodeRec) -> IState {
        IState {
            rec,
            dir: None,
            xattrs: Vec::new(),
            chain: Vec::new(),
            dirty: false,
            map_dirty: false,
            times_dirty: false,
            dirty_lo: u64::MAX,
            dirty_hi: 0,
            uninit: (0, 0),
            prealloc: (0, 0),
            evicted: false,
            linkable: false,
        }
    }
    pub fn kind(&self) -> FileKind {
        FileKind::from_mode(self.rec.mode).unwrap_or(FileKind::Regular)
    }
    /// `Ok` for a regular file; `EISDIR` for a directory, `other` for any other kind (each
    /// caller's errno: `EINVAL` for write and truncate, `ENODEV` for fallocate).
    pub fn require_regular(&self, other: Errno) -> FsResult<()> {
        match self.kind() {
            FileKind::Regular => Ok(()),
            FileKind::Directory => Err(Errno::EISDIR),
            _ => Err(other),
        }
    }
    /// Notes that file pages `[lo, hi)` need persisting.
    pub fn mark_data(&mut self, lo: u64, hi: u64) {
        self.dirty_lo = self.dirty_lo.min(lo);
        self.dirty_hi = self.dirty_hi.max(hi);
    }
}

/// A live inode.
pub struct Inode {
    pub ino: Ino,
    pub state: RwLock<IState>,
    pub map: FileMap,
    pub lookups: AtomicU64,
    pub opens: AtomicU64,
    /// Access time (ns), kept outside the lock so shared-lock readers can update it (relatime);
    /// copied into the record when the inode is committed.
    pub atime: AtomicI64,
    /// `atime` changed since the last commit.
    pub atime_dirty: AtomicBool,
}

impl Inode {
    /// A live inode whose DAX mapping has options `dax` (the historical bugs it reproduces).
    pub fn new(ino: Ino, st: IState, dax: crate::dax::DaxOptions) -> Inode {
        let map = FileMap::with_options(ino, st.rec.generation, dax);
        Inode {
            atime: AtomicI64::new(st.rec.atime),
            atime_dirty: AtomicBool::new(false),
            ino,
            state: RwLock::new(st),
            map,
            lookups: AtomicU64::new(0),
            opens: AtomicU64::new(0),
        }
    }
}

impl Inode {
    /// Sets the access time to `now` when `policy` asks for it (relatime by default); marks it
    /// for the next commit. Returns whether it changed. Context: any inode lock.
    pub fn touch_atime(&self, st: &IState, policy: &AtimePolicy, now: i64) -> bool {
        let a = self.atime.load(Ordering::Relaxed);
        let dir = st.kind() == FileKind::Directory;
        if st.rec.flags & iflags::XFLAG_NOATIME != 0 {
            return false;
        }
        if policy.needs_update(dir, a, st.rec.mtime, st.rec.ctime, now) {
            self.atime.store(now, Ordering::Relaxed);
            // Persisted lazily, with the next commit of the inode (lazytime).
            self.atime_dirty.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }
}
