//! packaging/backup-agent-job.yaml carries what TALM's own Job carries
//! (openshift-kni/cluster-group-upgrades-operator
//! controllers/templates/backup-templates.go): the workload partitioning
//! annotations and the host mounts.

mod common;

use common::project;
use serde_yaml_ng::Value;

fn docs() -> Vec<Value> {
    let text = std::fs::read_to_string(project().join("packaging/backup-agent-job.yaml")).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn kind<'a>(docs: &'a [Value], k: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == k).unwrap()
}

const MGMT: &str = "target.workload.openshift.io/management";

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
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "launchBackup"
    );
}
