//! The daemon's life: open the region, mount, report readiness, serve, unmount on a signal, close.
//!
//! Owns: the order of those steps and the readiness protocol with the `daxfs mount` parent.
//! Rules kept: the region is opened (validated, locked) *before* the mount syscall, so a bad or
//! already-mounted region is refused without leaving a mount behind; readiness is reported only
//! after the kernel's INIT handshake completed (the mount answers requests); SIGTERM and SIGINT
//! unmount cleanly (lazily when busy) and the region is closed after the last request.
//!
//! Readiness protocol: the parent passes a pipe; the daemon writes one line, `OK <pid>` once the
//! mount is ready or `ERR <message>` when it gives up, then closes it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, Session, SessionACL};
use nix::sys::signal::{SigSet, Signal};

use super::adapter::{DaxFuse, MAX_WRITE};
use super::error::MountError;
use super::mounts::{
    register, resolve_mountpoint, retry_while_releasing, unregister, DaemonRecord,
};
use super::notify::KernelNotifier;
use super::options::{MountConfig, Transport};
use super::stats::RequestStats;
use super::uring::{self, RingConfig};
use crate::fs::atime::AtimeMode;
use crate::fs::{DaxFs, OpenOptions};

/// Ring entries (requests in flight) per io_uring queue, as libfuse's default depth.
const RING_DEPTH: usize = 8;

/// What to mount where.
#[derive(Clone, Debug)]
pub struct MountSpec {
    /// The region path as the user gave it (it becomes the mount source verbatim).
    pub region: PathBuf,
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// The `-o` options.
    pub config: MountConfig,
    /// Session threads (each with its own `/dev/fuse` fd).
    pub threads: usize,
}

/// The default number of session threads: the number of cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The fuser mount options for a configuration: `fsname=` is the region path as given, no
/// `subtype=`.
pub fn fuser_options(region: &Path, c: &MountConfig) -> Vec<MountOption> {
    let mut v = vec![
        MountOption::FSName(region.to_string_lossy().into_owned()),
        MountOption::DefaultPermissions,
    ];
    v.push(if c.read_only {
        MountOption::RO
    } else {
        MountOption::RW
    });
    let root = nix::unistd::geteuid().is_root();
    if c.suid_for(root) {
        v.push(MountOption::Suid);
    }
    if c.dev_for(root) {
        v.push(MountOption::Dev);
    }
    if c.noexec {
        v.push(MountOption::NoExec);
    }
    if c.noatime {
        v.push(MountOption::NoAtime);
    }
    if c.sync {
        v.push(MountOption::Sync);
    }
    if c.dirsync {
        v.push(MountOption::DirSync);
    }
    v
}

fn report(ready: &mut Option<std::fs::File>, line: &str) {
    if let Some(mut f) = ready.take() {
        let _ = writeln!(f, "{line}");
    }
}

/// Mounts and serves until unmounted. `ready`, when given, receives the readiness line.
///
/// Return: what went wrong (also sent as `ERR <message>` on `ready` when it happened before the
/// mount was ready).
///
/// Context: blocks SIGTERM/SIGINT in the calling thread (and so in every thread it starts) and
/// handles them in a thread of its own.
pub fn serve(spec: &MountSpec, mut ready: Option<std::fs::File>) -> Result<(), MountError> {
    let r = serve_steps(spec, &mut ready);
    if let Err(e) = &r {
        report(
            &mut ready,
            &format!("ERR {}", e.to_string().replace('\n', " ")),
        );
    }
    r
}

/// The daemon's life, step by step (module comment): each step's failure ends it.
fn serve_steps(spec: &MountSpec, ready: &mut Option<std::fs::File>) -> Result<(), MountError> {
    let mountpoint = check_mountpoint(&spec.mountpoint)?;
    let fs = open_filesystem(spec)?;
    // Signals go to a thread of ours; every thread started from here inherits the mask.
    let sigs = block_signals()?;
    let notifier = KernelNotifier::new();
    let mut adapter = DaxFuse::new(fs.clone(), notifier.clone());
    // Layout leases for processes that map files directly (`daxfs exec`).
    adapter.set_direct(crate::direct::DirectService::start(&fs));
    let stats = adapter.stats_handle();
    let uring = spec
        .config
        .transport
        .wants_rings()
        .then(|| adapter.request_io_uring());
    let session = start_session(spec, &mountpoint, adapter)?;
    notifier
        .connect(session.notifier())
        .map_err(MountError::NotifierThread)?;
    let pid = std::process::id();
    register_daemon(spec, &mountpoint, pid);
    spawn_signal_thread(sigs, mountpoint.clone())?;
    log::info!(
        "mounted {} on {} ({} threads, {:?})",
        spec.region.display(),
        mountpoint.display(),
        spec.threads,
        spec.config.dax
    );
    report(ready, &format!("OK {pid}"));
    let served = run_session(session, uring, spec, stats);
    unregister(&mountpoint, Some(pid));
    log::info!("session ended: {served:?}");
    close_filesystem(fs, &spec.region)?;
    served.map_err(MountError::Session)
}

/// The mount point, checked to be a directory that is not a dead FUSE mount, in canonical form.
fn check_mountpoint(mountpoint: &Path) -> Result<PathBuf, MountError> {
    let md = std::fs::metadata(mountpoint).map_err(|source| {
        let mountpoint = mountpoint.to_path_buf();
        match source.raw_os_error() {
            Some(libc::ENOTCONN | libc::ECONNABORTED) => MountError::DeadMountpoint { mountpoint },
            Some(libc::ENOENT) => MountError::MountpointMissing { mountpoint, source },
            _ => MountError::Mountpoint { mountpoint, source },
        }
    })?;
    if !md.is_dir() {
        return Err(MountError::NotADirectory {
            mountpoint: mountpoint.to_path_buf(),
        });
    }
    Ok(resolve_mountpoint(mountpoint))
}

/// Opens (validates, locks) the region before anything is mounted, waiting briefly for a daemon
/// that is still releasing it, and applies the atime options.
fn open_filesystem(spec: &MountSpec) -> Result<Arc<DaxFs>, MountError> {
    let opts = OpenOptions {
        read_only: spec.config.read_only,
        no_recovery: spec.config.no_recovery,
        dax: spec.config.dax,
        dax_bugs: spec.config.dax_bugs,
    };
    let fs = retry_while_releasing(&spec.region, Duration::from_secs(30), || {
        DaxFs::open(&spec.region, &opts)
    })
    .map_err(MountError::Open)?;
    fs.set_atime_mode(
        match (spec.config.noatime, spec.config.strictatime) {
            (true, _) => AtimeMode::NoAtime,
            (false, true) => AtimeMode::Strict,
            (false, false) => AtimeMode::Relatime,
        },
        spec.config.nodiratime,
    );
    Ok(Arc::new(fs))
}

/// Blocks SIGTERM and SIGINT in this thread (and the threads it starts); returns the set for the
/// signal thread to wait on.
fn block_signals() -> Result<SigSet, MountError> {
    let mut sigs = SigSet::empty();
    sigs.add(Signal::SIGTERM);
    sigs.add(Signal::SIGINT);
    sigs.thread_block().map_err(MountError::Signals)?;
    Ok(sigs)
}

/// Mounts and creates the FUSE session: by mount(2) ourselves, or through fusermount3 when we may
/// not mount. Nothing stays mounted when this fails.
fn start_session(
    spec: &MountSpec,
    mountpoint: &Path,
    adapter: DaxFuse,
) -> Result<Session<DaxFuse>, MountError> {
    let mut cfg = Config::default();
    cfg.mount_options = fuser_options(&spec.region, &spec.config);
    cfg.acl = if spec.config.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    cfg.n_threads = Some(spec.threads.max(1));
    cfg.clone_fd = true;
    match kernel_mount(&spec.region, mountpoint, &spec.config) {
        Ok(fd) => {
            let acl = cfg.acl;
            let s = Session::from_fd(adapter, fd, acl, cfg);
            if s.is_err() {
                lazy_unmount(mountpoint);
            }
            s
        }
        // Not allowed to mount(2) ourselves: let fuser go through fusermount3.
        Err(nix::errno::Errno::EPERM) => Session::new(adapter, mountpoint, &cfg),
        Err(e) => Err(std::io::Error::from(e)),
    }
    .map_err(|source| MountError::Mount {
        region: spec.region.clone(),
        mountpoint: mountpoint.to_path_buf(),
        source,
    })
}

/// Records the daemon in the registry (a failure only costs `daxfs umount` its wait).
fn register_daemon(spec: &MountSpec, mountpoint: &Path, pid: u32) {
    let rec = DaemonRecord {
        pid,
        region: spec.region.to_string_lossy().into_owned(),
        mountpoint: mountpoint.to_path_buf(),
    };
    if let Err(e) = register(&rec) {
        log::warn!(
            "cannot record the daemon in {}: {e}",
            super::mounts::run_dir().display()
        );
    }
}

/// Starts the thread that unmounts `mountpoint` on SIGTERM or SIGINT.
fn spawn_signal_thread(sigs: SigSet, mountpoint: PathBuf) -> Result<(), MountError> {
    std::thread::Builder::new()
        .name("daxfs-signals".into())
        .spawn(move || {
            if let Ok(sig) = sigs.wait() {
                log::info!("{sig:?}: unmounting {}", mountpoint.display());
                lazy_unmount(&mountpoint);
            }
        })
        .map(drop)
        .map_err(MountError::SignalThread)
}

/// Serves until the mount goes away: through the io_uring queues when asked for and agreed at
/// INIT, else through `/dev/fuse`.
fn run_session(
    session: Session<DaxFuse>,
    uring: Option<Arc<AtomicBool>>,
    spec: &MountSpec,
    stats: Arc<RequestStats>,
) -> std::io::Result<()> {
    match uring {
        Some(agreed) if agreed.load(Ordering::Relaxed) => {
            log::info!(
                "transport: io_uring ({:?}; FUSE-over-io_uring rings, one queue per CPU)",
                spec.config.transport
            );
            let config = RingConfig {
                depth: RING_DEPTH,
                payload: (MAX_WRITE as usize).max(8192),
                idle_priority: spec.config.io_uring_idle,
            };
            session.run_with(move |d| uring::start(d, config, stats))
        }
        Some(_) if spec.config.transport == Transport::Auto => {
            log::info!(
                "transport: /dev/fuse (io_uring=auto: the fuse module's enable_uring is on but \
                 the kernel did not agree to FUSE-over-io_uring at INIT)"
            );
            session.run()
        }
        Some(_) => {
            log::warn!(
                "io_uring: the kernel did not offer FUSE-over-io_uring (is the fuse module's \
                 enable_uring parameter on? echo 1 > /sys/module/fuse/parameters/enable_uring); \
                 serving through /dev/fuse"
            );
            session.run()
        }
        None => {
            log::info!(
                "transport: /dev/fuse ({:?}{})",
                spec.config.transport,
                if spec.config.transport == Transport::Auto {
                    ": the fuse module's enable_uring is off"
                } else {
                    ""
                }
            );
            session.run()
        }
    }
}

/// Closes the filesystem after the last request (persisting everything).
fn close_filesystem(fs: Arc<DaxFs>, region: &Path) -> Result<(), MountError> {
    match Arc::try_unwrap(fs) {
        Ok(fs) => fs.close().map_err(|source| MountError::Close {
            region: region.to_path_buf(),
            source,
        }),
        Err(_) => {
            log::warn!("filesystem still referenced at exit; dropped without close");
            Ok(())
        }
    }
}

/// The `mount(2)` data string of a FUSE mount on `fd`.
pub fn mount_data(fd: i32, c: &MountConfig) -> String {
    let mut d = format!(
        "fd={fd},rootmode={:o},user_id={},group_id={},default_permissions",
        libc::S_IFDIR,
        nix::unistd::geteuid(),
        nix::unistd::getegid()
    );
    if c.allow_other {
        d.push_str(",allow_other");
    }
    d
}

/// The `mount(2)` flags of a configuration mounted by `root` or not (unnamed `suid`/`dev`: on
/// for root, as a kernel filesystem; off for others, as libfuse).
pub fn mount_flags(c: &MountConfig, root: bool) -> nix::mount::MsFlags {
    use nix::mount::MsFlags;
    let mut f = MsFlags::empty();
    f.set(MsFlags::MS_NOSUID, !c.suid_for(root));
    f.set(MsFlags::MS_NODEV, !c.dev_for(root));
    f.set(MsFlags::MS_RDONLY, c.read_only);
    f.set(MsFlags::MS_NOEXEC, c.noexec);
    f.set(MsFlags::MS_NOATIME, c.noatime);
    f.set(MsFlags::MS_SYNCHRONOUS, c.sync);
    f.set(MsFlags::MS_DIRSYNC, c.dirsync);
    f
}

/// Mounts a FUSE filesystem served on a fresh `/dev/fuse` descriptor, with source `region`
/// verbatim and type plain `fuse`. We mount ourselves (rather than through fuser's `Session::new`)
/// so that no unmount-on-drop runs when the session ends: after an external `umount` a quick
/// remount on the same directory must not be unmounted by the old daemon on its way out.
///
/// Return: the descriptor (the kernel has queued INIT on it), or the `mount(2)` errno.
fn kernel_mount(
    region: &Path,
    mountpoint: &Path,
    c: &MountConfig,
) -> Result<std::os::fd::OwnedFd, nix::errno::Errno> {
    use nix::fcntl::{open, OFlag};
    use std::os::fd::AsRawFd;
    let fd = open(
        "/dev/fuse",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let data = mount_data(fd.as_raw_fd(), c);
    nix::mount::mount(
        Some(region),
        mountpoint,
        Some("fuse"),
        mount_flags(c, nix::unistd::geteuid().is_root()),
        Some(data.as_str()),
    )?;
    Ok(fd)
}

/// Unmounts `mp`, detaching lazily when busy.
fn lazy_unmount(mp: &Path) {
    use nix::mount::{umount2, MntFlags};
    if umount2(mp, MntFlags::empty()).is_err() {
        if let Err(e) = umount2(mp, MntFlags::MNT_DETACH) {
            log::error!("cannot unmount {}: {e}", mp.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuse::options::parse_options;

    #[test]
    fn fsname_is_region_as_given_and_no_subtype() {
        let c = parse_options("ro,suid").unwrap();
        let v = fuser_options(Path::new("rel/region.img"), &c);
        assert_eq!(v[0], MountOption::FSName("rel/region.img".into()));
        assert!(v.contains(&MountOption::RO));
        assert!(v.contains(&MountOption::Suid));
        assert!(!v.iter().any(|o| matches!(o, MountOption::Subtype(_))));
        assert!(v.contains(&MountOption::DefaultPermissions));
    }

    #[test]
    fn root_mounts_default_to_dev_suid_and_honour_nodev() {
        use nix::mount::MsFlags;
        let f = mount_flags(&parse_options("rw").unwrap(), true);
        assert!(
            !f.intersects(MsFlags::MS_NODEV | MsFlags::MS_NOSUID),
            "{f:?}"
        );
        let f = mount_flags(&parse_options("rw").unwrap(), false);
        assert!(f.contains(MsFlags::MS_NODEV | MsFlags::MS_NOSUID), "{f:?}");
        let f = mount_flags(&parse_options("nodev").unwrap(), true);
        assert!(
            f.contains(MsFlags::MS_NODEV) && !f.contains(MsFlags::MS_NOSUID),
            "{f:?}"
        );
        let f = mount_flags(&parse_options("nosuid,dev").unwrap(), false);
        assert!(
            f.contains(MsFlags::MS_NOSUID) && !f.contains(MsFlags::MS_NODEV),
            "{f:?}"
        );
    }

    #[test]
    fn missing_mountpoint_is_reported_before_anything() {
        let (r, w) = std::io::pipe().unwrap();
        let spec = MountSpec {
            region: PathBuf::from("/nonexistent/region"),
            mountpoint: PathBuf::from("/nonexistent/mnt"),
            config: MountConfig::default(),
            threads: 1,
        };
        let e = serve(
            &spec,
            Some(std::fs::File::from(std::os::fd::OwnedFd::from(w))),
        )
        .unwrap_err();
        assert!(
            matches!(&e, MountError::MountpointMissing { mountpoint, .. }
                if mountpoint == Path::new("/nonexistent/mnt")),
            "{e}"
        );
        let line = std::io::read_to_string(r).unwrap();
        assert!(
            line.starts_with("ERR mount point /nonexistent/mnt"),
            "{line}"
        );
    }
}
