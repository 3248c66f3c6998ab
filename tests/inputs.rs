//! The rule: every file and program the tool reads from the node has a test
//! where it is absent and one where it is malformed, with the expected
//! outcome (skip with a warning, or a clear error before any change).
//!
//! `INPUTS` lists them (found by grepping src/ for host paths and programs
//! run); `every_input_has_its_absent_and_malformed_tests` checks that each
//! named test exists in tests/*.rs or src/. Rows with `pending` name the
//! helper whose branch brings the test (not merged here yet).

mod common;

use common::*;

struct Input {
    /// The node path or program.
    what: &'static str,
    /// Expected outcome when absent, and the test that shows it.
    absent: (&'static str, &'static str),
    /// Expected outcome when malformed, and the test that shows it.
    malformed: (&'static str, &'static str),
    /// Who brings the tests when they are not on this branch yet.
    pending: Option<&'static str>,
}

const SKIP: &str = "skip with a warning";
const REFUSE: &str = "clear error before any change";
const PRESENCE: &str = "presence only: no content to be malformed";

const INPUTS: &[Input] = &[
    Input {
        what: "/proc/cmdline (ostree= karg: the booted deployment)",
        absent: (SKIP, "booted_cmdline_absent_falls_back_to_rpm_ostree"),
        malformed: (
            REFUSE,
            "booted_cmdline_malformed_refuses_backup_before_any_change",
        ),
        pending: None,
    },
    Input {
        what: "/sysroot/ostree/boot.N/<os>/<bootcsum>/<serial> (the ostree= link)",
        absent: (REFUSE, "booted_cmdline_dangling_link_refuses_backup"),
        malformed: (REFUSE, "booted_cmdline_link_to_a_non_deployment_refuses"),
        pending: None,
    },
    Input {
        what: "/run/ostree-booted",
        absent: (SKIP, "booted_flag_absent_skips_rpm_ostree_as_in_the_job"),
        malformed: (
            PRESENCE,
            "booted_flag_absent_skips_rpm_ostree_as_in_the_job",
        ),
        pending: None,
    },
    Input {
        what: "/run/ostree/staged-deployment (a staged deployment ostree lists only when booted)",
        absent: (
            "nothing staged: the backup goes on",
            "the_job_entrypoint_backs_up_from_the_jail_and_puts_the_flag_back",
        ),
        malformed: (
            REFUSE,
            "a_malformed_staged_record_refuses_the_backup_before_any_change",
        ),
        pending: None,
    },
    Input {
        what: "rpm-ostree rollback (needs /run/ostree-booted)",
        absent: (SKIP, "rollback_without_the_booted_flag_uses_plain_ostree"),
        malformed: (
            PRESENCE,
            "rollback_without_the_booted_flag_uses_plain_ostree",
        ),
        pending: None,
    },
    Input {
        what: "rpm-ostree status --json",
        absent: (SKIP, "status_reads_the_node"),
        malformed: (REFUSE, "garbage_is_an_error_not_a_guess"),
        pending: None,
    },
    Input {
        what: "ostree admin status",
        absent: (REFUSE, "missing_programs_are_named_before_anything_changes"),
        malformed: (REFUSE, "garbage_is_an_error_not_a_guess"),
        pending: None,
    },
    Input {
        what: "/etc/containers/storage.conf",
        absent: (
            SKIP,
            "selinux_mode_survives_restart_and_no_storage_conf_is_needed",
        ),
        malformed: (REFUSE, "storage_conf_malformed"),
        pending: None,
    },
    Input {
        what: "/etc/machine-config-daemon/currentconfig",
        absent: (SKIP, "currentconfig_absent_backs_up_without_mco_files"),
        malformed: (REFUSE, "currentconfig_malformed_refuses_backup"),
        pending: None,
    },
    Input {
        what: "/etc/tmpfiles.d",
        absent: (SKIP, "tmpfiles_absent_backs_up_with_an_empty_exclude_list"),
        malformed: (SKIP, "tmpfiles_malformed_line_is_skipped_with_a_warning"),
        pending: None,
    },
    Input {
        what: "/usr/local/bin/cluster-backup.sh (--etcd-backup=script)",
        absent: (REFUSE, "script_backup_absent_refuses_before_any_change"),
        malformed: (REFUSE, "script_backup_failing_refuses_with_its_stderr"),
        pending: None,
    },
    Input {
        what: "/usr/local/bin/cluster-restore.sh (--etcd-restore=script)",
        absent: (REFUSE, "script_restore_absent_refuses_before_any_change"),
        malformed: (REFUSE, "script_restore_failing_stops_with_its_stderr"),
        pending: None,
    },
    Input {
        what: "/etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-scripts/etcd.env",
        absent: (REFUSE, "etcd_env_absent_refuses_backup"),
        malformed: (REFUSE, "etcd_env_malformed_refuses_backup"),
        pending: None,
    },
    Input {
        what: "/etc/kubernetes/manifests/<name>-pod.yaml (live revisions)",
        absent: (REFUSE, "static_pod_manifest_absent_refuses_backup"),
        malformed: (REFUSE, "static_pod_manifest_malformed_refuses_backup"),
        pending: None,
    },
    Input {
        what: "/proc/sys/kernel/random/boot_id",
        absent: (REFUSE, "boot_id_absent_is_a_clear_error"),
        malformed: (PRESENCE, "boot_id_absent_is_a_clear_error"),
        pending: None,
    },
    Input {
        what: "backup manifest.json",
        absent: (REFUSE, "damage_is_found_by_verify"),
        malformed: (REFUSE, "damage_is_found_by_verify"),
        pending: None,
    },
    Input {
        what: "recovery journal",
        absent: (
            SKIP,
            "resume_without_a_recovery_refuses_and_changes_nothing",
        ),
        malformed: (REFUSE, "refusals_before_any_change"),
        pending: None,
    },
    Input {
        what: "failures.json (the last failure of each command, for status)",
        absent: (SKIP, "recorded_cleared_and_read_leniently"),
        malformed: (SKIP, "recorded_cleared_and_read_leniently"),
        pending: None,
    },
    Input {
        what: "crictl ps/images -o json",
        absent: (
            REFUSE,
            "restore_programs_absent_are_named_before_any_change",
        ),
        malformed: (REFUSE, "crictl_and_oc_json_parse_or_fail"),
        pending: None,
    },
    Input {
        what: "oc (cluster operators, IBU, OADP)",
        absent: (
            REFUSE,
            "restore_programs_absent_are_named_before_any_change",
        ),
        malformed: (REFUSE, "crictl_and_oc_json_parse_or_fail"),
        pending: None,
    },
    Input {
        what: "crio wipe, setenforce, getenforce",
        absent: (
            REFUSE,
            "restore_programs_absent_are_named_before_any_change",
        ),
        malformed: (
            PRESENCE,
            "restore_programs_absent_are_named_before_any_change",
        ),
        pending: None,
    },
    Input {
        what: "skopeo (image copy)",
        absent: (
            REFUSE,
            "skopeo_absent_with_images_refuses_before_any_change",
        ),
        malformed: (
            REFUSE,
            "skopeo_malformed_output_fails_the_backup_keeping_the_previous",
        ),
        pending: None,
    },
    Input {
        what: "/var/lib/upgrade-recovery/backup-dirs (the record of backup dirs)",
        absent: (
            "the dirs under /var/*/ and the resume unit's only",
            "what_is_read_of_other_dirs_is_checked_before_it_is_obeyed",
        ),
        malformed: (
            "ignored as a whole, said in status (a note)",
            "what_is_read_of_other_dirs_is_checked_before_it_is_obeyed",
        ),
        pending: None,
    },
    Input {
        what: "/etc/systemd/system/upgrade-recovery-resume.service (its --dir, for other dirs)",
        absent: (
            "the dirs under /var/*/ and the record's only",
            "what_is_read_of_other_dirs_is_checked_before_it_is_obeyed",
        ),
        malformed: (
            "ignored, said in status (a note)",
            "what_is_read_of_other_dirs_is_checked_before_it_is_obeyed",
        ),
        pending: None,
    },
    Input {
        what: "<another dir>/journal.json and manifest.json (a recovery or a backup elsewhere)",
        absent: (
            "nothing there: not named",
            "what_is_read_of_other_dirs_is_checked_before_it_is_obeyed",
        ),
        malformed: (
            "named with that dir's state (journal-unreadable, backup-damaged); a journal refuses backup and restore here (exit 3)",
            "what_is_read_of_other_dirs_is_checked_before_it_is_obeyed",
        ),
        pending: None,
    },
    Input {
        what: "<dir>/current/upgrade-recovery and upgrade-recovery.sh (the tool's copy; sha256 in the manifest)",
        absent: (
            "damaged (exit 4) naming it; an older manifest: \"not recorded\", presence and execute bit checked",
            "an_older_manifest_without_the_tools_records_still_reads",
        ),
        malformed: (
            "damaged (exit 4) naming it, the way out printed; restore refuses before its first change",
            "a_damaged_copy_of_the_tool_is_found_and_put_back",
        ),
        pending: None,
    },
];

/// Every `fn name` in tests/*.rs and src/**/*.rs.
fn test_names() -> String {
    sh(&format!(
        "grep -rhoE 'fn [a-z0-9_]+' {p}/tests {p}/src | sort -u",
        p = q(&project())
    ))
}

#[test]
fn every_input_has_its_absent_and_malformed_tests() {
    let names = test_names();
    let has = |n: &str| names.lines().any(|l| l == format!("fn {n}"));
    let mut missing = Vec::new();
    let mut pending = Vec::new();
    for i in INPUTS {
        for (outcome, name) in [i.absent, i.malformed] {
            assert!(!outcome.is_empty() && !name.is_empty(), "{}", i.what);
            match (has(name), i.pending) {
                (true, _) => {}
                (false, None) => missing.push(format!("{}: fn {name}", i.what)),
                (false, Some(who)) => pending.push(format!("{}: fn {name} ({who})", i.what)),
            }
        }
    }
    if !pending.is_empty() {
        eprintln!(
            "pending (brought by other branches):\n  {}",
            pending.join("\n  ")
        );
    }
    assert!(
        missing.is_empty(),
        "tests missing:\n  {}",
        missing.join("\n  ")
    );
}

// ---- /proc/cmdline, the boot link, /run/ostree-booted ----

fn pinned(sb: &Sandbox) -> bool {
    sb.sh("ostree admin --sysroot=$ROOT status")
        .contains("Pinned: yes")
}

/// Nothing in the backup dir but the lock file.
fn backup_dir_empty(sb: &Sandbox) -> bool {
    std::fs::read_dir(sb.root().join("var/recovery"))
        .map(|d| d.flatten().all(|e| e.file_name() == ".lock"))
        .unwrap_or(true)
}

#[test]
fn booted_cmdline_absent_falls_back_to_rpm_ostree() {
    let sb = Sandbox::new();
    std::fs::remove_file(sb.root().join("proc/cmdline")).unwrap();
    let (code, out, err) = sb.run(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(booted one per rpm-ostree)"), "{out}");
    assert!(out.contains("proc/cmdline is missing"), "{out}");
    assert!(out.contains("0 * rhcos"), "{out}");
    // No ostree= word at all: the same.
    std::fs::write(sb.root().join("proc/cmdline"), "root=/dev/sda1 ro quiet\n").unwrap();
    let (_, out, _) = sb.run(&["status"]);
    assert!(out.contains("has no ostree= argument"), "{out}");
    assert!(out.contains("(booted one per rpm-ostree)"), "{out}");
}

#[test]
fn booted_cmdline_malformed_refuses_backup_before_any_change() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.root().join("proc/cmdline"),
        "BOOT_IMAGE=/vmlinuz ostree=/ostree/boot.0/rhcos/abc ro\n",
    )
    .unwrap();
    let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("expected ostree=/ostree/boot.BOOTVERSION/OSNAME/BOOTCSUM/TREESERIAL"),
        "{err}"
    );
    assert!(!err.contains("{:?}") && !err.contains("Os {"), "{err}");
    assert!(!pinned(&sb), "nothing pinned");
    assert!(backup_dir_empty(&sb), "nothing written");
}

/// The sandbox's ostree= with the serial changed: the link does not exist.
#[test]
fn booted_cmdline_dangling_link_refuses_backup() {
    let sb = Sandbox::new();
    let p = sb.root().join("proc/cmdline");
    let cmdline = std::fs::read_to_string(&p).unwrap();
    assert!(cmdline.contains(" ostree=/ostree/boot."), "{cmdline}");
    let dangling = cmdline.replace("/0\n", "/7\n");
    assert_ne!(dangling, cmdline);
    std::fs::write(&p, dangling).unwrap();
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("resolving ostree=/ostree/boot."), "{err}");
    assert!(err.contains("is missing"), "{err}");
    assert!(!pinned(&sb));
    assert!(backup_dir_empty(&sb));
}

/// The link exists but points somewhere that is not a deployment.
#[test]
fn booted_cmdline_link_to_a_non_deployment_refuses() {
    let sb = Sandbox::new();
    let p = sb.root().join("proc/cmdline");
    let cmdline = std::fs::read_to_string(&p).unwrap();
    let value = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ostree="))
        .unwrap()
        .to_string();
    let link = sb
        .root()
        .join("sysroot")
        .join(value.trim_start_matches('/'));
    // boot.N is itself a link: write through to the real entry.
    let real = link.canonicalize().unwrap();
    let entry = sb.root().join("sysroot/ostree").join(
        std::fs::read_link(sb.root().join("sysroot/ostree/boot.0"))
            .or_else(|_| std::fs::read_link(sb.root().join("sysroot/ostree/boot.1")))
            .unwrap(),
    );
    let rel = link
        .strip_prefix(sb.root().join("sysroot/ostree"))
        .unwrap()
        .components()
        .skip(1)
        .collect::<std::path::PathBuf>();
    let entry = entry.join(rel);
    assert!(real.is_dir());
    let original = std::fs::read_link(&entry).unwrap();
    std::fs::remove_file(&entry).unwrap();
    std::os::unix::fs::symlink("../../../repo", &entry).unwrap();
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 1, "{err}");
    // ostree admin status refuses it first (its own parser of the links);
    // our resolver's refusal is shown by the unit test
    // node::booted::tests::resolve_refuses_a_link_to_a_non_deployment.
    assert!(
        err.contains("which is not a deployment directory")
            || err.contains("expected CHECKSUM.TREESERIAL"),
        "{err}"
    );
    std::fs::remove_file(&entry).unwrap();
    std::os::unix::fs::symlink(&original, &entry).unwrap();
    assert!(!pinned(&sb));
    assert!(backup_dir_empty(&sb));
}

/// The Job's case: the flag renamed, rpm-ostree refuses (as the real one),
/// the kernel argument still names the booted deployment.
#[test]
fn booted_flag_absent_skips_rpm_ostree_as_in_the_job() {
    let sb = Sandbox::with_profile("rhcos");
    std::fs::rename(
        sb.root().join("run/ostree-booted"),
        sb.root().join("run/ostree-booted.tmp"),
    )
    .unwrap();
    // The shim refuses as the real rpm-ostree does.
    let refused = std::process::Command::new(sb.ctl().join("bin/rpm-ostree"))
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        "error: This system was not booted via libostree; cannot operate\n"
    );
    // An upgrade deployed but not booted: the default is not the booted one.
    sb.sh(&format!(
        "{}/scripts/sandbox.sh upgrade-os $(dirname $ROOT) 417.94.1 >/dev/null",
        q(&project())
    ));
    let (code, out, err) = sb.run(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("booted one per the ostree= argument"), "{out}");
    assert!(
        out.contains("1 * rhcos"),
        "the booted one is index 1: {out}"
    );
    let calls_before = sb.calls().len();
    let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !sb.calls()[calls_before..]
            .iter()
            .any(|c| c.starts_with("rpm-ostree")),
        "rpm-ostree was not asked"
    );
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(sb.root().join("var/recovery/manifest.json")).unwrap(),
    )
    .unwrap();
    let text = m.to_string();
    assert!(
        text.contains("416.94.202406251923-0"),
        "the booted OS is recorded: {text}"
    );
}

// ---- currentconfig, etcd.env, boot_id ----

/// A fresh sandbox after a refused backup: nothing pinned, nothing
/// undeployed, nothing in the backup dir.
fn unchanged(sb: &Sandbox) {
    let st = sb.sh("ostree admin --sysroot=$ROOT status");
    assert!(!st.contains("Pinned: yes"), "{st}");
    assert_eq!(st.matches("Version:").count(), 2, "{st}");
    assert!(backup_dir_empty(sb));
}

fn refused(sb: &Sandbox, want: &str) {
    let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(want), "{err}");
    unchanged(sb);
}

const CURRENTCONFIG: &str = "etc/machine-config-daemon/currentconfig";
const ETCD_ENV: &str =
    "etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-scripts/etcd.env";

#[test]
fn currentconfig_absent_backs_up_without_mco_files() {
    let sb = Sandbox::new();
    std::fs::remove_file(sb.root().join(CURRENTCONFIG)).unwrap();
    let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        format!("{out}{err}").contains("currentconfig does not exist"),
        "a warning: {out}{err}"
    );
    assert_eq!(sb.run(&["verify"]).0, 0);
}

#[test]
fn currentconfig_malformed_refuses_backup() {
    let sb = Sandbox::new();
    std::fs::write(sb.root().join(CURRENTCONFIG), "{\"spec\": {\"config\": ").unwrap();
    refused(&sb, "currentconfig is not valid JSON");
}

#[test]
fn etcd_env_absent_refuses_backup() {
    let sb = Sandbox::new();
    std::fs::remove_file(sb.root().join(ETCD_ENV)).unwrap();
    refused(&sb, "etcd.env");
}

#[test]
fn etcd_env_malformed_refuses_backup() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.root().join(ETCD_ENV),
        "export ETCDCTL_ENDPOINTS\ngarbage ))) =\n",
    )
    .unwrap();
    refused(&sb, "etcd.env");
}

#[test]
fn boot_id_absent_is_a_clear_error() {
    let sb = Sandbox::new();
    std::fs::remove_file(sb.root().join("proc/sys/kernel/random/boot_id")).unwrap();
    refused(&sb, "boot id");
}

// ---- the live static-pod manifests ----

const KS_MANIFEST: &str = "etc/kubernetes/manifests/kube-scheduler-pod.yaml";

#[test]
fn static_pod_manifest_absent_refuses_backup() {
    let sb = Sandbox::new();
    std::fs::remove_file(sb.root().join(KS_MANIFEST)).unwrap();
    refused(&sb, "kube-scheduler-pod.yaml");
}

#[test]
fn static_pod_manifest_malformed_refuses_backup() {
    let sb = Sandbox::new();
    std::fs::write(sb.root().join(KS_MANIFEST), "garbage: [\n").unwrap();
    refused(
        &sb,
        "does not refer to a static-pod-resources/kube-scheduler-pod-N dir",
    );
}

// ---- the node's programs ----

/// Each node program the restore needs, absent: named before anything
/// changes (the machine running the tests has none of these).
#[test]
fn restore_programs_absent_are_named_before_any_change() {
    let sb = Sandbox::new();
    assert_eq!(sb.run(&["backup", "--min-free", "0"]).0, 0);
    for p in ["crictl", "crio", "oc", "setenforce", "getenforce"] {
        let shim = sb.ctl().join("bin").join(p);
        let keep = sb.ctl().join(format!("{p}.away"));
        std::fs::rename(&shim, &keep).unwrap();
        let calls = sb.calls().len();
        let (code, out, err) = sb.run(&["restore"]);
        std::fs::rename(&keep, &shim).unwrap();
        assert_eq!(code, 1, "{p}: {out}{err}");
        assert!(
            err.contains("not found on PATH") && err.contains(p),
            "{p}: {err}"
        );
        assert!(err.contains("nothing was changed"), "{p}: {err}");
        assert!(!sb.root().join("var/recovery/journal.json").exists(), "{p}");
        assert_eq!(sb.calls().len(), calls, "{p}: no program was run");
    }
}

fn first_line(sb: &Sandbox) -> String {
    let st = sb.sh("ostree admin --sysroot=$ROOT status");
    st.lines().next().unwrap_or_default().to_string()
}

/// After a backup, an upgrade deployed (the new default); no reboot unless
/// asked. Returns the default line before the upgrade (the pinned one).
fn upgraded(sb: &Sandbox, reboot: bool) -> String {
    assert_eq!(sb.run(&["backup", "--min-free", "0"]).0, 0);
    let pinned = first_line(sb);
    sb.sh(&format!(
        "{}/scripts/sandbox.sh upgrade-os $(dirname $ROOT) 417.1 >/dev/null",
        q(&project())
    ));
    if reboot {
        sb.reboot();
    }
    assert_ne!(first_line(sb), pinned, "the upgrade is the default");
    std::fs::remove_file(sb.root().join("run/ostree-booted")).unwrap();
    pinned
}

/// rollback on a node where rpm-ostree refuses (no /run/ostree-booted): plain
/// ostree makes the pinned deployment the default, rpm-ostree is not run.
#[test]
fn rollback_without_the_booted_flag_uses_plain_ostree() {
    let sb = Sandbox::with_profile("rhcos");
    let pinned = upgraded(&sb, false);
    let calls = sb.calls().len();
    let (code, out, err) = sb.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !sb.calls()[calls..]
            .iter()
            .any(|c| c.starts_with("rpm-ostree")),
        "{:?}",
        &sb.calls()[calls..]
    );
    assert_eq!(
        first_line(&sb).split_whitespace().last(),
        pinned.split_whitespace().last()
    );
}

/// Booted into the upgrade, without a usable rpm-ostree: plain ostree cannot
/// undeploy the booted deployment; refused, nothing changed.
#[test]
fn rollback_booted_into_the_upgrade_without_rpm_ostree_refuses() {
    let sb = Sandbox::with_profile("rhcos");
    upgraded(&sb, true);
    let listing = sb.sh("ostree admin --sysroot=$ROOT status");
    let (code, out, err) = sb.run(&["rollback"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("without rpm-ostree") && err.contains("is booted"),
        "{err}"
    );
    assert_eq!(sb.sh("ostree admin --sysroot=$ROOT status"), listing);
}

// ---- /etc/tmpfiles.d ----

/// The backup's exclude list, one path a line.
fn exclude_list(sb: &Sandbox) -> Vec<String> {
    std::fs::read_to_string(sb.root().join("var/recovery/current/etc.exclude.list"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn tmpfiles_absent_backs_up_with_an_empty_exclude_list() {
    let sb = Sandbox::new();
    std::fs::remove_dir_all(sb.root().join("etc/tmpfiles.d")).unwrap();
    let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("warning: /etc/tmpfiles.d does not exist"),
        "said: {out}"
    );
    assert_eq!(exclude_list(&sb), [".updated", "kubernetes/manifests"]);
    assert_eq!(sb.run(&["verify"]).0, 0);
}

#[test]
fn tmpfiles_malformed_line_is_skipped_with_a_warning() {
    let sb = Sandbox::new();
    let d = sb.root().join("etc/tmpfiles.d");
    std::fs::write(
        d.join("bad.conf"),
        "garbage\nd relative/path 0755 - - -\nd /etc/good-one 0755 - - -\n",
    )
    .unwrap();
    std::fs::write(
        d.join("binary.conf"),
        b"d /etc/from-binary 0755\n\xff\xfe\x00\n",
    )
    .unwrap();
    let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "warning: /etc/tmpfiles.d/bad.conf: 2 lines not of the form `Type Path ...` skipped (line 1, 2)"
        ),
        "{out}"
    );
    assert!(
        out.contains("warning: /etc/tmpfiles.d/binary.conf is not UTF-8 text: skipped"),
        "{out}"
    );
    let list = exclude_list(&sb);
    // The good lines of every readable file are kept, the skipped ones are not.
    for want in [
        "good-one",
        "cni/multus/certs",
        "sandbox-runtime",
        ".updated",
    ] {
        assert!(list.iter().any(|l| l == want), "{want}: {list:?}");
    }
    assert!(
        !list
            .iter()
            .any(|l| l.contains("from-binary") || l.contains("relative")),
        "{list:?}"
    );
    assert_eq!(sb.run(&["verify"]).0, 0);
}

// ---- skopeo (backup --with-images) ----

/// A PATH with the shims and `ostree`, without `skopeo`.
fn path_without_skopeo(sb: &Sandbox, t: &TempDir) -> String {
    sh(&format!(
        "ln -s \"$(command -v ostree)\" {}/ostree",
        q(t.path())
    ));
    assert!(!t.path().join("skopeo").exists());
    assert!(!sb.ctl().join("bin/skopeo").exists());
    format!("{}:{}", sb.ctl().join("bin").display(), t.path().display())
}

#[test]
fn skopeo_absent_with_images_refuses_before_any_change() {
    let sb = Sandbox::new();
    assert_eq!(sb.run(&["backup", "--min-free", "0"]).0, 0);
    let manifest = std::fs::read(sb.root().join("var/recovery/manifest.json")).unwrap();
    let listing = sb.sh("ostree admin --sysroot=$ROOT status");
    let calls = sb.calls().len();
    let t = TempDir::new("path");
    let o = sb
        .command(&["backup", "--min-free", "0", "--with-images"])
        .env("PATH", path_without_skopeo(&sb, &t))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not found on PATH: skopeo (copies the container images (--with-images))"),
        "named with what needs it: {err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("Os {"), "{err}");
    assert_eq!(sb.calls().len(), calls, "no program was run");
    assert_eq!(
        std::fs::read(sb.root().join("var/recovery/manifest.json")).unwrap(),
        manifest,
        "the backup is the same"
    );
    assert_eq!(sb.sh("ostree admin --sysroot=$ROOT status"), listing);
}

#[test]
fn skopeo_malformed_output_fails_the_backup_keeping_the_previous() {
    let sb = Sandbox::new();
    sh(&format!(
        "{}/scripts/sandbox.sh images {} >/dev/null",
        q(&project()),
        q(sb.dir.path())
    ));
    assert_eq!(sb.run(&["backup", "--min-free", "0"]).0, 0);
    let manifest = std::fs::read(sb.root().join("var/recovery/manifest.json")).unwrap();
    // A skopeo that answers `inspect` with garbage.
    let t = TempDir::new("skopeo");
    std::fs::write(
        t.path().join("skopeo"),
        "#!/bin/sh\necho 'level=info msg=\"not json\"'\n",
    )
    .unwrap();
    sh(&format!("chmod 0755 {}/skopeo", q(t.path())));
    let o = sb
        .command(&["backup", "--min-free", "0", "--with-images"])
        .env("PATH", format!("{}:{}", t.path().display(), sb.path_env()))
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("`skopeo inspect` of ") && err.contains("did not print JSON"),
        "{err}"
    );
    assert!(err.contains("the previous backup is intact"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        std::fs::read(sb.root().join("var/recovery/manifest.json")).unwrap(),
        manifest
    );
    assert_eq!(sb.run(&["verify"]).0, 0);
}
