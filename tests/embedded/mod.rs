//! Shared helper of the embedded-API tests (no FUSE): a region formatted with `DaxFs::mkfs` in a
//! scratch directory that is removed when the test ends, also when it panics.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use daxfs::fs::{DaxFs, MkfsOptions, OpenOptions};

/// A scratch directory in /dev/shm (tmpfs, fast) when there is one, else in the system temp dir.
pub fn scratch_dir() -> tempfile::TempDir {
    let b = tempfile::Builder::new()
        .prefix("daxfs-test-")
        .tempdir_in("/dev/shm");
    b.or_else(|_| tempfile::Builder::new().prefix("daxfs-test-").tempdir())
        .expect("tempdir")
}

/// A formatted region file; its directory goes away on drop.
pub struct TestRegion {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TestRegion {
    /// Opens the region with default options.
    pub fn open(&self) -> DaxFs {
        open(&self.path)
    }
}

/// A region of `size` bytes with mkfs's default inode count.
pub fn region(size: u64) -> TestRegion {
    region_with_inodes(size, None)
}

/// A region of `size` bytes with `inodes` inodes (`None`: mkfs's default).
pub fn region_with_inodes(size: u64, inodes: Option<u64>) -> TestRegion {
    let dir = scratch_dir();
    let path = dir.path().join("region.img");
    DaxFs::mkfs(
        &path,
        &MkfsOptions {
            size: Some(size),
            inodes,
        },
    )
    .expect("mkfs of the test region");
    TestRegion { _dir: dir, path }
}

/// Opens the region at `p` with default options.
pub fn open(p: &Path) -> DaxFs {
    DaxFs::open(p, &OpenOptions::default()).expect("open of the test region")
}
