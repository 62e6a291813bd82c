//! `daxfs mkfs`: format a region, refusing (without `--force`) to destroy what is there, and
//! warning when a sparse region file is larger than the space left under it.
//!
//! Rules: an existing daxfs, a damaged daxfs, another filesystem (blkid's word for it, when blkid
//! is installed) or any non-zero first block is named and kept unless `--force`; so is a `--size`
//! that differs from an existing file's size. A failed mkfs leaves nothing it created (the
//! library removes or shrinks back the file).

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use daxfs::fs::{DaxFs, MkfsOptions, RegionContents};

use crate::units::human;
use crate::CmdResult;

/// What `daxfs mkfs` was asked.
pub struct Mkfs<'a> {
    pub region: &'a Path,
    pub size: Option<u64>,
    pub inodes: Option<u64>,
    pub force: bool,
}

pub fn mkfs(m: &Mkfs) -> CmdResult {
    let region = m.region;
    if !region.exists() && m.size.is_none() {
        return Err(format!(
            "{} does not exist: give --size SIZE (e.g. --size 1G) to create it",
            region.display()
        ));
    }
    if let Some(0) = m.size {
        return Err("--size must be larger than 0".into());
    }
    if region.exists() {
        if !m.force {
            refuse_what_is_there(region)?;
        }
        check_size(m)?;
    }
    if m.force {
        shrink_to(region, m.size)?;
    }
    let opts = MkfsOptions {
        size: m.size,
        inodes: m.inodes,
    };
    let st = DaxFs::mkfs(region, &opts).map_err(|e| e.to_string())?;
    println!(
        "{}: daxfs of {} ({} blocks of {} bytes, {} inodes, {} free 2 MiB runs)",
        region.display(),
        human(st.size),
        st.size / st.block_size.max(1),
        st.block_size,
        st.inodes_total,
        st.free_2m_runs
    );
    warn_if_short(region);
    Ok(ExitCode::SUCCESS)
}

/// `--size` against an existing region: a device has its own size; a non-empty file of another
/// size is resized only with `--force`.
fn check_size(m: &Mkfs) -> Result<(), String> {
    let Some(size) = m.size else {
        return Ok(());
    };
    let md = std::fs::metadata(m.region).map_err(|e| format!("{}: {e}", m.region.display()))?;
    if !md.is_file() {
        return Err(format!(
            "{} is a device: its size is its own; leave out --size",
            m.region.display()
        ));
    }
    if md.len() != 0 && md.len() != size && !m.force {
        return Err(format!(
            "{} is {} ({} bytes) and --size asks for {} ({} bytes); give --force to format it \
             at the new size (everything on it is lost)",
            m.region.display(),
            human(md.len()),
            md.len(),
            human(size),
            size
        ));
    }
    Ok(())
}

/// Err naming what the existing region holds, unless it holds nothing.
fn refuse_what_is_there(region: &Path) -> Result<(), String> {
    let r = region.display();
    match DaxFs::probe(region).map_err(|e| e.to_string())? {
        RegionContents::Daxfs(st) => Err(format!(
            "{r} holds a daxfs: {} inode{}, {} used; give --force to format it",
            st.inodes_used,
            if st.inodes_used == 1 { "" } else { "s" },
            human(st.used_blocks * st.block_size)
        )),
        RegionContents::DamagedDaxfs(e) => Err(format!(
            "{r} holds a damaged daxfs ({e}); give --force to format it, or try \
             'daxfs fsck --repair {r}'"
        )),
        RegionContents::Other => Err(match blkid_type(region) {
            Some(t) => {
                format!("{r} holds a {t} filesystem (found by blkid); give --force to format it")
            }
            None => format!(
                "{r} holds data (its first 4 KiB are not zeros, and not a daxfs); give --force \
                 to format it"
            ),
        }),
        RegionContents::Empty => match blkid_type(region) {
            Some(t) => Err(format!(
                "{r} holds a {t} filesystem (found by blkid); give --force to format it"
            )),
            None => Ok(()),
        },
    }
}

/// The filesystem (or other) signature blkid finds on `path`, when blkid is installed.
fn blkid_type(path: &Path) -> Option<String> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "TYPE"])
        .arg(path)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let t = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !t.is_empty()).then_some(t)
}

/// With `--force`, a region file larger than `--size` is cut to it first (mkfs only grows).
fn shrink_to(region: &Path, size: Option<u64>) -> Result<(), String> {
    let (Some(size), Ok(md)) = (size, std::fs::metadata(region)) else {
        return Ok(());
    };
    if md.is_file() && md.len() > size {
        std::fs::OpenOptions::new()
            .write(true)
            .open(region)
            .and_then(|f| f.set_len(size))
            .map_err(|e| format!("cannot resize {} to {}: {e}", region.display(), human(size)))?;
    }
    Ok(())
}

/// Warns (stderr) when the sparse region file `region` is larger than the free space of the
/// filesystem under it: writes will fail with ENOSPC before the region is full.
pub fn warn_if_short(region: &Path) {
    let Ok(Some(s)) = daxfs::backing::backing_space(region) else {
        return;
    };
    if s.short() {
        eprintln!(
            "daxfs: warning: {} is a sparse region of {}, {} of it without storage yet, but the \
             filesystem under it has {} free: writes fail with ENOSPC once that is used up",
            region.display(),
            human(s.size),
            human(s.unbacked()),
            human(s.fs_free)
        );
    }
}
