//! The metadata journal: a redo log of byte ranges, one transaction at a time.
//!
//! A [`Tx`] collects the new bytes of every metadata range an operation changes (inode records,
//! directory slots, the bad-block table). [`Journal::commit`]:
//! 1. writes the records into the journal body, then the header (magic, sequence, record count,
//!    body length, crc32c of the body, crc32c of the header) — header last — and persists both
//!    with one `persist` (body and header are contiguous): the transaction is committed once the
//!    header with matching checksums is durable;
//! 2. applies each record at its home location and persists those ranges, merged (see below);
//! 3. clears the header. The clear is persisted synchronously only when the transaction frees
//!    blocks (`Tx::free_after` not empty); otherwise it is left to become durable lazily.
//!
//! At open, [`Journal::replay`] applies a committed transaction again (redo is idempotent) and clears
//! it. A header whose checksums do not match is a torn, uncommitted transaction and is dropped. A
//! committed transaction whose records do not make sense (out of the region, into the superblock or
//! the journal) is a "bad journal" and refuses the mount.
//!
//! Why the lazy clear is safe. A header left valid after a crash makes the mount replay that
//! transaction (T) once more. Replaying T is harmless exactly when every home range of T still holds
//! what T wrote there, so the redo rewrites the same bytes. Homes are metadata of structures
//! reachable from the superblock, and those are written only through this journal (rule below);
//! only the most recent transaction can be in the journal, since the next commit overwrites the
//! header and persists it before applying anything. So between T's apply and the next durable
//! header, the only way T's homes can change is a *direct* write to a block that stopped being
//! metadata: a block freed (by T or by a later transaction) and reused for file data or as a fresh,
//! not yet referenced metadata block. Blocks are freed only through `Tx::free_after`, returned to
//! the allocator by the caller after `commit` returns; a transaction that frees blocks clears its
//! header *synchronously* before returning, so by the time a freed block can be reused no durable
//! header names a transaction that wrote into it. A later transaction that frees blocks has first
//! made its own header durable (replacing T) and then clears it synchronously. A crash in the middle
//! of the next commit's persist may leave T's header with a partly overwritten body: the body
//! checksum drops it (T's homes are already durable), or the bytes T's checksum covers are
//! unchanged and T is replayed harmlessly. So dropping the clear's `persist` never makes replay
//! write stale bytes, and every committed operation stays durable (steps 1–2 are unchanged).
//!
//! Persisting the homes: for a file or block-device region, `persist` is `msync`, a syscall whose
//! cost is per call (and on a disk-backed file a journal commit of the host filesystem), not per
//! clean page; ranges closer than [`MERGE_GAP`] are persisted as one spanning range (this may also
//! write back unrelated dirty pages in the gap early, which is never a consistency problem: early
//! durability is indistinguishable from a cache eviction on real pmem). For a device-DAX region
//! `persist` writes back each cache line of the range, so only touching page ranges are merged.
//! The body is built in a buffer kept under the journal mutex and reused (no allocation per commit
//! once it has grown).
//!
//! Rules it keeps: only one transaction is in flight (a mutex); metadata homes are written only
//! through here once a structure is reachable from the superblock (freshly allocated blocks not yet
//! referenced are written directly and persisted *before* the transaction that references them).
//!
//! Layout of the journal area (`JOURNAL_BLOCKS` blocks at `journal_start`):
//! ```text
//! 0 magic "DXJOURNL"  8 seq u64  16 nrec u32  20 reserved  24 body_len u64  32 body crc32c
//! 36 header crc32c of [0, 36)    64.. body: records { off u64, len u32, reserved u32, bytes,
//!                                         padded to 8 }
//! ```

use crate::region::{Region, RegionError, RegionKind};
use crate::sync::Mutex;

use super::corrupt::JournalDamage;
use super::layout::{get32, get64, put32, put64, Superblock, BLOCK};

const J_MAGIC: [u8; 8] = *b"DXJOURNL";
const J_HDR: u64 = 64;
/// Home ranges of one commit closer than this are persisted by one spanning `msync`
/// (file and block-device regions only).
pub const MERGE_GAP: u64 = 64 << 20;

/// A metadata transaction under construction.
#[derive(Default, Debug)]
pub struct Tx {
    recs: Vec<(u64, Vec<u8>)>,
    /// Blocks to give back to the allocator once the transaction is durable.
    pub free_after: Vec<u64>,
}

impl Tx {
    /// An empty transaction.
    pub fn new() -> Tx {
        Tx::default()
    }
    /// Adds the new contents of `[off, off + data.len())`. A later record for the same range
    /// overrides an earlier one (records are applied in order).
    pub fn write(&mut self, off: u64, data: &[u8]) {
        self.recs.push((off, data.to_vec()));
    }
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }
    fn body_len(&self) -> u64 {
        self.recs
            .iter()
            .map(|(_, d)| 16 + (d.len() as u64).next_multiple_of(8))
            .sum()
    }
}

/// The journal of one region.
#[derive(Debug)]
pub struct Journal {
    off: u64,
    cap: u64,
    state: Mutex<State>,
}

/// What the journal mutex protects.
#[derive(Debug)]
struct State {
    seq: u64,
    /// Reused body buffer.
    body: Vec<u8>,
    /// Reused list of page ranges to persist at home.
    ranges: Vec<(u64, u64)>,
}

/// Errors of a commit or a replay.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The region failed a write or a persist of a commit.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The transaction's body is larger than the journal.
    #[error("transaction of {0} bytes does not fit in the journal")]
    TooBig(u64),
    /// A committed transaction cannot be replayed (the mount must be refused).
    #[error("bad journal: {0}")]
    Damaged(JournalDamage),
    /// Replay could not read, apply or clear the journal.
    #[error("bad journal: {step}: {source}")]
    Replay {
        /// What failed: reading, applying or clearing.
        step: ReplayStep,
        /// The region's error.
        source: RegionError,
    },
}

/// The step of [`Journal::replay`] that failed on the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayStep {
    /// Reading the header or the body.
    #[error("cannot read it")]
    Read,
    /// Writing the records home.
    #[error("replay failed")]
    Apply,
    /// Clearing the header.
    #[error("cannot clear it")]
    Clear,
}

impl JournalError {
    fn replay(step: ReplayStep) -> impl FnOnce(RegionError) -> JournalError {
        move |source| JournalError::Replay { step, source }
    }
}

impl Journal {
    /// The journal of the region `sb` describes.
    pub fn new(sb: &Superblock) -> Journal {
        Journal {
            off: sb.journal_off(),
            cap: sb.journal_blocks * BLOCK - J_HDR,
            state: Mutex::new(State {
                seq: 1,
                body: Vec::new(),
                ranges: Vec::new(),
            }),
        }
    }

    /// Largest body a transaction may have.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// Commits `tx`: durable at home when this returns.
    ///
    /// Context: takes the journal mutex; performs several `persist` calls (may sleep).
    pub fn commit(&self, region: &Region, tx: &Tx) -> Result<(), JournalError> {
        if tx.recs.is_empty() {
            return Ok(());
        }
        let body_len = tx.body_len();
        if body_len > self.cap {
            return Err(JournalError::TooBig(body_len));
        }
        let mut guard = self.state.lock();
        let State { seq, body, ranges } = &mut *guard;
        body.clear();
        for (off, d) in &tx.recs {
            body.extend_from_slice(&off.to_le_bytes());
            body.extend_from_slice(&(d.len() as u32).to_le_bytes());
            body.extend_from_slice(&[0u8; 4]);
            body.extend_from_slice(d);
            body.resize(body.len().next_multiple_of(8), 0);
        }
        debug_assert_eq!(body.len() as u64, body_len);
        region.write_at(self.off + J_HDR, body)?;
        let mut hdr = [0u8; J_HDR as usize];
        hdr[0..8].copy_from_slice(&J_MAGIC);
        put64(&mut hdr, 8, *seq);
        put32(&mut hdr, 16, tx.recs.len() as u32);
        put64(&mut hdr, 24, body_len);
        put32(&mut hdr, 32, crc32c::crc32c(body));
        let hcrc = crc32c::crc32c(&hdr[..36]);
        put32(&mut hdr, 36, hcrc);
        region.write_at(self.off, &hdr)?;
        region.persist(self.off, J_HDR + body_len)?;
        // Committed. Apply at home.
        apply(region, &tx.recs, ranges)?;
        region.write_at(self.off, &[0u8; J_HDR as usize])?;
        if !tx.free_after.is_empty() {
            // Blocks are about to be freed and may be reused by direct writes: this transaction
            // must not be replayable any more (module comment).
            region.persist(self.off, J_HDR)?;
        }
        *seq += 1;
        Ok(())
    }

    /// Replays a committed transaction left by a crash. Returns whether one was replayed.
    /// `Err`: [`JournalError::Damaged`] for a bad journal, [`JournalError::Replay`] for I/O.
    pub fn replay(region: &Region, sb: &Superblock) -> Result<bool, JournalError> {
        let off = sb.journal_off();
        let cap = sb.journal_blocks * BLOCK - J_HDR;
        let mut hdr = [0u8; J_HDR as usize];
        region
            .read_at(off, &mut hdr)
            .map_err(JournalError::replay(ReplayStep::Read))?;
        if hdr.iter().all(|&b| b == 0) {
            return Ok(false);
        }
        if hdr[0..8] != J_MAGIC {
            return Err(JournalError::Damaged(JournalDamage::UnknownMagic));
        }
        let body_len = get64(&hdr, 24);
        if crc32c::crc32c(&hdr[..36]) != get32(&hdr, 36) || body_len > cap {
            // Torn header: the transaction never committed.
            log::warn!("journal: dropping a torn (uncommitted) transaction");
            clear(region, off)?;
            return Ok(false);
        }
        let mut body = vec![0u8; body_len as usize];
        region
            .read_at(off + J_HDR, &mut body)
            .map_err(JournalError::replay(ReplayStep::Read))?;
        if crc32c::crc32c(&body) != get32(&hdr, 32) {
            log::warn!("journal: dropping a torn (uncommitted) transaction body");
            clear(region, off)?;
            return Ok(false);
        }
        let nrec = get32(&hdr, 16) as usize;
        let meta_end = sb.size.min(region.len());
        let recs = parse_records(&body, nrec, sb.badblk_start * BLOCK, meta_end)
            .map_err(JournalError::Damaged)?;
        apply(region, &recs, &mut Vec::new()).map_err(JournalError::replay(ReplayStep::Apply))?;
        clear(region, off)?;
        log::info!("journal: replayed a committed transaction of {nrec} records");
        Ok(true)
    }
}

/// The `nrec` records of a committed body, each checked to lie in `[meta_start, meta_end)`.
fn parse_records(
    body: &[u8],
    nrec: usize,
    meta_start: u64,
    meta_end: u64,
) -> Result<Vec<(u64, Vec<u8>)>, JournalDamage> {
    let mut recs = Vec::with_capacity(nrec.min(4096));
    let mut at = 0usize;
    for index in 0..nrec {
        if at + 16 > body.len() {
            return Err(JournalDamage::RecordOverrun(index));
        }
        let off = get64(body, at);
        let len = get32(body, at + 8) as usize;
        if at + 16 + len > body.len() {
            return Err(JournalDamage::RecordOverrun(index));
        }
        let end = off.checked_add(len as u64);
        if off < meta_start || end.is_none_or(|e| e > meta_end) {
            return Err(JournalDamage::RecordOutside { index, off, len });
        }
        recs.push((off, body[at + 16..at + 16 + len].to_vec()));
        at += 16 + len.next_multiple_of(8);
    }
    Ok(recs)
}

fn clear(region: &Region, off: u64) -> Result<(), JournalError> {
    region
        .write_at(off, &[0u8; J_HDR as usize])
        .and_then(|_| region.persist(off, J_HDR))
        .map_err(JournalError::replay(ReplayStep::Clear))
}

/// Writes each record home, then persists the touched pages: overlapping or touching page ranges
/// merged, and for file/block-device regions ranges closer than [`MERGE_GAP`] as well.
fn apply(
    region: &Region,
    recs: &[(u64, Vec<u8>)],
    ranges: &mut Vec<(u64, u64)>,
) -> Result<(), RegionError> {
    ranges.clear();
    for (off, d) in recs {
        region.write_at(*off, d)?;
        let s = off & !(BLOCK - 1);
        let e = (off + d.len() as u64).next_multiple_of(BLOCK);
        ranges.push((s, e));
    }
    let gap = match region.kind() {
        RegionKind::DaxDevice => 0,
        RegionKind::File | RegionKind::BlockDevice => MERGE_GAP,
    };
    for (s, len) in merge_ranges(ranges, gap) {
        region.persist(s, len)?;
    }
    Ok(())
}

/// Sorts `ranges` (`[start, end)`) and yields `(start, len)` runs, joining ranges whose gap is at
/// most `gap` bytes.
fn merge_ranges(ranges: &mut [(u64, u64)], gap: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
    ranges.sort_unstable();
    let mut it = ranges.iter().copied().peekable();
    std::iter::from_fn(move || {
        let (s, mut e) = it.next()?;
        while let Some(&(ns, ne)) = it.peek() {
            if ns > e.saturating_add(gap) {
                break;
            }
            e = e.max(ne);
            it.next();
        }
        Some((s, e - s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_applies_and_replay_redoes() {
        let dir = tempfile::tempdir().unwrap();
        let r = Region::open(&dir.path().join("r"), Some(16 << 20)).unwrap();
        let sb = Superblock::for_region(16 << 20, 1024, 1);
        let j = Journal::new(&sb);
        let home = sb.inode_off(3);
        let mut tx = Tx::new();
        tx.write(home, b"hello");
        j.commit(&r, &tx).unwrap();
        let mut b = [0u8; 5];
        r.read_at(home, &mut b).unwrap();
        assert_eq!(&b, b"hello");
        assert!(!Journal::replay(&r, &sb).unwrap());

        // Simulate a crash after the commit point but before apply: build the journal by hand.
        let mut tx2 = Tx::new();
        tx2.write(home, b"world");
        // Commit into a scratch region to capture the journal bytes, then copy them over.
        let r2 = Region::open(&dir.path().join("r2"), Some(16 << 20)).unwrap();
        let body_len = tx2.body_len();
        let mut body = vec![0u8; body_len as usize];
        put64(&mut body, 0, home);
        put32(&mut body, 8, 5);
        body[16..21].copy_from_slice(b"world");
        let mut hdr = [0u8; J_HDR as usize];
        hdr[0..8].copy_from_slice(&J_MAGIC);
        put32(&mut hdr, 16, 1);
        put64(&mut hdr, 24, body_len);
        put32(&mut hdr, 32, crc32c::crc32c(&body));
        let hc = crc32c::crc32c(&hdr[..36]);
        put32(&mut hdr, 36, hc);
        drop(r2);
        r.write_at(sb.journal_off() + J_HDR, &body).unwrap();
        r.write_at(sb.journal_off(), &hdr).unwrap();
        assert!(Journal::replay(&r, &sb).unwrap());
        r.read_at(home, &mut b).unwrap();
        assert_eq!(&b, b"world");
        assert!(!Journal::replay(&r, &sb).unwrap());

        // A torn body is dropped, not applied.
        body[16] = b'X';
        r.write_at(sb.journal_off() + J_HDR, &body).unwrap();
        r.write_at(sb.journal_off(), &hdr).unwrap();
        assert!(!Journal::replay(&r, &sb).unwrap());
        r.read_at(home, &mut b).unwrap();
        assert_eq!(&b, b"world");

        // Unknown magic refuses.
        r.write_at(sb.journal_off(), b"garbage!").unwrap();
        assert!(matches!(
            Journal::replay(&r, &sb),
            Err(JournalError::Damaged(JournalDamage::UnknownMagic))
        ));
    }

    #[test]
    fn merge_ranges_joins_close_ranges_only() {
        let mut r = vec![
            (8192, 12288),
            (0, 4096),
            (4096, 8192),
            (1 << 30, (1 << 30) + 4096),
        ];
        let got: Vec<_> = merge_ranges(&mut r, 0).collect();
        assert_eq!(got, vec![(0, 12288), (1 << 30, 4096)]);
        let mut r = vec![(0, 4096), (65536, 69632), (1 << 30, (1 << 30) + 4096)];
        let got: Vec<_> = merge_ranges(&mut r, MERGE_GAP).collect();
        assert_eq!(got, vec![(0, 69632), (1 << 30, 4096)]);
        let got: Vec<_> = merge_ranges(&mut r, u64::MAX).collect();
        assert_eq!(got, vec![(0, (1 << 30) + 4096)]);
        assert_eq!(merge_ranges(&mut [], 0).count(), 0);
    }

    /// The lazily cleared header of the last transaction replays to the same bytes, and the body
    /// buffer reused across commits of different sizes encodes each one correctly.
    #[test]
    fn stale_last_transaction_replays_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let r = Region::open(&dir.path().join("r"), Some(16 << 20)).unwrap();
        let sb = Superblock::for_region(16 << 20, 1024, 1);
        let j = Journal::new(&sb);
        let (a, b) = (sb.inode_off(3), sb.inode_off(900));
        let mut big = Tx::new();
        big.write(a, &[7u8; 300]);
        big.write(b, b"first");
        j.commit(&r, &big).unwrap();
        let mut small = Tx::new();
        small.write(b, b"second!");
        j.commit(&r, &small).unwrap();
        // Rebuild the header of the last transaction over its (still present) body, as a crash
        // before the lazy clear became durable leaves it.
        let jo = sb.journal_off();
        let body_len = small.body_len();
        let mut body = vec![0u8; body_len as usize];
        r.read_at(jo + J_HDR, &mut body).unwrap();
        assert_eq!(get64(&body, 0), b);
        assert_eq!(get32(&body, 8), 7);
        assert_eq!(&body[16..23], b"second!");
        let mut hdr = [0u8; J_HDR as usize];
        r.read_at(jo, &mut hdr).unwrap();
        assert!(
            hdr.iter().all(|&x| x == 0),
            "header cleared (in memory) after commit"
        );
        hdr[0..8].copy_from_slice(&J_MAGIC);
        put64(&mut hdr, 8, 2);
        put32(&mut hdr, 16, 1);
        put64(&mut hdr, 24, body_len);
        put32(&mut hdr, 32, crc32c::crc32c(&body));
        let hc = crc32c::crc32c(&hdr[..36]);
        put32(&mut hdr, 36, hc);
        r.write_at(jo, &hdr).unwrap();
        let mut before = vec![0u8; (sb.itable_blocks * BLOCK) as usize];
        r.read_at(sb.itable_start * BLOCK, &mut before).unwrap();
        assert!(Journal::replay(&r, &sb).unwrap());
        let mut after = vec![0u8; (sb.itable_blocks * BLOCK) as usize];
        r.read_at(sb.itable_start * BLOCK, &mut after).unwrap();
        assert_eq!(
            before, after,
            "replaying the applied last transaction changes nothing"
        );
        let mut got = [0u8; 7];
        r.read_at(b, &mut got).unwrap();
        assert_eq!(&got, b"second!");
        let mut got = [0u8; 300];
        r.read_at(a, &mut got).unwrap();
        assert_eq!(got, [7u8; 300]);
    }
}
