//! The `daxfs` command line: `mkfs`, `mount` (also as the `mount.fuse.daxfs` helper), `umount`,
//! `fsck`, `stat`, `poison`, `bugs`, `install-helper`.
//!
//! Every error names what is wrong and what to do, and exits with status 1 (2 for usage errors,
//! from clap). Nothing here knows the filesystem's internals: it calls the library's public API
//! and, for a mounted filesystem, the control ioctls.

mod bugs;
mod ctl;
mod exec;
mod helper;
mod logger;
mod mkfs;
mod mount;
mod poison;
mod units;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use daxfs::fs::{DaxFs, OpenOptions, RegionStat};
use daxfs::fuse::mounts::retry_while_releasing;

use units::{human, parse_size};

/// daxfs: a FUSE filesystem whose files live in a persistent-memory region (a file, /dev/pmemN or
/// /dev/daxN.M), with a multi-order DAX entry index and memory-failure (poison) injection.
#[derive(Parser, Debug)]
#[command(name = "daxfs", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Format REGION as a fresh daxfs (creates a sparse file of --size if REGION is new).
    ///
    /// A region that holds a daxfs, other data or another filesystem is refused without --force,
    /// and so is a --size that differs from an existing file's size. A sparse region file larger
    /// than the free space under it is formatted with a warning: writes fail with ENOSPC once the
    /// space is used up.
    #[command(after_help = "Example:\n  daxfs mkfs /dev/shm/region.img --size 1G")]
    Mkfs {
        /// Region: a regular file, /dev/pmemN (or any block device) or /dev/daxN.M.
        region: PathBuf,
        /// Size of a new (or grown) region file, e.g. 1G, 512M, 4k. Required for a new file.
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
        /// Number of inodes (default: one per 16 KiB of region, at least 1024).
        #[arg(long)]
        inodes: Option<u64>,
        /// Format even when REGION holds a daxfs or other data, and resize a region file to a
        /// --size that differs from its size (everything on it is lost).
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Mount REGION on MOUNTPOINT; returns once the mount is ready.
    #[command(
        after_help = "Example:\n  daxfs mount /dev/shm/region.img /mnt/daxfs -o dax=never,noatime"
    )]
    Mount(MountArgs),
    /// Unmount a daxfs mount (also clears a dead mount left by a crashed daemon).
    #[command(after_help = "Example:\n  daxfs umount /mnt/daxfs")]
    Umount {
        /// The mount point.
        mountpoint: PathBuf,
    },
    /// Check a region's metadata (superblock, journal, inodes, block maps, directories, link
    /// counts, bad-block table); exit 0 when clean, else list each problem.
    ///
    /// The region must not be mounted (unmount it first). --repair fixes what can be fixed and
    /// checks again.
    #[command(after_help = "Example:\n  daxfs fsck --repair /dev/shm/region.img")]
    Fsck {
        /// The region (a file, /dev/pmemN or /dev/daxN.M), not mounted.
        region: PathBuf,
        /// Fix what can be fixed.
        #[arg(long)]
        repair: bool,
    },
    /// Show size, used, free, free 2 MiB runs, inodes and bad blocks of a region or mount; or a
    /// file's DAX mappings with --mappings; or a mount's FUSE request counters with --requests.
    #[command(after_help = "Examples:\n  daxfs stat /mnt/daxfs\n  \
                              daxfs stat --mappings /mnt/daxfs/file --json")]
    Stat {
        /// A region or a mount point. An unmounted region is opened directly; a mounted one (or
        /// a mount point) is asked through its mount's daemon.
        #[arg(required_unless_present = "mappings")]
        target: Option<PathBuf>,
        /// Print the DAX entries of FILE, a regular file on a daxfs mount: file index, order
        /// (pmd/pte), region block, flags.
        #[arg(long, value_name = "FILE", conflicts_with = "target")]
        mappings: Option<PathBuf>,
        /// Print the requests the daemon of mount point TARGET received since mount, per FUSE
        /// opcode (LOOKUP, WRITE, GETXATTR, ...).
        #[arg(long, requires = "target")]
        requests: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Inject, list and clear memory failures (poison).
    #[command(after_help = "Example:\n  daxfs poison inject /mnt/daxfs/file --offset 2M")]
    Poison {
        #[command(subcommand)]
        cmd: poison::PoisonCmd,
    },
    /// The catalogue of historical fs/dax.c entry-locking bugs: list them, replay one.
    #[command(after_help = "Example:\n  daxfs bugs list")]
    Bugs {
        #[command(subcommand)]
        cmd: bugs::BugsCmd,
    },
    /// Run a command with true DAX mmap of daxfs files (the preload library).
    #[command(
        long_about = exec::LONG_ABOUT,
        after_help = "Example:\n  daxfs exec -- ./pmem-app /mnt/daxfs/pool"
    )]
    Exec(exec::ExecArgs),
    /// Install the mount(8) helper symlink DIR/mount.fuse.daxfs -> this binary, so that
    /// `mount -t fuse.daxfs REGION MOUNTPOINT` works.
    #[command(after_help = "Example:\n  daxfs install-helper --dir /usr/local/sbin")]
    InstallHelper {
        /// Directory mount(8) searches for helpers.
        #[arg(long, default_value = "/sbin")]
        dir: PathBuf,
    },
}

#[derive(Args, Debug)]
struct MountArgs {
    /// Region to mount (formatted with `daxfs mkfs`).
    region: PathBuf,
    /// Existing directory to mount on.
    mountpoint: PathBuf,
    /// Mount options, comma separated (repeatable):
    ///   dax=always|never|inode (default always), dax_bugs=ID:ID|none;
    ///   ro, rw; remount (change the flags of a mounted MOUNTPOINT);
    ///   norecovery (alias noload; with ro only): do not replay the journal;
    ///   allow_other (default), noallow_other;
    ///   suid, nosuid, dev, nodev (default for root: dev,suid; for others: nodev,nosuid),
    ///   exec, noexec, sync, dirsync;
    ///   relatime (default), strictatime, nostrictatime, noatime, atime, nodiratime, diratime;
    ///   io_uring=auto (default): FUSE-over-io_uring when the fuse module's enable_uring
    ///   is on, else /dev/fuse; io_uring: the rings (warn if refused); noio_uring: /dev/fuse;
    ///   io_uring_sched=idle (default)|normal: priority of the ring threads;
    ///   threads=N, log=FILE (as --threads, --log, for the mount helper).
    /// mount(8)'s generic options (defaults, auto, _netdev, x-*, ...) are accepted.
    #[arg(short = 'o', value_name = "OPTS", verbatim_doc_comment)]
    options: Vec<String>,
    /// Session threads, each with its own /dev/fuse descriptor (default: number of cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Stay in the foreground and serve until unmounted (SIGTERM/SIGINT unmount).
    #[arg(long)]
    foreground: bool,
    /// Log file of the background daemon (default: no log).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Internal: descriptor on which a background daemon reports readiness.
    #[arg(long, hide = true)]
    ready_fd: Option<i32>,
}

pub(crate) type CmdResult = Result<ExitCode, String>;

/// How long fsck and stat wait for a just-unmounted daemon to release its region.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args.first().cloned().unwrap_or_default();
    if helper::is_helper_name(&argv0) {
        let name = argv0
            .rsplit('/')
            .next()
            .unwrap_or("mount.fuse.daxfs")
            .to_string();
        return finish(&name, helper_main(&args[1..]));
    }
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Mount(_)) {
        // Die quietly on a closed pipe (`daxfs stat ... | head`) as other tools do, instead of
        // panicking in println!. Not for `mount`: a daemon must not die of a closed pipe.
        // SAFETY: setting a signal disposition to SIG_DFL before any other thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    finish("daxfs", run(cli))
}

fn finish(name: &str, r: CmdResult) -> ExitCode {
    match r {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("{name}: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn helper_main(args: &[String]) -> CmdResult {
    let h = helper::parse_helper_args(args)?;
    let config = daxfs::fuse::parse_options(&h.options).map_err(|e| e.to_string())?;
    if h.fake {
        return Ok(ExitCode::SUCCESS);
    }
    let m = MountArgs {
        region: PathBuf::from(&h.source),
        mountpoint: PathBuf::from(&h.mountpoint),
        options: vec![h.options.clone()],
        threads: config.threads,
        foreground: false,
        log: config.log.as_ref().map(PathBuf::from),
        ready_fd: None,
    };
    // A region a daxfs daemon already serves is shared (bind mount), as a kernel filesystem
    // mounted twice shares its superblock; `daxfs mount` itself refuses it.
    if !config.remount
        && daxfs::fuse::share::share_mounted_region(&m.region, &m.mountpoint, &h.options)
            .map_err(|e| e.to_string())?
            .is_some()
    {
        return Ok(ExitCode::SUCCESS);
    }
    mount::mount(&m)
}

fn run(cli: Cli) -> CmdResult {
    match cli.cmd {
        Cmd::Mkfs {
            region,
            size,
            inodes,
            force,
        } => mkfs::mkfs(&mkfs::Mkfs {
            region: &region,
            size,
            inodes,
            force,
        }),
        Cmd::Mount(m) => mount::mount(&m),
        Cmd::Bugs { cmd } => bugs::run(cmd),
        Cmd::Umount { mountpoint } => {
            let u = daxfs::fuse::unmount(&mountpoint, std::time::Duration::from_secs(20))
                .map_err(|e| e.to_string())?;
            if u.was_dead {
                eprintln!(
                    "daxfs: cleared {} (its daemon was gone)",
                    mountpoint.display()
                );
            }
            if u.lazy {
                eprintln!(
                    "daxfs: {} was busy: detached; it goes away when its last user closes it",
                    mountpoint.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Fsck { region, repair } => fsck(&region, repair),
        Cmd::Stat {
            target,
            mappings,
            requests,
            json,
        } => match (mappings, target) {
            (Some(file), _) => stat_mappings(&file, json),
            (None, Some(t)) if requests => stat_requests(&t, json),
            (None, Some(t)) => stat(&t, json),
            (None, None) => Err("give a REGION or MOUNTPOINT, or --mappings FILE".into()),
        },
        Cmd::Poison { cmd } => poison::run(cmd),
        Cmd::InstallHelper { dir } => install_helper(&dir),
        Cmd::Exec(a) => exec::run(a),
    }
}

fn fsck(region: &Path, repair: bool) -> CmdResult {
    let problems = retry_while_releasing(region, RELEASE_WAIT, || DaxFs::fsck(region, repair))
        .map_err(|e| e.to_string())?;
    if problems.is_empty() {
        println!("{}: clean", region.display());
        return Ok(ExitCode::SUCCESS);
    }
    if repair {
        for p in &problems {
            println!("fixed: {p}");
        }
        let left = DaxFs::fsck(region, false).map_err(|e| e.to_string())?;
        if left.is_empty() {
            println!("{}: clean after repair", region.display());
            return Ok(ExitCode::SUCCESS);
        }
        for p in &left {
            println!("problem: {p}");
        }
        return Err(format!(
            "{}: {} problem(s) remain after repair",
            region.display(),
            left.len()
        ));
    }
    for p in &problems {
        println!("problem: {p}");
    }
    Err(format!(
        "{}: {} problem(s) found; run 'daxfs fsck --repair {}' to fix them",
        region.display(),
        problems.len(),
        region.display()
    ))
}

/// Whether `p` lives on a FUSE filesystem (then it is asked through the control ioctl; anything
/// else is a region opened directly).
// `f_type` is `__fsword_t`: i64 on x86-64, i32 on some 32-bit targets; the cast is not useless there.
#[allow(clippy::unnecessary_cast)]
fn is_on_fuse(p: &Path) -> bool {
    const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
    nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type().0 as i64 == FUSE_SUPER_MAGIC)
}

fn stat(target: &Path, json: bool) -> CmdResult {
    use daxfs::fuse::{mounts::transport_in_use, Transport};
    // The transport of a mount: the one its daemon agreed with the kernel.
    let mut transport = None;
    let st: RegionStat = if is_on_fuse(target) {
        transport = transport_in_use(target);
        ctl::stat(target)?
    } else if let Some(mp) = daxfs::fuse::mounts::region_mounted_on(target) {
        // A mounted region is asked through its mount.
        transport = transport_in_use(&mp);
        ctl::stat(&mp)?
    } else if target.is_dir() {
        return Err(format!(
            "{} is a directory but not a daxfs mount point; give a region or a mount point",
            target.display()
        ));
    } else if !target.exists() {
        return Err(format!(
            "{} does not exist: give a region file or device, or a daxfs mount point",
            target.display()
        ));
    } else {
        let opts = OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        };
        let fs = retry_while_releasing(target, RELEASE_WAIT, || DaxFs::open(target, &opts))
            .map_err(|e| e.to_string())?;
        let st = fs.region_stat();
        fs.close().map_err(|e| e.to_string())?;
        st
    };
    if json {
        let mut v = serde_json::to_value(&st).map_err(|e| e.to_string())?;
        v["path"] = serde_json::Value::String(target.display().to_string());
        if let Some(t) = transport {
            v["transport"] = match t {
                Transport::IoUring => "io_uring",
                _ => "dev_fuse",
            }
            .into();
        }
        println!("{v}");
    } else {
        let bs = st.block_size.max(1);
        println!("path:           {}", target.display());
        println!("size:           {} ({})", st.size, human(st.size));
        println!("block size:     {}", st.block_size);
        println!(
            "used:           {} blocks ({})",
            st.used_blocks,
            human(st.used_blocks * bs)
        );
        println!(
            "free:           {} blocks ({})",
            st.free_blocks,
            human(st.free_blocks * bs)
        );
        println!("free 2M runs:   {}", st.free_2m_runs);
        println!(
            "inodes:         {} used of {}",
            st.inodes_used, st.inodes_total
        );
        println!("bad blocks:     {}", st.bad_blocks);
        match transport {
            Some(Transport::IoUring) => println!("transport:      io_uring (FUSE-over-io_uring)"),
            Some(_) => println!("transport:      /dev/fuse"),
            None => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn stat_requests(target: &Path, json: bool) -> CmdResult {
    use daxfs::fuse::stats::{Op, RING_SLOT};
    let mp = if is_on_fuse(target) {
        target.to_path_buf()
    } else if let Some(mp) = daxfs::fuse::mounts::region_mounted_on(target) {
        mp
    } else {
        return Err(format!(
            "{}: --requests needs a daxfs mount point (or a mounted region)",
            target.display()
        ));
    };
    let slots = ctl::req_stats(&mp)?;
    // Every opcode the daemon counts, in opcode order, then any other nonzero slot.
    // Slot 0 (no opcode) counts requests that came through FUSE-over-io_uring rings: last, as
    // IO_URING, when there were any.
    let mut rows: Vec<(String, u64)> = slots
        .iter()
        .filter(|&&(slot, _)| slot != RING_SLOT)
        .filter_map(|&(slot, n)| match Op::from_opcode(slot) {
            Some(op) => Some((op.name().to_string(), n)),
            None if n != 0 => Some((format!("OPCODE_{slot}"), n)),
            None => None,
        })
        .collect();
    if let Some(&(_, n)) = slots.iter().find(|&&(slot, n)| slot == RING_SLOT && n != 0) {
        rows.push(("IO_URING".to_string(), n));
    }
    if json {
        let map: serde_json::Map<_, _> = rows
            .iter()
            .map(|(k, n)| (k.clone(), serde_json::Value::from(*n)))
            .collect();
        let v = serde_json::json!({
            "path": target.display().to_string(),
            "requests": map,
        });
        println!("{v}");
    } else {
        println!("path: {}", target.display());
        for (k, n) in &rows {
            println!("{k:<16}{n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn order_name(order: u8) -> String {
    match order {
        0 => "pte".into(),
        9 => "pmd".into(),
        o => format!("order{o}"),
    }
}

fn stat_mappings(file: &Path, json: bool) -> CmdResult {
    if file.is_dir() {
        return Err(format!(
            "{} is a directory: --mappings shows the DAX entries of a regular file",
            file.display()
        ));
    }
    let maps = ctl::mappings(file)?;
    if json {
        let v: Vec<_> = maps
            .iter()
            .map(|m| {
                serde_json::json!({
                    "file_index": m.file_index,
                    "order": order_name(m.order),
                    "order_bits": m.order,
                    "region_block": m.region_block,
                    "flags": m.flags,
                    "poisoned": m.poisoned(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        // `INDEX ORDER BLOCK FLAGS`, and a fifth word `poisoned` on a poisoned page's line.
        for m in &maps {
            println!(
                "{} {} {} {:#x}{}",
                m.file_index,
                order_name(m.order),
                m.region_block,
                m.flags,
                if m.poisoned() { " poisoned" } else { "" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn install_helper(dir: &Path) -> CmdResult {
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| format!("cannot find this binary's path: {e}"))?;
    if !dir.is_dir() {
        return Err(format!(
            "{} is not a directory; give --dir DIR",
            dir.display()
        ));
    }
    let link = dir.join("mount.fuse.daxfs");
    match std::fs::symlink_metadata(&link) {
        Ok(md) if md.file_type().is_symlink() || md.is_file() => std::fs::remove_file(&link)
            .map_err(|e| format!("cannot replace {}: {e}", link.display()))?,
        Ok(_) => return Err(format!("{} exists and is not a file", link.display())),
        Err(_) => {}
    }
    std::os::unix::fs::symlink(&exe, &link).map_err(|e| {
        format!(
            "cannot create {}: {e} (run as root, or give --dir)",
            link.display()
        )
    })?;
    println!("{} -> {}", link.display(), exe.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn poison_needs_exactly_one_target() {
        assert!(Cli::try_parse_from(["daxfs", "poison", "inject", "--offset", "4k"]).is_err());
        assert!(Cli::try_parse_from([
            "daxfs", "poison", "inject", "f", "--region", "/m", "--offset", "0"
        ])
        .is_err());
        let c = Cli::try_parse_from(["daxfs", "poison", "inject", "f", "--offset", "2M"]).unwrap();
        match c.cmd {
            Cmd::Poison {
                cmd: poison::PoisonCmd::Inject { range, .. },
            } => assert_eq!((range.offset, range.len), (2 << 20, None)),
            _ => panic!("wrong command"),
        }
    }

    #[test]
    fn stat_forms() {
        assert!(Cli::try_parse_from(["daxfs", "stat"]).is_err());
        assert!(Cli::try_parse_from(["daxfs", "stat", "--mappings", "f", "--json"]).is_ok());
        assert!(Cli::try_parse_from(["daxfs", "stat", "/r", "--json"]).is_ok());
        assert!(Cli::try_parse_from(["daxfs", "stat", "--requests", "/m", "--json"]).is_ok());
        assert!(Cli::try_parse_from(["daxfs", "stat", "--requests"]).is_err());
    }

    #[test]
    fn order_names() {
        assert_eq!(order_name(0), "pte");
        assert_eq!(order_name(9), "pmd");
        assert_eq!(order_name(18), "order18");
    }
}
