//! The lease table: which process maps which page ranges of which file directly, revocations in
//! progress, and fences (docs/DESIGN.md, "Direct mapping").
//!
//! Owns: holders (one per lease connection: pid, uid, access, how to reach it), their leases
//! (per inode: merged page ranges and the registration epoch), the revocations in progress with
//! the holders each still waits for, and the fences raised for holders that did not answer.
//! It knows nothing of sockets (a holder is reached through a [`Sink`]) or of blocks (a fence is
//! lifted through the `on_lift` callback; the filesystem keeps the quarantined blocks).
//!
//! # Rules
//!
//! 1. **A revocation reaches every holder whose lease intersects the range when it starts, and
//!    every holder that registers an intersecting lease while it is in progress** (a forked child
//!    registering its inherited mappings, a `GET_FMAP` racing a memory-failure revocation, which
//!    takes no inode lock). Registration joins the holder to the revocations in progress under
//!    the table mutex, so no holder slips between "who holds a lease" and "wait for them".
//! 2. **Bounded wait.** [`LeaseTable::revoke`] waits at most the timeout for acknowledgements;
//!    holders that did not answer (or could not be sent to) are named in the log and *fenced*:
//!    the returned [`FenceId`] quarantines what the change frees until each of them acknowledges
//!    late, or is gone and no longer maps the region.
//! 3. **A holder whose connection closed while its process still maps the region is
//!    *silent*:** it keeps its leases and every revocation that concerns it fences at once (it
//!    cannot answer). The lease server checks such processes and resolves them when their
//!    mapping of the region is gone ([`LeaseTable::holder_gone`]).
//! 4. **A release never drops a newer registration**: `RELEASE(epoch)` drops the lease only if
//!    no registration with a larger epoch happened.
//! 5. Lock order: the table mutex is a leaf (sinks never block; `on_lift` runs after it is
//!    released). Revokers sleep on the condition variable with it released.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::wire::{self, Msg};
use crate::fs::layout::{FenceId, LayoutBreaker, LayoutChange, LayoutExtent};
use crate::fs::Ino;

/// A holder's id (never reused within a daemon).
pub type HolderId = u64;

/// How the table reaches a holder.
pub trait Sink: Send + Sync {
    /// Queues `m` without blocking. An error means it could not be queued (the holder then counts
    /// as not answering).
    fn send(&self, m: &Msg) -> std::io::Result<()>;
}

/// Who a holder is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderInfo {
    /// The holder's process.
    pub pid: u32,
    /// Its uid.
    pub uid: u32,
    /// [`wire::ACCESS_READ`] or [`wire::ACCESS_RW`].
    pub access: u64,
    /// The process's name, for messages.
    pub comm: String,
}

enum Link {
    Connected(Arc<dyn Sink>),
    /// The connection is gone but the process may still map the region (rule 3).
    Silent,
}

struct Holder {
    info: HolderInfo,
    token: u64,
    link: Link,
}

struct Lease {
    holder: HolderId,
    /// Disjoint, sorted page ranges.
    ranges: Vec<(u64, u64)>,
    epoch: u64,
}

struct Revocation {
    seq: u64,
    ino: Ino,
    first: u64,
    end: u64,
    msg: Msg,
    waiting: HashSet<HolderId>,
    /// Holders that cannot answer (send failed, silent): fenced when the revocation ends.
    fenced: HashSet<HolderId>,
}

struct Fence {
    id: FenceId,
    seq: u64,
    pending: HashSet<HolderId>,
}

#[derive(Default)]
struct State {
    holders: HashMap<HolderId, Holder>,
    tokens: HashMap<u64, HolderId>,
    leases: HashMap<Ino, Vec<Lease>>,
    revoking: Vec<Revocation>,
    fences: Vec<Fence>,
}

/// The lease table of one mount.
pub struct LeaseTable {
    state: Mutex<State>,
    changed: Condvar,
    /// `state.leases.len()`, readable without the mutex.
    leased_inodes: AtomicUsize,
    timeout: Duration,
    next_id: AtomicU64,
    on_lift: Box<dyn Fn(FenceId) + Send + Sync>,
}

fn intersects(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Adds `[first, end)` to sorted disjoint `ranges`, merging.
fn add_range(ranges: &mut Vec<(u64, u64)>, first: u64, end: u64) {
    let (mut s, mut e) = (first, end);
    ranges.retain(|&(a, b)| {
        if a <= e && s <= b {
            s = s.min(a);
            e = e.max(b);
            false
        } else {
            true
        }
    });
    let at = ranges.partition_point(|&(a, _)| a < s);
    ranges.insert(at, (s, e));
}

/// The message that revokes `[first, end)` of `ino` for `why`.
pub fn revoke_msg(seq: u64, ino: Ino, first: u64, end: u64, why: LayoutChange) -> Msg {
    let mut m = Msg::new(wire::REVOKE);
    m.seq = seq;
    m.ino = ino;
    m.first = first;
    m.end = end;
    (m.reason, m.arg) = match why {
        LayoutChange::Truncate { size } => (wire::REASON_TRUNCATE, size),
        LayoutChange::Punch => (wire::REASON_PUNCH, 0),
        LayoutChange::Fill => (wire::REASON_FILL, 0),
        LayoutChange::Extend { size } => (wire::REASON_EXTEND, size),
        LayoutChange::Invalidate => (wire::REASON_INVALIDATE, 0),
    };
    m
}

/// The [`wire::EXTENT`] message of one extent of a growth; `None` for a poisoned page (left to
/// the fault path, which reports it).
pub fn extent_msg(seq: u64, ino: Ino, x: &LayoutExtent) -> Option<Msg> {
    let mut m = Msg::new(wire::EXTENT);
    m.seq = seq;
    m.ino = ino;
    match *x {
        LayoutExtent::Data {
            page, nr, block, ..
        } => {
            (m.first, m.end) = (page, page + nr);
            (m.reason, m.arg) = (wire::EXTENT_DATA, block * crate::store::BLOCK);
        }
        LayoutExtent::Hole { page, nr } => {
            (m.first, m.end) = (page, page + nr);
            m.reason = wire::EXTENT_HOLE;
        }
        LayoutExtent::Poisoned { .. } => return None,
    }
    Some(m)
}

fn reason_name(r: u32) -> &'static str {
    match r {
        wire::REASON_TRUNCATE => "truncate",
        wire::REASON_PUNCH => "punch hole",
        wire::REASON_FILL => "allocation into a hole",
        wire::REASON_EXTEND => "file growth",
        wire::REASON_INVALIDATE => "memory failure",
        _ => "layout change",
    }
}

impl LeaseTable {
    /// A table whose revocations wait at most `timeout`; `on_lift` is called (without the table
    /// mutex) when a fence lifts.
    pub fn new(timeout: Duration, on_lift: Box<dyn Fn(FenceId) + Send + Sync>) -> LeaseTable {
        LeaseTable {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            leased_inodes: AtomicUsize::new(0),
            timeout,
            next_id: AtomicU64::new(1),
            on_lift,
        }
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The revocation timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Adds a holder reached through `sink`, with `token` (its secret for `GET_FMAP`).
    pub fn add_holder(&self, info: HolderInfo, token: u64, sink: Arc<dyn Sink>) -> HolderId {
        let id = self.id();
        let mut st = self.state.lock();
        st.tokens.insert(token, id);
        st.holders.insert(
            id,
            Holder {
                info,
                token,
                link: Link::Connected(sink),
            },
        );
        id
    }

    /// The holder `token` names, with its identity. Return: `None` for an unknown token or a
    /// holder whose connection is gone.
    pub fn holder_for_token(&self, token: u64) -> Option<(HolderId, HolderInfo)> {
        let st = self.state.lock();
        let id = *st.tokens.get(&token)?;
        let h = st.holders.get(&id)?;
        matches!(h.link, Link::Connected(_)).then(|| (id, h.info.clone()))
    }

    /// Records a lease of pages `[first, end)` of `ino` for `holder` (registration `epoch`), and
    /// joins it to the revocations in progress that intersect it (rule 1).
    pub fn register(&self, holder: HolderId, ino: Ino, first: u64, end: u64, epoch: u64) {
        if first >= end {
            return;
        }
        let mut st = self.state.lock();
        let st = &mut *st;
        let Some(h) = st.holders.get(&holder) else {
            return;
        };
        let sink = match &h.link {
            Link::Connected(s) => s.clone(),
            Link::Silent => return,
        };
        let leases = st.leases.entry(ino).or_default();
        match leases.iter_mut().find(|l| l.holder == holder) {
            Some(l) => {
                add_range(&mut l.ranges, first, end);
                l.epoch = l.epoch.max(epoch);
            }
            None => leases.push(Lease {
                holder,
                ranges: vec![(first, end)],
                epoch,
            }),
        }
        self.leased_inodes.store(st.leases.len(), Ordering::Release);
        for r in st.revoking.iter_mut() {
            if r.ino != ino
                || !intersects((r.first, r.end), (first, end))
                || r.waiting.contains(&holder)
                || r.fenced.contains(&holder)
            {
                continue;
            }
            if sink.send(&r.msg).is_ok() {
                r.waiting.insert(holder);
            } else {
                r.fenced.insert(holder);
            }
        }
    }

    /// `RELEASE`: `holder` no longer maps `ino` (rule 4).
    pub fn release(&self, holder: HolderId, ino: Ino, epoch: u64) {
        let mut st = self.state.lock();
        if let Some(v) = st.leases.get_mut(&ino) {
            v.retain(|l| l.holder != holder || l.epoch > epoch);
            if v.is_empty() {
                st.leases.remove(&ino);
            }
        }
        self.leased_inodes.store(st.leases.len(), Ordering::Release);
    }

    /// `ACK` of revocation `seq` by `holder` (also a late one: it lifts the holder's part of the
    /// fence raised for that revocation).
    pub fn ack(&self, holder: HolderId, seq: u64) {
        let lifted = {
            let mut st = self.state.lock();
            if let Some(r) = st.revoking.iter_mut().find(|r| r.seq == seq) {
                r.waiting.remove(&holder);
                self.changed.notify_all();
                return;
            }
            Self::resolve_fences(&mut st, holder, Some(seq))
        };
        self.lift(lifted);
    }

    /// Removes `holder`'s part of fences (of revocation `seq`, or all); returns the fences that
    /// lifted.
    fn resolve_fences(st: &mut State, holder: HolderId, seq: Option<u64>) -> Vec<FenceId> {
        let mut lifted = Vec::new();
        st.fences.retain_mut(|f| {
            if seq.is_none_or(|s| s == f.seq) {
                f.pending.remove(&holder);
            }
            if f.pending.is_empty() {
                lifted.push(f.id);
                false
            } else {
                true
            }
        });
        lifted
    }

    fn lift(&self, fences: Vec<FenceId>) {
        for f in fences {
            log::info!("direct mapping: fence {} lifted", f.0);
            (self.on_lift)(f);
        }
    }

    /// The connection of `holder` closed. When its process no longer maps the region
    /// (`still_mapping` false) it is removed with its leases, and its fences and waits resolve;
    /// otherwise it turns silent (rule 3) until [`Self::holder_gone`] is called again with
    /// `false`.
    pub fn holder_gone(&self, holder: HolderId, still_mapping: bool) {
        let lifted = {
            let mut st = self.state.lock();
            let st = &mut *st;
            if still_mapping {
                if let Some(h) = st.holders.get_mut(&holder) {
                    h.link = Link::Silent;
                    st.tokens.remove(&h.token);
                }
                for r in st.revoking.iter_mut() {
                    if r.waiting.remove(&holder) {
                        r.fenced.insert(holder);
                    }
                }
                self.changed.notify_all();
                return;
            }
            if let Some(h) = st.holders.remove(&holder) {
                st.tokens.remove(&h.token);
            }
            st.leases.retain(|_, v| {
                v.retain(|l| l.holder != holder);
                !v.is_empty()
            });
            self.leased_inodes.store(st.leases.len(), Ordering::Release);
            for r in st.revoking.iter_mut() {
                r.waiting.remove(&holder);
                r.fenced.remove(&holder);
            }
            self.changed.notify_all();
            Self::resolve_fences(st, holder, None)
        };
        self.lift(lifted);
    }

    /// Holders that are silent (connection gone, process may still map the region), with pids.
    pub fn silent_holders(&self) -> Vec<(HolderId, u32)> {
        let st = self.state.lock();
        st.holders
            .iter()
            .filter(|(_, h)| matches!(h.link, Link::Silent))
            .map(|(&id, h)| (id, h.info.pid))
            .collect()
    }

    /// Number of holders (connected or silent).
    pub fn holders(&self) -> usize {
        self.state.lock().holders.len()
    }

    /// Number of fences up.
    pub fn fences(&self) -> usize {
        self.state.lock().fences.len()
    }

    /// The leased ranges of `ino`, per holder (tests, diagnostics).
    pub fn leases_of(&self, ino: Ino) -> Vec<(HolderId, Vec<(u64, u64)>)> {
        let st = self.state.lock();
        st.leases
            .get(&ino)
            .map(|v| v.iter().map(|l| (l.holder, l.ranges.clone())).collect())
            .unwrap_or_default()
    }

    /// Revokes pages `[first, end)` of `ino` (rules 1 and 2). Return: the fence raised for
    /// holders that did not answer, if any.
    ///
    /// Context: sleeps up to the timeout with the table mutex released.
    pub fn revoke(&self, ino: Ino, first: u64, end: u64, why: LayoutChange) -> Option<FenceId> {
        self.revoke_with_hints(ino, first, end, why, &[])
    }

    /// [`LeaseTable::revoke`], sending each holder the [`wire::EXTENT`] messages of `hints`
    /// (the range's new layout, for a growth) just before the revocation.
    pub fn revoke_with_hints(
        &self,
        ino: Ino,
        first: u64,
        end: u64,
        why: LayoutChange,
        hints: &[LayoutExtent],
    ) -> Option<FenceId> {
        if self.leased_inodes.load(Ordering::Acquire) == 0 {
            return None;
        }
        let seq = self.id();
        let msg = revoke_msg(seq, ino, first, end, why);
        let hint_msgs: Vec<Msg> = hints
            .iter()
            .take(wire::MAX_EXTENT_HINTS)
            .filter_map(|x| extent_msg(seq, ino, x))
            .collect();
        let mut st = self.state.lock();
        let holders: Vec<HolderId> = match st.leases.get(&ino) {
            Some(v) => v
                .iter()
                .filter(|l| l.ranges.iter().any(|&r| intersects(r, (first, end))))
                .map(|l| l.holder)
                .collect(),
            None => return None,
        };
        if holders.is_empty() {
            return None;
        }
        let mut rev = Revocation {
            seq,
            ino,
            first,
            end,
            msg,
            waiting: HashSet::new(),
            fenced: HashSet::new(),
        };
        for h in holders {
            let sent = match st.holders.get(&h).map(|h| &h.link) {
                Some(Link::Connected(s)) => {
                    // A hint that does not fit is only a missed hint; the revocation must fit.
                    for m in &hint_msgs {
                        if s.send(m).is_err() {
                            break;
                        }
                    }
                    s.send(&msg).is_ok()
                }
                _ => false,
            };
            if sent {
                rev.waiting.insert(h);
            } else {
                rev.fenced.insert(h);
            }
        }
        st.revoking.push(rev);
        let deadline = Instant::now() + self.timeout;
        loop {
            let r = st
                .revoking
                .iter()
                .find(|r| r.seq == seq)
                .expect("our revocation");
            if r.waiting.is_empty() {
                break;
            }
            if self.changed.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        let at = st
            .revoking
            .iter()
            .position(|r| r.seq == seq)
            .expect("our revocation");
        let r = st.revoking.swap_remove(at);
        let unanswered: HashSet<HolderId> = r.waiting.union(&r.fenced).copied().collect();
        if unanswered.is_empty() {
            return None;
        }
        let fence = FenceId(self.id());
        for h in &unanswered {
            let (pid, comm) = st
                .holders
                .get(h)
                .map(|h| (h.info.pid, h.info.comm.clone()))
                .unwrap_or_default();
            log::warn!(
                "direct mapping: pid {pid} ({comm}) did not acknowledge the revocation of pages \
                 [{first}, {end}) of inode {ino} ({}) within {:?}: its mapping is fenced (fence \
                 {}): blocks this change frees stay allocated, quarantined, until it \
                 acknowledges or no longer maps the region",
                reason_name(r.msg.reason),
                self.timeout,
                fence.0
            );
        }
        st.fences.push(Fence {
            id: fence,
            seq,
            pending: unanswered,
        });
        Some(fence)
    }
}

impl LayoutBreaker for LeaseTable {
    fn active(&self, ino: Ino) -> bool {
        self.leased_inodes.load(Ordering::Acquire) > 0
            && self.state.lock().leases.contains_key(&ino)
    }

    fn break_layouts(&self, ino: Ino, first: u64, end: u64, why: LayoutChange) -> Option<FenceId> {
        self.revoke(ino, first, end, why)
    }

    fn break_extended(
        &self,
        ino: Ino,
        first: u64,
        end: u64,
        size: u64,
        hints: &[LayoutExtent],
    ) -> Option<FenceId> {
        self.revoke_with_hints(ino, first, end, LayoutChange::Extend { size }, hints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A sink that forwards to a channel, or fails.
    struct Chan(Mutex<Option<mpsc::Sender<Msg>>>);

    impl Sink for Chan {
        fn send(&self, m: &Msg) -> std::io::Result<()> {
            match &*self.0.lock() {
                Some(tx) => tx
                    .send(*m)
                    .map_err(|_| std::io::ErrorKind::BrokenPipe.into()),
                None => Err(std::io::ErrorKind::WouldBlock.into()),
            }
        }
    }

    fn info(pid: u32) -> HolderInfo {
        HolderInfo {
            pid,
            uid: 0,
            access: wire::ACCESS_RW,
            comm: format!("p{pid}"),
        }
    }

    fn table(timeout_ms: u64) -> (Arc<LeaseTable>, Arc<Mutex<Vec<FenceId>>>) {
        let lifted = Arc::new(Mutex::new(Vec::new()));
        let l = lifted.clone();
        let t = LeaseTable::new(
            Duration::from_millis(timeout_ms),
            Box::new(move |f| l.lock().push(f)),
        );
        (Arc::new(t), lifted)
    }

    /// A holder served by a thread that acknowledges every revocation (after `delay`).
    fn acking_holder(
        t: &Arc<LeaseTable>,
        pid: u32,
        delay: Duration,
    ) -> (HolderId, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel();
        let (seen_tx, seen_rx) = mpsc::channel();
        let id = t.add_holder(
            info(pid),
            pid as u64 * 1000,
            Arc::new(Chan(Mutex::new(Some(tx)))),
        );
        let t2 = t.clone();
        std::thread::spawn(move || {
            for m in rx {
                std::thread::sleep(delay);
                t2.ack(id, m.seq);
                let _ = seen_tx.send(m);
            }
        });
        (id, seen_rx)
    }

    #[test]
    fn ranges_merge() {
        let mut r = vec![];
        add_range(&mut r, 10, 20);
        add_range(&mut r, 30, 40);
        add_range(&mut r, 0, 5);
        assert_eq!(r, vec![(0, 5), (10, 20), (30, 40)]);
        add_range(&mut r, 18, 31);
        assert_eq!(r, vec![(0, 5), (10, 40)]);
        add_range(&mut r, 5, 10);
        assert_eq!(r, vec![(0, 40)]);
    }

    #[test]
    fn revoke_waits_for_intersecting_holders_only() {
        let (t, _) = table(10_000);
        let (a, seen_a) = acking_holder(&t, 1, Duration::from_millis(20));
        let (b, seen_b) = acking_holder(&t, 2, Duration::ZERO);
        assert!(!t.active(5));
        t.register(a, 5, 0, 512, 1);
        t.register(b, 5, 1024, 2048, 1);
        assert!(t.active(5) && !t.active(6));
        assert_eq!(t.revoke(5, 100, 200, LayoutChange::Punch), None);
        let m = seen_a.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            (m.kind, m.reason, m.first, m.end),
            (wire::REVOKE, wire::REASON_PUNCH, 100, 200)
        );
        assert!(seen_b.try_recv().is_err(), "b's lease does not intersect");
        // Nobody on another inode.
        assert_eq!(t.revoke(6, 0, u64::MAX, LayoutChange::Punch), None);
        // Truncate reaches both, with the size.
        assert_eq!(
            t.revoke(5, 3, u64::MAX, LayoutChange::Truncate { size: 9000 }),
            None
        );
        assert_eq!(
            seen_a.recv_timeout(Duration::from_secs(10)).unwrap().arg,
            9000
        );
        assert_eq!(
            seen_b.recv_timeout(Duration::from_secs(10)).unwrap().reason,
            wire::REASON_TRUNCATE
        );
    }

    #[test]
    fn a_growth_sends_its_layout_before_the_revocation() {
        let (t, _) = table(10_000);
        let (tx, rx) = mpsc::channel();
        let id = t.add_holder(info(3), 3000, Arc::new(Chan(Mutex::new(Some(tx)))));
        let (seen_tx, seen) = mpsc::channel();
        let t2 = t.clone();
        std::thread::spawn(move || {
            for m in rx {
                if m.kind == wire::REVOKE {
                    t2.ack(id, m.seq);
                }
                let _ = seen_tx.send(m);
            }
        });
        t.register(id, 4, 0, 8, 1);
        let hints = [
            LayoutExtent::Data {
                page: 1,
                nr: 2,
                block: 40,
                order: 0,
            },
            LayoutExtent::Poisoned { page: 3, block: 9 },
            LayoutExtent::Hole { page: 4, nr: 1 },
        ];
        assert_eq!(t.break_extended(4, 1, 5, 5 * 4096, &hints), None);
        let got: Vec<Msg> = (0..3)
            .map(|_| seen.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        let data = got[0];
        assert_eq!(
            (data.kind, data.reason, data.ino, data.first, data.end),
            (wire::EXTENT, wire::EXTENT_DATA, 4, 1, 3)
        );
        assert_eq!(data.arg, 40 * 4096);
        assert_eq!(
            (got[1].kind, got[1].reason, got[1].first, got[1].end),
            (wire::EXTENT, wire::EXTENT_HOLE, 4, 5),
            "the poisoned page is left to the fault path"
        );
        let rev = got[2];
        assert_eq!(
            (rev.kind, rev.reason, rev.first, rev.end, rev.arg),
            (wire::REVOKE, wire::REASON_EXTEND, 1, 5, 5 * 4096)
        );
        assert!(data.seq == rev.seq && got[1].seq == rev.seq);
        // More hints than the limit: the first MAX_EXTENT_HINTS go, then the revocation.
        let many: Vec<LayoutExtent> = (0..40)
            .map(|i| LayoutExtent::Hole { page: i, nr: 1 })
            .collect();
        assert_eq!(t.break_extended(4, 0, 8, 8 * 4096, &many), None);
        let mut n = 0;
        loop {
            let m = seen.recv_timeout(Duration::from_secs(10)).unwrap();
            if m.kind == wire::REVOKE {
                break;
            }
            n += 1;
        }
        assert_eq!(n, wire::MAX_EXTENT_HINTS);
    }

    #[test]
    fn silence_fences_and_a_late_ack_lifts() {
        let (t, lifted) = table(100);
        let (tx, rx) = mpsc::channel();
        let id = t.add_holder(info(7), 77, Arc::new(Chan(Mutex::new(Some(tx)))));
        t.register(id, 3, 0, 10, 1);
        let f = t
            .revoke(3, 0, 10, LayoutChange::Punch)
            .expect("no answer: fenced");
        assert_eq!(t.fences(), 1);
        let m = rx.recv().unwrap();
        t.ack(id, m.seq);
        assert_eq!(*lifted.lock(), vec![f]);
        assert_eq!(t.fences(), 0);
    }

    #[test]
    fn a_full_socket_fences_at_once_and_exit_lifts() {
        let (t, lifted) = table(60_000);
        let id = t.add_holder(info(8), 88, Arc::new(Chan(Mutex::new(None))));
        t.register(id, 3, 0, 10, 1);
        let start = Instant::now();
        let f = t
            .revoke(3, 5, 6, LayoutChange::Truncate { size: 0 })
            .unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no wait for an unreachable holder"
        );
        // The connection closes while the process still maps the region: still fenced.
        t.holder_gone(id, true);
        assert!(lifted.lock().is_empty());
        assert_eq!(t.silent_holders(), vec![(id, 8)]);
        // A silent holder fences every later revocation at once.
        let g = t.revoke(3, 0, 1, LayoutChange::Punch).unwrap();
        // The process stops mapping the region: everything lifts, its leases go.
        t.holder_gone(id, false);
        let mut l = lifted.lock().clone();
        l.sort();
        assert_eq!(l, vec![f, g]);
        assert!(!t.active(3));
        assert_eq!(t.holders(), 0);
    }

    #[test]
    fn a_registration_during_a_revocation_joins_it() {
        let (t, _) = table(30_000);
        let (a, _seen_a) = acking_holder(&t, 1, Duration::from_millis(300));
        t.register(a, 9, 0, 100, 1);
        let t2 = t.clone();
        let revoker = std::thread::spawn(move || t2.revoke(9, 0, 100, LayoutChange::Punch));
        // Wait until the revocation is in progress, then register a second holder.
        let deadline = Instant::now() + Duration::from_secs(20);
        while t.state.lock().revoking.is_empty() {
            assert!(Instant::now() < deadline);
            std::thread::yield_now();
        }
        let (tx, rx) = mpsc::channel();
        let b = t.add_holder(info(2), 22, Arc::new(Chan(Mutex::new(Some(tx)))));
        t.register(b, 9, 50, 60, 1);
        let m = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the late holder is revoked too");
        assert!(
            !revoker.is_finished(),
            "the revocation waits for the late holder"
        );
        t.ack(b, m.seq);
        assert_eq!(revoker.join().unwrap(), None);
    }

    #[test]
    fn release_keeps_newer_registrations_and_tokens_identify() {
        let (t, _) = table(1000);
        let (a, _s) = acking_holder(&t, 1, Duration::ZERO);
        assert_eq!(t.holder_for_token(1000).map(|x| x.0), Some(a));
        assert!(t.holder_for_token(999).is_none());
        t.register(a, 4, 0, 8, 2);
        t.release(a, 4, 1);
        assert!(t.active(4), "an older release does not drop epoch 2");
        t.release(a, 4, 2);
        assert!(!t.active(4));
        t.register(a, 4, 0, 8, 3);
        t.holder_gone(a, false);
        assert!(!t.active(4) && t.holder_for_token(1000).is_none());
    }

    /// Randomized stress: holders that register and acknowledge from their own threads while a
    /// revoker runs. Invariant: when `revoke` returns `None`, every holder whose lease intersected
    /// the range when it started has acknowledged it (leases only grow here; releases are
    /// checked above).
    #[test]
    fn stress_no_revocation_completes_without_its_holders() {
        use rand::{Rng, SeedableRng};
        let (t, _) = table(30_000);
        let acked: Arc<Mutex<HashMap<HolderId, HashSet<u64>>>> = Default::default();
        let mut ids = Vec::new();
        for pid in 1..=4u32 {
            let (tx, rx) = mpsc::channel::<Msg>();
            let id = t.add_holder(info(pid), pid as u64, Arc::new(Chan(Mutex::new(Some(tx)))));
            ids.push(id);
            let (t2, acked2) = (t.clone(), acked.clone());
            std::thread::spawn(move || {
                for m in rx {
                    acked2.lock().entry(id).or_default().insert(m.seq);
                    t2.ack(id, m.seq);
                }
            });
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut regs = Vec::new();
        for (n, &id) in ids.iter().enumerate() {
            let (t2, stop2) = (t.clone(), stop.clone());
            regs.push(std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
                let mut epoch = 0;
                while !stop2.load(Ordering::Relaxed) {
                    epoch += 1;
                    let s = rng.random_range(0..256u64);
                    t2.register(
                        id,
                        rng.random_range(1..3),
                        s,
                        s + rng.random_range(1..4),
                        epoch,
                    );
                    std::thread::yield_now();
                }
            }));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(99);
        for _ in 0..400 {
            let ino = rng.random_range(1..3);
            let s = rng.random_range(0..256u64);
            let e = s + rng.random_range(1..16);
            let before: HashSet<HolderId> = t
                .leases_of(ino)
                .into_iter()
                .filter(|(_, r)| r.iter().any(|&x| intersects(x, (s, e))))
                .map(|(h, _)| h)
                .collect();
            let seq_floor = t.next_id.load(Ordering::Relaxed);
            assert_eq!(t.revoke(ino, s, e, LayoutChange::Punch), None);
            let acked = acked.lock();
            for h in &before {
                assert!(
                    acked
                        .get(h)
                        .is_some_and(|v| v.iter().any(|&q| q >= seq_floor)),
                    "holder {h} held [{s}, {e}) of inode {ino} but never acknowledged"
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
        for r in regs {
            r.join().unwrap();
        }
    }
}
