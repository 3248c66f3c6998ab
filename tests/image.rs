//! The FROM scratch image, built with buildah from the local static binary
//! and run the way the hub's Job runs it: args `launchBackup`, the node
//! mounted at /host with the Job's mounts.

mod common;

use common::*;

#[test]
fn the_image_runs_as_the_job_and_the_backup_verifies() {
    let static_bin = project().join("target/x86_64-unknown-linux-gnu/release/upgrade-recovery");
    if !static_bin.exists() {
        sh(&format!("{}/scripts/build-static.sh", q(&project())));
    }
    let sb = Sandbox::new();
    let t = TempDir::new("buildah");
    let b = format!(
        "buildah --root {s}/root --runroot {s}/run --storage-driver vfs",
        s = q(t.path())
    );
    let tag = "localhost/upgrade-recovery:test";
    sh(&format!(
        "cd {} && {b} bud --isolation chroot -q -t {tag} -f Containerfile . >/dev/null",
        q(&project())
    ));
    let size = sh(&format!("{b} images --format '{{{{.Size}}}}' {tag}"));
    assert!(!size.trim().is_empty());
    let c = sh(&format!("{b} from -q {tag}")).trim().to_string();
    let sbd = sb.dir.path().display().to_string();
    // The Job's mounts that matter here, plus the sandbox's shims at their
    // own path (the tool runs them after its chroot into /host).
    let out = sh(&format!(
        r#"r={root}; mkdir -p "$r{sbd}" "$r/usr/bin" "$r/usr/lib" "$r/usr/lib64" "$r/usr/share"
{b} run --isolation chroot \
  --cap-add=CAP_SYS_ADMIN,CAP_MKNOD,CAP_SYS_CHROOT,CAP_SYS_NICE,CAP_LINUX_IMMUTABLE,CAP_DAC_READ_SEARCH \
  -v "$r":/host:rbind -v /usr/bin:/host/usr/bin:ro -v /usr/lib:/host/usr/lib:ro \
  -v /usr/lib64:/host/usr/lib64:ro -v /usr/share:/host/usr/share:ro \
  -v {sbd}:/host{sbd}:rbind -v /proc:/host/proc:rbind \
  --env PATH={sbd}/ctl/bin:/usr/bin {c} -- /usr/bin/upgrade-recovery launchBackup --min-free 0
{b} rm {c} >/dev/null"#,
        root = q(&sb.root()),
    ));
    assert!(out.contains("Backup complete"), "{out}");
    let (code, v, _) = sb.run(&["verify"]);
    assert_eq!(code, 0, "{v}");
    assert!(sb.root().join("run/ostree-booted").exists());
    assert!(!sb.root().join("run/ostree-booted.tmp").exists());
}
