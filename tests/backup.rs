//! `backup` on sandbox nodes: what it leaves, and how it fails.

mod common;

use common::*;
use upgrade_recovery::testing::ostree;

fn manifest(sb: &Sandbox) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(sb.root().join("var/recovery/manifest.json")).unwrap(),
    )
    .unwrap()
}

fn backup(sb: &Sandbox, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["backup", "--min-free", "0"];
    args.extend_from_slice(extra);
    sb.run(&args)
}

#[test]
fn a_backup_pins_the_os_and_holds_a_restorable_etcd_and_exact_trees() {
    let sb = Sandbox::new();
    let (code, out, err) = backup(&sb, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("Backup complete"), "{out}");

    // One deployment, pinned, and it is the one recorded.
    let ds =
        ostree::parse_admin_status(&sb.sh("ostree admin --sysroot=$ROOT/sysroot status")).unwrap();
    assert_eq!(ds.len(), 1);
    assert!(ds[0].pinned);
    let m = manifest(&sb);
    assert_eq!(m["deployment"]["checksum"], ds[0].checksum.as_str());
    assert_eq!(m["format"], 1);

    // The snapshot restores with Debian's etcdctl; an etcd on it serves the keys.
    let snap = sb
        .root()
        .join("var/recovery")
        .join(m["etcd"]["file"].as_str().unwrap());
    assert!(snap
        .file_name()
        .unwrap()
        .to_string_lossy()
        .ends_with("__POSSIBLY_DIRTY__.db"));
    assert_eq!(std::fs::metadata(&snap).unwrap().len() % 512, 32);
    let t = TempDir::new("etcdrestore");
    let keys = sh(&format!(
        r#"cd {t}
ETCDCTL_API=3 etcdctl snapshot restore {snap} --name r --initial-cluster r=http://127.0.0.1:0 --initial-advertise-peer-urls http://127.0.0.1:0 --data-dir {t}/data >/dev/null 2>&1
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env -i etcd --name r --data-dir {t}/data --listen-client-urls http://127.0.0.1:$port --advertise-client-urls http://127.0.0.1:$port --listen-peer-urls http://127.0.0.1:0 --initial-cluster r=http://127.0.0.1:0 --initial-advertise-peer-urls http://127.0.0.1:0 >etcd.log 2>&1 &
pid=$!
for i in $(seq 300); do ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:$port endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:$port get --prefix /kubernetes.io/configmaps/openshift-config/ --keys-only | grep -c sandbox-
kill $pid"#,
        t = q(t.path()),
        snap = q(&snap)
    ));
    assert_eq!(keys.trim(), "20");
    assert_eq!(m["etcd"]["total_keys"], 20);

    // The static-pod tarball holds exactly the live revisions, under static-pod-resources/.
    let tgz = sb
        .root()
        .join("var/recovery")
        .join(m["static_pods"]["file"].as_str().unwrap());
    let tops = sh(&format!(
        "tar -tzf {} | cut -d/ -f1-2 | sort -u | tr '\\n' ' '",
        q(&tgz)
    ));
    assert_eq!(
        tops.trim(),
        "static-pod-resources/etcd-pod-3 static-pod-resources/kube-apiserver-pod-7 static-pod-resources/kube-controller-manager-pod-5 static-pod-resources/kube-scheduler-pod-4"
    );
    assert_eq!(sh(&format!("stat -c %a {}", q(&tgz))).trim(), "600");

    // The trees: an extraction equals the node (oracle: rsync), mounts skipped.
    for (name, node) in [
        ("etc", "etc"),
        ("local", "var/usrlocal"),
        ("kubelet", "var/lib/kubelet"),
    ] {
        let x = TempDir::new("x");
        sh(&format!(
            "zstd -dc {}/var/recovery/current/{name}.tar.zst | tar -x -C {} --numeric-owner -p --xattrs --xattrs-include='*' 2>/dev/null",
            q(&sb.root()),
            q(x.path())
        ));
        let diff = rsync_diff(&sb.root().join(node), x.path(), "-x --no-A --no-X");
        assert_eq!(diff, Vec::<String>::new(), "{name}");
    }
    let kubelet = m["trees"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "kubelet")
        .unwrap();
    assert_eq!(
        kubelet["skipped_mounts"][0],
        "pods/4f2a9c1e-1111-4a3b-9c2d-000000000001/volumes/kubernetes.io~empty-dir/cache"
    );
    let local = m["trees"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "local")
        .unwrap();
    assert_eq!(local["resolved"], "/var/usrlocal");
    // The exclude list as today.
    let ex = std::fs::read_to_string(sb.root().join("var/recovery/etc.exclude.list")).unwrap();
    assert_eq!(
        ex,
        "cni/multus/certs\nkubernetes/cni/net.d\nsandbox-runtime\n.updated\nkubernetes/manifests\n"
    );
    // Extras: the machine-config files outside the trees.
    let extras = sh(&format!(
        "zstd -dc {}/var/recovery/current/extras.tar.zst | tar -t | sort | tr '\\n' ' '",
        q(&sb.root())
    ));
    assert_eq!(
        extras.trim(),
        "opt/sandbox/tool.conf var/lib/mco/state.json"
    );
    // Root-only, and the binary with its wrapper.
    assert_eq!(
        sh(&format!("stat -c %a {}/var/recovery", q(&sb.root()))).trim(),
        "700"
    );
    let wrapper = sb.root().join("var/recovery/upgrade-recovery.sh");
    let (code, out, _) = {
        let o = std::process::Command::new(&wrapper)
            .args(["--root", sb.root().to_str().unwrap(), "verify"])
            .env("PATH", sb.path_env())
            .output()
            .unwrap();
        (
            o.status.code().unwrap(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            (),
        )
    };
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact"));

    // A second backup is idempotent on the OS and replaces the first.
    let (code, _, err) = backup(&sb, &[]);
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = sb.run(&["verify"]);
    assert_eq!(code, 0);
}

#[test]
fn damage_is_found_by_verify() {
    let sb = Sandbox::new();
    assert_eq!(backup(&sb, &[]).0, 0);
    let snap = sb.sh("ls $ROOT/var/recovery/cluster/snapshot_*.db");
    sh(&format!(
        "printf '\\x01' | dd of={} bs=1 seek=4000 conv=notrunc status=none",
        snap.trim()
    ));
    sh(&format!(
        "truncate -s -100 {}/var/recovery/current/kubelet.tar.zst",
        q(&sb.root())
    ));
    let (code, out, _) = sb.run(&["verify"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("snapshot_"), "{out}");
    assert!(out.contains("kubelet.tar.zst"), "{out}");
    let (code, out, _) = sb.run(&["verify", "--output", "json"]);
    assert_eq!(code, 4);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["intact"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 2, "{out}");
    // No backup at all: 4 as well.
    let (code, _, err) = sb.run(&["--dir", "/var/nothing", "verify"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("no backup"), "{err}");
}

#[test]
fn refusals_change_nothing() {
    let sb = Sandbox::new();
    assert_eq!(backup(&sb, &[]).0, 0);
    let before = sh(&format!(
        "cd {}/var/recovery && sha256sum manifest.json",
        q(&sb.root())
    ));

    // Disk full: a backup dir on a small file system.
    sh(&format!(
        "mkdir -p {r}/var/small && mount -t tmpfs -o size=16m,mode=0700 tmpfs {r}/var/small",
        r = q(&sb.root())
    ));
    assert_eq!(
        sb.run(&["--dir", "/var/small", "backup", "--min-free", "0"])
            .0,
        0
    );
    sh(&format!(
        "head -c 20000000 /dev/urandom > {}/etc/big.bin",
        q(&sb.root())
    ));
    let (code, _, err) = sb.run(&["--dir", "/var/small", "backup", "--min-free", "0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("insufficient disk space"), "{err}");
    assert!(err.contains("the previous backup is intact"), "{err}");
    assert_eq!(sb.run(&["--dir", "/var/small", "verify"]).0, 0);
    std::fs::remove_file(sb.root().join("etc/big.bin")).unwrap();

    // The margin is configurable.
    let (code, _, err) = sb.run(&["--dir", "/var/small", "backup", "--min-free", "1T"]);
    assert_eq!(code, 1);
    assert!(err.contains("margin of 1.0 TiB"), "{err}");

    // Malformed currentconfig: the file and the position.
    let cc = sb.root().join("etc/machine-config-daemon/currentconfig");
    let good = std::fs::read(&cc).unwrap();
    std::fs::write(&cc, b"{\"spec\": {\"config\": [1, 2,, 3]}}").unwrap();
    let (code, _, err) = backup(&sb, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("currentconfig is not valid JSON") && err.contains("line 1, column"),
        "{err}"
    );
    std::fs::write(&cc, good).unwrap();

    // A missing currentconfig is a warning in the output and the manifest.
    std::fs::rename(&cc, cc.with_extension("aside")).unwrap();
    let (code, out, err) = backup(&sb, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("warning:") && out.contains("currentconfig does not exist"),
        "{out}"
    );
    assert!(manifest(&sb)["warnings"][0]
        .as_str()
        .unwrap()
        .contains("currentconfig"));
    std::fs::rename(cc.with_extension("aside"), &cc).unwrap();
    let before = {
        let _ = before;
        sh(&format!(
            "cd {}/var/recovery && sha256sum manifest.json",
            q(&sb.root())
        ))
    };

    // etcd down: the endpoint is named, no partial backup, the previous one intact.
    sb.sh("systemctl stop kubelet; crictl rmp -fa");
    let (code, _, err) = backup(&sb, &["--etcd-timeout", "5"]);
    assert_eq!(code, 1, "{err}");
    let port = sb.sh(". $CTL/state/ports; echo $CLIENT_PORT");
    assert!(
        err.contains(&format!("https://127.0.0.1:{}", port.trim())),
        "{err}"
    );
    assert!(err.contains("the previous backup is intact"), "{err}");
    assert_eq!(
        sb.sh("ls -a $ROOT/var/recovery | grep -c '^gen-'").trim(),
        "1",
        "only the current generation is left"
    );
    assert_eq!(
        sh(&format!(
            "cd {}/var/recovery && sha256sum manifest.json",
            q(&sb.root())
        )),
        before
    );
    assert_eq!(sb.run(&["verify"]).0, 0);
    sb.reboot();

    // A recovery in progress: exit 0, nothing touched.
    std::fs::write(sb.root().join("var/recovery/progress"), "restore_files\n").unwrap();
    let (code, out, _) = backup(&sb, &[]);
    assert_eq!(code, 0);
    assert!(out.contains("A recovery is in progress"), "{out}");
    assert_eq!(
        sh(&format!(
            "cd {}/var/recovery && sha256sum manifest.json",
            q(&sb.root())
        )),
        before
    );
    std::fs::remove_file(sb.root().join("var/recovery/progress")).unwrap();

    // A concurrent run: refused at once, naming the holder.
    sb.sh("(flock $ROOT/var/recovery/.lock sleep 10 >/dev/null 2>&1 &) ; sleep 0.5");
    let (code, _, err) = backup(&sb, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("another upgrade-recovery run") && err.contains(".lock"),
        "{err}"
    );
}

/// A backup that kills itself at a fault point.
fn killed_backup(sb: &Sandbox, point: &str) -> std::process::Output {
    sb.command(&["backup", "--min-free", "0"])
        .env("UPGRADE_RECOVERY_CRASH_AT", point)
        .output()
        .unwrap()
}

#[test]
fn a_killed_backup_leaves_the_previous_one_or_none_never_a_partial_one() {
    let sb = Sandbox::new();
    assert_eq!(backup(&sb, &[]).0, 0);
    let first = manifest(&sb);
    for point in [
        "backup:os",
        "backup:etcd",
        "backup:etc",
        "backup:kubelet",
        "backup:manifest",
    ] {
        let out = killed_backup(&sb, point);
        assert_eq!(out.status.code(), None, "{point}: killed by a signal");
        let (code, out, _) = sb.run(&["verify"]);
        assert_eq!(
            code, 0,
            "{point}: the previous backup still verifies: {out}"
        );
        assert_eq!(manifest(&sb)["created_unix"], first["created_unix"]);
    }
    // The next run cleans up and succeeds; the legacy flags work too.
    let (code, _, err) = sb.run(&["--take-backup", "--dir", "/var/recovery", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(sb.run(&["verify"]).0, 0);
}

/// `backup --dry-run`: the checks of the real run, then the plan it would
/// carry out; nothing changes (the backup dir, the deployments, the
/// programs run on the node). The real run then does what the plan said.
#[test]
fn a_dry_run_prints_the_plan_the_real_run_carries_out_and_changes_nothing() {
    let sb = Sandbox::new();
    let ostree_status = || sb.sh("ostree admin --sysroot=$ROOT/sysroot status");
    let state = || {
        (
            sb.sh("ls -lAR --time-style=+%s.%N $ROOT/var/recovery; test -e $ROOT/var/new && echo exists || echo absent"),
            ostree_status(),
            // Reads are checks the real run makes too.
            sb.calls_but_api_reads(),
        )
    };
    // No backup yet, and a dir that does not exist.
    let before = state();
    let (code, out, err) = sb.run(&["--dir", "/var/new", "backup", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("create /var/new (mode 0700)"), "{out}");
    assert_eq!(state(), before, "nothing changed");

    // What a killed run leaves, beside the node's two deployments.
    let dir = sb.root().join("var/recovery");
    std::fs::create_dir(dir.join("gen-2020-01-01_000000")).unwrap();
    std::fs::write(dir.join("gen-2020-01-01_000000/etc.tar.zst"), b"x").unwrap();
    std::fs::write(dir.join(".current.tmp"), b"").unwrap();
    let ds = ostree::parse_admin_status(&ostree_status()).unwrap();
    assert_eq!(ds.len(), 2);
    // The booted deployment, else the default (a sandbox boots none).
    let kept = ds.iter().find(|d| d.booted).unwrap_or(&ds[0]);
    let undeployed = ds
        .iter()
        .find(|d| d.checksum != kept.checksum)
        .unwrap()
        .short();
    let kept = kept.short();

    let before = state();
    let (code, out, err) = backup(&sb, &["--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "Dry run: the checks passed and nothing was changed".to_string(),
        format!("keep and pin {kept}; undeploy {undeployed}"),
        "would remove:\n    /var/recovery/.current.tmp\n    /var/recovery/gen-2020-01-01_000000\n"
            .to_string(),
        "write the generation /var/recovery/gen-".to_string(),
        "etcd and static-pod resources".to_string(),
    ] {
        assert!(out.contains(&want), "{want:?} in:\n{out}");
    }
    assert!(!out.contains("REMOVE THE PREVIOUS BACKUP"), "{out}");
    assert_eq!(state(), before, "nothing changed");

    let (code, json, err) = sb.run(&["--output", "json", "backup", "--min-free", "0", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(plan["result"], "dry-run");
    assert_eq!(plan["os"]["undeploy"], serde_json::json!([undeployed]));
    assert_eq!(plan["space"]["remove_previous"], false);
    let parts: Vec<&str> = plan["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["part"].as_str().unwrap())
        .collect();
    assert_eq!(
        parts,
        [
            "etc",
            "local",
            "kubelet",
            "extras",
            "etcd and static-pod resources",
            "this binary"
        ]
    );
    assert_eq!(state(), before, "nothing changed");

    // The real run does what the plan said.
    let (code, json, err) = sb.run(&["--output", "json", "backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    let done: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(done["undeployed"], plan["os"]["undeploy"]);
    assert!(!dir.join("gen-2020-01-01_000000").exists());
    assert!(!dir.join(".current.tmp").exists());
    assert_eq!(
        ostree::parse_admin_status(&ostree_status()).unwrap().len(),
        1
    );
}
