//! What the daemon may learn of a requesting process's open files and limits without touching
//! them: `/proc/PID/fdinfo/FD` (open flags, mount id, inode number) and `/proc/PID/limits`.
//!
//! Used by requests whose argument names a descriptor of the caller (`XFS_IOC_EXCHANGE_RANGE`'s
//! `file1_fd`). The file is never opened, stat'ed or read through the mount: that would send a
//! request to this daemon from one of its own serving threads (a deadlock with one `/dev/fuse`
//! thread). `PID` is the requesting thread's id as FUSE reports it (a thread id names its
//! process's fd table too). The answer is a snapshot: the caller may close the fd meanwhile, which
//! is the caller's race, as with any fd argument.

use std::fs;

use crate::fs::{Errno, FsResult};

/// One open file of a process, as `/proc/PID/fdinfo/FD` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdInfo {
    /// The open flags (`O_ACCMODE`, `O_APPEND`, ...).
    pub flags: i32,
    /// The id of the mount the file was opened through.
    pub mnt_id: u64,
    /// The file's inode number on that mount's filesystem.
    pub ino: u64,
}

impl FdInfo {
    /// Whether it was opened for reading and writing.
    pub fn read_write(&self) -> bool {
        self.flags & libc::O_ACCMODE == libc::O_RDWR
    }

    /// Whether it was opened `O_APPEND`.
    pub fn append(&self) -> bool {
        self.flags & libc::O_APPEND != 0
    }
}

/// Parses the text of an fdinfo file (`None` when a field is missing).
pub fn parse_fdinfo(text: &str) -> Option<FdInfo> {
    let (mut flags, mut mnt_id, mut ino) = (None, None, None);
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "flags" => flags = i32::from_str_radix(v, 8).ok(),
            "mnt_id" => mnt_id = v.parse().ok(),
            "ino" => ino = v.parse().ok(),
            _ => {}
        }
    }
    Some(FdInfo {
        flags: flags?,
        mnt_id: mnt_id?,
        ino: ino?,
    })
}

/// The open file `fd` of thread `pid`: `EBADF` when it has no such descriptor.
pub fn fd_info(pid: u32, fd: i32) -> FsResult<FdInfo> {
    if fd < 0 {
        return Err(Errno::EBADF);
    }
    let text = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).map_err(|_| Errno::EBADF)?;
    parse_fdinfo(&text).ok_or(Errno::EBADF)
}

/// Every open file of thread `pid` whose inode number is `ino` (on any filesystem).
pub fn fds_of_inode(pid: u32, ino: u64) -> Vec<FdInfo> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    dir.filter_map(|e| fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|t| parse_fdinfo(&t))
        .filter(|i| i.ino == ino)
        .collect()
}

/// Parses the soft "Max file size" limit of a `/proc/PID/limits` text, in bytes (`None`:
/// unlimited or not found).
pub fn parse_fsize_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max file size"))?;
    let soft = line["Max file size".len()..].split_whitespace().next()?;
    soft.parse().ok()
}

/// The soft `RLIMIT_FSIZE` of thread `pid` (`None`: unlimited or unreadable).
pub fn fsize_limit(pid: u32) -> Option<u64> {
    parse_fsize_limit(&fs::read_to_string(format!("/proc/{pid}/limits")).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_and_limits_parse() {
        let t = "pos:\t0\nflags:\t02102002\nmnt_id:\t41\nino:\t12\n";
        let i = parse_fdinfo(t).unwrap();
        assert_eq!((i.mnt_id, i.ino), (41, 12));
        assert!(i.read_write() && i.append());
        assert_eq!(parse_fdinfo("pos:\t0\nflags:\t0\n"), None);
        let l = "Limit                     Soft Limit           Hard Limit           Units     \n\
                 Max cpu time              unlimited            unlimited            seconds   \n\
                 Max file size             262144               unlimited            bytes     \n";
        assert_eq!(parse_fsize_limit(l), Some(262144));
        assert_eq!(parse_fsize_limit(&l.replace("262144 ", "unlimited")), None);
    }

    #[test]
    fn our_own_fds_are_found() {
        let f = tempfile::tempfile().unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let me = std::process::id();
        let i = fd_info(me, fd).unwrap();
        assert!(i.read_write());
        let st = nix::sys::stat::fstat(&f).unwrap();
        assert_eq!(i.ino, st.st_ino);
        assert!(fds_of_inode(me, st.st_ino).contains(&i));
        assert_eq!(fd_info(me, 1 << 20), Err(Errno::EBADF));
        assert_eq!(fd_info(me, -1), Err(Errno::EBADF));
    }
}
