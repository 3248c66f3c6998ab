//! What `status` makes of the last failures of the commands
//! (`store/failures.rs`): a run that found the backup damaged (exit 4) is
//! not answered by the command that just failed that way (issue 27.4).
//! After a `restore` found a part damaged, "a backup is ready: restore" is
//! the backup damaged; after `--resume` found one, "continue with
//! `--resume`" is "put another copy in place, `verify` it, then resume".
//! A `verify` that passes clears the records, and the state is the
//! procedure's again.

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
        State::BackupReady => state::damaged(host, found),
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
        // These name `restore` only after another step: say what it would meet.
        State::UpgradedOsBooted { .. }
        | State::RollbackDoneRebootPending { .. }
        | State::PinnedBootedNotDefault { .. } => Assessment {
            next: format!(
                "{}; but the backup: {found}: before `{}`, {check}",
                a.next,
                host.cmd("restore")
            ),
            ..a
        },
        _ => a,
    }
}
