//! The dead ends an independent tester met on the recovery side, each
//! followed to its end as an admin would: the command an output names is
//! run as printed, and the node is checked afterwards (rsync oracles, etcd
//! keys, the journal).

mod common;

use common::admin::*;
use common::recovery::*;
use common::*;
use serde_json::Value;
use std::path::PathBuf;

fn current(sb: &Sandbox, file: &str) -> PathBuf {
    sb.root().join("var/recovery/current").join(file)
}

/// Flip one byte in the middle of a backup file (its size kept); the bytes
/// before, to put it back.
fn flip(p: &std::path::Path) -> Vec<u8> {
    let before = std::fs::read(p).unwrap();
    let mut b = before.clone();
    let i = b.len() / 2;
    b[i] ^= 0x55;
    std::fs::write(p, &b).unwrap();
    before
}

fn journal(sb: &Sandbox) -> PathBuf {
    sb.root().join("var/recovery/journal.json")
}

/// `restore --dry-run --output json ARGS`: exit 0, the command it names.
fn dry_run(sb: &Sandbox, args: &[&str]) -> (String, String) {
    let mut a = vec!["restore", "--dry-run", "--output", "json"];
    a.extend(args);
    let (code, out, err) = sb.run(&a);
    assert_eq!(code, 0, "{args:?}: {out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    (v["next"].as_str().unwrap().to_string(), err)
}

/// Issue (hints) 1: `/var/lib/kubelet` replaced by a symlink after the
/// backup. The old restore followed it and made the link's target equal
/// the archive (deleting what it held, "1 deleted"). Now the dry run and
/// the real run refuse before the first change, naming the link, where it
/// leads, and the commands that put the directory back; the target is
/// unchanged byte for byte; once fixed as printed the recovery runs to its
/// end. The same after the reboot, before the cluster phase's first
/// change; and a top the backup recorded as a link (`/usr/local ->
/// ../var/usrlocal`) that leads elsewhere now. (The old code: the dry run
/// exits 0.)
#[test]
fn a_tree_top_replaced_by_a_symlink_is_refused_and_nothing_is_written_through_it() {
    let sb = Sandbox::with_profile("rhcos");
    let before = take_backup(&sb);
    diverge(&sb, 1);
    // (The old kubelet moved aside: a pod's emptyDir is mounted in it.)
    let plant = "cd $ROOT/var/lib && ln -s other kubelet";
    sb.sh(&format!(
        "cd $ROOT/var/lib && mkdir -p other/sub && echo keep > other/victim && echo 2 > other/sub/f && setfattr -n user.k -v 1 other/victim && mv kubelet kubelet.moved && {plant}"
    ));
    let keep = TempDir::new("other");
    let other = sb.root().join("var/lib/other");
    sh(&format!(
        "rsync -aAXH {}/ {}/",
        q(&other),
        q(&keep.path().join("other"))
    ));
    let unchanged = |what: &str| {
        assert_eq!(
            rsync_diff(&keep.path().join("other"), &other, ""),
            Vec::<String>::new(),
            "{what}: the link's target changed"
        );
        assert_eq!(
            meta_dump(&keep.path().join("other")),
            meta_dump(&other),
            "{what}: xattrs"
        );
    };
    let keys = etcd_dump(&sb);
    let from = sb.calls().len();
    for args in [vec!["--dry-run"], vec![]] {
        let (code, out, err) = restore(&sb, &args, None);
        assert_eq!(code, Some(1), "{args:?}: {out}{err}");
        assert!(
            err.contains("/var/lib/kubelet is a symlink to other (that is /var/lib/other) now, but the backup recorded a directory there")
                && err.contains("Nothing was written through it")
                && err.contains("`rm /var/lib/kubelet && mkdir /var/lib/kubelet`")
                && err.contains("nothing was changed")
                && err.contains("then run `upgrade-recovery restore`"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(changing_calls(&sb, from), Vec::<String>::new());
    assert!(!journal(&sb).exists());
    assert_eq!(etcd_dump(&sb), keys);
    unchanged("refused");

    // /usr/local: the backup followed its link to /var/usrlocal; a link
    // that leads elsewhere now is refused the same way, with its fix.
    sb.sh("cd $ROOT/var && mkdir -p elsewhere && cd $ROOT/usr && ln -sfn ../var/elsewhere local");
    let (code, out, err) = restore(&sb, &["--dry-run"], None);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("/usr/local is a symlink to ../var/elsewhere (that is /var/elsewhere) now, but the backup recorded a symlink to /var/usrlocal there")
            && err.contains("`ln -sfn /var/usrlocal /usr/local`"),
        "{err}"
    );
    // The fixes as printed (on the node's paths), then the named command.
    sb.sh("cd $ROOT && rm var/lib/kubelet && mkdir var/lib/kubelet && ln -sfn /var/usrlocal usr/local");
    let (code, out, err) = admin(&sb, "upgrade-recovery restore");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    sb.reboot();

    // After the reboot, kubelet's top replaced again: refused before the
    // cluster phase's first change, the step not marked failed.
    sb.sh(&format!("rmdir $ROOT/var/lib/kubelet && {plant}"));
    let from = sb.calls().len();
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh --resume");
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("/var/lib/kubelet is a symlink to other")
            && err.contains("then run `/var/recovery/upgrade-recovery.sh --resume`"),
        "{err}"
    );
    assert_eq!(changing_calls(&sb, from), Vec::<String>::new());
    let j: Value = serde_json::from_slice(&std::fs::read(journal(&sb)).unwrap()).unwrap();
    assert!(j["failed"].is_null(), "{j:#}");
    unchanged("refused after the reboot");
    sb.sh("cd $ROOT && rm var/lib/kubelet && mkdir var/lib/kubelet");
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh --resume");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Recovery complete"), "{out}");
    check_restored(&sb, &before, "after the fixes");
    unchanged("after the recovery");
}

/// Issue (hints) 2: a restore that found the backup damaged (exit 4) in
/// `rolled-back-not-recovered` (an upgrade failed after the backup, the
/// pinned OS booted): `status` named `restore` again, which exits 4 again.
/// Now it is `backup-damaged` with `verify`; once the part is whole and
/// `verify` passes, the state is the procedure's again. The same with an
/// unreadable journal, whose `restore --restart` reads the whole backup
/// (src/recovery/last_failures.rs checks every state of the table).
#[test]
fn damage_found_by_restore_is_not_answered_by_restore_again() {
    let sb = Sandbox::new();
    take_backup(&sb);
    record_failed_upgrade(&sb, 1);
    let next = expect_state(&sb, "rolled-back-not-recovered");
    assert_eq!(next, "upgrade-recovery restore");
    let part = current(&sb, "etc.tar.zst");
    let whole = flip(&part);
    let (code, out, err) = admin(&sb, &next);
    assert_eq!(code, 4, "{out}{err}");
    assert!(err.contains("etc.tar.zst"), "{err}");
    let next = expect_state(&sb, "backup-damaged");
    assert_eq!(next, "upgrade-recovery verify");
    let st = status(&sb);
    assert!(
        st["state_text"].as_str().unwrap().contains("etc.tar.zst")
            && st["state_text"]
                .as_str()
                .unwrap()
                .contains("did not complete"),
        "{st:#}"
    );
    let (code, _, _) = run_next(&sb, &next);
    assert_eq!(code, 4, "verify names the damage");
    std::fs::write(&part, &whole).unwrap();
    assert_eq!(run_next(&sb, &next).0, 0);
    assert_eq!(
        expect_state(&sb, "rolled-back-not-recovered"),
        "upgrade-recovery restore"
    );

    // An unreadable journal: `restore --restart` meets the damage too.
    std::fs::write(journal(&sb), "{").unwrap();
    let next = expect_state(&sb, "journal-unreadable");
    assert_eq!(next, "upgrade-recovery restore --restart");
    flip(&part);
    let (code, out, err) = admin(&sb, &next);
    assert_eq!(code, 4, "{out}{err}");
    let next = expect_state(&sb, "recovery-stopped-backup-damaged");
    assert_eq!(next, "upgrade-recovery verify");
    assert!(
        status(&sb)["next"]
            .as_str()
            .unwrap()
            .contains("start the recovery over with `upgrade-recovery restore --restart`"),
        "{:#}",
        status(&sb)
    );
    std::fs::write(&part, &whole).unwrap();
    assert_eq!(run_next(&sb, &next).0, 0);
    expect_state(&sb, "journal-unreadable");
}

/// Issue (hints) 3: every dry run's "carry it out" names the command that
/// carries out what it planned; each is run as printed. (The old code:
/// `--step --auto-resume --dry-run` named a plain `restore`; `--restart
/// --dry-run` a plain `restore`, which exits 3.) And (hints 5) an
/// `etc.exclude.list` that differs from the manifest's copy is said.
#[test]
fn every_dry_run_names_the_command_that_carries_it_out() {
    let sb = Sandbox::new();
    let before = take_backup(&sb);
    diverge(&sb, 1);
    // One flipped byte in the exclude list: said, as the lines that differ.
    let list = current(&sb, "etc.exclude.list");
    let whole = std::fs::read(&list).unwrap();
    let text = String::from_utf8(whole.clone()).unwrap();
    std::fs::write(
        &list,
        text.replace("kubernetes/manifests", "kubernetes/manifestq"),
    )
    .unwrap();
    let (next, err) = dry_run(&sb, &[]);
    assert_eq!(next, "upgrade-recovery restore");
    assert!(
        err.contains("etc.exclude.list differs from the list the backup recorded in its manifest")
            && err.contains(r#"Only in the file: ["kubernetes/manifestq"]"#)
            && err.contains(r#"only in the manifest: ["kubernetes/manifests"]"#),
        "{err}"
    );
    std::fs::write(&list, &whole).unwrap();
    let (_, err) = dry_run(&sb, &[]);
    assert!(!err.contains("differs"), "{err}");

    let (next, _) = dry_run(&sb, &["--step", "--auto-resume"]);
    assert_eq!(next, "upgrade-recovery restore --step --auto-resume");
    let (code, out, err) = admin(&sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    let unit = sb
        .root()
        .join("etc/systemd/system/upgrade-recovery-resume.service");
    assert!(unit.exists(), "--auto-resume was carried out");

    // A recovery under way, its reboot pending: start over.
    let (next, _) = dry_run(&sb, &["--restart"]);
    assert_eq!(next, "upgrade-recovery restore --restart");
    let (code, out, err) = admin(&sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    // Skip the reboot check, on purpose.
    let (next, _) = dry_run(&sb, &["--resume", "--force"]);
    assert_eq!(next, "upgrade-recovery restore --resume --force");
    sb.reboot();

    let (next, _) = dry_run(&sb, &["--resume", "--step"]);
    assert_eq!(next, "upgrade-recovery restore --resume --step");
    let (code, out, err) = admin(&sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("phase cluster is done"), "{out}");
    let (next, _) = dry_run(&sb, &["--resume"]);
    assert_eq!(next, "/var/recovery/upgrade-recovery.sh --resume");
    let (code, out, err) = admin(&sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Recovery complete"), "{out}");
    check_restored(&sb, &before, "through the printed commands");

    // Another dir: its --dir is carried.
    let (code, out, err) = sb.run(&["--dir", "/var/recovery2", "backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{out}{err}");
    let (next, _) = dry_run(&sb, &["--dir", "/var/recovery2", "--step"]);
    assert_eq!(next, "upgrade-recovery --dir /var/recovery2 restore --step");
    let (code, out, err) = admin(&sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    assert!(sb.root().join("var/recovery2/journal.json").exists());
}

/// Issue (hints) 4: once the deployment pinned at backup is gone, every
/// output gives the one answer of `pinned-deployment-gone`: `restore`,
/// `rollback --reboot` and `restore --force` refuse and name the last
/// resort, `restore --restore-onto-other-os` (the old ones sent the admin
/// from one to the other). Followed to the end: the recovery completes on
/// the OS that runs, `status` says so, and its `oc get clusteroperators`
/// answers in the sandbox (hints 5).
#[test]
fn the_pinned_deployment_gone_has_one_answer_followed_to_the_end() {
    let sb = Sandbox::with_profile("rhcos");
    let before = take_backup(&sb);
    fail_upgrade(&sb);
    record_failed_upgrade(&sb, 1);
    expect_state(&sb, "upgraded-os-booted");
    // The pinned deployment unpinned and undeployed (by hand, say).
    sb.sh(". $CTL/lib/bootfs.sh; i=$(rpm-ostree status --json | jq '.deployments | map(.pinned) | index(true)'); boot_rw $ROOT ostree admin --sysroot=$ROOT pin --unpin $i >/dev/null; boot_rw $ROOT ostree admin --sysroot=$ROOT undeploy $i >/dev/null");
    let last_resort = "upgrade-recovery restore --restore-onto-other-os";
    let next = expect_state(&sb, "pinned-deployment-gone");
    assert_eq!(next, last_resort);
    let from = sb.calls().len();
    for cmd in [
        "upgrade-recovery restore",
        "/var/recovery/upgrade-recovery.sh",
        "upgrade-recovery restore --force",
        "upgrade-recovery rollback --reboot",
        "upgrade-recovery rollback --dry-run",
    ] {
        let (code, out, err) = admin(&sb, cmd);
        assert_eq!(code, 1, "{cmd}: {out}{err}");
        assert!(
            err.contains("is no longer deployed")
                && err.contains(&format!("`{last_resort}`"))
                && err.contains("Nothing was changed"),
            "{cmd}: {err}"
        );
        assert!(
            !err.contains("`upgrade-recovery rollback --reboot`")
                && !err.contains("`upgrade-recovery restore --force`"),
            "{cmd}: {err}"
        );
    }
    assert_eq!(changing_calls(&sb, from), Vec::<String>::new());
    assert!(!journal(&sb).exists());
    assert!(!sb.ctl().join("state/reboot-requested").exists());
    let (planned, _) = dry_run(&sb, &["--restore-onto-other-os"]);
    assert_eq!(planned, last_resort);

    // A new OS deployed as the default meanwhile: the files would go into
    // the booted deployment's /etc, and the next boot would leave it. The
    // last resort refuses before any change and names the exact way to make
    // the booted one the default on this node (its ostree, 2022.7, has no
    // `admin set-default`; `rpm-ostree rollback` puts the booted one first
    // here). Old code: "boot ... as the default first (`ostree admin
    // status` lists them)", no command; the refusal had no test.
    sh(&format!(
        "{}/scripts/sandbox.sh upgrade-os {} 416.94.202501010000-0 >/dev/null",
        q(&project()),
        q(sb.dir.path())
    ));
    let from = sb.calls().len();
    let (code, out, err) = admin(&sb, last_resort);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("but the next boot would start")
            && err.contains("Nothing was changed")
            && err.contains("the default with `rpm-ostree rollback`")
            && err.contains(&format!("then run `{last_resort}`")),
        "{err}"
    );
    assert_eq!(changing_calls(&sb, from), Vec::<String>::new());
    assert!(!journal(&sb).exists());
    sb.sh("rpm-ostree rollback >/dev/null");
    assert_eq!(expect_state(&sb, "pinned-deployment-gone"), last_resort);

    // The last resort, as printed, to the end.
    let (code, out, err) = run_next(&sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    let next = expect_state(&sb, "files-done-reboot-pending");
    run_next(&sb, &next);
    let next = expect_state(&sb, "recovery-stopped");
    let (code, out, err) = run_next(&sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Recovery complete") && out.contains("`oc get co` and `oc get nodes`"),
        "{out}"
    );
    check_restored(&sb, &before, "onto the other OS");
    let next = expect_state(&sb, "recovery-completed");
    assert_eq!(next, "oc get clusteroperators");
    assert!(
        status(&sb)["state_text"]
            .as_str()
            .unwrap()
            .contains("onto the OS that runs now"),
        "{:#}",
        status(&sb)
    );
    for cmd in [next.as_str(), "oc get co", "oc get nodes"] {
        let (code, out, err) = run_next(&sb, cmd);
        assert_eq!(code, 0, "{cmd}: {out}{err}");
        let want: &[&str] = if cmd.ends_with("nodes") {
            &["NAME", "STATUS", "sno", "Ready"]
        } else {
            &[
                "NAME",
                "AVAILABLE",
                "PROGRESSING",
                "etcd",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "True",
            ]
        };
        for w in want {
            assert!(out.contains(w), "{cmd}: {w}: {out}");
        }
    }
}

/// Hints 5: `backup` while a recovery in another dir waits for the reboot
/// of its files phase names the reboot (it named `--resume`, which answers
/// "reboot first").
#[test]
fn a_backup_during_another_dirs_pending_reboot_names_the_reboot() {
    let sb = Sandbox::new();
    let (code, out, err) = sb.run(&["--dir", "/var/recovery2", "backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = restore(&sb, &["--dir", "/var/recovery2"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("In /var/recovery2: reboot first (`systemctl reboot`), then run `/var/recovery2/upgrade-recovery.sh --resume`"),
        "{err}"
    );
}

/// Hints 5: after a recovery and then a good upgrade (the new version
/// Completed in the ClusterVersion history, the failed one still there, no
/// new backup), `status` says the upgrade completed and names a new backup
/// (it said `upgraded-os-booted`, "if the upgrade failed, roll back"); the
/// backup it names runs.
#[test]
fn a_good_upgrade_after_a_recovery_is_upgrade_completed() {
    let sb = Sandbox::with_profile("rhcos");
    take_backup(&sb);
    diverge(&sb, 1);
    finish(&sb, "the recovery");
    expect_state(&sb, "recovery-completed");
    // Started after the recovery completed (times of whole seconds).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    sh(&format!(
        "{}/scripts/sandbox.sh cluster-upgrade {} 4.17.2 Completed >/dev/null && {0}/scripts/sandbox.sh upgrade-os {1} 417.94.202412010000-0 >/dev/null",
        q(&project()),
        q(sb.dir.path())
    ));
    sb.reboot();
    let next = expect_state(&sb, "upgrade-completed");
    assert_eq!(next, "upgrade-recovery backup");
    let (code, out, err) = run_next(&sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    expect_state(&sb, "backup-ready");
}

/// Hints 5: plain `status` with no backup in /var/recovery summarises the
/// backup in /var/recovery2 as that dir's own `status` does (it said "a
/// backup is ready" where the upgrade after it had failed).
#[test]
fn the_summary_of_another_dir_is_its_own_state() {
    let sb = Sandbox::new();
    let (code, out, err) = sb.run(&["--dir", "/var/recovery2", "backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{out}{err}");
    record_failed_upgrade(&sb, 1);
    let (code, out, err) = sb.run(&["--dir", "/var/recovery2", "status", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let own: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        own["state"]["state"], "rolled-back-not-recovered",
        "{own:#}"
    );
    let st = status(&sb);
    assert_eq!(st["state"]["state"], "backup-elsewhere", "{st:#}");
    let text = st["state_text"].as_str().unwrap();
    assert!(
        text.contains(own["state_text"].as_str().unwrap()),
        "{text}\n{own:#}"
    );
    assert!(
        st["next"]
            .as_str()
            .unwrap()
            .contains("its next command there: `upgrade-recovery --dir /var/recovery2 restore`"),
        "{st:#}"
    );
}

/// Independent tester, session 8: `verify` said DAMAGED (exit 4), then
/// `status` said "a backup is ready" and named `restore`. A verify that
/// finds damage is on record like a restore that did; a verify that passes
/// clears it.
#[test]
fn status_after_a_verify_that_found_damage_says_damaged() {
    let sb = Sandbox::new();
    take_backup(&sb);
    assert_eq!(
        expect_state(&sb, "backup-ready"),
        "upgrade-recovery restore"
    );
    let part = current(&sb, "etc.tar.zst");
    let whole = flip(&part);
    let (code, out, _) = run_next(&sb, "upgrade-recovery verify");
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("DAMAGED"), "{out}");
    let next = expect_state(&sb, "backup-damaged");
    assert_eq!(next, "upgrade-recovery verify");
    let (_, text, _) = sb.run(&["status"]);
    assert!(
        text.contains("`upgrade-recovery verify` found it damaged") && text.contains("etc.tar.zst"),
        "{text}"
    );
    std::fs::write(&part, &whole).unwrap();
    assert_eq!(run_next(&sb, &next).0, 0);
    assert_eq!(
        expect_state(&sb, "backup-ready"),
        "upgrade-recovery restore"
    );
}

/// Independent tester, session 8: after a restore found the backup
/// damaged, the hub's Job replaced it with a new, verified backup, and
/// `status` still called the new one damaged (naming a generation that no
/// longer existed), through later upgrades: only the admin's `backup`
/// cleared the record. Any completed backup clears it.
#[test]
fn a_backup_by_the_job_clears_the_failures_on_record() {
    let sb = Sandbox::with_profile("rhcos");
    let t = TempDir::new("jail");
    take_backup(&sb);
    flip(&current(&sb, "etc.tar.zst"));
    let (code, out, err) = admin(&sb, "upgrade-recovery restore");
    assert_eq!(code, 4, "{out}{err}");
    expect_state(&sb, "backup-damaged");
    assert!(sb.backup_dir().join("failures.json").exists());
    let out = sb
        .job(&t.path().join("host"), "", "", false)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("Backup complete"), "{all}");
    assert!(!sb.backup_dir().join("failures.json").exists());
    assert_eq!(
        expect_state(&sb, "backup-ready"),
        "upgrade-recovery restore"
    );
    let (_, text, _) = sb.run(&["status"]);
    assert!(!text.contains("Last failure"), "{text}");
}

/// Independent tester, session 8: after the files phase the node booted
/// the upgrade's deployment (chosen in the boot menu); `--resume` ran the
/// cluster phase on it and said "the node runs the pre-upgrade state",
/// with an /etc the files phase never restored (ostree keeps one per
/// deployment). Every run after the first, and `status`, compare the
/// booted deployment with the recovery's; the way back works.
#[test]
fn the_cluster_phase_refuses_another_deployment_than_the_recoverys() {
    let sb = Sandbox::new();
    let before = take_backup(&sb);
    fail_upgrade(&sb);
    record_failed_upgrade(&sb, 1);
    let (code, out, err) = admin(&sb, "upgrade-recovery rollback --reboot");
    assert_eq!(code, 0, "{out}{err}");
    sb.reboot();
    let next = expect_state(&sb, "rolled-back-not-recovered");
    let (code, out, err) = admin(&sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    // The reboot, into the upgrade's deployment (the boot menu's second entry).
    sh(&format!(
        "{}/scripts/sandbox.sh reboot {} 1 >/dev/null",
        q(&project()),
        q(sb.dir.path())
    ));
    let calls = sb.calls().len();
    let next = expect_state(&sb, "recovery-stopped-other-os");
    assert_eq!(next, "systemctl reboot", "the pinned one is the default");
    let st = status(&sb);
    assert!(
        st["state_text"]
            .as_str()
            .unwrap()
            .contains("whose /etc was not restored"),
        "{st:#}"
    );
    for dry in [true, false] {
        let mut c = vec!["restore", "--resume"];
        if dry {
            c.push("--dry-run");
        }
        let (code, out, err) = sb.run(&c);
        assert_eq!(code, 1, "{c:?}: {out}{err}");
        assert!(
            err.contains("Nothing was changed")
                && err.contains("reboot into it with `systemctl reboot`"),
            "{err}"
        );
    }
    // `--restart` there: the new recovery's checks refuse (another OS than
    // the pinned one) before the journal is forgotten (the second tester:
    // it was gone after "Nothing was changed").
    let (code, out, err) = sb.run(&["restore", "--restart"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("Nothing was changed"), "{err}");
    assert!(sb.backup_dir().join("journal.json").exists());
    assert_eq!(expect_state(&sb, "recovery-stopped-other-os"), next);
    assert_eq!(changing_calls(&sb, calls), Vec::<String>::new());
    // The way back: the reboot (the default is the recovery's deployment).
    run_next(&sb, &next);
    let next = expect_state(&sb, "recovery-stopped");
    let (code, out, err) = admin(&sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Recovery complete"), "{out}");
    check_restored(&sb, &before, "after the way back");
}

/// Independent tester, session 8: a manifest that does not parse made
/// every command exit 4 on one line naming nothing, and `backup
/// --replace-backup` (the way the docs give for a backup without a
/// manifest) was refused too: the hub's Job failed every cycle. Each names
/// its way on now, and the override replaces the backup.
#[test]
fn a_junk_manifest_names_the_way_on_and_replace_backup_replaces_it() {
    let sb = Sandbox::new();
    take_backup(&sb);
    for junk in [&b"{\"junk\":[1,2,3]}"[..], &[0xff, 0xfe, 0x00, 0x12][..]] {
        std::fs::write(current(&sb, "manifest.json"), junk).unwrap();
        for c in [
            vec!["verify"],
            vec!["restore", "--dry-run"],
            vec!["extract", "/etc/hostname", "--to", "/tmp/ur-junk-x"],
        ] {
            let (code, out, err) = sb.run(&c);
            assert_eq!(code, 4, "{c:?}: {out}{err}");
            assert!(
                err.contains("manifest.json is damaged")
                    && err.contains("`upgrade-recovery verify`")
                    && err.contains("`upgrade-recovery backup --replace-backup`"),
                "{c:?}: {err}"
            );
        }
        let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
        assert_eq!(code, 4, "{out}{err}");
        assert!(
            err.contains("manifest.json is damaged")
                && err.contains("`upgrade-recovery backup --replace-backup`"),
            "{err}"
        );
        let (code, out, err) = sb.run(&["backup", "--replace-backup", "--min-free", "0"]);
        assert_eq!(code, 0, "{out}{err}");
        let (code, out, err) = sb.run(&["verify"]);
        assert_eq!(code, 0, "{out}{err}");
    }
}

/// Second independent tester, session 8: a manifest that parses but lost a
/// tree (or the etcd snapshot) passed `verify`, and the recovery stopped at
/// `restore-etc` after kubelet and CRI-O were stopped, naming "fix the
/// cause above". verify, the dry run and the preflight call it damage.
#[test]
fn a_manifest_without_a_tree_is_damage_before_any_change() {
    let sb = Sandbox::new();
    take_backup(&sb);
    record_failed_upgrade(&sb, 1);
    let path = current(&sb, "manifest.json");
    let whole = std::fs::read(&path).unwrap();
    for (drop, part) in [("etc", "etc.tar.zst"), ("etcd", "etcd snapshot")] {
        let mut m: Value = serde_json::from_slice(&whole).unwrap();
        if drop == "etcd" {
            m.as_object_mut().unwrap().remove("etcd");
        } else {
            m["trees"]
                .as_array_mut()
                .unwrap()
                .retain(|t| t["name"] != drop);
        }
        std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        let calls = sb.calls().len();
        for c in [
            vec!["verify"],
            vec!["restore", "--dry-run"],
            vec!["restore"],
        ] {
            let (code, out, err) = sb.run(&c);
            assert_eq!(code, 4, "{drop} {c:?}: {out}{err}");
            assert!(
                format!("{out}{err}").contains(part)
                    && format!("{out}{err}").contains("not listed"),
                "{drop} {c:?}: {out}{err}"
            );
        }
        assert!(!sb.backup_dir().join("journal.json").exists());
        assert_eq!(changing_calls(&sb, calls), Vec::<String>::new());
    }
    std::fs::write(&path, &whole).unwrap();
    assert_eq!(sb.run(&["verify"]).0, 0);
}
