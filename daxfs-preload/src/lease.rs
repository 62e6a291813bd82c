//! The lease connection of each mount: joining (the daemon's admission is the region's
//! permission check), the thread that applies revocations, and `fork`.
//!
//! Owns: connecting and the welcome, the per-mount revocation thread (created lazily with every
//! signal blocked), applying a revocation, fencing every mapping when the connection ends, and
//! the `pthread_atfork` handlers. Rules kept:
//! - **A revocation is acknowledged only once the range no longer maps the old blocks**: every
//!   page of the range in every mapping of the file is replaced, under the table lock, by the
//!   placeholder (an empty memfd, so an access raises `SIGBUS` and the handler maps it again
//!   through `GET_FMAP`, or reports past-EOF / poison as the kernel would). A growth revokes
//!   nothing (its pages were past the end: the placeholder); its extent hints map them before
//!   the acknowledgement.
//! - **A forked child gets its own lease connection before the parent goes on**: the prepare
//!   handler takes the table lock (no revocation is applied in the parent meanwhile), the child
//!   connects, registers every inherited mapping (`REGISTER`, then `SYNC`/`SYNCED` so the
//!   daemon has them), starts its thread and tells the parent through a pipe; only then does the
//!   parent release the lock. A revocation the daemon started meanwhile reaches the child through
//!   its registration (the daemon's rule 1).
//! - When the connection ends (daemon gone or unmounted), every mapping of the mount is fenced
//!   (replaced by the placeholder): nothing keeps pointing at blocks nobody guards.

use std::sync::atomic::{AtomicI32, Ordering};

use crate::abi::*;
use crate::sys;
use crate::table::{Tables, MAX_MOUNTS, TABLES};

/// The placeholder's memfd (size 0: every access through it raises `SIGBUS`, `BUS_ADRERR`).
static PLACEHOLDER: AtomicI32 = AtomicI32::new(-1);

/// The placeholder descriptor, created once.
pub fn placeholder_fd() -> i32 {
    let fd = PLACEHOLDER.load(Ordering::Acquire);
    if fd >= 0 {
        return fd;
    }
    // SAFETY: plain syscall with a NUL-terminated name.
    let new = unsafe { libc::memfd_create(c"daxfs-placeholder".as_ptr(), libc::MFD_CLOEXEC) };
    if new < 0 {
        return -1;
    }
    match PLACEHOLDER.compare_exchange(-1, new, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => new,
        Err(old) => {
            // SAFETY: our own descriptor, never published.
            unsafe { libc::close(new) };
            old
        }
    }
}

/// Maps the placeholder over `[a, a + len)` with `prot`. Return: whether it worked.
pub fn placeholder(a: usize, len: usize, prot: i32) -> bool {
    let fd = placeholder_fd();
    // SAFETY: the range is one of our direct mappings (the caller holds the table lock).
    let r = unsafe {
        sys::mmap(
            a as *mut libc::c_void,
            len,
            prot,
            libc::MAP_SHARED | libc::MAP_FIXED,
            fd,
            0,
        )
    };
    r != libc::MAP_FAILED
}

pub fn send(sock: i32, m: &Msg) -> bool {
    // SAFETY: `m` is 64 readable bytes.
    let r = unsafe { libc::send(sock, (m as *const Msg).cast(), 64, libc::MSG_NOSIGNAL) };
    r == 64
}

/// Receives one message. Return: `None` at end of stream or on error.
pub fn recv(sock: i32) -> Option<Msg> {
    let mut m = Msg::default();
    loop {
        // SAFETY: `m` is 64 writable bytes.
        let r = unsafe { libc::recv(sock, (&mut m as *mut Msg).cast(), 64, 0) };
        if r == 64 {
            return Some(m);
        }
        if r < 0 && sys::errno() == libc::EINTR {
            continue;
        }
        return None;
    }
}

/// Connects to the lease socket `name` (`sun_path` bytes). Return: the socket, token and
/// access, `None` when not admitted.
pub fn connect(name: &[u8]) -> Option<(i32, u64, u64)> {
    // SAFETY: sockaddr_un is plain data.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() > a.sun_path.len() {
        return None;
    }
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, &s) in a.sun_path.iter_mut().zip(name) {
        *d = s as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + name.len()) as libc::socklen_t;
    // SAFETY: plain syscalls on a fresh descriptor and a valid address.
    unsafe {
        let s = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return None;
        }
        while libc::connect(s, (&a as *const libc::sockaddr_un).cast(), len) < 0 {
            if sys::errno() != libc::EINTR {
                libc::close(s);
                return None;
            }
        }
        match recv(s) {
            Some(w) if w.kind == MSG_WELCOME => Some((s, w.seq, w.arg)),
            _ => {
                libc::close(s);
                None
            }
        }
    }
}

/// Applies revocation `m` of mount `mi` to the tables (lock held). Every page of the range in
/// every mapping of the file becomes the placeholder, except for a growth: its pages were past
/// the end of the file, so they are the placeholder already or were mapped just now by the
/// growth's [`MSG_EXTENT`] hints, which came first.
pub fn apply_revoke(t: &mut Tables, mi: usize, m: &Msg) {
    t.revokes += 1;
    if m.reason == REASON_EXTEND {
        return;
    }
    if m.reason == REASON_INVALIDATE {
        t.add_poison(mi, m.ino, m.first, m.end);
    }
    for k in t.maps_of(mi, m.ino) {
        let map = t.maps[k];
        let (first, end) = (m.first.max(map.pgoff), m.end.min(map.pgoff + map.pages()));
        if first < end {
            let a = map.addr_of(first);
            placeholder(a, ((end - first) * PAGE) as usize, map.prot);
        }
    }
}

/// Applies the growth hint `m` ([`MSG_EXTENT`]) of mount `mi` (lock held): the pages it names
/// were past the end of the file and are valid now; every mapping of the file that covers them
/// maps them at once, so a system call that copies from them right after the growth finds them
/// (it would get `EFAULT` from the placeholder, where a user-space access faults and is
/// resolved). Pages recorded as poisoned are left to the fault path.
fn apply_extent(t: &mut Tables, mi: usize, m: &Msg) {
    if m.end <= m.first || t.poison_intersects(mi, m.ino, m.first, m.end) {
        return;
    }
    let e = FmapExtent {
        page: m.first,
        nr_pages: m.end - m.first,
        region_offset: m.arg,
        kind: match m.reason {
            EXTENT_DATA => FMAP_DATA,
            EXTENT_HOLE => FMAP_HOLE,
            _ => return,
        },
        order: 0,
    };
    for k in t.maps_of(mi, m.ino) {
        crate::map::install_extent(t, k, &e, m.first, m.end);
    }
}

/// Fences every mapping of mount `mi` (lock held): its lease connection is gone.
fn fence_mount(t: &mut Tables, mi: usize) {
    t.revokes += 1;
    for k in 0..t.maps.len() {
        let map = t.maps[k];
        if map.used && t.files[map.file].mount == mi {
            placeholder(map.start, map.len, map.prot);
        }
    }
    let mount = &mut t.mounts[mi];
    mount.refused = true;
    mount.thread = false;
}

/// Handles one message from the daemon on mount `mi` (lock held by the caller through `t`).
/// Return: the acknowledgement to send, if any.
fn handle(t: &mut Tables, mi: usize, m: &Msg) -> Option<Msg> {
    if m.kind == MSG_EXTENT {
        apply_extent(t, mi, m);
        return None;
    }
    if m.kind != MSG_REVOKE {
        return None;
    }
    apply_revoke(t, mi, m);
    let mut a = Msg::new(MSG_ACK);
    a.seq = m.seq;
    Some(a)
}

/// The revocation thread of mount `mi`.
fn thread_main(mi: usize, sock: i32) {
    loop {
        let Some(m) = recv(sock) else {
            TABLES.with(|t| {
                if t.mounts[mi].sock == sock {
                    fence_mount(t, mi);
                }
            });
            return;
        };
        let ack = TABLES.with(|t| {
            if t.mounts[mi].sock != sock {
                return None; // a forked child replaced the connection: not ours any more
            }
            handle(t, mi, &m)
        });
        if let Some(a) = ack {
            send(sock, &a);
        }
    }
}

/// Starts the revocation thread of mount `mi` with every signal blocked (they belong to the
/// application's threads). Return: whether it runs.
pub fn start_thread(mi: usize, sock: i32) -> bool {
    // SAFETY: sigset manipulation on local values; the old mask is restored below.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let r = std::thread::Builder::new()
            .name("daxfs-lease".into())
            .stack_size(64 << 10)
            .spawn(move || thread_main(mi, sock));
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        r.is_ok()
    }
}

static FORK_PIPE: [AtomicI32; 2] = [AtomicI32::new(-1), AtomicI32::new(-1)];
static FORK_LOCKED: AtomicI32 = AtomicI32::new(0);

extern "C" fn prepare() {
    if crate::table::NMAPS.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut p = [-1; 2];
    // SAFETY: `p` is two writable ints.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        p = [-1, -1];
    }
    FORK_PIPE[0].store(p[0], Ordering::Relaxed);
    FORK_PIPE[1].store(p[1], Ordering::Relaxed);
    TABLES.lock();
    FORK_LOCKED.store(1, Ordering::Relaxed);
}

extern "C" fn parent() {
    if FORK_LOCKED.swap(0, Ordering::Relaxed) == 0 {
        return;
    }
    let (r, w) = (
        FORK_PIPE[0].load(Ordering::Relaxed),
        FORK_PIPE[1].load(Ordering::Relaxed),
    );
    // SAFETY: our own pipe; waits until the child registered (or exited: end of file).
    unsafe {
        if w >= 0 {
            libc::close(w);
        }
        if r >= 0 {
            let mut b = 0u8;
            while libc::read(r, (&mut b as *mut u8).cast(), 1) < 0 && sys::errno() == libc::EINTR {}
            libc::close(r);
        }
    }
    TABLES.unlock();
}

extern "C" fn child() {
    if FORK_LOCKED.swap(0, Ordering::Relaxed) == 0 {
        return;
    }
    let (r, w) = (
        FORK_PIPE[0].load(Ordering::Relaxed),
        FORK_PIPE[1].load(Ordering::Relaxed),
    );
    // SAFETY: the child is single-threaded and holds the (copied) lock.
    let t = unsafe { TABLES.held() };
    for mi in 0..MAX_MOUNTS {
        if t.mounts[mi].used && !t.mounts[mi].refused && t.mounts[mi].sock >= 0 {
            rejoin(t, mi);
        }
    }
    let mut start = [(-1i32, 0usize); MAX_MOUNTS];
    for (mi, st) in start.iter_mut().enumerate() {
        let m = &t.mounts[mi];
        if m.used && !m.refused && m.sock >= 0 && !m.thread {
            *st = (m.sock, mi);
        }
    }
    TABLES.unlock();
    // Threads are started without the lock (starting one allocates, which may call mmap).
    for (sock, mi) in start {
        if sock >= 0 && start_thread(mi, sock) {
            TABLES.with(|t| t.mounts[mi].thread = true);
        }
    }
    // SAFETY: our own pipe.
    unsafe {
        if r >= 0 {
            libc::close(r);
        }
        if w >= 0 {
            libc::write(w, [1u8].as_ptr().cast(), 1);
            libc::close(w);
        }
    }
}

/// In a forked child: a new lease connection for mount `mi` holding every inherited mapping.
fn rejoin(t: &mut Tables, mi: usize) {
    // SAFETY: the parent's connection, inherited: not ours to use.
    unsafe { libc::close(t.mounts[mi].sock) };
    t.mounts[mi].sock = -1;
    t.mounts[mi].thread = false;
    let (name, n) = (t.mounts[mi].sock_name, t.mounts[mi].sock_name_len);
    let Some((sock, token, _access)) = connect(&name[..n]) else {
        fence_mount(t, mi);
        return;
    };
    t.mounts[mi].sock = sock;
    t.mounts[mi].token = token;
    for k in 0..t.maps.len() {
        let map = t.maps[k];
        if !map.used || t.files[map.file].mount != mi {
            continue;
        }
        let f = t.files[map.file];
        let mut m = Msg::new(MSG_REGISTER);
        m.ino = f.ino;
        m.first = map.pgoff;
        m.end = map.pgoff + map.pages();
        m.arg = f.epoch;
        send(sock, &m);
    }
    let mut s = Msg::new(MSG_SYNC);
    s.seq = 1;
    send(sock, &s);
    loop {
        let Some(m) = recv(sock) else {
            fence_mount(t, mi);
            return;
        };
        if m.kind == MSG_SYNCED {
            break;
        }
        if let Some(a) = handle(t, mi, &m) {
            send(sock, &a);
        }
    }
}

/// Registers the fork handlers (once).
pub fn register_atfork() {
    static DONE: AtomicI32 = AtomicI32::new(0);
    if DONE.swap(1, Ordering::AcqRel) == 0 {
        // SAFETY: the handlers are plain functions valid for the process's life.
        unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    }
}
