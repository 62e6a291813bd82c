//! The reverse map: region block → (inode, file page), the kernel's `page->mapping, page->index`.
//!
//! daxfs keeps no separate reverse-map structure: it scans the live inodes' block maps, which are
//! lock-free to read (the multi-order index), so the scan takes **no inode rwsem and no entry
//! lock**. The answer is a snapshot: the block may move before the caller locks the entry, which
//! is why the caller re-checks under the entry lock (lock-then-walk) and looks again if it moved.
//! Cost: one pass over the inode table and one index walk per regular file (a PMD entry counts
//! once), so poisoning stays well under a millisecond for a few large files; with very many files
//! an extent-keyed reverse tree would be the next step.

use crate::fs::{DaxFs, Ino};

/// Who maps a region block, as far as the file block maps tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// File page `page` of inode `ino` maps the block through a DAX entry.
    Mapped { ino: Ino, page: u64 },
    /// File page `page` of inode `ino` is poisoned and holds the block.
    Poisoned { ino: Ino, page: u64 },
    /// No file maps it (free, or file-system metadata).
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
/// Context: lock-free reads of every block map (and each inode's poisoned-page mutex, a leaf);
/// never sleeps on an entry or inode lock.
pub fn owner_of(fs: &DaxFs, block: u64) -> Owner {
    for inode in fs.mf_inodes() {
        let map = &inode.map;
        if map.poisoned_count() > 0 {
            if let Some((page, _)) = map
                .poisoned_in(0, u64::MAX)
                .into_iter()
                .find(|&(_, b)| b == block)
            {
                return Owner::Poisoned {
                    ino: inode.ino,
                    page,
                };
            }
        }
        for e in map.dax_entries() {
            if !e.entry.has_block() {
                continue;
            }
            let b0 = e.entry.block();
            if block >= b0 && block - b0 < (1u64 << e.order) {
                return Owner::Mapped {
                    ino: inode.ino,
                    page: e.index + (block - b0),
                };
            }
        }
    }
    Owner::None
}
