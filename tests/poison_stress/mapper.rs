//! mmap readers (forked children): map each file shared and touch every page, again and again,
//! faulting in what the poisoner invalidated (with readahead around it). A `SIGBUS` is survived
//! (the handler maps a zero page over the faulting page) and counted; it must fall on a page the
//! poisoner may have poisoned, unless the file's `seq` moved meanwhile (a truncate or a clear ran:
//! the verdict would be a guess, so none is given).

use std::io;
use std::sync::atomic::Ordering::SeqCst;

use super::model::*;
use super::poison_util::{survive_sigbus, SIGBUS_TAKEN};

/// A shared read-only mapping of the first `len` bytes of a descriptor.
pub struct Mapping {
    ptr: *const u8,
    len: usize,
}

impl Mapping {
    pub fn new(fd: i32, len: u64) -> io::Result<Mapping> {
        // SAFETY: a fresh shared read-only mapping of an open descriptor; checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: p as *const u8,
            len: len as usize,
        })
    }

    /// One byte of page `page` (faulting it in).
    pub fn touch(&self, page: u64, at: u64) -> u8 {
        let off = (page * PAGE + at % PAGE) as usize;
        assert!(off < self.len);
        // SAFETY: inside the live mapping; a poisoned page raises SIGBUS, which the handler
        // turns into a zero page.
        unsafe { std::ptr::read_volatile(self.ptr.add(off)) }
    }

    /// A copy of page `page`.
    pub fn copy_page(&self, page: u64) -> Vec<u8> {
        let off = (page * PAGE) as usize;
        assert!(off + PAGE as usize <= self.len);
        // SAFETY: the page lies inside the live mapping; volatile reads force the fault (and
        // SIGBUS, survived as above) instead of being optimised.
        (0..PAGE as usize)
            .map(|i| unsafe { std::ptr::read_volatile(self.ptr.add(off + i)) })
            .collect()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once.
        unsafe { libc::munmap(self.ptr as *mut _, self.len) };
    }
}

/// One pass over file `fi`: touch every page inside the size the model gives.
fn pass(m: &Model, fi: usize, fd: i32, salt: u64) -> Result<(), String> {
    let fm = &m.files[fi];
    let s0 = fm.seq.load(SeqCst);
    if s0 % 2 == 1 {
        return Ok(());
    }
    let pages = fm.size.load(SeqCst) / PAGE;
    if pages == 0 {
        return Ok(());
    }
    let map = Mapping::new(fd, pages * PAGE).map_err(|e| format!("mmap file {fi}: {e}"))?;
    let (mut bus, mut poisoned) = (0, 0);
    for p in 0..pages {
        if m.stats.stopped() {
            break;
        }
        let before = SIGBUS_TAKEN.load(SeqCst);
        std::hint::black_box(map.touch(p, salt.wrapping_mul(p + 1)));
        if SIGBUS_TAKEN.load(SeqCst) != before {
            bus += 1;
            if fm.is_maybe(p) {
                poisoned += 1;
            } else if fm.seq.load(SeqCst) == s0 {
                return Err(format!(
                    "mmap reader: SIGBUS on page {p} of file {fi} (inside its {pages} pages), \
                     which was never injected"
                ));
            }
        }
    }
    m.stats.add(Kind::Sigbus, bus);
    m.stats.add(Kind::SigbusPoisoned, poisoned);
    m.stats.add(Kind::MmapPages, pages);
    m.stats.add(Kind::MmapPass, 1);
    Ok(())
}

/// The mmap reader's loop (in its child).
pub fn run(m: &Model, k: usize, paths: &[std::path::PathBuf], seed: u64) -> Result<(), String> {
    survive_sigbus(None);
    let files: Vec<std::fs::File> = paths
        .iter()
        .map(|p| std::fs::File::open(p).map_err(|e| format!("open {}: {e}", p.display())))
        .collect::<Result<_, _>>()?;
    let mut salt = seed;
    while !m.stats.stopped() {
        for (fi, f) in files.iter().enumerate() {
            salt = salt
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            pass(m, fi, std::os::unix::io::AsRawFd::as_raw_fd(f), salt >> 33)?;
            m.stats.step(POISONER + 1 + k);
        }
    }
    Ok(())
}
