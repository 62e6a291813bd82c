//! Layouts and pins: user mappings of the file (`mapping_mapped`), the busy-page scan
//! (`dax_layout_busy_page_range`) and break-layouts (wait until no page of a range is pinned,
//! as `xfs_break_dax_layouts` / `fuse_dax_break_layouts` do before truncate, punch hole or a
//! block move). A pinned page is one `get_user_pages` handed to a device for DMA: its blocks must
//! not be freed until it is unpinned, whether or not the file is still mapped.
//!
//! The scan walks the range with a cursor; when it meets a locked entry it sleeps until the
//! entry is unlocked and then looks at the *same index* again (`wait_entry_unlocked_exclusive`
//! with `xas_reset`), so no entry is skipped. Three historical bugs live here.

use super::super::entry::DaxEntry;
use super::super::history::Bug;
use super::super::trace::TraceEvent;
use super::super::wait::WakeMode;
use super::super::DaxError;
use super::DaxMapping;
use crate::sync::atomic::Ordering;

impl DaxMapping {
    /// A process maps the file (`mmap`): the busy-page scan must unmap ranges first.
    pub fn dax_mmap(&self) {
        self.inner.mmaps.fetch_add(1, Ordering::SeqCst);
    }

    /// A process unmaps the file.
    pub fn dax_munmap(&self) {
        let _ = self
            .inner
            .mmaps
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Whether some process maps the file (`mapping_mapped`).
    pub fn is_mapped(&self) -> bool {
        self.inner.mmaps.load(Ordering::SeqCst) > 0
    }

    /// `dax_layout_busy_page_range`: unmaps `[first, end)` from user mappings (if any), then
    /// finds a pinned page among the blocks of the entries in the range, waiting for locked
    /// entries. Without page metadata nothing is ever pinned.
    ///
    /// Context: may sleep. Return: the region block of the first pinned page found, if any.
    pub fn dax_layout_busy_page_range(
        &self,
        first: u64,
        end: u64,
    ) -> Result<Option<u64>, DaxError> {
        let Some(pages) = self.inner.pages.clone() else {
            return Ok(None);
        };
        // Bug cee91fa13a8e ("fs/dax: return unmapped busy pages from
        // dax_layout_busy_page_range()"): the scan began with "if the file is not mapped,
        // return NULL", but a page unmapped from user space may still be pinned for DMA, so
        // truncate freed blocks under DMA. The fix only skips the unmapping.
        if !self.is_mapped() {
            if self.bugs().is(Bug::ScanUnmappedBusy) {
                self.trace(|| TraceEvent::Note("scan: file not mapped, no busy page".into()));
                return Ok(None);
            }
        } else if let Some(unmap) = &self.inner.unmap {
            unmap(first, end - first);
        }
        let mut cursor = first;
        let mut slept_for = None;
        let mut g = self.lock_index()?;
        loop {
            if !self.inner.alive.load(Ordering::SeqCst) {
                return Err(self.evicted());
            }
            let Some(e) = self.inner.index.range(cursor, end).into_iter().next() else {
                return Ok(None);
            };
            let seen = DaxEntry::from_raw(e.value);
            let after = e.index + (1u64 << e.order);
            if seen.is_locked() {
                let key = self.waitqueue_key(e.index, e.order, seen);
                self.sleep_on(g, key, true, "(busy-page scan)");
                slept_for = Some(e.index);
                g = self.lock_index()?;
                // Bug 6be3e21d25ca ("fs/dax: don't skip locked entries when scanning
                // entries"): inside the `xas_for_each` walk the scan waited with
                // `get_unlocked_entry`, whose `xas_find_conflict` goes on from the walk's
                // position and returns the *next* present entry: the locked one was never
                // checked for pins, and its blocks could be freed under DMA.
                //
                // Bug dd59137bfe70 ('fs/dax: Fix "don't skip locked entries when scanning
                // entries"'): the dedicated wait of that fix called `xas_pause` before
                // sleeping, which moves the cursor past the current entry, so the `xas_load`
                // after waking looked at the next index: the entry was skipped again. The fix
                // uses `xas_reset`, which reloads the same index.
                if self.bugs().is(Bug::ScanSkipsLocked) || self.bugs().is(Bug::ScanPauseSkips) {
                    self.trace(|| {
                        TraceEvent::Note(format!("scan: resumes after entry {} ({after})", e.index))
                    });
                    cursor = after;
                }
                continue;
            }
            let busy = seen
                .has_block()
                .then(|| (0..seen.nr_pages()).map(|i| seen.block() + i))
                .into_iter()
                .flatten()
                .find(|b| pages.pins(*b) > 0);
            drop(g);
            if slept_for.take() == Some(e.index) {
                // We hold the wake-up of the unlock we slept for and did not lock the entry.
                self.dax_wake_entry(e.index, WakeMode::Next);
            }
            if let Some(b) = busy {
                self.trace(|| {
                    TraceEvent::Note(format!("scan: block {b} of entry {} is busy", e.index))
                });
                return Ok(Some(b));
            }
            cursor = after;
            g = self.lock_index()?;
        }
    }

    /// Break layouts: waits until no page of `[first, end)` is pinned (scan, wait for the busy
    /// page to be unpinned, scan again). A truncate or block move may proceed after it.
    ///
    /// Context: may sleep. Return: `Err(Evicted)`.
    pub fn dax_break_layouts(&self, first: u64, end: u64) -> Result<(), DaxError> {
        while let Some(b) = self.dax_layout_busy_page_range(first, end)? {
            if let Some(p) = &self.inner.pages {
                p.wait_idle(b);
            }
        }
        Ok(())
    }
}
