//! Shared helpers of the DAX entry protocol tests (`dax_protocol`, `dax_seed`): mappings with
//! fresh inode numbers, populating an entry through the protocol, waiting for sleepers.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use daxfs::dax::{DaxMapping, DaxOptions};

/// A mapping of its own inode number (so tests never share wait-queue keys), with `opts`.
pub fn mapping_with(opts: DaxOptions) -> DaxMapping {
    static NEXT: AtomicU64 = AtomicU64::new(1000);
    DaxMapping::new(NEXT.fetch_add(1, Ordering::Relaxed), 1, opts)
}

/// Stores a mapped entry of `order` at `index` through the protocol and unlocks it.
pub fn populate(m: &DaxMapping, index: u64, order: u8, block: u64) {
    let mut g = m.grab_mapping_entry(index, order).unwrap();
    assert_eq!(g.order(), order, "setup: got {g:?}");
    g.insert(block, false).unwrap();
    g.unlock().unwrap();
}

/// Waits until `n` threads sleep on the mapping's entries (fails after 10 s).
pub fn wait_sleepers(m: &DaxMapping, n: usize) {
    let t = Instant::now();
    while m.sleepers() < n {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no thread went to sleep"
        );
        thread::sleep(Duration::from_millis(1));
    }
}
