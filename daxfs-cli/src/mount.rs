//! `daxfs mount`: in the foreground, serve here; otherwise start this binary again as a
//! background daemon (new session, output to `--log`) and return once it reports the mount ready.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};

use daxfs::fuse::{default_threads, parse_options, serve, MountSpec};

use crate::{logger, CmdResult, MountArgs};

pub fn mount(m: &MountArgs) -> CmdResult {
    let opts = m.options.join(",");
    let config = parse_options(&opts).map_err(|e| e.to_string())?;
    if config.remount {
        daxfs::fuse::mounts::remount(&m.mountpoint, &opts).map_err(|e| e.to_string())?;
        return Ok(ExitCode::SUCCESS);
    }
    let threads = match m.threads.or(config.threads) {
        Some(0) => return Err("--threads must be at least 1".into()),
        Some(n) => n,
        None => default_threads(),
    };
    if !m.region.exists() {
        return Err(format!(
            "region {} does not exist; create it with 'daxfs mkfs {} --size SIZE'",
            m.region.display(),
            m.region.display()
        ));
    }
    if m.ready_fd.is_none() {
        // Said once, by the command the user typed (not again by the daemon it starts).
        crate::mkfs::warn_if_short(&m.region);
    }
    if m.foreground {
        logger::init();
        let ready = m.ready_fd.map(|fd| {
            // SAFETY: the parent passed this descriptor (the write end of the readiness pipe)
            // to us and nothing else in this process owns it.
            unsafe { File::from_raw_fd(fd) }
        });
        let spec = MountSpec {
            region: m.region.clone(),
            mountpoint: m.mountpoint.clone(),
            config,
            threads,
        };
        serve(&spec, ready).map_err(|e| e.to_string())?;
        return Ok(ExitCode::SUCCESS);
    }
    background(m, &opts, threads)
}

fn background(m: &MountArgs, opts: &str, threads: usize) -> CmdResult {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let log = m
        .log
        .clone()
        .or_else(|| parse_options(opts).ok()?.log.map(Into::into));
    let (out, err) = match &log {
        Some(p) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("cannot open log file {}: {e}", p.display()))?;
            let f2 = f
                .try_clone()
                .map_err(|e| format!("log file {}: {e}", p.display()))?;
            (Stdio::from(f), Stdio::from(f2))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    let (reader, writer) = std::io::pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    let wfd = writer.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.arg("mount")
        .arg(&m.region)
        .arg(&m.mountpoint)
        .arg("--foreground")
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--ready-fd")
        .arg(wfd.to_string())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    if !opts.is_empty() {
        cmd.arg("-o").arg(opts);
    }
    // SAFETY: the closure runs in the child between fork and exec and calls only setsid(2) and
    // fcntl(2), which are async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if libc::fcntl(wfd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))?;
    drop(writer);
    let mut line = String::new();
    let _ = BufReader::new(reader).read_line(&mut line);
    let line = line.trim_end();
    if line.starts_with("OK") {
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(msg) = line.strip_prefix("ERR ") {
        let _ = child.wait();
        return Err(msg.to_string());
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    Err(format!(
        "the daemon exited ({status}) before the mount was ready{}",
        match &log {
            Some(p) => format!("; see {}", p.display()),
            None => "; run with --foreground or --log FILE to see why".into(),
        }
    ))
}
