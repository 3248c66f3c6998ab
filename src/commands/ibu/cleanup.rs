//! `ibu cleanup`: the manual cleanup LCA asks for after `AbortFailed` /
//! `FinalizeFailed`, done as LCA's own `cleanup()` does it, then the
//! annotation that makes LCA retry.
//!
//! openshift-kni/lifecycle-agent commit 0e1bf182, `controllers/idle_handlers.go`
//! `cleanup()`: five tasks in this order, each run even when one before it
//! failed ("try to clean up as much as possible"), every failure reported at
//! the end. A failed step ends its own task (the Go function returns), except
//! the removal of one stateroot, which `CleanupUnbootedStateroots` counts and
//! goes on from:
//! 1. `cleanupStateroot`: `prep.DeleteStaterootSetupJob`
//!    (`internal/prep/prep_stateroot_setup_job.go`: remove the finalizer
//!    `lca.openshift.io/stateroot-setup-finalizer` from Job
//!    `lca-prep-stateroot-setup` in the operator's namespace, delete it with
//!    foreground propagation, wait up to its termination grace period,
//!    1800 s, until no pod labelled `job-name=lca-prep-stateroot-setup` is
//!    left), then `CleanupUnbootedStateroots` (every stateroot but the
//!    booted one, `rpm-ostree cleanup -b`). A failed wait skips the
//!    stateroots: the Job's pod may still write into one.
//! 2. `Precache.Cleanup` (`internal/precache/precache.go`, `helper.go`:
//!    finalizer `lca.openshift.io/precache-finalizer` off Job
//!    `lca-prep-precache`, the Job, ConfigMap `lca-prep-precache`, then
//!    `precache_status.json`).
//! 3. `extramanifest.RemoveAnnotationEMWarningValidation`
//!    (`internal/extramanifest/extramanifest.go`: annotation
//!    `extra-manifest.lca.openshift.io/validation-warning` off the IBU, by
//!    merge patch).
//! 4. `cleanupOADPResources` (only where OADP is installed):
//!    `CleanupDeleteBackupRequests`, `CleanupBackups` (a DeleteBackupRequest
//!    per Backup, and `cleanupBackupLabels`: label `lca.openshift.io/backup`
//!    off each object the Backup's `lca.openshift.io/apply-label` annotation
//!    names, `internal/backuprestore/backup.go`, `common.go`),
//!    `RestorePVsReclaimPolicy`. Restores of the upgrade are deleted too, as
//!    `docs/troubleshooting.md` asks when the backend is unreachable.
//! 5. `cleanupIBUFiles`: `os.RemoveAll(/var/lib/lca/workspace)`.
//!
//! Then, only when every step succeeded, the `lca.openshift.io/manual-cleanup-done`
//! annotation (`checkManualCleanup` in the same file).
//! The operator's namespace is `MY_POD_NAMESPACE`, else
//! `openshift-lifecycle-agent` (`internal/common/utils.go` `OperatorNamespace`,
//! `consts.go`); LCA's Deployment runs in the default one.

use super::*;
use crate::commands::ibu::hub;
use std::path::Path;

pub const LCA_NAMESPACE: &str = "openshift-lifecycle-agent";
pub const STATEROOT_JOB: &str = "lca-prep-stateroot-setup";
pub const STATEROOT_FINALIZER: &str = "lca.openshift.io/stateroot-setup-finalizer";
/// `StaterootSetupTerminationGracePeriodSeconds` (prep_stateroot_setup_job.go).
pub const STATEROOT_POD_WAIT_SECONDS: u64 = 1800;
pub const PRECACHE_NAME: &str = "lca-prep-precache";
pub const PRECACHE_FINALIZER: &str = "lca.openshift.io/precache-finalizer";
pub const EM_WARNING: &str = "extra-manifest.lca.openshift.io/validation-warning";
pub const APPLY_LABEL: &str = "lca.openshift.io/apply-label";
pub const BACKUP_LABEL: &str = "lca.openshift.io/backup";
const JOBS: &str = "jobs.batch";
const IBU: &str = "imagebasedupgrades.lca.openshift.io";

/// The task of LCA's `cleanup()` a step belongs to, in LCA's order; the
/// annotation comes after them.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    Stateroot,
    Precache,
    ExtraManifestWarning,
    Oadp,
    Workspace,
    Annotate,
}

impl Task {
    pub const ALL: [Task; 6] = [
        Task::Stateroot,
        Task::Precache,
        Task::ExtraManifestWarning,
        Task::Oadp,
        Task::Workspace,
        Task::Annotate,
    ];
    pub fn title(self) -> &'static str {
        match self {
            Task::Stateroot => "1. stateroot (LCA cleanupStateroot)",
            Task::Precache => "2. precache (LCA Precache.Cleanup)",
            Task::ExtraManifestWarning => {
                "3. extra-manifest warning (LCA RemoveAnnotationEMWarningValidation)"
            }
            Task::Oadp => "4. OADP (LCA cleanupOADPResources)",
            Task::Workspace => "5. LCA workspace (LCA cleanupIBUFiles)",
            Task::Annotate => "then: the annotation that makes LCA retry",
        }
    }
}

/// An object the Backup's `lca.openshift.io/apply-label` annotation names:
/// `oc`'s resource argument (`resource[.version.group]`), namespace, name.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LabelTarget {
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for LabelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.resource, self.name),
            None => write!(f, "{} {}", self.resource, self.name),
        }
    }
}

/// The annotation's objects, as LCA's `getObjsFromAnnotations`
/// (internal/backuprestore/backup.go) reads them: comma separated,
/// duplicates dropped; `version/resource/name`, `v1/resource/ns/name` or
/// `group/version/resource/name`, `group/version/resource/ns/name`; any
/// other shape is an error for the whole annotation.
pub fn parse_apply_label(value: &str) -> Result<Vec<LabelTarget>> {
    let mut out: Vec<LabelTarget> = Vec::new();
    if value.is_empty() {
        return Ok(out);
    }
    for obj in value.split(',') {
        let p: Vec<&str> = obj.split('/').collect();
        if p.iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            bail!("invalid apply-label obj in annotation value: {obj}");
        }
        let res = |group: &str, version: &str, resource: &str| {
            if group.is_empty() {
                resource.to_string()
            } else {
                format!("{resource}.{version}.{group}")
            }
        };
        let t = match p.as_slice() {
            [v, r, n] => (res("", v, r), None, n),
            ["v1", r, ns, n] => (res("", "v1", r), Some(ns), n),
            [g, v, r, n] => (res(g, v, r), None, n),
            [g, v, r, ns, n] => (res(g, v, r), Some(ns), n),
            _ => bail!("invalid apply-label obj in annotation value: {obj}"),
        };
        let t = LabelTarget {
            resource: t.0,
            namespace: t.1.map(|s| s.to_string()),
            name: t.2.to_string(),
        };
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// One change of the cleanup. The plan is a list of these, built and
/// checked before the first is carried out; each is checked against the
/// cluster again when it runs (an object already gone is not an error).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// LCA's `removeStaterootSetupJobFinalizer` / `removePrecacheFinalizer`.
    RemoveJobFinalizer {
        job: ObjRef,
        finalizer: String,
        task: Task,
    },
    /// Foreground deletion (`common.GenerateDeleteOptions`).
    DeleteJob {
        job: ObjRef,
        task: Task,
    },
    /// `waitUntilStaterootSetupPodIsRemoved`: 1 s polls.
    WaitJobPodsGone {
        job: ObjRef,
        wait_seconds: u64,
    },
    RemoveStateroot {
        name: String,
    },
    /// `rpm-ostree cleanup -b`: the removed stateroot's commits.
    RpmOstreeCleanup,
    DeleteConfigMap {
        object: ObjRef,
    },
    RemovePrecacheStatus,
    RemoveAnnotation {
        key: String,
    },
    /// A DeleteBackupRequest of this cluster left by an earlier attempt.
    DeleteDeleteBackupRequest {
        object: ObjRef,
    },
    /// Through a velero DeleteBackupRequest: the Backup and its data in the
    /// bucket; then the request itself.
    DeleteBackupAndData {
        object: ObjRef,
        wait_seconds: u64,
    },
    /// `--without-bucket`: the Backup CR only.
    DeleteBackupCrOnly {
        object: ObjRef,
    },
    /// `cleanupBackupLabels`: the label LCA put on an object the Backup names.
    RemoveBackupLabel {
        backup: ObjRef,
        target: LabelTarget,
    },
    DeleteRestore {
        object: ObjRef,
    },
    RestoreReclaimPolicy {
        pv: String,
    },
    RemoveWorkspace,
    Annotate,
}

impl Action {
    pub fn task(&self) -> Task {
        match self {
            Action::RemoveJobFinalizer { task, .. } | Action::DeleteJob { task, .. } => *task,
            Action::WaitJobPodsGone { .. }
            | Action::RemoveStateroot { .. }
            | Action::RpmOstreeCleanup => Task::Stateroot,
            Action::DeleteConfigMap { .. } | Action::RemovePrecacheStatus => Task::Precache,
            Action::RemoveAnnotation { .. } => Task::ExtraManifestWarning,
            Action::DeleteDeleteBackupRequest { .. }
            | Action::DeleteBackupAndData { .. }
            | Action::DeleteBackupCrOnly { .. }
            | Action::RemoveBackupLabel { .. }
            | Action::DeleteRestore { .. }
            | Action::RestoreReclaimPolicy { .. } => Task::Oadp,
            Action::RemoveWorkspace => Task::Workspace,
            Action::Annotate => Task::Annotate,
        }
    }

    /// Whether a failure of this step ends its task (LCA returns from the
    /// task's function), or the task goes on (one stateroot, one label).
    fn ends_task(&self) -> bool {
        !matches!(
            self,
            Action::RemoveStateroot { .. } | Action::RemoveBackupLabel { .. }
        )
    }

    pub fn describe(&self) -> String {
        match self {
            Action::RemoveJobFinalizer { job, finalizer, .. } => {
                format!("remove the finalizer {finalizer} from Job {job}")
            }
            Action::DeleteJob { job, .. } => {
                format!("delete Job {job} (foreground: with its pods)")
            }
            Action::WaitJobPodsGone { job, wait_seconds } => format!(
                "wait up to {wait_seconds} s until no pod of Job {job} (label job-name={}) is left, so that none writes into a stateroot being removed",
                job.name
            ),
            Action::RemoveStateroot { name } => format!("remove stateroot {name}"),
            Action::RpmOstreeCleanup => {
                "run `rpm-ostree cleanup -b` to free the removed stateroot's space".into()
            }
            Action::DeleteConfigMap { object } => format!("delete ConfigMap {object}"),
            Action::RemovePrecacheStatus => format!("remove {PRECACHE_STATUS}"),
            Action::RemoveAnnotation { key } => {
                format!("remove the annotation {key} from ImageBasedUpgrade upgrade")
            }
            Action::DeleteDeleteBackupRequest { object } => {
                format!("delete DeleteBackupRequest {object} (left by an earlier attempt)")
            }
            Action::DeleteBackupAndData { object, wait_seconds } => format!(
                "delete Backup {object} and its data in the bucket: create DeleteBackupRequest {object}, wait up to {wait_seconds} s until Velero has processed it and the Backup is gone, then delete the request"
            ),
            Action::DeleteBackupCrOnly { object } => format!(
                "delete the Backup CR {object} only (its data stays in the bucket)"
            ),
            Action::RemoveBackupLabel { backup, target } => format!(
                "remove the label {BACKUP_LABEL} from {target} (named by Backup {backup})"
            ),
            Action::DeleteRestore { object } => format!("delete Restore {object}"),
            Action::RestoreReclaimPolicy { pv } => format!(
                "set PersistentVolume {pv} back to reclaim policy Delete and remove its {RECLAIM_ANNOTATION} annotation"
            ),
            Action::RemoveWorkspace => format!("remove {WORKSPACE} and everything in it"),
            Action::Annotate => format!("annotate ImageBasedUpgrade upgrade {ANNOTATION}=\"\""),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CleanupOptions {
    pub dry_run: bool,
    pub force: bool,
    /// Delete the Backup CRs without their data when a BackupStorageLocation
    /// is not Available (docs/troubleshooting.md, "OADP backup cleanup").
    pub without_bucket: bool,
    pub wait_seconds: u64,
    /// The bound on the stateroot setup Job's pod going away.
    pub pod_wait_seconds: u64,
}

#[derive(Debug, Serialize)]
pub struct Plan {
    pub reason: Option<String>,
    pub cluster_id: String,
    pub actions: Vec<Action>,
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Failure {
    pub task: Task,
    pub step: String,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct CleanupReport {
    pub reason: Option<String>,
    pub cluster_id: String,
    pub dry_run: bool,
    /// Each action as described, in the order carried out (or to be).
    pub steps: Vec<String>,
    pub actions: Vec<Action>,
    /// Steps that failed, in order; the run went on past each.
    pub failures: Vec<Failure>,
    /// Steps not carried out because a step before them in the same task
    /// failed (or, for the annotation, because any step failed).
    pub skipped: Vec<String>,
    pub notes: Vec<String>,
    /// The hub's side, for a cluster an ImageBasedGroupUpgrade drives.
    pub hub: Option<hub::HubAdvice>,
    pub next: String,
}

/// This cluster's objects of `resource` in every namespace; none when the
/// resource does not exist (OADP not installed: LCA's `CleanupBackups` and
/// `CleanupDeleteBackupRequests` treat that as nothing to clean up).
pub(super) fn list(
    host: &Host,
    tools: &Tools,
    resource: &str,
    selector: &str,
) -> Result<List<Object>> {
    match Oc::new(host, tools).get::<List<Object>>(Get::kind(resource).all_labelled(selector)) {
        Err(e) if format!("{e:#}").contains("doesn't have a resource type") => Ok(List::empty()),
        r => r,
    }
}

fn lca_ref(name: &str) -> ObjRef {
    ObjRef {
        namespace: LCA_NAMESPACE.into(),
        name: name.into(),
    }
}

/// A Job of LCA's, as `oc get -o json` gives it, or None.
fn get_job(host: &Host, tools: &Tools, name: &str) -> Result<Option<Value>> {
    Oc::new(host, tools).get_opt::<Value>(Get::named(JOBS, name).namespace(LCA_NAMESPACE))
}

/// The Job's finalizers (none when the object has none or is absent).
pub fn finalizers(job: Option<&Value>) -> Vec<String> {
    job.and_then(|j| j["metadata"]["finalizers"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The names of the Job's pods still there (label `job-name`, which the Job
/// controller puts on them).
fn job_pods(host: &Host, tools: &Tools, job: &ObjRef) -> Result<Vec<String>> {
    let sel = format!("job-name={}", job.name);
    let l = Oc::new(host, tools)
        .get::<List<Object>>(Get::kind("pods").namespace(&job.namespace).labelled(&sel))?;
    Ok(l.items()
        .iter()
        .filter(|p| p.metadata.label("job-name") == Some(job.name.as_str()))
        .filter_map(|p| p.metadata.name.clone())
        .collect())
}

/// The steps for one of LCA's Jobs: its finalizer, the Job (foreground).
fn job_steps(job: Option<&Value>, name: &str, finalizer: &str, task: Task) -> Vec<Action> {
    let mut v = Vec::new();
    if job.is_none() {
        return v;
    }
    if finalizers(job).iter().any(|f| f == finalizer) {
        v.push(Action::RemoveJobFinalizer {
            job: lca_ref(name),
            finalizer: finalizer.into(),
            task,
        });
    }
    v.push(Action::DeleteJob {
        job: lca_ref(name),
        task,
    });
    v
}

/// Build the plan and check every precondition; nothing is changed.
pub fn plan(host: &Host, tools: &Tools, o: &CleanupOptions) -> Result<Plan> {
    let oc = Oc::new(host, tools);
    let cr_obj = oc
        .get::<IbuObject>(Get::named(IBU, "upgrade"))
        .context("reading the ImageBasedUpgrade CR `upgrade`; nothing was changed")?;
    let cr = parse_cr(&cr_obj);
    let reason = cr.failed_reason().map(str::to_string);
    if reason.is_none() && !o.force {
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
    let cv = oc
        .get_opt::<Value>(CLUSTER_VERSION)
        .context("reading ClusterVersion `version`; nothing was changed")?;
    let cluster_id = match cv {
        None => bail!(
            "ClusterVersion `version` does not exist: the cluster ID that marks this upgrade's Backups ({CLUSTER_ID_LABEL}) is unknown, so no Backup can be told apart from the user's own; nothing was changed. Check with `oc get clusterversion version -o yaml`"
        ),
        Some(v) => parse_cluster_id(&v).map_err(|e| {
            anyhow::anyhow!(
                "{e}: the cluster ID that marks this upgrade's Backups ({CLUSTER_ID_LABEL}) is unknown; nothing was changed. Check with `oc get clusterversion version -o yaml`"
            )
        })?,
    };
    let mut actions: Vec<Action> = Vec::new();
    let mut notes = Vec::new();

    // 1. cleanupStateroot.
    let nothing = "; nothing was changed";
    let setup = get_job(host, tools, STATEROOT_JOB)
        .with_context(|| format!("reading Job {LCA_NAMESPACE}/{STATEROOT_JOB}{nothing}"))?;
    actions.extend(job_steps(
        setup.as_ref(),
        STATEROOT_JOB,
        STATEROOT_FINALIZER,
        Task::Stateroot,
    ));
    let setup_pods = job_pods(host, tools, &lca_ref(STATEROOT_JOB)).with_context(|| {
        format!("listing the pods of Job {LCA_NAMESPACE}/{STATEROOT_JOB}{nothing}")
    })?;
    if setup.is_some() || !setup_pods.is_empty() {
        actions.push(Action::WaitJobPodsGone {
            job: lca_ref(STATEROOT_JOB),
            wait_seconds: o.pod_wait_seconds,
        });
    }
    // Every stateroot that does not hold the booted deployment;
    // stateroot::cleanup in dry-run refuses those it must not remove.
    let listing =
        stateroot::list(host, tools).context("listing the stateroots; nothing was changed")?;
    let mut removed = false;
    for r in listing.stateroots.iter().filter(|r| !r.active) {
        stateroot::cleanup(host, tools, &r.name, true)
            .with_context(|| format!("checking stateroot {}; nothing was changed", r.name))?;
        actions.push(Action::RemoveStateroot {
            name: r.name.clone(),
        });
        removed = true;
    }
    if removed {
        if tools.has("rpm-ostree") && host.path("/run/ostree-booted").exists() {
            actions.push(Action::RpmOstreeCleanup);
        } else {
            notes.push(
                "rpm-ostree cannot run here (no /run/ostree-booted: it refuses on a system not booted through ostree): the removed stateroot's commits stay in /sysroot/ostree/repo until `rpm-ostree cleanup -b` runs on the booted node".into(),
            );
        }
    }

    // 2. Precache.Cleanup.
    let precache = get_job(host, tools, PRECACHE_NAME)
        .with_context(|| format!("reading Job {LCA_NAMESPACE}/{PRECACHE_NAME}{nothing}"))?;
    actions.extend(job_steps(
        precache.as_ref(),
        PRECACHE_NAME,
        PRECACHE_FINALIZER,
        Task::Precache,
    ));
    if oc
        .get_opt::<Value>(Get::named("configmaps", PRECACHE_NAME).namespace(LCA_NAMESPACE))
        .with_context(|| format!("reading ConfigMap {LCA_NAMESPACE}/{PRECACHE_NAME}{nothing}"))?
        .is_some()
    {
        actions.push(Action::DeleteConfigMap {
            object: lca_ref(PRECACHE_NAME),
        });
    }
    if std::fs::symlink_metadata(host.path(PRECACHE_STATUS)).is_ok() {
        actions.push(Action::RemovePrecacheStatus);
    }

    // 3. The extra-manifest warning.
    if cr.annotations.contains_key(EM_WARNING) {
        actions.push(Action::RemoveAnnotation {
            key: EM_WARNING.into(),
        });
    }

    // 4. cleanupOADPResources.
    let sel = format!("{CLUSTER_ID_LABEL}={cluster_id}");
    let backup_list = list(host, tools, "backups.velero.io", &sel)?;
    let backups = labelled(&backup_list, CLUSTER_ID_LABEL, &cluster_id);
    let dbrs = labelled(
        &list(host, tools, "deletebackuprequests.velero.io", &sel)?,
        CLUSTER_ID_LABEL,
        &cluster_id,
    );
    let restores = labelled(
        &list(host, tools, "restores.velero.io", &sel)?,
        CLUSTER_ID_LABEL,
        &cluster_id,
    );
    let pvs = reclaim_changed(&oc.get::<List<Object>>(Get::kind("persistentvolumes"))?);
    let mut unavailable = Vec::new();
    if !backups.is_empty() {
        let bsls = get_bsls(host, tools)
            .context("reading the BackupStorageLocations; nothing was changed")?;
        if bsls.is_empty() {
            unavailable.push("no BackupStorageLocation in openshift-adp".to_string());
        }
        for b in bsls.iter().filter(|b| b.phase != "Available") {
            unavailable.push(format!(
                "BackupStorageLocation openshift-adp/{} (bucket {}) is {}{}",
                b.name,
                b.bucket,
                b.phase,
                if b.message.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", b.message)
                }
            ));
        }
        if !unavailable.is_empty() && !o.without_bucket {
            bail!(
                "{}: Velero cannot process DeleteBackupRequests, so the upgrade's {} Backup(s) ({}) and their data cannot be deleted; nothing was changed. Fix the S3 backend (endpoint, credentials, bucket) and check with `oc get backupstoragelocations.velero.io -n openshift-adp`, then run `{}` again. If the backend cannot be fixed: `{}` deletes the CRs and leaves the data in the bucket",
                unavailable.join("; "),
                backups.len(),
                backups.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                host.cmd("ibu cleanup"),
                host.cmd("ibu cleanup --without-bucket")
            );
        }
    }
    actions.extend(
        dbrs.iter()
            .map(|d| Action::DeleteDeleteBackupRequest { object: d.clone() }),
    );
    for b in &backups {
        actions.push(if o.without_bucket {
            Action::DeleteBackupCrOnly { object: b.clone() }
        } else {
            Action::DeleteBackupAndData {
                object: b.clone(),
                wait_seconds: o.wait_seconds,
            }
        });
        let obj = backup_list
            .items()
            .iter()
            .find(|x| x.obj_ref().as_ref() == Some(b));
        match obj
            .and_then(|x| x.metadata.annotation(APPLY_LABEL))
            .map(parse_apply_label)
        {
            None => {}
            Some(Ok(targets)) => actions.extend(targets.into_iter().map(|target| {
                Action::RemoveBackupLabel {
                    backup: b.clone(),
                    target,
                }
            })),
            // LCA logs this and goes on (CleanupBackups: "failed to clean backup labels").
            Some(Err(e)) => notes.push(format!(
                "Backup {b}: {e}: the objects it names keep their {BACKUP_LABEL} label; remove it by hand with `oc label <resource> <name> -n <namespace> {BACKUP_LABEL}-`"
            )),
        }
    }
    if o.without_bucket && !backups.is_empty() {
        notes.push(format!(
            "--without-bucket: the data of {} stays in the bucket{}. Velero's bucket sync brings those Backups back as CRs once the location is Available; then run `{}` again to delete them with their data",
            backups.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            if unavailable.is_empty() { String::new() } else { format!(" ({})", unavailable.join("; ")) },
            host.cmd("ibu cleanup")
        ));
    }
    actions.extend(
        restores
            .iter()
            .map(|r| Action::DeleteRestore { object: r.clone() }),
    );
    actions.extend(
        pvs.into_iter()
            .map(|pv| Action::RestoreReclaimPolicy { pv }),
    );

    // 5. cleanupIBUFiles.
    if std::fs::symlink_metadata(host.path(WORKSPACE)).is_ok() {
        actions.push(Action::RemoveWorkspace);
    }
    if !cr.annotations.contains_key(ANNOTATION) {
        actions.push(Action::Annotate);
    }
    Ok(Plan {
        reason,
        cluster_id,
        actions,
        notes,
    })
}

/// Wait until Velero has processed the DeleteBackupRequest and the Backup is
/// gone (backup.go: `waitForDeleteBackupRequests`, `ensureBackupsDeleted`).
fn wait_deleted(host: &Host, tools: &Tools, b: &ObjRef, limit: u64) -> Result<()> {
    let oc = Oc::new(host, tools);
    let start = Instant::now();
    let mut phase = String::from("(no status yet)");
    loop {
        let dbr = oc.get_opt::<Object>(
            Get::named("deletebackuprequests.velero.io", &b.name).namespace(&b.namespace),
        )?;
        if let Some(d) = &dbr {
            phase = d.phase().unwrap_or("(no status yet)").to_string();
            if phase == "Processed" {
                let errors: &[String] = d
                    .status
                    .as_ref()
                    .and_then(|st| st.errors.as_deref())
                    .unwrap_or_default();
                if !errors.is_empty() {
                    bail!(
                        "Velero processed DeleteBackupRequest {b} with errors: {}",
                        errors.join("; ")
                    );
                }
            }
        }
        let backup =
            oc.get_opt::<Object>(Get::named("backups.velero.io", &b.name).namespace(&b.namespace))?;
        if backup.is_none() && (dbr.is_none() || phase == "Processed") {
            return Ok(());
        }
        if start.elapsed() >= Duration::from_secs(limit) {
            bail!(
                "waited {limit} s for Velero to process DeleteBackupRequest {b} (phase {phase}) and delete Backup {b}{}: Backup {b} and its data are still there. Look at `oc get deletebackuprequests.velero.io -n {} {} -o yaml` and the velero pod's log (`oc logs -n openshift-adp deploy/velero`), then run `{}` again",
                if backup.is_some() { "" } else { " (the Backup CR is gone, the request is not processed)" },
                b.namespace,
                b.name,
                host.cmd("ibu cleanup")
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `waitUntilStaterootSetupPodIsRemoved`: poll each second until no pod of
/// the Job is left, at most `limit` s.
fn wait_pods_gone(host: &Host, tools: &Tools, job: &ObjRef, limit: u64) -> Result<()> {
    let start = Instant::now();
    loop {
        let pods = job_pods(host, tools, job)?;
        if pods.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= Duration::from_secs(limit) {
            bail!(
                "waited {limit} s for the pod(s) {} of Job {job} to go: they may still write into a stateroot, so no stateroot was removed. Look at `oc get pods -n {} -l job-name={} -o wide` and `oc logs -n {} {}`",
                pods.join(", "),
                job.namespace,
                job.name,
                job.namespace,
                pods[0]
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn remove_path(p: &Path) -> Result<()> {
    let r: std::io::Result<()> = match std::fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
    };
    r.with_context(|| format!("removing {}", p.display()))
}

/// Carry out one step, after checking it against the cluster as it is now.
fn execute(host: &Host, tools: &Tools, plan: &Plan, a: &Action) -> Result<()> {
    let oc = Oc::new(host, tools);
    let delete = |kind: &str, o: &ObjRef| oc.delete(kind, &o.name, &o.namespace);
    match a {
        Action::RemoveJobFinalizer { job, finalizer, .. } => {
            let now = get_job(host, tools, &job.name)?;
            let fins = finalizers(now.as_ref());
            if !fins.contains(finalizer) {
                return Ok(());
            }
            let rest: Vec<&String> = fins.iter().filter(|f| *f != finalizer).collect();
            oc.patch_merge_in(
                JOBS,
                &job.name,
                &job.namespace,
                &json!({"metadata": {"finalizers": rest}}).to_string(),
            )
        }
        Action::DeleteJob { job, .. } => oc.delete_foreground(JOBS, &job.name, &job.namespace),
        Action::WaitJobPodsGone { job, wait_seconds } => {
            wait_pods_gone(host, tools, job, *wait_seconds)
        }
        Action::RemoveStateroot { name } => {
            if !host.path(format!("/sysroot/ostree/deploy/{name}")).exists() {
                return Ok(());
            }
            stateroot::cleanup(host, tools, name, false).map(drop)
        }
        Action::RpmOstreeCleanup => {
            cmd::run(tools.command("rpm-ostree")?.args(["cleanup", "-b"])).map(drop)
        }
        Action::DeleteConfigMap { object } => delete("configmaps", object),
        Action::RemovePrecacheStatus => remove_path(&host.path(PRECACHE_STATUS)),
        Action::RemoveAnnotation { key } => {
            let now = parse_cr(&oc.get::<IbuObject>(Get::named(IBU, "upgrade"))?);
            if !now.annotations.contains_key(key) {
                return Ok(());
            }
            oc.patch_merge(
                IBU,
                "upgrade",
                &json!({"metadata": {"annotations": {key: null}}}).to_string(),
            )
        }
        Action::DeleteDeleteBackupRequest { object } => {
            delete("deletebackuprequests.velero.io", object)
        }
        Action::DeleteBackupAndData {
            object,
            wait_seconds,
        } => {
            let now = oc.get_opt::<Object>(
                Get::named("backups.velero.io", &object.name).namespace(&object.namespace),
            )?;
            if now.is_none() {
                return Ok(());
            }
            oc.create(&json!({
                    "apiVersion": "velero.io/v1",
                    "kind": "DeleteBackupRequest",
                    "metadata": {"name": object.name, "namespace": object.namespace,
                                 "labels": {CLUSTER_ID_LABEL: plan.cluster_id}},
                    "spec": {"backupName": object.name},
            }))?;
            wait_deleted(host, tools, object, *wait_seconds)?;
            delete("deletebackuprequests.velero.io", object)
        }
        Action::DeleteBackupCrOnly { object } => delete("backups.velero.io", object),
        Action::RemoveBackupLabel { target, .. } => {
            let mut g = Get::named(&target.resource, &target.name);
            if let Some(ns) = &target.namespace {
                g = g.namespace(ns);
            }
            // cleanupBackupLabels: an object gone, or without the label, needs nothing.
            let Some(now) = oc.get_opt::<Object>(g)? else {
                return Ok(());
            };
            if now.metadata.label(BACKUP_LABEL).is_none() {
                return Ok(());
            }
            let p = json!({"metadata": {"labels": {BACKUP_LABEL: null}}}).to_string();
            match &target.namespace {
                Some(ns) => oc.patch_merge_in(&target.resource, &target.name, ns, &p),
                None => oc.patch_merge(&target.resource, &target.name, &p),
            }
        }
        Action::DeleteRestore { object } => delete("restores.velero.io", object),
        Action::RestoreReclaimPolicy { pv } => oc.patch_merge(
            "persistentvolumes",
            pv,
            &json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"},
                "metadata": {"annotations": {RECLAIM_ANNOTATION: null}}})
            .to_string(),
        ),
        Action::RemoveWorkspace => remove_path(&host.path(WORKSPACE)),
        Action::Annotate => oc.annotate(IBU, "upgrade", ANNOTATION, ""),
    }
}

/// Plan, check, then act: a refused plan changes nothing; `--dry-run` shows
/// the plan a real run carries out. A failed step does not stop the run
/// (LCA's `cleanup()`): the rest of its task is skipped, the other tasks
/// run, and every failure is in the report.
pub fn cleanup(host: &Host, tools: &Tools, o: &CleanupOptions) -> Result<CleanupReport> {
    let plan = plan(host, tools, o)?;
    let steps: Vec<String> = plan.actions.iter().map(Action::describe).collect();
    let mut failures: Vec<Failure> = Vec::new();
    let mut skipped = Vec::new();
    if !o.dry_run {
        let mut failed_task: Option<Task> = None;
        for (a, step) in plan.actions.iter().zip(&steps) {
            let task = a.task();
            if failed_task == Some(task) || (task == Task::Annotate && !failures.is_empty()) {
                skipped.push(step.clone());
                continue;
            }
            if let Err(e) = execute(host, tools, &plan, a) {
                failures.push(Failure {
                    task,
                    step: step.clone(),
                    error: format!("{e:#}"),
                });
                if a.ends_task() {
                    failed_task = Some(task);
                }
            }
        }
    }
    // After a failed run the annotation is not set and LCA does not retry:
    // the hub's labels stay as the node is now.
    let hub = hub::advice(
        host,
        tools,
        if failures.is_empty() {
            hub::Moment::AfterCleanup
        } else {
            hub::Moment::Status
        },
    );
    let after = match plan.reason.as_deref() {
        Some(r) => format!(
            "LCA sees the annotation and retries the {}; when it succeeds the CR goes back to Idle. Watch `oc get ibu upgrade -o yaml`",
            if r == "AbortFailed" { "abort" } else { "finalize" }
        ),
        None => "the CR was not in a failed state (--force): LCA acts on the annotation only after AbortFailed or FinalizeFailed. Check `oc get ibu upgrade -o yaml`".to_string(),
    };
    let next = if o.dry_run {
        format!(
            "run `{}` without --dry-run to carry out these steps; then {after}",
            host.cmd("ibu cleanup")
        )
    } else if !failures.is_empty() {
        format!(
            "fix what failed (above) and run `{}` again: each step is checked against the cluster first, so what is done is not done twice. The {ANNOTATION} annotation was not set, so LCA does not retry yet",
            host.cmd("ibu cleanup")
        )
    } else {
        after
    };
    Ok(CleanupReport {
        reason: plan.reason,
        cluster_id: plan.cluster_id,
        dry_run: o.dry_run,
        steps,
        actions: plan.actions,
        failures,
        skipped,
        notes: plan.notes,
        hub,
        next,
    })
}

pub fn render_cleanup(r: &CleanupReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Manual cleanup after {} (cluster ID {}){}, in the order of LCA's own cleanup:",
        r.reason.as_deref().unwrap_or("(forced)"),
        r.cluster_id,
        if r.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    if r.steps.is_empty() {
        let _ = writeln!(s, "  nothing to do: no leftovers of the upgrade");
    } else {
        for t in Task::ALL {
            let _ = writeln!(s, "{}:", t.title());
            let mine: Vec<&String> = r
                .actions
                .iter()
                .zip(&r.steps)
                .filter(|(a, _)| a.task() == t)
                .map(|(_, st)| st)
                .collect();
            if mine.is_empty() {
                let _ = writeln!(s, "  nothing to do");
            }
            for st in mine {
                let mark = if r.dry_run {
                    "would "
                } else if let Some(f) = r.failures.iter().find(|f| &f.step == st) {
                    let _ = writeln!(s, "  FAILED: {st}: {}", f.error);
                    continue;
                } else if r.skipped.contains(st) {
                    "not done (a step before it failed): "
                } else {
                    "done: "
                };
                let _ = writeln!(s, "  {mark}{st}");
            }
        }
    }
    for n in &r.notes {
        let _ = writeln!(s, "Note: {n}");
    }
    if !r.failures.is_empty() {
        let _ = writeln!(
            s,
            "{} step(s) failed; the others were carried out:",
            r.failures.len()
        );
        for f in &r.failures {
            let _ = writeln!(s, "  {}: {}", f.step, f.error);
        }
    }
    if let Some(h) = &r.hub {
        s.push_str(&hub::render(h));
    }
    let _ = writeln!(s, "Next: {}", r.next);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The annotation as LCA's docs/backuprestore-with-oadp.md writes it, and
    /// what getObjsFromAnnotations refuses.
    #[test]
    fn apply_label_as_lca_reads_it() {
        let t = parse_apply_label(
            "apps/v1/deployments/openshift-adp/app,v1/secrets/openshift-adp/s,v1/persistentvolumes/pv1,lvm.topolvm.io/v1alpha1/logicalvolumes/lv1,v1/secrets/openshift-adp/s",
        )
        .unwrap();
        let shown: Vec<String> = t.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "deployments.v1.apps openshift-adp/app",
                "secrets openshift-adp/s",
                "persistentvolumes pv1",
                "logicalvolumes.v1alpha1.lvm.topolvm.io lv1",
            ]
        );
        assert!(parse_apply_label("").unwrap().is_empty());
        for bad in [
            "v1/secrets",
            "a/b/c/d/e/f",
            "v1//x",
            "apps/v1/deployments/ns/a b",
        ] {
            assert!(parse_apply_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn finalizers_of_a_job() {
        let j = json!({"metadata": {"finalizers": [STATEROOT_FINALIZER, "other"]}});
        assert_eq!(finalizers(Some(&j)), [STATEROOT_FINALIZER, "other"]);
        assert!(finalizers(Some(&json!({"metadata": {}}))).is_empty());
        assert!(finalizers(None).is_empty());
        let steps = job_steps(
            Some(&j),
            STATEROOT_JOB,
            STATEROOT_FINALIZER,
            Task::Stateroot,
        );
        assert!(matches!(steps[0], Action::RemoveJobFinalizer { .. }));
        assert!(matches!(steps[1], Action::DeleteJob { .. }));
        assert!(job_steps(None, PRECACHE_NAME, PRECACHE_FINALIZER, Task::Precache).is_empty());
    }
}
