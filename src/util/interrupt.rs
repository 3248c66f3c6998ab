//! SIGTERM, SIGINT (Ctrl-C) and SIGHUP during a command that changes the
//! node: the run ends saying what it was doing, what is done, and the next
//! command, then exits 128+signal.
//!
//! The signals are blocked in every thread and taken by one thread with
//! `sigwait`, so the message is printed by ordinary code, not in a signal
//! handler. [`install`] must run before any other thread starts (the etcd
//! client's runtime, the compression threads). Programs started afterwards
//! get an empty signal mask again (the standard library resets it).

use std::io::Write;
use std::sync::Mutex;

/// What the run is doing, for the message on a signal.
#[derive(Debug, Clone, Default)]
pub struct Where {
    /// e.g. "recovery step wipe-crio (phase files)".
    pub doing: String,
    /// What is done and where it is recorded.
    pub done: String,
    /// The exact next command, with a word of why.
    pub next: String,
}

static WHERE: Mutex<Option<Where>> = Mutex::new(None);

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT (Ctrl-C)".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

/// The message printed when a signal ends the run.
pub fn message(sig: i32, w: &Where) -> String {
    format!(
        "upgrade-recovery: stopped by {} during {}.\nDone: {}.\nNext: {}",
        signal_name(sig),
        w.doing,
        w.done,
        w.next
    )
}

/// Take the termination signals from now on; `first` says where the run is.
pub fn install(first: Where) {
    update(|w| *w = first);
    on_termination(|sig| {
        let w = WHERE
            .lock()
            .map(|g| g.clone().unwrap_or_default())
            .unwrap_or_default();
        let text = message(sig, &w);
        let _ = writeln!(std::io::stderr(), "{text}");
        crate::util::logger::note(true, &text.replace('\n', " "));
    });
}

/// Block SIGTERM, SIGINT and SIGHUP in every thread and take them in one:
/// run `report(signal)`, then exit 128+signal. Call from main before other
/// threads exist, so every later thread inherits the mask.
pub fn on_termination(report: impl FnOnce(i32) + Send + 'static) {
    // SAFETY: signal-mask calls on a zeroed sigset, before other threads exist.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            let mut sig: libc::c_int = 0;
            libc::sigwait(&set, &mut sig);
            report(sig);
            std::process::exit(128 + sig);
        });
    }
}

/// Change what the message will say.
pub fn update(f: impl FnOnce(&mut Where)) {
    if let Ok(mut g) = WHERE.lock() {
        let w = g.get_or_insert_with(Where::default);
        f(w);
    }
}
