//! The sandbox node behaves like a node where recovery depends on it, and
//! `status` reads it.

mod common;

use common::*;
use upgrade_recovery::testing::ostree;

#[test]
fn sandbox_has_a_real_sysroot_etcd_with_tls_and_shims_that_act() {
    let sb = Sandbox::new();
    // ostree: two real deployments, the newer one the default.
    let st = sb.sh("ostree admin --sysroot=$ROOT/sysroot status");
    let ds = ostree::parse_admin_status(&st).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds[0].version.as_deref(), Some("416.94.202406251923-0"));
    assert!(sb.root().join("run/ostree-booted").exists());
    // rpm-ostree shim: the default is booted.
    let js = sb.sh("rpm-ostree status --json");
    let rd = ostree::parse_rpm_ostree_json(&js).unwrap();
    assert!(rd[0].booted && !rd[1].booted && rd[1].rollback);

    // etcd over TLS: write, read back.
    sb.etcdctl("put /test/key hello");
    assert!(sb
        .etcdctl("get /test/key --print-value-only")
        .contains("hello"));
    // Without a client cert the server refuses.
    let anon = sb.sh(". $CTL/state/ports; ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:$CLIENT_PORT --cacert=$ROOT/etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-serving-ca/ca-bundle.crt --command-timeout=3s get /test/key 2>&1 || true");
    assert!(!anon.contains("hello"), "{anon}");

    // Shims: the etcd pod's five containers (cluster-etcd-operator
    // bindata/etcd/pod.yaml) and four operators; stopping kubelet leaves them;
    // rmp removes them and etcd with them; crictl fails without crio; wipe
    // refuses while crio runs.
    let names =
        sb.sh("crictl ps -o json | jq -r '.containers[].metadata.name' | sort | tr '\\n' ' '");
    assert_eq!(names.trim(), "etcd etcd-metrics etcd-operator etcd-readyz etcd-rev etcdctl kube-apiserver-operator kube-controller-manager-operator kube-scheduler-operator-container");
    sb.sh("systemctl stop kubelet.service");
    assert_eq!(sb.sh("crictl ps -q | wc -l").trim(), "9");
    assert!(sb
        .sh("crio wipe -f 2>&1 || echo refused")
        .contains("refused"));
    sb.sh("crictl rmp -fa");
    assert_eq!(sb.sh("crictl ps -q | wc -l").trim(), "0");
    assert!(sb.sh("etcdctl version >/dev/null; (. $CTL/state/ports; curl -s -m 2 http://127.0.0.1:$METRICS_PORT/health) || echo down").contains("down"));
    sb.sh("systemctl stop crio.service");
    assert!(sb.sh("crictl ps 2>&1 || echo failed").contains("failed"));
    sb.sh("crio wipe -f");
    // oc fails while there is no API server.
    assert!(sb
        .sh("oc get etcd -o json 2>&1 || echo failed")
        .contains("refused"));

    // A reboot: new boot id, enabled services back, etcd back with its keys.
    let boot1 = std::fs::read_to_string(sb.root().join("proc/sys/kernel/random/boot_id")).unwrap();
    sb.reboot();
    let boot2 = std::fs::read_to_string(sb.root().join("proc/sys/kernel/random/boot_id")).unwrap();
    assert_ne!(boot1, boot2);
    assert!(sb
        .etcdctl("get /test/key --print-value-only")
        .contains("hello"));
    let ids1 = sb.sh("crictl ps -o json | jq -r '.containers[].id' | sort");
    sb.sh("systemctl restart kubelet.service");
    let ids2 = sb.sh("crictl ps -o json | jq -r '.containers[].id' | sort");
    assert_ne!(ids1, ids2, "a kubelet restart gives new container ids");

    // Moving the etcd manifest out stops etcd; putting it back starts it.
    sb.sh(
        "mv $ROOT/etc/kubernetes/manifests/etcd-pod.yaml $ROOT/etc/kubernetes/etcd-pod.yaml.aside",
    );
    assert_eq!(
        sb.sh("crictl ps --label io.kubernetes.container.name=etcd -q | wc -l")
            .trim(),
        "0"
    );
    sb.sh(
        "mv $ROOT/etc/kubernetes/etcd-pod.yaml.aside $ROOT/etc/kubernetes/manifests/etcd-pod.yaml",
    );
    assert_eq!(
        sb.sh("crictl ps --label io.kubernetes.container.name=etcd -q | wc -l")
            .trim(),
        "1"
    );
    assert!(sb
        .etcdctl("get /test/key --print-value-only")
        .contains("hello"));

    // oc: a forced redeployment bumps the revision, rolled out over reads.
    let rev = |s: &str| -> u32 { s.trim().parse().unwrap() };
    let latest = rev(
        &sb.sh("oc get kubeapiserver -o jsonpath='{.items[0].status.latestAvailableRevision}'")
    );
    sb.sh(r#"oc patch kubeapiserver cluster --type=merge -p '{"spec":{"forceRedeploymentReason":"t"}}'"#);
    let cur = rev(&sb.sh(
        "oc get kubeapiserver -o json | jq '.items[0].status.nodeStatuses[0].currentRevision'",
    ));
    assert_eq!(cur, latest + 1);

    // rpm-ostree rollback makes the rollback deployment the default.
    sb.sh("rpm-ostree rollback");
    let ds =
        ostree::parse_admin_status(&sb.sh("ostree admin --sysroot=$ROOT/sysroot status")).unwrap();
    assert_eq!(ds[0].version.as_deref(), Some("416.94.202405141654-0"));

    // SELinux mode and the call log.
    sb.sh("setenforce 0");
    assert_eq!(sb.sh("getenforce").trim(), "Permissive");
    let calls = sb.calls();
    assert!(calls.iter().any(|c| c == "crictl rmp -fa"), "{calls:?}");
    assert!(calls.iter().any(|c| c == "setenforce 0"), "{calls:?}");
}

#[test]
fn status_reads_the_node() {
    let sb = Sandbox::new();
    let (code, out, err) = sb.run(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("booted one per the ostree= argument of /proc/cmdline"),
        "{out}"
    );
    assert!(out.contains("Backup: none in /var/recovery"), "{out}");
    assert!(out.contains("Recovery: not in progress"), "{out}");
    assert!(out.contains("answers (version 3.4"), "{out}");

    let (code, out, _) = sb.run(&["status", "--output", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["etcd"]["answers"], true);
    assert_eq!(v["os"]["deployments"].as_array().unwrap().len(), 2);
    assert_eq!(v["os"]["booted_from"], "cmdline");
    assert_eq!(v["backup"]["exists"], false);

    // Without the kernel argument and rpm-ostree on PATH, nothing is marked
    // booted: the default is taken as active, and the output says so.
    std::fs::remove_file(sb.root().join("proc/cmdline")).unwrap();
    std::fs::remove_file(sb.ctl().join("bin/rpm-ostree")).unwrap();
    let (code, out, _) = sb.run(&["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("the default (index 0) is taken as the active one"),
        "{out}"
    );

    // etcd down: status still answers and says which endpoint does not.
    sb.sh("systemctl stop kubelet; crictl rmp -fa");
    let (code, out, _) = sb.run(&["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("does not answer"), "{out}");
}

#[test]
fn bad_input_gets_usage_errors() {
    let t = TempDir::new("notanode");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(binary())
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code().unwrap(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (c, e) = run(&["--bogus", "status"]);
    assert_eq!(c, 2, "{e}");
    let (c, e) = run(&["frobnicate"]);
    assert_eq!(c, 2, "{e}");
    let root = t.path().display().to_string();
    let (c, e) = run(&["--root", &root, "status"]);
    assert_eq!(c, 2, "{e}");
    assert!(e.contains("sysroot/ostree/repo is missing"), "{e}");
    let (c, e) = run(&["--root", "/nonexistent-root", "status"]);
    assert_eq!(c, 2, "{e}");
    // Help fits 80 columns.
    for args in [
        &["--help"][..],
        &["status", "--help"],
        &["extract", "--help"],
    ] {
        let o = std::process::Command::new(binary())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0));
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            assert!(l.chars().count() <= 80, "too wide: {l:?}");
        }
    }
}

#[test]
fn missing_programs_are_named_before_anything_changes() {
    let sb = Sandbox::new();
    let out = sb
        .command(&["status"])
        .env("PATH", sb.ctl().join("bin"))
        .output()
        .unwrap();
    // status still answers (the backup and the recovery are worth seeing in
    // an outage) and names the missing program with what needs it.
    assert_eq!(out.status.code(), Some(0));
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(
        o.contains(
            "OS deployments: cannot read: required program not found on PATH: ostree (reads"
        ),
        "{o}"
    );
    assert!(o.contains("State: ") && o.contains("Next: "), "{o}");
}
