//! The native etcd restore as OpenShift 4.18+ restores
//! (cluster-etcd-operator b4786ae3, bindata/etcd/cluster-restore.sh and
//! restore-pod.yaml), on the sandbox's real etcd: revisions bumped past
//! every one served before and marked compacted, revision.json used and
//! kept, the data dir emptied of strays, all five containers of the etcd
//! pod waited for; and the refusal, before any change, on a node whose
//! etcd tools lack the flags.

mod common;

use common::recovery::*;
use common::*;

fn revision(sb: &Sandbox) -> u64 {
    let out = sb.etcdctl("get / -w json");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    v["header"]["revision"].as_u64().unwrap()
}

fn raft_index(sb: &Sandbox) -> u64 {
    let out = sb.etcdctl("endpoint status -w json");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    v[0]["Status"]["raftIndex"].as_u64().unwrap()
}

/// `restore --etcd-restore native`, then what status names after the
/// reboot: a plain `--resume`, as the auto-resume unit runs it. The node
/// has cluster-restore.sh (the rhcos profile), so a resume that chose again
/// (`auto`) would run the script: the journal records the choice. Old code
/// (found with the VM lane, which had to pass the flag to the unit through
/// a drop-in) restored with the script after the reboot.
fn recover_native(sb: &Sandbox) -> (String, String) {
    let mut all = (String::new(), String::new());
    for _ in 0..4 {
        let journal = sb.root().join("var/recovery/journal.json").exists();
        let args = if journal {
            vec!["--resume"]
        } else {
            vec!["--etcd-restore", "native"]
        };
        let (code, out, err) = restore(sb, &args, None);
        all.0 += &out;
        all.1 += &err;
        match code {
            Some(0) if out.contains("Reboot now") => sb.reboot(),
            Some(0) if out.contains("Recovery complete") => return all,
            _ => panic!("restore {args:?} gave {code:?}\n{out}\n{err}"),
        }
    }
    panic!("the recovery did not finish");
}

#[test]
fn native_restore_bumps_past_every_revision_served_and_compacts() {
    let sb = Sandbox::with_profile("rhcos");
    let before = take_backup(&sb);
    let snap_rev = revision(&sb);
    // The upgrade writes on: clients see revisions above the snapshot's.
    upgrade(&sb, 1);
    for i in 0..20 {
        sb.etcdctl(&format!("put /upgrade/churn-{i} v"));
    }
    let served = revision(&sb);
    assert!(served > snap_rev + 20);
    // etcd-rev's revision.json (pkg/cmd/rev/rev.go), and a stray in the
    // data dir (cluster-restore.sh: fio artifacts, stray snapshots).
    let max_raft = raft_index(&sb);
    let rev_json = format!(
        r#"{{"clusterId":1,"raftIndex":{{"https://127.0.0.1:2379":{max_raft}}},"maxRaftIndex":{max_raft},"created":"2026-12-05 03:00:00 +0000 UTC"}}"#
    );
    std::fs::write(sb.root().join("var/lib/etcd/revision.json"), &rev_json).unwrap();
    std::fs::write(sb.root().join("var/lib/etcd/fio-test.bin"), "x").unwrap();
    sb.reboot();

    let (out, err) = recover_native(&sb);
    check_restored(&sb, &before, "native etcd restore");
    let after = revision(&sb);
    let bump = max_raft * 6 / 5;
    assert!(
        after > served,
        "restored revision {after} not above {served} served before\n{out}\n{err}"
    );
    assert_eq!(
        after,
        snap_rev + bump,
        "snapshot revision + floor(maxRaftIndex*1.2)"
    );
    // A client that saw a revision after the backup: its watch from there is
    // refused as compacted, not silently served an older history.
    let w = sb.sh(&format!(
        r#". $CTL/state/ports; c=$ROOT/etc/kubernetes/static-pod-resources/etcd-certs
ETCDCTL_API=3 timeout 10 etcdctl --endpoints=https://127.0.0.1:$CLIENT_PORT --cacert=$c/configmaps/etcd-serving-ca/ca-bundle.crt --cert=$c/secrets/etcd-all-certs/etcd-peer-sno.crt --key=$c/secrets/etcd-all-certs/etcd-peer-sno.key watch /upgrade/key-1 --rev {} 2>&1 || echo rc=$?"#,
        served - 5
    ));
    assert!(
        w.contains("required revision has been compacted") && w.contains("rc="),
        "{w}"
    );
    // revision.json kept for a second restore, as the restore pod does; the
    // stray moved out as cluster-restore.sh does.
    assert_eq!(
        std::fs::read_to_string(sb.root().join("var/lib/etcd/revision.json")).unwrap(),
        rev_json
    );
    assert!(sb
        .root()
        .join("var/lib/etcd-backup/extra-data-dir-contents/fio-test.bin")
        .exists());
    assert!(!sb.root().join("var/lib/etcd/fio-test.bin").exists());
    // All five containers of the etcd pod were waited for.
    let calls = sb.calls();
    for n in ["etcd", "etcdctl", "etcd-metrics", "etcd-readyz", "etcd-rev"] {
        let l = format!("--label io.kubernetes.container.name={n}");
        assert!(
            calls
                .iter()
                .any(|c| c.starts_with("crictl ps") && c.contains(&l)),
            "{n} not waited for: {calls:#?}"
        );
    }
}

/// Debian 12's etcdctl 3.4 has neither --bump-revision nor
/// --mark-compacted, and no etcdutl: native refuses before any change, says
/// why and which mode works; the script mode still runs.
#[test]
fn native_restore_refuses_without_a_bumping_tool() {
    let sb = Sandbox::with_profile("rhcos");
    take_backup(&sb);
    let before =
        sb.sh("cd $ROOT && find etc var/lib/etcd var/recovery -printf '%p %s\\n' | sort | md5sum");
    // The node's PATH without the etcdutl of /usr/local/bin: etcdctl 3.4 only.
    let path = format!("{}:/usr/bin:/bin", sb.ctl().join("bin").display());
    for dry in [true, false] {
        let mut c = sb.command(&["restore", "--etcd-restore", "native"]);
        if dry {
            c.arg("--dry-run");
        }
        let o = c.env("PATH", &path).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("--mark-compacted --bump-revision")
                && err.contains("etcdctl (etcdctl version: 3.4.23) on this node lack those flags")
                && err.contains("nothing was changed")
                && err.contains("upgrade-recovery restore --etcd-restore=script"),
            "{err}"
        );
    }
    assert_eq!(
        sb.sh("cd $ROOT && find etc var/lib/etcd var/recovery -printf '%p %s\\n' | sort | md5sum"),
        before
    );
    assert!(!sb.root().join("var/recovery/journal.json").exists());
}
