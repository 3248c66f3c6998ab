//! Hostile input, round two (issue 23), the restore's side: a pod's hard
//! link to a host file, a backup dir (or its lock, its generations) owned or
//! planted by someone else, a tree that would make the restore's memory grow
//! with every path, a directory flipped to a symlink while a tree is synced.
//! Each test asserts what happened outside the target, the exit code, and
//! that the message names the file.

mod common;

use common::recovery::*;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

fn xattrs(p: &Path) -> String {
    sh(&format!(
        "getfattr -h -d -m - --absolute-names {} 2>/dev/null | grep -v '^#' || true",
        q(p)
    ))
}

/// (uid, gid, mode, xattrs, content) of a file.
fn identity(p: &Path) -> (u32, u32, u32, String, Vec<u8>) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (
        m.uid(),
        m.gid(),
        m.mode() & 0o7777,
        xattrs(p),
        std::fs::read(p).unwrap(),
    )
}

/// Item 1: a pod writes a file with the bytes of a host file on the same
/// filesystem, gives it a second name, owner 1000 and mode 6777; after the
/// backup it replaces it with a hard link to the host file. The documented
/// procedure (restore-kubelet) must not give the host file the pod file's
/// owner, mode and xattrs: the pod's name gets a new inode.
#[test]
fn a_pods_hard_link_to_a_host_file_never_changes_the_host_file() {
    let sb = Sandbox::new();
    let host = sb.root().join("var/host-authorized_keys");
    let vol = sb.root().join("var/lib/kubelet/pods/evil/volumes");
    sb.sh(&format!(
        r#"printf 'ssh-ed25519 AAAAC3Nza host\n' > {h}; chown 0:0 {h}; chmod 0600 {h}
mkdir -p {v}; printf 'ssh-ed25519 AAAAC3Nza host\n' > {v}/a; ln {v}/a {v}/b
chown 1000:1000 {v}/a; chmod 6777 {v}/a; setfattr -n user.pod -v 1 {v}/a"#,
        h = q(&host),
        v = q(&vol)
    ));
    let host_before = identity(&host);
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    // Which of the two names the archive holds as the file (the other is a
    // hard-link entry to it): the attack is on that one.
    let listing = sb.sh("zstd -dc $ROOT/var/recovery/current/kubelet.tar.zst | tar -tv");
    let first = if listing.lines().any(|l| {
        l.ends_with("pods/evil/volumes/b link to ./pods/evil/volumes/a")
            || l.ends_with("pods/evil/volumes/b link to pods/evil/volumes/a")
    }) {
        "a"
    } else {
        "b"
    };
    assert!(listing.contains("link to"), "{listing}");
    let target = vol.join(first);
    sb.sh(&format!("rm {t}; ln {h} {t}", t = q(&target), h = q(&host)));
    assert_eq!(std::fs::metadata(&host).unwrap().nlink(), 2);

    fail_and_recover(&sb);

    assert_eq!(
        identity(&host),
        host_before,
        "the host file kept its owner, mode, xattrs and bytes"
    );
    assert_eq!(
        std::fs::metadata(&host).unwrap().nlink(),
        1,
        "the pod's name is a new inode"
    );
    // The pod's files are back as they were: one inode, two names, its
    // owner, mode and xattr.
    let (a, b) = (vol.join("a"), vol.join("b"));
    let (ma, mb) = (
        std::fs::metadata(&a).unwrap(),
        std::fs::metadata(&b).unwrap(),
    );
    assert_eq!((ma.ino(), ma.nlink()), (mb.ino(), 2));
    assert_eq!(
        (ma.uid(), ma.gid(), ma.mode() & 0o7777),
        (1000, 1000, 0o6777)
    );
    assert!(xattrs(&a).contains("user.pod=\"1\""), "{}", xattrs(&a));
}

/// An upgrade that fails (the OS rolled back), then the documented
/// procedure to its end.
fn fail_and_recover(sb: &Sandbox) {
    finish(sb, "recovery");
}

/// Run with a time limit; panic naming `what` when it does not end.
fn bounded(what: &str, mut c: std::process::Command, limit: Duration) -> std::process::Output {
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[allow(dead_code)]
fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}
