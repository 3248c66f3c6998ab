//! The cluster through `oc`: the kubeconfig the node's own API server
//! certificates give (defined here once), typed gets, and the changes the
//! tool makes (patch, annotate, create, delete).
//!
//! Running `oc` is here; what its JSON means is in pure parsers (here
//! [`parse_revisions`], the IBU/OADP ones in `commands/ibu.rs`), tested on
//! captured and generated JSON. Every failure names the command line (so
//! the object) and the last lines of what oc said (`cmd::Output::error`).

use crate::node::cmd::{self, Tools};
use crate::node::host::Host;
use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

/// The node's localhost kubeconfig, used unless `KUBECONFIG` is set.
pub const KUBECONFIG: &str =
    "/etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost.kubeconfig";

/// `oc` with the node's kubeconfig (unless `KUBECONFIG` is set).
pub fn command(host: &Host, tools: &Tools) -> Result<Command> {
    let mut c = tools.command("oc")?;
    if std::env::var_os("KUBECONFIG").is_none() {
        c.arg(format!("--kubeconfig={}", host.path(KUBECONFIG).display()));
    }
    Ok(c)
}

/// `oc` on the node's cluster.
#[derive(Clone, Copy)]
pub struct Oc<'a> {
    host: &'a Host,
    tools: &'a Tools,
}

/// What to get: `<kind> [<name>] [-n <namespace> | -A] [-l <selector>]`.
#[derive(Clone, Copy)]
pub struct Get<'q> {
    pub kind: &'q str,
    pub name: Option<&'q str>,
    pub namespace: Namespace<'q>,
    pub selector: Option<&'q str>,
}

#[derive(Clone, Copy)]
pub enum Namespace<'q> {
    /// Cluster-scoped, or the kubeconfig's namespace.
    Default,
    In(&'q str),
    /// `-A`
    All,
}

impl<'q> Get<'q> {
    /// One cluster-scoped object, or every object of `kind` when no name.
    pub fn kind(kind: &'q str) -> Self {
        Get {
            kind,
            name: None,
            namespace: Namespace::Default,
            selector: None,
        }
    }
    pub fn named(kind: &'q str, name: &'q str) -> Self {
        Get {
            name: Some(name),
            ..Get::kind(kind)
        }
    }
    pub fn namespace(self, ns: &'q str) -> Self {
        Get {
            namespace: Namespace::In(ns),
            ..self
        }
    }
    /// `-A -l <selector>`
    pub fn all_labelled(self, selector: &'q str) -> Self {
        Get {
            namespace: Namespace::All,
            selector: Some(selector),
            ..self
        }
    }

    /// `-l <selector>` in the namespace already chosen.
    pub fn labelled(self, selector: &'q str) -> Self {
        Get {
            selector: Some(selector),
            ..self
        }
    }

    /// The arguments after `oc`, as the messages name them.
    fn args(&self) -> Vec<&'q str> {
        let mut a = vec!["get", self.kind];
        a.extend(self.name);
        match self.namespace {
            Namespace::Default => {}
            Namespace::In(ns) => a.extend(["-n", ns]),
            Namespace::All => a.push("-A"),
        }
        if let Some(s) = self.selector {
            a.extend(["-l", s]);
        }
        a
    }
}

/// Whether oc's stderr says the object (or its namespace) does not exist.
fn not_found(out: &cmd::Output) -> bool {
    String::from_utf8_lossy(&out.stderr).contains("(NotFound)")
}

impl<'a> Oc<'a> {
    pub fn new(host: &'a Host, tools: &'a Tools) -> Self {
        Oc { host, tools }
    }

    pub fn command(&self) -> Result<Command> {
        command(self.host, self.tools)
    }

    /// `oc get ... -o json` into `T` (`serde_json::Value` for the parsers
    /// that read it field by field).
    pub fn get<T: DeserializeOwned>(&self, what: Get<'_>) -> Result<T> {
        let args = what.args();
        let out = cmd::run_text(self.command()?.args(&args).args(["-o", "json"]))?;
        from_json(&args, &out)
    }

    /// [`Oc::get`], None when the server says NotFound.
    pub fn get_opt<T: DeserializeOwned>(&self, what: Get<'_>) -> Result<Option<T>> {
        let args = what.args();
        let out = cmd::output(self.command()?.args(&args).args(["-o", "json"]))?;
        if !out.success() {
            if not_found(&out) {
                return Ok(None);
            }
            return Err(out.error());
        }
        from_json(&args, &String::from_utf8_lossy(&out.stdout)).map(Some)
    }

    /// `oc delete <kind> <name> -n <namespace>`; an object already gone
    /// counts as deleted.
    pub fn delete(&self, kind: &str, name: &str, namespace: &str) -> Result<()> {
        let out = cmd::output(
            self.command()?
                .args(["delete", kind, name, "-n", namespace]),
        )?;
        if out.success() || not_found(&out) {
            return Ok(());
        }
        Err(out.error())
    }

    /// `oc delete <kind> <name> -n <namespace> --cascade=foreground`: the
    /// object goes once its dependents (a Job's pods) are gone, as LCA's
    /// `common.GenerateDeleteOptions()` (lifecycle-agent 0e1bf182,
    /// `internal/common/utils.go`: `DeletePropagationForeground`) asks;
    /// an object already gone counts as deleted.
    pub fn delete_foreground(&self, kind: &str, name: &str, namespace: &str) -> Result<()> {
        let out = cmd::output(self.command()?.args([
            "delete",
            kind,
            name,
            "-n",
            namespace,
            "--cascade=foreground",
        ]))?;
        if out.success() || not_found(&out) {
            return Ok(());
        }
        Err(out.error())
    }

    /// `oc create -f -` of `obj`.
    pub fn create(&self, obj: &Value) -> Result<()> {
        cmd::run_with_stdin(
            self.command()?.args(["create", "-f", "-"]),
            obj.to_string().as_bytes(),
        )
        .map(drop)
    }

    /// `oc patch <kind> <name> --type=merge -p <patch>`.
    pub fn patch_merge(&self, kind: &str, name: &str, patch: &str) -> Result<()> {
        cmd::run(
            self.command()?
                .args(["patch", kind, name, "--type=merge", "-p", patch]),
        )
        .map(drop)
    }

    /// [`Oc::patch_merge`] of a namespaced object.
    pub fn patch_merge_in(
        &self,
        kind: &str,
        name: &str,
        namespace: &str,
        patch: &str,
    ) -> Result<()> {
        cmd::run(self.command()?.args([
            "patch",
            kind,
            name,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            patch,
        ]))
        .map(drop)
    }

    /// `oc annotate <kind> <name> <key>=<value> --overwrite`.
    pub fn annotate(&self, kind: &str, name: &str, key: &str, value: &str) -> Result<()> {
        cmd::run(self.command()?.args([
            "annotate",
            kind,
            name,
            &format!("{key}={value}"),
            "--overwrite",
        ]))
        .map(drop)
    }
}

/// `metadata` of a Kubernetes object: the fields the tool reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Meta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<serde_json::Map<String, Value>>,
}

impl Meta {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref()?.get(key).map(String::as_str)
    }
    /// A string annotation (`None` when absent or not a string).
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key)?.as_str()
    }
}

/// What `oc get <kind> -o json` gives without a name: `{"items": [...]}`.
#[derive(Debug, Deserialize)]
pub struct List<T> {
    #[serde(default = "Option::default")]
    items: Option<Vec<T>>,
}

impl<T> List<T> {
    pub fn empty() -> Self {
        List { items: None }
    }
    pub fn items(&self) -> &[T] {
        self.items.as_deref().unwrap_or_default()
    }
}

fn from_json<T: DeserializeOwned>(args: &[&str], text: &str) -> Result<T> {
    serde_json::from_str(text).with_context(|| format!("oc {}: malformed JSON", args.join(" ")))
}

/// A static-pod operator (`kubeapiserver`, `etcd`, ...) or a list of them,
/// the fields the recovery reads.
#[derive(Debug, Deserialize)]
pub struct Operators {
    #[serde(default)]
    items: Option<Vec<Operator>>,
    #[serde(default)]
    status: Option<OperatorStatus>,
}

#[derive(Debug, Deserialize)]
struct Operator {
    #[serde(default)]
    status: Option<OperatorStatus>,
}

#[derive(Debug, Deserialize)]
struct OperatorStatus {
    #[serde(default, rename = "nodeStatuses")]
    node_statuses: Option<Vec<NodeStatus>>,
    #[serde(default, rename = "latestAvailableRevision")]
    latest_available_revision: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct NodeStatus {
    #[serde(default, rename = "currentRevision")]
    current_revision: Option<i64>,
}

impl Operators {
    /// (currentRevision of the first node, latestAvailableRevision) of the
    /// first operator of a list, or of the object.
    pub fn revisions(&self) -> Result<(i64, i64)> {
        let status = match &self.items {
            Some(items) => items.first().and_then(|o| o.status.as_ref()),
            None => self.status.as_ref(),
        };
        let cur = status
            .and_then(|s| s.node_statuses.as_deref())
            .and_then(<[NodeStatus]>::first)
            .and_then(|n| n.current_revision)
            .context("no .status.nodeStatuses[0].currentRevision")?;
        let latest = status
            .and_then(|s| s.latest_available_revision)
            .context("no .status.latestAvailableRevision")?;
        Ok((cur, latest))
    }
}

/// (currentRevision of the first node, latestAvailableRevision) of an
/// operator list or object from `oc get ... -o json`.
pub fn parse_revisions(json: &str) -> Result<(i64, i64)> {
    let ops: Operators = serde_json::from_str(json).context("malformed JSON")?;
    ops.revisions()
}

/// One entry of the ClusterVersion's `status.history` (openshift/api
/// `config/v1/types_cluster_version.go`, `UpdateHistory`): "the newest
/// update is first"; `state` is `Completed` once "the update was
/// successfully rolled out at least once", `Partial` while it is applied
/// or when it "was never completely applied"; `completionTime` is null for
/// the update being applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct HistoryEntry {
    pub state: String,
    #[serde(rename = "startedTime")]
    pub started_time: String,
    #[serde(rename = "completionTime", default)]
    pub completion_time: Option<String>,
    #[serde(default)]
    pub version: String,
}

impl HistoryEntry {
    /// `Completed`: the one state upstream defines as fully applied.
    pub fn completed(&self) -> bool {
        self.state == "Completed"
    }
    /// `startedTime` as a Unix time (checked by [`parse_cluster_version`]).
    pub fn started(&self) -> i64 {
        crate::util::fsutil::parse_rfc3339(&self.started_time).unwrap_or(i64::MAX)
    }
    /// `4.16.3 (Completed, started 2024-...)`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, started {}{})",
            if self.version.is_empty() {
                "?"
            } else {
                &self.version
            },
            self.state,
            self.started_time,
            self.completion_time
                .as_deref()
                .map(|c| format!(", completed {c}"))
                .unwrap_or_default()
        )
    }
}

/// What the tool reads of `oc get clusterversion version -o json`: the
/// version the cluster reconciles to (`status.desired.version`) and the
/// history, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterVersion {
    pub version: Option<String>,
    pub history: Vec<HistoryEntry>,
}

#[derive(Deserialize)]
struct CvObject {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    status: Option<CvStatus>,
}

#[derive(Deserialize)]
struct CvStatus {
    #[serde(default)]
    desired: Option<CvUpdate>,
    #[serde(default)]
    history: Option<Vec<HistoryEntry>>,
}

#[derive(Deserialize)]
struct CvUpdate {
    #[serde(default)]
    version: Option<String>,
}

/// Parse `oc get clusterversion version -o json`. Another kind, an entry
/// without `state` or `startedTime`, or a `startedTime` that is not an
/// RFC 3339 time is an error: the lifecycle rule never decides on a guess.
pub fn parse_cluster_version(json: &str) -> Result<ClusterVersion> {
    let o: CvObject = serde_json::from_str(json).context("malformed JSON")?;
    if let Some(k) = o.kind.as_deref().filter(|k| *k != "ClusterVersion") {
        anyhow::bail!("kind {k:?}, not ClusterVersion");
    }
    let st = o.status.unwrap_or(CvStatus {
        desired: None,
        history: None,
    });
    let history = st.history.unwrap_or_default();
    for (i, e) in history.iter().enumerate() {
        if crate::util::fsutil::parse_rfc3339(&e.started_time).is_none() {
            anyhow::bail!(
                "status.history[{i}].startedTime {:?} is not an RFC 3339 time",
                crate::archive::validate::short(e.started_time.as_bytes())
            );
        }
    }
    Ok(ClusterVersion {
        version: st.desired.and_then(|d| d.version).filter(|v| !v.is_empty()),
        history,
    })
}

/// How long the lifecycle rule waits for the API: in an outage `oc` may
/// hang on a dead endpoint; the rule then decides from the deployments.
pub const CLUSTER_VERSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// `oc get clusterversion version -o json`, within `limit`.
pub fn cluster_version(
    host: &Host,
    tools: &Tools,
    limit: std::time::Duration,
) -> Result<ClusterVersion> {
    let out = cmd::run_timeout(
        command(host, tools)?.args(["get", "clusterversion", "version", "-o", "json"]),
        limit,
    )?;
    parse_cluster_version(&String::from_utf8_lossy(&out))
        .context("oc get clusterversion version -o json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn get_arguments_name_the_object() {
        assert_eq!(
            Get::named("deletebackuprequests.velero.io", "b")
                .namespace("ns")
                .args(),
            ["get", "deletebackuprequests.velero.io", "b", "-n", "ns"]
        );
        assert_eq!(
            Get::kind("backups.velero.io").all_labelled("k=v").args(),
            ["get", "backups.velero.io", "-A", "-l", "k=v"]
        );
        assert_eq!(Get::kind("kubeapiserver").args(), ["get", "kubeapiserver"]);
    }

    /// A fake `oc` answering as the real one does: JSON on stdout, or
    /// `Error from server (<Reason>): ...` on stderr and exit 1.
    fn fake_oc(tag: &str, script: &str) -> (tempdir::Dir, Tools) {
        let d = tempdir::Dir::new(tag);
        let p = d.0.join("oc");
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        (d, Tools::with("oc", p))
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new(tag: &str) -> Dir {
                let p = std::env::temp_dir().join(format!("ur-oc-{tag}-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn not_found_is_none_and_other_failures_name_the_object_and_what_oc_said() {
        let host = Host::new(Path::new("/"), Path::new("/var/recovery")).unwrap();
        let (_d, tools) = fake_oc(
            "nf",
            r#"case "$*" in
  *" gone "*) echo 'Error from server (NotFound): backups.velero.io "gone" not found' >&2; exit 1 ;;
  *" denied "*) echo 'Error from server (Forbidden): backups.velero.io "denied" is forbidden' >&2; exit 1 ;;
  *" create "*) cat; exit 0 ;;
  *) echo '{"metadata":{"name":"there"}}' ;;
esac"#,
        );
        let oc = Oc::new(&host, &tools);
        let get = |name| Get::named("backups.velero.io", name).namespace("ns");
        let v: Option<Value> = oc.get_opt(get("there")).unwrap();
        assert_eq!(v.unwrap()["metadata"]["name"], "there");
        assert!(oc.get_opt::<Value>(get("gone")).unwrap().is_none());
        let err = oc.get_opt::<Value>(get("denied")).unwrap_err().to_string();
        assert!(
            err.contains(" get backups.velero.io denied -n ns -o json` failed (exit status: 1):\nError from server (Forbidden)"),
            "{err}"
        );
        let err = oc.get::<Value>(get("gone")).unwrap_err().to_string();
        assert!(
            err.contains("get backups.velero.io gone -n ns -o json` failed"),
            "{err}"
        );
        oc.delete("backups.velero.io", "gone", "ns").unwrap();
        let err = oc
            .delete("backups.velero.io", "denied", "ns")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(" delete backups.velero.io denied -n ns` failed (exit status: 1):\nError from server (Forbidden)"),
            "{err}"
        );
        oc.create(&serde_json::json!({"kind": "DeleteBackupRequest"}))
            .unwrap();
    }

    #[test]
    fn malformed_json_names_the_object() {
        let host = Host::new(Path::new("/"), Path::new("/var/recovery")).unwrap();
        let (_d, tools) = fake_oc("bad", "echo '{\"items\": ['");
        let err = Oc::new(&host, &tools)
            .get::<Operators>(Get::kind("etcd"))
            .unwrap_err();
        assert!(
            format!("{err:#}").starts_with("oc get etcd: malformed JSON: "),
            "{err:#}"
        );
    }

    /// The shape of `oc get clusterversion version -o json` (fixture
    /// `tests/fixtures/oc/clusterversion.json`, fields as openshift/api
    /// `config/v1/types_cluster_version.go` names them).
    #[test]
    fn cluster_version_history_newest_first() {
        let cv = parse_cluster_version(include_str!("../../tests/fixtures/oc/clusterversion.json"))
            .unwrap();
        assert_eq!(cv.version.as_deref(), Some("4.16.5"));
        assert_eq!(cv.history.len(), 3);
        assert_eq!(cv.history[0].state, "Partial");
        assert!(cv.history[0].completion_time.is_none());
        assert!(!cv.history[0].completed() && cv.history[1].completed());
        assert_eq!(cv.history[1].started(), 1_717_000_000);
        assert!(cv.history[0].started() > cv.history[1].started());
        // Early in an install the history may be empty or absent.
        let empty = parse_cluster_version(
            r#"{"kind":"ClusterVersion","status":{"desired":{"version":""}}}"#,
        )
        .unwrap();
        assert_eq!(empty, ClusterVersion::default());
        assert_eq!(
            parse_cluster_version(r#"{"kind":"ClusterVersion"}"#).unwrap(),
            ClusterVersion::default()
        );
    }

    #[test]
    fn a_malformed_cluster_version_is_an_error() {
        for (bad, why) in [
            ("", "malformed JSON"),
            ("{", "malformed JSON"),
            (r#"{"kind":"List","items":[]}"#, "not ClusterVersion"),
            (
                r#"{"status":{"history":[{"state":"Completed"}]}}"#,
                "malformed JSON",
            ),
            (
                r#"{"status":{"history":[{"startedTime":"2024-05-01T00:00:00Z"}]}}"#,
                "malformed JSON",
            ),
            (
                r#"{"status":{"history":[{"state":"Completed","startedTime":"yesterday"}]}}"#,
                "not an RFC 3339 time",
            ),
            (
                r#"{"status":{"history":{"state":"Completed"}}}"#,
                "malformed JSON",
            ),
        ] {
            let e = format!("{:#}", parse_cluster_version(bad).unwrap_err());
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn revisions_of_a_list_or_an_object() {
        let obj =
            r#"{"status":{"nodeStatuses":[{"currentRevision":7}],"latestAvailableRevision":8}}"#;
        assert_eq!(parse_revisions(obj).unwrap(), (7, 8));
        let list = format!(r#"{{"items":[{obj}]}}"#);
        assert_eq!(parse_revisions(&list).unwrap(), (7, 8));
        let err = parse_revisions(r#"{"items":[]}"#).unwrap_err().to_string();
        assert_eq!(err, "no .status.nodeStatuses[0].currentRevision");
        let err = parse_revisions(r#"{"status":{"nodeStatuses":[{"currentRevision":1}]}}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "no .status.latestAvailableRevision");
        assert!(parse_revisions("{").is_err());
    }
}
