//! Progress of a long run: a live line on a terminal, a log line every few
//! seconds otherwise (a Job's log).

use crate::util::fsutil::human;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Set by [`lines_only`].
static LINES: AtomicBool = AtomicBool::new(false);

/// Report progress as whole log lines even on a terminal. The hub's Job
/// runs with `tty: true` (openshift-kni/cluster-group-upgrades-operator
/// `controllers/templates/backup-templates.go`), and that terminal is read
/// back as the pod's log, where carriage-return redraws pile up.
pub fn lines_only() {
    LINES.store(true, Ordering::Relaxed);
}

#[derive(Default)]
struct State {
    phase: Mutex<String>,
    files: AtomicU64,
    bytes: AtomicU64,
    total: AtomicU64,
}

/// A handle the work updates; cheap to clone.
#[derive(Clone)]
pub struct Meter(Arc<State>);

impl Meter {
    pub fn phase(&self, name: &str) {
        *self.0.phase.lock().unwrap() = name.to_string();
    }
    pub fn add(&self, files: u64, bytes: u64) {
        self.0.files.fetch_add(files, Ordering::Relaxed);
        self.0.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

pub struct Progress {
    meter: Meter,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Progress {
    /// Start reporting on stderr, unless `quiet`. `total` is the expected
    /// number of bytes (0 when unknown).
    pub fn start(quiet: bool, total: u64) -> Progress {
        let meter = Meter(Arc::new(State::default()));
        meter.0.total.store(total, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let handle = (!quiet).then(|| {
            let (m, s) = (meter.clone(), stop.clone());
            std::thread::spawn(move || report(&m, &s))
        });
        Progress {
            meter,
            stop,
            handle,
        }
    }
    pub fn meter(&self) -> Meter {
        self.meter.clone()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn line(m: &Meter, start: Instant) -> String {
    let bytes = m.0.bytes.load(Ordering::Relaxed);
    let total = m.0.total.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64().max(0.001);
    let pct = (bytes * 100)
        .checked_div(total)
        .map_or(String::new(), |p| format!(" {:>3}%", p.min(100)));
    format!(
        "[{}] {} of files{}, {} files, {}/s, {:.0}s",
        m.0.phase.lock().unwrap(),
        human(bytes),
        pct,
        m.0.files.load(Ordering::Relaxed),
        human((bytes as f64 / secs) as u64),
        secs
    )
}

fn report(m: &Meter, stop: &AtomicBool) {
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal() && !LINES.load(Ordering::Relaxed);
    let every = if tty {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(5)
    };
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        let l = line(m, start);
        let mut e = std::io::stderr().lock();
        if tty {
            let _ = write!(e, "\r\x1b[K{l}");
        } else {
            let _ = writeln!(e, "upgrade-recovery: progress: {l}");
        }
    }
    if tty {
        let _ = write!(std::io::stderr(), "\r\x1b[K");
    }
}
