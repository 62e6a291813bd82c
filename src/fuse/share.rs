//! A second mount(8) of a region already served by a daxfs daemon: the helper shares that mount.
//!
//! Owns: the `mount.fuse.daxfs` decision to bind-mount the existing mount instead of starting a
//! second daemon. A kernel filesystem mounted twice from one block device shares one superblock
//! (xfstests generic/732 relies on it: a rename seen through one mount point is seen through the
//! other). A region has exactly one daemon (it holds the region lock), so the helper gives the
//! new mount point a bind mount of the running one: one filesystem, two mount points, as the
//! kernel does. Rules kept:
//! - only the mount(8) helper does this; `daxfs mount` keeps refusing an already mounted region
//!   with the message naming its mount point;
//! - only a mount whose daemon is alive is shared (a dead mount gets the usual error);
//! - the filesystem-level options are the running daemon's, as a shared superblock's are: a
//!   different `dax=` is refused, naming both; per-mount flags (ro, nosuid, nodev, noexec) named
//!   in the options apply to the new mount point only;
//! - unmounting either mount point leaves the other working; the daemon exits when the last is
//!   gone (the kernel aborts the connection when the superblock dies).

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::error::MountError;
use super::mounts::{
    daemon_alive, lookup, mount_flag, mount_table, region_mounted_on, resolve_mountpoint,
};
use super::options::parse_options;

/// The `-o` option string of the daemon `pid` (from its command line), empty when none.
fn daemon_options(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let opts = args
        .windows(2)
        .filter(|w| w[0] == "-o")
        .map(|w| w[1].clone())
        .collect::<Vec<_>>()
        .join(",");
    Some(opts)
}

/// The per-mount flags a bind mount can differ in (`ro`, `nosuid`, `nodev`, `noexec`) named in
/// mount options (later ones win), starting from `base`.
fn per_mount_flags(base: MsFlags, opts: &str) -> MsFlags {
    let per_mount =
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mut f = base;
    for o in opts.split(',').map(str::trim) {
        if let Some((flag, on)) = mount_flag(o).filter(|(flag, _)| per_mount.contains(*flag)) {
            f.set(flag, on);
        }
    }
    f
}

/// If a live daxfs daemon already serves `region`, bind-mounts its mount point on `mountpoint`
/// with the per-mount flags named in `opts`.
///
/// Return: `Ok(Some(existing mount point))` when shared, `Ok(None)` when the region is not
/// served (mount it normally), an error naming the conflict or the failing call.
pub fn share_mounted_region(
    region: &Path,
    mountpoint: &Path,
    opts: &str,
) -> Result<Option<PathBuf>, MountError> {
    let Some(existing) = region_mounted_on(region) else {
        return Ok(None);
    };
    let Some(rec) = lookup(&existing).filter(|r| daemon_alive(r.pid)) else {
        return Ok(None);
    };
    let want = parse_options(opts)?;
    let have = parse_options(&daemon_options(rec.pid).unwrap_or_default()).unwrap_or_default();
    if want.dax != have.dax {
        return Err(MountError::DaxConflict {
            region: region.to_path_buf(),
            existing,
            have: have.dax,
            want: want.dax,
        });
    }
    let target = resolve_mountpoint(mountpoint);
    nix::mount::mount(
        Some(&existing),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|errno| MountError::Bind {
        existing: existing.clone(),
        target: target.clone(),
        errno,
    })?;
    // The bind copied the existing mount's flags; apply the ones named for this mount point.
    let base = mount_table()
        .into_iter()
        .rev()
        .find(|m| m.mountpoint == target)
        .map(|m| per_mount_flags(MsFlags::empty(), &m.options))
        .unwrap_or(MsFlags::empty());
    let flags = per_mount_flags(base, opts);
    if flags != base {
        if let Err(errno) = nix::mount::mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
            None::<&str>,
        ) {
            let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
            return Err(MountError::BindFlags { target, errno });
        }
    }
    Ok(Some(existing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_per_mount_flags_override_the_base() {
        let base = per_mount_flags(MsFlags::empty(), "rw,nosuid,nodev,relatime");
        assert_eq!(base, MsFlags::MS_NOSUID | MsFlags::MS_NODEV);
        let f = per_mount_flags(base, "ro,suid,dax=always,noexec");
        assert_eq!(
            f,
            MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
        );
        assert_eq!(per_mount_flags(f, "rw,exec,nodev"), MsFlags::MS_NODEV);
    }

    #[test]
    fn daemon_options_come_from_its_command_line() {
        // This test process has no -o: an empty option string.
        assert_eq!(daemon_options(std::process::id()).as_deref(), Some(""));
        assert_eq!(daemon_options(u32::MAX), None);
    }
}
