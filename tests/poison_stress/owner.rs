//! The owner of one file (a forked child): pwrite (read back and verified), pread verified against
//! the model, mmap reads of single pages verified, truncate and punch hole, each under the file's
//! lock, racing with the poisoner's file injections (which take no lock).
//!
//! What may differ from the model, and only where the model says so: a range including a page
//! that may be poisoned may fail with `EIO` as a whole, stop short at a page boundary before
//! such a page (through the page cache, `dax=never`), or `SIGBUS` there through mmap; a write that failed
//! that way leaves the pages it touched unknown until rewritten whole, punched, truncated away or
//! found poisoned and cleared. Everything else must read exactly as the model.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

use rand::rngs::StdRng;
use rand::Rng;

use super::common::pattern;
use super::mapper::Mapping;
use super::model::*;
use super::poison_util::{survive_sigbus, SIGBUS_TAKEN};

/// Whether a read or write of a range ending at `stop` may have stopped short at `end`: through
/// the page cache (`dax=never`) it does so at a page boundary, before a page it could not read or
/// at the start of the batch of pages whose `WRITE` failed, which holds a page that may be
/// poisoned (the kernel sends a buffered write in batches that end at a partial page).
fn short_ok(fm: &FileModel, end: u64, stop: u64) -> bool {
    end % PAGE == 0 && fm.any_maybe(end / PAGE, stop.div_ceil(PAGE))
}

/// The daemon's entries of pages `[first, end)` (poisoned ones flagged), for a failure message.
fn daemon_view(f: &File, first: u64, end: u64) -> String {
    match super::poisoner::mappings_from(f.as_raw_fd(), first.saturating_sub(512)) {
        Ok(m) => m
            .iter()
            .filter(|e| e.file_index < end && e.file_index + (1 << e.order) > first)
            .map(|e| {
                format!(
                    "{}:{}@{}/{:#x}",
                    e.file_index, e.order, e.region_block, e.flags
                )
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => e,
    }
}

/// Reads `[off, off + len)` and compares it with the model (see the module comment). Return:
/// whether it failed with `EIO` (allowed).
pub fn verify_range(
    f: &File,
    lk: &mut Locked,
    fi: usize,
    off: u64,
    len: u64,
) -> Result<bool, String> {
    let size = lk.size();
    let mut b = vec![0u8; len as usize];
    match f.read_at(&mut b, off) {
        Ok(n) => {
            let want = size.saturating_sub(off).min(len) as usize;
            let fm = lk.fm;
            let data = lk.data();
            for (i, &got) in b[..n.min(want)].iter().enumerate() {
                let at = off as usize + i;
                let p = at as u64 / PAGE;
                if got != data[at] && !fm.is_unknown(p) {
                    return Err(format!(
                        "file {fi}: byte {at} (page {p}, maybe poisoned: {}) reads {:#x}, the \
                         model says {:#x} (read of [{off}, +{len}), size {size})",
                        fm.is_maybe(p),
                        got,
                        data[at]
                    ));
                }
            }
            let end = off + n as u64;
            if n > want {
                return Err(format!(
                    "file {fi}: read {n} bytes past the size {size} at {off}"
                ));
            }
            if n < want && !short_ok(fm, end, off + want as u64) {
                return Err(format!(
                    "file {fi}: short read: {n} of [{off}, +{len}) with size {size}"
                ));
            }
            Ok(false)
        }
        Err(e) if e.raw_os_error() == Some(libc::EIO) => {
            if lk.fm.any_maybe(off / PAGE, (off + len).div_ceil(PAGE)) {
                Ok(true)
            } else {
                Err(format!(
                    "file {fi}: EIO reading [{off}, +{len}) where nothing was injected"
                ))
            }
        }
        Err(e) => Err(format!("file {fi}: read [{off}, +{len}): {e}")),
    }
}

fn op_write(
    f: &File,
    lk: &mut Locked,
    fi: usize,
    st: &Stats,
    rng: &mut StdRng,
) -> Result<(), String> {
    let max = PAGES * PAGE;
    let aligned = rng.random_bool(0.5);
    let off = if aligned {
        rng.random_range(0..PAGES) * PAGE
    } else {
        rng.random_range(0..max)
    };
    let len = if aligned {
        rng.random_range(1..=16) * PAGE
    } else {
        rng.random_range(1..20000)
    };
    let len = len.min(max - off).max(1);
    let buf = pattern(rng.random(), len as usize);
    match f.write_at(&buf, off) {
        Ok(n) => {
            let end = off + n as u64;
            lk.apply_write(off, &buf[..n]);
            if (n as u64) < len {
                if !short_ok(lk.fm, end, off + len) {
                    return Err(format!(
                        "file {fi}: short write {n} of [{off}, +{len}) (size {}); the daemon's \
                         entries from page {}: {}",
                        lk.size(),
                        end / PAGE,
                        daemon_view(f, end / PAGE, (off + len).div_ceil(PAGE))
                    ));
                }
                lk.mark_unknown(end, off + len);
                st.add(Kind::WriteShort, 1);
            }
            st.add(Kind::Write, 1);
            if n > 0 {
                verify_range(f, lk, fi, off, n as u64)?;
            }
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(libc::EIO) => {
            if !lk.fm.any_maybe(off / PAGE, (off + len).div_ceil(PAGE)) {
                return Err(format!(
                    "file {fi}: EIO writing [{off}, +{len}) where nothing was injected"
                ));
            }
            lk.mark_unknown(off, off + len);
            st.add(Kind::WriteEio, 1);
            Ok(())
        }
        Err(e) => Err(format!("file {fi}: write [{off}, +{len}): {e}")),
    }
}

fn op_read(
    f: &File,
    lk: &mut Locked,
    fi: usize,
    st: &Stats,
    rng: &mut StdRng,
) -> Result<(), String> {
    let size = lk.size();
    if size == 0 {
        return Ok(());
    }
    let off = rng.random_range(0..size);
    let len = rng.random_range(1..=(size - off).min(64 << 10));
    let eio = verify_range(f, lk, fi, off, len)?;
    st.add(if eio { Kind::ReadEio } else { Kind::Read }, 1);
    Ok(())
}

/// Maps the file and compares a few random pages with the model; a `SIGBUS` is allowed only on a
/// page that may be poisoned (the size cannot change meanwhile: we hold the lock).
fn op_mmap(
    f: &File,
    lk: &mut Locked,
    fi: usize,
    st: &Stats,
    rng: &mut StdRng,
) -> Result<(), String> {
    let pages = lk.size() / PAGE;
    if pages == 0 {
        return Ok(());
    }
    let map = Mapping::new(f.as_raw_fd(), pages * PAGE).map_err(|e| format!("mmap: {e}"))?;
    // A page that took SIGBUS holds the handler's zero page from then on: not read again.
    let mut bus = Vec::new();
    for _ in 0..4 {
        let p = rng.random_range(0..pages);
        if bus.contains(&p) {
            continue;
        }
        let before = SIGBUS_TAKEN.load(std::sync::atomic::Ordering::SeqCst);
        let got = map.copy_page(p);
        if SIGBUS_TAKEN.load(std::sync::atomic::Ordering::SeqCst) != before {
            st.add(Kind::Sigbus, 1);
            st.add(Kind::SigbusPoisoned, 1);
            bus.push(p);
            if !lk.fm.is_maybe(p) {
                return Err(format!(
                    "file {fi}: SIGBUS on mmap page {p}, never injected"
                ));
            }
            continue;
        }
        let fm = lk.fm;
        let want = &lk.data()[(p * PAGE) as usize..((p + 1) * PAGE) as usize];
        if got[..] != want[..] && !fm.is_unknown(p) {
            let at = (0..PAGE as usize).find(|&i| got[i] != want[i]).unwrap_or(0);
            let mut b = vec![0u8; PAGE as usize];
            let pread = match f.read_at(&mut b, p * PAGE) {
                Ok(n) if n == PAGE as usize && b[..] == want[..] => "as the model".to_string(),
                Ok(n) if b[..n] == got[..n] => format!("{n} bytes as mmap did"),
                Ok(n) => format!("{n} bytes, neither"),
                Err(e) => e.to_string(),
            };
            return Err(format!(
                "file {fi}: mmap page {p} (maybe poisoned: {}) differs from the model at byte \
                 {at} (mmap {:#x}, model {:#x}; mmap page all zeros: {}; pread reads {pread})",
                fm.is_maybe(p),
                got[at],
                want[at],
                got.iter().all(|&x| x == 0),
            ));
        }
    }
    st.add(Kind::MmapVerify, 1);
    Ok(())
}

fn op_truncate(
    f: &File,
    lk: &mut Locked,
    fi: usize,
    st: &Stats,
    rng: &mut StdRng,
) -> Result<(), String> {
    let mut new = rng.random_range(0..=PAGES * PAGE);
    if rng.random_bool(0.5) {
        new -= new % PAGE;
    }
    lk.fm.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let r = f.set_len(new);
    let out = match r {
        Ok(()) => {
            lk.apply_size(new);
            st.add(Kind::Truncate, 1);
            Ok(())
        }
        // Zeroing the tail of a poisoned last page.
        Err(e)
            if e.raw_os_error() == Some(libc::EIO)
                && new % PAGE != 0
                && lk.fm.is_maybe(new / PAGE) =>
        {
            lk.mark_unknown(new, new + 1);
            Ok(())
        }
        Err(e) => Err(format!("file {fi}: truncate to {new}: {e}")),
    };
    lk.fm.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    out
}

fn op_punch(
    f: &File,
    lk: &mut Locked,
    fi: usize,
    st: &Stats,
    rng: &mut StdRng,
) -> Result<(), String> {
    let size = lk.size();
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
    if rc == 0 {
        lk.apply_zero(off, off + len);
        st.add(Kind::Punch, 1);
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EIO)
        && lk.fm.any_maybe(off / PAGE, (off + len).div_ceil(PAGE))
    {
        lk.mark_unknown(off, off + len);
        return Ok(());
    }
    Err(format!("file {fi}: punch [{off}, +{len}): {e}"))
}

/// The owner's loop (in its child): one random operation at a time under the file's lock.
pub fn run(m: &Model, fi: usize, path: &std::path::Path, seed: u64) -> Result<(), String> {
    use rand::SeedableRng;
    survive_sigbus(None);
    let mut rng = StdRng::seed_from_u64(seed);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let st = &m.stats;
    while !st.stopped() {
        let mut lk = m.files[fi].lock();
        match rng.random_range(0..100) {
            0..=34 => op_write(&f, &mut lk, fi, st, &mut rng)?,
            35..=64 => op_read(&f, &mut lk, fi, st, &mut rng)?,
            65..=79 => op_mmap(&f, &mut lk, fi, st, &mut rng)?,
            80..=89 => op_truncate(&f, &mut lk, fi, st, &mut rng)?,
            _ => op_punch(&f, &mut lk, fi, st, &mut rng)?,
        }
        drop(lk);
        st.step(fi);
    }
    Ok(())
}
