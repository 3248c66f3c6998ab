//! A backup or a recovery in another backup dir than the one a command is
//! given (issue 22, item 6): `status` names it and its command there, and
//! no backup or other recovery runs while a recovery is under way in any
//! dir. What was read of the other dirs (the record of backup dirs, the
//! auto-resume unit, another dir's journal and manifest) is checked before
//! it is obeyed: each absent and malformed here. And one source of next
//! commands: at every state reached, `status`'s command is the README's
//! table's, rendered for the dir.

mod common;

use common::recovery::restore;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

const RECORD: &str = "var/lib/upgrade-recovery/backup-dirs";
const UNIT: &str = "etc/systemd/system/upgrade-recovery-resume.service";

/// The README's table of states: state -> next command, as written for
/// `/var/recovery`.
fn readme_table() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(project().join("README.md")).unwrap();
    let b = text
        .find("<!-- states: generated")
        .expect("the table's marker");
    let e = b + text[b..].find("<!-- end of states -->").unwrap();
    text[b..e]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cols: Vec<&str> = l.split(" | ").collect();
            let id = cols[0].trim_start_matches("| ").trim_matches('`');
            let cmd = cols
                .last()
                .unwrap()
                .trim_end_matches(" |")
                .trim_matches('`');
            (id.to_string(), cmd.to_string())
        })
        .collect()
}

/// The table's command of `state`, rendered for the backup dir `dir` (and
/// `other`, the dir a `backup-elsewhere` row names as D): this tool gets
/// `--dir` when the dir is not the default one, the wrapper is the dir's.
fn table_command(state: &str, dir: &str, other: &str) -> String {
    let t = readme_table();
    let cmd = t
        .get(state)
        .unwrap_or_else(|| panic!("{state} is not in the README's table"));
    let cmd = cmd.replace("--dir D ", &format!("--dir {other} ")).replace(
        "/var/recovery/upgrade-recovery.sh",
        &format!("{dir}/upgrade-recovery.sh"),
    );
    match cmd.strip_prefix("upgrade-recovery ") {
        Some(args) if dir != "/var/recovery" && !args.starts_with("--dir ") => {
            format!("upgrade-recovery --dir {dir} {args}")
        }
        _ => cmd,
    }
}

/// `status --output json` in `dir` (None: the default), exit 0.
fn status(sb: &Sandbox, dir: Option<&str>) -> Value {
    let mut args = vec![];
    if let Some(d) = dir {
        args.extend(["--dir", d]);
    }
    args.extend(["status", "--output", "json"]);
    let (code, out, err) = sb.run(&args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// The state in `dir`, and its command checked against the README's table
/// rendered for `shown` (the dir whose state it is).
fn expect(sb: &Sandbox, dir: Option<&str>, state: &str, shown: &str, other: &str) -> Value {
    let st = status(sb, dir);
    assert_eq!(st["state"]["state"], state, "{st:#}");
    assert_eq!(
        st["next_command"].as_str().unwrap(),
        table_command(state, shown, other),
        "status's command is the table's for {shown}: {st:#}"
    );
    st
}

/// What must not change: the listing of both dirs (names, sizes, modes,
/// times), the journal's bytes, the deployments, the calls that change.
fn fingerprint(sb: &Sandbox) -> (String, String, String, usize) {
    (
        sb.sh("for d in var/recovery var/recovery2; do ls -lAR --time-style=+%s.%N $ROOT/$d 2>&1; done"),
        sb.sh("sha256sum $ROOT/var/recovery2/journal.json"),
        sb.ostree_status(),
        sb.calls_but_api_reads().len(),
    )
}

/// Backup in /var/recovery2, the files phase, its reboot: the recovery is
/// half done there (kubelet disabled, etcd stopped), and the record of
/// backup dirs marks it.
fn half_done_in_recovery2(sb: &Sandbox, default_dir_backup: bool) {
    expect(
        sb,
        Some("/var/recovery2"),
        "no-backup",
        "/var/recovery2",
        "",
    );
    if default_dir_backup {
        let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
        assert_eq!(code, 0, "{out}{err}");
    }
    let (code, out, err) = sb.run(&["--dir", "/var/recovery2", "backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{out}{err}");
    expect(
        sb,
        Some("/var/recovery2"),
        "backup-ready",
        "/var/recovery2",
        "",
    );
    if !default_dir_backup {
        // Plain status names the other dir's backup, whatever is pinned.
        let st = expect(
            sb,
            None,
            "backup-elsewhere",
            "/var/recovery",
            "/var/recovery2",
        );
        let text = st["state_text"].as_str().unwrap();
        assert!(
            text.contains("/var/recovery2 holds one")
                && text.contains("a backup is ready and the node runs the OS deployment it pinned"),
            "{text}"
        );
    }
    let (code, out, err) = restore(sb, &["--dir", "/var/recovery2"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    expect(
        sb,
        Some("/var/recovery2"),
        "files-done-reboot-pending",
        "/var/recovery2",
        "",
    );
    sb.reboot();
    let st = expect(
        sb,
        Some("/var/recovery2"),
        "recovery-stopped",
        "/var/recovery2",
        "",
    );
    assert_eq!(
        st["next_command"],
        "/var/recovery2/upgrade-recovery.sh --resume"
    );
    assert_eq!(
        std::fs::read_to_string(sb.root().join(RECORD)).unwrap(),
        if default_dir_backup {
            "/var/recovery\n/var/recovery2\trecovery-under-way\n"
        } else {
            "/var/recovery2\trecovery-under-way\n"
        }
    );
}

/// The independent tester's case (session 4): plain `status` said "no
/// backup ... take one", and that backup failed on the stopped etcd. Now
/// status names the recovery and its command there; backup refuses (exit
/// 3) before any change.
#[test]
fn the_testers_case_a_recovery_half_done_in_another_dir() {
    let sb = Sandbox::with_profile("rhcos");
    half_done_in_recovery2(&sb, false);
    let before = fingerprint(&sb);

    let st = expect(&sb, None, "recovery-stopped", "/var/recovery2", "");
    assert_eq!(st["backup"]["dir"], "/var/recovery");
    assert_eq!(st["backup"]["exists"], false);
    let text = st["state_text"].as_str().unwrap();
    assert!(
        text.starts_with("a recovery is under way in /var/recovery2 (not in /var/recovery): the recovery stopped before step"),
        "{text}"
    );
    assert!(
        st["next"]
            .as_str()
            .unwrap()
            .contains("continue with `/var/recovery2/upgrade-recovery.sh --resume`"),
        "{st:#}"
    );
    // As the tester read it, in text.
    let (code, out, err) = sb.run(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("take one"), "{out}");
    // etcd is down because of that recovery, and status says so.
    assert!(
        out.contains("(expected while the recovery has kubelet stopped)"),
        "{out}"
    );
    assert!(
        out.contains(
            "Other backup dir: /var/recovery2 holds a recovery under way (found by /var/*/)"
        ) && out.contains("Next: continue with `/var/recovery2/upgrade-recovery.sh --resume`"),
        "{out}"
    );

    for dry in [true, false] {
        let mut args = vec!["backup", "--min-free", "0"];
        if dry {
            args.push("--dry-run");
        }
        let (code, out, err) = sb.run(&args);
        assert_eq!(code, 3, "{args:?}: {out}{err}");
        assert!(
            err.contains("refusing to take a backup: a recovery is under way in /var/recovery2. Nothing was changed")
                && err.contains("In /var/recovery2: continue with `/var/recovery2/upgrade-recovery.sh --resume`")
                && err.contains("`upgrade-recovery --dir /var/recovery2 status` shows where it stands"),
            "{err}"
        );
        assert!(!err.contains("there is no backup"), "{err}");
    }
    assert!(
        !sb.root().join("var/recovery/.lock").exists(),
        "the backup took a lock in /var/recovery"
    );
    assert_eq!(fingerprint(&sb), before, "the node or a dir changed");
}

/// A restore in /var/recovery (which holds a backup) while a recovery is
/// under way in /var/recovery2 is refused (exit 3), and so are a backup and
/// the hub's Job (which sees only /var/recovery: the record's mark says).
#[test]
fn a_restore_backup_or_job_in_one_dir_waits_for_a_recovery_in_another() {
    let sb = Sandbox::new();
    half_done_in_recovery2(&sb, true);
    let before = fingerprint(&sb);
    let st = expect(&sb, None, "recovery-stopped", "/var/recovery2", "");
    assert_eq!(st["backup"]["exists"], true, "{st:#}");
    for args in [vec![], vec!["--resume"], vec!["--dry-run"]] {
        let (code, out, err) = restore(&sb, &args, None);
        assert_eq!(code, Some(3), "{args:?}: {out}{err}");
        assert!(
            err.contains("refusing to start a recovery: a recovery is under way in /var/recovery2")
                && err.contains("`/var/recovery2/upgrade-recovery.sh --resume`"),
            "{args:?}: {err}"
        );
    }
    let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 3, "{out}{err}");
    for args in [["rollback", "--reboot"], ["rollback", "--dry-run"]] {
        let (code, out, err) = sb.run(&args);
        assert_eq!(code, 3, "{args:?}: {out}{err}");
        assert!(
            err.contains("refusing to roll the OS back: a recovery is under way in /var/recovery2"),
            "{err}"
        );
    }
    // The Job: its jail mounts /var/lib and /var/recovery only.
    let t = TempDir::new("jobhost");
    let out = sb
        .job(&t.path().join("host"), "", "", false)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3), "{log}");
    assert!(
        log.contains("a recovery is under way in /var/recovery2 (/var/lib/upgrade-recovery/backup-dirs marks it; /var/recovery2 is not visible here"),
        "{log}"
    );
    assert_eq!(fingerprint(&sb), before, "the node or a dir changed");
}

/// Each source of other dirs, absent and malformed: the record, the
/// resume unit, another dir's journal and manifest. Nothing malformed is
/// obeyed, and what was ignored is said.
#[test]
fn what_is_read_of_other_dirs_is_checked_before_it_is_obeyed() {
    let sb = Sandbox::new();
    let root = sb.root();
    let w = |p: &str, text: &str| {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
    };
    let notes = |st: &Value| st["elsewhere"]["notes"].to_string();
    std::fs::create_dir_all(root.join("srv")).unwrap();
    // All absent: no backup anywhere.
    expect(&sb, None, "no-backup", "/var/recovery", "");
    // A backup outside /var: found by the record its backup wrote.
    let (code, out, err) = sb.run(&["--dir", "/srv/b", "backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(root.join(RECORD)).unwrap(),
        "/srv/b\n"
    );
    let st = expect(&sb, None, "backup-elsewhere", "/var/recovery", "/srv/b");
    assert_eq!(
        st["elsewhere"]["found"][0]["from"],
        format!("/{RECORD}"),
        "{st:#}"
    );
    // The record malformed: ignored, and said.
    let good = std::fs::read(root.join(RECORD)).unwrap();
    for (bad, why) in [
        ("srv/b\n", "line 1: `srv/b` is not an absolute path"),
        (
            "/srv/b\tdone\n",
            "line 1: `done` is not `recovery-under-way`",
        ),
        ("/srv/\u{7f}b\n", "line 1: a path with control characters"),
    ] {
        w(RECORD, bad);
        let st = expect(&sb, None, "no-backup", "/var/recovery", "");
        assert!(notes(&st).contains(why), "{bad:?}: {st:#}");
    }
    std::fs::write(root.join(RECORD), [0xff, 0xfe, b'\n']).unwrap();
    assert!(notes(&status(&sb, None)).contains("not UTF-8 text: ignored"));
    sh(&format!("chmod 0666 {}", q(&root.join(RECORD))));
    std::fs::write(root.join(RECORD), &good).unwrap();
    assert!(notes(&status(&sb, None)).contains("someone else could have written it"));
    std::fs::remove_file(root.join(RECORD)).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join(RECORD)).unwrap();
    assert!(notes(&status(&sb, None)).contains("not a regular file"));
    std::fs::remove_file(root.join(RECORD)).unwrap();
    // A record naming a dir with nothing, one that is gone: not obeyed.
    std::fs::create_dir_all(root.join("srv/empty")).unwrap();
    w(RECORD, "/srv/empty\n/srv/gone\n");
    let st = expect(&sb, None, "no-backup", "/var/recovery", "");
    assert!(
        notes(&st).contains("names /srv/empty, which holds no backup and no recovery: ignored")
            && notes(&st).contains("names /srv/gone, which is not there: ignored"),
        "{st:#}"
    );
    // A stale mark (a dir that is there, without a journal): not obeyed.
    w(RECORD, "/srv/b\trecovery-under-way\n");
    let st = expect(&sb, None, "backup-elsewhere", "/var/recovery", "/srv/b");
    assert!(notes(&st).contains("the mark is stale"), "{st:#}");
    std::fs::remove_file(root.join(RECORD)).unwrap();
    assert_eq!(sb.run(&["backup", "--min-free", "0", "--dry-run"]).0, 0);

    // The resume unit: found by its --dir; malformed, ignored and said.
    let unit = include_str!("../packaging/upgrade-recovery-resume.service")
        .replace("/var/recovery", "/srv/b");
    w(UNIT, &unit);
    let st = expect(&sb, None, "backup-elsewhere", "/var/recovery", "/srv/b");
    assert_eq!(
        st["elsewhere"]["found"][0]["from"],
        format!("/{UNIT}"),
        "{st:#}"
    );
    for (bad, why) in [
        ("[Unit]\n", "no ExecStart= line"),
        (
            "[Service]\nExecStart=/srv/b/upgrade-recovery restore --resume\n",
            "its ExecStart= has no --dir",
        ),
        (
            "[Service]\nExecStart=/x --dir srv/b restore\n",
            "`srv/b` is not an absolute path",
        ),
    ] {
        w(UNIT, bad);
        let st = expect(&sb, None, "no-backup", "/var/recovery", "");
        assert!(notes(&st).contains(why), "{bad:?}: {st:#}");
    }
    std::fs::remove_file(root.join(UNIT)).unwrap();

    // Another dir's journal, malformed: a recovery is under way there all
    // the same (its state says the journal cannot be read).
    std::fs::rename(root.join("srv/b"), root.join("var/other")).unwrap();
    w("var/other/journal.json", "{not json");
    let st = expect(&sb, None, "journal-unreadable", "/var/other", "");
    assert_eq!(
        st["next_command"],
        "upgrade-recovery --dir /var/other restore --restart"
    );
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 3, "{err}");
    std::fs::remove_file(root.join("var/other/journal.json")).unwrap();
    // Another dir's manifest, malformed: named, its state damaged there.
    sh(&format!(
        "cd {} && m=$(readlink -f manifest.json) && echo '{{' > $m",
        q(&root.join("var/other"))
    ));
    let st = expect(&sb, None, "backup-elsewhere", "/var/recovery", "/var/other");
    assert!(
        st["state_text"]
            .as_str()
            .unwrap()
            .contains("the backup in /var/other is damaged"),
        "{st:#}"
    );
    // Another dir's manifest absent (nothing of a backup left): not named.
    sh(&format!("rm -rf {}/*", q(&root.join("var/other"))));
    assert!(Path::new(&root.join("var/other")).is_dir());
    expect(&sb, None, "no-backup", "/var/recovery", "");
    // The record marks recoveries in two dirs that cannot be seen (as in
    // the Job's jail): obeyed, with the way out if they were removed.
    w(
        RECORD,
        "/srv/gone1\trecovery-under-way\n/srv/gone2\trecovery-under-way\n",
    );
    let st = status(&sb, None);
    assert!(
        st["state_text"]
            .as_str()
            .unwrap()
            .starts_with("a recovery is under way in /srv/gone1 (not in /var/recovery)"),
        "{st:#}"
    );
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("/srv/gone1 is not visible here")
            && err.contains(
                r"`sed -i '\#^/srv/gone1\(\t\|$\)#d' /var/lib/upgrade-recovery/backup-dirs`"
            ),
        "{err}"
    );
}

/// A node's procedure with its backup in `/var/recovery2`: at every state
/// it reaches, `status --dir /var/recovery2` names the README table's
/// command rendered for that dir (one source of next commands).
#[test]
fn at_every_state_reached_status_names_the_tables_command_for_the_dir() {
    let sb = Sandbox::with_profile("rhcos");
    let r2 = "/var/recovery2";
    let at = |state: &str| expect(&sb, Some(r2), state, r2, "");
    let run = |args: &[&str]| {
        let mut v = vec!["--dir", r2];
        v.extend(args);
        let (code, out, err) = sb.run(&v);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    };
    let upgrade = |version: &str, os: &str, state: &str| {
        let (d, p) = (q(sb.dir.path()), q(&project()));
        sh(&format!(
            "{p}/scripts/sandbox.sh cluster-upgrade {d} {version} {state} >/dev/null; {p}/scripts/sandbox.sh upgrade-os {d} {os} >/dev/null"
        ));
        sb.reboot();
    };
    at("no-backup");
    // Today's script's backup there first; ours replaces it.
    talm_layout(&sb, r2, None);
    at("talm-backup");
    run(&["backup", "--min-free", "0"]);
    at("backup-ready");
    let dir = sb.root().join("var/recovery2");
    // Today's script's progress file, an unreadable journal, a damaged
    // part: each put back after.
    std::fs::write(dir.join("progress"), "restore_files\n").unwrap();
    at("legacy-recovery");
    std::fs::remove_file(dir.join("progress")).unwrap();
    std::fs::write(dir.join("journal.json"), "{").unwrap();
    at("journal-unreadable");
    std::fs::remove_file(dir.join("journal.json")).unwrap();
    let part = dir.join("current/etc.tar.zst");
    let good = std::fs::read(&part).unwrap();
    std::fs::write(&part, [&good[..], b"x"].concat()).unwrap();
    at("backup-damaged");
    std::fs::write(&part, &good).unwrap();
    at("backup-ready");
    // A good upgrade, then the next backup.
    upgrade("4.17.0", "417.94.202411010000-0", "Completed");
    at("upgrade-completed");
    run(&["backup", "--min-free", "0"]);
    at("backup-ready");
    // A failed upgrade: roll back, reboot, recover.
    upgrade("4.18.0", "418.94.202502010000-0", "Partial");
    at("upgraded-os-booted");
    // TALM's backup taken before that upgrade, in a third dir.
    talm_layout(&sb, "/var/recovery3", Some("2024-05-14 16:54"));
    expect(
        &sb,
        Some("/var/recovery3"),
        "talm-backup-upgrade-failed",
        "/var/recovery3",
        "",
    );
    sh(&format!("rm -rf {}", q(&sb.root().join("var/recovery3"))));
    run(&["rollback"]);
    at("rollback-done-reboot-pending");
    sb.reboot();
    at("rolled-back-not-recovered");
    let (code, out, err) = restore(&sb, &["--dir", r2], None);
    assert_eq!(code, Some(0), "{out}{err}");
    at("files-done-reboot-pending");
    sb.reboot();
    at("recovery-stopped");
    let (code, out, err) = restore(&sb, &["--dir", r2, "--resume"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Recovery complete"), "{out}");
    at("recovery-completed");
    // The record: the dir, unmarked once the recovery completed.
    assert_eq!(
        std::fs::read_to_string(sb.root().join(RECORD)).unwrap(),
        "/var/recovery2\n"
    );
}

/// TALM's upgrade-recovery.sh layout in `dir` (its `take_backup`: the
/// cluster backup, the copies of the trees, the exclude list, its script),
/// its `cluster/` dated `date` when given.
fn talm_layout(sb: &Sandbox, dir: &str, date: Option<&str>) {
    sb.sh(&format!(
        r#"D=$ROOT{dir}; mkdir -p $D/cluster; chmod 0700 $D
head -c 8192 /dev/urandom > $D/cluster/snapshot_2024-05-14_165400__POSSIBLY_DIRTY__.db
printf '.updated\nkubernetes/manifests\n' > $D/etc.exclude.list
cp -Ra $ROOT/etc $D/etc; cp -Ra $ROOT/var/usrlocal $D/local; cp -Ra $ROOT/var/lib/kubelet $D/kubelet
printf '#!/bin/bash\necho "TALM script $*"\n' > $D/upgrade-recovery.sh; chmod 0755 $D/upgrade-recovery.sh
{}"#,
        date.map_or(String::new(), |d| format!("touch -d '{d}' $D/cluster"))
    ));
}
