//! Every state `status` can report, what it means and its next command: one
//! table, from which `generate-docs` writes the README's table of states
//! (`--readme`; tests/ship.rs checks the README is current), as it writes
//! the man pages. A new state does not compile until it has its row here.
//! The command is a template ([`Cmd`]) that `state.rs` renders for the
//! node and its `--dir` ([`State::command`]): the README's table is the
//! same template rendered for `/var/recovery`, so the two cannot disagree.

use super::state::State;
use crate::node::host::Host;

/// A state's next command, before it is rendered for a node and a dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd<'a> {
    /// This tool with these arguments, with `--dir` when the backup dir is
    /// not the default one (`Host::cmd`).
    Tool(&'static str),
    /// The command that continues the recovery (`state::resume_command`:
    /// the dir's wrapper with `--resume`).
    Resume,
    /// The backup dir's wrapper alone (TALM's script of that backup).
    Wrapper,
    /// `status` of another backup dir.
    StatusOf(&'a str),
    /// A program of the node, as is.
    Program(&'static str),
    /// The fix the state carries (it names the path to fix).
    Given(&'a str),
}

impl State {
    #[cfg(any(feature = "docs", test))]
    /// The state's name, as `status --output json` gives it (`state`).
    pub fn id(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v["state"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The next command in this state, as a template: the one source of
    /// what `status` prints and what the README's table says.
    pub fn next_command(&self) -> Cmd<'_> {
        match self {
            State::NoBackup => Cmd::Tool("backup"),
            State::NoBackupPinnedOs { .. } => Cmd::Program("ostree admin status"),
            State::BackupElsewhere { dir } => Cmd::StatusOf(dir),
            State::BackupDamaged { .. } => Cmd::Tool("verify"),
            State::BackupReady => Cmd::Tool("restore"),
            State::UpgradedOsBooted { .. } => Cmd::Tool("rollback --reboot"),
            State::RollbackDoneRebootPending { .. } => Cmd::Program("systemctl reboot"),
            State::PinnedBootedNotDefault { .. } => Cmd::Tool("rollback"),
            State::PinnedDeploymentGone { .. } => Cmd::Tool("restore --restore-onto-other-os"),
            State::FilesDoneRebootPending => Cmd::Program("systemctl reboot"),
            State::RecoveryRunning { .. } => Cmd::Tool("status"),
            State::RecoveryStopped { .. } => Cmd::Resume,
            State::RecoveryStoppedOtherOs { fix, .. } => Cmd::Given(fix),
            State::RecoveryStoppedBackupDamaged { .. } => Cmd::Tool("verify"),
            State::RecoveryCompleted { .. } => Cmd::Program("oc get clusteroperators"),
            State::JournalUnreadable { .. } => Cmd::Tool("restore --restart"),
            State::LegacyRecovery { .. } => Cmd::Tool("restore --restart"),
            State::OtherRunActive { .. } => Cmd::Tool("status"),
            State::BackupDirUnsafe { fix, .. } => Cmd::Given(fix),
            State::TalmBackup { .. } => Cmd::Tool("backup"),
            State::TalmBackupUpgradeFailed { .. } => Cmd::Wrapper,
            State::UpgradeCompleted { .. } => Cmd::Tool("backup"),
            State::RolledBackNotRecovered { .. } => Cmd::Tool("restore"),
        }
    }

    /// The exact next command in this state on `host` (its `--dir`);
    /// `resume` is the command that continues a recovery there
    /// (`state::resume_command`).
    pub fn command(&self, host: &Host, resume: &str) -> String {
        match self.next_command() {
            Cmd::Tool(args) => host.cmd(args),
            Cmd::Resume => resume.to_string(),
            Cmd::Wrapper => host.wrapper_cmd(""),
            Cmd::StatusOf(dir) => crate::node::host::cmd_in(std::path::Path::new(dir), "status"),
            Cmd::Program(p) => p.to_string(),
            Cmd::Given(fix) => fix.to_string(),
        }
    }

    #[cfg(any(feature = "docs", test))]
    /// What the state means and what follows its command, for the table.
    pub fn meaning(&self) -> &'static str {
        match self {
            State::NoBackup => "no backup in the backup dir, none found in another (`/var/*/`, the auto-resume unit's `--dir`, `/var/lib/upgrade-recovery/backup-dirs`), no recovery under way anywhere",
            State::NoBackupPinnedOs { .. } => "no backup in the backup dir and none found elsewhere, but a deployment that is not booted is pinned: a backup in another dir may rely on it; find it before taking a new one",
            State::BackupElsewhere { .. } => "no backup in the backup dir, but the dir D holds one (found under `/var/*/`, by the auto-resume unit's `--dir` or in `/var/lib/upgrade-recovery/backup-dirs`): look at it first",
            State::BackupDamaged { .. } => "the backup is damaged: a part missing or of the wrong size, no manifest, or a run of a command found it damaged (exit 4, named until a `verify` passes); in an outage another copy of the backup, then `verify`",
            State::BackupReady => "a backup is ready and the pinned OS runs: nothing on a healthy node; after a failed upgrade, this command",
            State::UpgradedOsBooted { .. } => "another OS than the one pinned at backup is booted (roll back first); after the reboot, `upgrade-recovery restore`",
            State::RollbackDoneRebootPending { .. } => "the rollback is done, its reboot pending; then `upgrade-recovery restore`",
            State::PinnedBootedNotDefault { .. } => "the pinned deployment is booted (chosen in the boot menu), another is the next default (no reboot needed); then `upgrade-recovery restore`",
            State::PinnedDeploymentGone { .. } => "the deployment pinned at backup is gone: no rollback is possible; the last resort restores the backup's files and etcd onto the OS that runs now (else reinstall the node)",
            State::FilesDoneRebootPending => "the files phase is done, its reboot pending; then `/var/recovery/upgrade-recovery.sh --resume`",
            State::RecoveryRunning { .. } => "a recovery is running now (pid and step from the lock file): look again",
            State::RecoveryStopped { .. } => "a recovery stopped at a step (failed, interrupted, or after the reboot)",
            State::RecoveryStoppedOtherOs { .. } => "a recovery is under way, but another OS deployment than the one it started on (whose /etc its files phase restores: ostree keeps one per deployment) is booted, e.g. chosen in the boot menu: `--resume` refuses; this command boots that one again (a reboot when it is the default, `upgrade-recovery rollback --reboot` when it is the pinned one, else `ostree admin set-default N` or the boot menu), then `--resume`",
            State::RecoveryStoppedBackupDamaged { .. } => "a recovery stopped, and a run of it found the backup damaged (exit 4): another copy of the same backup in place, this command, then `--resume`",
            State::RecoveryCompleted { .. } => "the recovery completed (`last-recovery.json`): check the cluster",
            State::JournalUnreadable { .. } => "a recovery was under way but its journal cannot be read",
            State::LegacyRecovery { .. } => "a recovery of the old `upgrade-recovery.sh` (its `progress` file)",
            State::OtherRunActive { .. } => "another run (a backup) holds the lock: wait, look again",
            State::BackupDirUnsafe { .. } => "the backup dir, a dir above it or a generation is not root's alone, or `.lock` is not a regular file: no command uses it",
            State::TalmBackup { .. } => "the backup dir holds a backup of TALM's `upgrade-recovery.sh` and no upgrade failed since: the next backup (the hub's Job) replaces it; its script recovers from it",
            State::TalmBackupUpgradeFailed { .. } => "the backup dir holds a backup of TALM's `upgrade-recovery.sh` and the upgrade after it did not complete: roll the OS back to its pinned deployment, then run that backup's script",
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
        State::NoBackupPinnedOs { pinned: s() },
        State::BackupElsewhere { dir: "D".into() },
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
        State::RecoveryStoppedOtherOs {
            step: s(),
            booted: s(),
            recovery: s(),
            fix: "systemctl reboot".into(),
        },
        State::RecoveryStoppedBackupDamaged {
            step: s(),
            problem: s(),
        },
        State::RecoveryCompleted { at: s() },
        State::JournalUnreadable { error: s() },
        State::LegacyRecovery { record: s() },
        State::OtherRunActive { pid: 0 },
        State::BackupDirUnsafe {
            problem: s(),
            fix: "chown root:root DIR && chmod 0700 DIR (or rm DIR/.lock), as status names it"
                .into(),
        },
        State::TalmBackup { created: s() },
        State::TalmBackupUpgradeFailed { created: s() },
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
    let host = Host {
        root: "/".into(),
        dir: crate::node::host::DEFAULT_DIR.into(),
    };
    for st in all() {
        t.push_str(&format!(
            "| `{}` | {} | `{}` |\n",
            st.id(),
            st.meaning(),
            st.command(&host, &host.wrapper_cmd("--resume"))
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
            | State::NoBackupPinnedOs { .. }
            | State::BackupElsewhere { .. }
            | State::BackupDamaged { .. }
            | State::BackupReady
            | State::UpgradedOsBooted { .. }
            | State::RollbackDoneRebootPending { .. }
            | State::PinnedBootedNotDefault { .. }
            | State::PinnedDeploymentGone { .. }
            | State::FilesDoneRebootPending
            | State::RecoveryRunning { .. }
            | State::RecoveryStopped { .. }
            | State::RecoveryStoppedOtherOs { .. }
            | State::RecoveryStoppedBackupDamaged { .. }
            | State::RecoveryCompleted { .. }
            | State::JournalUnreadable { .. }
            | State::LegacyRecovery { .. }
            | State::OtherRunActive { .. }
            | State::BackupDirUnsafe { .. }
            | State::TalmBackup { .. }
            | State::TalmBackupUpgradeFailed { .. }
            | State::UpgradeCompleted { .. }
            | State::RolledBackNotRecovered { .. } => 23,
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
