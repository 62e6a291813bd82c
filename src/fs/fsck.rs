//! `fsck`: check a region that is not mounted and, with `--repair`, fix what can be fixed.
//!
//! Rules it keeps (docs/DESIGN.md, "Errors"): a committed journal transaction is replayed first
//! (that is recovery, not repair); every problem the image loader finds is listed once, as a
//! [`CorruptReason`]; each repair is one journal transaction, and the image is loaded again after
//! a round of repairs until it is clean (at most six rounds). Problems in the superblock or the
//! journal are not repaired here: open and fsck refuse the region with a message naming them.

use std::path::Path;

use super::daxfs::DaxFs;
use super::lifecycle::recover;
use crate::error::RepairError;
use crate::region::Region;
use crate::store::{
    badtable::encode_bad_table, CorruptReason, Fix, Image, InodeRec, Journal, Superblock, Tx,
    BLOCK, DIRENT_SIZE, INODE_SIZE,
};

/// Rounds of repair before giving up on a region that does not converge.
const REPAIR_ROUNDS: usize = 6;

impl DaxFs {
    /// Checks a region that is not mounted; returns each problem found (empty when clean).
    /// With `repair`, fixes what it can and returns what it fixed (a region that still has
    /// problems after repair shows them at the next check).
    ///
    /// A committed journal transaction is replayed first (that is recovery, not repair).
    pub fn fsck(path: &Path, repair: bool) -> Result<Vec<CorruptReason>, crate::Error> {
        let region = Region::open(path, None)?;
        let sb = recover(&region, path)?;
        let journal = Journal::new(&sb);
        let mut found: Vec<CorruptReason> = Vec::new();
        for round in 0..REPAIR_ROUNDS {
            let img = Image::load(&region, sb.clone());
            if img.problems.is_empty() {
                break;
            }
            for p in &img.problems {
                if !found.contains(&p.reason) {
                    found.push(p.reason.clone());
                }
            }
            if !repair {
                break;
            }
            if round == REPAIR_ROUNDS - 1 {
                log::warn!("{}: some problems could not be repaired", path.display());
                break;
            }
            for p in &img.problems {
                let mut tx = Tx::new();
                let fixed = repair_one(&region, &sb, &p.fix, &mut tx)
                    .and_then(|()| Ok(journal.commit(&region, &tx)?));
                fixed.map_err(|source| crate::Error::Repair {
                    path: path.to_path_buf(),
                    source,
                })?;
            }
        }
        Ok(found)
    }
}

/// Puts the bytes that apply `fix` into `tx`.
fn repair_one(region: &Region, sb: &Superblock, fix: &Fix, tx: &mut Tx) -> Result<(), RepairError> {
    let read_rec = |ino: u64| -> Result<InodeRec, RepairError> {
        let mut b = [0u8; INODE_SIZE as usize];
        region.read_at(sb.inode_off(ino), &mut b)?;
        InodeRec::decode(&b).map_err(|what| RepairError::Record { ino, what })
    };
    match *fix {
        Fix::None => {}
        Fix::ClearInode(ino) => {
            let generation = read_rec(ino).map(|r| r.generation).unwrap_or(0);
            let r = InodeRec {
                generation,
                ..Default::default()
            };
            tx.write(sb.inode_off(ino), &r.encode());
        }
        Fix::DropDirent { off } => {
            if off >= sb.data_start * BLOCK {
                tx.write(off, &[0u8; DIRENT_SIZE as usize]);
            }
        }
        Fix::SetNlink { ino, nlink } => {
            let mut r = read_rec(ino)?;
            r.nlink = nlink;
            tx.write(sb.inode_off(ino), &r.encode());
        }
        Fix::SetParent { ino, parent } => {
            let mut r = read_rec(ino)?;
            r.parent = parent;
            tx.write(sb.inode_off(ino), &r.encode());
        }
        Fix::DropXattrs(ino) => {
            let mut r = read_rec(ino)?;
            r.xattr_block = 0;
            tx.write(sb.inode_off(ino), &r.encode());
        }
        Fix::ResetBadTable => tx.write(sb.badblk_off(), &encode_bad_table(&[], &[], 1).0),
    }
    Ok(())
}
