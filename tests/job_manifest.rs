//! packaging/backup-agent-job.yaml is TALM's own Job with only the image
//! changed (openshift-kni/cluster-group-upgrades-operator dacf199e,
//! controllers/templates/backup-templates.go, extracted into
//! tests/fixtures/talm/backup-templates.yaml), and
//! packaging/acm-backup-policy.yaml names only fields of the ACM policy
//! types and creates exactly that Job.

mod common;

use common::project;
use serde_yaml_ng::Value;

fn load(rel: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(project().join(rel)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn docs() -> Vec<Value> {
    load("packaging/backup-agent-job.yaml")
}

fn kind<'a>(docs: &'a [Value], k: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == k).unwrap()
}

const MGMT: &str = "target.workload.openshift.io/management";
const IMAGE: &str = "quay.io/openshift-kni/upgrade-recovery:latest";

/// Every field of TALM's namespace, service account, binding and Job, and
/// nothing else: `tty: true`, `/host` an emptyDir with the host's paths one
/// by one below it, `activeDeadlineSeconds: 480`, `backoffLimit: 0`,
/// privileged, the management annotations, no priority class, no requests.
#[test]
fn the_job_is_talms_template_with_only_the_image_changed() {
    let mut talm = load("tests/fixtures/talm/backup-templates.yaml");
    let ours = docs();
    assert_eq!(talm.len(), 4);
    for d in talm.iter_mut() {
        if d["kind"] == "Job" {
            let c = &mut d["spec"]["template"]["spec"]["containers"][0]["image"];
            assert_eq!(c.as_str(), Some("RECOVERY_IMG"));
            *c = Value::from(IMAGE);
        }
    }
    assert_eq!(ours, talm);
    let job = kind(&ours, "Job");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["tty"], true);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 480);
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert!(pod.get("priorityClassName").is_none());
    assert!(pod["containers"][0].get("resources").is_none());
    assert_eq!(pod["volumes"][0]["name"], "host");
    assert!(pod["volumes"][0]["emptyDir"].is_mapping());
}

#[test]
fn the_job_carries_the_workload_partitioning_annotations() {
    let d = docs();
    let ns = kind(&d, "Namespace");
    assert_eq!(
        ns["metadata"]["annotations"]["workload.openshift.io/allowed"],
        "management"
    );
    let job = kind(&d, "Job");
    for meta in [&job["metadata"], &job["spec"]["template"]["metadata"]] {
        let v = meta["annotations"][MGMT].as_str().unwrap();
        let j: serde_json::Value = serde_json::from_str(v).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"effect": "PreferredDuringScheduling"})
        );
    }
}

/// The mounts of TALM's template, read-only where it mounts them read-only.
#[test]
fn the_job_mounts_what_talm_mounts() {
    let d = docs();
    let job = kind(&d, "Job");
    let mounts = job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        .as_sequence()
        .unwrap();
    let mut got: Vec<(String, bool)> = mounts
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_string(),
                m["readOnly"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    got.sort();
    let ro = [
        "/host/boot",
        "/host/proc",
        "/host/usr/bin",
        "/host/usr/lib",
        "/host/usr/lib64",
        "/host/usr/libexec",
        "/host/usr/local",
        "/host/usr/share/containers",
        "/host/sys/fs/cgroup",
    ];
    let rw = [
        "/host",
        "/host/dev/log",
        "/host/etc",
        "/host/run",
        "/host/sysroot",
        "/host/tmp",
        "/host/var/lib",
        "/host/var/recovery",
        "/host/var/tmp",
    ];
    let mut want: Vec<(String, bool)> = ro
        .iter()
        .map(|p| (p.to_string(), true))
        .chain(rw.iter().map(|p| (p.to_string(), false)))
        .collect();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "launchBackup"
    );
}

/// The fields each type has (json tags), by type:
/// governance-policy-propagator 19b1b7b api/v1/policy_types.go and
/// placementbinding_types.go; config-policy-controller ecf24b4
/// api/v1/configurationpolicy_types.go; open-cluster-management-io/api
/// 1845fd80 cluster/v1beta1/types_placement.go,
/// cluster/v1beta2/types_managedclustersetbinding.go; metav1 TypeMeta and
/// ObjectMeta for the top of each object.
fn only(v: &Value, allowed: &[&str], what: &str) {
    for k in v
        .as_mapping()
        .unwrap_or_else(|| panic!("{what} is not a map"))
        .keys()
    {
        let k = k.as_str().unwrap();
        assert!(
            allowed.contains(&k),
            "{what} has a field `{k}` its type lacks"
        );
    }
}

const TOP: [&str; 4] = ["apiVersion", "kind", "metadata", "spec"];
const META: [&str; 4] = ["name", "namespace", "labels", "annotations"];

#[test]
fn the_acm_policy_names_only_fields_of_its_types_and_creates_the_same_job() {
    let p = load("packaging/acm-backup-policy.yaml");
    let by = |k: &str| {
        p.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
    };
    assert_eq!(p.len(), 4);
    for d in &p {
        only(&d["metadata"], &META, "metadata");
        assert_eq!(d["metadata"]["namespace"], "upgrade-recovery");
    }

    let csb = by("ManagedClusterSetBinding");
    assert_eq!(
        csb["apiVersion"],
        "cluster.open-cluster-management.io/v1beta2"
    );
    only(csb, &TOP, "ManagedClusterSetBinding");
    only(
        &csb["spec"],
        &["clusterSet"],
        "ManagedClusterSetBindingSpec",
    );

    let pl = by("Placement");
    assert_eq!(
        pl["apiVersion"],
        "cluster.open-cluster-management.io/v1beta1"
    );
    only(pl, &TOP, "Placement");
    only(
        &pl["spec"],
        &[
            "clusterSets",
            "numberOfClusters",
            "predicates",
            "prioritizerPolicy",
            "spreadPolicy",
            "tolerations",
            "decisionStrategy",
        ],
        "PlacementSpec",
    );
    assert_eq!(pl["spec"]["clusterSets"][0], csb["spec"]["clusterSet"]);
    for pr in pl["spec"]["predicates"].as_sequence().unwrap() {
        only(pr, &["requiredClusterSelector"], "ClusterPredicate");
        only(
            &pr["requiredClusterSelector"],
            &["labelSelector", "claimSelector", "celSelector"],
            "ClusterSelector",
        );
        only(
            &pr["requiredClusterSelector"]["labelSelector"],
            &["matchLabels", "matchExpressions"],
            "LabelSelector",
        );
    }

    let pb = by("PlacementBinding");
    assert_eq!(pb["apiVersion"], "policy.open-cluster-management.io/v1");
    only(
        pb,
        &[
            "apiVersion",
            "kind",
            "metadata",
            "placementRef",
            "subjects",
            "bindingOverrides",
            "subFilter",
        ],
        "PlacementBinding",
    );
    only(
        &pb["placementRef"],
        &["apiGroup", "kind", "name"],
        "PlacementSubject",
    );
    assert_eq!(pb["placementRef"]["kind"], "Placement");
    assert_eq!(pb["placementRef"]["name"], pl["metadata"]["name"]);
    let pol = by("Policy");
    for s in pb["subjects"].as_sequence().unwrap() {
        only(s, &["apiGroup", "kind", "name"], "Subject");
        assert_eq!(s["kind"], "Policy");
        assert_eq!(s["name"], pol["metadata"]["name"]);
    }

    assert_eq!(pol["apiVersion"], "policy.open-cluster-management.io/v1");
    only(pol, &TOP, "Policy");
    only(
        &pol["spec"],
        &[
            "disabled",
            "copyPolicyMetadata",
            "remediationAction",
            "policy-templates",
            "dependencies",
            "hubTemplateOptions",
        ],
        "PolicySpec",
    );
    // TALM manages only inform policies (controllers/policy.go).
    assert_eq!(pol["spec"]["remediationAction"], "inform");
    let tpls = pol["spec"]["policy-templates"].as_sequence().unwrap();
    assert_eq!(tpls.len(), 1);
    only(
        &tpls[0],
        &["objectDefinition", "extraDependencies", "ignorePending"],
        "PolicyTemplate",
    );
    let cp = &tpls[0]["objectDefinition"];
    assert_eq!(cp["kind"], "ConfigurationPolicy");
    assert_eq!(cp["apiVersion"], "policy.open-cluster-management.io/v1");
    only(cp, &TOP, "ConfigurationPolicy");
    only(
        &cp["spec"],
        &[
            "customMessage",
            "severity",
            "remediationAction",
            "evaluationInterval",
            "pruneObjectBehavior",
            "namespaceSelector",
            "object-templates",
            "object-templates-raw",
        ],
        "ConfigurationPolicySpec",
    );
    // The enums of configurationpolicy_types.go.
    assert!(["inform", "enforce", "Inform", "Enforce"]
        .contains(&cp["spec"]["remediationAction"].as_str().unwrap()));
    assert!(
        ["low", "medium", "high", "critical"].contains(&cp["spec"]["severity"].as_str().unwrap())
    );
    assert_eq!(cp["spec"]["pruneObjectBehavior"], "DeleteIfCreated");
    let mut created = Vec::new();
    for ot in cp["spec"]["object-templates"].as_sequence().unwrap() {
        only(
            ot,
            &[
                "complianceType",
                "metadataComplianceType",
                "recreateOption",
                "objectDefinition",
                "recordDiff",
                "objectSelector",
            ],
            "ObjectTemplate",
        );
        assert_eq!(ot["complianceType"], "musthave");
        let mut o = ot["objectDefinition"].clone();
        if o["kind"] == "Job" {
            // Compliant only when the Job succeeded.
            assert_eq!(
                o["status"],
                serde_yaml_ng::from_str::<Value>("{succeeded: 1}").unwrap()
            );
            o.as_mapping_mut().unwrap().remove("status");
        }
        created.push(o);
    }
    // Exactly the objects of packaging/backup-agent-job.yaml, in its order.
    assert_eq!(created, docs());
}
