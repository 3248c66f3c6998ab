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
    let sb = Sandbox::new();
    let ctl = |args: &str| {
        sh(&format!(
            "{}/scripts/sandbox.sh {args} >/dev/null",
            q(&project())
        ))
    };
    let dir = q(sb.dir.path());
    let order = || -> Vec<String> {
        sb.sh("ostree admin --sysroot=$ROOT/sysroot status")
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
    sb.sh("ostree admin --sysroot=$ROOT/sysroot undeploy 1 && ostree admin --sysroot=$ROOT/sysroot undeploy 0");
    assert_eq!(order().len(), 1);
    let (c, e) = try_sh(&sb, "rpm-ostree rollback");
    assert_eq!(
        (c, e.as_str()),
        (1, "error: No rollback deployment found\n")
    );
}
