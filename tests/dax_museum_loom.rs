//! The DAX bug museum's hang and lifetime detectors under the loom model checker
//! (docs/DAX-BUGS.md): loom explores the interleavings of each scenario; with the bug switched on
//! (`DAXFS_DAX_BUGS=<fix id>`) it finds a schedule that deadlocks (a lost wake-up leaves every
//! thread asleep) or uses a freed mapping, and the test prints that schedule's trace.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --test
//! dax_museum_loom` (`LOOM_MAX_PREEMPTIONS` overrides the bound, 3).
#![cfg(loom)]

use daxfs::dax::museum::{current_trace, scenario, stages_made, Stage};
use std::time::Instant;

use daxfs::dax::Bugs;

const PREEMPTIONS: usize = 3;

std::thread_local! {
    /// The detector this test thread explores: (name, bugs, stages made before it started).
    static EXPLORING: std::cell::RefCell<Option<(&'static str, Bugs, usize, Instant)>> =
        const { std::cell::RefCell::new(None) };
}

/// One panic hook for all tests: a panic with a message (loom's deadlock report, a detector's
/// failure) prints the failing schedule's trace first. Loom's own unwinding of finished threads
/// carries no message and prints nothing.
fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned());
            let Some(_) = msg else { return };
            // Once per test: a deadlock report is followed by panics of loom's cleanup.
            if let Some((name, bugs, first, started)) = EXPLORING.with(|e| e.borrow_mut().take()) {
                eprintln!(
                    "---- {name}: the failing schedule (bugs on: {bugs}), found after {} \
                     schedules in {:?} ----",
                    stages_made() - first,
                    started.elapsed()
                );
                for l in current_trace() {
                    eprintln!("  {l}");
                }
            }
            default_hook(info);
        }));
    });
}

fn explore(name: &'static str) {
    let bugs = Bugs::from_env().expect("DAXFS_DAX_BUGS names catalogued fixes");
    install_hook();
    let first = stages_made();
    let started = Instant::now();
    EXPLORING.with(|e| *e.borrow_mut() = Some((name, bugs, first, started)));
    let sc = scenario(name).expect("scenario");
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(PREEMPTIONS);
    }
    b.max_branches = b.max_branches.max(1 << 20);
    b.check(move || {
        let stage = Stage::new(bugs, false);
        stage.name_thread("main");
        if let Err(e) = (sc.run)(&stage) {
            panic!("{name}: {e}");
        }
    });
    eprintln!(
        "{name}: all {} schedules pass ({:?})",
        stages_made() - first,
        started.elapsed()
    );
}

macro_rules! detectors {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            explore(stringify!($name));
        }
    )*};
}

detectors!(
    bug_965d004af540_zero_page_wakes_all_hole_readers,
    bug_f52afc93cd01_page_lock_retry_drops_the_index_lock,
    bug_25bbe21bf427_page_lock_passes_the_wakeup_on,
    bug_55e56f06ed71_woken_page_lock_never_touches_a_freed_mapping,
    bug_23c84eb78375_pmd_fault_never_waits_for_a_pte_entry,
    bug_61c30c98ef17_put_unlocked_entry_wakes_the_next_waiter,
    bug_237388320def_erase_wakes_every_invalidation,
    bug_f4f451a16dd1_unpinning_wakes_break_layouts,
);
