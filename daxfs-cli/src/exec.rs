//! `daxfs exec [--mount MNT]... -- CMD [ARGS]...`: runs CMD with the preload library that maps
//! daxfs files straight from the region (true DAX mmap, the `daxfs-preload` crate).
//!
//! Owns: finding the library (`DAXFS_PRELOAD`, else beside the `daxfs` binary, else
//! `../lib/daxfs/` from it), appending it to `LD_PRELOAD`, checking the mounts `--mount` names
//! (each must be a daxfs mount offering direct mappings: else a clear error, nothing run), and
//! replacing this process with CMD.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use daxfs::ioctl::direct::{DaxfsDirectInfo, DAXFS_IOC_DIRECT_INFO, DIRECT_AVAILABLE};
use daxfs::ioctl::Versioned;

/// The library's file name.
pub const LIB_NAME: &str = "libdaxfs_preload.so";
/// The environment variable naming the library explicitly.
pub const PRELOAD_ENV: &str = "DAXFS_PRELOAD";

pub const LONG_ABOUT: &str = "\
Run CMD with the daxfs preload library, so that its mmap() of files on daxfs mounts maps the
region itself: loads and stores go straight to the region (no page cache, no FUSE request per
fault), MAP_SHARED_VALIDATE|MAP_SYNC is accepted, and an access to a poisoned page raises
SIGBUS with si_code BUS_MCEERR_AR and si_addr_lsb 12 or 21, as on fsdax with real media errors.

HOW IT WORKS
    The library (libdaxfs_preload.so) is appended to LD_PRELOAD. Its mmap asks a file of a FUSE
    mount whether it is a daxfs file with direct mapping (DAXFS_IOC_DIRECT_INFO); if so it joins
    the mount's lease socket, opens the region and maps the file's extents of the region
    (DAXFS_IOC_GET_FMAP). Before the layout of a mapped range changes (truncate, punch hole,
    poison, poison clear, allocation into a hole) the daemon revokes it in every process that
    maps it and waits for each to acknowledge; the next access maps it again (or gets SIGBUS
    past the end of the file, as the kernel gives). Every other mmap is untouched. A forked
    child keeps correct mappings (it takes its own leases); exec'd programs load the library
    again.

SECURITY
    A direct mapping gives access to region memory, so it is offered only to a process that
    could open the region itself: the daemon admits a lease connection only for a uid/groups
    that the region's owner and mode allow, and the library's own open() of the region is the
    kernel's permission check. Anyone else keeps the ordinary FUSE mmap.

LIMITS
    Static binaries and raw syscall(SYS_mmap) are not intercepted (they get the FUSE mmap).
    Only files accessed as DAX (dax=always, or dax=inode with FS_XFLAG_DAX) are mapped directly.
    See the daxfs-preload crate's documentation for the rest.

ENVIRONMENT
    DAXFS_PRELOAD   path of libdaxfs_preload.so (default: beside the daxfs binary, then
                    ../lib/daxfs/ from it)
    LD_PRELOAD      extended, not replaced

EXIT STATUS
    CMD's (this process becomes CMD); 127 when CMD cannot be run; 1 for daxfs's own errors.

EXAMPLES
    daxfs exec -- ./pmem-app /mnt/daxfs/pool
    daxfs exec --mount /mnt/daxfs -- fio --ioengine=mmap --filename=/mnt/daxfs/f ...";

/// `daxfs exec` arguments.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Check that MNT is a daxfs mount offering direct mappings (repeatable); fail otherwise.
    #[arg(long = "mount", value_name = "MNT")]
    pub mounts: Vec<PathBuf>,
    /// The command and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<std::ffi::OsString>,
}

/// Where the library is: `DAXFS_PRELOAD`, else beside this binary, else `../lib/daxfs/`.
pub fn find_library() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(PRELOAD_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{PRELOAD_ENV}={} is not a file", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the daxfs binary: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates = [dir.join(LIB_NAME), dir.join("../lib/daxfs").join(LIB_NAME)];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            format!(
            "{LIB_NAME} not found beside {} (nor in ../lib/daxfs/): build it with `cargo build \
             -p daxfs-preload` (into the same target directory) or set {PRELOAD_ENV}=PATH",
            exe.display()
        )
        })
}

/// Checks that `mnt` is a daxfs mount offering direct mappings.
fn check_mount(mnt: &Path) -> Result<(), String> {
    let f = std::fs::File::open(mnt).map_err(|e| format!("--mount {}: {e}", mnt.display()))?;
    let mut i = DaxfsDirectInfo::new_request();
    // SAFETY: the request number encodes the struct's size; `i` is writable for it.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), DAXFS_IOC_DIRECT_INFO as _, &mut i as *mut _) };
    if r < 0 {
        return Err(format!(
            "--mount {}: not a daxfs mount (or a daemon without direct mapping): {}",
            mnt.display(),
            std::io::Error::last_os_error()
        ));
    }
    if i.flags & DIRECT_AVAILABLE == 0 {
        return Err(format!(
            "--mount {}: the daemon does not offer direct mappings (its log says why); \
             programs would get the FUSE mmap",
            mnt.display()
        ));
    }
    Ok(())
}

/// The new `LD_PRELOAD`: the old one with `lib` appended.
pub fn preload_value(old: Option<&std::ffi::OsStr>, lib: &Path) -> std::ffi::OsString {
    let mut v = std::ffi::OsString::new();
    if let Some(o) = old.filter(|o| !o.is_empty()) {
        v.push(o);
        v.push(":");
    }
    v.push(lib);
    v
}

/// Runs `daxfs exec`.
pub fn run(a: ExecArgs) -> Result<ExitCode, String> {
    let lib = find_library()?;
    let lib = std::fs::canonicalize(&lib).unwrap_or(lib);
    for m in &a.mounts {
        check_mount(m)?;
    }
    let (prog, args) = a.cmd.split_first().ok_or("give a command after --")?;
    let value = preload_value(std::env::var_os("LD_PRELOAD").as_deref(), &lib);
    let err = std::process::Command::new(prog)
        .args(args)
        .env("LD_PRELOAD", value)
        .exec();
    eprintln!(
        "daxfs exec: cannot run {}: {err}",
        Path::new(prog).display()
    );
    Ok(ExitCode::from(127))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_is_appended() {
        let lib = Path::new("/x/libdaxfs_preload.so");
        assert_eq!(preload_value(None, lib), "/x/libdaxfs_preload.so");
        assert_eq!(
            preload_value(Some("".as_ref()), lib),
            "/x/libdaxfs_preload.so"
        );
        assert_eq!(
            preload_value(Some("/a.so".as_ref()), lib),
            "/a.so:/x/libdaxfs_preload.so"
        );
    }
}
