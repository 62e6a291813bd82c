//! One ring entry of FUSE-over-io_uring: its buffers (the request header and the payload in one
//! anonymous mapping), who holds it ([`Phase`]), the reply sink fuser writes a reply into
//! ([`EntrySink`]) and the queue's [`Mailbox`] through which a reply from another thread hands
//! the entry back to its queue thread.
//!
//! Rules it keeps (the module rules of `super`): the buffers are touched only while the entry is
//! not the kernel's; a reply is written once, under the entry's state lock, and an oversized
//! reply becomes `EIO`; the replying thread never waits for the queue thread.

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use fuser::ReplySink;
use memmap2::MmapMut;
use parking_lot::Mutex;

/// `struct fuse_uring_req_header`: `in_out[128]`, `op_in[128]`, `fuse_uring_ent_in_out` (32).
pub(super) const REQ_HEADER_SIZE: usize = 288;
pub(super) const OP_IN: usize = 128;
pub(super) const OP_IN_MAX: usize = 128;
/// `fuse_uring_ent_in_out`: `flags` u64, `commit_id` u64, `payload_sz` u32, padding, reserved.
pub(super) const ENT_IN_OUT: usize = 256;
pub(super) const ENT_COMMIT_ID: usize = ENT_IN_OUT + 8;
pub(super) const ENT_PAYLOAD_SZ: usize = ENT_IN_OUT + 16;
pub(super) const IN_HEADER: usize = 40;
pub(super) const OUT_HEADER: usize = 16;
/// Where the payload starts in an entry's mapping: the request header lives at 0, the
/// reassembled `fuse_in_header` + fixed argument right before this offset.
pub(super) const PAYLOAD_AT: usize = 4096;

const _: () = assert!(REQ_HEADER_SIZE + IN_HEADER + OP_IN_MAX <= PAYLOAD_AT);

/// One ring entry: its buffers (one anonymous mapping) and whether it holds a request.
#[derive(Debug)]
pub(super) struct Entry {
    /// Base of `map`; the mapping never moves while `map` lives.
    pub(super) base: usize,
    pub(super) len: usize,
    pub(super) state: Mutex<EntryState>,
}

#[derive(Debug)]
pub(super) struct EntryState {
    /// Keeps the buffers alive as long as any reply handle can reach them.
    pub(super) _map: MmapMut,
    pub(super) phase: Phase,
    /// The kernel's id of the request in hand (echoed by its commit).
    pub(super) commit_id: u64,
}

/// Who holds an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// The kernel (registered, or committed and fetching).
    Kernel,
    /// The queue thread is dispatching its request.
    Serving,
    /// Replied during dispatch: the queue thread commits it when dispatch returns.
    Replied,
    /// Dispatch returned without a reply but a reply handle lives: the replying thread writes the
    /// reply and hands the entry back through the queue's mailbox.
    Deferred,
}

// SAFETY: `base` is the address of the mapping owned by `state`; every access through it happens
// either under the `state` lock (replies, from any thread) or on the queue thread while the entry
// is not in the kernel's hands (requests), as the module rules say.
unsafe impl Sync for Entry {}

impl Entry {
    pub(super) fn new(payload: usize) -> io::Result<Entry> {
        let len = PAYLOAD_AT + payload;
        let mut map = MmapMut::map_anon(len)?;
        let base = map.as_mut_ptr() as usize;
        Ok(Entry {
            base,
            len,
            state: Mutex::new(EntryState {
                _map: map,
                phase: Phase::Kernel,
                commit_id: 0,
            }),
        })
    }

    pub(super) fn payload_capacity(&self) -> usize {
        self.len - PAYLOAD_AT
    }

    pub(super) fn read_u32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        self.read(off, &mut b);
        u32::from_ne_bytes(b)
    }

    pub(super) fn read_u64(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        self.read(off, &mut b);
        u64::from_ne_bytes(b)
    }

    pub(super) fn read(&self, off: usize, out: &mut [u8]) {
        assert!(off + out.len() <= self.len);
        // SAFETY: in bounds of the mapping (checked), which lives as long as `self`; the kernel
        // does not write the entry while we hold it (module rules).
        unsafe {
            std::ptr::copy_nonoverlapping(
                (self.base + off) as *const u8,
                out.as_mut_ptr(),
                out.len(),
            )
        }
    }

    pub(super) fn write(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= self.len);
        // SAFETY: as `read`; `data` never aliases the mapping except through `copy_within`, which
        // the callers use instead for moves inside it.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), (self.base + off) as *mut u8, data.len())
        }
    }

    /// Move `len` bytes inside the mapping (regions may not overlap).
    pub(super) fn copy_within(&self, from: usize, to: usize, len: usize) {
        assert!(from + len <= self.len && to + len <= self.len);
        assert!(from + len <= to || to + len <= from);
        // SAFETY: both ranges are in bounds (checked) and disjoint (checked).
        unsafe {
            std::ptr::copy_nonoverlapping(
                (self.base + from) as *const u8,
                (self.base + to) as *mut u8,
                len,
            )
        }
    }

    /// The reassembled request at `start..end` of the mapping.
    pub(super) fn slice(&self, start: usize, end: usize) -> &[u8] {
        assert!(start <= end && end <= self.len);
        // SAFETY: in bounds; the bytes are ours until the commit (module rules), and the slice
        // does not outlive the dispatch that reads it.
        unsafe { std::slice::from_raw_parts((self.base + start) as *const u8, end - start) }
    }

    /// Write an error reply (header only) for request `unique`.
    pub(super) fn write_error(&self, unique: u64, errno: i32) {
        let mut h = [0u8; OUT_HEADER];
        h[0..4].copy_from_slice(&(OUT_HEADER as u32).to_ne_bytes());
        h[4..8].copy_from_slice(&(-errno).to_ne_bytes());
        h[8..16].copy_from_slice(&unique.to_ne_bytes());
        self.write(0, &h);
        self.write(ENT_PAYLOAD_SZ, &0u32.to_ne_bytes());
    }
}

/// Where replies from other threads hand their entries back to the queue thread: the entries'
/// indexes, and an eventfd the queue thread keeps a ring `READ` on.
#[derive(Debug)]
pub(super) struct Mailbox {
    pub(super) ready: Mutex<Vec<usize>>,
    pub(super) efd: std::os::fd::OwnedFd,
}

impl Mailbox {
    pub(super) fn new() -> io::Result<Mailbox> {
        // SAFETY: eventfd(2) with constant flags; the result is checked and owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let efd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Mailbox {
            ready: Mutex::new(Vec::new()),
            efd,
        })
    }

    /// Entry `idx` holds its reply: wake the queue thread to commit it.
    ///
    /// Context: any thread; never blocks (an eventfd write blocks only at a count of 2^64 - 2).
    pub(super) fn post(&self, idx: usize) {
        self.ready.lock().push(idx);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes from a live buffer to our eventfd.
        let n = unsafe { libc::write(self.efd.as_raw_fd(), one.as_ptr().cast(), 8) };
        if n != 8 {
            log::error!(
                "io_uring: cannot wake a queue thread: {}",
                io::Error::last_os_error()
            );
        }
    }

    /// The entries handed back since the last call.
    pub(super) fn take(&self, into: &mut Vec<usize>) {
        into.append(&mut self.ready.lock());
    }
}

/// The reply destination handed to fuser for one ring entry.
#[derive(Debug)]
pub(super) struct EntrySink {
    pub(super) entry: Arc<Entry>,
    pub(super) idx: usize,
    pub(super) mailbox: Arc<Mailbox>,
}

impl ReplySink for EntrySink {
    fn send(&self, data: &[IoSlice<'_>]) -> io::Result<()> {
        let e = &self.entry;
        let mut st = e.state.lock();
        let deferred = match st.phase {
            Phase::Serving => false,
            Phase::Deferred => true,
            Phase::Kernel | Phase::Replied => {
                return Err(io::Error::other(
                    "reply to a ring entry that was already committed",
                ))
            }
        };
        let r = write_reply(e, data);
        if deferred {
            st.phase = Phase::Kernel;
            drop(st);
            self.mailbox.post(self.idx);
        } else {
            st.phase = Phase::Replied;
        }
        r
    }
}

/// Writes one reply into the entry's buffers (an oversized one becomes `EIO`).
///
/// Context: the entry's state lock is held and the entry is ours (not the kernel's).
pub(super) fn write_reply(e: &Entry, data: &[IoSlice<'_>]) -> io::Result<()> {
    let total: usize = data.iter().map(|s| s.len()).sum();
    // Nothing is written yet: bytes 8..16 still hold the request's `unique` (the same offset in
    // `fuse_in_header` and `fuse_out_header`).
    let unique = e.read_u64(8);
    if total < OUT_HEADER {
        e.write_error(unique, libc::EIO);
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let body = total - OUT_HEADER;
    if body > e.payload_capacity() {
        e.write_error(unique, libc::EIO);
        return Err(io::Error::from_raw_os_error(libc::EOVERFLOW));
    }
    // Header bytes to in_out, the rest to the payload buffer.
    let mut pos = 0usize;
    for s in data {
        let mut chunk: &[u8] = s;
        if pos < OUT_HEADER {
            let n = (OUT_HEADER - pos).min(chunk.len());
            e.write(pos, &chunk[..n]);
            pos += n;
            chunk = &chunk[n..];
        }
        if !chunk.is_empty() {
            e.write(PAYLOAD_AT + pos - OUT_HEADER, chunk);
            pos += chunk.len();
        }
    }
    e.write(ENT_PAYLOAD_SZ, &(body as u32).to_ne_bytes());
    Ok(())
}
