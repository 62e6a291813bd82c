//! FUSE-over-io_uring: requests served from per-CPU ring queues instead of reads of `/dev/fuse`.
//!
//! Owns: the rings, their entries' buffers, the queue threads and the translation between a ring
//! entry and the byte layout fuser's dispatch reads and writes. Protocol (the kernel's
//! `fs/fuse/dev_uring.c`, `include/uapi/linux/fuse.h`; the kernel offers it in INIT as
//! `FUSE_OVER_IO_URING` only when the `fuse` module's `enable_uring` parameter is on):
//!
//! - one queue per *possible* CPU (the kernel routes a request to the queue of the CPU its
//!   sender runs on, and starts using the rings only once every queue has an entry);
//! - each queue is an io_uring with 128-byte SQEs, owned by one thread pinned to that CPU, so a
//!   request is served on the CPU that issued it: no cross-CPU wake-up on either side of the
//!   round trip (the cost that dominates a 4 KiB FUSE write on a small VM, docs/PERFORMANCE.md);
//! - each entry is one `IORING_OP_URING_CMD` on the `/dev/fuse` fd: `REGISTER` hands the kernel
//!   two buffers (a 288-byte `fuse_uring_req_header` and a payload buffer) and completes when a
//!   request has been copied into them; `COMMIT_AND_FETCH` returns the reply written into the
//!   same buffers and waits for the next request.
//!
//! Rules kept: an entry's buffers are touched by this side only between the completion that hands
//! it a request and the `COMMIT_AND_FETCH` that returns it (the kernel owns them otherwise); every
//! request handed to us is committed exactly once, with `EIO` if fuser could not parse it or the
//! filesystem dropped its reply handle without replying (a bug, logged, never a hung caller); a
//! reply that arrives after its commit is refused.
//!
//! Replies from another thread (docs/DESIGN.md "Memory failure", rule 7): a request whose reply
//! must wait for a kernel notification (a poison ioctl) is answered later by the notifier thread
//! (`super::notify`), while the queue thread goes on serving. The filesystem keeps fuser's reply
//! handle, which holds a clone of the entry's `EntrySink` (`uring/entry.rs`): so when dispatch returns with the
//! entry unreplied and a second reference to its sink alive, the entry is *deferred*, not failed.
//! Only the queue thread may submit to its ring (`IORING_SETUP_SINGLE_ISSUER`, and the SQ is not
//! thread-safe), so a deferred reply is written into the entry's buffers by the replying thread
//! under the entry's lock and the entry is handed back through the queue's `Mailbox`: its index
//! on a list, then a write to an eventfd that the queue thread keeps a ring `READ` on; that
//! completion makes the queue thread submit the `COMMIT_AND_FETCH`. The replying thread never
//! waits for the queue thread, and the queue thread never waits for the replying one (it learns
//! of the reply from its own ring), so no cycle goes through this hand-over either.
//!
//! Layout: the request reaches us as header (`in_out`: `fuse_in_header`; `op_in`: the opcode's
//! fixed argument) plus payload (the remaining arguments). fuser reads requests as `/dev/fuse`
//! returns them, contiguous, so the header and fixed argument are copied to just before the
//! payload, in room kept for them in the same mapping: no copy of the payload itself.
//!
//! Files: this one sets up the rings and serves them; `uring/entry.rs` is one entry (buffers,
//! phase, reply sink, mailbox); `uring/priority.rs` the queue threads' scheduling priority.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use fuser::{Dispatched, Dispatcher, Filesystem, ReplySink};
use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::stats::RequestStats;

mod entry;
pub mod priority;

use entry::{
    Entry, EntrySink, Mailbox, Phase, ENT_COMMIT_ID, ENT_PAYLOAD_SZ, IN_HEADER, OP_IN, OP_IN_MAX,
    PAYLOAD_AT, REQ_HEADER_SIZE,
};

/// `enum fuse_uring_cmd`.
const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;
/// `FUSE_URING_IOV_SEGS`: header and payload.
const IOV_SEGS: u32 = 2;

/// How the rings are set up.
#[derive(Clone, Copy, Debug)]
pub struct RingConfig {
    /// Entries (requests in flight) per queue.
    pub depth: usize,
    /// Payload buffer of each entry: at least the negotiated `max_write` and `max_pages` pages.
    pub payload: usize,
    /// Run queue threads at `SCHED_IDLE` under a starvation watchdog ([`priority`]), so that
    /// the process a reply wakes stays on the queue's CPU.
    pub idle_priority: bool,
}

/// The number of queues the kernel expects: one per possible CPU
/// (`/sys/devices/system/cpu/possible`, as the kernel's `num_possible_cpus()`).
pub fn possible_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| parse_cpu_list(s.trim()))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The highest CPU number of a kernel CPU list (`0-1`, `0,2-5`) plus one.
fn parse_cpu_list(s: &str) -> Option<usize> {
    let mut max = None;
    for part in s.split(',') {
        let last = part.rsplit('-').next()?;
        let n: usize = last.trim().parse().ok()?;
        max = Some(max.map_or(n, |m: usize| m.max(n)));
    }
    max.map(|m| m + 1)
}

/// Start one queue thread per possible CPU. Their handles are joined by fuser's `run_with` after
/// its own threads end; each thread ends when the kernel tears its ring down (unmount).
pub fn start<FS: Filesystem + 'static>(
    dispatcher: Dispatcher<FS>,
    config: RingConfig,
    stats: Arc<RequestStats>,
) -> io::Result<Vec<JoinHandle<io::Result<()>>>> {
    let queues = possible_cpus();
    let mut threads = Vec::with_capacity(queues + 1);
    let watch = config
        .idle_priority
        .then(|| Arc::new(priority::Watch::new(queues)));
    for qid in 0..queues {
        let d = dispatcher.clone();
        let stats = stats.clone();
        let watch = watch.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("daxfs-ring-{qid}"))
                .spawn(move || {
                    let r = serve_queue(&d, qid, config, &stats, watch.as_deref());
                    if let Some(w) = &watch {
                        w.leave(qid);
                    }
                    if let Err(e) = &r {
                        log::error!("io_uring queue {qid}: {e}");
                    }
                    r
                })?,
        );
    }
    if let Some(w) = watch {
        threads.push(
            std::thread::Builder::new()
                // Thread names stay within 15 bytes (the kernel's comm).
                .name("daxfs-ringwatch".into())
                .spawn(move || {
                    w.run();
                    Ok(())
                })?,
        );
    }
    log::info!(
        "FUSE-over-io_uring: {queues} queues of {} entries{}",
        config.depth,
        if config.idle_priority {
            ", SCHED_IDLE under watchdog"
        } else {
            ""
        }
    );
    Ok(threads)
}

/// The 80-byte command area: `struct fuse_uring_cmd_req`.
fn cmd_req(qid: usize, commit_id: u64) -> [u8; 80] {
    let mut c = [0u8; 80];
    c[8..16].copy_from_slice(&commit_id.to_ne_bytes());
    c[16..18].copy_from_slice(&(qid as u16).to_ne_bytes());
    c
}

/// A `URING_CMD` SQE for entry `idx`.
fn uring_cmd(
    dev: BorrowedFd<'_>,
    cmd: u32,
    qid: usize,
    commit_id: u64,
    idx: usize,
    iov: Option<&[libc::iovec; 2]>,
) -> squeue::Entry128 {
    let mut op =
        opcode::UringCmd80::new(types::Fd(dev.as_raw_fd()), cmd).cmd(cmd_req(qid, commit_id));
    if let Some(iov) = iov {
        op = op.addr(Some(iov.as_ptr() as u64));
    }
    let sqe = op.build().user_data(idx as u64);
    match iov {
        Some(_) => with_len(sqe, IOV_SEGS),
        None => sqe,
    }
}

/// Set the SQE's `len` field (the io-uring crate's `UringCmd80` has no setter for it; REGISTER
/// needs it to be the iovec count).
fn with_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    const LEN_AT: usize = 24; // struct io_uring_sqe: opcode, flags, ioprio, fd, off, addr, len
                              // SAFETY: `Entry128` is `#[repr(C)]` over the kernel's 128-byte `io_uring_sqe` (a plain
                              // struct of integers and unions of integers), so every 128-byte pattern is a valid value and
                              // the transmutes round-trip; `len` is the u32 at byte 24 of `struct io_uring_sqe`.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    raw[LEN_AT..LEN_AT + 4].copy_from_slice(&len.to_ne_bytes());
    // SAFETY: as above.
    unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(raw) }
}

/// Pin the calling thread to `cpu` (best effort: a possible but offline CPU cannot be used).
fn pin_to(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set) {
            log::warn!("io_uring queue {cpu}: cannot pin to CPU {cpu}: {e}");
        }
    }
}

fn serve_queue<FS: Filesystem>(
    d: &Dispatcher<FS>,
    qid: usize,
    config: RingConfig,
    stats: &RequestStats,
    watch: Option<&priority::Watch>,
) -> io::Result<()> {
    pin_to(qid);
    if let Some(w) = watch {
        w.enter(qid);
    }
    let depth = config.depth.max(1);
    let mailbox = Arc::new(Mailbox::new()?);
    // The buffer of the mailbox READ: declared before the ring, so it outlives it.
    let mut wake_buf = Box::new([0u8; 8]);
    // One SQE per entry plus the mailbox READ.
    let mut ring: IoUring<squeue::Entry128, cqueue::Entry> = IoUring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .build((depth as u32 + 1).next_power_of_two())?;
    let dev = d.device();
    let entries: Vec<Arc<Entry>> = (0..depth)
        .map(|_| Entry::new(config.payload).map(Arc::new))
        .collect::<io::Result<_>>()?;
    let iovs: Vec<[libc::iovec; 2]> = entries
        .iter()
        .map(|e| {
            [
                libc::iovec {
                    iov_base: e.base as *mut libc::c_void,
                    iov_len: REQ_HEADER_SIZE,
                },
                libc::iovec {
                    iov_base: (e.base + PAYLOAD_AT) as *mut libc::c_void,
                    iov_len: e.payload_capacity(),
                },
            ]
        })
        .collect();
    // One reply destination per entry, made once (no allocation per request).
    let sinks: Vec<Arc<dyn ReplySink>> = entries
        .iter()
        .enumerate()
        .map(|(idx, e)| {
            Arc::new(EntrySink {
                entry: e.clone(),
                idx,
                mailbox: mailbox.clone(),
            }) as Arc<dyn ReplySink>
        })
        .collect();
    let register = |idx: usize| uring_cmd(dev, CMD_REGISTER, qid, 0, idx, Some(&iovs[idx]));
    for idx in 0..depth {
        push(&mut ring, &register(idx))?;
    }
    let wake = opcode::Read::new(types::Fd(mailbox.efd.as_raw_fd()), wake_buf.as_mut_ptr(), 8)
        .build()
        .user_data(WAKE)
        .into();
    push(&mut ring, &wake)?;
    // From here the kernel may already route requests to this queue: a queue that stops
    // serving would leave its CPU's requests waiting forever, so a failure ends the daemon (the
    // mount turns dead, as after a crash: `daxfs umount` clears it).
    let queue = Queue {
        qid,
        entries: &entries,
        sinks: &sinks,
        mailbox: &mailbox,
        register: &register,
        wake: &wake,
    };
    if let Err(e) = serve_ring(d, &mut ring, &queue, stats) {
        log::error!("io_uring queue {qid} failed: {e}; ending the daemon");
        eprintln!("daxfs: io_uring queue {qid} failed: {e}");
        std::process::exit(1);
    }
    drop(ring);
    drop(wake_buf);
    Ok(())
}

/// `user_data` of the mailbox READ (entries use their index).
const WAKE: u64 = u64::MAX;

/// What a queue's loop works with.
struct Queue<'a> {
    qid: usize,
    entries: &'a [Arc<Entry>],
    sinks: &'a [Arc<dyn ReplySink>],
    mailbox: &'a Mailbox,
    register: &'a dyn Fn(usize) -> squeue::Entry128,
    /// The mailbox READ, armed again after each completion.
    wake: &'a squeue::Entry128,
}

/// The queue's loop: wait for completions, serve requests, commit (at once, or when a deferred
/// reply comes back through the mailbox); returns when the kernel has torn every entry down.
fn serve_ring<FS: Filesystem>(
    d: &Dispatcher<FS>,
    ring: &mut IoUring<squeue::Entry128, cqueue::Entry>,
    q: &Queue<'_>,
    stats: &RequestStats,
) -> io::Result<()> {
    let dev = d.device();
    let qid = q.qid;
    let depth = q.entries.len();
    // Entries not yet torn down: registered, committed and fetching, or deferred (a deferred
    // entry comes back through the mailbox and is committed then).
    let mut live = depth;
    // The command each entry's SQE carries: a failed REGISTER only loses that entry (the kernel
    // refused it, so it routes nothing to it); a failed COMMIT_AND_FETCH is fatal.
    let mut last = vec![CMD_REGISTER; depth];
    let mut done = Vec::with_capacity(depth + 1);
    let mut handed_back = Vec::with_capacity(depth);
    let commit = |ring: &mut IoUring<squeue::Entry128, cqueue::Entry>, idx: usize, id: u64| {
        push(
            ring,
            &uring_cmd(dev, CMD_COMMIT_AND_FETCH, qid, id, idx, None),
        )
    };
    while live > 0 {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
        done.clear();
        done.extend(ring.completion().map(|c| (c.user_data(), c.result())));
        for &(tag, res) in &done {
            if tag == WAKE {
                if res < 0 && res != -libc::EINTR && res != -libc::EAGAIN {
                    return Err(io::Error::other(format!(
                        "mailbox read: {}",
                        io::Error::from_raw_os_error(-res)
                    )));
                }
                q.mailbox.take(&mut handed_back);
                for idx in handed_back.drain(..) {
                    let id = q.entries[idx].state.lock().commit_id;
                    last[idx] = CMD_COMMIT_AND_FETCH;
                    commit(ring, idx, id)?;
                }
                push(ring, q.wake)?;
                continue;
            }
            let idx = tag as usize;
            if idx >= depth {
                return Err(io::Error::other(format!(
                    "completion for unknown entry {idx}"
                )));
            }
            match res {
                0 => {
                    stats.count_ring();
                    last[idx] = CMD_COMMIT_AND_FETCH;
                    if let Served::Commit(id) = serve_entry(d, &q.entries[idx], &q.sinks[idx]) {
                        commit(ring, idx, id)?;
                    }
                }
                r if r == -libc::EAGAIN || r == -libc::EINTR => {
                    // Not taken: hand the entry over again.
                    last[idx] = CMD_REGISTER;
                    push(ring, &(q.register)(idx))?;
                }
                r if r == -libc::ENOTCONN || r == -libc::ECANCELED || r == -libc::ENODEV => {
                    // The connection is going away (unmount or abort): this entry is done.
                    live -= 1;
                }
                r if last[idx] == CMD_REGISTER => {
                    log::warn!(
                        "io_uring queue {qid}: the kernel refused entry {idx}: {}",
                        io::Error::from_raw_os_error(-r)
                    );
                    live -= 1;
                }
                r => {
                    return Err(io::Error::other(format!(
                        "ring entry {idx}: {}",
                        io::Error::from_raw_os_error(-r)
                    )))
                }
            }
        }
    }
    Ok(())
}

fn push(
    ring: &mut IoUring<squeue::Entry128, cqueue::Entry>,
    sqe: &squeue::Entry128,
) -> io::Result<()> {
    // SAFETY: the SQE points at an iovec array (`iovs`) that outlives the ring's use of it (the
    // kernel copies it at submission) and at entry buffers that live in `entries` until the
    // thread ends, after the ring is torn down.
    unsafe { ring.submission().push(sqe) }
        .map_err(|_| io::Error::other("io_uring submission queue full"))
}

/// What became of a served entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Served {
    /// Replied (or failed with `EIO`): commit it now with this id.
    Commit(u64),
    /// A reply handle lives on: the entry comes back through the mailbox.
    Deferred,
}

/// Hand the request in `entry` to fuser and make sure a reply is in place or on its way.
fn serve_entry<FS: Filesystem>(
    d: &Dispatcher<FS>,
    entry: &Entry,
    sink: &Arc<dyn ReplySink>,
) -> Served {
    let commit_id = entry.read_u64(ENT_COMMIT_ID);
    let len = entry.read_u32(0) as usize;
    let unique = entry.read_u64(8);
    let payload = entry.read_u32(ENT_PAYLOAD_SZ) as usize;
    {
        let mut st = entry.state.lock();
        st.phase = Phase::Serving;
        st.commit_id = commit_id;
    }
    let op_len = len.checked_sub(IN_HEADER + payload);
    let dispatched = match op_len {
        Some(op_len) if op_len <= OP_IN_MAX && payload <= entry.payload_capacity() => {
            let start = PAYLOAD_AT - IN_HEADER - op_len;
            entry.copy_within(0, start, IN_HEADER);
            entry.copy_within(OP_IN, start + IN_HEADER, op_len);
            let request = entry.slice(start, PAYLOAD_AT + payload);
            d.dispatch(request, sink.clone())
        }
        _ => {
            log::error!(
                "ring request {unique}: length {len} does not fit its payload of {payload} bytes"
            );
            Dispatched::Invalid
        }
    };
    let mut st = entry.state.lock();
    match st.phase {
        Phase::Replied => {}
        Phase::Serving if dispatched == Dispatched::Done && Arc::strong_count(sink) > 1 => {
            // Dispatch is over and dropped its request, so another reference is a reply handle
            // the filesystem kept: it replies later, through `EntrySink::send` (any reply, also
            // the EIO of a handle dropped unreplied, takes the state lock we hold).
            st.phase = Phase::Deferred;
            return Served::Deferred;
        }
        _ => {
            if dispatched == Dispatched::Done {
                log::error!("ring request {unique}: the filesystem returned without replying");
            }
            entry.write_error(unique, libc::EIO);
        }
    }
    st.phase = Phase::Kernel;
    Served::Commit(commit_id)
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use super::*;

    #[test]
    fn cpu_lists_give_the_queue_count() {
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-1"), Some(2));
        assert_eq!(parse_cpu_list("0,2-5"), Some(6));
        assert_eq!(parse_cpu_list("0-3,8"), Some(9));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn register_sqe_carries_the_iovec_count() {
        let iov = [
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
        ];
        let f = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsFd;
        let sqe = uring_cmd(f.as_fd(), CMD_REGISTER, 1, 7, 3, Some(&iov));
        // SAFETY: as in `with_len`.
        let raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
        assert_eq!(raw[0], io_uring::opcode::UringCmd80::CODE);
        assert_eq!(u32::from_ne_bytes(raw[24..28].try_into().unwrap()), 2);
        assert_eq!(
            u64::from_ne_bytes(raw[16..24].try_into().unwrap()),
            iov.as_ptr() as u64
        );
        // cmd_op sits where `off` is; the command area starts at byte 48.
        assert_eq!(
            u32::from_ne_bytes(raw[8..12].try_into().unwrap()),
            CMD_REGISTER
        );
        assert_eq!(u64::from_ne_bytes(raw[56..64].try_into().unwrap()), 7);
        assert_eq!(u16::from_ne_bytes(raw[64..66].try_into().unwrap()), 1);
    }

    fn sink(e: &Arc<Entry>) -> EntrySink {
        EntrySink {
            entry: e.clone(),
            idx: 3,
            mailbox: Arc::new(Mailbox::new().unwrap()),
        }
    }

    #[test]
    fn replies_split_into_header_and_payload_and_only_once() {
        let e = Arc::new(Entry::new(8192).unwrap());
        e.state.lock().phase = Phase::Serving;
        let sink = sink(&e);
        let mut hdr = [0u8; 16];
        hdr[0..4].copy_from_slice(&(16u32 + 5).to_ne_bytes());
        hdr[8..16].copy_from_slice(&42u64.to_ne_bytes());
        let body = b"hello";
        sink.send(&[
            IoSlice::new(&hdr[..10]),
            IoSlice::new(&hdr[10..]),
            IoSlice::new(body),
        ])
        .unwrap();
        assert_eq!(e.read_u64(8), 42);
        assert_eq!(e.read_u32(ENT_PAYLOAD_SZ), 5);
        let mut got = [0u8; 5];
        e.read(PAYLOAD_AT, &mut got);
        assert_eq!(&got, body);
        assert!(
            sink.send(&[IoSlice::new(&hdr)]).is_err(),
            "second reply refused"
        );
    }

    #[test]
    fn a_deferred_reply_hands_its_entry_back_through_the_mailbox() {
        let e = Arc::new(Entry::new(8192).unwrap());
        e.state.lock().phase = Phase::Deferred;
        let s = sink(&e);
        let mut hdr = [0u8; 16];
        hdr[0..4].copy_from_slice(&16u32.to_ne_bytes());
        hdr[8..16].copy_from_slice(&77u64.to_ne_bytes());
        // From another thread, as the notifier thread replies.
        let s = Arc::new(s);
        let s2 = s.clone();
        std::thread::spawn(move || s2.send(&[IoSlice::new(&hdr)]).unwrap())
            .join()
            .unwrap();
        assert_eq!(e.state.lock().phase, Phase::Kernel);
        assert_eq!(e.read_u64(8), 77);
        let mut got = Vec::new();
        s.mailbox.take(&mut got);
        assert_eq!(got, vec![3]);
        let mut n = [0u8; 8];
        // SAFETY: reading 8 bytes into a live buffer from our eventfd (readable: posted above).
        let r = unsafe { libc::read(s.mailbox.efd.as_raw_fd(), n.as_mut_ptr().cast(), 8) };
        assert_eq!((r, u64::from_ne_bytes(n)), (8, 1));
        assert!(
            s.send(&[IoSlice::new(&hdr)]).is_err(),
            "a second reply is refused"
        );
    }

    #[test]
    fn a_reply_during_dispatch_is_committed_by_the_queue_thread() {
        let e = Arc::new(Entry::new(8192).unwrap());
        e.state.lock().phase = Phase::Serving;
        let s = sink(&e);
        let mut hdr = [0u8; 16];
        hdr[0..4].copy_from_slice(&16u32.to_ne_bytes());
        s.send(&[IoSlice::new(&hdr)]).unwrap();
        assert_eq!(e.state.lock().phase, Phase::Replied);
        let mut got = Vec::new();
        s.mailbox.take(&mut got);
        assert!(
            got.is_empty(),
            "nothing handed back: the queue thread commits it"
        );
    }

    #[test]
    fn oversized_replies_become_eio() {
        let e = Arc::new(Entry::new(16).unwrap());
        e.state.lock().phase = Phase::Serving;
        e.write(8, &9u64.to_ne_bytes()); // the request's unique
        let sink = sink(&e);
        let mut hdr = [0u8; 16];
        hdr[8..16].copy_from_slice(&9u64.to_ne_bytes());
        let body = [7u8; 17];
        assert!(sink
            .send(&[IoSlice::new(&hdr), IoSlice::new(&body)])
            .is_err());
        assert_eq!(e.read_u32(4) as i32, -libc::EIO);
        assert_eq!(e.read_u64(8), 9);
        assert_eq!(e.read_u32(ENT_PAYLOAD_SZ), 0);
    }
}
