//! Logging: stderr by verbosity (warnings by default, -v info, -vv debug with
//! every external command line, -q errors only), and every record at info
//! level or above also to the system journal through the syslog socket
//! (`/dev/log`, as today's `logger -t upgrade-recovery` does).
//! `UPGRADE_RECOVERY_SYSLOG` names another socket (tests).

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

struct Logger {
    stderr: LevelFilter,
    syslog: Option<UnixDatagram>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

fn severity(l: Level) -> u8 {
    match l {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &Record) {
        if r.level() <= self.stderr {
            let tag = match r.level() {
                Level::Error => "error",
                Level::Warn => "warning",
                Level::Info => "info",
                Level::Debug => "debug",
                Level::Trace => "trace",
            };
            // Not eprintln!: it panics when stderr is a closed pipe.
            let _ = writeln!(std::io::stderr(), "upgrade-recovery: {tag}: {}", r.args());
        }
        if r.level() <= Level::Info {
            if let Some(s) = &self.syslog {
                // RFC 3164 framing as logger(1) sends it; facility user (1).
                let msg = format!(
                    "<{}>upgrade-recovery[{}]: {}",
                    8 + severity(r.level()),
                    std::process::id(),
                    r.args()
                );
                let _ = s.send(msg.as_bytes());
            }
        }
    }
    fn flush(&self) {}
}

fn connect() -> Option<UnixDatagram> {
    let path = std::env::var("UPGRADE_RECOVERY_SYSLOG").unwrap_or_else(|_| "/dev/log".into());
    let s = UnixDatagram::unbound().ok()?;
    s.connect(path).ok()?;
    // A busy journal may make us wait a little, never hang a recovery.
    s.set_write_timeout(Some(std::time::Duration::from_millis(500)))
        .ok()?;
    Some(s)
}

pub fn init(verbose: u8, quiet: bool) {
    let stderr = match (quiet, verbose) {
        (true, _) => LevelFilter::Error,
        (false, 0) => LevelFilter::Warn,
        (false, 1) => LevelFilter::Info,
        (false, _) => LevelFilter::Debug,
    };
    let l = LOGGER.get_or_init(|| Logger {
        stderr,
        syslog: connect(),
    });
    let _ = log::set_logger(l);
    log::set_max_level(stderr.max(LevelFilter::Info));
}

/// A line for the person at the terminal (unless -q) and for the journal.
pub fn note(quiet: bool, msg: &str) {
    if !quiet {
        let _ = writeln!(std::io::stderr(), "upgrade-recovery: {msg}");
    }
    if let Some(l) = LOGGER.get() {
        if let Some(s) = &l.syslog {
            let _ =
                s.send(format!("<14>upgrade-recovery[{}]: {msg}", std::process::id()).as_bytes());
        }
    }
}
