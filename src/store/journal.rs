//! The recovery journal: versioned JSON in the backup dir, replaced
//! atomically (temp, fsync, rename, fsync dir) after every step. It exists
//! only while a recovery is under way.

use crate::node::host::Host;
use crate::util::error::Fail;
use crate::util::fsutil;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FILE: &str = crate::store::layout::JOURNAL;
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Done {
    pub id: String,
    /// Unix time of completion.
    pub at: i64,
    pub seconds: f64,
    pub boot_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    pub step: String,
    pub error: String,
    pub at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Journal {
    pub format: u32,
    pub tool_version: String,
    pub started: String,
    /// The backup being restored (its manifest's creation time).
    pub backup_created: String,
    /// The backup generation being restored (a dir beside the journal);
    /// None for the flat format. A backup never switches generations while
    /// this journal exists.
    #[serde(default)]
    pub generation: Option<String>,
    pub completed: Vec<Done>,
    /// The boot in which the `files` phase finished.
    #[serde(default)]
    pub files_boot_id: Option<String>,
    /// SELinux mode before the recovery (`Enforcing`, `Permissive`).
    #[serde(default)]
    pub selinux_mode: Option<String>,
    /// Control-plane container ids before the etcd restore.
    #[serde(default)]
    pub containers: BTreeMap<String, String>,
    /// Sub-steps of the native etcd restore that are done.
    #[serde(default)]
    pub etcd_restore: Vec<String>,
    /// Revision each operator must reach after its forced redeployment.
    #[serde(default)]
    pub redeploy_targets: BTreeMap<String, i64>,
    #[serde(default)]
    pub failed: Option<Failure>,
    /// The recovery was started (or resumed) with `--auto-resume`: a
    /// `--resume` after a power cut in the files phase installs the resume
    /// unit as the first run would have.
    #[serde(default)]
    pub auto_resume: bool,
    /// The `--etcd-restore` the recovery was started (or last resumed) with
    /// when it was not `auto` (`script` or `native`): the runs after the
    /// reboot (the auto-resume unit's, a plain `--resume`) restore etcd the
    /// same way instead of choosing again.
    #[serde(default)]
    pub etcd_restore_mode: Option<String>,
    /// The deployment booted when the recovery started: its files phase
    /// restores that deployment's /etc (ostree keeps one per deployment),
    /// and every later run must find it booted (`recovery::same_os`).
    /// None in a journal of an earlier version.
    #[serde(default)]
    pub deployment: Option<crate::node::ostree::DeploymentId>,
}

impl Journal {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE)
    }

    /// The journal in `dir`, None when no recovery is under way. An
    /// unreadable one is an error (exit 3) that says what is wrong; the
    /// caller, which has the `Host`, names the way out (`restore
    /// --restart`, with the backup's `--dir`).
    pub fn load(dir: &Path) -> Result<Option<Journal>> {
        let p = Self::path(dir);
        // Never through a symlink, never a FIFO; non-UTF-8 is a damaged
        // journal like malformed JSON (exit 3, start over).
        let bytes = match crate::archive::validate::read_regular(&p, 16 << 20) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Fail::InProgress(format!(
                    "the recovery journal {} cannot be read: {e}. A recovery was under way but where it stands is unknown",
                    p.display()
                ))
                .into())
            }
        };
        let text = String::from_utf8(bytes).map_err(|_| {
            Fail::InProgress(format!(
                "the recovery journal {} cannot be read: it is not UTF-8. A recovery was under way but where it stands is unknown",
                p.display()
            ))
        })?;
        let j: Journal = serde_json::from_str(&text).map_err(|e| {
            Fail::InProgress(format!(
                "the recovery journal {} cannot be read: {e} (line {}, column {}). A recovery was under way but where it stands is unknown",
                p.display(),
                e.line(),
                e.column()
            ))
        })?;
        if j.format != FORMAT {
            return Err(Fail::InProgress(format!(
                "the recovery journal {} has format {} but this tool reads {FORMAT}",
                p.display(),
                j.format
            ))
            .into());
        }
        Ok(Some(j))
    }

    /// Replace the journal on disk. A full file system leaves the one on
    /// disk as it was (no temporary file either) and says where the
    /// recovery stands and what to free.
    pub fn save(&self, host: &Host) -> Result<()> {
        let dir = host.backup_dir();
        let p = Self::path(&dir);
        let r = fsutil::write_atomic(&p, serde_json::to_string_pretty(self)?.as_bytes(), 0o600);
        match r {
            Err(e) if crate::util::error::no_space(&e) => Err(e.context(no_room(host))),
            r => r,
        }
    }

    pub fn remove(dir: &Path) -> Result<()> {
        match std::fs::remove_file(Self::path(dir)) {
            Ok(()) => fsutil::fsync_dir(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn is_done(&self, id: &str) -> bool {
        self.completed.iter().any(|d| d.id == id)
    }
}

/// The words for a journal that could not be written for want of room:
/// what the journal on disk still says, what to free, the next command.
fn no_room(host: &Host) -> String {
    let dir = host.backup_dir();
    let free = fsutil::free_bytes(&dir).map_or_else(|_| "?".into(), fsutil::human);
    let (state, next) = match Journal::load(&dir) {
        Ok(Some(j)) => (
            format!(
                "the journal there still records {} steps done (last: {}); what this run did since is safe to do again",
                j.completed.len(),
                j.completed.last().map_or("none", |d| d.id.as_str())
            ),
            host.cmd("restore --resume"),
        ),
        _ => (
            "no recovery is recorded there; the preflight made no change".into(),
            host.cmd("restore"),
        ),
    };
    format!(
        "the file system of {} is full ({free} free): the recovery journal cannot be written, so the recovery stopped; {state}. Free at least 1 MiB there (`df -h {}`: files the upgrade left, old logs; never the backup itself), then run `{next}`",
        dir.display(),
        dir.display()
    )
}

/// The record of the last completed recovery, beside the journal, so that
/// after the journal is gone `status` and `restore --resume` can still say
/// "recovery completed at T".
pub const LAST_FILE: &str = crate::store::layout::LAST_RECOVERY;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LastRecovery {
    /// RFC 3339 time the last step finished.
    pub completed: String,
    pub started: String,
    /// The backup it restored (its manifest's creation time).
    pub backup_created: String,
    pub steps: usize,
    /// The generation it restored (None: the flat format, or a record of
    /// an older version).
    #[serde(default)]
    pub generation: Option<String>,
    /// The newest ClusterVersion history entry when it completed, if the
    /// API answered.
    #[serde(default)]
    pub cluster_newest: Option<crate::node::oc::HistoryEntry>,
}

impl LastRecovery {
    /// None when absent or unreadable: it is a note, never a reason to fail.
    pub fn load(dir: &Path) -> Option<LastRecovery> {
        let text = std::fs::read_to_string(dir.join(LAST_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        fsutil::write_atomic(
            &dir.join(LAST_FILE),
            serde_json::to_string_pretty(self)?.as_bytes(),
            0o600,
        )
    }
}
