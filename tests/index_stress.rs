//! Randomized multi-thread stress test: writers mutate disjoint-by-construction "PMD slots" of
//! one index while readers load and run conflict queries, checking invariants that must hold at
//! every instant (see `check_entry`). A few seconds long (`INDEX_STRESS_SECS` overrides).
//!
//! Invariant the writers keep: every value is `(region << 8) | tag` where `region` is the
//! 512-aligned range the entry lies in, and the whole range is, at any time, either one order-9
//! entry, a mix of order-0/order-3 entries, or empty. A reader seeing a value from another
//! region, an entry not covering the looked-up index, or a misaligned entry found garbage.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use daxfs::index::{Entry, Index, Mark};
use rand::{Rng, SeedableRng};

const REGIONS: u64 = 64;

fn check_entry(i: u64, e: &Entry) {
    assert!(e.contains(i), "entry {e:?} does not cover {i}");
    assert_eq!(e.index & ((1 << e.order) - 1), 0, "misaligned {e:?}");
    assert!(matches!(e.order, 0 | 3 | 9), "unexpected order {e:?}");
    assert_eq!(
        e.value >> 8,
        i >> 9,
        "value of another region in {e:?} at {i}"
    );
}

#[test]
fn stress_readers_vs_writers() {
    let secs = std::env::var("INDEX_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let idx = Arc::new(Index::new());
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for w in 0..2u64 {
        let (idx, stop) = (idx.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w);
            let mut ops = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let region = rng.random_range(0..REGIONS);
                let base = region << 9;
                let tag = rng.random_range(0..256u64);
                let v = (region << 8) | tag;
                let mut g = idx.lock();
                match rng.random_range(0..7) {
                    0 => {
                        g.store(base, 9, v).unwrap();
                    }
                    1 => {
                        let i = base + rng.random_range(0..512);
                        g.store(i, 0, v).unwrap();
                    }
                    2 => {
                        let i = base + rng.random_range(0..512);
                        g.store(i, 3, v).unwrap();
                    }
                    3 => {
                        g.erase(base + rng.random_range(0..512));
                    }
                    4 => {
                        let i = base + rng.random_range(0..512);
                        if let Some(e) = g.load(i) {
                            if e.order > 0 {
                                let to = if e.order == 9 && rng.random_bool(0.5) {
                                    3
                                } else {
                                    0
                                };
                                g.split(i, to).unwrap();
                            }
                        }
                    }
                    5 => {
                        let i = base + rng.random_range(0..512);
                        let _ = g.set_mark(i, Mark::Dirty);
                    }
                    _ => {
                        let i = base + rng.random_range(0..512);
                        let _ = g.update(i, v);
                    }
                }
                drop(g);
                ops += 1;
            }
            ops
        }));
    }
    for r in 0..2u64 {
        let (idx, stop, reads) = (idx.clone(), stop.clone(), reads.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(100 + r);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let i = rng.random_range(0..REGIONS << 9);
                if let Some(e) = idx.load(i) {
                    check_entry(i, &e);
                }
                let base = i & !511;
                if let Some(e) = idx.find_conflict(i, 9) {
                    assert!(
                        e.index >= base && e.index < base + 512,
                        "{e:?} outside {base}"
                    );
                    check_entry(e.index, &e);
                }
                if let Some(e) = idx.find_marked(i, Mark::Dirty) {
                    assert!(e.index + (1 << e.order) > i, "{e:?} before {i}");
                    check_entry(e.index, &e);
                }
                for e in idx.range(base, base + 512) {
                    check_entry(e.index, &e);
                }
                n += 1;
            }
            reads.fetch_add(n, Ordering::Relaxed);
            n
        }));
    }
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        counts.iter().all(|&c| c > 0),
        "a thread made no progress: {counts:?}"
    );
    eprintln!("stress {:?}: ops/reads per thread {counts:?}", t0.elapsed());
    // Quiescent check: every entry is consistent and the count matches.
    let all = idx.range(0, u64::MAX);
    assert_eq!(all.len(), idx.len());
    for w in all.windows(2) {
        assert!(
            w[0].index + (1 << w[0].order) <= w[1].index,
            "overlap {w:?}"
        );
    }
    for e in &all {
        check_entry(e.index, e);
    }
}
