//! OS deployments on real ostree sysroots: stateroot list and cleanup, and
//! the rollback decision table; on the `rhcos` profile (RHCOS's /boot, a
//! read-only file system of its own).

mod common;

use common::*;
use upgrade_recovery::testing::ostree;

fn status(sb: &Sandbox) -> Vec<ostree::Deployment> {
    ostree::parse_admin_status(&sb.sh("ostree admin --sysroot=$ROOT status")).unwrap()
}

fn upgrade_os(sb: &Sandbox, version: &str, stateroot: &str) {
    sh(&format!(
        "{}/scripts/sandbox.sh upgrade-os {} {version} {stateroot} >/dev/null",
        q(&project()),
        q(sb.dir.path())
    ));
}

/// A sandbox node after a backup, and the deployment the backup pinned.
fn backed_up() -> (Sandbox, ostree::Deployment) {
    let sb = Sandbox::with_profile("rhcos");
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    let pinned = status(&sb)[0].clone();
    (sb, pinned)
}

/// An image-based upgrade's shape after the backup: two releases deployed
/// in their own stateroot `rhcos_4.17`, the newest booted, the pinned one
/// last.
fn after_an_image_based_upgrade() -> (Sandbox, ostree::Deployment) {
    let (sb, pinned) = backed_up();
    upgrade_os(&sb, "417.1", "rhcos_4.17");
    upgrade_os(&sb, "417.2", "rhcos_4.17");
    sb.reboot();
    (sb, pinned)
}

fn tree_listing(sb: &Sandbox) -> String {
    // The sysroot and the boot file system (RHCOS: /boot is its own).
    sb.sh("cd $ROOT && find sysroot/ boot/ -path sysroot/ostree/repo/objects -prune -o -printf '%p %m %s %T@\\n' | sort")
}

/// A node with three stateroots: the booted rhcos, rhcos_4.16 with two
/// deployments, and an orphan directory with an immutable file.
fn three_stateroots() -> Sandbox {
    let sb = Sandbox::with_profile("rhcos");
    upgrade_os(&sb, "416.1", "rhcos_4.16");
    upgrade_os(&sb, "416.2", "rhcos_4.16");
    // Keep rhcos the default and booted: move the new ones behind.
    sb.sh("rpm-ostree status --json >/dev/null");
    sb.sh(
        r#". $CTL/lib/bootfs.sh; boot_rw $ROOT /usr/bin/python3 - $ROOT <<'PY'
import sys, gi
gi.require_version("OSTree", "1.0")
from gi.repository import Gio, OSTree
s = OSTree.Sysroot.new(Gio.File.new_for_path(sys.argv[1])); s.load(None)
d = s.get_deployments()
s.write_deployments([x for x in d if x.get_osname() == "rhcos"] + [x for x in d if x.get_osname() != "rhcos"], None)
PY"#,
    );
    sb.reboot();
    sb.sh("mkdir -p $ROOT/sysroot/ostree/deploy/rhcos_orphan/deploy/abc.0/etc $ROOT/sysroot/ostree/deploy/rhcos_orphan/var && echo x > $ROOT/sysroot/ostree/deploy/rhcos_orphan/deploy/abc.0/etc/f && chattr +i $ROOT/sysroot/ostree/deploy/rhcos_orphan/deploy/abc.0");
    sb
}

#[test]
fn stateroots_are_listed_and_cleaned_up_safely() {
    let sb = three_stateroots();
    let (code, out, err) = sb.run(&["stateroot", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("rhcos_orphan") && out.contains("orphan: no deployment"),
        "{out}"
    );
    let (code, out, _) = sb.run(&["stateroot", "list", "--output", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let roots = v["stateroots"].as_array().unwrap();
    let names: Vec<&str> = roots.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["rhcos", "rhcos_4.16", "rhcos_orphan"]);
    assert_eq!(roots[0]["active"], true);
    assert_eq!(roots[1]["deployments"].as_array().unwrap().len(), 2);
    assert_eq!(roots[2]["orphan"], true);

    // Refusals: bad names, a missing one, the booted stateroot. Nothing changes.
    let before = tree_listing(&sb);
    for bad in ["..", "a/b", "", ".", "../rhcos", "nonexistent", "rhcos"] {
        let (code, _, err) = sb.run(&["stateroot", "cleanup", bad]);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(!err.is_empty());
    }
    let (_, _, err) = sb.run(&["stateroot", "cleanup", "rhcos"]);
    assert!(err.contains("booted"), "{err}");
    // Dry run: the exact steps, no change.
    let (code, out, _) = sb.run(&["stateroot", "cleanup", "rhcos_4.16", "--dry-run"]);
    assert_eq!(code, 0);
    // rhcos holds indices 0 and 1; rhcos_4.16 is 2 and 3, undeployed from the end.
    assert!(
        out.contains("ostree admin undeploy 3") && out.contains("ostree admin undeploy 2"),
        "{out}"
    );
    assert!(
        out.find("undeploy 3").unwrap() < out.find("undeploy 2").unwrap(),
        "reverse index order: {out}"
    );
    assert_eq!(tree_listing(&sb), before);

    // Cleanup: deployments undeployed, the directory gone, the host's
    // mount table as before.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let (code, out, err) = sb.run(&["stateroot", "cleanup", "rhcos_4.16"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!sb.root().join("sysroot/ostree/deploy/rhcos_4.16").exists());
    assert!(status(&sb).iter().all(|d| d.stateroot == "rhcos"));
    assert_eq!(
        std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
        mounts
    );
    // The orphan, with an immutable dir inside.
    let (code, _, err) = sb.run(&["stateroot", "cleanup", "rhcos_orphan"]);
    assert_eq!(code, 0, "{err}");
    assert!(!sb
        .root()
        .join("sysroot/ostree/deploy/rhcos_orphan")
        .exists());
    assert_eq!(status(&sb).len(), 2);
}

fn pinned_is_default(sb: &Sandbox, pinned: &str) {
    let ds = status(sb);
    assert_eq!(
        format!("{}.{}", ds[0].checksum, ds[0].serial),
        pinned,
        "{ds:#?}"
    );
    assert!(ds[0].pinned);
}

#[test]
fn rollback_follows_the_decision_table() {
    let sb = Sandbox::with_profile("rhcos");
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    let pinned = {
        let d = &status(&sb)[0];
        format!("{}.{}", d.checksum, d.serial)
    };
    // Row 1: one deployment, pinned: nothing to do.
    let (code, out, _) = sb.run(&["rollback"]);
    assert_eq!(code, 0);
    assert!(out.contains("Nothing to do"), "{out}");

    // Row 2: the pinned standby is the rollback.
    upgrade_os(&sb, "417.1", "rhcos");
    sb.reboot();
    let before = tree_listing(&sb);
    let (code, out, _) = sb.run(&["rollback", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("is the rollback") && out.contains("would run: rpm-ostree rollback"),
        "{out}"
    );
    assert_eq!(tree_listing(&sb), before, "dry run changed the sysroot");
    let (code, out, err) = sb.run(&["rollback", "--reboot"]);
    assert_eq!(code, 0, "{out}{err}");
    pinned_is_default(&sb, &pinned);
    assert!(sb.calls().iter().any(|c| c == "systemctl reboot"));
    sb.reboot();

    // Row 3: several standbys, the pinned one not the rollback.
    upgrade_os(&sb, "417.2", "rhcos");
    upgrade_os(&sb, "417.3", "rhcos");
    sb.reboot();
    let ds = status(&sb);
    assert_eq!(ds.len(), 4, "{ds:#?}");
    let (code, out, err) = sb.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("several standbys"), "{out}");
    pinned_is_default(&sb, &pinned);
    sb.reboot();

    // Without rpm-ostree (a sysroot not booted from): the same result.
    upgrade_os(&sb, "417.4", "rhcos");
    std::fs::remove_file(sb.ctl().join("bin/rpm-ostree")).unwrap();
    let (code, out, err) = sb.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    pinned_is_default(&sb, &pinned);
}

/// 17.3: the real `stateroot cleanup` carries out exactly the plan its dry
/// run prints: the undeploys a logging `ostree` on PATH saw, in order, and
/// the directory.
#[test]
fn stateroot_cleanup_runs_the_plan_its_dry_run_prints() {
    let sb = three_stateroots();
    let (code, dry, err) = sb.run(&[
        "stateroot",
        "cleanup",
        "rhcos_4.16",
        "--dry-run",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let dry: serde_json::Value = serde_json::from_str(&dry).unwrap();
    let actions = dry["actions"].as_array().unwrap();
    let planned: Vec<String> = actions
        .iter()
        .filter(|a| a["action"] == "undeploy")
        .map(|a| a["index"].to_string())
        .collect();
    assert_eq!(planned, ["3", "2"], "{dry:#}");
    assert_eq!(actions.last().unwrap()["action"], "remove-dir");
    assert_eq!(
        actions.last().unwrap()["path"],
        "/sysroot/ostree/deploy/rhcos_4.16"
    );

    // A logging ostree in front of the real one.
    let real = sb.sh("command -v ostree").trim().to_string();
    let bin = sb.dir.path().join("ostree-log");
    let log = sb.dir.path().join("ostree-calls.log");
    std::fs::create_dir_all(&bin).unwrap();
    let shim = bin.join("ostree");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
            q(&log),
            q(std::path::Path::new(&real))
        ),
    )
    .unwrap();
    sh(&format!("chmod +x {}", q(&shim)));
    let out = sb
        .command(&["stateroot", "cleanup", "rhcos_4.16", "--output", "json"])
        .env("PATH", format!("{}:{}", bin.display(), sb.path_env()))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["actions"], dry["actions"]);
    let calls = std::fs::read_to_string(&log).unwrap();
    let undeploys: Vec<String> = calls
        .lines()
        .filter(|l| l.starts_with("admin ") && l.contains(" undeploy "))
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(undeploys, planned, "{calls}");
    // Nothing else changed the sysroot through ostree.
    assert!(
        calls
            .lines()
            .filter(|l| l.starts_with("admin "))
            .all(|l| l.contains(" status") || l.contains(" undeploy ")),
        "{calls}"
    );
    assert!(!sb.root().join("sysroot/ostree/deploy/rhcos_4.16").exists());
    assert!(status(&sb).iter().all(|d| d.stateroot == "rhcos"));
}

/// 17.5: the same commit deployed in a second stateroot (an image-based
/// upgrade does this; ostree numbers the serial per stateroot, so both are
/// `<checksum>.0`) is another deployment. Booted into it, the node does not
/// run the deployment the backup pinned: `status` says another OS is booted,
/// `restore` refuses before any change, `rollback` does not take it for the
/// pinned one. (When identity ignored the stateroot, all three took it for
/// the pinned deployment.)
#[test]
fn the_same_commit_in_another_stateroot_is_not_the_pinned_deployment() {
    let (sb, pinned) = backed_up();
    assert_eq!((pinned.stateroot.as_str(), pinned.pinned), ("rhcos", true));
    sb.sh(&format!(
        ". $CTL/lib/bootfs.sh; ostree admin --sysroot=$ROOT os-init rhcos_ibu >/dev/null && boot_rw $ROOT ostree admin --sysroot=$ROOT deploy --retain --os=rhcos_ibu {} >/dev/null",
        pinned.checksum
    ));
    sb.reboot();
    let ds = status(&sb);
    let twin = &ds[0];
    // The sandbox's reboot boots the default: /proc/cmdline names it.
    let cmdline = sb.sh("cat $ROOT/proc/cmdline");
    assert!(cmdline.contains("/rhcos_ibu/"), "{cmdline}");
    assert_eq!(
        (twin.stateroot.as_str(), twin.checksum.as_str(), twin.serial),
        ("rhcos_ibu", pinned.checksum.as_str(), pinned.serial),
        "{ds:#?}"
    );
    assert!(
        ds.iter().any(|d| d.stateroot == "rhcos" && d.pinned),
        "{ds:#?}"
    );

    let (code, out, err) = sb.run(&["status"]);
    assert!(
        out.contains("another OS than the one of the backup is booted (rhcos_ibu "),
        "{code} {out}{err}"
    );

    let before = tree_listing(&sb);
    let (code, out, err) = sb.run(&["restore", "--dry-run"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("the booted OS deployment is rhcos_ibu ")
            && err.contains("but the backup was taken on rhcos ")
            && err.contains("nothing was changed"),
        "{err}"
    );

    // The pinned one is in another stateroot than the booted twin: only
    // set-default reaches it, which this machine's ostree lacks.
    let (code, out, err) = sb.run(&["rollback", "--dry-run"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(!out.contains("default already"), "{out}");
    assert!(
        err.contains("it is in stateroot rhcos (")
            && err.contains("the booted one is in stateroot rhcos_ibu ("),
        "{err}"
    );
    assert_eq!(tree_listing(&sb), before, "a dry run changed the sysroot");
}

/// Boot deployment `index` once, as when its boot menu entry is chosen.
fn reboot_into(sb: &Sandbox, index: usize) {
    sh(&format!(
        "{}/scripts/sandbox.sh reboot {} {index} >/dev/null",
        q(&project()),
        q(sb.dir.path())
    ));
}

/// The admin chose the pinned deployment in the boot menu after a failed
/// upgrade of the same stateroot: booted, not the default. `rpm-ostree
/// rollback` puts the booted deployment first when its stateroot has a
/// pending deployment and no rollback one; nothing is undeployed (before,
/// the plan undeployed the failed upgrade, after which rpm-ostree found "No
/// rollback deployment" and the command failed).
#[test]
fn rollback_when_the_pinned_deployment_is_booted_but_not_the_default() {
    let (sb, pinned) = backed_up();
    upgrade_os(&sb, "417.1", "rhcos");
    reboot_into(&sb, 1);
    let ds = status(&sb);
    assert!(ds[1].is(&pinned.id()), "{ds:#?}");
    // status names the state and the command; restore refuses before any
    // change: its reboot would start the failed upgrade.
    let (_, st, _) = sb.run(&["status", "--output", "json"]);
    let st: serde_json::Value = serde_json::from_str(&st).unwrap();
    assert_eq!(st["state"]["state"], "pinned-booted-not-default", "{st:#}");
    assert_eq!(st["next_command"], "upgrade-recovery rollback", "{st:#}");
    for args in [&["restore", "--dry-run"][..], &["restore"]] {
        let (code, out, err) = sb.run(args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(
            err.contains("the next boot would start")
                && err.contains("`upgrade-recovery rollback` (no reboot needed), then run `upgrade-recovery restore`"),
            "{err}"
        );
    }
    assert!(!sb.root().join("var/recovery/journal.json").exists());
    let (code, out, err) = sb.run(&["rollback", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("booted but another one is the default")
            && out.contains("would run: rpm-ostree rollback")
            && !out.contains("undeploy"),
        "{out}"
    );
    let (code, out, err) = sb.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    pinned_is_default(&sb, &format!("{}.{}", pinned.checksum, pinned.serial));
    assert_eq!(status(&sb).len(), 2, "nothing undeployed");
    assert!(
        sb.calls().iter().any(|c| c == "rpm-ostree rollback"),
        "{:?}",
        sb.calls()
    );
    assert!(out.contains("no reboot needed"), "{out}");
    assert!(!sb.calls().iter().any(|c| c == "systemctl reboot"));
    let (_, st, _) = sb.run(&["status", "--output", "json"]);
    let st: serde_json::Value = serde_json::from_str(&st).unwrap();
    assert_eq!(st["state"]["state"], "backup-ready", "{st:#}");
}

/// `ostree admin status` as ostree prints it (the order and marks).
fn admin_status(sb: &Sandbox) -> String {
    sb.sh("ostree admin --sysroot=$ROOT status")
}

/// An image-based upgrade's shape: the new release deployed and booted in
/// its own stateroot, the pinned one in `rhcos`. `rpm-ostree rollback` only
/// reorders the booted stateroot (coreos/rpm-ostree
/// `rollback_transaction_execute`), and this machine's ostree (2022.7) has no
/// `admin set-default`: `rollback`, its dry run and `--reboot` refuse alike
/// with exit 1 before any change, name both stateroots and the boot menu
/// entry to choose. Chosen (booted once), the pinned deployment is still not
/// the default: `rollback` then names the stateroot cleanup that makes it so.
#[test]
fn rollback_to_another_stateroot_refuses_without_set_default() {
    let (sb, pinned) = after_an_image_based_upgrade();
    let ds = status(&sb);
    assert_eq!(ds.len(), 3, "{ds:#?}");
    assert!(ds[2].is(&pinned.id()), "{ds:#?}");
    let title = sb
        .sh("grep -h '^title' $ROOT/boot/loader/entries/ostree-1-rhcos.conf")
        .trim()
        .strip_prefix("title ")
        .unwrap()
        .to_string();

    let before = (admin_status(&sb), tree_listing(&sb));
    for args in [
        &["rollback", "--dry-run"][..],
        &["rollback"],
        &["rollback", "--reboot"],
    ] {
        let (code, out, err) = sb.run(args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        for want in [
            "it is in stateroot rhcos (rhcos ",
            "the booted one is in stateroot rhcos_4.17 (rhcos_4.17 ",
            "`rpm-ostree rollback` only reorders the deployments of the booted stateroot",
            "no `ostree admin set-default`",
            "Nothing was changed: the pinned deployment is still deployment 2",
            &format!(
                "reboot with `systemctl reboot` and choose the entry \"{title}\" in the boot menu"
            ),
            "then run `upgrade-recovery status`",
            "`ostree admin set-default 2`, then `upgrade-recovery rollback --reboot`",
        ] {
            assert!(err.contains(want), "{args:?}: want {want:?} in {err}");
        }
        assert_eq!(
            (admin_status(&sb), tree_listing(&sb)),
            before,
            "{args:?} changed the sysroot"
        );
    }
    let calls = sb.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("rpm-ostree rollback") || c == "systemctl reboot"),
        "{calls:?}"
    );

    // The entry chosen in the boot menu: booted once, still not the default.
    reboot_into(&sb, 2);
    let cmdline = sb.sh("cat $ROOT/proc/cmdline");
    assert!(cmdline.contains("/rhcos/"), "{cmdline}");
    let before = (admin_status(&sb), tree_listing(&sb));
    let (code, out, err) = sb.run(&["rollback"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(
            "it is booted, but only deployments of other stateroots (rhcos_4.17) stand before it"
        ) && err.contains("`upgrade-recovery stateroot cleanup rhcos_4.17 --dry-run`"),
        "{err}"
    );
    assert_eq!((admin_status(&sb), tree_listing(&sb)), before);
    // The command it names makes the pinned deployment the default.
    let (code, out, err) = sb.run(&["stateroot", "cleanup", "rhcos_4.17"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = sb.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Nothing to do"), "{out}");
    pinned_is_default(&sb, &format!("{}.{}", pinned.checksum, pinned.serial));
}

/// A PATH directory whose `ostree` is this machine's real one with the
/// `admin set-default INDEX` of newer ostree added, done as upstream does it
/// (ostreedev/ostree `src/ostree/ot-admin-builtin-set-default.c`: take
/// deployment INDEX out, insert it at 0, `ostree_sysroot_write_deployments`,
/// then `ostree_sysroot_cleanup`), through libostree's own bindings: the
/// boot configuration is written by libostree, not by hand. `admin --help`
/// lists it where upstream's `admin_subcommands` table has it (after
/// `undeploy`, `"\n  %-19s"` name, description; `src/ostree/ot-builtin-admin.c`).
/// Every call is logged to the returned file.
fn ostree_with_set_default(sb: &Sandbox) -> (std::path::PathBuf, std::path::PathBuf) {
    let real = sb.sh("command -v ostree").trim().to_string();
    let bin = sb.dir.path().join("ostree-set-default");
    let log = sb.dir.path().join("ostree-calls.log");
    std::fs::create_dir_all(&bin).unwrap();
    let py = bin.join("set_default.py");
    std::fs::write(
        &py,
        r#"import sys, gi
gi.require_version("OSTree", "1.0")
from gi.repository import Gio, OSTree
path, rest = "/", []
for a in sys.argv[2:]:
    if a.startswith("--sysroot="):
        path = a.split("=", 1)[1]
    elif a != "set-default":
        rest.append(a)
if not rest:
    print("error: INDEX must be specified", file=sys.stderr)
    sys.exit(1)
s = OSTree.Sysroot.new(Gio.File.new_for_path(path))
s.lock()
s.load(None)
ds = s.get_deployments()
i = int(rest[0])
if i < 0 or i >= len(ds):
    print("error: Out of range deployment index %d, expected < %d" % (i, len(ds)), file=sys.stderr)
    sys.exit(1)
t = ds.pop(i)
ds.insert(0, t)
s.write_deployments(ds, None)
s.cleanup(None)
s.unlock()
"#,
    )
    .unwrap();
    let shim = bin.join("ostree");
    std::fs::write(
        &shim,
        format!(
            r#"#!/bin/sh
echo "$*" >> {log}
case " $* " in
  " admin --help ") {real} admin --help | sed '/^  undeploy /a\  set-default        Make deployment INDEX the default'; exit 0 ;;
  " admin "*" set-default "*) exec /usr/bin/python3 {py} "$@" ;;
esac
exec {real} "$@"
"#,
            log = q(&log),
            real = q(std::path::Path::new(&real)),
            py = q(&py)
        ),
    )
    .unwrap();
    sh(&format!("chmod +x {}", q(&shim)));
    (bin, log)
}

/// With an ostree that has `admin set-default` (RHCOS 4.14.7 and later),
/// the image-based upgrade's shape is rolled back by it: the dry run plans
/// exactly `ostree admin set-default <index of the pinned one>` and changes
/// nothing; the real run makes the pinned deployment the default (checked
/// before the reboot), leaves the other stateroot's deployments deployed,
/// never calls `rpm-ostree rollback` nor undeploys; the reboot boots it.
#[test]
fn rollback_to_another_stateroot_runs_set_default() {
    let (sb, pinned) = after_an_image_based_upgrade();
    let ds = status(&sb);
    assert!(ds[2].is(&pinned.id()), "{ds:#?}");
    let (bin, log) = ostree_with_set_default(&sb);
    let path = format!("{}:{}", bin.display(), sb.path_env());
    let help = sb.sh(&format!("PATH={}:$PATH; ostree admin --help", q(&bin)));
    assert!(
        ostree::admin_help_lists(&help, "set-default"),
        "the wrapper's help: {help}"
    );

    let before = (admin_status(&sb), tree_listing(&sb));
    let run = |args: &[&str]| {
        let o = sb.command(args).env("PATH", &path).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["rollback", "--dry-run", "--reboot", "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["actions"][0]["action"], "set-default", "{plan:#}");
    assert_eq!(plan["actions"][0]["index"], 2, "{plan:#}");
    assert_eq!(plan["actions"].as_array().unwrap().len(), 2, "{plan:#}");
    assert_eq!(plan["actions"][1]["action"], "reboot", "{plan:#}");
    let (code, out, err) = run(&["rollback", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("would run: ostree admin set-default 2   # rhcos "),
        "{out}"
    );
    assert_eq!((admin_status(&sb), tree_listing(&sb)), before);

    let (code, out, err) = run(&["rollback", "--reboot"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ran: ostree admin set-default 2"), "{out}");
    let ds = status(&sb);
    pinned_is_default(&sb, &format!("{}.{}", pinned.checksum, pinned.serial));
    assert_eq!(
        ds.iter().map(|d| d.stateroot.as_str()).collect::<Vec<_>>(),
        ["rhcos", "rhcos_4.17", "rhcos_4.17"],
        "{ds:#?}"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let changes: Vec<&str> = calls
        .lines()
        .filter(|l| l.starts_with("admin ") && !l.ends_with(" status") && l != &"admin --help")
        .collect();
    assert_eq!(
        changes,
        [format!(
            "admin --sysroot={} set-default 2",
            sb.root().display()
        )],
        "{calls}"
    );
    let shims = sb.calls();
    assert!(shims.iter().any(|c| c == "systemctl reboot"), "{shims:?}");
    assert!(
        !shims.iter().any(|c| c.starts_with("rpm-ostree rollback")),
        "{shims:?}"
    );
    sb.reboot();
    let cmdline = sb.sh("cat $ROOT/proc/cmdline");
    assert!(cmdline.contains("/rhcos/"), "{cmdline}");
    let (code, out, err) = sb.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Nothing to do"), "{out}");
}

/// A failed upgrade booted, the pinned deployment its rollback, and the
/// MCO's next update staged (as libostree records it,
/// `scripts/sandbox.sh stage-os`). `rpm-ostree rollback` refuses there
/// ("Staged deployment (remove with cleanup -p)", as upstream); the plan
/// runs `rpm-ostree cleanup -p` first: the staged deployment's record and
/// directory go, the pinned one is kept and becomes the default.
#[test]
fn rollback_removes_a_staged_deployment_first() {
    let (sb, pinned) = backed_up();
    upgrade_os(&sb, "417.1", "rhcos");
    sb.reboot();
    let staged = sh(&format!(
        "{}/scripts/sandbox.sh stage-os {} 417.2",
        q(&project()),
        q(sb.dir.path())
    ));
    let name = staged.trim().rsplit(' ').next().unwrap().to_string();
    let dir = sb
        .root()
        .join("sysroot/ostree/deploy/rhcos/deploy")
        .join(&name);
    assert!(dir.is_dir());
    // The shim refuses as upstream does.
    let refused = std::process::Command::new("bash")
        .args(["-c", "rpm-ostree rollback"])
        .env("PATH", sb.path_env())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr).trim(),
        "error: Staged deployment (remove with cleanup -p)"
    );
    let before = tree_listing(&sb);
    let (code, out, err) = sb.run(&["rollback", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    let steps: Vec<&str> = out.lines().filter(|l| l.contains("would run:")).collect();
    assert_eq!(steps.len(), 2, "{out}");
    assert!(
        steps[0].contains("rpm-ostree cleanup -p") && steps[0].contains(&name[..12]),
        "{out}"
    );
    assert!(steps[1].contains("rpm-ostree rollback"), "{out}");
    assert_eq!(tree_listing(&sb), before, "the dry run changed the sysroot");
    let (code, out, err) = sb.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!sb.root().join("run/ostree/staged-deployment").exists());
    assert!(!dir.exists(), "the staged deployment's directory is left");
    let ds = status(&sb);
    assert!(ds[0].is(&pinned.id()) && ds[0].pinned, "{ds:#?}");
    assert_eq!(ds.len(), 2, "{ds:#?}");
    let calls = sb.calls();
    let i = calls.iter().position(|c| c == "rpm-ostree cleanup -p");
    let j = calls.iter().rposition(|c| c == "rpm-ostree rollback");
    assert!(matches!((i, j), (Some(i), Some(j)) if i < j), "{calls:?}");
}

/// Issue 27.3: `rollback --dry-run` is the real run's plan, with its
/// refusals. Without rpm-ostree (`minimal`), the failed upgrade booted
/// before the pinned deployment cannot be undeployed: the dry run and the
/// real run refuse alike (exit 1, the same words), change nothing, and name
/// the way out: the boot menu entry of the pinned deployment, then
/// `rollback`. Taken, it works. The other refusal of a real run, the
/// deployment the backup pinned gone, is the dry run's too.
#[test]
fn every_refusal_of_rollback_is_its_dry_runs_too() {
    let sb = Sandbox::with_profile("minimal");
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    let pinned = status(&sb)[0].clone();
    upgrade_os(&sb, "417.1", "rhcos");
    sb.reboot();
    let before = tree_listing(&sb);
    let dry = sb.run(&["rollback", "--dry-run"]);
    let real = sb.run(&["rollback"]);
    assert_eq!(dry.0, 1, "{dry:?}");
    assert_eq!((dry.0, &dry.2), (real.0, &real.2));
    assert!(
        dry.2.contains("boot menu") && dry.2.contains("`upgrade-recovery rollback`"),
        "{}",
        dry.2
    );
    let title = sb
        .sh("grep -h '^title' $ROOT/boot/loader/entries/*.conf")
        .lines()
        .map(|l| l.trim_start_matches("title ").to_string())
        .find(|t| dry.2.contains(t.as_str()))
        .unwrap_or_default();
    assert!(!title.is_empty(), "no boot entry title named: {}", dry.2);
    assert_eq!(
        tree_listing(&sb),
        before,
        "a refused rollback changed the sysroot"
    );
    // The way out: the pinned deployment's entry chosen once, then rollback.
    reboot_into(&sb, 1);
    let (code, out, err) = sb.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    let ds = status(&sb);
    assert!(ds[0].is(&pinned.id()), "{ds:#?}");

    // The deployment the backup pinned, gone: both refuse the same way.
    upgrade_os(&sb, "417.2", "rhcos");
    sb.reboot();
    let ds = status(&sb);
    let gone = ds.iter().position(|d| d.is(&pinned.id())).unwrap();
    sb.sh(&format!(
        ". $CTL/lib/bootfs.sh; boot_rw $ROOT ostree admin --sysroot=$ROOT pin --unpin {gone} >/dev/null; boot_rw $ROOT ostree admin --sysroot=$ROOT undeploy {gone} >/dev/null"
    ));
    let dry = sb.run(&["rollback", "--dry-run"]);
    let real = sb.run(&["rollback"]);
    assert_ne!(dry.0, 0, "{dry:?}");
    assert_eq!((dry.0, &dry.2), (real.0, &real.2));
    assert!(dry.2.contains("no longer deployed"), "{}", dry.2);
    assert!(
        dry.2
            .contains("`upgrade-recovery restore --restore-onto-other-os`"),
        "{}",
        dry.2
    );
}

/// A staged record that names no deployment (cut, or not a GVariant):
/// libostree itself would fail to load it on a booted host; the backup
/// takes it for a staged deployment it cannot name, refuses with exit 1
/// naming the record, and changes nothing.
#[test]
fn a_malformed_staged_record_refuses_the_backup_before_any_change() {
    let sb = Sandbox::with_profile("rhcos");
    sb.sh("mkdir -p $ROOT/run/ostree && printf 'target\\0garbage' > $ROOT/run/ostree/staged-deployment");
    let before = sb.ostree_status();
    let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("/run/ostree/staged-deployment"), "{err}");
    assert_eq!(sb.ostree_status(), before);
    assert_eq!(status(&sb).len(), 2);
    assert_eq!(sb.run(&["verify"]).0, 4, "no backup was made");
}

/// Without rpm-ostree (`minimal`), a staged deployment is dropped as
/// libostree drops one (its record, then its directory, by ostree's own
/// cleanup) before the reorder: the plan the dry run prints is the one run.
#[test]
fn without_rpm_ostree_a_staged_deployment_is_dropped_as_libostree_does() {
    let sb = Sandbox::with_profile("minimal");
    assert_eq!(sb.run(&["backup", "--min-free", "0"]).0, 0);
    let pinned = status(&sb)[0].clone();
    upgrade_os(&sb, "417.1", "rhcos");
    reboot_into(&sb, 1);
    let staged = sh(&format!(
        "{}/scripts/sandbox.sh stage-os {} 417.2",
        q(&project()),
        q(sb.dir.path())
    ));
    let name = staged.trim().rsplit(' ').next().unwrap().to_string();
    let dir = sb
        .root()
        .join("sysroot/ostree/deploy/rhcos/deploy")
        .join(&name);
    assert!(dir.is_dir());
    let (code, dry, err) = sb.run(&["rollback", "--dry-run"]);
    assert_eq!(code, 0, "{dry}{err}");
    let planned: Vec<String> = dry
        .lines()
        .filter_map(|l| l.trim().strip_prefix("would run: "))
        .map(str::to_string)
        .collect();
    assert_eq!(planned.len(), 2, "{dry}");
    assert!(
        planned[0].starts_with("rm /run/ostree/staged-deployment"),
        "{dry}"
    );
    assert!(planned[1].starts_with("ostree admin undeploy 0"), "{dry}");
    let (code, out, err) = sb.run(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    let ran: Vec<String> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ran: "))
        .map(str::to_string)
        .collect();
    assert_eq!(ran, planned, "{out}");
    assert!(!sb.root().join("run/ostree/staged-deployment").exists());
    assert!(!dir.exists(), "the staged deployment's directory is left");
    let ds = status(&sb);
    assert_eq!(ds.len(), 1, "{ds:#?}");
    assert!(ds[0].is(&pinned.id()), "{ds:#?}");
}
