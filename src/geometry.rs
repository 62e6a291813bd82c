//! The geometry every layer shares: the page (= region block) and the PMD (2 MiB) entry.
//!
//! Defined once, here at the bottom: the region is addressed in pages, the index and the DAX
//! entries cover `2^order` pages, the store's block is one page, and the file maps use PMD entries
//! where a 2 MiB-aligned run backs a 2 MiB-aligned file range (docs/DESIGN.md, "Geometry").

/// Bytes in a page: one region block, one filesystem block, one PTE-order DAX entry.
pub const PAGE_SIZE: u64 = 4096;
/// `log2(PAGE_SIZE)`.
pub const PAGE_SHIFT: u32 = 12;
/// Order of a PTE entry (one page).
pub const PTE_ORDER: u8 = 0;
/// Order of a PMD entry (512 pages, 2 MiB), as `PMD_ORDER` in the kernel.
pub const PMD_ORDER: u8 = 9;
/// Pages in a PMD entry (the kernel's `PG_PMD_NR`).
pub const PMD_PAGES: u64 = 1 << PMD_ORDER;
/// Bytes mapped by a PMD entry.
pub const PMD_SIZE: u64 = PAGE_SIZE << PMD_ORDER;

const _: () = assert!(1 << PAGE_SHIFT == PAGE_SIZE);
