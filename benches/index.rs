//! Benchmarks of the index against two baselines: `RwLock<BTreeMap<u64, u64>>` and a flat
//! `Vec<AtomicU64>` (the fastest possible lookup of a dense map, no multi-order semantics).
//!
//! Run: `cargo bench --bench index -- --warm-up-time 1 --measurement-time 2`
//!
//! Criterion measures `load`, `store` and `find_conflict(i, 9)` at 1 K and 1 M dense order-0
//! entries, single-threaded and with two reader threads plus a writer running beside the
//! measured reader ("contended"). After criterion, a plain timing pass prints a table of ns/op and
//! the ratios against the baselines, and the index's bytes per dense PTE entry.
//! `index` pins the epoch per call ([`Index::load`]); `index-pinned` uses one [`Reader`]
//! (one pin for many lookups, as a caller doing a batch would). Every variant runs the same
//! precomputed pseudo-random index sequence and passes the same thing (`Option<u64>`, the value)
//! to `black_box`, so the comparison with the flat array is like for like.
//! `INDEX_BENCH_TABLE_ONLY=1` skips criterion and prints only the table;
//! `INDEX_BENCH_PROFILE=plain|pinned` only loops 1 M-entry lookups (for `perf record`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use criterion::Criterion;
use daxfs::index::Index;

trait Map: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn load(&self, i: u64) -> Option<u64>;
    fn store(&self, i: u64, v: u64);
    fn find_conflict(&self, i: u64, order: u8) -> Option<u64>;
}

struct Tree(Index);
struct Flat(Vec<AtomicU64>);
struct BTree(RwLock<BTreeMap<u64, u64>>);

impl Map for Tree {
    fn name(&self) -> &'static str {
        "index"
    }
    fn load(&self, i: u64) -> Option<u64> {
        self.0.load(i).map(|e| e.value)
    }
    fn store(&self, i: u64, v: u64) {
        self.0.lock().store(i, 0, v).unwrap();
    }
    fn find_conflict(&self, i: u64, order: u8) -> Option<u64> {
        self.0.find_conflict(i, order).map(|e| e.value)
    }
}

impl Map for Flat {
    fn name(&self) -> &'static str {
        "flat"
    }
    fn load(&self, i: u64) -> Option<u64> {
        match self.0[i as usize].load(Ordering::Acquire) {
            0 => None,
            v => Some(v),
        }
    }
    fn store(&self, i: u64, v: u64) {
        self.0[i as usize].store(v | 1, Ordering::Release);
    }
    fn find_conflict(&self, i: u64, order: u8) -> Option<u64> {
        let s = (i >> order << order) as usize;
        let e = (s + (1 << order)).min(self.0.len());
        self.0[s..e]
            .iter()
            .map(|a| a.load(Ordering::Acquire))
            .find(|&v| v != 0)
    }
}

impl Map for BTree {
    fn name(&self) -> &'static str {
        "rwlock-btreemap"
    }
    fn load(&self, i: u64) -> Option<u64> {
        self.0.read().unwrap().get(&i).copied()
    }
    fn store(&self, i: u64, v: u64) {
        self.0.write().unwrap().insert(i, v);
    }
    fn find_conflict(&self, i: u64, order: u8) -> Option<u64> {
        let s = i >> order << order;
        let g = self.0.read().unwrap();
        g.range(s..=s + ((1 << order) - 1)).next().map(|(_, &v)| v)
    }
}

fn filled(n: u64) -> Vec<Arc<dyn Map>> {
    let tree = Tree(Index::new());
    {
        let mut g = tree.0.lock();
        for i in 0..n {
            g.store(i, 0, i + 1).unwrap();
        }
    }
    let flat = Flat((0..n).map(|i| AtomicU64::new(i + 1)).collect());
    let btree = BTree(RwLock::new((0..n).map(|i| (i, i + 1)).collect()));
    vec![Arc::new(tree), Arc::new(flat), Arc::new(btree)]
}

/// A fixed pseudo-random sequence of indices below `n`.
fn indices(n: u64) -> Vec<u64> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..1 << 16)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        })
        .collect()
}

/// Two reader threads and one writer running beside the measured thread until dropped.
struct Background {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start(map: &Arc<dyn Map>, n: u64) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for t in 0..3u64 {
            let (map, stop) = (map.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let idx = indices(n);
                let mut k = t as usize * 777;
                while !stop.load(Ordering::Relaxed) {
                    let i = idx[k % idx.len()];
                    if t == 0 {
                        map.store(i, i + 2);
                    } else {
                        black_box(map.load(i));
                    }
                    k += 1;
                }
            }));
        }
        Background { stop, threads }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
    }
}

fn size_name(n: u64) -> &'static str {
    if n >= 1 << 20 {
        "1M"
    } else {
        "1K"
    }
}

fn criterion_benches(c: &mut Criterion) {
    for n in [1u64 << 10, 1 << 20] {
        let maps = filled(n);
        let idx = indices(n);
        let sz = size_name(n);
        for contended in [false, true] {
            let mode = if contended { "contended" } else { "single" };
            let mut g = c.benchmark_group(format!("load/{sz}/{mode}"));
            for m in &maps {
                let _bg = contended.then(|| Background::start(m, n));
                let mut k = 0;
                g.bench_function(m.name(), |b| {
                    b.iter(|| {
                        k = (k + 1) & 0xffff;
                        black_box(m.load(idx[k]))
                    })
                });
            }
            if let Some(tree) = maps.first() {
                let _bg = contended.then(|| Background::start(tree, n));
                let t = tree_of(&maps);
                let r = t.reader();
                let mut k = 0;
                g.bench_function("index-pinned", |b| {
                    b.iter(|| {
                        k = (k + 1) & 0xffff;
                        black_box(r.load(idx[k]).map(|e| e.value))
                    })
                });
            }
            g.finish();
        }
        let mut g = c.benchmark_group(format!("store/{sz}/single"));
        for m in &maps {
            let mut k = 0;
            g.bench_function(m.name(), |b| {
                b.iter(|| {
                    k = (k + 1) & 0xffff;
                    m.store(idx[k], idx[k] + 3)
                })
            });
        }
        g.finish();
        let mut g = c.benchmark_group(format!("find_conflict/{sz}/single"));
        for m in &maps {
            let mut k = 0;
            g.bench_function(m.name(), |b| {
                b.iter(|| {
                    k = (k + 1) & 0xffff;
                    black_box(m.find_conflict(idx[k], 9))
                })
            });
        }
        g.finish();
    }
}

/// The radix-tree index inside the first map (for the pinned reader).
fn tree_of(maps: &[Arc<dyn Map>]) -> &Index {
    let p = Arc::as_ptr(&maps[0]) as *const Tree;
    // SAFETY: `filled` puts a `Tree` first; the data pointer of the `Arc<dyn Map>` points to it,
    // and the returned borrow lives no longer than `maps`.
    unsafe { &(*p).0 }
}

/// ns per operation of `f` over the index sequence (plain timing, for the ratio table): the
/// fastest of several rounds, so that preemption by other processes on a shared machine does
/// not dominate.
fn time_ns(idx: &[u64], mut f: impl FnMut(u64)) -> f64 {
    for &i in idx {
        f(i);
    }
    let mut best = f64::MAX;
    for _ in 0..25 {
        let t = Instant::now();
        for &i in idx {
            f(i);
        }
        best = best.min(t.elapsed().as_nanos() as f64 / idx.len() as f64);
    }
    best
}

/// Calls `f` on every index of `idx`, through a `dyn` call per index (the same call overhead for
/// every variant; `inline(never)` so that the compiler cannot devirtualize it).
#[inline(never)]
fn each(idx: &[u64], f: &mut dyn FnMut(u64)) {
    for &i in idx {
        f(i);
    }
}

/// One timed variant of the interleaved table: a whole pass over the index sequence. A pass
/// sets up whatever the variant needs (the pinned reader pins once per pass) and drops it before
/// returning, so no variant runs inside another's epoch pin.
type Pass<'a> = Box<dyn FnMut(&[u64]) + 'a>;

/// As [`time_ns`] for several variants at once: 40 rounds, each timing every variant once
/// (round-robin, each timed pass preceded by an untimed warm-up pass of the same variant), and
/// the fastest round of each variant.
fn time_interleaved(idx: &[u64], fs: &mut [Pass<'_>]) -> Vec<f64> {
    let mut best = vec![f64::MAX; fs.len()];
    for round in 0..41 {
        for (f, b) in fs.iter_mut().zip(best.iter_mut()) {
            // One untimed pass first, so that each variant is timed with its own working set
            // in the caches (not the previous variant's).
            f(idx);
            let t = Instant::now();
            f(idx);
            if round > 0 {
                *b = b.min(t.elapsed().as_nanos() as f64 / idx.len() as f64);
            }
        }
    }
    best
}

/// The single-threaded load variants, timed interleaved: the three maps (per-call
/// `Index::load`, flat, btreemap), the pinned reader, then rows that show the price of the
/// epoch pin alone: `crossbeam_epoch::pin()` with nothing inside, the flat array's load inside a
/// per-call pin (the floor for any lookup that pins per call), and the pin of a private
/// `Collector`'s `LocalHandle` held by the caller (no thread-local lookup).
fn load_rows(maps: &[Arc<dyn Map>], idx: &[u64]) -> Vec<f64> {
    let tree = tree_of(maps);
    let flat = maps[1].clone();
    let collector = crossbeam_epoch::Collector::new();
    let handle = collector.register();
    let mut fs: Vec<Pass<'_>> = maps
        .iter()
        .map(|m| {
            Box::new(move |idx: &[u64]| {
                each(idx, &mut |i| {
                    black_box(m.load(i));
                })
            }) as Pass<'_>
        })
        .collect();
    fs.push(Box::new(|idx: &[u64]| {
        let r = tree.reader();
        each(idx, &mut |i| {
            black_box(r.load(i).map(|e| e.value));
        });
    }));
    fs.push(Box::new(|idx: &[u64]| {
        each(idx, &mut |i| {
            let g = crossbeam_epoch::pin();
            black_box((&g, i));
        })
    }));
    fs.push(Box::new(move |idx: &[u64]| {
        each(idx, &mut |i| {
            let _g = crossbeam_epoch::pin();
            black_box(flat.load(i));
        })
    }));
    fs.push(Box::new(|idx: &[u64]| {
        each(idx, &mut |i| {
            let g = handle.pin();
            black_box((&g, i));
        })
    }));
    assert!(
        !crossbeam_epoch::is_pinned(),
        "the table must not run inside an epoch pin (it would make every pin a cheap nested one)"
    );
    time_interleaved(idx, &mut fs)
}

fn ratio_table() {
    println!();
    println!("| op | size | threads | index ns | index-pinned ns | flat ns | rwlock-btreemap ns | index/flat | pinned/flat | btreemap/index |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut pin_rows = Vec::new();
    for n in [1u64 << 10, 1 << 20] {
        let maps = filled(n);
        let idx = indices(n);
        let sz = size_name(n);
        for contended in [false, true] {
            let (ns, pinned) = if contended {
                let mut ns = Vec::new();
                for m in &maps {
                    let _bg = Background::start(m, n);
                    ns.push(time_ns(&idx, |i| {
                        black_box(m.load(i));
                    }));
                }
                let _bg = Background::start(&maps[0], n);
                let r = tree_of(&maps).reader();
                let pinned = time_ns(&idx, |i| {
                    black_box(r.load(i).map(|e| e.value));
                });
                (ns, pinned)
            } else {
                // Interleaved rounds: each round times every variant once, so that a burst of
                // load on the shared machine hits all of them alike and the ratios hold.
                let ns = load_rows(&maps, &idx);
                pin_rows.push((sz, ns[4], ns[5], ns[1], ns[6]));
                (ns[..3].to_vec(), ns[3])
            };
            let th = if contended {
                "1 + 2 readers + 1 writer"
            } else {
                "1"
            };
            println!(
                "| load | {sz} | {th} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.1} |",
                ns[0],
                pinned,
                ns[1],
                ns[2],
                ns[0] / ns[1],
                pinned / ns[1],
                ns[2] / ns[0]
            );
        }
        let st: Vec<f64> = maps
            .iter()
            .map(|m| time_ns(&idx, |i| m.store(i, i + 5)))
            .collect();
        println!(
            "| store | {sz} | 1 | {:.1} | - | {:.1} | {:.1} | {:.2} | - | {:.1} |",
            st[0],
            st[1],
            st[2],
            st[0] / st[1],
            st[2] / st[0]
        );
        let fc: Vec<f64> = maps
            .iter()
            .map(|m| {
                time_ns(&idx, |i| {
                    black_box(m.find_conflict(i, 9));
                })
            })
            .collect();
        println!(
            "| find_conflict(i, 9) | {sz} | 1 | {:.1} | - | {:.1} | {:.1} | {:.2} | - | {:.1} |",
            fc[0],
            fc[1],
            fc[2],
            fc[0] / fc[1],
            fc[2] / fc[0]
        );
    }
    println!();
    println!("| per-call epoch pin (same interleaved rounds) | size | ns | flat ns |");
    println!("|---|---|---|---|");
    for (sz, pin, flat_pinned, flat, handle_pin) in pin_rows {
        println!("| `crossbeam_epoch::pin()` alone | {sz} | {pin:.1} | - |");
        println!(
            "| private `Collector` + `LocalHandle::pin()` alone | {sz} | {handle_pin:.1} | - |"
        );
        println!("| flat load inside a per-call pin | {sz} | {flat_pinned:.1} | {flat:.1} |");
    }
    let n = 1u64 << 20;
    let t = Index::new();
    {
        let mut g = t.lock();
        for i in 0..n {
            g.store(i, 0, i).unwrap();
        }
    }
    println!();
    println!(
        "bytes per dense PTE entry (1M order-0 entries): {:.2} (index memory_usage {} B, {} nodes; flat array: 8.00)",
        t.memory_usage() as f64 / n as f64,
        t.memory_usage(),
        t.node_count()
    );
    let p = Index::new();
    {
        let mut g = p.lock();
        for k in 0..2048u64 {
            g.store(k << 9, 9, k).unwrap();
        }
    }
    println!(
        "bytes per PMD entry (2048 order-9 entries): {:.1}",
        p.memory_usage() as f64 / 2048.0
    );
}

/// `INDEX_BENCH_PROFILE=plain|pinned`: only loops 1 M-entry lookups for about 5 s (per-call
/// `Index::load` or one pinned `Reader`), for `perf record` on the bench binary.
fn profile_loop(mode: &str) {
    let n = 1u64 << 20;
    let maps = filled(n);
    let idx = indices(n);
    let t = tree_of(&maps);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if mode == "pinned" {
            let r = t.reader();
            for &i in &idx {
                black_box(r.load(i).map(|e| e.value));
            }
        } else {
            // No reader alive here: each `Index::load` pays a full (not nested) pin.
            for &i in &idx {
                black_box(t.load(i).map(|e| e.value));
            }
        }
    }
}

fn main() {
    if let Some(mode) = std::env::var_os("INDEX_BENCH_PROFILE") {
        profile_loop(&mode.to_string_lossy());
        return;
    }
    if std::env::var_os("INDEX_BENCH_TABLE_ONLY").is_some() {
        ratio_table();
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
    ratio_table();
}
