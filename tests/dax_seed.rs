//! Seed tests (a)–(g) of issue 3 for the DAX entry protocol.
//!
//! Every mapping here takes its historical bugs from the environment (`DaxOptions::from_env`):
//! with `DAXFS_REGRESSION_9F32D221=1` (the alias for 0e40de0338d0, c93db7bb6ef3 and
//! fda490d39fc0, docs/DAX-BUGS.md) (a), (b) and (c) must fail and (d)–(g) pass;
//! `scripts/regression-check` checks both runs. Each test runs under a watchdog so a hang
//! fails the test instead of stalling the run.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use daxfs::dax::{
    dax_entry_order, dax_entry_size, DaxEntry, DaxError, DaxMapping, DaxOptions, Lookup, DAX_PMD,
    PMD_ORDER, PMD_SIZE, PTE_ORDER,
};
use daxfs::index::Entry;

mod dax_util;
use dax_util::{populate, wait_sleepers};

/// A fresh mapping, with the historical bugs the environment asks for.
fn mapping() -> DaxMapping {
    dax_util::mapping_with(DaxOptions::from_env())
}

const WATCHDOG: Duration = Duration::from_secs(20);

/// Runs `f` on a thread; fails the test if it panics or does not finish within the watchdog.
fn with_watchdog(name: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(()) => h.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{name}: watchdog: hung for {WATCHDOG:?}"),
    }
}

#[test]
fn seed_a_pte_1023_vs_pmd_fault_512() {
    with_watchdog("seed a", || {
        let m = mapping();
        populate(&m, 1023, PTE_ORDER, 4000);
        let pte = Entry {
            index: 1023,
            order: 0,
            value: DaxEntry::new(4000, 0).unwrap().raw(),
        };

        // Unlocked PTE entry in the range: the PMD fault falls back to PTE and keeps it.
        let g = m.grab_mapping_entry(512, PMD_ORDER).unwrap();
        assert_eq!(
            (g.index(), g.order()),
            (512, PTE_ORDER),
            "PMD fault over a PTE entry must fall back to PTE"
        );
        drop(g);
        assert_eq!(m.index().load(1023), Some(pte), "PTE entry at 1023 lost");
        assert_eq!(
            m.dax_delete_mapping_entry(512).unwrap(),
            Some(DaxEntry::empty(0))
        );

        // Locked by another thread: the PMD fault neither waits for it nor erases it.
        let (ready_tx, ready_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let m2 = m.clone();
        let holder = thread::spawn(move || {
            let g = m2.lock_entry(1023).unwrap().expect("entry at 1023");
            ready_tx.send(()).unwrap();
            let _ = release_rx.recv();
            drop(g);
        });
        ready_rx.recv().unwrap();
        let g = m.grab_mapping_entry(512, PMD_ORDER).unwrap();
        assert_eq!((g.index(), g.order()), (512, PTE_ORDER));
        let held = m
            .index()
            .load(1023)
            .expect("locked PTE entry at 1023 erased");
        assert_eq!((held.index, held.order), (1023, 0));
        assert_eq!(
            DaxEntry::from_raw(held.value),
            DaxEntry::from_raw(pte.value).locked()
        );
        drop(g);
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(m.index().load(1023), Some(pte));
        assert_eq!(m.index().load(512).map(|e| e.order), Some(0));
        m.check_invariants().unwrap();
    });
}

#[test]
fn seed_b_waiter_relooks_up_after_delete() {
    with_watchdog("seed b", || {
        let m = mapping();
        let mut g = m.grab_mapping_entry(5, PTE_ORDER).unwrap();
        g.insert(77, false).unwrap();
        let m2 = m.clone();
        let waiter = thread::spawn(move || {
            m2.lock_entry_for_page(5)
                .map(|found| found.map(|g| (g.index(), g.entry().block())))
        });
        wait_sleepers(&m, 1);
        let erased = g.delete().unwrap();
        assert_eq!(erased.block(), 77);
        let got = waiter.join().unwrap();
        assert_eq!(
            got,
            Ok(None),
            "the waiter must look up again and find the entry gone"
        );
        assert_eq!(m.index().load(5), None, "deleted entry resurrected");
        m.check_invariants().unwrap();
    });
}

#[test]
fn seed_c_unlock_keeps_order() {
    with_watchdog("seed c", || {
        let m = mapping();
        let pmd = DaxEntry::new(1024, DAX_PMD).unwrap();
        populate(&m, 512, PMD_ORDER, 1024);
        let want = Entry {
            index: 512,
            order: PMD_ORDER,
            value: pmd.raw(),
        };
        assert_eq!(m.index().load(700), Some(want), "fault-path unlock");

        // An unlock value that does not encode the entry's order is refused.
        let g = m.lock_entry(700).unwrap().unwrap();
        assert_eq!(
            m.dax_unlock_entry(512, DaxEntry::new(1024, 0).unwrap()),
            Err(DaxError::OrderMismatch {
                index: 512,
                held: 9,
                value: 0
            })
        );
        assert!(DaxEntry::from_raw(m.index().load(512).unwrap().value).is_locked());
        g.unlock().unwrap();
        assert_eq!(m.index().load(700), Some(want));

        // The memory-failure page lock: locking sub-page 700 and unlocking keeps the PMD entry.
        let p = m.lock_entry_for_page(700).unwrap().unwrap();
        assert_eq!((p.index(), p.order(), p.size()), (512, PMD_ORDER, PMD_SIZE));
        drop(p);
        let after = m.index().load(700).unwrap();
        assert_eq!(
            after, want,
            "page unlock lost the PMD bit or the order: {after:?}"
        );
        assert_eq!(dax_entry_order(after.value), PMD_ORDER);
        m.check_invariants().unwrap();
    });
}

#[test]
fn seed_d_pte_load_inside_pmd() {
    with_watchdog("seed d", || {
        let m = mapping();
        populate(&m, 0, PMD_ORDER, 512);
        let want = Entry {
            index: 0,
            order: PMD_ORDER,
            value: DaxEntry::new(512, DAX_PMD).unwrap().raw(),
        };
        for i in [1, 7, 300, 511] {
            assert_eq!(
                m.get_unlocked_entry(i, PTE_ORDER),
                Ok(Lookup::Found(want)),
                "at {i}"
            );
            assert_eq!(m.index().load(i), Some(want));
        }
        assert_eq!(m.get_unlocked_entry(512, PTE_ORDER), Ok(Lookup::Nothing));
        // A PTE fault inside the mapped PMD entry uses the PMD entry.
        let g = m.grab_mapping_entry(300, PTE_ORDER).unwrap();
        assert_eq!((g.index(), g.order()), (0, PMD_ORDER));
        assert_eq!(g.block_of(300), Ok(Some(812)));
        drop(g);
        assert_eq!(m.index().load(300), Some(want));
    });
}

#[test]
fn seed_e_lock_subpage_300_blocks_subpage_7() {
    with_watchdog("seed e", || {
        let m = mapping();
        populate(&m, 0, PMD_ORDER, 1024);
        let g300 = m.lock_entry_for_page(300).unwrap().unwrap();
        assert_eq!((g300.index(), g300.order()), (0, PMD_ORDER));

        let acquired = Arc::new(AtomicBool::new(false));
        let (m2, acq2) = (m.clone(), acquired.clone());
        let waiter = thread::spawn(move || {
            let g7 = m2.lock_entry_for_page(7).unwrap().expect("entry at 7");
            acq2.store(true, Ordering::SeqCst);
            (g7.index(), g7.order(), g7.size())
        });
        wait_sleepers(&m, 1);
        thread::sleep(Duration::from_millis(100));
        assert!(
            !acquired.load(Ordering::SeqCst),
            "sub-page 7 locked while 300 held"
        );
        assert!(DaxEntry::from_raw(m.index().load(7).unwrap().value).is_locked());
        drop(g300);
        assert_eq!(waiter.join().unwrap(), (0, PMD_ORDER, PMD_SIZE));
        assert!(acquired.load(Ordering::SeqCst));
    });
}

#[test]
fn seed_f_mapping_size_from_entry() {
    with_watchdog("seed f", || {
        let m = mapping();
        populate(&m, 0, PMD_ORDER, 2048);
        populate(&m, 1000, PTE_ORDER, 77);

        let g = m.grab_mapping_entry(3, PTE_ORDER).unwrap();
        assert_eq!((g.size(), g.nr_pages()), (2 << 20, 512));
        drop(g);

        let p = m.lock_entry_for_page(123).unwrap().unwrap();
        assert_eq!((p.index(), p.size(), p.nr_pages()), (0, 2 << 20, 512));
        assert_eq!(dax_entry_size(p.entry().raw()), 2 << 20);
        drop(p);

        let q = m.lock_entry_for_page(1000).unwrap().unwrap();
        assert_eq!((q.index(), q.size(), q.nr_pages()), (1000, 4096, 1));
        assert_eq!(dax_entry_size(q.entry().raw()), 4096);
        drop(q);
        assert!(m.lock_entry_for_page(999).unwrap().is_none());
    });
}

#[test]
fn seed_g_evict_while_sleeping() {
    with_watchdog("seed g", || {
        let old = mapping();
        let inode = old.inode();
        let g = old.grab_mapping_entry(10, PTE_ORDER).unwrap();

        let o2 = old.clone();
        let sleeper = thread::spawn(move || {
            let r = o2.lock_entry_for_page(10).map(|x| x.map(|g| g.index()));
            drop(o2);
            r
        });
        wait_sleepers(&old, 1);

        // The inode id is reused by a new inode (new generation) whose entry at 10 is locked.
        let new = DaxMapping::new(inode, 2, DaxOptions::from_env());
        let mut ng = new.grab_mapping_entry(10, PTE_ORDER).unwrap();
        ng.insert(555, false).unwrap();

        old.evict();
        assert_eq!(sleeper.join().unwrap(), Err(DaxError::Evicted { inode }));
        // The new inode's entry was not touched by the old sleeper.
        assert_eq!(new.index().load(10).unwrap().value, ng.entry().raw());
        drop(ng);
        assert_eq!(
            DaxEntry::from_raw(new.index().load(10).unwrap().value),
            DaxEntry::new(555, 0).unwrap()
        );

        // The old holder can still unlock; new calls on the dead mapping fail.
        drop(g);
        assert!(!DaxEntry::from_raw(old.index().load(10).unwrap().value).is_locked());
        assert_eq!(
            old.grab_mapping_entry(11, PTE_ORDER).err(),
            Some(DaxError::Evicted { inode })
        );
        assert_eq!(old.sleepers(), 0);
    });
}
