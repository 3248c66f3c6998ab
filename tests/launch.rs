//! `launch-backup`: the Job's entrypoint, in a jail like the Job's, inside a
//! private mount namespace.

mod common;

use common::*;

/// A shell script that builds the Job's jail for the sandbox in a private
/// mount namespace and execs the tool there (extra env before the binary).
fn jail_script(sb: &Sandbox, jail: &std::path::Path, env: &str) -> String {
    jail_script_with(sb, jail, env, "")
}

/// [`jail_script`] with more arguments for launchBackup.
fn jail_script_with(sb: &Sandbox, jail: &std::path::Path, env: &str, args: &str) -> String {
    format!(
        r#"J={j}; SB={sb}
mkdir -p "$J"
exec unshare -m --propagation private bash -euc '
mount --rbind "$1" "$0"
for d in usr/bin usr/lib usr/lib64 usr/libexec usr/share; do
  [ -d /$d ] || continue; mkdir -p "$0/$d"; mount --bind /$d "$0/$d"; mount -o remount,bind,ro "$0/$d"
done
mkdir -p "$0$2"; mount --rbind "$2" "$0$2"
mount -t proc proc "$0/proc"
PATH="$2/ctl/bin:/usr/bin" {env} exec "$3" launchBackup --host-dir "$0" --min-free 0 {args}
' "$J" "$SB/root" "$SB" {bin}"#,
        j = q(jail),
        sb = q(sb.dir.path()),
        bin = q(&binary()),
    )
}

#[test]
fn the_job_entrypoint_backs_up_from_the_jail_and_puts_the_flag_back() {
    let sb = Sandbox::new();
    let t = TempDir::new("jail");
    let out = std::process::Command::new("bash")
        .args(["-c", &jail_script(&sb, &t.path().join("host"), "")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Backup complete"));
    let (code, outv, _) = sb.run(&["verify"]);
    assert_eq!(code, 0, "{outv}");
    assert!(sb.root().join("run/ostree-booted").exists());
    assert!(!sb.root().join("run/ostree-booted.tmp").exists());
    // The jail as the Job's: /dev/null, the links.
    let dn = sh(&format!("stat -c '%F %t:%T' {}/dev/null", q(&sb.root())));
    assert_eq!(dn.trim(), "character special file 1:3");
    assert_eq!(
        std::fs::read_link(sb.root().join("ostree"))
            .unwrap()
            .to_str(),
        Some("sysroot/ostree")
    );
    // The host's mount table is untouched (private namespace).
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&t.path().display().to_string()));
}

#[test]
fn sigterm_from_the_job_deadline_puts_the_flag_back() {
    let sb = Sandbox::new();
    let t = TempDir::new("jail");
    let child = std::process::Command::new("bash")
        .args([
            "-c",
            &jail_script(
                &sb,
                &t.path().join("host"),
                "UPGRADE_RECOVERY_PAUSE_AT=launch:jail",
            ),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let tmp = sb.root().join("run/ostree-booted.tmp");
    for _ in 0..600 {
        if tmp.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(tmp.exists(), "the flag was renamed for the run");
    assert!(!sb.root().join("run/ostree-booted").exists());
    sh(&format!("kill -TERM {}", child.id()));
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.contains("put back"), "{err}");
    assert!(sb.root().join("run/ostree-booted").exists());
    assert!(!tmp.exists());
    assert_eq!(sb.run(&["verify"]).0, 4, "no backup was made");
}

/// 12.3: the hub's Job run again after a failed upgrade refuses before any
/// change, as `backup` does: the pre-upgrade backup and its deployment stay.
#[test]
fn the_job_after_a_failed_upgrade_refuses_and_keeps_the_backup() {
    let sb = Sandbox::new();
    assert_eq!(sb.run(&["backup", "--min-free", "0"]).0, 0);
    let manifest = sb.sh("sha256sum $ROOT/var/recovery/manifest.json");
    sh(&format!(
        "{p}/scripts/sandbox.sh cluster-upgrade {d} 4.17.0 Partial >/dev/null; {p}/scripts/sandbox.sh upgrade-os {d} 417.94.202411010000-0 >/dev/null",
        p = q(&project()),
        d = q(sb.dir.path())
    ));
    sb.reboot();
    let status = sb.sh("ostree admin --sysroot=$ROOT/sysroot status");
    let t = TempDir::new("jail");
    let out = std::process::Command::new("bash")
        .args(["-c", &jail_script(&sb, &t.path().join("host"), "")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--replace-backup"), "{err}");
    assert_eq!(
        sb.sh("sha256sum $ROOT/var/recovery/manifest.json"),
        manifest
    );
    assert_eq!(sb.sh("ostree admin --sysroot=$ROOT/sysroot status"), status);
    assert_eq!(sb.run(&["verify"]).0, 0);
}

/// `launchBackup --dry-run`: the jail and the flag's rename as the real
/// run's (ostree cannot read the deployments in the jail without it), the
/// flag put back, and the backup dir and the deployments unchanged.
#[test]
fn the_job_entrypoint_dry_run_puts_the_flag_back_and_changes_nothing() {
    let sb = Sandbox::new();
    let state = || {
        (
            sb.sh("ls -lAR --time-style=+%s.%N $ROOT/var/recovery"),
            sb.sh("ostree admin --sysroot=$ROOT/sysroot status"),
        )
    };
    let before = state();
    let t = TempDir::new("jail");
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            &jail_script_with(&sb, &t.path().join("host"), "", "--dry-run"),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Dry run") && stdout.contains("undeploy rhcos"),
        "{stdout}"
    );
    assert!(sb.root().join("run/ostree-booted").exists());
    assert!(!sb.root().join("run/ostree-booted.tmp").exists());
    assert_eq!(state(), before);
    assert_eq!(sb.run(&["verify"]).0, 4, "no backup was made");
}
