//! Hostile and damaged backups: archives written by a small raw tar writer
//! here (not ours), manifests edited by hand, FIFOs and symlinks planted in
//! the backup dir. Nothing is written outside the tree, nothing panics or
//! hangs, and `verify`/`restore` call such a backup damaged (exit 4).

mod common;

use common::rawtar::*;
use common::*;
use sha2::{Digest, Sha256};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use upgrade_recovery::testing::archive::{self, SyncOptions};

/// One hostile archive a case: (what, archive, the entry the error names).
fn cases() -> Vec<(&'static str, RawTar, &'static str)> {
    let sparse = |map: &[u8], real: &[u8], data: &[u8]| {
        let mut d = map.to_vec();
        pad(&mut d);
        d.extend_from_slice(data);
        let mut t = RawTar::new();
        t.dir(b".");
        let sha = hex::encode(Sha256::digest(b""));
        t.entry(
            b"GNUSparseFile.0/s",
            b'0',
            &[
                (b"GNU.sparse.major", b"1"),
                (b"GNU.sparse.minor", b"0"),
                (b"GNU.sparse.name", b"s"),
                (b"GNU.sparse.realsize", real),
                (b"UPGRADE_RECOVERY.sha256", sha.as_bytes()),
            ],
            &d,
        );
        t
    };
    let mut v = Vec::new();
    let mut t = RawTar::new();
    t.entry(b"..", b'5', &[(b"path", b".."), (b"uid", b"4242")], b"");
    v.push(("a directory named ..", t, ".."));
    let mut t = RawTar::new();
    t.dir(b".").file(b"..", b"x");
    v.push(("a file named ..", t, ".."));
    let mut t = RawTar::new();
    t.dir(b".").dir(b"a").file(b"a/..", b"x");
    v.push(("a file named a/..", t, "a/.."));
    let mut t = RawTar::new();
    t.dir(b".").file(b"../escaped", b"x");
    v.push(("a file above the tree", t, "../escaped"));
    let mut t = RawTar::new();
    t.dir(b".").file(b"/tmp/ur-hostile-abs", b"x");
    v.push(("an absolute path", t, "/tmp/ur-hostile-abs"));
    let mut t = RawTar::new();
    t.dir(b".").file(b"a//b", b"x");
    v.push(("an empty component", t, "a//b"));
    let mut t = RawTar::new();
    t.dir(b".").file(b"a\0b", b"x");
    v.push(("a NUL in a name", t, "a\\0b"));
    let mut t = RawTar::new();
    t.dir(b".").entry(
        b"h",
        b'1',
        &[(b"path", b"h"), (b"linkpath", b"../../outside")],
        b"",
    );
    v.push(("a hard link leaving the tree", t, "\"h\""));
    let mut t = RawTar::new();
    t.dir(b".").entry(
        b"l",
        b'2',
        &[(b"path", b"l"), (b"linkpath", b"/etc\0x")],
        b"",
    );
    v.push(("a NUL in a symlink target", t, "\"l\""));
    let mut t = RawTar::new();
    t.dir(b".").entry(
        b"x",
        b'5',
        &[(b"path", b"x"), (b"SCHILY.xattr.user.a\0b", b"v")],
        b"",
    );
    v.push(("a NUL in an xattr name", t, "\"x\""));
    v.push((
        "an overlapping sparse map",
        sparse(b"2\n0\n50\n10\n50\n", b"100", &[7u8; 100]),
        "\"s\"",
    ));
    v.push((
        "a sparse extent beyond the size",
        sparse(b"1\n18446744073709551000\n10\n", b"100", &[7u8; 10]),
        "\"s\"",
    ));
    v.push((
        "a sparse real size of 2^64-1",
        sparse(b"1\n0\n10\n", b"18446744073709551615", &[7u8; 10]),
        "\"s\"",
    ));
    v.push((
        "a sparse map of 2^64-1 extents",
        sparse(b"18446744073709551615\n0\n10\n", b"100", &[7u8; 10]),
        "sparse map",
    ));
    v
}

#[test]
fn hostile_archives_are_damaged_and_change_nothing_outside() {
    let t = TempDir::new("hostile");
    for (what, tar, names) in cases() {
        let ar = t.path().join("h.tar.zst");
        let (sha, size) = tar.write(&ar);
        let err = format!("{:#}", archive::check_archive(&ar).unwrap_err());
        assert!(err.contains(names), "{what}: {err}");
        // The restore engine reads the same entries the same way.
        let outer = t.path().join("outer");
        let dst = outer.join("top");
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(outer.join("keep"), "k").unwrap();
        std::fs::set_permissions(&outer, std::fs::Permissions::from_mode(0o750)).unwrap();
        let r = archive::restore_tree(
            &ar,
            &sha,
            size,
            &dst,
            &SyncOptions {
                delete: true,
                ..SyncOptions::default()
            },
        );
        assert!(r.is_err(), "{what}: restored");
        let md = std::fs::metadata(&outer).unwrap();
        assert_eq!((md.mode() & 0o7777, md.uid()), (0o750, 0), "{what}");
        // Entries before the hostile one may have been written inside the
        // tree (the restore command verifies every archive first); nothing
        // outside it.
        let mut names: Vec<_> = std::fs::read_dir(&outer)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["keep", "top"], "{what}");
        assert_eq!(std::fs::read(outer.join("keep")).unwrap(), b"k", "{what}");
        let md = std::fs::metadata(&dst).unwrap();
        assert_eq!((md.mode() & 0o7777, md.uid()), (0o755, 0), "{what}");
        assert!(!Path::new("/tmp/ur-hostile-abs").exists(), "{what}");
        std::fs::remove_dir_all(&outer).unwrap();
    }
}

fn set_archive(sb: &Sandbox, tree: &str, sha: &str, size: u64) {
    let mp = sb.root().join("var/recovery/manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mp).unwrap()).unwrap();
    for t in m["trees"].as_array_mut().unwrap() {
        if t["name"] == tree {
            t["sha256"] = sha.into();
            t["archive_bytes"] = size.into();
        }
    }
    std::fs::write(&mp, serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

fn edit_manifest(sb: &Sandbox, f: impl FnOnce(&mut serde_json::Value)) {
    let mp = sb.root().join("var/recovery/manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mp).unwrap()).unwrap();
    f(&mut m);
    std::fs::write(&mp, serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

#[test]
fn verify_and_restore_refuse_hostile_backups_before_any_change() {
    let sb = Sandbox::new();
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    let rec = sb.root().join("var/recovery");
    let pristine = sb.dir.path().join("pristine");
    sh(&format!("cp -a {} {}", q(&rec), q(&pristine)));
    let reset = || {
        sh(&format!(
            "rm -rf {r} && cp -a {p} {r}",
            r = q(&rec),
            p = q(&pristine)
        ))
    };
    let node_before = || {
        let md = std::fs::metadata(sb.root()).unwrap();
        (
            md.mode(),
            md.uid(),
            sb.root().join("var/lib/containers").exists(),
            sb.root().join("var/lib/etcd").exists(),
        )
    };
    let node = node_before();

    // The archive of the issue: `..` as a directory with mode 0777, owner
    // 4242, then a file named `..`.
    let mut t = RawTar::new();
    t.entry(
        b"..",
        b'5',
        &[(b"path", b".."), (b"uid", b"4242"), (b"gid", b"4242")],
        b"",
    );
    t.file(b"..", b"gone");
    // As the /etc archive: the files phase reads it, so its check (before the
    // phase's first change) finds the entry. The kubelet archive is checked
    // the same way by the cluster phase, before that phase's first change.
    let (sha, size) = t.write(&rec.join("current/etc.tar.zst"));
    set_archive(&sb, "etc", &sha, size);
    let (code, out, err) = sb.run(&["verify"]);
    assert_eq!(code, 4, "{out}{err}");
    assert!(
        out.contains("etc.tar.zst") && out.contains("\"..\""),
        "{out}"
    );
    let (code, out, err) = sb.run(&["restore", "--wait-timeout", "30"]);
    assert_eq!(code, 4, "{out}{err}");
    assert!(format!("{out}{err}").contains("\"..\""), "{out}{err}");
    assert_eq!(node_before(), node);
    assert!(!rec.join("journal.json").exists());

    // Manifests that point outside the backup or at trees we do not back up.
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "tree source /",
            Box::new(|m| m["trees"][0]["source"] = "/".into()),
        ),
        (
            "archive ../x",
            Box::new(|m| m["trees"][0]["archive"] = "../../etc/shadow".into()),
        ),
        (
            "archive absolute",
            Box::new(|m| m["trees"][0]["archive"] = "/etc/shadow".into()),
        ),
        (
            "etcd file ../x",
            Box::new(|m| m["etcd"]["file"] = "../x.db".into()),
        ),
        (
            "unknown tree",
            Box::new(|m| m["trees"][0]["name"] = "root".into()),
        ),
        (
            "short checksum",
            Box::new(|m| m["deployment"]["checksum"] = "abc".into()),
        ),
        (
            "NUL in an exclude",
            Box::new(|m| m["trees"][0]["excludes"] = serde_json::json!(["a\u{0}b"])),
        ),
    ];
    for (what, edit) in edits {
        reset();
        edit_manifest(&sb, edit);
        let (code, out, err) = sb.run(&["verify"]);
        assert_eq!(code, 4, "{what}: {out}{err}");
        assert!(err.contains("manifest.json is damaged"), "{what}: {err}");
        let (code, _, err) = sb.run(&["restore", "--wait-timeout", "30"]);
        assert_eq!(code, 4, "{what}: {err}");
        assert_eq!(node_before(), node, "{what}");
    }

    // Not UTF-8.
    reset();
    std::fs::write(rec.join("current/manifest.json"), b"{\"format\": \xff}").unwrap();
    let (code, _, err) = sb.run(&["verify"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("not UTF-8"), "{err}");

    // A FIFO as the manifest or an archive never blocks; a symlink to
    // /dev/zero is not read.
    reset();
    std::fs::remove_file(rec.join("current/manifest.json")).unwrap();
    sh(&format!("mkfifo {}", q(&rec.join("current/manifest.json"))));
    let (code, out, err) = sb.run(&["verify"]);
    assert_eq!(code, 4, "{out}{err}");
    assert!(err.contains("FIFO"), "{err}");
    reset();
    std::fs::remove_file(rec.join("current/etc.tar.zst")).unwrap();
    sh(&format!("mkfifo {}", q(&rec.join("current/etc.tar.zst"))));
    let (code, out, _) = sb.run(&["verify"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("FIFO"), "{out}");
    reset();
    std::fs::remove_file(rec.join("current/local.tar.zst")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", rec.join("current/local.tar.zst")).unwrap();
    let snap = sb.sh("ls $ROOT/var/recovery/cluster/snapshot_*.db");
    std::fs::remove_file(snap.trim()).unwrap();
    std::os::unix::fs::symlink("/dev/zero", snap.trim()).unwrap();
    let (code, out, _) = sb.run(&["verify"]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("local.tar.zst") && out.contains("symlink"),
        "{out}"
    );
    assert!(out.contains("snapshot_"), "{out}");
    let (code, _, err) = sb.run(&["restore", "--wait-timeout", "30"]);
    assert_eq!(code, 4, "{err}");
    assert_eq!(node_before(), node);

    // A journal that is not UTF-8: a recovery whose state is unknown (3),
    // and the way out named.
    reset();
    std::fs::write(rec.join("journal.json"), b"{\"format\": \xff}").unwrap();
    let (code, out, err) = sb.run(&["restore", "--wait-timeout", "30"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("not UTF-8") && err.contains("upgrade-recovery restore --restart"),
        "{err}"
    );
    assert_eq!(node_before(), node);
}

/// Issue 27.1 as worded ("every part that the whole recovery will read is
/// checked in full (sha256 of the snapshot and of every archive ...); the
/// later phases check again") and issue 25: the preflight checks the kubelet
/// archive by its size and sha256, the cluster phase parses it in full
/// before its own first change. A flipped byte (size kept) still stops the
/// recovery before the files phase's first change; a hostile archive written
/// together with a manifest that matches it passes the preflight (the files
/// phase runs) and is refused by the cluster phase before that phase changes
/// anything, with the node's state and the next command; a good copy put
/// back, the recovery finishes.
#[test]
fn a_kubelet_archive_is_hashed_by_the_preflight_and_parsed_before_the_cluster_phase() {
    use common::recovery::*;
    let sb = Sandbox::new();
    let before = take_backup(&sb);
    upgrade(&sb, 1);
    let rec = sb.root().join("var/recovery");
    let journal = rec.join("journal.json");
    let k = rec.join("current/kubelet.tar.zst");
    let good = std::fs::read(&k).unwrap();
    let manifest = std::fs::read(rec.join("current/manifest.json")).unwrap();
    let changing = || sb.calls_but_api_reads().len();

    // A flipped byte, size kept: the preflight's sha256 finds it.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&k, &bad).unwrap();
    let calls = changing();
    let (code, out, err) = restore(&sb, &[], None);
    assert_eq!(code, Some(4), "{out}{err}");
    assert!(
        err.contains("kubelet.tar.zst")
            && err.contains("sha256")
            && err.contains("Nothing was changed by the recovery"),
        "{err}"
    );
    assert_eq!(
        changing(),
        calls,
        "{:?}",
        &sb.calls_but_api_reads()[calls..]
    );
    assert!(!journal.exists());
    std::fs::write(&k, &good).unwrap();

    // A hostile archive and a manifest re-written to match it.
    let mut t = RawTar::new();
    t.entry(
        b"..",
        b'5',
        &[(b"path", b".."), (b"uid", b"4242"), (b"gid", b"4242")],
        b"",
    );
    t.file(b"..", b"gone");
    let (sha, size) = t.write(&k);
    set_archive(&sb, "kubelet", &sha, size);
    let var_lib = || {
        let md = std::fs::metadata(sb.root().join("var/lib")).unwrap();
        (md.mode(), md.uid(), md.gid())
    };
    let var_lib_before = var_lib();
    let (code, out, err) = restore(&sb, &["--dry-run"], None);
    assert_eq!(
        code,
        Some(0),
        "the dry run checks as the real run: {out}{err}"
    );
    let (code, out, err) = restore(&sb, &[], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    let line = err
        .lines()
        .find(|l| l.contains("the recovery: checking the backup parts"))
        .unwrap_or_else(|| panic!("{err}"));
    let (full, hashed) = line
        .split_once("(in full);")
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        full.contains("local.tar.zst") && !full.contains("kubelet"),
        "{line}"
    );
    assert!(
        hashed.contains("kubelet.tar.zst")
            && hashed.contains("snapshot_")
            && hashed.contains("size and sha256"),
        "{line}"
    );
    sb.reboot();
    let journal_before = std::fs::read(&journal).unwrap();
    let calls = changing();
    let (code, out, err) = restore(&sb, &["--resume"], None);
    assert_eq!(code, Some(4), "{out}{err}");
    assert!(
        err.contains("kubelet.tar.zst") && err.contains("\"..\""),
        "{err}"
    );
    assert!(
        err.contains("Nothing was changed by phase cluster")
            && err.contains("the node now: phase cluster")
            && err.contains("`upgrade-recovery verify`")
            && err.contains("`upgrade-recovery restore --resume`"),
        "{err}"
    );
    assert_eq!(
        changing(),
        calls,
        "{:?}",
        &sb.calls_but_api_reads()[calls..]
    );
    assert_eq!(std::fs::read(&journal).unwrap(), journal_before);
    assert_eq!(var_lib(), var_lib_before, "nothing written above the tree");
    assert!(
        sb.root().join("var/lib/kubelet/pods/new-pod-1").exists(),
        "the kubelet tree is as the upgrade left it"
    );
    assert!(
        sb.root().join("var/lib/etcd/member").is_dir(),
        "etcd untouched"
    );
    // status names the damage and `verify`, which finds it.
    let next = common::admin::expect_state(&sb, "recovery-stopped-backup-damaged");
    assert_eq!(next, "upgrade-recovery verify");
    let (code, out, _) = sb.run(&["verify"]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("kubelet.tar.zst") && out.contains("\"..\""),
        "{out}"
    );

    // Another copy of the backup: verify passes, the recovery finishes.
    std::fs::write(&k, &good).unwrap();
    std::fs::write(rec.join("current/manifest.json"), &manifest).unwrap();
    let (code, out, err) = sb.run(&["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    finish(&sb, "after the good copy");
    check_restored(&sb, &before, "after the good copy");
}

#[test]
fn extract_grants_no_privilege_unless_exact_and_stays_under_to() {
    let sb = Sandbox::new();
    sb.sh(
        "d=$ROOT/var/usrlocal/priv; mkdir -p $d && echo x > $d/suid && chmod 4755 $d/suid \
         && echo y > $d/capped && setcap cap_net_raw+ep $d/capped \
         && mknod $d/mem c 1 1 && chmod 2755 $d",
    );
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    let t = TempDir::new("xto");
    let to = t.path().join("out");
    let to_s = to.to_str().unwrap();
    let (code, out, err) = sb.run(&["extract", "/usr/local/priv", "--to", to_s]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("left out 1 device nodes"), "{out}");
    assert!(out.contains("extract --exact"), "{out}");
    let d = to.join("usr/local/priv");
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&d.join("suid")), 0o755);
    assert_eq!(mode(&d), 0o755);
    assert_eq!(std::fs::read(d.join("capped")).unwrap(), b"y\n");
    assert_eq!(sh(&format!("getcap {}", q(&d.join("capped")))).trim(), "");
    assert!(!d.join("mem").exists());

    // --exact: as on the node (oracle: getcap, stat).
    let exact = t.path().join("exact");
    let (code, _, err) = sb.run(&[
        "extract",
        "/usr/local/priv",
        "--exact",
        "--to",
        exact.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let d = exact.join("usr/local/priv");
    assert_eq!(mode(&d.join("suid")), 0o4755);
    assert_eq!(mode(&d), 0o2755);
    assert!(sh(&format!("getcap {}", q(&d.join("capped")))).contains("cap_net_raw"));
    assert!(std::fs::symlink_metadata(d.join("mem"))
        .unwrap()
        .file_type()
        .is_char_device());

    // A symlink below --to never leads the copy outside it.
    let trap = t.path().join("trap");
    let outside = t.path().join("outside");
    std::fs::create_dir_all(&trap).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, trap.join("usr")).unwrap();
    let (code, _, err) = sb.run(&["extract", "/usr/local/priv", "--to", trap.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a directory"), "{err}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn report_creates_its_file_anew_0600_never_through_a_symlink() {
    let sb = Sandbox::new();
    let t = TempDir::new("rep");
    // A symlink planted where the report goes: replaced, not followed.
    let victim = t.path().join("victim");
    std::fs::write(&victim, "v").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let to = t.path().join("report.tar.gz");
    std::os::unix::fs::symlink(&victim, &to).unwrap();
    let (code, out, err) = sb.run(&["report", "--to", to.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"v");
    let md = std::fs::symlink_metadata(&to).unwrap();
    assert!(md.file_type().is_file());
    assert_eq!(md.mode() & 0o7777, 0o600);
    // An existing world-readable file: its mode is not reused.
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = sb.run(&["report", "--to", to.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::metadata(&to).unwrap().mode() & 0o7777, 0o600);
    sh(&format!("tar -tzf {} >/dev/null", q(&to)));
    assert_eq!(
        std::fs::read_dir(t.path()).unwrap().count(),
        2,
        "temp file left"
    );
    // A FIFO as the manifest or the journal does not block the report.
    let rec = sb.root().join("var/recovery");
    std::fs::create_dir_all(&rec).unwrap();
    sh(&format!(
        "mkfifo {} {}",
        q(&rec.join("manifest.json")),
        q(&rec.join("journal.json"))
    ));
    let mut c = sb.command(&["report", "--to", to.to_str().unwrap()]);
    let o = bounded("report", move || c.output().unwrap());
    assert_eq!(o.status.code(), Some(0));
    let listing = sh(&format!(
        "tar -xzOf {} upgrade-recovery-report/index.txt",
        q(&to)
    ));
    assert!(listing.contains("FIFO"), "{listing}");
}

/// Run `f` on a thread; fail when it does not return within a minute (a
/// blocked open of a FIFO never would).
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    within(60, what, f)
}

#[test]
fn a_fifo_swapped_in_between_lstat_and_open_never_blocks() {
    let t = TempDir::new("swap");
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/victim"), "data").unwrap();
    std::fs::write(src.join("d/other"), "other").unwrap();
    let ar = t.path().join("a.tar.zst");
    std::env::set_var("UPGRADE_RECOVERY_SWAP_FIFO", "victim");
    let (s2, a2) = (src.clone(), ar.clone());
    let st = bounded("backup", move || {
        archive::write_tree(&s2, &a2, &archive::WriteOptions::default(), None)
    });
    std::env::remove_var("UPGRADE_RECOVERY_SWAP_FIFO");
    st.unwrap();
    // What the walker found at the name when it looked again: the FIFO.
    let mut r = archive::read::Reader::open(&ar).unwrap();
    let mut kinds = Vec::new();
    while let Some(h) = r.next_header().unwrap() {
        kinds.push((String::from_utf8_lossy(&h.path).into_owned(), h.kind));
    }
    assert!(
        kinds.contains(&("d/victim".into(), archive::tar::Kind::Fifo)),
        "{kinds:?}"
    );
    assert!(kinds.contains(&("d/other".into(), archive::tar::Kind::File)));

    // The restore engine: the target holds a file of the archived size that
    // becomes a FIFO before it is opened to compare: rewritten, not blocked.
    let src = t.path().join("src2");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("victim"), "data").unwrap();
    let ar = t.path().join("b.tar.zst");
    let st = archive::write_tree(&src, &ar, &archive::WriteOptions::default(), None).unwrap();
    let dst = t.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(dst.join("victim"), "DATA").unwrap();
    std::env::set_var("UPGRADE_RECOVERY_SWAP_FIFO", "victim");
    let d2 = dst.clone();
    let r = bounded("restore", move || {
        archive::restore_tree(
            &ar,
            &st.sha256,
            st.archive_bytes,
            &d2,
            &SyncOptions::default(),
        )
    });
    std::env::remove_var("UPGRADE_RECOVERY_SWAP_FIFO");
    r.unwrap();
    assert_eq!(std::fs::read(dst.join("victim")).unwrap(), b"data");
}

const TREE_SCRIPT: &str = r#"
import os, sys
top = sys.argv[1]
os.makedirs(top)
def chain(names, leaf):
    d = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for n in names:
        os.mkdir(n, dir_fd=d)
        nd = os.open(n, os.O_RDONLY | os.O_DIRECTORY, dir_fd=d)
        os.close(d)
        d = nd
    f = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=d)
    os.write(f, leaf)
    os.close(f)
    os.symlink("leaf", "link", dir_fd=d)
    os.close(d)
# Longer than PATH_MAX: 20 directories with 250-byte names.
chain(["%02d" % i + "n" * 248 for i in range(20)], b"long")
# 1,100 levels deep.
chain(["deep"] + ["d"] * 1099, b"deep")
"#;

/// (entries, sha256 of every path with its type, mode, size and content) of
/// a tree, read relative to directory descriptors (an independent reader).
const DIGEST_SCRIPT: &str = r#"
import os, sys, stat, hashlib
sys.setrecursionlimit(100000)
h = hashlib.sha256(); n = 0
def walk(fd, rel):
    global n
    for name in sorted(os.listdir(fd)):
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        p = rel + "/" + name
        h.update(("%s %o %d\n" % (p, st.st_mode, st.st_size)).encode()); n += 1
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            walk(sub, p)
            os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            f = os.open(name, os.O_RDONLY, dir_fd=fd); h.update(os.read(f, 1 << 20)); os.close(f)
        elif stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(name, dir_fd=fd).encode())
top = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
walk(top, ".")
print(n, h.hexdigest())
"#;

fn digest(p: &Path) -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", DIGEST_SCRIPT])
        .arg(p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn what_backup_accepts_restore_restores_past_path_max_and_1100_levels() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let t = TempDir::new("deep");
    let src = t.path().join("src");
    let out = std::process::Command::new("python3")
        .args(["-c", TREE_SCRIPT])
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = digest(&src);
    assert!(want.starts_with("1124 "), "{want}");

    // The default limit of open files, for backup and restore alike.
    let old = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(1024),
            maximum: old.maximum,
        },
    )
    .unwrap();
    let ar = t.path().join("deep.tar.zst");
    let dst = t.path().join("dst");
    let run = || -> anyhow::Result<()> {
        let st = archive::write_tree(&src, &ar, &archive::WriteOptions::default(), None)?;
        let c = archive::check_archive(&ar)?;
        assert_eq!(c.entries, 1125);
        let opts = SyncOptions {
            delete: true,
            ..SyncOptions::default()
        };
        archive::restore_tree(&ar, &st.sha256, st.archive_bytes, &dst, &opts)?;
        // Again onto the restored tree, with something extra deep down to
        // delete: the unchanged path and the prune.
        let mut p = dst.join("deep");
        for _ in 0..40 {
            p.push("d");
        }
        std::fs::write(p.join("extra"), "x")?;
        // And a whole directory 40 levels deep that the archive does not
        // hold: the mount check and the removal walk it past the levels
        // held open.
        let mut gone = dst.join("gone");
        for _ in 0..40 {
            gone.push("d");
        }
        std::fs::create_dir_all(&gone)?;
        std::fs::write(gone.join("file"), "x")?;
        let again = archive::restore_tree(&ar, &st.sha256, st.archive_bytes, &dst, &opts)?;
        assert_eq!(again.deleted, 2);
        assert!(!dst.join("gone").exists());
        Ok(())
    };
    let r = run();
    setrlimit(Resource::Nofile, old).unwrap();
    r.unwrap();
    assert_eq!(digest(&dst), want);
    let (s, d) = (
        std::fs::metadata(&src).unwrap(),
        std::fs::metadata(&dst).unwrap(),
    );
    assert_eq!(s.mode(), d.mode());

    // An error about such a path stays short.
    let deep: Vec<u8> = [b"d/".repeat(3000), b"..".to_vec()].concat();
    let mut tar = RawTar::new();
    tar.dir(b".").file(&deep, b"x");
    let bad = t.path().join("bad.tar.zst");
    tar.write(&bad);
    let err = format!("{:#}", archive::check_archive(&bad).unwrap_err());
    assert!(err.len() < 600, "{} bytes: {err}", err.len());
    assert!(err.contains("`..`"), "{err}");
}
