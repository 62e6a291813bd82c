//! Access-time policy: which reads update atime, by the mount's `noatime` / `relatime` /
//! `strictatime` / `nodiratime` (the kernel's `atime_needs_update` and `relatime_need_update`).
//!
//! Owns: the mode of one mount (an atomic, so a later remount may change it without a lock) and
//! the decision. FUSE inodes are `S_NOATIME` in the kernel: atime is entirely the server's job,
//! the kernel only drops its cached atime after a READ or READDIR. Rules kept:
//! - `noatime`: never; `nodiratime`: never for directories;
//! - `relatime` (the default, as for a kernel mount): when atime is not after mtime or ctime, or
//!   is more than a day old;
//! - `strictatime`: on every access whose time differs from the stored atime.
//!
//! The update itself stays cheap: readers store the new atime in the in-DRAM inode (an atomic,
//! under the shared inode lock) and mark it dirty; it reaches the media with the inode's next
//! commit (fsync, release of a written file, unmount), as `lazytime` does.

use std::sync::atomic::{AtomicU8, Ordering};

/// How reads update atime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AtimeMode {
    /// `relatime` (default).
    #[default]
    Relatime,
    /// `strictatime`: every access.
    Strict,
    /// `noatime`: never.
    NoAtime,
}

const MODE_MASK: u8 = 0b011;
const NODIRATIME: u8 = 0b100;

/// A mount's atime policy: mode and `nodiratime`, in one atomic byte.
#[derive(Debug, Default)]
pub struct AtimePolicy(AtomicU8);

/// One day in nanoseconds: relatime's upper bound on atime staleness.
const DAY_NS: i64 = 24 * 3600 * 1_000_000_000;

impl AtimePolicy {
    /// Sets the policy.
    pub fn set(&self, mode: AtimeMode, nodiratime: bool) {
        let m = match mode {
            AtimeMode::Relatime => 0,
            AtimeMode::Strict => 1,
            AtimeMode::NoAtime => 2,
        };
        self.0.store(
            m | if nodiratime { NODIRATIME } else { 0 },
            Ordering::Relaxed,
        );
    }

    /// The current mode and `nodiratime`.
    pub fn get(&self) -> (AtimeMode, bool) {
        let v = self.0.load(Ordering::Relaxed);
        let mode = match v & MODE_MASK {
            1 => AtimeMode::Strict,
            2 => AtimeMode::NoAtime,
            _ => AtimeMode::Relatime,
        };
        (mode, v & NODIRATIME != 0)
    }

    /// Whether an access at `now` of an inode with times `atime`, `mtime`, `ctime` (ns) must set
    /// its atime to `now`. `dir`: the access is a directory read.
    pub fn needs_update(&self, dir: bool, atime: i64, mtime: i64, ctime: i64, now: i64) -> bool {
        let (mode, nodiratime) = self.get();
        if dir && nodiratime {
            return false;
        }
        match mode {
            AtimeMode::NoAtime => false,
            AtimeMode::Strict => atime != now,
            AtimeMode::Relatime => atime <= mtime || atime <= ctime || now - atime >= DAY_NS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{AtimeMode, AtimePolicy, DAY_NS};

    const S: i64 = 1_000_000_000;

    #[test]
    fn relatime_updates_only_stale_atimes() {
        let p = AtimePolicy::default();
        assert_eq!(p.get(), (AtimeMode::Relatime, false));
        let now = 10 * DAY_NS;
        // atime not after mtime or ctime: update.
        assert!(p.needs_update(false, now - 5 * S, now - 5 * S, now - 9 * S, now));
        assert!(p.needs_update(false, now - 5 * S, now - 9 * S, now - 4 * S, now));
        // Newer than both and younger than a day: keep.
        assert!(!p.needs_update(false, now - S, now - 5 * S, now - 5 * S, now));
        // A day old: update.
        assert!(p.needs_update(false, now - DAY_NS, 0, 0, now));
    }

    #[test]
    fn strict_noatime_and_nodiratime() {
        let p = AtimePolicy::default();
        p.set(AtimeMode::Strict, false);
        assert_eq!(p.get(), (AtimeMode::Strict, false));
        assert!(p.needs_update(false, 5 * S, 0, 0, 6 * S));
        assert!(p.needs_update(true, 5 * S, 0, 0, 6 * S));
        assert!(!p.needs_update(false, 6 * S, 0, 0, 6 * S));
        p.set(AtimeMode::Strict, true);
        assert!(!p.needs_update(true, 5 * S, 0, 0, 6 * S), "nodiratime");
        assert!(p.needs_update(false, 5 * S, 0, 0, 6 * S));
        p.set(AtimeMode::NoAtime, false);
        assert_eq!(p.get(), (AtimeMode::NoAtime, false));
        assert!(!p.needs_update(false, 0, 5 * S, 5 * S, 10 * DAY_NS));
        assert!(!p.needs_update(true, 0, 5 * S, 5 * S, 10 * DAY_NS));
    }
}
