//! The poisoner (a forked child; the only one that injects or clears, one thing at a time):
//! - file injections (`DAXFS_IOC_INJECT_POISON` on the file, 1 to 32 pages) take no lock: they
//!   race with the file's owner and the mmap readers; the pages are marked `maybe` first;
//! - region injections (`POISON_BY_REGION` on the mount's root) of blocks the file maps, found
//!   with `DAXFS_IOC_GET_MAPPINGS` under the file's lock, so the blocks still belong to those
//!   pages when the injection lands;
//! - file and region clears under the file's lock: the pages are read first (a poisoned page
//!   reads `EIO`, a clear makes it a hole of zeros; every other page must read as the model),
//!   then cleared, then the model learns which pages became zeros;
//! - a sweep now and then (and when the bad-block table is full) clears everything, so the table
//!   never fills up.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

use daxfs::ioctl::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::model::*;
use super::poison_util::poison_fd;

/// A paged ioctl answer: `(entries, next cursor, more)`.
fn paged<T: Versioned>(fd: i32, cmd: u32, set_cursor: impl Fn(&mut T)) -> Result<T, String> {
    let mut req = T::new_request();
    set_cursor(&mut req);
    // SAFETY: `cmd` encodes the size of T, which lives across the call.
    let rc = unsafe { libc::ioctl(fd, cmd as _, &mut req as *mut T) };
    if rc < 0 {
        return Err(format!(
            "ioctl {cmd:#x}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(req)
}

/// Every bad range of the mount (`DAXFS_IOC_LIST_BADBLOCKS` on its root).
pub fn list_bad(root: i32) -> Result<Vec<DaxfsBadBlock>, String> {
    let mut out = Vec::new();
    let mut cursor = 0;
    loop {
        let r: DaxfsBadBlocks = paged(root, DAXFS_IOC_LIST_BADBLOCKS, |q: &mut DaxfsBadBlocks| {
            q.cursor = cursor
        })?;
        out.extend_from_slice(&r.entries[..r.count as usize]);
        if r.flags & MORE == 0 || r.count == 0 {
            return Ok(out);
        }
        cursor = r.cursor;
    }
}

/// The file's mappings from page `from` on (one call's worth).
pub fn mappings_from(fd: i32, from: u64) -> Result<Vec<DaxfsMapping>, String> {
    let r: DaxfsMappings = paged(fd, DAXFS_IOC_GET_MAPPINGS, |q: &mut DaxfsMappings| {
        q.cursor = from
    })?;
    Ok(r.entries[..r.count as usize].to_vec())
}

/// Errnos an injection may be refused with here: past the end of a file truncated meanwhile
/// (`EINVAL`), a full bad-block table (`ENOSPC`), a range of holes only.
fn refused(e: i32) -> bool {
    matches!(
        e,
        libc::EINVAL | libc::ENOSPC | libc::ENXIO | libc::ENODATA | libc::ENOENT
    )
}

struct Poisoner<'a> {
    m: &'a Model,
    files: Vec<File>,
    root: File,
    rng: StdRng,
    injected: u64,
}

impl Poisoner<'_> {
    fn inject_file(&mut self) -> Result<(), String> {
        let fi = self.rng.random_range(0..NFILES);
        let first = self.rng.random_range(0..PAGES);
        let n = match self.rng.random_range(0..10) {
            0..=5 => 1,
            6..=8 => self.rng.random_range(2..=8),
            _ => self.rng.random_range(9..=32),
        };
        self.m.files[fi].mark_maybe(first, first + n);
        let e = poison_fd(
            self.files[fi].as_raw_fd(),
            DAXFS_IOC_INJECT_POISON,
            0,
            first * PAGE,
            n * PAGE,
        );
        self.count_inject(
            e,
            Kind::InjectFile,
            &format!("file {fi} pages [{first}, +{n})"),
        )
    }

    fn count_inject(&mut self, e: i32, k: Kind, what: &str) -> Result<(), String> {
        match e {
            0 => {
                self.m.stats.add(k, 1);
                self.injected += 1;
                Ok(())
            }
            libc::ENOSPC => {
                self.m.stats.add(Kind::InjectRefused, 1);
                self.sweep()
            }
            e if refused(e) => {
                self.m.stats.add(Kind::InjectRefused, 1);
                Ok(())
            }
            e => Err(format!("inject {what}: errno {e}")),
        }
    }

    /// Injects blocks the file maps, by region offset, under the file's lock.
    fn inject_region(&mut self) -> Result<(), String> {
        let fi = self.rng.random_range(0..NFILES);
        let fm = &self.m.files[fi];
        let lk = fm.lock();
        let from = self.rng.random_range(0..PAGES);
        let maps = mappings_from(self.files[fi].as_raw_fd(), from)?;
        let size_pages = lk.size().div_ceil(PAGE);
        let Some(e) = maps.iter().find(|e| e.file_index < size_pages) else {
            return Ok(());
        };
        let span = if e.order == 9 { 512 } else { 1 };
        let k = self.rng.random_range(0..span);
        let n = self.rng.random_range(1..=4u64).min(span - k);
        fm.mark_maybe(e.file_index + k, e.file_index + k + n);
        let err = poison_fd(
            self.root.as_raw_fd(),
            DAXFS_IOC_INJECT_POISON,
            POISON_BY_REGION,
            (e.region_block + k) * PAGE,
            n * PAGE,
        );
        drop(lk);
        let what = format!("region block {} (+{n}) of file {fi}", e.region_block + k);
        self.count_inject(err, Kind::InjectRegion, &what)
    }

    /// Reads pages `[first, end)` of a locked file before a clear. Return: the poisoned ones
    /// (`EIO`, or a read stopping short at them); every other page must match the model.
    fn pre_read(
        &self,
        lk: &mut Locked,
        fi: usize,
        first: u64,
        end: u64,
    ) -> Result<Vec<u64>, String> {
        let size = lk.size();
        let mut poisoned = Vec::new();
        for p in first..end.min(size.div_ceil(PAGE)) {
            let want = (size - p * PAGE).min(PAGE) as usize;
            let mut b = vec![0u8; want];
            let bad = match self.files[fi].read_at(&mut b, p * PAGE) {
                Ok(n) => n < want,
                Err(e) if e.raw_os_error() == Some(libc::EIO) => true,
                Err(e) => return Err(format!("file {fi} page {p}: read before clear: {e}")),
            };
            let fm = lk.fm;
            if bad {
                if !fm.is_maybe(p) {
                    return Err(format!("file {fi} page {p}: EIO, never injected"));
                }
                poisoned.push(p);
            } else if !fm.is_unknown(p) && b[..] != lk.data()[(p * PAGE) as usize..][..want] {
                return Err(format!(
                    "file {fi} page {p} (maybe poisoned: {}): differs from the model",
                    fm.is_maybe(p)
                ));
            }
        }
        Ok(poisoned)
    }

    /// Clears file pages around a page that may be poisoned, through the file.
    fn clear_file(&mut self) -> Result<(), String> {
        let fi = self.rng.random_range(0..NFILES);
        let fm = &self.m.files[fi];
        let mut lk = fm.lock();
        let start = self.rng.random_range(0..PAGES);
        let size_pages = lk.size().div_ceil(PAGE);
        let Some(first) = (start..size_pages)
            .chain(0..start.min(size_pages))
            .find(|&p| fm.is_maybe(p))
        else {
            return Ok(());
        };
        let end = (first + self.rng.random_range(1..=16)).min(size_pages);
        let poisoned = self.pre_read(&mut lk, fi, first, end)?;
        let e = poison_fd(
            self.files[fi].as_raw_fd(),
            DAXFS_IOC_CLEAR_POISON,
            0,
            first * PAGE,
            (end * PAGE).min(lk.size()) - first * PAGE,
        );
        if e != 0 {
            return Err(format!("clear file {fi} pages [{first}, {end}): errno {e}"));
        }
        lk.apply_clear(first..end, &poisoned);
        self.m.stats.add(Kind::ClearFile, 1);
        self.m.stats.add(Kind::ClearedPages, poisoned.len() as u64);
        Ok(())
    }

    /// Clears the listed bad ranges of file `fi` (all of them, or one) by region, under its lock.
    fn clear_region(&mut self, fi: usize, all: bool) -> Result<(), String> {
        let fm = &self.m.files[fi];
        let mut lk = fm.lock();
        let ino = fm.ino.load(std::sync::atomic::Ordering::SeqCst);
        let mut ranges: Vec<DaxfsBadBlock> = list_bad(self.root.as_raw_fd())?
            .into_iter()
            .filter(|r| r.ino == ino && r.file_offset != u64::MAX)
            .collect();
        if !all && !ranges.is_empty() {
            let pick = self.rng.random_range(0..ranges.len());
            ranges = vec![ranges[pick]];
        }
        for r in ranges {
            let (first, end) = (r.file_offset / PAGE, (r.file_offset + r.len) / PAGE);
            let poisoned = self.pre_read(&mut lk, fi, first, end)?;
            let inside = (first..end.min(lk.size().div_ceil(PAGE))).count();
            if poisoned.len() != inside {
                return Err(format!(
                    "file {fi}: pages [{first}, {end}) are listed bad but only {poisoned:?} read EIO"
                ));
            }
            let e = poison_fd(
                self.root.as_raw_fd(),
                DAXFS_IOC_CLEAR_POISON,
                POISON_BY_REGION,
                r.region_offset,
                r.len,
            );
            if e != 0 {
                return Err(format!(
                    "clear region [{:#x}, +{:#x}): errno {e}",
                    r.region_offset, r.len
                ));
            }
            lk.apply_clear(first..end, &poisoned);
            self.m.stats.add(Kind::ClearRegion, 1);
            self.m.stats.add(Kind::ClearedPages, poisoned.len() as u64);
        }
        Ok(())
    }

    /// Clears every bad range: each file's under its lock, then the free ones (a bad block is
    /// never allocated, so a free one stays free until cleared).
    fn sweep(&mut self) -> Result<(), String> {
        for fi in 0..NFILES {
            self.clear_region(fi, true)?;
        }
        for r in list_bad(self.root.as_raw_fd())?
            .into_iter()
            .filter(|r| r.ino == 0)
        {
            let e = poison_fd(
                self.root.as_raw_fd(),
                DAXFS_IOC_CLEAR_POISON,
                POISON_BY_REGION,
                r.region_offset,
                r.len,
            );
            if e != 0 {
                return Err(format!(
                    "clear free [{:#x}, +{:#x}): errno {e}",
                    r.region_offset, r.len
                ));
            }
        }
        self.m.stats.add(Kind::Sweep, 1);
        Ok(())
    }

    /// Sweeps when the table holds more than `limit` bad pages.
    fn bound(&mut self, limit: u64) -> Result<(), String> {
        let bad: u64 = list_bad(self.root.as_raw_fd())?
            .iter()
            .map(|r| r.len / PAGE)
            .sum();
        if bad > limit {
            self.sweep()?;
        }
        Ok(())
    }
}

/// The poisoner's loop (in its child).
pub fn run(
    m: &Model,
    paths: &[std::path::PathBuf],
    mnt: &std::path::Path,
    seed: u64,
) -> Result<(), String> {
    let open =
        |p: &std::path::Path| File::open(p).map_err(|e| format!("open {}: {e}", p.display()));
    let mut z = Poisoner {
        m,
        files: paths.iter().map(|p| open(p)).collect::<Result<_, _>>()?,
        root: open(mnt)?,
        rng: StdRng::seed_from_u64(seed),
        injected: 0,
    };
    while !m.stats.stopped() {
        match z.rng.random_range(0..100) {
            0..=49 => z.inject_file()?,
            50..=69 => z.inject_region()?,
            70..=84 => z.clear_file()?,
            _ => {
                let fi = z.rng.random_range(0..NFILES);
                z.clear_region(fi, false)?;
            }
        }
        if z.injected % 16 == 15 {
            z.bound(192)?;
        }
        m.stats.step(POISONER);
        if z.rng.random_bool(0.5) {
            std::thread::sleep(std::time::Duration::from_millis(z.rng.random_range(0..4)));
        }
    }
    Ok(())
}

/// The final check (in a child, everything else stopped): every page reads as the model or, if
/// it may be poisoned, `EIO`; then everything is cleared (poisoned pages become zeros), nothing
/// stays listed, and every page reads as the model, without `EIO`.
pub fn final_check(
    m: &Model,
    paths: &[std::path::PathBuf],
    mnt: &std::path::Path,
) -> Result<(), String> {
    let open =
        |p: &std::path::Path| File::open(p).map_err(|e| format!("open {}: {e}", p.display()));
    let mut z = Poisoner {
        m,
        files: paths.iter().map(|p| open(p)).collect::<Result<_, _>>()?,
        root: open(mnt)?,
        rng: StdRng::seed_from_u64(0),
        injected: 0,
    };
    for fi in 0..NFILES {
        let mut lk = m.files[fi].lock();
        let len = z.files[fi].metadata().map_err(|e| e.to_string())?.len();
        if len != lk.size() {
            return Err(format!(
                "file {fi}: size {len}, the model says {}",
                lk.size()
            ));
        }
        // Clears nothing: learns the poisoned pages and checks the others.
        z.pre_read(&mut lk, fi, 0, PAGES)?;
    }
    z.sweep()?;
    let left = list_bad(z.root.as_raw_fd())?;
    if !left.is_empty() {
        return Err(format!("bad ranges left after clearing them all: {left:?}"));
    }
    for fi in 0..NFILES {
        let mut lk = m.files[fi].lock();
        for p in 0..PAGES {
            m.files[fi].maybe[p as usize].store(0, std::sync::atomic::Ordering::SeqCst);
        }
        let bad = z.pre_read(&mut lk, fi, 0, PAGES)?;
        if !bad.is_empty() {
            return Err(format!(
                "file {fi}: pages {bad:?} unreadable after clearing everything"
            ));
        }
    }
    Ok(())
}
