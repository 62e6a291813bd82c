//! The preload library and `daxfs exec` on real mounts (`/dev/fuse` and `-o io_uring`): C
//! programs (compiled here with `cc`) run under `daxfs exec` map daxfs files straight from the
//! region: `MAP_SHARED_VALIDATE | MAP_SYNC`, no `READ` request per fault, stores seen by `pread`.

mod common;
mod direct_util;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

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
    map_sync_on("noio_uring");
}

#[test]
fn map_sync_stores_reach_the_region_without_requests_io_uring() {
    require_fuse!();
    assert!(enable_uring(), "FUSE-over-io_uring is not available");
    map_sync_on("io_uring");
}

/// ndctl's `test/dax-poison.c` fsdax scenario, rewritten (`tests/direct_c/dax_poison.c`).
fn dax_poison_on(transport: &str) {
    let r = Region::new("64M");
    let m = r.mount(&opts(transport, "always"));
    let f = create_rw(&m.p("f"));
    f.write_all_at(&pattern(7, 2 * MB2), 0).unwrap();
    f.sync_all().unwrap();
    let prog = program(
        r.dir.path(),
        "dax_poison",
        include_str!("direct_c/dax_poison.c"),
    );
    let o = under_exec(&prog, &[m.p("f").as_os_str(), daxfs_bin().as_os_str()]);
    let out = ok_output("dax-poison under daxfs exec", &o);
    assert!(out.contains("dax-poison: ok"), "{out}");
    drop(f);
    m.unmount();
}

#[test]
fn dax_poison_raises_the_hardware_signal() {
    require_fuse!();
    dax_poison_on("noio_uring");
}

#[test]
fn dax_poison_raises_the_hardware_signal_io_uring() {
    require_fuse!();
    assert!(enable_uring(), "FUSE-over-io_uring is not available");
    dax_poison_on("io_uring");
}

/// Revocation while a process and its forked child map the range
/// (`tests/direct_c/revoke_fork.c`): punch (the freed blocks reused by another file filling the
/// region to ENOSPC are never seen through the old mappings), a store by the child seen by the
/// parent, truncate (SIGBUS BUS_ADRERR past the end) and growth, poison (BUS_MCEERR_AR in both),
/// poison clear (zeros).
fn revoke_fork_on(transport: &str) {
    let r = Region::new("32M");
    let m = r.mount(&opts(transport, "always"));
    let f = create_rw(&m.p("f"));
    f.write_all_at(&vec![0xaa; 2 * MB2], 0).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let prog = program(
        r.dir.path(),
        "revoke_fork",
        include_str!("direct_c/revoke_fork.c"),
    );
    let o = under_exec(
        &prog,
        &[
            m.p("f").as_os_str(),
            m.p("g").as_os_str(),
            daxfs_bin().as_os_str(),
        ],
    );
    let out = ok_output("revoke-fork under daxfs exec", &o);
    assert!(out.contains("revoke-fork: ok"), "{out}");
    m.unmount();
    r.assert_fsck_clean(&format!("after the revocations ({transport:?})"));
}

#[test]
fn revocation_reaches_a_process_and_its_forked_child() {
    require_fuse!();
    revoke_fork_on("noio_uring");
}

#[test]
fn revocation_reaches_a_process_and_its_forked_child_io_uring() {
    require_fuse!();
    assert!(enable_uring(), "FUSE-over-io_uring is not available");
    revoke_fork_on("io_uring");
}

/// Pages that a growth makes valid are mapped before the growing call returns
/// (`tests/direct_c/grow_source.c`, xfstests generic/638's scenario): a `pwritev` whose buffers
/// are a mapping of the same file, made while it was empty, copies them instead of failing with
/// `EFAULT`, through read-write and read-only shared mappings, and a hole reads zeros.
fn grow_source_on(transport: &str) {
    let r = Region::new("32M");
    let m = r.mount(&opts(transport, "always"));
    drop(create_rw(&m.p("f")));
    let prog = program(
        r.dir.path(),
        "grow_source",
        include_str!("direct_c/grow_source.c"),
    );
    let o = under_exec(&prog, &[m.p("f").as_os_str()]);
    let out = ok_output("grow-source under daxfs exec", &o);
    assert!(out.contains("grow-source: ok"), "{transport}: {out}");
    let data = std::fs::read(m.p("f")).unwrap();
    assert_eq!(data.len(), 4 * 4096, "{transport}");
    assert_eq!(
        &data[..12],
        &[0; 12],
        "{transport}: the hole's zeros were written"
    );
    assert_eq!(&data[8192 - 12..8192 + 36], &[0xaa; 48], "{transport}");
    m.unmount();
    r.assert_fsck_clean(&format!("after the growth ({transport:?})"));
}

#[test]
fn pages_a_growth_makes_valid_are_mapped_before_it_returns() {
    require_fuse!();
    grow_source_on("noio_uring");
}

#[test]
fn pages_a_growth_makes_valid_are_mapped_before_it_returns_io_uring() {
    require_fuse!();
    assert!(enable_uring(), "FUSE-over-io_uring is not available");
    grow_source_on("io_uring");
}

#[test]
fn exec_help_errors_and_environment() {
    // The man-page-style help names the security rule and the limits.
    let help = daxfs_ok(["exec", "--help"]);
    for s in [
        "SECURITY",
        "LIMITS",
        "syscall(SYS_mmap)",
        "DAXFS_PRELOAD",
        "EXIT STATUS",
    ] {
        assert!(help.contains(s), "daxfs exec --help lacks {s}:\n{help}");
    }
    // A missing library is a clear error, nothing is run.
    let o = Command::new(daxfs_bin())
        .args(["exec", "--", "true"])
        .env("DAXFS_PRELOAD", "/nonexistent/libdaxfs_preload.so")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("DAXFS_PRELOAD"),
        "{err}"
    );
    // LD_PRELOAD is extended, not replaced; a command that cannot run exits 127.
    let o = Command::new(daxfs_bin())
        .args(["exec", "--", "sh", "-c", "echo $LD_PRELOAD"])
        .env("DAXFS_PRELOAD", preload_lib())
        .env("LD_PRELOAD", "")
        .output()
        .unwrap();
    let out = ok_output("exec sh", &o);
    assert!(out.trim().ends_with("libdaxfs_preload.so"), "{out}");
    let o = Command::new(daxfs_bin())
        .args(["exec", "--", "/nonexistent/program"])
        .env("DAXFS_PRELOAD", preload_lib())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(127));
    // --mount on something that is not a daxfs mount.
    let d = scratch();
    let o = Command::new(daxfs_bin())
        .arg("exec")
        .arg("--mount")
        .arg(d.path())
        .args(["--", "true"])
        .env("DAXFS_PRELOAD", preload_lib())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("not a daxfs mount"),
        "{err}"
    );
}

/// `MAP_PRIVATE` copy on write, partial `munmap`, `MAP_FIXED` over a direct mapping,
/// `mprotect` adding write over a hole, `mremap` growth and move, `MADV_REMOVE`
/// (`tests/direct_c/map_ops.c`).
#[test]
fn private_partial_unmap_mprotect_mremap_madvise() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("dax=always");
    let f = create_rw(&m.p("f"));
    f.write_all_at(&vec![0xaa; 2 * MB2], 0).unwrap();
    f.set_len(3 * MB2 as u64).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let prog = program(r.dir.path(), "map_ops", include_str!("direct_c/map_ops.c"));
    let region = std::fs::canonicalize(&r.path).unwrap();
    let o = under_exec(&prog, &[m.p("f").as_os_str(), region.as_os_str()]);
    let out = ok_output("map-ops under daxfs exec", &o);
    assert!(out.contains("map-ops: ok"), "{out}");
    // Without the library the region is never mapped: step 1 fails (the check can fail).
    let o = Command::new(&prog)
        .args([m.p("f").as_os_str(), region.as_os_str()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    m.unmount();
    r.assert_fsck_clean("after the mapping operations");
}

/// A tmpfs mounted with `huge=always` (the backing whose pages the kernel can map by PMD), on a
/// scratch directory; unmounted (lazily, so a panic never leaves it) when dropped.
struct HugeTmpfs {
    dir: tempfile::TempDir,
}

impl HugeTmpfs {
    fn new() -> HugeTmpfs {
        let dir = scratch();
        let o = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "huge=always,size=256M",
                "daxfs-test-huge",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            o.status.success(),
            "mount -t tmpfs -o huge=always (needs CONFIG_TRANSPARENT_HUGEPAGE): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        HugeTmpfs { dir }
    }

    /// A formatted region of `size` in this tmpfs, with its mount point.
    fn region(&self, size: &str) -> Region {
        let dir = tempfile::tempdir_in(self.dir.path()).unwrap();
        let path = dir.path().join("region");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        daxfs_ok([
            std::ffi::OsStr::new("mkfs"),
            path.as_os_str(),
            "--size".as_ref(),
            size.as_ref(),
        ]);
        Region { dir, path, mnt }
    }
}

impl Drop for HugeTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// One `KEY VALUE` line of `pmd_smaps`'s output.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {key:?} in {out}"))
}

fn kb(out: &str, key: &str) -> u64 {
    field(out, key).parse().unwrap()
}

/// With the region on a `huge=always` tmpfs, the 2 MiB extents of a PMD-mapped file are mapped
/// by the kernel as PMDs (`ShmemPmdMapped` in `/proc/PID/smaps`) at the 2 MiB-aligned address
/// the library reserves; a file too small for a PMD entry is mapped by PTEs; and without the
/// library the same program maps the FUSE file, whose page-cache pages are never PMD-mapped.
fn pmd_smaps_on(transport: &str) {
    let huge = HugeTmpfs::new();
    let r = huge.region("64M");
    let m = r.mount(&opts(transport, "always"));
    let big = create_rw(&m.p("big"));
    big.write_all_at(&pattern(1, 2 * MB2), 0).unwrap();
    big.sync_all().unwrap();
    let small = create_rw(&m.p("small"));
    small.write_all_at(&pattern(2, 256 << 10), 0).unwrap();
    small.sync_all().unwrap();
    let maps = daxfs_ok([
        "stat".as_ref(),
        "--mappings".as_ref(),
        m.p("big").as_os_str(),
    ]);
    let pmds = maps.lines().filter(|l| l.contains(" pmd ")).count();
    assert_eq!(pmds, 2, "the 4 MiB file is not two PMD entries:\n{maps}");

    let prog = program(
        r.dir.path(),
        "pmd_smaps",
        include_str!("direct_c/pmd_smaps.c"),
    );
    let region = std::fs::canonicalize(&r.path).unwrap();
    let len = (2 * MB2).to_string();
    let out = ok_output(
        "pmd_smaps of the PMD file under daxfs exec",
        &under_exec(&prog, &[m.p("big").as_os_str(), len.as_ref()]),
    );
    assert_eq!(field(&out, "path"), region.to_str().unwrap(), "{out}");
    assert_eq!(field(&out, "aligned2m"), "1", "{out}");
    assert_eq!(kb(&out, "rss"), 4096, "{out}");
    assert_eq!(
        kb(&out, "shmem_pmd"),
        4096,
        "the two 2 MiB extents are not PMD-mapped:\n{out}"
    );

    let len = (256 << 10).to_string();
    let out = ok_output(
        "pmd_smaps of the small file under daxfs exec",
        &under_exec(&prog, &[m.p("small").as_os_str(), len.as_ref()]),
    );
    assert_eq!(field(&out, "path"), region.to_str().unwrap(), "{out}");
    assert_eq!(kb(&out, "rss"), 256, "{out}");
    assert_eq!(
        kb(&out, "shmem_pmd"),
        0,
        "a 256 KiB file PMD-mapped?\n{out}"
    );

    let len = (2 * MB2).to_string();
    let o = Command::new(&prog)
        .args([m.p("big").as_os_str(), len.as_ref()])
        .output()
        .unwrap();
    let out = ok_output("pmd_smaps without the library", &o);
    assert_eq!(field(&out, "path"), m.p("big").to_str().unwrap(), "{out}");
    assert_eq!(kb(&out, "shmem_pmd") + kb(&out, "file_pmd"), 0, "{out}");
    drop((big, small));
    m.unmount();
    r.assert_fsck_clean(&format!("after the PMD mappings ({transport:?})"));
}

#[test]
fn pmd_extents_are_pmd_mapped_on_a_huge_tmpfs() {
    require_fuse!();
    pmd_smaps_on("noio_uring");
}

#[test]
fn pmd_extents_are_pmd_mapped_on_a_huge_tmpfs_io_uring() {
    require_fuse!();
    assert!(enable_uring(), "FUSE-over-io_uring is not available");
    pmd_smaps_on("io_uring");
}

/// A store through a writable shared direct mapping moves mtime and ctime, and a `stat` right
/// after sees it (xfstests generic/080 and 215 under `daxfs exec`): the daemon updates the times
/// when the mapping is made and drops the kernel's cached attributes before it answers.
fn mapped_write_times_on(transport: &str) {
    let r = Region::new("64M");
    let m = r.mount(&opts(transport, "always"));
    std::fs::write(m.p("f"), vec![0u8; 4096]).unwrap();
    let before = std::fs::metadata(m.p("f")).unwrap();
    // The clock must move past the creation's nanosecond (no timing assumption beyond that).
    let t0 = before.modified().unwrap();
    wait_until(
        "the clock to pass the file's mtime",
        Duration::from_millis(1),
        || std::time::SystemTime::now() > t0,
    );
    let o = Command::new(daxfs_bin())
        .args([
            "exec",
            "--",
            "xfs_io",
            "-c",
            "mmap 0 4k",
            "-c",
            "mwrite -S 0x61 0 4k",
        ])
        .arg(m.p("f"))
        .env("DAXFS_PRELOAD", preload_lib())
        .output()
        .expect("run xfs_io under daxfs exec");
    ok_output("xfs_io mwrite under daxfs exec", &o);
    let after = std::fs::metadata(m.p("f")).unwrap();
    assert!(
        after.modified().unwrap() > t0,
        "{transport}: mtime {after:?}"
    );
    assert!(
        std::os::unix::fs::MetadataExt::ctime_nsec(&after)
            != std::os::unix::fs::MetadataExt::ctime_nsec(&before)
            || std::os::unix::fs::MetadataExt::ctime(&after)
                != std::os::unix::fs::MetadataExt::ctime(&before),
        "{transport}: ctime"
    );
    assert_eq!(std::fs::read(m.p("f")).unwrap()[100], 0x61, "{transport}");
    m.unmount();
}

#[test]
fn mapped_writes_move_mtime_and_ctime_at_once() {
    require_fuse!();
    mapped_write_times_on("noio_uring");
    if enable_uring() {
        mapped_write_times_on("io_uring");
    }
}
