//! The lease socket: where processes under `daxfs exec` connect to hold layout leases.
//!
//! Owns: the listening socket (an abstract `SOCK_SEQPACKET` name, published through
//! `DAXFS_IOC_DIRECT_INFO`), the admission check, one reader thread per connection, and the
//! watcher that resolves silent holders. Rules kept:
//! - **Admission is the region's permission check.** A peer (`SO_PEERCRED`, `SO_PEERGROUPS`)
//!   is admitted only if its uid and groups may open the region itself (owner, group and other
//!   bits of the region's mode; root always): a direct mapping gives access to region memory,
//!   so it is offered only to those who have it already. The library's own `open()` of the
//!   region is the kernel's check of the same thing (and of ACLs, which this check ignores).
//! - A connection that ends while its process still maps the region (it closed the socket, or
//!   will exit in a moment) makes the holder silent; the watcher re-checks such processes
//!   (pidfd for exit, `/proc/PID/maps` for the region's device and inode) and resolves them
//!   once the mapping is gone ([`super::leases`] rule 3).
//! - Nothing here blocks a revoker: sends are non-blocking ([`super::leases::Sink`]).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::leases::{HolderId, HolderInfo, LeaseTable, Sink};
use super::seqpacket;
use super::wire::{self, Msg};

/// What the admission check and the mapping check need to know of the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionOwner {
    /// Device of the region file.
    pub dev: u64,
    /// Inode of the region file.
    pub ino: u64,
    /// Owner of the region.
    pub uid: u32,
    /// Group of the region.
    pub gid: u32,
    /// Mode bits of the region.
    pub mode: u32,
}

/// What a peer with `uid`, primary `gid` and `groups` may open the region for: 0 (nothing),
/// [`wire::ACCESS_READ`] or [`wire::ACCESS_RW`], by the classic owner/group/other rule.
pub fn region_access(r: &RegionOwner, uid: u32, gid: u32, groups: &[u32]) -> u64 {
    let bits = if uid == 0 {
        0o6
    } else if uid == r.uid {
        (r.mode >> 6) & 0o7
    } else if gid == r.gid || groups.contains(&r.gid) {
        (r.mode >> 3) & 0o7
    } else {
        r.mode & 0o7
    };
    match (bits & 0o4 != 0, bits & 0o2 != 0) {
        (true, true) => wire::ACCESS_RW,
        (true, false) => wire::ACCESS_READ,
        _ => 0,
    }
}

/// Whether process `pid` maps the region (a line of `/proc/PID/maps` with its device and
/// inode). A process that cannot be inspected counts as mapping it (the safe answer).
pub fn maps_region(pid: u32, r: &RegionOwner) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return std::path::Path::new(&format!("/proc/{pid}")).exists();
    };
    let dev = format!("{:02x}:{:02x}", libc::major(r.dev), libc::minor(r.dev));
    text.lines().any(|l| {
        let mut f = l.split_ascii_whitespace().skip(3);
        f.next() == Some(dev.as_str()) && f.next() == Some(r.ino.to_string().as_str())
    })
}

/// A pidfd for `pid` (None when the kernel refuses: then exit is seen as "not in /proc").
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: plain syscall; the descriptor is owned at once.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    // SAFETY: a fresh descriptor nobody else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the process behind `pidfd` exited (its pidfd polls readable).
fn exited(pidfd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    unsafe { libc::poll(&mut p, 1, 0) > 0 }
}

fn comm_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: `b` is writable for 8 bytes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 8, 0) };
    if n == 8 {
        u64::from_ne_bytes(b) | 1
    } else {
        // No entropy source: still unique, if guessable (tokens are a second check after the
        // caller's uid).
        (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7))
            | 1
    }
}

/// A connection as a [`Sink`]: non-blocking sends.
struct SocketSink(Arc<OwnedFd>);

impl Sink for SocketSink {
    fn send(&self, m: &Msg) -> io::Result<()> {
        seqpacket::send(self.0.as_raw_fd(), m, true)
    }
}

struct Shared {
    table: Arc<LeaseTable>,
    region: RegionOwner,
    pidfds: Mutex<HashMap<HolderId, (u32, Option<OwnedFd>)>>,
}

impl Shared {
    /// Whether the process of `holder` still maps the region.
    fn still_mapping(&self, holder: HolderId) -> bool {
        let p = self.pidfds.lock();
        match p.get(&holder) {
            Some((pid, fd)) => {
                let gone = fd.as_ref().map_or_else(
                    || !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                    exited,
                );
                !gone && maps_region(*pid, &self.region)
            }
            None => false,
        }
    }

    fn forget(&self, holder: HolderId) {
        self.pidfds.lock().remove(&holder);
    }
}

/// The running lease socket of a mount.
pub struct LeaseServer {
    name: Vec<u8>,
    _listener: Arc<OwnedFd>,
}

impl LeaseServer {
    /// Binds `name` and starts the accept and watcher threads.
    pub fn start(name: Vec<u8>, table: Arc<LeaseTable>, region: RegionOwner) -> io::Result<Self> {
        let listener = Arc::new(seqpacket::listen(&name)?);
        let shared = Arc::new(Shared {
            table,
            region,
            pidfds: Mutex::new(HashMap::new()),
        });
        let (l, s) = (listener.clone(), shared.clone());
        std::thread::Builder::new()
            .name("daxfs-lease".into())
            .spawn(move || accept_loop(&l, &s))?;
        let s = shared;
        std::thread::Builder::new()
            .name("daxfs-lease-watch".into())
            .spawn(move || watch_loop(&s))?;
        Ok(LeaseServer {
            name,
            _listener: listener,
        })
    }

    /// The socket's `sun_path` bytes.
    pub fn name(&self) -> &[u8] {
        &self.name
    }
}

fn accept_loop(listener: &OwnedFd, shared: &Arc<Shared>) {
    loop {
        let conn = match seqpacket::accept(listener.as_raw_fd()) {
            Ok(c) => c,
            Err(e) => {
                log::error!("direct mapping: lease socket accept failed: {e}; no more leases");
                return;
            }
        };
        if let Err(e) = admit(conn, shared) {
            log::warn!("direct mapping: lease connection refused: {e}");
        }
    }
}

fn admit(conn: OwnedFd, shared: &Arc<Shared>) -> io::Result<()> {
    let fd = conn.as_raw_fd();
    let (pid, uid, gid) = seqpacket::peer_cred(fd)?;
    let groups = seqpacket::peer_groups(fd).unwrap_or_default();
    let access = region_access(&shared.region, uid, gid, &groups);
    if access == 0 {
        log::info!(
            "direct mapping: pid {pid} (uid {uid}) may not open the region: no direct mappings \
             for it (it keeps the FUSE mmap)"
        );
        return Ok(()); // the close tells it
    }
    let token = random_u64();
    let conn = Arc::new(conn);
    let info = HolderInfo {
        pid,
        uid,
        access,
        comm: comm_of(pid),
    };
    let id = shared
        .table
        .add_holder(info, token, Arc::new(SocketSink(conn.clone())));
    shared.pidfds.lock().insert(id, (pid, pidfd_open(pid)));
    let mut w = Msg::new(wire::WELCOME);
    w.seq = token;
    w.arg = access;
    w.arg2 = id;
    if let Err(e) = seqpacket::send(fd, &w, false) {
        shared.table.holder_gone(id, false);
        shared.forget(id);
        return Err(e);
    }
    log::debug!("direct mapping: pid {pid} (uid {uid}) holds leases as holder {id}");
    let s = shared.clone();
    std::thread::Builder::new()
        .name(format!("daxfs-lease-{pid}"))
        .spawn(move || serve(&conn, id, &s))?;
    Ok(())
}

/// Serves one connection until it closes.
fn serve(conn: &OwnedFd, id: HolderId, shared: &Shared) {
    let t = &shared.table;
    loop {
        match seqpacket::recv(conn.as_raw_fd()) {
            Ok(Some(m)) => match m.kind {
                wire::ACK => t.ack(id, m.seq),
                wire::REGISTER => t.register(id, m.ino, m.first, m.end, m.arg),
                wire::RELEASE => t.release(id, m.ino, m.arg),
                wire::SYNC => {
                    let mut a = Msg::new(wire::SYNCED);
                    a.seq = m.seq;
                    if seqpacket::send(conn.as_raw_fd(), &a, true).is_err() {
                        break;
                    }
                }
                k => log::warn!("direct mapping: holder {id}: unknown message kind {k}"),
            },
            Ok(None) => break,
            Err(e) => {
                log::warn!("direct mapping: holder {id}: {e}");
                break;
            }
        }
    }
    let still = shared.still_mapping(id);
    t.holder_gone(id, still);
    if !still {
        shared.forget(id);
    } else {
        log::info!(
            "direct mapping: holder {id} closed its lease connection but still maps the region: \
             its leases stay, every revocation fences it until the mapping is gone"
        );
    }
}

/// Re-checks silent holders until their processes no longer map the region.
fn watch_loop(shared: &Shared) {
    loop {
        std::thread::sleep(Duration::from_millis(250));
        for (id, _pid) in shared.table.silent_holders() {
            if !shared.still_mapping(id) {
                shared.table.holder_gone(id, false);
                shared.forget(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_follows_owner_group_other() {
        let r = RegionOwner {
            dev: 1,
            ino: 2,
            uid: 1000,
            gid: 100,
            mode: 0o640,
        };
        assert_eq!(region_access(&r, 0, 0, &[]), wire::ACCESS_RW, "root");
        assert_eq!(region_access(&r, 1000, 5, &[]), wire::ACCESS_RW, "owner");
        assert_eq!(
            region_access(&r, 2000, 100, &[]),
            wire::ACCESS_READ,
            "group"
        );
        assert_eq!(
            region_access(&r, 2000, 5, &[100]),
            wire::ACCESS_READ,
            "supplementary group"
        );
        assert_eq!(region_access(&r, 2000, 5, &[7]), 0, "other");
        let w = RegionOwner { mode: 0o602, ..r };
        assert_eq!(
            region_access(&w, 2000, 5, &[]),
            0,
            "write-only is no access"
        );
    }

    #[test]
    fn this_process_maps_a_file_it_mapped() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r");
        std::fs::write(&p, [0u8; 8192]).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let md = f.metadata().unwrap();
        let r = RegionOwner {
            dev: md.dev(),
            ino: md.ino(),
            uid: 0,
            gid: 0,
            mode: 0o600,
        };
        assert!(!maps_region(std::process::id(), &r));
        // SAFETY: mapping a file we own read-only; unmapped below.
        let m = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(m, libc::MAP_FAILED);
        assert!(maps_region(std::process::id(), &r));
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(m, 8192) };
        assert!(!maps_region(std::process::id(), &r));
        let me = pidfd_open(std::process::id()).unwrap();
        assert!(!exited(&me));
    }
}
