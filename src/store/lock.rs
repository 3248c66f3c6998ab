//! One changing run at a time: an flock on `<dir>/.lock`. The file's first
//! line is the holder's pid and what it is (`restore` for a recovery); a
//! second line, rewritten as the run goes, says what it is doing now.

use anyhow::{bail, Result};
use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::node::host::Host;

pub const FILE: &str = crate::store::layout::LOCK;
/// What a recovery writes after its pid.
pub const RESTORE: &str = "restore";

/// The run that holds the lock, as it recorded itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// What the run is (`restore`, or empty).
    pub what: String,
    /// What it is doing now, when it said.
    pub doing: Option<String>,
}

/// Pure parser of the lock file's text.
pub fn parse_holder(text: &str) -> Option<Holder> {
    let mut lines = text.lines();
    let mut first = lines.next()?.split_whitespace();
    let pid = first.next()?.parse().ok()?;
    Some(Holder {
        pid,
        what: first.next().unwrap_or("").to_string(),
        doing: lines.next().map(str::to_string).filter(|s| !s.is_empty()),
    })
}

/// Open the lock file `path` never through a symlink (a planted link would
/// have root truncate and write its target) and never waiting (a FIFO there
/// would hang every run): `O_NOFOLLOW|O_NONBLOCK`, and only a regular file.
/// `create`: read-write, created 0600 when absent. Every error names the file.
fn open_lock(path: &Path, create: bool) -> std::io::Result<File> {
    use std::io::{Error, ErrorKind};
    let flags = libc_flags::NOFOLLOW | libc_flags::NONBLOCK | libc_flags::NOCTTY;
    let f = OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| {
            let why = if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                "it is a symlink, not the lock file".to_string()
            } else {
                e.to_string()
            };
            Error::new(
                e.kind(),
                format!(
                    "cannot open the lock {}: {why}; {}",
                    path.display(),
                    fix(path)
                ),
            )
        })?;
    let md = f.metadata()?;
    if !md.file_type().is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the lock {} is not a regular file; {}",
                path.display(),
                fix(path)
            ),
        ));
    }
    Ok(f)
}

/// What to do about a lock path that is not a regular file: nothing holds
/// such a lock, so removing it loses nothing.
fn fix(path: &Path) -> String {
    format!(
        "nothing was changed. Remove it (`rm {}`) and run the command again",
        path.display()
    )
}

/// The open(2) flags the lock is opened with beside read/write/create.
mod libc_flags {
    use rustix::fs::OFlags;
    pub const NOFOLLOW: i32 = OFlags::NOFOLLOW.bits() as i32;
    pub const NONBLOCK: i32 = OFlags::NONBLOCK.bits() as i32;
    pub const NOCTTY: i32 = OFlags::NOCTTY.bits() as i32;
}

/// Why the lock file in `dir` cannot be used, when it is there but is not
/// a regular file (a symlink, a FIFO, ...): for `status` to say.
pub fn problem(dir: &Path) -> Option<String> {
    match open_lock(&dir.join(FILE), false) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Some(e.to_string()),
        _ => None,
    }
}

/// The run holding the lock in `dir` now, None when no run holds it (or it
/// did not record itself). Never creates the lock file.
pub fn holder(dir: &Path) -> Option<Holder> {
    let mut f = open_lock(&dir.join(FILE), false).ok()?;
    if flock(&f, FlockOperation::NonBlockingLockShared).is_ok() {
        return None;
    }
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    parse_holder(&text)
}

/// Held until dropped (or the process ends, whatever way it ends).
#[derive(Debug)]
pub struct Lock {
    _file: File,
    what: String,
}

pub fn acquire(host: &Host) -> Result<Lock> {
    acquire_for(host, "")
}

/// Take the lock, recording `what` the holder is beside its pid.
pub fn acquire_for(host: &Host, what: &str) -> Result<Lock> {
    let path = host.backup_file(FILE);
    let mut f = open_lock(&path, true)?;
    if let Err(e) = flock(&f, FlockOperation::NonBlockingLockExclusive) {
        let mut text = String::new();
        let _ = f.read_to_string(&mut text);
        let h = parse_holder(&text);
        if e == rustix::io::Errno::WOULDBLOCK {
            return Err(busy(host, &path, h.as_ref()));
        }
        bail!("cannot lock {}: {e}", path.display());
    }
    // Who holds it is a note for `status`; the flock is the lock. A full
    // file system must not stop the run here, before the checks that say
    // what to free.
    if let Err(e) = f
        .set_len(0)
        .and_then(|_| f.rewind())
        .and_then(|_| writeln!(f, "{} {what}", std::process::id()))
    {
        log::warn!("could not note this run in {}: {e}", path.display());
    }
    Ok(Lock {
        _file: f,
        what: what.to_string(),
    })
}

/// The refusal when another run holds the lock. A recovery holding it is
/// exit 3, as the contract says of a recovery in progress (issue 27.8).
fn busy(host: &Host, path: &Path, holder: Option<&Holder>) -> anyhow::Error {
    let pid = holder.map(|h| h.pid.to_string()).unwrap_or_default();
    let (who, look) = if pid.is_empty() {
        (String::new(), String::new())
    } else {
        (format!(" (pid {pid})"), format!(" (`ps -p {pid} -o args`)"))
    };
    if let Some(h) = holder.filter(|h| h.what == RESTORE) {
        return crate::util::error::Fail::InProgress(format!(
            "a recovery is running now{who}{}; it holds {}, and nothing was changed by this run. Let it run: follow it with `journalctl -t upgrade-recovery -f`, or look with `{}`",
            h.doing.as_deref().map(|d| format!(": {d}")).unwrap_or_default(),
            path.display(),
            host.cmd("status")
        ))
        .into();
    }
    anyhow::anyhow!(
        "another upgrade-recovery run{who} holds {}; nothing was changed. Wait for it to end{look}",
        path.display()
    )
}

/// Refuse as `acquire_for` would when another run holds the lock, without
/// taking it or creating its file (for `--dry-run`).
pub fn check_free(host: &Host) -> Result<()> {
    let path = host.backup_file(FILE);
    let mut f = match open_lock(&path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if flock(&f, FlockOperation::NonBlockingLockShared).is_ok() {
        return Ok(());
    }
    let mut text = String::new();
    let _ = f.read_to_string(&mut text);
    Err(busy(host, &path, parse_holder(&text).as_ref()))
}

impl Lock {
    /// Record what the run is doing now (a second line), for `status` to
    /// show while it runs.
    pub fn note(&self, doing: &str) {
        let mut f = &self._file;
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = write!(f, "{} {}\n{doing}\n", std::process::id(), self.what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_lines() {
        let h = parse_holder("42 restore\nrecovery step wipe-crio (phase files)\n").unwrap();
        assert_eq!((h.pid, h.what.as_str()), (42, "restore"));
        assert_eq!(
            h.doing.as_deref(),
            Some("recovery step wipe-crio (phase files)")
        );
        let h = parse_holder("7\n").unwrap();
        assert_eq!((h.pid, h.what.as_str(), h.doing), (7, "", None));
        assert_eq!(parse_holder(""), None);
        assert_eq!(parse_holder("x restore"), None);
    }
}
