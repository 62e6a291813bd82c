//! The real memory-mapping calls, as raw system calls: the library's own `mmap` etc. shadow
//! libc's, and resolving libc's with `dlsym` may allocate (and so call `mmap`) while we are inside
//! `mmap`. Raw syscalls never recurse and never allocate. Rules: every function sets `errno` as
//! libc would and returns libc's value (`MAP_FAILED` / -1).

use libc::{c_int, c_long, c_void, off_t, size_t};

/// `syscall(nr, ...)` returning the raw result (errno set by libc's `syscall` on failure).
unsafe fn sys6(nr: c_long, a: [usize; 6]) -> c_long {
    // SAFETY: the caller passes a valid system call and arguments.
    unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

/// The kernel's `mmap`.
///
/// # Safety
/// As `mmap(2)`.
pub unsafe fn mmap(
    a: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    // SAFETY: forwarded as given.
    let r = unsafe {
        sys6(
            libc::SYS_mmap,
            [
                a as usize,
                len,
                prot as usize,
                flags as usize,
                fd as usize,
                off as usize,
            ],
        )
    };
    if r == -1 {
        libc::MAP_FAILED
    } else {
        r as *mut c_void
    }
}

/// The kernel's `munmap`.
///
/// # Safety
/// As `munmap(2)`.
pub unsafe fn munmap(a: *mut c_void, len: size_t) -> c_int {
    // SAFETY: forwarded as given.
    unsafe { sys6(libc::SYS_munmap, [a as usize, len, 0, 0, 0, 0]) as c_int }
}

/// The kernel's `mprotect`.
///
/// # Safety
/// As `mprotect(2)`.
pub unsafe fn mprotect(a: *mut c_void, len: size_t, prot: c_int) -> c_int {
    // SAFETY: forwarded as given.
    unsafe {
        sys6(
            libc::SYS_mprotect,
            [a as usize, len, prot as usize, 0, 0, 0],
        ) as c_int
    }
}

/// The kernel's `madvise`.
///
/// # Safety
/// As `madvise(2)`.
pub unsafe fn madvise(a: *mut c_void, len: size_t, advice: c_int) -> c_int {
    // SAFETY: forwarded as given.
    unsafe {
        sys6(
            libc::SYS_madvise,
            [a as usize, len, advice as usize, 0, 0, 0],
        ) as c_int
    }
}

/// The kernel's `msync`.
///
/// # Safety
/// As `msync(2)`.
pub unsafe fn msync(a: *mut c_void, len: size_t, flags: c_int) -> c_int {
    // SAFETY: forwarded as given.
    unsafe { sys6(libc::SYS_msync, [a as usize, len, flags as usize, 0, 0, 0]) as c_int }
}

/// The kernel's `mremap` (`new_addr` used with `MREMAP_FIXED`).
///
/// # Safety
/// As `mremap(2)`.
pub unsafe fn mremap(
    a: *mut c_void,
    old: size_t,
    new: size_t,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    // SAFETY: forwarded as given.
    let r = unsafe {
        sys6(
            libc::SYS_mremap,
            [a as usize, old, new, flags as usize, new_addr as usize, 0],
        )
    };
    if r == -1 {
        libc::MAP_FAILED
    } else {
        r as *mut c_void
    }
}

/// The calling thread's `errno`.
pub fn errno() -> c_int {
    // SAFETY: errno is thread-local and always valid.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
pub fn set_errno(e: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e }
}
