//! `daxfs mkfs` destroys nothing by surprise: a region that holds a daxfs, a damaged daxfs, other
//! data or another filesystem is refused without `--force`, naming what is there; a `--size` that
//! differs from the file's is refused with both sizes. A failed mkfs leaves nothing it created and
//! says why in words. And what is not a region (`/dev/null`, a missing path) is named as such by
//! mount, stat and fsck.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mkfs(args: &[&OsStr]) -> std::process::Output {
    let mut a = vec![OsStr::new("mkfs")];
    a.extend_from_slice(args);
    daxfs(&a)
}

#[test]
fn mkfs_refuses_a_daxfs_with_files_without_force() {
    require_fuse!();
    let r = Region::new("64M");
    let m = r.mount("");
    for i in 0..10 {
        fs::write(m.p(&format!("f{i}")), pattern(i, 1 << 20)).unwrap();
    }
    m.unmount();
    let p = r.path.as_os_str();
    let o = mkfs(&[p]);
    assert!(!o.status.success(), "mkfs formatted a daxfs with files");
    let e = stderr(&o);
    assert!(
        e.contains("holds a daxfs: 11 inodes") && e.contains("MiB used") && e.contains("--force"),
        "{e}"
    );
    // Another size: still the daxfs named, and the size kept.
    let o = mkfs(&[p, "--size".as_ref(), "32M".as_ref()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("holds a daxfs"), "{}", stderr(&o));
    assert_eq!(fs::metadata(&r.path).unwrap().len(), 64 << 20);
    let m = r.mount("");
    assert_eq!(fs::read(m.p("f3")).unwrap(), pattern(3, 1 << 20));
    m.unmount();
    // --force formats, at the size asked.
    let out = daxfs_ok([
        OsStr::new("mkfs"),
        p,
        "--size".as_ref(),
        "32M".as_ref(),
        "--force".as_ref(),
    ]);
    assert!(out.contains("32.0 MiB"), "{out}");
    assert_eq!(fs::metadata(&r.path).unwrap().len(), 32 << 20);
    let m = r.mount("");
    assert_eq!(fs::read_dir(&m.mnt).unwrap().count(), 0, "-f left files");
    m.unmount();
    // -f is --force.
    daxfs_ok([OsStr::new("mkfs"), "-f".as_ref(), p]);
}

#[test]
fn mkfs_refuses_other_data_and_other_sizes() {
    let dir = scratch();
    // Non-zero data that is not a daxfs.
    let junk = dir.path().join("junk");
    fs::write(&junk, pattern(9, 32 << 20)).unwrap();
    let o = mkfs(&[junk.as_os_str()]);
    assert!(!o.status.success(), "mkfs formatted a file full of data");
    assert!(
        stderr(&o).contains("holds data") && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read(&junk).unwrap(), pattern(9, 32 << 20));
    // A damaged daxfs.
    let bad = dir.path().join("bad");
    daxfs_ok([
        OsStr::new("mkfs"),
        bad.as_os_str(),
        "--size".as_ref(),
        "32M".as_ref(),
    ]);
    let mut img = fs::read(&bad).unwrap();
    img[16..64].fill(0xee);
    fs::write(&bad, &img).unwrap();
    let o = mkfs(&[bad.as_os_str()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("damaged daxfs"), "{}", stderr(&o));
    // Zeros of another size: both sizes named; --force applies the new one.
    let zero = dir.path().join("zero");
    fs::File::create(&zero).unwrap().set_len(32 << 20).unwrap();
    let o = mkfs(&[zero.as_os_str(), "--size".as_ref(), "64M".as_ref()]);
    assert!(!o.status.success(), "mkfs resized a file without --force");
    let e = stderr(&o);
    assert!(
        e.contains("32.0 MiB") && e.contains("64.0 MiB") && e.contains("--force"),
        "{e}"
    );
    assert_eq!(fs::metadata(&zero).unwrap().len(), 32 << 20);
    daxfs_ok([
        OsStr::new("mkfs"),
        zero.as_os_str(),
        "--size".as_ref(),
        "64M".as_ref(),
        "-f".as_ref(),
    ]);
    assert_eq!(fs::metadata(&zero).unwrap().len(), 64 << 20);
    // Zeros of the same size (or no --size): formatted without a word.
    let same = dir.path().join("same");
    fs::File::create(&same).unwrap().set_len(32 << 20).unwrap();
    daxfs_ok([OsStr::new("mkfs"), same.as_os_str()]);
    // Another filesystem, named by blkid.
    if Path::new("/usr/sbin/mkfs.ext4").exists() || Path::new("/sbin/mkfs.ext4").exists() {
        let ext = dir.path().join("ext");
        fs::File::create(&ext).unwrap().set_len(32 << 20).unwrap();
        let st = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&ext)
            .status()
            .unwrap();
        assert!(st.success());
        let o = mkfs(&[ext.as_os_str()]);
        assert!(!o.status.success(), "mkfs formatted an ext4 image");
        assert!(stderr(&o).contains("ext4"), "{}", stderr(&o));
    }
}

#[test]
fn a_failed_mkfs_leaves_nothing_and_says_why() {
    let dir = scratch();
    let small = dir.path().join("small");
    let o = mkfs(&[small.as_os_str(), "--size".as_ref(), "4k".as_ref()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("too small"), "{}", stderr(&o));
    assert!(!small.exists(), "--size 4k left {}", small.display());
    // 999 TiB: more than a process can map; the sparse file it needed is gone again.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let huge = shm.path().join("huge");
    let o = mkfs(&[huge.as_os_str(), "--size".as_ref(), "999T".as_ref()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(!e.contains("os error") && e.contains("--size"), "{e}");
    assert!(!huge.exists(), "--size 999T left {}", huge.display());
    // An existing file grown for the attempt is shrunk back.
    fs::File::create(&huge).unwrap().set_len(1 << 20).unwrap();
    let o = mkfs(&[
        huge.as_os_str(),
        "--size".as_ref(),
        "999T".as_ref(),
        "-f".as_ref(),
    ]);
    assert!(!o.status.success());
    assert_eq!(fs::metadata(&huge).unwrap().len(), 1 << 20);
}

#[test]
fn what_is_not_a_region_is_named() {
    let dir = scratch();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    for args in [
        vec![OsStr::new("mount"), "/dev/null".as_ref(), mnt.as_os_str()],
        vec![OsStr::new("stat"), "/dev/null".as_ref()],
        vec![OsStr::new("fsck"), "/dev/null".as_ref()],
    ] {
        let o = daxfs(&args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let e = stderr(&o);
        assert!(
            e.contains("not a daxfs region") && e.contains("character device"),
            "{args:?}: {e}"
        );
    }
    let missing = dir.path().join("missing");
    let o = daxfs([OsStr::new("fsck"), missing.as_os_str()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("does not exist") && !e.contains("--size"), "{e}");
}
