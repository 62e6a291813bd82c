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
    // Every atomic access is a loom branch, and a 256-slot node takes hundreds of them to fill
    // (a split's new node) or to free (the index's drop walks every slot); loom's default limit
    // of 1000 per execution is too low for that, not a sign of a spin loop.
    b.max_branches = 20_000;
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

// Indices 1 and 1000 lie in different leaf nodes with 64- and with 256-slot nodes, so the
// erase below collapses the root and the store grows it in either geometry.
#[test]
fn loom_load_vs_erase_and_shrink() {
    check(
        4,
        |g| {
            g.store(1, 0, 1).unwrap();
            g.store(1000, 0, 2).unwrap();
        },
        |g| {
            g.erase(1000).unwrap();
        },
        |idx| {
            assert_eq!(
                idx.load(1),
                Some(e(1, 0, 1)),
                "root collapse must not hide entries"
            );
            let got = idx.load(1000);
            assert!(got == Some(e(1000, 0, 2)) || got.is_none(), "{got:?}");
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
            g.store(1000, 1, 2).unwrap();
        },
        |idx| {
            assert_eq!(
                idx.load(1),
                Some(e(1, 0, 1)),
                "root growth must not hide entries"
            );
            let got = idx.load(1001);
            assert!(got == Some(e(1000, 1, 2)) || got.is_none(), "{got:?}");
        },
    );
}

/// An order-6 entry split into order 5: across levels with 64-slot nodes (the order-6 entry is
/// one slot of a shift-6 node, the halves live in a new shift-0 node), inside one node with
/// 256-slot nodes.
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

/// As above with an order-8 entry split into order 7: across levels with 256-slot nodes (a new
/// full shift-0 node holds the two halves), inside one node with 64-slot nodes.
#[test]
fn loom_find_conflict_vs_split_across_levels_256() {
    check(
        4,
        |g| {
            g.store(256, 8, 5).unwrap();
        },
        |g| g.split(256, 7).unwrap(),
        |idx| {
            let got = idx.find_conflict(256, 8);
            assert!(
                got == Some(e(256, 8, 5)) || got == Some(e(256, 7, 5)),
                "{got:?}"
            );
            let got = idx.load(511);
            assert!(
                got == Some(e(256, 8, 5)) || got == Some(e(384, 7, 5)),
                "{got:?}"
            );
        },
    );
}
