//! Tests of the lease table (`super`): revocation, fences, registration during a revocation,
//! growth hints; holders are channels answered by threads.
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
