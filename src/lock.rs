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
        let holder = holder.trim();
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
