//! A node's life through the hub's Job (issue 22): a node backed up by
//! TALM's upgrade-recovery.sh; three successful upgrades with the Job before
//! each; a failed upgrade and the Job again (refused, the backup kept);
//! the OS rollback and the Job again (refused); the recovery (the node
//! equals the last good backup); the wrapper again (nothing changes); the
//! Job again. Profile-parameterised: `rhcos` and `minimal` here, and any
//! profile `scripts/sandbox.sh create --profile` makes (UR_LIFECYCLE_PROFILES,
//! comma-separated, runs others the same way).

mod common;

use common::recovery::{capture, check_restored, diverge, finish};
use common::*;

/// TALM's backup as its script leaves it (cluster-group-upgrades-operator
/// `recovery/bindata/upgrade-recovery.sh`, `take_backup`): the OS reduced
/// to the booted deployment, pinned (`ostree admin undeploy 1` until it
/// fails, `ostree admin pin 0`), then `cluster/` from cluster-backup.sh,
/// `etc.exclude.list`, `cp -Ra` copies `etc/`, `local/`, `kubelet/`,
/// `extras.tgz`, and the script itself.
fn talm_backup(sb: &Sandbox) {
    sb.sh(
        r#". $CTL/lib/bootfs.sh; while boot_rw $ROOT ostree admin --sysroot=$ROOT undeploy 1 >/dev/null 2>&1; do :; done
boot_rw $ROOT ostree admin --sysroot=$ROOT pin 0 >/dev/null
D=$ROOT/var/recovery; mkdir -p $D/cluster; chmod 0700 $D
head -c 8192 /dev/urandom > $D/cluster/snapshot_2024-05-14_165400__POSSIBLY_DIRTY__.db
tar -czf $D/cluster/static_kuberesources_2024-05-14_165400__POSSIBLY_DIRTY__.tar.gz -C $ROOT/etc/kubernetes static-pod-resources/etcd-certs
printf '.updated\nkubernetes/manifests\n' > $D/etc.exclude.list
cp -Ra $ROOT/etc $D/etc; cp -Ra $ROOT/var/usrlocal $D/local; cp -Ra $ROOT/var/lib/kubelet $D/kubelet
tar -czf $D/extras.tgz -C $ROOT etc/hostname
printf '#!/bin/bash\n# TALM upgrade-recovery.sh (stand-in)\necho "TALM script $*"\n' > $D/upgrade-recovery.sh; chmod 0755 $D/upgrade-recovery.sh"#,
    );
}

/// Run the Job; (exit code, stdout + stderr).
fn job(sb: &Sandbox) -> (i32, String) {
    let t = TempDir::new("jobhost");
    let out = sb
        .job(&t.path().join("host"), "", "", false)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The deployments `ostree admin status` lists.
fn deployments(sb: &Sandbox) -> usize {
    sb.ostree_status()
        .lines()
        .filter(|l| l.starts_with("* ") || l.starts_with("  ") && !l.starts_with("    "))
        .count()
}

/// A cluster upgrade recorded in the ClusterVersion (Completed or Partial)
/// with its new OS deployed and booted.
fn upgrade(sb: &Sandbox, version: &str, os: &str, state: &str) {
    let d = q(sb.dir.path());
    let p = q(&project());
    sh(&format!(
        "{p}/scripts/sandbox.sh cluster-upgrade {d} {version} {state} >/dev/null; {p}/scripts/sandbox.sh upgrade-os {d} {os} >/dev/null"
    ));
    sb.reboot();
}

fn manifest_sum(sb: &Sandbox) -> String {
    sb.sh("sha256sum < $ROOT/var/recovery/manifest.json")
}

fn life(profile: &str) {
    let sb = Sandbox::with_profile(profile);
    talm_backup(&sb);
    let (code, out, err) = sb.run(&["status"]);
    assert_eq!(code, 0, "{profile}: {out}{err}");
    assert!(
        out.contains("a backup taken by TALM's upgrade-recovery.sh on")
            && out.contains(
                "recover with that script (`/var/recovery/upgrade-recovery.sh` of that backup)"
            )
            && !out.contains("DAMAGED"),
        "{profile}: {out}"
    );
    // Three successful upgrades, the Job before each.
    for n in 1..=3 {
        let (code, out) = job(&sb);
        assert_eq!(code, 0, "{profile}: Job before upgrade {n}: {out}");
        assert!(
            deployments(&sb) <= 2,
            "{profile}: Job {n}: {}",
            sb.ostree_status()
        );
        let (code, v, verr) = sb.run(&["verify"]);
        assert_eq!(code, 0, "{profile}: verify after Job {n}: {v}{verr}");
        if n == 1 {
            // TALM's files went after the switch; its script is our wrapper now.
            for gone in ["etc", "local", "kubelet", "extras.tgz"] {
                assert!(
                    !sb.root().join("var/recovery").join(gone).exists(),
                    "{profile}: {gone} of TALM's backup is still there"
                );
            }
            let w = std::fs::read_to_string(sb.root().join("var/recovery/upgrade-recovery.sh"))
                .unwrap();
            assert!(w.contains("UPGRADE_RECOVERY_DIR"), "{w}");
        }
        upgrade(
            &sb,
            &format!("4.16.{n}"),
            &format!("416.94.20240{n}010000-0"),
            "Completed",
        );
        assert!(deployments(&sb) <= 3);
    }
    let (code, out) = job(&sb);
    assert_eq!(code, 0, "{profile}: Job before the failed upgrade: {out}");
    assert!(deployments(&sb) <= 2, "{profile}");
    let before = capture(&sb);
    let kept = manifest_sum(&sb);

    // A failed upgrade: the Job refuses and keeps the backup.
    upgrade(&sb, "4.17.0", "417.94.202411010000-0", "Partial");
    diverge(&sb, 1);
    let (code, out) = job(&sb);
    assert_eq!(code, 1, "{profile}: Job after the failed upgrade: {out}");
    assert!(
        out.contains("the upgrade to 4.17.")
            && out.contains("(Partial")
            && out.contains("did not complete")
            && out.contains("--replace-backup"),
        "{profile}: {out}"
    );
    assert_eq!(manifest_sum(&sb), kept, "{profile}: the backup changed");

    // The OS rolled back and booted: the Job still refuses. Without
    // rpm-ostree (minimal) the booted upgrade cannot be moved: the admin
    // boots the pinned entry from the boot menu, then `rollback` makes it
    // the default.
    let (code, out, err) = sb.run(&["rollback"]);
    if code != 0 && err.contains("without rpm-ostree") {
        sh(&format!(
            "{}/scripts/sandbox.sh reboot {} 1 >/dev/null",
            q(&project()),
            q(sb.dir.path())
        ));
        let (code, out, err) = sb.run(&["rollback"]);
        assert_eq!(
            code, 0,
            "{profile}: rollback from the pinned entry: {out}{err}"
        );
    } else {
        assert_eq!(code, 0, "{profile}: rollback: {out}{err}");
    }
    sb.reboot();
    let (code, out) = job(&sb);
    assert_eq!(code, 1, "{profile}: Job after the rollback: {out}");
    assert_eq!(manifest_sum(&sb), kept, "{profile}: the backup changed");
    let (_, st, _) = sb.run(&["status"]);
    assert!(
        st.contains("no recovery has completed since"),
        "{profile}: {st}"
    );

    // The recovery: the node equals the last good backup.
    finish(&sb, profile);
    check_restored(&sb, &before, profile);

    // The bare wrapper again: refused, nothing changes.
    sb.etcdctl("put /after/recovery kept");
    let out = std::process::Command::new(sb.root().join("var/recovery/upgrade-recovery.sh"))
        .arg("--root")
        .arg(sb.root())
        .env("PATH", sb.path_env())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{profile}: the wrapper again: {err}"
    );
    assert!(err.contains("restore --again"), "{profile}: {err}");
    assert!(!sb.root().join("var/recovery/journal.json").exists());
    assert!(
        sb.etcdctl("get /after/recovery --print-value-only")
            .contains("kept"),
        "{profile}: the key written after the recovery is gone"
    );

    // The Job again: a recovery completed after the failed upgrade.
    let (code, out) = job(&sb);
    assert_eq!(code, 0, "{profile}: Job after the recovery: {out}");
    assert!(deployments(&sb) <= 2, "{profile}");
    assert_ne!(manifest_sum(&sb), kept);
}

#[test]
fn a_nodes_life_on_rhcos() {
    life("rhcos");
}

#[test]
fn a_nodes_life_on_minimal() {
    life("minimal");
}

/// Other profiles by name (e.g. after the rhcos layout changes):
/// `UR_LIFECYCLE_PROFILES=rhcos,default cargo test --test lifecycle -- --ignored`.
#[test]
#[ignore]
fn a_nodes_life_on_the_named_profiles() {
    for p in std::env::var("UR_LIFECYCLE_PROFILES")
        .unwrap_or_else(|_| "default".into())
        .split(',')
    {
        life(p.trim());
    }
}

/// `PATH` with an `oc` that answers as the real one does when the API
/// server is down, before the shims.
fn api_down(sb: &Sandbox) -> String {
    let dir = sb.ctl().join("api-down");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("oc"),
        "#!/bin/sh\necho 'The connection to the server api.sno.example.com:6443 was refused - did you specify the right host or port?' >&2\nexit 1\n",
    )
    .unwrap();
    sh(&format!("chmod +x {}", q(&dir.join("oc"))));
    format!("{}:{}", dir.display(), sb.path_env())
}

/// After a completed upgrade, with the API down (or its ClusterVersion
/// absent or malformed) the rule cannot see that the upgrade completed: it
/// falls back to the deployments (another OS booted, the pinned one still
/// deployed), refuses and says so; with the API back the backup replaces
/// the old one and the old pinned deployment goes.
#[test]
fn without_the_api_the_deployments_decide_and_say_so() {
    let sb = Sandbox::new();
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    let kept = manifest_sum(&sb);
    upgrade(&sb, "4.16.1", "416.94.202401010000-0", "Completed");
    let cv = sb
        .ctl()
        .join("state/objects/clusterversions/_/version.json");
    let good = std::fs::read(&cv).unwrap();
    let down = api_down(&sb);
    for (what, fact) in [
        ("down", "was refused"),
        ("absent", "(NotFound)"),
        ("malformed", "malformed JSON"),
    ] {
        let mut c = sb.command(&["backup", "--min-free", "0"]);
        match what {
            "down" => {
                c.env("PATH", &down);
            }
            "absent" => std::fs::remove_file(&cv).unwrap(),
            _ => std::fs::write(&cv, "{\"status\": ").unwrap(),
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains("the cluster's API did not answer")
                && err.contains(fact)
                && err.contains("decided from the OS deployments")
                && err.contains("--replace-backup"),
            "{what}: {err}"
        );
        assert_eq!(manifest_sum(&sb), kept, "{what}");
        std::fs::write(&cv, &good).unwrap();
    }
    assert_eq!(deployments(&sb), 2);
    let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("undeployed rhcos"), "{out}");
    assert_eq!(deployments(&sb), 1, "the old pinned deployment went");
    let (_, st, _) = sb.run(&["status"]);
    assert!(
        st.contains("Next backup: replaces this one: no upgrade started after the backup"),
        "{st}"
    );
}

/// A backup in another dir than the default: plain `status` does not send
/// the admin to a backup that would undeploy its pinned OS; it names the
/// other dir, whose own wrapper works on it. A backup in the default dir
/// keeps that pinned deployment.
#[test]
fn a_backup_in_another_dir_is_named_and_its_pin_kept() {
    let sb = Sandbox::new();
    let (code, _, err) = sb.run(&["--dir", "/var/recovery2", "backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    upgrade(&sb, "4.17.0", "417.94.202411010000-0", "Partial");
    let (code, out, err) = sb.run(&["status", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Named from what the dir holds (issue 22.6), with its state there.
    assert_eq!(st["state"]["state"], "backup-elsewhere", "{st:#}");
    assert!(
        st["state_text"]
            .as_str()
            .unwrap()
            .contains("there is no backup in /var/recovery, but /var/recovery2 holds one"),
        "{st:#}"
    );
    assert_eq!(
        st["next_command"],
        "upgrade-recovery --dir /var/recovery2 status"
    );
    // The other dir's wrapper recovers from its own dir.
    let out = std::process::Command::new(sb.root().join("var/recovery2/upgrade-recovery.sh"))
        .args([
            "--root".as_ref(),
            sb.root().as_os_str(),
            "status".as_ref(),
            "--output".as_ref(),
            "json".as_ref(),
        ])
        .env("PATH", sb.path_env())
        .output()
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["backup"]["dir"], "/var/recovery2", "{st:#}");
    assert_eq!(st["backup"]["exists"], true, "{st:#}");
    assert_eq!(
        st["next_command"], "upgrade-recovery --dir /var/recovery2 rollback --reboot",
        "{st:#}"
    );
    // A backup in the default dir keeps the other backup's pinned OS.
    let pinned = || sb.sh("ostree admin --sysroot=$ROOT status | grep -c 'Pinned: yes' || true");
    assert_eq!(pinned().trim(), "1");
    let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("warning: kept rhcos"), "{out}");
    assert_eq!(deployments(&sb), 2);
    assert_eq!(pinned().trim(), "2");
}

/// Replacing TALM's backup, killed at every fault point of the backup and
/// the switch: the node keeps one usable backup (TALM's whole, or ours
/// verified), and the next run completes and leaves ours alone. TALM's
/// files go only after ours is current.
#[test]
fn a_crash_anywhere_while_replacing_talms_backup_leaves_one_usable_backup() {
    let sb = Sandbox::new();
    let rec = sb.root().join("var/recovery");
    let points = [
        "backup:os",
        "backup:manifest",
        "switch:before",
        "switch:link-made",
        "switch:renamed",
        "switch:current",
        "convert:link:upgrade-recovery",
        "convert:link:upgrade-recovery.sh",
        "convert:link:etc.exclude.list",
        "convert:exchanged:cluster",
        "convert:link:cluster",
        "convert:link:manifest.json",
        "switch:cleanup",
        "switch:done",
    ];
    for point in points {
        sb.sh("rm -rf $ROOT/var/recovery; mkdir -p $ROOT/var/recovery");
        talm_backup(&sb);
        let out = sb
            .command(&["backup", "--min-free", "0"])
            .env("UPGRADE_RECOVERY_CRASH_AT", point)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            None,
            "{point}: not killed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let talm_whole = ["cluster", "etc", "local", "kubelet", "extras.tgz"]
            .iter()
            .all(|p| {
                std::fs::symlink_metadata(rec.join(p)).is_ok_and(|m| !m.file_type().is_symlink())
            })
            && std::fs::read_to_string(rec.join("upgrade-recovery.sh"))
                .is_ok_and(|s| s.contains("TALM"));
        let (vcode, vout, verr) = sb.run(&["verify"]);
        assert!(
            talm_whole || vcode == 0,
            "{point}: neither TALM's backup nor ours is usable: {vout}{verr}\n{}",
            sb.sh("ls -la $ROOT/var/recovery")
        );
        let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
        assert_eq!(code, 0, "{point}: the next run: {out}{err}");
        assert_eq!(sb.run(&["verify"]).0, 0, "{point}");
        for gone in ["etc", "local", "kubelet", "extras.tgz"] {
            assert!(!rec.join(gone).exists(), "{point}: {gone} is left");
        }
    }
}
