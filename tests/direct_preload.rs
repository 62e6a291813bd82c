//! The preload library and `daxfs exec` on real mounts (`/dev/fuse` and `-o io_uring`): C
//! programs (compiled here with `cc`) run under `daxfs exec` map daxfs files straight from the
//! region: `MAP_SHARED_VALIDATE | MAP_SYNC`, no `READ` request per fault, stores seen by `pread`.

mod common;
mod direct_util;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use direct_util::*;

const MB2: usize = 2 << 20;

/// Compiles `tests/direct_c/NAME.c` into `dir`.
fn program(dir: &Path, name: &str, src: &str) -> PathBuf {
    let out = dir.join(name);
    compile_c(src, &out, &[]);
    out
}

/// Runs `prog ARGS` under `daxfs exec` (the library built for this test run).
fn under_exec(prog: &Path, args: &[&std::ffi::OsStr]) -> Output {
    Command::new(daxfs_bin())
        .arg("exec")
        .arg("--")
        .arg(prog)
        .args(args)
        .env("DAXFS_PRELOAD", preload_lib())
        .output()
        .expect("run daxfs exec")
}

fn ok_output(what: &str, o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{what}: {:?}\nstdout: {out}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn map_sync_on(transport: &str) {
    let r = Region::new("64M");
    let m = r.mount(&opts(transport, "always"));
    let f = create_rw(&m.p("f"));
    f.write_all_at(&vec![0u8; 2 * MB2], 0).unwrap();
    f.sync_all().unwrap();
    let prog = program(
        r.dir.path(),
        "map_sync",
        include_str!("direct_c/map_sync.c"),
    );
    let region = std::fs::canonicalize(&r.path).unwrap();
    let reads = |m: &MountGuard| request_counters(m).get("READ").copied().unwrap_or(0);

    let before = reads(&m);
    let o = under_exec(
        &prog,
        &[m.p("f").as_os_str(), region.as_os_str(), "sync".as_ref()],
    );
    let out = ok_output("MAP_SYNC under daxfs exec", &o);
    assert!(
        out.contains("mapped-region yes"),
        "the region is not mapped: {out}"
    );
    assert_eq!(
        reads(&m),
        before,
        "faults through the direct mapping sent READ requests"
    );
    let mut got = vec![0u8; 2 * MB2];
    f.read_exact_at(&mut got, 0).unwrap();
    for i in (0..2 * MB2).step_by(512) {
        assert_eq!(got[i], (i / 512 * 7 + 1) as u8, "pread differs at {i}");
    }

    // Without the library the same program gets the FUSE mmap: MAP_SYNC is refused, and the
    // plain shared mapping faults its pages in by READ requests (the counter does count).
    let o = Command::new(&prog)
        .args([m.p("f").as_os_str(), region.as_os_str(), "sync".as_ref()])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "MAP_SYNC without the library must fail"
    );
    let before = reads(&m);
    let o = Command::new(&prog)
        .args([m.p("f").as_os_str(), region.as_os_str(), "plain".as_ref()])
        .output()
        .unwrap();
    let out = ok_output("plain mmap without the library", &o);
    assert!(out.contains("mapped-region no"), "{out}");
    assert!(
        reads(&m) > before,
        "the FUSE mmap faulted in without READ requests?"
    );
    drop(f);
    m.unmount();
    r.assert_fsck_clean(&format!("after MAP_SYNC ({transport:?})"));
}

#[test]
fn map_sync_stores_reach_the_region_without_requests() {
    require_fuse!();
    map_sync_on("");
}

#[test]
fn map_sync_stores_reach_the_region_without_requests_io_uring() {
    require_fuse!();
    assert!(enable_uring(), "FUSE-over-io_uring is not available");
    map_sync_on("io_uring");
}
