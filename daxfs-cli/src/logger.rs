//! A minimal `log` backend for the daemon: one line per record on stderr (the `--log` file of a
//! background daemon). `DAXFS_LOG=error|warn|info|debug|trace` sets the level (default `info`).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let _ = writeln!(
            std::io::stderr().lock(),
            "[{}.{:03} {} {}] {}",
            t.as_secs(),
            t.subsec_millis(),
            r.level(),
            r.target(),
            r.args()
        );
    }
    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the logger (once).
pub fn init() {
    let level = match std::env::var("DAXFS_LOG").as_deref() {
        Ok("error") => log::LevelFilter::Error,
        Ok("warn") => log::LevelFilter::Warn,
        Ok("debug") => log::LevelFilter::Debug,
        Ok("trace") => log::LevelFilter::Trace,
        Ok("off") => log::LevelFilter::Off,
        _ => log::LevelFilter::Info,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
