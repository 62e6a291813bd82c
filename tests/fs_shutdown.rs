//! Shutdown through the embedded API (`DaxFs::shut_down`, `fs/shutdown.rs`): every operation
//! fails with `EIO` afterwards, nothing more is committed, close persists nothing, and the next
//! open finds exactly what was durable; `ShutdownMode::Sync` makes everything durable first.

use std::ffi::OsStr;

use daxfs::fs::*;

mod embedded;

fn root() -> Ctx {
    Ctx::root()
}

/// Creates `name` in the root with `data` written; fsyncs it when `sync`. Return: its inode.
fn file(fs: &DaxFs, name: &str, data: &[u8], sync: bool) -> Ino {
    let (a, _fh) = fs
        .create(ROOT_INO, OsStr::new(name), 0o644, 0, &root())
        .unwrap();
    assert_eq!(fs.write(a.ino, 0, data, &root()).unwrap(), data.len());
    if sync {
        fs.fsync(a.ino, false).unwrap();
    }
    a.ino
}

fn size_of(fs: &DaxFs, name: &str) -> Option<u64> {
    fs.lookup(ROOT_INO, OsStr::new(name)).ok().map(|a| a.size)
}

#[test]
fn after_a_shutdown_every_operation_fails_and_only_the_durable_survives() {
    let r = embedded::region(64 << 20);
    let fs = r.open();
    let a = file(&fs, "synced", &[7u8; 20_000], true);
    let b = file(&fs, "unsynced", &[8u8; 20_000], false);
    let dir = fs.mkdir(ROOT_INO, OsStr::new("d"), 0o755, &root()).unwrap();
    fs.shut_down(ShutdownMode::NoLogFlush, &root()).unwrap();
    assert!(fs.is_shut_down());
    let eio = Err(Errno::EIO);
    assert_eq!(fs.lookup(ROOT_INO, OsStr::new("synced")).map(|_| ()), eio);
    assert_eq!(fs.getattr(a).map(|_| ()), eio);
    assert_eq!(fs.read(a, 0, &mut [0u8; 16]).map(|_| ()), eio);
    assert_eq!(fs.write(b, 0, b"x", &root()).map(|_| ()), eio);
    assert_eq!(fs.fsync(b, false), eio);
    assert_eq!(fs.flush(b, 0), eio);
    assert_eq!(fs.readdir(ROOT_INO, 0).map(|_| ()), eio);
    assert_eq!(fs.unlink(ROOT_INO, OsStr::new("synced"), &root()), eio);
    assert_eq!(
        fs.mkdir(dir.ino, OsStr::new("e"), 0o755, &root())
            .map(|_| ()),
        eio
    );
    // A second shutdown is a no-op.
    fs.shut_down(ShutdownMode::NoLogFlush, &root()).unwrap();
    fs.close().unwrap();

    assert!(DaxFs::fsck(&r.path, false).unwrap().is_empty());
    let fs = r.open();
    assert_eq!(size_of(&fs, "synced"), Some(20_000));
    let mut buf = vec![0u8; 20_000];
    assert_eq!(fs.read(a, 0, &mut buf).unwrap(), 20_000);
    assert!(buf.iter().all(|&x| x == 7));
    // Created (durable at once), written but neither fsynced nor closed: the data is lost.
    assert_eq!(size_of(&fs, "unsynced"), Some(0));
    assert!(size_of(&fs, "d").is_some());
    fs.close().unwrap();
}

#[test]
fn sync_mode_makes_everything_durable_first() {
    let r = embedded::region(64 << 20);
    let fs = r.open();
    file(&fs, "unsynced", &[9u8; 12_345], false);
    fs.shut_down(ShutdownMode::Sync, &root()).unwrap();
    fs.close().unwrap();
    let fs = r.open();
    assert_eq!(size_of(&fs, "unsynced"), Some(12_345));
    fs.close().unwrap();
}

#[test]
fn only_root_may_shut_down() {
    let r = embedded::region(64 << 20);
    let fs = r.open();
    let user = Ctx {
        uid: 1000,
        gid: 1000,
        pid: 1,
    };
    assert_eq!(
        fs.shut_down(ShutdownMode::NoLogFlush, &user),
        Err(Errno::EPERM)
    );
    assert!(!fs.is_shut_down());
    file(&fs, "works", b"yes", true);
    fs.close().unwrap();
}

#[test]
fn xfs_flag_values_map_to_modes() {
    assert_eq!(ShutdownMode::from_xfs_flags(0), Ok(ShutdownMode::Sync));
    assert_eq!(ShutdownMode::from_xfs_flags(1), Ok(ShutdownMode::LogFlush));
    assert_eq!(
        ShutdownMode::from_xfs_flags(2),
        Ok(ShutdownMode::NoLogFlush)
    );
    assert_eq!(ShutdownMode::from_xfs_flags(3), Err(Errno::EINVAL));
}
