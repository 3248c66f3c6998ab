//! Issue 27, the outage scenarios that were dead ends: each played as the
//! admin plays it (the wrapper, `status`, the command the output names, run
//! as printed), asserting the node's state at each point.

mod common;

use common::admin::*;
use common::*;
use std::path::{Path, PathBuf};

fn rec(sb: &Sandbox) -> PathBuf {
    sb.root().join("var/recovery")
}

fn journal(sb: &Sandbox) -> PathBuf {
    rec(sb).join("journal.json")
}

fn kubelet_untouched(sb: &Sandbox) -> bool {
    let st = sb.ctl().join("state");
    st.join("enabled/kubelet.service").exists() && st.join("active/kubelet.service").exists()
}

/// The etcd snapshot of the current backup.
fn snapshot_file(sb: &Sandbox) -> PathBuf {
    std::fs::read_dir(rec(sb).join("current/cluster"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("snapshot_"))
        .unwrap()
}

/// Flip one byte in the middle of `p`: damage that keeps its size.
fn flip_byte(p: &Path) -> Vec<u8> {
    let good = std::fs::read(p).unwrap();
    let mut bad = good.clone();
    let i = bad.len() / 2;
    bad[i] ^= 0xff;
    std::fs::write(p, &bad).unwrap();
    good
}

fn backup(sb: &Sandbox) -> String {
    let (code, _, err) = run_next(sb, "upgrade-recovery backup");
    assert_eq!(code, 0, "{err}");
    sb.etcdctl("get '' --prefix")
}

/// Drive the recovery from a rebooted files phase to its end through the
/// command `status` names, and check etcd holds the keys of the backup.
fn resume_to_the_end(sb: &Sandbox, keys: &str) {
    let next = expect_state(sb, "recovery-stopped");
    assert_eq!(next, "/var/recovery/upgrade-recovery.sh --resume");
    let (code, out, err) = run_next(sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Recovery complete"), "{out}");
    assert_eq!(sb.etcdctl("get '' --prefix"), keys, "etcd keys");
    assert!(!journal(sb).exists());
}

/// 27.1 and 27.4: a flipped byte in the snapshot (a part only the cluster
/// phase reads, its size kept) stops the recovery before its first change;
/// `status` then names the damage and `verify`, not the `restore` that just
/// failed; once a good copy is back and verified, the recovery runs.
#[test]
fn a_damaged_snapshot_stops_the_recovery_before_the_first_change() {
    let sb = Sandbox::with_profile("rhcos");
    let keys = backup(&sb);
    let snap = snapshot_file(&sb);
    let good = flip_byte(&snap);
    let calls = sb.calls().len();
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh");
    assert_eq!(code, 4, "{out}{err}");
    let name = snap.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        err.contains(&name) && err.contains("Nothing was changed"),
        "{err}"
    );
    // Nothing changed: no journal, kubelet as it was, no program that
    // changes the node was run.
    assert!(!journal(&sb).exists());
    assert!(kubelet_untouched(&sb));
    let changing: Vec<String> = sb.calls()[calls..]
        .iter()
        .filter(|c| {
            !(c.starts_with("getenforce")
                || c.contains(" status")
                || c.starts_with("systemctl is-"))
        })
        .cloned()
        .collect();
    assert_eq!(changing, Vec::<String>::new());
    // status names the failure and never the restore that just failed.
    let next = expect_state(&sb, "backup-damaged");
    assert_eq!(next, "upgrade-recovery verify");
    let (_, text, _) = sb.run(&["status"]);
    assert!(
        text.contains("Last failure: `upgrade-recovery restore`") && text.contains(&name),
        "{text}"
    );
    let (code, _, _) = run_next(&sb, &next);
    assert_eq!(code, 4, "verify finds the same damage");
    assert_eq!(
        expect_state(&sb, "backup-damaged"),
        "upgrade-recovery verify"
    );
    // Another copy of the backup: verify passes and clears the record.
    std::fs::write(&snap, good).unwrap();
    let (code, out, err) = run_next(&sb, "upgrade-recovery verify");
    assert_eq!(code, 0, "{out}{err}");
    let next = expect_state(&sb, "backup-ready");
    assert_eq!(next, "upgrade-recovery restore");
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    run_next(&sb, &expect_state(&sb, "files-done-reboot-pending"));
    resume_to_the_end(&sb, &keys);
}

/// 27.4: an exit 4 in the cluster phase (the snapshot damaged after the
/// files phase): `status` does not answer with the `--resume` that fails
/// again, but with `verify`; after a good copy, `--resume` finishes.
#[test]
fn exit_4_in_the_cluster_phase_is_not_answered_with_resume() {
    let sb = Sandbox::with_profile("rhcos");
    let keys = backup(&sb);
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh");
    assert_eq!(code, 0, "{out}{err}");
    sb.reboot();
    let snap = snapshot_file(&sb);
    let good = flip_byte(&snap);
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh --resume");
    assert_eq!(code, 4, "{out}{err}");
    assert!(
        err.contains("phase cluster") && err.contains("Nothing was changed by phase cluster"),
        "{err}"
    );
    let next = expect_state(&sb, "recovery-stopped-backup-damaged");
    assert_eq!(next, "upgrade-recovery verify");
    let (_, text, _) = sb.run(&["status"]);
    assert!(!text.contains("Next: continue with"), "{text}");
    assert_eq!(run_next(&sb, &next).0, 4);
    std::fs::write(&snap, good).unwrap();
    assert_eq!(run_next(&sb, "upgrade-recovery verify").0, 0);
    resume_to_the_end(&sb, &keys);
}

/// A tmpfs of `size` as the backup dir's file system, holding the backup;
/// unmounted when dropped (the sandbox's teardown unmounts it too).
struct SmallFs(PathBuf);

impl SmallFs {
    fn new(sb: &Sandbox, size: &str) -> SmallFs {
        let d = rec(sb);
        sh(&format!(
            "set -e; t=$(mktemp -d); cp -a {d}/. $t/; mount -t tmpfs -o size={size},mode=0700 tmpfs {d}; cp -a $t/. {d}/; rm -rf $t",
            d = q(&d)
        ));
        SmallFs(d)
    }

    /// Fill it up; the filler file, to free it again.
    fn fill(&self) -> PathBuf {
        let f = self.0.join("filler");
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", f.display()))
            .output();
        f
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn no_tmp_left(sb: &Sandbox) {
    let tmp: Vec<String> = std::fs::read_dir(rec(sb))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert_eq!(tmp, Vec::<String>::new(), "temporary files left");
}

/// 27.2: a full backup dir. The dry run refuses as the real run does,
/// naming what to free; the real run changes nothing and leaves no empty
/// `.journal.json.tmp`. Filled again in the middle of the recovery, the
/// run that cannot write its journal says where the recovery stands and
/// what to free, and the command it names finishes the recovery.
#[test]
fn a_full_backup_dir_is_refused_before_and_named_during_the_recovery() {
    let sb = Sandbox::with_profile("rhcos");
    let keys = backup(&sb);
    let fs = SmallFs::new(&sb, "24m");
    let filler = fs.fill();
    for cmd in [
        "upgrade-recovery restore --dry-run",
        "/var/recovery/upgrade-recovery.sh",
    ] {
        let (code, out, err) = admin(&sb, cmd);
        assert_eq!(code, 1, "{cmd}: {out}{err}");
        assert!(
            err.contains("not enough room for the recovery")
                && err.contains("free at least")
                && err.contains("df -h /var/recovery")
                && err.contains("nothing was changed"),
            "{cmd}: {err}"
        );
    }
    assert!(!journal(&sb).exists());
    assert!(kubelet_untouched(&sb));
    no_tmp_left(&sb);
    // Room again; the recovery starts, and is stopped after a step.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(admin(&sb, "upgrade-recovery restore --dry-run").0, 0);
    let o = sb
        .command(&["restore"])
        .env("UPGRADE_RECOVERY_CRASH_AT", "stop-kubelet")
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(journal(&sb).exists());
    let journal_before = std::fs::read(journal(&sb)).unwrap();
    // The disk fills up: the next journal entry cannot be written.
    let filler = fs.fill();
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh --resume");
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("is full")
            && err.contains("the journal there still records")
            && err.contains("Free at least 1 MiB there"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(journal(&sb)).unwrap(),
        journal_before,
        "journal unchanged"
    );
    no_tmp_left(&sb);
    let next = err
        .rsplit("then run `")
        .next()
        .and_then(|r| r.split('`').next())
        .unwrap()
        .to_string();
    assert_eq!(next, "upgrade-recovery restore --resume");
    std::fs::remove_file(&filler).unwrap();
    let (code, out, err) = run_next(&sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    sb.reboot();
    resume_to_the_end(&sb, &keys);
    drop(fs);
}

/// 27.5 and 27.6: only the `manifest.json` link gone: verify, status and
/// restore agree the backup is usable, verify says how to relink. The
/// generation's manifest gone: status offers no `extract` (it needs the
/// manifest) and names an archive that exists; in the middle of the
/// recovery the wrapper names the way on, and it works.
#[test]
fn a_missing_manifest_link_or_manifest_is_named_with_a_way_that_works() {
    let sb = Sandbox::with_profile("rhcos");
    let keys = backup(&sb);
    std::fs::remove_file(rec(&sb).join("manifest.json")).unwrap();
    let (code, out, err) = run_next(&sb, "upgrade-recovery verify");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("is intact") && out.contains("ln -sfn current/manifest.json"),
        "{out}"
    );
    assert_eq!(
        expect_state(&sb, "backup-ready"),
        "upgrade-recovery restore"
    );
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh");
    assert_eq!(code, 0, "{out}{err}");
    sb.reboot();
    // The generation's manifest goes in the middle of the recovery.
    let man = rec(&sb).join("current/manifest.json");
    let saved = std::fs::read(&man).unwrap();
    std::fs::remove_file(&man).unwrap();
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh --resume");
    assert_eq!(code, 4, "{out}{err}");
    assert!(
        err.contains("has no manifest.json")
            && err.contains("put another copy of the same backup in /var/recovery")
            && err.contains("then run `/var/recovery/upgrade-recovery.sh --resume`"),
        "{err}"
    );
    let next = expect_state(&sb, "recovery-stopped-backup-damaged");
    assert_eq!(next, "upgrade-recovery verify");
    // Without a recovery in progress, the damaged-backup hint: no extract,
    // and the archive it names exists.
    let j = std::fs::read(journal(&sb)).unwrap();
    std::fs::remove_file(journal(&sb)).unwrap();
    let st = status(&sb);
    assert_eq!(st["state"]["state"], "backup-damaged", "{st:#}");
    let text = st["next"].as_str().unwrap();
    assert!(!text.contains("extract PATH"), "{text}");
    let archive = text
        .split("zstd -dc ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap();
    assert!(
        Path::new(archive).is_file(),
        "{archive} does not exist: {text}"
    );
    std::fs::write(journal(&sb), j).unwrap();
    // The manifest back (the other copy); verify passes; the recovery ends.
    std::fs::write(&man, saved).unwrap();
    assert_eq!(run_next(&sb, "upgrade-recovery verify").0, 0);
    resume_to_the_end(&sb, &keys);
}

/// 27.7: the redeployment was asked for (the patch accepted) but its
/// revision never appears: the timeout names the manual `oc patch` with a
/// new reason and `--redo redeploy-...`, which finishes the recovery.
#[test]
fn a_redeployment_that_never_comes_names_a_new_request() {
    let sb = Sandbox::new();
    let keys = backup(&sb);
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh");
    assert_eq!(code, 0, "{out}{err}");
    sb.reboot();
    // The operator accepts the patch but never starts the revision: the
    // shim's patch of kubeapiserver answers without rolling out (the shim
    // itself is put back afterwards).
    let oc = sb.ctl().join("bin/oc");
    std::fs::rename(&oc, oc.with_extension("real")).unwrap();
    std::fs::write(
        &oc,
        format!(
            "#!/bin/bash\ncase \" $* \" in *\" patch \"*kubeapiserver*) echo patched; exit 0 ;; esac\nexec {} \"$@\"\n",
            oc.with_extension("real").display()
        ),
    )
    .unwrap();
    sh(&format!("chmod 0755 {}", q(&oc)));
    let o = sb
        .command(&[
            "restore",
            "--resume",
            "--poll-interval",
            "100ms",
            "--wait-timeout",
            "2s",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    std::fs::rename(oc.with_extension("real"), &oc).unwrap();
    assert!(
        err.contains("oc patch kubeapiserver cluster --type merge -p")
            && err.contains("forceRedeploymentReason")
            && err.contains("`upgrade-recovery restore --resume --redo redeploy-kubeapiserver`"),
        "{err}"
    );
    let (code, out, err) = run_next(
        &sb,
        "upgrade-recovery restore --resume --redo redeploy-kubeapiserver",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Recovery complete"), "{out}");
    assert_eq!(sb.etcdctl("get '' --prefix"), keys);
    // A step that is not a redeployment is refused, naming the ones that are.
    let (code, _, err) = sb.run(&["restore", "--resume", "--redo", "restore-etc"]);
    assert_eq!(code, 2, "{err}");
}

/// 27.8: each wrong word, with the state it is said in and the command it
/// names run.
#[test]
fn the_wording_of_each_refusal_names_what_works() {
    let sb = Sandbox::new();
    // A first backup short of space is not told of a previous backup.
    std::fs::create_dir_all(rec(&sb)).unwrap();
    let (code, _, err) = sb.run(&["backup", "--min-free", "900T"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("insufficient disk space") && !err.contains("previous backup"),
        "{err}"
    );
    backup(&sb);
    // Two restores: the second exits 3 while the first holds the lock.
    let lock = rec(&sb).join(".lock");
    std::fs::write(
        &lock,
        "4242 restore\nrecovery step wipe-crio (phase files)\n",
    )
    .unwrap();
    let mut holder = std::process::Command::new("flock")
        .args(["-x", "--no-fork"])
        .arg(&lock)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh");
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("a recovery is running now") && err.contains("upgrade-recovery status"),
        "{err}"
    );
    // The backup during a recovery names status, which names the command.
    let o = sb
        .command(&["restore"])
        .env("UPGRADE_RECOVERY_CRASH_AT", "stop-kubelet")
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    let (code, out, err) = run_next(&sb, "upgrade-recovery backup");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("`upgrade-recovery status`") && !out.contains("restore --resume"),
        "{out}"
    );
    assert_eq!(
        expect_state(&sb, "recovery-stopped"),
        "/var/recovery/upgrade-recovery.sh --resume"
    );
    let (code, out, err) = admin(&sb, "upgrade-recovery restore --restart");
    assert_eq!(code, 0, "{out}{err}");
    sb.reboot();
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh --resume");
    assert_eq!(code, 0, "{out}{err}");
    // The rollback's reboot pending: a plain restore asks for the reboot.
    fail_upgrade(&sb);
    let (code, out, err) = run_next(&sb, "upgrade-recovery rollback --reboot");
    assert_eq!(code, 0, "{out}{err}");
    // (The recovery above completed from this backup: the lifecycle rule
    // asks for `--again` on purpose, the cluster's history showing no
    // failed upgrade.)
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh --again");
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("The OS rollback is done") || err.contains("the OS rollback is done"),
        "{err}"
    );
    assert!(
        err.contains("`systemctl reboot`") && !err.contains("rollback --reboot"),
        "{err}"
    );
    run_next(&sb, "systemctl reboot");
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh --again");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    // extract from a damaged archive: what it wrote, not "nothing changed".
    let etc = rec(&sb).join("current/etc.tar.zst");
    let good = flip_byte(&etc);
    let to = TempDir::new("extract");
    let (code, _, err) = sb.run(&[
        "extract",
        "/etc",
        "--to",
        &to.path().join("x").display().to_string(),
    ]);
    assert_eq!(code, 4, "{err}");
    assert!(
        !err.contains("nothing was changed")
            && err.contains("nothing else on the node was changed"),
        "{err}"
    );
    std::fs::write(&etc, good).unwrap();
    // report with the generation's manifest gone reads the exclude list.
    let man = rec(&sb).join("current/manifest.json");
    let saved = std::fs::read(&man).unwrap();
    std::fs::remove_file(&man).unwrap();
    let bundle = to.path().join("r.tar.gz");
    let (code, out, err) = sb.run(&["report", "--to", &bundle.display().to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !out.contains("is a symlink") && !err.contains("is a symlink"),
        "{out}{err}"
    );
    let listing = sh(&format!("tar -tzf {}", q(&bundle)));
    assert!(listing.contains("backup/etc.exclude.list"), "{listing}");
    std::fs::write(&man, saved).unwrap();
    // launch-backup on a tree that is not the Job's host mount: untouched.
    let jail = TempDir::new("notjail");
    std::fs::create_dir_all(jail.path().join("sysroot")).unwrap();
    let o = std::process::Command::new(binary())
        .args(["launch-backup", "--host-dir"])
        .arg(jail.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let left: Vec<String> = std::fs::read_dir(jail.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["sysroot".to_string()]);
}
