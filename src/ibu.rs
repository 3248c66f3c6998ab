//! Image-based upgrade (Lifecycle Agent) troubleshooting on the node: the
//! `ImageBasedUpgrade` CR next to the node's facts, and the manual cleanup
//! the docs ask for after `AbortFailed`/`FinalizeFailed`.

use crate::cmd::{self, Tools};
use crate::error::Fail;
use crate::host::Host;
use crate::stateroot;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

pub const WORKSPACE: &str = "/var/lib/lca/workspace";
/// Written by the precache job of LCA.
pub const PRECACHE_STATUS: &str = "/var/lib/lca/workspace/precache/status.json";
pub const ANNOTATION: &str = "lca.openshift.io/manual-cleanup-done";
const KUBECONFIG: &str =
    "/etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost.kubeconfig";

#[derive(Debug, Serialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct Cr {
    pub stage: String,
    pub conditions: Vec<Condition>,
    pub annotations: serde_json::Map<String, Value>,
}

#[derive(Debug, Serialize)]
pub struct Bsl {
    pub name: String,
    pub phase: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub cr: Option<Cr>,
    pub cr_error: Option<String>,
    pub stateroots: Option<stateroot::Listing>,
    pub workspace_exists: bool,
    pub workspace_bytes: u64,
    pub precache_status: Option<Value>,
    pub backup_storage_locations: Vec<Bsl>,
    pub bsl_error: Option<String>,
}

pub fn oc(host: &Host, tools: &Tools) -> Result<std::process::Command> {
    let mut c = tools.command("oc")?;
    if std::env::var_os("KUBECONFIG").is_none() {
        c.arg(format!("--kubeconfig={}", host.path(KUBECONFIG).display()));
    }
    Ok(c)
}

fn oc_json(host: &Host, tools: &Tools, args: &[&str]) -> Result<Value> {
    let out = cmd::run_text(oc(host, tools)?.args(args).args(["-o", "json"]))?;
    serde_json::from_str(&out).with_context(|| format!("oc {}: malformed JSON", args.join(" ")))
}

fn get_cr(host: &Host, tools: &Tools) -> Result<Cr> {
    oc_json(
        host,
        tools,
        &["get", "imagebasedupgrades.lca.openshift.io", "upgrade"],
    )
    .map(|v| parse_cr(&v))
}

fn get_bsls(host: &Host, tools: &Tools) -> Result<Vec<Bsl>> {
    oc_json(
        host,
        tools,
        &[
            "get",
            "backupstoragelocations.velero.io",
            "-n",
            "openshift-adp",
        ],
    )
    .map(|v| parse_bsls(&v))
}

/// The pure part: the CR's stage, conditions and annotations.
pub fn parse_cr(v: &Value) -> Cr {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Cr {
        stage: s(&v["spec"]["stage"]),
        conditions: v["status"]["conditions"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|c| Condition {
                kind: s(&c["type"]),
                status: s(&c["status"]),
                reason: s(&c["reason"]),
                message: s(&c["message"]),
            })
            .collect(),
        annotations: v["metadata"]["annotations"]
            .as_object()
            .cloned()
            .unwrap_or_default(),
    }
}

impl Cr {
    /// `AbortFailed` or `FinalizeFailed`, when the Idle condition is False for it.
    pub fn failed_reason(&self) -> Option<&str> {
        self.conditions
            .iter()
            .find(|c| c.kind == "Idle" && c.status == "False")
            .map(|c| c.reason.as_str())
            .filter(|r| *r == "AbortFailed" || *r == "FinalizeFailed")
    }
}

pub fn parse_bsls(v: &Value) -> Vec<Bsl> {
    v["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|b| Bsl {
            name: b["metadata"]["name"].as_str().unwrap_or("?").to_string(),
            phase: b["status"]["phase"]
                .as_str()
                .unwrap_or("Unknown")
                .to_string(),
            message: b["status"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
        .collect()
}

/// Backups the upgrade left: those carrying an `lca.openshift.io/` label or
/// annotation (LCA's own label, or the apply-wave annotation of the CRs that
/// were given to LCA).
pub fn upgrade_backups(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|b| {
            ["labels", "annotations"].iter().any(|f| {
                b["metadata"][*f]
                    .as_object()
                    .is_some_and(|m| m.keys().any(|k| k.starts_with("lca.openshift.io/")))
            })
        })
        .filter_map(|b| b["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

pub fn status(host: &Host, tools: &Tools) -> Result<Status> {
    let (cr, cr_error) = match get_cr(host, tools) {
        Ok(cr) => (Some(cr), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let (backup_storage_locations, bsl_error) = match get_bsls(host, tools) {
        Ok(b) => (b, None),
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    };
    let ws = host.path(WORKSPACE);
    let precache = std::fs::read_to_string(host.path(PRECACHE_STATUS))
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)));
    Ok(Status {
        cr,
        cr_error,
        stateroots: stateroot::list(host, tools).ok(),
        workspace_exists: ws.exists(),
        workspace_bytes: crate::backup::du(&ws),
        precache_status: precache,
        backup_storage_locations,
        bsl_error,
    })
}

pub fn render_status(st: &Status) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    match (&st.cr, &st.cr_error) {
        (Some(cr), _) => {
            let _ = writeln!(s, "ImageBasedUpgrade upgrade: stage {}", cr.stage);
            for c in &cr.conditions {
                let _ = writeln!(s, "  {}={} {}: {}", c.kind, c.status, c.reason, c.message);
            }
            if cr.annotations.contains_key(ANNOTATION) {
                let _ = writeln!(s, "  annotated {ANNOTATION}");
            }
        }
        (None, Some(e)) => {
            let _ = writeln!(s, "ImageBasedUpgrade upgrade: cannot read: {e}");
        }
        _ => {}
    }
    if let Some(l) = &st.stateroots {
        let _ = writeln!(s, "Stateroots:");
        for line in stateroot::render_list(l).lines() {
            let _ = writeln!(s, "  {line}");
        }
    }
    let _ = writeln!(
        s,
        "LCA workspace {WORKSPACE}: {}",
        if st.workspace_exists {
            crate::fsutil::human(st.workspace_bytes)
        } else {
            "absent".into()
        }
    );
    if let Some(p) = &st.precache_status {
        let _ = writeln!(s, "  precache status: {p}");
    }
    let _ = writeln!(s, "OADP BackupStorageLocations (openshift-adp):");
    for b in &st.backup_storage_locations {
        let _ = writeln!(
            s,
            "  {} {}{}",
            b.name,
            b.phase,
            if b.message.is_empty() {
                String::new()
            } else {
                format!(": {}", b.message)
            }
        );
    }
    if let Some(e) = &st.bsl_error {
        let _ = writeln!(s, "  cannot read: {e}");
    }
    s
}

#[derive(Debug, Serialize)]
pub struct CleanupReport {
    pub reason: Option<String>,
    pub steps: Vec<String>,
    pub dry_run: bool,
    pub next: String,
}

pub fn cleanup(host: &Host, tools: &Tools, dry_run: bool, force: bool) -> Result<CleanupReport> {
    let cr = get_cr(host, tools).context("reading the ImageBasedUpgrade CR `upgrade`")?;
    let reason = cr.failed_reason().map(str::to_string);
    if reason.is_none() && !force {
        return Err(Fail::Usage(format!(
            "the ImageBasedUpgrade CR is not in AbortFailed or FinalizeFailed (stage {}, {}); nothing was changed. The manual cleanup is for those states only (--force to run it anyway)",
            cr.stage,
            cr.conditions
                .iter()
                .map(|c| format!("{}={} {}", c.kind, c.status, c.reason))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into());
    }
    let mut steps = Vec::new();
    // 1. Stateroots that are not booted, and the LCA workspace.
    let listing = stateroot::list(host, tools)?;
    for r in listing.stateroots.iter().filter(|r| !r.active) {
        steps.push(format!("remove stateroot {}", r.name));
        if !dry_run {
            stateroot::cleanup(host, tools, &r.name, false)?;
        }
    }
    let ws = host.path(WORKSPACE);
    if let Ok(rd) = std::fs::read_dir(&ws) {
        for e in rd.flatten() {
            steps.push(format!(
                "remove {WORKSPACE}/{}",
                e.file_name().to_string_lossy()
            ));
            if !dry_run {
                let p = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                }
                .with_context(|| format!("removing {}", p.display()))?;
            }
        }
    }
    // 2. The backup storage must answer, or deleting backups fails again.
    let bsls = get_bsls(host, tools)?;
    for b in &bsls {
        if b.phase != "Available" {
            bail!(
                "BackupStorageLocation openshift-adp/{} is {}{}: deleting the upgrade's OADP backups would fail again. Fix its S3 backend (endpoint, credentials, bucket), check with `oc get backupstoragelocations -n openshift-adp`, then run `upgrade-recovery ibu cleanup` again{}",
                b.name,
                b.phase,
                if b.message.is_empty() { String::new() } else { format!(" ({})", b.message) },
                if steps.is_empty() { String::new() } else { format!(". Done so far: {}", steps.join("; ")) }
            );
        }
    }
    steps.push(format!(
        "checked {} BackupStorageLocation(s): Available",
        bsls.len()
    ));
    // 3. The upgrade's OADP Backups.
    let backups = upgrade_backups(&oc_json(
        host,
        tools,
        &["get", "backups.velero.io", "-n", "openshift-adp"],
    )?);
    for b in &backups {
        steps.push(format!("delete Backup openshift-adp/{b}"));
        if !dry_run {
            cmd::run(oc(host, tools)?.args([
                "delete",
                "backups.velero.io",
                b,
                "-n",
                "openshift-adp",
            ]))?;
        }
    }
    // 4. Tell LCA.
    if !cr.annotations.contains_key(ANNOTATION) {
        steps.push(format!(
            "annotate ImageBasedUpgrade upgrade {ANNOTATION}=\"\""
        ));
        if !dry_run {
            cmd::run(oc(host, tools)?.args([
                "annotate",
                "imagebasedupgrades.lca.openshift.io",
                "upgrade",
                &format!("{ANNOTATION}="),
                "--overwrite",
            ]))?;
        }
    }
    let next = match reason.as_deref() {
        Some("AbortFailed") => "LCA sees the annotation and retries the abort; when it succeeds the CR goes back to Idle. Watch `oc get ibu upgrade -o yaml`",
        Some("FinalizeFailed") => "LCA sees the annotation and retries the finalize; when it succeeds the CR goes back to Idle. Watch `oc get ibu upgrade -o yaml`",
        _ => "the CR was not in a failed state (--force): LCA acts on the annotation only after AbortFailed or FinalizeFailed",
    }
    .to_string();
    Ok(CleanupReport {
        reason,
        steps,
        dry_run,
        next,
    })
}

pub fn render_cleanup(r: &CleanupReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Manual cleanup after {}{}:",
        r.reason.as_deref().unwrap_or("(forced)"),
        if r.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    for st in &r.steps {
        let _ = writeln!(s, "  {}{st}", if r.dry_run { "would " } else { "" });
    }
    let _ = writeln!(s, "Next: {}", r.next);
    s
}
