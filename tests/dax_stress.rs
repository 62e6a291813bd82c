//! Randomized multi-thread stress of the DAX entry protocol: threads grab, lock, unlock,
//! insert, split, delete and truncate on overlapping PTE/PMD ranges for a few seconds under a
//! watchdog. Checked while running: a held entry is locked in the index with our value, and no
//! two threads hold overlapping entries. Checked at the end: no entry locked, orders match the
//! entries, every block is the one its file index was given, nobody left sleeping.
//!
//! `DAXFS_STRESS_SECS` sets the duration (default 3).
#![cfg(not(loom))]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use daxfs::dax::{DaxEntryGuard, DaxMapping, DaxOptions, PMD_ORDER, PTE_ORDER};
use rand::Rng;

/// File page `i` is always mapped to region block `BASE + i` (so a PMD's block is aligned).
const BASE: u64 = 1 << 20;
/// Pages touched: 4 PMD ranges (small, for contention).
const SPAN: u64 = 4 * 512;
const THREADS: usize = 4;

/// Entries held right now: start -> (end, thread).
type Held = Mutex<HashMap<u64, (u64, usize)>>;

fn acquire(held: &Held, m: &DaxMapping, g: &DaxEntryGuard, me: usize) {
    let (s, e) = (g.index(), g.index() + (1u64 << g.order()));
    let now = m
        .index()
        .load(s)
        .expect("held entry missing from the index");
    assert_eq!(
        (now.index, now.order),
        (s, g.order()),
        "held entry changed shape"
    );
    assert_eq!(now.value, g.entry().raw(), "held entry changed value");
    assert!(g.entry().is_locked());
    let mut h = held.lock().unwrap();
    for (&hs, &(he, who)) in h.iter() {
        assert!(
            he <= s || e <= hs,
            "thread {me} holds [{s},{e}) while thread {who} holds [{hs},{he})"
        );
    }
    h.insert(s, (e, me));
}

fn release(held: &Held, g: &DaxEntryGuard) {
    held.lock().unwrap().remove(&g.index());
}

fn worker(m: DaxMapping, held: Arc<Held>, stop: Arc<AtomicBool>, me: usize, ops: Arc<AtomicU64>) {
    let mut rng = rand::rng();
    while !stop.load(Ordering::Relaxed) {
        let i = rng.random_range(0..SPAN);
        match rng.random_range(0..100) {
            0..=34 => {
                let order = if rng.random_bool(0.5) {
                    PMD_ORDER
                } else {
                    PTE_ORDER
                };
                let mut g = m.grab_mapping_entry(i, order).unwrap();
                acquire(&held, &m, &g, me);
                if g.entry().is_empty() && rng.random_bool(0.8) {
                    g.insert(BASE + g.index(), rng.random_bool(0.3)).unwrap();
                }
                if rng.random_bool(0.1) {
                    thread::yield_now();
                }
                release(&held, &g);
                g.unlock().unwrap();
            }
            35..=59 => {
                if let Some(g) = m.lock_entry_for_page(i).unwrap() {
                    acquire(&held, &m, &g, me);
                    assert!(g.covers(i));
                    release(&held, &g);
                    if g.order() == PMD_ORDER && rng.random_bool(0.3) {
                        let hole = rng.random_bool(0.5).then_some(i);
                        g.split_and_unlock(hole).unwrap();
                    } else {
                        drop(g);
                    }
                }
            }
            60..=74 => {
                m.dax_delete_mapping_entry(i).unwrap();
            }
            75..=84 => {
                let n = rng.random_range(1..700);
                m.dax_delete_range(i, i + n).unwrap();
            }
            85..=92 => {
                m.dax_invalidate_mapping_entry(i).unwrap();
            }
            _ => {
                let order = if rng.random_bool(0.5) {
                    PMD_ORDER
                } else {
                    PTE_ORDER
                };
                m.get_unlocked_entry(i, order).unwrap();
            }
        }
        ops.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn stress_grab_lock_split_delete() {
    let secs: u64 = std::env::var("DAXFS_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let m = DaxMapping::new(777_777, 1, DaxOptions::default());
    let held = Arc::new(Held::default());
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = mpsc::channel();
    let mut handles = Vec::new();
    for me in 0..THREADS {
        let (m, held, stop, ops, done) = (
            m.clone(),
            held.clone(),
            stop.clone(),
            ops.clone(),
            done_tx.clone(),
        );
        handles.push(thread::spawn(move || {
            worker(m, held, stop, me, ops);
            let _ = done.send(());
        }));
    }
    drop(done_tx);
    let start = Instant::now();
    thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for _ in 0..THREADS {
        match done_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break, // a worker panicked
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("watchdog: workers stuck; {} sleepers", m.sleepers())
            }
        }
    }
    for h in handles {
        h.join().expect("worker panicked");
    }
    let n = ops.load(Ordering::Relaxed);
    eprintln!(
        "stress: {n} ops in {:?} by {THREADS} threads, {} entries left",
        start.elapsed(),
        m.mappings().len()
    );
    assert!(n > 1000, "too few operations ({n})");
    m.check_invariants().unwrap();
    assert_eq!(m.sleepers(), 0);
    assert!(held.lock().unwrap().is_empty());
    for e in m.mappings() {
        if e.entry.has_block() {
            assert_eq!(
                e.entry.block(),
                BASE + e.index,
                "wrong block at {}",
                e.index
            );
        }
    }
}

/// Eviction under load: threads fault and lock on a few pages (so some always sleep), then the
/// inode is evicted; every thread must come out with `Err(Evicted)` (none hangs) and the
/// entries held at that moment must still unlock.
#[test]
fn stress_evict_under_load() {
    use daxfs::dax::DaxError;
    let m = DaxMapping::new(777_778, 1, DaxOptions::default());
    let (done_tx, done_rx) = mpsc::channel();
    let mut handles = Vec::new();
    for _ in 0..THREADS {
        let (m, done) = (m.clone(), done_tx.clone());
        handles.push(thread::spawn(move || {
            let mut rng = rand::rng();
            let mut ops = 0u64;
            let err = loop {
                let i = rng.random_range(0..8);
                let r = if rng.random_bool(0.5) {
                    m.grab_mapping_entry(i, PMD_ORDER).map(Some)
                } else {
                    m.lock_entry_for_page(i)
                };
                match r {
                    Ok(g) => {
                        thread::yield_now();
                        drop(g);
                        ops += 1;
                    }
                    Err(e) => break e,
                }
            };
            let _ = done.send(());
            (err, ops)
        }));
    }
    drop(done_tx);
    thread::sleep(Duration::from_millis(500));
    m.evict();
    for _ in 0..THREADS {
        match done_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "watchdog: a thread hung after eviction; {} sleepers",
                    m.sleepers()
                )
            }
        }
    }
    let mut total = 0;
    for h in handles {
        let (err, ops) = h.join().expect("worker panicked");
        assert_eq!(err, DaxError::Evicted { inode: 777_778 });
        total += ops;
    }
    assert!(total > 100, "too few operations before eviction ({total})");
    assert_eq!(m.sleepers(), 0);
    m.check_invariants().unwrap();
}
