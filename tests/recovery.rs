//! The recovery end to end on sandbox nodes: backup, a failed "upgrade",
//! OS rollback, restore across a reboot, with crashes injected at every step.

mod common;

use common::recovery::*;
use common::*;
use std::path::Path;
use upgrade_recovery::testing::recovery::{ETCD_SUBSTEPS, STEPS};

#[test]
fn end_to_end_backup_failed_upgrade_rollback_restore() {
    let sb = Sandbox::with_profile("rhcos");
    let before = take_backup(&sb);
    let pinned = sb.sh("ostree admin --sysroot=$ROOT status | awk 'NR==1{print $2}'");
    upgrade(&sb, 1);
    sh(&format!(
        "{}/scripts/sandbox.sh upgrade-os {} 417.94.202411010000-0 >/dev/null",
        q(&project()),
        q(sb.dir.path())
    ));
    sb.reboot();

    // On the upgraded OS the recovery refuses, says what to do, changes nothing.
    let (code, out, err) = restore(&sb, &[], None);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("upgrade-recovery rollback"), "{err}");
    assert!(!sb.root().join("var/recovery/journal.json").exists());
    // The dry run makes the same checks: it refuses too.
    let (code, out, err) = sb.run(&["restore", "--dry-run", "--output", "json"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("upgrade-recovery rollback"), "{err}");

    // Roll the OS back to the pinned deployment, reboot, recover.
    sb.sh("rpm-ostree rollback");
    sb.reboot();
    assert_eq!(sb.sh("rpm-ostree status --json | jq -r '.deployments[] | select(.booted) | .checksum + \".\" + (.serial|tostring)'").trim(), pinned.trim());
    let (code, out, _) = sb.run(&["restore", "--dry-run", "--output", "json"]);
    assert_eq!(code, 0);
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["steps"].as_array().unwrap().len(), STEPS.len());
    assert_eq!(plan["steps"][0]["id"], "preflight");
    assert_eq!(plan["steps"][0]["done"], false);
    let log_start = sb.calls().len();
    let (code, out, err) = restore(&sb, &[], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Reboot now"), "{out}");

    // A second run without --resume: in progress, exit 3.
    let (code, _, err) = restore(&sb, &[], None);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("--resume"), "{err}");
    // The cluster phase refuses to run in the same boot.
    let (code, _, err) = restore(&sb, &["--resume"], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("must reboot"), "{err}");
    // status says where things stand.
    let (_, st, _) = sb.run(&["status"]);
    assert!(
        st.contains("Recovery: in progress") && st.contains("next: cluster-selinux-permissive"),
        "{st}"
    );

    sb.reboot();
    let (code, out, err) = restore(&sb, &["--resume"], None);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("Recovery complete"), "{out}");
    check_restored(&sb, &before, "end to end");

    // The programs of a real node were called in today's order.
    let calls: Vec<String> = sb.calls()[log_start..].to_vec();
    let expected = [
        "setenforce 0",
        "systemctl stop kubelet.service",
        "crictl rmp -fa",
        "systemctl stop crio.service",
        "crio wipe -f",
        "systemctl daemon-reload",
        "systemctl disable kubelet.service",
        "setenforce 1",
        "setenforce 0",
        "crictl ps -o json",
        "systemctl restart kubelet.service",
        "systemctl enable kubelet.service",
        "systemctl restart crio.service",
        "setenforce 1",
    ];
    let mut at = 0;
    for e in expected {
        let pos = calls[at..]
            .iter()
            .position(|c| c == e)
            .unwrap_or_else(|| panic!("{e:?} not called after {at}: {calls:#?}"));
        at += pos + 1;
    }
    let patches = calls
        .iter()
        .filter(|c| {
            c.starts_with("oc") && c.contains("patch") && c.contains("forceRedeploymentReason")
        })
        .count();
    assert_eq!(patches, 4, "{calls:#?}");
    // The etcd data that was replaced is kept aside.
    assert!(sb.root().join("var/lib/etcd-backup/member").is_dir());
}

fn crash_everywhere(variant: &str) {
    let sb = Sandbox::new();
    let before = take_backup(&sb);
    let mut points: Vec<String> = STEPS.iter().map(|s| s.id.as_str().to_string()).collect();
    points.extend(ETCD_SUBSTEPS.iter().map(|s| format!("restore-etcd:{s}")));
    for (n, p) in points.iter().enumerate() {
        let point = if variant == "after" {
            p.clone()
        } else {
            format!("{p}:before")
        };
        if variant == "before" && p.starts_with("restore-etcd:") {
            continue;
        }
        upgrade(&sb, n as u32);
        // Run until the crash point is reached (it may lie after a reboot).
        let mut crashed = false;
        for _ in 0..4 {
            let journal = sb.root().join("var/recovery/journal.json").exists();
            let args: &[&str] = if journal { &["--resume"] } else { &[] };
            let (code, out, err) = restore(&sb, args, Some(&point));
            match code {
                None => {
                    crashed = true;
                    break;
                }
                Some(0) if out.contains("Reboot now") => sb.reboot(),
                Some(1) if err.contains("must reboot") => sb.reboot(),
                _ => panic!("{point}: {code:?}\n{out}\n{err}"),
            }
        }
        assert!(crashed, "{point}: the fault point was never reached");
        finish(&sb, &point);
        check_restored(&sb, &before, &point);
    }
}

#[test]
fn a_crash_after_any_step_then_resume_reaches_the_same_end() {
    crash_everywhere("after");
}

#[test]
fn a_crash_before_any_step_then_resume_reaches_the_same_end() {
    crash_everywhere("before");
}

#[test]
fn refusals_before_any_change() {
    let sb = Sandbox::new();
    let _before = take_backup(&sb);
    // A damaged backup (a part the files phase reads; the kubelet archive
    // is checked by the cluster phase): exit 4, nothing changed, no journal.
    let k = sb.root().join("var/recovery/current/etc.tar.zst");
    let good = std::fs::read(&k).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&k, &bad).unwrap();
    let calls = sb.calls().len();
    let (code, _, err) = restore(&sb, &[], None);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("etc.tar.zst"), "{err}");
    assert_eq!(
        sb.calls().len(),
        calls,
        "a program was called: {:?}",
        &sb.calls()[calls..]
    );
    assert!(!sb.root().join("var/recovery/journal.json").exists());
    std::fs::write(&k, &good).unwrap();

    // A missing program is named before any change.
    let bin = sb.ctl().join("bin");
    std::fs::rename(bin.join("crio"), bin.join("crio.off")).unwrap();
    let (code, _, err) = restore(&sb, &[], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("not found on PATH: crio"), "{err}");
    assert_eq!(sb.calls().len(), calls);
    std::fs::rename(bin.join("crio.off"), bin.join("crio")).unwrap();

    // An unreadable journal: a clear error and the way out.
    std::fs::write(sb.root().join("var/recovery/journal.json"), "{ not json").unwrap();
    let (code, _, err) = restore(&sb, &["--resume"], None);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("--restart"), "{err}");
    let (code, _, _) = sb.run(&["status"]);
    assert_eq!(code, 0, "status still answers");
    // --restart starts over and the recovery completes.
    let (code, out, err) = restore(&sb, &["--restart"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    finish(&sb, "after restart");

    // The old flags, as the wrapper in the backup dir runs them.
    let wrapper = sb.root().join("var/recovery/upgrade-recovery.sh");
    let o = std::process::Command::new(&wrapper)
        .args([
            "--root",
            sb.root().to_str().unwrap(),
            "--dir",
            "/var/recovery",
            "--step",
            // The recovery above completed from this backup and no upgrade
            // failed since: a new one is asked for on purpose (the
            // lifecycle rule refuses it otherwise).
            "--again",
        ])
        .env("PATH", sb.path_env())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("Reboot now"), "{out}");
    let _ = Path::new("");
}

/// The files phase with a crash after `setenforce 0`, then `--restart`
/// (which forgets the journal): the recovery still ends Enforcing. On a node
/// without any storage.conf and a backup without images.
#[test]
fn selinux_mode_survives_restart_and_no_storage_conf_is_needed() {
    let sb = Sandbox::new();
    std::fs::remove_file(sb.root().join("etc/containers/storage.conf")).unwrap();
    assert!(!sb.root().join("usr/share/containers/storage.conf").exists());
    let before = take_backup(&sb);
    upgrade(&sb, 1);
    assert_eq!(sb.sh("getenforce").trim(), "Enforcing");
    let (code, _, err) = restore(&sb, &[], Some("stop-kubelet"));
    assert_eq!(code, None, "{err}");
    assert_eq!(sb.sh("getenforce").trim(), "Permissive");
    let rec = sb.root().join("var/recovery/selinux-mode.json");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rec).unwrap()).unwrap();
    assert_eq!(r["mode"], "Enforcing");
    // --restart forgets the journal, not the recorded mode.
    let (code, out, err) = restore(&sb, &["--restart"], Some("restore-etc"));
    assert_eq!(code, None, "{out}{err}");
    let j: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sb.root().join("var/recovery/journal.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(j["selinux_mode"], "Enforcing", "{j}");
    assert!(err.contains("recorded at"), "{err}");
    finish(&sb, "after --restart");
    check_restored(&sb, &before, "after --restart");
    assert_eq!(sb.sh("getenforce").trim(), "Enforcing");
    assert!(!rec.exists(), "the record is removed with the journal");
    // restore-images ran and needed no storage.conf.
    assert!(!sb.root().join("etc/containers/storage.conf").exists());
}

/// A snapshot damaged after the files phase is found before the cluster
/// phase changes anything: exit 4, the part named, kubelet data and etcd's
/// data dir untouched; with the snapshot put back, --resume completes.
#[test]
fn a_part_damaged_after_the_files_phase_stops_the_cluster_phase_before_any_change() {
    let sb = Sandbox::new();
    let before = take_backup(&sb);
    upgrade(&sb, 1);
    let (code, out, err) = restore(&sb, &[], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    // The preflight read every part the recovery reads (issue 27.1), the
    // cluster phase's too: the files phase's in full, the cluster phase's
    // by their size and sha256; the cluster phase checks its own in full
    // below.
    let line = err
        .lines()
        .find(|l| l.contains("the recovery: checking the backup parts"))
        .unwrap_or_else(|| panic!("{err}"));
    let (full, hashed) = line
        .split_once("(in full);")
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        full.contains("local.tar.zst") && full.contains("etc.tar.zst"),
        "{line}"
    );
    assert!(
        hashed.contains("kubelet") && hashed.contains("snapshot") && !hashed.contains("etc.tar"),
        "{line}"
    );
    sb.reboot();
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sb.root().join("var/recovery/manifest.json")).unwrap(),
    )
    .unwrap();
    let snap = sb
        .root()
        .join("var/recovery")
        .join(m["etcd"]["file"].as_str().unwrap());
    let good = std::fs::read(&snap).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 0xff;
    std::fs::write(&snap, &bad).unwrap();
    let journal = std::fs::read(sb.root().join("var/recovery/journal.json")).unwrap();
    let calls = sb.calls().len();
    let (code, out, err) = restore(&sb, &["--resume"], None);
    assert_eq!(code, Some(4), "{out}{err}");
    assert!(err.contains(m["etcd"]["file"].as_str().unwrap()), "{err}");
    assert!(
        err.contains("Nothing was changed by phase cluster"),
        "{err}"
    );
    assert!(
        err.contains("another copy of the backup") && err.contains("upgrade-recovery extract"),
        "{err}"
    );
    assert!(err.contains("`upgrade-recovery restore --resume`"), "{err}");
    assert_eq!(sb.calls().len(), calls, "{:?}", &sb.calls()[calls..]);
    assert_eq!(
        std::fs::read(sb.root().join("var/recovery/journal.json")).unwrap(),
        journal
    );
    assert!(
        sb.root().join("var/lib/kubelet/pods/new-pod-1").exists(),
        "kubelet restored"
    );
    assert!(
        sb.root().join("var/lib/etcd/member").is_dir(),
        "etcd data moved"
    );
    assert!(sb
        .root()
        .join("etc/kubernetes/manifests/etcd-pod.yaml")
        .exists());
    // Another copy of the backup: the recovery goes on.
    std::fs::write(&snap, &good).unwrap();
    finish(&sb, "after the snapshot was put back");
    check_restored(&sb, &before, "after the snapshot was put back");
}

/// An `oc` in front of the shim: `patch` fails while $CTL/patch-fails
/// exists, and is accepted without effect while $CTL/stuck exists.
fn oc_wrapper(sb: &Sandbox) -> String {
    let dir = sb.ctl().join("wrap");
    std::fs::create_dir_all(&dir).unwrap();
    let real = sb.ctl().join("bin/oc");
    std::fs::write(
        dir.join("oc"),
        format!(
            "#!/bin/bash\nctl={ctl}\nfor a; do if [ \"$a\" = patch ]; then\n  if [ -e $ctl/patch-fails ]; then echo 'Error from server (InternalError): Internal error occurred: admission webhook denied' >&2; exit 1; fi\n  if [ -e $ctl/stuck ]; then echo patched; exit 0; fi\nfi; done\nexec {real} \"$@\"\n",
            ctl = q(&sb.ctl()),
            real = q(&real)
        ),
    )
    .unwrap();
    sh(&format!("chmod +x {}", q(&dir.join("oc"))));
    format!("{}:{}", dir.display(), sb.path_env())
}

#[test]
fn a_failed_redeploy_patch_is_retried_and_a_stuck_operator_is_named() {
    let sb = Sandbox::new();
    let before = take_backup(&sb);
    upgrade(&sb, 1);
    let path = oc_wrapper(&sb);
    let run = |args: &[&str], wait: &str| {
        let o = sb
            .command(&["restore"])
            .args(args)
            .args(["--poll-interval", "100", "--wait-timeout", wait])
            .env("PATH", &path)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&[], "60");
    assert_eq!(code, Some(0), "{out}{err}");
    sb.reboot();
    std::fs::write(sb.ctl().join("patch-fails"), "").unwrap();
    let (code, _, err) = run(&["--resume"], "60");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("redeploy-etcd failed") && err.contains("oc patch etcd cluster"),
        "{err}"
    );
    let j: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sb.root().join("var/recovery/journal.json")).unwrap(),
    )
    .unwrap();
    assert!(
        j["redeploy_targets"]
            .as_object()
            .is_none_or(|o| o.is_empty()),
        "{j}"
    );
    // The patch goes through but the operator never moves: named, with the command to look.
    std::fs::remove_file(sb.ctl().join("patch-fails")).unwrap();
    std::fs::write(sb.ctl().join("stuck"), "").unwrap();
    let (code, _, err) = run(&["--resume"], "2");
    assert_eq!(code, Some(1), "{err}");
    let (cur, latest) = {
        let t = std::fs::read_to_string(sb.ctl().join("state/oc/etcd")).unwrap();
        let v: Vec<i64> = t.split_whitespace().map(|x| x.parse().unwrap()).collect();
        (v[0], v[1])
    };
    assert_eq!(cur, latest, "the stuck operator did not move");
    assert!(
        err.contains(&format!(
            "etcd is stuck at revision {cur}, wanted {}",
            latest + 1
        )) && err.contains("`oc get etcd cluster -o yaml`"),
        "{err}"
    );
    // Unstuck (the redeployment happens, as the patch would have made it):
    // --resume waits again, without a new patch.
    std::fs::remove_file(sb.ctl().join("stuck")).unwrap();
    std::fs::write(
        sb.ctl().join("state/oc/etcd"),
        format!("{cur} {}", latest + 1),
    )
    .unwrap();
    let patches_before = sb
        .calls()
        .iter()
        .filter(|c| c.contains("patch etcd"))
        .count();
    finish(&sb, "after the operator moved");
    let patches_after = sb
        .calls()
        .iter()
        .filter(|c| c.contains("patch etcd"))
        .count();
    assert_eq!(patches_before, patches_after, "etcd was patched again");
    check_restored(&sb, &before, "redeploy");
}

/// Every journal entry whose step changes the disk follows that change's
/// sync: in the sync log, each step's (or sub-step's) sync comes before its
/// fault point, which is where its journal entry is written.
#[test]
fn every_journal_entry_follows_the_sync_of_its_change() {
    let sb = Sandbox::new();
    let _before = take_backup(&sb);
    upgrade(&sb, 1);
    let log = sb.ctl().join("sync.log");
    for _ in 0..3 {
        let journal = sb.root().join("var/recovery/journal.json").exists();
        let mut c = sb.command(&["restore"]);
        c.args(if journal { &["--resume"][..] } else { &[][..] })
            .args([
                "--poll-interval",
                "100",
                "--wait-timeout",
                "60",
                "--etcd-restore",
                "native",
            ])
            .env("UPGRADE_RECOVERY_SYNC_LOG", &log);
        let o = c.output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        if out.contains("Recovery complete") {
            break;
        }
        sb.reboot();
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let changes = [
        ("restore-usr-local", "restore-usr-local", "syncfs"),
        ("restore-etc", "restore-etc", "syncfs"),
        ("restore-extras", "restore-extras", "syncfs"),
        ("disable-kubelet", "disable-kubelet", "syncfs"),
        ("restore-kubelet", "restore-kubelet", "syncfs"),
        ("enable-kubelet", "enable-kubelet", "syncfs"),
        ("restore-etcd:manifest-aside", "manifest-aside", "fsync-dir"),
        ("restore-etcd:member-saved", "member-saved", "fsync-dir"),
        (
            "restore-etcd:snapshot-restored",
            "snapshot-restored",
            "fsync-dir",
        ),
        (
            "restore-etcd:resources-extracted",
            "resources-extracted",
            "syncfs",
        ),
        ("restore-etcd:manifest-back", "manifest-back", "fsync-dir"),
    ];
    for (point, step, kind) in changes {
        let since = since_previous_point(&text, point, true);
        assert!(
            since
                .iter()
                .any(|l| l.starts_with(&format!("sync {step} {kind}"))),
            "{point}: no {kind} between the change and its journal entry:\n{}",
            since.join("\n")
        );
    }
    // The extras lie on the root's file system and on /var's (one here): each synced.
    assert!(text.contains("sync restore-extras syncfs"), "{text}");
}
