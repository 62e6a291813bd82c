//! Lock-then-walk: the step of memory failure that poisons the pages of one inode range
//! (docs/DESIGN.md, "Memory failure"), as the kernel's `mf_dax_kill_procs` locks the DAX entry
//! and `dax_mapping_size` walks to the mapping size.
//!
//! Over one inode's block map (`FileMap`): lock every DAX entry covering a page of the range in
//! ascending order (any sub-page of a PMD entry locks the whole 2 MiB entry), take each page's
//! block and the effective mapping size from the locked entries (never from elsewhere), keep the
//! pages the caller still expects on those blocks, record their blocks durably (the caller's
//! `record`; on an error nothing has changed), mark them in the inode's [`PoisonedPages`], erase
//! their PTE entries and split PMD entries around them, unlock at the new orders. The caller
//! invalidates the whole entries returned in [`PoisonedRange::unmap`] after the unlock.
//!
//! Context: takes no inode rwsem (a reader holding the rwsem shared may hold an entry we wait
//! for; we never wait for the rwsem while holding an entry); may sleep on entry locks; the
//! poisoned-page set and `record`'s locks are leaves taken with the entries locked.
//!
//! [`PoisonedPages`]: super::poisoned::PoisonedPages

use crate::dax::DaxError;
use crate::fs::filemap::{FileMap, PMD_ORDER};

/// What [`poison_range`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoisonedRange {
    /// Pages newly poisoned, as `(page, block, count)` runs.
    pub runs: Vec<(u64, u64, u64)>,
    /// Pages of the range that were poisoned already.
    pub already: u64,
    /// Pages of the range with no block (holes).
    pub holes: u64,
    /// The entries changed, as `(first page, pages)`: whole entries (512 pages for a PMD), the
    /// ranges to unmap from user mappings.
    pub unmap: Vec<(u64, u64)>,
}

fn eio(e: DaxError) -> nix::errno::Errno {
    log::error!("daxfs: DAX entry protocol: {e}");
    nix::errno::Errno::EIO
}

/// Memory failure of pages `[first, end)` of `map` in one lock-then-walk step: poisons the pages
/// `keep(page, block)` accepts, with `record` run on their blocks as `(first, count)` ranges
/// under the entry locks (see the module documentation).
pub(crate) fn poison_range(
    map: &FileMap,
    first: u64,
    end: u64,
    keep: impl Fn(u64, u64) -> bool,
    record: impl FnOnce(&[(u64, u64)]) -> Result<(), nix::errno::Errno>,
) -> Result<PoisonedRange, nix::errno::Errno> {
    let mut locks = map.lock_range(first, end)?;
    let guards = locks.take_guards();
    let mut out = PoisonedRange::default();
    // Per locked entry: the sub-range of its pages to poison.
    let mut cut: Vec<Option<(u64, u64)>> = Vec::with_capacity(guards.len());
    for g in &guards {
        let (s, e) = (g.index().max(first), (g.index() + g.nr_pages()).min(end));
        let Some(b0) = g.block_of(s).ok().flatten() else {
            cut.push(None);
            continue;
        };
        let kept: Vec<u64> = (s..e).filter(|&p| keep(p, b0 + (p - s))).collect();
        match (kept.first(), kept.last()) {
            (Some(&a), Some(&z)) if (z - a + 1) as usize == kept.len() => {
                out.runs.push((a, b0 + (a - s), z - a + 1));
                cut.push(Some((a, z + 1)));
            }
            (None, _) => cut.push(None),
            _ => return Err(nix::errno::Errno::EIO), // blocks of one entry are consecutive
        }
    }
    out.already = map
        .poisoned()
        .within(first, end)
        .iter()
        .map(|r| r.2)
        .sum::<u64>();
    let mapped: u64 = guards
        .iter()
        .filter(|g| g.entry().has_block())
        .map(|g| (g.index() + g.nr_pages()).min(end) - g.index().max(first))
        .sum();
    out.holes = (end - first).saturating_sub(mapped + out.already);
    if out.runs.is_empty() {
        return Ok(out);
    }
    let blocks: Vec<(u64, u64)> = out.runs.iter().map(|&(_, b, n)| (b, n)).collect();
    record(&blocks)?;
    map.poisoned().mark(&out.runs);
    for (g, c) in guards.into_iter().zip(cut) {
        let Some((a, z)) = c else { continue };
        out.unmap.push((g.index(), g.nr_pages()));
        let whole = a == g.index() && z == g.index() + g.nr_pages();
        if g.order() == PMD_ORDER && !whole {
            g.split_and_unlock_holes(a..z).map_err(eio)?;
        } else {
            g.delete().map_err(eio)?;
        }
    }
    Ok(out)
}

/// Mount: poisons pages `[first, end)` of `map` again, whatever blocks they hold (their blocks
/// are in the bad-block table already, so nothing is recorded and nothing is invalidated: no
/// user maps a file that is being loaded).
pub(crate) fn restore(map: &FileMap, first: u64, end: u64) -> Result<(), nix::errno::Errno> {
    poison_range(map, first, end, |_, _| true, |_| Ok(())).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::{poison_range, PoisonedRange};
    use crate::fs::filemap::{FileMap, PMD_ORDER};
    use crate::memory_failure::Rmap;

    /// Poisons page `page` if it still maps `block` (one lock-then-walk step of one page).
    fn poison1(
        m: &FileMap,
        page: u64,
        block: u64,
        record: impl FnOnce(&[(u64, u64)]) -> Result<(), nix::errno::Errno>,
    ) -> Result<PoisonedRange, nix::errno::Errno> {
        poison_range(m, page, page + 1, |_, b| b == block, record)
    }

    #[test]
    fn rmap_follows_map_unmap_and_poison() {
        let r = std::sync::Arc::new(Rmap::new());
        let m = FileMap::new(9, 1);
        m.attach_rmap(r.clone());
        m.map(512, PMD_ORDER, 1024).unwrap();
        m.map(3, 0, 77).unwrap();
        assert_eq!(r.lookup(1024 + 100), Some((9, 612)));
        assert_eq!(r.lookup(77), Some((9, 3)));
        assert_eq!(r.lookup(78), None);
        poison1(&m, 700, 1024 + 188, |_| Ok(())).unwrap();
        assert_eq!(
            r.lookup(1024 + 188),
            Some((9, 700)),
            "a poisoned page keeps its block"
        );
        m.unmap_range(600, 610);
        assert_eq!(r.lookup(1024 + 90), None);
        assert_eq!(r.lookup(1024 + 87), Some((9, 599)));
        assert_eq!(r.lookup(1024 + 98), Some((9, 610)));
        assert_eq!(m.unpoison(700), Some(1024 + 188));
        assert_eq!(r.lookup(1024 + 188), None);
        m.unmap_range(0, u64::MAX);
        assert_eq!(r.runs(), 0);
    }

    #[test]
    fn poison_splits_a_pmd_and_keeps_the_block_in_the_map() {
        let m = FileMap::new(11, 1);
        m.map(0, PMD_ORDER, 4096).unwrap();
        let mut recorded = Vec::new();
        let r = poison1(&m, 300, 4096 + 300, |b| {
            recorded = b.to_vec();
            Ok(())
        })
        .unwrap();
        assert_eq!(recorded, vec![(4096 + 300, 1)]);
        assert_eq!(r.runs, vec![(300, 4096 + 300, 1)]);
        assert_eq!(r.unmap, vec![(0, 512)], "the whole PMD entry is unmapped");
        let e = m.dax_entries();
        assert_eq!(e.len(), 511);
        assert!(e.iter().all(|x| x.order == 0 && !x.entry.is_locked()));
        assert!(!e.iter().any(|x| x.index == 300));
        assert_eq!(m.lookup(300), None);
        assert_eq!(m.lookup(301), Some((4096 + 301, 0)));
        assert!(m.any_poisoned(0, 512) && !m.any_poisoned(301, 512));
        // The persistent map still sees one run of 512 blocks.
        let ent = m.entries();
        assert_eq!(ent.len(), 512);
        assert_eq!(ent[300].value, 4096 + 300);
        assert_eq!(m.mapped_pages(), 512);
        let again = poison1(&m, 300, 4396, |_| panic!("nothing new to record")).unwrap();
        assert_eq!((again.already, again.runs.len()), (1, 0));
        let moved = poison1(&m, 301, 999, |_| panic!("nothing to record")).unwrap();
        assert!(moved.runs.is_empty() && moved.unmap.is_empty());
        // A failed record leaves nothing changed.
        assert_eq!(
            poison1(&m, 5, 4101, |_| Err(nix::errno::Errno::ENOSPC)),
            Err(nix::errno::Errno::ENOSPC)
        );
        assert_eq!(m.lookup(5), Some((4101, 0)));
        assert_eq!(m.poisoned_count(), 1);
        // Truncating over it forgets it.
        let freed = m.unmap_range(256, 512);
        assert_eq!(freed.iter().map(|r| r.1).sum::<u64>(), 256);
        assert_eq!(m.poisoned_count(), 0);
        m.dax().check_invariants().unwrap();
    }

    #[test]
    fn entries_merge_poisoned_runs_in_file_order() {
        let m = FileMap::new(12, 1);
        m.map(0, PMD_ORDER, 8192).unwrap();
        m.map(1024, 0, 100).unwrap();
        m.map(2048, PMD_ORDER, 16384).unwrap();
        // A run inside the first PMD (split around it), pages before and after the PTE entry.
        poison_range(&m, 10, 20, |_, _| true, |_| Ok(())).unwrap();
        poison_range(&m, 2048 + 500, 2048 + 512, |_, _| true, |_| Ok(())).unwrap();
        let e = m.entries();
        let idx: Vec<u64> = e.iter().map(|x| x.index).collect();
        let mut sorted = idx.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(idx, sorted, "file order, no page twice");
        let pages: u64 = e.iter().map(|x| 1u64 << x.order).sum();
        assert_eq!(
            pages,
            512 + 1 + 512,
            "every page once, the poisoned ones included"
        );
        for x in &e {
            let want = match x.index {
                p if p < 512 => 8192 + p,
                1024 => 100,
                p => 16384 + (p - 2048),
            };
            assert_eq!(x.value, want, "page {}", x.index);
        }
        // A window in the middle of a run.
        let w = m.entries_in(15, 1025);
        assert_eq!(w.first().map(|x| (x.index, x.value)), Some((15, 8192 + 15)));
        assert_eq!(w.last().map(|x| x.index), Some(1024));
    }
}
