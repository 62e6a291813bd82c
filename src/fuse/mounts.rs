//! Where daxfs mounts are and who serves them: `/proc/self/mountinfo` and the daemon registry.
//!
//! Owns: the registry of running daemons (one small file per mount point under `/run/daxfs`, or
//! `$DAXFS_RUN_DIR`, holding the daemon's pid and region), reading the mount table, and
//! [`unmount`] — which also clears a dead mount left by a crashed daemon ("Transport endpoint is
//! not connected") and waits until the daemon has released the region. Rules kept: a mount point
//! is compared in canonical form, but a dead FUSE mount cannot be `stat`ed, so only its parent is
//! canonicalized; a pid read from the registry is trusted only while that process still runs a
//! `daxfs` binary.

use std::collections::hash_map::DefaultHasher;
use std::ffi::OsStr;
use std::hash::{Hash, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};

use super::error::{MountError, OpenError};
use super::options::{parse_options, MountConfig, Transport};

/// One line of the mount table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// Filesystem type (`fuse` for daxfs).
    pub fstype: String,
    /// Mount source (the region path for daxfs).
    pub source: String,
    /// Per-mount options (`rw,nosuid,nodev,relatime`).
    pub options: String,
}

/// A running daemon, as registered at mount time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonRecord {
    /// The daemon's process.
    pub pid: u32,
    /// The region it serves.
    pub region: String,
    /// Where.
    pub mountpoint: PathBuf,
}

/// Undoes mountinfo's octal escapes (`\040` for space and so on).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some(v) = b
                .get(i + 1..i + 4)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| u8::from_str_radix(d, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo` text.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let mut pre = pre.split(' ').skip(4);
            let mp = pre.next()?;
            let options = pre.next()?.to_string();
            let mut post = post.split(' ');
            let fstype = post.next()?;
            let source = post.next()?;
            Some(MountEntry {
                mountpoint: PathBuf::from(unescape(mp)),
                fstype: fstype.to_string(),
                source: unescape(source),
                options,
            })
        })
        .collect()
}

/// The current mount table.
pub fn mount_table() -> Vec<MountEntry> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

/// The canonical form of a mount point that may be a dead FUSE mount: the parent is
/// canonicalized, the last component kept.
pub fn resolve_mountpoint(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => parent
            .canonicalize()
            .unwrap_or_else(|_| parent.to_path_buf())
            .join(name),
        _ => abs,
    }
}

/// The FUSE mount at `mountpoint` (canonical), if any (the topmost when stacked).
pub fn find_fuse_mount(mountpoint: &Path) -> Option<MountEntry> {
    mount_table()
        .into_iter()
        .rev()
        .find(|m| m.mountpoint == mountpoint && m.fstype.starts_with("fuse"))
}

/// The FUSE mount point whose source is `region` (the same file or device), if any.
pub fn region_mounted_on(region: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let want = id(region)?;
    mount_table()
        .into_iter()
        .filter(|m| m.fstype.starts_with("fuse"))
        .find(|m| Path::new(&m.source).is_absolute() && id(Path::new(&m.source)) == Some(want))
        .map(|m| m.mountpoint)
}

/// Runs `open` until it stops failing with "region busy" while no mount uses `region`: a daemon
/// whose mount was just unmounted (`umount MNT`) releases its region lock a moment later, and a
/// quick remount or fsck must not fail on that. Gives up after `wait`, or at once when the region
/// is mounted (then the error names the mount point).
pub fn retry_while_releasing<T>(
    region: &Path,
    wait: Duration,
    mut open: impl FnMut() -> Result<T, crate::Error>,
) -> Result<T, OpenError> {
    let deadline = Instant::now() + wait;
    loop {
        match open() {
            Ok(v) => return Ok(v),
            Err(crate::Error::Region(crate::region::RegionError::Busy { .. })) => {
                if let Some(mountpoint) = region_mounted_on(region) {
                    return Err(OpenError::AlreadyMounted {
                        region: region.to_path_buf(),
                        mountpoint,
                    });
                }
                if Instant::now() >= deadline {
                    return Err(OpenError::InUse {
                        region: region.to_path_buf(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(OpenError::Fs(e)),
        }
    }
}

/// The registry directory.
pub fn run_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DAXFS_RUN_DIR") {
        return PathBuf::from(d);
    }
    if nix::unistd::geteuid().is_root() {
        PathBuf::from("/run/daxfs")
    } else {
        std::env::temp_dir().join(format!("daxfs-{}", nix::unistd::geteuid()))
    }
}

fn record_path(mountpoint: &Path) -> PathBuf {
    let mut h = DefaultHasher::new();
    mountpoint.as_os_str().as_bytes().hash(&mut h);
    run_dir().join(format!("{:016x}.mount", h.finish()))
}

/// Records the daemon serving `mountpoint` (canonical).
pub fn register(rec: &DaemonRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(run_dir())?;
    let text = format!(
        "pid={}\nregion={}\nmountpoint={}\n",
        rec.pid,
        rec.region,
        rec.mountpoint.display()
    );
    let path = record_path(&rec.mountpoint);
    let tmp = path.with_extension(format!("tmp{}", rec.pid));
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

/// The daemon recorded for `mountpoint` (canonical), if any.
pub fn lookup(mountpoint: &Path) -> Option<DaemonRecord> {
    let text = std::fs::read_to_string(record_path(mountpoint)).ok()?;
    let mut pid = None;
    let mut region = String::new();
    let mut mp = PathBuf::new();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("pid", v)) => pid = v.parse().ok(),
            Some(("region", v)) => region = v.to_string(),
            Some(("mountpoint", v)) => mp = PathBuf::from(v),
            _ => {}
        }
    }
    (mp == mountpoint).then_some(DaemonRecord {
        pid: pid?,
        region,
        mountpoint: mp,
    })
}

/// Removes the record of `mountpoint` if it names `pid` (or any pid when `pid` is `None`).
pub fn unregister(mountpoint: &Path, pid: Option<u32>) {
    if let Some(rec) = lookup(mountpoint) {
        if pid.is_none_or(|p| p == rec.pid) {
            let _ = std::fs::remove_file(record_path(mountpoint));
        }
    }
}

/// Whether `pid` is alive and runs a daxfs binary.
pub fn daemon_alive(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    if cmdline.is_empty() {
        return false; // zombie
    }
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // State is the field after the parenthesised command name.
        if let Some(after) = stat.rsplit_once(") ") {
            if after.1.starts_with('Z') {
                return false;
            }
        }
    }
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or(&[]);
    Path::new(OsStr::from_bytes(argv0))
        .file_name()
        .is_some_and(|n| n.as_bytes().windows(5).any(|w| w == b"daxfs"))
}

/// The mount(2) flag a generic mount option names and whether the option sets it (`ro` sets
/// `MS_RDONLY`, `rw` clears it), or `None` for any other option.
pub(crate) fn mount_flag(opt: &str) -> Option<(nix::mount::MsFlags, bool)> {
    use nix::mount::MsFlags;
    Some(match opt {
        "ro" => (MsFlags::MS_RDONLY, true),
        "rw" => (MsFlags::MS_RDONLY, false),
        "nosuid" => (MsFlags::MS_NOSUID, true),
        "suid" => (MsFlags::MS_NOSUID, false),
        "nodev" => (MsFlags::MS_NODEV, true),
        "dev" => (MsFlags::MS_NODEV, false),
        "noexec" => (MsFlags::MS_NOEXEC, true),
        "exec" => (MsFlags::MS_NOEXEC, false),
        "noatime" => (MsFlags::MS_NOATIME, true),
        "atime" => (MsFlags::MS_NOATIME, false),
        "nodiratime" => (MsFlags::MS_NODIRATIME, true),
        "diratime" => (MsFlags::MS_NODIRATIME, false),
        "relatime" => (MsFlags::MS_RELATIME, true),
        "norelatime" => (MsFlags::MS_RELATIME, false),
        "strictatime" => (MsFlags::MS_STRICTATIME, true),
        "sync" => (MsFlags::MS_SYNCHRONOUS, true),
        "async" => (MsFlags::MS_SYNCHRONOUS, false),
        "dirsync" => (MsFlags::MS_DIRSYNC, true),
        _ => return None,
    })
}

/// Daemon options a remount cannot change but may repeat with the value in force.
const SERVED_SETTINGS: &[&str] = &[
    "dax",
    "io_uring",
    "noio_uring",
    "io_uring_sched",
    "dax_bugs",
];

/// The `-o` options the daemon serving `mp` was started with, read from its command line
/// (`daxfs mount REGION MNT ... -o OPTS`, as both `daxfs mount` and the helper start it).
fn served_config(mp: &Path) -> Option<MountConfig> {
    let rec = lookup(mp)?;
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", rec.pid)).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    parse_options(&option_args(&args).join(",")).ok()
}

/// The values of every `-o VALUE` / `-oVALUE` in `args`.
fn option_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-o" {
            if let Some(v) = it.next() {
                out.push(v.clone());
            }
        } else if let Some(v) = a.strip_prefix("-o").filter(|v| !v.is_empty()) {
            out.push(v.to_string());
        }
    }
    out
}

/// The transport the daemon of the mount at `mp` agreed with the kernel (`DAXFS_IOC_SERVER_INFO`):
/// [`Transport::IoUring`] or [`Transport::DevFuse`]; `None` when it cannot tell.
pub fn transport_in_use(mp: &Path) -> Option<Transport> {
    use crate::ioctl::{DaxfsServerInfo, Versioned, DAXFS_IOC_SERVER_INFO, TRANSPORT_IO_URING};
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(mp).ok()?;
    let mut q = DaxfsServerInfo::new_request();
    // SAFETY: `q` is a live #[repr(C)] struct of exactly _IOC_SIZE(DAXFS_IOC_SERVER_INFO) bytes
    // (the ABI's size assertion), exclusively borrowed for the call; `f` stays open meanwhile.
    let rc = unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            DAXFS_IOC_SERVER_INFO as _,
            &mut q as *mut DaxfsServerInfo,
        )
    };
    (rc == 0).then_some(if q.transport == TRANSPORT_IO_URING {
        Transport::IoUring
    } else {
        Transport::DevFuse
    })
}

/// Whether the daemon option `opt` (`dax=`, `io_uring`, `noio_uring`, `io_uring_sched=`) names
/// what `current` already has; `None` for other options. A transport option also names what is
/// in force when it names the transport in use (`in_use`: `io_uring` on a mount whose
/// `io_uring=auto` picked the rings).
fn same_as_served(opt: &str, current: &MountConfig, in_use: Option<Transport>) -> Option<bool> {
    let key = opt.split_once('=').map_or(opt, |(k, _)| k);
    if !SERVED_SETTINGS.contains(&key) {
        return None;
    }
    let want = parse_options(opt).ok()?;
    Some(match key {
        "dax" => want.dax == current.dax,
        "io_uring_sched" => want.io_uring_idle == current.io_uring_idle,
        "dax_bugs" => want.dax_bugs == current.dax_bugs,
        _ => want.transport == current.transport || Some(want.transport) == in_use,
    })
}

/// Remounts the daxfs mount at `mountpoint` with changed mount flags (`-o remount,ro` and the
/// like, as xfstests' `_scratch_remount` does through mount(8)). Flags not named keep their
/// current value; daxfs's own options (`dax=`, `io_uring`, `threads=`, ...) cannot change on a
/// remount, and `dax=`, `io_uring`/`noio_uring` and `io_uring_sched=` are accepted when they name
/// the mount's current setting.
///
/// Return: an error naming the offending option or the failing mount point.
pub fn remount(mountpoint: &Path, opts: &str) -> Result<(), MountError> {
    use nix::mount::MsFlags;
    let mp = resolve_mountpoint(mountpoint);
    let entry = find_fuse_mount(&mp).ok_or_else(|| MountError::NotMounted {
        mountpoint: mp.clone(),
    })?;
    let mut flags = MsFlags::empty();
    for o in entry.options.split(',') {
        set_mount_flag(&mut flags, o);
    }
    // How the daemon serves the mount: options that cannot change are accepted when they name
    // what is already in force (mount(8) and xfstests pass the original options again).
    let serving = served_config(&mp).map(|c| (c, transport_in_use(&mp)));
    for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if o == "remount" || set_mount_flag(&mut flags, o) {
            continue;
        }
        remount_option_allowed(o, serving.as_ref())?;
    }
    nix::mount::mount(
        None::<&str>,
        &mp,
        None::<&str>,
        MsFlags::MS_REMOUNT | flags,
        None::<&str>,
    )
    .map_err(|errno| MountError::Remount {
        mountpoint: mp,
        errno,
    })
}

/// Sets in `flags` the mount flag that `opt` names; returns whether it named one.
fn set_mount_flag(flags: &mut nix::mount::MsFlags, opt: &str) -> bool {
    match mount_flag(opt) {
        Some((f, on)) => {
            flags.set(f, on);
            true
        }
        None => false,
    }
}

/// Options of mount(8) that a remount passes along and that mean nothing to a FUSE mount.
const REMOUNT_IGNORED: &[&str] = &[
    "defaults",
    "default_permissions",
    "auto",
    "noauto",
    "user",
    "nouser",
    "_netdev",
    "nofail",
    "lazytime",
    "nolazytime",
];

/// Whether a remount may name `o`, an option that is not a mount flag: a daemon setting naming
/// the value in force (`serving`), or one of mount(8)'s options that change nothing.
fn remount_option_allowed(
    o: &str,
    serving: Option<&(MountConfig, Option<Transport>)>,
) -> Result<(), MountError> {
    let key = o.split_once('=').map_or(o, |(k, _)| k);
    if serving.is_some_and(|(current, in_use)| same_as_served(o, current, *in_use) == Some(true)) {
        return Ok(());
    }
    if SERVED_SETTINGS.contains(&key)
        || ["threads", "log", "allow_other", "noallow_other"].contains(&key)
    {
        return Err(MountError::RemountCannotChange {
            option: o.to_string(),
        });
    }
    if REMOUNT_IGNORED.contains(&key) || key.starts_with("x-") {
        return Ok(());
    }
    Err(MountError::RemountUnknown {
        option: o.to_string(),
    })
}

/// Unmounts `mp`: a busy mount is retried briefly (a file closed a moment ago can still pin it:
/// its final fput runs asynchronously), then detached lazily. Return: whether it was detached.
fn umount_retrying(mp: &Path) -> Result<bool, MountError> {
    let detach = |mp: &Path| {
        umount2(mp, MntFlags::MNT_DETACH).map_err(|errno| MountError::Unmount {
            mountpoint: mp.to_path_buf(),
            errno,
        })
    };
    let mut r = umount2(mp, MntFlags::empty());
    for _ in 0..25 {
        if r != Err(Errno::EBUSY) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        r = umount2(mp, MntFlags::empty());
    }
    match r {
        Ok(()) => Ok(false),
        Err(Errno::EBUSY) => detach(mp).map(|()| true),
        Err(Errno::EPERM) => Err(MountError::UnmountDenied {
            mountpoint: mp.to_path_buf(),
        }),
        // A dead connection can refuse a plain unmount on some kernels: detach it.
        Err(_) => detach(mp).map(|()| false),
    }
}

/// What [`unmount`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmounted {
    /// The mount was busy and was detached lazily (it goes away when the last user does).
    pub lazy: bool,
    /// The daemon had died before (a dead mount was cleared).
    pub was_dead: bool,
}

/// Unmounts the daxfs (FUSE) mount at `mountpoint` and waits up to `wait` for its daemon to
/// exit, so that the region can be mounted again at once. A mount whose daemon died is cleared.
///
/// Return: an error message naming what is wrong (not mounted, not a FUSE mount, permission).
pub fn unmount(mountpoint: &Path, wait: Duration) -> Result<Unmounted, MountError> {
    let mp = resolve_mountpoint(mountpoint);
    if find_fuse_mount(&mp).is_none() {
        let other = mount_table().into_iter().rev().find(|m| m.mountpoint == mp);
        return Err(match other {
            Some(m) => MountError::NotFuse {
                mountpoint: mp,
                fstype: m.fstype,
            },
            None => MountError::NotMounted { mountpoint: mp },
        });
    }
    let rec = lookup(&mp).filter(|r| daemon_alive(r.pid));
    let was_dead = rec.is_none();
    let lazy = umount_retrying(&mp)?;
    if let Some(rec) = &rec {
        // A lazily detached mount lives on while it is in use: do not wait long for it.
        let wait = if lazy {
            wait.min(Duration::from_secs(1))
        } else {
            wait
        };
        let deadline = Instant::now() + wait;
        while daemon_alive(rec.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    unregister(&mp, None);
    Ok(Unmounted { lazy, was_dead })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_options_come_from_its_command_line() {
        let args: Vec<String> = [
            "daxfs",
            "mount",
            "r",
            "m",
            "-o",
            "dax=never,io_uring",
            "-orw",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(option_args(&args), ["dax=never,io_uring", "rw"]);
        let cur = super::super::options::parse_options("dax=never,io_uring").unwrap();
        let same = |o: &str| same_as_served(o, &cur, Some(Transport::IoUring));
        assert_eq!(same("dax=never"), Some(true));
        assert_eq!(same("dax=always"), Some(false));
        assert_eq!(same("io_uring"), Some(true));
        assert_eq!(same("noio_uring"), Some(false));
        assert_eq!(same("io_uring=auto"), Some(false));
        assert_eq!(same("io_uring_sched=idle"), Some(true));
        assert_eq!(same("io_uring_sched=normal"), Some(false));
        assert_eq!(same("ro"), None);
        // The default, io_uring=auto: the transport it picked may be named too.
        let auto = super::super::options::parse_options("dax=never").unwrap();
        let on_rings = |o: &str| same_as_served(o, &auto, Some(Transport::IoUring));
        assert_eq!(on_rings("io_uring=auto"), Some(true));
        assert_eq!(on_rings("io_uring"), Some(true));
        assert_eq!(on_rings("noio_uring"), Some(false));
        let on_dev = |o: &str| same_as_served(o, &auto, Some(Transport::DevFuse));
        assert_eq!(on_dev("noio_uring"), Some(true));
        assert_eq!(on_dev("io_uring"), Some(false));
        assert_eq!(same("threads=2"), None);
    }

    #[test]
    fn mountinfo_lines() {
        let t = "36 35 98:0 /mnt1 /mnt/parent\\040dir rw,noatime master:1 - ext3 /dev/root rw\n\
                 40 1 0:50 / /tmp/m rw,nosuid,nodev,relatime shared:2 - fuse /dev/shm/r\\040x rw,user_id=0\n\
                 garbage line\n";
        let v = parse_mountinfo(t);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].mountpoint, PathBuf::from("/mnt/parent dir"));
        assert_eq!(v[0].fstype, "ext3");
        assert_eq!(v[1].fstype, "fuse");
        assert_eq!(v[1].source, "/dev/shm/r x");
    }

    #[test]
    fn registry_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        // Only this unit test uses DAXFS_RUN_DIR in this test binary.
        std::env::set_var("DAXFS_RUN_DIR", dir.path());
        let rec = DaemonRecord {
            pid: 4242,
            region: "/dev/shm/region".into(),
            mountpoint: PathBuf::from("/mnt/x y"),
        };
        register(&rec).unwrap();
        assert_eq!(lookup(Path::new("/mnt/x y")), Some(rec.clone()));
        assert_eq!(lookup(Path::new("/mnt/other")), None);
        unregister(Path::new("/mnt/x y"), Some(1));
        assert!(lookup(Path::new("/mnt/x y")).is_some(), "other pid: kept");
        unregister(Path::new("/mnt/x y"), Some(4242));
        assert!(lookup(Path::new("/mnt/x y")).is_none());
        std::env::remove_var("DAXFS_RUN_DIR");
    }

    #[test]
    fn dead_pids_are_not_daemons() {
        assert!(!daemon_alive(u32::MAX - 1));
        // This test process is not a daxfs binary unless its name says so.
        let me = std::process::id();
        let name = std::env::current_exe().unwrap();
        let expect = name
            .file_name()
            .unwrap()
            .as_bytes()
            .windows(5)
            .any(|w| w == b"daxfs");
        assert_eq!(daemon_alive(me), expect);
    }

    #[test]
    fn unmount_of_unmounted_dir_names_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let e = unmount(dir.path(), Duration::from_millis(1)).unwrap_err();
        assert!(matches!(e, MountError::NotMounted { .. }), "{e}");
    }

    #[test]
    fn resolve_keeps_last_component() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing");
        assert_eq!(
            resolve_mountpoint(&p),
            dir.path().canonicalize().unwrap().join("missing")
        );
    }
}
