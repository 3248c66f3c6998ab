//! etc.exclude.list against its oracle: real `rsync --delete --exclude-from`
//! on the same trees. Both start from the same "upgraded" node tree; rsync
//! makes one copy equal the backup, our restore the other; the two results
//! must be identical, and rsync's own `-n` list of what it would transfer or
//! delete must name no path our restore excluded.

mod common;

use common::*;
use std::path::Path;
use upgrade_recovery::testing::archive::{self, exclude::Excludes, SyncOptions, WriteOptions};

/// The backup tree and a changed node tree: in excluded and in kept places,
/// files changed, added and deleted, at several depths.
fn trees(backup: &Path, node: &Path) {
    sh(&format!(
        r#"set -e
b={b}; n={n}
mkdir -p $b/cni/multus/certs $b/kubernetes/manifests $b/kubernetes/cni/net.d $b/deep/x/cni/multus/certs \
  $b/logs $b/cache $b/sub/cache $b/run/a1 $b/run/b1 $b/run/c1 $b/keep $b/p/x/y
echo 1 > $b/cni/multus/certs/a.pem; echo 1 > $b/deep/x/cni/multus/certs/b.pem
echo 1 > $b/kubernetes/manifests/etcd-pod.yaml; echo 1 > $b/kubernetes/cni/net.d/00.conf
echo 1 > $b/.updated; echo 1 > $b/deep/.updated; echo 1 > $b/logs/a.log; echo 1 > $b/logs/a.txt
echo 1 > $b/cache/f; echo 1 > $b/sub/cache/f; echo 1 > $b/file-cache; echo 1 > $b/sub/cachex
echo 1 > $b/run/a1/f; echo 1 > $b/run/b1/f; echo 1 > $b/run/c1/f; echo 1 > $b/keep/x.bak
echo 1 > $b/keep/y; echo 1 > $b/p/x/y/q; echo 1 > $b/log1; echo 1 > $b/log12; echo 1 > $b/hostname
cp -a $b/. $n/
# The upgrade: change, add, delete everywhere.
for f in cni/multus/certs/a.pem deep/x/cni/multus/certs/b.pem kubernetes/manifests/etcd-pod.yaml \
  kubernetes/cni/net.d/00.conf .updated deep/.updated logs/a.log logs/a.txt cache/f sub/cache/f \
  file-cache sub/cachex run/a1/f run/b1/f run/c1/f keep/x.bak keep/y p/x/y/q log1 log12 hostname; do
  echo 2 >> $n/$f
done
mkdir -p $n/cni/multus/certs/new $n/new-dir/cni/multus/certs $n/other
echo n > $n/cni/multus/certs/new/f; echo n > $n/new-dir/cni/multus/certs/z; echo n > $n/other/new.bak
echo n > $n/kubernetes/manifests/new.yaml; echo n > $n/added; echo n > $n/sub/new-log9
rm -f $n/deep/x/cni/multus/certs/b.pem $n/keep/y $n/run/b1/f $n/log12
"#,
        b = q(backup),
        n = q(node)
    ));
}

const LIST: &str = "# as the backup writes it: tmpfiles.d paths, relative to /etc\n\
cni/multus/certs\n\
kubernetes/cni/net.d\n\
.updated\n\
kubernetes/manifests\n\
; globs and the other rsync forms\n\
*.bak\n\
log?\n\
cache/\n\
/run/[ab]*\n\
/p/**/q\n";

#[test]
fn restore_with_the_exclude_list_equals_rsync_exclude_from() {
    let t = TempDir::new("exclude");
    let (backup, node) = (t.path().join("backup"), t.path().join("node"));
    std::fs::create_dir_all(&backup).unwrap();
    std::fs::create_dir_all(&node).unwrap();
    trees(&backup, &node);
    let list = t.path().join("etc.exclude.list");
    std::fs::write(&list, LIST).unwrap();
    let by_rsync = t.path().join("by-rsync");
    sh(&format!("cp -a {}/. {}/", q(&node), q(&by_rsync)));

    // What rsync would transfer or delete: no excluded path may be in it.
    let would = sh(&format!(
        "rsync -n -a --delete --exclude-from={} --out-format='%n' {}/ {}/ | sort",
        q(&list),
        q(&backup),
        q(&by_rsync)
    ));
    let rsync_deletes = sh(&format!(
        "rsync -n -a --delete --exclude-from={} --itemize-changes {}/ {}/ | grep '^\\*deleting' | awk '{{print $2}}' | sort",
        q(&list),
        q(&backup),
        q(&by_rsync)
    ));
    sh(&format!(
        "rsync -a --delete --exclude-from={} {}/ {}/",
        q(&list),
        q(&backup),
        q(&by_rsync)
    ));

    // Ours: the archive of the backup, restored over the node tree.
    let ar = t.path().join("etc.tar.zst");
    let st = archive::write_tree(&backup, &ar, &WriteOptions::default(), None).unwrap();
    let ex = Excludes::parse(LIST.as_bytes());
    let stats = archive::restore_tree(
        &ar,
        &st.sha256,
        st.archive_bytes,
        &node,
        &SyncOptions {
            excludes: ex.clone(),
            delete: true,
            ..SyncOptions::default()
        },
    )
    .unwrap();
    assert!(stats.excluded > 0);

    // The same end state, byte for byte, times and modes (no excludes now).
    assert_eq!(
        rsync_diff(&by_rsync, &node, "--omit-dir-times"),
        Vec::<String>::new(),
        "our restore and rsync --exclude-from differ"
    );
    // And the test can fail: paths each rule keeps really differ from the backup.
    for kept in [
        "cni/multus/certs/a.pem",
        "deep/x/cni/multus/certs",
        "kubernetes/manifests/new.yaml",
        "deep/.updated",
        "keep/x.bak",
        "other/new.bak",
        "log1",
        "sub/cache/f",
        "run/a1/f",
        "p/x/y/q",
        "new-dir/cni/multus/certs/z",
    ] {
        assert!(node.join(kept).exists(), "{kept} was not kept");
        assert!(
            !would.lines().any(|l| l.trim_end_matches('/') == kept),
            "rsync would touch {kept}"
        );
        let is_dir = node.join(kept).is_dir();
        assert!(
            ex.excludes(kept.as_bytes(), is_dir),
            "{kept} not excluded by ours"
        );
    }
    // Not excluded: restored as the backup has them.
    for (restored, want) in [
        ("log12", "1\n"),
        ("sub/cachex", "1\n"),
        ("file-cache", "1\n"),
        ("run/c1/f", "1\n"),
        ("hostname", "1\n"),
    ] {
        assert_eq!(
            std::fs::read_to_string(node.join(restored)).unwrap(),
            want,
            "{restored}"
        );
    }
    assert!(!node.join("added").exists() && !node.join("sub/new-log9").exists());
    assert!(rsync_deletes.contains("added"), "{rsync_deletes}");
}
