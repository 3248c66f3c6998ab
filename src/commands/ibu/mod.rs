//! Image-based upgrade (Lifecycle Agent) troubleshooting on the node: the
//! `ImageBasedUpgrade` CR next to the node's facts, and the manual cleanup
//! LCA's `docs/troubleshooting.md` ("Manual cleanup") asks for after
//! `AbortFailed`/`FinalizeFailed`, done the way LCA itself cleans up.
//!
//! Facts from openshift-kni/lifecycle-agent:
//! - `internal/precache/constants.go`: `StatusFile = IBUWorkspacePath +
//!   "/precache_status.json"`; `internal/precache/progress.go`: its JSON is
//!   `{"total", "pulled", "failed", "failed_pulls"}` (`failed_pulls` is null
//!   until a pull fails).
//! - `internal/backuprestore/backup.go` (`CleanupBackups`,
//!   `waitForDeleteBackupRequests`, `ensureBackupsDeleted`,
//!   `CleanupDeleteBackupRequests`): the upgrade's Backups are those labelled
//!   `config.openshift.io/clusterID=<ClusterVersion version spec.clusterID>`,
//!   listed in every namespace; each is deleted through a velero
//!   `DeleteBackupRequest` of the same name and namespace (labelled with the
//!   cluster ID, `spec.backupName`), waited for (1 s polls, 5 min) until
//!   Processed and the Backup is gone; then the DeleteBackupRequests with the
//!   label are deleted. Restores are applied with the same label
//!   (`docs/backuprestore-with-oadp.md`).
//! - `internal/backuprestore/restore.go`/`common.go`
//!   (`RestorePVsReclaimPolicy`): PVs annotated
//!   `lca.openshift.io/updated-reclaim-policy: "true"` go back to reclaim
//!   policy `Delete` and lose the annotation.
//! - `controllers/idle_handlers.go`: the stateroot is removed after its
//!   deployments are undeployed; `docs/troubleshooting.md`: when the backup
//!   backend cannot be reached, remove `backups`, `restores` and
//!   `deletebackuprequests` by hand, then annotate the IBU.

pub mod cleanup;
pub mod hub;

pub use cleanup::{cleanup, render_cleanup, CleanupOptions};

use crate::commands::ibu::cleanup::list;
use crate::commands::stateroot;
use crate::node::cmd::{self, Tools};
use crate::node::host::Host;
use crate::node::oc::{Get, List, Meta, Oc};
use crate::util::error::Fail;
use crate::util::json::lenient;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub const WORKSPACE: &str = "/var/lib/lca/workspace";
/// Written by LCA's precache job (internal/precache/constants.go).
pub const PRECACHE_STATUS: &str = "/var/lib/lca/workspace/precache_status.json";
pub const ANNOTATION: &str = "lca.openshift.io/manual-cleanup-done";
pub const CLUSTER_ID_LABEL: &str = "config.openshift.io/clusterID";
pub const RECLAIM_ANNOTATION: &str = "lca.openshift.io/updated-reclaim-policy";
/// LCA's own bound on the DeleteBackupRequests (backup.go: 5 minutes).
pub const DBR_WAIT_SECONDS: u64 = 300;

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
    pub bucket: String,
}

/// The ImageBasedUpgrade CR as `oc get -o json` gives it: the fields read
/// here (lca.openshift.io/v1 `ImageBasedUpgrade`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IbuObject {
    pub metadata: Meta,
    pub spec: Option<IbuSpec>,
    pub status: Option<IbuStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IbuSpec {
    pub stage: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IbuStatus {
    pub conditions: Option<Vec<CrCondition>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CrCondition {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub status: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// A velero object (Backup, Restore, DeleteBackupRequest,
/// BackupStorageLocation) or a PersistentVolume: the fields read here.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Object {
    pub metadata: Meta,
    pub spec: Option<ObjectSpec>,
    pub status: Option<ObjectStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ObjectSpec {
    /// A BackupStorageLocation's bucket.
    #[serde(rename = "objectStorage")]
    pub object_storage: Option<ObjectStorage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ObjectStorage {
    pub bucket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ObjectStatus {
    #[serde(deserialize_with = "lenient")]
    pub phase: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub message: Option<String>,
    /// A processed DeleteBackupRequest's errors (a list of strings); on a
    /// Backup or Restore `errors` is a count, read as absent.
    #[serde(deserialize_with = "lenient")]
    pub errors: Option<Vec<String>>,
}

impl Object {
    fn phase(&self) -> Option<&str> {
        self.status.as_ref()?.phase.as_deref()
    }
    /// namespace/name, when the object has both.
    fn obj_ref(&self) -> Option<ObjRef> {
        Some(ObjRef {
            namespace: self.metadata.namespace.clone()?,
            name: self.metadata.name.clone()?,
        })
    }
}

/// `precache_status.json` (internal/precache/progress.go).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Precache {
    pub total: u64,
    pub pulled: u64,
    pub failed: u64,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub failed_pulls: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// The precache progress, or why it cannot be shown.
pub fn parse_precache(text: &str) -> Result<Precache> {
    let p: Precache = serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    if p.pulled + p.failed > p.total {
        bail!(
            "pulled ({}) and failed ({}) exceed total ({})",
            p.pulled,
            p.failed,
            p.total
        );
    }
    Ok(p)
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub cr: Option<Cr>,
    pub cr_error: Option<String>,
    pub stateroots: Option<stateroot::Listing>,
    pub workspace_exists: bool,
    pub workspace_bytes: u64,
    /// Absent file: None, with `precache_error` None.
    pub precache: Option<Precache>,
    pub precache_error: Option<String>,
    pub backup_storage_locations: Vec<Bsl>,
    pub bsl_error: Option<String>,
    /// The OADP objects the upgrade made (labelled with the cluster ID).
    pub oadp: Option<OadpObjects>,
    pub oadp_error: Option<String>,
    /// The hub's side, for a cluster an ImageBasedGroupUpgrade drives.
    pub hub: Option<hub::HubAdvice>,
}

#[derive(Debug, Serialize)]
pub struct OadpItem {
    pub kind: String,
    pub object: ObjRef,
    pub phase: String,
}

#[derive(Debug, Serialize)]
pub struct OadpObjects {
    pub cluster_id: String,
    pub items: Vec<OadpItem>,
}

/// The cluster ID from ClusterVersion `version`, or why it is unknown.
fn cluster_id(host: &Host, tools: &Tools) -> Result<String> {
    match Oc::new(host, tools).get_opt::<Value>(CLUSTER_VERSION)? {
        None => bail!("ClusterVersion `version` does not exist"),
        Some(v) => parse_cluster_id(&v),
    }
}

fn oadp_objects(host: &Host, tools: &Tools) -> Result<OadpObjects> {
    let id = cluster_id(host, tools)?;
    let sel = format!("{CLUSTER_ID_LABEL}={id}");
    let mut items = Vec::new();
    for (kind, res) in [
        ("Backup", "backups.velero.io"),
        ("Restore", "restores.velero.io"),
        ("DeleteBackupRequest", "deletebackuprequests.velero.io"),
    ] {
        let l = list(host, tools, res, &sel)?;
        for o in l.items() {
            if o.metadata.label(CLUSTER_ID_LABEL) != Some(id.as_str()) {
                continue;
            }
            let Some(object) = o.obj_ref() else {
                continue;
            };
            items.push(OadpItem {
                kind: kind.into(),
                object,
                phase: o.phase().unwrap_or("(no phase)").into(),
            });
        }
    }
    Ok(OadpObjects {
        cluster_id: id,
        items,
    })
}

/// ClusterVersion `version`, which holds the cluster ID.
const CLUSTER_VERSION: Get<'static> = Get {
    kind: "clusterversions.config.openshift.io",
    name: Some("version"),
    namespace: crate::node::oc::Namespace::Default,
    selector: None,
};

fn get_cr(host: &Host, tools: &Tools) -> Result<Cr> {
    Oc::new(host, tools)
        .get::<IbuObject>(Get::named("imagebasedupgrades.lca.openshift.io", "upgrade"))
        .map(|o| parse_cr(&o))
}

fn get_bsls(host: &Host, tools: &Tools) -> Result<Vec<Bsl>> {
    Oc::new(host, tools)
        .get::<List<Object>>(
            Get::kind("backupstoragelocations.velero.io").namespace("openshift-adp"),
        )
        .map(|l| parse_bsls(&l))
}

/// The pure part: the CR's stage, conditions and annotations.
pub fn parse_cr(o: &IbuObject) -> Cr {
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    Cr {
        stage: s(&o.spec.as_ref().and_then(|p| p.stage.clone())),
        conditions: o
            .status
            .as_ref()
            .and_then(|st| st.conditions.as_deref())
            .unwrap_or_default()
            .iter()
            .map(|c| Condition {
                kind: s(&c.kind),
                status: s(&c.status),
                reason: s(&c.reason),
                message: s(&c.message),
            })
            .collect(),
        annotations: o.metadata.annotations.clone().unwrap_or_default(),
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

pub fn parse_bsls(l: &List<Object>) -> Vec<Bsl> {
    l.items()
        .iter()
        .map(|b| Bsl {
            name: b.metadata.name.as_deref().unwrap_or("?").to_string(),
            phase: b.phase().unwrap_or("Unknown").to_string(),
            message: b
                .status
                .as_ref()
                .and_then(|st| st.message.as_deref())
                .unwrap_or_default()
                .to_string(),
            bucket: b
                .spec
                .as_ref()
                .and_then(|sp| sp.object_storage.as_ref())
                .and_then(|os| os.bucket.as_deref())
                .unwrap_or("?")
                .to_string(),
        })
        .collect()
}

/// `spec.clusterID` of the ClusterVersion `version`, the value of the label
/// LCA puts on the Backups, Restores and DeleteBackupRequests it makes.
pub fn parse_cluster_id(v: &Value) -> Result<String> {
    match v["spec"]["clusterID"].as_str().map(str::trim) {
        Some(id) if !id.is_empty() && !id.contains(char::is_whitespace) => Ok(id.to_string()),
        _ => bail!("ClusterVersion `version` has no spec.clusterID"),
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ObjRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Items of a List that carry `label=value` (the shim and real oc filter
/// with `-l` already; checked again so a wider answer never widens a delete).
pub fn labelled(l: &List<Object>, label: &str, value: &str) -> Vec<ObjRef> {
    l.items()
        .iter()
        .filter(|o| o.metadata.label(label) == Some(value))
        .filter_map(Object::obj_ref)
        .collect()
}

/// PVs whose reclaim policy LCA changed (annotation value "true").
pub fn reclaim_changed(l: &List<Object>) -> Vec<String> {
    l.items()
        .iter()
        .filter(|o| o.metadata.annotation(RECLAIM_ANNOTATION) == Some("true"))
        .filter_map(|o| o.metadata.name.clone())
        .collect()
}

/// The node and the programs `ibu` needs (ostree and oc; rpm-ostree where
/// it can run), checked before anything is read.
pub fn require(host: &Host) -> Result<Tools> {
    host.require_node()?;
    Tools::require(&["ostree", "oc"], &["rpm-ostree"])
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
    let (oadp, oadp_error) = match oadp_objects(host, tools) {
        Ok(o) => (Some(o), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let ws = host.path(WORKSPACE);
    let (precache, precache_error) = match std::fs::read(host.path(PRECACHE_STATUS)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
        Err(e) => (None, Some(format!("cannot read {PRECACHE_STATUS}: {e}"))),
        Ok(b) => match std::str::from_utf8(&b)
            .map_err(anyhow::Error::from)
            .and_then(parse_precache)
        {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(format!("{PRECACHE_STATUS} is malformed: {e:#}"))),
        },
    };
    Ok(Status {
        cr,
        cr_error,
        stateroots: stateroot::list(host, tools).ok(),
        workspace_exists: ws.exists(),
        workspace_bytes: crate::backup::du(&ws),
        precache,
        precache_error,
        backup_storage_locations,
        bsl_error,
        oadp,
        oadp_error,
        hub: hub::advice(host, tools, hub::Moment::Status),
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
            crate::util::fsutil::human(st.workspace_bytes)
        } else {
            "absent".into()
        }
    );
    match (&st.precache, &st.precache_error) {
        (Some(p), _) => {
            let _ = writeln!(
                s,
                "Precache: {} of {} images pulled, {} failed",
                p.pulled, p.total, p.failed
            );
            for i in &p.failed_pulls {
                let _ = writeln!(s, "  failed: {i}");
            }
        }
        (None, Some(e)) => {
            let _ = writeln!(s, "Precache: cannot show the progress: {e}");
        }
        (None, None) => {
            let _ = writeln!(
                s,
                "Precache: no {PRECACHE_STATUS} (precaching has not run, or LCA has cleaned up)"
            );
        }
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
    match (&st.oadp, &st.oadp_error) {
        (Some(o), _) => {
            let _ = writeln!(
                s,
                "OADP objects of this upgrade ({CLUSTER_ID_LABEL}={}): {}",
                o.cluster_id,
                if o.items.is_empty() { "none" } else { "" }
            );
            for i in &o.items {
                let _ = writeln!(s, "  {} {} {}", i.kind, i.object, i.phase);
            }
        }
        (None, Some(e)) => {
            let _ = writeln!(
                s,
                "OADP objects of this upgrade: cannot tell them apart: {e}"
            );
        }
        _ => {}
    }
    if let Some(h) = &st.hub {
        s.push_str(&hub::render(h));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// velero's `status.errors` is a count on a Backup and a Restore
    /// (pkg/apis/velero/v1/backup_types.go, restore_types.go) and a list of
    /// strings on a DeleteBackupRequest (delete_backup_request_types.go):
    /// one `Object` type reads all three; a PartiallyFailed Backup does not
    /// fail the list.
    #[test]
    fn velero_errors_are_a_count_or_a_list() {
        let l: List<Object> = serde_json::from_str(
            r#"{"items":[
              {"metadata":{"name":"b1","namespace":"openshift-adp"},"status":{"phase":"PartiallyFailed","errors":2,"warnings":1}},
              {"metadata":{"name":"d1","namespace":"openshift-adp"},"status":{"phase":"Processed","errors":["bucket gone"]}}
            ]}"#,
        )
        .unwrap();
        let items = l.items();
        assert_eq!(items[0].phase(), Some("PartiallyFailed"));
        assert_eq!(items[0].status.as_ref().unwrap().errors, None);
        assert_eq!(
            items[1].status.as_ref().unwrap().errors.as_deref(),
            Some(&["bucket gone".to_string()][..])
        );
    }

    #[test]
    fn precache_status_as_lca_writes_it() {
        let p = parse_precache(r#"{"total":10,"pulled":8,"failed":2,"failed_pulls":["quay.io/a@sha256:1","quay.io/b:2"]}"#).unwrap();
        assert_eq!(
            (p.total, p.pulled, p.failed, p.failed_pulls.len()),
            (10, 8, 2, 2)
        );
        // Go marshals a nil slice as null.
        let p = parse_precache(r#"{"total":3,"pulled":3,"failed":0,"failed_pulls":null}"#).unwrap();
        assert!(p.failed_pulls.is_empty());
        for bad in [
            "",
            "{",
            r#"{"total":"x"}"#,
            r#"{"total":1,"pulled":2,"failed":0}"#,
            "[]",
        ] {
            assert!(parse_precache(bad).is_err(), "{bad}");
        }
    }

    /// The CR, the storage locations and the PVs as `oc get -o json` gives
    /// them (fields LCA and velero set; extra fields ignored, absent ones
    /// shown as unknown).
    #[test]
    fn ibu_cr_bsls_and_pvs_as_oc_gives_them() {
        let cr: IbuObject = serde_json::from_value(json!({
            "apiVersion": "lca.openshift.io/v1", "kind": "ImageBasedUpgrade",
            "metadata": {"name": "upgrade", "annotations": {ANNOTATION: ""}, "generation": 3},
            "spec": {"stage": "Idle", "seedImageRef": {"image": "quay.io/seed:4.17"}},
            "status": {"conditions": [
                {"type": "Idle", "status": "False", "reason": "AbortFailed", "message": "failed to delete OADP backups", "lastTransitionTime": "2024-06-25T19:23:00Z"},
                {"type": "Upgrade", "status": "False"}]}
        }))
        .unwrap();
        let cr = parse_cr(&cr);
        assert_eq!(cr.stage, "Idle");
        assert_eq!(cr.failed_reason(), Some("AbortFailed"));
        assert_eq!(
            (
                cr.conditions[1].kind.as_str(),
                cr.conditions[1].reason.as_str()
            ),
            ("Upgrade", "")
        );
        assert!(cr.annotations.contains_key(ANNOTATION));
        let empty = parse_cr(&serde_json::from_value(json!({"metadata": {}})).unwrap());
        assert!(empty.stage.is_empty() && empty.conditions.is_empty());

        let bsls: List<Object> = serde_json::from_value(json!({"items": [
            {"metadata": {"name": "default", "namespace": "openshift-adp"},
             "spec": {"provider": "aws", "objectStorage": {"bucket": "b", "prefix": "p"}},
             "status": {"phase": "Unavailable", "message": "dial tcp: i/o timeout"}},
            {"metadata": {"name": "second"}}]}))
        .unwrap();
        let b = parse_bsls(&bsls);
        assert_eq!(
            (
                b[0].name.as_str(),
                b[0].phase.as_str(),
                b[0].bucket.as_str()
            ),
            ("default", "Unavailable", "b")
        );
        assert_eq!(b[0].message, "dial tcp: i/o timeout");
        assert_eq!(
            (
                b[1].phase.as_str(),
                b[1].bucket.as_str(),
                b[1].message.as_str()
            ),
            ("Unknown", "?", "")
        );

        let pvs: List<Object> = serde_json::from_value(json!({"items": [
            {"metadata": {"name": "pv-lvms", "annotations": {RECLAIM_ANNOTATION: "true"}}},
            {"metadata": {"name": "pv-other", "annotations": {RECLAIM_ANNOTATION: "false"}}},
            {"metadata": {"name": "pv-plain"}}]}))
        .unwrap();
        assert_eq!(reclaim_changed(&pvs), ["pv-lvms"]);
        assert!(reclaim_changed(&List::empty()).is_empty());
    }

    #[test]
    fn cluster_id_and_labels() {
        assert_eq!(
            parse_cluster_id(&json!({"spec": {"clusterID": "abc-1"}})).unwrap(),
            "abc-1"
        );
        for bad in [
            json!({}),
            json!({"spec": {"clusterID": ""}}),
            json!({"spec": {"clusterID": 3}}),
            json!("x"),
        ] {
            assert!(parse_cluster_id(&bad).is_err());
        }
        let l = serde_json::from_value(json!({"items": [
            {"metadata": {"name": "a", "namespace": "n", "labels": {CLUSTER_ID_LABEL: "id"}}},
            {"metadata": {"name": "b", "namespace": "n", "labels": {CLUSTER_ID_LABEL: "other"}}},
            {"metadata": {"name": "c", "namespace": "n"}},
            {"metadata": {"name": "d", "labels": {CLUSTER_ID_LABEL: "id"}}},
        ]}))
        .unwrap();
        assert_eq!(
            labelled(&l, CLUSTER_ID_LABEL, "id"),
            vec![ObjRef {
                namespace: "n".into(),
                name: "a".into()
            }]
        );
    }
}
