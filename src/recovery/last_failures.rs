//! What `status` makes of the last failures of the commands
//! (`store/failures.rs`): a run that found the backup damaged (exit 4) is
//! not answered by the command that just failed that way (issue 27.4).
//! No state names a command that reads this backup again: after a
//! `restore` found a part damaged, "a backup is ready: restore" (and
//! "rolled back, not recovered: restore", "the pinned deployment gone:
//! restore --restore-onto-other-os") is the backup damaged; after
//! `--resume` (or `--restart`) found one, "continue with `--resume`" is
//! "put another copy in place, `verify` it, then resume". A `verify` that
//! passes clears the records, and the state is the procedure's again.

use super::state::{self, resume_command, Assessment, State};
use crate::node::host::Host;
use crate::store::failures::Failures;

/// The assessment of the procedure, corrected by the failures on record.
pub fn apply(host: &Host, a: Assessment) -> Assessment {
    let f = Failures::load(&host.backup_dir());
    let damage = f.damage();
    let Some((_, last)) = damage.last() else {
        return a;
    };
    let found = format!(
        "`{}` found it damaged at {} (exit {}): {}",
        host.cmd(&last.line),
        last.at,
        last.exit_code,
        last.problem
    );
    let check = format!(
        "check the backup with `{}` (it names every damaged part; in an outage put another copy of the same backup in {} first)",
        host.cmd("verify"),
        host.dir.display()
    );
    match a.state {
        // States whose command starts a recovery from this backup: that
        // command is the one that just failed (issue 27.4; the hints
        // report: `rolled-back-not-recovered` named `restore` again).
        State::BackupReady => state::damaged(host, found),
        State::RolledBackNotRecovered { .. } | State::PinnedDeploymentGone { .. } => {
            let d = state::damaged(host, found);
            Assessment {
                text: format!("{}; besides, {}", d.text, a.text),
                ..d
            }
        }
        State::RecoveryStopped { step, .. } => Assessment::new(
            host,
            State::RecoveryStoppedBackupDamaged {
                step: step.clone(),
                problem: found.clone(),
            },
            format!("the recovery stopped before step {step}: {found}"),
            format!(
                "{check}; once it passes, continue with `{}`. Until then `--resume` fails the same way; intact files can be copied out with `{}`",
                resume_command(host),
                host.cmd("extract PATH... --to DIR")
            ),
        ),
        // A recovery under way whose way on is `restore --restart`: it reads
        // the whole backup again, and meets the same damage.
        State::JournalUnreadable { .. } | State::LegacyRecovery { .. } => Assessment::new(
            host,
            State::RecoveryStoppedBackupDamaged {
                step: "(unknown: the recovery starts over)".into(),
                problem: found.clone(),
            },
            format!("{}; and {found}", a.text),
            format!(
                "{check}; once it passes, start the recovery over with `{}`. Until then it fails the same way; intact files can be copied out with `{}`",
                a.command,
                host.cmd("extract PATH... --to DIR")
            ),
        ),
        // These name `restore` only after another step: say what it would meet.
        State::UpgradedOsBooted { .. }
        | State::RollbackDoneRebootPending { .. }
        | State::PinnedBootedNotDefault { .. }
        | State::RecoveryStoppedOtherOs { .. }
        | State::FilesDoneRebootPending => Assessment {
            next: format!(
                "{}; but the backup: {found}: before `{}`, {check}",
                a.next,
                if matches!(
                    a.state,
                    State::FilesDoneRebootPending | State::RecoveryStoppedOtherOs { .. }
                ) {
                    resume_command(host)
                } else {
                    host.cmd("restore")
                }
            ),
            ..a
        },
        // The rest name no command that reads the backup (`status`,
        // `verify`, `backup`, `oc`, a program of the node), or a state
        // without a backup of this tool (TALM's script reads its own).
        State::NoBackup
        | State::NoBackupPinnedOs { .. }
        | State::BackupElsewhere { .. }
        | State::BackupDamaged { .. }
        | State::RecoveryRunning { .. }
        | State::RecoveryStoppedBackupDamaged { .. }
        | State::RecoveryCompleted { .. }
        | State::OtherRunActive { .. }
        | State::BackupDirUnsafe { .. }
        | State::TalmBackup { .. }
        | State::TalmBackupUpgradeFailed { .. }
        | State::UpgradeCompleted { .. } => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With a run on record that found the backup damaged (exit 4), no
    /// state names a command that reads this backup again (`restore` in
    /// any form, the wrapper, `--resume`) before `verify` passes: every
    /// state of the table, through `apply` (the hints report:
    /// `rolled-back-not-recovered` named `restore`, which exits 4 again).
    #[test]
    fn no_state_names_a_command_that_just_found_the_backup_damaged() {
        let root = std::env::temp_dir().join(format!("ur-lastfail-{}", std::process::id()));
        let dir = root.join("var/recovery");
        std::fs::create_dir_all(&dir).unwrap();
        let host = Host {
            root: root.clone(),
            dir: crate::node::host::DEFAULT_DIR.into(),
        };
        let reads_backup =
            |c: &str| c.contains(" restore") || c.contains("--resume") || c.ends_with(".sh");
        // Without a record, these states name such a command (what the
        // test is about); with one, none of them does.
        let before: Vec<String> = crate::recovery::states::all()
            .into_iter()
            .map(|s| Assessment::new(&host, s, String::new(), String::new()))
            .filter(|a| reads_backup(&a.command))
            .map(|a| a.state.id())
            .collect();
        for id in [
            "backup-ready",
            "rolled-back-not-recovered",
            "pinned-deployment-gone",
            "recovery-stopped",
            "journal-unreadable",
            "legacy-recovery",
        ] {
            assert!(before.contains(&id.to_string()), "{id}: {before:?}");
        }
        let mut rec = crate::store::failures::Failures::default();
        rec.0.insert(
            "restore".into(),
            crate::store::failures::Failed {
                line: "restore".into(),
                at: "2026-01-01T00:00:00Z".into(),
                exit_code: 4,
                problem: "etc.tar.zst: sha256 differs".into(),
            },
        );
        std::fs::write(
            dir.join(crate::store::failures::FILE),
            serde_json::to_vec(&rec).unwrap(),
        )
        .unwrap();
        for s in crate::recovery::states::all() {
            let id = s.id();
            let a = apply(&host, Assessment::new(&host, s, "t".into(), "n".into()));
            // TALM's backup is recovered by its own script, which reads
            // its own files: this tool's record is not about them.
            if id == "talm-backup-upgrade-failed" {
                continue;
            }
            assert!(
                !reads_backup(&a.command),
                "{id} -> {}: {}",
                a.state.id(),
                a.command
            );
            // A state that would lead to such a command says what it meets.
            if before.contains(&id) {
                assert!(
                    a.next.contains("`upgrade-recovery verify`") && a.text.contains("etc.tar.zst"),
                    "{id}: {} / {}",
                    a.text,
                    a.next
                );
            }
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
