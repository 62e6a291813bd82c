//! Per-page metadata of DAX pages, as the kernel keeps it in `struct page` for fsdax: the page's
//! owner (`page->mapping` / `page->index`, set by `dax_associate_entry` and cleared by
//! `dax_disassociate_entry`) and its pins (the page reference count that `get_user_pages` /
//! DMA raise; an idle fsdax page has none). One [`DaxPages`] serves a whole region and is shared
//! by its mappings; a mapping without one keeps no page metadata (production daxfs keeps its
//! reverse map in `fs`).
//!
//! Rules: a block's owner is set while an entry mapping it is in its mapping's index, and only
//! then; pins may outlive the entry (DMA does not care about truncate), which is why truncate
//! must wait for them (`dax_layout_busy_page_range` + [`DaxPages::wait_idle`], the kernel's
//! break-layouts). Dropping the last pin wakes the waiters of that block (the kernel's
//! `wake_up_var(&page->_refcount)` in the fsdax page-free path).
//!
//! Context: one mutex (a leaf: never held while calling out) and one condvar for idle waits.

use std::collections::HashMap;

use super::history::{Bug, Bugs};
use super::trace::{thread_label, DaxTracer, TraceEvent};
use crate::sync::{Condvar, Mutex};
use std::sync::Arc;

/// Who a page belongs to (`page->mapping`, `page->index`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageOwner {
    /// The owning inode.
    pub inode: u64,
    /// The owning inode's generation (a reused inode number is another owner).
    pub generation: u64,
    /// The file page index the block backs.
    pub index: u64,
}

#[derive(Clone, Copy, Default)]
struct PageMeta {
    owner: Option<PageOwner>,
    pins: u32,
}

/// The page metadata of a region's blocks.
pub struct DaxPages {
    pages: Mutex<HashMap<u64, PageMeta>>,
    idle: Condvar,
    /// Threads inside [`DaxPages::wait_idle`].
    waiters: crate::sync::atomic::AtomicUsize,
    bugs: Bugs,
    tracer: Option<Arc<dyn DaxTracer>>,
}

impl DaxPages {
    /// Empty metadata; `bugs` selects historical semantics of the pin path.
    pub fn new(bugs: Bugs, tracer: Option<Arc<dyn DaxTracer>>) -> DaxPages {
        DaxPages {
            pages: Mutex::new(HashMap::new()),
            idle: Condvar::new(),
            waiters: crate::sync::atomic::AtomicUsize::new(0),
            bugs,
            tracer,
        }
    }

    fn note(&self, s: impl FnOnce() -> String) {
        if let Some(t) = &self.tracer {
            t.event(thread_label(), TraceEvent::Note(s()));
        }
    }

    /// `dax_associate_entry`: blocks `[block, +n)` back pages `[index, +n)` of `owner`'s inode.
    pub fn associate(&self, block: u64, n: u64, inode: u64, generation: u64, index: u64) {
        let mut p = self.pages.lock();
        for i in 0..n {
            p.entry(block + i).or_default().owner = Some(PageOwner {
                inode,
                generation,
                index: index + i,
            });
        }
    }

    /// `dax_disassociate_entry`: blocks `[block, +n)` belong to no file page any more.
    pub fn disassociate(&self, block: u64, n: u64) {
        let mut p = self.pages.lock();
        for b in block..block + n {
            if let Some(m) = p.get_mut(&b) {
                m.owner = None;
                if m.pins == 0 {
                    p.remove(&b);
                }
            }
        }
    }

    /// The owner of `block` (`page->mapping`, `page->index`), if any.
    pub fn owner(&self, block: u64) -> Option<PageOwner> {
        self.pages.lock().get(&block).and_then(|m| m.owner)
    }

    /// Pins `block` `refs` times (`get_user_pages` / `pin_user_pages` for DMA).
    pub fn pin(&self, block: u64, refs: u32) {
        let now = {
            let mut p = self.pages.lock();
            let m = p.entry(block).or_default();
            m.pins += refs;
            m.pins
        };
        self.note(|| format!("pins block {block} x{refs} (now {now})"));
    }

    /// Number of pins on `block`.
    pub fn pins(&self, block: u64) -> u32 {
        self.pages.lock().get(&block).map_or(0, |m| m.pins)
    }

    /// Drops `refs` pins of `block` (`unpin_user_pages`); the last one wakes the threads waiting
    /// for the block to become idle ([`DaxPages::wait_idle`]).
    ///
    /// Return: `false` (nothing changed) if the block has fewer than `refs` pins.
    pub fn unpin(&self, block: u64, refs: u32) -> bool {
        let mut p = self.pages.lock();
        let Some(m) = p.get_mut(&block).filter(|m| m.pins >= refs) else {
            return false;
        };
        m.pins -= refs;
        let now = m.pins;
        if now == 0 && m.owner.is_none() {
            p.remove(&block);
        }
        drop(p);
        // Bug f4f451a16dd1 ("mm: fix missing wake-up event for FSDAX pages"): dropping pins
        // went through the folio reference helpers; putting one reference reached the fsdax
        // page-free hook that wakes `wake_up_var(&page->_refcount)`, but putting several at
        // once (`folio_put_refs`, as `unpin_user_pages` did for a batch) bypassed it, so a
        // break-layouts waiter was never told the page had gone idle. The fix made the GUP
        // unpin path call the devmap-managed put, which wakes for any number of references.
        let wakes = now == 0 && !(self.bugs.is(Bug::UnpinNoWakeup) && refs > 1);
        if wakes {
            self.idle.notify_all();
        }
        self.note(|| {
            format!(
                "unpins block {block} x{refs} (now {now}){}",
                match (now, wakes) {
                    (0, true) => ": idle, wakes the break-layouts waiters",
                    (0, false) => ": idle, but NO wake-up (several refs at once)",
                    _ => "",
                }
            )
        });
        true
    }

    /// Waits until `block` has no pins (the kernel's `___wait_var_event` on `_refcount` in
    /// `xfs_break_dax_layouts` / `fuse_dax_break_layouts`).
    ///
    /// Context: may sleep; takes the metadata mutex (hold no entry lock of the block's entry).
    pub fn wait_idle(&self, block: u64) {
        use crate::sync::atomic::Ordering::SeqCst;
        self.waiters.fetch_add(1, SeqCst);
        self.wait_idle_inner(block);
        self.waiters.fetch_sub(1, SeqCst);
    }

    /// Number of threads waiting in [`DaxPages::wait_idle`].
    pub fn idle_waiters(&self) -> usize {
        self.waiters.load(crate::sync::atomic::Ordering::SeqCst)
    }

    fn wait_idle_inner(&self, block: u64) {
        let mut p = self.pages.lock();
        let mut logged = false;
        while p.get(&block).is_some_and(|m| m.pins > 0) {
            if !logged {
                logged = true;
                drop(p);
                self.note(|| format!("waits for block {block} to be unpinned"));
                p = self.pages.lock();
                continue;
            }
            self.idle.wait(&mut p);
        }
        drop(p);
        if logged {
            self.note(|| format!("block {block} is idle"));
        }
    }
}

impl std::fmt::Debug for DaxPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaxPages")
            .field("pages", &self.pages.lock().len())
            .finish()
    }
}
