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
        let rev = Revocation {
            seq,
            ino,
            first,
            end,
            msg,
            waiting: HashSet::new(),
            fenced: HashSet::new(),
        };
        let rev = send_revocation(&st, rev, holders, &hint_msgs);
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
            self.log_unanswered(&st, *h, &r, fence);
        }
        st.fences.push(Fence {
            id: fence,
            seq,
            pending: unanswered,
        });
        Some(fence)
    }
}

/// Sends revocation `rev` (after its growth hints) to each of `holders`: those it reached are
/// waited for, the others fenced. A hint that does not fit the socket is only a missed hint;
/// the revocation itself must fit.
fn send_revocation(
    st: &State,
    mut rev: Revocation,
    holders: Vec<HolderId>,
    hints: &[Msg],
) -> Revocation {
    for h in holders {
        let sent = match st.holders.get(&h).map(|h| &h.link) {
            Some(Link::Connected(s)) => {
                for m in hints {
                    if s.send(m).is_err() {
                        break;
                    }
                }
                s.send(&rev.msg).is_ok()
            }
            _ => false,
        };
        if sent {
            rev.waiting.insert(h);
        } else {
            rev.fenced.insert(h);
        }
    }
    rev
}

impl LeaseTable {
    /// Names holder `h`, which did not acknowledge `r` in time, in the log with its fence.
    fn log_unanswered(&self, st: &State, h: HolderId, r: &Revocation, fence: FenceId) {
        let (pid, comm) = st
            .holders
            .get(&h)
            .map(|h| (h.info.pid, h.info.comm.clone()))
            .unwrap_or_default();
        log::warn!(
            "direct mapping: pid {pid} ({comm}) did not acknowledge the revocation of pages \
             [{}, {}) of inode {} ({}) within {:?}: its mapping is fenced (fence {}): blocks \
             this change frees stay allocated, quarantined, until it acknowledges or no longer \
             maps the region",
            r.first,
            r.end,
            r.ino,
            reason_name(r.msg.reason),
            self.timeout,
            fence.0
        );
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
mod tests;
