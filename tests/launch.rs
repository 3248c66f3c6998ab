//! `launch-backup`: the Job's entrypoint, in the jail of TALM's Job (its
//! exact mounts, [`Sandbox::job`]) inside a private mount namespace, on the
//! `rhcos` profile (RHCOS's /boot: a read-only file system of its own).

mod common;

use common::*;
use upgrade_recovery::testing::ostree;

/// The Job (TALM's mounts, [`Sandbox::job`]) in a jail below a temp dir.
fn job(sb: &Sandbox, t: &TempDir, env: &str, args: &str) -> std::process::Command {
    sb.job(&t.path().join("host"), env, args, false)
}

/// The host's mount options of the node's /boot (RHCOS: a file system of
/// its own, read-only).
fn boot_options(sb: &Sandbox) -> String {
    sh(&format!(
        "findmnt -n -o OPTIONS --mountpoint {}",
        q(&sb.root().join("boot"))
    ))
}

#[test]
fn the_job_entrypoint_backs_up_from_the_jail_and_puts_the_flag_back() {
    let sb = Sandbox::with_profile("rhcos");
    let t = TempDir::new("jail");
    assert!(boot_options(&sb).split(',').any(|o| o == "ro"));
    let before = ostree::parse_admin_status(&sb.ostree_status()).unwrap();
    assert_eq!(before.len(), 2);
    // ostree 2023.6+ writes a GVariant into the flag (ostree-prepare-root):
    // the rename keeps it, putting it back restores it byte for byte.
    let flag = sb.root().join("run/ostree-booted");
    std::fs::write(&flag, b"composefs\0\x01backing-root\0").unwrap();
    let out = job(&sb, &t, "", "").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Backup complete"));
    let (code, outv, _) = sb.run(&["verify"]);
    assert_eq!(code, 0, "{outv}");
    // The deployments were read in the jail (RHCOS: /boot its own file
    // system, /sysroot/boot empty), the booted one kept and pinned, the
    // other undeployed from a private mount namespace: the host's /boot
    // is still mounted read-only.
    let after = ostree::parse_admin_status(&sb.ostree_status()).unwrap();
    assert_eq!(after.len(), 1, "{after:#?}");
    assert!(
        after[0].is(&before[0].id()) && after[0].pinned,
        "{after:#?}"
    );
    assert!(
        boot_options(&sb).split(',').any(|o| o == "ro"),
        "{}",
        boot_options(&sb)
    );
    let booted = sb.sh("cat $CTL/state/booted");
    assert!(booted.contains(&before[0].checksum), "{booted}");
    assert_eq!(
        std::fs::read(&flag).unwrap(),
        b"composefs\0\x01backing-root\0"
    );
    assert!(!sb.root().join("run/ostree-booted.tmp").exists());
    // The jail's /dev/null and links were made in the emptyDir, not on
    // the host.
    for p in ["dev", "bin", "lib", "lib64"] {
        assert!(!sb.root().join(p).exists(), "{p} made on the host");
    }
    // The host's mount table is untouched (private namespace).
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&t.path().display().to_string()));
}

#[test]
fn sigterm_from_the_job_deadline_puts_the_flag_back() {
    let sb = Sandbox::with_profile("rhcos");
    let t = TempDir::new("jail");
    let child = job(&sb, &t, "UPGRADE_RECOVERY_PAUSE_AT=launch:jail", "")
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
    let sb = Sandbox::with_profile("rhcos");
    assert_eq!(sb.run(&["backup", "--min-free", "0"]).0, 0);
    let manifest = sb.sh("sha256sum $ROOT/var/recovery/manifest.json");
    sh(&format!(
        "{p}/scripts/sandbox.sh cluster-upgrade {d} 4.17.0 Partial >/dev/null; {p}/scripts/sandbox.sh upgrade-os {d} 417.94.202411010000-0 >/dev/null",
        p = q(&project()),
        d = q(sb.dir.path())
    ));
    sb.reboot();
    let status = sb.sh("ostree admin --sysroot=$ROOT status");
    let t = TempDir::new("jail");
    let out = job(&sb, &t, "", "").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--replace-backup"), "{err}");
    assert_eq!(
        sb.sh("sha256sum $ROOT/var/recovery/manifest.json"),
        manifest
    );
    assert_eq!(sb.sh("ostree admin --sysroot=$ROOT status"), status);
    assert_eq!(sb.run(&["verify"]).0, 0);
}

/// `launchBackup --dry-run`: the jail and the flag's rename as the real
/// run's (ostree cannot read the deployments in the jail without it), the
/// flag put back, and the backup dir and the deployments unchanged.
#[test]
fn the_job_entrypoint_dry_run_puts_the_flag_back_and_changes_nothing() {
    let sb = Sandbox::with_profile("rhcos");
    let state = || {
        (
            sb.sh("ls -lAR --time-style=+%s.%N $ROOT/var/recovery"),
            sb.sh("ostree admin --sysroot=$ROOT status"),
        )
    };
    let before = state();
    let t = TempDir::new("jail");
    let out = job(&sb, &t, "", "--dry-run").output().unwrap();
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

/// The Job's container has `tty: true` (TALM's Job template): its output
/// is a terminal, read back as the pod's log. The log holds whole lines:
/// no carriage-return redraws, no erase-line sequences (the terminal's
/// own "\r\n" line ends aside).
#[test]
fn the_job_on_a_tty_logs_whole_lines() {
    let sb = Sandbox::with_profile("rhcos");
    let t = TempDir::new("jail");
    let out = sb
        .job(&t.path().join("host"), "", "", true)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("Backup complete"), "{log}");
    assert!(!log.contains('\r'), "a redraw in the log: {log:?}");
    assert!(!log.contains("\x1b[K"), "an erase-line in the log: {log:?}");
    assert_eq!(sb.run(&["verify"]).0, 0);
}

/// The MCO stages an update and finalizes it at shutdown. The Job does not
/// see it in `ostree admin status` (libostree loads a staged deployment
/// only on a booted host), but undeploying anything there would make
/// ostree's cleanup delete the staged deployment's directory. The backup
/// refuses, names it, and changes nothing: the record and the directory
/// stay, the deployments are as they were.
#[test]
fn the_job_never_undeploys_while_a_deployment_is_staged() {
    let sb = Sandbox::with_profile("rhcos");
    let staged = sh(&format!(
        "{}/scripts/sandbox.sh stage-os {} 417.94.202411010000-0",
        q(&project()),
        q(sb.dir.path())
    ));
    let name = staged.trim().rsplit(' ').next().unwrap().to_string();
    let dir = sb
        .root()
        .join("sysroot/ostree/deploy/rhcos/deploy")
        .join(&name);
    assert!(dir.is_dir(), "{staged}");
    let before = sb.ostree_status();
    let t = TempDir::new("jail");
    let out = job(&sb, &t, "", "").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("staged") && err.contains(&name), "{err}");
    assert!(dir.is_dir(), "the staged deployment's directory went");
    assert!(sb.root().join("run/ostree/staged-deployment").exists());
    assert_eq!(sb.ostree_status(), before);
    assert!(sb.root().join("run/ostree-booted").exists());
}
