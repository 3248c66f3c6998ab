//! The documented procedure end to end through `/var/recovery/upgrade-recovery.sh`
//! as an admin runs it from a shell, with `status` asked at every point and
//! the next command it names run as printed; then one test per way an admin
//! can get it wrong (issue 12), each checking the node afterwards.

mod common;

use common::admin::*;
use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// What the node looked like before the upgrade.
struct Before {
    dir: TempDir,
    keys: String,
}

const ETC_EXCLUDES: &str = "--exclude=/cni/multus/certs --exclude=/kubernetes/cni/net.d --exclude=/sandbox-runtime --exclude=/.updated --exclude=/kubernetes/manifests";

fn trees(sb: &Sandbox) -> Vec<(&'static str, PathBuf)> {
    vec![
        ("etc", sb.root().join("etc")),
        ("local", sb.root().join("var/usrlocal")),
        ("kubelet", sb.root().join("var/lib/kubelet")),
    ]
}

fn snapshot(sb: &Sandbox) -> Before {
    let dir = TempDir::new("before");
    for (name, src) in trees(sb) {
        sh(&format!(
            "rsync -aAXHx --numeric-ids {}/ {}/",
            q(&src),
            q(&dir.path().join(name))
        ));
    }
    Before {
        dir,
        keys: sb.etcdctl("get '' --prefix"),
    }
}

fn check_restored(sb: &Sandbox, before: &Before) {
    for (name, node) in trees(sb) {
        let extra = if name == "etc" { ETC_EXCLUDES } else { "-x" };
        assert_eq!(
            rsync_diff(&before.dir.path().join(name), &node, extra),
            Vec::<String>::new(),
            "{name} differs from before the upgrade"
        );
    }
    assert_eq!(sb.etcdctl("get '' --prefix"), before.keys, "etcd keys");
}

fn enabled(sb: &Sandbox, unit: &str) -> bool {
    sb.ctl().join("state/enabled").join(unit).exists()
}

fn active(sb: &Sandbox, unit: &str) -> bool {
    sb.ctl().join("state/active").join(unit).exists()
}

fn selinux(sb: &Sandbox) -> String {
    sb.sh("getenforce").trim().to_string()
}

fn booted(sb: &Sandbox) -> String {
    sb.sh("rpm-ostree status --json | jq -r '.deployments[] | select(.booted) | .checksum + \".\" + (.serial|tostring)'").trim().to_string()
}

fn default_deployment(sb: &Sandbox) -> String {
    sb.sh("rpm-ostree status --json | jq -r '.deployments[0] | .checksum + \".\" + (.serial|tostring)'").trim().to_string()
}

fn journal(sb: &Sandbox) -> PathBuf {
    sb.root().join("var/recovery/journal.json")
}

#[test]
fn the_documented_procedure_through_the_wrapper() {
    let sb = Sandbox::with_profile("rhcos");
    // No backup yet.
    let next = expect_state(&sb, "no-backup");
    assert_eq!(next, "upgrade-recovery backup");
    let (code, _, err) = run_next(&sb, &next);
    assert_eq!(code, 0, "{err}");
    let before = snapshot(&sb);
    let pinned = booted(&sb);
    let next = expect_state(&sb, "backup-ready");
    assert_eq!(next, "upgrade-recovery restore");

    // The upgrade fails and boots a new OS: roll back first.
    fail_upgrade(&sb);
    assert_ne!(booted(&sb), pinned);
    let next = expect_state(&sb, "upgraded-os-booted");
    assert_eq!(next, "upgrade-recovery rollback --reboot");
    let (code, out, err) = run_next(&sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("after the reboot") && out.contains("upgrade-recovery restore"),
        "{out}"
    );
    assert!(sb.ctl().join("state/reboot-requested").exists());
    assert_eq!(default_deployment(&sb), pinned);
    // The shim only records the reboot: until it happens, status says so.
    let next = expect_state(&sb, "rollback-done-reboot-pending");
    assert_eq!(next, "systemctl reboot");
    run_next(&sb, &next);
    assert_eq!(booted(&sb), pinned);

    // The documented first recovery command: the wrapper, no arguments.
    let next = expect_state(&sb, "backup-ready");
    assert_eq!(next, "upgrade-recovery restore");
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    assert!(
        out.contains("/var/recovery/upgrade-recovery.sh --resume"),
        "{out}"
    );
    assert!(!enabled(&sb, "kubelet.service") && !active(&sb, "kubelet.service"));
    assert_eq!(selinux(&sb), "Enforcing");

    // Files phase done: reboot first, whatever the admin runs.
    let next = expect_state(&sb, "files-done-reboot-pending");
    assert_eq!(next, "systemctl reboot");
    let (_, text, _) = sb.run(&["status"]);
    assert!(
        text.contains("is not running or refuses connections (expected while the recovery has kubelet stopped)"),
        "{text}"
    );
    let (code, _, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh");
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("Reboot first (`systemctl reboot`)"), "{err}");
    run_next(&sb, &next);

    // After the reboot: continue through the wrapper.
    let next = expect_state(&sb, "recovery-stopped");
    assert_eq!(next, "/var/recovery/upgrade-recovery.sh --resume");
    let (code, out, err) = run_next(&sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Recovery complete"), "{out}");

    // Done: the node is the one of before the upgrade.
    let next = expect_state(&sb, "recovery-completed");
    assert_eq!(next, "oc get clusteroperators");
    // The command works (the sandbox's API answers it as the real one).
    let (code, out, err) = run_next(&sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("NAME") && out.contains("kube-apiserver") && out.contains("AVAILABLE"),
        "{out}"
    );
    check_restored(&sb, &before);
    assert!(enabled(&sb, "kubelet.service") && active(&sb, "kubelet.service"));
    assert_eq!(selinux(&sb), "Enforcing");
    assert_eq!(booted(&sb), pinned);
    assert!(!journal(&sb).exists());

    // A late `--resume` through the wrapper changes nothing and says so.
    let from = sb.calls().len();
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh --resume");
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no recovery is in progress"), "{err}");
    assert!(err.contains("The last recovery completed at "), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(changing_calls(&sb, from), Vec::<String>::new());
    check_restored(&sb, &before);
    assert!(!journal(&sb).exists());
}

/// 12.1: `--step`, `--restart` and `--force` through the wrapper reach `restore`.
#[test]
fn wrapper_flags_reach_restore() {
    let sb = Sandbox::new();
    assert_eq!(admin(&sb, "upgrade-recovery backup").0, 0);
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh --step");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    assert!(journal(&sb).exists());
    // --force skips the reboot check only: the cluster phase runs in this boot.
    let (code, out, err) = admin(
        &sb,
        "/var/recovery/upgrade-recovery.sh --force --resume --step",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("phase cluster is done"), "{out}");
    // --restart forgets it and starts over: the files phase again.
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh --restart");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    let j: Value = serde_json::from_str(&std::fs::read_to_string(journal(&sb)).unwrap()).unwrap();
    let ids: Vec<&str> = j["completed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.last(), Some(&"selinux-restore"));
    assert!(!ids.contains(&"restore-kubelet"), "{ids:?}");
    assert_eq!(
        expect_state(&sb, "files-done-reboot-pending"),
        "systemctl reboot"
    );
}

/// 12.2: `--resume` with no recovery in progress refuses and changes nothing.
#[test]
fn resume_without_a_recovery_refuses_and_changes_nothing() {
    let sb = Sandbox::new();
    assert_eq!(admin(&sb, "upgrade-recovery backup").0, 0);
    let keys = sb.etcdctl("get '' --prefix");
    let from = sb.calls().len();
    for cmd in [
        "/var/recovery/upgrade-recovery.sh --resume",
        "upgrade-recovery restore --resume",
    ] {
        let (code, out, err) = admin(&sb, cmd);
        assert_eq!(code, 1, "{cmd}: {out}{err}");
        assert!(err.contains("no recovery is in progress"), "{err}");
        assert!(err.contains("No recovery has completed"), "{err}");
        assert!(err.contains("a backup is ready"), "{err}");
        assert!(err.contains("Next: "), "{err}");
    }
    assert_eq!(changing_calls(&sb, from), Vec::<String>::new());
    assert!(!journal(&sb).exists());
    assert!(active(&sb, "kubelet.service") && active(&sb, "crio.service"));
    assert_eq!(sb.etcdctl("get '' --prefix"), keys);
    assert_eq!(selinux(&sb), "Enforcing");
    assert_eq!(
        expect_state(&sb, "backup-ready"),
        "upgrade-recovery restore"
    );
}

/// 12.5: a plain `rollback`, run twice, never reboots; it says what to run.
#[test]
fn rollback_without_reboot_never_reboots() {
    let sb = Sandbox::with_profile("rhcos");
    assert_eq!(admin(&sb, "upgrade-recovery backup").0, 0);
    let pinned = booted(&sb);
    fail_upgrade(&sb);
    let upgraded = booted(&sb);
    for run in 0..2 {
        let (code, out, err) = admin(&sb, "upgrade-recovery rollback");
        assert_eq!(code, 0, "run {run}: {out}{err}");
        assert!(!out.contains("ran: systemctl reboot"), "{out}");
        assert!(
            out.contains("Next: reboot into the pinned deployment with `systemctl reboot`"),
            "{out}"
        );
        assert!(!sb.ctl().join("state/reboot-requested").exists());
        assert!(!sb.calls().iter().any(|c| c == "systemctl reboot"));
    }
    assert_eq!(booted(&sb), upgraded);
    assert_eq!(default_deployment(&sb), pinned);
    let next = expect_state(&sb, "rollback-done-reboot-pending");
    run_next(&sb, &next);
    assert_eq!(booted(&sb), pinned);
    // After it: nothing to do, and the next command is named.
    let (code, out, err) = admin(&sb, "upgrade-recovery rollback");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("nothing to do") && out.contains("`upgrade-recovery restore`"),
        "{out}"
    );
}

/// 12.9: `--force` on the upgraded OS still stops; rollback is the next command.
#[test]
fn force_on_another_os_still_stops() {
    let sb = Sandbox::with_profile("rhcos");
    assert_eq!(admin(&sb, "upgrade-recovery backup").0, 0);
    fail_upgrade(&sb);
    let keys = sb.etcdctl("get '' --prefix");
    let from = sb.calls().len();
    let (code, out, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh --force");
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("--force does not skip this check"), "{err}");
    assert!(
        err.contains("would mix OS versions; nothing was changed"),
        "{err}"
    );
    assert!(
        err.contains("Next: roll the OS back to the pinned deployment with `upgrade-recovery rollback --reboot`"),
        "{err}"
    );
    // Without --force the override is not even named.
    let (code, _, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh");
    assert_eq!(code, 1);
    assert!(!err.contains("--restore-onto-other-os"), "{err}");
    assert_eq!(changing_calls(&sb, from), Vec::<String>::new());
    assert!(!journal(&sb).exists());
    assert_eq!(sb.etcdctl("get '' --prefix"), keys);
    assert!(sb.root().join("etc/new-in-upgrade").exists());
    assert_eq!(
        expect_state(&sb, "upgraded-os-booted"),
        "upgrade-recovery rollback --reboot"
    );
}

/// 12.10: a missing program is named for what needs it.
#[test]
fn a_missing_program_is_named_for_its_use() {
    let sb = Sandbox::new();
    let empty = TempDir::new("emptypath");
    let out = sb
        .command(&["backup", "--with-images"])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ostree (reads, pins and undeploys the OS deployments)"),
        "{err}"
    );
    assert!(
        err.contains("skopeo (copies the container images (--with-images))"),
        "{err}"
    );
    assert!(!err.contains("--with-images needs"), "{err}");
    assert!(!sb.root().join("var/recovery/manifest.json").exists());
    assert_eq!(expect_state(&sb, "no-backup"), "upgrade-recovery backup");
}

/// 12.11: SIGTERM in the middle of the recovery; status while it runs.
#[test]
fn sigterm_says_which_step_what_is_done_and_the_next_command() {
    let sb = Sandbox::new();
    assert_eq!(admin(&sb, "upgrade-recovery backup").0, 0);
    let before = snapshot(&sb);
    let child = sb
        .command(&["restore", "--poll-interval", "100ms"])
        .env("UPGRADE_RECOVERY_PAUSE_AT", "wipe-crio:before")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it pauses (the journal records stop-crio).
    for _ in 0..600 {
        if std::fs::read_to_string(journal(&sb)).is_ok_and(|j| j.contains("\"stop-crio\"")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let st = status(&sb);
    assert_eq!(st["state"]["state"], "recovery-running", "{st:#}");
    assert_eq!(st["state"]["pid"], child.id());
    assert!(
        st["state"]["doing"].as_str().unwrap().contains("wipe-crio"),
        "{st:#}"
    );
    sh(&format!("kill -TERM {}", child.id()));
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(
        err.contains("stopped by SIGTERM during recovery step wipe-crio (phase files)"),
        "{err}"
    );
    assert!(err.contains("5 of 27 steps (last: stop-crio)"), "{err}");
    assert!(
        err.contains(
            "Next: continue the recovery with `/var/recovery/upgrade-recovery.sh --resume`"
        ),
        "{err}"
    );
    let next = expect_state(&sb, "recovery-stopped");
    assert_eq!(next, "/var/recovery/upgrade-recovery.sh --resume");
    let (code, out, err) = run_next(&sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    sb.reboot();
    let (code, out, err) = run_next(&sb, "/var/recovery/upgrade-recovery.sh --resume");
    assert_eq!(code, 0, "{out}{err}");
    check_restored(&sb, &before);
    assert_eq!(selinux(&sb), "Enforcing");
    assert!(enabled(&sb, "kubelet.service"));
}

/// Ctrl-C in the preflight: nothing was changed, and the message says so.
#[test]
fn ctrl_c_in_the_preflight_changed_nothing() {
    let sb = Sandbox::new();
    assert_eq!(admin(&sb, "upgrade-recovery backup").0, 0);
    let from = sb.calls().len();
    let child = sb
        .command(&["restore"])
        .env("UPGRADE_RECOVERY_PAUSE_AT", "preflight:before")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if status(&sb)["state"]["state"] == "recovery-running" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    sh(&format!("kill -INT {}", child.id()));
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("stopped by SIGINT (Ctrl-C) during recovery step preflight"),
        "{err}"
    );
    assert!(err.contains("Done: nothing;"), "{err}");
    assert!(
        err.contains("Next: start the recovery again with `upgrade-recovery restore`"),
        "{err}"
    );
    assert!(!journal(&sb).exists());
    assert_eq!(changing_calls(&sb, from), Vec::<String>::new());
    assert!(active(&sb, "kubelet.service"));
    assert_eq!(
        expect_state(&sb, "backup-ready"),
        "upgrade-recovery restore"
    );
}

/// A damaged backup: status says so; verify gives the outage advice; extract
/// takes what is intact and names what is not.
#[test]
fn a_damaged_backup_is_named_and_extract_takes_the_intact_part() {
    let sb = Sandbox::new();
    // Incompressible data spans many zstd blocks, so a cut leaves whole
    // blocks before it to read.
    sb.sh("head -c 3000000 /dev/urandom > $ROOT/etc/zz-large.bin");
    assert_eq!(admin(&sb, "upgrade-recovery backup").0, 0);
    let dir = sb.root().join("var/recovery");
    let to = TempDir::new("extract");
    // A path that is not in the backup is named.
    let (code, _, err) = sb.run(&[
        "extract",
        "/etc/hostname",
        "/etc/no-such-file",
        "--to",
        to.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not in the backup: /etc/no-such-file"),
        "{err}"
    );
    assert!(to.path().join("etc/hostname").exists());

    // Cut the end of the /etc archive, as a full disk or a bad copy would.
    let archive = dir.join("current/etc.tar.zst");
    let len = std::fs::metadata(&archive).unwrap().len();
    sh(&format!("truncate -s {} {}", len - 1_000_000, q(&archive)));
    let next = expect_state(&sb, "backup-damaged");
    assert_eq!(next, "upgrade-recovery verify");
    let (code, out, err) = admin(&sb, &next);
    assert_eq!(code, 4, "{out}{err}");
    assert!(out.contains("etc.tar.zst"), "{out}");
    assert!(out.contains("another copy of the backup"), "{out}");
    assert!(
        out.contains("upgrade-recovery extract PATH --to DIR"),
        "{out}"
    );
    // The recovery refuses before any change, with the same advice.
    let from = sb.calls().len();
    let (code, _, err) = admin(&sb, "/var/recovery/upgrade-recovery.sh");
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("Nothing was changed") && err.contains("another copy"),
        "{err}"
    );
    assert_eq!(changing_calls(&sb, from), Vec::<String>::new());
    assert!(active(&sb, "kubelet.service"));
    // extract takes the intact entries before the damage and says so.
    let whole = TempDir::new("extract-all");
    let (code, _, err) = sb.run(&["extract", "/etc", "--to", whole.path().to_str().unwrap()]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("the archive etc.tar.zst is damaged"), "{err}");
    assert!(
        err.contains("the entries before the damage were extracted"),
        "{err}"
    );
    assert!(
        err.contains("nothing else on the node was changed"),
        "{err}"
    );
    let got: usize = sh(&format!(
        "find {} -type f | wc -l",
        q(&whole.path().join("etc"))
    ))
    .trim()
    .parse()
    .unwrap();
    let all: usize = sh(&format!(
        "find {} -type f | wc -l",
        q(&sb.root().join("etc"))
    ))
    .trim()
    .parse()
    .unwrap();
    // What was extracted is intact: equal to the node's files.
    let differ = sh(&format!(
        "rsync -nrlc --out-format=%n {}/ {}/",
        q(&whole.path().join("etc")),
        q(&sb.root().join("etc"))
    ));
    assert_eq!(
        differ.trim(),
        "",
        "extracted files that differ from the node's"
    );
    assert!(
        got > 0 && got < all,
        "extracted {got} of {all} files: {}",
        sh(&format!(
            "cd {} && find . -type f -newer {} | head",
            q(&whole.path().join("etc")),
            q(&archive)
        ))
    );
}

/// Typos are answered with visible commands only; durations take units.
#[test]
fn typos_suggest_visible_commands_and_durations_take_units() {
    let run = |args: &[&str]| {
        let o = Command::new(binary()).args(args).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["tre"]);
    assert_eq!(code, Some(2));
    assert!(!err.contains("'tree'"), "{err}");
    let (_, err) = run(&["generate-doc"]);
    assert!(!err.contains("generate-docs"), "{err}");
    let (_, err) = run(&["statu"]);
    assert!(err.contains("'status'"), "{err}");
    let (code, err) = run(&["restore", "--wait-timeout", "20x", "--dry-run"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is not a duration"), "{err}");
}

/// What the backup dir holds (names, sizes, times) and `status`, to show a
/// run changed nothing there.
fn backup_dir_and_status(sb: &Sandbox) -> (String, Value) {
    let listing = sb.sh("cd $ROOT/var/recovery && find . -printf '%p %s %T@ %m\\n' | sort");
    let mut st = status(sb);
    // What status computes afresh on every call, not what the node holds.
    st.as_object_mut().unwrap().remove("checked_at");
    (listing, st)
}

/// The error of a refusal: from the logger's `error:` line to the end.
fn refusal(err: &str) -> String {
    let r = err
        .lines()
        .skip_while(|l| !l.starts_with("upgrade-recovery: error: "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!r.is_empty(), "no error in {err}");
    r
}

/// 17.3: on the upgraded OS `restore --dry-run` refuses as the real run
/// does (exit 1, the rollback named) and changes nothing.
#[test]
fn dry_run_on_the_wrong_os_refuses_like_the_real_run() {
    let sb = Sandbox::with_profile("rhcos");
    assert_eq!(admin(&sb, "upgrade-recovery backup").0, 0);
    fail_upgrade(&sb);
    let keys = sb.etcdctl("get '' --prefix");
    let before = backup_dir_and_status(&sb);
    let from = sb.calls().len();
    let (code, out, err) = admin(&sb, "upgrade-recovery restore --dry-run");
    assert_eq!(code, 1, "{out}{err}");
    assert!(!out.contains("Recovery plan"), "{out}");
    assert!(
        err.contains("Next: roll the OS back to the pinned deployment with `upgrade-recovery rollback --reboot`"),
        "{err}"
    );
    assert_eq!(changing_calls(&sb, from), Vec::<String>::new());
    assert_eq!(backup_dir_and_status(&sb), before);
    assert!(!journal(&sb).exists());
    assert!(!sb.root().join("var/recovery/selinux-mode.json").exists());
    assert_eq!(sb.etcdctl("get '' --prefix"), keys);
    assert_eq!(selinux(&sb), "Enforcing");
    // The real run gives the same code and message.
    let (real, _, real_err) = admin(&sb, "upgrade-recovery restore");
    assert_eq!(real, code);
    assert_eq!(refusal(&real_err), refusal(&err));
}

/// 17.3: on a good node the dry run prints the steps, changes nothing, and
/// the command it names carries out exactly its files phase.
#[test]
fn dry_run_on_a_good_node_prints_the_plan_the_real_run_carries_out() {
    use upgrade_recovery::testing::recovery::STEPS;
    let sb = Sandbox::new();
    assert_eq!(admin(&sb, "upgrade-recovery backup").0, 0);
    let before = backup_dir_and_status(&sb);
    let from = sb.calls().len();
    let (code, out, err) = admin(&sb, "upgrade-recovery restore --dry-run --output json");
    assert_eq!(code, 0, "{out}{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, STEPS.iter().map(|s| s.id.as_str()).collect::<Vec<_>>());
    assert!(plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["done"] == false));
    let (code, text, _) = admin(&sb, "upgrade-recovery restore --dry-run");
    assert_eq!(code, 0);
    assert!(text.contains("[ ] preflight"), "{text}");
    let next = text
        .lines()
        .find_map(|l| l.strip_prefix("Next: carry it out with `"))
        .and_then(|l| l.strip_suffix("`."))
        .unwrap_or_else(|| panic!("no next command in {text}"))
        .to_string();
    assert_eq!(next, "upgrade-recovery restore");
    assert_eq!(changing_calls(&sb, from), Vec::<String>::new());
    assert_eq!(backup_dir_and_status(&sb), before);
    assert!(!journal(&sb).exists());
    assert!(!sb.root().join("var/recovery/selinux-mode.json").exists());
    // The named command runs the plan's files phase, in its order.
    let (code, out, err) = run_next(&sb, &next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    let j: Value = serde_json::from_slice(&std::fs::read(journal(&sb)).unwrap()).unwrap();
    let done: Vec<&str> = j["completed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    let files: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["phase"] == "files")
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(done, files);
}

/// 17.3: `restore --dry-run --resume` with no recovery in progress refuses
/// like the real run and changes nothing.
#[test]
fn dry_run_resume_without_a_recovery_refuses_like_the_real_run() {
    let sb = Sandbox::new();
    assert_eq!(admin(&sb, "upgrade-recovery backup").0, 0);
    let before = backup_dir_and_status(&sb);
    let from = sb.calls().len();
    let (code, out, err) = admin(&sb, "upgrade-recovery restore --dry-run --resume");
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no recovery is in progress"), "{err}");
    assert!(!out.contains("Recovery plan"), "{out}");
    assert_eq!(changing_calls(&sb, from), Vec::<String>::new());
    assert_eq!(backup_dir_and_status(&sb), before);
    let (real, _, real_err) = admin(&sb, "upgrade-recovery restore --resume");
    assert_eq!(real, code);
    assert_eq!(refusal(&real_err), refusal(&err));
}
