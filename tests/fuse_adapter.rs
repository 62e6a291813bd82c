//! The FUSE adapter against a fake filesystem: a real mount, through `/dev/fuse` and again through
//! the FUSE-over-io_uring queues (each test runs on both), of
//! `DaxFuse<Fake>`, where `Fake` is a small in-memory [`FileSystem`] that records what it was
//! asked. Each test does a syscall on the mount and checks both sides: that the request reached
//! the filesystem with the arguments the caller gave (request translation), and that what the
//! filesystem answered — attributes, bytes, entries, or an errno it chose, including errnos the
//! adapter once decided itself — is what the caller sees (reply and error mapping).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use daxfs::fs::{
    Attr, Ctx, DirEntry, Errno, FileKind, FileSystem, FsResult, Ino, KillPriv, Opened, SetAttr,
    StatFs, Written,
};
use daxfs::fuse::adapter::DaxFuse;
use daxfs::fuse::notify::KernelNotifier;
use daxfs::fuse::stats::RequestStats;
use daxfs::fuse::uring::{self, RingConfig};
use daxfs::ioctl::Versioned;
use fuser::{BackgroundSession, Config, MountOption, Session, SessionUnmounter};
use std::sync::atomic::Ordering;

const ROOT: Ino = 1;
const FILE: Ino = 2;
const DEV: Ino = 3;
const SUB: Ino = 4;

struct Node {
    attr: Attr,
    data: Vec<u8>,
    children: BTreeMap<OsString, Ino>,
    xattrs: BTreeMap<OsString, Vec<u8>>,
}

#[derive(Default)]
struct State {
    nodes: HashMap<Ino, Node>,
    /// Kernel references per inode (lookups minus forgets).
    refs: HashMap<Ino, i64>,
    /// A forget dropped more references than were taken.
    over_forgotten: Vec<Ino>,
    /// What each call was asked, in order.
    calls: Vec<String>,
}

/// An in-memory filesystem: `/file` (regular, 0o640, uid 7, gid 8), `/dev` (char device 1:3),
/// `/sub` (a directory), and errnos chosen by name to show they pass through unchanged.
struct Fake(Mutex<State>);

fn attr(ino: Ino, kind: FileKind, perm: u16, size: u64) -> Attr {
    let t = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    Attr {
        ino,
        kind,
        perm,
        nlink: if kind == FileKind::Directory { 2 } else { 1 },
        uid: 7,
        gid: 8,
        rdev: if kind == FileKind::CharDevice {
            0x0103
        } else {
            0
        },
        size,
        blocks: size.div_ceil(512),
        blksize: 4096,
        atime: t,
        mtime: t + Duration::from_secs(1),
        ctime: t + Duration::from_secs(2),
        crtime: t,
        flags: 0,
        generation: 5,
    }
}

impl Fake {
    fn new() -> Fake {
        let mut st = State::default();
        let node = |ino, kind, perm, data: &[u8]| Node {
            attr: attr(ino, kind, perm, data.len() as u64),
            data: data.to_vec(),
            children: BTreeMap::new(),
            xattrs: BTreeMap::new(),
        };
        let mut root = node(ROOT, FileKind::Directory, 0o755, b"");
        for (name, ino) in [("file", FILE), ("dev", DEV), ("sub", SUB)] {
            root.children.insert(name.into(), ino);
        }
        let mut file = node(FILE, FileKind::Regular, 0o640, b"hello, fake world");
        file.xattrs
            .insert("user.ten".into(), b"0123456789".to_vec());
        st.nodes.insert(ROOT, root);
        st.nodes.insert(FILE, file);
        st.nodes
            .insert(DEV, node(DEV, FileKind::CharDevice, 0o600, b""));
        st.nodes
            .insert(SUB, node(SUB, FileKind::Directory, 0o700, b""));
        Fake(Mutex::new(st))
    }

    fn log(&self, call: String) {
        self.0.lock().unwrap().calls.push(call);
    }

    fn calls(&self) -> Vec<String> {
        self.0.lock().unwrap().calls.clone()
    }

    fn take_ref(st: &mut State, ino: Ino) {
        *st.refs.entry(ino).or_default() += 1;
    }
}

impl FileSystem for Fake {
    fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Attr> {
        let mut st = self.0.lock().unwrap();
        let dir = st.nodes.get(&parent).ok_or(Errno::ENOENT)?;
        let ino = *dir.children.get(name).ok_or(Errno::ENOENT)?;
        let a = st.nodes[&ino].attr.clone();
        Fake::take_ref(&mut st, ino);
        Ok(a)
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        let mut st = self.0.lock().unwrap();
        let r = st.refs.entry(ino).or_default();
        *r -= nlookup as i64;
        if *r < 0 {
            st.over_forgotten.push(ino);
        }
    }

    fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        let st = self.0.lock().unwrap();
        st.nodes
            .get(&ino)
            .map(|n| n.attr.clone())
            .ok_or(Errno::ENOENT)
    }

    fn setattr(&self, ino: Ino, set: &SetAttr, ctx: &Ctx) -> FsResult<Attr> {
        self.log(format!("setattr {ino} mode={:?} uid={}", set.mode, ctx.uid));
        let mut st = self.0.lock().unwrap();
        let n = st.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        if let Some(m) = set.mode {
            n.attr.perm = (m & 0o7777) as u16;
        }
        Ok(n.attr.clone())
    }

    fn mkdir(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _ctx: &Ctx,
    ) -> FsResult<Attr> {
        let name = name.to_string_lossy();
        self.log(format!("mkdir {parent} {name} {mode:o} umask {umask:o}"));
        Err(Errno::ENOSPC)
    }

    fn unlink(&self, parent: Ino, name: &OsStr, _ctx: &Ctx) -> FsResult<()> {
        self.log(format!("unlink {parent} {}", name.to_string_lossy()));
        Err(Errno::EBUSY)
    }

    fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
        _ctx: &Ctx,
    ) -> FsResult<()> {
        self.log(format!(
            "rename {parent} {} {newparent} {} {flags}",
            name.to_string_lossy(),
            newname.to_string_lossy()
        ));
        Err(Errno::EXDEV)
    }

    fn open(&self, ino: Ino, flags: i32, _ctx: &Ctx) -> FsResult<Opened> {
        self.log(format!("open {ino} accmode={}", flags & libc::O_ACCMODE));
        Ok(Opened {
            fh: 40 + ino,
            direct: true,
            keep_cache: true,
        })
    }

    fn read(&self, ino: Ino, offset: u64, size: u32, reply: &mut dyn FnMut(&[u8])) -> FsResult<()> {
        let st = self.0.lock().unwrap();
        let data = &st.nodes.get(&ino).ok_or(Errno::ENOENT)?.data;
        let start = (offset as usize).min(data.len());
        let end = (start + size as usize).min(data.len());
        reply(&data[start..end]);
        Ok(())
    }

    fn write(
        &self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        kill: KillPriv,
        ctx: &Ctx,
    ) -> FsResult<Written> {
        self.log(format!(
            "write {ino} @{offset} {:?} {kill:?} uid={}",
            String::from_utf8_lossy(data),
            ctx.uid
        ));
        let mut st = self.0.lock().unwrap();
        let n = st.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        let end = offset as usize + data.len();
        if n.data.len() < end {
            n.data.resize(end, 0);
        }
        n.data[offset as usize..end].copy_from_slice(data);
        n.attr.size = n.data.len() as u64;
        Ok(Written {
            bytes: data.len(),
            mode_changed: false,
        })
    }

    fn flush(&self, _ino: Ino, _fh: u64) -> FsResult<()> {
        Ok(())
    }

    fn release(&self, ino: Ino, fh: u64) -> FsResult<()> {
        self.log(format!("release {ino} fh={fh}"));
        Ok(())
    }

    fn opendir(&self, ino: Ino) -> FsResult<u64> {
        match ino {
            // The filesystem's choice, not the adapter's: `/sub` is a directory.
            SUB => Err(Errno::ENOLINK),
            _ => Ok(0),
        }
    }

    fn readdir(&self, ino: Ino, offset: u64) -> FsResult<Vec<DirEntry>> {
        let st = self.0.lock().unwrap();
        let dir = st.nodes.get(&ino).ok_or(Errno::ENOENT)?;
        let mut all = vec![
            (ino, OsString::from("."), FileKind::Directory),
            (ROOT, OsString::from(".."), FileKind::Directory),
        ];
        for (name, &child) in &dir.children {
            all.push((child, name.clone(), st.nodes[&child].attr.kind));
        }
        Ok(all
            .into_iter()
            .enumerate()
            .skip(offset as usize)
            .map(|(i, (ino, name, kind))| DirEntry {
                ino,
                name,
                kind,
                next_offset: i as u64 + 1,
            })
            .collect())
    }

    fn readdirplus(
        &self,
        ino: Ino,
        offset: u64,
        add: &mut dyn FnMut(&DirEntry, &Attr) -> bool,
    ) -> FsResult<()> {
        for e in self.readdir(ino, offset)? {
            let dots = e.name == "." || e.name == "..";
            let a = self.getattr(e.ino)?;
            if !dots {
                Fake::take_ref(&mut self.0.lock().unwrap(), e.ino);
            }
            if add(&e, &a) {
                if !dots {
                    self.forget(e.ino, 1);
                }
                break;
            }
        }
        Ok(())
    }

    fn statfs(&self) -> FsResult<StatFs> {
        Ok(StatFs {
            blocks: 1000,
            bfree: 500,
            bavail: 400,
            files: 100,
            ffree: 50,
            bsize: 4096,
            namelen: 200,
            frsize: 4096,
        })
    }

    fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _ctx: &Ctx,
    ) -> FsResult<()> {
        self.log(format!(
            "setxattr {ino} {} {:?} {flags}",
            name.to_string_lossy(),
            String::from_utf8_lossy(value)
        ));
        if name == "user.refused" {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut st = self.0.lock().unwrap();
        let n = st.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        n.xattrs.insert(name.to_owned(), value.to_vec());
        Ok(())
    }

    fn getxattr(&self, ino: Ino, name: &OsStr) -> FsResult<Vec<u8>> {
        let st = self.0.lock().unwrap();
        let n = st.nodes.get(&ino).ok_or(Errno::ENOENT)?;
        n.xattrs.get(name).cloned().ok_or(Errno::ENODATA)
    }

    fn lseek(&self, ino: Ino, offset: i64, whence: i32) -> FsResult<u64> {
        self.log(format!("lseek {ino} {offset} {whence}"));
        match whence {
            libc::SEEK_DATA => Err(Errno::ENXIO),
            _ => Ok(offset as u64 + 8),
        }
    }
}

/// How the fake's mount receives its requests.
#[derive(Clone, Copy, Debug)]
enum Transport {
    /// Reads of `/dev/fuse` (fuser's own loop).
    DevFuse,
    /// The FUSE-over-io_uring queues of `daxfs::fuse::uring`, as the daemon's `-o io_uring`.
    IoUring,
}

/// The fake mounted through `/dev/fuse` or the io_uring queues; unmounted on drop (also when the
/// test panics).
struct Mounted {
    fake: Arc<Fake>,
    mnt: PathBuf,
    serving: Serving,
    _dir: tempfile::TempDir,
}

enum Serving {
    Background(Option<BackgroundSession>),
    Rings {
        /// The adapter's request counters: how many requests came through the rings.
        stats: Arc<RequestStats>,
        unmounter: SessionUnmounter,
        thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    },
}

impl Mounted {
    fn new(transport: Transport) -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let fake = Arc::new(Fake::new());
        let mut adapter = DaxFuse::with_fs(fake.clone(), KernelNotifier::new());
        let mut cfg = Config::default();
        cfg.mount_options = vec![MountOption::FSName("fake".into()), MountOption::RW];
        let serving = match transport {
            Transport::DevFuse => Serving::Background(Some(
                fuser::spawn_mount(adapter, &mnt, &cfg).expect("mount the fake"),
            )),
            Transport::IoUring => {
                let agreed = adapter.request_io_uring();
                let stats = adapter.stats_handle();
                let mut session = Session::new(adapter, &mnt, &cfg).expect("mount the fake");
                assert!(
                    agreed.load(Ordering::Relaxed),
                    "the kernel did not offer FUSE-over-io_uring at INIT although enable_uring is on"
                );
                let unmounter = session.unmount_callable();
                let config = RingConfig {
                    depth: 8,
                    payload: 1 << 20,
                    idle_priority: false,
                };
                let ring_stats = stats.clone();
                let thread = std::thread::spawn(move || {
                    session.run_with(move |d| uring::start(d, config, ring_stats))
                });
                Serving::Rings {
                    stats,
                    unmounter,
                    thread: Some(thread),
                }
            }
        };
        let m = Mounted {
            fake,
            mnt,
            serving,
            _dir: dir,
        };
        common::wait_until("the fake is mounted", Duration::from_millis(10), || {
            std::fs::metadata(m.p("file")).is_ok()
        });
        m
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Requests served through the io_uring queues (0 for `/dev/fuse`).
    fn ring_requests(&self) -> u64 {
        match &self.serving {
            Serving::Rings { stats, .. } => stats.ring(),
            Serving::Background(_) => 0,
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let unmounted = match &mut self.serving {
            Serving::Background(s) => s.take().is_none_or(|s| s.umount_and_join().is_ok()),
            Serving::Rings {
                unmounter, thread, ..
            } => {
                let ok = unmounter.unmount().is_ok();
                if ok {
                    if let Some(t) = thread.take() {
                        let _ = t.join();
                    }
                }
                ok
            }
        };
        if !unmounted {
            let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Declares a test that runs `$body(&Mounted)` once over `/dev/fuse` and once over the io_uring
/// queues (which fails in CI when the kernel has no rings), each on a fresh fake.
macro_rules! on_both_transports {
    ($name:ident) => {
        mod $name {
            #[test]
            fn dev_fuse() {
                crate::require_fuse!();
                super::$name(&super::Mounted::new(super::Transport::DevFuse));
            }
            #[test]
            fn io_uring() {
                crate::require_fuse!();
                if !super::common::enable_uring() {
                    return;
                }
                let m = super::Mounted::new(super::Transport::IoUring);
                let before = m.ring_requests();
                super::$name(&m);
                assert!(
                    m.ring_requests() > before,
                    "no request of the test came through the rings"
                );
            }
        }
    };
}

fn errno_of<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.expect_err("the call must fail").raw_os_error().unwrap()
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

on_both_transports!(attributes_reach_stat_field_by_field);
fn attributes_reach_stat_field_by_field(m: &Mounted) {
    let md = std::fs::metadata(m.p("file")).unwrap();
    let want = attr(FILE, FileKind::Regular, 0o640, 17);
    assert_eq!(md.ino(), FILE);
    assert_eq!(md.mode(), libc::S_IFREG | 0o640);
    assert_eq!((md.uid(), md.gid(), md.nlink()), (7, 8, 1));
    assert_eq!((md.size(), md.blocks(), md.blksize()), (17, 1, 4096));
    assert_eq!(md.modified().unwrap(), want.mtime);
    assert_eq!(md.accessed().unwrap(), want.atime);
    let ctime = UNIX_EPOCH + Duration::from_secs(md.ctime() as u64);
    assert_eq!(ctime, want.ctime);
    let dev = std::fs::metadata(m.p("dev")).unwrap();
    assert_eq!(dev.mode(), libc::S_IFCHR | 0o600);
    assert_eq!(dev.rdev(), libc::makedev(1, 3));
    let sub = std::fs::metadata(m.p("sub")).unwrap();
    assert!(sub.is_dir());
    assert_eq!(sub.nlink(), 2);
    assert_eq!(
        errno_of(std::fs::metadata(m.p("missing"))),
        libc::ENOENT,
        "lookup's ENOENT"
    );
}

on_both_transports!(reads_writes_and_opens_carry_their_arguments);
fn reads_writes_and_opens_carry_their_arguments(m: &Mounted) {
    assert_eq!(std::fs::read(m.p("file")).unwrap(), b"hello, fake world");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.p("file"))
        .unwrap();
    assert_eq!(f.write_at(b"FAKE", 7).unwrap(), 4);
    let mut buf = [0u8; 5];
    assert_eq!(f.read_at(&mut buf, 7).unwrap(), 5);
    assert_eq!(&buf, b"FAKE ");
    drop(f);
    let calls = m.fake.calls();
    assert!(calls.contains(&"open 2 accmode=0".to_string()), "{calls:?}");
    assert!(calls.contains(&"open 2 accmode=2".to_string()), "{calls:?}");
    // Root writing a file without set-id bits: the kernel (killpriv_v2) does not flag it.
    assert!(
        calls.contains(&"write 2 @7 \"FAKE\" Flagged(false) uid=0".to_string()),
        "{calls:?}"
    );
    common::wait_until("release of the handle", Duration::from_millis(10), || {
        m.fake.calls().contains(&"release 2 fh=42".to_string())
    });
}

on_both_transports!(errnos_chosen_by_the_filesystem_pass_through);
fn errnos_chosen_by_the_filesystem_pass_through(m: &Mounted) {
    assert_eq!(errno_of(std::fs::create_dir(m.p("full"))), libc::ENOSPC);
    assert_eq!(errno_of(std::fs::remove_file(m.p("file"))), libc::EBUSY);
    assert_eq!(
        errno_of(std::fs::rename(m.p("file"), m.p("sub/moved"))),
        libc::EXDEV
    );
    // opendir's answer is the filesystem's (the adapter once decided ENOTDIR itself).
    assert_eq!(errno_of(std::fs::read_dir(m.p("sub"))), libc::ENOLINK);
    let calls = m.fake.calls();
    // The kernel leaves the umask to the filesystem (FUSE_DONT_MASK): mode and umask reach it.
    // SAFETY: umask only swaps the process's mask; it is put back at once.
    let umask = unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m
    };
    let mkdir = format!("mkdir 1 full 777 umask {umask:o}");
    assert!(calls.contains(&mkdir), "{calls:?}");
    assert!(calls.contains(&"unlink 1 file".to_string()), "{calls:?}");
    assert!(
        calls.contains(&"rename 1 file 4 moved 0".to_string()),
        "{calls:?}"
    );
}

on_both_transports!(lseek_answers_and_errors_are_the_filesystems);
fn lseek_answers_and_errors_are_the_filesystems(m: &Mounted) {
    let f = std::fs::File::open(m.p("file")).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: lseek on an open descriptor.
    let hole = unsafe { libc::lseek(f.as_raw_fd(), 4, libc::SEEK_HOLE) };
    assert_eq!(hole, 12, "the filesystem's offset, as it answered");
    // SAFETY: as above.
    let data = unsafe { libc::lseek(f.as_raw_fd(), 4, libc::SEEK_DATA) };
    assert_eq!((data, common::last_errno()), (-1, libc::ENXIO));
    let calls = m.fake.calls();
    let hole_call = format!("lseek 2 4 {}", libc::SEEK_HOLE);
    assert!(calls.contains(&hole_call), "{calls:?}");
}

on_both_transports!(directory_listings_and_their_references);
fn directory_listings_and_their_references(m: &Mounted) {
    let mut names: Vec<_> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), e.ino())
        })
        .collect();
    names.sort();
    let want = [("dev", DEV), ("file", FILE), ("sub", SUB)]
        .map(|(n, i)| (OsString::from(n), i))
        .to_vec();
    assert_eq!(names, want);
    let st = m.fake.0.lock().unwrap();
    assert!(st.over_forgotten.is_empty(), "{:?}", st.over_forgotten);
    assert!(
        st.refs.get(&FILE).copied().unwrap_or(0) > 0,
        "an entry listed by readdirplus (or looked up) holds a reference"
    );
}

on_both_transports!(xattr_size_probes_and_small_buffers_are_translated);
fn xattr_size_probes_and_small_buffers_are_translated(m: &Mounted) {
    let path = cstr(&m.p("file"));
    let name = CString::new("user.ten").unwrap();
    // SAFETY: a size probe with no buffer.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    assert_eq!(n, 10);
    let mut small = [0u8; 4];
    // SAFETY: `small` is a writable buffer of its length.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), small.as_mut_ptr().cast(), 4) };
    assert_eq!((n, common::last_errno()), (-1, libc::ERANGE));
    let mut big = [0u8; 64];
    // SAFETY: as above.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), big.as_mut_ptr().cast(), 64) };
    assert_eq!(&big[..n as usize], b"0123456789");
    let refused = CString::new("user.refused").unwrap();
    // SAFETY: a valid value of one byte.
    let r = unsafe { libc::setxattr(path.as_ptr(), refused.as_ptr(), b"v".as_ptr().cast(), 1, 0) };
    assert_eq!((r, common::last_errno()), (-1, libc::EOPNOTSUPP));
    let calls = m.fake.calls();
    assert!(
        calls.contains(&"setxattr 2 user.refused \"v\" 0".to_string()),
        "{calls:?}"
    );
}

on_both_transports!(statfs_setattr_and_ioctls_without_a_handler);
fn statfs_setattr_and_ioctls_without_a_handler(m: &Mounted) {
    let s = nix::sys::statvfs::statvfs(&m.mnt).unwrap();
    assert_eq!(
        (s.blocks(), s.blocks_free(), s.blocks_available()),
        (1000, 500, 400)
    );
    assert_eq!((s.files(), s.files_free(), s.name_max()), (100, 50, 200));
    assert_eq!(s.block_size(), 4096);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(m.p("file"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let calls = m.fake.calls();
    assert!(
        calls.contains(&"setattr 2 mode=Some(33152) uid=0".to_string()),
        "{calls:?}"
    );
    // No ioctl handler: every request the kernel forwards is ENOTTY.
    let f = std::fs::File::open(m.p("file")).unwrap();
    use std::os::fd::AsRawFd;
    let mut st = daxfs::ioctl::DaxfsStat::new_request();
    // SAFETY: `st` is the request's argument struct, of the size its number encodes.
    let r = unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            daxfs::ioctl::DAXFS_IOC_STAT as _,
            &mut st as *mut daxfs::ioctl::DaxfsStat,
        )
    };
    assert_eq!((r, common::last_errno()), (-1, libc::ENOTTY));
}
