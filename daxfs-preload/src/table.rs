//! The library's state: the daxfs mounts it talks to, the files it maps and every direct mapping,
//! in fixed-size static tables behind one spin lock.
//!
//! Owns: [`Tables`] and its lock. Rules kept:
//! - **Allocation-free and signal-safe**: the tables are static arrays (no heap), so `mmap`
//!   called by `malloc` and the `SIGBUS` handler may use them. Nothing allocates, logs or calls
//!   into libc beyond raw system calls while the lock is held (an allocation could call `mmap`,
//!   which takes the lock again).
//! - The lock is held across a change of the address space that concerns a direct mapping and
//!   the table update that records it (`munmap`, a revocation's replacement, an install), so the
//!   revocation thread never maps into a range the application just unmapped.
//! - [`Tables::revokes`] counts the revocations applied: an install whose extent map was fetched
//!   before a revocation was applied is dropped (the range stays a placeholder and faults in
//!   again).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub const MAX_MOUNTS: usize = 8;
pub const MAX_FILES: usize = 256;
pub const MAX_MAPS: usize = 2048;
pub const POISON_RECORDS: usize = 64;

/// A daxfs mount with a lease connection.
#[derive(Clone, Copy)]
pub struct Mount {
    pub used: bool,
    /// Direct mappings are not offered to us here (refused, or the region would not open).
    pub refused: bool,
    pub mount_id: u64,
    pub region_fd: i32,
    pub region_rw: bool,
    pub sock: i32,
    pub token: u64,
    pub thread: bool,
    /// The lease socket's `sun_path` bytes (a forked child connects again).
    pub sock_name: [u8; 112],
    pub sock_name_len: usize,
}

/// A mapped file (the library's own descriptor of it, for `GET_FMAP` at fault time).
#[derive(Clone, Copy)]
pub struct File {
    pub used: bool,
    pub mount: usize,
    pub ino: u64,
    pub fd: i32,
    pub epoch: u64,
}

/// One direct mapping: `[start, start + len)` maps file pages from `pgoff`.
#[derive(Clone, Copy)]
pub struct Map {
    pub used: bool,
    pub id: u64,
    pub start: usize,
    pub len: usize,
    pub pgoff: u64,
    pub file: usize,
    pub prot: i32,
    pub shared: bool,
    pub populate: bool,
}

impl Map {
    pub fn end(&self) -> usize {
        self.start + self.len
    }
    pub fn pages(&self) -> u64 {
        (self.len / 4096) as u64
    }
    /// The address of file page `p` (which must be inside the mapping).
    pub fn addr_of(&self, p: u64) -> usize {
        self.start + ((p - self.pgoff) as usize) * 4096
    }
}

/// A poisoning revocation: pages `[first, end)` of `ino` were revoked for memory failure; the
/// entry that lock-then-walk found had that size (`lsb` 21 for 512 pages, else 12).
#[derive(Clone, Copy)]
pub struct PoisonRecord {
    pub used: bool,
    pub mount: usize,
    pub ino: u64,
    pub first: u64,
    pub end: u64,
    pub lsb: u16,
}

pub struct Tables {
    pub mounts: [Mount; MAX_MOUNTS],
    pub files: [File; MAX_FILES],
    pub maps: [Map; MAX_MAPS],
    pub poison: [PoisonRecord; POISON_RECORDS],
    pub poison_next: usize,
    pub next_id: u64,
    pub revokes: u64,
}

const MOUNT0: Mount = Mount {
    used: false,
    refused: false,
    mount_id: 0,
    region_fd: -1,
    region_rw: false,
    sock: -1,
    token: 0,
    thread: false,
    sock_name: [0; 112],
    sock_name_len: 0,
};
const FILE0: File = File {
    used: false,
    mount: 0,
    ino: 0,
    fd: -1,
    epoch: 0,
};
pub const MAP0: Map = Map {
    used: false,
    id: 0,
    start: 0,
    len: 0,
    pgoff: 0,
    file: 0,
    prot: 0,
    shared: false,
    populate: false,
};
const POISON0: PoisonRecord = PoisonRecord {
    used: false,
    mount: 0,
    ino: 0,
    first: 0,
    end: 0,
    lsb: 0,
};

/// The tables behind their lock.
pub struct Locked {
    lock: AtomicBool,
    cell: UnsafeCell<Tables>,
}

// SAFETY: the cell is only reached through `with`, which holds the lock.
unsafe impl Sync for Locked {}

pub static TABLES: Locked = Locked {
    lock: AtomicBool::new(false),
    cell: UnsafeCell::new(Tables::empty()),
};

/// Direct mappings in the tables: 0 lets `munmap` & co. skip the lock.
pub static NMAPS: AtomicUsize = AtomicUsize::new(0);

impl Locked {
    /// Takes the lock (spinning, yielding).
    pub fn lock(&self) {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // SAFETY: plain syscall.
            unsafe { libc::sched_yield() };
        }
    }

    /// Releases the lock.
    pub fn unlock(&self) {
        self.lock.store(false, Ordering::Release);
    }

    /// Runs `f` on the tables under the lock.
    pub fn with<R>(&self, f: impl FnOnce(&mut Tables) -> R) -> R {
        self.lock();
        // SAFETY: the lock is held: nobody else reaches the cell.
        let r = f(unsafe { &mut *self.cell.get() });
        self.unlock();
        r
    }

    /// The tables while the caller holds the lock (the fork handlers hold it across `fork`).
    ///
    /// # Safety
    /// The caller holds the lock and drops the reference before releasing it.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn held(&self) -> &mut Tables {
        // SAFETY: the caller holds the lock.
        unsafe { &mut *self.cell.get() }
    }
}

impl Tables {
    /// Empty tables.
    pub const fn empty() -> Tables {
        Tables {
            mounts: [MOUNT0; MAX_MOUNTS],
            files: [FILE0; MAX_FILES],
            maps: [MAP0; MAX_MAPS],
            poison: [POISON0; POISON_RECORDS],
            poison_next: 0,
            next_id: 1,
            revokes: 0,
        }
    }

    /// The indices of the mappings of file `ino` of mount `mount`.
    pub fn maps_of(&self, mount: usize, ino: u64) -> impl Iterator<Item = usize> + '_ {
        (0..self.maps.len()).filter(move |&k| {
            let m = &self.maps[k];
            m.used && self.files[m.file].mount == mount && self.files[m.file].ino == ino
        })
    }

    /// The index of the mapping containing `addr`.
    pub fn map_at(&self, addr: usize) -> Option<usize> {
        self.maps
            .iter()
            .position(|m| m.used && m.start <= addr && addr < m.end())
    }

    /// Records a mapping. Return: its index, `None` when the table is full.
    pub fn add_map(&mut self, mut m: Map) -> Option<usize> {
        let i = self.maps.iter().position(|m| !m.used)?;
        m.used = true;
        m.id = self.next_id;
        self.next_id += 1;
        self.maps[i] = m;
        NMAPS.fetch_add(1, Ordering::Relaxed);
        Some(i)
    }

    fn drop_map(&mut self, i: usize) {
        self.maps[i].used = false;
        NMAPS.fetch_sub(1, Ordering::Relaxed);
    }

    /// Forgets `[a, a + len)` of every mapping (the address range was unmapped or mapped over):
    /// records are trimmed or split. Return: files whose last mapping went (to release).
    pub fn forget_range(&mut self, a: usize, len: usize) -> [Option<usize>; 8] {
        let end = a.saturating_add(len);
        let mut touched = [None; 8];
        let mut nt = 0;
        for i in 0..MAX_MAPS {
            let m = self.maps[i];
            if !m.used || m.end() <= a || m.start >= end {
                continue;
            }
            if nt < touched.len() && !touched[..nt].contains(&Some(m.file)) {
                touched[nt] = Some(m.file);
                nt += 1;
            }
            let head = (m.start < a).then(|| Map {
                len: a - m.start,
                ..m
            });
            let tail = (m.end() > end).then(|| Map {
                start: end,
                len: m.end() - end,
                pgoff: m.pgoff + ((end - m.start) / 4096) as u64,
                ..m
            });
            self.drop_map(i);
            for part in [head, tail].into_iter().flatten() {
                // A split needs a free slot; without one the tail is forgotten (it then behaves
                // as an ordinary mapping of its last state: data stays mapped until unmapped).
                let _ = self.add_map(part);
            }
        }
        let mut gone = [None; 8];
        for (g, f) in gone.iter_mut().zip(touched.iter().flatten()) {
            if !self.maps.iter().any(|m| m.used && m.file == *f) {
                *g = Some(*f);
            }
        }
        gone
    }

    /// The lsb of a poisoned page `page` of `ino`: the newest poisoning revocation covering it.
    pub fn poison_lsb(&self, mount: usize, ino: u64, page: u64) -> u16 {
        let n = POISON_RECORDS;
        (0..n)
            .map(|k| &self.poison[(self.poison_next + n - 1 - k) % n])
            .find(|r| r.used && r.mount == mount && r.ino == ino && r.first <= page && page < r.end)
            .map_or(12, |r| r.lsb)
    }

    /// Whether a poisoning revocation was recorded for a page of `[first, end)` of `ino`.
    pub fn poison_intersects(&self, mount: usize, ino: u64, first: u64, end: u64) -> bool {
        self.poison
            .iter()
            .any(|r| r.used && r.mount == mount && r.ino == ino && r.first < end && first < r.end)
    }

    /// Records a poisoning revocation of pages `[first, end)`.
    pub fn add_poison(&mut self, mount: usize, ino: u64, first: u64, end: u64) {
        let lsb = if end - first == 512 && first.is_multiple_of(512) {
            21
        } else {
            12
        };
        self.poison[self.poison_next] = PoisonRecord {
            used: true,
            mount,
            ino,
            first,
            end,
            lsb,
        };
        self.poison_next = (self.poison_next + 1) % POISON_RECORDS;
    }
}

impl Tables {
    /// Splits the mapping that strictly contains `addr` in two (new ids).
    pub fn split_at(&mut self, addr: usize) {
        let Some(i) = self.map_at(addr) else {
            return;
        };
        let m = self.maps[i];
        if m.start == addr || self.maps.iter().filter(|m| !m.used).count() < 2 {
            return;
        }
        self.drop_map(i);
        let head = Map {
            len: addr - m.start,
            ..m
        };
        let tail = Map {
            start: addr,
            len: m.end() - addr,
            pgoff: m.pgoff + ((addr - m.start) / 4096) as u64,
            ..m
        };
        let _ = self.add_map(head);
        let _ = self.add_map(tail);
    }

    /// Records `mprotect(a, len, prot)` (done): mappings are split at the range's ends. Each
    /// shared mapping that gains `PROT_WRITE` is made the placeholder again, so its pages fault
    /// in through `GET_FMAP` with allocation of its holes (as the kernel's write fault would).
    pub fn set_prot(&mut self, a: usize, len: usize, prot: i32) {
        let end = a.saturating_add(len);
        self.split_at(a);
        self.split_at(end);
        for i in 0..MAX_MAPS {
            let m = self.maps[i];
            if !m.used || m.start < a || m.end() > end || m.prot == prot {
                continue;
            }
            self.maps[i].prot = prot;
            if m.shared && prot & libc::PROT_WRITE != 0 && m.prot & libc::PROT_WRITE == 0 {
                self.revokes += 1;
                crate::lease::placeholder(m.start, m.len, prot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(start: usize, pages: usize, pgoff: u64, file: usize) -> Map {
        Map {
            start,
            len: pages * 4096,
            pgoff,
            file,
            prot: libc::PROT_READ,
            shared: true,
            ..MAP0
        }
    }

    fn used(t: &Tables) -> Vec<(usize, usize, u64)> {
        let mut v: Vec<_> = t
            .maps
            .iter()
            .filter(|m| m.used)
            .map(|m| (m.start, m.len / 4096, m.pgoff))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn forget_range_trims_splits_and_reports_the_last_mapping_of_a_file() {
        let mut t = Box::new(Tables::empty());
        t.files[0].used = true;
        t.files[1].used = true;
        t.add_map(map(0x10_0000, 16, 100, 0)).unwrap();
        t.add_map(map(0x20_0000, 4, 0, 1)).unwrap();
        assert_eq!(t.map_at(0x10_0000 + 5 * 4096), Some(0));
        assert_eq!(t.map_at(0x10_0000 + 16 * 4096), None);
        // A hole in the middle of the first mapping: head and tail, offsets kept.
        let gone = t.forget_range(0x10_0000 + 4 * 4096, 2 * 4096);
        assert!(gone.iter().all(|g| g.is_none()), "file 0 is still mapped");
        assert_eq!(
            used(&t),
            vec![
                (0x10_0000, 4, 100),
                (0x10_0000 + 6 * 4096, 10, 106),
                (0x20_0000, 4, 0)
            ]
        );
        // The whole second mapping: its file has no mapping left.
        let gone = t.forget_range(0x20_0000, 4 * 4096);
        assert_eq!(gone.iter().flatten().copied().collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn split_at_keeps_file_offsets() {
        let mut t = Box::new(Tables::empty());
        t.add_map(map(0x40_0000, 8, 10, 0)).unwrap();
        t.split_at(0x40_0000 + 3 * 4096);
        t.split_at(0x40_0000); // at a boundary: nothing
        assert_eq!(
            used(&t),
            vec![(0x40_0000, 3, 10), (0x40_0000 + 3 * 4096, 5, 13)]
        );
        let i = t.map_at(0x40_0000 + 4 * 4096).unwrap();
        assert_eq!(t.maps[i].addr_of(15), 0x40_0000 + 5 * 4096);
    }

    #[test]
    fn poison_lsb_follows_the_newest_revocation() {
        let mut t = Box::new(Tables::empty());
        assert_eq!(
            t.poison_lsb(0, 5, 300),
            12,
            "found at mmap time: a PTE entry"
        );
        t.add_poison(0, 5, 0, 512);
        assert_eq!(t.poison_lsb(0, 5, 256), 21, "a whole PMD entry was revoked");
        assert_eq!(t.poison_lsb(0, 6, 256), 12, "another file");
        assert_eq!(t.poison_lsb(1, 5, 256), 12, "another mount");
        t.add_poison(0, 5, 258, 259);
        assert_eq!(
            t.poison_lsb(0, 5, 258),
            12,
            "the entry was split: a PTE one"
        );
        assert_eq!(
            t.poison_lsb(0, 5, 256),
            21,
            "the older page keeps its record"
        );
        t.add_poison(0, 5, 1, 513);
        assert_eq!(t.poison_lsb(0, 5, 10), 12, "512 pages, not PMD-aligned");
    }
}
