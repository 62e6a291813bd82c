//! The daemon's direct-mapping service: the lease table and socket of one mount, the
//! `DAXFS_IOC_DIRECT_INFO` / `DAXFS_IOC_GET_FMAP` requests, and the memory-failure hook.
//!
//! Owns: starting the lease machinery for a mounted filesystem (installing the table as the
//! filesystem's layout breaker), the region's published identity, and the checks of a
//! `GET_FMAP` request (the token must name a live lease connection of the same uid; allocation
//! and write notification need write access to the region). The FUSE adapter calls
//! [`DirectService::handle_ioctl`]; the memory-failure path revokes through
//! [`LeaseInvalidator`] before the kernel's invalidation.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::leases::LeaseTable;
use super::server::{LeaseServer, RegionOwner};
use super::wire;
use crate::fs::layout::{LayoutBreaker, LayoutChange, LayoutExtent, LayoutRequest};
use crate::fs::{Ctx, DaxFs, Errno, FsResult, Ino};
use crate::ioctl::direct::*;
use crate::ioctl::{check_header, Pod, Versioned, MORE};
use crate::memory_failure::{Done, FileRange, Invalidator};
use crate::region::RegionKind;

/// How long a revocation waits for each holder by default.
pub const DEFAULT_LEASE_TIMEOUT: Duration = Duration::from_secs(5);
/// The environment variable that overrides it, in milliseconds (read by the daemon at mount).
pub const LEASE_TIMEOUT_ENV: &str = "DAXFS_LEASE_TIMEOUT_MS";

const PAGE: u64 = 4096;

/// The direct-mapping service of one mount.
pub struct DirectService {
    table: Arc<LeaseTable>,
    server: Option<LeaseServer>,
    info: DaxfsDirectInfo,
}

impl DirectService {
    /// Starts the lease table and socket for `fs` and installs the table as its layout breaker.
    /// When the socket cannot be started, direct mappings are not offered (logged) and the
    /// filesystem works as without them.
    pub fn start(fs: &Arc<DaxFs>) -> Arc<DirectService> {
        let timeout = std::env::var(LEASE_TIMEOUT_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_LEASE_TIMEOUT);
        let weak: Weak<DaxFs> = Arc::downgrade(fs);
        let table = Arc::new(LeaseTable::new(
            timeout,
            Box::new(move |f| {
                if let Some(fs) = weak.upgrade() {
                    fs.lift_fence(f);
                }
            }),
        ));
        let mut info = DaxfsDirectInfo::new_request();
        let pid = std::process::id();
        info.daemon_pid = pid;
        info.mount_id = random_id();
        let region = fs.region();
        info.region_kind = match region.kind() {
            RegionKind::File => 0,
            RegionKind::BlockDevice => 1,
            RegionKind::DaxDevice => 2,
        };
        info.region_size = region.len();
        let path: PathBuf =
            std::fs::canonicalize(region.path()).unwrap_or_else(|_| region.path().to_path_buf());
        let pb = path.as_os_str().as_encoded_bytes();
        let mut server = None;
        match region.file().metadata() {
            Ok(md) if pb.len() <= REGION_PATH_MAX && path.is_absolute() => {
                info.region_dev = md.dev();
                info.region_ino = md.ino();
                info.region_path[..pb.len()].copy_from_slice(pb);
                info.path_len = pb.len() as u32;
                let owner = RegionOwner {
                    dev: md.dev(),
                    ino: md.ino(),
                    uid: md.uid(),
                    gid: md.gid(),
                    mode: md.mode(),
                };
                let name = wire::socket_name(pid, info.mount_id);
                match LeaseServer::start(name, table.clone(), owner) {
                    Ok(s) => {
                        let n = s.name();
                        info.socket[..n.len()].copy_from_slice(n);
                        info.socket_len = n.len() as u32;
                        info.flags |= DIRECT_AVAILABLE;
                        server = Some(s);
                    }
                    Err(e) => log::warn!(
                        "direct mapping: cannot start the lease socket: {e}; daxfs exec falls \
                         back to the FUSE mmap"
                    ),
                }
            }
            Ok(_) => log::warn!(
                "direct mapping: region path {} is not absolute or too long; not offered",
                path.display()
            ),
            Err(e) => log::warn!("direct mapping: region metadata: {e}; not offered"),
        }
        fs.set_layout_breaker(table.clone());
        Arc::new(DirectService {
            table,
            server,
            info,
        })
    }

    /// The lease table.
    pub fn table(&self) -> &Arc<LeaseTable> {
        &self.table
    }

    /// Whether processes may get direct mappings (the lease socket is up).
    pub fn available(&self) -> bool {
        self.server.is_some()
    }

    /// The memory-failure invalidator: revoke the range from direct mappings, then `kernel`.
    pub fn invalidator<'a>(&'a self, kernel: &'a dyn Invalidator) -> LeaseInvalidator<'a> {
        LeaseInvalidator {
            table: &self.table,
            kernel,
        }
    }

    /// Handles `DAXFS_IOC_DIRECT_INFO` and `DAXFS_IOC_GET_FMAP` on inode `ino` for `caller`.
    /// Return: the output bytes.
    ///
    /// Context: a FUSE request thread; `GET_FMAP` may allocate and so break other holders'
    /// layouts (sleeping up to the lease timeout).
    pub fn handle_ioctl(
        &self,
        fs: &DaxFs,
        caller: &Ctx,
        ino: Ino,
        cmd: u32,
        input: &[u8],
    ) -> FsResult<Vec<u8>> {
        match cmd {
            DAXFS_IOC_DIRECT_INFO => {
                let _req: DaxfsDirectInfo = check_header(input)?;
                let mut out = self.info;
                if fs.is_dax_inode(ino).unwrap_or(false) {
                    out.flags |= DIRECT_INODE_DAX;
                }
                if fs.is_read_only() {
                    out.flags |= DIRECT_READ_ONLY;
                }
                Ok(out.as_bytes().to_vec())
            }
            DAXFS_IOC_GET_FMAP => {
                let req: DaxfsFmap = check_header(input)?;
                check_fmap(&req)?;
                Ok(self.get_fmap(fs, caller, ino, &req)?.as_bytes().to_vec())
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    fn get_fmap(&self, fs: &DaxFs, caller: &Ctx, ino: Ino, req: &DaxfsFmap) -> FsResult<DaxfsFmap> {
        let first_call = req.cursor == req.first;
        let holder = if req.token != 0 {
            let (id, h) = self
                .table
                .holder_for_token(req.token)
                .ok_or(Errno::EINVAL)?;
            if h.uid != caller.uid && caller.uid != 0 {
                return Err(Errno::EACCES);
            }
            if req.flags & (FMAP_ALLOCATE | FMAP_WRITE) != 0 && h.access != wire::ACCESS_RW {
                return Err(Errno::EACCES);
            }
            Some(id)
        } else {
            None
        };
        let lreq = LayoutRequest {
            allocate: first_call && req.flags & FMAP_ALLOCATE != 0,
            write: first_call && req.flags & FMAP_WRITE != 0,
        };
        let lease = first_call && req.flags & FMAP_LEASE != 0;
        let layout = fs.file_layout(
            ino,
            req.cursor.min(req.end - 1).max(req.first),
            req.end,
            FMAP_EXTENTS_PER_CALL,
            lreq,
            |_| {
                if let (true, Some(h)) = (lease, holder) {
                    self.table.register(h, ino, req.first, req.end, req.epoch);
                }
            },
        )?;
        let mut out = DaxfsFmap::new_request();
        out.flags = req.flags;
        out.token = req.token;
        out.epoch = req.epoch;
        out.first = req.first;
        out.end = req.end;
        out.file_size = layout.size;
        let stop = req.end.min(layout.size.div_ceil(PAGE));
        let mut cursor = req.cursor;
        if req.cursor < stop {
            for (slot, x) in out.extents.iter_mut().zip(&layout.extents) {
                *slot = match *x {
                    LayoutExtent::Data {
                        page,
                        nr,
                        block,
                        order,
                    } => DaxfsFmapExtent {
                        page,
                        nr_pages: nr,
                        region_offset: block * PAGE,
                        kind: FMAP_DATA,
                        order: order as u32,
                    },
                    LayoutExtent::Hole { page, nr } => DaxfsFmapExtent {
                        page,
                        nr_pages: nr,
                        region_offset: 0,
                        kind: FMAP_HOLE,
                        order: 0,
                    },
                    LayoutExtent::Poisoned { page, block } => DaxfsFmapExtent {
                        page,
                        nr_pages: 1,
                        region_offset: block * PAGE,
                        kind: FMAP_POISONED,
                        order: 0,
                    },
                };
                let (p, n) = x.span();
                cursor = p + n;
                out.count += 1;
            }
        }
        if cursor < stop {
            out.out_flags |= MORE;
        } else {
            cursor = req.end;
        }
        out.cursor = cursor;
        Ok(out)
    }
}

fn random_id() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: `b` is writable for 8 bytes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 8, 0) };
    if n == 8 {
        u64::from_ne_bytes(b)
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    }
}

/// The memory-failure invalidator of a mount with direct mappings: the range is revoked from
/// every process that maps it directly (they fault on their next access and learn the page is
/// poisoned, or cleared), then the kernel's mappings are invalidated.
pub struct LeaseInvalidator<'a> {
    table: &'a LeaseTable,
    kernel: &'a dyn Invalidator,
}

impl Invalidator for LeaseInvalidator<'_> {
    fn invalidate(&self, ranges: Vec<FileRange>, done: Done) {
        for &(ino, offset, len) in &ranges {
            let (first, end) = (offset / PAGE, offset.saturating_add(len).div_ceil(PAGE));
            if self.table.active(ino) {
                self.table
                    .break_layouts(ino, first, end, LayoutChange::Invalidate);
            }
        }
        self.kernel.invalidate(ranges, done);
    }
}
