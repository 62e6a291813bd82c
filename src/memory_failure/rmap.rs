//! The reverse map: region block → (inode, file page), the kernel's `page->mapping, page->index`.
//!
//! [`Rmap`] holds it as runs keyed by first block. Memory failure owns the type; the filesystem
//! holds one per mount (opaque to it) and every inode's block map (`fs::filemap`) keeps it in
//! step when a block is installed or erased (a leaf mutex, never taken on reads). A lookup is one
//! `O(log n)` search: no inode rwsem, no entry lock. The answer is a snapshot: the block may move before the caller locks the entry, which is why the
//! caller re-checks under the entry lock (lock-then-walk) and looks again if it moved.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::fs::{DaxFs, Ino};

/// The reverse map of one filesystem: region block → (inode, file page) for every block a file
/// map holds (mapped by an entry or poisoned), as runs keyed by first block. Kept in step by
/// `FileMap` (a block enters before its entry is installed and leaves after its entry is
/// erased), so it never misses a mapped block; memory failure verifies its answer under the entry
/// lock. Context: one mutex, a leaf, taken on allocation and unmapping, never on reads.
#[derive(Default)]
pub struct Rmap {
    runs: Mutex<BTreeMap<u64, (u64, u64, u64)>>,
}

impl Rmap {
    /// An empty reverse map.
    pub fn new() -> Rmap {
        Rmap::default()
    }

    /// Notes that blocks `[block, +len)` back pages `[page, +len)` of inode `ino`.
    pub fn insert(&self, block: u64, len: u64, ino: u64, page: u64) {
        self.runs.lock().insert(block, (len, ino, page));
    }

    /// Forgets blocks `[block, +len)`, cutting the runs that hold them.
    pub fn remove(&self, block: u64, len: u64) {
        let end = block + len;
        let mut runs = self.runs.lock();
        let mut touched = Vec::new();
        for (&s, &(l, ino, pg)) in runs.range(..end).rev() {
            if s + l <= block {
                break;
            }
            touched.push((s, l, ino, pg));
        }
        for (s, l, ino, pg) in touched {
            runs.remove(&s);
            if s < block {
                runs.insert(s, (block - s, ino, pg));
            }
            if s + l > end {
                runs.insert(end, (s + l - end, ino, pg + (end - s)));
            }
        }
    }

    /// `(ino, page)` holding `block`, if any.
    pub fn lookup(&self, block: u64) -> Option<(u64, u64)> {
        let runs = self.runs.lock();
        let (&s, &(l, ino, pg)) = runs.range(..=block).next_back()?;
        (block < s + l).then_some((ino, pg + (block - s)))
    }

    /// The runs holding blocks of `[first, end)`, cut to it: `(block, len, ino, page)`.
    pub fn within(&self, first: u64, end: u64) -> Vec<(u64, u64, u64, u64)> {
        let runs = self.runs.lock();
        let from = match runs.range(..=first).next_back() {
            Some((&s, &(l, _, _))) if s + l > first => s,
            _ => first,
        };
        let mut out = Vec::new();
        for (&s, &(l, ino, pg)) in runs.range(from..end) {
            let (a, z) = (s.max(first), (s + l).min(end));
            if a < z {
                out.push((a, z - a, ino, pg + (a - s)));
            }
        }
        out
    }

    /// Number of runs.
    pub fn runs(&self) -> usize {
        self.runs.lock().len()
    }
}

/// Who holds a region block, as far as the file block maps tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// File page `page` of inode `ino` maps the block through a DAX entry.
    Mapped {
        /// The inode.
        ino: Ino,
        /// The file page.
        page: u64,
    },
    /// File page `page` of inode `ino` is poisoned and holds the block.
    Poisoned {
        /// The inode.
        ino: Ino,
        /// The file page.
        page: u64,
    },
    /// No file holds it (free, or file-system metadata).
    None,
}

impl Owner {
    /// `(ino, page)` if a file holds the block.
    pub fn file(self) -> Option<(Ino, u64)> {
        match self {
            Owner::Mapped { ino, page } | Owner::Poisoned { ino, page } => Some((ino, page)),
            Owner::None => None,
        }
    }
}

/// Looks up the owner of region block `block`.
///
/// Context: takes the reverse map's mutex and the owner's poisoned-page mutex (leaves); never
/// sleeps on an entry or inode lock.
pub fn owner_of(fs: &DaxFs, block: u64) -> Owner {
    let Some((ino, page)) = fs.mf_rmap().lookup(block) else {
        return Owner::None;
    };
    match fs.mf_inode(ino) {
        Ok(inode) if inode.map.poisoned_block(page) == Some(block) => Owner::Poisoned { ino, page },
        _ => Owner::Mapped { ino, page },
    }
}
