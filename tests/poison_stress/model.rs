//! The stress's shared state: one anonymous `MAP_SHARED` mapping, made before the children are
//! forked, holding the counters every child adds to and, per file, the model of what the file
//! must contain.
//!
//! Rules kept:
//! - A file's model (`size`, `data`, `unknown`) changes only under its lock, taken by the file's
//!   owner for each of its operations and by the poisoner for region injections and clears.
//!   `maybe` bits are set by the poisoner *before* an injection starts (so whoever sees `EIO` or
//!   `SIGBUS` afterwards finds the bit) and reset only by a clear that read the pages first, with
//!   no injection in flight (the poisoner is one process doing one thing at a time).
//! - `seq` is odd while the size or the `maybe` bits shrink (truncate, clear): an mmap reader that
//!   saw the same even `seq` before and after a `SIGBUS` knows the page was inside the file and
//!   not (maybe) poisoned all along.
//! - Everything here is atomics or plain bytes: any child may die at any point without leaving
//!   something another child cannot read (a dead lock holder is a failure the watchdog reports).

use std::cell::UnsafeCell;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::SeqCst};
use std::time::Duration;

pub const PAGE: u64 = 4096;
/// Pages per file: 4 MiB, two PMD entries when written in large pieces.
pub const PAGES: u64 = 1024;
pub const NFILES: usize = 4;
/// The poisoner's progress slot.
pub const POISONER: usize = NFILES;
/// mmap readers.
pub const MAPPERS: usize = 2;
/// Progress slots: the owners, the poisoner, the mmap readers.
pub const ROLES: usize = NFILES + 1 + MAPPERS;

/// What the children count (one slot each in [`Stats::ops`]).
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Write,
    WriteEio,
    WriteShort,
    Read,
    ReadEio,
    MmapVerify,
    Truncate,
    Punch,
    InjectFile,
    InjectRegion,
    InjectRefused,
    ClearFile,
    ClearRegion,
    ClearedPages,
    MmapPass,
    MmapPages,
    Sigbus,
    SigbusPoisoned,
    Sweep,
}

pub const KINDS: [(Kind, &str); 19] = [
    (Kind::Write, "write"),
    (Kind::WriteEio, "write_eio"),
    (Kind::WriteShort, "write_short"),
    (Kind::Read, "read"),
    (Kind::ReadEio, "read_eio"),
    (Kind::MmapVerify, "mmap_verify"),
    (Kind::Truncate, "truncate"),
    (Kind::Punch, "punch"),
    (Kind::InjectFile, "inject_file"),
    (Kind::InjectRegion, "inject_region"),
    (Kind::InjectRefused, "inject_refused"),
    (Kind::ClearFile, "clear_file"),
    (Kind::ClearRegion, "clear_region"),
    (Kind::ClearedPages, "cleared_pages"),
    (Kind::MmapPass, "mmap_passes"),
    (Kind::MmapPages, "mmap_pages"),
    (Kind::Sigbus, "sigbus"),
    // Of those, on a page that may be poisoned (the others: past an end of file that moved).
    (Kind::SigbusPoisoned, "sigbus_poisoned"),
    (Kind::Sweep, "sweeps"),
];

/// Counters and the first error.
#[repr(C)]
pub struct Stats {
    /// Set by the parent: children finish their current step and exit.
    pub stop: AtomicU64,
    pub ops: [AtomicU64; KINDS.len()],
    /// Finished steps per child (the watchdog's progress): owners 0..NFILES, the poisoner
    /// [`POISONER`], the mmap readers after it.
    pub progress: [AtomicU64; ROLES],
    /// 0, or 1 once `msg` holds the first error.
    error: AtomicU32,
    msg_len: AtomicU32,
    msg: UnsafeCell<[u8; 1024]>,
}

/// One file's model.
#[repr(C)]
pub struct FileModel {
    /// A ticket lock (fair: the owner takes it again right after dropping it, and the poisoner
    /// must get its turn): the next ticket, and the one served.
    next: AtomicU32,
    serving: AtomicU32,
    pub seq: AtomicU64,
    pub size: AtomicU64,
    pub ino: AtomicU64,
    /// 1: an injection may have poisoned the page.
    pub maybe: [AtomicU8; PAGES as usize],
    /// 1: the content is not known (a write that failed part-way over a poisoned page).
    pub unknown: [AtomicU8; PAGES as usize],
    data: UnsafeCell<[u8; (PAGES * PAGE) as usize]>,
}

#[repr(C)]
pub struct Model {
    pub stats: Stats,
    pub files: [FileModel; NFILES],
}

/// The mapping holding a [`Model`].
pub struct SharedModel {
    ptr: *mut Model,
}

// SAFETY: the model is atomics plus bytes guarded by the per-file locks; the mapping lives as long
// as the value.
unsafe impl Send for SharedModel {}
// SAFETY: as above.
unsafe impl Sync for SharedModel {}

impl SharedModel {
    pub fn new() -> SharedModel {
        let len = std::mem::size_of::<Model>();
        // SAFETY: a fresh anonymous shared mapping, zero-filled; checked. All-zero bytes are a
        // valid Model (atomics and byte arrays).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "{}", io::Error::last_os_error());
        SharedModel {
            ptr: p as *mut Model,
        }
    }

    pub fn get(&self) -> &Model {
        // SAFETY: the mapping holds a valid Model for as long as `self` lives.
        unsafe { &*self.ptr }
    }
}

impl Drop for SharedModel {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once.
        unsafe { libc::munmap(self.ptr as *mut _, std::mem::size_of::<Model>()) };
    }
}

impl Stats {
    pub fn add(&self, k: Kind, n: u64) {
        self.ops[k as usize].fetch_add(n, SeqCst);
    }

    pub fn get(&self, k: Kind) -> u64 {
        self.ops[k as usize].load(SeqCst)
    }

    /// One more finished step of child `role`.
    pub fn step(&self, role: usize) {
        self.progress[role].fetch_add(1, SeqCst);
    }

    /// Every child's finished steps.
    pub fn steps(&self) -> [u64; ROLES] {
        std::array::from_fn(|i| self.progress[i].load(SeqCst))
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(SeqCst) != 0
    }

    /// Records `msg` as the error unless one is recorded already.
    pub fn set_error(&self, msg: &str) {
        if self.error.compare_exchange(0, 2, SeqCst, SeqCst).is_ok() {
            let b = msg.as_bytes();
            let n = b.len().min(1024);
            // SAFETY: only the one caller that moved `error` from 0 writes `msg`, and readers
            // look at it only once `error` is 1 (set below, after the bytes).
            unsafe { (&mut *self.msg.get())[..n].copy_from_slice(&b[..n]) };
            self.msg_len.store(n as u32, SeqCst);
            self.error.store(1, SeqCst);
        }
    }

    pub fn error(&self) -> Option<String> {
        if self.error.load(SeqCst) != 1 {
            return None;
        }
        let n = self.msg_len.load(SeqCst) as usize;
        // SAFETY: written once before `error` became 1, never again.
        let b = unsafe { &(&*self.msg.get())[..n] };
        Some(String::from_utf8_lossy(b).into_owned())
    }
}

/// A locked file model: its bytes are ours until dropped.
pub struct Locked<'a> {
    pub fm: &'a FileModel,
}

impl FileModel {
    /// Takes the lock, in turn (spinning politely: the holder may be a process blocked in the
    /// kernel, which the watchdog reports).
    pub fn lock(&self) -> Locked<'_> {
        let ticket = self.next.fetch_add(1, SeqCst);
        let mut spins = 0u32;
        while self.serving.load(SeqCst) != ticket {
            spins += 1;
            if spins < 100 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        Locked { fm: self }
    }

    pub fn is_maybe(&self, page: u64) -> bool {
        page < PAGES && self.maybe[page as usize].load(SeqCst) != 0
    }

    /// Whether any page of `[first, end)` may be poisoned.
    pub fn any_maybe(&self, first: u64, end: u64) -> bool {
        (first..end.min(PAGES)).any(|p| self.is_maybe(p))
    }

    pub fn is_unknown(&self, page: u64) -> bool {
        self.unknown[page as usize].load(SeqCst) != 0
    }

    pub fn mark_maybe(&self, first: u64, end: u64) {
        for p in first..end.min(PAGES) {
            self.maybe[p as usize].store(1, SeqCst);
        }
    }
}

impl Locked<'_> {
    pub fn size(&self) -> u64 {
        self.fm.size.load(SeqCst)
    }

    pub fn data(&mut self) -> &mut [u8] {
        // SAFETY: the bytes are accessed only under the lock, which `self` holds.
        unsafe { &mut *self.fm.data.get() }
    }

    /// Stores `bytes` at `off`, growing the size, and makes the whole pages it covers known.
    pub fn apply_write(&mut self, off: u64, bytes: &[u8]) {
        let end = off + bytes.len() as u64;
        self.data()[off as usize..end as usize].copy_from_slice(bytes);
        for p in off.div_ceil(PAGE)..end / PAGE {
            self.fm.unknown[p as usize].store(0, SeqCst);
        }
        if end > self.size() {
            self.fm.size.store(end, SeqCst);
        }
    }

    /// Zeroes `[off, end)` of the model (punch), making the whole pages it covers known.
    pub fn apply_zero(&mut self, off: u64, end: u64) {
        self.data()[off as usize..end as usize].fill(0);
        for p in off.div_ceil(PAGE)..end / PAGE {
            self.fm.unknown[p as usize].store(0, SeqCst);
        }
    }

    /// Sets the size (truncate): bytes past it become zeros, whole pages past it known.
    pub fn apply_size(&mut self, new: u64) {
        let old = self.size();
        if new < old {
            self.data()[new as usize..old as usize].fill(0);
            for p in new.div_ceil(PAGE)..PAGES {
                self.fm.unknown[p as usize].store(0, SeqCst);
            }
        }
        self.fm.size.store(new, SeqCst);
    }

    /// Marks the pages touched by `[off, end)` unknown.
    pub fn mark_unknown(&mut self, off: u64, end: u64) {
        for p in off / PAGE..end.div_ceil(PAGE).min(PAGES) {
            self.fm.unknown[p as usize].store(1, SeqCst);
        }
    }

    /// After a clear of `pages`: the ones in `poisoned` became holes (zeros, known); none of
    /// them may be poisoned any more. Bumps `seq` around the change.
    pub fn apply_clear(&mut self, pages: std::ops::Range<u64>, poisoned: &[u64]) {
        self.fm.seq.fetch_add(1, SeqCst);
        for &p in poisoned {
            let s = (p * PAGE) as usize;
            self.data()[s..s + PAGE as usize].fill(0);
            self.fm.unknown[p as usize].store(0, SeqCst);
        }
        for p in pages.start..pages.end.min(PAGES) {
            self.fm.maybe[p as usize].store(0, SeqCst);
        }
        self.fm.seq.fetch_add(1, SeqCst);
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.fm.serving.fetch_add(1, SeqCst);
    }
}
