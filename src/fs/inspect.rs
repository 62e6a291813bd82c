//! Read-only views for tools and tests: a file's DAX entries (`daxfs stat --mappings`), the
//! region block behind a page, who owns a region block, and the file's `DaxMapping`.
//!
//! Rules: nothing here changes the filesystem except `split_pmd` (a test hook). Context: each view
//! takes one inode lock at a time, shared (`split_pmd`: exclusive).

use super::daxfs::DaxFs;
use super::types::{BlockOwner, Ino, MappingInfo};
use super::FsResult;
use crate::region::Region;
use crate::store;

impl DaxFs {
    /// The file's DAX entries, in file order: PMD (order 9) and PTE (order 0) entries with their
    /// region block and flags (`LOCKED`, `PMD`, `ZERO`, `EMPTY` bits of [`crate::dax`]), and
    /// between them each poisoned page as an order-0 line flagged [`MappingInfo::POISONED`]
    /// with its bad block.
    pub fn mappings(&self, ino: Ino) -> FsResult<Vec<MappingInfo>> {
        let inode = self.inodes.get(ino)?;
        let _st = inode.state.read();
        let mut out: Vec<MappingInfo> = inode
            .map
            .dax_entries()
            .into_iter()
            .map(|m| MappingInfo {
                file_index: m.index,
                order: m.order,
                region_block: m.entry.block(),
                flags: m.entry.flags() as u32,
            })
            .collect();
        let poisoned = inode.map.poisoned_runs(0, u64::MAX);
        if !poisoned.is_empty() {
            out.extend(poisoned.into_iter().flat_map(|(p, b, n)| {
                (0..n).map(move |i| MappingInfo {
                    file_index: p + i,
                    order: 0,
                    region_block: b + i,
                    flags: MappingInfo::POISONED,
                })
            }));
            // A poisoned page has no entry, so no two lines share a first page.
            out.sort_by_key(|m| m.file_index);
        }
        Ok(out)
    }

    /// Splits the PMD (2 MiB) mapping covering file page `page` of `ino` into 4 KiB mappings of
    /// the same blocks (memory failure keeps the other 511 pages usable this way). Returns whether
    /// a PMD entry was split. The on-media block map does not change.
    pub fn split_pmd(&self, ino: Ino, page: u64) -> FsResult<bool> {
        let inode = self.inodes.get(ino)?;
        let _st = inode.state.write();
        inode.map.split_pmd(page)
    }

    /// The mapped region (for memory-failure handling and tools).
    pub fn region(&self) -> &Region {
        self.vol.region()
    }

    /// The region block holding file page `page` of `ino`, if mapped.
    pub fn file_block(&self, ino: Ino, page: u64) -> FsResult<Option<u64>> {
        let inode = self.inodes.get(ino)?;
        let _st = inode.state.read();
        Ok(inode.map.lookup(page).map(|x| x.0))
    }

    /// Reverse map: who uses region block `block` (scans the in-DRAM maps).
    pub fn block_owner(&self, block: u64) -> BlockOwner {
        if block < self.vol.sb().data_start {
            return BlockOwner::Layout;
        }
        for inode in self.inodes.live() {
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
        Ok(self.inodes.get(ino)?.map.dax().clone())
    }
}
