//! Why a mount, remount or unmount did not happen: [`OptionError`] for the `-o` string,
//! [`OpenError`] for opening a region that may be busy, and [`MountError`] for the daemon's and
//! the mount table's steps.
//!
//! Rules kept: each message names what is wrong and what to do (docs/DESIGN.md, "Errors"); the
//! daemon sends the same text on its readiness pipe (`ERR <message>`), so `daxfs mount` prints
//! exactly what the daemon saw. Callers match variants.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

use super::options::KNOWN;
use crate::fs::DaxMode;

/// A `-o` option daxfs does not accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// A known option with a value it cannot take; `fix` says which values it can.
    #[error("bad mount option '{option}': {fix}")]
    BadValue {
        /// The option as given.
        option: String,
        /// The values it takes.
        fix: &'static str,
    },
    /// An option daxfs refuses on purpose; `why` says why and what to do.
    #[error("mount option '{option}' is not supported: {why}")]
    Unsupported {
        /// The option as given.
        option: String,
        /// Why, and what to do.
        why: &'static str,
    },
    /// An option daxfs does not know.
    #[error("unknown mount option '{option}'; daxfs accepts {KNOWN}")]
    Unknown {
        /// The option as given.
        option: String,
    },
}

/// Why a region could not be opened while its last daemon may still be releasing it.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A mount serves the region.
    #[error("{}: region is already mounted on {}; unmount it first", .region.display(), .mountpoint.display())]
    AlreadyMounted {
        /// The region.
        region: PathBuf,
        /// Where it is mounted.
        mountpoint: PathBuf,
    },
    /// Another process holds the region lock and no mount names it.
    #[error("{}: region is in use by another process (a daxfs daemon or fsck); stop it first", .region.display())]
    InUse {
        /// The region.
        region: PathBuf,
    },
    /// Opening failed for another reason (bad region, I/O).
    #[error(transparent)]
    Fs(#[from] crate::Error),
}

/// Why `daxfs mount`, `umount`, a remount or the helper's shared mount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount options.
    #[error(transparent)]
    Option(#[from] OptionError),
    /// The mount point is a FUSE mount whose daemon is gone.
    #[error(
        "mount point {mp} is a dead FUSE mount (its daemon exited): run 'daxfs umount {mp}' first",
        mp = .mountpoint.display()
    )]
    DeadMountpoint {
        /// The mount point.
        mountpoint: PathBuf,
    },
    /// The mount point does not exist.
    #[error("mount point {}: {source} (create the directory first)", .mountpoint.display())]
    MountpointMissing {
        /// The mount point.
        mountpoint: PathBuf,
        /// What `stat` said.
        source: io::Error,
    },
    /// The mount point cannot be looked at.
    #[error("mount point {}: {source}", .mountpoint.display())]
    Mountpoint {
        /// The mount point.
        mountpoint: PathBuf,
        /// What `stat` said.
        source: io::Error,
    },
    /// The mount point is not a directory.
    #[error("mount point {} is not a directory", .mountpoint.display())]
    NotADirectory {
        /// The mount point.
        mountpoint: PathBuf,
    },
    /// The region could not be opened.
    #[error("cannot mount: {0}")]
    Open(#[source] OpenError),
    /// The daemon could not block SIGTERM/SIGINT for its signal thread.
    #[error("cannot block signals: {0}")]
    Signals(Errno),
    /// The mount itself failed.
    #[error("cannot mount {} on {}: {source}", .region.display(), .mountpoint.display())]
    Mount {
        /// The region.
        region: PathBuf,
        /// The mount point.
        mountpoint: PathBuf,
        /// What mount(2), fusermount3 or the session setup said.
        source: io::Error,
    },
    /// The signal thread could not start.
    #[error("cannot start the signal thread: {0}")]
    SignalThread(io::Error),
    /// The notifier thread (kernel notifications: `super::notify`) could not start.
    #[error("cannot start the notifier thread: {0}")]
    NotifierThread(io::Error),
    /// The FUSE session ended with an error.
    #[error("FUSE session failed: {0}")]
    Session(io::Error),
    /// Closing the filesystem (persisting it) failed.
    #[error("closing {}: {source}", .region.display())]
    Close {
        /// The region.
        region: PathBuf,
        /// What close said.
        source: crate::Error,
    },
    /// Nothing is mounted there.
    #[error("{} is not mounted", .mountpoint.display())]
    NotMounted {
        /// The path given.
        mountpoint: PathBuf,
    },
    /// Something other than FUSE is mounted there.
    #[error(
        "{} is a {fstype} mount, not a daxfs (FUSE) mount; use umount(8) for it",
        .mountpoint.display()
    )]
    NotFuse {
        /// The mount point.
        mountpoint: PathBuf,
        /// Its filesystem type.
        fstype: String,
    },
    /// umount(2) was refused for lack of privilege.
    #[error(
        "cannot unmount {}: permission denied (run as root, or use fusermount3 -u)",
        .mountpoint.display()
    )]
    UnmountDenied {
        /// The mount point.
        mountpoint: PathBuf,
    },
    /// umount(2) failed.
    #[error("cannot unmount {}: {errno}", .mountpoint.display())]
    Unmount {
        /// The mount point.
        mountpoint: PathBuf,
        /// What umount2 said.
        errno: Errno,
    },
    /// A remount named a daemon option with another value than the one in force.
    #[error("mount option '{option}' cannot be changed by a remount; unmount and mount again")]
    RemountCannotChange {
        /// The option as given.
        option: String,
    },
    /// A remount named an option that is not a mount flag.
    #[error("unknown mount option '{option}' for a remount")]
    RemountUnknown {
        /// The option as given.
        option: String,
    },
    /// mount(2) with `MS_REMOUNT` failed.
    #[error("cannot remount {}: {errno}", .mountpoint.display())]
    Remount {
        /// The mount point.
        mountpoint: PathBuf,
        /// What mount(2) said.
        errno: Errno,
    },
    /// The helper was asked to mount a served region with another `dax=`.
    #[error(
        "{}: region is already mounted on {} with dax={}; a second mount shares that filesystem \
         and cannot ask for dax={}",
        .region.display(), .existing.display(), dax_name(*.have), dax_name(*.want)
    )]
    DaxConflict {
        /// The region.
        region: PathBuf,
        /// The mount that serves it.
        existing: PathBuf,
        /// The `dax=` in force.
        have: DaxMode,
        /// The `dax=` asked for.
        want: DaxMode,
    },
    /// The bind mount of the served mount failed.
    #[error("cannot bind {} on {}: {errno}", .existing.display(), .target.display())]
    Bind {
        /// The mount that serves the region.
        existing: PathBuf,
        /// The new mount point.
        target: PathBuf,
        /// What mount(2) said.
        errno: Errno,
    },
    /// The bind mount's per-mount flags could not be set (the bind was undone).
    #[error("cannot set the flags of {}: {errno}", .target.display())]
    BindFlags {
        /// The new mount point.
        target: PathBuf,
        /// What mount(2) said.
        errno: Errno,
    },
}

/// `dax=` as the option spells it.
fn dax_name(d: DaxMode) -> &'static str {
    match d {
        DaxMode::Always => "always",
        DaxMode::Never => "never",
        DaxMode::Inode => "inode",
    }
}
