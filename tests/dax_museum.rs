//! The DAX bug museum's invariant detectors (docs/DAX-BUGS.md), run directly: each passes with
//! today's protocol and fails with its bug switched on (`DAXFS_DAX_BUGS=<fix id>`); the hang
//! detectors run under loom in `tests/dax_museum_loom.rs`. `scripts/regression-check` runs the
//! catalogue. The `replay_*` tests run every scenario directed with no bug on (whatever the
//! environment says): the fixed protocol must pass the schedule `daxfs bugs replay` takes.
#![cfg(not(loom))]

use daxfs::dax::history::{Detection, CATALOGUE};
use daxfs::dax::museum::{replay, scenario, Failure, Stage, SCENARIOS};
use daxfs::dax::{Bug, Bugs};

fn detect(name: &str) {
    let bugs = Bugs::from_env().expect("DAXFS_DAX_BUGS names catalogued fixes");
    let sc = scenario(name).expect("scenario");
    let stage = Stage::new(bugs, true);
    stage.name_thread("main");
    if let Err(e) = (sc.run)(&stage) {
        for l in stage.log().lines() {
            eprintln!("  {l}");
        }
        panic!("{name} (bugs on: {bugs}): {e}");
    }
}

macro_rules! detectors {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            detect(stringify!($name));
        }
    )*};
}

detectors!(
    bug_fda490d39fc0_page_unlock_keeps_the_pmd_order,
    bug_27359fd6e5f3_page_unlock_restores_the_locked_entry,
    bug_c93db7bb6ef3_page_lock_rechecks_after_sleeping,
    bug_0e40de0338d0_pmd_fault_keeps_pte_entries,
    bug_1571c029a2ff_pte_fault_keeps_pmd_pages_associated,
    bug_6370740e5f8e_pmd_fault_over_a_pte_entry_falls_back,
    bug_6be3e21d25ca_busy_scan_checks_a_locked_entry,
    bug_cee91fa13a8e_busy_scan_checks_an_unmapped_file,
);

#[test]
fn every_invariant_detector_is_here_and_every_bug_has_a_scenario() {
    let here = [
        "bug_fda490d39fc0_page_unlock_keeps_the_pmd_order",
        "bug_27359fd6e5f3_page_unlock_restores_the_locked_entry",
        "bug_c93db7bb6ef3_page_lock_rechecks_after_sleeping",
        "bug_0e40de0338d0_pmd_fault_keeps_pte_entries",
        "bug_1571c029a2ff_pte_fault_keeps_pmd_pages_associated",
        "bug_6370740e5f8e_pmd_fault_over_a_pte_entry_falls_back",
        "bug_6be3e21d25ca_busy_scan_checks_a_locked_entry",
        "bug_cee91fa13a8e_busy_scan_checks_an_unmapped_file",
    ];
    for info in &CATALOGUE {
        assert!(scenario(info.detector).is_some(), "{}", info.id);
        assert_eq!(
            here.contains(&info.detector),
            info.detection == Detection::Invariant,
            "{}: {:?} detectors run {}",
            info.id,
            info.detection,
            if info.detection == Detection::Invariant {
                "here"
            } else {
                "under loom"
            }
        );
    }
}

#[test]
fn replay_every_scenario_passes_with_no_bug() {
    for sc in SCENARIOS {
        let stage = Stage::new(Bugs::NONE, true);
        stage.name_thread("main");
        if let Err(e) = (sc.run)(&stage) {
            panic!("{}: {e}\n{}", sc.detector, stage.log().lines().join("\n"));
        }
    }
}

#[test]
fn replay_of_a_hang_bug_reports_the_hang_with_its_trace() {
    // The directed run of 23c84eb78375 with the bug on: the PMD fault sleeps on key 512.
    let info = Bug::PmdMissedWakeup.info();
    let out = replay(info, Bugs::only(Bug::PmdMissedWakeup), 1);
    let failure = out.failure.expect("the bug must show");
    assert!(matches!(failure, Failure::Hang { .. }), "{failure}");
    let trace = out.trace.join("\n");
    assert!(
        trace.contains("PMD fault B: sleeps on wait-queue key (inode 10, index 512)"),
        "{trace}"
    );
    assert!(
        trace.contains("wake-next on key (inode 10, index 1023): nobody was waiting"),
        "{trace}"
    );
    // And with the fix, the same scenario passes.
    assert!(replay(info, Bugs::NONE, 1).failure.is_none());
}
