//! Crash consistency of the embedded API: a child process (this test binary re-executed with
//! `DAXFS_CRASH_REGION` set) creates, overwrites, renames and unlinks files with fsync, logging each
//! operation before it starts and after it is durable (or failed); the parent SIGKILLs it at random
//! moments. After each kill the parent reopens the region, checks that every file whose last logged
//! operation completed is intact (content, size), that an interrupted operation left the old or
//! the new state (an interrupted overwrite: old or new bytes inside the write, old bytes outside
//! it), and that fsck finds nothing. The 128 MiB region fills up within a few rounds, so the
//! workload also checks that a write or rename failing with `ENOSPC` changes nothing and that the
//! filesystem keeps working once unlinks free space.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daxfs::fs::*;

mod embedded;
use rand::Rng;

const ROUNDS: usize = 24;
const DIRS: usize = 4;

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len as u64)
        .map(|j| ((j * 31 + seed * 17 + j / 4096) % 251) as u8)
        .collect()
}

fn c() -> Ctx {
    Ctx::root()
}

/// Resolves "dN/name" to (dir ino, name).
fn dir_of(fs: &DaxFs, path: &str) -> Option<(Ino, String)> {
    let (d, name) = path.split_once('/')?;
    let dino = fs.lookup(ROOT_INO, OsStr::new(d)).ok()?.ino;
    Some((dino, name.to_string()))
}

fn read_file(fs: &DaxFs, path: &str) -> Option<Vec<u8>> {
    let (d, name) = dir_of(fs, path)?;
    let a = fs.lookup(d, OsStr::new(&name)).ok()?;
    let mut b = vec![0u8; a.size as usize];
    let n = fs.read(a.ino, 0, &mut b).unwrap();
    assert_eq!(n as u64, a.size);
    Some(b)
}

struct Log(std::fs::File);

impl Log {
    fn line(&mut self, s: String) {
        // One write(2) per line with O_APPEND: a kill leaves at most a partial last line.
        self.0.write_all(format!("{s}\n").as_bytes()).unwrap();
    }
}

/// The child's endless workload.
fn child(region: &Path, log: &Path, round: usize) -> ! {
    let fs = DaxFs::open(region, &OpenOptions::default()).unwrap();
    let mut log = Log(std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_APPEND)
        .open(log)
        .unwrap());
    let mut dirs = Vec::new();
    for d in 0..DIRS {
        let name = format!("d{d}");
        let ino = match fs.lookup(ROOT_INO, OsStr::new(&name)) {
            Ok(a) => a.ino,
            Err(_) => {
                fs.mkdir(ROOT_INO, OsStr::new(&name), 0o755, &c())
                    .unwrap()
                    .ino
            }
        };
        dirs.push(ino);
    }
    // Existing files.
    let mut files: Vec<String> = Vec::new();
    for (d, &dino) in dirs.iter().enumerate() {
        for e in fs.readdir(dino, 0).unwrap().into_iter().skip(2) {
            files.push(format!("d{d}/{}", e.name.to_string_lossy()));
        }
    }
    let mut rng = rand::rng();
    let mut i = 0u64;
    loop {
        i += 1;
        let op = rng.random_range(0..10);
        if op < 4 || files.len() < 5 {
            // Create + write + fsync + release.
            let d = rng.random_range(0..DIRS);
            let name = format!("r{round}_{i}");
            let path = format!("d{d}/{name}");
            let size = if rng.random_range(0..8) == 0 {
                (2 << 20) + rng.random_range(0..5000)
            } else {
                rng.random_range(0..200_000)
            };
            let seed = rng.random_range(0..1_000_000u64);
            let (a, fh) = match fs.create(dirs[d], OsStr::new(&name), 0o644, 0, &c()) {
                Ok(x) => x,
                Err(_) => continue,
            };
            let data = pattern(size, seed);
            let mut off = 0;
            let mut failed = false;
            while off < size {
                let n = (size - off).min(rng.random_range(1..300_000));
                if fs
                    .write(a.ino, off as u64, &data[off..off + n], &c())
                    .is_err()
                {
                    failed = true;
                    break;
                }
                off += n;
            }
            if failed {
                fs.release(a.ino, fh).unwrap();
                fs.unlink(dirs[d], OsStr::new(&name), &c()).unwrap();
                continue;
            }
            fs.fsync(a.ino, false).unwrap();
            fs.release(a.ino, fh).unwrap();
            if i % 2 == 0 {
                fs.forget(a.ino, 1);
            }
            log.line(format!("C {path} {size} {seed}"));
            files.push(path);
        } else if op < 6 {
            // Overwrite part of a file + fsync.
            let k = rng.random_range(0..files.len());
            let path = files[k].clone();
            let Some((d, name)) = dir_of(&fs, &path) else {
                continue;
            };
            let Ok(a) = fs.lookup(d, OsStr::new(&name)) else {
                continue;
            };
            let off = rng.random_range(0..a.size + 10_000);
            let len = rng.random_range(1..50_000usize);
            let seed = rng.random_range(0..1_000_000u64);
            log.line(format!("W {path} {off} {len} {seed}"));
            let fh = fs.open_file(a.ino, libc::O_WRONLY, &c()).unwrap();
            match fs.write(a.ino, off, &pattern(len, seed), &c()) {
                Ok(_) => {
                    fs.fsync(a.ino, true).unwrap();
                    log.line(format!("w {path}"));
                }
                Err(e) => log.line(format!("E {path} {e:?}")),
            }
            fs.release(a.ino, fh).unwrap();
        } else if op < 8 {
            // Rename (within or across directories).
            let k = rng.random_range(0..files.len());
            let from = files[k].clone();
            let d2 = rng.random_range(0..DIRS);
            let to = format!("d{d2}/m{round}_{i}");
            let Some((fd, fname)) = dir_of(&fs, &from) else {
                continue;
            };
            log.line(format!("R {from} {to}"));
            match fs.rename(
                fd,
                OsStr::new(&fname),
                dirs[d2],
                OsStr::new(&to[3..]),
                0,
                &c(),
            ) {
                Ok(()) => {
                    log.line(format!("r {from} {to}"));
                    files[k] = to;
                }
                // The target directory could not grow: the file keeps its old name.
                Err(Errno::ENOSPC) => log.line(format!("e {from} {to}")),
                Err(e) => panic!("rename {from} -> {to}: {e:?}"),
            }
        } else {
            // Unlink.
            let k = rng.random_range(0..files.len());
            let path = files.swap_remove(k);
            let Some((d, name)) = dir_of(&fs, &path) else {
                continue;
            };
            log.line(format!("U {path}"));
            fs.unlink(d, OsStr::new(&name), &c()).unwrap();
            log.line(format!("u {path}"));
        }
    }
}

#[test]
fn crash_child() {
    // Only does something when re-executed by `sigkill_during_fsync_workload`.
    let (Ok(region), Ok(log), Ok(round)) = (
        std::env::var("DAXFS_CRASH_REGION"),
        std::env::var("DAXFS_CRASH_LOG"),
        std::env::var("DAXFS_CRASH_ROUND"),
    ) else {
        return;
    };
    child(Path::new(&region), Path::new(&log), round.parse().unwrap());
}

/// An operation whose start is logged but whose end is not (yet).
enum Pending {
    /// Overwrite of `path` at `off`: `old` and `new` content (`None`: unknown).
    Write {
        path: String,
        off: usize,
        old: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    },
    Rename {
        from: String,
        to: String,
        old: Option<Vec<u8>>,
    },
    Unlink {
        path: String,
        old: Option<Vec<u8>>,
    },
}

/// The parent's model: path → expected content (`None`: state unknown).
#[derive(Default)]
struct Model {
    /// Files whose last operation completed (was logged as durable).
    files: HashMap<String, Option<Vec<u8>>>,
    /// The interrupted operation, if the child was killed inside one; its file is not in `files`.
    pending: Option<Pending>,
    /// Lines of the log already applied.
    applied: usize,
    creates: usize,
    /// Failed (ENOSPC) overwrites, and kills inside each kind of operation ('W', 'R', 'U').
    failed_writes: usize,
    interrupted: HashMap<char, usize>,
    /// Log lines that touched each path (following renames), for failure messages.
    history: HashMap<String, Vec<String>>,
}

impl Model {
    fn apply_log(&mut self, text: &str, round: usize) {
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        let lines: Vec<&str> = complete.lines().collect();
        for l in &lines[self.applied..] {
            let f: Vec<&str> = l.split(' ').collect();
            if f.len() > 1 {
                let mut h = self.history.remove(f[1]).unwrap_or_default();
                h.push(format!("[{round}] {l}"));
                let key = if f[0] == "r" { f[2] } else { f[1] };
                self.history.insert(key.to_string(), h);
            }
            match f[0] {
                "C" => {
                    let size: usize = f[2].parse().unwrap();
                    let seed: u64 = f[3].parse().unwrap();
                    self.files.insert(f[1].into(), Some(pattern(size, seed)));
                    self.creates += 1;
                }
                "W" => {
                    // The child only overwrites files it knows of; one the model never saw
                    // (created in a round killed before its 'C' line) has unknown content.
                    let old = self.files.remove(f[1]).flatten();
                    let off: usize = f[2].parse().unwrap();
                    let len: usize = f[3].parse().unwrap();
                    let seed: u64 = f[4].parse().unwrap();
                    let new = old.clone().map(|mut v| {
                        if v.len() < off + len {
                            v.resize(off + len, 0);
                        }
                        v[off..off + len].copy_from_slice(&pattern(len, seed));
                        v
                    });
                    self.pending = Some(Pending::Write {
                        path: f[1].into(),
                        off,
                        old,
                        new,
                    });
                }
                "w" | "E" => {
                    // Durable new content, or a failed write that must have changed nothing.
                    let Some(Pending::Write { path, old, new, .. }) = self.pending.take() else {
                        panic!("log line {l:?} without its 'W'");
                    };
                    let keep = if f[0] == "w" {
                        new
                    } else {
                        self.failed_writes += 1;
                        old
                    };
                    self.files.insert(path, keep);
                }
                "R" => {
                    let old = self.files.remove(f[1]).flatten();
                    self.pending = Some(Pending::Rename {
                        from: f[1].into(),
                        to: f[2].into(),
                        old,
                    });
                }
                "r" | "e" => {
                    let Some(Pending::Rename { from, to, old }) = self.pending.take() else {
                        panic!("log line {l:?} without its 'R'");
                    };
                    self.files.insert(if f[0] == "r" { to } else { from }, old);
                }
                "U" => {
                    let old = self.files.remove(f[1]).flatten();
                    self.pending = Some(Pending::Unlink {
                        path: f[1].into(),
                        old,
                    });
                }
                "u" => {
                    let Some(Pending::Unlink { .. }) = self.pending.take() else {
                        panic!("log line {l:?} without its 'U'");
                    };
                }
                x => panic!("bad log line {x}"),
            }
        }
        self.applied = lines.len();
    }

    fn differs(&self, path: &str, got: &[u8], want: &[u8]) -> String {
        let diff: Vec<usize> = (0..got.len().min(want.len()))
            .filter(|&i| got[i] != want[i])
            .collect();
        format!(
            "{path}: size {} (expected {}), {} bytes differ (first {:?}, last {:?}); history: {:?}",
            got.len(),
            want.len(),
            diff.len(),
            diff.first(),
            diff.last(),
            self.history.get(path)
        )
    }

    /// Checks the reopened region against the model and resolves an interrupted operation.
    fn check(&mut self, fs: &DaxFs) {
        for (path, want) in &self.files {
            let got = read_file(fs, path);
            assert!(got.is_some(), "fsynced file {path} is missing");
            if let (Some(want), Some(got)) = (want, got) {
                assert!(
                    got == *want,
                    "content of fsynced file differs: {}",
                    self.differs(path, &got, want)
                );
            }
        }
        let kind = match &self.pending {
            None => None,
            Some(Pending::Write { .. }) => Some('W'),
            Some(Pending::Rename { .. }) => Some('R'),
            Some(Pending::Unlink { .. }) => Some('U'),
        };
        if let Some(k) = kind {
            *self.interrupted.entry(k).or_default() += 1;
        }
        match self.pending.take() {
            None => {}
            Some(Pending::Write {
                path,
                off,
                old,
                new,
            }) => {
                // Not fsynced: the file must exist; its size is the old or the new one, bytes
                // outside the write are the old ones, bytes inside it old or new (past the old
                // size: new or zero).
                let got = read_file(fs, &path);
                assert!(got.is_some(), "{path} vanished during an overwrite");
                let got = got.unwrap();
                if let (Some(old), Some(new)) = (&old, &new) {
                    assert!(
                        got.len() == old.len() || got.len() == new.len(),
                        "interrupted overwrite: {}",
                        self.differs(&path, &got, new)
                    );
                    let ok = got.iter().enumerate().all(|(i, &g)| {
                        let o = old.get(i).copied();
                        let inside = i >= off && i < new.len() && Some(new[i]) != o;
                        o == Some(g) || (inside && (g == new[i] || (o.is_none() && g == 0)))
                    });
                    assert!(
                        ok,
                        "interrupted overwrite changed bytes it must not: {}",
                        self.differs(&path, &got, old)
                    );
                }
                // From now on the file holds what was read back.
                let known = old.as_ref().map(|_| got);
                self.files.insert(path, known);
            }
            Some(Pending::Rename { from, to, old }) => {
                let (ga, gb) = (read_file(fs, &from), read_file(fs, &to));
                assert!(
                    ga.is_some() != gb.is_some(),
                    "rename {from} -> {to}: exactly one name must exist"
                );
                let (name, got) = match ga {
                    Some(g) => (from, g),
                    None => (to, gb.unwrap()),
                };
                if let Some(old) = &old {
                    assert!(got == *old, "renamed file {name} differs");
                }
                self.files.insert(name, old);
            }
            Some(Pending::Unlink { path, old }) => {
                if let Some(got) = read_file(fs, &path) {
                    if let Some(old) = &old {
                        assert!(got == *old, "file {path} under unlink differs");
                    }
                    self.files.insert(path, old);
                }
            }
        }
    }
}

#[test]
fn sigkill_during_fsync_workload() {
    if std::env::var("DAXFS_CRASH_REGION").is_ok() {
        return;
    }
    let dir = embedded::scratch_dir();
    let region: PathBuf = dir.path().join("region.img");
    let log: PathBuf = dir.path().join("ops.log");
    std::fs::write(&log, b"").unwrap();
    DaxFs::mkfs(
        &region,
        &MkfsOptions {
            size: Some(128 << 20),
            inodes: Some(4096),
        },
    )
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut model = Model::default();
    let start = Instant::now();
    for round in 0..ROUNDS {
        let mut ch = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env("DAXFS_CRASH_REGION", &region)
            .env("DAXFS_CRASH_LOG", &log)
            .env("DAXFS_CRASH_ROUND", round.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(40..400)));
        let exited = ch.try_wait().unwrap();
        if let Some(st) = exited {
            let mut err = String::new();
            use std::io::Read;
            ch.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("child exited early ({st}): {err}");
        }
        // SAFETY: kill(2) on our own child's pid; no memory is passed.
        let rc = unsafe { libc::kill(ch.id() as i32, libc::SIGKILL) };
        assert_eq!(rc, 0);
        ch.wait().unwrap();

        model.apply_log(&std::fs::read_to_string(&log).unwrap(), round);
        let fs = DaxFs::open(&region, &OpenOptions::default())
            .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        model.check(&fs);
        fs.close().unwrap();
        let probs = DaxFs::fsck(&region, false).unwrap();
        assert!(probs.is_empty(), "round {round}: fsck: {probs:?}");
    }
    assert!(
        model.creates >= ROUNDS,
        "the workload made too little progress ({} files)",
        model.creates
    );
    eprintln!(
        "{ROUNDS} kills, {} fsynced creates, {} files live, {} failed overwrites, kills inside \
         operations: {:?}, {:?}",
        model.creates,
        model.files.len(),
        model.failed_writes,
        model.interrupted,
        start.elapsed()
    );
}
