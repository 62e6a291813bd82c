//! Direct mapping: recognising a daxfs file, joining its mount, making the mapping and filling it
//! from the file's extent map.
//!
//! Owns: the `mmap` decision (only a regular file on a FUSE mount whose `DIRECT_INFO` says the
//! mount offers direct mappings and the file is a DAX inode; anything else goes straight to the
//! kernel), the reservation (a 2 MiB-congruent address for mappings of 2 MiB or more, so PMD
//! extents can be PMD-mapped), and [`install_range`], shared with the fault handler: fetch the
//! extent map with `GET_FMAP` (taking the lease, allocating holes for a writable shared mapping)
//! without the lock, then install it under the lock unless a revocation was applied meanwhile.
//!
//! Rules kept: a mapping is first entirely the placeholder (any page not yet installed faults
//! into [`resolve`]); data extents are the region mapped `MAP_SHARED` (or `MAP_PRIVATE`: copy on
//! write) at the extent's region offset; holes of a mapping that cannot write through are
//! private zero pages; poisoned pages stay the placeholder.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

use libc::{c_int, c_void};

use crate::abi::*;
use crate::lease;
use crate::sys;
use crate::table::{File, Map, Tables, MAP0, TABLES};

pub const MAP_SYNC: c_int = 0x80000;
pub const MAP_FIXED_NOREPLACE: c_int = 0x100000;
const MB2: usize = 2 << 20;

/// `GET_FMAP` buffers (8 KiB each: too big for a signal stack), claimed one at a time.
struct Pool {
    busy: [AtomicBool; 8],
    bufs: [UnsafeCell<Fmap>; 8],
}
// SAFETY: a buffer is only reached by the one claimer of its `busy` flag.
unsafe impl Sync for Pool {}
static POOL: Pool = Pool {
    busy: [const { AtomicBool::new(false) }; 8],
    bufs: [const { UnsafeCell::new(Fmap::request()) }; 8],
};

struct Buf(usize);
impl Buf {
    fn claim() -> Buf {
        loop {
            for (i, b) in POOL.busy.iter().enumerate() {
                if !b.swap(true, Ordering::Acquire) {
                    return Buf(i);
                }
            }
            // SAFETY: plain syscall.
            unsafe { libc::sched_yield() };
        }
    }
    fn get(&mut self) -> &mut Fmap {
        // SAFETY: this claim owns buffer `self.0` until dropped.
        unsafe { &mut *POOL.bufs[self.0].get() }
    }
}
impl Drop for Buf {
    fn drop(&mut self) {
        POOL.busy[self.0].store(false, Ordering::Release);
    }
}

/// Whether `fd` is a DAX file of a daxfs mount offering direct mappings. Return: its mount's
/// `DIRECT_INFO` and the file's inode number.
fn probe(fd: c_int, info: &mut DirectInfo) -> Option<u64> {
    // SAFETY: plain syscalls into local buffers.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) < 0 || st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return None;
        }
        let mut sf: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(fd, &mut sf) < 0 || sf.f_type as i64 != FUSE_SUPER_MAGIC {
            return None;
        }
        *info = DirectInfo::request();
        if libc::ioctl(fd, IOC_DIRECT_INFO as _, info as *mut DirectInfo) < 0 {
            return None;
        }
        let want = DIRECT_AVAILABLE | DIRECT_INODE_DAX;
        (info.flags & want == want).then_some(st.st_ino)
    }
}

/// Opens the region `info` names (read-write when `rw`, else read-only) and checks that it is
/// the daemon's region (device and inode).
fn open_region(info: &DirectInfo, rw: bool) -> Option<(c_int, bool)> {
    let n = (info.path_len as usize).min(4095);
    let mut path = [0u8; 4096];
    path[..n].copy_from_slice(&info.region_path[..n]);
    let modes: &[(c_int, bool)] = if rw {
        &[(libc::O_RDWR, true), (libc::O_RDONLY, false)]
    } else {
        &[(libc::O_RDONLY, false)]
    };
    for &(mode, w) in modes {
        // SAFETY: `path` is NUL-terminated; plain syscalls.
        unsafe {
            let fd = libc::open(path.as_ptr().cast(), mode | libc::O_CLOEXEC);
            if fd < 0 {
                continue;
            }
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut st) == 0
                && st.st_dev == info.region_dev
                && st.st_ino == info.region_ino
            {
                return Some((fd, w));
            }
            libc::close(fd);
            return None;
        }
    }
    None
}

/// The table index of the mount `info` describes, joining it first (lease connection, region,
/// revocation thread, signal handler). Return: `None` when direct mappings are not ours there.
fn mount_for(info: &DirectInfo) -> Option<usize> {
    let found = TABLES.with(|t| {
        t.mounts
            .iter()
            .position(|m| m.used && m.mount_id == info.mount_id)
            .map(|i| (i, t.mounts[i].refused))
    });
    if let Some((i, refused)) = found {
        return (!refused).then_some(i);
    }
    let name = &info.socket[..(info.socket_len as usize).min(112)];
    let joined = lease::connect(name).and_then(|(sock, token, access)| {
        let rw = access == ACCESS_RW && info.flags & DIRECT_READ_ONLY == 0;
        match open_region(info, rw) {
            Some((fd, w)) => Some((sock, token, fd, w)),
            None => {
                // SAFETY: our own socket.
                unsafe { libc::close(sock) };
                None
            }
        }
    });
    let (mi, start) = TABLES.with(|t| -> (Option<usize>, Option<i32>) {
        if let Some(i) = t
            .mounts
            .iter()
            .position(|m| m.used && m.mount_id == info.mount_id)
        {
            if let Some((sock, _, fd, _)) = joined {
                // SAFETY: ours, unpublished (another thread joined first).
                unsafe {
                    libc::close(sock);
                    libc::close(fd);
                }
            }
            return (Some(i).filter(|&i| !t.mounts[i].refused), None);
        }
        let Some(i) = t.mounts.iter().position(|m| !m.used) else {
            return (None, None);
        };
        let m = &mut t.mounts[i];
        m.used = true;
        m.mount_id = info.mount_id;
        m.sock_name[..name.len()].copy_from_slice(name);
        m.sock_name_len = name.len();
        match joined {
            Some((sock, token, fd, w)) => {
                (m.sock, m.token, m.region_fd, m.region_rw) = (sock, token, fd, w);
                (Some(i), Some(sock))
            }
            None => {
                m.refused = true;
                (None, None)
            }
        }
    });
    if let (Some(i), Some(sock)) = (mi, start) {
        crate::init_debug();
        crate::signal::install();
        lease::register_atfork();
        if lease::start_thread(i, sock) {
            TABLES.with(|t| t.mounts[i].thread = true);
        }
    }
    mi
}

/// The file slot of `(mi, ino)` (created with our own descriptor of `fd`), with a new epoch.
fn file_slot(t: &mut Tables, mi: usize, ino: u64, fd: c_int) -> Option<usize> {
    if let Some(i) = t
        .files
        .iter()
        .position(|f| f.used && f.mount == mi && f.ino == ino)
    {
        t.files[i].epoch += 1;
        return Some(i);
    }
    let i = t.files.iter().position(|f| !f.used)?;
    // SAFETY: plain syscall; the duplicate is ours.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return None;
    }
    t.files[i] = File {
        used: true,
        mount: mi,
        ino,
        fd: dup,
        epoch: 1,
    };
    Some(i)
}

/// Sends `RELEASE` for each file in `gone` and closes our descriptor of it (lock held).
pub fn release_files(t: &mut Tables, gone: &[Option<usize>]) {
    for &fi in gone.iter().flatten() {
        let f = t.files[fi];
        if !f.used || t.maps.iter().any(|m| m.used && m.file == fi) {
            continue;
        }
        let mount = t.mounts[f.mount];
        if mount.sock >= 0 {
            let mut m = Msg::new(MSG_RELEASE);
            m.ino = f.ino;
            m.arg = f.epoch;
            lease::send(mount.sock, &m);
        }
        // SAFETY: our own duplicate.
        unsafe { libc::close(f.fd) };
        t.files[fi].used = false;
    }
}

/// Reserves `len` bytes as the placeholder: at `addr` for `MAP_FIXED*`, else at an address
/// congruent to `off` modulo 2 MiB. The table lock is held by the caller for `MAP_FIXED` (the
/// old mappings there are forgotten).
unsafe fn reserve(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    off: usize,
) -> *mut c_void {
    let ph = lease::placeholder_fd();
    let fixed = flags & (libc::MAP_FIXED | MAP_FIXED_NOREPLACE);
    if fixed != 0 {
        // SAFETY: the application asked for this range.
        return unsafe { sys::mmap(addr, len, prot, libc::MAP_SHARED | fixed, ph, 0) };
    }
    let extra = if len >= MB2 { MB2 } else { 0 };
    let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    // SAFETY: a fresh anonymous reservation, trimmed to the aligned part below.
    unsafe {
        let r = sys::mmap(addr, len + extra, libc::PROT_NONE, anon, -1, 0);
        if r == libc::MAP_FAILED {
            return r;
        }
        let r0 = r as usize;
        let start = if extra == 0 {
            r0
        } else {
            r0 + (off.wrapping_sub(r0) % MB2)
        };
        if start > r0 {
            sys::munmap(r, start - r0);
        }
        if r0 + len + extra > start + len {
            sys::munmap((start + len) as *mut c_void, r0 + len + extra - start - len);
        }
        sys::mmap(
            start as *mut c_void,
            len,
            prot,
            libc::MAP_SHARED | libc::MAP_FIXED,
            ph,
            0,
        )
    }
}

/// What the mmap interposer decided: `None` = not a direct mapping, do the kernel's.
///
/// # Safety
/// As `mmap(2)`.
pub unsafe fn direct_mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> Option<*mut c_void> {
    let kind = flags & 0xf;
    let shared = kind == libc::MAP_SHARED || kind == libc::MAP_SHARED_VALIDATE;
    if flags & libc::MAP_ANONYMOUS != 0 || fd < 0 || !(shared || kind == libc::MAP_PRIVATE) {
        return None;
    }
    let mut info = DirectInfo::request();
    let ino = probe(fd, &mut info)?;
    let fail = |e| {
        sys::set_errno(e);
        Some(libc::MAP_FAILED)
    };
    if len == 0 || off < 0 || !(off as u64).is_multiple_of(PAGE) {
        return fail(libc::EINVAL);
    }
    // SAFETY: plain syscall.
    let acc = unsafe { libc::fcntl(fd, libc::F_GETFL) } & libc::O_ACCMODE;
    let write_shared = shared && prot & libc::PROT_WRITE != 0;
    if acc == libc::O_WRONLY || (write_shared && acc != libc::O_RDWR) {
        return fail(libc::EACCES);
    }
    let mi = mount_for(&info)?;
    if write_shared && !TABLES.with(|t| t.mounts[mi].region_rw) {
        return None; // read-only access to the region: the FUSE mmap
    }
    let len = len.div_ceil(4096) * 4096;
    let fixed = flags & libc::MAP_FIXED != 0;
    if fixed {
        TABLES.lock();
    }
    // SAFETY: as `mmap(2)`; the lock is held for MAP_FIXED.
    let base = unsafe { reserve(addr, len, prot, flags, off as usize) };
    if base == libc::MAP_FAILED {
        if fixed {
            TABLES.unlock();
        }
        return Some(base);
    }
    let rec = |t: &mut Tables| {
        if fixed {
            let gone = t.forget_range(base as usize, len);
            release_files(t, &gone);
        }
        let fi = file_slot(t, mi, ino, fd)?;
        let m = Map {
            start: base as usize,
            len,
            pgoff: off as u64 / PAGE,
            file: fi,
            prot,
            shared,
            populate: flags & libc::MAP_POPULATE != 0,
            ..MAP0
        };
        let r = t.add_map(m).map(|i| t.maps[i].id);
        if r.is_none() {
            release_files(t, &[Some(fi)]);
        }
        r
    };
    let id = if fixed {
        // SAFETY: locked above.
        let r = rec(unsafe { TABLES.held() });
        TABLES.unlock();
        r
    } else {
        TABLES.with(rec)
    };
    let Some(id) = id else {
        // Tables full: the kernel's mapping instead, at the same place.
        let kind = if shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        let fl = (flags & !(MAP_SYNC | MAP_FIXED_NOREPLACE | 0xf)) | kind | libc::MAP_FIXED;
        // SAFETY: our placeholder.
        let r = unsafe { sys::mmap(base, len, prot, fl, fd, off) };
        return Some(r);
    };
    let first = off as u64 / PAGE;
    let _ = install_range(id, first, first + (len / 4096) as u64, None);
    Some(base)
}

/// What `GET_FMAP` said of one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    Data,
    Hole,
    Poisoned,
    PastEof,
}

/// Fetches the extent map of file pages `[lo, hi)` of mapping `id` and installs it. Return: the
/// kind of page `probe` (if asked and seen) and whether everything fetched was installed (false:
/// a revocation was applied meanwhile, or the mapping changed; the pages stay placeholders).
/// `Err(0)`: the mapping is gone; `Err(errno)`: `GET_FMAP` failed.
pub fn install_range(
    id: u64,
    lo: u64,
    hi: u64,
    probe: Option<u64>,
) -> Result<(Option<PageKind>, bool), i32> {
    let mut buf = Buf::claim();
    let mut cursor = lo;
    let mut kind = None;
    let mut all = true;
    loop {
        let snap = TABLES.with(|t| {
            let m = *t.maps.iter().find(|m| m.used && m.id == id)?;
            let f = t.files[m.file];
            Some((m, f, t.mounts[f.mount].token, t.revokes))
        });
        let Some((m, f, token, gen)) = snap else {
            return Err(0);
        };
        let req = buf.get();
        *req = Fmap::request();
        req.flags = FMAP_LEASE;
        if m.shared && m.prot & libc::PROT_WRITE != 0 {
            req.flags |= FMAP_ALLOCATE | FMAP_WRITE;
        }
        (req.token, req.epoch, req.first, req.end, req.cursor) = (token, f.epoch, lo, hi, cursor);
        // SAFETY: the request number encodes the buffer's size.
        if unsafe { libc::ioctl(f.fd, IOC_GET_FMAP as _, req as *mut Fmap) } < 0 {
            return Err(sys::errno());
        }
        let req = *buf.get();
        if let Some(p) = probe {
            let ext = &req.extents[..(req.count as usize).min(FMAP_EXTENTS_PER_CALL)];
            if let Some(e) = ext.iter().find(|e| e.page <= p && p < e.page + e.nr_pages) {
                kind = Some(match e.kind {
                    FMAP_DATA => PageKind::Data,
                    FMAP_POISONED => PageKind::Poisoned,
                    _ => PageKind::Hole,
                });
            } else if p >= req.file_size.div_ceil(PAGE) {
                kind = Some(PageKind::PastEof);
            }
        }
        let ok = TABLES.with(|t| {
            let Some(i) = t.maps.iter().position(|x| x.used && x.id == id) else {
                return false;
            };
            if t.revokes != gen {
                return false;
            }
            install(t, i, &req, lo, hi);
            true
        });
        all &= ok;
        if req.out_flags & FMAP_MORE == 0 || req.cursor <= cursor {
            return Ok((kind, all));
        }
        cursor = req.cursor;
    }
}

/// Maps the extents of `req` inside file pages `[lo, hi)` of mapping `i` (lock held).
fn install(t: &Tables, i: usize, req: &Fmap, lo: u64, hi: u64) {
    for e in &req.extents[..(req.count as usize).min(FMAP_EXTENTS_PER_CALL)] {
        install_extent(t, i, e, lo, hi);
    }
}

/// Maps extent `e` inside file pages `[lo, hi)` of mapping `i` (lock held): data is the region
/// at the extent's offset, a hole of a mapping that cannot write through is private zero pages,
/// anything else the placeholder.
pub fn install_extent(t: &Tables, i: usize, e: &FmapExtent, lo: u64, hi: u64) {
    let m = t.maps[i];
    let mount = t.mounts[t.files[m.file].mount];
    let (lo, hi) = (lo.max(m.pgoff), hi.min(m.pgoff + m.pages()));
    let write_shared = m.shared && m.prot & libc::PROT_WRITE != 0;
    let (a, b) = (e.page.max(lo), (e.page + e.nr_pages).min(hi));
    if a >= b {
        return;
    }
    let addr = m.addr_of(a) as *mut c_void;
    let len = ((b - a) * PAGE) as usize;
    // SAFETY: `addr..+len` is inside direct mapping `i`, which the lock keeps ours.
    unsafe {
        match e.kind {
            FMAP_DATA => {
                let kind = if m.shared {
                    libc::MAP_SHARED
                } else {
                    libc::MAP_PRIVATE
                };
                let pop = if m.populate { libc::MAP_POPULATE } else { 0 };
                let off = e.region_offset + (a - e.page) * PAGE;
                sys::mmap(
                    addr,
                    len,
                    m.prot,
                    kind | pop | libc::MAP_FIXED,
                    mount.region_fd,
                    off as i64,
                );
            }
            FMAP_HOLE if !write_shared => {
                let fl = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
                sys::mmap(addr, len, m.prot, fl, -1, 0);
            }
            _ => {
                lease::placeholder(addr as usize, len, m.prot);
            }
        }
    }
}

/// What an access fault at `addr` is, after trying to map the page again.
pub enum Fault {
    /// Not in a direct mapping.
    NotOurs,
    /// The page is mapped now: return and retry the access.
    Fixed,
    /// Past the end of the file (the kernel's `SIGBUS`, `BUS_ADRERR`).
    PastEof,
    /// A poisoned page: `BUS_MCEERR_AR` with this lsb.
    Poisoned(u16),
    /// The extent map could not be had (daemon gone, no space for the allocation): `SIGBUS`.
    Failed,
}

/// Resolves an access fault at `addr` (from the `SIGBUS` handler: allocation-free).
pub fn resolve(addr: usize) -> Fault {
    for _ in 0..10_000 {
        let snap = TABLES.with(|t| {
            let i = t.map_at(addr)?;
            let m = t.maps[i];
            Some((m, t.files[m.file].mount, t.files[m.file].ino))
        });
        let Some((m, mi, ino)) = snap else {
            return Fault::NotOurs;
        };
        let p = m.pgoff + ((addr - m.start) / 4096) as u64;
        let (lo, hi) = if m.shared {
            let c = p & !(PMD_PAGES - 1);
            (c.max(m.pgoff), (c + PMD_PAGES).min(m.pgoff + m.pages()))
        } else {
            (p, p + 1) // copy-on-write pages elsewhere in the mapping must stay
        };
        match install_range(m.id, lo, hi, Some(p)) {
            Err(0) => continue,
            Err(e) => {
                crate::debug(b"fault: GET_FMAP failed, errno ", e as u64);
                return Fault::Failed;
            }
            Ok((Some(PageKind::PastEof), _)) => return Fault::PastEof,
            Ok((Some(PageKind::Poisoned), _)) => {
                return Fault::Poisoned(TABLES.with(|t| t.poison_lsb(mi, ino, p)))
            }
            Ok((Some(PageKind::Hole), true)) if m.shared && m.prot & libc::PROT_WRITE != 0 => {
                return Fault::Failed
            }
            Ok((Some(_), true)) => return Fault::Fixed,
            Ok(_) => continue,
        }
    }
    Fault::Failed
}
