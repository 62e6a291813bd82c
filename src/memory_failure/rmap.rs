//! The reverse map: region block → (inode, file page), the kernel's `page->mapping, page->index`.
//!
//! The filesystem keeps the map itself (`crate::fs::filemap::Rmap`: runs keyed by first block,
//! updated by every inode's block map when a block is installed or erased, a leaf mutex never
//! taken on reads), so a lookup is one `O(log n)` search: no inode rwsem, no entry lock. The
//! answer is a snapshot: the block may move before the caller locks the entry, which is why the
//! caller re-checks under the entry lock (lock-then-walk) and looks again if it moved.

use crate::fs::{DaxFs, Ino};

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
