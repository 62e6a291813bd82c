//! `daxfs poison inject|clear|list`: the arguments, the checks the command line can make before
//! asking the daemon (so that an error names the actual problem), and the report of what was done.
//!
//! Output contract: `inject` and `clear` print one sentence per fact (what changed, what was
//! rounded, what was a hole or already in the requested state) on stdout; `--json` prints one
//! object instead; `--quiet` prints nothing on success. Errors go to stderr with exit status 1.
//! `list` prints `<sector> <count>` lines as `/sys/block/pmemX/badblocks` does.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use daxfs::ioctl::DaxfsPoisonReport;

use crate::units::parse_size;
use crate::{ctl, CmdResult};

/// The page (and bad-block) size.
const PAGE: u64 = 4096;

#[derive(Args, Debug)]
#[group(required = true, multiple = false, id = "where")]
pub struct PoisonTarget {
    /// A file on a daxfs mount; OFFSET is in the file.
    file: Option<PathBuf>,
    /// A daxfs mount point; OFFSET is in the region (4 KiB aligned).
    #[arg(long, value_name = "MOUNTPOINT")]
    region: Option<PathBuf>,
}

/// The byte range of `poison inject` and `poison clear`.
#[derive(Args, Debug)]
pub struct PoisonRange {
    /// Byte offset, e.g. 1228800, 300k, 2M. In a file without --len: the page holding this byte.
    #[arg(long, value_parser = parse_size)]
    pub offset: u64,
    /// Length in bytes (default: one page); the range is widened to whole 4 KiB pages.
    #[arg(long, value_parser = parse_size)]
    pub len: Option<u64>,
}

/// How `inject` and `clear` report.
#[derive(Args, Debug)]
pub struct PoisonOutput {
    /// Print what was done as one JSON object.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    /// Print nothing on success.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum PoisonCmd {
    /// Make a range fail as a media error would: reads get EIO, mmap access SIGBUS.
    ///
    /// Prints what it did: the pages poisoned, a hole (nothing is mapped there, so nothing can
    /// be poisoned), pages poisoned already, an offset rounded to its page.
    #[command(after_help = "Example:\n  daxfs poison inject /mnt/daxfs/file --offset 2M --len 8k")]
    Inject {
        #[command(flatten)]
        target: PoisonTarget,
        #[command(flatten)]
        range: PoisonRange,
        #[command(flatten)]
        output: PoisonOutput,
    },
    /// List the bad ranges of a mount.
    ///
    /// One line per range as /sys/block/pmemX/badblocks prints them: `<sector> <count>` (512-byte
    /// sectors of the region); nothing when there are none. --json adds the owning file and the
    /// offset in it where known.
    #[command(after_help = "Example:\n  daxfs poison list /mnt/daxfs --json")]
    List {
        /// A daxfs mount point.
        mountpoint: PathBuf,
        /// Print JSON, with the owning file and file offset where known.
        #[arg(long)]
        json: bool,
    },
    /// Clear poison in a range (the data there is lost; it reads as zeros).
    #[command(after_help = "Example:\n  daxfs poison clear --region /mnt/daxfs --offset 8M")]
    Clear {
        #[command(flatten)]
        target: PoisonTarget,
        #[command(flatten)]
        range: PoisonRange,
        #[command(flatten)]
        output: PoisonOutput,
    },
}

/// Runs a `poison` subcommand.
pub fn run(cmd: PoisonCmd) -> CmdResult {
    match cmd {
        PoisonCmd::Inject {
            target,
            range,
            output,
        } => change(target, range, output, false),
        PoisonCmd::Clear {
            target,
            range,
            output,
        } => change(target, range, output, true),
        PoisonCmd::List { mountpoint, json } => list(&mountpoint, json),
    }
}

/// A size in words: `4 MiB` when exact, else `4.1 MiB (4299161 bytes)`.
fn size_words(n: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    if n < 1024 {
        return format!("{n} bytes");
    }
    format!("{} ({n} bytes)", crate::units::human(n))
}

/// Checks that the byte range `[offset, end)` lies inside `what`, of `size` bytes; `hint` ends
/// the message of a range that runs past its end.
fn within((offset, end): (u64, u64), size: u64, what: &str, hint: &str) -> Result<(), String> {
    if offset >= size {
        return Err(format!(
            "offset {} is past the end of {what} ({})",
            size_words(offset),
            size_words(size)
        ));
    }
    if end > size {
        return Err(format!(
            "the range [{offset:#x}, {end:#x}) runs past the end of {what} ({}){hint}",
            size_words(size)
        ));
    }
    Ok(())
}

/// What `inject`/`clear` asks: the target, whether it is a region offset, the byte range.
struct Request {
    path: PathBuf,
    by_region: bool,
    offset: u64,
    len: u64,
    /// The range as given, before a default length picked the page of `offset`.
    given: (u64, Option<u64>),
}

/// Checks what the command line can know before asking the daemon, so that the error names the
/// problem: the kind of the target, the range against the file's (or region's) size, alignment.
fn check(target: PoisonTarget, range: PoisonRange, verb: &str) -> Result<Request, String> {
    let (path, by_region) = match (target.file, target.region) {
        (Some(f), None) => (f, false),
        (None, Some(m)) => (m, true),
        _ => return Err("give either FILE or --region MOUNTPOINT".into()),
    };
    let given = (range.offset, range.len);
    let (offset, len) = match range.len {
        Some(0) => return Err("--len must be larger than 0".into()),
        Some(n) => (range.offset, n),
        // One page: for a file, the page that holds the byte at --offset (a region offset must
        // be aligned: checked below).
        None if by_region => (range.offset, PAGE),
        None => (range.offset - range.offset % PAGE, PAGE),
    };
    let end = offset
        .checked_add(len)
        .ok_or_else(|| format!("--offset {offset} plus --len {len} overflows"))?;
    let w = path.display();
    let md = std::fs::metadata(&path).map_err(|e| format!("cannot open {w}: {e}"))?;
    if by_region {
        if !md.is_dir() {
            return Err(format!(
                "--region needs the mount point, not a file ({w} is not a directory; to {verb} \
                 an offset of this file, give it without --region)"
            ));
        }
        if offset % PAGE != 0 {
            return Err(format!(
                "--region offset {offset} is not 4 KiB-aligned: the region's bad blocks are \
                 whole 4 KiB blocks (try --offset {})",
                offset - offset % PAGE
            ));
        }
        let what = format!("the region of {w}");
        within((offset, end), ctl::stat(&path)?.size, &what, "")?;
    } else {
        if md.is_dir() {
            return Err(format!(
                "{w} is a directory: poison {verb} takes a regular file, or --region MOUNTPOINT \
                 with a region offset"
            ));
        }
        if !md.is_file() {
            return Err(format!(
                "{w} is not a regular file: only file data can be poisoned"
            ));
        }
        within(
            (offset, end),
            md.size(),
            &w.to_string(),
            ": give a shorter --len",
        )?;
    }
    Ok(Request {
        path,
        by_region,
        offset,
        len,
        given,
    })
}

fn change(
    target: PoisonTarget,
    range: PoisonRange,
    output: PoisonOutput,
    clear: bool,
) -> CmdResult {
    let verb = if clear { "clear" } else { "inject" };
    let req = check(target, range, verb)?;
    let report = ctl::poison(&req.path, req.by_region, req.offset, req.len, clear)?;
    if output.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    let Some(r) = report else {
        // A daemon older than the reporting requests: it did it, but cannot say what.
        println!(
            "poison {verb}: done (the daemon of this mount does not report what it did; \
             remount with this daxfs to see it)"
        );
        return Ok(ExitCode::SUCCESS);
    };
    if output.json {
        println!("{}", json(&req, &r, clear));
    } else {
        print!("{}", sentences(&req, &r, clear));
    }
    Ok(ExitCode::SUCCESS)
}

/// The `--json` object of an inject or clear.
fn json(req: &Request, r: &DaxfsPoisonReport, clear: bool) -> serde_json::Value {
    serde_json::json!({
        "command": if clear { "clear" } else { "inject" },
        "target": req.path.display().to_string(),
        "region": req.by_region,
        "offset": req.given.0,
        "len": req.given.1.unwrap_or(PAGE),
        "start": r.start,
        "end": r.end,
        "rounded": r.start != req.given.0 || r.end != req.given.0 + req.given.1.unwrap_or(r.end - r.start),
        "pages": r.pages,
        "blocks": r.blocks,
        "already": r.already,
        "holes": r.holes,
        "files": r.files,
    })
}

/// `n page(s)`.
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `was` or `were`, for `n` things.
fn were(n: u64) -> &'static str {
    if n == 1 {
        "was"
    } else {
        "were"
    }
}

/// The report of an inject or clear, one line per fact.
fn sentences(req: &Request, r: &DaxfsPoisonReport, clear: bool) -> String {
    let mut out = rounding(req, r);
    let w = req.path.display().to_string();
    let span = format!("[{:#x}, {:#x})", r.start, r.end);
    out += &match (req.by_region, clear) {
        (true, _) => region_sentences(&w, &span, r, clear),
        (false, true) => clear_sentences(&w, &span, r),
        (false, false) => inject_sentences(&w, &span, r),
    };
    out
}

/// What was asked is not what was done: the range widened to whole pages.
fn rounding(req: &Request, r: &DaxfsPoisonReport) -> String {
    let (off, len) = req.given;
    match len {
        None if off % PAGE != 0 => {
            format!(
                "offset {off} rounded to the page [{}, {})\n",
                r.start, r.end
            )
        }
        Some(n) if off % PAGE != 0 || (off + n) % PAGE != 0 => format!(
            "range [{off}, {}) rounded to whole pages [{}, {})\n",
            off + n,
            r.start,
            r.end
        ),
        _ => String::new(),
    }
}

/// `--region` inject or clear: blocks, and the file pages on them.
fn region_sentences(w: &str, span: &str, r: &DaxfsPoisonReport, clear: bool) -> String {
    let mut out = String::new();
    let files = if r.pages == 0 {
        "no file uses them".to_string()
    } else {
        format!("{} of {}", count(r.pages, "page"), count(r.files, "file"))
    };
    let n = count(r.already, "block");
    if clear {
        let _ = writeln!(
            out,
            "cleared {} {span} of the region of {w} ({files}; cleared file pages read as zeros)",
            count(r.blocks, "bad block")
        );
        if r.already > 0 {
            let _ = writeln!(
                out,
                "{n} of {span} {} not bad: nothing to clear there",
                were(r.already)
            );
        }
    } else {
        let _ = writeln!(
            out,
            "poisoned {} {span} of the region of {w} ({files})",
            count(r.blocks, "block")
        );
        if r.already > 0 {
            let _ = writeln!(out, "{n} of {span} {} bad already", were(r.already));
        }
    }
    out
}

/// File clear: pages cleared, pages that were not poisoned.
fn clear_sentences(w: &str, span: &str, r: &DaxfsPoisonReport) -> String {
    let mut out = String::new();
    if r.pages > 0 {
        let _ = writeln!(
            out,
            "cleared {} {span} of {w}: they read as zeros now",
            count(r.pages, "page")
        );
    }
    if r.already > 0 && r.end - r.start == PAGE {
        let _ = writeln!(
            out,
            "page {} is not poisoned: nothing to clear",
            r.start / PAGE
        );
    } else if r.already > 0 {
        let _ = writeln!(
            out,
            "{} of {span} {} not poisoned: nothing to clear there",
            count(r.already, "page"),
            were(r.already)
        );
    }
    out
}

/// File inject: pages poisoned, holes, pages poisoned already.
fn inject_sentences(w: &str, span: &str, r: &DaxfsPoisonReport) -> String {
    let mut out = String::new();
    let one_page = r.end - r.start == PAGE;
    let first_page = r.start / PAGE;
    if r.pages > 0 {
        let _ = writeln!(out, "poisoned {} {span} of {w}", count(r.pages, "page"));
    }
    if r.holes > 0 && one_page {
        let _ = writeln!(
            out,
            "page {first_page} is a hole: nothing is mapped there, nothing poisoned"
        );
    } else if r.holes > 0 {
        let _ = writeln!(
            out,
            "{} of {span} are holes: nothing is mapped there, nothing poisoned",
            count(r.holes, "page")
        );
    }
    if r.already > 0 && one_page {
        let _ = writeln!(out, "page {first_page} was poisoned already");
    } else if r.already > 0 {
        let _ = writeln!(
            out,
            "{} of {span} {} poisoned already",
            count(r.already, "page"),
            were(r.already)
        );
    }
    out
}

fn list(mountpoint: &Path, json: bool) -> CmdResult {
    let bad = ctl::badblocks(mountpoint)?;
    if json {
        let paths = if bad.iter().any(|b| b.ino != 0) {
            inode_paths(mountpoint)
        } else {
            Default::default()
        };
        let v: Vec<_> = bad
            .iter()
            .map(|b| {
                serde_json::json!({
                    "sector": b.region_offset / 512,
                    "count": b.len / 512,
                    "offset": b.region_offset,
                    "length": b.len,
                    "region_offset": b.region_offset,
                    "len": b.len,
                    "ino": (b.ino != 0).then_some(b.ino),
                    "path": paths.get(&b.ino),
                    "file_offset": (b.file_offset != u64::MAX).then_some(b.file_offset),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else if bad.is_empty() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        // A pipe keeps the sysfs format (nothing at all); a person gets a sentence.
        println!("no bad blocks");
    } else {
        // Coalesced as /sys/block/pmemX/badblocks prints them: adjacent ranges of different
        // owners are one line.
        let mut lines: Vec<(u64, u64)> = Vec::new();
        for b in &bad {
            match lines.last_mut() {
                Some((s, n)) if *s + *n == b.region_offset => *n += b.len,
                _ => lines.push((b.region_offset, b.len)),
            }
        }
        for (s, n) in lines {
            println!("{} {}", s / 512, n / 512);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Inode number → path under `root` (first path found), for `poison list --json`.
fn inode_paths(root: &Path) -> std::collections::HashMap<u64, String> {
    let mut out = std::collections::HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if let Ok(md) = std::fs::symlink_metadata(&p) {
                out.entry(md.ino())
                    .or_insert_with(|| p.display().to_string());
                if md.is_dir() {
                    stack.push(p);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(by_region: bool, given: (u64, Option<u64>)) -> Request {
        Request {
            path: "F".into(),
            by_region,
            offset: 0,
            len: 0,
            given,
        }
    }

    fn report(start: u64, end: u64) -> DaxfsPoisonReport {
        DaxfsPoisonReport {
            start,
            end,
            ..DaxfsPoisonReport::default()
        }
    }

    #[test]
    fn inject_sentences() {
        let r = DaxfsPoisonReport {
            pages: 512,
            blocks: 512,
            ..report(0, 2 << 20)
        };
        assert_eq!(
            sentences(&req(false, (0, Some(2 << 20))), &r, false),
            "poisoned 512 pages [0x0, 0x200000) of F\n"
        );
        let r = DaxfsPoisonReport {
            holes: 1,
            ..report(7 * PAGE, 8 * PAGE)
        };
        assert_eq!(
            sentences(&req(false, (7 * PAGE, None)), &r, false),
            "page 7 is a hole: nothing is mapped there, nothing poisoned\n"
        );
        let r = DaxfsPoisonReport {
            pages: 1,
            ..report(0, PAGE)
        };
        assert_eq!(
            sentences(&req(false, (123, None)), &r, false),
            "offset 123 rounded to the page [0, 4096)\npoisoned 1 page [0x0, 0x1000) of F\n"
        );
        let r = DaxfsPoisonReport {
            already: 1,
            ..report(0, PAGE)
        };
        assert_eq!(
            sentences(&req(false, (0, None)), &r, false),
            "page 0 was poisoned already\n"
        );
    }

    #[test]
    fn clear_and_region_sentences() {
        let r = DaxfsPoisonReport {
            pages: 2,
            blocks: 2,
            already: 1,
            ..report(0, 3 * PAGE)
        };
        assert_eq!(
            sentences(&req(false, (0, Some(3 * PAGE))), &r, true),
            "cleared 2 pages [0x0, 0x3000) of F: they read as zeros now\n\
             1 page of [0x0, 0x3000) was not poisoned: nothing to clear there\n"
        );
        let r = DaxfsPoisonReport {
            pages: 3,
            blocks: 4,
            files: 1,
            ..report(1 << 20, (1 << 20) + 4 * PAGE)
        };
        assert_eq!(
            sentences(&req(true, (1 << 20, Some(4 * PAGE))), &r, false),
            "poisoned 4 blocks [0x100000, 0x104000) of the region of F (3 pages of 1 file)\n"
        );
    }

    #[test]
    fn sizes_in_words() {
        assert_eq!(size_words(100 << 20), "100 MiB");
        assert_eq!(size_words(4 << 20), "4 MiB");
        assert_eq!(size_words(12), "12 bytes");
        assert_eq!(size_words(5000), "4.9 KiB (5000 bytes)");
    }
}
