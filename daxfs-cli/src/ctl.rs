//! The client side of the control ioctls: open a file or mount root, issue a request, decode.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use daxfs::fs::{MappingInfo, RegionStat};
use daxfs::ioctl::*;

/// Issues `cmd` with `arg` on `file`. Return: the errno on failure.
fn ioctl<T: Versioned>(file: &File, cmd: u32, arg: &mut T) -> Result<(), nix::errno::Errno> {
    debug_assert_eq!(ioc_size(cmd), std::mem::size_of::<T>());
    // SAFETY: `arg` is a live, exclusively borrowed #[repr(C)] struct of exactly _IOC_SIZE(cmd)
    // bytes (asserted above and by the ABI's const assertions), so the kernel reads and writes
    // within it; `file`'s descriptor is open for the duration of the call.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), cmd as _, arg as *mut T) };
    if r < 0 {
        Err(nix::errno::Errno::last())
    } else {
        Ok(())
    }
}

/// Explains an errno from a control request on `what`.
pub fn explain(what: &Path, req: &str, e: nix::errno::Errno) -> String {
    use nix::errno::Errno::*;
    let w = what.display();
    match e {
        ENOTTY | EINVAL if req == "stat" => {
            format!("{w} is not on a daxfs mount (or the daemon speaks another ABI version): {e}")
        }
        ENOTTY => format!("{w} is not on a daxfs mount"),
        ENOSYS => format!("{req}: not implemented by this daxfs daemon yet ({e})"),
        EPERM => format!("{req} on {w}: only root or the mount's owner may do this ({e})"),
        EINVAL if req.starts_with("poison") => format!(
            "{req} on {w}: the daemon refused the range (a region range must lie in the data \
             area, after the region's metadata; a file range inside the file, which may have \
             shrunk meanwhile) or speaks another ABI version ({e})"
        ),
        EINVAL => format!(
            "{req} on {w}: the daemon refused the arguments (out of range, or another ABI \
             version) ({e})"
        ),
        ENOTCONN => {
            format!("{w}: the daxfs daemon is gone; run 'daxfs umount' on the mount point ({e})")
        }
        _ => format!("{req} on {w}: {e}"),
    }
}

/// `DAXFS_IOC_STAT` on any file of a mount.
pub fn stat(target: &Path) -> Result<RegionStat, String> {
    let f = File::open(target).map_err(|e| format!("cannot open {}: {e}", target.display()))?;
    let mut s = DaxfsStat::new_request();
    ioctl(&f, DAXFS_IOC_STAT, &mut s).map_err(|e| explain(target, "stat", e))?;
    Ok(RegionStat {
        size: s.region_size,
        block_size: s.block_size,
        used_blocks: s.used_blocks,
        free_blocks: s.free_blocks,
        free_2m_runs: s.free_2m_runs,
        inodes_used: s.inodes_used,
        inodes_total: s.inodes_total,
        bad_blocks: s.bad_blocks,
    })
}

/// `DAXFS_IOC_REQ_STATS` on any file of a mount: `(opcode, count)` for every slot.
pub fn req_stats(target: &Path) -> Result<Vec<(usize, u64)>, String> {
    let f = File::open(target).map_err(|e| format!("cannot open {}: {e}", target.display()))?;
    let mut r = DaxfsReqStats::new_request();
    ioctl(&f, DAXFS_IOC_REQ_STATS, &mut r).map_err(|e| explain(target, "stat --requests", e))?;
    let n = (r.nr_slots as usize).min(REQ_STATS_SLOTS);
    Ok(r.counts[..n].iter().copied().enumerate().collect())
}

/// `DAXFS_IOC_GET_MAPPINGS`, every page.
pub fn mappings(file: &Path) -> Result<Vec<MappingInfo>, String> {
    let f = File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let mut out = Vec::new();
    let mut cursor = 0;
    loop {
        let mut m = DaxfsMappings::new_request();
        m.cursor = cursor;
        ioctl(&f, DAXFS_IOC_GET_MAPPINGS, &mut m).map_err(|e| explain(file, "mappings", e))?;
        let n = (m.count as usize).min(MAPPINGS_PER_CALL);
        out.extend(m.entries[..n].iter().map(|e| MappingInfo {
            file_index: e.file_index,
            order: e.order,
            region_block: e.region_block,
            flags: e.flags,
        }));
        if m.flags & MORE == 0 || n == 0 {
            return Ok(out);
        }
        cursor = m.cursor;
    }
}

/// `DAXFS_IOC_INJECT_POISON_REPORT` / `DAXFS_IOC_CLEAR_POISON_REPORT`: what the daemon did, or
/// `None` from a daemon that predates the reporting requests (then the `_IOW` forms did it).
pub fn poison(
    target: &Path,
    by_region: bool,
    offset: u64,
    len: u64,
    clear: bool,
) -> Result<Option<DaxfsPoisonReport>, String> {
    let f = File::open(target).map_err(|e| format!("cannot open {}: {e}", target.display()))?;
    let mut p = DaxfsPoisonReport::new_request();
    p.flags = if by_region { POISON_BY_REGION } else { 0 };
    p.offset = offset;
    p.len = len;
    let (cmd, old, name) = if clear {
        (
            DAXFS_IOC_CLEAR_POISON_REPORT,
            DAXFS_IOC_CLEAR_POISON,
            "poison clear",
        )
    } else {
        (
            DAXFS_IOC_INJECT_POISON_REPORT,
            DAXFS_IOC_INJECT_POISON,
            "poison inject",
        )
    };
    match ioctl(&f, cmd, &mut p) {
        Ok(()) => Ok(Some(p)),
        Err(nix::errno::Errno::ENOTTY) => {
            let mut q = p.request();
            ioctl(&f, old, &mut q).map_err(|e| explain(target, name, e))?;
            Ok(None)
        }
        Err(e) => Err(explain(target, name, e)),
    }
}

/// `DAXFS_IOC_LIST_BADBLOCKS`, every page.
pub fn badblocks(mountpoint: &Path) -> Result<Vec<DaxfsBadBlock>, String> {
    let f =
        File::open(mountpoint).map_err(|e| format!("cannot open {}: {e}", mountpoint.display()))?;
    let mut out = Vec::new();
    let mut cursor = 0;
    loop {
        let mut b = DaxfsBadBlocks::new_request();
        b.cursor = cursor;
        ioctl(&f, DAXFS_IOC_LIST_BADBLOCKS, &mut b)
            .map_err(|e| explain(mountpoint, "poison list", e))?;
        let n = (b.count as usize).min(BADBLOCKS_PER_CALL);
        out.extend_from_slice(&b.entries[..n]);
        if b.flags & MORE == 0 || n == 0 {
            return Ok(out);
        }
        cursor = b.cursor;
    }
}
