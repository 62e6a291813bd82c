//! The daemon side of direct mapping on a real mount, driven by hand (no preload library): the
//! two ioctls, lease connections and their admission, revocation before truncate and punch,
//! the bounded wait and the fence that keeps freed blocks out of reuse, on `/dev/fuse` and
//! `-o io_uring`.

mod common;
mod direct_util;

use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use daxfs::direct::wire;
use daxfs::ioctl::direct::*;
use direct_util::*;

const MB2: u64 = 2 << 20;
const PAGE: u64 = 4096;

fn write_file(p: &std::path::Path, data: &[u8]) -> std::fs::File {
    let f = create_rw(p);
    f.write_all_at(data, 0).unwrap();
    f.sync_all().unwrap();
    f
}

/// `daxfs stat MNT --json`'s free block count.
fn free_blocks(mnt: &std::path::Path) -> u64 {
    let out = daxfs_ok(["stat".as_ref(), mnt.as_os_str(), "--json".as_ref()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["free_blocks"]
        .as_u64()
        .expect("free_blocks in stat --json")
}

fn info_and_fmap_on(transport: &str) {
    let r = Region::new("64M");
    let m = r.mount(&opts(transport, "always"));
    let data = pattern(1, 2 * MB2 as usize);
    let f = write_file(&m.p("f"), &data);
    let i = direct_info(f.as_raw_fd()).unwrap();
    assert_ne!(i.flags & DIRECT_AVAILABLE, 0);
    assert_ne!(i.flags & DIRECT_INODE_DAX, 0);
    assert_eq!(i.flags & DIRECT_READ_ONLY, 0);
    assert_eq!(i.daemon_pid, m.pid);
    let canon = std::fs::canonicalize(&r.path).unwrap();
    assert_eq!(i.region_path_bytes(), canon.as_os_str().as_encoded_bytes());
    let md = std::fs::metadata(&r.path).unwrap();
    assert_eq!(
        (i.region_dev, i.region_ino, i.region_size),
        (md.dev(), md.ino(), md.len())
    );
    // The mount root answers too (any file of the mount).
    let root = std::fs::File::open(&m.mnt).unwrap();
    assert_eq!(direct_info(root.as_raw_fd()).unwrap().mount_id, i.mount_id);

    let ino = f.metadata().unwrap().ino();
    let l = Lease::connect(&i).expect("root is admitted");
    assert_eq!(l.access, wire::ACCESS_RW);
    let (size, ext) = get_fmap(f.as_raw_fd(), l.token, 1, 0, 1 << 20, FMAP_LEASE).unwrap();
    assert_eq!(size, 2 * MB2);
    assert_eq!(ext.len(), 1, "{ext:?}");
    assert_eq!(
        (ext[0].page, ext[0].nr_pages, ext[0].kind, ext[0].order),
        (0, 1024, FMAP_DATA, 9)
    );
    assert_eq!(ext[0].region_offset % MB2, 0);
    // The extent really is where the file's bytes are in the region.
    let region = std::fs::File::open(&r.path).unwrap();
    let mut got = vec![0u8; 2 * MB2 as usize];
    region
        .read_exact_at(&mut got, ext[0].region_offset)
        .unwrap();
    assert!(
        got == data,
        "region bytes at the reported offset differ from the file"
    );

    // Truncate waits for the lease holder's acknowledgement.
    let (tx, rx) = mpsc::channel();
    let p = m.p("f");
    let t = std::thread::spawn(move || {
        let g = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        g.set_len(MB2 / 2).unwrap();
        tx.send(()).unwrap();
    });
    let rv = l.recv();
    assert_eq!(rv.kind, wire::REVOKE);
    // (No stat of the file here: it would wait for the truncate.)
    assert_eq!((rv.reason, rv.ino), (wire::REASON_TRUNCATE, ino));
    assert_eq!((rv.first, rv.end, rv.arg), (256, u64::MAX, MB2 / 2));
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "truncate returned before the holder acknowledged"
    );
    l.ack(rv.seq);
    rx.recv_timeout(Duration::from_secs(30))
        .expect("truncate returns once acknowledged");
    t.join().unwrap();
    let (size, ext) = get_fmap(f.as_raw_fd(), 0, 0, 0, 1 << 20, 0).unwrap();
    assert_eq!((size, ext.len(), ext[0].nr_pages), (MB2 / 2, 1, 256));

    // Allocation for a writable shared mapping: holes become zeroed blocks; the other holders'
    // leases of the holes are revoked (their zero pages are stale), the allocating caller's new
    // lease is recorded after the allocation (not revoked for it).
    drop(l); // its lease ends with the connection (this process does not map the region)
    std::thread::sleep(Duration::from_millis(100));
    f.set_len(2 * MB2).unwrap();
    let l2 = Lease::connect(&i).unwrap();
    get_fmap(f.as_raw_fd(), l2.token, 1, 256, 512, FMAP_LEASE).unwrap();
    let l3 = Lease::connect(&i).unwrap();
    let (tx, rx) = mpsc::channel();
    let (fd, tok) = (f.as_raw_fd(), l3.token);
    let a = std::thread::spawn(move || {
        let r = get_fmap(fd, tok, 1, 0, 1024, FMAP_LEASE | FMAP_ALLOCATE);
        tx.send(()).unwrap();
        r
    });
    let rv = l2.recv();
    assert_eq!(
        (rv.reason, rv.first, rv.end),
        (wire::REASON_FILL, 256, 1024)
    );
    l2.ack(rv.seq);
    rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let (_, ext) = a.join().unwrap().unwrap();
    assert!(ext.iter().all(|e| e.kind == FMAP_DATA), "{ext:?}");
    assert!(
        !l3.pending(100),
        "the allocating holder is not revoked for its own allocation"
    );
    drop((f, root));
    m.unmount();
    r.assert_fsck_clean(&format!("after the lease exercise ({transport:?})"));
}

#[test]
fn info_fmap_and_revocation_round_trip() {
    require_fuse!();
    info_and_fmap_on("noio_uring");
}

#[test]
fn info_fmap_and_revocation_round_trip_io_uring() {
    require_fuse!();
    enable_uring();
    info_and_fmap_on("io_uring");
}

#[test]
fn an_unanswered_revocation_fences_the_freed_blocks() {
    require_fuse!();
    let r = Region::new("64M");
    let log = r.dir.path().join("daemon.log");
    let m = mount_with(
        &r.path,
        &r.mnt,
        "",
        &[("DAXFS_LEASE_TIMEOUT_MS", "300"), ("DAXFS_LOG", "info")],
        Some(&log),
    );
    let f = write_file(&m.p("f"), &pattern(2, MB2 as usize));
    let i = direct_info(f.as_raw_fd()).unwrap();
    let l = Lease::connect(&i).unwrap();
    let (_, ext) = get_fmap(f.as_raw_fd(), l.token, 1, 0, 512, FMAP_LEASE).unwrap();
    let punched = ext[0].region_offset / PAGE;
    let free0 = free_blocks(&m.mnt);
    let start = Instant::now();
    // SAFETY: punching a hole in our own open file.
    let rc = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            0,
            MB2 as i64,
        )
    };
    assert_eq!(rc, 0);
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "it waited for the holder"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("did not acknowledge")
            && text.contains(&format!("pid {}", std::process::id())),
        "the log names the silent holder:\n{text}"
    );
    assert_eq!(
        free_blocks(&m.mnt),
        free0,
        "the punched blocks stay allocated"
    );
    // Another file gets other blocks, however much it writes.
    let g = write_file(&m.p("g"), &pattern(3, 8 * MB2 as usize));
    let (_, gext) = get_fmap(g.as_raw_fd(), 0, 0, 0, 1 << 20, 0).unwrap();
    for e in &gext {
        let (s, n) = (e.region_offset / PAGE, e.nr_pages);
        assert!(
            s + n <= punched || s >= punched + 512,
            "quarantined block reused: {e:?}"
        );
    }
    // The late acknowledgement lifts the fence: the blocks are free again.
    let rv = l.recv();
    assert_eq!(rv.reason, wire::REASON_PUNCH);
    let free1 = free_blocks(&m.mnt);
    l.ack(rv.seq);
    let deadline = Instant::now() + Duration::from_secs(30);
    while free_blocks(&m.mnt) != free1 + 512 {
        assert!(
            Instant::now() < deadline,
            "fence not lifted after the late ack"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop((f, g));
    m.unmount();
    r.assert_fsck_clean("after the fence");
}

#[test]
fn a_closed_connection_drops_leases_unless_the_region_is_still_mapped() {
    require_fuse!();
    let r = Region::new("64M");
    let m = mount_with(
        &r.path,
        &r.mnt,
        "",
        &[("DAXFS_LEASE_TIMEOUT_MS", "20000")],
        None,
    );
    let f = write_file(&m.p("f"), &pattern(4, MB2 as usize));
    let i = direct_info(f.as_raw_fd()).unwrap();
    // Not mapping the region: closing the connection ends the lease; a punch does not wait.
    let l = Lease::connect(&i).unwrap();
    get_fmap(f.as_raw_fd(), l.token, 1, 0, 512, FMAP_LEASE).unwrap();
    drop(l);
    std::thread::sleep(Duration::from_millis(200));
    let punch = |off: i64| {
        let start = Instant::now();
        // SAFETY: punching a hole in our own open file.
        let rc = unsafe {
            libc::fallocate(
                f.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off,
                PAGE as i64,
            )
        };
        assert_eq!(rc, 0);
        start.elapsed()
    };
    assert!(punch(0) < Duration::from_secs(10));
    // Still mapping the region: the holder turns silent and every revocation fences at once
    // (no 20 s wait); once the mapping is gone, it is resolved.
    let region = std::fs::OpenOptions::new()
        .read(true)
        .open(&r.path)
        .unwrap();
    // SAFETY: a read-only shared mapping of the region, unmapped below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE as usize,
            libc::PROT_READ,
            libc::MAP_SHARED,
            region.as_raw_fd(),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED);
    let l = Lease::connect(&i).unwrap();
    get_fmap(f.as_raw_fd(), l.token, 1, 0, 512, FMAP_LEASE).unwrap();
    drop(l);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        punch(PAGE as i64) < Duration::from_secs(10),
        "a silent holder is not waited for"
    );
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(map, PAGE as usize) };
    std::thread::sleep(Duration::from_millis(1000));
    assert!(punch(2 * PAGE as i64) < Duration::from_secs(10));
    drop(f);
    m.unmount();
}

#[test]
fn admission_tokens_and_dax_modes() {
    require_fuse!();
    let r = Region::new("64M");
    std::fs::set_permissions(&r.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let m = r.mount("dax=inode");
    let f = write_file(&m.p("f"), &[1u8; 4096]);
    std::fs::set_permissions(m.p("f"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let i = direct_info(f.as_raw_fd()).unwrap();
    assert_eq!(
        i.flags & DIRECT_INODE_DAX,
        0,
        "dax=inode without FS_XFLAG_DAX"
    );
    // Not a DAX inode: no layout.
    let e = get_fmap(f.as_raw_fd(), 0, 0, 0, 1, 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP));
    // Allocation needs a token; an unknown token is refused.
    let e = get_fmap(f.as_raw_fd(), 0, 0, 0, 1, FMAP_ALLOCATE).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    // Someone who may not open the region (0600, owned by root) is not admitted.
    let name = i.socket_name().to_vec();
    let code = as_user(65534, 65534, || {
        let fd = match daxfs::direct::seqpacket::connect(&name) {
            Ok(fd) => fd,
            Err(_) => return 10,
        };
        match daxfs::direct::seqpacket::recv(fd.as_raw_fd()) {
            Ok(None) => 0, // closed without a welcome
            Ok(Some(_)) => 11,
            Err(_) => 12,
        }
    });
    assert_eq!(code, 0, "an unprivileged peer got a welcome");
    // A token from someone else's connection is refused to this uid.
    let l = Lease::connect(&i).unwrap();
    let p = m.p("f");
    let tok = l.token;
    let code = as_user(65534, 65534, || {
        let Ok(g) = std::fs::File::open(&p) else {
            return 20;
        };
        match get_fmap(g.as_raw_fd(), tok, 1, 0, 1, FMAP_LEASE) {
            Err(e) => e.raw_os_error().unwrap_or(21),
            Ok(_) => 0,
        }
    });
    assert!(
        code == libc::EACCES || code == libc::EOPNOTSUPP,
        "got {code}"
    );
    drop(f);
    m.unmount();
}
