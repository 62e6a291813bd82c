//! The DAX entry protocol beyond the seeds: downgrade, split with a hole, punch hole and
//! truncate, invalidate, bad input, unlock refusals. Always with today's semantics (no historical bug).
#![cfg(not(loom))]

use std::sync::{Arc, Mutex};
use std::thread;

use daxfs::dax::{
    DaxEntry, DaxError, DaxMapping, DaxOptions, Lookup, WaitTable, DAX_PMD, DAX_ZERO, PMD_ORDER,
    PTE_ORDER,
};
use daxfs::index::{Entry, Mark};

mod dax_util;
use dax_util::{populate, wait_sleepers};

fn mapping() -> DaxMapping {
    dax_util::mapping_with(DaxOptions::default())
}

#[test]
fn new_entries_are_empty_and_locked_then_unlock_clean() {
    let m = mapping();
    let g = m.grab_mapping_entry(700, PMD_ORDER).unwrap();
    assert_eq!((g.index(), g.order()), (512, PMD_ORDER));
    assert_eq!(g.entry(), DaxEntry::empty(PMD_ORDER).locked());
    assert!(
        m.check_invariants().is_err(),
        "a locked entry must be reported"
    );
    drop(g);
    assert_eq!(
        m.index().load(1000).map(|e| DaxEntry::from_raw(e.value)),
        Some(DaxEntry::empty(PMD_ORDER))
    );
    m.check_invariants().unwrap();
    // A PMD fault on an existing PMD entry gets it back.
    let g = m.grab_mapping_entry(513, PMD_ORDER).unwrap();
    assert_eq!((g.index(), g.order()), (512, PMD_ORDER));
}

#[test]
fn pte_fault_downgrades_an_empty_pmd_entry() {
    let m = mapping();
    drop(m.grab_mapping_entry(0, PMD_ORDER).unwrap());
    let g = m.grab_mapping_entry(37, PTE_ORDER).unwrap();
    assert_eq!((g.index(), g.order()), (37, PTE_ORDER));
    drop(g);
    let entries = m.mappings();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!((entries[0].index, entries[0].order), (37, 0));
    m.check_invariants().unwrap();
}

#[test]
fn zero_pmd_downgrade_unmaps_first() {
    let unmapped = Arc::new(Mutex::new(Vec::new()));
    let u2 = unmapped.clone();
    let m = DaxMapping::with_parts(
        1,
        1,
        DaxOptions::default(),
        Arc::new(WaitTable::new(16)),
        Some(Box::new(move |first, nr| {
            u2.lock().unwrap().push((first, nr))
        })),
    );
    let mut g = m.grab_mapping_entry(1024, PMD_ORDER).unwrap();
    g.insert_zero().unwrap();
    assert_eq!(
        g.entry(),
        DaxEntry::new(0, DAX_ZERO | DAX_PMD).unwrap().locked()
    );
    drop(g);
    let g = m.grab_mapping_entry(1030, PTE_ORDER).unwrap();
    assert_eq!((g.index(), g.order()), (1030, PTE_ORDER));
    assert_eq!(*unmapped.lock().unwrap(), vec![(1024, 512)]);
}

#[test]
fn pte_fault_does_not_downgrade_a_locked_empty_pmd_until_unlocked() {
    let m = mapping();
    let pmd = m.grab_mapping_entry(0, PMD_ORDER).unwrap();
    let m2 = m.clone();
    let t = thread::spawn(move || {
        let g = m2.grab_mapping_entry(5, PTE_ORDER).unwrap();
        (g.index(), g.order(), g.entry())
    });
    wait_sleepers(&m, 1);
    // While we hold it, the PMD entry is intact.
    assert_eq!(m.index().load(5).unwrap().order, PMD_ORDER);
    let mut pmd = pmd;
    pmd.insert(4096, false).unwrap();
    drop(pmd);
    // We mapped a block meanwhile: the PTE fault now uses the PMD entry instead.
    let (i, o, e) = t.join().unwrap();
    assert_eq!((i, o), (0, PMD_ORDER));
    assert_eq!(e.block(), 4096);
}

#[test]
fn split_with_hole_keeps_511_pages_and_wakes_waiters() {
    let m = mapping();
    populate(&m, 512, PMD_ORDER, 2048);
    let g = m.lock_entry_for_page(812).unwrap().unwrap();
    assert_eq!(g.size(), 2 << 20);
    let m2 = m.clone();
    let waiter = thread::spawn(move || {
        let g = m2.lock_entry_for_page(600).unwrap().unwrap();
        (g.index(), g.order(), g.entry().unlocked())
    });
    wait_sleepers(&m, 1);
    g.split_and_unlock(Some(812)).unwrap();
    assert_eq!(
        waiter.join().unwrap(),
        (600, PTE_ORDER, DaxEntry::new(2048 + 88, 0).unwrap())
    );
    let entries = m.mappings();
    assert_eq!(entries.len(), 511);
    assert!(m.index().load(812).is_none());
    for e in &entries {
        assert_eq!(e.order, 0);
        assert_eq!(e.entry.block(), 2048 + (e.index - 512), "at {}", e.index);
    }
    m.check_invariants().unwrap();
}

#[test]
fn split_refuses_pte_entries_and_holes_outside() {
    let m = mapping();
    populate(&m, 3, PTE_ORDER, 9);
    let g = m.lock_entry(3).unwrap().unwrap();
    assert_eq!(g.split_and_unlock(None), Err(DaxError::BadOrder(0)));
    populate(&m, 512, PMD_ORDER, 512);
    let g = m.lock_entry(512).unwrap().unwrap();
    assert_eq!(g.split_and_unlock(Some(5)), Err(DaxError::OutOfEntry(5)));
    // Both guards unlocked on drop after the refusal.
    m.check_invariants().unwrap();
}

#[test]
fn punch_hole_of_one_page_in_a_pmd_leaves_511_ptes() {
    let m = mapping();
    populate(&m, 0, PMD_ORDER, 0);
    populate(&m, 512, PMD_ORDER, 512);
    assert_eq!(m.dax_delete_range(10, 11).unwrap(), 1);
    let entries = m.mappings();
    assert_eq!(entries.len(), 512, "511 PTE entries + the second PMD entry");
    assert!(m.index().load(10).is_none());
    assert_eq!(m.index().load(11).unwrap().order, 0);
    assert_eq!(m.index().load(600).unwrap().order, PMD_ORDER);
    // Truncate from page 100: the rest of the first 2 MiB and the whole second PMD go.
    assert_eq!(m.dax_delete_range(100, u64::MAX).unwrap(), 412 + 512);
    assert_eq!(m.mappings().len(), 99);
    m.check_invariants().unwrap();
}

#[test]
fn truncate_waits_for_a_locked_entry() {
    let m = mapping();
    populate(&m, 8, PTE_ORDER, 80);
    let g = m.lock_entry(8).unwrap().unwrap();
    let m2 = m.clone();
    let t = thread::spawn(move || m2.dax_delete_mapping_entry(8));
    wait_sleepers(&m, 1);
    assert!(m.index().load(8).is_some());
    drop(g);
    assert_eq!(t.join().unwrap(), Ok(Some(DaxEntry::new(80, 0).unwrap())));
    assert!(m.index().load(8).is_none());
}

#[test]
fn invalidate_keeps_dirty_entries() {
    let m = mapping();
    let mut g = m.grab_mapping_entry(1, PTE_ORDER).unwrap();
    g.insert(11, true).unwrap();
    drop(g);
    populate(&m, 2, PTE_ORDER, 12);
    assert!(m.index().get_mark(1, Mark::Dirty));
    assert_eq!(m.dax_invalidate_mapping_entry(1), Ok(false));
    assert_eq!(m.dax_invalidate_mapping_entry(2), Ok(true));
    assert_eq!(m.dax_invalidate_mapping_entry(3), Ok(false));
    assert!(m.index().load(1).is_some() && m.index().load(2).is_none());
    m.check_invariants().unwrap();
}

#[test]
fn bad_input_gets_errors() {
    let m = mapping();
    assert_eq!(
        m.grab_mapping_entry(0, 3).err(),
        Some(DaxError::BadOrder(3))
    );
    assert_eq!(m.get_unlocked_entry(0, 18), Err(DaxError::BadOrder(18)));
    let mut g = m.grab_mapping_entry(0, PMD_ORDER).unwrap();
    assert_eq!(g.insert(100, false), Err(DaxError::BadBlock(100)));
    assert_eq!(
        g.insert(u64::MAX - 511, false),
        Err(DaxError::BadBlock(u64::MAX - 511))
    );
    assert_eq!(g.block_of(512), Err(DaxError::OutOfEntry(512)));
    assert_eq!(g.block_of(3), Ok(None), "EMPTY entry has no block");
    drop(g);
    // Unlocking an entry nobody holds is refused.
    assert_eq!(
        m.dax_unlock_entry(0, DaxEntry::empty(PMD_ORDER)),
        Err(DaxError::NotLocked(0))
    );
    assert_eq!(
        m.dax_unlock_entry(4096, DaxEntry::empty(0)),
        Err(DaxError::NotLocked(4096))
    );
}

#[test]
#[cfg_attr(debug_assertions, should_panic(expected = "locked value"))]
fn unlock_with_a_locked_value_is_refused() {
    let m = mapping();
    let g = m.grab_mapping_entry(0, PTE_ORDER).unwrap();
    let locked = g.entry();
    // Release builds: an error, and the entry stays locked.
    assert_eq!(
        m.dax_unlock_entry(0, locked),
        Err(DaxError::LockedValue(locked.raw()))
    );
    assert!(DaxEntry::from_raw(m.index().load(0).unwrap().value).is_locked());
    drop(g);
}

#[test]
fn get_and_put_unlocked_entry() {
    let m = mapping();
    assert_eq!(m.get_unlocked_entry(600, PMD_ORDER), Ok(Lookup::Nothing));
    populate(&m, 1023, PTE_ORDER, 5);
    let want = Entry {
        index: 1023,
        order: 0,
        value: DaxEntry::new(5, 0).unwrap().raw(),
    };
    let found = m.get_unlocked_entry(600, PMD_ORDER).unwrap();
    assert_eq!(found, Lookup::Conflict(want));
    m.put_unlocked_entry(&found);
    assert_eq!(
        m.get_unlocked_entry(1023, PTE_ORDER),
        Ok(Lookup::Found(want))
    );
}
