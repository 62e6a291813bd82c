//! The lease protocol: fixed-size messages on the daemon's lease socket (`SOCK_SEQPACKET`, one
//! message per packet), shared by the daemon ([`super::server`]) and the `daxfs-preload` library.
//!
//! | kind | direction | fields |
//! |---|---|---|
//! | [`WELCOME`] | daemon → process, first | `seq` = token for `GET_FMAP`, `arg` = [`ACCESS_READ`] or [`ACCESS_RW`], `arg2` = holder id |
//! | [`REVOKE`] | daemon → process | `seq`, `ino`, pages `[first, end)`, `reason`, `arg` = file size (truncate/extend) |
//! | [`EXTENT`] | daemon → process, just before a [`REVOKE`] with [`REASON_EXTEND`] and the same `seq` | pages `[first, end)` of `ino` now hold region bytes from offset `arg` (`reason` = [`EXTENT_DATA`]) or are a hole ([`EXTENT_HOLE`]) |
//! | [`ACK`] | process → daemon | `seq` of the revocation, sent once the range is unmapped |
//! | [`REGISTER`] | process → daemon | a lease of pages `[first, end)` of `ino`, `arg` = epoch (a forked child inherits its parent's mappings) |
//! | [`SYNC`] / [`SYNCED`] | both | `seq` = request id: every earlier message was handled (and revocations it joined were sent before the answer) |
//! | [`RELEASE`] | process → daemon | the process no longer maps `ino`; `arg` = epoch (ignored when a later registration happened) |
//!
//! Rules: the daemon never waits for a process while sending (non-blocking sends; a full socket
//! counts as no answer); a process acknowledges a revocation only after the range no longer maps
//! the old blocks; a lease covers pages past the end of the file too (they become valid when the
//! file grows, which revokes them with [`REASON_EXTEND`]); the growth's [`EXTENT`] messages let
//! the process map the newly valid pages before it acknowledges, because the process cannot ask
//! for them then (`GET_FMAP` needs the inode lock the growing request holds). A page a process
//! has not mapped when the growth returns would fault in user space (the handler maps it) but
//! gives `EFAULT` to a system call that copies from it (xfstests generic/638). The extents are a
//! hint: at most [`MAX_EXTENT_HINTS`] per growth; a process that gets fewer, or none (one that
//! registers while the growth is in progress), maps the rest on the next fault.

use crate::ioctl::Pod;

/// Bytes of every message.
pub const MSG_SIZE: usize = 64;

/// Daemon → process, first: the token and the access granted.
pub const WELCOME: u32 = 1;
/// Daemon → process: unmap the range, then [`ACK`].
pub const REVOKE: u32 = 2;
/// Process → daemon: the revoked range no longer maps the old blocks.
pub const ACK: u32 = 3;
/// Process → daemon: a lease of a page range (a forked child's inherited mappings).
pub const REGISTER: u32 = 4;
/// Either way: answer [`SYNCED`] once every earlier message is handled.
pub const SYNC: u32 = 5;
/// The answer to [`SYNC`].
pub const SYNCED: u32 = 6;
/// Process → daemon: it no longer maps the file.
pub const RELEASE: u32 = 7;

/// Daemon → process: the layout of pages that a growth made valid (see the module comment).
pub const EXTENT: u32 = 8;

/// [`EXTENT`] kinds (in `reason`): region data at `arg`.
pub const EXTENT_DATA: u32 = 1;
/// A hole (no block yet).
pub const EXTENT_HOLE: u32 = 2;
/// The most [`EXTENT`] messages sent for one growth (each holder's socket must take them
/// without blocking).
pub const MAX_EXTENT_HINTS: usize = 16;

/// [`REVOKE`] reasons (`crate::fs::layout::LayoutChange`).
pub const REASON_TRUNCATE: u32 = 1;
/// A hole was punched.
pub const REASON_PUNCH: u32 = 2;
/// Blocks were allocated into holes.
pub const REASON_FILL: u32 = 3;
/// The file grew (`arg` = the new size).
pub const REASON_EXTEND: u32 = 4;
/// Memory failure or its clearing.
pub const REASON_INVALIDATE: u32 = 5;

/// [`WELCOME`] access levels: what the process may open the region for.
pub const ACCESS_READ: u64 = 1;
/// May map for reading and writing.
pub const ACCESS_RW: u64 = 3;

/// One message.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Msg {
    /// [`WELCOME`], [`REVOKE`], ...
    pub kind: u32,
    /// A [`REVOKE`]'s reason (`REASON_*`).
    pub reason: u32,
    /// Sequence number (the token in [`WELCOME`], the request id of [`SYNC`]).
    pub seq: u64,
    /// The inode.
    pub ino: u64,
    /// First page of the range.
    pub first: u64,
    /// End of the range (exclusive), in pages.
    pub end: u64,
    /// Per kind: access, file size or epoch.
    pub arg: u64,
    /// Per kind: the holder id in [`WELCOME`].
    pub arg2: u64,
    /// Zero: room for later fields.
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
