//! POSIX operations over a real FUSE mount (issue 2, acceptance 2): every operation the adapter
//! translates, with the error cases users meet.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// `renameat2(2)` of two names in the mount.
fn renameat2(m: &MountGuard, from: &str, to: &str, flags: u32) -> std::io::Result<i32> {
    // SAFETY: valid C paths.
    cvt(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cpath(&m.p(from)).as_ptr(),
            libc::AT_FDCWD,
            cpath(&m.p(to)).as_ptr(),
            flags,
        )
    })
}

fn read_all(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[test]
fn files_read_write_attributes() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    let f = m.p("a.txt");
    let data = pattern(1, 300_000);
    {
        let mut fh = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o640)
            .open(&f)
            .unwrap();
        fh.write_all(&data).unwrap();
        fh.sync_all().unwrap();
        fh.sync_data().unwrap();
    }
    assert_eq!(read_all(&f), data);
    let md = fs::metadata(&f).unwrap();
    assert_eq!(md.len(), data.len() as u64);
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert!(md.is_file());
    assert_eq!(md.nlink(), 1);
    assert!(md.blocks() * 512 >= data.len() as u64);

    // pread/pwrite at offsets.
    let mut fh = OpenOptions::new().read(true).write(true).open(&f).unwrap();
    fh.seek(SeekFrom::Start(1000)).unwrap();
    fh.write_all(b"HELLO").unwrap();
    let mut buf = [0u8; 5];
    fh.seek(SeekFrom::Start(1000)).unwrap();
    fh.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HELLO");
    drop(fh);

    // chmod, chown, truncate (shrink and grow with zeros), utimes.
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o600);
    std::os::unix::fs::chown(&f, Some(1000), Some(1001)).unwrap();
    let md = fs::metadata(&f).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1001));
    let fh = OpenOptions::new().write(true).open(&f).unwrap();
    fh.set_len(10).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().len(), 10);
    fh.set_len(5000).unwrap();
    drop(fh);
    let back = read_all(&f);
    assert_eq!(back.len(), 5000);
    assert_eq!(&back[..10], &data[..10]);
    assert!(back[10..].iter().all(|&b| b == 0), "grown part reads zeros");
    let times = [
        libc::timespec {
            tv_sec: 1_000_000,
            tv_nsec: 5,
        },
        libc::timespec {
            tv_sec: 2_000_000,
            tv_nsec: 7,
        },
    ];
    // SAFETY: valid C path and a two-element timespec array.
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, cpath(&f).as_ptr(), times.as_ptr(), 0) }).unwrap();
    let md = fs::metadata(&f).unwrap();
    assert_eq!((md.atime(), md.atime_nsec()), (1_000_000, 5));
    assert_eq!((md.mtime(), md.mtime_nsec()), (2_000_000, 7));

    // O_TRUNC and O_APPEND.
    fs::write(&f, b"abc").unwrap();
    let mut a = OpenOptions::new().append(true).open(&f).unwrap();
    a.write_all(b"def").unwrap();
    drop(a);
    assert_eq!(read_all(&f), b"abcdef");
    m.unmount();
}

#[test]
fn directories_and_errors() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    let d = m.p("dir");
    fs::create_dir(&d).unwrap();
    assert!(fs::metadata(&d).unwrap().is_dir());
    assert_errno(fs::create_dir(&d), libc::EEXIST);
    fs::write(d.join("f"), b"x").unwrap();
    assert_errno(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(d.join("f")),
        libc::EEXIST,
    );
    assert_errno(fs::remove_dir(&d), libc::ENOTEMPTY);
    assert_errno(fs::read(m.p("missing")), libc::ENOENT);
    assert_errno(fs::remove_file(m.p("missing")), libc::ENOENT);
    assert_errno(fs::metadata(d.join("f").join("x")), libc::ENOTDIR);
    assert_errno(fs::create_dir(d.join("f").join("x")), libc::ENOTDIR);
    assert_errno(OpenOptions::new().write(true).open(&d), libc::EISDIR);
    assert_errno(fs::remove_dir(d.join("f")), libc::ENOTDIR);
    assert_errno(fs::remove_file(&d), libc::EISDIR);
    let long = "n".repeat(256);
    assert_errno(fs::write(m.p(&long), b"x"), libc::ENAMETOOLONG);
    assert_errno(fs::create_dir(m.p(&long)), libc::ENAMETOOLONG);
    let ok = "n".repeat(255);
    fs::write(m.p(&ok), b"x").unwrap();
    assert_eq!(read_all(&m.p(&ok)), b"x");

    // Many entries: readdir(plus) paging returns each exactly once, with types.
    let many = m.p("many");
    fs::create_dir(&many).unwrap();
    for i in 0..400 {
        if i % 4 == 0 {
            fs::create_dir(many.join(format!("d{i:04}"))).unwrap();
        } else {
            fs::write(many.join(format!("f{i:04}")), i.to_string()).unwrap();
        }
    }
    let mut names: Vec<_> = fs::read_dir(&many)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let is_dir = e.file_type().unwrap().is_dir();
            let n = e.file_name().into_string().unwrap();
            assert_eq!(is_dir, n.starts_with('d'), "{n}");
            n
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 400);
    names.dedup();
    assert_eq!(names.len(), 400);
    // fsyncdir.
    File::open(&many).unwrap().sync_all().unwrap();
    for i in 0..400 {
        if i % 4 == 0 {
            fs::remove_dir(many.join(format!("d{i:04}"))).unwrap();
        } else {
            fs::remove_file(many.join(format!("f{i:04}"))).unwrap();
        }
    }
    fs::remove_dir(&many).unwrap();
    assert_errno(fs::metadata(&many), libc::ENOENT);
    assert_eq!(
        fs::metadata(m.p("")).unwrap().nlink(),
        3,
        "root: ., .., dir"
    );
    m.unmount();
}

#[test]
fn links_symlinks_and_renames() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    fs::write(m.p("a"), b"AAA").unwrap();
    fs::write(m.p("b"), b"BBB").unwrap();
    std::os::unix::fs::symlink("a", m.p("s")).unwrap();
    assert_eq!(fs::read_link(m.p("s")).unwrap(), Path::new("a"));
    assert!(fs::symlink_metadata(m.p("s"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(read_all(&m.p("s")), b"AAA");
    let long_target = "t/".repeat(1000);
    std::os::unix::fs::symlink(&long_target, m.p("long")).unwrap();
    assert_eq!(fs::read_link(m.p("long")).unwrap(), Path::new(&long_target));

    fs::hard_link(m.p("a"), m.p("a2")).unwrap();
    let (ma, ma2) = (
        fs::metadata(m.p("a")).unwrap(),
        fs::metadata(m.p("a2")).unwrap(),
    );
    assert_eq!(ma.ino(), ma2.ino());
    assert_eq!(ma.nlink(), 2);
    assert_errno(fs::hard_link(m.p("a"), m.p("b")), libc::EEXIST);
    fs::remove_file(m.p("a2")).unwrap();
    assert_eq!(fs::metadata(m.p("a")).unwrap().nlink(), 1);

    let rename2 = |from: &str, to: &str, flags: u32| renameat2(&m, from, to, flags);
    assert_errno(rename2("a", "b", libc::RENAME_NOREPLACE), libc::EEXIST);
    rename2("a", "b", libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(read_all(&m.p("a")), b"BBB");
    assert_eq!(read_all(&m.p("b")), b"AAA");
    rename2("a", "c", libc::RENAME_NOREPLACE).unwrap();
    assert_errno(fs::metadata(m.p("a")), libc::ENOENT);
    fs::rename(m.p("c"), m.p("b")).unwrap(); // replaces b
    assert_eq!(read_all(&m.p("b")), b"BBB");
    assert_errno(rename2("zz", "b", 0), libc::ENOENT);

    fs::create_dir_all(m.p("d1/sub")).unwrap();
    fs::create_dir(m.p("d2")).unwrap();
    fs::write(m.p("d2/x"), b"x").unwrap();
    assert_errno(fs::rename(m.p("d1"), m.p("d2")), libc::ENOTEMPTY);
    fs::remove_file(m.p("d2/x")).unwrap();
    fs::rename(m.p("d1"), m.p("d2")).unwrap();
    assert!(fs::metadata(m.p("d2/sub")).unwrap().is_dir());
    assert_errno(fs::rename(m.p("d2"), m.p("b")), libc::ENOTDIR);
    assert_errno(fs::rename(m.p("b"), m.p("d2")), libc::EISDIR);
    // A directory moved between parents keeps a correct `..` link count.
    fs::create_dir(m.p("d3")).unwrap();
    fs::rename(m.p("d2/sub"), m.p("d3/sub")).unwrap();
    assert_eq!(fs::metadata(m.p("d2")).unwrap().nlink(), 2);
    assert_eq!(fs::metadata(m.p("d3")).unwrap().nlink(), 3);
    m.unmount();
}

#[test]
fn special_nodes() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("dev");
    let mk = |name: &str, mode: u32, dev: libc::dev_t| {
        // SAFETY: valid C path.
        cvt(unsafe { libc::mknod(cpath(&m.p(name)).as_ptr(), mode, dev) })
    };
    mk("fifo", libc::S_IFIFO | 0o644, 0).unwrap();
    mk("sock", libc::S_IFSOCK | 0o644, 0).unwrap();
    mk("chr", libc::S_IFCHR | 0o644, libc::makedev(1, 3)).unwrap();
    mk("blk", libc::S_IFBLK | 0o600, libc::makedev(7, 0)).unwrap();
    mk("reg", libc::S_IFREG | 0o600, 0).unwrap();
    let t = |n: &str| fs::symlink_metadata(m.p(n)).unwrap();
    assert!(t("fifo").file_type().is_fifo());
    assert!(t("sock").file_type().is_socket());
    assert!(t("chr").file_type().is_char_device());
    assert_eq!(t("chr").rdev(), libc::makedev(1, 3));
    assert!(t("blk").file_type().is_block_device());
    assert_eq!(t("blk").rdev(), libc::makedev(7, 0));
    assert!(t("reg").is_file());
    assert_eq!(t("blk").mode() & 0o7777, 0o600);
    assert_errno(mk("fifo", libc::S_IFIFO | 0o644, 0), libc::EEXIST);
    // The char device node works as /dev/null does (mounted with `dev`).
    let mut f = OpenOptions::new().write(true).open(m.p("chr")).unwrap();
    f.write_all(b"discarded").unwrap();
    drop(f);
    m.unmount();
}

fn xattr_set(p: &Path, name: &str, v: &[u8], flags: i32) -> std::io::Result<i32> {
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a value buffer of the given length.
    cvt(unsafe {
        libc::setxattr(
            cpath(p).as_ptr(),
            n.as_ptr(),
            v.as_ptr().cast(),
            v.len(),
            flags,
        )
    })
}

fn xattr_get(p: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe {
        libc::getxattr(
            cpath(p).as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

fn xattr_list(p: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid C string and a buffer of the given length.
    let r = unsafe { libc::listxattr(cpath(p).as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(r >= 0, "listxattr: {}", std::io::Error::last_os_error());
    buf.truncate(r as usize);
    buf.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[test]
fn extended_attributes() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    let f = m.p("x");
    fs::write(&f, b"data").unwrap();
    for name in ["user.one", "security.two", "trusted.three"] {
        xattr_set(&f, name, name.as_bytes(), 0).unwrap();
        assert_eq!(xattr_get(&f, name).unwrap(), name.as_bytes());
    }
    let big = pattern(3, 2000);
    xattr_set(&f, "user.big", &big, 0).unwrap();
    assert_eq!(xattr_get(&f, "user.big").unwrap(), big);
    let mut names = xattr_list(&f);
    names.sort();
    for n in ["security.two", "trusted.three", "user.big", "user.one"] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    // Size query (size 0).
    let n = std::ffi::CString::new("user.one").unwrap();
    // SAFETY: a null buffer of size 0 asks for the size.
    let sz = unsafe { libc::getxattr(cpath(&f).as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    assert_eq!(sz, 8);
    assert_errno(
        xattr_set(&f, "user.one", b"v", libc::XATTR_CREATE),
        libc::EEXIST,
    );
    assert_errno(
        xattr_set(&f, "user.none", b"v", libc::XATTR_REPLACE),
        libc::ENODATA,
    );
    xattr_set(&f, "user.one", b"new", libc::XATTR_REPLACE).unwrap();
    assert_eq!(xattr_get(&f, "user.one").unwrap(), b"new");
    assert_errno(xattr_get(&f, "user.none"), libc::ENODATA);
    let n = std::ffi::CString::new("user.one").unwrap();
    // SAFETY: valid C strings.
    cvt(unsafe { libc::removexattr(cpath(&f).as_ptr(), n.as_ptr()) }).unwrap();
    assert_errno(xattr_get(&f, "user.one"), libc::ENODATA);
    // On a directory too.
    fs::create_dir(m.p("d")).unwrap();
    xattr_set(&m.p("d"), "user.d", b"dir", 0).unwrap();
    assert_eq!(xattr_get(&m.p("d"), "user.d").unwrap(), b"dir");
    m.unmount();
}

fn seek(f: &File, off: i64, whence: i32) -> std::io::Result<i64> {
    // SAFETY: lseek on an open descriptor.
    let r = unsafe { libc::lseek(f.as_raw_fd(), off, whence) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn falloc(f: &File, mode: i32, off: i64, len: i64) -> std::io::Result<i32> {
    // SAFETY: fallocate on an open descriptor.
    cvt(unsafe { libc::fallocate(f.as_raw_fd(), mode, off, len) })
}

#[test]
fn fallocate_seek_data_hole_copy_file_range() {
    require_fuse!();
    let r = Region::new("128M");
    let m = r.mount("");
    const M8: i64 = 8 << 20;
    let p = m.p("sparse");
    let f = create_rw(&p);
    // Data at 0..4k and at 8M..8M+4k, a hole between.
    use std::os::unix::fs::FileExt;
    f.write_all_at(&pattern(5, 4096), 0).unwrap();
    f.write_all_at(&pattern(6, 4096), M8 as u64).unwrap();
    assert_eq!(seek(&f, 0, libc::SEEK_DATA).unwrap(), 0);
    let hole = seek(&f, 0, libc::SEEK_HOLE).unwrap();
    assert!((4096..M8).contains(&hole), "hole at {hole}");
    assert_eq!(seek(&f, hole, libc::SEEK_DATA).unwrap(), M8);
    assert_eq!(seek(&f, M8, libc::SEEK_HOLE).unwrap(), M8 + 4096);
    assert_errno(seek(&f, M8 + 4096, libc::SEEK_DATA), libc::ENXIO);
    let mut buf = vec![1u8; 4096];
    f.read_exact_at(&mut buf, 4 << 20).unwrap();
    assert!(buf.iter().all(|&b| b == 0), "hole reads zeros");

    // Default mode extends the size.
    let g = create_rw(&m.p("alloc"));
    falloc(&g, 0, 0, 1 << 20).unwrap();
    let md = g.metadata().unwrap();
    assert_eq!(md.len(), 1 << 20);
    assert!(md.blocks() * 512 >= 1 << 20);
    // KEEP_SIZE allocates without changing the size.
    falloc(&g, libc::FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20).unwrap();
    let md2 = g.metadata().unwrap();
    assert_eq!(md2.len(), 1 << 20);
    assert!(md2.blocks() > md.blocks());
    // PUNCH_HOLE zeros a range and keeps the size.
    g.write_all_at(&pattern(7, 1 << 20), 0).unwrap();
    falloc(
        &g,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        4096,
        8192,
    )
    .unwrap();
    let mut back = vec![0u8; 1 << 20];
    g.read_exact_at(&mut back, 0).unwrap();
    let want = pattern(7, 1 << 20);
    assert_eq!(&back[..4096], &want[..4096]);
    assert!(back[4096..12288].iter().all(|&b| b == 0));
    assert_eq!(&back[12288..], &want[12288..]);
    assert_eq!(g.metadata().unwrap().len(), 1 << 20);
    // ZERO_RANGE zeros and may extend.
    falloc(&g, libc::FALLOC_FL_ZERO_RANGE, 100_000, 50_000).unwrap();
    g.read_exact_at(&mut back, 0).unwrap();
    assert!(back[100_000..150_000].iter().all(|&b| b == 0));
    assert_eq!(&back[150_000..], &want[150_000..]);
    falloc(&g, libc::FALLOC_FL_ZERO_RANGE, 1 << 20, 4096).unwrap();
    assert_eq!(g.metadata().unwrap().len(), (1 << 20) + 4096);
    // An unsupported mode is refused.
    assert_errno(
        falloc(&g, libc::FALLOC_FL_COLLAPSE_RANGE, 0, 4096),
        libc::EOPNOTSUPP,
    );

    // copy_file_range.
    let src = pattern(9, 300_000);
    fs::write(m.p("src"), &src).unwrap();
    let a = File::open(m.p("src")).unwrap();
    let b = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(m.p("dst"))
        .unwrap();
    let mut off_in: i64 = 1000;
    let mut off_out: i64 = 5000;
    let mut done = 0usize;
    while done < 200_000 {
        // SAFETY: open descriptors and valid offset pointers.
        let n = unsafe {
            libc::copy_file_range(
                a.as_raw_fd(),
                &mut off_in,
                b.as_raw_fd(),
                &mut off_out,
                200_000 - done,
                0,
            )
        };
        assert!(
            n > 0,
            "copy_file_range: {}",
            std::io::Error::last_os_error()
        );
        done += n as usize;
    }
    drop(b);
    let d = read_all(&m.p("dst"));
    assert_eq!(d.len(), 205_000);
    assert!(d[..5000].iter().all(|&x| x == 0));
    assert_eq!(&d[5000..], &src[1000..201_000]);
    drop((f, g, a));
    m.unmount();
}

#[test]
fn statfs_and_enospc() {
    require_fuse!();
    let r = Region::new("16M");
    let m = r.mount("");
    let before = nix::sys::statvfs::statvfs(&m.mnt).unwrap();
    assert!(before.blocks() > 0);
    assert!(before.blocks_free() <= before.blocks());
    assert_eq!(before.name_max(), 255);
    let chunk = vec![0xA5u8; 1 << 20];
    let mut f = File::create(m.p("fill")).unwrap();
    let mut written = 0u64;
    let err = loop {
        match f.write(&chunk) {
            Ok(0) => panic!("write returned 0"),
            Ok(n) => written += n as u64,
            Err(e) => break e,
        }
        assert!(written < 64 << 20, "a 16M region took {written} bytes");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(written >= 4 << 20, "only {written} bytes fit");
    let full = nix::sys::statvfs::statvfs(&m.mnt).unwrap();
    assert!(full.blocks_free() < before.blocks_free());
    drop(f);
    // The filesystem keeps working once space is freed. The blocks of an unlinked file are freed
    // when the kernel forgets the inode (FORGET is queued asynchronously): allow it a moment.
    fs::remove_file(m.p("fill")).unwrap();
    wait_until(
        "a write fits after freeing space",
        std::time::Duration::from_millis(20),
        || match fs::write(m.p("again"), &chunk) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => false,
            Err(e) => panic!("write after freeing space: {e}"),
        },
    );
    assert_eq!(read_all(&m.p("again")), chunk);
    m.unmount();
}

#[test]
fn permissions_for_a_non_root_user() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    fs::create_dir(m.p("private")).unwrap();
    fs::set_permissions(m.p("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(m.p("private/f"), b"secret").unwrap();
    fs::write(m.p("secret"), b"secret").unwrap();
    fs::set_permissions(m.p("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(m.p("public"), b"public").unwrap();
    fs::set_permissions(m.p("public"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::create_dir(m.p("open")).unwrap();
    fs::set_permissions(m.p("open"), fs::Permissions::from_mode(0o777)).unwrap();
    let (nobody, nogroup) = (65534, 65534);
    let errno_of = |r: std::io::Result<()>| match r {
        Ok(()) => 0,
        Err(e) => e.raw_os_error().unwrap_or(255),
    };
    let p = |s: &str| m.p(s);
    assert_eq!(
        as_user(nobody, nogroup, || errno_of(
            fs::read(p("private/f")).map(drop)
        )),
        libc::EACCES
    );
    assert_eq!(
        as_user(nobody, nogroup, || errno_of(
            fs::read(p("secret")).map(drop)
        )),
        libc::EACCES
    );
    assert_eq!(
        as_user(nobody, nogroup, || errno_of(fs::write(p("public"), b"x"))),
        libc::EACCES
    );
    assert_eq!(
        as_user(nobody, nogroup, || errno_of(fs::write(p("new"), b"x"))),
        libc::EACCES
    );
    assert_eq!(
        as_user(nobody, nogroup, || errno_of(fs::set_permissions(
            p("public"),
            fs::Permissions::from_mode(0o777)
        ))),
        libc::EPERM
    );
    // What the user may do works, and the new file is theirs.
    assert_eq!(
        as_user(nobody, nogroup, || errno_of(
            fs::read(p("public")).map(drop)
        )),
        0
    );
    assert_eq!(
        as_user(nobody, nogroup, || errno_of(fs::write(
            p("open/mine"),
            b"x"
        ))),
        0
    );
    let md = fs::metadata(m.p("open/mine")).unwrap();
    assert_eq!((md.uid(), md.gid()), (nobody, nogroup));
    m.unmount();
}

fn mmap_round_trip(m: &MountGuard) {
    use std::os::unix::fs::FileExt;
    let p = m.p("mapped");
    let f = create_rw(&p);
    let len = 64 * 1024;
    f.set_len(len as u64).unwrap();
    f.write_all_at(&pattern(11, 4096), 8192).unwrap();
    // SAFETY: mapping an open file of `len` bytes, shared, read-write.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(
        addr,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the mapping is `len` bytes long and stays mapped until munmap below.
    let map = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) };
    assert_eq!(
        &map[8192..12288],
        &pattern(11, 4096)[..],
        "write() seen through mmap"
    );
    map[100..105].copy_from_slice(b"MMAP!");
    map[40_000..44_096].copy_from_slice(&pattern(12, 4096));
    // SAFETY: msync/munmap of the mapping made above.
    unsafe {
        assert_eq!(libc::msync(addr, len, libc::MS_SYNC), 0);
        assert_eq!(libc::munmap(addr, len), 0);
    }
    drop(f);
    let back = read_all(&p);
    assert_eq!(&back[100..105], b"MMAP!");
    assert_eq!(&back[40_000..44_096], &pattern(12, 4096)[..]);
}

#[test]
fn shared_mmap_dax_always() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("dax=always");
    mmap_round_trip(&m);
    m.unmount();
}

#[test]
fn page_cache_modes_dax_never_and_inode() {
    require_fuse!();
    let r = Region::new("64M");
    for opts in ["dax=never", "dax=inode"] {
        let m = r.mount(opts);
        let data = pattern(13, 1 << 20);
        fs::write(m.p(opts), &data).unwrap();
        assert_eq!(read_all(&m.p(opts)), data, "{opts}");
        mmap_round_trip(&m);
        m.unmount();
    }
    // Both files are there after both mounts.
    let m = r.mount("");
    assert_eq!(read_all(&m.p("dax=never")), pattern(13, 1 << 20));
    assert_eq!(read_all(&m.p("dax=inode")), pattern(13, 1 << 20));
    m.unmount();
}

#[test]
fn read_only_mount_refuses_writes() {
    require_fuse!();
    let r = Region::new("32M");
    let m = r.mount("");
    fs::write(m.p("f"), b"kept").unwrap();
    m.unmount();
    let m = r.mount("ro");
    assert_eq!(read_all(&m.p("f")), b"kept");
    assert_errno(fs::write(m.p("g"), b"x"), libc::EROFS);
    assert_errno(OpenOptions::new().write(true).open(m.p("f")), libc::EROFS);
    m.unmount();
}

#[test]
fn fsxattr_reports_the_dax_flag() {
    use daxfs::ioctl::{FsXattr, FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR, FS_XFLAG_DAX};
    require_fuse!();
    let r = Region::new("32M");
    let m = r.mount("dax=inode");
    fs::write(m.p("f"), b"x").unwrap();
    let f = File::open(m.p("f")).unwrap();
    let mut x = FsXattr::default();
    // SAFETY: FS_IOC_FSGETXATTR writes one struct fsxattr.
    cvt(unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            FS_IOC_FSGETXATTR as _,
            &mut x as *mut FsXattr,
        )
    })
    .unwrap();
    assert_eq!(x.fsx_xflags & FS_XFLAG_DAX, 0, "a new file has no DAX flag");
    // Setting what is already set succeeds (chattr -x on a plain file).
    // SAFETY: FS_IOC_FSSETXATTR reads one struct fsxattr.
    cvt(unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FSSETXATTR as _, &x as *const FsXattr) })
        .unwrap();
    // Setting the DAX flag sticks (and survives a remount, checked below); a flag daxfs
    // cannot have is refused.
    x.fsx_xflags = FS_XFLAG_DAX;
    // SAFETY: as above.
    cvt(unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FSSETXATTR as _, &x as *const FsXattr) })
        .unwrap();
    let mut y = FsXattr::default();
    // SAFETY: as above.
    cvt(unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            FS_IOC_FSGETXATTR as _,
            &mut y as *mut FsXattr,
        )
    })
    .unwrap();
    assert_eq!(y.fsx_xflags & FS_XFLAG_DAX, FS_XFLAG_DAX);
    let mut bad = x;
    // FS_XFLAG_REALTIME: no realtime device (immutable and append-only are settable now, see
    // tests/iflags.rs).
    bad.fsx_xflags |= 0x1;
    // SAFETY: as above.
    let refused = cvt(unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            FS_IOC_FSSETXATTR as _,
            &bad as *const FsXattr,
        )
    });
    assert_errno(refused, libc::EOPNOTSUPP);
    // A DAX file still reads and writes under dax=inode.
    fs::write(m.p("f"), b"dax data").unwrap();
    assert_eq!(fs::read(m.p("f")).unwrap(), b"dax data");
    // Directories answer too (ioctls on directories are forwarded).
    let d = File::open(&m.mnt).unwrap();
    let mut y = FsXattr::default();
    // SAFETY: as above.
    cvt(unsafe {
        libc::ioctl(
            d.as_raw_fd(),
            FS_IOC_FSGETXATTR as _,
            &mut y as *mut FsXattr,
        )
    })
    .unwrap();
    drop((f, d));
    m.unmount();
    let m = r.mount("dax=inode");
    let f = File::open(m.p("f")).unwrap();
    let mut z = FsXattr::default();
    // SAFETY: as above.
    cvt(unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            FS_IOC_FSGETXATTR as _,
            &mut z as *mut FsXattr,
        )
    })
    .unwrap();
    assert_eq!(
        z.fsx_xflags & FS_XFLAG_DAX,
        FS_XFLAG_DAX,
        "flag kept across remount"
    );
    drop(f);
    m.unmount();
}

#[test]
fn writes_by_others_drop_set_id_bits() {
    require_fuse!();
    let r = Region::new("32M");
    let m = r.mount("");
    let f = m.p("setuid");
    fs::write(&f, b"program").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o6777)).unwrap();
    // Root keeps the bits when writing.
    fs::write(&f, b"root write").unwrap();
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o6777);
    // Anyone else's write drops S_ISUID and (group-executable) S_ISGID.
    let p = f.clone();
    let errno = as_user(65534, 65534, || {
        match OpenOptions::new()
            .write(true)
            .open(&p)
            .and_then(|mut h| h.write_all(b"x"))
        {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(255),
        }
    });
    assert_eq!(errno, 0);
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o0777);
    m.unmount();
}

/// The mode as `stat -c %A` asks for it: a statx for `STATX_MODE` alone, which the kernel
/// answers from its attribute cache unless the mode was invalidated.
fn statx_mode(p: &Path) -> u32 {
    let c = cpath(p);
    // SAFETY: an all-zero statx is a valid value of the plain C struct.
    let mut sx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx writes one struct statx through the valid pointer.
    cvt(unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), 0, libc::STATX_MODE, &mut sx) }).unwrap();
    u32::from(sx.stx_mode) & 0o7777
}

/// A modification of an open file.
type FileOp = fn(&File) -> std::io::Result<()>;

/// Owner or caller: (uid, gid).
type Ids = (u32, u32);

/// Runs `op` on `p` opened for writing, as `uid:gid` (or as root when `uid == 0`); returns errno.
fn modify_as(uid: u32, gid: u32, p: &Path, op: FileOp) -> i32 {
    let run = || match OpenOptions::new().write(true).open(p).and_then(|f| op(&f)) {
        Ok(()) => 0,
        Err(e) => e.raw_os_error().unwrap_or(255),
    };
    if uid == 0 {
        run()
    } else {
        as_user(uid, gid, run)
    }
}

/// xfstests generic/355 and generic/683-685: a direct write or a fallocate by a user without
/// CAP_FSETID drops S_ISUID, and S_ISGID when group-executable or when the user is not in the
/// file's group; the kernel's cached mode must show it at once (the kernel invalidates only
/// size and times after WRITE/FALLOCATE, so the daemon invalidates the attributes).
#[test]
fn direct_writes_and_fallocate_drop_set_id_bits_at_once() {
    require_fuse!();
    let r = Region::new("32M");
    let m = r.mount("");
    let f = m.p("suid");
    fs::write(&f, pattern(3, 192 << 10)).unwrap();
    let write4k: FileOp = |f| f.write_all_at(&[0x58; 4096], 0);
    let ops: [(&str, FileOp); 4] = [
        ("write", write4k),
        ("fallocate", |f| falloc(f, 0, 64 << 10, 64 << 10).map(drop)),
        ("punch hole", |f| {
            falloc(
                f,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                64 << 10,
                64 << 10,
            )
            .map(drop)
        }),
        ("zero range", |f| {
            falloc(f, libc::FALLOC_FL_ZERO_RANGE, 64 << 10, 64 << 10).map(drop)
        }),
    ];
    // (owner uid:gid, mode before, who modifies, mode expected after)
    let cases: [(Ids, u32, Ids, u32); 6] = [
        // Not in the file's group: both bits go, group-executable or not.
        ((0, 0), 0o6666, (65534, 65534), 0o0666),
        ((0, 0), 0o6676, (65534, 65534), 0o0676),
        ((0, 0), 0o2676, (65534, 65534), 0o0676),
        // In the file's group: S_ISGID stays unless group-executable (generic/355).
        ((65534, 65534), 0o6644, (65534, 65534), 0o2644),
        ((65534, 65534), 0o6654, (65534, 65534), 0o0654),
        // Root (CAP_FSETID) keeps both.
        ((0, 0), 0o6777, (0, 0), 0o6777),
    ];
    for (name, op) in ops {
        for ((ou, og), before, (uid, gid), after) in cases {
            std::os::unix::fs::chown(&f, Some(ou), Some(og)).unwrap();
            fs::set_permissions(&f, fs::Permissions::from_mode(before)).unwrap();
            assert_eq!(statx_mode(&f), before, "{name}: set-up");
            assert_eq!(modify_as(uid, gid, &f, op), 0, "{name} as {uid}");
            assert_eq!(
                statx_mode(&f),
                after,
                "{name} as {uid}:{gid} of a {ou}:{og} {before:o} file"
            );
        }
    }
    m.unmount();
}

fn atime_of(p: &Path) -> (i64, i64) {
    let md = fs::metadata(p).unwrap();
    (md.atime(), md.atime_nsec())
}

/// Reads `p` through a fresh descriptor (the kernel drops its cached atime after a READ).
fn read_again(p: &Path) {
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(!read_all(p).is_empty());
}

/// xfstests generic/003 and generic/120: atime follows the mount's mode (FUSE inodes are
/// S_NOATIME in the kernel, so the daemon keeps it): relatime by default (a read after a
/// modification updates it, a second read does not), strictatime (every read), noatime (never,
/// also not for executing or reading a freshly written file), and directory reads by the same
/// rules unless nodiratime.
#[test]
fn atime_follows_the_mount_mode() {
    require_fuse!();
    let r = Region::new("32M");
    let m = r.mount("");
    fs::create_dir(m.p("d")).unwrap();
    fs::write(m.p("d/f"), b"contents").unwrap();
    let f = m.p("d/f");
    let d = m.p("d");
    // relatime: the first read after the write updates atime, the second does not.
    let t0 = atime_of(&f);
    read_again(&f);
    let t1 = atime_of(&f);
    assert!(t1 > t0, "relatime: read after write updates atime");
    read_again(&f);
    assert_eq!(atime_of(&f), t1, "relatime: a second read keeps atime");
    // A directory listing after the directory changed updates its atime.
    let d0 = atime_of(&d);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
    assert!(
        atime_of(&d) > d0,
        "relatime: readdir after a change updates atime"
    );
    m.unmount();
    // The updated atime was persisted (with the inode's next commit, at the latest unmount).
    let m = r.mount("strictatime,nodiratime");
    assert_eq!(atime_of(&f), t1, "atime kept across remount");
    read_again(&f);
    let t2 = atime_of(&f);
    assert!(t2 > t1, "strictatime: every read updates atime");
    read_again(&f);
    assert!(atime_of(&f) > t2, "strictatime: every read updates atime");
    fs::write(m.p("d/g"), b"x").unwrap();
    m.unmount();
    // The same through the page cache (dax=never, xfstests generic/003 there): a cached open
    // does not keep earlier opens' pages under strictatime, so each reopen's read reaches the
    // daemon.
    let m = r.mount("strictatime,nodiratime,dax=never");
    read_again(&f);
    let t2 = atime_of(&f);
    read_again(&f);
    assert!(
        atime_of(&f) > t2,
        "strictatime, dax=never: every reopen's read updates atime"
    );
    let d1 = atime_of(&d);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(fs::read_dir(&d).unwrap().count(), 2);
    assert_eq!(atime_of(&d), d1, "nodiratime: readdir keeps atime");
    m.unmount();
    let m = r.mount("noatime");
    fs::write(&f, b"new contents").unwrap();
    let t3 = atime_of(&f);
    read_again(&f);
    assert_eq!(atime_of(&f), t3, "noatime: a read never updates atime");
    m.unmount();
}

#[test]
fn file_handles_survive_cache_drops() {
    require_fuse!();
    let r = Region::new("32M");
    let m = r.mount("");
    fs::create_dir(m.p("d")).unwrap();
    fs::write(m.p("d/f"), b"by handle").unwrap();
    // struct file_handle with room for the handle bytes.
    let mut buf = vec![0u8; 8 + 128];
    buf[..4].copy_from_slice(&128u32.to_ne_bytes());
    let mut mount_id = 0;
    // SAFETY: `buf` is a struct file_handle with handle_bytes = 128 and room for them.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            cpath(&m.p("d/f")).as_ptr(),
            buf.as_mut_ptr(),
            &mut mount_id as *mut libc::c_int,
            0,
        ) as libc::c_int
    })
    .unwrap();
    // Forget every cached dentry and inode, so the kernel must ask the daemon by node id.
    fs::write("/proc/sys/vm/drop_caches", b"2").unwrap();
    let mnt = File::open(&m.mnt).unwrap();
    // SAFETY: `buf` holds the handle filled in above.
    let fd = cvt(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mnt.as_raw_fd(),
            buf.as_mut_ptr(),
            libc::O_RDONLY,
        ) as libc::c_int
    })
    .unwrap();
    // SAFETY: `fd` was just opened and is owned by the File from here on.
    let mut f = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "by handle");
    drop((f, mnt));
    m.unmount();
}

/// `renameat2(RENAME_WHITEOUT)` through the kernel on every transport and mode: the moved file
/// keeps its data, a character device 0:0 of mode 0 takes the old name (what overlayfs reads as
/// "deleted"), and `RENAME_EXCHANGE | RENAME_WHITEOUT` is `EINVAL`.
#[test]
fn rename_whiteout_through_the_kernel_on_every_mode() {
    require_fuse!();
    for opts in option_sets() {
        let r = Region::new("64M");
        let m = r.mount(opts);
        fs::write(m.p("a"), b"AAA").unwrap();
        fs::write(m.p("c"), b"CCC").unwrap();
        let rename2 = |from: &str, to: &str, flags: u32| renameat2(&m, from, to, flags);
        rename2("a", "b", libc::RENAME_WHITEOUT).unwrap_or_else(|e| panic!("{opts}: {e}"));
        assert_eq!(read_all(&m.p("b")), b"AAA", "{opts}");
        let w = fs::symlink_metadata(m.p("a")).unwrap();
        assert!(w.file_type().is_char_device(), "{opts}: {w:?}");
        assert_eq!(
            (w.rdev(), w.mode() & 0o7777, w.nlink()),
            (0, 0, 1),
            "{opts}"
        );
        // Replacing an existing name.
        rename2("b", "c", libc::RENAME_WHITEOUT).unwrap();
        assert_eq!(read_all(&m.p("c")), b"AAA", "{opts}");
        assert!(fs::symlink_metadata(m.p("b"))
            .unwrap()
            .file_type()
            .is_char_device());
        assert_errno(
            rename2("c", "a", libc::RENAME_WHITEOUT | libc::RENAME_EXCHANGE),
            libc::EINVAL,
        );
        let mut names: Vec<String> = fs::read_dir(m.p(""))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b", "c"], "{opts}");
        m.unmount();
        r.assert_fsck_clean(opts);
    }
}

/// `statx(STATX_BTIME)` through the kernel (`FUSE_STATX`): the birth time is reported, lies
/// between the moments around the create, and stays put across a write, a chmod and a remount
/// while mtime and ctime move (xfstests generic/528).
#[test]
fn statx_reports_the_birth_time_on_every_mode() {
    require_fuse!();
    fn btime(p: &Path) -> (u32, (i64, u32), (i64, u32)) {
        let c = cpath(p);
        // SAFETY: an all-zero statx is a valid value of the plain C struct.
        let mut sx: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: statx writes one struct statx through the valid pointer.
        cvt(unsafe {
            libc::statx(
                libc::AT_FDCWD,
                c.as_ptr(),
                libc::AT_STATX_FORCE_SYNC,
                libc::STATX_BTIME | libc::STATX_BASIC_STATS,
                &mut sx,
            )
        })
        .unwrap();
        let t = |x: libc::statx_timestamp| (x.tv_sec, x.tv_nsec);
        (sx.stx_mask, t(sx.stx_btime), t(sx.stx_mtime))
    }
    let now = || {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        (d.as_secs() as i64, d.subsec_nanos())
    };
    for opts in option_sets() {
        let r = Region::new("32M");
        let m = r.mount(opts);
        let before = now();
        fs::write(m.p("f"), b"x").unwrap();
        let after = now();
        let (mask, born, mtime0) = btime(&m.p("f"));
        assert!(mask & libc::STATX_BTIME != 0, "{opts}: mask {mask:#x}");
        assert!(
            before <= born && born <= after,
            "{opts}: {before:?} {born:?} {after:?}"
        );
        // Let the clock pass the birth time, then change the file.
        wait_until(
            "the clock to pass the birth time",
            Duration::from_millis(1),
            || now() > born,
        );
        fs::write(m.p("f"), b"yy").unwrap();
        fs::set_permissions(m.p("f"), fs::Permissions::from_mode(0o600)).unwrap();
        let (_, born2, mtime1) = btime(&m.p("f"));
        assert_eq!(born2, born, "{opts}: btime moved");
        assert!(mtime1 > mtime0, "{opts}: mtime did not move");
        m.unmount();
        let m = r.mount(opts);
        assert_eq!(btime(&m.p("f")).1, born, "{opts}: btime after a remount");
        m.unmount();
    }
}

/// `fstrim(8)` on the mount (`FITRIM` through `FUSE_IOCTL` on the root): it reports the bytes
/// handed back, the region file's storage shrinks after a large file is removed, the data kept
/// reads back, and ext4's argument errors reach the caller (xfstests generic/260, 288).
#[test]
fn fstrim_hands_free_space_back_on_every_mode() {
    require_fuse!();
    for opts in option_sets() {
        let r = Region::new("64M");
        let m = r.mount(opts);
        fs::write(m.p("keep"), vec![0x42u8; 1 << 20]).unwrap();
        fs::write(m.p("big"), vec![0x17u8; 24 << 20]).unwrap();
        fs::remove_file(m.p("big")).unwrap();
        let used = || fs::metadata(&r.path).unwrap().blocks() * 512;
        let before = used();
        let o = Command::new("fstrim")
            .arg("-v")
            .arg(m.p(""))
            .output()
            .expect("run fstrim (util-linux)");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{opts}: fstrim: {out} {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.contains("trimmed"), "{opts}: {out}");
        let bytes: u64 = out
            .split('(')
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{opts}: no byte count in {out:?}"));
        assert!(bytes >= 24 << 20, "{opts}: {bytes} bytes trimmed");
        // The unlinked file's storage may be freed by the kernel's release after unlink returns;
        // trim again until the region file shrank (bounded).
        wait_until(
            "the region file to shrink",
            Duration::from_millis(50),
            || {
                let _ = Command::new("fstrim").arg(m.p("")).output();
                used() + (20 << 20) <= before
            },
        );
        assert_eq!(
            fs::read(m.p("keep")).unwrap(),
            vec![0x42u8; 1 << 20],
            "{opts}"
        );
        for args in [
            &["-o", "0", "-l", "0"][..],
            &["-o", "0", "-l", "100"],
            &["-o", "1G"],
        ] {
            let s = Command::new("fstrim")
                .args(args)
                .arg(m.p(""))
                .output()
                .unwrap();
            assert!(!s.status.success(), "{opts}: fstrim {args:?} succeeded");
        }
        m.unmount();
        // `ro,norecovery` (xfstests generic/537): it mounts, serves the data, refuses the trim.
        let m = r.mount(&format!("{opts},ro,norecovery"));
        assert_eq!(
            fs::read(m.p("keep")).unwrap(),
            vec![0x42u8; 1 << 20],
            "{opts}"
        );
        let s = Command::new("fstrim").arg(m.p("")).output().unwrap();
        assert!(
            !s.status.success(),
            "{opts}: fstrim on a norecovery mount succeeded"
        );
        m.unmount();
        r.assert_fsck_clean(opts);
    }
}

/// The extent size hint through the kernel (`FS_IOC_FSSETXATTR` / `FSGETXATTR` forwarded as
/// `FUSE_IOCTL`, xfstests generic/367's scenario): set on an empty file, reported with
/// `FS_XFLAG_EXTSIZE`, refused (`EINVAL`) once the file has blocks, kept across a remount.
#[test]
fn extent_size_hints_through_the_kernel_on_every_mode() {
    use daxfs::ioctl::{FsXattr, FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR};
    const EXTSIZE: u32 = 0x800;
    require_fuse!();
    fn get(f: &File) -> FsXattr {
        let mut x = FsXattr::default();
        // SAFETY: FS_IOC_FSGETXATTR writes one struct fsxattr.
        cvt(unsafe {
            libc::ioctl(
                f.as_raw_fd(),
                FS_IOC_FSGETXATTR as _,
                &mut x as *mut FsXattr,
            )
        })
        .unwrap();
        x
    }
    fn set(f: &File, x: &FsXattr) -> std::io::Result<i32> {
        // SAFETY: FS_IOC_FSSETXATTR reads one struct fsxattr.
        cvt(unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FSSETXATTR as _, x as *const FsXattr) })
    }
    for opts in option_sets() {
        let r = Region::new("32M");
        let m = r.mount(opts);
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(m.p("f"))
            .unwrap();
        let mut x = get(&f);
        x.fsx_xflags |= EXTSIZE;
        x.fsx_extsize = 8192;
        set(&f, &x).unwrap_or_else(|e| panic!("{opts}: {e}"));
        let y = get(&f);
        assert_eq!(
            (y.fsx_xflags & EXTSIZE, y.fsx_extsize),
            (EXTSIZE, 8192),
            "{opts}"
        );
        f.write_all_at(b"data", 0).unwrap();
        x.fsx_extsize = 16384;
        assert_errno(set(&f, &x), libc::EINVAL);
        drop(f);
        m.unmount();
        let m = r.mount(opts);
        let y = get(&File::open(m.p("f")).unwrap());
        assert_eq!(
            (y.fsx_xflags & EXTSIZE, y.fsx_extsize),
            (EXTSIZE, 8192),
            "{opts}"
        );
        m.unmount();
        r.assert_fsck_clean(opts);
    }
}
