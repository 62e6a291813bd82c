//! Hashed wait queues for DAX entry locks (the kernel's `wait_table` / `dax_entry_waitqueue`).
//!
//! A fixed table of buckets, each a `Mutex` over the list of its sleepers and a `Condvar`. A key
//! is `(inode id, aligned first index of the entry)`; many keys share a bucket. As the kernel's
//! `wake_exceptional_entry_func` filters by key, a wake-up only counts sleepers of its key; the
//! others in the bucket go back to sleep. A woken sleeper still re-checks what it waits for (keys
//! of different mappings may be equal, e.g. a reused inode id).
//!
//! Sleepers are exclusive or not, and wake-ups wake the next or all, as the kernel's wait queues
//! (`prepare_to_wait_exclusive`, `__wake_up` with `nr_exclusive` 1 or 0):
//! - [`WakeMode::All`] wakes every sleeper of the key;
//! - [`WakeMode::Next`] wakes every non-exclusive sleeper of the key and the first (oldest)
//!   exclusive one. An exclusive sleeper so woken holds the key's only wake-up: if it does not
//!   take the entry lock (whose unlock wakes the next) it must pass the wake-up on
//!   (`put_unlocked_entry`), or the next exclusive sleeper sleeps forever.
//!
//! A woken sleeper leaves the queue at once (`autoremove_wake_function`): a later wake-up goes to
//! the sleepers still waiting.
//!
//! Rules (no lost wake-up): a sleeper registers in its bucket *while it still holds the index
//! writer lock* under which it saw the entry locked ([`WaitTable::prepare`]), and keeps the
//! bucket mutex until it waits ([`Sleeper::sleep`]). A waker changes the entry under the index
//! writer lock and then calls [`WaitTable::wake`], which takes the bucket mutex. Lock order:
//! index writer lock, then bucket mutex; never the reverse.

use super::trace;
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

/// Whom a wake-up wakes (the kernel's `enum dax_wake_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeMode {
    /// Every non-exclusive sleeper of the key and the oldest exclusive one (`WAKE_NEXT`).
    Next,
    /// Every sleeper of the key (`WAKE_ALL`).
    All,
}

struct Waiter {
    id: u64,
    key: WaitKey,
    exclusive: bool,
    woken: bool,
    /// The sleeping thread's trace label ([`trace::thread_label`]); 0 when untraced.
    thread: u32,
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
    /// Marks the waiting sleepers matching `pred` woken (for [`WakeMode::Next`]: the
    /// non-exclusive ones and the oldest exclusive one) and wakes the bucket if there were any.
    /// `woke` is called with the trace label of each sleeper woken.
    fn wake_matching(
        &self,
        mode: WakeMode,
        pred: impl Fn(&WaitKey) -> bool,
        mut woke: impl FnMut(u32),
    ) -> usize {
        let mut st = self.state.lock();
        let mut n = 0;
        let mut exclusive_left = mode == WakeMode::Next;
        // Waiters are in arrival order (ids increase), so the first exclusive one is the oldest.
        for w in st.waiters.iter_mut().filter(|w| !w.woken && pred(&w.key)) {
            if w.exclusive {
                if mode == WakeMode::Next && !exclusive_left {
                    continue;
                }
                exclusive_left = false;
            }
            w.woken = true;
            woke(w.thread);
            n += 1;
        }
        drop(st);
        if n > 0 {
            self.cv.notify_all();
        }
        n
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

    /// Registers a sleeper for `key` (`prepare_to_wait_exclusive` when `exclusive`, else
    /// `prepare_to_wait`).
    ///
    /// Context: call with the index writer lock held (it is released between this and
    /// [`Sleeper::sleep`]); takes the bucket mutex and keeps it until `sleep`.
    pub fn prepare(&self, key: WaitKey, exclusive: bool) -> Sleeper<'_> {
        let bucket = &self.buckets[self.bucket_of(key)];
        let mut guard = bucket.state.lock();
        let id = guard.next_id;
        guard.next_id += 1;
        guard.waiters.push(Waiter {
            id,
            key,
            exclusive,
            woken: false,
            thread: trace::thread_label(),
        });
        Sleeper { bucket, guard, id }
    }

    /// Wakes the sleepers of `key` that `mode` names (`dax_wake_entry`); `woke` gets the trace
    /// label of each. Return: how many were woken.
    ///
    /// Context: takes the bucket mutex; may be called with or without the index writer lock.
    pub fn wake_traced(&self, key: WaitKey, mode: WakeMode, woke: impl FnMut(u32)) -> usize {
        self.buckets[self.bucket_of(key)].wake_matching(mode, |k| *k == key, woke)
    }

    /// [`WaitTable::wake_traced`] without the labels.
    pub fn wake(&self, key: WaitKey, mode: WakeMode) -> usize {
        self.wake_traced(key, mode, |_| {})
    }

    /// Wakes every sleeper on any entry of inode `inode` (eviction).
    pub fn wake_inode(&self, inode: u64) {
        for bucket in self.buckets.iter() {
            bucket.wake_matching(WakeMode::All, |k| k.inode == inode, |_| {});
        }
    }
}

impl Sleeper<'_> {
    /// Sleeps until a wake-up of its key. The caller must still re-check what it waits for.
    ///
    /// Context: the index writer lock must have been released; may sleep.
    pub fn sleep(mut self) {
        loop {
            let st = &*self.guard;
            let woken = st
                .waiters
                .iter()
                .find(|w| w.id == self.id)
                .expect("registered sleeper")
                .woken;
            if woken {
                return; // Drop leaves the queue.
            }
            self.bucket.cv.wait(&mut self.guard);
        }
    }
}

impl Drop for Sleeper<'_> {
    /// Leaves the queue (`finish_wait`), keeping the others in arrival order.
    fn drop(&mut self) {
        let st = &mut *self.guard;
        if let Some(pos) = st.waiters.iter().position(|w| w.id == self.id) {
            st.waiters.remove(pos);
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
            let s = t2.prepare(key, true);
            tx.send(()).unwrap();
            s.sleep();
        });
        rx.recv().unwrap();
        // The sleeper held the bucket mutex when it sent; our wake takes it, so it is waiting.
        // A wake-up of another key of the same bucket does not end its sleep.
        assert_eq!(t.wake(other, WakeMode::All), 0);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!h.is_finished(), "woken by another key");
        assert_eq!(t.wake(key, WakeMode::Next), 1);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            h.join().unwrap();
            done_tx.send(()).unwrap();
        });
        done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("sleeper was not woken");
    }

    #[test]
    fn wake_next_wakes_one_exclusive_and_every_shared_sleeper() {
        let t = WaitTable::new(1);
        let key = WaitKey { inode: 1, index: 0 };
        // Register without sleeping (a Sleeper holds the bucket lock until it sleeps).
        for exclusive in [true, false, true] {
            let b = &t.buckets[t.bucket_of(key)];
            let mut st = b.state.lock();
            let id = st.next_id;
            st.next_id += 1;
            st.waiters.push(Waiter {
                id,
                key,
                exclusive,
                woken: false,
                thread: 0,
            });
        }
        assert_eq!(
            t.wake(key, WakeMode::Next),
            2,
            "the shared one and the first exclusive"
        );
        assert_eq!(t.wake(key, WakeMode::Next), 1, "the second exclusive");
        assert_eq!(t.wake(key, WakeMode::All), 0, "all woken already");
    }
}
