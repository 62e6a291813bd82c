//! `daxfs bugs`: the catalogue from the installed binary, and a replay that shows a hang bug's
//! trace with the bug on and passes with the fix (docs/DAX-BUGS.md). No FUSE needed.
#![cfg(not(loom))]

use std::process::Command;

mod common;

fn daxfs() -> Command {
    Command::new(common::daxfs_bin())
}

#[test]
fn bugs_list_json_has_the_whole_catalogue() {
    let out = daxfs().args(["bugs", "list", "--json"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bugs = v.as_array().unwrap();
    assert_eq!(bugs.len(), daxfs::dax::Bug::ALL.len());
    for b in bugs {
        for field in [
            "id",
            "subject",
            "fixed_in",
            "symptom",
            "detector",
            "detection",
        ] {
            assert!(b[field].is_string(), "{field} missing in {b}");
        }
    }
    assert!(bugs.iter().any(|b| b["id"] == "23c84eb78375"
        && b["subject"] == "dax: Fix missed wakeup with PMD faults"
        && b["fixed_in"] == "v5.3-rc1"));
    let text = daxfs().args(["bugs", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout)
        .contains("965d004af540  dax: fix deadlock with DAX 4k holes"));
}

#[test]
fn bugs_replay_shows_the_lost_wakeup_and_the_fix() {
    let out = daxfs()
        .args(["bugs", "replay", "61c30c98"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{s}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        s.contains("== with the bug") && s.contains("== with the fix"),
        "{s}"
    );
    assert!(s.contains("fault C hangs"), "{s}");
    assert!(s.contains("invalidate B: sleeps on wait-queue key"), "{s}");
    assert!(s.contains("=> passes"), "{s}");
}

#[test]
fn bugs_replay_refuses_an_unknown_id() {
    let out = daxfs()
        .args(["bugs", "replay", "0123456789ab"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("'0123456789ab' is not a fix in the catalogue"),
        "{e}"
    );
}
