//! Hostile input, round two (issue 23), the restore's side: a pod's hard
//! link to a host file, a backup dir (or its lock, its generations) owned or
//! planted by someone else, a tree that would make the restore's memory grow
//! with every path, a directory flipped to a symlink while a tree is synced.
//! Each test asserts what happened outside the target, the exit code, and
//! that the message names the file.

mod common;

use common::recovery::*;
use common::*;
use std::os::unix::fs::MetadataExt;
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

/// Calls of the shims that change the node (stop, disable, setenforce...).
fn changing(calls: &[String]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| {
            ["stop", "disable", "setenforce", "rm", "kill", "restart"]
                .iter()
                .any(|w| c.split_whitespace().any(|x| x == *w))
        })
        .cloned()
        .collect()
}

fn status_json(sb: &Sandbox) -> serde_json::Value {
    let (code, out, err) = sb.run(&["status", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// The tool, or the wrapper in the backup dir, with a time limit.
fn tool(sb: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let c = if args.first() == Some(&"wrapper") {
        let mut c = std::process::Command::new("sh");
        c.arg(sb.root().join("var/recovery/upgrade-recovery.sh"))
            .arg("--root")
            .arg(sb.root())
            .args(&args[1..])
            .env("PATH", sb.path_env());
        c
    } else {
        sb.command(args)
    };
    let o = bounded(&format!("{args:?}"), c, Duration::from_secs(60));
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const READERS: [&[&str]; 8] = [
    &[
        "restore",
        "--poll-interval",
        "100ms",
        "--wait-timeout",
        "5s",
    ],
    &["restore", "--dry-run"],
    &[
        "restore",
        "--resume",
        "--poll-interval",
        "100ms",
        "--wait-timeout",
        "5s",
    ],
    &[
        "wrapper",
        "--resume",
        "--poll-interval",
        "100ms",
        "--wait-timeout",
        "5s",
    ],
    &[
        "wrapper",
        "--poll-interval",
        "100ms",
        "--wait-timeout",
        "5s",
    ],
    &["verify"],
    &["backup", "--min-free", "0"],
    &["backup", "--dry-run"],
];

/// Item 3: someone who owns the backup dir makes `current` its own
/// generation. No command reads or runs from it: each exits 1 naming the
/// dir and the fix (`chown root:root DIR && chmod 0700 DIR`), the node is
/// unchanged, and `status` says so with that command. After the fix, the
/// planted generation (not root's) is still refused, by name.
#[test]
fn a_backup_dir_owned_by_another_is_never_used() {
    let sb = Sandbox::new();
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    let dir = sb.root().join("var/recovery");
    sb.sh(&format!(
        r#"cd {d}; g=$(readlink current); cp -a $g gen-evil; chown -R 1000:1000 gen-evil; chown 1000:1000 .; chmod 0755 .
ln -s gen-evil .current.tmp; mv -T .current.tmp current
echo upgraded >> $ROOT/etc/hostname"#,
        d = q(&dir)
    ));
    let hostname = std::fs::read(sb.root().join("etc/hostname")).unwrap();
    let calls = sb.calls().len();
    for args in READERS {
        let (code, out, err) = tool(&sb, args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        let fix = format!("chown root:root {d} && chmod 0700 {d}", d = dir.display());
        assert!(
            err.contains(&fix),
            "{args:?} names the dir and the fix: {err}"
        );
    }
    let st = status_json(&sb);
    assert_eq!(st["state"]["state"], "backup-dir-unsafe", "{st:#}");
    let next = st["next_command"].as_str().unwrap().to_string();
    assert!(next.starts_with("chown root:root"), "{next}");
    // Nothing changed: /etc as the upgrade left it, no journal, no changing
    // call, the planted generation as it was planted.
    assert_eq!(
        std::fs::read(sb.root().join("etc/hostname")).unwrap(),
        hostname
    );
    assert!(!dir.join("journal.json").exists());
    assert_eq!(changing(&sb.calls()[calls..]), Vec::<String>::new());
    assert_eq!(
        std::fs::symlink_metadata(dir.join("gen-evil"))
            .unwrap()
            .uid(),
        1000
    );

    // The fix status named: the dir is root's, but the generation is not.
    sh(&next);
    for args in [&["verify"][..], &["restore", "--dry-run"]] {
        let (code, _, err) = tool(&sb, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains(&format!("{}/gen-evil", dir.display())) && err.contains("uid 1000"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(status_json(&sb)["state"]["state"], "backup-dir-unsafe");

    // A directory above the backup dir that others may write into.
    sh(&format!("chown -R 0:0 {d}/gen-evil", d = q(&dir)));
    let (code, _, err) = tool(&sb, &["verify"]);
    assert_eq!(code, 0, "{err}");
    sh(&format!("chmod 0777 {}", q(&sb.root().join("var"))));
    let (code, _, err) = tool(&sb, &["verify"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "chown root:root {v} && chmod go-w {v}",
            v = sb.root().join("var").display()
        )),
        "{err}"
    );
    sh(&format!("chmod 0755 {}", q(&sb.root().join("var"))));
}

/// Item 4: a FIFO at `<dir>/.lock` hangs no command; a symlink there is
/// never written through. Each names the lock file.
#[test]
fn a_fifo_or_symlink_at_the_lock_hangs_and_writes_nothing() {
    let sb = Sandbox::new();
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    let lock = sb.root().join("var/recovery/.lock");
    let victim = sb.root().join("var/victim");
    std::fs::write(&victim, "victim\n").unwrap();
    let before = std::fs::metadata(&victim).unwrap();
    let cmds: [&[&str]; 5] = [
        &["backup", "--min-free", "0"],
        &["backup", "--dry-run"],
        &["restore", "--dry-run"],
        &[
            "restore",
            "--poll-interval",
            "100ms",
            "--wait-timeout",
            "5s",
        ],
        &["verify"],
    ];
    for plant in ["fifo", "symlink", "dangling"] {
        let _ = std::fs::remove_file(&lock);
        match plant {
            "fifo" => sh(&format!("mkfifo {}", q(&lock))),
            "symlink" => sh(&format!("ln -s {} {}", q(&victim), q(&lock))),
            _ => sh(&format!(
                "ln -s {} {}",
                q(&sb.root().join("var/created")),
                q(&lock)
            )),
        };
        let t = Instant::now();
        for args in cmds {
            let (code, out, err) = tool(&sb, args);
            if args == ["verify"] {
                // Verify takes no lock: it reads the backup as it is.
                assert_eq!(code, 0, "{plant} {args:?}: {err}");
                continue;
            }
            assert_eq!(code, 1, "{plant} {args:?}: {out}{err}");
            assert!(
                err.contains(&lock.display().to_string())
                    && err.contains(&format!("rm {}", lock.display())),
                "{plant} {args:?} names the lock and the fix: {err}"
            );
        }
        let st = status_json(&sb);
        assert_eq!(st["state"]["state"], "backup-dir-unsafe", "{plant}: {st:#}");
        assert_eq!(st["next_command"], format!("rm {}", lock.display()));
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{plant}: {:?}",
            t.elapsed()
        );
        let after = std::fs::metadata(&victim).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"victim\n", "{plant}");
        assert_eq!(
            (after.len(), after.mtime(), after.mtime_nsec()),
            (before.len(), before.mtime(), before.mtime_nsec())
        );
        assert!(!sb.root().join("var/created").exists(), "{plant}");
    }
    // The fix named, then the next backup works.
    std::fs::remove_file(&lock).unwrap();
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
}

/// Item 8: the archive of tree `etc` is `etc.tar.zst` by the format; a
/// manifest that points it at `local.tar.zst` (with that archive's size and
/// digest) is damaged (exit 4, naming it). A generation that is a symlink
/// out of the backup dir is refused, by name.
#[test]
fn a_manifest_cannot_choose_a_trees_archive_nor_a_generation_leave_the_dir() {
    let sb = Sandbox::new();
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    let dir = sb.root().join("var/recovery");
    let gen = std::fs::read_link(dir.join("current")).unwrap();
    let mp = dir.join(&gen).join("manifest.json");
    let text = std::fs::read_to_string(&mp).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let trees = m["trees"].as_array_mut().unwrap();
    let local = trees.iter().find(|t| t["name"] == "local").unwrap().clone();
    for t in trees.iter_mut().filter(|t| t["name"] == "etc") {
        for k in ["archive", "archive_bytes", "sha256"] {
            t[k] = local[k].clone();
        }
    }
    std::fs::write(&mp, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let etc_before = sh(&format!("cat {}", q(&sb.root().join("etc/hostname"))));
    sb.sh("echo upgraded >> $ROOT/etc/hostname");
    for args in [
        &["verify"][..],
        &["restore", "--dry-run"],
        &["restore", "--wait-timeout", "5s"],
    ] {
        let (code, out, err) = tool(&sb, args);
        assert_eq!(code, 4, "{args:?}: {out}{err}");
        assert!(
            err.contains("local.tar.zst")
                && err.contains("etc.tar.zst")
                && err.contains(&mp.display().to_string()),
            "{args:?}: {err}"
        );
    }
    assert_ne!(
        sh(&format!("cat {}", q(&sb.root().join("etc/hostname")))),
        etc_before
    );
    std::fs::write(&mp, text).unwrap();
    let (code, _, err) = tool(&sb, &["verify"]);
    assert_eq!(code, 0, "{err}");

    // The generation moved out of the dir, a symlink left in its place.
    let outside = TempDir::new("outside-gen");
    let moved = outside.path().join("g");
    sh(&format!(
        "mv {} {}; ln -s {} {}",
        q(&dir.join(&gen)),
        q(&moved),
        q(&moved),
        q(&dir.join(&gen))
    ));
    for args in [&["verify"][..], &["restore", "--dry-run"], &["status"]] {
        let (code, out, err) = tool(&sb, args);
        let text = format!("{out}{err}");
        assert!(
            text.contains(&dir.join(&gen).display().to_string())
                && text.contains("not a directory"),
            "{args:?}: {text}"
        );
        if args != ["status"] {
            assert_eq!(code, 1, "{args:?}: {text}");
        }
    }
}

/// A tree of 400 levels of 250-byte names with 20,000 files at the bottom
/// (issue 23's; paths of about 100 KB), built through directory fds.
const DEEP_TREE: &str = r#"
import os, sys
top = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fd = top
for i in range(400):
    name = ("%03d" % i) + "n" * 247
    os.mkdir(name, dir_fd=fd)
    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    if fd != top:
        os.close(fd)
    fd = sub
for i in range(20000):
    f = os.open("f%05d" % i, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(f, b"%d\n" % i)
    os.close(f)
"#;

/// Entries, and a digest of each entry's depth, name, mode, size and bytes.
const TREE_DIGEST: &str = r#"
import hashlib, os, stat, sys
h = hashlib.sha256(); n = 0
def walk(fd, depth):
    global n
    for name in sorted(os.listdir(fd)):
        st = os.stat(name, dir_fd=fd, follow_symlinks=False); n += 1
        size = 0 if stat.S_ISDIR(st.st_mode) else st.st_size
        h.update(("%d %s %o %d\n" % (depth, name, st.st_mode, size)).encode())
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            walk(sub, depth + 1); os.close(sub)
        else:
            f = os.open(name, os.O_RDONLY, dir_fd=fd); h.update(os.read(f, 4096)); os.close(f)
walk(os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY), 0)
print(n, h.hexdigest())
"#;

fn python(script: &str, arg: &Path) -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(arg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `tree sync` under an address-space limit, with its peak RSS (KiB) from
/// `/usr/bin/time -v`.
fn sync_limited(archive: &Path, dst: &Path, limit_kib: u64) -> (i32, String, u64) {
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -v {limit_kib}; exec /usr/bin/time -v {} tree sync {} {}",
            q(&binary()),
            q(archive),
            q(dst)
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let rss = err
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (o.status.code().unwrap_or(-1), err, rss)
}

/// Item 7: the restore's memory follows the depth and one directory's
/// entries, not the sum of all path lengths. The issue's tree (400 levels of
/// 250-byte names, 20,000 files at the bottom: 2 GB of paths) is restored,
/// then restored again over itself with an extra file to delete, each under
/// a 1 GiB address-space limit and with a peak RSS under 150 MiB.
#[test]
fn the_restores_memory_does_not_grow_with_the_paths() {
    let t = TempDir::new("deep-mem");
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    python(DEEP_TREE, &src);
    let want = python(TREE_DIGEST, &src);
    assert!(want.starts_with("20400 "), "{want}");
    let ar = t.path().join("deep.tar.zst");
    let o = std::process::Command::new(binary())
        .args(["tree", "archive"])
        .arg(&src)
        .arg(&ar)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dst = t.path().join("dst");
    for pass in ["into an empty dir", "over the restored tree"] {
        let (code, err, rss) = sync_limited(&ar, &dst, 1 << 20);
        eprintln!("tree sync {pass}: peak RSS {rss} KiB");
        assert_eq!(code, 0, "{pass}: {err}");
        assert!(
            rss > 0 && rss < 150 * 1024,
            "{pass}: peak RSS {rss} KiB\n{err}"
        );
        assert_eq!(python(TREE_DIGEST, &dst), want, "{pass}");
        // Something to delete at the bottom for the second pass.
        sh(&format!(
            "cd {} && for i in $(seq 400); do cd \"$(ls -d [0-9]*)\"; done && echo x > extra",
            q(&dst)
        ));
    }
}

/// Item 12, tree sync: a directory replaced by a symlink (to a dir outside)
/// while the tree is restored is skipped with a warning naming it, in the
/// write pass (the entries below it) and the metadata pass; nothing is
/// written through the link, and the rest of the tree is restored.
#[test]
fn a_directory_flipped_to_a_symlink_during_tree_sync_is_skipped_with_a_warning() {
    let t = TempDir::new("flip");
    let src = t.path().join("src");
    sh(&format!(
        "mkdir -p {s}/a/b {s}/z; echo 1 > {s}/a/b/f; echo 2 > {s}/a/g; echo 3 > {s}/z/h; chmod 0750 {s}/a/b",
        s = q(&src)
    ));
    let ar = t.path().join("t.tar.zst");
    let o = std::process::Command::new(binary())
        .args(["tree", "archive"])
        .arg(&src)
        .arg(&ar)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::set_permissions(
        &outside,
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    for stage in ["write", "meta"] {
        let dst = t.path().join(format!("dst-{stage}"));
        sh(&format!("cp -a {}/. {}/", q(&src), q(&dst)));
        sh(&format!("echo old > {}/a/b/f", q(&dst)));
        let o = std::process::Command::new(binary())
            .args(["tree", "sync"])
            .arg(&ar)
            .arg(&dst)
            .env(
                "UPGRADE_RECOVERY_FLIP_DIR",
                format!("{stage}:a/b:{}", outside.display()),
            )
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{stage}: {out}{err}");
        assert!(
            err.contains("a/b") && err.contains("changed"),
            "{stage}: {err}"
        );
        assert!(out.contains("a/b"), "{stage}: {out}");
        // Nothing written through the link; the rest restored.
        assert_eq!(sh(&format!("ls -A {}", q(&outside))), "", "{stage}");
        assert_eq!(mode(&outside), 0o711, "{stage}");
        assert!(std::fs::symlink_metadata(dst.join("a/b"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(dst.join("a/g")).unwrap(), "2\n");
        assert_eq!(std::fs::read_to_string(dst.join("z/h")).unwrap(), "3\n");
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
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
