//! Every state `status` can report, what it means and its next command: one
//! table, from which `generate-docs` writes the README's table of states
//! (`--readme`; tests/ship.rs checks the README is current), as it writes
//! the man pages. A new state does not compile until it has its row here.
//! (`status` computes each command in `state.rs`, with `--dir` and the
//! paths of the node; after the merge of the lifecycle rule the two are
//! not yet one source.)

use super::state::State;

impl State {
    #[cfg(any(feature = "docs", test))]
    /// The state's name, as `status --output json` gives it (`state`).
    pub fn id(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v["state"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    #[cfg(any(feature = "docs", test))]
    /// The exact next command in this state; `resume` is the command that
    /// continues a recovery (`state::resume_command`).
    pub fn command(&self, resume: &str) -> String {
        match self {
            State::NoBackup => "upgrade-recovery backup".into(),
            State::BackupDamaged { .. } => "upgrade-recovery verify".into(),
            State::BackupReady => "upgrade-recovery restore".into(),
            State::UpgradedOsBooted { .. } => "upgrade-recovery rollback --reboot".into(),
            State::RollbackDoneRebootPending { .. } => "systemctl reboot".into(),
            State::PinnedBootedNotDefault { .. } => "upgrade-recovery rollback".into(),
            State::PinnedDeploymentGone { .. } => "ostree admin status".into(),
            State::FilesDoneRebootPending => "systemctl reboot".into(),
            State::RecoveryRunning { .. } => "upgrade-recovery status".into(),
            State::RecoveryStopped { .. } => resume.into(),
            State::RecoveryStoppedBackupDamaged { .. } => "upgrade-recovery verify".into(),
            State::RecoveryCompleted { .. } => "oc get clusteroperators".into(),
            State::JournalUnreadable { .. } => "upgrade-recovery restore --restart".into(),
            State::LegacyRecovery { .. } => "upgrade-recovery restore --restart".into(),
            State::OtherRunActive { .. } => "upgrade-recovery status".into(),
            State::BackupDirUnsafe { .. } => {
                "chown root:root DIR && chmod 0700 DIR (or rm DIR/.lock), as status names it".into()
            }
            State::TalmBackup { .. } => {
                "upgrade-recovery backup (healthy node), or after a failed upgrade that backup's /var/recovery/upgrade-recovery.sh".into()
            }
            State::UpgradeCompleted { .. } => "upgrade-recovery backup".into(),
            State::RolledBackNotRecovered { .. } => "upgrade-recovery restore".into(),
        }
    }

    #[cfg(any(feature = "docs", test))]
    /// What the state means and what follows its command, for the table.
    pub fn meaning(&self) -> &'static str {
        match self {
            State::NoBackup => "no backup in the backup dir",
            State::BackupDamaged { .. } => "the backup is damaged: a part missing or of the wrong size, no manifest, or a run of a command found it damaged (exit 4, named until a `verify` passes); in an outage another copy of the backup, then `verify`",
            State::BackupReady => "a backup is ready and the pinned OS runs: nothing on a healthy node; after a failed upgrade, this command",
            State::UpgradedOsBooted { .. } => "another OS than the one pinned at backup is booted (roll back first); after the reboot, `upgrade-recovery restore`",
            State::RollbackDoneRebootPending { .. } => "the rollback is done, its reboot pending; then `upgrade-recovery restore`",
            State::PinnedBootedNotDefault { .. } => "the pinned deployment is booted (chosen in the boot menu), another is the next default (no reboot needed); then `upgrade-recovery restore`",
            State::PinnedDeploymentGone { .. } => "the deployment pinned at backup is gone: no rollback is possible",
            State::FilesDoneRebootPending => "the files phase is done, its reboot pending; then `/var/recovery/upgrade-recovery.sh --resume`",
            State::RecoveryRunning { .. } => "a recovery is running now (pid and step from the lock file): look again",
            State::RecoveryStopped { .. } => "a recovery stopped at a step (failed, interrupted, or after the reboot)",
            State::RecoveryStoppedBackupDamaged { .. } => "a recovery stopped, and a run of it found the backup damaged (exit 4): another copy of the same backup in place, this command, then `--resume`",
            State::RecoveryCompleted { .. } => "the recovery completed (`last-recovery.json`): check the cluster",
            State::JournalUnreadable { .. } => "a recovery was under way but its journal cannot be read",
            State::LegacyRecovery { .. } => "a recovery of the old `upgrade-recovery.sh` (its `progress` file)",
            State::OtherRunActive { .. } => "another run (a backup) holds the lock: wait, look again",
            State::BackupDirUnsafe { .. } => "the backup dir, a dir above it or a generation is not root's alone, or `.lock` is not a regular file: no command uses it",
            State::TalmBackup { .. } => "the backup dir holds a backup of TALM's `upgrade-recovery.sh`: its script recovers from it",
            State::UpgradeCompleted { .. } => "every upgrade since the backup completed: the next backup replaces it",
            State::RolledBackNotRecovered { .. } => "the pinned OS is booted again but the upgrade after the backup did not complete and no recovery completed since",
        }
    }
}

#[cfg(any(feature = "docs", test))]
/// One state of each kind, in the order of the procedure.
pub fn all() -> Vec<State> {
    let s = String::new;
    vec![
        State::NoBackup,
        State::BackupReady,
        State::BackupDamaged { problem: s() },
        State::UpgradedOsBooted {
            active: s(),
            pinned: s(),
        },
        State::RollbackDoneRebootPending {
            active: s(),
            pinned: s(),
        },
        State::PinnedBootedNotDefault {
            default: s(),
            pinned: s(),
        },
        State::PinnedDeploymentGone { pinned: s() },
        State::FilesDoneRebootPending,
        State::RecoveryRunning {
            pid: 0,
            doing: None,
        },
        State::RecoveryStopped {
            step: s(),
            error: None,
        },
        State::RecoveryStoppedBackupDamaged {
            step: s(),
            problem: s(),
        },
        State::RecoveryCompleted { at: s() },
        State::JournalUnreadable { error: s() },
        State::LegacyRecovery { record: s() },
        State::OtherRunActive { pid: 0 },
        State::BackupDirUnsafe { problem: s() },
        State::TalmBackup { created: s() },
        State::UpgradeCompleted {
            versions: Vec::new(),
        },
        State::RolledBackNotRecovered { upgrade: s() },
    ]
}

#[cfg(any(feature = "docs", test))]
/// Where the README's generated table begins and ends.
pub const BEGIN: &str = "<!-- states: generated by `make docs` from src/recovery/states.rs -->";
#[cfg(any(feature = "docs", test))]
pub const END: &str = "<!-- end of states -->";

#[cfg(any(feature = "docs", test))]
/// The table of states, in Markdown.
pub fn table() -> String {
    let mut t = String::from("| state | what it means | next command |\n|---|---|---|\n");
    for st in all() {
        t.push_str(&format!(
            "| `{}` | {} | `{}` |\n",
            st.id(),
            st.meaning(),
            st.command("/var/recovery/upgrade-recovery.sh --resume")
        ));
    }
    t
}

#[cfg(any(feature = "docs", test))]
/// `text` (the README) with the table between its markers replaced by the
/// current one; None when the markers are missing.
pub fn with_table(text: &str) -> Option<String> {
    let b = text.find(BEGIN)? + BEGIN.len();
    let e = b + text[b..].find(END)?;
    Some(format!("{}\n{}{}", &text[..b], table(), &text[e..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_is_in_the_table_once() {
        // A new state is a compile error in `command` and `meaning`; here
        // it must also be in `all` (the table), once.
        let ids: Vec<String> = all().iter().map(State::id).collect();
        let mut uniq = ids.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), ids.len(), "{ids:?}");
        let index = |s: &State| match s {
            State::NoBackup
            | State::BackupDamaged { .. }
            | State::BackupReady
            | State::UpgradedOsBooted { .. }
            | State::RollbackDoneRebootPending { .. }
            | State::PinnedBootedNotDefault { .. }
            | State::PinnedDeploymentGone { .. }
            | State::FilesDoneRebootPending
            | State::RecoveryRunning { .. }
            | State::RecoveryStopped { .. }
            | State::RecoveryStoppedBackupDamaged { .. }
            | State::RecoveryCompleted { .. }
            | State::JournalUnreadable { .. }
            | State::LegacyRecovery { .. }
            | State::OtherRunActive { .. }
            | State::BackupDirUnsafe { .. }
            | State::TalmBackup { .. }
            | State::UpgradeCompleted { .. }
            | State::RolledBackNotRecovered { .. } => 19,
        };
        assert_eq!(
            all().len(),
            index(&State::NoBackup),
            "a state is missing from all()"
        );
        assert!(table().contains("| `recovery-stopped-backup-damaged` |"));
        let readme = format!("intro\n{BEGIN}\nold\n{END}\nrest\n");
        let new = with_table(&readme).unwrap();
        assert!(
            new.starts_with(&format!("intro\n{BEGIN}\n| state |"))
                && new.ends_with(&format!("{END}\nrest\n"))
        );
        assert_eq!(with_table(&new).unwrap(), new);
        assert_eq!(with_table("no markers"), None);
    }
}
