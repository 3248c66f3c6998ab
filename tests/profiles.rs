//! The end-to-end recovery, a crash and resume, and the hub's Job, on the
//! sandbox profiles that disagree with the default one
//! (`scripts/sandbox.sh create --profile minimal|rhcos`). The default profile
//! runs them in tests/recovery.rs and tests/launch.rs.

mod common;

use common::recovery::diverge;
use common::*;

fn etcd_dump(sb: &Sandbox) -> String {
    sb.etcdctl("get '' --prefix")
}

/// Copies of the trees the recovery must give back, and the etcd keys.
struct Before {
    dir: TempDir,
    keys: String,
}

const TREES: &[(&str, &str)] = &[("local", "var/usrlocal"), ("kubelet", "var/lib/kubelet")];

fn take_backup(sb: &Sandbox) -> Before {
    let (code, out, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{out}{err}");
    let dir = TempDir::new("before");
    for (name, t) in TREES {
        sh(&format!(
            "rsync -aAXHx --numeric-ids {}/ {}/",
            q(&sb.root().join(t)),
            q(&dir.path().join(name))
        ));
    }
    Before {
        dir,
        keys: etcd_dump(sb),
    }
}

fn restore(sb: &Sandbox, resume: bool, crash_at: Option<&str>) -> (Option<i32>, String, String) {
    let mut c = sb.command(&["restore"]);
    if resume {
        c.arg("--resume");
    }
    c.args(["--poll-interval", "100", "--wait-timeout", "60"]);
    if let Some(p) = crash_at {
        c.env("UPGRADE_RECOVERY_CRASH_AT", p);
    }
    let o = c.output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn finish(sb: &Sandbox, what: &str) -> String {
    let mut all = String::new();
    for _ in 0..6 {
        let journal = sb.root().join("var/recovery/journal.json").exists();
        let (code, out, err) = restore(sb, journal, None);
        all.push_str(&out);
        all.push_str(&err);
        match code {
            Some(0) if out.contains("Reboot now") => sb.reboot(),
            Some(0) if out.contains("Recovery complete") => return all,
            Some(1) if err.contains("must reboot before the cluster phase") => sb.reboot(),
            _ => panic!("{what}: restore gave {code:?}\n{out}\n{err}"),
        }
    }
    panic!("{what}: the recovery did not finish");
}

fn check(sb: &Sandbox, before: &Before, what: &str) {
    for (name, t) in TREES {
        let diff = rsync_diff(&before.dir.path().join(name), &sb.root().join(t), "-x");
        assert_eq!(diff, Vec::<String>::new(), "{what}: {name} differs");
    }
    assert_eq!(etcd_dump(sb), before.keys, "{what}: etcd keys");
    assert!(!sb.root().join("var/recovery/journal.json").exists());
}

fn end_to_end(profile: &str) {
    let sb = Sandbox::with_profile(profile);
    assert_eq!(sb.profile(), profile);
    let before = take_backup(&sb);
    diverge(&sb, 1);
    let out = finish(&sb, profile);
    check(&sb, &before, profile);
    // rhcos has cluster-restore.sh: the default etcd restore uses it.
    // (the script keeps the manifests it stopped aside)
    let by_script = sb
        .root()
        .join("home/core/assets/manifests-stopped/kube-apiserver-pod.yaml")
        .exists();
    assert_eq!(by_script, profile == "rhcos", "{out}");
}

fn crash_and_resume(profile: &str) {
    let sb = Sandbox::with_profile(profile);
    let before = take_backup(&sb);
    for (n, point) in ["restore-etc", "restore-etcd"].iter().enumerate() {
        diverge(&sb, n as u32 + 1);
        let mut crashed = false;
        for _ in 0..4 {
            let journal = sb.root().join("var/recovery/journal.json").exists();
            let (code, out, err) = restore(&sb, journal, Some(point));
            match code {
                None => {
                    crashed = true;
                    break;
                }
                Some(0) if out.contains("Reboot now") => sb.reboot(),
                Some(1) if err.contains("must reboot") => sb.reboot(),
                _ => panic!("{profile} {point}: {code:?}\n{out}\n{err}"),
            }
        }
        assert!(
            crashed,
            "{profile} {point}: the fault point was never reached"
        );
        finish(&sb, point);
        check(&sb, &before, point);
    }
}

/// The hub's Job with exactly the mounts of TALM's Job template
/// ([`Sandbox::job`]), then `launchBackup`.
fn job(profile: &str) {
    let sb = Sandbox::with_profile(profile);
    let t = TempDir::new("jobhost");
    let out = sb
        .job(&t.path().join("host"), "", "", false)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{profile}: {stdout}{err}");
    assert!(stdout.contains("Backup complete"), "{stdout}");
    let (code, v, verr) = sb.run(&["verify"]);
    assert_eq!(code, 0, "{v}{verr}");
    // The flag is as it was: put back where it existed, absent where not.
    assert_eq!(
        sb.root().join("run/ostree-booted").exists(),
        profile != "minimal"
    );
    assert!(!sb.root().join("run/ostree-booted.tmp").exists());
    // rpm-ostree was never asked in the Job (it would refuse there).
    assert!(
        !sb.calls().iter().any(|c| c.starts_with("rpm-ostree")),
        "{:?}",
        sb.calls()
    );
    // One deployment left, the booted one, pinned.
    let ds = upgrade_recovery::testing::ostree::parse_admin_status(&sb.ostree_status()).unwrap();
    assert_eq!(ds.len(), 1, "{ds:#?}");
    assert!(ds[0].pinned, "{ds:#?}");
}

#[test]
fn end_to_end_on_minimal() {
    end_to_end("minimal");
}

#[test]
fn end_to_end_on_rhcos() {
    end_to_end("rhcos");
}

#[test]
fn crash_and_resume_on_minimal() {
    crash_and_resume("minimal");
}

#[test]
fn crash_and_resume_on_rhcos() {
    crash_and_resume("rhcos");
}

#[test]
fn job_with_its_exact_mounts_on_minimal() {
    job("minimal");
}

#[test]
fn job_with_its_exact_mounts_on_rhcos() {
    job("rhcos");
}

/// The `rhcos` profile has RHCOS's boot layout (coreos/fedora-coreos-config
/// `coreos-boot-mount-generator`; ostreedev/ostree issue 2992): `/boot` a
/// file system of its own, mounted read-only, holding what ostree writes
/// (loader entries, kernels); `/sysroot/boot` empty, so
/// `--sysroot=<root>/sysroot` lists no deployments; `/ostree ->
/// sysroot/ostree`; `/proc/cmdline` written from the booted entry at each
/// reboot. The shims write with /boot writable in their own mount
/// namespace only. Torn down, the loop device is gone.
#[test]
fn rhcos_has_rhcos_boot_layout_and_is_torn_down_cleanly() {
    let sb = Sandbox::with_profile("rhcos");
    let boot = sb.root().join("boot");
    let opts = sh(&format!(
        "findmnt -n -o FSTYPE,OPTIONS --mountpoint {}",
        q(&boot)
    ));
    assert!(
        opts.starts_with("ext4 ") && opts.split([' ', ',']).any(|o| o == "ro"),
        "{opts}"
    );
    assert!(boot.join("loader/entries/ostree-2-rhcos.conf").is_file());
    assert_eq!(
        std::fs::read_dir(sb.root().join("sysroot/boot"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_link(sb.root().join("ostree"))
            .unwrap()
            .to_str(),
        Some("sysroot/ostree")
    );
    assert_eq!(
        sb.sh("ostree admin --sysroot=$ROOT/sysroot status").trim(),
        "No deployments."
    );
    let ds = upgrade_recovery::testing::ostree::parse_admin_status(&sb.ostree_status()).unwrap();
    assert_eq!(ds.len(), 2);
    // A write through the rpm-ostree shim (its rollback) lands on /boot,
    // the host's mount stays read-only; the reboot boots it and writes
    // its entry's options to /proc/cmdline.
    sb.sh("rpm-ostree rollback >/dev/null");
    let opts2 = sh(&format!("findmnt -n -o OPTIONS --mountpoint {}", q(&boot)));
    assert!(opts2.split(',').any(|o| o == "ro"), "{opts2}");
    sb.reboot();
    let cmdline = sb.sh("cat $ROOT/proc/cmdline");
    let entry = sb.sh("grep -h '^options' $ROOT/boot/loader/entries/ostree-2-rhcos.conf");
    assert!(
        cmdline.contains(entry.trim().trim_start_matches("options ")),
        "{cmdline} {entry}"
    );
    let booted = sb.sh("cat $CTL/state/booted");
    assert!(booted.contains(&ds[1].checksum), "{booted}");
    // Teardown: unmounted, the loop device detached.
    let img = sb.ctl().join("boot.img");
    let dir = sb.dir.path().to_path_buf();
    drop(sb);
    assert!(!dir.exists());
    let loops = sh("losetup -a");
    assert!(!loops.contains(&img.display().to_string()), "{loops}");
}
