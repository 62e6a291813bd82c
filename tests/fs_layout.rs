//! Layouts for direct mappings through the embedded API (no FUSE): what `DaxFs::file_layout`
//! reports (data, holes, poison, PMD order, nothing past the end), allocation for a writable
//! shared mapping, the layout breaks every change makes (truncate, punch, fill, growth,
//! eviction) and the quarantine of blocks freed under a fence.

use std::ffi::OsStr;
use std::sync::Arc;

use daxfs::fs::layout::{
    FenceId, FileLayout, LayoutBreaker, LayoutChange, LayoutExtent, LayoutRequest,
};
use daxfs::fs::*;
use parking_lot::Mutex;

mod embedded;
use embedded::{open, region};

const MB2: u64 = 2 << 20;

/// A breaker that records every break and fences the ones `fence_for` picks.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(Ino, u64, u64, LayoutChange)>>,
    fence_punches: std::sync::atomic::AtomicBool,
}

impl LayoutBreaker for Recorder {
    fn active(&self, _ino: Ino) -> bool {
        true
    }
    fn break_layouts(&self, ino: Ino, first: u64, end: u64, why: LayoutChange) -> Option<FenceId> {
        self.calls.lock().push((ino, first, end, why));
        (why == LayoutChange::Punch
            && self
                .fence_punches
                .load(std::sync::atomic::Ordering::Relaxed))
        .then_some(FenceId(77))
    }
}

impl Recorder {
    fn take(&self) -> Vec<(Ino, u64, u64, LayoutChange)> {
        std::mem::take(&mut *self.calls.lock())
    }
}

fn layout(fs: &DaxFs, ino: Ino, first: u64, end: u64, req: LayoutRequest) -> FileLayout {
    fs.file_layout(ino, first, end, 256, req, |_| {}).unwrap()
}

fn new_file(fs: &DaxFs, name: &str) -> (Ino, u64) {
    let (a, fh) = fs
        .create(ROOT_INO, OsStr::new(name), 0o644, 0, &Ctx::root())
        .unwrap();
    (a.ino, fh)
}

#[test]
fn layout_reports_data_holes_poison_and_stops_at_eof() {
    let t = region(64 << 20);
    let fs = open(&t.path);
    let c = Ctx::root();
    let (ino, _) = new_file(&fs, "f");
    fs.write(ino, 0, &vec![1u8; MB2 as usize], &c).unwrap();
    fs.write(ino, 4 << 20, &[2u8; 4096], &c).unwrap();
    fs.write(ino, (4 << 20) + 8192, &[3u8; 100], &c).unwrap();
    let l = layout(&fs, ino, 0, 10_000, LayoutRequest::default());
    assert_eq!(l.size, (4 << 20) + 8192 + 100);
    let b0 = match l.extents[0] {
        LayoutExtent::Data {
            page: 0,
            nr: 512,
            block,
            order: 9,
        } => block,
        ref x => panic!("first extent {x:?} of {l:?}"),
    };
    assert_eq!(b0 % 512, 0, "a PMD extent is 2 MiB-aligned in the region");
    assert_eq!(l.extents[1], LayoutExtent::Hole { page: 512, nr: 512 });
    assert!(matches!(
        l.extents[2],
        LayoutExtent::Data {
            page: 1024,
            nr: 1,
            order: 0,
            ..
        }
    ));
    assert_eq!(l.extents[3], LayoutExtent::Hole { page: 1025, nr: 1 });
    assert!(matches!(
        l.extents[4],
        LayoutExtent::Data {
            page: 1026,
            nr: 1,
            ..
        }
    ));
    assert_eq!(
        l.extents.len(),
        5,
        "nothing past the end of the file: {l:?}"
    );

    // A range inside the PMD entry reports a piece of it as order 0 (not a whole entry).
    let l = layout(&fs, ino, 10, 20, LayoutRequest::default());
    assert_eq!(
        l.extents,
        vec![LayoutExtent::Data {
            page: 10,
            nr: 10,
            block: b0 + 10,
            order: 0
        }]
    );
    // A range wholly past the end: only the size.
    assert!(layout(&fs, ino, 5000, 6000, LayoutRequest::default())
        .extents
        .is_empty());

    // A poisoned page shows as such; the PMD entry around it is split.
    daxfs::memory_failure::inject_region(
        &fs,
        (b0 + 300) * 4096,
        4096,
        &daxfs::memory_failure::NoInvalidate,
    )
    .map(|_| ())
    .unwrap();
    let l = layout(&fs, ino, 0, 512, LayoutRequest::default());
    assert_eq!(
        l.extents,
        vec![
            LayoutExtent::Data {
                page: 0,
                nr: 300,
                block: b0,
                order: 0
            },
            LayoutExtent::Poisoned {
                page: 300,
                block: b0 + 300
            },
            LayoutExtent::Data {
                page: 301,
                nr: 211,
                block: b0 + 301,
                order: 0
            },
        ]
    );
    // At most `max` extents; the rest on the next call.
    let l = fs
        .file_layout(ino, 0, 10_000, 2, LayoutRequest::default(), |_| {})
        .unwrap();
    assert_eq!(l.extents.len(), 2);
}

#[test]
fn allocation_fills_holes_durably_with_pmd_runs_and_breaks_the_fill() {
    let t = region(64 << 20);
    let rec = Arc::new(Recorder::default());
    let ino;
    {
        let fs = open(&t.path);
        fs.set_layout_breaker(rec.clone());
        let c = Ctx::root();
        let (i, fh) = new_file(&fs, "sparse");
        ino = i;
        let set = SetAttr {
            size: Some(8 << 20),
            ..Default::default()
        };
        fs.setattr(ino, &set, &c).unwrap();
        rec.take();
        let mut leased = None;
        let l = fs
            .file_layout(
                ino,
                0,
                4096,
                256,
                LayoutRequest {
                    allocate: true,
                    write: false,
                },
                |l| leased = Some(l.clone()),
            )
            .unwrap();
        assert_eq!(
            leased.as_ref(),
            Some(&l),
            "the lease sees the layout it registers"
        );
        assert_eq!(l.extents.len(), 1, "{l:?}");
        let LayoutExtent::Data {
            page: 0,
            nr: 2048,
            order: 9,
            block,
        } = l.extents[0]
        else {
            panic!("{l:?}")
        };
        assert_eq!(block % 512, 0);
        let calls = rec.take();
        assert_eq!(calls, vec![(ino, 0, 2048, LayoutChange::Fill)], "{calls:?}");
        let mut buf = vec![9u8; 4096];
        assert_eq!(fs.read(ino, 7 << 20, &mut buf).unwrap(), 4096);
        assert!(buf.iter().all(|&b| b == 0), "new blocks read as zeros");
        fs.release(ino, fh).unwrap();
        // Not a DAX inode: EOPNOTSUPP.
    }
    // The allocation survives a remount (it was committed before file_layout returned).
    let fs = open(&t.path);
    let l = layout(&fs, ino, 0, 4096, LayoutRequest::default());
    assert!(
        matches!(l.extents[..], [LayoutExtent::Data { nr: 2048, .. }]),
        "{l:?}"
    );
}

#[test]
fn every_layout_change_breaks_the_range_first() {
    let t = region(64 << 20);
    let fs = open(&t.path);
    let rec = Arc::new(Recorder::default());
    assert!(fs.set_layout_breaker(rec.clone()));
    assert!(!fs.set_layout_breaker(rec.clone()), "installed once");
    let c = Ctx::root();
    let (ino, fh) = new_file(&fs, "f");
    // An extending write into nothing: the fill, then the growth.
    fs.write(ino, 0, &vec![5u8; 3 * 4096], &c).unwrap();
    let calls = rec.take();
    assert!(
        calls.contains(&(ino, 0, 3, LayoutChange::Fill)),
        "{calls:?}"
    );
    assert!(
        calls.contains(&(ino, 0, 3, LayoutChange::Extend { size: 3 * 4096 })),
        "{calls:?}"
    );
    // An overwrite changes no layout: no break.
    fs.write(ino, 100, &[1u8; 10], &c).unwrap();
    assert_eq!(rec.take(), vec![]);
    // Punch page 1.
    fs.fallocate(
        ino,
        4096,
        4096,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        &c,
    )
    .unwrap();
    assert_eq!(rec.take(), vec![(ino, 1, 2, LayoutChange::Punch)]);
    // Truncate to 5000 bytes: pages from 2 on go.
    let set = |size| SetAttr {
        size: Some(size),
        ..Default::default()
    };
    fs.setattr(ino, &set(5000), &c).unwrap();
    assert_eq!(
        rec.take(),
        vec![(ino, 2, u64::MAX, LayoutChange::Truncate { size: 5000 })]
    );
    // Growing by truncate and by fallocate: the pages past the old end.
    fs.setattr(ino, &set(3 * 4096), &c).unwrap();
    assert_eq!(
        rec.take(),
        vec![(ino, 2, 3, LayoutChange::Extend { size: 3 * 4096 })]
    );
    fs.fallocate(ino, 3 * 4096, 4096, 0, &c).unwrap();
    let calls = rec.take();
    assert!(calls.contains(&(ino, 3, 4, LayoutChange::Extend { size: 4 * 4096 })));
    assert!(
        calls.contains(&(ino, 3, 4, LayoutChange::Fill)),
        "{calls:?}"
    );
    // Eviction of the unlinked file: everything.
    fs.unlink(ROOT_INO, OsStr::new("f"), &c).unwrap();
    fs.release(ino, fh).unwrap();
    fs.forget(ino, 1);
    assert_eq!(
        rec.take(),
        vec![(ino, 0, u64::MAX, LayoutChange::Truncate { size: 0 })]
    );
}

#[test]
fn blocks_freed_under_a_fence_are_not_reused_until_it_lifts() {
    let t = region(64 << 20);
    let fs = open(&t.path);
    let rec = Arc::new(Recorder::default());
    fs.set_layout_breaker(rec.clone());
    let c = Ctx::root();
    let (ino, _) = new_file(&fs, "f");
    fs.write(ino, 0, &vec![7u8; MB2 as usize], &c).unwrap();
    let l = layout(&fs, ino, 0, 512, LayoutRequest::default());
    let LayoutExtent::Data { block: b0, .. } = l.extents[0] else {
        panic!("{l:?}")
    };
    let free0 = fs.region_stat().free_blocks;
    rec.fence_punches
        .store(true, std::sync::atomic::Ordering::Relaxed);
    fs.fallocate(
        ino,
        0,
        MB2,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        &c,
    )
    .unwrap();
    assert_eq!(fs.quarantined_blocks(), 512);
    assert_eq!(
        fs.region_stat().free_blocks,
        free0,
        "quarantined blocks stay allocated"
    );
    // Fill the region: no new file ever gets a quarantined block.
    let (other, _) = new_file(&fs, "other");
    let chunk = vec![0xaau8; 1 << 20];
    let mut off = 0;
    while fs.write(other, off, &chunk, &c).is_ok() {
        off += 1 << 20;
    }
    let l = layout(&fs, other, 0, u64::MAX, LayoutRequest::default());
    for x in &l.extents {
        if let LayoutExtent::Data { nr, block, .. } = *x {
            assert!(
                block + nr <= b0 || block >= b0 + 512,
                "a quarantined block was reused: {x:?} (punched {b0}..+512)"
            );
        }
    }
    let free1 = fs.region_stat().free_blocks;
    fs.lift_fence(FenceId(77));
    assert_eq!(fs.quarantined_blocks(), 0);
    assert_eq!(
        fs.region_stat().free_blocks,
        free1 + 512,
        "lifted: free again"
    );
}

#[test]
fn only_dax_inodes_have_layouts() {
    let t = region(64 << 20);
    let fs = DaxFs::open(
        &t.path,
        &OpenOptions {
            read_only: false,
            dax: DaxMode::Never,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let (ino, _) = new_file(&fs, "f");
    assert_eq!(
        fs.file_layout(ino, 0, 1, 1, LayoutRequest::default(), |_| {}),
        Err(Errno::EOPNOTSUPP)
    );
    drop(fs);
    let fs = DaxFs::open(
        &t.path,
        &OpenOptions {
            read_only: false,
            dax: DaxMode::Inode,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let ino = fs.lookup(ROOT_INO, OsStr::new("f")).unwrap().ino;
    assert!(!fs.is_dax_inode(ino).unwrap());
    fs.set_flags(ino, daxfs::ioctl::FS_XFLAG_DAX, &Ctx::root())
        .unwrap();
    assert!(fs.is_dax_inode(ino).unwrap());
    assert_eq!(
        fs.file_layout(ino, 5, 4, 1, LayoutRequest::default(), |_| {}),
        Err(Errno::EINVAL)
    );
    assert!(fs
        .file_layout(ino, 0, 1, 1, LayoutRequest::default(), |_| {})
        .is_ok());
    let root = fs.file_layout(ROOT_INO, 0, 1, 1, LayoutRequest::default(), |_| {});
    assert!(root.is_err(), "a directory has no layout");
}
