//! Synchronization primitives, swappable for loom's under `cfg(loom)`.
//!
//! Code that must be model-checked (the index's writer lock, the DAX wait queues) takes its
//! `Mutex`, `Condvar`, atomics and `Arc` from here. Normally these are parking_lot's and std's;
//! built with `RUSTFLAGS="--cfg loom"`, they are loom's, so the same code runs under the model
//! checker (as crossbeam does with `cfg(crossbeam_loom)`). The API is parking_lot's shape:
//! `lock()` returns the guard directly and `Condvar::wait` takes `&mut guard`.

#[cfg(not(loom))]
pub use parking_lot::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub use std::sync::{atomic, Arc};

#[cfg(loom)]
pub use loom::sync::{atomic, Arc};
#[cfg(loom)]
pub use shim::{Condvar, Mutex, MutexGuard};

#[cfg(loom)]
mod shim {
    use std::ops::{Deref, DerefMut};

    /// loom's mutex with parking_lot's API.
    #[derive(Debug, Default)]
    pub struct Mutex<T>(loom::sync::Mutex<T>);

    /// Guard of [`Mutex`]; the inner guard is only `None` for the duration of a `Condvar::wait`.
    pub struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        pub fn new(v: T) -> Self {
            Mutex(loom::sync::Mutex::new(v))
        }
        pub fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().unwrap()))
        }
        pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            self.0.try_lock().ok().map(|g| MutexGuard(Some(g)))
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().expect("guard present outside wait")
        }
    }
    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().expect("guard present outside wait")
        }
    }

    /// loom's condition variable with parking_lot's API.
    #[derive(Debug, Default)]
    pub struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }
        pub fn wait<T>(&self, g: &mut MutexGuard<'_, T>) {
            let inner = g.0.take().expect("guard present");
            g.0 = Some(self.0.wait(inner).unwrap());
        }
        pub fn notify_all(&self) -> usize {
            self.0.notify_all();
            0
        }
        pub fn notify_one(&self) -> bool {
            self.0.notify_one();
            false
        }
    }
}

/// Threads (loom's under `cfg(loom)`: loom threads share one OS thread, so per-thread state
/// must use loom's `thread_local!` there).
#[cfg(loom)]
pub use loom::thread;
#[cfg(not(loom))]
pub use std::thread;
