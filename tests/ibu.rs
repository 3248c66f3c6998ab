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

fn backups(sb: &Sandbox) {
    for (name, meta) in [
        (
            "acm-klusterlet",
            json!({"annotations": {"lca.openshift.io/apply-wave": "1"}}),
        ),
        (
            "small-app",
            json!({"labels": {"lca.openshift.io/backup": "true"}}),
        ),
        ("unrelated", json!({"labels": {"app": "x"}})),
    ] {
        let mut m = meta;
        m["name"] = json!(name);
        m["namespace"] = json!("openshift-adp");
        put(
            sb,
            "backups",
            "openshift-adp",
            name,
            json!({"apiVersion": "velero.io/v1", "kind": "Backup", "metadata": m, "spec": {}}),
        );
    }
}

fn objects(sb: &Sandbox, res: &str) -> Vec<String> {
    let d = sb
        .ctl()
        .join("state/objects")
        .join(res)
        .join("openshift-adp");
    let mut v: Vec<String> = std::fs::read_dir(d)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .trim_end_matches(".json")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn annotated(sb: &Sandbox) -> bool {
    let t = std::fs::read_to_string(
        sb.ctl()
            .join("state/objects/imagebasedupgrades/_/upgrade.json"),
    )
    .unwrap();
    t.contains("lca.openshift.io/manual-cleanup-done")
}

fn upgrade_leftovers(sb: &Sandbox) {
    sh(&format!(
        "{}/scripts/sandbox.sh upgrade-os {} 417.1 rhcos_4.17 >/dev/null",
        q(&project()),
        q(sb.dir.path())
    ));
    sb.sh("mkdir -p $ROOT/var/lib/lca/workspace/precache && echo '{\"status\":\"Failed\"}' > $ROOT/var/lib/lca/workspace/precache/status.json && echo x > $ROOT/var/lib/lca/workspace/seed.tar");
}

#[test]
fn cleanup_after_abort_failed() {
    let sb = Sandbox::new();
    upgrade_leftovers(&sb);
    backups(&sb);

    // A healthy CR: refused, nothing changed.
    ibu(&sb, "True", "Idle");
    bsl(&sb, "Available");
    let (code, _, err) = sb.run(&["ibu", "cleanup"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("not in AbortFailed or FinalizeFailed"),
        "{err}"
    );
    assert_eq!(objects(&sb, "backups").len(), 3);

    // status shows the CR, stateroots, workspace, locations.
    ibu(&sb, "False", "AbortFailed");
    let (code, out, err) = sb.run(&["ibu", "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Idle=False AbortFailed")
            && out.contains("rhcos_4.17")
            && out.contains("precache status")
            && out.contains("default Available"),
        "{out}"
    );
    let (code, out, _) = sb.run(&["ibu", "status", "--output", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["cr"]["conditions"][0]["reason"], "AbortFailed");

    // Dry run: the steps, no change.
    let (code, out, _) = sb.run(&["ibu", "cleanup", "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("would remove stateroot rhcos_4.17")
            && out.contains("would delete Backup openshift-adp/small-app")
            && !out.contains("unrelated"),
        "{out}"
    );
    assert!(out.contains("retries the abort"), "{out}");
    assert!(sb.root().join("sysroot/ostree/deploy/rhcos_4.17").exists());
    assert!(!annotated(&sb));

    // An unavailable backup location: stop with the exact problem, no backup deleted.
    bsl(&sb, "Unavailable");
    let (code, _, err) = sb.run(&["ibu", "cleanup"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("BackupStorageLocation openshift-adp/default is Unavailable")
            && err.contains("i/o timeout"),
        "{err}"
    );
    assert_eq!(objects(&sb, "backups").len(), 3);
    assert!(!annotated(&sb));

    // Available: the cleanup runs to the end.
    bsl(&sb, "Available");
    let (code, out, err) = sb.run(&["ibu", "cleanup"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(objects(&sb, "backups"), ["unrelated"]);
    assert!(annotated(&sb));
    assert!(!sb.root().join("sysroot/ostree/deploy/rhcos_4.17").exists());
    assert!(sb.root().join("sysroot/ostree/deploy/rhcos").exists());
    assert_eq!(
        std::fs::read_dir(sb.root().join("var/lib/lca/workspace"))
            .unwrap()
            .count(),
        0
    );
    // A second run changes nothing.
    let calls = sb
        .calls()
        .iter()
        .filter(|c| c.contains(" delete ") || c.contains(" annotate "))
        .count();
    let (code, out, err) = sb.run(&["ibu", "cleanup"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("delete Backup") && !out.contains("annotate") && !out.contains("remove"),
        "{out}"
    );
    assert_eq!(
        sb.calls()
            .iter()
            .filter(|c| c.contains(" delete ") || c.contains(" annotate "))
            .count(),
        calls
    );
}

#[test]
fn finalize_failed_and_the_report() {
    let sb = Sandbox::new();
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    ibu(&sb, "False", "FinalizeFailed");
    bsl(&sb, "Available");
    backups(&sb);
    let (code, out, _) = sb.run(&["ibu", "cleanup", "--dry-run"]);
    assert_eq!(code, 0);
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
    assert!(
        std::fs::read_to_string(r.join("ibu/imagebasedupgrade.json"))
            .unwrap()
            .contains("<redacted>")
    );
    assert_eq!(sh(&format!("stat -c %a {}", q(&to))).trim(), "600");
}

#[test]
fn oadp_lint_on_the_shapes_of_the_docs() {
    let t = TempDir::new("lint");
    let good = t.path().join("good.yaml");
    std::fs::write(
        &good,
        "apiVersion: velero.io/v1
kind: Backup
metadata:
  name: small-app
  namespace: openshift-adp
  annotations:
    lca.openshift.io/apply-wave: \"4\"
spec:
  includedNamespaces:
  - test
  includedNamespaceScopedResources:
  - secrets
  - persistentvolumeclaims
  - deployments
  includedClusterScopedResources:
  - persistentVolumes
  - volumesnapshotcontents
  - logicalvolumes.topolvm.io
---
apiVersion: velero.io/v1
kind: Restore
metadata:
  name: small-app
  namespace: openshift-adp
spec:
  backupName: small-app
  restoreStatus:
    includedResources:
    - logicalvolumes
",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let o = std::process::Command::new(binary())
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code().unwrap(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, _) = run(&["oadp", "lint", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let bad = t.path().join("bad.yaml");
    let text = std::fs::read_to_string(&good)
        .unwrap()
        .replace("  - logicalvolumes.topolvm.io\n", "")
        .replace(
            "  restoreStatus:\n    includedResources:\n    - logicalvolumes\n",
            "",
        );
    std::fs::write(&bad, text).unwrap();
    let (code, out, _) = run(&[
        "oadp",
        "lint",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "bad.yaml:1: Backup openshift-adp/small-app: spec.includedClusterScopedResources"
        ),
        "{out}"
    );
    assert!(out.contains("- logicalvolumes.topolvm.io"), "{out}");
    assert!(
        out.contains(
            "bad.yaml:19: Restore openshift-adp/small-app: spec.restoreStatus.includedResources"
        ),
        "{out}"
    );
    let broken = t.path().join("broken.yaml");
    std::fs::write(&broken, "kind: Backup\nspec:\n  a: [1, 2\n").unwrap();
    let (code, _, err) = run(&["oadp", "lint", broken.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("broken.yaml:"), "{err}");
}
