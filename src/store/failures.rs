//! The last failure of each command, beside the journal (`failures.json`),
//! so that `status` can name it and never offer, as the next command, one
//! that just failed that way (issue 27.4): after a restore found a part
//! damaged (exit 4), "a backup is ready, run restore" would send the admin
//! into the same wall.
//!
//! A failure is recorded by the command that failed (exit 1 or 4 of a run
//! that changes the node: `restore`, `rollback`; and a `verify` that found
//! the backup damaged), cleared by the next success of that command, and
//! all of them by a `verify` that passes or a completed `backup` (the
//! admin's or the Job's: it verified the new backup). The file is a note:
//! absent, unreadable or malformed, it is no failure, and a full disk that
//! keeps it from being written only loses the note.

use crate::util::fsutil;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const FILE: &str = crate::store::layout::FAILURES;
/// Larger is not ours: read as no record.
const MAX_BYTES: u64 = 1 << 20;

/// One failed run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Failed {
    /// The command line as the admin typed it, from the subcommand on
    /// (`restore --resume`).
    pub line: String,
    /// RFC 3339 time of the failure.
    pub at: String,
    pub exit_code: i32,
    /// What failed: the parts named in the error (each damaged part), or
    /// its first line.
    pub problem: String,
}

impl Failed {
    /// The backup was found damaged (exit 4).
    pub fn damaged_backup(&self) -> bool {
        self.exit_code == crate::util::error::Fail::Backup(String::new()).code()
    }
}

/// The last failure of each command, by command name (`restore`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Failures(pub BTreeMap<String, Failed>);

impl Failures {
    /// The record in the backup dir `dir`; empty when absent or unreadable.
    pub fn load(dir: &Path) -> Failures {
        crate::archive::validate::read_regular(&dir.join(FILE), MAX_BYTES)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The failures that found the backup damaged, oldest first.
    pub fn damage(&self) -> Vec<(&String, &Failed)> {
        let mut v: Vec<_> = self.0.iter().filter(|(_, f)| f.damaged_backup()).collect();
        v.sort_by(|a, b| a.1.at.cmp(&b.1.at));
        v
    }

    fn save(&self, dir: &Path) {
        let p = dir.join(FILE);
        let r = if self.0.is_empty() {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            }
        } else {
            serde_json::to_vec_pretty(self)
                .map_err(anyhow::Error::from)
                .and_then(|b| fsutil::write_atomic(&p, &b, 0o600))
        };
        if let Err(e) = r {
            log::warn!("could not note the outcome in {}: {e:#}", p.display());
        }
    }
}

/// The problem of an error, for the record: the lines it lists (indented
/// by two spaces: each damaged part) when its first line introduces them
/// (ends with `:`), else its first line (a refusal that shows the OS
/// deployments below its reason: the reason, not the deployments).
pub fn problem_of(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    let listed: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    if listed.is_empty() || !first.trim_end().ends_with(':') {
        first.to_string()
    } else {
        listed.join("; ")
    }
}

/// Note how the run of `command` (`line`) ended in the backup dir `dir`:
/// exit 1 or 4 records it, 0 clears it (and a passing `verify` clears
/// every record). Other codes (usage, a recovery in progress, a signal)
/// leave the record as it is. Nothing is written where there is no backup.
pub fn note(dir: &Path, command: &str, line: &str, exit_code: i32, error: Option<&str>) {
    // Without a backup there is nothing for `status` to correct: a refused
    // first backup leaves the dir as it found it.
    if !dir.is_dir() || matches!(crate::store::inspect(dir), Ok(crate::store::Kind::Empty)) {
        return;
    }
    let mut f = Failures::load(dir);
    let before = f.clone();
    match exit_code {
        // A backup that completes was verified too.
        0 if command == "verify" || command == "backup" => f.0.clear(),
        0 => {
            f.0.remove(command);
        }
        1 | 4 => {
            f.0.insert(
                command.to_string(),
                Failed {
                    line: line.to_string(),
                    at: fsutil::rfc3339(fsutil::unix_now()),
                    exit_code,
                    problem: problem_of(error.unwrap_or("")),
                },
            );
        }
        _ => {}
    }
    if f != before {
        f.save(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_cleared_and_read_leniently() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        assert_eq!(Failures::load(dir), Failures::default(), "absent");
        // No backup there: nothing is noted.
        note(dir, "restore", "restore", 4, Some("x"));
        assert!(!dir.join(FILE).exists());
        std::fs::write(dir.join(crate::store::layout::MANIFEST), "{}").unwrap();
        let err = "the backup parts that the recovery needs are damaged:\n  /x/snap.db: sha256 a but the manifest records b\nIn an outage: ...";
        note(dir, "restore", "restore", 4, Some(err));
        let f = Failures::load(dir);
        let r = &f.0["restore"];
        assert_eq!((r.exit_code, r.line.as_str()), (4, "restore"));
        assert_eq!(r.problem, "/x/snap.db: sha256 a but the manifest records b");
        assert_eq!(f.damage().len(), 1);
        // A usage error or a refusal for a recovery in progress: unchanged.
        note(dir, "restore", "restore --bogus", 2, Some("x"));
        assert_eq!(Failures::load(dir), f);
        note(
            dir,
            "rollback",
            "rollback --reboot",
            1,
            Some("one line\nmore"),
        );
        assert_eq!(Failures::load(dir).0["rollback"].problem, "one line");
        // Its own success clears one; a passing verify clears all.
        note(dir, "rollback", "rollback", 0, None);
        assert!(!Failures::load(dir).0.contains_key("rollback"));
        note(dir, "verify", "verify", 0, None);
        assert!(!dir.join(FILE).exists());
        // Malformed, or not a regular file: no record.
        std::fs::write(dir.join(FILE), b"{not json").unwrap();
        assert_eq!(Failures::load(dir), Failures::default());
        std::fs::remove_file(dir.join(FILE)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join(FILE)).unwrap();
        assert_eq!(Failures::load(dir), Failures::default());
        // No backup dir: nothing is created.
        note(&dir.join("none"), "restore", "restore", 4, Some("x"));
        assert!(!dir.join("none").exists());
    }
}
