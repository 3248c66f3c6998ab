//! Image-based upgrade troubleshooting in the sandbox: `ibu status`, `ibu
//! cleanup`, `oadp lint`, `report`. The `oc` shim holds the objects as JSON
//! files under ctl/state/objects/<resource>/<namespace>/<name>.json.

mod common;

use common::*;
use serde_json::json;

fn put(sb: &Sandbox, res: &str, ns: &str, name: &str, v: serde_json::Value) {
    let d = sb.ctl().join("state/objects").join(res).join(ns);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(format!("{name}.json")), v.to_string()).unwrap();
}

fn ibu(sb: &Sandbox, status: &str, reason: &str) {
    put(
        sb,
        "imagebasedupgrades",
        "_",
        "upgrade",
        json!({"apiVersion": "lca.openshift.io/v1", "kind": "ImageBasedUpgrade",
               "metadata": {"name": "upgrade", "annotations": {"support/session": "sha256~AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"}},
               "spec": {"stage": "Idle", "seedImageRef": {"version": "4.17.1", "image": "quay.io/x/seed:4.17.1"}},
               "status": {"conditions": [{"type": "Idle", "status": status, "reason": reason, "message": "failed to delete OADP backups"}]}}),
    );
}

fn bsl(sb: &Sandbox, phase: &str) {
    put(
        sb,
        "backupstoragelocations",
        "openshift-adp",
        "default",
        json!({"apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
               "metadata": {"name": "default", "namespace": "openshift-adp",
                            "annotations": {"debug": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"}},
               "spec": {"provider": "aws", "objectStorage": {"bucket": "b"}},
               "status": {"phase": phase, "message": if phase == "Available" { "" } else { "dial tcp 10.0.0.9:9000: i/o timeout" }}}),
    );
}

const CID: &str = "5d3ab2e0-1c9f-4d2a-9a57-0c8f3a7e1b11";

fn cluster_version(sb: &Sandbox, spec: serde_json::Value) {
    put(
        sb,
        "clusterversions",
        "_",
        "version",
        json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterVersion",
               "metadata": {"name": "version"}, "spec": spec}),
    );
}

fn labels(cid: Option<&str>) -> serde_json::Value {
    match cid {
        Some(c) => {
            json!({"velero.io/storage-location": "default", "config.openshift.io/clusterID": c})
        }
        None => json!({"velero.io/storage-location": "default", "app": "mine"}),
    }
}

/// The upgrade's Backups (labelled with this cluster's ID, in two
/// namespaces), the user's own, one synced back from another cluster; the
/// Restores, DeleteBackupRequests and PVs around them.
fn backups(sb: &Sandbox) {
    for (ns, name, cid) in [
        ("openshift-adp", "acm-klusterlet", Some(CID)),
        ("openshift-adp", "small-app", Some(CID)),
        ("apps-adp", "other-ns-app", Some(CID)),
        ("openshift-adp", "users-own", None),
        ("openshift-adp", "other-cluster", Some("0000-other-cluster")),
    ] {
        put(
            sb,
            "backups",
            ns,
            name,
            json!({"apiVersion": "velero.io/v1", "kind": "Backup",
                   "metadata": {"name": name, "namespace": ns, "labels": labels(cid)}, "spec": {}}),
        );
    }
    for (name, backup, cid) in [
        ("acm-klusterlet", "acm-klusterlet", Some(CID)),
        ("users-restore", "users-own", None),
    ] {
        put(
            sb,
            "restores",
            "openshift-adp",
            name,
            json!({"apiVersion": "velero.io/v1", "kind": "Restore",
                   "metadata": {"name": name, "namespace": "openshift-adp", "labels": labels(cid)},
                   "spec": {"backupName": backup}}),
        );
    }
    // A request left by LCA's attempt while the location was down (same name
    // as its Backup, processed with an error), and the user's own.
    for (name, cid) in [("small-app", Some(CID)), ("users-dbr", None)] {
        put(
            sb,
            "deletebackuprequests",
            "openshift-adp",
            name,
            json!({"apiVersion": "velero.io/v1", "kind": "DeleteBackupRequest",
                   "metadata": {"name": name, "namespace": "openshift-adp", "labels": labels(cid)},
                   "spec": {"backupName": name},
                   "status": {"phase": "Processed", "errors": ["backup storage location default is unavailable"]}}),
        );
    }
    for (name, ann) in [("pv-lvms", true), ("pv-other", false)] {
        let mut meta =
            json!({"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": "topolvm.io"}});
        if ann {
            meta["annotations"]["lca.openshift.io/updated-reclaim-policy"] = json!("true");
        }
        put(
            sb,
            "persistentvolumes",
            "_",
            name,
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta,
                   "spec": {"persistentVolumeReclaimPolicy": "Retain"}}),
        );
    }
}

fn objects(sb: &Sandbox, res: &str) -> Vec<String> {
    let d = sb.ctl().join("state/objects").join(res);
    let mut v = Vec::new();
    for ns in std::fs::read_dir(d).into_iter().flatten().flatten() {
        for e in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            v.push(format!(
                "{}/{}",
                ns.file_name().to_string_lossy(),
                e.file_name().to_string_lossy().trim_end_matches(".json")
            ));
        }
    }
    v.sort();
    v
}

fn object(sb: &Sandbox, res: &str, ns: &str, name: &str) -> serde_json::Value {
    let p = sb
        .ctl()
        .join("state/objects")
        .join(res)
        .join(ns)
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Everything the cleanup could change: the objects, the sysroot's
/// stateroots, the LCA workspace.
fn snapshot(sb: &Sandbox) -> String {
    sb.sh("cd $CTL/state/objects && find . -type f | sort | xargs cat; ls $ROOT/sysroot/ostree/deploy; ls -R $ROOT/var/lib/lca 2>&1")
}

fn annotated(sb: &Sandbox) -> bool {
    object(sb, "imagebasedupgrades", "_", "upgrade")["metadata"]["annotations"]
        .get("lca.openshift.io/manual-cleanup-done")
        .is_some()
}

fn upgrade_leftovers(sb: &Sandbox) {
    sh(&format!(
        "{}/scripts/sandbox.sh upgrade-os {} 417.1 rhcos_4.17 >/dev/null",
        q(&project()),
        q(sb.dir.path())
    ));
    sb.sh("mkdir -p $ROOT/var/lib/lca/workspace/precache && echo x > $ROOT/var/lib/lca/workspace/seed.tar");
}

const LCA_NS: &str = "openshift-lifecycle-agent";
const WORKLOAD: &str = r#"{"effect": "PreferredDuringScheduling"}"#;

/// LCA's own leftovers as LCA creates them (lifecycle-agent 0e1bf182):
/// the stateroot setup Job with its finalizer and its pod
/// (internal/prep/prep_stateroot_setup_job.go), the precache Job and
/// ConfigMap (internal/precache/helper.go), the extra-manifest warning on
/// the IBU (internal/extramanifest/extramanifest.go), and a Backup that
/// names objects LCA labelled (internal/backuprestore/backup.go
/// applyBackupLabels).
fn lca_objects(sb: &Sandbox) {
    let owner = json!([{"apiVersion": "lca.openshift.io/v1", "kind": "ImageBasedUpgrade", "name": "upgrade",
                        "uid": "0b6f1a52-3c0e-4a57-9d0e-6a1f4b2c9d10", "controller": true, "blockOwnerDeletion": true}]);
    put(
        sb,
        "jobs",
        LCA_NS,
        "lca-prep-stateroot-setup",
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "lca-prep-stateroot-setup", "namespace": LCA_NS,
                         "annotations": {"app.kubernetes.io/name": "lca-prep-stateroot-setup"},
                         "finalizers": ["lca.openshift.io/stateroot-setup-finalizer"],
                         "ownerReferences": owner},
            "spec": {"backoffLimit": 0, "template": {
                "metadata": {"annotations": {"target.workload.openshift.io/management": WORKLOAD}},
                "spec": {"containers": [{"name": "lca-prep-stateroot-setup", "image": "quay.io/openshift-kni/lifecycle-agent-operator:4.17",
                                         "command": ["lca-cli", "ibu-stateroot-setup"]}],
                         "hostPID": true, "serviceAccountName": "lifecycle-agent-controller-manager",
                         "restartPolicy": "Never", "terminationGracePeriodSeconds": 1800}}},
            "status": {"active": 1}
        }),
    );
    put(
        sb,
        "pods",
        LCA_NS,
        "lca-prep-stateroot-setup-x7k2p",
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "lca-prep-stateroot-setup-x7k2p", "namespace": LCA_NS,
                         "labels": {"job-name": "lca-prep-stateroot-setup", "batch.kubernetes.io/job-name": "lca-prep-stateroot-setup"}},
            "status": {"phase": "Running"}
        }),
    );
    put(
        sb,
        "jobs",
        LCA_NS,
        "lca-prep-precache",
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "lca-prep-precache", "namespace": LCA_NS,
                         "annotations": {"app.kubernetes.io/name": "lifecycle-agent-precache"},
                         "finalizers": ["lca.openshift.io/precache-finalizer"], "ownerReferences": owner},
            "spec": {"backoffLimit": 0},
            "status": {"failed": 1}
        }),
    );
    put(
        sb,
        "configmaps",
        LCA_NS,
        "lca-prep-precache",
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "lca-prep-precache", "namespace": LCA_NS},
            "data": {"images.txt": "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:0a1b\n"}
        }),
    );
    let mut cr = object(sb, "imagebasedupgrades", "_", "upgrade");
    cr["metadata"]["annotations"]["extra-manifest.lca.openshift.io/validation-warning"] =
        json!("Unknown CRD in extra manifests: example.com/v1 Widget");
    put(sb, "imagebasedupgrades", "_", "upgrade", cr);
    let mut b = object(sb, "backups", "apps-adp", "other-ns-app");
    b["metadata"]["annotations"] = json!({"lca.openshift.io/apply-label": "apps/v1/deployments/apps-adp/my-app,v1/configmaps/apps-adp/app-config"});
    b["spec"]["labelSelector"] =
        json!({"matchLabels": {"lca.openshift.io/backup": "other-ns-app"}});
    put(sb, "backups", "apps-adp", "other-ns-app", b);
    for (res, name, kind) in [
        ("deployments", "my-app", "Deployment"),
        ("configmaps", "app-config", "ConfigMap"),
    ] {
        put(
            sb,
            res,
            "apps-adp",
            name,
            json!({
            "apiVersion": if kind == "Deployment" { "apps/v1" } else { "v1" }, "kind": kind,
            "metadata": {"name": name, "namespace": "apps-adp",
                         "labels": {"app": "my-app", "lca.openshift.io/backup": "other-ns-app"}}}),
        );
    }
}

fn exists(sb: &Sandbox, res: &str, ns: &str, name: &str) -> bool {
    sb.ctl()
        .join("state/objects")
        .join(res)
        .join(ns)
        .join(format!("{name}.json"))
        .exists()
}

fn klusterlet(sb: &Sandbox, spec: serde_json::Value) {
    put(
        sb,
        "klusterlets",
        "_",
        "klusterlet",
        json!({"apiVersion": "operator.open-cluster-management.io/v1", "kind": "Klusterlet",
               "metadata": {"name": "klusterlet"}, "spec": spec}),
    );
}

fn write_precache(sb: &Sandbox, text: &str) {
    std::fs::write(
        sb.root().join("var/lib/lca/workspace/precache_status.json"),
        text,
    )
    .unwrap();
}

#[test]
fn status_shows_the_precache_progress() {
    let sb = Sandbox::with_profile("rhcos");
    // The sandbox keeps a ClusterVersion (the lifecycle rule reads it): this
    // test starts without one, to see what status says then.
    std::fs::remove_file(
        sb.ctl()
            .join("state/objects/clusterversions/_/version.json"),
    )
    .unwrap();
    upgrade_leftovers(&sb);
    ibu(&sb, "False", "AbortFailed");
    bsl(&sb, "Available");
    // Absent.
    let (code, out, err) = sb.run(&["ibu", "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Precache: no /var/lib/lca/workspace/precache_status.json")
            && out.contains("Idle=False AbortFailed")
            && out.contains("rhcos_4.17")
            && out.contains("default Available"),
        "{out}"
    );
    // No ClusterVersion: the upgrade's OADP objects cannot be told apart.
    assert!(
        out.contains("OADP objects of this upgrade: cannot tell them apart: ClusterVersion `version` does not exist"),
        "{out}"
    );
    backups(&sb);
    cluster_version(&sb, json!({"clusterID": CID}));
    let (code, out, err) = sb.run(&["ibu", "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "OADP objects of this upgrade (config.openshift.io/clusterID={CID}):"
        )) && out.contains("  Backup apps-adp/other-ns-app (no phase)")
            && out.contains("  Backup openshift-adp/small-app")
            && out.contains("  Restore openshift-adp/acm-klusterlet")
            && out.contains("  DeleteBackupRequest openshift-adp/small-app Processed")
            && !out.contains("users-")
            && !out.contains("other-cluster"),
        "{out}"
    );
    // As LCA's precache job writes it (internal/precache/progress.go).
    write_precache(
        &sb,
        r#"{"total":12,"pulled":10,"failed":2,"failed_pulls":["quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:aa","registry.example.com/app:1"]}"#,
    );
    let (code, out, _) = sb.run(&["ibu", "status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Precache: 10 of 12 images pulled, 2 failed")
            && out.contains("  failed: registry.example.com/app:1"),
        "{out}"
    );
    let (_, out, _) = sb.run(&["ibu", "status", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["precache"]["failed_pulls"][0],
        "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:aa"
    );
    assert_eq!(v["cr"]["conditions"][0]["reason"], "AbortFailed");
    // Malformed: said so, the rest of the status still shown.
    for bad in [
        &b"{\"total\": 3, \"pulled\":"[..],
        b"{\"total\":1,\"pulled\":5,\"failed\":0}",
        b"{\"total\":\xff}",
    ] {
        std::fs::write(
            sb.root().join("var/lib/lca/workspace/precache_status.json"),
            bad,
        )
        .unwrap();
        let (code, out, _) = sb.run(&["ibu", "status"]);
        assert_eq!(code, 0);
        assert!(
            out.contains("Precache: cannot show the progress: /var/lib/lca/workspace/precache_status.json is malformed")
                && out.contains("default Available"),
            "{out}"
        );
    }
}

#[test]
fn cleanup_is_planned_checked_then_carried_out() {
    let sb = Sandbox::with_profile("rhcos");
    upgrade_leftovers(&sb);
    backups(&sb);
    ibu(&sb, "True", "Idle");
    bsl(&sb, "Available");
    cluster_version(&sb, json!({"clusterID": CID, "channel": "stable-4.17"}));
    let before = snapshot(&sb);

    // A healthy CR: refused, nothing changed.
    let (code, _, err) = sb.run(&["ibu", "cleanup"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("not in AbortFailed or FinalizeFailed"),
        "{err}"
    );
    assert_eq!(snapshot(&sb), before);

    // No cluster ID, no way to tell the upgrade's Backups: refused before any change.
    ibu(&sb, "False", "AbortFailed");
    lca_objects(&sb);
    std::fs::remove_file(
        sb.ctl()
            .join("state/objects/clusterversions/_/version.json"),
    )
    .unwrap();
    let before = snapshot(&sb);
    let (code, _, err) = sb.run(&["ibu", "cleanup"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("ClusterVersion `version` does not exist")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(snapshot(&sb), before);
    cluster_version(&sb, json!({"channel": "stable-4.17"}));
    let before = snapshot(&sb);
    let (code, _, err) = sb.run(&["ibu", "cleanup"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no spec.clusterID") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(snapshot(&sb), before);
    std::fs::write(
        sb.ctl()
            .join("state/objects/clusterversions/_/version.json"),
        "{\"spec\": ",
    )
    .unwrap();
    let before = snapshot(&sb);
    let (code, _, err) = sb.run(&["ibu", "cleanup"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("malformed JSON") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(snapshot(&sb), before);
    cluster_version(&sb, json!({"clusterID": CID, "channel": "stable-4.17"}));

    // An unavailable backup location: refused, and the stateroot is still there.
    bsl(&sb, "Unavailable");
    let before = snapshot(&sb);
    let (code, _, err) = sb.run(&["ibu", "cleanup"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("BackupStorageLocation openshift-adp/default (bucket b) is Unavailable")
            && err.contains("i/o timeout")
            && err.contains("nothing was changed")
            && err.contains("upgrade-recovery ibu cleanup --without-bucket"),
        "{err}"
    );
    assert_eq!(snapshot(&sb), before);
    assert!(sb.root().join("sysroot/ostree/deploy/rhcos_4.17").exists());

    // Dry run: the plan, no change.
    bsl(&sb, "Available");
    let before = snapshot(&sb);
    let (code, out, err) = sb.run(&["ibu", "cleanup", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("would delete Backup openshift-adp/small-app and its data in the bucket: create DeleteBackupRequest openshift-adp/small-app, wait up to 300 s")
            && out.contains("would delete Backup apps-adp/other-ns-app")
            && out.contains("would delete DeleteBackupRequest openshift-adp/small-app (left by an earlier attempt)")
            && out.contains("would delete Restore openshift-adp/acm-klusterlet")
            && out.contains("would set PersistentVolume pv-lvms back to reclaim policy Delete")
            && out.contains("would remove stateroot rhcos_4.17")
            && out.contains("would run `rpm-ostree cleanup -b`")
            && !out.contains("users-")
            && !out.contains("other-cluster")
            && !out.contains("pv-other"),
        "{out}"
    );
    // LCA's cleanup(), step by step and in its order: the stateroot setup
    // Job (finalizer, Job, its pod gone) before any stateroot goes; the
    // precache Job, ConfigMap and progress file; the extra-manifest
    // warning; OADP (with the labels LCA put on what a Backup names); the
    // whole workspace; then the annotation.
    let order = [
        "1. stateroot (LCA cleanupStateroot):",
        "would remove the finalizer lca.openshift.io/stateroot-setup-finalizer from Job openshift-lifecycle-agent/lca-prep-stateroot-setup",
        "would delete Job openshift-lifecycle-agent/lca-prep-stateroot-setup (foreground: with its pods)",
        "would wait up to 1800 s until no pod of Job openshift-lifecycle-agent/lca-prep-stateroot-setup (label job-name=lca-prep-stateroot-setup) is left",
        "would remove stateroot rhcos_4.17",
        "would run `rpm-ostree cleanup -b`",
        "2. precache (LCA Precache.Cleanup):",
        "would remove the finalizer lca.openshift.io/precache-finalizer from Job openshift-lifecycle-agent/lca-prep-precache",
        "would delete Job openshift-lifecycle-agent/lca-prep-precache",
        "would delete ConfigMap openshift-lifecycle-agent/lca-prep-precache",
        "3. extra-manifest warning (LCA RemoveAnnotationEMWarningValidation):",
        "would remove the annotation extra-manifest.lca.openshift.io/validation-warning from ImageBasedUpgrade upgrade",
        "4. OADP (LCA cleanupOADPResources):",
        "would delete DeleteBackupRequest openshift-adp/small-app (left by an earlier attempt)",
        "would delete Backup apps-adp/other-ns-app",
        "would remove the label lca.openshift.io/backup from deployments.v1.apps apps-adp/my-app (named by Backup apps-adp/other-ns-app)",
        "would remove the label lca.openshift.io/backup from configmaps apps-adp/app-config",
        "would delete Restore openshift-adp/acm-klusterlet",
        "would set PersistentVolume pv-lvms back to reclaim policy Delete",
        "5. LCA workspace (LCA cleanupIBUFiles):",
        "would remove /var/lib/lca/workspace and everything in it",
        "then: the annotation that makes LCA retry:",
        "would annotate ImageBasedUpgrade upgrade lca.openshift.io/manual-cleanup-done",
    ];
    let mut at = 0;
    for o in order {
        at += out[at..]
            .find(o)
            .unwrap_or_else(|| panic!("{o:?} not after position {at} in:\n{out}"));
    }
    assert_eq!(snapshot(&sb), before);
    let (_, dry, _) = sb.run(&["ibu", "cleanup", "--dry-run", "--output", "json"]);
    let dry: serde_json::Value = serde_json::from_str(&dry).unwrap();

    // The real run carries out exactly that plan.
    let (code, out, err) = sb.run(&["ibu", "cleanup", "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let done: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(done["steps"], dry["steps"]);
    assert_eq!(done["actions"], dry["actions"]);
    assert_eq!(
        objects(&sb, "backups"),
        ["openshift-adp/other-cluster", "openshift-adp/users-own"]
    );
    assert_eq!(objects(&sb, "restores"), ["openshift-adp/users-restore"]);
    assert_eq!(
        objects(&sb, "deletebackuprequests"),
        ["openshift-adp/users-dbr"]
    );
    let pv = object(&sb, "persistentvolumes", "_", "pv-lvms");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert!(pv["metadata"]["annotations"]
        .get("lca.openshift.io/updated-reclaim-policy")
        .is_none());
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "topolvm.io"
    );
    assert_eq!(
        object(&sb, "persistentvolumes", "_", "pv-other")["spec"]["persistentVolumeReclaimPolicy"],
        "Retain"
    );
    assert!(annotated(&sb));
    assert!(!sb.root().join("sysroot/ostree/deploy/rhcos_4.17").exists());
    assert!(sb.root().join("sysroot/ostree/deploy/rhcos").exists());
    // LCA's cleanupIBUFiles: os.RemoveAll of the workspace itself.
    assert!(!sb.root().join("var/lib/lca/workspace").exists());
    assert!(sb.root().join("var/lib/lca").exists());
    // LCA's Jobs, their pod, the ConfigMap are gone; the warning is off the
    // IBU; the objects the Backup named lost LCA's label and kept their own.
    for (res, name) in [
        ("jobs", "lca-prep-stateroot-setup"),
        ("jobs", "lca-prep-precache"),
        ("pods", "lca-prep-stateroot-setup-x7k2p"),
        ("configmaps", "lca-prep-precache"),
    ] {
        assert!(
            !exists(&sb, res, LCA_NS, name),
            "{res}/{name} is still there"
        );
    }
    let cr = object(&sb, "imagebasedupgrades", "_", "upgrade");
    assert!(cr["metadata"]["annotations"]
        .get("extra-manifest.lca.openshift.io/validation-warning")
        .is_none());
    assert!(cr["metadata"]["annotations"]
        .get("support/session")
        .is_some());
    for (res, name) in [("deployments", "my-app"), ("configmaps", "app-config")] {
        let o = object(&sb, res, "apps-adp", name);
        assert_eq!(
            o["metadata"]["labels"],
            json!({"app": "my-app"}),
            "{res}/{name}"
        );
    }
    let calls = sb.calls();
    // No stateroot was touched before the setup Job's pod was gone.
    let last_pods = calls
        .iter()
        .rposition(|c| {
            c.contains("get pods -n openshift-lifecycle-agent -l job-name=lca-prep-stateroot-setup")
        })
        .unwrap();
    let first_undeploy = calls
        .iter()
        .position(|c| c == "rpm-ostree cleanup -b")
        .unwrap_or_else(|| panic!("{calls:#?}"));
    assert!(last_pods < first_undeploy, "{calls:#?}");
    assert!(calls.iter().any(|c| c.contains("delete jobs.batch lca-prep-stateroot-setup -n openshift-lifecycle-agent --cascade=foreground")), "{calls:#?}");
    assert!(
        calls.iter().any(|c| c == "rpm-ostree cleanup -b"),
        "{calls:#?}"
    );
    // Each Backup went through a DeleteBackupRequest (the data goes too), none by `oc delete backup`.
    assert!(
        !calls.iter().any(|c| c.contains("delete backups.velero.io")),
        "{calls:#?}"
    );
    assert_eq!(
        calls.iter().filter(|c| c.contains(" create -f -")).count(),
        3
    );

    // The next command it printed works in this state.
    assert!(done["next"]
        .as_str()
        .unwrap()
        .contains("`oc get ibu upgrade -o yaml`"));
    let got = sb.sh("oc get ibu upgrade -o yaml");
    assert!(got.contains("manual-cleanup-done"), "{got}");

    // A second run finds nothing to do and changes nothing.
    let before = snapshot(&sb);
    let (code, out, err) = sb.run(&["ibu", "cleanup"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nothing to do"), "{out}");
    assert_eq!(snapshot(&sb), before);
}

#[test]
fn without_bucket_and_the_bounded_wait() {
    let sb = Sandbox::with_profile("rhcos");
    upgrade_leftovers(&sb);
    backups(&sb);
    ibu(&sb, "False", "FinalizeFailed");
    cluster_version(&sb, json!({"clusterID": CID}));

    // No API server (kubelet stopped): oc refuses, so does the cleanup, before any change.
    bsl(&sb, "Available");
    sb.sh("systemctl stop kubelet.service");
    let before = snapshot(&sb);
    let (code, _, err) = sb.run(&["ibu", "cleanup"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("connection to the server") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(snapshot(&sb), before);
    sb.sh("systemctl start kubelet.service");

    // Velero does not answer: the wait is bounded and names what it waits
    // for. As LCA's cleanup(), the failure ends its own task (OADP: the
    // Backups after it are not touched) and not the others (the stateroot
    // before it, the workspace after it); every failure is listed at the
    // end, the exit status is 1 and the annotation is not set. rpm-ostree
    // cannot run on a node not booted through ostree: said what is left.
    bsl(&sb, "Available");
    std::fs::remove_file(sb.root().join("run/ostree-booted")).unwrap();
    std::fs::write(sb.ctl().join("state/velero-stopped"), "").unwrap();
    let (code, out, err) = sb.run(&["ibu", "cleanup", "--wait", "2"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAILED: delete Backup apps-adp/other-ns-app and its data")
            && out.contains(
                "waited 2 s for Velero to process DeleteBackupRequest apps-adp/other-ns-app"
            )
            && out.contains("Backup apps-adp/other-ns-app and its data are still there")
            && out.contains(
                "not done (a step before it failed): delete Backup openshift-adp/acm-klusterlet"
            )
            && out.contains("not done (a step before it failed): annotate ImageBasedUpgrade")
            && out.contains("done: remove stateroot rhcos_4.17")
            && out.contains("done: remove /var/lib/lca/workspace")
            && out.contains("1 step(s) failed")
            && out.contains("rpm-ostree cannot run here")
            && out.contains("stay in /sysroot/ostree/repo")
            && out.contains("Next: fix what failed"),
        "{out}"
    );
    assert!(objects(&sb, "backups").contains(&"apps-adp/other-ns-app".to_string()));
    assert!(objects(&sb, "backups").contains(&"openshift-adp/acm-klusterlet".to_string()));
    assert!(!sb.root().join("sysroot/ostree/deploy/rhcos_4.17").exists());
    assert!(!sb.root().join("var/lib/lca/workspace").exists());
    assert!(!annotated(&sb));
    let (_, js, _) = sb.run(&["ibu", "cleanup", "--dry-run", "--output", "json"]);
    let js: serde_json::Value = serde_json::from_str(&js).unwrap();
    assert_eq!(js["failures"], json!([]));
    std::fs::remove_file(sb.ctl().join("state/velero-stopped")).unwrap();

    // The backend cannot be fixed: --without-bucket removes the CRs and says
    // the data stays.
    bsl(&sb, "Unavailable");
    let (code, out, err) = sb.run(&["ibu", "cleanup", "--without-bucket"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("done: delete the Backup CR openshift-adp/small-app only (its data stays in the bucket)")
            && out.contains("stays in the bucket (BackupStorageLocation openshift-adp/default (bucket b) is Unavailable")
            && out.contains("retries the finalize"),
        "{out}"
    );
    assert_eq!(
        objects(&sb, "backups"),
        ["openshift-adp/other-cluster", "openshift-adp/users-own"]
    );
    // The DeleteBackupRequests, which cannot complete, are gone too; the user's stays.
    assert_eq!(
        objects(&sb, "deletebackuprequests"),
        ["openshift-adp/users-dbr"]
    );
    assert!(!sb.root().join("sysroot/ostree/deploy/rhcos_4.17").exists());
    assert!(!sb
        .calls()
        .iter()
        .any(|c| c.starts_with("rpm-ostree cleanup")));
    assert!(annotated(&sb));

    // OADP not installed: no velero resources, nothing of theirs to clean up.
    std::fs::write(sb.ctl().join("state/no-oadp"), "").unwrap();
    let (code, out, err) = sb.run(&["ibu", "cleanup"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nothing to do"), "{out}");
    let (code, _, err) = sb.run(&["ibu", "status"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn finalize_failed_and_the_report() {
    let sb = Sandbox::new();
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    ibu(&sb, "False", "FinalizeFailed");
    bsl(&sb, "Available");
    backups(&sb);
    cluster_version(&sb, json!({"clusterID": CID}));
    let (code, out, err) = sb.run(&["ibu", "cleanup", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("after FinalizeFailed") && out.contains("retries the finalize"),
        "{out}"
    );

    let t = TempDir::new("report");
    let to = t.path().join("report.tar.gz");
    let (code, out, err) = sb.run(&["report", "--to", to.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let x = t.path().join("x");
    sh(&format!(
        "mkdir {} && tar -xzf {} -C {}",
        q(&x),
        q(&to),
        q(&x)
    ));
    let r = x.join("upgrade-recovery-report");
    for f in [
        "index.txt",
        "status.json",
        "stateroots.json",
        "ostree-admin-status.txt",
        "backup/manifest.json",
        "backup/verify.json",
        "backup/etc.exclude.list",
        "disk.txt",
        "containers.json",
        "ibu/status.json",
        "ibu/imagebasedupgrade.json",
        "oadp/backups.json",
        "oadp/backupstoragelocations.json",
    ] {
        assert!(r.join(f).exists(), "{f} missing from the report: {out}");
    }
    assert!(std::fs::read_to_string(r.join("backup/verify.json"))
        .unwrap()
        .contains("\"intact\": true"));
    // No key material, no tokens.
    let leaks = sh(&format!(
        "grep -rlE 'PRIVATE KEY-----|sha256~[A-Za-z0-9_-]{{10,}}|eyJ[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.|sandbox-token' {} || true",
        q(&r)
    ));
    assert_eq!(leaks.trim(), "", "secrets in the report");
    // Named fields only (the report's allow-list): the stage and the seed,
    // not the annotations.
    let cr = std::fs::read_to_string(r.join("ibu/imagebasedupgrade.json")).unwrap();
    assert!(
        cr.contains("\"stage\": \"Idle\"")
            && cr.contains("4.17.1")
            && cr.contains("failed to delete OADP backups")
            && !cr.contains("annotations"),
        "{cr}"
    );
    assert_eq!(sh(&format!("stat -c %a {}", q(&to))).trim(), "600");
}

fn lint(args: &[&str]) -> (i32, String, String) {
    let o = std::process::Command::new(binary())
        .args(["oadp", "lint"])
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn fixture(name: &str) -> String {
    project()
        .join("tests/fixtures/oadp")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn oadp_lint_on_the_crs_of_the_docs() {
    // The doc's platform CRs (ACM klusterlet, LVMS lvmcluster) with the LVMS
    // application pair, and with the LSO pair: clean.
    let (code, out, err) = lint(&[
        &fixture("PlatformBackupRestore.yaml"),
        &fixture("PlatformBackupRestoreLvms.yaml"),
        &fixture("ApplicationBackupRestoreLvms.yaml"),
    ]);
    assert_eq!((code, out.as_str()), (0, "no findings\n"), "{err}");
    let (code, out, _) = lint(&[
        &fixture("PlatformBackupRestore.yaml"),
        &fixture("ApplicationBackupRestoreLso.yaml"),
    ]);
    assert_eq!((code, out.as_str()), (0, "no findings\n"));
    // The same CRs inside the ConfigMap that the IBU's spec.oadpContent names.
    let (code, out, _) = lint(&[&fixture("oadp-cm.yaml"), &fixture("ImageBasedUpgrade.yaml")]);
    assert_eq!((code, out.as_str()), (0, "no findings\n"));

    // The doc's own cluster-scoped example pairs a Restore with a Backup of another name.
    let (code, out, _) = lint(&[&fixture("ApplicationClusterScopedBackupRestore.yaml")]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("ApplicationClusterScopedBackupRestore.yaml:19: Restore openshift-adp/test-app-cluster-resources: spec.backupName: the Restore names Backup `test-app-cluster-resources`, which is not in this set (Backups without a Restore: backup-app-cluster-resources)")
            && out.contains("  replace line 29 (and its value) with:\n      backupName: backup-app-cluster-resources\n")
            && out.contains("ApplicationClusterScopedBackupRestore.yaml:1: Backup openshift-adp/backup-app-cluster-resources: metadata.name: no Restore of this set names this Backup"),
        "{out}"
    );

    // The replacement, made, pairs them.
    let t = TempDir::new("lint");
    let paired = t.path().join("paired.yaml");
    let lines: Vec<String> =
        std::fs::read_to_string(fixture("ApplicationClusterScopedBackupRestore.yaml"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
    assert_eq!(lines[28].trim(), "backupName:");
    let mut fixed = lines[..28].to_vec();
    fixed.push("  backupName: backup-app-cluster-resources".into());
    fixed.extend_from_slice(&lines[30..]);
    std::fs::write(&paired, fixed.join("\n") + "\n").unwrap();
    assert_eq!(lint(&[paired.to_str().unwrap()]).0, 0);

    // Each missing LVMS field: file, line, object, the lines to add, where.
    let bad = t.path().join("bad.yaml");
    let text = std::fs::read_to_string(fixture("ApplicationBackupRestoreLvms.yaml"))
        .unwrap()
        .replace("  - logicalvolumes.topolvm.io      # <- required field\n", "")
        .replace("  restorePVs: true               # <- required field\n", "")
        .replace(
            "  restoreStatus:                 # <- required field\n    includedResources:           # <- required field\n    - logicalvolumes             # <- required field\n",
            "",
        );
    std::fs::write(&bad, &text).unwrap();
    let (code, out, _) = lint(&[bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let b = bad.display();
    for want in [
        format!("{b}:1: Backup openshift-adp/test-app: spec.includedClusterScopedResources: the Backup takes persistent volume claims of LVM Storage but not `logicalvolumes.topolvm.io`"),
        "  add after line 21:\n      - logicalvolumes.topolvm.io\n".to_string(),
        format!("{b}:24: Restore openshift-adp/test-app: spec.restorePVs"),
        "  add after line 33:\n      restorePVs: true\n".to_string(),
        format!("{b}:24: Restore openshift-adp/test-app: spec.restoreStatus.includedResources"),
        "  add after line 33:\n      restoreStatus:\n        includedResources:\n        - logicalvolumes\n".to_string(),
    ] {
        assert!(out.contains(&want), "missing {want:?} in\n{out}");
    }
    assert_eq!(out.matches("add after").count(), 3, "{out}");
    // The lines to add, added, make the file clean.
    let fixed = text
        .replace(
            "  - persistentVolumes              # <- required field\n",
            "  - persistentVolumes              # <- required field\n  - logicalvolumes.topolvm.io\n",
        )
        .replace("    test-app\n", "    test-app\n  restorePVs: true\n  restoreStatus:\n    includedResources:\n    - logicalvolumes\n");
    std::fs::write(&bad, &fixed).unwrap();
    assert_eq!(lint(&[bad.to_str().unwrap()]).0, 0);

    // Inside a ConfigMap: positions in the ConfigMap's file; --output json.
    let cm = t.path().join("cm.yaml");
    let cm_text = std::fs::read_to_string(fixture("oadp-cm.yaml"))
        .unwrap()
        .replace(
            "      - logicalvolumes.topolvm.io      # <- required field\n",
            "",
        );
    std::fs::write(&cm, &cm_text).unwrap();
    let (code, out, _) = lint(&[cm.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{out}");
    let f = &v[0];
    let lines: Vec<&str> = cm_text.lines().collect();
    let at = |n: &serde_json::Value| lines[n.as_u64().unwrap() as usize - 1].trim().to_string();
    assert_eq!(f["kind"], "Backup");
    assert_eq!(f["name"], "openshift-adp/test-app");
    assert_eq!(
        f["within"],
        "ConfigMap openshift-adp/oadp-cm data[ApplicationBackupRestoreLvms.yaml]"
    );
    assert_eq!(at(&f["line"]), "apiVersion: velero.io/v1");
    assert!(lines[f["line"].as_u64().unwrap() as usize..]
        .iter()
        .take(8)
        .any(|l| l.contains("name: test-app")));
    assert_eq!(at(&f["add_after_line"]), "includedClusterScopedResources:");
    assert_eq!(f["add"], "      - logicalvolumes.topolvm.io\n");
    assert!(lines[f["add_after_line"].as_u64().unwrap() as usize - 1]
        .starts_with("      includedClusterScopedResources:"));

    // Unreadable input: exit 2 with the position; nesting refused at once.
    let broken = t.path().join("broken.yaml");
    std::fs::write(&broken, "kind: Backup\nspec:\n  a: [1, 2\n").unwrap();
    let (code, _, err) = lint(&[broken.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("broken.yaml:"), "{err}");
    let deep = t.path().join("deep.yaml");
    std::fs::write(
        &deep,
        format!(
            "apiVersion: velero.io/v1\nkind: Backup\nspec: {}{}\n",
            "[".repeat(88_000),
            "]".repeat(88_000)
        ),
    )
    .unwrap();
    let (code, _, err) = lint(&[deep.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("deep.yaml:3:") && err.contains("nested deeper than 64 levels"),
        "{err}"
    );
}

/// LCA's DeleteStaterootSetupJob: while the stateroot setup Job's pod is
/// still there, no stateroot is removed (the pod may write into it); the
/// wait is bounded, the other tasks still run, and a second run finishes.
#[test]
fn no_stateroot_goes_while_the_setup_pod_lives() {
    let sb = Sandbox::with_profile("rhcos");
    upgrade_leftovers(&sb);
    backups(&sb);
    ibu(&sb, "False", "AbortFailed");
    bsl(&sb, "Available");
    cluster_version(&sb, json!({"clusterID": CID}));
    lca_objects(&sb);
    std::fs::write(sb.ctl().join("state/pods-stuck"), "").unwrap();
    let (code, out, err) = sb.run(&["ibu", "cleanup", "--pod-wait", "2"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAILED: wait up to 2 s until no pod of Job openshift-lifecycle-agent/lca-prep-stateroot-setup")
            && out.contains("lca-prep-stateroot-setup-x7k2p")
            && out.contains("no stateroot was removed")
            && out.contains("not done (a step before it failed): remove stateroot rhcos_4.17")
            && out.contains("done: delete ConfigMap openshift-lifecycle-agent/lca-prep-precache")
            && out.contains("done: remove /var/lib/lca/workspace"),
        "{out}"
    );
    assert!(sb.root().join("sysroot/ostree/deploy/rhcos_4.17").exists());
    assert!(!exists(&sb, "jobs", LCA_NS, "lca-prep-stateroot-setup"));
    assert!(exists(
        &sb,
        "pods",
        LCA_NS,
        "lca-prep-stateroot-setup-x7k2p"
    ));
    assert!(!exists(&sb, "configmaps", LCA_NS, "lca-prep-precache"));
    assert!(!sb.root().join("var/lib/lca/workspace").exists());
    assert!(!annotated(&sb));

    // The pod went: the run again removes the stateroot and annotates.
    std::fs::remove_file(sb.ctl().join("state/pods-stuck")).unwrap();
    let (code, out, err) = sb.run(&["ibu", "cleanup", "--pod-wait", "2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("done: remove stateroot rhcos_4.17"), "{out}");
    assert!(!sb.root().join("sysroot/ostree/deploy/rhcos_4.17").exists());
    assert!(annotated(&sb));
}

/// The hub's side (cluster-group-upgrades-operator dacf199e): for a
/// cluster a hub manages, `ibu status` gives the exact `oc label
/// managedcluster` for the action the node shows failed and the plan steps
/// the CRD's rule lets the hub append; the end of `ibu cleanup` gives the
/// label removal TALM does after a completed Abort. Without a name in the
/// klusterlet, how to find it; without a klusterlet, nothing.
#[test]
fn hub_labels_for_a_managed_cluster() {
    let sb = Sandbox::with_profile("rhcos");
    bsl(&sb, "Available");
    cluster_version(&sb, json!({"clusterID": CID}));
    put(
        &sb,
        "imagebasedupgrades",
        "_",
        "upgrade",
        json!({"apiVersion": "lca.openshift.io/v1", "kind": "ImageBasedUpgrade",
               "metadata": {"name": "upgrade"}, "spec": {"stage": "Upgrade"},
               "status": {"conditions": [
                   {"type": "UpgradeInProgress", "status": "False", "reason": "Failed", "message": "upgrade failed"},
                   {"type": "UpgradeCompleted", "status": "False", "reason": "Failed", "message": "upgrade failed"}]}}),
    );
    // Not managed: no hub section.
    let (code, out, err) = sb.run(&["ibu", "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("Hub"), "{out}");

    klusterlet(
        &sb,
        json!({"clusterName": "sno-17", "namespace": "open-cluster-management-agent"}),
    );
    let (code, out, err) = sb.run(&["ibu", "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("on the hub: oc label managedcluster sno-17 lcm.openshift.io/ibgu-upgrade-failed= lcm.openshift.io/ibgu-upgrade-completed-")
            && out.contains("plan [[Prep], [Upgrade]]: append {actions: [AbortOnFailure]}")
            && out.contains("plan [[Prep, Upgrade]]: append {actions: [AbortOnFailure]}")
            && out.contains("plan [[Upgrade]]: no step may be added for a failed cluster")
            && !out.contains("FinalizeUpgrade]}"),
        "{out}"
    );

    // A klusterlet without the name: how to find it on the hub.
    klusterlet(&sb, json!({"namespace": "open-cluster-management-agent"}));
    let (_, out, _) = sb.run(&["ibu", "status"]);
    assert!(
        out.contains("cannot tell its ManagedCluster name")
            && out.contains(&format!("oc get managedclusters -l clusterID={CID}"))
            && out.contains("oc label managedcluster <managed-cluster> "),
        "{out}"
    );
    let f = sb.ctl().join("state/objects/klusterlets/_/klusterlet.json");
    std::fs::write(&f, "{\"spec\": ").unwrap();
    let (code, out, err) = sb.run(&["ibu", "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("cannot tell its ManagedCluster name") && out.contains("malformed JSON"),
        "{out}"
    );

    // The end of the cleanup after AbortFailed: every ibgu label off, as
    // TALM's ensureClusterLabels does when an Abort completes.
    klusterlet(&sb, json!({"clusterName": "sno-17"}));
    ibu(&sb, "False", "AbortFailed");
    let (code, out, err) = sb.run(&["ibu", "cleanup"]);
    assert_eq!(code, 0, "{out}{err}");
    let want = "on the hub: oc label managedcluster sno-17 lcm.openshift.io/ibgu-prep-completed- lcm.openshift.io/ibgu-prep-failed- lcm.openshift.io/ibgu-upgrade-completed- lcm.openshift.io/ibgu-upgrade-failed- lcm.openshift.io/ibgu-rollback-completed- lcm.openshift.io/ibgu-rollback-failed- lcm.openshift.io/ibgu-abort-completed- lcm.openshift.io/ibgu-abort-failed- lcm.openshift.io/ibgu-abortonfailure-completed- lcm.openshift.io/ibgu-abortonfailure-failed- lcm.openshift.io/ibgu-finalizerollback-completed- lcm.openshift.io/ibgu-finalizerollback-failed- lcm.openshift.io/ibgu-finalizeupgrade-completed- lcm.openshift.io/ibgu-finalizeupgrade-failed-";
    assert!(out.contains(want), "{out}");
}
