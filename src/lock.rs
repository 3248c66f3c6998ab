//! One changing run at a time: an flock on `<dir>/.lock` holding the pid.

use anyhow::{bail, Context, Result};
use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const FILE: &str = ".lock";

/// Held until dropped (or the process ends, whatever way it ends).
#[derive(Debug)]
pub struct Lock {
    _file: File,
    pub path: PathBuf,
}

pub fn acquire(dir: &Path) -> Result<Lock> {
    let path = dir.join(FILE);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening the lock {}", path.display()))?;
    if let Err(e) = flock(&f, FlockOperation::NonBlockingLockExclusive) {
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        // The first line is the pid; a second line says what the run does.
        let holder = holder.lines().next().unwrap_or("").trim();
        if e == rustix::io::Errno::WOULDBLOCK {
            bail!(
                "another upgrade-recovery run{} holds {}; nothing was changed. Wait for it to end{}",
                if holder.is_empty() { String::new() } else { format!(" (pid {holder})") },
                path.display(),
                if holder.is_empty() { String::new() } else { format!(" (`ps -p {holder} -o args`)") }
            );
        }
        bail!("cannot lock {}: {e}", path.display());
    }
    f.set_len(0)?;
    f.rewind()?;
    writeln!(f, "{}", std::process::id())?;
    Ok(Lock { _file: f, path })
}

impl Lock {
    /// Record what the run is doing (a second line after the pid), for
    /// `status` to show while it runs.
    pub fn note(&self, what: &str) {
        let mut f = &self._file;
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = write!(f, "{}\n{what}\n", std::process::id());
    }
}

/// The run holding the lock in `dir` now: (pid, what it does), None when no
/// run holds it. Never creates the lock file.
pub fn holder(dir: &Path) -> Option<(u32, Option<String>)> {
    let path = dir.join(FILE);
    let mut f = File::open(path).ok()?;
    match flock(&f, FlockOperation::NonBlockingLockShared) {
        Ok(()) => None,
        Err(_) => {
            let mut text = String::new();
            let _ = f.read_to_string(&mut text);
            let mut lines = text.lines();
            let pid = lines.next()?.trim().parse().ok()?;
            Some((pid, lines.next().map(str::to_string)))
        }
    }
}
