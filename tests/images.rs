//! Container images in the backup (opt-in), and back after `crio wipe`.

mod common;

use common::*;

fn digests(sb: &Sandbox) -> Vec<String> {
    let out = sb.sh("crictl images -o json | jq -r '.images[].repoDigests[]' | sort");
    out.lines().map(str::to_string).collect()
}

#[test]
fn images_survive_crio_wipe_through_the_backup() {
    let sb = Sandbox::new();
    sh(&format!(
        "{}/scripts/sandbox.sh images {} >/dev/null",
        q(&project()),
        q(sb.dir.path())
    ));
    let before = digests(&sb);
    assert_eq!(before.len(), 2, "{before:?}");

    // Without skopeo on PATH, --with-images fails before any change.
    let t = TempDir::new("path");
    sh(&format!("ln -s /usr/bin/ostree {}/ostree", q(t.path())));
    let o = sb
        .command(&["backup", "--min-free", "0", "--with-images"])
        .env(
            "PATH",
            format!("{}:{}", sb.ctl().join("bin").display(), t.path().display()),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("skopeo"), "{err}");
    assert_eq!(
        sb.sh("ostree admin --sysroot=$ROOT/sysroot status | grep -c Version")
            .trim(),
        "2",
        "nothing changed"
    );

    // The dry run refuses the same way, then with skopeo lists the images
    // it would copy and their estimate, and copies none.
    let o = sb
        .command(&["backup", "--min-free", "0", "--with-images", "--dry-run"])
        .env(
            "PATH",
            format!("{}:{}", sb.ctl().join("bin").display(), t.path().display()),
        )
        .output()
        .unwrap();
    assert_eq!(
        (o.status.code(), String::from_utf8_lossy(&o.stderr)),
        (Some(1), err.clone())
    );
    let (code, out, err) = sb.run(&[
        "--output",
        "json",
        "backup",
        "--min-free",
        "0",
        "--with-images",
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["images"].as_array().unwrap().len(), 2, "{out}");
    assert!(plan["parts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["part"] == "images" && p["bytes"].as_u64() > Some(0)));
    assert!(!sb.root().join("var/recovery/current").exists());

    let (code, out, err) = sb.run(&["backup", "--min-free", "0", "--with-images"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("images"), "{out}");
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sb.root().join("var/recovery/manifest.json")).unwrap(),
    )
    .unwrap();
    let imgs = m["images"].as_array().unwrap();
    assert_eq!(imgs.len(), 2);
    let mut recorded: Vec<String> = imgs
        .iter()
        .map(|i| {
            format!(
                "quay.io/openshift-release-dev/ocp-v4.0-art-dev@{}",
                i["digest"].as_str().unwrap()
            )
        })
        .collect();
    recorded.sort();
    assert_eq!(recorded, before);
    assert_eq!(sb.run(&["verify"]).0, 0);

    // The recovery wipes CRI-O's storage, then puts the images back.
    let (code, out, err) = sb.run(&["restore", "--poll-interval", "100"]);
    assert_eq!(code, 0, "{out}{err}");
    sb.sh("systemctl start crio.service");
    assert!(digests(&sb).is_empty(), "crio wipe emptied the storage");
    sb.sh("systemctl stop crio.service");
    sb.reboot();
    let (code, out, err) = sb.run(&["restore", "--resume", "--poll-interval", "100"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        digests(&sb),
        before,
        "the images are back with the same digests"
    );
    let calls = sb.calls();
    let start = calls
        .iter()
        .rposition(|c| {
            c == "systemctl start crio.service" || c == "systemctl is-active crio.service"
        })
        .unwrap();
    let restart = calls
        .iter()
        .rposition(|c| c == "systemctl restart kubelet.service")
        .unwrap();
    assert!(start < restart);

    // A corrupted blob is caught by verify.
    let blob = sh(&format!(
        "ls -S {}/var/recovery/current/images/blobs/sha256/* | head -1",
        q(&sb.root())
    ));
    sh(&format!(
        "printf 'x' | dd of={} bs=1 seek=100 conv=notrunc status=none",
        blob.trim()
    ));
    let (code, out, _) = sb.run(&["verify"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("images/blobs/sha256"), "{out}");
}

/// A node whose storage configuration is only the system file
/// (`/usr/share/containers/storage.conf`, as containers/storage falls back
/// to): the images go and come back through it.
#[test]
fn images_use_the_system_storage_conf_when_etc_has_none() {
    let sb = Sandbox::new();
    sh(&format!(
        "{}/scripts/sandbox.sh images {} >/dev/null",
        q(&project()),
        q(sb.dir.path())
    ));
    let before = digests(&sb);
    sb.sh("mkdir -p $ROOT/usr/share/containers && mv $ROOT/etc/containers/storage.conf $ROOT/usr/share/containers/storage.conf");
    let (code, _, err) = sb.run(&["backup", "--min-free", "0", "--with-images"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = sb.run(&["restore", "--poll-interval", "100"]);
    assert_eq!(code, 0, "{out}{err}");
    sb.reboot();
    let (code, out, err) = sb.run(&["restore", "--resume", "--poll-interval", "100"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!sb.root().join("etc/containers/storage.conf").exists());
    assert_eq!(digests(&sb), before, "the images are back");

    // A malformed system file: the backup stops before any change, naming it.
    sb.sh("echo '[storage' > $ROOT/usr/share/containers/storage.conf");
    let m = std::fs::read(sb.root().join("var/recovery/manifest.json")).unwrap();
    let (code, _, err) = sb.run(&["backup", "--min-free", "0", "--with-images"]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("usr/share/containers/storage.conf is malformed"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(sb.root().join("var/recovery/manifest.json")).unwrap(),
        m
    );
}
