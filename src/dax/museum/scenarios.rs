//! The detector scenarios, one per catalogued bug (two bugs share one where the later fix
//! restored the earlier bug's symptom). Each returns `Err` naming what went wrong; a hang shows
//! as a model-checker deadlock or, directed, as a join that makes no progress.

use super::{Failure, Scenario, Stage};
use crate::dax::entry::{DaxEntry, PMD_ORDER, PTE_ORDER};
use crate::dax::mapping::{HoleFault, Lookup};
use crate::dax::{DaxError, DaxMapping};
use crate::index::Mark;

fn dax(e: DaxError) -> Failure {
    Failure::Protocol(e)
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failure> {
    if ok {
        Ok(())
    } else {
        Err(Failure::Violated(what()))
    }
}

/// A mapped PTE entry at `index` (not through the fault path: the scenarios must not depend on
/// the fault path's bugs to set up).
fn mapped(m: &DaxMapping, index: u64, order: u8, block: u64) -> Result<(), Failure> {
    m.dax_load_entry(index, order, block).map_err(dax)
}

/// 965d004af540: three faults on one hole; the zero page must reach all of them.
fn zero_page_wakes_all_hole_readers(st: &Stage) -> Result<(), Failure> {
    let m = st.mapping(1);
    st.name_thread("fault A");
    let mut g = m.grab_mapping_entry(5, PTE_ORDER).map_err(dax)?;
    let readers: Vec<_> = ["read fault B", "read fault C"]
        .into_iter()
        .map(|name| {
            let m = m.clone();
            st.spawn(name, move || m.dax_load_hole(5))
        })
        .collect();
    st.until("B and C sleep on the hole", || m.sleepers() >= 2);
    st.note("maps the zero page into the hole and unlocks");
    g.insert_zero().map_err(dax)?;
    g.unlock().map_err(dax)?;
    for r in readers {
        let got = st.join(r)?.map_err(dax)?;
        check(got == HoleFault::ZeroPage, || {
            format!("read fault got {got:?}")
        })?;
    }
    Ok(())
}

/// f52afc93cd01: the page lock sleeps, the entry goes away; it must come back, not deadlock.
fn page_lock_retry_drops_the_index_lock(st: &Stage) -> Result<(), Failure> {
    let m = st.mapping(2);
    mapped(&m, 5, PTE_ORDER, 77)?;
    st.name_thread("truncate A");
    let g = m.lock_entry(5).map_err(dax)?.ok_or("no entry at 5")?;
    let m2 = m.clone();
    let mf = st.spawn("memory failure", move || {
        m2.dax_lock_page(5, Some(77)).map(|g| g.is_some())
    });
    st.until("memory failure sleeps", || m.sleepers() >= 1);
    g.delete().map_err(dax)?;
    // Only completion is checked: other bugs of this path change what it returns.
    st.join(mf)?.map_err(dax)?;
    Ok(())
}

/// fda490d39fc0: lock and unlock the head page of a PMD entry; it must stay a PMD entry.
fn page_unlock_keeps_the_pmd_order(st: &Stage) -> Result<(), Failure> {
    let m = st.mapping(3);
    mapped(&m, 512, PMD_ORDER, 1024)?;
    let p = m.lock_entry_for_page(512).map_err(dax)?.ok_or("no entry")?;
    drop(p);
    let e = m.index().load(512).ok_or("entry gone")?;
    let v = DaxEntry::from_raw(e.value);
    check(e.order == PMD_ORDER && v.is_pmd() && !v.is_locked(), || {
        format!(
            "after the page unlock the entry of order {} holds {v:?}",
            e.order
        )
    })
}

/// 27359fd6e5f3: lock a tail page of a PMD entry; the unlock must restore the entry locked.
fn page_unlock_restores_the_locked_entry(st: &Stage) -> Result<(), Failure> {
    let m = st.mapping(4);
    mapped(&m, 512, PMD_ORDER, 1024)?;
    let p = m.lock_entry_for_page(700).map_err(dax)?.ok_or("no entry")?;
    drop(p);
    let e = m.index().load(700).ok_or("entry gone")?;
    let v = DaxEntry::from_raw(e.value);
    check(v.block() == 1024, || {
        format!(
            "the PMD entry at 512 maps block {} after the unlock, not 1024",
            v.block()
        )
    })
}

/// 25bbe21bf427: the page lock and a fault sleep on one entry, which moves; both must wake.
fn page_lock_passes_the_wakeup_on(st: &Stage) -> Result<(), Failure> {
    let m = st.mapping(5);
    mapped(&m, 5, PTE_ORDER, 77)?;
    st.name_thread("fault A");
    let mut g = m.lock_entry(5).map_err(dax)?.ok_or("no entry")?;
    let m2 = m.clone();
    let mf = st.spawn("memory failure", move || {
        m2.dax_lock_page(5, Some(77)).map(|g| g.is_some())
    });
    st.until("memory failure sleeps", || m.sleepers() >= 1);
    let m3 = m.clone();
    let c = st.spawn("fault C", move || m3.lock_entry(5).map(|g| g.is_some()));
    st.until("fault C sleeps", || m.sleepers() >= 2);
    st.note("moves page 5 to block 78 and unlocks");
    g.insert(78, false).map_err(dax)?;
    g.unlock().map_err(dax)?;
    st.join(mf)?.map_err(dax)?;
    let got = st.join(c)?.map_err(dax)?;
    check(got, || "fault C found no entry".to_string())
}

/// c93db7bb6ef3: the page lock sleeps, the page is truncated; it must find nothing (seed b).
fn page_lock_rechecks_after_sleeping(st: &Stage) -> Result<(), Failure> {
    let m = st.mapping(6);
    st.name_thread("truncate A");
    let mut g = m.grab_mapping_entry(5, PTE_ORDER).map_err(dax)?;
    g.insert(77, false).map_err(dax)?;
    let m2 = m.clone();
    let mf = st.spawn("memory failure", move || {
        m2.lock_entry_for_page(5)
            .map(|g| g.map(|g| (g.index(), g.entry().block())))
    });
    st.until("memory failure sleeps", || m.sleepers() >= 1);
    g.delete().map_err(dax)?;
    let got = st.join(mf)?.map_err(dax)?;
    check(got.is_none(), || {
        format!("the page lock locked {got:?} after truncate")
    })?;
    check(m.index().load(5).is_none(), || {
        "the truncated entry at 5 is back in the index".to_string()
    })
}

/// 55e56f06ed71: the page lock sleeps; the inode is truncated, evicted and freed.
fn woken_page_lock_never_touches_a_freed_mapping(st: &Stage) -> Result<(), Failure> {
    let m = st.mapping(7);
    st.name_thread("evict A");
    let mut g = m.grab_mapping_entry(5, PTE_ORDER).map_err(dax)?;
    g.insert(77, false).map_err(dax)?;
    let m2 = m.clone();
    let mf = st.spawn("memory failure", move || {
        m2.lock_entry_for_page(5).map(|g| g.is_some())
    });
    st.until("memory failure sleeps", || m.sleepers() >= 1);
    g.delete().map_err(dax)?;
    st.note("evicts and frees the inode");
    m.destroy();
    match st.join(mf)? {
        Err(e @ DaxError::UseAfterFree { .. }) => {
            Err(Failure::Violated(format!("memory failure: {e}")))
        }
        _ => Ok(()),
    }
}

/// 0e40de0338d0: a PMD fault over a PTE entry at 1023 (beyond the first node) keeps it
/// (seed a).
fn pmd_fault_keeps_pte_entries(st: &Stage) -> Result<(), Failure> {
    let m = st.mapping(8);
    mapped(&m, 1023, PTE_ORDER, 4000)?;
    let g = m.grab_mapping_entry(512, PMD_ORDER).map_err(dax)?;
    let got = (g.index(), g.order());
    drop(g);
    let pte = m.index().load(1023);
    let kept = pte.is_some_and(|e| {
        e.index == 1023 && e.order == PTE_ORDER && DaxEntry::from_raw(e.value).block() == 4000
    });
    check(kept, || {
        format!("the PTE entry at 1023 became {pte:?} (the PMD fault got {got:?})")
    })
}

/// 1571c029a2ff: a PTE fault inside a mapped PMD entry; every page keeps its owner.
fn pte_fault_keeps_pmd_pages_associated(st: &Stage) -> Result<(), Failure> {
    let m = st.mapping(9);
    mapped(&m, 0, PMD_ORDER, 512)?;
    let mut g = m.grab_mapping_entry(300, PTE_ORDER).map_err(dax)?;
    g.dax_insert_entry(300, PTE_ORDER, 812, true).map_err(dax)?;
    drop(g);
    let lost: Vec<u64> = (0..512u64)
        .filter(|i| {
            st.pages()
                .owner(512 + i)
                .is_none_or(|o| o.inode != 9 || o.index != *i)
        })
        .collect();
    check(lost.is_empty(), || {
        format!(
            "{} of the PMD entry's 512 pages lost their (mapping, index): memory failure on \
             block {} finds no owner",
            lost.len(),
            512 + lost[0]
        )
    })
}

/// 23c84eb78375: a PMD fault at 512 while the PTE entry at 1023 is locked.
fn pmd_fault_never_waits_for_a_pte_entry(st: &Stage) -> Result<(), Failure> {
    let m = st.mapping(10);
    mapped(&m, 1023, PTE_ORDER, 4000)?;
    st.name_thread("fault A");
    let g = m.lock_entry(1023).map_err(dax)?.ok_or("no entry")?;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (m2, d2) = (m.clone(), done.clone());
    let b = st.spawn("PMD fault B", move || {
        let r = m2
            .grab_mapping_entry(512, PMD_ORDER)
            .map(|g| (g.index(), g.order()));
        d2.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    });
    st.until("the PMD fault sleeps or falls back", || {
        m.sleepers() >= 1 || done.load(std::sync::atomic::Ordering::SeqCst)
    });
    drop(g);
    st.join(b)?.map_err(dax)?;
    Ok(())
}

/// 61c30c98ef17: an invalidation that keeps a dirty entry must pass its wake-up on.
fn put_unlocked_entry_wakes_the_next_waiter(st: &Stage) -> Result<(), Failure> {
    let m = st.mapping(11);
    st.name_thread("fault A");
    let mut g = m.grab_mapping_entry(5, PTE_ORDER).map_err(dax)?;
    g.insert(77, true).map_err(dax)?;
    let m2 = m.clone();
    let b = st.spawn("invalidate B", move || m2.dax_invalidate_mapping_entry(5));
    st.until("B sleeps", || m.sleepers() >= 1);
    let m3 = m.clone();
    let c = st.spawn("fault C", move || m3.lock_entry(5).map(|g| g.is_some()));
    st.until("C sleeps", || m.sleepers() >= 2);
    g.unlock().map_err(dax)?;
    let kept = st.join(b)?.map_err(dax)?;
    check(!kept, || "the dirty entry was invalidated".to_string())?;
    let got = st.join(c)?.map_err(dax)?;
    check(got, || "fault C found no entry".to_string())?;
    check(m.index().get_mark(5, Mark::Dirty), || {
        "dirty mark lost".to_string()
    })
}

/// 6370740e5f8e: a PMD fault at 512 over an unlocked PTE entry at 515 falls back to a PTE
/// entry of its own; a PMD fault on a hole gets a PMD entry.
fn pmd_fault_over_a_pte_entry_falls_back(st: &Stage) -> Result<(), Failure> {
    let m = st.mapping(12);
    mapped(&m, 515, PTE_ORDER, 4000)?;
    let found = m.get_unlocked_entry(512, PMD_ORDER).map_err(dax)?;
    let g = m.grab_mapping_entry(512, PMD_ORDER).map_err(dax)?;
    let got = (g.index(), g.order());
    drop(g);
    check(
        matches!(found, Lookup::Conflict(_)) && got == (512, PTE_ORDER),
        || {
            format!(
                "a PMD fault at 512 over the PTE entry at 515 saw {found:?} and got entry {got:?} \
             (it must fall back to a PTE entry of its own)"
            )
        },
    )?;
    let g = m.grab_mapping_entry(1100, PMD_ORDER).map_err(dax)?;
    let hole = (g.index(), g.order());
    drop(g);
    check(hole == (1024, PMD_ORDER), || {
        format!("a PMD fault on a hole got {hole:?}")
    })
}

/// 237388320def: two invalidations sleep on an entry that is erased; both must wake.
fn erase_wakes_every_invalidation(st: &Stage) -> Result<(), Failure> {
    let m = st.mapping(13);
    mapped(&m, 5, PTE_ORDER, 77)?;
    st.name_thread("truncate A");
    let g = m.lock_entry(5).map_err(dax)?.ok_or("no entry")?;
    let inval: Vec<_> = ["invalidate B", "invalidate C"]
        .into_iter()
        .map(|name| {
            let m = m.clone();
            st.spawn(name, move || m.dax_invalidate_mapping_entry(5))
        })
        .collect();
    st.until("B and C sleep", || m.sleepers() >= 2);
    g.delete().map_err(dax)?;
    for t in inval {
        st.join(t)?.map_err(dax)?;
    }
    Ok(())
}

/// f4f451a16dd1: break-layouts waits for a page pinned twice; unpinning both must wake it.
fn unpinning_wakes_break_layouts(st: &Stage) -> Result<(), Failure> {
    let m = st.mapping(14);
    mapped(&m, 5, PTE_ORDER, 77)?;
    m.dax_mmap();
    st.name_thread("DMA");
    st.pages().pin(77, 2);
    let m2 = m.clone();
    let t = st.spawn("truncate (break layouts)", move || {
        m2.dax_break_layouts(0, 16)
    });
    st.until("truncate waits for the pins", || {
        st.pages().idle_waiters() >= 1
    });
    st.note("DMA done: unpins both references at once");
    st.pages().unpin(77, 2);
    st.join(t)?.map_err(dax)?;
    Ok(())
}

/// 6be3e21d25ca, dd59137bfe70: the busy scan meets a locked, pinned entry; it must report it.
fn busy_scan_checks_a_locked_entry(st: &Stage) -> Result<(), Failure> {
    let m = st.mapping(15);
    mapped(&m, 5, PTE_ORDER, 77)?;
    mapped(&m, 9, PTE_ORDER, 81)?;
    m.dax_mmap();
    st.pages().pin(77, 1);
    st.name_thread("fault A");
    let g = m.lock_entry(5).map_err(dax)?.ok_or("no entry")?;
    let m2 = m.clone();
    let s = st.spawn("busy scan", move || m2.dax_layout_busy_page_range(0, 16));
    st.until("the scan sleeps on entry 5", || m.sleepers() >= 1);
    drop(g);
    let busy = st.join(s)?.map_err(dax)?;
    check(busy == Some(77), || {
        format!("the scan reported {busy:?}, but block 77 (entry 5) is pinned for DMA")
    })
}

/// cee91fa13a8e: a pinned page of a file nobody maps is still busy.
fn busy_scan_checks_an_unmapped_file(st: &Stage) -> Result<(), Failure> {
    let m = st.mapping(16);
    mapped(&m, 5, PTE_ORDER, 77)?;
    st.pages().pin(77, 1);
    let busy = m.dax_layout_busy_page_range(0, 16).map_err(dax)?;
    check(busy == Some(77), || {
        format!("the scan of an unmapped file reported {busy:?}, but block 77 is pinned")
    })
}

/// Every scenario, by detector name.
pub static SCENARIOS: &[Scenario] = &[
    Scenario {
        detector: "bug_965d004af540_zero_page_wakes_all_hole_readers",
        run: zero_page_wakes_all_hole_readers,
    },
    Scenario {
        detector: "bug_f52afc93cd01_page_lock_retry_drops_the_index_lock",
        run: page_lock_retry_drops_the_index_lock,
    },
    Scenario {
        detector: "bug_fda490d39fc0_page_unlock_keeps_the_pmd_order",
        run: page_unlock_keeps_the_pmd_order,
    },
    Scenario {
        detector: "bug_27359fd6e5f3_page_unlock_restores_the_locked_entry",
        run: page_unlock_restores_the_locked_entry,
    },
    Scenario {
        detector: "bug_25bbe21bf427_page_lock_passes_the_wakeup_on",
        run: page_lock_passes_the_wakeup_on,
    },
    Scenario {
        detector: "bug_c93db7bb6ef3_page_lock_rechecks_after_sleeping",
        run: page_lock_rechecks_after_sleeping,
    },
    Scenario {
        detector: "bug_55e56f06ed71_woken_page_lock_never_touches_a_freed_mapping",
        run: woken_page_lock_never_touches_a_freed_mapping,
    },
    Scenario {
        detector: "bug_0e40de0338d0_pmd_fault_keeps_pte_entries",
        run: pmd_fault_keeps_pte_entries,
    },
    Scenario {
        detector: "bug_1571c029a2ff_pte_fault_keeps_pmd_pages_associated",
        run: pte_fault_keeps_pmd_pages_associated,
    },
    Scenario {
        detector: "bug_23c84eb78375_pmd_fault_never_waits_for_a_pte_entry",
        run: pmd_fault_never_waits_for_a_pte_entry,
    },
    Scenario {
        detector: "bug_61c30c98ef17_put_unlocked_entry_wakes_the_next_waiter",
        run: put_unlocked_entry_wakes_the_next_waiter,
    },
    Scenario {
        detector: "bug_6370740e5f8e_pmd_fault_over_a_pte_entry_falls_back",
        run: pmd_fault_over_a_pte_entry_falls_back,
    },
    Scenario {
        detector: "bug_237388320def_erase_wakes_every_invalidation",
        run: erase_wakes_every_invalidation,
    },
    Scenario {
        detector: "bug_f4f451a16dd1_unpinning_wakes_break_layouts",
        run: unpinning_wakes_break_layouts,
    },
    Scenario {
        detector: "bug_6be3e21d25ca_busy_scan_checks_a_locked_entry",
        run: busy_scan_checks_a_locked_entry,
    },
    Scenario {
        detector: "bug_cee91fa13a8e_busy_scan_checks_an_unmapped_file",
        run: busy_scan_checks_an_unmapped_file,
    },
];
