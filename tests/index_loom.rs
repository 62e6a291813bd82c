//! Model check (loom) of a lock-free reader against a writer on the index.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test index_loom`
//! (compiled only under `cfg(loom)`; under loom the index's atomics are loom's and node
//! reclamation is deferred to drop, see `src/index/reclaim.rs`).
//!
//! Each scenario: a writer thread mutates the index under its lock while the main thread reads;
//! loom explores the interleavings (and the weak-memory outcomes of the Acquire/Release pairs).
//! The reader must see the entry before or after the mutation, never a torn entry, garbage, or
//! (for find_conflict) an empty range that was never empty.
#![cfg(loom)]

use daxfs::index::{Entry, Index, IndexGuard};
use loom::sync::Arc;
use loom::thread;

fn e(index: u64, order: u8, value: u64) -> Entry {
    Entry {
        index,
        order,
        value,
    }
}

/// Runs `setup`, then `write` in a second thread while this thread runs `read` three times,
/// yielding between reads (loom does not preempt a thread before its first operation on an
/// object the other thread has not touched yet, so the yields let the writer's steps interleave
/// with several reads), then `read` once more after the writer finished. Fails if loom explored
/// fewer than `min_runs` executions, so a model that stops exploring cannot pass silently.
fn check(
    min_runs: usize,
    setup: fn(&mut IndexGuard<'_>),
    write: fn(&mut IndexGuard<'_>),
    read: fn(&Index),
) {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = runs.clone();
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let idx = Arc::new(Index::new());
        setup(&mut idx.lock());
        let w = idx.clone();
        let t = thread::spawn(move || write(&mut w.lock()));
        read(&idx);
        thread::yield_now();
        read(&idx);
        thread::yield_now();
        read(&idx);
        t.join().unwrap();
        read(&idx);
    });
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("loom explored {runs} executions");
    assert!(runs >= min_runs, "loom explored only {runs} executions");
}

#[test]
fn loom_load_vs_split_within_node() {
    check(
        4,
        |g| {
            g.store(0, 2, 7).unwrap();
        },
        |g| g.split(0, 0).unwrap(),
        |idx| {
            let got = idx.load(3);
            assert!(
                got == Some(e(0, 2, 7)) || got == Some(e(3, 0, 7)),
                "{got:?}"
            );
        },
    );
}

#[test]
fn loom_load_vs_store_smaller_over_larger() {
    check(
        4,
        |g| {
            g.store(0, 2, 7).unwrap();
        },
        |g| {
            g.store(2, 0, 9).unwrap();
        },
        |idx| {
            let got = idx.load(2);
            assert!(
                got == Some(e(0, 2, 7)) || got == Some(e(2, 0, 9)),
                "{got:?}"
            );
            let got = idx.load(3);
            assert!(got == Some(e(0, 2, 7)) || got.is_none(), "{got:?}");
        },
    );
}

#[test]
fn loom_load_vs_store_larger_over_smaller() {
    check(
        4,
        |g| {
            g.store(2, 0, 1).unwrap();
            g.store(3, 0, 2).unwrap();
        },
        |g| {
            g.store(0, 2, 9).unwrap();
        },
        |idx| {
            let got = idx.load(3);
            assert!(
                got == Some(e(3, 0, 2)) || got == Some(e(0, 2, 9)),
                "{got:?}"
            );
        },
    );
}

#[test]
fn loom_load_vs_erase_and_shrink() {
    check(
        4,
        |g| {
            g.store(1, 0, 1).unwrap();
            g.store(100, 0, 2).unwrap();
        },
        |g| {
            g.erase(100).unwrap();
        },
        |idx| {
            assert_eq!(
                idx.load(1),
                Some(e(1, 0, 1)),
                "root collapse must not hide entries"
            );
            let got = idx.load(100);
            assert!(got == Some(e(100, 0, 2)) || got.is_none(), "{got:?}");
        },
    );
}

#[test]
fn loom_load_vs_expand() {
    check(
        4,
        |g| {
            g.store(1, 0, 1).unwrap();
        },
        |g| {
            g.store(100, 1, 2).unwrap();
        },
        |idx| {
            assert_eq!(
                idx.load(1),
                Some(e(1, 0, 1)),
                "root growth must not hide entries"
            );
            let got = idx.load(101);
            assert!(got == Some(e(100, 1, 2)) || got.is_none(), "{got:?}");
        },
    );
}

#[test]
fn loom_find_conflict_vs_split_across_levels() {
    check(
        4,
        |g| {
            g.store(64, 6, 5).unwrap();
        },
        |g| g.split(64, 5).unwrap(),
        |idx| {
            // The range is never empty: the reader sees the whole entry or the first half.
            let got = idx.find_conflict(64, 6);
            assert!(
                got == Some(e(64, 6, 5)) || got == Some(e(64, 5, 5)),
                "{got:?}"
            );
            let got = idx.load(127);
            assert!(
                got == Some(e(64, 6, 5)) || got == Some(e(96, 5, 5)),
                "{got:?}"
            );
        },
    );
}
