//! The sandbox's shims refuse the way the real programs refuse (README, "The
//! sandbox node", says where each behaviour was read).

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
