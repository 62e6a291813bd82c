//! The memory-failure page lock (`dax_lock_page` / `dax_unlock_page`, once
//! `dax_lock_mapping_entry`): lock the entry that maps a failed page, found from the page rather
//! than from a fault, so the page may move, the entry be truncated and the inode be freed while
//! the lock path sleeps. Today's kernel sleeps *non-exclusively* here (`wait_entry_unlocked`:
//! this path may never lock the entry, so it must not hold anybody's only wake-up), never
//! touches the mapping after waking before re-reading the page's owner under RCU, and always
//! retries from the top. Six historical bugs live on this path; each is consulted once below.

use super::super::entry::{DaxEntry, DAX_PMD};
use super::super::guard::DaxEntryGuard;
use super::super::history::Bug;
use super::super::trace::TraceEvent;
use super::super::DaxError;
use super::DaxMapping;
use crate::index::IndexGuard;
use crate::sync::atomic::Ordering;

impl DaxMapping {
    /// `dax_lock_page`: locks the entry covering file page `index` for memory failure. With
    /// `block` (the failed region block, as reverse-mapped), the entry must still map that
    /// block at `index`: if the page moved or was truncated meanwhile, there is nothing to lock.
    ///
    /// Context: may sleep (without holding anybody's wake-up). Return: the locked entry
    /// (dropping it is `dax_unlock_page`), `None` when the page is not (or no longer) mapped
    /// here; `Err(Evicted)` if the inode was evicted, also while we slept.
    pub fn dax_lock_page(
        &self,
        index: u64,
        block: Option<u64>,
    ) -> Result<Option<DaxEntryGuard>, DaxError> {
        let mut g = self.lock_live_index()?;
        loop {
            if !self.inner.alive.load(Ordering::SeqCst) {
                return Err(self.evicted());
            }
            let Some(e) = g.load(index) else {
                return Ok(None);
            };
            let seen = DaxEntry::from_raw(e.value);
            if block.is_some_and(|b| !seen.has_block() || seen.block() + (index - e.index) != b) {
                return Ok(None); // the page moved: it is not ours to lock any more
            }
            if !seen.is_locked() {
                let locked = self.dax_lock_entry(&mut g, e)?;
                return Ok(Some(self.guard(e.index, e.order, locked, Some(index))));
            }
            // Bug 25bbe21bf427 ("dax: Avoid losing wakeup in dax_lock_mapping_entry", and the
            // follow-up d8a706414af4 "dax: Use non-exclusive wait in wait_entry_unlocked()"):
            // the lock path waited with `get_unlocked_entry`, i.e. exclusively, like a fault.
            // An unlock wakes one exclusive sleeper; when that was the lock path and the page
            // had moved, it went round its loop without `put_unlocked_entry`, so the wake-up
            // died with it and a fault sleeping on the same entry was never woken. The first
            // fix passed the wake-up on, the second made this wait non-exclusive (an unlock
            // wakes it in addition to the next exclusive sleeper), as today.
            let exclusive = self.bugs().is(Bug::LockLosesWakeup);
            let key = self.waitqueue_key(index, 0, seen);
            self.sleep_on(g, key, exclusive, "(memory-failure page lock)");
            g = match self.after_page_lock_sleep(e, seen)? {
                Retry::Again(g) => g,
                Retry::Stale(g, locked) => {
                    drop(g);
                    return Ok(Some(self.guard(e.index, e.order, locked, Some(index))));
                }
            };
        }
    }

    /// The index lock of a mapping that may be dying under us, the way the kernel reaches the
    /// mapping through `page->mapping`: inside a read-side section (so it cannot be freed
    /// meanwhile) check that the inode is alive, and only then take the lock.
    ///
    /// Return: `Err(Evicted)` without touching the index if the inode is dead.
    fn lock_live_index(&self) -> Result<IndexGuard<'_>, DaxError> {
        let g = if self.rcu_read_lock_alive() {
            self.lock_index()
        } else {
            Err(self.evicted())
        };
        self.rcu_read_unlock();
        g
    }

    /// What the page lock does after it woke up: take the index lock again (with the checks
    /// today's kernel makes first), decide whether the page moved, retry.
    fn after_page_lock_sleep(
        &self,
        e: crate::index::Entry,
        seen: DaxEntry,
    ) -> Result<Retry<'_>, DaxError> {
        // Bug 55e56f06ed71 ("dax: Don't access a freed inode"): once the i_pages lock is
        // dropped for the sleep, nothing keeps the inode alive. The old path woke up inside
        // `get_unlocked_entry`, which takes the mapping's i_pages lock again at once: if the
        // inode was evicted and freed meanwhile, that is a use after free. The fix
        // (`wait_entry_unlocked`) touches nothing of the mapping after waking; the loop starts
        // again from the page's owner. Here: take the index lock without looking at liveness.
        let mut g = if self.bugs().is(Bug::FreedInode) {
            self.lock_index()?
        } else {
            self.lock_live_index()?
        };
        // Bug c93db7bb6ef3 ("dax: Check page->mapping isn't NULL"): after sleeping the old
        // path went on with what it had seen before the sleep; the page may have been
        // truncated meanwhile (the kernel then dereferenced the NULL page->mapping). Here the
        // stale entry is locked and stored back at its old slot: a deleted entry comes back.
        if self.bugs().is(Bug::MappingNotNull) {
            let locked = seen.unlocked().locked();
            g.store(e.index, e.order, locked.raw())?;
            self.trace(|| TraceEvent::Locked {
                index: e.index,
                order: e.order,
                what: format!("{:?} (as seen before sleeping)", seen.unlocked()),
            });
            return Ok(Retry::Stale(g, locked));
        }
        // Bug f52afc93cd01 ("dax: Fix deadlock in dax_lock_mapping_entry()"): when the old
        // path had slept for the entry lock, it went round its loop without dropping the
        // i_pages lock that `get_unlocked_entry` returns with, and the loop takes it first
        // thing: the thread deadlocks against itself.
        if self.bugs().is(Bug::LockRetryHeldLock) {
            self.trace(|| TraceEvent::Note("retries while still holding the index lock".into()));
            let held = g;
            let again = self.lock_index(); // blocks forever: we hold it
            drop(held);
            return Ok(Retry::Again(again?));
        }
        // Today's path holds no wake-up to pass on (its wait is not exclusive); under bug
        // 25bbe21bf427 it may hold one, and drops it here when it retries.
        Ok(Retry::Again(g))
    }

    /// The page-lock unlock (`dax_unlock_page`): stores back the entry that was locked (the
    /// "cookie" `dax_lock_page` returned), unlocked, at its order.
    pub(in crate::dax) fn unlock_page(
        &self,
        start: u64,
        order: u8,
        held: DaxEntry,
        page: u64,
    ) -> Result<(), DaxError> {
        if held.has_block() {
            let page_block = held.block() + (page - start);
            // Bug fda490d39fc0 ("dax: Fix dax_unlock_mapping_entry for PMD pages"): the unlock
            // rebuilt the entry from the page: its pfn, and the PMD flag only if the page was
            // a compound head (`PageHead`), which device-DAX PMD pages never are. A 2 MiB
            // entry was stored back as a PTE value in its PMD slot.
            if self.bugs().is(Bug::UnlockPmdPages) {
                let rebuilt = DaxEntry::new(page_block, 0).ok_or(DaxError::BadBlock(page_block))?;
                return self.unlock_at(start, Some((start, order)), rebuilt, false);
            }
            // Bug 27359fd6e5f3 ("dax: Fix unlock mismatch with updated API"): after the first
            // fix the PMD flag came from the entry but the pfn still from the page, which for
            // memory failure is any sub-page, so a PMD entry was stored back with a tail
            // page's (misaligned) pfn. The fix returns the locked entry from `dax_lock_page`
            // as a cookie and unlocks with exactly it.
            if self.bugs().is(Bug::UnlockCookie) {
                let rebuilt = DaxEntry::new(page_block, held.flags() & DAX_PMD)
                    .ok_or(DaxError::BadBlock(page_block))?;
                return self.unlock_at(start, Some((start, order)), rebuilt, false);
            }
        }
        self.unlock_at(start, Some((start, order)), held.unlocked(), true)
    }
}

/// The page lock's next step after a sleep.
enum Retry<'a> {
    /// Look again, with the index lock held.
    Again(IndexGuard<'a>),
    /// Bug c93db7bb6ef3: the stale entry was locked.
    Stale(IndexGuard<'a>, DaxEntry),
}
