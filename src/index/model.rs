//! The model of the index API: a `BTreeMap` of ranges behind one mutex.
//!
//! Slow but obviously right; the property tests and benchmarks compare the real (radix-tree)
//! [`Index`](super::Index) against it. Readers here *do* take the lock. Not part of the supported
//! API (hidden from the docs); keep its behaviour identical to the contract in `mod.rs`.

use std::collections::BTreeMap;

use crate::sync::{Mutex, MutexGuard};

use super::{align_down, Entry, IndexError, Mark, MAX_ORDER, MAX_VALUE};

#[derive(Default)]
struct Inner {
    /// start index -> (order, value, marks bitmask)
    map: BTreeMap<u64, (u8, u64, u8)>,
}

impl Inner {
    fn covering(&self, i: u64) -> Option<Entry> {
        let (&start, &(order, value, _)) = self.map.range(..=i).next_back()?;
        let e = Entry {
            index: start,
            order,
            value,
        };
        e.contains(i).then_some(e)
    }
    fn first_in(&self, start: u64, end_incl: u64) -> Option<Entry> {
        if let Some(e) = self.covering(start) {
            return Some(e);
        }
        let (&s, &(order, value, _)) = self.map.range(start..=end_incl).next()?;
        Some(Entry {
            index: s,
            order,
            value,
        })
    }
}

/// A multi-order index (reference model).
#[derive(Default)]
pub struct ModelIndex {
    inner: Mutex<Inner>,
}

/// Writer access to a [`ModelIndex`]; holding it serializes against other writers.
pub struct ModelIndexGuard<'a> {
    inner: MutexGuard<'a, Inner>,
}

fn range_of(i: u64, order: u8) -> (u64, u64) {
    let start = align_down(i, order);
    (start, start + ((1u64 << order) - 1))
}

impl ModelIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }
    /// The entry covering `i`, if any.
    pub fn load(&self, i: u64) -> Option<Entry> {
        self.inner.lock().covering(i)
    }
    /// The first entry present in the order-`order` range around `i` (any size), if any.
    pub fn find_conflict(&self, i: u64, order: u8) -> Option<Entry> {
        let (s, e) = range_of(i, order);
        self.inner.lock().first_in(s, e)
    }
    /// Whether the entry covering `i` carries `mark`.
    pub fn get_mark(&self, i: u64, mark: Mark) -> bool {
        let g = self.inner.lock();
        match g.covering(i) {
            Some(e) => g.map[&e.index].2 & (1 << mark as u8) != 0,
            None => false,
        }
    }
    /// The first entry at or after `start` (including one covering `start`) with `mark`.
    pub fn find_marked(&self, start: u64, mark: Mark) -> Option<Entry> {
        let g = self.inner.lock();
        let from = g.covering(start).map_or(start, |e| e.index);
        g.map
            .range(from..)
            .find(|(_, v)| v.2 & (1 << mark as u8) != 0)
            .map(|(&index, &(order, value, _))| Entry {
                index,
                order,
                value,
            })
    }
    /// All entries intersecting `[start, end)`, in index order.
    pub fn range(&self, start: u64, end: u64) -> Vec<Entry> {
        let g = self.inner.lock();
        let from = g.covering(start).map_or(start, |e| e.index);
        g.map
            .range(from..end.max(from))
            .map(|(&index, &(order, value, _))| Entry {
                index,
                order,
                value,
            })
            .collect()
    }
    /// Number of entries (of any order).
    pub fn len(&self) -> usize {
        self.inner.lock().map.len()
    }
    /// Whether the index holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Approximate bytes of memory in use.
    pub fn memory_usage(&self) -> usize {
        self.len() * 48
    }
    /// Takes the writer lock.
    pub fn lock(&self) -> ModelIndexGuard<'_> {
        ModelIndexGuard {
            inner: self.inner.lock(),
        }
    }
}

impl ModelIndexGuard<'_> {
    /// As [`ModelIndex::load`], under the writer lock.
    pub fn load(&self, i: u64) -> Option<Entry> {
        self.inner.covering(i)
    }
    /// As [`ModelIndex::find_conflict`], under the writer lock.
    pub fn find_conflict(&self, i: u64, order: u8) -> Option<Entry> {
        let (s, e) = range_of(i, order);
        self.inner.first_in(s, e)
    }
    /// Replaces everything intersecting the order-`order` range around `i` with one entry.
    /// Returns the entries removed.
    pub fn store(&mut self, i: u64, order: u8, value: u64) -> Result<Vec<Entry>, IndexError> {
        if order > MAX_ORDER {
            return Err(IndexError::OrderTooLarge(order));
        }
        if value > MAX_VALUE {
            return Err(IndexError::ValueTooLarge(value));
        }
        let (s, e) = range_of(i, order);
        let mut removed = Vec::new();
        while let Some(old) = self.inner.first_in(s, e) {
            self.inner.map.remove(&old.index);
            removed.push(old);
        }
        self.inner.map.insert(s, (order, value, 0));
        Ok(removed)
    }
    /// Replaces the value of the entry covering `i`, keeping its order and marks.
    pub fn update(&mut self, i: u64, value: u64) -> Result<Entry, IndexError> {
        if value > MAX_VALUE {
            return Err(IndexError::ValueTooLarge(value));
        }
        let e = self.inner.covering(i).ok_or(IndexError::NotFound)?;
        self.inner.map.get_mut(&e.index).unwrap().1 = value;
        Ok(Entry { value, ..e })
    }
    /// Removes the entry covering `i`.
    pub fn erase(&mut self, i: u64) -> Option<Entry> {
        let e = self.inner.covering(i)?;
        self.inner.map.remove(&e.index);
        Some(e)
    }
    /// Splits the entry covering `i` into `2^(order - new_order)` entries of `new_order`, each
    /// with the same value and marks.
    pub fn split(&mut self, i: u64, new_order: u8) -> Result<(), IndexError> {
        let e = self.inner.covering(i).ok_or(IndexError::NotFound)?;
        if new_order >= e.order {
            return Err(IndexError::BadSplitOrder);
        }
        let (_, v, m) = self.inner.map.remove(&e.index).unwrap();
        let step = 1u64 << new_order;
        for k in 0..1u64 << (e.order - new_order) {
            self.inner.map.insert(e.index + k * step, (new_order, v, m));
        }
        Ok(())
    }
    /// Sets `mark` on the entry covering `i`.
    pub fn set_mark(&mut self, i: u64, mark: Mark) -> Result<(), IndexError> {
        let e = self.inner.covering(i).ok_or(IndexError::NotFound)?;
        self.inner.map.get_mut(&e.index).unwrap().2 |= 1 << mark as u8;
        Ok(())
    }
    /// Clears `mark` on the entry covering `i`.
    pub fn clear_mark(&mut self, i: u64, mark: Mark) -> Result<(), IndexError> {
        let e = self.inner.covering(i).ok_or(IndexError::NotFound)?;
        self.inner.map.get_mut(&e.index).unwrap().2 &= !(1 << mark as u8);
        Ok(())
    }
}
