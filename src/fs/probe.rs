//! What a region holds before mkfs formats it: nothing, a daxfs (with its usage), a damaged daxfs,
//! or other data. `daxfs mkfs` refuses to destroy anything but nothing without `--force`.
//!
//! Rules: it only reads (the first block through a plain read; a daxfs through a read-only open,
//! which takes and releases the region lock). It never creates the path.

use std::io::Read;
use std::path::Path;

use super::daxfs::DaxFs;
use super::types::{OpenOptions, RegionStat};
use crate::store::{BLOCK, SB_MAGIC};

/// What [`DaxFs::probe`] found in a region.
#[derive(Debug)]
pub enum RegionContents {
    /// No such path, or its first block is all zeros (a new or wiped region).
    Empty,
    /// A daxfs that opens: its usage.
    Daxfs(RegionStat),
    /// A daxfs superblock, but the region does not open: why.
    DamagedDaxfs(crate::Error),
    /// Something else: non-zero data in the first block, no daxfs superblock.
    Other,
}

impl DaxFs {
    /// What `path` holds now (see [`RegionContents`]). Err: the path cannot be read (a region in
    /// use is [`crate::region::RegionError::Busy`]).
    pub fn probe(path: &Path) -> Result<RegionContents, crate::Error> {
        if !path.exists() {
            return Ok(RegionContents::Empty);
        }
        let first = first_block(path).map_err(|source| crate::region::RegionError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if first.iter().all(|&b| b == 0) {
            return Ok(RegionContents::Empty);
        }
        if !first.starts_with(&SB_MAGIC) {
            return Ok(RegionContents::Other);
        }
        let opts = OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        };
        match DaxFs::open(path, &opts) {
            Ok(fs) => {
                let st = fs.region_stat();
                fs.close()?;
                Ok(RegionContents::Daxfs(st))
            }
            Err(e @ crate::Error::Region(crate::region::RegionError::Busy { .. })) => Err(e),
            Err(e) => Ok(RegionContents::DamagedDaxfs(e)),
        }
    }
}

/// The first block of `path` (shorter when the file is).
fn first_block(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(BLOCK as usize);
    std::fs::File::open(path)?
        .take(BLOCK)
        .read_to_end(&mut buf)?;
    Ok(buf)
}
