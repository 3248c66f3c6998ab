//! Fault points for tests: `UPGRADE_RECOVERY_CRASH_AT=<point>` makes the
//! process kill itself (SIGKILL, no cleanup) when it reaches that point.
//!
//! Only with the `fault-injection` feature (the tests'); without it every
//! function here is an empty inline, so the shipped binary reads none of
//! these variables.

/// Die here if the environment asks for it; or, with
/// `UPGRADE_RECOVERY_PAUSE_AT=<point>`, wait there (for signal tests; for
/// `UPGRADE_RECOVERY_PAUSE_FILE` to go, for tests that change the node
/// meanwhile).
#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    // Where a journal entry follows: tests check the syncs come before.
    sync_log(format_args!("point {name}"));
    if std::env::var("UPGRADE_RECOVERY_PAUSE_AT").is_ok_and(|v| v == name) {
        eprintln!("upgrade-recovery: fault injection: paused at {name}");
        // With `UPGRADE_RECOVERY_PAUSE_FILE=<path>`: until that file is
        // gone (the test changed what it wanted meanwhile), at most 60 s.
        let until = std::env::var_os("UPGRADE_RECOVERY_PAUSE_FILE");
        for _ in 0..600 {
            if until
                .as_ref()
                .is_some_and(|f| !std::path::Path::new(f).exists())
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    if std::env::var("UPGRADE_RECOVERY_CRASH_AT").is_ok_and(|v| v == name) {
        eprintln!("upgrade-recovery: fault injection: killed at {name}");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::process::abort();
    }
}

#[cfg(feature = "fault-injection")]
/// Test hook: with `UPGRADE_RECOVERY_CHANGE_WHILE_READ=<file name>`, a file of
/// that name is appended to while it is being archived (between the reads
/// the writer compares), as a busy log file would be.
pub fn change_while_read(name: &[u8], fd: rustix::fd::BorrowedFd) {
    if let Ok(v) = std::env::var("UPGRADE_RECOVERY_CHANGE_WHILE_READ") {
        if name.ends_with(v.as_bytes()) {
            let path = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&fd));
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
                use std::io::Write;
                let _ = f.write_all(b"more");
            }
        }
    }
}

#[cfg(feature = "fault-injection")]
/// Fault injection for tests: `UPGRADE_RECOVERY_SWAP_FIFO=<suffix>` replaces
/// a name ending so with a FIFO between its `lstat` and its `open`, as a pod
/// racing the backup or the restore could.
pub fn swap_fifo(dir: rustix::fd::BorrowedFd, name: &std::ffi::CStr) {
    if let Ok(v) = std::env::var("UPGRADE_RECOVERY_SWAP_FIFO") {
        if name.to_bytes().ends_with(v.as_bytes()) {
            use rustix::fs;
            let _ = fs::unlinkat(dir, name, fs::AtFlags::empty());
            let _ = fs::mknodat(
                dir,
                name,
                fs::FileType::Fifo,
                fs::Mode::from_raw_mode(0o644),
                0,
            );
        }
    }
}

#[cfg(feature = "fault-injection")]
/// Fault injection for tests: `UPGRADE_RECOVERY_FLIP_DIR=<stage>:<rel>:<to>`
/// replaces the directory `<rel>` of the tree being restored (moved aside)
/// with a symlink to `<to>` when the sync reaches `<stage>` (`write`: the
/// first entry inside it; `meta`: its metadata), as a pod could.
pub fn flip_dir(stage: &str, top: rustix::fd::BorrowedFd, rel: &[u8]) {
    let Ok(v) = std::env::var("UPGRADE_RECOVERY_FLIP_DIR") else {
        return;
    };
    let mut it = v.splitn(3, ':');
    let (Some(s), Some(r), Some(to)) = (it.next(), it.next(), it.next()) else {
        return;
    };
    use rustix::fs;
    let is_dir = fs::statat(top, r, fs::AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| fs::FileType::from_raw_mode(st.st_mode) == fs::FileType::Directory);
    if s == stage && r.as_bytes() == rel && is_dir {
        let _ = fs::renameat(top, r, top, format!("{r}.moved").as_str());
        let _ = fs::symlinkat(to, top, r);
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn flip_dir(_stage: &str, _top: rustix::fd::BorrowedFd, _rel: &[u8]) {}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn change_while_read(_name: &[u8], _fd: rustix::fd::BorrowedFd) {}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn swap_fifo(_dir: rustix::fd::BorrowedFd, _name: &std::ffi::CStr) {}

/// `UPGRADE_RECOVERY_SYNC_CRASH_AFTER=<n>`: the tree sync stops (as if killed)
/// after n entries.
pub fn sync_crash_after() -> Option<u64> {
    if cfg!(feature = "fault-injection") {
        std::env::var("UPGRADE_RECOVERY_SYNC_CRASH_AFTER")
            .ok()
            .and_then(|v| v.parse().ok())
    } else {
        None
    }
}

/// `UPGRADE_RECOVERY_SKIP_SYNCS=1`: the syncs that make a step's changes
/// durable before its journal entry (`durable.rs`, the tree sync's syncfs)
/// are skipped. A broken build on purpose, for the VM lane's negative
/// control (`scripts/vm.sh dmlog` with `DMLOG_SKIP_SYNCS=1`, docs/vm.md):
/// replayed at each flush point, it must show a journal ahead of the disk.
pub fn skip_syncs() -> bool {
    cfg!(feature = "fault-injection") && std::env::var_os("UPGRADE_RECOVERY_SKIP_SYNCS").is_some()
}

/// Append a line to the sync log the durability tests read
/// (`UPGRADE_RECOVERY_SYNC_LOG`).
pub fn sync_log(line: std::fmt::Arguments) {
    #[cfg(feature = "fault-injection")]
    if let Some(p) = std::env::var_os("UPGRADE_RECOVERY_SYNC_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            let _ = writeln!(f, "{line}");
        }
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = line;
}
