//! The XFS ioctls daxfs answers, as xfstests and `xfs_io` issue them (`<xfs/xfs_fs.h>`).
//!
//! Owns: their request numbers and argument layouts, and what FUSE hands the daemon of each. FUSE
//! forwards these in the restricted form (see the parent module): the input is `_IOC_SIZE(cmd)`
//! bytes only when the direction has `_IOC_WRITE`.
//!
//! | request | number | value | argument | what the daemon receives |
//! |---|---|---|---|---|
//! | `XFS_IOC_GOINGDOWN` | `_IOR('X', 125, __u32)` | `0x8004587d` | flags: `XFS_FSOP_GOING_FLAGS_*` | nothing: the direction is "read", so the kernel copies no input and the flags cannot be seen ([`GOINGDOWN_UNSEEN_MODE`]) |

use std::mem::size_of;

use super::{ioc, IOC_READ};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_kernel_headers() {
        assert_eq!(XFS_IOC_GOINGDOWN, 0x8004_587d);
        assert_eq!(super::super::ioc_dir(XFS_IOC_GOINGDOWN), IOC_READ);
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
