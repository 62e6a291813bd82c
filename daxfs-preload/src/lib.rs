//! `libdaxfs_preload.so`: true DAX `mmap` for programs run under `daxfs exec` (the famfs way:
//! the application maps the file's extents of the region itself).
//!
//! # Design
//!
//! `mmap` of a regular file on a FUSE mount asks the file `DAXFS_IOC_DIRECT_INFO`; when the
//! daxfs mount offers direct mappings and the file is a DAX inode, the library joins the mount
//! once (connects to its lease socket — the daemon admits only those who may open the region —
//! and opens the region itself: the kernel's permission check is the security check), maps the
//! whole range as a *placeholder* (an empty memfd: any access raises `SIGBUS`), then fetches the
//! file's extent map with `DAXFS_IOC_GET_FMAP` (taking a layout lease of the range, allocating
//! holes first for a writable shared mapping, as a write fault would) and maps each data extent
//! of the region at its place, `MAP_SHARED` or `MAP_PRIVATE` (copy on write); holes of other
//! mappings are private zero pages. Loads and stores then hit the region: no page cache, no
//! request per fault. `MAP_SYNC` is accepted (`MAP_SHARED_VALIDATE | MAP_SYNC` succeeds: a
//! store is in the region when it retires), `MAP_POPULATE` is passed on, mappings of 2 MiB or
//! more are placed at addresses congruent to the file offset modulo 2 MiB so that PMD extents
//! can be PMD-mapped where the region's backing allows it. Any other file descriptor goes
//! straight to the kernel ([`sys`]: raw system calls, no `dlsym` for memory calls).
//!
//! Revocation ([`lease`]): a thread per mount (started lazily, every signal blocked) receives
//! the daemon's revocations, replaces the range in every mapping by the placeholder under the
//! table lock, and acknowledges. The next access faults into the library's `SIGBUS` handler
//! ([`signal`], [`map::resolve`]), which fetches the page's extent again: data or hole → mapped
//! again and the access retried (a punched range maps through the normal path); past the end
//! of the file → the kernel's own `SIGBUS` `BUS_ADRERR`; poisoned → `BUS_MCEERR_AR` with the
//! faulting address and `si_addr_lsb` 21 or 12 by the size of the entry the daemon's
//! lock-then-walk found (the size of the poisoning revocation: one PMD entry or one page).
//! When the lease connection ends, every mapping of the mount is fenced the same way.
//!
//! `fork`: the child opens its own lease connection and registers every inherited mapping
//! before the parent returns from `fork` ([`lease`]); `exec` drops mappings and connections
//! (close-on-exec), and the new program loads the library again from `LD_PRELOAD`.
//!
//! # Limits
//!
//! - Static binaries and raw `syscall(SYS_mmap)` are not intercepted: they get the FUSE mmap.
//! - A revocation of a private mapping's range discards its copy-on-write pages there (the
//!   kernel keeps them on punch); `mremap` that moves or grows a direct mapping makes a new one
//!   of the same file pages (private copies are not carried over).
//! - Fixed-size tables: 8 mounts, 256 mapped files, 2048 mapping pieces per process; beyond
//!   them mappings are the kernel's (FUSE) ones.
//! - The application's `SIGBUS` handler runs from inside the library's (same stack, same
//!   `ucontext`); `sigaltstack` is honoured when the application's action had `SA_ONSTACK` at
//!   the time of the first direct mapping.
//! - `msync` goes straight to the kernel (it syncs the region's pages); `mtime` is updated when
//!   a writable shared mapping is made or faulted in, not per store.
//! - A page that is not mapped yet (never touched, or revoked) is the placeholder: a user-space
//!   access faults into the library and is mapped, but a system call that copies from or to it
//!   (`write(fd, mapped_buf, …)`) gets `EFAULT`, as the kernel cannot run our handler. Pages a
//!   growth makes valid are mapped before the growth returns (the daemon sends their layout
//!   with the revocation, at most 16 extents); holes under a writable shared mapping after a
//!   truncate up are not (they need an allocation, which the fault does).

pub mod abi;
pub mod calls;
pub mod lease;
pub mod map;
pub mod signal;
pub mod sys;
pub mod table;

static DEBUG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Reads `DAXFS_PRELOAD_DEBUG` (set: the library says on stderr why a fault failed).
fn init_debug() {
    DEBUG.store(
        std::env::var_os("DAXFS_PRELOAD_DEBUG").is_some(),
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// Writes `daxfs-preload: MSG N` to stderr when debugging (allocation-free: a signal handler
/// may call it).
fn debug(msg: &[u8], n: u64) {
    if !DEBUG.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let mut b = [0u8; 160];
    let mut k = 0;
    for &c in b"daxfs-preload: ".iter().chain(msg.iter().take(100)) {
        b[k] = c;
        k += 1;
    }
    let mut d = [0u8; 20];
    let (mut v, mut nd) = (n, 0);
    loop {
        d[nd] = b'0' + (v % 10) as u8;
        nd += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in (0..nd).rev() {
        b[k] = d[i];
        k += 1;
    }
    b[k] = b'\n';
    // SAFETY: writes our own buffer.
    unsafe { libc::write(2, b.as_ptr().cast(), k + 1) };
}
