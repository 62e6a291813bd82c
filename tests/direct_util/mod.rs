//! Helpers of the direct-mapping tests: the control ioctls of `daxfs exec` issued by hand, a
//! lease connection, mounts with a chosen lease timeout and log, the preload library and
//! programs compiled for a test.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use daxfs::direct::{seqpacket, wire};
use daxfs::ioctl::direct::*;
use daxfs::ioctl::{Versioned, MORE};

use crate::common::{daxfs_bin, workspace, MountGuard};

/// `DAXFS_IOC_DIRECT_INFO` on `fd`.
pub fn direct_info(fd: RawFd) -> std::io::Result<DaxfsDirectInfo> {
    let mut i = DaxfsDirectInfo::new_request();
    // SAFETY: the request number encodes the struct's size; `i` is writable for it.
    let r = unsafe { libc::ioctl(fd, DAXFS_IOC_DIRECT_INFO as _, &mut i as *mut _) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(i)
}

/// `DAXFS_IOC_GET_FMAP` of pages `[first, end)` with `flags`, all pages. Return: file size and
/// extents.
pub fn get_fmap(
    fd: RawFd,
    token: u64,
    epoch: u64,
    first: u64,
    end: u64,
    flags: u32,
) -> std::io::Result<(u64, Vec<DaxfsFmapExtent>)> {
    let mut out = Vec::new();
    let mut cursor = first;
    loop {
        let mut f = DaxfsFmap::new_request();
        f.flags = flags;
        f.token = token;
        f.epoch = epoch;
        f.first = first;
        f.end = end;
        f.cursor = cursor;
        // SAFETY: as above.
        let r = unsafe { libc::ioctl(fd, DAXFS_IOC_GET_FMAP as _, &mut f as *mut _) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        out.extend_from_slice(&f.extents[..f.count as usize]);
        if f.out_flags & MORE == 0 {
            return Ok((f.file_size, out));
        }
        assert!(f.cursor > cursor, "the cursor moves on");
        cursor = f.cursor;
    }
}

/// A lease connection made by hand.
pub struct Lease {
    pub fd: OwnedFd,
    pub token: u64,
    pub access: u64,
}

impl Lease {
    /// Connects to the lease socket `info` names and reads the welcome. Return: `None` when the
    /// daemon closed the connection instead (not admitted).
    pub fn connect(info: &DaxfsDirectInfo) -> Option<Lease> {
        let fd = seqpacket::connect(info.socket_name()).expect("connect to the lease socket");
        let (pid, _, _) = seqpacket::peer_cred(fd.as_raw_fd()).unwrap();
        assert_eq!(pid, info.daemon_pid, "the socket's peer is the daemon");
        let w = seqpacket::recv(fd.as_raw_fd()).expect("recv")?;
        assert_eq!(w.kind, wire::WELCOME);
        Some(Lease {
            fd,
            token: w.seq,
            access: w.arg,
        })
    }

    /// The next message (blocking).
    pub fn recv(&self) -> wire::Msg {
        seqpacket::recv(self.fd.as_raw_fd())
            .expect("recv")
            .expect("the daemon keeps the connection")
    }

    /// Acknowledges revocation `seq`.
    pub fn ack(&self, seq: u64) {
        let mut m = wire::Msg::new(wire::ACK);
        m.seq = seq;
        seqpacket::send(self.fd.as_raw_fd(), &m, false).unwrap();
    }

    /// Whether a message is waiting (within `ms`).
    pub fn pending(&self, ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) > 0 }
    }
}

/// Mounts `region` on `mnt` with `opts`, the daemon's environment extended by `env` and its log
/// in `log`.
pub fn mount_with(
    region: &Path,
    mnt: &Path,
    opts: &str,
    env: &[(&str, &str)],
    log: Option<&Path>,
) -> MountGuard {
    let mut c = Command::new(daxfs_bin());
    c.arg("mount").arg(region).arg(mnt).args(["--threads", "2"]);
    if !opts.is_empty() {
        c.args(["-o", opts]);
    }
    if let Some(l) = log {
        c.arg("--log").arg(l);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run daxfs mount");
    assert!(
        out.status.success(),
        "daxfs mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    MountGuard::adopt(region, mnt)
}

/// The mount options of a transport ("" = /dev/fuse, "io_uring") and `dax=` mode.
pub fn opts(transport: &str, dax: &str) -> String {
    match transport {
        "" => format!("dax={dax}"),
        t => format!("dax={dax},{t}"),
    }
}

/// The preload library beside the `daxfs` binary, built once per test run with `cargo build -p
/// daxfs-preload --profile test` (`--release` for `cargo test --release`), as the binary is.
pub fn preload_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let bin = daxfs_bin();
        let dir = bin.parent().expect("profile dir");
        if std::env::var_os("DAXFS_NO_BUILD").is_none() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["build", "-q", "-p", "daxfs-preload"]);
            if dir.file_name() == Some(OsStr::new("release")) {
                build.arg("--release");
            } else {
                build.args(["--profile", "test"]);
            }
            let st = build
                .arg("--manifest-path")
                .arg(workspace().join("Cargo.toml"))
                .env("CARGO_TARGET_DIR", dir.parent().expect("target dir"))
                .status()
                .expect("run cargo build -p daxfs-preload");
            assert!(st.success(), "cargo build -p daxfs-preload failed");
        }
        let lib = dir.join("libdaxfs_preload.so");
        assert!(lib.exists(), "{} is missing", lib.display());
        lib
    })
}

/// Compiles the C program `src` (text) to `out` with `cc` (plus `extra` arguments), panicking
/// with the compiler's output on failure.
pub fn compile_c(src: &str, out: &Path, extra: &[&str]) {
    let c = out.with_extension("c");
    std::fs::write(&c, src).unwrap();
    let o = Command::new("cc")
        .args(["-O1", "-g", "-Wall", "-D_GNU_SOURCE", "-o"])
        .arg(out)
        .arg(&c)
        .args(extra)
        .arg("-lpthread")
        .output()
        .expect("run cc (install a C compiler: apt-get install gcc)");
    assert!(
        o.status.success(),
        "cc {}: {}",
        c.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}
