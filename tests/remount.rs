//! Remount (issue 2, acceptance 3): a tree of more than 1,000 files, directories, symlinks, hard
//! links, xattrs and sparse files is identical after unmount + mount — contents, modes, owners,
//! times, link counts, xattrs, hole layout.

mod common;

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::hash::{Hash, Hasher};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;

#[derive(Debug, PartialEq, Eq)]
struct Node {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    nlink: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    /// Content hash (files), target (symlinks), or sorted names (directories).
    content: String,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// First hole offset (sparse files keep their holes).
    first_hole: Option<i64>,
}

fn xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let c = cpath(p);
    let mut names = vec![0u8; 65536];
    // SAFETY: valid C string, buffer of the given size.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "llistxattr {}", p.display());
    names.truncate(n as usize);
    let mut out = BTreeMap::new();
    for name in names.split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let cn = std::ffi::CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        // SAFETY: valid C strings, buffer of the given size.
        let l = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(l >= 0);
        v.truncate(l as usize);
        out.insert(String::from_utf8_lossy(name).into_owned(), v);
    }
    out
}

fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let ft = md.file_type();
        let mut first_hole = None;
        let content = if ft.is_dir() {
            let mut names: Vec<String> = fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            for n in &names {
                stack.push(p.join(n));
            }
            names.join("/")
        } else if ft.is_symlink() {
            fs::read_link(&p).unwrap().display().to_string()
        } else {
            let data = fs::read(&p).unwrap();
            let f = fs::File::open(&p).unwrap();
            // SAFETY: lseek on an open descriptor.
            let h = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_HOLE) };
            if h >= 0 && (h as u64) < md.len() {
                first_hole = Some(h);
            }
            let mut hasher = DefaultHasher::new();
            data.hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        };
        out.insert(
            rel,
            Node {
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                size: md.len(),
                nlink: md.nlink(),
                mtime: (md.mtime(), md.mtime_nsec()),
                ctime: (md.ctime(), md.ctime_nsec()),
                content,
                xattrs: xattrs(&p),
                first_hole,
            },
        );
    }
    out
}

fn build_tree(root: &Path) {
    for d in 0..25 {
        let dir = root.join(format!("dir{d:02}"));
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700 + (d % 8) * 0o10)).unwrap();
        for f in 0..42 {
            let p = dir.join(format!("file{f:02}"));
            let len = ((d * 42 + f) * 997) % 20_000;
            fs::write(&p, pattern((d * 100 + f) as u64, len as usize)).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600 + (f % 3) * 0o44)).unwrap();
            if f % 5 == 0 {
                std::os::unix::fs::lchown(&p, Some(1000 + f), Some(2000 + d)).unwrap();
            }
            if f % 7 == 0 {
                let c = cpath(&p);
                let v = format!("value-{d}-{f}");
                for name in [c"user.tag", c"trusted.t"] {
                    // SAFETY: valid C strings and value buffer.
                    let r = unsafe {
                        libc::setxattr(c.as_ptr(), name.as_ptr(), v.as_ptr().cast(), v.len(), 0)
                    };
                    assert_eq!(r, 0, "setxattr");
                }
            }
            if f % 11 == 0 {
                fs::hard_link(&p, dir.join(format!("hard{f:02}"))).unwrap();
            }
            if f % 6 == 0 {
                std::os::unix::fs::symlink(format!("file{f:02}"), dir.join(format!("sym{f:02}")))
                    .unwrap();
            }
        }
        // A sparse file: data, a hole, data at 2 MiB + something.
        let sp = dir.join("sparse");
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&sp)
            .unwrap();
        f.write_all_at(&pattern(d as u64, 4096), 0).unwrap();
        f.write_all_at(&pattern(d as u64 + 1, 5000), (4 << 20) + 123)
            .unwrap();
        drop(f);
        // Explicit times on one file per directory.
        let times = [
            libc::timespec {
                tv_sec: 1_500_000_000 + d as i64,
                tv_nsec: 123,
            },
            libc::timespec {
                tv_sec: 1_600_000_000 + d as i64,
                tv_nsec: 456_789,
            },
        ];
        // SAFETY: valid C path and two timespecs.
        let r = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                cpath(&dir.join("file01")).as_ptr(),
                times.as_ptr(),
                0,
            )
        };
        assert_eq!(r, 0);
    }
    fs::create_dir_all(root.join("deep/a/b/c/d/e")).unwrap();
    fs::write(root.join("deep/a/b/c/d/e/leaf"), b"leaf").unwrap();
}

#[test]
fn tree_survives_unmount_and_mount() {
    require_fuse!();
    let r = Region::new("256M");
    let m = r.mount("");
    build_tree(&m.mnt);
    let first = snapshot(&m.mnt);
    let files = first
        .values()
        .filter(|n| n.mode & libc::S_IFMT == libc::S_IFREG)
        .count();
    assert!(files >= 1000, "only {files} files");
    assert!(
        first.values().any(|n| n.first_hole.is_some()),
        "a sparse file keeps a hole"
    );
    assert!(first
        .values()
        .any(|n| n.nlink == 2 && n.mode & libc::S_IFMT == libc::S_IFREG));
    m.unmount();

    let m = r.mount("");
    let second = snapshot(&m.mnt);
    assert_eq!(first.len(), second.len());
    for (path, a) in &first {
        let b = second
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing after remount"));
        assert_eq!(a, b, "{path} changed across remount");
    }
    m.unmount();
    let out = daxfs_ok(["fsck".as_ref(), r.path.as_os_str()]);
    assert!(out.contains("clean"), "{out}");
}
