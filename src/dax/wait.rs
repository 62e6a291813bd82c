//! Hashed wait queues for DAX entry locks (the kernel's `wait_table` / `dax_entry_waitqueue`).
//!
//! A fixed table of buckets, each a `Mutex` over the list of its sleepers and a `Condvar`. A key
//! is `(inode id, aligned first index of the entry)`; many keys share a bucket. As the kernel's
//! `wake_exceptional_entry_func` filters by key, a wake-up of a key marks every sleeper of that
//! key woken (wake-all) and the others in the bucket go back to sleep; a woken sleeper still
//! re-checks what it waits for (keys of different mappings may be equal, e.g. a reused inode id).
//!
//! Rules (no lost wake-up): a sleeper registers in its bucket *while it still holds the index
//! writer lock* under which it saw the entry locked ([`WaitTable::prepare`]), and keeps the
//! bucket mutex until it waits ([`Sleeper::sleep`]). A waker changes the entry under the index
//! writer lock and then calls [`WaitTable::wake`], which takes the bucket mutex. Lock order:
//! index writer lock, then bucket mutex; never the reverse.

use crate::sync::{Condvar, Mutex, MutexGuard};

/// Number of buckets of the process-wide table (the kernel uses 4096 for all mappings).
pub const WAIT_TABLE_BUCKETS: usize = 256;

/// What a sleeper waits for: an entry of one inode, by the entry's aligned first index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WaitKey {
    /// The inode's id.
    pub inode: u64,
    /// The aligned first index of the entry (a PMD entry's sub-pages all share one key).
    pub index: u64,
}

struct Waiter {
    id: u64,
    key: WaitKey,
    woken: bool,
}

#[derive(Default)]
struct BucketState {
    waiters: Vec<Waiter>,
    next_id: u64,
}

#[derive(Default)]
struct Bucket {
    state: Mutex<BucketState>,
    cv: Condvar,
}

impl Bucket {
    /// Marks the sleepers matching `pred` woken and wakes the bucket if there were any.
    fn wake_matching(&self, pred: impl Fn(&WaitKey) -> bool) {
        let mut st = self.state.lock();
        let mut any = false;
        for w in st.waiters.iter_mut().filter(|w| pred(&w.key)) {
            w.woken = true;
            any = true;
        }
        drop(st);
        if any {
            self.cv.notify_all();
        }
    }
}

/// A fixed hashed table of wait queues.
pub struct WaitTable {
    buckets: Box<[Bucket]>,
}

/// A registered sleeper: holds its bucket's mutex until [`Sleeper::sleep`].
pub struct Sleeper<'a> {
    bucket: &'a Bucket,
    guard: MutexGuard<'a, BucketState>,
    id: u64,
}

impl WaitTable {
    /// A table of `buckets` queues (at least one; rounded up to a power of two).
    pub fn new(buckets: usize) -> WaitTable {
        let n = buckets.max(1).next_power_of_two();
        WaitTable {
            buckets: (0..n).map(|_| Bucket::default()).collect(),
        }
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// The bucket a key hashes to (multiplicative hash of `inode ^ index`, as `hash_long`).
    pub fn bucket_of(&self, key: WaitKey) -> usize {
        const GOLDEN_RATIO_64: u64 = 0x61c8_8646_80b5_83eb;
        let h = (key.inode.rotate_left(32) ^ key.index).wrapping_mul(GOLDEN_RATIO_64);
        let bits = self.buckets.len().trailing_zeros();
        if bits == 0 {
            0
        } else {
            (h >> (64 - bits)) as usize
        }
    }

    /// Registers a sleeper for `key` (`prepare_to_wait`).
    ///
    /// Context: call with the index writer lock held (it is released between this and
    /// [`Sleeper::sleep`]); takes the bucket mutex and keeps it until `sleep`.
    pub fn prepare(&self, key: WaitKey) -> Sleeper<'_> {
        let bucket = &self.buckets[self.bucket_of(key)];
        let mut guard = bucket.state.lock();
        let id = guard.next_id;
        guard.next_id += 1;
        guard.waiters.push(Waiter {
            id,
            key,
            woken: false,
        });
        Sleeper { bucket, guard, id }
    }

    /// Wakes every sleeper of `key` (`dax_wake_entry`, wake-all).
    ///
    /// Context: takes the bucket mutex; may be called with or without the index writer lock.
    pub fn wake(&self, key: WaitKey) {
        self.buckets[self.bucket_of(key)].wake_matching(|k| *k == key);
    }

    /// Wakes every sleeper on any entry of inode `inode` (eviction).
    pub fn wake_inode(&self, inode: u64) {
        for bucket in self.buckets.iter() {
            bucket.wake_matching(|k| k.inode == inode);
        }
    }
}

impl Sleeper<'_> {
    /// Sleeps until a wake-up of its key. The caller must still re-check what it waits for.
    ///
    /// Context: the index writer lock must have been released; may sleep.
    pub fn sleep(mut self) {
        loop {
            let st = &mut *self.guard;
            let pos = st
                .waiters
                .iter()
                .position(|w| w.id == self.id)
                .expect("registered sleeper");
            if st.waiters[pos].woken {
                st.waiters.swap_remove(pos);
                return;
            }
            self.bucket.cv.wait(&mut self.guard);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn pmd_subpages_share_a_key_and_buckets_spread() {
        let t = WaitTable::new(256);
        assert_eq!(t.buckets(), 256);
        let used: std::collections::HashSet<usize> = (0..64u64)
            .map(|i| {
                t.bucket_of(WaitKey {
                    inode: 7,
                    index: i * 512,
                })
            })
            .collect();
        assert!(
            used.len() > 32,
            "poor spread: {} buckets for 64 keys",
            used.len()
        );
        assert_eq!(WaitTable::new(3).buckets(), 4);
    }

    #[test]
    fn wake_reaches_a_sleeper() {
        let t = Arc::new(WaitTable::new(1));
        let key = WaitKey { inode: 1, index: 0 };
        let other = WaitKey {
            inode: 1,
            index: 512,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let t2 = t.clone();
        let h = std::thread::spawn(move || {
            let s = t2.prepare(key);
            tx.send(()).unwrap();
            s.sleep();
        });
        rx.recv().unwrap();
        // The sleeper held the bucket mutex when it sent; our wake takes it, so it is waiting.
        // A wake-up of another key of the same bucket does not end its sleep.
        t.wake(other);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!h.is_finished(), "woken by another key");
        t.wake(key);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            h.join().unwrap();
            done_tx.send(()).unwrap();
        });
        done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("sleeper was not woken");
    }
}
