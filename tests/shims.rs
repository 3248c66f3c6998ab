//! The sandbox's shims refuse the way the real programs refuse
//! (docs/sandbox.md says where each behaviour was read).

mod common;

use common::*;

/// (exit code, stderr) of a shell line with the shims on PATH.
fn try_sh(sb: &Sandbox, line: &str) -> (i32, String) {
    let o = std::process::Command::new("bash")
        .args(["-c", line])
        .env("PATH", sb.path_env())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn shims_refuse_like_the_real_programs() {
    let sb = Sandbox::new();

    // systemctl: unknown units.
    let (c, e) = try_sh(&sb, "systemctl start x.service");
    assert_eq!(
        (c, e.as_str()),
        (5, "Failed to start x.service: Unit x.service not found.\n")
    );
    let (c, e) = try_sh(&sb, "systemctl restart x");
    assert_eq!(
        (c, e.as_str()),
        (
            5,
            "Failed to restart x.service: Unit x.service not found.\n"
        )
    );
    let (c, e) = try_sh(&sb, "systemctl stop x.service");
    assert_eq!(
        (c, e.as_str()),
        (5, "Failed to stop x.service: Unit x.service not loaded.\n")
    );
    let (c, e) = try_sh(&sb, "systemctl enable x.service");
    assert_eq!(
        (c, e.as_str()),
        (
            1,
            "Failed to enable unit: Unit file x.service does not exist.\n"
        )
    );
    assert_eq!(try_sh(&sb, "systemctl start kubelet.service").0, 0);

    // crio wipe while CRI-O runs; crictl and oc once it is stopped.
    assert_eq!(try_sh(&sb, "systemctl is-active crio.service").0, 0);
    let (c, e) = try_sh(&sb, "crio wipe -f");
    assert_eq!(c, 1);
    assert!(e.contains("crio is running"), "{e}");
    assert_eq!(
        try_sh(&sb, "systemctl stop kubelet.service crio.service").0,
        0
    );
    let (c, e) = try_sh(&sb, "crictl ps -q");
    assert_eq!(c, 1);
    assert!(
        e.contains("crio.sock: connect: no such file or directory"),
        "{e}"
    );
    let (c, e) = try_sh(&sb, "oc get etcd cluster -o json");
    assert_eq!(c, 1);
    assert!(e.contains("was refused"), "{e}");
    assert_eq!(try_sh(&sb, "crio wipe -f").0, 0, "wipes once stopped");

    // rpm-ostree without /run/ostree-booted; with it, it works.
    assert_eq!(try_sh(&sb, "rpm-ostree status --json >/dev/null").0, 0);
    std::fs::remove_file(sb.root().join("run/ostree-booted")).unwrap();
    let (c, e) = try_sh(&sb, "rpm-ostree status --json");
    assert_eq!(
        (c, e.as_str()),
        (
            1,
            "error: This system was not booted via libostree; cannot operate\n"
        )
    );
    let (c, e) = try_sh(&sb, "container=podman rpm-ostree status");
    assert_eq!(c, 1);
    assert!(
        e.contains("found $container=podman environment variable"),
        "{e}"
    );
}

/// `rpm-ostree rollback` as coreos/rpm-ostree's rollback_transaction_execute
/// over ostree_sysroot_query_deployments_for, on the booted stateroot only:
/// a rollback deployment (after the booted one) goes first; with only a
/// pending one (before it), the booted one goes first; neither is an error.
#[test]
fn rpm_ostree_rollback_reorders_as_upstream() {
    let sb = Sandbox::with_profile("rhcos");
    let ctl = |args: &str| {
        sh(&format!(
            "{}/scripts/sandbox.sh {args} >/dev/null",
            q(&project())
        ))
    };
    let dir = q(sb.dir.path());
    let order = || -> Vec<String> {
        sb.sh("ostree admin --sysroot=$ROOT status")
            .lines()
            .filter(|l| !l.starts_with("    "))
            .map(|l| l.trim_start_matches(['*', ' ']).to_string())
            .collect()
    };
    // [*n, o]: the rollback one goes first.
    let before = order();
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(try_sh(&sb, "rpm-ostree rollback").0, 0);
    assert_eq!(order(), [before[1].clone(), before[0].clone()]);
    // [o, *n]: a pending one only: the booted one goes first.
    ctl(&format!("reboot {dir} 1"));
    let before = order();
    assert_eq!(try_sh(&sb, "rpm-ostree rollback").0, 0);
    assert_eq!(order(), [before[1].clone(), before[0].clone()]);
    // [c, *n, o]: pending c and rollback o: o goes first.
    ctl(&format!("upgrade-os {dir} 417.1 rhcos"));
    ctl(&format!("reboot {dir} 1"));
    let before = order();
    assert_eq!(before.len(), 3, "{before:?}");
    assert_eq!(try_sh(&sb, "rpm-ostree rollback").0, 0);
    assert_eq!(
        order(),
        [before[2].clone(), before[0].clone(), before[1].clone()]
    );
    // The booted one alone: neither.
    sb.sh(". $CTL/lib/bootfs.sh; boot_rw $ROOT ostree admin --sysroot=$ROOT undeploy 1 && boot_rw $ROOT ostree admin --sysroot=$ROOT undeploy 0");
    assert_eq!(order().len(), 1);
    let (c, e) = try_sh(&sb, "rpm-ostree rollback");
    assert_eq!(
        (c, e.as_str()),
        (1, "error: No rollback deployment found\n")
    );
}

/// The rpm-ostree shim with a staged deployment (recorded as libostree
/// records it): `status --json` lists it first, `staged: true`; `rollback`
/// refuses as upstream ("Staged deployment (remove with cleanup -p)",
/// `rollback_transaction_execute`); `cleanup -p` removes the booted
/// stateroot's deployments before the booted one except pinned ones
/// (`rpmostree_syscore_filter_deployments`), the staged one with its record
/// and directory.
#[test]
fn rpm_ostree_with_a_staged_deployment_refuses_rollback_and_cleans_up_pending() {
    let sb = Sandbox::with_profile("rhcos");
    let dir = q(sb.dir.path());
    let project = q(&project());
    // [b, *a]: the older one booted (a boot menu choice), b pending; pin b.
    sh(&format!(
        "{project}/scripts/sandbox.sh reboot {dir} 1 >/dev/null"
    ));
    sb.sh("ostree admin --sysroot=$ROOT pin 0 >/dev/null");
    let staged = sh(&format!(
        "{project}/scripts/sandbox.sh stage-os {dir} 417.2"
    ));
    let name = staged.trim().rsplit(' ').next().unwrap().to_string();
    let json: serde_json::Value = serde_json::from_str(&sb.sh("rpm-ostree status --json")).unwrap();
    let ds = json["deployments"].as_array().unwrap();
    assert_eq!(ds.len(), 3, "{json:#}");
    assert_eq!(ds[0]["staged"], true);
    assert_eq!(
        format!(
            "{}.{}",
            ds[0]["checksum"].as_str().unwrap(),
            ds[0]["serial"]
        ),
        name
    );
    assert_eq!(
        try_sh(&sb, "rpm-ostree rollback"),
        (
            1,
            "error: Staged deployment (remove with cleanup -p)\n".into()
        )
    );
    let order = || -> Vec<String> {
        sb.ostree_status()
            .lines()
            .filter(|l| !l.starts_with("    "))
            .map(|l| l.trim_start_matches(['*', ' ']).to_string())
            .collect()
    };
    let before = order();
    assert_eq!(try_sh(&sb, "rpm-ostree cleanup -p").0, 0);
    assert!(!sb.root().join("run/ostree/staged-deployment").exists());
    assert!(!sb
        .root()
        .join("sysroot/ostree/deploy/rhcos/deploy")
        .join(&name)
        .exists());
    assert_eq!(order(), before, "the pinned pending one is kept");
    // Unpinned, the pending one goes.
    sb.sh("ostree admin --sysroot=$ROOT pin --unpin 0 >/dev/null");
    assert_eq!(try_sh(&sb, "rpm-ostree cleanup -p").0, 0);
    assert_eq!(order(), [before[1].clone()]);
}

/// The VM guest runs the shims' reconcile from two node daemons and the
/// tool's calls at once. Concurrent reconciles that find etcd down start
/// exactly one etcd and the API answers (the VM lane's procedure once
/// diverged: two etcds started, the second failed to bind, its pid was
/// recorded and `oc` refused for good).
#[test]
fn concurrent_reconciles_start_one_etcd_and_the_api_answers() {
    let sb = Sandbox::new();
    let st = sb.ctl().join("state");
    // A slow guest's window between "etcd is down" and "etcd started": the
    // ports file is read in it.
    sh(&format!("echo 'sleep 0.3' >> {}", q(&st.join("ports"))));
    for round in 0..3 {
        let (c, e) = try_sh(
            &sb,
            "systemctl stop kubelet.service crio.service && crio wipe -f && systemctl start crio.service",
        );
        assert_eq!(c, 0, "round {round}: {e}");
        assert_eq!(
            sh(&format!(
                "cat {} 2>/dev/null || true",
                q(&st.join("etcd.pid"))
            )),
            "",
            "round {round}: etcd down once the pods are gone"
        );
        // The kubelet comes up while eight shim calls reconcile at once.
        let (c, e) = try_sh(
            &sb,
            &format!(
                "touch {}; for i in 1 2 3 4 5 6 7 8; do crictl ps -q >/dev/null & done; wait",
                q(&st.join("active/kubelet.service"))
            ),
        );
        assert_eq!(c, 0, "round {round}: {e}");
        let data = sb.root().join("var/lib/etcd");
        let n = sh(&format!(
            "{{ pgrep -f -- '--data-dir {}( |$)' || true; }} | wc -l",
            data.display()
        ));
        assert_eq!(n.trim(), "1", "round {round}: etcd processes");
        let (c, e) = try_sh(&sb, "oc get etcd cluster -o json");
        assert_eq!(c, 0, "round {round}: {e}");
    }
}
