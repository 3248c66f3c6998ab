//! `status`: OS deployments, the backup, recovery progress, etcd, and what to
//! do next.

use crate::node::cmd::Tools;
use crate::node::etcd;
use crate::node::host::Host;
use crate::node::ostree::{self, BootedFrom, OsState};
use crate::recovery;
use crate::store::journal::{Journal, LastRecovery};
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
}

/// Where the node stands in the documented procedure.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum State {
    NoBackup,
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
}

/// The state, its sentence, the next step in a sentence, the command alone.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub state: State,
    pub text: String,
    pub next: String,
    pub command: String,
}

/// The wrapper command that continues a recovery, as the docs write it.
pub fn resume_command(host: &Host) -> String {
    format!("{}/upgrade-recovery.sh --resume", host.dir.display())
}

/// Cheap checks that a backup is complete (the full check is `verify`):
/// the manifest loads and every part it lists is there with its size.
fn backup_problem(dir: &std::path::Path, m: &Manifest) -> Option<String> {
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
    None
}

/// Where the node stands, from the backup dir, the lock, the journal and the
/// OS deployments (no etcd, no network): shared by `status`, `restore`'s
/// refusals and `rollback`.
pub fn assess(host: &Host, os: Option<&OsState>) -> Assessment {
    let dir = host.backup_dir();
    let resume = resume_command(host);
    let a = |state: State, text: String, next: String, command: &str| Assessment {
        state,
        text,
        next,
        command: command.to_string(),
    };
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
                "let it run; follow it with `journalctl -t upgrade-recovery -f`, or look again with `upgrade-recovery status`".into(),
                "upgrade-recovery status",
            );
        }
        return a(
            State::OtherRunActive { pid },
            format!(
                "another upgrade-recovery run (pid {pid}{}) holds {}",
                doing.map(|d| format!(", {d}")).unwrap_or_default(),
                host.dir.join(crate::store::lock::FILE).display()
            ),
            "wait for it to end, then look again with `upgrade-recovery status`".into(),
            "upgrade-recovery status",
        );
    }
    match Journal::load(&dir) {
        Err(e) => {
            return a(
                State::JournalUnreadable {
                    error: format!("{e:#}"),
                },
                "a recovery was under way but its journal cannot be read".into(),
                "start the recovery over with `upgrade-recovery restore --restart` (every step is safe to run again)".into(),
                "upgrade-recovery restore --restart",
            )
        }
        Ok(Some(j)) => {
            let next = recovery::STEPS.iter().find(|s| !j.is_done(s.0));
            let boot = host.boot_id().ok();
            if next.is_some_and(|s| s.0 == "cluster-selinux-permissive")
                && j.files_boot_id.is_some()
                && j.files_boot_id == boot
            {
                return a(
                    State::FilesDoneRebootPending,
                    "the recovery's files phase is done; the node has not rebooted since".into(),
                    format!("reboot first (`systemctl reboot`), then run `{resume}`"),
                    "systemctl reboot",
                );
            }
            let step = next.map_or("none", |s| s.0).to_string();
            let phase = next.map_or("done", |s| s.1.name());
            let error = j.failed.as_ref().map(|f| f.error.clone());
            let text = match &j.failed {
                Some(f) => format!(
                    "the recovery stopped at step {} (phase {phase}), which failed: {}; {} of {} steps done",
                    f.step,
                    f.error,
                    j.completed.len(),
                    recovery::STEPS.len()
                ),
                None => format!(
                    "the recovery stopped before step {step} (phase {phase}); {} of {} steps done",
                    j.completed.len(),
                    recovery::STEPS.len()
                ),
            };
            let next = if j.failed.is_some() {
                format!("fix the cause above, then continue with `{resume}`")
            } else {
                format!("continue with `{resume}`")
            };
            return a(
                State::RecoveryStopped {
                    step: j.failed.as_ref().map_or(step, |f| f.step.clone()),
                    error,
                },
                text,
                next,
                &resume,
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
            "start it over with `upgrade-recovery restore --restart` (every step is safe to run again)".into(),
            "upgrade-recovery restore --restart",
        );
    }
    let cur = match crate::store::inspect(&dir) {
        Ok(crate::store::Kind::Empty) => {
            return a(
                State::NoBackup,
                format!("there is no backup in {}", host.dir.display()),
                "take one while the node is healthy, before the upgrade: `upgrade-recovery backup`"
                    .into(),
                "upgrade-recovery backup",
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
        return damaged(host, p);
    }
    let last = LastRecovery::load(&dir).filter(|l| l.backup_created == m.created);
    let (Some(os), Some(pinned)) = (os, m.deployment.as_ref()) else {
        return ready(last);
    };
    let pinned_name = format!(
        "{} {}.{}",
        pinned.stateroot,
        &pinned.checksum[..pinned.checksum.len().min(12)],
        pinned.serial
    );
    let is_pinned = |d: &crate::node::ostree::Deployment| {
        d.checksum == pinned.checksum && d.serial == pinned.serial
    };
    if !os.deployments.iter().any(is_pinned) {
        return a(
            State::PinnedDeploymentGone {
                pinned: pinned_name.clone(),
            },
            format!("the deployment pinned at backup ({pinned_name}) is no longer deployed: the OS cannot be rolled back to it"),
            "look at the deployments with `ostree admin status`; restoring this backup onto another OS is not a recovery".into(),
            "ostree admin status",
        );
    }
    let Some(active) = os.active() else {
        return ready(last);
    };
    if is_pinned(active) {
        return ready(last);
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
            "reboot into it (`systemctl reboot`), then run `upgrade-recovery restore`".into(),
            "systemctl reboot",
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
        "if the upgrade failed, roll the OS back first: `upgrade-recovery rollback --reboot`; after the reboot, `upgrade-recovery restore`".into(),
        "upgrade-recovery rollback --reboot",
    )
}

fn damaged(host: &Host, problem: String) -> Assessment {
    Assessment {
        text: format!("the backup in {} is damaged: {problem}", host.dir.display()),
        state: State::BackupDamaged { problem },
        next: format!(
            "do not restore from it. `upgrade-recovery verify` names every damaged part. In an outage, use another copy of the backup (copy it to {} and run `upgrade-recovery verify`), or copy intact files out with `upgrade-recovery extract PATH --to DIR`",
            host.dir.display()
        ),
        command: "upgrade-recovery verify".into(),
    }
}

fn ready(last: Option<LastRecovery>) -> Assessment {
    match last {
        Some(l) => Assessment {
            text: format!(
                "the recovery completed at {}; the node runs the OS of the backup",
                l.completed
            ),
            state: State::RecoveryCompleted {
                at: l.completed.clone(),
            },
            next: "nothing to do: check the cluster with `oc get clusteroperators`; before the next upgrade, take a new backup (`upgrade-recovery backup`)".into(),
            command: "oc get clusteroperators".into(),
        },
        None => Assessment {
            state: State::BackupReady,
            text: "a backup is ready and the node runs the OS deployment it pinned".into(),
            next: "nothing to do on a healthy node; if the upgrade failed: `upgrade-recovery restore`".into(),
            command: "upgrade-recovery restore".into(),
        },
    }
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
    let (os, os_error) = match Tools::require(&["ostree"], &["rpm-ostree"])
        .and_then(|tools| ostree::read(host, &tools))
    {
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
            if let Some(s) = recovery::STEPS.iter().find(|s| !j.is_done(s.0)) {
                recovery.next_step = Some(s.0.to_string());
                recovery.phase = Some(s.1.name().to_string());
            }
            recovery.failed = j.failed.clone();
            recovery.reboot_needed = recovery.next_step.as_deref()
                == Some("cluster-selinux-permissive")
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
    let st = assess(host, os.as_ref());
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
    })
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
            let expected = if r.in_progress {
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
    let _ = writeln!(s, "State: {}", st.state_text);
    let _ = writeln!(s, "Next: {}", st.next);
    s
}
