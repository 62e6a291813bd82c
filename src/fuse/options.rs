//! Mount options: parses the `-o` string of `daxfs mount` and of the `mount.fuse.daxfs` helper.
//!
//! Owns: which options daxfs accepts, which generic options of mount(8) it ignores or translates,
//! and the refusal message for anything else. Rules kept: the mount source (`fsname=`) is the
//! region path exactly as given and there is never a `subtype=` (xfstests checks `df -T` = `fuse`
//! and `findmnt -S REGION`); unknown options are refused, never silently dropped.

use super::error::OptionError;
use crate::fs::DaxMode;

/// Which transport carries a mount's requests (`-o io_uring=auto|io_uring|noio_uring`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `io_uring=auto` (the default): the rings when the fuse module offers them
    /// (`/sys/module/fuse/parameters/enable_uring` is on), else `/dev/fuse`, quietly. daxfs never
    /// turns the module parameter on itself.
    Auto,
    /// `io_uring`: FUSE-over-io_uring rings, one queue per CPU served on that CPU
    /// (`fuse/uring.rs`); `/dev/fuse` with a warning when the kernel does not offer them.
    IoUring,
    /// `noio_uring`: reads and writes of `/dev/fuse` by the session threads.
    DevFuse,
}

impl Transport {
    /// Whether to ask the kernel for the rings at INIT.
    pub fn wants_rings(self) -> bool {
        match self {
            Transport::Auto => uring_offered(),
            Transport::IoUring => true,
            Transport::DevFuse => false,
        }
    }
}

/// The fuse module parameter that lets a server use FUSE-over-io_uring.
pub const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";

/// Whether the fuse module offers FUSE-over-io_uring (its `enable_uring` parameter is on).
pub fn uring_offered() -> bool {
    std::fs::read_to_string(ENABLE_URING).is_ok_and(|v| matches!(v.trim(), "Y" | "y" | "1"))
}

/// What the options ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountConfig {
    /// `dax=always|never|inode`: which files are accessed directly.
    pub dax: DaxMode,
    /// `ro`.
    pub read_only: bool,
    /// `norecovery` (or ext4's `noload`), only with `ro`: the journal is not replayed.
    pub no_recovery: bool,
    /// `allow_other` (default on: daxfs is a shared filesystem with kernel permission checks).
    pub allow_other: bool,
    /// `suid` / `nosuid` as named; `None` when neither was: see [`MountConfig::suid_for`].
    pub suid: Option<bool>,
    /// `dev` / `nodev` as named; `None` when neither was: see [`MountConfig::dev_for`].
    pub dev: Option<bool>,
    /// `noexec` (passed to the kernel).
    pub noexec: bool,
    /// `noatime`: reads never update atime (also passed to the kernel).
    pub noatime: bool,
    /// `strictatime`: every read updates atime (else relatime; `noatime` wins if given after).
    pub strictatime: bool,
    /// `nodiratime`: directory reads never update atime.
    pub nodiratime: bool,
    /// `sync` (passed to the kernel).
    pub sync: bool,
    /// `dirsync` (passed to the kernel).
    pub dirsync: bool,
    /// `threads=N` (the helper's way to say `--threads`).
    pub threads: Option<usize>,
    /// `log=FILE` (the helper's way to say `--log`).
    pub log: Option<String>,
    /// `remount`: change the flags of an existing mount instead (see `mounts::remount`).
    pub remount: bool,
    /// `io_uring=auto` (the default), `io_uring`, `noio_uring`: which transport carries the
    /// requests ([`Transport`]).
    pub transport: Transport,
    /// `io_uring_sched=idle|normal`: queue threads at `SCHED_IDLE` under a starvation watchdog
    /// (default) or at normal priority (`fuse/uring/priority.rs`).
    pub io_uring_idle: bool,
    /// `dax_bugs=ID:ID`: historical `fs/dax.c` bugs the DAX entry protocol reproduces
    /// (docs/DAX-BUGS.md; `none` is today's kernel, the default).
    pub dax_bugs: crate::dax::Bugs,
}

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            dax: DaxMode::Always,
            read_only: false,
            no_recovery: false,
            allow_other: true,
            suid: None,
            dev: None,
            noexec: false,
            noatime: false,
            strictatime: false,
            nodiratime: false,
            sync: false,
            dirsync: false,
            threads: None,
            log: None,
            remount: false,
            transport: Transport::Auto,
            io_uring_idle: true,
            dax_bugs: crate::dax::Bugs::NONE,
        }
    }
}

impl MountConfig {
    /// Whether set-user-id bits are honoured for a mount made by `root` (the mounting user is
    /// root) or not: as named, else `suid` for root, as a kernel filesystem mounted by root is
    /// (mount(8) never passes `suid`/`dev` to a helper: they are the absence of
    /// `MS_NOSUID`/`MS_NODEV`), and `nosuid` for anyone else, as libfuse.
    pub fn suid_for(&self, root: bool) -> bool {
        self.suid.unwrap_or(root)
    }

    /// Whether device nodes are honoured: as named, else `dev` for root and `nodev` for others
    /// (the rule of [`MountConfig::suid_for`]).
    pub fn dev_for(&self, root: bool) -> bool {
        self.dev.unwrap_or(root)
    }
}

/// Options of mount(8) and fstab that mean nothing to daxfs (or are its defaults) and are accepted
/// silently: mount(8) passes some of them to every helper.
const IGNORED: &[&str] = &[
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "norelatime",
    "lazytime",
    "nolazytime",
    "async",
    "default_permissions",
    "silent",
    "loud",
    "iversion",
    "noiversion",
    "mand",
    "nomand",
];

/// The options daxfs itself understands, for the refusal message.
pub const KNOWN: &str = "dax=always|never|inode, ro, rw, norecovery (with ro), remount, allow_other, noallow_other, \
default_permissions, suid, nosuid, dev, nodev, exec, noexec, noatime, atime, relatime, strictatime, \
nodiratime, diratime, sync, dirsync, threads=N, log=FILE, io_uring=auto, io_uring, noio_uring, io_uring_sched=idle|normal, \
dax_bugs=ID:ID (and mount(8)'s generic options such as \
defaults, auto, user, _netdev, x-*)";

/// Parses a comma-separated option string (several `-o` strings may be joined with commas).
///
/// Return: the configuration, or a message naming the offending option and what is accepted.
pub fn parse_options(opts: &str) -> Result<MountConfig, OptionError> {
    let mut c = MountConfig::default();
    for opt in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        match (key, value) {
            ("dax", None) | ("dax", Some("always")) => c.dax = DaxMode::Always,
            ("dax", Some("never")) => c.dax = DaxMode::Never,
            ("dax", Some("inode")) => c.dax = DaxMode::Inode,
            ("dax", Some(_)) => return Err(bad(opt, "use dax=always, dax=never or dax=inode")),
            ("remount", None) => c.remount = true,
            ("ro", None) => c.read_only = true,
            ("rw", None) => c.read_only = false,
            ("norecovery" | "noload", None) => c.no_recovery = true,
            ("allow_other", None) => c.allow_other = true,
            ("noallow_other", None) => c.allow_other = false,
            ("suid", None) => c.suid = Some(true),
            ("nosuid", None) => c.suid = Some(false),
            ("dev", None) => c.dev = Some(true),
            ("nodev", None) => c.dev = Some(false),
            ("exec", None) => c.noexec = false,
            ("noexec", None) => c.noexec = true,
            // As the kernel's mount flags: the last of noatime/strictatime wins, relatime is
            // the default, norelatime alone changes nothing.
            ("noatime", None) => (c.noatime, c.strictatime) = (true, false),
            ("atime", None) => c.noatime = false,
            ("strictatime", None) => (c.noatime, c.strictatime) = (false, true),
            ("relatime" | "nostrictatime", None) => c.strictatime = false,
            ("nodiratime", None) => c.nodiratime = true,
            ("diratime", None) => c.nodiratime = false,
            ("sync", None) => c.sync = true,
            ("dirsync", None) => c.dirsync = true,
            ("io_uring", None) => c.transport = Transport::IoUring,
            ("io_uring", Some("auto")) => c.transport = Transport::Auto,
            ("noio_uring", None) => c.transport = Transport::DevFuse,
            ("io_uring", Some(_)) => {
                return Err(bad(
                    opt,
                    "use io_uring (the rings), io_uring=auto (the rings when the kernel offers \
                     them: the default) or noio_uring (/dev/fuse)",
                ))
            }
            ("io_uring_sched", Some("idle")) => c.io_uring_idle = true,
            ("io_uring_sched", Some("normal")) => c.io_uring_idle = false,
            ("io_uring_sched", Some(_)) => {
                return Err(bad(opt, "use io_uring_sched=idle or io_uring_sched=normal"))
            }
            ("dax_bugs", Some(v)) => {
                c.dax_bugs = crate::dax::Bugs::parse(v).map_err(|_| OptionError::BadValue {
                    option: opt.to_string(),
                    fix: "give fix ids of the DAX bug catalogue (`daxfs bugs list`) separated \
                              by ':', e.g. dax_bugs=23c84eb78375:61c30c98ef17, or dax_bugs=none",
                })?
            }
            ("threads", Some(v)) => match v.parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => c.threads = Some(n),
                _ => return Err(bad(opt, "give a number of threads from 1 to 1024")),
            },
            ("log", Some(v)) if !v.is_empty() => c.log = Some(v.to_string()),
            ("subtype", _) => {
                return Err(OptionError::Unsupported {
                    option: opt.to_string(),
                    why: "daxfs mounts as plain 'fuse' so that df -T and xfstests see type fuse; \
                          drop the option",
                })
            }
            ("fsname", _) => {
                return Err(OptionError::Unsupported {
                    option: opt.to_string(),
                    why: "the mount source is always the region path as given; drop the option",
                })
            }
            (k, None) if IGNORED.contains(&k) => {}
            (k, _) if k.starts_with("x-") || k.starts_with("comment") => {}
            _ => {
                return Err(OptionError::Unknown {
                    option: opt.to_string(),
                })
            }
        }
    }
    if c.no_recovery && !c.read_only && !c.remount {
        return Err(OptionError::Unsupported {
            option: "norecovery".to_string(),
            why: "a writable mount must replay the journal first; add ro (norecovery serves \
                  the region read-only as the last replay left it)",
        });
    }
    Ok(c)
}

fn bad(option: &str, fix: &'static str) -> OptionError {
    OptionError::BadValue {
        option: option.to_string(),
        fix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = parse_options("").unwrap();
        assert_eq!(c, MountConfig::default());
        assert_eq!(c.dax, DaxMode::Always);
        assert!(c.allow_other && !c.read_only);
    }

    #[test]
    fn norecovery_needs_ro() {
        let c = parse_options("ro,norecovery").unwrap();
        assert!(c.read_only && c.no_recovery);
        assert!(parse_options("noload,ro").unwrap().no_recovery);
        let e = parse_options("norecovery").unwrap_err().to_string();
        assert!(e.contains("norecovery") && e.contains("add ro"), "{e}");
        assert!(parse_options("ro,norecovery,rw").is_err());
        assert!(!parse_options("ro").unwrap().no_recovery);
    }

    #[test]
    fn dax_modes_and_flags() {
        assert_eq!(parse_options("dax=never").unwrap().dax, DaxMode::Never);
        assert_eq!(parse_options("dax=inode").unwrap().dax, DaxMode::Inode);
        assert_eq!(parse_options("dax=never,dax").unwrap().dax, DaxMode::Always);
        let c = parse_options("ro,suid,dev,noexec,noatime,threads=3,log=/tmp/x").unwrap();
        assert!(c.read_only && c.suid_for(false) && c.dev_for(false) && c.noexec && c.noatime);
        assert_eq!(c.threads, Some(3));
        assert_eq!(c.log.as_deref(), Some("/tmp/x"));
        assert!(!parse_options("ro,rw").unwrap().read_only);
        assert!(parse_options("remount,ro").unwrap().remount);
        assert!(!parse_options("ro").unwrap().remount);
    }

    #[test]
    fn atime_options_last_one_wins() {
        let c = parse_options("").unwrap();
        assert!(!c.noatime && !c.strictatime && !c.nodiratime);
        let c = parse_options("noatime,strictatime,nodiratime").unwrap();
        assert!(!c.noatime && c.strictatime && c.nodiratime);
        let c = parse_options("strictatime,noatime").unwrap();
        assert!(c.noatime && !c.strictatime);
        let c = parse_options("strictatime,relatime,nodiratime,diratime").unwrap();
        assert!(!c.noatime && !c.strictatime && !c.nodiratime);
        assert!(!parse_options("noatime,atime").unwrap().noatime);
        assert!(parse_options("strictatime,norelatime").unwrap().strictatime);
    }

    #[test]
    fn generic_mount8_options_are_accepted() {
        let c =
            parse_options("rw,nosuid,nodev,relatime,defaults,_netdev,x-systemd.automount").unwrap();
        assert!(!c.read_only && !c.suid_for(true) && !c.dev_for(true));
    }

    #[test]
    fn suid_and_dev_default_to_on_for_root_only() {
        let c = parse_options("rw").unwrap();
        assert!(c.suid_for(true) && c.dev_for(true));
        assert!(!c.suid_for(false) && !c.dev_for(false));
        let c = parse_options("rw,nodev").unwrap();
        assert!(!c.dev_for(true) && c.suid_for(true));
        let c = parse_options("nosuid,dev").unwrap();
        assert!(!c.suid_for(true) && c.dev_for(false));
    }

    #[test]
    fn refusals_name_the_option() {
        let unknown = |o: &str| OptionError::Unknown {
            option: o.to_string(),
        };
        assert_eq!(parse_options("rw,bogus"), Err(unknown("bogus")));
        let e = parse_options("dax=sometimes").unwrap_err();
        assert!(matches!(&e, OptionError::BadValue { option, .. } if option == "dax=sometimes"));
        // The message names the option and what is accepted.
        let m = unknown("bogus").to_string();
        assert!(m.contains("'bogus'") && m.contains("dax="), "{m}");
        assert!(e.to_string().contains("dax=sometimes"), "{e}");
        assert!(matches!(
            parse_options("subtype=daxfs"),
            Err(OptionError::Unsupported { option, .. }) if option == "subtype=daxfs"
        ));
        assert!(matches!(
            parse_options("fsname=x"),
            Err(OptionError::Unsupported { .. })
        ));
        assert!(matches!(
            parse_options("threads=0"),
            Err(OptionError::BadValue { .. })
        ));
        assert!(matches!(
            parse_options("io_uring=1"),
            Err(OptionError::BadValue { .. })
        ));
        let t = |o: &str| parse_options(o).unwrap().transport;
        assert_eq!(t("io_uring"), Transport::IoUring);
        assert_eq!(t("io_uring,noio_uring"), Transport::DevFuse);
        assert_eq!(t("noio_uring,io_uring=auto"), Transport::Auto);
        assert_eq!(t(""), Transport::Auto, "the default");
        assert!(parse_options("").unwrap().io_uring_idle);
        assert!(
            !parse_options("io_uring_sched=normal")
                .unwrap()
                .io_uring_idle
        );
        assert!(matches!(
            parse_options("io_uring_sched=fast"),
            Err(OptionError::BadValue { .. })
        ));
        assert!(matches!(
            parse_options("threads=x"),
            Err(OptionError::BadValue { .. })
        ));
        assert_eq!(parse_options("ro=1"), Err(unknown("ro=1")));
    }

    #[test]
    fn dax_bugs_name_catalogued_fixes() {
        use crate::dax::{Bug, Bugs};
        assert_eq!(parse_options("").unwrap().dax_bugs, Bugs::NONE);
        let c = parse_options("rw,dax_bugs=23c84eb78375:61c30c98ef17").unwrap();
        assert_eq!(
            c.dax_bugs,
            Bugs::only(Bug::PmdMissedWakeup).with(Bug::PutUnlockedInverted)
        );
        let e = parse_options("dax_bugs=123456789abc").unwrap_err();
        assert!(
            matches!(&e, OptionError::BadValue { option, .. } if option == "dax_bugs=123456789abc"),
            "{e}"
        );
        assert!(e.to_string().contains("daxfs bugs list"), "{e}");
    }
}
