//! The recovery end to end on sandbox nodes: backup, a failed "upgrade",
//! OS rollback, restore across a reboot, with crashes injected at every step.

mod common;

use common::recovery::*;
use common::*;
use std::path::Path;
use upgrade_recovery::recovery::STEPS;

#[test]
fn end_to_end_backup_failed_upgrade_rollback_restore() {
    let sb = Sandbox::new();
    let before = take_backup(&sb);
    let pinned = sb.sh("ostree admin --sysroot=$ROOT/sysroot status | awk 'NR==1{print $2}'");
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
    let (code, out, _) = sb.run(&["restore", "--dry-run", "--output", "json"]);
    assert_eq!(code, 0);
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["steps"].as_array().unwrap().len(), STEPS.len());
    assert_eq!(plan["steps"][0]["id"], "preflight");
    assert_eq!(plan["steps"][0]["done"], false);

    // Roll the OS back to the pinned deployment, reboot, recover.
    sb.sh("rpm-ostree rollback");
    sb.reboot();
    assert_eq!(sb.sh("rpm-ostree status --json | jq -r '.deployments[] | select(.booted) | .checksum + \".\" + (.serial|tostring)'").trim(), pinned.trim());
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
    let mut points: Vec<String> = STEPS.iter().map(|s| s.0.to_string()).collect();
    points.extend(
        [
            "manifest-aside",
            "etcd-stopped",
            "member-saved",
            "snapshot-restored",
            "resources-extracted",
            "manifest-back",
        ]
        .iter()
        .map(|s| format!("restore-etcd:{s}")),
    );
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
    // A damaged backup: exit 4, nothing changed, no journal.
    let k = sb.root().join("var/recovery/current/kubelet.tar.zst");
    let good = std::fs::read(&k).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&k, &bad).unwrap();
    let calls = sb.calls().len();
    let (code, _, err) = restore(&sb, &[], None);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("kubelet.tar.zst"), "{err}");
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
