//! The lease protocol: fixed-size messages on the daemon's lease socket (`SOCK_SEQPACKET`, one
//! message per packet), shared by the daemon ([`super::server`]) and the `daxfs-preload` library.
//!
//! | kind | direction | fields |
//! |---|---|---|
//! | [`WELCOME`] | daemon → process, first | `seq` = token for `GET_FMAP`, `arg` = [`ACCESS_READ`] or [`ACCESS_RW`], `arg2` = holder id |
//! | [`REVOKE`] | daemon → process | `seq`, `ino`, pages `[first, end)`, `reason`, `arg` = file size (truncate/extend) |
//! | [`ACK`] | process → daemon | `seq` of the revocation, sent once the range is unmapped |
//! | [`REGISTER`] | process → daemon | a lease of pages `[first, end)` of `ino`, `arg` = epoch (a forked child inherits its parent's mappings) |
//! | [`SYNC`] / [`SYNCED`] | both | `seq` = request id: every earlier message was handled (and revocations it joined were sent before the answer) |
//! | [`RELEASE`] | process → daemon | the process no longer maps `ino`; `arg` = epoch (ignored when a later registration happened) |
//!
//! Rules: the daemon never waits for a process while sending (non-blocking sends; a full socket
//! counts as no answer); a process acknowledges a revocation only after the range no longer maps
//! the old blocks; a lease covers pages past the end of the file too (they become valid when the
//! file grows, which revokes them with [`REASON_EXTEND`]).

use crate::ioctl::Pod;

/// Bytes of every message.
pub const MSG_SIZE: usize = 64;

pub const WELCOME: u32 = 1;
pub const REVOKE: u32 = 2;
pub const ACK: u32 = 3;
pub const REGISTER: u32 = 4;
pub const SYNC: u32 = 5;
pub const SYNCED: u32 = 6;
pub const RELEASE: u32 = 7;

/// [`REVOKE`] reasons (`crate::fs::layout::LayoutChange`).
pub const REASON_TRUNCATE: u32 = 1;
pub const REASON_PUNCH: u32 = 2;
pub const REASON_FILL: u32 = 3;
pub const REASON_EXTEND: u32 = 4;
pub const REASON_INVALIDATE: u32 = 5;

/// [`WELCOME`] access levels: what the process may open the region for.
pub const ACCESS_READ: u64 = 1;
pub const ACCESS_RW: u64 = 3;

/// One message.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Msg {
    pub kind: u32,
    pub reason: u32,
    pub seq: u64,
    pub ino: u64,
    pub first: u64,
    pub end: u64,
    pub arg: u64,
    pub arg2: u64,
    pub _pad: u64,
}

// SAFETY: #[repr(C)], u32/u64 fields only, no implicit padding (size asserted below).
unsafe impl Pod for Msg {}
const _: () = assert!(std::mem::size_of::<Msg>() == MSG_SIZE);

impl Msg {
    /// A message of `kind` with everything else zero.
    pub fn new(kind: u32) -> Msg {
        Msg {
            kind,
            ..Msg::default()
        }
    }

    /// Decodes a received packet; `None` when it is not exactly one message.
    pub fn decode(b: &[u8]) -> Option<Msg> {
        (b.len() == MSG_SIZE).then(|| Msg::read_from(b)).flatten()
    }
}

/// The abstract socket name of a daemon: `\0daxfs-lease/<pid>/<mount id>`.
pub fn socket_name(pid: u32, mount_id: u64) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(format!("daxfs-lease/{pid}/{mount_id:016x}").as_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut m = Msg::new(REVOKE);
        m.seq = 9;
        m.ino = 5;
        m.first = 1;
        m.end = u64::MAX;
        m.reason = REASON_TRUNCATE;
        assert_eq!(Msg::decode(m.as_bytes()), Some(m));
        assert_eq!(Msg::decode(&[0u8; 63]), None);
        assert_eq!(Msg::decode(&[0u8; 65]), None);
        let n = socket_name(42, 0xab);
        assert_eq!(n[0], 0);
        assert_eq!(&n[1..], b"daxfs-lease/42/00000000000000ab");
    }
}
