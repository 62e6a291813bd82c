//! Shutdown (`XFS_IOC_GOINGDOWN`, issue 13) on a real mount: after it every operation fails with
//! `EIO` until unmount; nothing more reaches the region; unmount works; the region is fsck clean
//! and a remount finds exactly what was durable at the shutdown — every fsynced file, and of the
//! others nothing that was never written (no stale bytes). On `/dev/fuse`, with `-o io_uring`
//! and with `dax=never`.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use daxfs::ioctl::xfs::{XFS_FSOP_GOING_FLAGS_NOLOGFLUSH, XFS_IOC_GOINGDOWN};

/// `XFS_IOC_GOINGDOWN` on `path` (the mount root or any file of the mount) with `flags`.
fn godown(path: &Path, flags: u32) -> std::io::Result<()> {
    let f = File::open(path)?;
    let mut arg = flags;
    // SAFETY: the request's argument is one u32 that lives across the call.
    cvt(unsafe { libc::ioctl(f.as_raw_fd(), XFS_IOC_GOINGDOWN as _, &mut arg) }).map(|_| ())
}

/// The mount options of each transport and data path the behaviour must hold on.
const MODES: [&str; 3] = ["noio_uring", "io_uring", "dax=never,noio_uring"];

/// What the storm knows: name → (content seed, length, fsynced).
type Written = BTreeMap<String, (u64, usize, bool)>;

/// One writer of the storm: creates files, writes a pattern, fsyncs every other one; stops at
/// the first error (the shutdown) or when `stop` is set. Records a file as fsynced only after
/// `sync_all` returned.
fn storm_writer(
    mnt: PathBuf,
    t: usize,
    written: Arc<Mutex<Written>>,
    synced: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let name = format!("t{t}-{n:05}");
        let seed = (t as u64) << 32 | n as u64;
        let len = 1 + (seed.wrapping_mul(2654435761) % 300_000) as usize;
        let fsync = n % 2 == 0;
        let r = (|| -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(mnt.join(&name))?;
            written
                .lock()
                .unwrap()
                .insert(name.clone(), (seed, len, false));
            f.write_all(&pattern(seed, len))?;
            if fsync {
                f.sync_all()?;
                written
                    .lock()
                    .unwrap()
                    .insert(name.clone(), (seed, len, true));
                synced.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })();
        if r.is_err() {
            return;
        }
    }
}

/// Reads `p` whole.
fn read_all(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    File::open(p)
        .and_then(|mut f| f.read_to_end(&mut v))
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    v
}

/// The shutdown in the middle of a create storm, then the checks of what survived.
fn storm_then_shutdown(opts: &str) {
    let r = Region::new("256M");
    let m = r.mount(opts);
    let written = Arc::new(Mutex::new(Written::new()));
    let synced = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let root = File::open(&m.mnt).unwrap();
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let (mnt, w, s, st) = (m.mnt.clone(), written.clone(), synced.clone(), stop.clone());
            std::thread::spawn(move || storm_writer(mnt, t, w, s, st))
        })
        .collect();
    wait_until(
        &format!("{opts}: 30 files fsynced by the storm"),
        Duration::from_millis(5),
        || synced.load(Ordering::SeqCst) >= 30,
    );
    godown(&m.mnt, XFS_FSOP_GOING_FLAGS_NOLOGFLUSH).expect("XFS_IOC_GOINGDOWN");
    let at_shutdown = synced.load(Ordering::SeqCst);
    // Every writer stops by itself: its next operation fails.
    let watchdog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(DEADLINE);
            stop.store(true, Ordering::Relaxed);
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    assert!(
        !stop.load(Ordering::Relaxed),
        "{opts}: a writer went on after the shutdown"
    );
    drop(watchdog);
    assert!(
        synced.load(Ordering::SeqCst) <= at_shutdown + 3,
        "{opts}: fsyncs succeeded after the shutdown returned"
    );
    every_operation_fails(&m.mnt, &root, opts);
    drop(root);
    m.unmount();
    r.assert_fsck_clean(&format!("{opts}: after the shutdown"));

    let m = r.mount(opts);
    let w = written.lock().unwrap();
    let mut present = 0;
    for (name, &(seed, len, fsynced)) in w.iter() {
        let p = m.p(name);
        if fsynced {
            assert_eq!(
                read_all(&p),
                pattern(seed, len),
                "{opts}: fsynced {name} differs after the shutdown"
            );
            present += 1;
        } else if p.exists() {
            // Not fsynced: any prefix of what was written may be there, never other bytes.
            let got = read_all(&p);
            assert!(got.len() <= len, "{opts}: {name} grew");
            assert!(
                got == pattern(seed, len)[..got.len()],
                "{opts}: {name} (not fsynced) holds bytes never written to it"
            );
        }
    }
    assert!(present >= 30, "{opts}: only {present} fsynced files");
    // The remounted filesystem works.
    fs::write(m.p("after"), b"alive").unwrap();
    assert_eq!(read_all(&m.p("after")), b"alive");
    drop(w);
    m.unmount();
    r.assert_fsck_clean(&format!("{opts}: after the remount"));
}

/// After the shutdown: lookups, reads, writes, creates, directory reads, fsyncs all fail with
/// `EIO`; a second shutdown succeeds.
fn every_operation_fails(mnt: &Path, root: &File, opts: &str) {
    let eio = libc::EIO;
    let what = |w: &str| format!("{opts}: {w} after the shutdown");
    let list = fs::read_dir(mnt).and_then(|mut d| d.next().transpose().map(|_| ()));
    assert_errno(list, eio);
    assert_errno(File::create(mnt.join("new")), eio);
    assert_errno(fs::metadata(mnt.join("never-there")), eio);
    assert_errno(fs::create_dir(mnt.join("d")), eio);
    assert_errno(File::open(mnt.join("t0-00000")), eio);
    // Opening anything fails now (as on XFS): a second shutdown goes through a descriptor
    // opened before the first.
    assert_errno(File::open(mnt), eio);
    let mut arg = XFS_FSOP_GOING_FLAGS_NOLOGFLUSH;
    // SAFETY: the request's argument is one u32 that lives across the call.
    let r = cvt(unsafe { libc::ioctl(root.as_raw_fd(), XFS_IOC_GOINGDOWN as _, &mut arg) });
    r.unwrap_or_else(|e| panic!("{}: {e}", what("a second shutdown")));
}

#[test]
fn shutdown_in_a_create_storm_keeps_every_fsynced_file() {
    require_fuse!();
    enable_uring();
    for opts in MODES {
        storm_then_shutdown(opts);
    }
}

/// Open descriptors fail after the shutdown too: write, fsync and read of a file opened before.
#[test]
fn open_files_fail_with_eio_after_the_shutdown() {
    require_fuse!();
    for opts in MODES {
        let r = Region::new("64M");
        let m = r.mount(opts);
        let mut f = create_rw(&m.p("f"));
        f.write_all(&pattern(1, 8192)).unwrap();
        f.sync_all().unwrap();
        let mut unsynced = create_rw(&m.p("g"));
        unsynced.write_all(&pattern(2, 8192)).unwrap();
        godown(&m.p("f"), XFS_FSOP_GOING_FLAGS_NOLOGFLUSH).expect("shutdown through a file");
        assert_errno(f.write_all(&pattern(3, 4096)), libc::EIO);
        assert_errno(f.sync_all(), libc::EIO);
        let mut buf = vec![0u8; 4096];
        // SAFETY: reading into our own buffer.
        let n = unsafe { libc::pread(f.as_raw_fd(), buf.as_mut_ptr().cast(), 4096, 0) };
        assert_eq!(
            (n, last_errno()),
            (-1, libc::EIO),
            "{opts}: pread after the shutdown"
        );
        drop((f, unsynced));
        m.unmount();
        r.assert_fsck_clean(&format!("{opts}: after the shutdown"));
        let m = r.mount(opts);
        assert_eq!(read_all(&m.p("f")), pattern(1, 8192), "{opts}: fsynced f");
        // g was created (durable) but never fsynced or closed before the shutdown: its data
        // was not durable, and its close after the shutdown persisted nothing.
        assert_eq!(fs::metadata(m.p("g")).unwrap().len(), 0, "{opts}: g");
        m.unmount();
    }
}

/// Only root may shut a filesystem down (XFS: `CAP_SYS_ADMIN`): others get `EPERM`, and the
/// filesystem keeps working.
#[test]
fn only_root_may_shut_down() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    let mnt = m.mnt.clone();
    let code = as_user(65534, 65534, || match godown(&mnt, 2) {
        Ok(()) => 0,
        Err(e) => e.raw_os_error().unwrap_or(255),
    });
    assert_eq!(code, libc::EPERM, "a user's shutdown");
    fs::write(m.p("still"), b"works").unwrap();
    assert_eq!(read_all(&m.p("still")), b"works");
    m.unmount();
}

/// A file unlinked while open is an orphan at the shutdown (as after a crash): the next
/// read-write mount reclaims it, its blocks come back, fsck is clean.
#[test]
fn an_orphan_of_the_shutdown_is_reclaimed_at_mount() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    // The root directory's first entry block, allocated before the count.
    fs::write(m.p("anchor"), b"").unwrap();
    let free_before = free_blocks(&m.mnt);
    let mut f = create_rw(&m.p("orphan"));
    f.write_all(&pattern(5, 4 << 20)).unwrap();
    f.sync_all().unwrap();
    fs::remove_file(m.p("orphan")).unwrap();
    godown(&m.mnt, XFS_FSOP_GOING_FLAGS_NOLOGFLUSH).unwrap();
    drop(f);
    m.unmount();
    let m = r.mount("");
    assert!(!m.p("orphan").exists());
    let free_after = free_blocks(&m.mnt);
    assert_eq!(
        free_after, free_before,
        "the orphan's blocks did not come back"
    );
    m.unmount();
    r.assert_fsck_clean("after reclaiming the orphan");
}

/// Free blocks of the filesystem mounted at `mnt` (`statvfs`).
fn free_blocks(mnt: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(mnt).expect("statvfs");
    s.blocks_free() as u64
}
