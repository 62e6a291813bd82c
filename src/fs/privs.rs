//! Dropping S_ISUID / S_ISGID when a file is modified: the kernel's `setattr_should_drop_suidgid`.
//!
//! Owns: the rule, in one place, for write, truncate and fallocate. Under
//! `FUSE_HANDLE_KILLPRIV_V2` the kernel leaves it to the filesystem (it only flags direct writes
//! and truncates of callers without `CAP_FSETID`, and sends nothing for fallocate), so the
//! daemon applies it with the caller of the request:
//! - nothing is dropped for a caller with `CAP_FSETID` (for us: uid 0) or a non-regular file;
//! - S_ISUID is always dropped;
//! - S_ISGID is dropped when the file is group-executable, or when the caller is not in the
//!   file's group (`in_group_or_capable`: its fsgid or one of its supplementary groups).
//!
//! The supplementary groups are read from `/proc/PID/status` of the requesting thread, only in
//! the rare case that decides (S_ISGID without S_IXGRP and a primary gid that differs); when the
//! process is gone the caller counts as not in the group (the bit is dropped: the safe side).

use std::fs;

use super::types::Ctx;

/// The mode bits a modification by `ctx` must drop from a file of `mode` owned by group
/// `file_gid`. `capable`: the caller has `CAP_FSETID`.
pub fn bits_to_drop(mode: u32, file_gid: u32, ctx: &Ctx, capable: bool) -> u32 {
    bits_to_drop_with(mode, capable, || in_group(ctx, file_gid))
}

/// [`bits_to_drop`] with the group membership test given (`in_group` is called at most once,
/// only when it decides).
pub fn bits_to_drop_with(mode: u32, capable: bool, in_group: impl FnOnce() -> bool) -> u32 {
    if capable || mode & libc::S_IFMT != libc::S_IFREG {
        return 0;
    }
    let mut drop = mode & libc::S_ISUID;
    if mode & libc::S_ISGID != 0 && (mode & libc::S_IXGRP != 0 || !in_group()) {
        drop |= libc::S_ISGID;
    }
    drop
}

/// Whether the caller is in group `gid`: its fsgid, or one of the supplementary groups of its
/// thread (`/proc/PID/status`, line `Groups:`).
///
/// Context: may sleep (reads procfs).
pub fn in_group(ctx: &Ctx, gid: u32) -> bool {
    if ctx.gid == gid {
        return true;
    }
    if ctx.pid == 0 {
        return false;
    }
    match fs::read_to_string(format!("/proc/{}/status", ctx.pid)) {
        Ok(s) => status_groups(&s).any(|g| g == gid),
        Err(_) => false,
    }
}

/// The supplementary groups listed in a `/proc/PID/status` text.
fn status_groups(status: &str) -> impl Iterator<Item = u32> + '_ {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|g| g.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::{bits_to_drop_with, fs, in_group, status_groups, Ctx};

    const REG: u32 = libc::S_IFREG;

    fn drop_of(mode: u32, capable: bool, member: bool) -> u32 {
        bits_to_drop_with(REG | mode, capable, || member)
    }

    #[test]
    fn suid_always_sgid_when_group_exec_or_not_member() {
        // The cases of xfstests generic/683 (caller not in the group) and generic/355 (in it).
        assert_eq!(drop_of(0o6666, false, false), 0o6000);
        assert_eq!(drop_of(0o6676, false, false), 0o6000);
        assert_eq!(drop_of(0o2676, false, false), 0o2000);
        assert_eq!(drop_of(0o6644, false, true), 0o4000);
        assert_eq!(drop_of(0o6744, false, true), 0o4000);
        assert_eq!(drop_of(0o6654, false, true), 0o6000);
        assert_eq!(drop_of(0o2644, false, true), 0);
        assert_eq!(drop_of(0o0777, false, false), 0);
    }

    #[test]
    fn capable_caller_and_non_regular_files_keep_the_bits() {
        assert_eq!(drop_of(0o6777, true, false), 0);
        assert_eq!(
            bits_to_drop_with(libc::S_IFDIR | 0o6777, false, || false),
            0
        );
    }

    #[test]
    fn membership_is_asked_only_when_it_decides() {
        let mut asked = false;
        bits_to_drop_with(REG | 0o6676, false, || {
            asked = true;
            false
        });
        assert!(!asked, "group-exec: sgid goes whatever the membership");
        bits_to_drop_with(REG | 0o6666, false, || {
            asked = true;
            true
        });
        assert!(asked);
    }

    #[test]
    fn supplementary_groups_come_from_proc_status() {
        let text = "Name:\tx\nGid:\t5\t5\t5\t5\nGroups:\t10 27 1001 \nNSpid:\t1\n";
        assert_eq!(status_groups(text).collect::<Vec<_>>(), vec![10, 27, 1001]);
        assert_eq!(status_groups("Groups:\n").count(), 0);
        // Our own thread: the primary gid counts, a group we are not in does not.
        let me = Ctx {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            pid: std::process::id(),
        };
        assert!(in_group(&me, me.gid));
        let own = fs::read_to_string("/proc/self/status").unwrap();
        let outsider = (60000..65000)
            .find(|g| *g != me.gid && !status_groups(&own).any(|s| s == *g))
            .unwrap();
        assert!(!in_group(&me, outsider));
        let gone = Ctx { pid: 0, ..me };
        assert!(!in_group(&gone, outsider));
    }
}
