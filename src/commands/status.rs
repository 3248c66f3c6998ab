//! `status`: OS deployments, the backup, recovery progress, etcd, and what to
//! do next.

use crate::node::cmd::Tools;
use crate::node::etcd;
use crate::node::host::Host;
use crate::node::ostree::{self, OsState};
use crate::recovery;
use crate::recovery::lifecycle;
use crate::recovery::state::{assess_with, render_os, State};
use crate::store::journal::Journal;
use crate::store::manifest::Manifest;
use crate::store::{self, layout};
use crate::util::fsutil::human;
use anyhow::Result;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct Status {
    pub root: String,
    pub os: Option<OsState>,
    pub os_error: Option<String>,
    pub backup: BackupSummary,
    pub recovery: Recovery,
    pub etcd: EtcdSummary,
    /// Which of the states of the procedure the node is in.
    pub state: State,
    /// That state in a sentence.
    pub state_text: String,
    /// What to do next, in a sentence that names the command.
    pub next: String,
    /// The exact next command alone.
    pub next_command: String,
    /// The last failure of each command, until a `verify` passes
    /// (`store/failures.rs`).
    pub failures: crate::store::failures::Failures,
    /// Documented paths that are not their link (the backup is usable).
    pub notes: Vec<String>,
    /// The lifecycle rule's verdict on the backup (None: no backup, or a
    /// recovery under way).
    pub lifecycle: Option<lifecycle::Verdict>,
    /// Other backup dirs that hold a backup or a recovery, and what was
    /// read of them but not obeyed (`recovery::elsewhere`).
    pub elsewhere: recovery::elsewhere::Elsewhere,
}

#[derive(Debug, Serialize)]
pub struct BackupSummary {
    pub dir: String,
    pub exists: bool,
    /// Parts of a backup are there but it is not whole (no manifest).
    #[serde(default)]
    pub damaged: bool,
    pub error: Option<String>,
    pub created: Option<String>,
    pub pinned: Option<String>,
    pub bytes: u64,
    pub archive_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct Recovery {
    pub in_progress: bool,
    /// Where the progress is recorded (journal.json, or today's `progress`).
    pub record: Option<String>,
    pub steps_done: usize,
    pub steps_total: usize,
    pub last_done: Option<String>,
    pub next_step: Option<String>,
    pub phase: Option<String>,
    /// The step that failed last, and why.
    pub failed: Option<crate::store::journal::Failure>,
    /// The journal could not be read.
    pub error: Option<String>,
    /// The files phase is done and the node has not rebooted since.
    pub reboot_needed: bool,
}

#[derive(Debug, Serialize)]
pub struct EtcdSummary {
    pub endpoint: Option<String>,
    pub answers: bool,
    pub version: Option<String>,
    pub revision: Option<i64>,
    pub db_size: Option<i64>,
    pub error: Option<String>,
}

pub fn gather(host: &Host) -> Result<Status> {
    host.require_node()?;
    // status answers without ostree too: the backup and the recovery are
    // still worth showing in an outage.
    let tools = Tools::require(&[], &["ostree", "rpm-ostree", "oc"])?;
    let (os, os_error) =
        match Tools::require(&["ostree"], &[]).and_then(|_| ostree::read(host, &tools)) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
    let dir = host.backup_dir();
    let damaged = matches!(store::inspect(&dir), Ok(store::Kind::Damaged(_)));
    let backup = match store::current(&dir).and_then(|g| Manifest::load(&g)) {
        Ok(m) => BackupSummary {
            dir: host.dir.display().to_string(),
            exists: true,
            damaged: false,
            error: None,
            created: Some(m.created.clone()),
            pinned: m
                .deployment
                .as_ref()
                .map(|d| format!("{} {}.{}", d.stateroot, d.checksum, d.serial)),
            bytes: m.trees.iter().map(|t| t.stats.bytes).sum(),
            archive_bytes: m.trees.iter().map(|t| t.stats.archive_bytes).sum(),
        },
        Err(e) => BackupSummary {
            dir: host.dir.display().to_string(),
            exists: false,
            damaged,
            error: Some(format!("{e:#}")),
            created: None,
            pinned: None,
            bytes: 0,
            archive_bytes: 0,
        },
    };
    let record = [layout::JOURNAL, layout::LEGACY_PROGRESS]
        .iter()
        .find(|f| dir.join(f).exists())
        .map(|f| host.dir.join(f).display().to_string());
    let mut recovery = Recovery {
        in_progress: record.is_some(),
        record,
        steps_done: 0,
        steps_total: recovery::STEPS.len(),
        last_done: None,
        next_step: None,
        phase: None,
        failed: None,
        error: None,
        reboot_needed: false,
    };
    match Journal::load(&dir) {
        Ok(Some(j)) => {
            recovery.steps_done = j.completed.len();
            recovery.last_done = j.completed.last().map(|d| d.id.clone());
            if let Some(s) = recovery::STEPS.iter().find(|s| !j.is_done(s.id.as_str())) {
                recovery.next_step = Some(s.id.as_str().to_string());
                recovery.phase = Some(s.phase.name().to_string());
            }
            recovery.failed = j.failed.clone();
            let first_after_reboot = recovery::STEPS.iter().find(|s| s.after_reboot);
            recovery.reboot_needed = recovery.next_step.as_deref()
                == first_after_reboot.map(|s| s.id.as_str())
                && j.files_boot_id.is_some()
                && j.files_boot_id == host.boot_id().ok();
        }
        Ok(None) => {}
        Err(e) => recovery.error = Some(format!("{e:#}")),
    }
    let etcd = match etcd::ClientConfig::load(host) {
        Err(e) => EtcdSummary {
            endpoint: None,
            answers: false,
            version: None,
            revision: None,
            db_size: None,
            error: Some(format!("{e:#}")),
        },
        Ok(cfg) => match etcd::probe(&cfg, Duration::from_secs(5)) {
            Ok(st) => EtcdSummary {
                endpoint: Some(cfg.endpoint.clone()),
                answers: true,
                version: Some(st.version),
                revision: Some(st.revision),
                db_size: Some(st.db_size),
                error: None,
            },
            Err(e) => EtcdSummary {
                endpoint: Some(cfg.endpoint.clone()),
                answers: false,
                version: None,
                revision: None,
                db_size: None,
                error: Some(format!("{e:#}")),
            },
        },
    };
    // The lifecycle rule, as backup and restore apply it (it asks the API,
    // within a time limit; without it, the deployments decide and say so);
    // not while a recovery or another run is under way. With no backup
    // here but one in another dir, that dir's verdict: its summary is its
    // own state.
    let st = assess_with(host, os.as_ref(), None);
    let lifecycle = verdict(host, &tools, os.as_ref(), &st.state);
    let theirs = match &st.state {
        State::BackupElsewhere { dir } => {
            let there = recovery::state::in_dir(host, dir);
            let own = assess_with(&there, os.as_ref(), None);
            verdict(&there, &tools, os.as_ref(), &own.state)
        }
        _ => None,
    };
    let st = match lifecycle.as_ref().or(theirs.as_ref()) {
        Some(v) => assess_with(host, os.as_ref(), Some(&v.since)),
        None => st,
    };
    Ok(Status {
        root: host.root.display().to_string(),
        os,
        os_error,
        backup,
        recovery,
        etcd,
        state: st.state,
        state_text: st.text,
        next: st.next,
        next_command: st.command,
        failures: crate::store::failures::Failures::load(&dir),
        notes: store::link_problems(&dir),
        lifecycle,
        elsewhere: recovery::elsewhere::find(host),
    })
}

/// The lifecycle rule's verdict on the backup in `host`'s dir, whose state
/// is `state` (None: no backup, or a recovery or another run under way).
fn verdict(
    host: &Host,
    tools: &Tools,
    os: Option<&OsState>,
    state: &State,
) -> Option<lifecycle::Verdict> {
    // (A backup found damaged by a run, its manifest readable: what the
    // rule says is still the node's story, e.g. the upgrade that failed.)
    let settled = matches!(
        state,
        State::BackupReady
            | State::BackupDamaged { .. }
            | State::UpgradedOsBooted { .. }
            | State::RollbackDoneRebootPending { .. }
            | State::PinnedBootedNotDefault { .. }
            | State::PinnedDeploymentGone { .. }
            | State::RecoveryCompleted { .. }
            | State::TalmBackup { .. }
            | State::TalmBackupUpgradeFailed { .. }
    );
    if !settled {
        return None;
    }
    let dir = host.backup_dir();
    let (taken, m) = match store::inspect(&dir) {
        Ok(store::Kind::Talm { created }) => (Some(lifecycle::Taken::Talm { created }), None),
        Ok(store::Kind::Generation(_) | store::Kind::Flat) => {
            let m = store::current(&dir).and_then(|g| Manifest::load(&g)).ok()?;
            (Some(lifecycle::taken(&m)), Some(m))
        }
        _ => return None,
    };
    Some(lifecycle::decide(&lifecycle::gather(
        host,
        tools,
        taken,
        m.as_ref(),
        os.cloned(),
    )))
}

pub fn render(st: &Status) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Node root: {}", st.root);
    match (&st.os, &st.os_error) {
        (Some(os), _) => s.push_str(&render_os(os)),
        (None, Some(e)) => {
            let _ = writeln!(s, "OS deployments: cannot read: {e}");
        }
        _ => {}
    }
    let b = &st.backup;
    if b.exists {
        let _ = writeln!(
            s,
            "Backup: in {} from {}, pinned {}; {} of files in {}",
            b.dir,
            b.created.as_deref().unwrap_or("?"),
            b.pinned.as_deref().unwrap_or("(none)"),
            human(b.bytes),
            human(b.archive_bytes)
        );
    } else if let State::TalmBackup { created } | State::TalmBackupUpgradeFailed { created } =
        &st.state
    {
        let _ = writeln!(
            s,
            "Backup: taken by TALM's upgrade-recovery.sh on {created} in {}",
            b.dir
        );
    } else if let State::BackupDamaged { problem } = &st.state {
        let _ = writeln!(s, "Backup: DAMAGED in {}: {problem}", b.dir);
    } else {
        let _ = writeln!(s, "Backup: none in {}", b.dir);
    }
    let r = &st.recovery;
    match &r.record {
        Some(rec) => {
            let _ = writeln!(
                s,
                "Recovery: in progress ({rec}): {} of {} steps done, last: {}, next: {}{}",
                r.steps_done,
                r.steps_total,
                r.last_done.as_deref().unwrap_or("none"),
                r.next_step.as_deref().unwrap_or("none"),
                r.phase
                    .as_deref()
                    .map(|p| format!(" (phase {p})"))
                    .unwrap_or_default()
            );
            if let Some(f) = &r.failed {
                let _ = writeln!(s, "  step {} failed: {}", f.step, f.error);
            }
            if let Some(e) = &r.error {
                let _ = writeln!(s, "  {e}");
            }
        }
        None => {
            let _ = writeln!(s, "Recovery: not in progress");
        }
    }
    let e = &st.etcd;
    match (&e.endpoint, e.answers) {
        (Some(ep), true) => {
            let _ = writeln!(
                s,
                "etcd: {ep} answers (version {}, revision {}, db {})",
                e.version.as_deref().unwrap_or("?"),
                e.revision.unwrap_or(0),
                human(e.db_size.unwrap_or(0).max(0) as u64)
            );
        }
        (Some(ep), false) => {
            let expected = if r.in_progress || st.elsewhere.under_way().is_some() {
                " (expected while the recovery has kubelet stopped)"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "etcd: etcd at {ep} is not running or refuses connections{expected}; check it with `crictl ps --name etcd`"
            );
            if let Some(err) = &e.error {
                let _ = writeln!(s, "  ({err})");
            }
        }
        (None, _) => {
            let _ = writeln!(s, "etcd: {}", e.error.as_deref().unwrap_or("unknown"));
        }
    }
    for n in &st.notes {
        let _ = writeln!(s, "Note: {n} (the backup itself is usable)");
    }
    for f in &st.elsewhere.found {
        let _ = writeln!(
            s,
            "Other backup dir: {} holds {} (found by {})",
            f.dir,
            if f.under_way {
                "a recovery under way"
            } else {
                "a backup"
            },
            f.from
        );
    }
    for n in &st.elsewhere.notes {
        let _ = writeln!(s, "Note: {n}");
    }
    for f in st.failures.0.values() {
        let _ = writeln!(
            s,
            "Last failure: `{}` at {}, exit {}: {}",
            crate::node::host::cmd_in(std::path::Path::new(&st.backup.dir), &f.line),
            f.at,
            f.exit_code,
            f.problem
        );
    }
    if let Some(v) = &st.lifecycle {
        let _ = writeln!(
            s,
            "Next backup: {} {}",
            if v.may_replace {
                "replaces this one:"
            } else {
                "refused:"
            },
            v.reason
        );
        for f in &v.facts {
            let _ = writeln!(s, "  {f}");
        }
    }
    let _ = writeln!(s, "State: {}", st.state_text);
    let _ = writeln!(s, "Next: {}", st.next);
    s
}
