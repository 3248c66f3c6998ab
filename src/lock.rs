//! One changing run at a time: an flock on `<dir>/.lock` holding the pid
//! and what the holder does (`restore` for a recovery).

use anyhow::{bail, Context, Result};
use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const FILE: &str = crate::store::layout::LOCK;
/// What a recovery writes after its pid.
pub const RESTORE: &str = "restore";

/// The run that holds (or last held) the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub what: String,
}

/// The lock's holder as it recorded itself, None when unknown.
pub fn holder(dir: &Path) -> Option<Holder> {
    let text = std::fs::read_to_string(dir.join(FILE)).ok()?;
    let mut w = text.split_whitespace();
    let pid = w.next()?.parse().ok()?;
    Some(Holder {
        pid,
        what: w.next().unwrap_or("").to_string(),
    })
}

/// Held until dropped (or the process ends, whatever way it ends).
#[derive(Debug)]
pub struct Lock {
    _file: File,
    pub path: PathBuf,
}

pub fn acquire(dir: &Path) -> Result<Lock> {
    acquire_for(dir, "")
}

/// Take the lock, recording `what` the holder does beside its pid.
pub fn acquire_for(dir: &Path, what: &str) -> Result<Lock> {
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
        let holder = holder.split_whitespace().next().unwrap_or("");
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
    writeln!(f, "{} {what}", std::process::id())?;
    Ok(Lock { _file: f, path })
}
