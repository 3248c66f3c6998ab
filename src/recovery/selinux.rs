//! The SELinux mode a recovery puts back, recorded once.
//!
//! The first run of the files phase records the mode (before `setenforce 0`)
//! in `selinux-mode.json` in the backup dir, beside the journal but not in
//! it: `--restart` forgets the journal, and a crash can leave the node
//! Permissive, so asking `getenforce` again would record Permissive and a
//! recovery that started Enforcing would end Permissive. The record is kept
//! until the recovery completes, and applies only to the backup it was made
//! for.

use crate::util::fsutil;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const FILE: &str = "selinux-mode.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// `Enforcing`, `Permissive` or `Disabled`, as `getenforce` printed it.
    pub mode: String,
    /// The backup being restored (its manifest's creation time).
    pub backup_created: String,
    /// Unix time the mode was recorded.
    pub at: i64,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The mode recorded for this backup's recovery, if any. A record that
/// cannot be read is reported and ignored (the caller asks the node).
pub fn recorded(dir: &Path, backup_created: &str) -> Option<Record> {
    let p = path(dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            log::warn!("{}: {e}; asking getenforce instead", p.display());
            return None;
        }
    };
    match serde_json::from_str::<Record>(&text) {
        Ok(r) if r.backup_created == backup_created && valid(&r.mode) => Some(r),
        Ok(r) => {
            log::info!(
                "{} is for the backup of {} (mode {}), not this one: ignored",
                p.display(),
                r.backup_created,
                r.mode
            );
            None
        }
        Err(e) => {
            log::warn!(
                "{} is malformed ({e}); asking getenforce instead",
                p.display()
            );
            None
        }
    }
}

pub fn valid(mode: &str) -> bool {
    matches!(mode, "Enforcing" | "Permissive" | "Disabled")
}

/// Record the mode, durably (written and synced before `setenforce 0`).
pub fn record(dir: &Path, mode: &str, backup_created: &str) -> Result<Record> {
    let r = Record {
        mode: mode.to_string(),
        backup_created: backup_created.to_string(),
        at: fsutil::unix_now(),
    };
    fsutil::write_atomic(
        &path(dir),
        serde_json::to_string_pretty(&r)?.as_bytes(),
        0o600,
    )
    .with_context(|| format!("recording the SELinux mode in {}", path(dir).display()))?;
    Ok(r)
}

/// The recovery is complete: the record has served.
pub fn forget(dir: &Path) -> Result<()> {
    match std::fs::remove_file(path(dir)) {
        Ok(()) => fsutil::fsync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path(dir).display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_once_per_backup() {
        let d = std::env::temp_dir().join(format!("ur-selinux-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert_eq!(recorded(&d, "T1"), None, "absent");
        record(&d, "Enforcing", "T1").unwrap();
        assert_eq!(recorded(&d, "T1").unwrap().mode, "Enforcing");
        assert_eq!(recorded(&d, "T2"), None, "another backup's record");
        std::fs::write(path(&d), "{ not json").unwrap();
        assert_eq!(recorded(&d, "T1"), None, "malformed");
        std::fs::write(path(&d), r#"{"mode":"Weird","backup_created":"T1","at":0}"#).unwrap();
        assert_eq!(recorded(&d, "T1"), None, "not a mode");
        forget(&d).unwrap();
        forget(&d).unwrap();
        assert!(!path(&d).exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
