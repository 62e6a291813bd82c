//! The XFS ioctls daxfs answers, as xfstests and `xfs_io` issue them (`<xfs/xfs_fs.h>`).
//!
//! Owns: their request numbers and argument layouts, and what FUSE hands the daemon of each. FUSE
//! forwards these in the restricted form (see the parent module): the input is `_IOC_SIZE(cmd)`
//! bytes only when the direction has `_IOC_WRITE`.
//!
//! | request | number | value | argument | what the daemon receives |
//! |---|---|---|---|---|
//! | `XFS_IOC_GOINGDOWN` | `_IOR('X', 125, __u32)` | `0x8004587d` | flags: `XFS_FSOP_GOING_FLAGS_*` | nothing: the direction is "read", so the kernel copies no input and the flags cannot be seen ([`GOINGDOWN_UNSEEN_MODE`]) |
//! | `XFS_IOC_EXCHANGE_RANGE` | `_IOW('X', 129, struct xfs_exchange_range)` | `0x40285881` | [`ExchangeRangeArg`], 40 bytes | all 40 bytes; `file1_fd` is a number in the caller's fd table, resolved through `/proc/PID/fdinfo` (`crate::fuse::caller_fds`), never opened |

use std::mem::size_of;

use super::{ioc, IOC_READ, IOC_WRITE};

/// `XFS_IOC_GOINGDOWN` = `_IOR('X', 125, __u32)`: shut the filesystem down (xfstests' `godown`,
/// `xfs_io -x -c shutdown`).
pub const XFS_IOC_GOINGDOWN: u32 = ioc(IOC_READ, b'X', 125, size_of::<u32>());

/// `XFS_FSOP_GOING_FLAGS_DEFAULT`: sync, then go down.
pub const XFS_FSOP_GOING_FLAGS_DEFAULT: u32 = 0;
/// `XFS_FSOP_GOING_FLAGS_LOGFLUSH`: flush the log but not the data.
pub const XFS_FSOP_GOING_FLAGS_LOGFLUSH: u32 = 1;
/// `XFS_FSOP_GOING_FLAGS_NOLOGFLUSH`: flush neither.
pub const XFS_FSOP_GOING_FLAGS_NOLOGFLUSH: u32 = 2;

/// The mode assumed when the flags do not arrive (through FUSE they never do: the request is
/// declared `_IOR`, so `fuse_do_ioctl` sends no input bytes): the strictest, a power cut — only
/// what was durable survives.
pub const GOINGDOWN_UNSEEN_MODE: u32 = XFS_FSOP_GOING_FLAGS_NOLOGFLUSH;

/// The flags of a `XFS_IOC_GOINGDOWN` request as the daemon received `input`: the `u32` when
/// present (a caller that is not the FUSE kernel, e.g. the embedded API), else
/// [`GOINGDOWN_UNSEEN_MODE`].
pub fn goingdown_flags(input: &[u8]) -> u32 {
    match input.get(..4) {
        Some(b) => u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        None => GOINGDOWN_UNSEEN_MODE,
    }
}

/// `struct xfs_exchange_range`: exchange `length` bytes at `file1_offset` of the file open as
/// `file1_fd` with those at `file2_offset` of the file the ioctl is issued on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExchangeRangeArg {
    /// The other file, a descriptor of the caller.
    pub file1_fd: i32,
    /// Must be zero.
    pub pad: u32,
    /// Byte offset in file1.
    pub file1_offset: u64,
    /// Byte offset in file2 (the ioctl's file).
    pub file2_offset: u64,
    /// Bytes to exchange.
    pub length: u64,
    /// `XFS_EXCHANGE_RANGE_*` (`crate::fs::EXCHANGE_RANGE_*`).
    pub flags: u64,
}

/// Size of [`ExchangeRangeArg`] as the kernel lays it out.
pub const EXCHANGE_RANGE_ARG_SIZE: usize = 40;

/// `XFS_IOC_EXCHANGE_RANGE` = `_IOW('X', 129, struct xfs_exchange_range)` (`xfs_io
/// exchangerange`).
pub const XFS_IOC_EXCHANGE_RANGE: u32 = ioc(IOC_WRITE, b'X', 129, EXCHANGE_RANGE_ARG_SIZE);

impl ExchangeRangeArg {
    /// Decodes the request's bytes (`None` unless exactly 40).
    pub fn decode(b: &[u8]) -> Option<ExchangeRangeArg> {
        if b.len() != EXCHANGE_RANGE_ARG_SIZE {
            return None;
        }
        let u64_at = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            u64::from_ne_bytes(w)
        };
        let mut w = [0u8; 4];
        w.copy_from_slice(&b[0..4]);
        let file1_fd = i32::from_ne_bytes(w);
        w.copy_from_slice(&b[4..8]);
        Some(ExchangeRangeArg {
            file1_fd,
            pad: u32::from_ne_bytes(w),
            file1_offset: u64_at(8),
            file2_offset: u64_at(16),
            length: u64_at(24),
            flags: u64_at(32),
        })
    }

    /// The kernel's layout of the request (tests and embedded callers).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(EXCHANGE_RANGE_ARG_SIZE);
        v.extend_from_slice(&self.file1_fd.to_ne_bytes());
        v.extend_from_slice(&self.pad.to_ne_bytes());
        for x in [
            self.file1_offset,
            self.file2_offset,
            self.length,
            self.flags,
        ] {
            v.extend_from_slice(&x.to_ne_bytes());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_kernel_headers() {
        assert_eq!(XFS_IOC_GOINGDOWN, 0x8004_587d);
        assert_eq!(super::super::ioc_dir(XFS_IOC_GOINGDOWN), IOC_READ);
        assert_eq!(XFS_IOC_EXCHANGE_RANGE, 0x4028_5881);
    }

    #[test]
    fn exchange_range_args_round_trip() {
        let a = ExchangeRangeArg {
            file1_fd: 7,
            pad: 0,
            file1_offset: 4096,
            file2_offset: 8192,
            length: 12288,
            flags: 9,
        };
        assert_eq!(ExchangeRangeArg::decode(&a.encode()), Some(a));
        assert_eq!(ExchangeRangeArg::decode(&[0u8; 39]), None);
    }

    #[test]
    fn missing_flags_mean_the_strictest_mode() {
        assert_eq!(goingdown_flags(&[]), XFS_FSOP_GOING_FLAGS_NOLOGFLUSH);
        assert_eq!(
            goingdown_flags(&XFS_FSOP_GOING_FLAGS_LOGFLUSH.to_ne_bytes()),
            XFS_FSOP_GOING_FLAGS_LOGFLUSH
        );
        assert_eq!(
            goingdown_flags(&XFS_FSOP_GOING_FLAGS_DEFAULT.to_ne_bytes()),
            XFS_FSOP_GOING_FLAGS_DEFAULT
        );
    }
}
