//! loom model checks of the DAX entry protocol (the index is the mutex-based reference, whose
//! lock is loom's under `cfg(loom)`, as are the wait queues' mutexes and condvars, the liveness
//! flag and the mapping's `Arc`).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test dax_loom`
//! (`LOOM_MAX_PREEMPTIONS` overrides the preemption bound used here, 5; ~15 s warm).
#![cfg(loom)]

use daxfs::dax::{DaxError, DaxMapping, DaxOptions, PMD_ORDER, PTE_ORDER};
use loom::thread;

const BASE: u64 = 1 << 20;
/// Default preemption bound (`LOOM_MAX_PREEMPTIONS` overrides it).
const PREEMPTIONS: usize = 5;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(PREEMPTIONS);
    }
    // The radix-tree index does many atomic accesses per operation (a PMD split touches 512
    // slots); each is a loom branch point.
    b.max_branches = b.max_branches.max(1 << 20);
    b.check(f);
}

fn mapping() -> DaxMapping {
    DaxMapping::new(1, 1, DaxOptions::default())
}

/// One fault: grab, map `BASE + start` if the entry is new, unlock.
fn fault(m: &DaxMapping, index: u64, order: u8) -> (u64, u8) {
    let mut g = m.grab_mapping_entry(index, order).unwrap();
    if g.entry().is_empty() {
        g.insert(BASE + g.index(), false).unwrap();
    }
    let got = (g.index(), g.order());
    g.unlock().unwrap();
    got
}

#[test]
fn two_pmd_faults_on_the_same_range() {
    model(|| {
        let m = mapping();
        let m2 = m.clone();
        let t = thread::spawn(move || fault(&m2, 3, PMD_ORDER));
        let a = fault(&m, 500, PMD_ORDER);
        let b = t.join().unwrap();
        assert_eq!(a, (0, PMD_ORDER));
        assert_eq!(b, (0, PMD_ORDER));
        let all = m.mappings();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].index, all[0].order), (0, PMD_ORDER));
        assert_eq!(all[0].entry.block(), BASE);
        m.check_invariants().unwrap();
        assert_eq!(m.sleepers(), 0);
    });
}

#[test]
fn pmd_fault_races_pte_fault() {
    model(|| {
        let m = mapping();
        let m2 = m.clone();
        let t = thread::spawn(move || fault(&m2, 100, PTE_ORDER));
        let pmd = fault(&m, 0, PMD_ORDER);
        let pte = t.join().unwrap();
        m.check_invariants().unwrap();
        let all = m.mappings();
        if pmd.1 == PMD_ORDER {
            // The PMD fault won: the PTE fault used the (already mapped) PMD entry.
            assert_eq!(pte, (0, PMD_ORDER));
            assert_eq!(all.len(), 1);
        } else {
            // The PTE entry came first: the PMD fault fell back, and both PTE entries remain.
            assert_eq!(pmd, (0, PTE_ORDER));
            assert_eq!(pte, (100, PTE_ORDER));
            assert_eq!(all.len(), 2);
        }
        for e in all {
            assert_eq!(e.entry.block(), BASE + e.index);
        }
    });
}

#[test]
fn lock_unlock_wait_wake() {
    model(|| {
        let m = mapping();
        fault(&m, 0, PMD_ORDER);
        let held = m.lock_entry_for_page(300).unwrap().unwrap();
        let m2 = m.clone();
        let t = thread::spawn(move || {
            let g = m2.lock_entry_for_page(7).unwrap().unwrap();
            (g.index(), g.size())
        });
        let m3 = m.clone();
        let u = thread::spawn(move || fault(&m3, 5, PTE_ORDER));
        drop(held);
        assert_eq!(t.join().unwrap(), (0, 2 << 20));
        assert_eq!(u.join().unwrap(), (0, PMD_ORDER));
        m.check_invariants().unwrap();
        assert_eq!(m.sleepers(), 0);
    });
}

#[test]
fn waiter_vs_delete() {
    model(|| {
        let m = mapping();
        let mut g = m.grab_mapping_entry(5, PTE_ORDER).unwrap();
        g.insert(77, false).unwrap();
        let m2 = m.clone();
        let t = thread::spawn(move || m2.lock_entry(5).unwrap().map(|g| g.index()));
        g.delete().unwrap();
        assert_eq!(t.join().unwrap(), None);
        assert!(m.mappings().is_empty());
    });
}

#[test]
fn eviction_vs_sleeper() {
    model(|| {
        let m = mapping();
        let g = m.grab_mapping_entry(10, PTE_ORDER).unwrap();
        let m2 = m.clone();
        let sleeper = thread::spawn(move || m2.lock_entry(10).map(|x| x.map(|g| g.index())));
        let m3 = m.clone();
        let evictor = thread::spawn(move || m3.evict());
        drop(g);
        let r = sleeper.join().unwrap();
        evictor.join().unwrap();
        // Either it got the entry before eviction, or it saw the eviction; never stuck.
        assert!(
            r == Ok(Some(10)) || r == Err(DaxError::Evicted { inode: 1 }),
            "{r:?}"
        );
        assert!(!m.is_alive());
        assert_eq!(m.sleepers(), 0);
        m.check_invariants().unwrap();
    });
}

#[test]
fn split_vs_waiting_pte_fault() {
    model(|| {
        let m = mapping();
        fault(&m, 0, PMD_ORDER);
        let held = m.lock_entry_for_page(300).unwrap().unwrap();
        let m2 = m.clone();
        let t = thread::spawn(move || {
            let g = m2.grab_mapping_entry(7, PTE_ORDER).unwrap();
            (g.index(), g.order(), g.entry().block())
        });
        // Memory failure: split the poisoned PMD around page 300 and unlock at PTE order.
        held.split_and_unlock(Some(300)).unwrap();
        assert_eq!(t.join().unwrap(), (7, PTE_ORDER, BASE + 7));
        assert_eq!(m.mappings().len(), 511);
        m.check_invariants().unwrap();
        assert_eq!(m.sleepers(), 0);
    });
}
