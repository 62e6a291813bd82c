//! Shared helpers of the FUSE integration tests: the `daxfs` binary, regions in a tempdir, and a
//! mount guard that unmounts (and kills its daemon) on drop, also when the test panics.
//!
//! Rules kept: a test that needs FUSE fails loudly when `/dev/fuse` is missing and `CI=true`
//! (it is skipped with a message only outside CI); every mount is undone by its guard.

#![allow(dead_code)]

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use daxfs::fuse::mounts;

/// Turns FUSE-over-io_uring on; false (skip) when the kernel has none, which fails in CI.
pub fn enable_uring() -> bool {
    const PARAM: &str = "/sys/module/fuse/parameters/enable_uring";
    if !Path::new(PARAM).exists() {
        let why = format!("{PARAM} is missing (kernel without CONFIG_FUSE_IO_URING)");
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("FUSE-over-io_uring tests cannot run in CI: {why}");
        }
        eprintln!("SKIPPED: {why}");
        return false;
    }
    std::fs::write(PARAM, "1").expect("write enable_uring");
    true
}

/// The mount options a behaviour is checked under: each `dax=` mode through `/dev/fuse`
/// (`noio_uring`: the default `io_uring=auto` would take the rings), and `io_uring` when
/// [`enable_uring`] could turn the rings on (it fails in CI when it cannot).
pub fn option_sets() -> Vec<&'static str> {
    let mut v = vec![
        "dax=always,noio_uring",
        "dax=never,noio_uring",
        "dax=inode,noio_uring",
    ];
    if enable_uring() {
        v.push("io_uring");
    }
    v
}

/// Whether FUSE tests can run here. Panics when they cannot and `CI=true`.
pub fn fuse_available() -> bool {
    let ok = Path::new("/dev/fuse").exists() && nix::unistd::geteuid().is_root();
    if !ok {
        let why = if Path::new("/dev/fuse").exists() {
            "these tests mount FUSE as root and are not root"
        } else {
            "/dev/fuse is missing (modprobe fuse)"
        };
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("FUSE tests cannot run in CI: {why}");
        }
        eprintln!("SKIPPED: {why}");
    }
    ok
}

/// Skips the calling test (outside CI) when FUSE is unavailable.
#[macro_export]
macro_rules! require_fuse {
    () => {
        if !$crate::common::fuse_available() {
            return;
        }
    };
}

/// How long a test waits for something that depends on scheduling (a daemon exiting, a watchdog
/// reacting, an asynchronous FORGET): generous, so that a test holds on a busy machine.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `cond` every `every` until it holds; panics naming `what` after [`DEADLINE`].
/// Return: how long it took.
#[track_caller]
pub fn wait_until(what: &str, every: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < DEADLINE, "{what}: not after {DEADLINE:?}");
        std::thread::sleep(every);
    }
    t.elapsed()
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `daxfs` binary beside this test executable (`target/<profile>/daxfs`), built once per test
/// run with `cargo build --profile test -p daxfs-cli` (`--release` for `cargo test --release`),
/// the profile the tests themselves were built with, so it is never stale and shares their build
/// of the dependencies.
pub fn daxfs_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test>-<hash>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable in target/<profile>/deps");
        let bin = profile_dir.join("daxfs");
        if std::env::var_os("DAXFS_NO_BUILD").is_none() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let target_dir = profile_dir.parent().expect("target dir");
            let mut build = Command::new(cargo);
            build.args(["build", "-q", "-p", "daxfs-cli"]);
            // `cargo test --release` runs from target/release: build that profile's binary;
            // `cargo test` from target/debug, with the test profile.
            if profile_dir.file_name() == Some(OsStr::new("release")) {
                build.arg("--release");
            } else {
                build.args(["--profile", "test"]);
            }
            let st = build
                .arg("--manifest-path")
                .arg(workspace().join("Cargo.toml"))
                .env("CARGO_TARGET_DIR", target_dir)
                .status()
                .expect("run cargo build -p daxfs-cli");
            assert!(st.success(), "cargo build -p daxfs-cli failed");
        }
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build -p daxfs-cli` first",
            bin.display()
        );
        bin
    })
}

/// Runs `daxfs ARGS`.
pub fn daxfs<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(daxfs_bin())
        .args(args)
        .output()
        .expect("run daxfs")
}

/// Runs `daxfs ARGS` and panics with its output unless it succeeds. Return: stdout.
pub fn daxfs_ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<_> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    let out = daxfs(&args);
    assert!(
        out.status.success(),
        "daxfs {:?} failed ({}):\nstdout: {}\nstderr: {}",
        args,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The embedded-API region helper (also usable alone as `mod embedded;`).
#[path = "../embedded/mod.rs"]
pub mod embedded;

/// A scratch directory (in /dev/shm when possible, for speed).
pub use embedded::scratch_dir as scratch;

/// A formatted region file with a mount point beside it.
pub struct Region {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub mnt: PathBuf,
}

impl Region {
    /// Creates and formats a region of `size` (`"64M"`).
    pub fn new(size: &str) -> Region {
        let dir = scratch();
        let path = dir.path().join("region");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        daxfs_ok([
            OsStr::new("mkfs"),
            path.as_os_str(),
            OsStr::new("--size"),
            OsStr::new(size),
        ]);
        Region { dir, path, mnt }
    }

    /// Mounts the region on its mount point with `opts` (`""` for defaults).
    pub fn mount(&self, opts: &str) -> MountGuard {
        MountGuard::mount(&self.path, &self.mnt, opts)
    }

    /// Runs `daxfs fsck` on the (unmounted) region and asserts it is clean; `when` names the
    /// moment in the failure message.
    pub fn assert_fsck_clean(&self, when: &str) {
        let out = daxfs([OsStr::new("fsck"), self.path.as_os_str()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("clean"),
            "fsck {when}:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Creates (or truncates) `p` and opens it for reading and writing.
pub fn create_rw(p: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(p)
        .unwrap_or_else(|e| panic!("create {}: {e}", p.display()))
}

/// A mounted daxfs; unmounts (and kills its daemon if it hangs) on drop.
pub struct MountGuard {
    pub mnt: PathBuf,
    pub region: PathBuf,
    pub pid: u32,
    done: bool,
}

impl MountGuard {
    /// `daxfs mount REGION MNT -o OPTS` (background daemon); panics if it fails.
    pub fn mount(region: &Path, mnt: &Path, opts: &str) -> MountGuard {
        let mut args = vec![
            "mount".as_ref(),
            region.as_os_str(),
            mnt.as_os_str(),
            "--threads".as_ref(),
            "2".as_ref(),
        ];
        if !opts.is_empty() {
            args.push("-o".as_ref());
            args.push(opts.as_ref());
        }
        daxfs_ok(&args);
        Self::adopt(region, mnt)
    }

    /// Takes charge of a mount made by other means (mount(8), the CLI).
    pub fn adopt(region: &Path, mnt: &Path) -> MountGuard {
        let canon = mounts::resolve_mountpoint(mnt);
        let rec = mounts::lookup(&canon).expect("daemon registered for the mount");
        MountGuard {
            mnt: canon,
            region: region.to_path_buf(),
            pid: rec.pid,
            done: false,
        }
    }

    /// Path inside the mount.
    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Unmounts through `daxfs umount` (asserting it succeeds and the daemon exits).
    pub fn unmount(mut self) {
        self.done = true;
        daxfs_ok(["umount".as_ref(), self.mnt.as_os_str()]);
        assert!(
            !mounts::daemon_alive(self.pid),
            "daemon {} still running after umount",
            self.pid
        );
    }

    /// SIGKILLs the daemon (the mount stays, dead: "Transport endpoint is not connected").
    pub fn kill_daemon(&self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        wait_until(
            &format!("daemon {} gone after SIGKILL", self.pid),
            Duration::from_millis(1),
            || !mounts::daemon_alive(self.pid),
        );
    }

    /// Forgets the mount without unmounting (the caller has unmounted it).
    pub fn disarm(mut self) {
        self.done = true;
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if mounts::unmount(&self.mnt, Duration::from_secs(10)).is_err() {
            let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
        }
        if mounts::daemon_alive(self.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The mount's FUSE request counters by opcode name (`daxfs stat --requests --json`; requests that
/// came through FUSE-over-io_uring rings are also counted as `IO_URING`).
pub fn request_counters(m: &MountGuard) -> std::collections::BTreeMap<String, u64> {
    let out = daxfs_ok([
        "stat".as_ref(),
        "--requests".as_ref(),
        m.mnt.as_os_str(),
        "--json".as_ref(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("stat --requests --json is JSON");
    v["requests"]
        .as_object()
        .expect("a requests object")
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().expect("counts are integers")))
        .collect()
}

/// Runs `f` in a forked child as `uid:gid` (no supplementary groups). Return: `f`'s result, the
/// child's exit code (use errno values).
pub fn as_user(uid: u32, gid: u32, f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: fork in a test process; the child only calls setgroups/setgid/setuid, runs `f`
    // (plain syscalls through std/libc) and leaves with _exit, never returning into the test
    // harness.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: plain syscalls in the child.
            let code = unsafe {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    libc::_exit(200);
                }
                f()
            };
            // SAFETY: leaving the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        -1 => panic!("fork failed"),
        pid => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
            libc::WEXITSTATUS(status)
        }
    }
}

/// The errno of the last failed call, as an exit code for [`as_user`].
pub fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(255)
}

/// A C string of a path.
pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Asserts an `io::Result` failed with `errno`.
#[track_caller]
pub fn assert_errno<T: std::fmt::Debug>(r: std::io::Result<T>, errno: i32) {
    match r {
        Ok(v) => panic!("expected errno {errno}, got Ok({v:?})"),
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(errno),
            "expected errno {errno}, got {e}"
        ),
    }
}

/// Converts a libc return value into an `io::Result`.
pub fn cvt(r: libc::c_int) -> std::io::Result<libc::c_int> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A small deterministic byte pattern.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
