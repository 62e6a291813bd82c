//! The interposed C functions: `mmap`/`mmap64`, `munmap`, `mprotect`, `mremap`, `madvise`,
//! `sigaction`, `signal`. Each goes straight to the kernel unless it concerns a daxfs file or a
//! direct mapping (a process without direct mappings pays one atomic load per call).
//!
//! Rules kept: `munmap`, `MAP_FIXED` over a direct mapping and `mprotect` change the address
//! space and the tables under the table lock (no revocation maps into a range just unmapped);
//! `MADV_REMOVE` on a direct mapping punches the daxfs file (never the region);
//! `MADV_HWPOISON`/`MADV_SOFT_OFFLINE` fail with `EINVAL` (use `daxfs poison inject`);
//! `mremap` of a direct mapping makes a new direct mapping of the same file pages (copy-on-write
//! pages of a private mapping are not carried over: see the crate's limits).

use std::sync::atomic::Ordering;

use libc::{c_int, c_void, off_t, size_t};

use crate::map::{self, release_files};
use crate::sys;
use crate::table::{NMAPS, TABLES};

fn have_maps() -> bool {
    NMAPS.load(Ordering::Relaxed) > 0
}

/// The kernel's mmap, forgetting what `MAP_FIXED` replaces.
unsafe fn kernel_mmap(
    a: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    if flags & libc::MAP_FIXED == 0 || !have_maps() {
        // SAFETY: forwarded.
        return unsafe { sys::mmap(a, len, prot, flags, fd, off) };
    }
    TABLES.lock();
    // SAFETY: forwarded; the lock is held.
    let r = unsafe { sys::mmap(a, len, prot, flags, fd, off) };
    if r != libc::MAP_FAILED {
        // SAFETY: locked above.
        let t = unsafe { TABLES.held() };
        let gone = t.forget_range(r as usize, len);
        release_files(t, &gone);
    }
    TABLES.unlock();
    r
}

/// # Safety
/// As `mmap(2)`.
#[no_mangle]
pub unsafe extern "C" fn mmap(
    a: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    // SAFETY: the caller's arguments.
    unsafe {
        if let Some(r) = map::direct_mmap(a, len, prot, flags, fd, off) {
            return r;
        }
        kernel_mmap(a, len, prot, flags, fd, off)
    }
}

/// # Safety
/// As `mmap(2)`.
#[no_mangle]
pub unsafe extern "C" fn mmap64(
    a: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    // SAFETY: the caller's arguments.
    unsafe { mmap(a, len, prot, flags, fd, off) }
}

/// # Safety
/// As `munmap(2)`.
#[no_mangle]
pub unsafe extern "C" fn munmap(a: *mut c_void, len: size_t) -> c_int {
    if !have_maps() {
        // SAFETY: forwarded.
        return unsafe { sys::munmap(a, len) };
    }
    TABLES.with(|t| {
        // SAFETY: forwarded; the lock is held.
        let r = unsafe { sys::munmap(a, len) };
        if r == 0 {
            let gone = t.forget_range(a as usize, len.div_ceil(4096) * 4096);
            release_files(t, &gone);
        }
        r
    })
}

/// # Safety
/// As `mprotect(2)`.
#[no_mangle]
pub unsafe extern "C" fn mprotect(a: *mut c_void, len: size_t, prot: c_int) -> c_int {
    if !have_maps() {
        // SAFETY: forwarded.
        return unsafe { sys::mprotect(a, len, prot) };
    }
    TABLES.with(|t| {
        // SAFETY: forwarded; the lock is held.
        let r = unsafe { sys::mprotect(a, len, prot) };
        if r == 0 {
            t.set_prot(a as usize, len.div_ceil(4096) * 4096, prot);
        }
        r
    })
}

/// The direct mappings `[a, a + len)` touches: (file descriptor, file byte range) of each.
fn touched(a: usize, len: usize) -> ([(c_int, u64, u64); 8], usize) {
    TABLES.with(|t| {
        let mut out = [(0, 0, 0); 8];
        let mut n = 0;
        for m in t.maps.iter().filter(|m| m.used) {
            let (s, e) = (m.start.max(a), m.end().min(a.saturating_add(len)));
            if s < e && n < out.len() {
                let off = m.pgoff * 4096 + (s - m.start) as u64;
                out[n] = (t.files[m.file].fd, off, (e - s) as u64);
                n += 1;
            }
        }
        (out, n)
    })
}

/// # Safety
/// As `madvise(2)`.
#[no_mangle]
pub unsafe extern "C" fn madvise(a: *mut c_void, len: size_t, advice: c_int) -> c_int {
    if have_maps() {
        let (t, n) = touched(a as usize, len);
        if n > 0 {
            match advice {
                libc::MADV_HWPOISON | libc::MADV_SOFT_OFFLINE => {
                    sys::set_errno(libc::EINVAL);
                    return -1;
                }
                libc::MADV_REMOVE => {
                    for &(fd, off, l) in &t[..n] {
                        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
                        // SAFETY: punching our own file descriptor's range.
                        if unsafe { libc::fallocate(fd, mode, off as i64, l as i64) } < 0 {
                            return -1;
                        }
                    }
                    return 0;
                }
                _ => {}
            }
        }
    }
    // SAFETY: forwarded.
    unsafe { sys::madvise(a, len, advice) }
}

/// # Safety
/// As `mremap(2)`.
#[no_mangle]
pub unsafe extern "C" fn mremap(
    a: *mut c_void,
    old: size_t,
    new: size_t,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    // mremap is variadic in C; the fifth argument arrives in the same register as a fixed one
    // (x86-64 and arm64 Linux) and is only read with MREMAP_FIXED, as the kernel does.
    let new_addr = if flags & libc::MREMAP_FIXED != 0 {
        new_addr
    } else {
        std::ptr::null_mut()
    };
    let (t, n) = if have_maps() {
        touched(a as usize, old.max(1))
    } else {
        ([(0, 0, 0); 8], 0)
    };
    if n == 0 {
        // SAFETY: forwarded.
        return unsafe { sys::mremap(a, old, new, flags, new_addr) };
    }
    // SAFETY: the caller's arguments.
    unsafe { remap_direct(a, old, new, flags, new_addr, t[0]) }
}

/// `mremap` of a direct mapping: shrinking unmaps the tail; growing maps the file's next pages
/// after it (`MAP_FIXED_NOREPLACE`), else (with `MREMAP_MAYMOVE`, or to `MREMAP_FIXED`'s
/// address) a new direct mapping of the same file pages replaces the old one.
unsafe fn remap_direct(
    a: *mut c_void,
    old: size_t,
    new: size_t,
    flags: c_int,
    new_addr: *mut c_void,
    (fd, off, _): (c_int, u64, u64),
) -> *mut c_void {
    let fail = |e| {
        sys::set_errno(e);
        libc::MAP_FAILED
    };
    if flags & libc::MREMAP_DONTUNMAP != 0 || new == 0 || !(a as usize).is_multiple_of(4096) {
        return fail(libc::EINVAL);
    }
    let (old, new) = (old.div_ceil(4096) * 4096, new.div_ceil(4096) * 4096);
    let moving = flags & libc::MREMAP_FIXED != 0;
    let Some((prot, shared)) = TABLES.with(|t| {
        t.map_at(a as usize)
            .map(|i| (t.maps[i].prot, t.maps[i].shared))
    }) else {
        return fail(libc::EFAULT);
    };
    let kind = if shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    // SAFETY: our own interposers on the caller's ranges.
    unsafe {
        if !moving && new <= old {
            if new < old && munmap((a as usize + new) as *mut c_void, old - new) < 0 {
                return libc::MAP_FAILED;
            }
            return a;
        }
        if !moving {
            let tail = (a as usize + old) as *mut c_void;
            let fl = kind | map::MAP_FIXED_NOREPLACE;
            if mmap(tail, new - old, prot, fl, fd, (off + old as u64) as off_t) == tail {
                return a;
            }
            if flags & libc::MREMAP_MAYMOVE == 0 {
                return fail(libc::ENOMEM);
            }
        }
        let fl = kind | if moving { libc::MAP_FIXED } else { 0 };
        let r = mmap(new_addr, new, prot, fl, fd, off as off_t);
        if r != libc::MAP_FAILED {
            munmap(a, old);
        }
        r
    }
}

/// # Safety
/// As `sigaction(2)`.
#[no_mangle]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    // SAFETY: the caller's arguments.
    unsafe { crate::signal::sigaction(sig, act, old) }
}

/// # Safety
/// As `signal(2)`.
#[no_mangle]
pub unsafe extern "C" fn signal(sig: c_int, h: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: the caller's arguments.
    unsafe { crate::signal::signal(sig, h) }
}
