//! The archive engine against independent oracles: rsync, getfattr, getfacl.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use upgrade_recovery::testing::archive::{self, SyncOptions, WriteOptions};

fn write(src: &Path, out: &Path) -> archive::TreeStats {
    archive::write_tree(src, out, &WriteOptions::default(), None).expect("archive written")
}

fn restore(
    ar: &Path,
    st: &archive::TreeStats,
    dst: &Path,
    opts: &SyncOptions,
) -> archive::SyncStats {
    archive::restore_tree(ar, &st.sha256, st.archive_bytes, dst, opts).expect("restored")
}

fn full() -> SyncOptions {
    SyncOptions {
        delete: true,
        ..SyncOptions::default()
    }
}

#[test]
fn round_trip_keeps_everything() {
    let t = TempDir::new("rt");
    let src = t.path().join("src");
    make_rich_tree(&src);
    let ar = t.path().join("tree.tar.zst");
    let st = write(&src, &ar);
    assert!(st.files >= 8, "{st:?}");
    assert!(st.skipped_mounts.is_empty());
    let check = archive::check_archive(&ar).unwrap();
    assert!(check.damaged_files.is_empty());
    assert_eq!(check.sha256, st.sha256);

    let dst = t.path().join("dst");
    restore(&ar, &st, &dst, &full());
    assert_eq!(rsync_diff(&src, &dst, ""), Vec::<String>::new());
    assert_eq!(meta_dump(&src), meta_dump(&dst));
    // Sparse stays sparse; hard links stay links.
    assert!(allocated(&dst.join("sparse.img")) < 1 << 20);
    let a = std::fs::metadata(dst.join("dir/a.txt")).unwrap();
    let h = std::fs::metadata(dst.join("sub-hard2")).unwrap();
    assert_eq!(a.ino(), h.ino());
    assert_eq!(a.nlink(), 3);
    // The top dir's own metadata too.
    let (s, d) = (
        std::fs::metadata(&src).unwrap(),
        std::fs::metadata(&dst).unwrap(),
    );
    assert_eq!(
        (s.mode(), s.mtime(), s.mtime_nsec()),
        (d.mode(), d.mtime(), d.mtime_nsec())
    );

    // GNU tar reads the archive too (independent reader).
    let gnu = t.path().join("gnu");
    sh(&format!(
        "mkdir {g} && zstd -dc {a} | tar -x -C {g} --numeric-owner -p",
        g = q(&gnu),
        a = q(&ar)
    ));
    assert_eq!(
        rsync_diff(&src, &gnu, "--no-A --no-X"),
        Vec::<String>::new()
    );
}

#[test]
fn restore_onto_an_upgraded_tree_is_exact_and_leaves_unchanged_files() {
    let t = TempDir::new("up");
    let src = t.path().join("src");
    make_rich_tree(&src);
    sh(&format!(
        "cd {} && mkdir -p keep && echo same > keep/untouched",
        q(&src)
    ));
    let ar = t.path().join("tree.tar.zst");
    let st = write(&src, &ar);
    let dst = t.path().join("dst");
    sh(&format!("cp -a {}/. {}", q(&src), q(&dst)));
    let ino_before = std::fs::metadata(dst.join("keep/untouched")).unwrap().ino();
    // The "upgrade": same size and mtime, new, deleted, type changes,
    // permission and xattr changes.
    sh(&format!(
        r#"cd {d}
m=$(stat -c %y dir/odd-size); printf 'y%.0s' $(seq 1 513) > dir/odd-size; touch -d "$m" dir/odd-size
echo new > dir/new-file; mkdir -p newdir/x; echo n > newdir/x/f
rm dir/mid.bin dir/fifo
rm dir/a.txt; mkdir dir/a.txt; echo inside > dir/a.txt/f
rm -r empty-dir; echo now-a-file > empty-dir
rm dir/rel-link; echo plain > dir/rel-link
rm dir/abs-link; mkdir dir/abs-link
chmod 0600 dir/sub; chown 7:7 dir/big.bin
setfattr -n user.added -v 1 dir/odd-size; setfattr -x security.selinux dir
setfacl -b dir/sub
"#,
        d = q(&dst)
    ));
    assert!(!rsync_diff(&src, &dst, "").is_empty());
    let stats = restore(&ar, &st, &dst, &full());
    assert_eq!(rsync_diff(&src, &dst, ""), Vec::<String>::new());
    assert_eq!(meta_dump(&src), meta_dump(&dst));
    assert!(stats.deleted >= 2, "{stats:?}");
    assert!(stats.unchanged > 5, "{stats:?}");
    // Identical files are left alone, not rewritten.
    assert_eq!(
        std::fs::metadata(dst.join("keep/untouched")).unwrap().ino(),
        ino_before
    );
    // Running it again changes nothing.
    let again = restore(&ar, &st, &dst, &full());
    assert_eq!(again.written, 0, "{again:?}");
    assert_eq!(again.deleted, 0, "{again:?}");
}

#[test]
fn hostile_symlinks_in_the_target_never_lead_outside() {
    let t = TempDir::new("hostile");
    let src = t.path().join("src");
    sh(&format!(
        "mkdir -p {s}/pods/x/volumes {s}/pods/y && echo data > {s}/pods/x/volumes/f && echo y > {s}/pods/y/file",
        s = q(&src)
    ));
    let ar = t.path().join("k.tar.zst");
    let st = write(&src, &ar);
    let outside = t.path().join("outside");
    sh(&format!(
        "mkdir -p {o}/volumes && echo precious > {o}/volumes/f && echo precious > {o}/file",
        o = q(&outside)
    ));
    let before = sh(&format!(
        "cd {} && find . -printf '%p %m %s %T@\\n' | sort && cat volumes/f file",
        q(&outside)
    ));
    let dst = t.path().join("dst");
    sh(&format!(
        "mkdir -p {d}/pods && ln -s {o} {d}/pods/x && ln -s {o}/file {d}/pods/y && ln -s {o} {d}/pods/extra",
        d = q(&dst),
        o = q(&outside)
    ));
    restore(&ar, &st, &dst, &full());
    let after = sh(&format!(
        "cd {} && find . -printf '%p %m %s %T@\\n' | sort && cat volumes/f file",
        q(&outside)
    ));
    assert_eq!(before, after, "something outside the tree changed");
    assert!(std::fs::symlink_metadata(dst.join("pods/x"))
        .unwrap()
        .is_dir());
    assert_eq!(rsync_diff(&src, &dst, ""), Vec::<String>::new());
}

#[test]
fn damaged_archives_are_refused_before_any_change() {
    let t = TempDir::new("damage");
    let src = t.path().join("src");
    make_rich_tree(&src);
    let ar = t.path().join("tree.tar.zst");
    let st = write(&src, &ar);
    let dst = t.path().join("dst");
    sh(&format!(
        "cp -a {}/. {} && echo changed > {}/dir/a.txt",
        q(&src),
        q(&dst),
        q(&dst)
    ));
    let snapshot = t.path().join("snapshot");
    sh(&format!("cp -a {}/. {}", q(&dst), q(&snapshot)));

    // A flipped bit in the middle, then a truncation.
    let flipped = t.path().join("flipped.tar.zst");
    std::fs::copy(&ar, &flipped).unwrap();
    let mut data = std::fs::read(&flipped).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x10;
    std::fs::write(&flipped, &data).unwrap();
    let truncated = t.path().join("truncated.tar.zst");
    std::fs::write(
        &truncated,
        &std::fs::read(&ar).unwrap()[..data.len() - 1000],
    )
    .unwrap();

    for (bad, size) in [
        (&flipped, st.archive_bytes),
        (&truncated, st.archive_bytes - 1000),
    ] {
        assert!(!archive::verify_archive(bad, &st.sha256, st.archive_bytes).is_empty());
        let err = archive::restore_tree(bad, &st.sha256, size, &dst, &full()).unwrap_err();
        assert_eq!(
            upgrade_recovery::testing::error::exit_code(&err),
            4,
            "{err:#}"
        );
        assert_eq!(
            rsync_diff(&snapshot, &dst, ""),
            Vec::<String>::new(),
            "target touched"
        );
    }
}

#[test]
fn excluded_paths_are_neither_written_nor_deleted() {
    let t = TempDir::new("excl");
    let src = t.path().join("src");
    sh(&format!(
        "mkdir -p {s}/kubernetes/manifests {s}/cni && echo old > {s}/kubernetes/manifests/etcd-pod.yaml && echo a > {s}/.updated && echo keep > {s}/cni/x && echo n > {s}/kubernetes/manifests2",
        s = q(&src)
    ));
    let ar = t.path().join("etc.tar.zst");
    let st = write(&src, &ar);
    let dst = t.path().join("dst");
    sh(&format!(
        "mkdir -p {d}/kubernetes/manifests && echo new > {d}/kubernetes/manifests/etcd-pod.yaml && echo extra > {d}/kubernetes/manifests/kube-apiserver-pod.yaml && echo stale > {d}/kubernetes/manifests2",
        d = q(&dst)
    ));
    let opts = SyncOptions {
        excludes: archive::parse_excludes(".updated\nkubernetes/manifests\n"),
        delete: true,
        ..SyncOptions::default()
    };
    restore(&ar, &st, &dst, &opts);
    let read = |p: &str| std::fs::read_to_string(dst.join(p)).unwrap();
    assert_eq!(read("kubernetes/manifests/etcd-pod.yaml"), "new\n");
    assert_eq!(
        read("kubernetes/manifests/kube-apiserver-pod.yaml"),
        "extra\n"
    );
    assert_eq!(read("kubernetes/manifests2"), "n\n");
    assert!(!dst.join(".updated").exists());
    assert_eq!(read("cni/x"), "keep\n");
}

#[test]
fn mount_points_are_recorded_at_backup_and_left_alone_at_restore() {
    let t = TempDir::new("mnt");
    let src = t.path().join("src");
    sh(&format!(
        "mkdir -p {s}/pods/p/volumes/cache && echo a > {s}/pods/p/file && mount -t tmpfs -o size=1m tmpfs {s}/pods/p/volumes/cache && echo volatile > {s}/pods/p/volumes/cache/v",
        s = q(&src)
    ));
    let ar = t.path().join("k.tar.zst");
    let st = write(&src, &ar);
    assert_eq!(st.skipped_mounts, vec!["pods/p/volumes/cache".to_string()]);
    let listing = sh(&format!("zstd -dc {} | tar -t", q(&ar)));
    assert!(!listing.contains("volatile"), "{listing}");

    let dst = t.path().join("dst");
    sh(&format!(
        "mkdir -p {d}/pods/p/volumes/cache {d}/pods/q/m && mount -t tmpfs -o size=1m tmpfs {d}/pods/p/volumes/cache && echo live > {d}/pods/p/volumes/cache/live && mount -t tmpfs -o size=1m tmpfs {d}/pods/q/m && echo live > {d}/pods/q/m/x",
        d = q(&dst)
    ));
    let stats = restore(&ar, &st, &dst, &full());
    assert_eq!(
        std::fs::read_to_string(dst.join("pods/p/volumes/cache/live")).unwrap(),
        "live\n"
    );
    assert_eq!(
        std::fs::read_to_string(dst.join("pods/q/m/x")).unwrap(),
        "live\n"
    );
    assert_eq!(
        std::fs::read_to_string(dst.join("pods/p/file")).unwrap(),
        "a\n"
    );
    assert!(!stats.skipped_mounts.is_empty());
}

#[test]
fn top_symlink_is_followed_once() {
    let t = TempDir::new("top");
    let root = t.path();
    sh(&format!(
        "mkdir -p {r}/var/usrlocal/bin {r}/usr && ln -s ../var/usrlocal {r}/usr/local && echo x > {r}/var/usrlocal/bin/tool && ln -s /etc {r}/var/usrlocal/etc-link",
        r = q(root)
    ));
    let top = archive::resolve_top(root, "/usr/local").unwrap();
    assert_eq!(top, root.join("var/usrlocal"));
    let ar = root.join("l.tar.zst");
    let st = write(&top, &ar);
    assert_eq!(
        st.files, 1,
        "the link below the top is stored, not followed"
    );
}

/// Runs only as a child of `a_crash_in_the_middle_then_a_rerun_is_exact`.
#[test]
#[ignore]
fn crash_helper() {
    let Ok(spec) = std::env::var("UR_CRASH_HELPER") else {
        return;
    };
    let mut it = spec.split('|');
    let (ar, sha, size, dst) = (
        it.next().unwrap(),
        it.next().unwrap(),
        it.next().unwrap(),
        it.next().unwrap(),
    );
    archive::restore_tree(
        Path::new(ar),
        sha,
        size.parse().unwrap(),
        Path::new(dst),
        &full(),
    )
    .unwrap();
}

#[test]
fn a_crash_in_the_middle_then_a_rerun_is_exact() {
    let t = TempDir::new("crash");
    let src = t.path().join("src");
    make_rich_tree(&src);
    let ar = t.path().join("tree.tar.zst");
    let st = write(&src, &ar);
    let entries = archive::check_archive(&ar).unwrap().entries;
    for at in [1, entries / 3, entries / 2, entries - 1] {
        let dst = t.path().join(format!("dst{at}"));
        sh(&format!(
            "cp -a {}/. {} && rm -rf {}/dir/sub && echo junk > {}/junk",
            q(&src),
            q(&dst),
            q(&dst),
            q(&dst)
        ));
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_helper", "--include-ignored", "--quiet"])
            .env(
                "UR_CRASH_HELPER",
                format!(
                    "{}|{}|{}|{}",
                    ar.display(),
                    st.sha256,
                    st.archive_bytes,
                    dst.display()
                ),
            )
            .env("UPGRADE_RECOVERY_SYNC_CRASH_AFTER", at.to_string())
            .status()
            .unwrap();
        assert_eq!(
            status.code(),
            Some(137),
            "the helper should have crashed at entry {at}"
        );
        restore(&ar, &st, &dst, &full());
        assert_eq!(
            rsync_diff(&src, &dst, ""),
            Vec::<String>::new(),
            "after a crash at entry {at}"
        );
        assert_eq!(meta_dump(&src), meta_dump(&dst));
    }
}

#[test]
fn extract_copies_out_one_file_with_its_metadata() {
    let t = TempDir::new("ext");
    let src = t.path().join("src");
    make_rich_tree(&src);
    let ar = t.path().join("tree.tar.zst");
    let st = write(&src, &ar);
    let to = t.path().join("out");
    archive::restore_tree(
        &ar,
        &st.sha256,
        st.archive_bytes,
        &to,
        &SyncOptions {
            only: Some(vec![b"dir/a.txt".to_vec()]),
            ..SyncOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(to.join("dir/a.txt")).unwrap(),
        "hello\n"
    );
    assert!(!to.join("dir/mid.bin").exists());
    let m = std::fs::metadata(to.join("dir/a.txt")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
}
