//! `--etcd-backup=script` and `--etcd-restore=script` end to end, with the
//! sandbox's stand-ins of the node's cluster-backup.sh and cluster-restore.sh
//! (scripts/shims/, copied from openshift/cluster-etcd-operator): both
//! scripts, and each mixed with the native way. The stand-ins print more
//! than a pipe buffer (the 13.5 stall).

mod common;

use common::*;

fn with_scripts() -> Sandbox {
    let sb = Sandbox::new();
    sh(&format!(
        "{}/scripts/sandbox.sh etcd-scripts {} >/dev/null",
        q(&project()),
        q(sb.dir.path())
    ));
    sb
}

fn etcd_dump(sb: &Sandbox) -> String {
    sb.etcdctl("get '' --prefix")
}

fn backup(sb: &Sandbox, how: &str) -> String {
    let (code, out, err) = sb.run(&["backup", "--min-free", "0", "--etcd-backup", how]);
    assert_eq!(code, 0, "backup --etcd-backup={how}: {out}{err}");
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(sb.root().join("var/recovery/manifest.json")).unwrap(),
    )
    .unwrap();
    m["etcd"]["file"].as_str().unwrap().to_string()
}

/// The cluster changes after the backup.
fn diverge(sb: &Sandbox) {
    sb.etcdctl("put /upgrade/key v");
    sb.etcdctl("del /kubernetes.io/configmaps/openshift-config/sandbox-1");
}

/// Drive the recovery to its end across the reboot.
fn recover(sb: &Sandbox, how: &str) -> String {
    let mut all = String::new();
    for _ in 0..6 {
        let journal = sb.root().join("var/recovery/journal.json").exists();
        let mut c = sb.command(&["restore"]);
        if journal {
            c.arg("--resume");
        }
        c.args([
            "--etcd-restore",
            how,
            "--poll-interval",
            "100",
            "--wait-timeout",
            "60",
        ]);
        let o = c.output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        all.push_str(&out);
        match o.status.code() {
            Some(0) if out.contains("Reboot now") => sb.reboot(),
            Some(0) if out.contains("Recovery complete") => return all,
            Some(1) if err.contains("must reboot before the cluster phase") => sb.reboot(),
            c => panic!("restore --etcd-restore={how} gave {c:?}\n{out}\n{err}"),
        }
    }
    panic!("the recovery did not finish");
}

fn manifest(sb: &Sandbox, name: &str) -> String {
    std::fs::read_to_string(sb.root().join("etc/kubernetes/manifests").join(name)).unwrap()
}

const RESTORE_POD_UID: &str = "uid: 55aed6ab-58f5-4ae2-bf1c-54be36669b8a";

fn check(sb: &Sandbox, before: &str, restore: &str) {
    assert_eq!(etcd_dump(sb), before, "etcd keys as at backup");
    if restore == "script" {
        // As the real script leaves it: the stopped manifests kept aside,
        // the others from the tarball; the restore pod ran etcd until the
        // redeploy's rollout installed a revision's manifest (the oc shim's
        // installer), as the etcd operator's does.
        let etcd = manifest(sb, "etcd-pod.yaml");
        assert!(
            !etcd.contains(RESTORE_POD_UID) && etcd.contains("static-pod-resources/etcd-pod-"),
            "{etcd}"
        );
        assert!(sb
            .root()
            .join("home/core/assets/manifests-stopped/kube-apiserver-pod.yaml")
            .exists());
        assert!(!sb.root().join("var/lib/etcd-backup/snapshot.db").exists());
    } else {
        assert!(!manifest(sb, "etcd-pod.yaml").contains(RESTORE_POD_UID));
    }
    assert!(manifest(sb, "kube-apiserver-pod.yaml").contains("kube-apiserver-pod-7"));
}

#[test]
fn script_backup_then_script_restore() {
    let sb = with_scripts();
    let file = backup(&sb, "script");
    assert!(
        file.starts_with("cluster/snapshot_") && file.ends_with("__POSSIBLY_DIRTY__.db"),
        "{file}"
    );
    let before = etcd_dump(&sb);
    diverge(&sb);
    assert_ne!(etcd_dump(&sb), before);
    recover(&sb, "script");
    check(&sb, &before, "script");
}

#[test]
fn native_backup_then_script_restore() {
    let sb = with_scripts();
    backup(&sb, "native");
    let before = etcd_dump(&sb);
    diverge(&sb);
    recover(&sb, "script");
    check(&sb, &before, "script");
}

#[test]
fn script_backup_then_native_restore() {
    let sb = with_scripts();
    backup(&sb, "script");
    let before = etcd_dump(&sb);
    diverge(&sb);
    recover(&sb, "native");
    check(&sb, &before, "native");
}

#[test]
fn script_backup_absent_refuses_before_any_change() {
    let sb = Sandbox::new();
    let (code, out, err) = sb.run(&["backup", "--min-free", "0", "--etcd-backup", "script"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("cluster-backup.sh is missing or not executable"),
        "{err}"
    );
    assert!(!sb.root().join("var/recovery/manifest.json").exists());
    assert!(!sb
        .sh("ostree admin --sysroot=$ROOT/sysroot status")
        .contains("Pinned: yes"));
}

/// The script refuses (its etcd-common-tools missing, as on a node without a
/// working etcd static pod): its message, on stdout, reaches the user.
#[test]
fn script_backup_failing_refuses_with_its_stderr() {
    let sb = with_scripts();
    std::fs::remove_file(sb.root().join(
        "etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-scripts/etcd-common-tools",
    ))
    .unwrap();
    let (code, out, err) = sb.run(&["backup", "--min-free", "0", "--etcd-backup", "script"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("required dependencies not found"), "{err}");
    assert!(!sb.root().join("var/recovery/manifest.json").exists());
}

#[test]
fn script_restore_absent_refuses_before_any_change() {
    let sb = Sandbox::new();
    backup(&sb, "native");
    let calls = sb.calls().len();
    let (code, out, err) = sb.run(&["restore", "--etcd-restore", "script"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("cluster-restore.sh is missing or not executable"),
        "{err}"
    );
    assert!(err.contains("--etcd-restore=native"), "{err}");
    assert!(!sb.root().join("var/recovery/journal.json").exists());
    assert_eq!(sb.calls().len(), calls, "no program was run on the node");
}

/// The restore script fails half way (the restore pod manifest missing, after
/// the files phase put /etc back): the recovery stops at restore-etcd with
/// the script's message and the exact next command.
#[test]
fn script_restore_failing_stops_with_its_stderr() {
    let sb = with_scripts();
    backup(&sb, "native");
    let run = |resume: bool| {
        let mut c = sb.command(&["restore"]);
        if resume {
            c.arg("--resume");
        }
        c.args([
            "--etcd-restore",
            "script",
            "--poll-interval",
            "100",
            "--wait-timeout",
            "60",
        ]);
        let o = c.output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(false);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    sb.reboot();
    std::fs::remove_file(sb.root().join(
        "etc/kubernetes/static-pod-resources/etcd-certs/configmaps/restore-etcd-pod/pod.yaml",
    ))
    .unwrap();
    let (code, out, err) = run(true);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("recovery step restore-etcd failed"), "{err}");
    assert!(err.contains("cluster-restore.sh"), "{err}");
    assert!(err.contains("restore-etcd-pod/pod.yaml"), "{err}");
    assert!(err.contains("upgrade-recovery.sh --resume"), "{err}");
    assert!(
        err.len() < 8000,
        "the error stays readable: {} bytes",
        err.len()
    );
}
