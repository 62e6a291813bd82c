//! `SIGBUS`: the library's handler, which maps placeholder pages of direct mappings again and
//! turns accesses to poisoned pages into the hardware's signal, and the `sigaction`/`signal`
//! interposers that keep the application's own handler behind it.
//!
//! Owns: the application's `SIGBUS` action while ours is installed, and delivering to it. Rules:
//! - Installed only once the process has a direct mapping; until then `sigaction` and `signal`
//!   go straight to libc. Afterwards the application's calls for `SIGBUS` read and replace
//!   its own recorded action; ours stays in the kernel.
//! - A fault in a direct mapping is resolved first ([`crate::map::resolve`]): a page that maps
//!   again is retried silently; past the end of the file the kernel's own siginfo (`BUS_ADRERR`,
//!   the faulting address) is delivered; a poisoned page gets `BUS_MCEERR_AR` with `si_addr` =
//!   **the faulting address** (as the kernel's fault path reports an access to an already
//!   poisoned page) and `si_addr_lsb` from the entry the daemon found (21 for a PMD entry, 12
//!   for a PTE one).
//! - Delivery follows the kernel: the application's handler runs with its `sa_mask` (and the
//!   signal, unless `SA_NODEFER`) blocked, `SA_RESETHAND` is honoured; with the default action
//!   (or `SIG_IGN`, which a fault cannot ignore) the default is restored and the access faults
//!   again, so the process dies of `SIGBUS`.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libc::{c_int, c_void, sigaction as SigAction, siginfo_t};

use crate::map::{self, Fault};
use crate::sys;

pub const BUS_ADRERR: c_int = 2;
pub const BUS_MCEERR_AR: c_int = 4;

type RealSigaction = unsafe extern "C" fn(c_int, *const SigAction, *mut SigAction) -> c_int;
type RealSignal = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;

static REAL_SIGACTION: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGNAL: AtomicUsize = AtomicUsize::new(0);

fn next_symbol(cache: &AtomicUsize, name: &std::ffi::CStr) -> usize {
    let p = cache.load(Ordering::Acquire);
    if p != 0 {
        return p;
    }
    // SAFETY: dlsym with a NUL-terminated name.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    cache.store(p, Ordering::Release);
    p
}

/// libc's `sigaction`.
///
/// # Safety
/// As `sigaction(2)`.
pub unsafe fn real_sigaction(sig: c_int, act: *const SigAction, old: *mut SigAction) -> c_int {
    let p = next_symbol(&REAL_SIGACTION, c"sigaction");
    if p == 0 {
        sys::set_errno(libc::ENOSYS);
        return -1;
    }
    // SAFETY: `p` is libc's sigaction; the arguments are the caller's.
    unsafe { std::mem::transmute::<usize, RealSigaction>(p)(sig, act, old) }
}

struct App {
    lock: AtomicBool,
    act: UnsafeCell<Option<SigAction>>,
}
// SAFETY: `act` is only reached under `lock`.
unsafe impl Sync for App {}
static APP: App = App {
    lock: AtomicBool::new(false),
    act: UnsafeCell::new(None),
};
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Runs `f` on the application's recorded action.
fn with_app<R>(f: impl FnOnce(&mut Option<SigAction>) -> R) -> R {
    while APP
        .lock
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
    // SAFETY: the lock is held.
    let r = f(unsafe { &mut *APP.act.get() });
    APP.lock.store(false, Ordering::Release);
    r
}

/// Installs the library's `SIGBUS` handler (once), recording the current action as the
/// application's.
pub fn install() {
    if INSTALLED.load(Ordering::Acquire) {
        return;
    }
    with_app(|app| {
        if INSTALLED.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: plain data; filled by the kernel.
        let mut old: SigAction = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers.
        if unsafe { real_sigaction(libc::SIGBUS, std::ptr::null(), &mut old) } < 0 {
            return;
        }
        // SAFETY: as above.
        let mut ours: SigAction = unsafe { std::mem::zeroed() };
        ours.sa_sigaction = on_sigbus as *const () as usize;
        ours.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | (old.sa_flags & libc::SA_ONSTACK);
        // SAFETY: valid pointers.
        if unsafe { real_sigaction(libc::SIGBUS, &ours, std::ptr::null_mut()) } == 0 {
            *app = Some(old);
            INSTALLED.store(true, Ordering::Release);
        }
    });
}

/// The interposed `sigaction` (see the module comment).
///
/// # Safety
/// As `sigaction(2)`.
pub unsafe fn sigaction(sig: c_int, act: *const SigAction, old: *mut SigAction) -> c_int {
    if sig != libc::SIGBUS || !INSTALLED.load(Ordering::Acquire) {
        // SAFETY: the caller's arguments.
        return unsafe { real_sigaction(sig, act, old) };
    }
    with_app(|app| {
        // SAFETY: the caller's pointers, as sigaction(2) takes them.
        unsafe {
            if !old.is_null() {
                // SAFETY: plain data.
                *old = app.unwrap_or_else(|| std::mem::zeroed());
            }
            if !act.is_null() {
                *app = Some(*act);
            }
        }
    });
    0
}

/// The interposed `signal` (BSD semantics, as glibc's).
///
/// # Safety
/// As `signal(2)`.
pub unsafe fn signal(sig: c_int, h: libc::sighandler_t) -> libc::sighandler_t {
    if sig != libc::SIGBUS || !INSTALLED.load(Ordering::Acquire) {
        let p = next_symbol(&REAL_SIGNAL, c"signal");
        if p == 0 {
            return libc::SIG_ERR;
        }
        // SAFETY: libc's signal.
        return unsafe { std::mem::transmute::<usize, RealSignal>(p)(sig, h) };
    }
    // SAFETY: plain data.
    let mut act: SigAction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = h;
    act.sa_flags = libc::SA_RESTART;
    // SAFETY: local sigset.
    unsafe { libc::sigaddset(&mut act.sa_mask, sig) };
    // SAFETY: plain data.
    let mut old: SigAction = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    unsafe { sigaction(sig, &act, &mut old) };
    old.sa_sigaction
}

/// siginfo_t field offsets (x86-64 and arm64): `si_code`, `si_addr`, `si_addr_lsb`.
const SI_CODE: usize = 8;
const SI_ADDR: usize = 16;
const SI_LSB: usize = 24;

extern "C" fn on_sigbus(sig: c_int, info: *mut siginfo_t, uc: *mut c_void) {
    let saved = sys::errno();
    // SAFETY: the kernel's siginfo, 128 bytes.
    let (code, addr) = unsafe {
        let b = info as *const u8;
        (
            (b.add(SI_CODE) as *const c_int).read_unaligned(),
            (b.add(SI_ADDR) as *const usize).read_unaligned(),
        )
    };
    let fault = if code > 0 {
        map::resolve(addr)
    } else {
        Fault::NotOurs
    };
    match fault {
        Fault::Fixed => {}
        Fault::Poisoned(lsb) => {
            // SAFETY: a copy of the kernel's siginfo with the hardware's code and lsb.
            let mut si: siginfo_t = unsafe { *info };
            // SAFETY: SI_CODE and SI_LSB are offsets inside `siginfo_t` (the kernel's layout)
            // and `si` is a local copy; unaligned writes need no alignment.
            unsafe {
                let b = &mut si as *mut siginfo_t as *mut u8;
                (b.add(SI_CODE) as *mut c_int).write_unaligned(BUS_MCEERR_AR);
                (b.add(SI_LSB) as *mut i16).write_unaligned(lsb as i16);
            }
            forward(sig, &mut si, uc, code);
        }
        _ => forward(sig, info, uc, code),
    }
    sys::set_errno(saved);
}

/// Delivers `info` to the application's action (see the module comment).
fn forward(sig: c_int, info: *mut siginfo_t, uc: *mut c_void, code: c_int) {
    let Some(act) = with_app(|a| *a) else {
        return;
    };
    let h = act.sa_sigaction;
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        if code <= 0 && h == libc::SIG_IGN {
            return;
        }
        // SAFETY: plain data.
        let mut dfl: SigAction = unsafe { std::mem::zeroed() };
        dfl.sa_sigaction = libc::SIG_DFL;
        // SAFETY: valid pointers.
        unsafe { real_sigaction(sig, &dfl, std::ptr::null_mut()) };
        if code <= 0 {
            // Sent, not a fault: send it again; it is delivered (and kills) once we return.
            // SAFETY: plain syscalls.
            unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::gettid(), sig) };
        }
        return; // a fault: the access faults again, with the default action
    }
    if act.sa_flags & libc::SA_RESETHAND != 0 {
        with_app(|a| {
            if let Some(a) = a {
                a.sa_sigaction = libc::SIG_DFL;
            }
        });
    }
    // SAFETY: sigset manipulation on local copies; `uc` is the kernel's ucontext.
    unsafe {
        let mut mask = (*(uc as *const libc::ucontext_t)).uc_sigmask;
        for s in 1..65 {
            if libc::sigismember(&act.sa_mask, s) == 1 {
                libc::sigaddset(&mut mask, s);
            }
        }
        if act.sa_flags & libc::SA_NODEFER == 0 {
            libc::sigaddset(&mut mask, sig);
        }
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_SETMASK, &mask, &mut old);
        if act.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) = std::mem::transmute(h);
            f(sig, info, uc);
        } else {
            let f: extern "C" fn(c_int) = std::mem::transmute(h);
            f(sig);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}
