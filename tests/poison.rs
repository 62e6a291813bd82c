//! Memory failure (issue 4): poison injected through the control ioctl on a real mount, and the
//! lock-then-walk rule through the embedded API. One test per acceptance item:
//! (1) PMD file, page 300: EIO, neighbours intact, SIGBUS through mmap, PMD split around it;
//! (2) region-offset injection lands on the right file page; (3) a poisoned free block is never
//! allocated; (4) full-page write, punch hole, truncate and `poison clear` clear it, partial write
//! is EIO; (5) it survives unmount/mount and SIGKILL of the daemon; (6) EPERM for others, EINVAL
//! for bad arguments; (7) lock-then-walk waits for a sub-page lock and handles the whole PMD;
//! (8) stress (`DAXFS_STRESS_SECS`, default 5: tests/poison_stress.rs is the long mixed one)
//! with a watchdog.

mod common;
mod poison_util;

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use daxfs::fs::*;
use daxfs::ioctl::*;
use daxfs::memory_failure::{self as mf, RecordingInvalidator};
use rand::{Rng, SeedableRng};

const PAGE: u64 = 4096;

/// `daxfs stat --mappings FILE` as `(file index, order name, region block, flags)`.
fn mappings(file: &Path) -> Vec<(u64, String, u64, u64)> {
    daxfs_ok([OsStr::new("stat"), "--mappings".as_ref(), file.as_os_str()])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // A fifth word `poisoned` exactly on the lines flagged MAPPING_POISONED.
            let flags = u64::from_str_radix(f[3].trim_start_matches("0x"), 16).unwrap();
            assert_eq!(
                f.get(4) == Some(&"poisoned"),
                flags & u64::from(MAPPING_POISONED) != 0,
                "{l}"
            );
            (
                f[0].parse().unwrap(),
                f[1].to_string(),
                f[2].parse().unwrap(),
                u64::from_str_radix(f[3].trim_start_matches("0x"), 16).unwrap(),
            )
        })
        .collect()
}

/// The region block of file page `page`, from the file's mappings.
fn block_of(file: &Path, page: u64) -> u64 {
    mappings(file)
        .iter()
        .find(|e| {
            let n = if e.1 == "pmd" { 512 } else { 1 };
            (e.0..e.0 + n).contains(&page)
        })
        .map(|e| e.2 + (page - e.0))
        .unwrap_or_else(|| panic!("page {page} of {} not mapped", file.display()))
}

fn inject(file: &Path, page: u64) {
    daxfs_ok([
        OsStr::new("poison"),
        "inject".as_ref(),
        file.as_os_str(),
        "--offset".as_ref(),
        (page * PAGE).to_string().as_ref(),
    ]);
}

fn list_json(mnt: &Path) -> Vec<serde_json::Value> {
    let out = daxfs_ok([
        OsStr::new("poison"),
        "list".as_ref(),
        mnt.as_os_str(),
        "--json".as_ref(),
    ]);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn read_page(f: &File, page: u64) -> io::Result<Vec<u8>> {
    let mut b = vec![0u8; PAGE as usize];
    f.read_exact_at(&mut b, page * PAGE).map(|()| b)
}

/// Raw poison ioctl on `target` (for errno checks).
fn poison_ioctl(target: &Path, cmd: u32, p: &DaxfsPoison) -> io::Result<()> {
    let f = File::open(target)?;
    let mut p = *p;
    // SAFETY: both poison requests encode the size of DaxfsPoison; `p` lives across the call.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), cmd as _, &mut p as *mut DaxfsPoison) };
    cvt(rc).map(drop)
}

/// A shared read-only mapping of `len` bytes of `f`.
struct Mmap {
    ptr: *mut u8,
    len: usize,
}

impl Mmap {
    fn new(f: &File, len: usize) -> Mmap {
        // SAFETY: a fresh shared read-only mapping of an open descriptor; checked for failure.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "{}", io::Error::last_os_error());
        Mmap {
            ptr: p as *mut u8,
            len,
        }
    }

    /// Copies page `page` out of the mapping (faulting it in).
    fn page(&self, page: u64) -> Vec<u8> {
        let off = (page * PAGE) as usize;
        assert!(off + PAGE as usize <= self.len);
        // SAFETY: the range lies inside the live mapping; volatile reads force the faults.
        (0..PAGE as usize)
            .map(|i| unsafe { std::ptr::read_volatile(self.ptr.add(off + i)) })
            .collect()
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once.
        unsafe { libc::munmap(self.ptr as *mut _, self.len) };
    }
}

/// How a forked child that touched a page ended.
#[derive(Debug, PartialEq, Eq)]
enum Child {
    Exited(i32),
    Signaled(i32),
}

/// Forks a child that reads page `page` through `map` and exits 0 if it equals `expect`.
fn child_touch(map: &Mmap, page: u64, expect: &[u8]) -> Child {
    // SAFETY: the child only reads memory and leaves with _exit.
    match unsafe { libc::fork() } {
        0 => {
            let ok = map.page(page) == expect;
            // SAFETY: leaving the child without running the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        -1 => panic!("fork: {}", io::Error::last_os_error()),
        pid => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            if libc::WIFSIGNALED(status) {
                Child::Signaled(libc::WTERMSIG(status))
            } else {
                Child::Exited(libc::WEXITSTATUS(status))
            }
        }
    }
}

/// A 4 MiB file written in two 2 MiB pieces (two PMD entries). Return: its bytes.
fn pmd_file(path: &Path, seed: u64) -> Vec<u8> {
    let data = pattern(seed, 4 << 20);
    let f = File::create(path).unwrap();
    f.write_all_at(&data[..2 << 20], 0).unwrap();
    f.write_all_at(&data[2 << 20..], 2 << 20).unwrap();
    let maps = mappings(path);
    assert_eq!(
        maps.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
        ["pmd", "pmd"],
        "setup: {maps:?}"
    );
    data
}

fn pg(data: &[u8], page: u64) -> &[u8] {
    &data[(page * PAGE) as usize..((page + 1) * PAGE) as usize]
}

/// The first 2 MiB are 511 PTE entries and, at `hole`, the poisoned page's line (its bad block,
/// flag `MAPPING_POISONED`, the word `poisoned`), all on blocks `pmd0 + page`; then one PMD.
fn assert_split_around(maps: &[(u64, String, u64, u64)], pmd0: u64, hole: u64) {
    assert_eq!(maps.len(), 513, "{:?}", &maps[..maps.len().min(4)]);
    for (p, e) in maps[..512].iter().enumerate() {
        let p = p as u64;
        let flags = if p == hole {
            u64::from(MAPPING_POISONED)
        } else {
            0
        };
        assert_eq!(
            (e.0, e.1.as_str(), e.2, e.3),
            (p, "pte", pmd0 + p, flags),
            "PTE entries after the split, the poisoned page among them"
        );
    }
    assert_eq!((maps[512].0, maps[512].1.as_str()), (512, "pmd"));
}

#[test]
fn pmd_file_page_300_eio_sigbus_and_split() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    let path = m.p("pm");
    let data = pmd_file(&path, 11);
    let pmd0 = mappings(&path)[0].2;
    let f = File::open(&path).unwrap();
    let map = Mmap::new(&f, 4 << 20);
    // Fault pages 299 and 300 in before the failure: the invalidation must drop them.
    assert_eq!(map.page(299), pg(&data, 299));
    assert_eq!(map.page(300), pg(&data, 300));

    inject(&path, 300);

    assert_errno(read_page(&f, 300), libc::EIO);
    assert_eq!(read_page(&f, 299).unwrap(), pg(&data, 299));
    assert_eq!(read_page(&f, 301).unwrap(), pg(&data, 301));
    // A read that includes the page fails as a whole (never short).
    let mut b = vec![0u8; 3 * PAGE as usize];
    assert_errno(f.read_at(&mut b, 299 * PAGE), libc::EIO);
    // The second PMD entry reads normally.
    assert_eq!(read_page(&f, 700).unwrap(), pg(&data, 700));

    assert_eq!(
        child_touch(&map, 300, pg(&data, 300)),
        Child::Signaled(libc::SIGBUS)
    );
    assert_eq!(child_touch(&map, 299, pg(&data, 299)), Child::Exited(0));
    assert_eq!(child_touch(&map, 301, pg(&data, 301)), Child::Exited(0));
    let fresh = Mmap::new(&f, 4 << 20);
    assert_eq!(
        child_touch(&fresh, 300, pg(&data, 300)),
        Child::Signaled(libc::SIGBUS)
    );
    drop((map, fresh));

    assert_split_around(&mappings(&path), pmd0, 300);
    let list = daxfs_ok([OsStr::new("poison"), "list".as_ref(), m.mnt.as_os_str()]);
    assert_eq!(list.trim(), format!("{} 8", (pmd0 + 300) * 8));
    let st: serde_json::Value = serde_json::from_str(&daxfs_ok([
        OsStr::new("stat"),
        m.mnt.as_os_str(),
        "--json".as_ref(),
    ]))
    .unwrap();
    assert_eq!(st["bad_blocks"].as_u64(), Some(1));
    drop(f);
    m.unmount();
}

#[test]
fn region_offset_lands_on_the_right_file_page() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    let path = m.p("sub/r");
    fs::create_dir(m.p("sub")).unwrap();
    let data = pattern(3, 1 << 20);
    fs::write(&path, &data).unwrap();
    let b = block_of(&path, 37);
    daxfs_ok([
        OsStr::new("poison"),
        "inject".as_ref(),
        "--region".as_ref(),
        m.mnt.as_os_str(),
        "--offset".as_ref(),
        (b * PAGE).to_string().as_ref(),
    ]);
    let list = list_json(&m.mnt);
    assert_eq!(list.len(), 1, "{list:?}");
    let e = &list[0];
    assert_eq!(e["sector"].as_u64(), Some(b * 8));
    assert_eq!(e["count"].as_u64(), Some(8));
    assert_eq!(e["file_offset"].as_u64(), Some(37 * PAGE));
    assert!(
        e["path"].as_str().unwrap().ends_with("/sub/r"),
        "{}",
        e["path"]
    );
    let f = File::open(&path).unwrap();
    assert_errno(read_page(&f, 37), libc::EIO);
    assert_eq!(read_page(&f, 36).unwrap(), pg(&data, 36));
    assert_eq!(read_page(&f, 38).unwrap(), pg(&data, 38));
    drop(f);
    m.unmount();
}

#[test]
fn poisoned_free_block_is_never_allocated() {
    require_fuse!();
    let r = Region::new("32M");
    let m = r.mount("");
    // A block near the end of a fresh region is free.
    let off = (32 << 20) - (3 << 20) + 5 * PAGE;
    let bad = off / PAGE;
    daxfs_ok([
        OsStr::new("poison"),
        "inject".as_ref(),
        "--region".as_ref(),
        m.mnt.as_os_str(),
        "--offset".as_ref(),
        off.to_string().as_ref(),
    ]);
    let list = list_json(&m.mnt);
    assert_eq!(list.len(), 1);
    assert!(
        list[0]["ino"].is_null(),
        "free block has an owner: {list:?}"
    );
    // Fill the filesystem.
    let chunk = pattern(5, 1 << 20);
    let mut files = Vec::new();
    'fill: for i in 0.. {
        let p = m.p(&format!("fill{i}"));
        let f = File::create(&p).unwrap();
        files.push(p);
        for j in 0..4u64 {
            if f.write_all_at(&chunk, j << 20).is_err() {
                break 'fill;
            }
        }
    }
    // The last free blocks, page by page.
    let p = m.p("fill-last");
    let f = File::create(&p).unwrap();
    files.push(p);
    let mut off = 0;
    while f.write_all_at(&chunk[..PAGE as usize], off).is_ok() {
        off += PAGE;
    }
    drop(f);
    let st: serde_json::Value = serde_json::from_str(&daxfs_ok([
        OsStr::new("stat"),
        m.mnt.as_os_str(),
        "--json".as_ref(),
    ]))
    .unwrap();
    // (32 blocks stay reserved for block-map chain blocks.)
    assert!(
        st["free_blocks"].as_u64().unwrap() < 32 + 8,
        "not full: {st}"
    );
    for p in &files {
        for e in mappings(p) {
            let n = if e.1 == "pmd" { 512 } else { 1 };
            assert!(
                !(e.2..e.2 + n).contains(&bad),
                "{} maps the bad block {bad}: {e:?}",
                p.display()
            );
        }
    }
    m.unmount();
    r.assert_fsck_clean("after the test");
}

#[test]
fn write_punch_truncate_and_clear_each_clear_poison() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    let path = m.p("c");
    let data = pattern(9, 16 * PAGE as usize);
    fs::write(&path, &data).unwrap();
    let b7 = block_of(&path, 7);
    for p in [1, 3, 5, 7, 9, 15] {
        inject(&path, p);
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    for p in [1, 3, 5, 7, 9, 15] {
        assert_errno(read_page(&f, p), libc::EIO);
    }
    // Partial write: EIO. Whole-page write: clears it.
    assert_errno(f.write_at(&[1u8; 100], PAGE + 10), libc::EIO);
    let new = pattern(77, PAGE as usize);
    f.write_all_at(&new, PAGE).unwrap();
    assert_eq!(read_page(&f, 1).unwrap(), new);
    // Punch hole: zeros.
    // SAFETY: fallocate on an open descriptor with plain integer arguments.
    let rc = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            (3 * PAGE) as i64,
            PAGE as i64,
        )
    };
    assert_eq!(rc, 0, "{}", io::Error::last_os_error());
    assert_eq!(read_page(&f, 3).unwrap(), vec![0u8; PAGE as usize]);
    // Truncate below it and back: zeros.
    f.set_len(15 * PAGE).unwrap();
    f.set_len(16 * PAGE).unwrap();
    assert_eq!(read_page(&f, 15).unwrap(), vec![0u8; PAGE as usize]);
    // poison clear, file form and region form: zeros.
    daxfs_ok([
        OsStr::new("poison"),
        "clear".as_ref(),
        path.as_os_str(),
        "--offset".as_ref(),
        (5 * PAGE).to_string().as_ref(),
    ]);
    assert_eq!(read_page(&f, 5).unwrap(), vec![0u8; PAGE as usize]);
    daxfs_ok([
        OsStr::new("poison"),
        "clear".as_ref(),
        "--region".as_ref(),
        m.mnt.as_os_str(),
        "--offset".as_ref(),
        (b7 * PAGE).to_string().as_ref(),
    ]);
    assert_eq!(read_page(&f, 7).unwrap(), vec![0u8; PAGE as usize]);
    // Page 9 is still poisoned; every other page has its bytes.
    assert_errno(read_page(&f, 9), libc::EIO);
    for p in [0, 2, 4, 6, 8, 10, 11, 12, 13, 14] {
        assert_eq!(read_page(&f, p).unwrap(), pg(&data, p), "page {p}");
    }
    // Cleared blocks left the list; blocks replaced by write/punch/truncate stay bad (free).
    let list = list_json(&m.mnt);
    assert_eq!(list.len(), 4, "{list:?}");
    let owned: Vec<_> = list.iter().filter(|e| !e["ino"].is_null()).collect();
    assert_eq!(owned.len(), 1, "{list:?}");
    assert_eq!(owned[0]["file_offset"].as_u64(), Some(9 * PAGE));
    assert!(!list.iter().any(|e| e["sector"].as_u64() == Some(b7 * 8)));
    drop(f);
    m.unmount();
    r.assert_fsck_clean("after the test");
}

#[test]
fn poison_survives_remount_and_daemon_sigkill() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    let path = m.p("s");
    let data = pmd_file(&path, 21);
    let pmd0 = mappings(&path)[0].2;
    inject(&path, 300);
    m.unmount();
    let m = r.mount("");
    let f = File::open(&path).unwrap();
    assert_errno(read_page(&f, 300), libc::EIO);
    assert_eq!(read_page(&f, 299).unwrap(), pg(&data, 299));
    assert_split_around(&mappings(&path), pmd0, 300);
    inject(&path, 600);
    drop(f);
    m.kill_daemon();
    let out = daxfs(["umount".as_ref(), m.mnt.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.disarm();
    let m = r.mount("");
    let f = File::open(&path).unwrap();
    assert_errno(read_page(&f, 300), libc::EIO);
    assert_errno(read_page(&f, 600), libc::EIO);
    assert_eq!(read_page(&f, 599).unwrap(), pg(&data, 599));
    assert_eq!(read_page(&f, 601).unwrap(), pg(&data, 601));
    assert_eq!(list_json(&m.mnt).len(), 2);
    let maps = mappings(&path);
    assert_eq!(maps.len(), 512 * 2, "both PMD entries split");
    let bad: Vec<u64> = maps
        .iter()
        .filter(|e| e.3 & u64::from(MAPPING_POISONED) != 0)
        .map(|e| e.0)
        .collect();
    assert_eq!(
        bad,
        [300, 600],
        "the poisoned pages are shown after a remount"
    );
    drop(f);
    m.unmount();
}

#[test]
fn only_root_or_owner_and_bad_arguments_are_einval() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    let path = m.p("e");
    let data = pattern(4, 64 << 10);
    fs::write(&path, &data).unwrap();
    let mut ok = DaxfsPoison::new_request();
    ok.offset = PAGE;
    ok.len = PAGE;
    for cmd in [DAXFS_IOC_INJECT_POISON, DAXFS_IOC_CLEAR_POISON] {
        let p2 = path.clone();
        let errno = as_user(65534, 65534, || match poison_ioctl(&p2, cmd, &ok) {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(255),
        });
        assert_eq!(
            errno,
            libc::EPERM,
            "non-root {}",
            request_name(cmd).unwrap()
        );
    }
    let bad_file: Vec<(&str, DaxfsPoison)> = vec![
        ("version", DaxfsPoison { version: 99, ..ok }),
        ("size", DaxfsPoison { size: 16, ..ok }),
        ("zero length", DaxfsPoison { len: 0, ..ok }),
        (
            "past the end",
            DaxfsPoison {
                offset: 60 << 10,
                len: 8 << 10,
                ..ok
            },
        ),
        (
            "overflow",
            DaxfsPoison {
                offset: u64::MAX - 10,
                ..ok
            },
        ),
        ("unknown flag", DaxfsPoison { flags: 8, ..ok }),
    ];
    let region = |offset: u64, len: u64| DaxfsPoison {
        flags: POISON_BY_REGION,
        offset,
        len,
        ..ok
    };
    let bad_region = vec![
        ("unaligned region offset", region(100 * PAGE + 1, PAGE)),
        ("region metadata area", region(0, PAGE)),
        ("past the region", region((64 << 20) - PAGE, 2 * PAGE)),
        ("region zero length", region(100 * PAGE, 0)),
    ];
    for cmd in [DAXFS_IOC_INJECT_POISON, DAXFS_IOC_CLEAR_POISON] {
        for (what, p) in &bad_file {
            assert_errno(poison_ioctl(&path, cmd, p), libc::EINVAL);
            let _ = what;
        }
        for (what, p) in &bad_region {
            let r = poison_ioctl(&m.mnt, cmd, p);
            assert!(
                matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EINVAL)),
                "{what}: {r:?}"
            );
        }
    }
    // Nothing changed.
    assert!(list_json(&m.mnt).is_empty());
    assert_eq!(fs::read(&path).unwrap(), data);
    m.unmount();
}

fn embedded_region(size: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = scratch();
    let path = dir.path().join("region.img");
    DaxFs::mkfs(
        &path,
        &MkfsOptions {
            size: Some(size),
            inodes: None,
        },
    )
    .unwrap();
    (dir, path)
}

#[test]
fn lock_then_walk_waits_for_a_sub_page_lock_and_handles_the_whole_pmd() {
    let (_d, path) = embedded_region(64 << 20);
    let fs = Arc::new(DaxFs::open(&path, &daxfs::fs::OpenOptions::default()).unwrap());
    let (a, _) = fs
        .create(ROOT_INO, OsStr::new("f"), 0o644, 0, &Ctx::root())
        .unwrap();
    let data = pattern(1, 2 << 20);
    fs.write(a.ino, 0, &data, &Ctx::root()).unwrap();
    let dax = fs.dax_mapping(a.ino).unwrap();
    let m0 = dax.mappings();
    assert_eq!(m0.len(), 1);
    assert!(m0[0].entry.is_pmd());
    let pmd0 = m0[0].entry.block();

    // Another thread holds the lock of sub-page 7: the whole PMD entry is locked.
    let held = dax.lock_entry(7).unwrap().unwrap();
    assert_eq!((held.index(), held.size()), (0, 2 << 20));
    let inval = Arc::new(RecordingInvalidator::new());
    let (tx, rx) = mpsc::channel();
    let (fs2, inval2) = (fs.clone(), inval.clone());
    let h = std::thread::spawn(move || {
        let r = mf::inject_file(&fs2, a.ino, 300 * PAGE, PAGE, &*inval2);
        tx.send(()).unwrap();
        r
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "injection at sub-page 300 did not wait for the lock held on sub-page 7"
    );
    assert!(inval.calls().is_empty());
    assert!(
        fs.bad_ranges().is_empty(),
        "recorded before the entry was locked"
    );
    drop(held);
    rx.recv_timeout(Duration::from_secs(10))
        .expect("injection never finished");
    let done = h.join().unwrap().unwrap();
    assert_eq!(done.pages, vec![(a.ino, 300, 1)]);
    // The whole 2 MiB entry was handled: invalidated as one range, split into PTE entries.
    assert_eq!(inval.calls(), vec![(a.ino, 0, 2 << 20)]);
    let m1 = dax.mappings();
    assert_eq!(m1.len(), 511);
    assert!(m1.iter().all(|m| m.order == 0 && !m.entry.is_locked()));
    assert!(!m1.iter().any(|m| m.index == 300));
    assert_eq!(fs.bad_ranges(), vec![(pmd0 + 300, 1)]);
    let mut b = vec![0u8; PAGE as usize];
    assert_eq!(fs.read(a.ino, 300 * PAGE, &mut b), Err(Errno::EIO));
    fs.read(a.ino, 301 * PAGE, &mut b).unwrap();
    assert_eq!(b, pg(&data, 301));
    dax.check_invariants().unwrap();
}

// ---- (8) stress ----

struct Shadow {
    data: Vec<u8>,
}

struct SFile {
    path: PathBuf,
    shadow: Mutex<Shadow>,
}

fn stress_secs() -> u64 {
    std::env::var("DAXFS_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

/// Pages that may be poisoned: marked before an injection starts, never unmarked. A read or
/// write may fail with EIO only if its range includes one; mmap readers hold the lock while they
/// touch a page so an injection cannot start on it meanwhile.
type Maybe = Mutex<HashMap<usize, BTreeSet<u64>>>;

fn range_maybe(maybe: &Maybe, file: usize, first: u64, end: u64) -> bool {
    maybe
        .lock()
        .unwrap()
        .get(&file)
        .is_some_and(|s| s.range(first..end).next().is_some())
}

/// Whether a short read or write of file `file` that ended at byte `at` of a request ending at
/// `stop` is explained by poison (a read passes `stop = at + 1`: it stops right at the page).
/// Through the page cache the kernel sends a buffered write in batches, and when a later batch
/// fails with `EIO` (it covers a poisoned page in part) the write returns the bytes of the batches
/// before it, so it stops at a page boundary before the poisoned page, not necessarily right at it.
fn short_at_maybe(maybe: &Maybe, file: usize, at: u64, stop: u64) -> bool {
    at % PAGE == 0 && range_maybe(maybe, file, at / PAGE, stop.div_ceil(PAGE))
}

fn stress_op(
    rng: &mut rand::rngs::StdRng,
    files: &[SFile],
    maybe: &Maybe,
    max_pages: u64,
) -> Result<(), String> {
    let fi = rng.random_range(0..files.len());
    let sf = &files[fi];
    let mut sh = sf.shadow.lock().unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&sf.path)
        .map_err(|e| format!("open: {e}"))?;
    let size = sh.data.len() as u64;
    match rng.random_range(0..100) {
        0..=34 => {
            // pread of a random range.
            if size == 0 {
                return Ok(());
            }
            let off = rng.random_range(0..size);
            let len = rng.random_range(1..=(size - off).min(64 << 10));
            let mut b = vec![0u8; len as usize];
            match f.read_at(&mut b, off) {
                Ok(n) => {
                    if b[..n] != sh.data[off as usize..off as usize + n] {
                        let at = (0..n).find(|&i| b[i] != sh.data[off as usize + i]);
                        return Err(format!(
                            "{fi}: read [{off}, +{len}) differs at {:?}",
                            at.map(|i| off + i as u64)
                        ));
                    }
                    // Through the page cache (dax=never) a read stops short at a poisoned page
                    // (the kernel returns what it copied before the failed page).
                    if n as u64 != len
                        && !short_at_maybe(maybe, fi, off + n as u64, off + n as u64 + 1)
                    {
                        return Err(format!("{fi}: short read {n} of [{off}, +{len})"));
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    if !range_maybe(maybe, fi, off / PAGE, (off + len).div_ceil(PAGE)) {
                        return Err(format!("{fi}: EIO reading clean [{off}, +{len})"));
                    }
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        35..=64 => {
            // pwrite, page-aligned whole pages or arbitrary.
            let off = if rng.random_bool(0.5) {
                rng.random_range(0..max_pages) * PAGE
            } else {
                rng.random_range(0..max_pages * PAGE)
            };
            let len = if rng.random_bool(0.5) {
                rng.random_range(1..=16) * PAGE
            } else {
                rng.random_range(1..20000)
            };
            let len = len.min(max_pages * PAGE - off).max(1);
            let buf = pattern(rng.random(), len as usize);
            match f.write_at(&buf, off) {
                Ok(n) if n as u64 == len => {
                    let end = (off + len) as usize;
                    if sh.data.len() < end {
                        sh.data.resize(end, 0);
                    }
                    sh.data[off as usize..end].copy_from_slice(&buf);
                }
                Ok(n) if short_at_maybe(maybe, fi, off + n as u64, off + len) => {
                    // Through the page cache (dax=never) a write stops short at a page boundary
                    // before a poisoned page it covers in part (see short_at_maybe).
                    let end = off as usize + n;
                    if sh.data.len() < end {
                        sh.data.resize(end, 0);
                    }
                    sh.data[off as usize..end].copy_from_slice(&buf[..n]);
                }
                Ok(n) => return Err(format!("{fi}: short write {n} of [{off}, +{len})")),
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    if !range_maybe(maybe, fi, off / PAGE, (off + len).div_ceil(PAGE)) {
                        return Err(format!("{fi}: EIO writing clean [{off}, +{len})"));
                    }
                }
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        65..=74 => {
            // mmap read of a page that is not (maybe) poisoned.
            let pages = size / PAGE;
            if pages == 0 {
                return Ok(());
            }
            let p = rng.random_range(0..pages);
            let mg = maybe.lock().unwrap();
            if mg.get(&fi).is_some_and(|s| s.contains(&p)) {
                return Ok(());
            }
            let map = Mmap::new(&f, (pages * PAGE) as usize);
            let got = map.page(p);
            drop(mg);
            if got[..] != sh.data[(p * PAGE) as usize..((p + 1) * PAGE) as usize] {
                return Err(format!("{fi}: mmap page {p} differs"));
            }
        }
        75..=84 => {
            let new = rng.random_range(0..=max_pages * PAGE);
            f.set_len(new).map_err(|e| format!("truncate: {e}"))?;
            sh.data.resize(new as usize, 0);
        }
        _ => {
            if size == 0 {
                return Ok(());
            }
            let off = rng.random_range(0..size);
            let len = rng.random_range(1..=(size - off).min(1 << 20));
            // SAFETY: fallocate on an open descriptor with plain integer arguments.
            let rc = unsafe {
                libc::fallocate(
                    f.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    off as i64,
                    len as i64,
                )
            };
            if rc != 0 {
                return Err(format!("punch: {}", io::Error::last_os_error()));
            }
            sh.data[off as usize..(off + len) as usize].fill(0);
        }
    }
    Ok(())
}

/// Clears every bad block by region while all files are quiet, zeroing the shadow of the pages
/// that were poisoned (those reading EIO).
fn clear_all(mnt: &Path, files: &[SFile], maybe: &Maybe) -> Result<(), String> {
    let mut shadows: Vec<_> = files.iter().map(|f| f.shadow.lock().unwrap()).collect();
    let mut mg = maybe.lock().unwrap();
    let mut zero = Vec::new();
    for (fi, pages) in mg.iter() {
        let f = File::open(&files[*fi].path).map_err(|e| e.to_string())?;
        for &p in pages {
            let len = shadows[*fi].data.len() as u64;
            if p * PAGE >= len {
                continue;
            }
            let mut b = vec![0u8; (((p + 1) * PAGE).min(len) - p * PAGE) as usize];
            if let Err(e) = f.read_exact_at(&mut b, p * PAGE) {
                if e.raw_os_error() != Some(libc::EIO) {
                    return Err(format!("clear_all read: {e}"));
                }
                zero.push((*fi, p));
            }
        }
    }
    for e in list_json(mnt) {
        let mut p = DaxfsPoison::new_request();
        p.flags = POISON_BY_REGION;
        p.offset = e["region_offset"].as_u64().unwrap();
        p.len = e["len"].as_u64().unwrap();
        poison_ioctl(mnt, DAXFS_IOC_CLEAR_POISON, &p).map_err(|e| format!("clear: {e}"))?;
    }
    for (fi, p) in zero {
        let d = &mut shadows[fi].data;
        let end = (((p + 1) * PAGE) as usize).min(d.len());
        d[(p * PAGE) as usize..end].fill(0);
    }
    mg.clear();
    if !list_json(mnt).is_empty() {
        return Err("bad blocks left after clearing them all".into());
    }
    Ok(())
}

/// The thread ids of the stress's workers (for the D-state watch).
type Tids = Mutex<Vec<i32>>;

fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// One stress run on `transport` (`""` for /dev/fuse, `"io_uring"`) with `dax`: three workers
/// (pread, pwrite, mmap reads, truncate, punch against a shadow copy) and an injector (one-page
/// file injections, every 150 a region clear of everything). Fails on: a hang (no progress for
/// 30 s), any worker or daemon task in D state for more than 5 s, an unmount slower than 20 s,
/// fsck not clean, or any byte outside the pages that may be poisoned differing from the shadow.
/// A hang or long D state aborts the FUSE connection first, so every blocked thread returns.
fn stress(uring: bool, dax: &str) {
    require_fuse!();
    if uring && !enable_uring() {
        return;
    }
    let what = format!("{} dax={dax}", if uring { "io_uring" } else { "/dev/fuse" });
    let secs = stress_secs();
    let r = Region::new("256M");
    let m = r.mount(&if uring {
        format!("dax={dax},io_uring")
    } else {
        format!("dax={dax}")
    });
    let conn = poison_util::connection_of(&m.mnt);
    const NFILES: usize = 4;
    const MAX_PAGES: u64 = 1024; // 4 MiB files: PMD and PTE entries
    let files: Arc<Vec<SFile>> = Arc::new(
        (0..NFILES)
            .map(|i| {
                let path = m.p(&format!("s{i}"));
                let data = pattern(i as u64, (MAX_PAGES * PAGE) as usize);
                let f = File::create(&path).unwrap();
                f.write_all_at(&data, 0).unwrap();
                SFile {
                    path,
                    shadow: Mutex::new(Shadow { data }),
                }
            })
            .collect(),
    );
    let maybe: Arc<Maybe> = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let injections = Arc::new(AtomicU64::new(0));
    let tids: Arc<Tids> = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for t in 0..3u64 {
        let (files, maybe, stop, progress, tids) = (
            files.clone(),
            maybe.clone(),
            stop.clone(),
            progress.clone(),
            tids.clone(),
        );
        workers.push(std::thread::spawn(move || -> Result<(), String> {
            tids.lock().unwrap().push(gettid());
            let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed + t);
            while !stop.load(Ordering::Relaxed) {
                stress_op(&mut rng, &files, &maybe, MAX_PAGES)?;
                progress.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    {
        // The injector: file injections of one page, racing with everything on that file.
        let mnt = m.mnt.clone();
        let (files, maybe, stop, progress, injections, tids) = (
            files.clone(),
            maybe.clone(),
            stop.clone(),
            progress.clone(),
            injections.clone(),
            tids.clone(),
        );
        workers.push(std::thread::spawn(move || -> Result<(), String> {
            tids.lock().unwrap().push(gettid());
            let mut rng = rand::rngs::StdRng::seed_from_u64(0x1e55);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(rng.random_range(5..60)));
                let fi = rng.random_range(0..NFILES);
                let page = rng.random_range(0..MAX_PAGES);
                maybe.lock().unwrap().entry(fi).or_default().insert(page);
                let mut p = DaxfsPoison::new_request();
                p.offset = page * PAGE;
                p.len = PAGE;
                match poison_ioctl(&files[fi].path, DAXFS_IOC_INJECT_POISON, &p) {
                    Ok(()) => {
                        if injections.fetch_add(1, Ordering::Relaxed) % 150 == 149 {
                            // Now and then clear everything (poisoned pages become zeros),
                            // with every file quiet.
                            clear_all(&mnt, &files, &maybe)?;
                        }
                    }
                    // Past the end of a file truncated meanwhile.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                    Err(e) => return Err(format!("inject: {e}")),
                }
                progress.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    // Watchdog: no progress for 30 s is a hang, a task in D state for 5 s a failure; either
    // aborts the connection, which unblocks every thread.
    let start = Instant::now();
    let mut last = (0, Instant::now());
    let mut failed = None;
    let mut dstate = poison_util::DStateWatch::default();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(100));
        if workers.iter().any(|w| w.is_finished()) {
            break;
        }
        // The daemon's tasks and our own workers (other tests of this binary run beside us).
        let me = std::process::id() as i32;
        let ours = tids.lock().unwrap().clone();
        let mut tasks = poison_util::tasks_of(&[m.pid as i32]);
        tasks.extend(ours.iter().map(|&tid| (me, tid)));
        let stuck = dstate.sample_tasks(&tasks, Duration::from_secs(5));
        let p = progress.load(Ordering::Relaxed);
        if p != last.0 {
            last = (p, Instant::now());
        }
        let hang = last.1.elapsed() > Duration::from_secs(30);
        if stuck.is_some() || hang {
            let mut report = poison_util::hang_report(&[m.pid as i32]);
            for &tid in &ours {
                report.push('\n');
                report.push_str(&poison_util::task_report(me, tid));
            }
            failed = Some(format!(
                "{what}: {} ; tasks:\n{report}",
                if hang {
                    "no progress for 30 s (hang)".to_string()
                } else {
                    format!("task {stuck:?} in D state for more than 5 s")
                }
            ));
            poison_util::abort_connection(&m.mnt, conn);
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let results: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    if let Some(f) = failed {
        drop(m);
        panic!("{f}");
    }
    for r in results {
        r.unwrap();
    }
    let ops = progress.load(Ordering::Relaxed);
    let inj = injections.load(Ordering::Relaxed);
    eprintln!(
        "stress {what}: {secs} s, {ops} operations, {inj} injections, longest D state {:?}",
        dstate.worst.0
    );
    assert!(
        inj > 0 && ops > 100,
        "{what}: too little happened: {ops} ops, {inj} injections"
    );

    // Final check: no entry locked, every page not (maybe) poisoned holds the shadow's bytes.
    let mg = maybe.lock().unwrap();
    for (fi, sf) in files.iter().enumerate() {
        for e in mappings(&sf.path) {
            assert_eq!(
                e.3 & 1,
                0,
                "{}: entry left locked: {e:?}",
                sf.path.display()
            );
        }
        let sh = sf.shadow.lock().unwrap();
        let f = File::open(&sf.path).unwrap();
        assert_eq!(f.metadata().unwrap().len(), sh.data.len() as u64);
        for p in 0..(sh.data.len() as u64).div_ceil(PAGE) {
            let end = ((p + 1) * PAGE).min(sh.data.len() as u64);
            let mut b = vec![0u8; (end - p * PAGE) as usize];
            match f.read_exact_at(&mut b, p * PAGE) {
                Ok(()) => assert_eq!(
                    b[..],
                    sh.data[(p * PAGE) as usize..end as usize],
                    "{what}: file {fi} page {p}"
                ),
                Err(e) if e.raw_os_error() == Some(libc::EIO) => assert!(
                    mg.get(&fi).is_some_and(|s| s.contains(&p)),
                    "{what}: file {fi} page {p}: EIO but never injected"
                ),
                Err(e) => panic!("{what}: file {fi} page {p}: {e}"),
            }
        }
    }
    drop(mg);
    let t = Instant::now();
    m.unmount();
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "{what}: unmount took {:?}",
        t.elapsed()
    );
    r.assert_fsck_clean(&format!("after stress {what}"));
}

#[test]
fn stress_dev_fuse_dax_always() {
    stress(false, "always");
}

#[test]
fn stress_dev_fuse_dax_never() {
    stress(false, "never");
}

#[test]
fn stress_io_uring_dax_always() {
    stress(true, "always");
}

#[test]
fn stress_io_uring_dax_never() {
    stress(true, "never");
}

#[test]
fn poison_list_coalesces_like_sysfs_and_json_has_offset_and_length() {
    require_fuse!();
    let r = Region::new("32M");
    let m = r.mount("");
    let list_text = || daxfs_ok([OsStr::new("poison"), "list".as_ref(), m.mnt.as_os_str()]);
    assert_eq!(
        list_text(),
        "",
        "an empty list through a pipe prints nothing"
    );
    let f = m.p("one-page");
    fs::write(&f, pattern(9, PAGE as usize)).unwrap();
    let b = block_of(&f, 0);
    // The file's block and the next one (free or another owner's): two owners, one bad range.
    daxfs_ok([
        OsStr::new("poison"),
        "inject".as_ref(),
        "--region".as_ref(),
        m.mnt.as_os_str(),
        "--offset".as_ref(),
        (b * PAGE).to_string().as_ref(),
        "--len".as_ref(),
        (2 * PAGE).to_string().as_ref(),
    ]);
    let list = list_json(&m.mnt);
    assert_eq!(list.len(), 2, "one entry per owner: {list:?}");
    assert_eq!(list[0]["offset"], serde_json::json!(b * PAGE));
    assert_eq!(list[0]["length"], serde_json::json!(PAGE));
    assert_eq!(list[0]["file_offset"], serde_json::json!(0));
    assert_eq!(list[1]["offset"], serde_json::json!((b + 1) * PAGE));
    assert_eq!(
        list_text(),
        format!("{} 16\n", b * 8),
        "sysfs format: adjacent ranges are one line"
    );
}

/// `daxfs poison ARGS` on `target`; stdout and stderr.
fn poison_cli(args: &[&OsStr]) -> (bool, String, String) {
    let mut a = vec![OsStr::new("poison")];
    a.extend_from_slice(args);
    let o = daxfs(&a);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `poison inject`/`clear` say what they did (pages, holes, pages poisoned already, rounding;
/// `--json`, `--quiet`), `stat --mappings` shows poisoned pages, and a bad request names its
/// problem; on every transport and `dax=` mode.
#[test]
fn poison_cli_reports_what_it_did_on_every_mode() {
    require_fuse!();
    for opts in option_sets() {
        let r = Region::new("64M");
        let m = r.mount(opts);
        let path = m.p("f");
        let data = pattern(5, 4 << 20);
        let f = File::create(&path).unwrap();
        f.write_all_at(&data, 0).unwrap();
        f.set_len(8 << 20).unwrap(); // pages 1024.. are holes
        drop(f);
        let file = path.as_os_str();
        let w = path.display().to_string();
        let run = |args: &[&str]| {
            let mut a: Vec<&OsStr> = args[..1].iter().map(OsStr::new).collect();
            a.push(file);
            a.extend(args[1..].iter().map(OsStr::new));
            let (ok, out, err) = poison_cli(&a);
            assert!(ok, "{opts}: poison {args:?}: {err}");
            out
        };
        assert_eq!(
            run(&["inject", "--offset", "0", "--len", "2M"]),
            format!("poisoned 512 pages [0x0, 0x200000) of {w}\n"),
            "{opts}"
        );
        assert_eq!(
            run(&["inject", "--offset", "4k"]),
            "page 1 was poisoned already\n",
            "{opts}"
        );
        assert_eq!(
            run(&["inject", "--offset", &((1031 * PAGE).to_string())]),
            "page 1031 is a hole: nothing is mapped there, nothing poisoned\n",
            "{opts}"
        );
        assert_eq!(
            run(&["inject", "--offset", &((2 << 20) + 123).to_string()]),
            format!(
                "offset 2097275 rounded to the page [2097152, 2101248)\n\
                 poisoned 1 page [0x200000, 0x201000) of {w}\n"
            ),
            "{opts}"
        );
        let j: serde_json::Value =
            serde_json::from_str(&run(&["inject", "--offset", "3M", "--len", "8k", "--json"]))
                .unwrap();
        assert_eq!(
            (
                &j["pages"],
                &j["blocks"],
                &j["holes"],
                &j["start"],
                &j["end"]
            ),
            (
                &serde_json::json!(2),
                &serde_json::json!(2),
                &serde_json::json!(0),
                &serde_json::json!(3 << 20),
                &serde_json::json!((3 << 20) + 8192)
            ),
            "{opts}: {j}"
        );
        assert_eq!(run(&["inject", "--offset", "3100k", "--quiet"]), "");
        let f = File::open(&path).unwrap();
        assert_errno(read_page(&f, 3100 / 4), libc::EIO);
        assert_eq!(read_page(&f, 3100 / 4 + 1).unwrap(), pg(&data, 776));
        // Every poisoned page is a line of the mappings, flagged.
        let j: serde_json::Value = serde_json::from_str(&daxfs_ok([
            OsStr::new("stat"),
            "--mappings".as_ref(),
            file,
            "--json".as_ref(),
        ]))
        .unwrap();
        let bad: Vec<u64> = j
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["poisoned"] == serde_json::json!(true))
            .map(|e| e["file_index"].as_u64().unwrap())
            .collect();
        let want: Vec<u64> = (0..512).chain([512, 768, 769, 775]).collect();
        assert_eq!(
            bad, want,
            "{opts}: poisoned pages in stat --mappings --json"
        );
        // Clear: what was cleared, then that nothing was left to clear.
        assert_eq!(
            run(&["clear", "--offset", "0", "--len", "2M"]),
            format!("cleared 512 pages [0x0, 0x200000) of {w}: they read as zeros now\n"),
            "{opts}"
        );
        assert_eq!(
            run(&["clear", "--offset", "0", "--len", "2M"]),
            "512 pages of [0x0, 0x200000) were not poisoned: nothing to clear there\n",
            "{opts}"
        );
        assert_eq!(read_page(&f, 5).unwrap(), vec![0u8; PAGE as usize]);
        // By region offset: the block of file page 900.
        let b = block_of(&path, 900) * PAGE;
        let mnt = m.mnt.display().to_string();
        let region = |verb: &str| {
            let off = b.to_string();
            let a: Vec<&OsStr> = [verb, "--region", &mnt, "--offset", &off]
                .into_iter()
                .map(OsStr::new)
                .collect();
            let (ok, out, err) = poison_cli(&a);
            assert!(ok, "{opts}: poison {verb} --region: {err}");
            out
        };
        let span = format!("[{b:#x}, {:#x})", b + PAGE);
        assert_eq!(
            region("inject"),
            format!("poisoned 1 block {span} of the region of {mnt} (1 page of 1 file)\n"),
            "{opts}"
        );
        assert_errno(read_page(&f, 900), libc::EIO);
        assert_eq!(
            region("clear"),
            format!(
                "cleared 1 bad block {span} of the region of {mnt} (1 page of 1 file; cleared \
                 file pages read as zeros)\n"
            ),
            "{opts}"
        );
        drop(f);
        // Bad requests name the problem.
        let err = |args: &[&OsStr]| {
            let (ok, out, err) = poison_cli(args);
            assert!(!ok, "{opts}: {args:?} succeeded: {out}");
            assert!(!err.contains("panicked"), "{err}");
            err
        };
        let e = err(&[
            OsStr::new("inject"),
            file,
            "--offset".as_ref(),
            "100M".as_ref(),
        ]);
        assert!(
            e.contains(&format!("offset 100 MiB is past the end of {w} (8 MiB)")),
            "{e}"
        );
        let e = err(&[
            OsStr::new("inject"),
            file,
            "--offset".as_ref(),
            "7M".as_ref(),
            "--len".as_ref(),
            "2M".as_ref(),
        ]);
        assert!(
            e.contains("runs past the end of") && e.contains("(8 MiB)"),
            "{e}"
        );
        let e = err(&[
            OsStr::new("inject"),
            m.mnt.as_os_str(),
            "--offset".as_ref(),
            "0".as_ref(),
        ]);
        assert!(e.contains("is a directory"), "{e}");
        let e = err(&[
            OsStr::new("inject"),
            "--region".as_ref(),
            file,
            "--offset".as_ref(),
            "0".as_ref(),
        ]);
        assert!(
            e.contains("--region needs the mount point, not a file"),
            "{e}"
        );
        let e = err(&[
            OsStr::new("inject"),
            "--region".as_ref(),
            m.mnt.as_os_str(),
            "--offset".as_ref(),
            "100".as_ref(),
        ]);
        assert!(e.contains("is not 4 KiB-aligned"), "{e}");
        let outside = r.dir.path().join("not-daxfs");
        fs::write(&outside, [0u8; 8192]).unwrap();
        let e = err(&[
            OsStr::new("inject"),
            outside.as_os_str(),
            "--offset".as_ref(),
            "0".as_ref(),
        ]);
        assert!(
            e.contains("is not on a daxfs mount")
                && !e.contains("ENOTTY")
                && !e.contains("os error"),
            "{e}"
        );
        m.unmount();
        r.assert_fsck_clean(opts);
    }
}
