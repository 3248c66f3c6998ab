//! The admin at the node: `status` asked as JSON, its next command run in
//! a shell as printed (the wrapper or the tool, pointed at the sandbox),
//! and a failed upgrade to recover from. Shared by tests/procedure.rs and
//! tests/outage.rs.

use super::*;
use serde_json::Value;
use std::process::{Command, Stdio};

/// A failed upgrade: files, etcd and a new OS deployment, booted.
pub fn fail_upgrade(sb: &Sandbox) {
    sb.sh(r#"cd $ROOT
echo upgraded >> etc/hostname; echo new > etc/new-in-upgrade
echo tool > var/usrlocal/bin/new-tool
echo '{"kind":"X"}' > var/lib/kubelet/config.json"#);
    sb.etcdctl("put /upgrade/key v");
    sh(&format!(
        "{}/scripts/sandbox.sh upgrade-os {} 417.94.202411010000-0 >/dev/null",
        q(&project()),
        q(sb.dir.path())
    ));
    sb.reboot();
}

/// `status --output json`.
pub fn status(sb: &Sandbox) -> Value {
    let (code, out, err) = sb.run(&["status", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// Assert the state status reports and return its next command.
pub fn expect_state(sb: &Sandbox, state: &str) -> String {
    let st = status(sb);
    assert_eq!(st["state"]["state"], state, "{st:#}");
    let (_, text, _) = sb.run(&["status"]);
    assert!(
        text.contains("State: ") && text.contains("Next: "),
        "{text}"
    );
    st["next_command"].as_str().unwrap().to_string()
}

/// The shell command line for an admin command as printed: the wrapper or
/// the tool, pointed at the sandbox node; waits made short for the test.
pub fn shell_line(sb: &Sandbox, cmd: &str) -> String {
    let root = q(&sb.root());
    let fast = |rest: &str| {
        if rest.contains("restore") || rest.contains("--resume") || rest.trim().is_empty() {
            " --poll-interval 100ms --wait-timeout 60s"
        } else if rest.starts_with(" backup")
            || rest.contains(" backup ")
            || rest.ends_with(" backup")
        {
            " --min-free 0"
        } else {
            ""
        }
    };
    // The wrapper of any backup dir (`D/upgrade-recovery.sh`), under the root.
    let wrapper = cmd
        .split_once("/upgrade-recovery.sh")
        .filter(|(d, _)| d.starts_with('/') && !d.contains(' '));
    if let Some((dir, rest)) = wrapper {
        format!(
            "$ROOT{dir}/upgrade-recovery.sh --root {root}{rest}{}",
            fast(rest)
        )
    } else if let Some(rest) = cmd.strip_prefix("upgrade-recovery") {
        format!("{} --root {root}{rest}{}", q(&binary()), fast(rest))
    } else {
        panic!("not a command of this tool: {cmd}")
    }
}

/// Run a command line in a shell as the admin would; (code, stdout, stderr).
pub fn admin(sb: &Sandbox, cmd: &str) -> (i32, String, String) {
    let line = shell_line(sb, cmd);
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("ROOT={}; {line}", q(&sb.root())))
        .env("PATH", sb.path_env())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run the next command status named; `systemctl reboot` reboots the
/// sandbox; `oc ...` (the cluster checks a completed recovery names) asks
/// the sandbox's API (the oc shim) as printed.
pub fn run_next(sb: &Sandbox, cmd: &str) -> (i32, String, String) {
    if cmd == "systemctl reboot" {
        sb.reboot();
        return (0, String::new(), String::new());
    }
    if cmd.starts_with("oc ") {
        let out = Command::new("bash")
            .arg("-c")
            .arg(cmd)
            .env("PATH", sb.path_env())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        return (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
    }
    admin(sb, cmd)
}
