//! Backup generations (issue 14): a backup killed at any instant of the
//! switch to its generation, or of the conversion of the flat format, leaves
//! a complete backup that verifies and that a recovery restores. Plus the
//! backup's refusals that protect the backup a recovery needs (12.3, 12.4,
//! 13.3).

mod common;

use common::recovery::*;
use common::*;
use std::io::BufRead;
use std::process::{Command, Stdio};

/// Every fault point of the switch, in order (`src/store/mod.rs`).
const SWITCH: [&str; 7] = [
    "backup:manifest",
    "switch:before",
    "switch:link-made",
    "switch:renamed",
    "switch:current",
    "switch:cleanup",
    "switch:done",
];

/// Every fault point of the conversion of a flat backup, which the first
/// backup of this release does before it builds its generation.
const CONVERSION: [&str; 14] = [
    "convert:before",
    "convert:linked",
    "switch:link-made",
    "switch:renamed",
    "convert:current",
    "convert:link:upgrade-recovery",
    "convert:link:upgrade-recovery.sh",
    "convert:link:etc.exclude.list",
    "convert:exchanged:cluster",
    "convert:link:cluster",
    "convert:link:manifest.json",
    "convert:cleanup",
    "convert:done",
    // and the switch to the new generation after it
    "switch:current",
];

/// The paths the docs and OpenShift's scripts use.
const DOCUMENTED: [&str; 5] = [
    "upgrade-recovery",
    "upgrade-recovery.sh",
    "etc.exclude.list",
    "cluster",
    "manifest.json",
];

fn killed_backup(sb: &Sandbox, point: &str) {
    let o = sb
        .command(&["backup", "--min-free", "0"])
        .env("UPGRADE_RECOVERY_CRASH_AT", point)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        None,
        "{point}: not reached: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Turn the backup into the flat format that has landed (every file in the
/// backup dir, no generations), as the previous release leaves it.
fn flatten(sb: &Sandbox) {
    sb.sh(
        r#"cd $ROOT/var/recovery && g=$(readlink current) && rm -f current manifest.json cluster etc.exclude.list upgrade-recovery upgrade-recovery.sh && mv $g/* . && rmdir $g"#,
    );
    assert!(sb.root().join("var/recovery/manifest.json").is_file());
}

/// `verify` exits 0, and every documented path works: the wrapper runs the
/// binary, `cluster/` holds the snapshot and static-pod tarball the manifest
/// names, the exclude list and the manifest are readable.
fn check_backup(sb: &Sandbox, what: &str) {
    let (code, out, err) = sb.run(&["verify"]);
    assert_eq!(code, 0, "{what}: verify: {out}{err}");
    let d = sb.root().join("var/recovery");
    let o = Command::new(d.join("upgrade-recovery.sh"))
        .args(["--root", sb.root().to_str().unwrap(), "verify"])
        .env("PATH", sb.path_env())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{what}: the wrapper");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("manifest.json")).unwrap()).unwrap();
    for f in [&m["etcd"]["file"], &m["static_pods"]["file"]] {
        let f = f.as_str().unwrap();
        assert!(f.starts_with("cluster/"), "{f}");
        assert!(
            d.join(f).is_file(),
            "{what}: {f} through the documented path"
        );
    }
    assert!(
        std::fs::read_to_string(d.join("etc.exclude.list"))
            .unwrap()
            .contains("kubernetes/manifests"),
        "{what}: etc.exclude.list"
    );
}

/// A backup of the node as it is, a backup killed at `point`, then the
/// checks, a failed upgrade and a recovery to the state before it.
fn cycle(sb: &Sandbox, n: u32, point: &str, flat: bool) {
    let before = take_backup(sb);
    if flat {
        flatten(sb);
        check_backup(sb, "the flat format");
    }
    killed_backup(sb, point);
    check_backup(sb, point);
    upgrade(sb, n);
    finish(sb, point);
    check_restored(sb, &before, point);
    check_backup(sb, point);
}

#[test]
fn a_backup_killed_at_each_step_of_the_switch_leaves_a_backup_that_restores() {
    let sb = Sandbox::new();
    for (n, point) in SWITCH.iter().enumerate() {
        cycle(&sb, n as u32, point, false);
    }
    // The next backup clears what the killed ones left: one generation.
    assert_eq!(sb.run(&["backup", "--min-free", "0"]).0, 0);
    let names = sb.sh("ls -A $ROOT/var/recovery | tr '\\n' ' '");
    assert_eq!(
        names
            .split_whitespace()
            .filter(|n| n.starts_with("gen-"))
            .count(),
        1,
        "{names}"
    );
}

#[test]
fn a_flat_backup_is_restored_and_converted_safely_at_each_step() {
    let sb = Sandbox::new();
    // The flat format is read and restored as today.
    let before = take_backup(&sb);
    flatten(&sb);
    check_backup(&sb, "flat");
    upgrade(&sb, 100);
    finish(&sb, "flat");
    check_restored(&sb, &before, "flat");
    for (n, point) in CONVERSION.iter().enumerate() {
        cycle(&sb, n as u32, point, true);
    }
    // A finished conversion: links only, one generation, no flat files.
    assert_eq!(sb.run(&["backup", "--min-free", "0"]).0, 0);
    let d = sb.root().join("var/recovery");
    for p in DOCUMENTED {
        assert!(
            std::fs::symlink_metadata(d.join(p))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{p}"
        );
    }
    assert!(!d.join("etc.tar.zst").exists());
}

/// Start a backup and SIGKILL it at the first inotify event naming `name`
/// in the backup dir. Returns whether the event came.
fn kill_at_event(sb: &Sandbox, name: &str) -> bool {
    let dir = sb.root().join("var/recovery");
    let mut w = Command::new("inotifywait")
        .args(["-m", "--format", "%e %f"])
        .args([
            "-e",
            "create",
            "-e",
            "moved_to",
            "-e",
            "moved_from",
            "-e",
            "delete",
        ])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("inotifywait (inotify-tools)");
    // Wait for "Watches established."
    let mut err = std::io::BufReader::new(w.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("Watches established") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "inotifywait failed");
    }
    let mut b = sb
        .command(&["backup", "--min-free", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(w.stdout.take().unwrap());
    let mut hit = false;
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        for l in out.lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    loop {
        if let Ok(Some(_)) = b.try_wait() {
            break;
        }
        match rx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(l) if l.split_once(' ').is_some_and(|(_, f)| f == name) => {
                let _ = b.kill();
                hit = true;
                break;
            }
            _ => {}
        }
    }
    let st = b.wait().unwrap();
    let _ = w.kill();
    let _ = w.wait();
    let _ = t.join();
    if hit {
        assert_eq!(st.code(), None, "{name}: the backup was killed");
    }
    hit
}

#[test]
fn a_backup_killed_when_each_documented_path_changes_leaves_a_backup_that_restores() {
    let sb = Sandbox::new();
    // The conversion of a flat backup changes every documented path once.
    for (n, name) in DOCUMENTED.iter().enumerate() {
        let before = take_backup(&sb);
        flatten(&sb);
        assert!(kill_at_event(&sb, name), "{name} never changed");
        check_backup(&sb, name);
        upgrade(&sb, n as u32);
        finish(&sb, name);
        check_restored(&sb, &before, name);
    }
    // A new generation changes only `current`; the documented paths are links.
    let before = take_backup(&sb);
    assert!(kill_at_event(&sb, "current"));
    check_backup(&sb, "current");
    upgrade(&sb, 50);
    finish(&sb, "current");
    check_restored(&sb, &before, "current");
}

/// The recovery records the generation it restores; a backup never switches
/// generations while a recovery is under way.
#[test]
fn the_journal_names_the_generation_and_a_backup_waits_for_the_recovery() {
    let sb = Sandbox::new();
    let before = take_backup(&sb);
    let gen = sb.sh("readlink $ROOT/var/recovery/current");
    upgrade(&sb, 1);
    let (code, out, err) = restore(&sb, &["--step"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    let j: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sb.root().join("var/recovery/journal.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(j["generation"].as_str(), Some(gen.trim()));
    // The hub's Job runs again during the recovery: nothing changes.
    let ls = sb.sh("ls -lA --time-style=+ $ROOT/var/recovery");
    let (code, out, _) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0);
    assert!(out.contains("A recovery is in progress"), "{out}");
    assert_eq!(sb.sh("ls -lA --time-style=+ $ROOT/var/recovery"), ls);
    finish(&sb, "journal");
    check_restored(&sb, &before, "journal");
}

/// 13.3: a recovery that holds the lock before its journal exists (its
/// preflight): a backup exits 0 and touches nothing.
#[test]
fn a_backup_while_a_recovery_holds_the_lock_touches_nothing() {
    let sb = Sandbox::new();
    take_backup(&sb);
    let mut r = sb
        .command(&["restore"])
        .env("UPGRADE_RECOVERY_PAUSE_AT", "preflight:before")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(r.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("paused at preflight:before") {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "restore did not pause"
        );
    }
    assert!(!sb.root().join("var/recovery/journal.json").exists());
    let ls = sb.sh("ls -lAR --ignore=.lock --time-style=+ $ROOT/var/recovery");
    let calls = sb.calls().len();
    let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
    // The dry run finds the same and says the same.
    let (dcode, dout, _) = sb.run(&["backup", "--min-free", "0", "--dry-run"]);
    let _ = r.kill();
    let _ = r.wait();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("A recovery is in progress") && out.contains("`upgrade-recovery status`"),
        "{out}"
    );
    assert_eq!((dcode, dout.as_str()), (code, out.as_str()));
    assert_eq!(
        sb.sh("ls -lAR --ignore=.lock --time-style=+ $ROOT/var/recovery"),
        ls
    );
    assert_eq!(sb.calls().len(), calls, "no program was run on the node");
}

/// 12.3: after a failed upgrade (another OS booted, the pinned one still
/// deployed) a backup, or the hub's Job run again, refuses before any change.
#[test]
fn a_backup_after_a_failed_upgrade_refuses_unless_told_to_replace() {
    let sb = Sandbox::new();
    take_backup(&sb);
    let manifest = sb.sh("sha256sum $ROOT/var/recovery/manifest.json");
    sh(&format!(
        "{p}/scripts/sandbox.sh cluster-upgrade {d} 4.17.0 Partial >/dev/null; {p}/scripts/sandbox.sh upgrade-os {d} 417.94.202411010000-0 >/dev/null",
        p = q(&project()),
        d = q(sb.dir.path())
    ));
    sb.reboot();
    let status = sb.sh("ostree admin --sysroot=$ROOT/sysroot status");
    let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 1, "{out}{err}");
    // The dry run refuses the same way, with the same code and message.
    let (dcode, dout, derr) = sb.run(&["backup", "--min-free", "0", "--dry-run"]);
    assert_eq!((dcode, derr.as_str()), (code, err.as_str()), "{dout}");
    assert_eq!(dout, "");
    assert!(
        err.contains("the upgrade to 4.17.0 (Partial")
            && err.contains("did not complete")
            && err.contains("--replace-backup"),
        "{err}"
    );
    assert!(
        err.contains("`upgrade-recovery rollback --reboot`"),
        "{err}"
    );
    assert_eq!(
        sb.sh("sha256sum $ROOT/var/recovery/manifest.json"),
        manifest
    );
    assert_eq!(
        sb.sh("ostree admin --sysroot=$ROOT/sysroot status"),
        status,
        "no deployment undeployed"
    );
    assert!(!sb.calls().iter().any(|c| c.contains("undeploy")));
    // The next command it names works: the rollback leads back.
    let (code, _, err) = sb.run(&["rollback", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    // The override: a new baseline from the running OS.
    let (code, _, err) = sb.run(&["backup", "--min-free", "0", "--replace-backup"]);
    assert_eq!(code, 0, "{err}");
    assert_ne!(
        sb.sh("sha256sum $ROOT/var/recovery/manifest.json"),
        manifest
    );
    check_backup(&sb, "new baseline");
}

/// 12.4: archives without a manifest are a damaged backup, not "no backup".
#[test]
fn a_backup_without_its_manifest_is_damaged_and_not_replaced() {
    let sb = Sandbox::new();
    take_backup(&sb);
    for flat in [true, false] {
        if flat {
            flatten(&sb);
            std::fs::remove_file(sb.root().join("var/recovery/manifest.json")).unwrap();
        } else {
            sb.sh("rm $ROOT/var/recovery/current/manifest.json");
        }
        // `.lock` holds the PID of its last holder: its size changes with
        // the PID (pid_max wraps), not with the backup.
        let ls = sb.sh("ls -lAR --ignore=.lock --time-style=+ $ROOT/var/recovery");
        let (code, out, err) = sb.run(&["verify"]);
        assert_eq!(code, 4, "{out}{err}");
        assert!(err.contains("damaged"), "{err}");
        if flat {
            assert!(err.contains("etc.tar.zst"), "{err}");
        }
        let (code, out, _) = sb.run(&["status"]);
        assert_eq!(code, 0);
        assert!(out.contains("DAMAGED"), "{out}");
        assert!(!out.contains("upgrade-recovery backup`"), "{out}");
        let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
        assert_eq!(code, 4, "{err}");
        assert!(err.contains("--replace-backup"), "{err}");
        // The command it gives to read the archives names one that exists
        // (the independent tester's dead end: `<dir>/etc.tar.zst`, which
        // the generation layout does not have).
        let listed = err
            .split("`zstd -dc ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or_else(|| panic!("no zstd command in: {err}"));
        assert!(std::path::Path::new(listed).is_file(), "{listed}: {err}");
        assert_eq!(
            sb.sh("ls -lAR --ignore=.lock --time-style=+ $ROOT/var/recovery"),
            ls
        );
        // The dry run refuses the same way, with the same code and message.
        let (dcode, dout, derr) = sb.run(&["backup", "--min-free", "0", "--dry-run"]);
        assert_eq!((dcode, derr.as_str()), (code, err.as_str()), "{dout}");
        assert_eq!(
            sb.sh("ls -lAR --ignore=.lock --time-style=+ $ROOT/var/recovery"),
            ls
        );
        let (code, _, err) = sb.run(&["backup", "--min-free", "0", "--replace-backup"]);
        assert_eq!(code, 0, "{err}");
        check_backup(&sb, "replaced");
    }
}

/// The space-short case: only removing the previous backup makes room. The
/// backup says so, and a run killed right after that removal leaves no
/// backup (exit 4, "no backup"), never a damaged-looking one.
#[test]
fn space_short_removes_the_previous_backup_first_and_says_so() {
    let sb = Sandbox::new();
    sh(&format!(
        "mkdir -p {r}/var/small && mount -t tmpfs -o size=SIZE,mode=0700 tmpfs {r}/var/small",
        r = q(&sb.root())
    )
    .replace("SIZE", "18m"));
    let small = |args: &[&str]| {
        let mut v = vec!["--dir", "/var/small", "backup", "--min-free", "0"];
        v.extend(args);
        sb.run(&v)
    };
    let (code, _, err) = small(&[]);
    assert_eq!(code, 0, "{err}");
    // The dry run says so as loudly, and removes nothing.
    let ls = sb.sh("ls -lAR --time-style=+%s.%N $ROOT/var/small");
    let (code, out, err) = small(&["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("REMOVE THE PREVIOUS BACKUP") && out.contains("NO backup"),
        "{out}"
    );
    assert_eq!(sb.sh("ls -lAR --time-style=+%s.%N $ROOT/var/small"), ls);
    let (code, out, err) = small(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("REMOVING THE PREVIOUS BACKUP"), "{out}");
    assert_eq!(sb.run(&["--dir", "/var/small", "verify"]).0, 0);
    let o = sb
        .command(&["--dir", "/var/small", "backup", "--min-free", "0"])
        .env("UPGRADE_RECOVERY_CRASH_AT", "backup:removed-previous")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), None);
    let (code, _, err) = sb.run(&["--dir", "/var/small", "verify"]);
    assert_eq!(code, 4);
    assert!(err.contains("no backup"), "{err}");
    let (code, _, err) = small(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(sb.run(&["--dir", "/var/small", "verify"]).0, 0);
}

/// The backup removes only what it (or a killed run of it, or TALM's script
/// it replaces) wrote: an admin's own file in the backup dir survives every
/// backup, and the dry run does not plan to remove it.
#[test]
fn an_admins_file_in_the_backup_dir_is_never_removed() {
    let sb = Sandbox::new();
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    let dir = sb.root().join("var/recovery");
    std::fs::write(dir.join("my-notes"), b"what I did").unwrap();
    std::fs::create_dir(dir.join("etc-copy")).unwrap();
    // What a killed run leaves is still cleared.
    std::fs::create_dir(dir.join("gen-2020-01-01_000000")).unwrap();
    let (code, out, err) = sb.run(&["backup", "--dry-run", "--min-free", "0"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !out.contains("my-notes") && !out.contains("etc-copy"),
        "{out}"
    );
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("my-notes"), "{err}");
    assert_eq!(std::fs::read(dir.join("my-notes")).unwrap(), b"what I did");
    assert!(dir.join("etc-copy").is_dir());
    assert!(!dir.join("gen-2020-01-01_000000").exists());
    assert_eq!(sb.run(&["verify"]).0, 0);
}
