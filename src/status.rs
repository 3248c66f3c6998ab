//! `status`: OS deployments, the backup, recovery progress, etcd, and what to
//! do next.

use crate::cmd::Tools;
use crate::etcd;
use crate::fsutil::human;
use crate::host::Host;
use crate::journal::Journal;
use crate::manifest::Manifest;
use crate::ostree::{self, BootedFrom, OsState};
use crate::recovery;
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
    pub next: String,
}

#[derive(Debug, Serialize)]
pub struct BackupSummary {
    pub dir: String,
    pub exists: bool,
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
    pub failed: Option<crate::journal::Failure>,
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
    let tools = Tools::require(&["ostree"], &["rpm-ostree"])?;
    let (os, os_error) = match ostree::read(host, &tools) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let dir = host.backup_dir();
    let backup = match Manifest::load(&dir) {
        Ok(m) => BackupSummary {
            dir: host.dir.display().to_string(),
            exists: true,
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
            error: Some(format!("{e:#}")),
            created: None,
            pinned: None,
            bytes: 0,
            archive_bytes: 0,
        },
    };
    let record = ["journal.json", "progress"]
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
    let next = if recovery.error.is_some() {
        "the recovery journal is unreadable: start the recovery over with `upgrade-recovery restore --restart`".to_string()
    } else if recovery.reboot_needed {
        "the files phase is done: reboot (`systemctl reboot`), then `upgrade-recovery restore --resume`".to_string()
    } else if let Some(f) = &recovery.failed {
        format!(
            "step {} failed: fix the cause, then `upgrade-recovery restore --resume`",
            f.step
        )
    } else if recovery.in_progress {
        "a recovery is in progress: continue it with `upgrade-recovery restore --resume`"
            .to_string()
    } else if backup.exists {
        "a backup is ready; after a failed upgrade: `upgrade-recovery rollback`, then `upgrade-recovery restore`".to_string()
    } else {
        "no backup yet: take one with `upgrade-recovery backup`".to_string()
    };
    Ok(Status {
        root: host.root.display().to_string(),
        os,
        os_error,
        backup,
        recovery,
        etcd,
        next,
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
        (Some(_), false) => {
            // The error names the endpoint.
            let _ = writeln!(
                s,
                "etcd: {}",
                e.error.as_deref().unwrap_or("does not answer")
            );
        }
        (None, _) => {
            let _ = writeln!(s, "etcd: {}", e.error.as_deref().unwrap_or("unknown"));
        }
    }
    let _ = writeln!(s, "Next: {}", st.next);
    s
}
