//! Where the node stands in the documented procedure, from the backup dir,
//! the lock, the journal and the OS deployments: what `status` shows, what
//! `restore` refuses on, and what `rollback` checks. Below the commands, so
//! that the recovery and the commands share it without a cycle.

pub use super::lifecycle::Since;
use crate::node::host::Host;
use crate::node::ostree::{BootedFrom, OsState};
use crate::store::journal::{Journal, LastRecovery};
use crate::store::manifest::Manifest;
use serde::Serialize;
use std::fmt::Write as _;

/// Where the node stands in the documented procedure.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum State {
    NoBackup,
    /// No backup here and none found elsewhere, but a deployment that is
    /// not booted is pinned: a backup in a dir not found may rely on it.
    NoBackupPinnedOs {
        pinned: String,
    },
    /// No backup here; another dir holds one (`elsewhere::find`).
    BackupElsewhere {
        dir: String,
    },
    BackupDamaged {
        problem: String,
    },
    BackupReady,
    /// Another OS than the one pinned at backup is booted (after a failed
    /// upgrade: roll back).
    UpgradedOsBooted {
        active: String,
        pinned: String,
    },
    /// The pinned deployment is the next default but not booted yet.
    RollbackDoneRebootPending {
        active: String,
        pinned: String,
    },
    /// The pinned deployment is booted (chosen in the boot menu) but another
    /// is the next default: a reboot would leave it.
    PinnedBootedNotDefault {
        default: String,
        pinned: String,
    },
    /// The deployment pinned at backup is no longer deployed.
    PinnedDeploymentGone {
        pinned: String,
    },
    FilesDoneRebootPending,
    RecoveryRunning {
        pid: u32,
        doing: Option<String>,
    },
    RecoveryStopped {
        step: String,
        error: Option<String>,
    },
    /// A recovery is under way, but another deployment than the one it
    /// started on (whose /etc its files phase restores) is booted:
    /// `--resume` refuses (`same_os`); boot that one again first.
    RecoveryStoppedOtherOs {
        step: String,
        booted: String,
        recovery: String,
        /// The command that boots the recovery's deployment (or starts the
        /// recovery over when it is gone).
        fix: String,
    },
    /// A recovery is under way, and a run of it found the backup damaged
    /// (exit 4): `--resume` would fail the same way until a copy that
    /// `verify` passes is in place.
    RecoveryStoppedBackupDamaged {
        step: String,
        problem: String,
    },
    RecoveryCompleted {
        at: String,
    },
    JournalUnreadable {
        error: String,
    },
    LegacyRecovery {
        record: String,
    },
    /// Another run (a backup) holds the lock.
    OtherRunActive {
        pid: u32,
    },
    /// The backup dir (or a dir above it, or a generation) is not root's
    /// alone, or its lock is not a regular file: no command uses it.
    BackupDirUnsafe {
        problem: String,
        /// The command that fixes it (the problem's text quotes it).
        fix: String,
    },
    /// TALM's upgrade-recovery.sh layout, no failed upgrade since: the next
    /// backup replaces it; its script recovers from it.
    TalmBackup {
        created: String,
    },
    /// TALM's layout, and the upgrade after it did not complete: its
    /// script recovers from it.
    TalmBackupUpgradeFailed {
        created: String,
    },
    /// Every upgrade since the backup completed (the lifecycle rule): the
    /// next backup replaces it.
    UpgradeCompleted {
        versions: Vec<String>,
    },
    /// The pinned OS is booted (rolled back) but the upgrade after the
    /// backup did not complete and no recovery completed since.
    RolledBackNotRecovered {
        upgrade: String,
    },
}

/// The state, its sentence, the next step in a sentence, the command alone.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub state: State,
    pub text: String,
    pub next: String,
    pub command: String,
}

impl Assessment {
    /// The state with its sentences; its command is the state's own
    /// (`State::command`, the table of states), rendered for `host`.
    pub fn new(host: &Host, state: State, text: String, next: String) -> Assessment {
        let command = state.command(host, &resume_command(host));
        Assessment {
            state,
            text,
            next,
            command,
        }
    }
}

/// The wrapper command that continues a recovery, as the docs write it.
pub fn resume_command(host: &Host) -> String {
    // A path that exists (issue 27.5): the documented link, else the
    // wrapper in the current generation, else the tool itself.
    let wrapper = crate::store::layout::WRAPPER;
    let current = crate::store::layout::CURRENT;
    let dir = host.backup_dir();
    if !programs_intact(host) {
        // The wrapper or the binary would fail (issue: a flipped byte in
        // the backup's copy): the tool from elsewhere, with `--dir`.
        host.cmd("restore --resume")
    } else if dir.join(wrapper).is_file() {
        host.wrapper_cmd("--resume")
    } else if dir.join(current).join(wrapper).is_file() {
        crate::node::host::wrapper_in(&host.dir.join(current), "--resume")
    } else {
        host.cmd("restore --resume")
    }
}

/// Whether the current backup's copy of the tool (binary, wrapper) passes
/// its check; true when there is no readable backup (nothing to say here).
fn programs_intact(host: &Host) -> bool {
    let Ok(gen) = crate::store::current(&host.backup_dir()) else {
        return true;
    };
    let Ok(m) = Manifest::load(&gen) else {
        return true;
    };
    m.programs()
        .iter()
        .all(|p| crate::store::verify::check(&gen, p).is_empty())
}

/// The same node with the backup dir `dir` (another dir's state, its
/// commands).
pub fn in_dir(host: &Host, dir: &str) -> Host {
    Host {
        root: host.root.clone(),
        dir: dir.into(),
    }
}

/// Cheap checks that a backup is complete (the full check is `verify`):
/// the manifest loads, every part it lists is there with its size, and
/// the copy of the tool the documented recovery command runs passes its
/// check (a few MiB read: a flipped byte keeps the size).
pub(crate) fn backup_problem(dir: &std::path::Path, m: &Manifest) -> Option<String> {
    let mut parts: Vec<(String, u64)> = m
        .trees
        .iter()
        .map(|t| (t.archive.clone(), t.stats.archive_bytes))
        .collect();
    if let Some(e) = &m.etcd {
        parts.push((e.file.clone(), e.size));
    }
    if let Some(sp) = &m.static_pods {
        parts.push((sp.file.clone(), sp.size));
    }
    for (file, size) in parts {
        match std::fs::metadata(dir.join(&file)) {
            Err(_) => return Some(format!("{file} is missing")),
            Ok(md) if md.len() != size => {
                return Some(format!(
                    "{file} has {} bytes, the manifest says {size}",
                    md.len()
                ))
            }
            Ok(_) => {}
        }
    }
    m.programs()
        .iter()
        .find_map(|p| crate::store::verify::check(dir, p).into_iter().next())
}

/// Where the node stands, from the backup dir, the lock, the journal and the
/// OS deployments (no etcd, no network): shared by `status`, `restore`'s
/// refusals and `rollback`.
pub fn assess(host: &Host, os: Option<&OsState>) -> Assessment {
    assess_with(host, os, None)
}

/// [`assess_with`], corrected by the last failures of the commands
/// (`last_failures.rs`): never the command that just failed that way.
pub fn assess_with(host: &Host, os: Option<&OsState>, verdict: Option<&Since>) -> Assessment {
    if let Some(a) = recovery_elsewhere(host, os) {
        return a;
    }
    super::last_failures::apply(host, procedure(host, os, verdict))
}

/// No recovery here (no journal, no progress file, no run holding the
/// lock), but one under way in another dir (`elsewhere::find`): that dir's
/// state and its command, said to be there. No backup or other recovery
/// runs until it completes (the lifecycle rule).
fn recovery_elsewhere(host: &Host, os: Option<&OsState>) -> Option<Assessment> {
    let dir = host.backup_dir();
    if crate::store::recovery_record(&dir).is_some()
        || crate::store::lock::holder(&dir).is_some()
        || crate::store::trust::problem(&dir).is_some()
    {
        return None;
    }
    let found = super::elsewhere::find(host);
    let u = found.under_way()?;
    let there = in_dir(host, &u.dir);
    let a = super::last_failures::apply(&there, procedure(&there, os, None));
    Some(Assessment {
        text: format!(
            "a recovery is under way in {} (not in {}): {}",
            u.dir,
            host.dir.display(),
            a.text
        ),
        next: format!(
            "{}; no backup and no other recovery runs until it completes",
            a.next
        ),
        ..a
    })
}

/// [`assess`], with the lifecycle rule's verdict where it was read (it asks
/// the API): it tells a completed upgrade from a failed one, and a finished
/// recovery from none.
fn procedure(host: &Host, os: Option<&OsState>, verdict: Option<&Since>) -> Assessment {
    let dir = host.backup_dir();
    let resume = resume_command(host);
    let a = |state: State, text: String, next: String| Assessment::new(host, state, text, next);
    let problem = crate::store::trust::problem(&dir).or_else(|| crate::store::lock::problem(&dir));
    if let Some(problem) = problem {
        // The fix is the first command the problem's text quotes.
        let fix = problem
            .split('`')
            .nth(1)
            .map_or_else(|| host.cmd("status"), str::to_string);
        return a(
            State::BackupDirUnsafe {
                problem: problem.clone(),
                fix: fix.clone(),
            },
            problem,
            format!("`{fix}`, then look again with `{}`", host.cmd("status")),
        );
    }
    if let Some(crate::store::lock::Holder { pid, what, doing }) = crate::store::lock::holder(&dir)
    {
        let running_recovery = what == crate::store::lock::RESTORE
            || doing.as_deref().is_some_and(|d| d.starts_with("recovery"));
        if running_recovery || Journal::path(&dir).exists() {
            return a(
                State::RecoveryRunning {
                    pid,
                    doing: doing.clone(),
                },
                format!(
                    "a recovery is running now (pid {pid}){}",
                    doing.map(|d| format!(": {d}")).unwrap_or_default()
                ),
                format!("let it run; follow it with `journalctl -t upgrade-recovery -f`, or look again with `{}`", host.cmd("status")),
            );
        }
        return a(
            State::OtherRunActive { pid },
            format!(
                "another upgrade-recovery run (pid {pid}{}) holds {}",
                doing.map(|d| format!(", {d}")).unwrap_or_default(),
                host.dir.join(crate::store::lock::FILE).display()
            ),
            format!(
                "wait for it to end, then look again with `{}`",
                host.cmd("status")
            ),
        );
    }
    match Journal::load(&dir) {
        Err(e) => {
            return a(
                State::JournalUnreadable {
                    error: format!("{e:#}"),
                },
                "a recovery was under way but its journal cannot be read".into(),
                format!(
                    "start the recovery over with `{}` (every step is safe to run again)",
                    host.cmd("restore --restart")
                ),
            )
        }
        Ok(Some(mut j)) => {
            let boot = host.boot_id().ok();
            // A reboot in the middle of the files phase: `--resume` runs
            // that phase again from its start (`forget_files_after_reboot`),
            // and says so; so does this.
            let again = boot
                .as_deref()
                .is_some_and(|b| super::forget_files_after_reboot(&mut j, b));
            let next = super::STEPS.iter().find(|s| !j.is_done(s.id.as_str()));
            if next.is_some_and(|s| s.after_reboot)
                && j.files_boot_id.is_some()
                && j.files_boot_id == boot
            {
                return a(
                    State::FilesDoneRebootPending,
                    "the recovery's files phase is done; the node has not rebooted since".into(),
                    format!("reboot first (`systemctl reboot`), then run `{resume}`"),
                );
            }
            let step = next.map_or("none", |s| s.id.as_str()).to_string();
            let phase = next.map_or("done", |s| s.phase.name());
            let error = j.failed.as_ref().map(|f| f.error.clone());
            let text = match &j.failed {
                Some(f) => format!(
                    "the recovery stopped at step {} (phase {phase}), which failed: {}; {} of {} steps done",
                    f.step,
                    f.error,
                    j.completed.len(),
                    super::STEPS.len()
                ),
                None if again => format!(
                    "the node rebooted during the recovery's files phase: `--resume` runs that phase again from its start (step {step}); {} of {} steps stand done",
                    j.completed.len(),
                    super::STEPS.len()
                ),
                None => format!(
                    "the recovery stopped before step {step} (phase {phase}); {} of {} steps done",
                    j.completed.len(),
                    super::STEPS.len()
                ),
            };
            let next = if j.failed.is_some() {
                format!("fix the cause above, then continue with `{resume}`")
            } else {
                format!("continue with `{resume}`")
            };
            // Booted into another deployment than the recovery's: `--resume`
            // refuses (same_os); the way back first.
            let m = crate::store::current_on(host)
                .ok()
                .and_then(|g| crate::store::manifest::Manifest::load(&g).ok());
            // As `--resume` words its refusal (whether ostree has set-default).
            let tools = crate::node::cmd::Tools::require(&["ostree"], &[]).ok();
            if let Some(mv) = os.and_then(|os| {
                super::same_os::moved(host, &j, os, m.as_ref(), tools.as_ref(), &resume)
            }) {
                return a(
                    State::RecoveryStoppedOtherOs {
                        step: j.failed.as_ref().map_or(step, |f| f.step.clone()),
                        booted: mv.booted,
                        recovery: mv.recovery,
                        fix: mv.command,
                    },
                    format!("{text}; {}", mv.what),
                    mv.way,
                );
            }
            return a(
                State::RecoveryStopped {
                    step: j.failed.as_ref().map_or(step, |f| f.step.clone()),
                    error,
                },
                text,
                next,
            );
        }
        Ok(None) => {}
    }
    let legacy = dir.join(crate::store::layout::LEGACY_PROGRESS);
    if legacy.exists() {
        return a(
            State::LegacyRecovery {
                record: legacy.display().to_string(),
            },
            format!(
                "{} shows a recovery started by the old upgrade-recovery.sh",
                legacy.display()
            ),
            format!(
                "start it over with `{}` (every step is safe to run again)",
                host.cmd("restore --restart")
            ),
        );
    }
    let cur = match crate::store::inspect(&dir) {
        Ok(crate::store::Kind::Empty) => return no_backup(host, os, verdict),
        Ok(crate::store::Kind::Talm { created }) => {
            let script = host
                .dir
                .join(crate::store::layout::WRAPPER)
                .display()
                .to_string();
            let failed = matches!(verdict, Some(Since::Failed { .. }));
            let created = crate::util::fsutil::rfc3339(created);
            return a(
                if failed {
                    State::TalmBackupUpgradeFailed {
                        created: created.clone(),
                    }
                } else {
                    State::TalmBackup {
                        created: created.clone(),
                    }
                },
                format!(
                    "{} holds a backup taken by TALM's upgrade-recovery.sh on {}; recover with that script (`{script}` of that backup)",
                    host.dir.display(),
                    created
                ),
                if failed {
                    format!("the upgrade after it did not complete: roll the OS back to its pinned deployment, then run `{script}`")
                } else {
                    format!("on a healthy node, the next backup replaces it (the hub's Job, or `{}`); to recover from it: `{script}`", host.cmd("backup"))
                },
            );
        }
        Ok(crate::store::Kind::Damaged(why)) => return damaged(host, why),
        Err(e) => return damaged(host, format!("{e:#}")),
        Ok(crate::store::Kind::Flat) => dir.clone(),
        Ok(crate::store::Kind::Generation(g)) => dir.join(g),
    };
    let m = match Manifest::load(&cur) {
        Ok(m) => m,
        Err(e) => return damaged(host, format!("{e:#}")),
    };
    if let Some(p) = backup_problem(&cur, &m) {
        let mut d = damaged(host, p);
        if let Some(w) = super::checks::program_way_out(host, &cur, &m) {
            d.next = format!("{w}. {}", d.next);
        }
        return d;
    }
    let last = LastRecovery::load(&dir).filter(|l| l.backup_created == m.created);
    if let Some(Since::Completed { versions }) = verdict {
        return a(
            State::UpgradeCompleted {
                versions: versions.clone(),
            },
            format!(
                "every upgrade since the backup completed ({}): the backup is of the cluster before them",
                versions.join(", ")
            ),
            format!(
                "before the next upgrade, take a new backup (the hub's Job does, or `{}`); it replaces this one and removes the OS deployment it pinned",
                host.cmd("backup")
            ),
        );
    }
    let (Some(os), Some(pinned)) = (os, m.deployment.as_ref()) else {
        return ready(host, last, verdict);
    };
    let pinned_name = format!(
        "{} {}.{}",
        pinned.stateroot,
        &pinned.checksum[..pinned.checksum.len().min(12)],
        pinned.serial
    );
    let pinned_id = pinned.id();
    let is_pinned = |d: &crate::node::ostree::Deployment| d.is(&pinned_id);
    if !os.deployments.iter().any(is_pinned) {
        // The last resort completed (`restore --restore-onto-other-os`),
        // and no upgrade failed since: done, on the OS that runs now.
        if let (Some(l), false) = (&last, matches!(verdict, Some(Since::Failed { .. }))) {
            return completed(
                host,
                l,
                &format!("onto the OS that runs now (the deployment the backup pinned, {pinned_name}, is gone)"),
            );
        }
        let (text, next) = pinned_gone(host, &pinned_name);
        return a(
            State::PinnedDeploymentGone {
                pinned: pinned_name.clone(),
            },
            text,
            next,
        );
    }
    let Some(active) = os.active() else {
        return ready(host, last, verdict);
    };
    if is_pinned(active) {
        match os.next_boot_elsewhere() {
            Some(d) => {
                return a(
                    State::PinnedBootedNotDefault {
                        default: d.short(),
                        pinned: pinned_name,
                    },
                    format!(
                        "the pinned deployment is booted, but the next boot would start {}: a reboot (the recovery makes one) would leave it",
                        d.short()
                    ),
                    format!("make the pinned deployment the default with `{}` (no reboot needed), then, if the upgrade failed, `{}`", host.cmd("rollback"), host.cmd("restore")),
                )
            }
            None => return ready(host, last, verdict),
        }
    }
    if os.default_deployment().is_some_and(is_pinned) {
        return a(
            State::RollbackDoneRebootPending {
                active: active.short(),
                pinned: pinned_name,
            },
            format!(
                "the OS rollback is done: the pinned deployment is the next default, but {} is still booted",
                active.short()
            ),
            format!("reboot into it (`systemctl reboot`), then run `{}`", host.cmd("restore")),
        );
    }
    a(
        State::UpgradedOsBooted {
            active: active.short(),
            pinned: pinned_name.clone(),
        },
        format!(
            "another OS than the one of the backup is booted ({}; the backup pinned {pinned_name}): the upgrade changed the OS",
            active.short()
        ),
        format!("if the upgrade failed, roll the OS back first: `{}`; after the reboot, `{}`", host.cmd("rollback --reboot"), host.cmd("restore")),
    )
}

pub(super) fn damaged(host: &Host, problem: String) -> Assessment {
    let dir = host.backup_dir();
    // `extract` reads the manifest: without one, only the archives by hand
    // (issue 27.5: a hint names a path that exists, a command that works).
    let intact_files = if crate::store::current(&dir)
        .and_then(|g| Manifest::load(&g))
        .is_ok()
    {
        format!(
            "copy intact files out with `{}`",
            host.cmd("extract PATH --to DIR")
        )
    } else {
        match crate::store::archives_left(&dir).first() {
            Some(a) => format!(
                "unpack an archive that is there by hand (`zstd -dc {} | tar -xf - -C DIR`; `extract` needs the manifest)",
                a.display()
            ),
            None => "no archive of it is left to read".into(),
        }
    };
    Assessment::new(
        host,
        State::BackupDamaged {
            problem: problem.clone(),
        },
        format!("the backup in {} is damaged: {problem}", host.dir.display()),
        format!(
            "do not restore from it. `{verify}` names every damaged part. In an outage, use another copy of the backup (copy it to {} and run `{verify}`), or {intact_files}",
            host.dir.display(),
            verify = host.cmd("verify")
        ),
    )
}

/// No backup in the dir (and no recovery under way anywhere: that is
/// `recovery_elsewhere`). A backup in another dir (`elsewhere::find`:
/// `/var/*/`, the auto-resume unit, the record of backup dirs) is named
/// with its state; else a pinned deployment that is not booted may be what
/// a backup in a dir not found pinned: say so (a new backup here keeps
/// pinned deployments).
///
/// `verdict` is the lifecycle rule's of that other dir's backup (this dir
/// has none): `status` reads it as it reads its own (`commands/status.rs`),
/// so that the summary is that dir's own state (the hints report: "a backup
/// is ready" where that dir's status said the upgrade failed).
fn no_backup(host: &Host, os: Option<&OsState>, verdict: Option<&Since>) -> Assessment {
    // A dir with a backup and no recovery: its own state never comes back
    // here (a recovery under way is `recovery_elsewhere`'s, and two dirs
    // only marked in the record would name each other without end).
    let found = super::elsewhere::find(host);
    if let Some(f) = found.found.iter().find(|f| !f.under_way) {
        let there = in_dir(host, &f.dir);
        let theirs = super::last_failures::apply(&there, procedure(&there, os, verdict));
        let state = State::BackupElsewhere { dir: f.dir.clone() };
        let look = state.command(host, "");
        return Assessment::new(
            host,
            state,
            format!(
                "there is no backup in {}, but {} holds one (found by {}): {}",
                host.dir.display(),
                f.dir,
                f.from,
                theirs.text
            ),
            format!(
                "look at it first: `{look}` (its next command there: `{}`); a backup here would be a second one",
                theirs.command
            ),
        );
    }
    let pinned: Vec<String> = os
        .map(|o| {
            o.deployments
                .iter()
                .filter(|d| d.pinned && !d.booted)
                .map(|d| d.short())
                .collect()
        })
        .unwrap_or_default();
    if pinned.is_empty() {
        return Assessment::new(
            host,
            State::NoBackup,
            format!("there is no backup in {}", host.dir.display()),
            format!(
                "take one while the node is healthy, before the upgrade: `{}`",
                host.cmd("backup")
            ),
        );
    }
    Assessment::new(
        host,
        State::NoBackupPinnedOs {
            pinned: pinned.join(", "),
        },
        format!(
            "there is no backup in {}, but {} {} pinned: a backup in another dir (`--dir`) may rely on it",
            host.dir.display(),
            pinned.join(", "),
            if pinned.len() == 1 { "is" } else { "are" }
        ),
        "find the backup that pinned it (every command takes `--dir DIR`) before taking a new one; a new backup here keeps pinned deployments".to_string(),
    )
}

fn ready(host: &Host, last: Option<LastRecovery>, verdict: Option<&Since>) -> Assessment {
    if let Some(Since::Failed { upgrade }) = verdict {
        return Assessment::new(
            host,
            State::RolledBackNotRecovered {
                upgrade: upgrade.clone(),
            },
            format!(
                "the node runs the OS the backup pinned, but the upgrade to {upgrade} did not complete and no recovery has completed since"
            ),
            format!("recover the cluster to the backup: `{}`", host.cmd("restore")),
        );
    }
    match last {
        Some(l) => completed(host, &l, "; the node runs the OS of the backup"),
        None => Assessment::new(
            host,
            State::BackupReady,
            "a backup is ready and the node runs the OS deployment it pinned".into(),
            format!(
                "nothing to do on a healthy node; if the upgrade failed: `{}`",
                host.cmd("restore")
            ),
        ),
    }
}

/// A recovery from this backup completed (`last-recovery.json`); `how`
/// ends the sentence (on which OS).
fn completed(host: &Host, l: &LastRecovery, how: &str) -> Assessment {
    let how = if how.starts_with(';') {
        how.to_string()
    } else {
        format!(" {how}")
    };
    Assessment::new(
        host,
        State::RecoveryCompleted {
            at: l.completed.clone(),
        },
        format!("the recovery completed at {}{how}", l.completed),
        format!("nothing to do: check the cluster with `oc get clusteroperators`; before the next upgrade, take a new backup (`{}`)", host.cmd("backup")),
    )
}

/// The deployment the backup pinned (`pinned`, as messages name it) is no
/// longer deployed: the one answer `status`, `restore` and `rollback` give
/// (the state `pinned-deployment-gone`): no rollback can bring it back, and
/// what is left is the last resort, the backup restored onto the OS that
/// runs now (`--restore-onto-other-os`; `--force` does not skip the OS
/// check). (the state's text, its next step)
pub fn pinned_gone(host: &Host, pinned: &str) -> (String, String) {
    (
        format!("the deployment pinned at backup ({pinned}) is no longer deployed: the OS cannot be rolled back to it, and `rollback` has nothing to go back to"),
        format!(
            "the only recovery from this backup left is onto the OS that runs now: `{}` restores the backup's files and etcd, taken on another OS version, over this one (look at the deployments first with `ostree admin status`; if files of another OS version are not acceptable, the node must be reinstalled instead)",
            host.cmd("restore --restore-onto-other-os")
        ),
    )
}

pub fn render_os(os: &OsState) -> String {
    let mut s = String::new();
    let how = match os.booted_from {
        BootedFrom::Cmdline => "booted one per the ostree= argument of /proc/cmdline",
        BootedFrom::RpmOstree => "booted one per rpm-ostree",
        BootedFrom::StatusMark => "booted one marked *",
        BootedFrom::DefaultAssumed => {
            "no deployment is marked booted (a sysroot not booted from): the default (index 0) is taken as the active one"
        }
    };
    let _ = writeln!(s, "OS deployments ({how}):");
    for why in &os.booted_skipped {
        let _ = writeln!(s, "  (booted deployment: {why})");
    }
    for d in &os.deployments {
        let mut marks = Vec::new();
        if d.booted {
            marks.push("booted");
        }
        if d.index == 0 {
            marks.push("default");
        }
        if d.pinned {
            marks.push("pinned");
        }
        for (flag, m) in [
            (d.staged, "staged"),
            (d.pending, "pending"),
            (d.rollback, "rollback"),
        ] {
            if flag {
                marks.push(m);
            }
        }
        let _ = writeln!(
            s,
            "  {} {} {}  {}",
            d.index,
            if d.booted { '*' } else { ' ' },
            d.short(),
            marks.join(", ")
        );
    }
    s
}
