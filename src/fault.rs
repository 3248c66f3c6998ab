//! Fault points for tests: `UPGRADE_RECOVERY_CRASH_AT=<point>` makes the
//! process kill itself (SIGKILL, no cleanup) when it reaches that point.

/// Die here if the environment asks for it; or, with
/// `UPGRADE_RECOVERY_PAUSE_AT=<point>`, wait there (for signal tests).
pub fn point(name: &str) {
    if std::env::var("UPGRADE_RECOVERY_PAUSE_AT").is_ok_and(|v| v == name) {
        eprintln!("upgrade-recovery: fault injection: paused at {name}");
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
    if std::env::var("UPGRADE_RECOVERY_CRASH_AT").is_ok_and(|v| v == name) {
        eprintln!("upgrade-recovery: fault injection: killed at {name}");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::process::abort();
    }
}
