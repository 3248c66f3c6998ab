//! Hostile input, round two, on the archive reader and on `extract`: crafted
//! archives (tests/common/rawtar.rs, not the tool's writer) read as GNU tar
//! reads them, refused before a byte is parsed when they are not what the
//! manifest records, refused whole when no backup could have written them;
//! `extract` that never writes outside `--to` nor leaves a file whose bytes
//! do not match its sha256; `oadp lint` on what is not a regular file.

mod common;

use common::rawtar::*;
use common::*;
use sha2::{Digest, Sha256};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use upgrade_recovery::testing::archive::{self, read::Reader, SyncOptions};

/// The entry names our reader gives, in order (an error ends the list).
fn our_listing(ar: &Path) -> (Vec<String>, Option<String>) {
    let mut names = Vec::new();
    let mut r = match Reader::open(ar) {
        Ok(r) => r,
        Err(e) => return (names, Some(format!("{e:#}"))),
    };
    loop {
        match r.next_header() {
            Ok(Some(h)) => names.push(String::from_utf8_lossy(&h.path).into_owned()),
            Ok(None) => return (names, None),
            Err(e) => return (names, Some(format!("{e:#}"))),
        }
    }
}

/// The entry names GNU tar gives (`tar -tf`, trailing `/` cut).
fn gnu_listing(ar: &Path) -> Vec<String> {
    sh(&format!(
        "zstd -dc {} | tar -tf - 2>/dev/null || true",
        q(ar)
    ))
    .lines()
    .map(|l| l.trim_end_matches('/').to_string())
    .collect()
}

/// A hidden regular file's header and data: what a reader that does not
/// skip the data before it takes for the next entry.
fn hidden() -> Vec<u8> {
    let mut v = block(b"hidden", b'0', 5, b"").to_vec();
    v.extend_from_slice(b"hello");
    pad(&mut v);
    v
}

#[test]
fn the_reader_lists_what_gnu_tar_lists() {
    let dir = TempDir::new("gnulist");
    let h = hidden();
    let n = h.len() as u64;
    let mut cases: Vec<(&str, RawTar)> = Vec::new();
    // ustar size fields on non-regular entries.
    for (what, flag, link) in [
        ("a symlink with data", b'2', &b"target"[..]),
        ("a FIFO with data", b'6', b""),
        ("a character device with data", b'3', b""),
        ("a block device with data", b'4', b""),
        ("a directory with a size", b'5', b""),
    ] {
        // Names in the order a backup writes them (validate::Shape): the
        // hidden entry, if read as one, comes between.
        let mut t = RawTar::new();
        t.raw(&block(b"a", flag, n, link)).raw(&h);
        t.raw(&block(b"z-after", b'0', 0, b""));
        cases.push((what, t));
    }
    // A hard link: its ustar size is taken as 0 (the data is read as
    // headers), a PAX `size` record is applied (the data is skipped). It
    // names a file recorded with two links, as a backup's always does.
    let nlink2 = |t: &mut RawTar| {
        t.entry(
            b"f",
            b'0',
            &[(b"path", b"f"), (b"UPGRADE_RECOVERY.nlink", b"2")],
            b"",
        );
    };
    let mut t = RawTar::new();
    nlink2(&mut t);
    t.raw(&block(b"g", b'1', n, b"f"))
        .raw(&h)
        .raw(&block(b"z-after", b'0', 0, b""));
    cases.push(("a hard link with a ustar size", t));
    let mut t = RawTar::new();
    nlink2(&mut t);
    t.entry(
        b"g",
        b'1',
        &[(b"size", n.to_string().as_bytes()), (b"linkpath", b"f")],
        b"",
    );
    // entry() wrote a ustar size of 0: the PAX size says the data follows.
    t.raw(&h).raw(&block(b"z-after", b'0', 0, b""));
    cases.push(("a hard link with a PAX size", t));
    for (what, tar) in cases {
        let ar = dir.path().join("a.tar.zst");
        tar.write(&ar);
        let gnu = gnu_listing(&ar);
        let (ours, err) = our_listing(&ar);
        assert!(err.is_none(), "{what}: {err:?}");
        assert_eq!(ours, gnu, "{what}");
    }
}

/// A sparse entry (GNU 1.0) with the map text `map`, real size `real` and
/// the data bytes `data`; the recorded sha256 is of `logical`.
fn sparse_entry(t: &mut RawTar, name: &[u8], map: &[u8], real: &[u8], data: &[u8], sha: &str) {
    let mut d = map.to_vec();
    pad(&mut d);
    d.extend_from_slice(data);
    t.entry(
        &[b"GNUSparseFile.0/", name].concat(),
        b'0',
        &[
            (b"GNU.sparse.major", b"1"),
            (b"GNU.sparse.minor", b"0"),
            (b"GNU.sparse.name", name),
            (b"GNU.sparse.realsize", real),
            (b"UPGRADE_RECOVERY.sha256", sha.as_bytes()),
        ],
        &d,
    );
}

/// A million one-byte extents: a 10 MB map that the old reader re-parsed
/// after each 512-byte block (quadratic, hours); read in seconds now.
fn big_map() -> (RawTar, Vec<u8>) {
    let count = 1usize << 20;
    let mut map = format!("{count}\n").into_bytes();
    let mut logical = vec![0u8; 2 * count];
    for i in 0..count {
        map.extend_from_slice(format!("{}\n1\n", 2 * i).as_bytes());
        logical[2 * i] = 7;
    }
    let sha = hex::encode(Sha256::digest(&logical));
    let mut t = RawTar::new();
    t.dir(b".");
    sparse_entry(
        &mut t,
        b"s",
        &map,
        (2 * count).to_string().as_bytes(),
        &vec![7u8; count],
        &sha,
    );
    (t, logical)
}

#[test]
fn a_sparse_map_is_parsed_in_linear_time() {
    let t = TempDir::new("bigmap");
    let ar = t.path().join("a.tar.zst");
    let (tar, _) = big_map();
    tar.write(&ar);
    let c = within(30, "checking a sparse map of 2^20 extents", move || {
        archive::check_archive(&ar).map_err(|e| format!("{e:#}"))
    })
    .unwrap();
    assert_eq!((c.files, c.damaged_files.len()), (1, 0));
}

#[test]
fn an_archive_padded_to_its_recorded_size_is_refused_before_it_is_parsed() {
    let t = TempDir::new("padded");
    let ar = t.path().join("a.tar.zst");
    let (tar, _) = big_map();
    let (_, small) = tar.write(&ar);
    // The manifest records another archive of 4 MiB; the hostile one is
    // padded to that size after its zstd frame.
    let recorded = 4u64 << 20;
    assert!(small < recorded / 4, "{small}");
    let mut f = std::fs::OpenOptions::new().append(true).open(&ar).unwrap();
    std::io::Write::write_all(&mut f, &vec![0u8; (recorded - small) as usize]).unwrap();
    let sha = hex::encode(Sha256::digest(b"the archive the manifest records"));
    let p = ar.clone();
    let problems = within(10, "verify of a padded archive", move || {
        archive::verify_archive(&p, &sha, recorded)
    });
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("sha256") && problems[0].contains("a.tar.zst"),
        "{problems:?}"
    );
}

#[test]
fn a_sparse_entry_of_a_pebibyte_is_refused_at_once() {
    let t = TempDir::new("pib");
    let ar = t.path().join("a.tar.zst");
    let mut tar = RawTar::new();
    tar.dir(b".");
    // No extents: 1 PiB of holes, whose sha256 would take days to check.
    let real = (1u64 << 50).to_string();
    sparse_entry(
        &mut tar,
        b"s",
        b"1\n1125899906842624\n0\n",
        real.as_bytes(),
        b"",
        &"0".repeat(64),
    );
    // The manifest's digests fixed: only the entry itself can be refused.
    let (sha, size) = tar.write(&ar);
    let p = ar.clone();
    let problems = within(10, "verify of a 1 PiB sparse entry", move || {
        archive::verify_archive(&p, &sha, size)
    });
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("\"s\"") && problems[0].contains("apparent size"),
        "{problems:?}"
    );
}

#[test]
fn a_sparse_file_no_node_could_fill_is_left_out_of_the_backup() {
    // A tmpfs of 16 MiB holding a sparse file of 2 GiB: over what its file
    // system can hold.
    let t = TempDir::new("sparsefs");
    let top = t.path().join("top");
    std::fs::create_dir_all(&top).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=16m tmpfs {0} && truncate -s 2G {0}/huge && echo x > {0}/small",
        q(&top)
    ));
    let out = t.path().join("t.tar.zst");
    let (top2, out2) = (top.clone(), out.clone());
    let st = within(60, "archiving a 2 GiB sparse file", move || {
        archive::write_tree(&top2, &out2, &archive::WriteOptions::default(), None)
            .map_err(|e| format!("{e:#}"))
    });
    sh(&format!("umount {}", q(&top)));
    let st = st.unwrap();
    assert_eq!(st.skipped_sparse, vec!["huge".to_string()]);
    let (names, err) = our_listing(&out);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(names, [".", "small"]);
}

/// Archives a backup never writes: (what, archive, the entry the error names).
fn impossible() -> Vec<(&'static str, RawTar, &'static str)> {
    let mut v = Vec::new();
    let mut t = RawTar::new();
    t.dir(b".")
        .entry(b"l", b'2', &[(b"path", b"l"), (b"linkpath", b"..")], b"")
        .file(b"l/x", b"through the link");
    v.push(("a symlink to .. then a file inside it", t, "l/x"));
    let mut t = RawTar::new();
    t.dir(b".")
        .entry(
            b"l",
            b'2',
            &[(b"path", b"l"), (b"linkpath", b"/tmp/ur-hostile-victim")],
            b"",
        )
        .file(b"l/planted", b"x");
    v.push(("a file through a symlink entry", t, "l/planted"));
    let mut t = RawTar::new();
    t.dir(b".").dir(b"a").file(b"a", b"x");
    v.push(("a directory then a file of the same name", t, "\"a\""));
    let mut t = RawTar::new();
    t.dir(b".").file(b"f", b"1").file(b"f", b"2");
    v.push(("the same file twice", t, "\"f\""));
    let mut t = RawTar::new();
    t.dir(b".")
        .entry(b"h", b'1', &[(b"path", b"h"), (b"linkpath", b"h")], b"");
    v.push(("a hard link to itself", t, "\"h\""));
    let mut t = RawTar::new();
    t.dir(b".")
        .dir(b"d")
        .entry(b"h", b'1', &[(b"path", b"h"), (b"linkpath", b"d")], b"");
    v.push(("a hard link to a directory", t, "\"h\""));
    let mut t = RawTar::new();
    t.dir(b".")
        .entry(b"h", b'1', &[(b"path", b"h"), (b"linkpath", b"f")], b"")
        .file(b"f", b"later");
    v.push(("a hard link to a later file", t, "\"h\""));
    let mut t = RawTar::new();
    t.dir(b".")
        .file(b"a/b", b"x")
        .entry(b"a", b'2', &[(b"path", b"a"), (b"linkpath", b"/")], b"");
    v.push(("a symlink over a directory with entries below", t, "\"a\""));
    // The order of a backup's walk (issue 25: the checks keep only the way
    // to the entry before, so the order is what proves each path unique).
    let mut t = RawTar::new();
    t.dir(b".").file(b"b", b"b").file(b"a", b"a");
    v.push(("names out of order", t, "\"a\" is out of order"));
    let mut t = RawTar::new();
    t.dir(b".")
        .file(b"a", b"1")
        .file(b"b", b"b")
        .file(b"a", b"2");
    v.push((
        "a duplicate that is not adjacent",
        t,
        "\"a\" is out of order",
    ));
    let mut t = RawTar::new();
    t.dir(b".")
        .dir(b"a")
        .file(b"a/x", b"x")
        .file(b"b", b"b")
        .file(b"a/y", b"y");
    v.push((
        "a directory's entries after a later name",
        t,
        "\"a/y\" is out of order",
    ));
    let mut t = RawTar::new();
    t.dir(b".").file(b"f", b"one name").entry(
        b"h",
        b'1',
        &[(b"path", b"h"), (b"linkpath", b"f")],
        b"",
    );
    v.push((
        "a hard link to a file recorded with one link",
        t,
        "hard link \"h\" points at \"f\"",
    ));
    let (mut t, deep) = deep_tree(300);
    let back = [&deep[..1], b"/a"].concat();
    t.file(&back, b"back up at the first level, before its place");
    v.push((
        "a deep path, then a name out of order",
        t,
        "\"d/a\" is out of order",
    ));
    // The extras' shape: listed paths without their parents, in bytewise
    // order, each directory with all it holds.
    let mut t = RawTar::new();
    t.file(b"opt/b", b"b").file(b"opt/a", b"a");
    v.push(("listed paths out of order", t, "\"opt/a\" is out of order"));
    let mut t = RawTar::new();
    t.dir(b"opt/a")
        .file(b"opt/a/x", b"x")
        .file(b"opt/a-b", b"a-b")
        .file(b"opt/a/x", b"again");
    v.push((
        "a listed path below a listed directory (a duplicate)",
        t,
        "\"opt/a/x\" lies below the directory \"opt/a\"",
    ));
    let mut t = RawTar::new();
    t.file(b"opt/a", b"a").dir(b".");
    v.push((
        "the top after a listed path",
        t,
        "\".\" (the top of the tree) is not",
    ));
    v
}

/// A whole tree with a path of `depth` directories `d/d/...`, a file at
/// the bottom and one beside each directory on the way back up, in the
/// order a backup writes them; the deepest directory's path.
fn deep_tree(depth: usize) -> (RawTar, Vec<u8>) {
    let mut t = RawTar::new();
    t.dir(b".");
    let mut p = b"d".to_vec();
    for i in 0..depth {
        if i > 0 {
            p.extend_from_slice(b"/d");
        }
        t.dir(&p);
    }
    t.file(&[&p[..], b"/x"].concat(), b"bottom");
    let mut up = p.clone();
    loop {
        // `z` after `d` in its directory, after all below `d`.
        t.file(&[&up[..], b"/z"].concat(), b"z");
        match up.iter().rposition(|&b| b == b'/') {
            Some(i) => up.truncate(i),
            None => break,
        }
    }
    t.file(b"z", b"z");
    (t, p)
}

#[test]
fn a_deep_tree_in_the_walks_order_is_read_whole() {
    // 2000 levels: the checks keep one record a level on the way down and
    // give them up on the way back (no entry is refused, none left over).
    let t = TempDir::new("deep");
    let ar = t.path().join("d.tar.zst");
    let (tar, _) = deep_tree(2000);
    let (sha, size) = tar.write(&ar);
    let problems = archive::verify_archive(&ar, &sha, size);
    assert!(problems.is_empty(), "{problems:?}");
    let c = archive::check_archive(&ar).unwrap();
    // `.`, 2000 dirs, the bottom file, a `z` in each dir and in the top.
    assert_eq!((c.entries, c.files), (4003, 2002));
}

#[test]
fn the_extras_are_written_in_the_readers_order_and_restored() {
    // Listed paths whose bytewise order is not the walk's (`opt/foo-bar`,
    // `opt/foo.d/a`, `opt/foo/b`: `-` and `.` sort below `/`), one a
    // directory walked whole, given out of order: written sorted, read
    // and restored by every reader.
    let t = TempDir::new("extrasorder");
    let root = t.path().join("root");
    sh(&format!(
        "r={r}; mkdir -p $r/opt/foo $r/opt/foo.d $r/opt/foo-bar/d \
         && echo b > $r/opt/foo/b && echo a > $r/opt/foo.d/a \
         && echo c > $r/opt/foo-bar/c && echo e > $r/opt/foo-bar/d/e \
         && ln -s foo/b $r/opt/x",
        r = q(&root)
    ));
    let rels: Vec<Vec<u8>> = ["opt/x", "opt/foo/b", "opt/foo-bar", "opt/foo.d/a"]
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    let out = t.path().join("extras.tar.zst");
    let (st, missing) =
        archive::write_paths(&root, &rels, &out, &archive::WriteOptions::default()).unwrap();
    assert!(missing.is_empty(), "{missing:?}");
    let (names, err) = our_listing(&out);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        names,
        [
            "opt/foo-bar",
            "opt/foo-bar/c",
            "opt/foo-bar/d",
            "opt/foo-bar/d/e",
            "opt/foo.d/a",
            "opt/foo/b",
            "opt/x"
        ]
    );
    assert!(archive::verify_archive(&out, &st.sha256, st.archive_bytes).is_empty());
    let dst = t.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    archive::restore_tree(
        &out,
        &st.sha256,
        st.archive_bytes,
        &dst,
        &SyncOptions {
            in_root: true,
            ..SyncOptions::default()
        },
    )
    .unwrap();
    assert!(rsync_diff(&root.join("opt/foo-bar"), &dst.join("opt/foo-bar"), "").is_empty());
    for f in ["opt/foo.d/a", "opt/foo/b"] {
        assert_eq!(
            std::fs::read(dst.join(f)).unwrap(),
            std::fs::read(root.join(f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(
        std::fs::read_link(dst.join("opt/x")).unwrap(),
        Path::new("foo/b")
    );
}

#[test]
fn archives_no_backup_writes_are_refused_by_verify_and_the_restore_alike() {
    let t = TempDir::new("impossible");
    for (what, tar, names) in impossible() {
        let ar = t.path().join("h.tar.zst");
        let (sha, size) = tar.write(&ar);
        // verify (and each phase's check, which is verify's check).
        let problems = archive::verify_archive(&ar, &sha, size);
        assert!(
            problems.len() == 1 && problems[0].contains(names) && problems[0].contains("h.tar.zst"),
            "{what}: {problems:?}"
        );
        // The restore reads through the same validation.
        let outer = t.path().join("outer");
        let dst = outer.join("top");
        std::fs::create_dir_all(&dst).unwrap();
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
        // (It stops at the refused entry, or at one before it that it
        // cannot place: either way inside the tree.)
        assert!(r.is_err(), "{what}: restored");
        assert!(!Path::new("/tmp/ur-hostile-victim").exists(), "{what}");
        let mut names: Vec<_> = std::fs::read_dir(&outer)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["top"], "{what}");
        std::fs::remove_dir_all(&outer).unwrap();
    }
}

#[test]
fn a_phase_check_refuses_an_archive_no_backup_writes_before_any_change() {
    let sb = Sandbox::new();
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    // /usr/local's archive replaced by one with a file through `l -> ..`,
    // the manifest's digests fixed to match it.
    let (what, tar, names) = impossible().swap_remove(0);
    let ar = std::fs::canonicalize(sb.backup_dir().join("current/local.tar.zst")).unwrap();
    let (sha, size) = tar.write(&ar);
    sb.set_tree("local", &sha, size);
    let (code, out, err) = sb.run(&["verify"]);
    assert_eq!(code, 4, "{what}: {out}{err}");
    assert!(out.contains(names) || err.contains(names), "{out}{err}");
    let node = || {
        let md = std::fs::metadata(sb.root()).unwrap();
        (
            md.mode(),
            md.uid(),
            sb.root().join("var/lib/containers").exists(),
            sb.root().join("var/lib/etcd").exists(),
            sb.root().join("var/usrlocal/l").exists(),
        )
    };
    let before = node();
    let (code, out, err) = sb.run(&["restore", "--wait-timeout", "30"]);
    assert_eq!(code, 4, "{out}{err}");
    assert!(format!("{out}{err}").contains(names), "{out}{err}");
    assert_eq!(node(), before, "changed before the check");
    assert!(!sb.backup_dir().join("journal.json").exists());
}

/// The archive of tree `name`, decompressed.
fn untar(sb: &Sandbox, name: &str) -> (PathBuf, Vec<u8>) {
    let ar =
        std::fs::canonicalize(sb.backup_dir().join(format!("current/{name}.tar.zst"))).unwrap();
    let raw = zstd::decode_all(&std::fs::read(&ar).unwrap()[..]).unwrap();
    (ar, raw)
}

fn files_under(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(d)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(d)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn extract_stays_beneath_to_keeps_only_matching_files_and_copies_a_lone_link() {
    let sb = Sandbox::new();
    sb.sh("d=$ROOT/var/usrlocal; mkdir -p $d/race $d/hl $d/other \
         && for i in $(seq 1 40); do echo payload-$i > $d/race/f$i; done \
         && echo linked-data > $d/hl/first && ln $d/hl/first $d/other/second");
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    let t = TempDir::new("xrace");

    // Item 12: a hard link's second name alone gets the data.
    let to = t.path().join("lone");
    let (code, out, err) = sb.run(&[
        "extract",
        "/usr/local/other/second",
        "--to",
        to.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read(to.join("usr/local/other/second")).unwrap(),
        b"linked-data\n"
    );
    assert_eq!(
        files_under(&to),
        [
            "usr",
            "usr/local",
            "usr/local/other",
            "usr/local/other/second"
        ],
        "nothing else, no temporary name left"
    );

    // Item 2: whoever owns --to swaps a directory below it for a symlink
    // to elsewhere, over and over, while extract runs; nothing ever
    // appears outside --to.
    let to = t.path().join("race");
    let outside = t.path().join("outside");
    std::fs::create_dir_all(to.join("usr")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (to, outside, stop) = (to.clone(), outside.clone(), stop.clone());
        std::thread::spawn(move || {
            // usr and usr.link (a symlink to outside) exchanged atomically
            // (renameat2 RENAME_EXCHANGE): one of them is always at usr.
            let link = to.join("usr.link");
            std::os::unix::fs::symlink(&outside, &link).unwrap();
            let usr = to.join("usr");
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &usr,
                    rustix::fs::CWD,
                    &link,
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .unwrap();
                swaps += 1;
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
            if std::fs::symlink_metadata(&usr)
                .unwrap()
                .file_type()
                .is_symlink()
            {
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &usr,
                    rustix::fs::CWD,
                    &link,
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .unwrap();
            }
            swaps
        })
    };
    let mut runs = Vec::new();
    for _ in 0..12 {
        let (code, out, err) =
            sb.run(&["extract", "/usr/local/race", "--to", to.to_str().unwrap()]);
        runs.push((code, format!("{out}{err}")));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert_eq!(
        files_under(&outside),
        Vec::<String>::new(),
        "written outside --to: {runs:?}"
    );
    assert!(swaps > 10, "{swaps}");
    for (code, text) in &runs {
        // Done, or refused naming the symlink found in place of a directory.
        assert!(
            *code == 0 || (*code == 2 && text.contains("not a directory")),
            "{code}: {text}"
        );
    }

    // Item 6: a file whose bytes differ from its recorded sha256 is never
    // left under --to, whether the archive is damaged (manifest untouched)
    // or its digests were fixed; the summary names it, exit 4.
    let (ar, raw) = untar(&sb, "local");
    let at = raw
        .windows(11)
        .position(|w| w == b"payload-17\n")
        .expect("the file's data in the archive");
    let mut bad = raw.clone();
    bad[at + 8] = b'X';
    let z = zstd::encode_all(&bad[..], 3).unwrap();
    for fixed in [false, true] {
        std::fs::write(&ar, &z).unwrap();
        if fixed {
            sb.set_tree("local", &hex::encode(Sha256::digest(&z)), z.len() as u64);
        }
        let to = t.path().join(format!("damaged-{fixed}"));
        let (code, out, err) =
            sb.run(&["extract", "/usr/local/race", "--to", to.to_str().unwrap()]);
        let d = to.join("usr/local/race");
        assert!(!d.join("f17").exists(), "fixed={fixed}: {out}{err}");
        assert_eq!(code, 4, "fixed={fixed}: {out}{err}");
        assert!(err.contains("/usr/local/race/f17"), "{err}");
        assert_eq!(std::fs::read(d.join("f16")).unwrap(), b"payload-16\n");
        assert!(
            !files_under(&to).iter().any(|f| f.contains(".ur-tmp")),
            "{:?}",
            files_under(&to)
        );
    }
}

#[test]
fn oadp_lint_reads_regular_files_only_and_at_most_1_mib() {
    let t = TempDir::new("lintin");
    let fifo = t.path().join("fifo.yaml");
    sh(&format!("mkfifo {}", q(&fifo)));
    let big = t.path().join("big.yaml");
    std::fs::write(&big, format!("# {}\n", "x".repeat(1 << 20))).unwrap();
    for (f, says) in [
        ("/dev/zero".to_string(), "not a regular file"),
        (fifo.display().to_string(), "not a regular file"),
        (big.display().to_string(), "1048576"),
    ] {
        let f2 = f.clone();
        let o = within(20, &format!("oadp lint {f}"), move || {
            std::process::Command::new(binary())
                .args(["oadp", "lint", &f2])
                .output()
                .unwrap()
        });
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{f}: {err}");
        assert!(err.contains(&f) && err.contains(says), "{f}: {err}");
    }
    let md = std::fs::metadata(&big).unwrap();
    assert!(md.size() > 1 << 20);
}

#[test]
fn listed_paths_below_a_listed_directory_are_archived_once() {
    // The extras list names a path and one below it (the first is a
    // directory on the node): one entry each, an archive every reader takes.
    let t = TempDir::new("extrasdup");
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("opt/a")).unwrap();
    std::fs::write(root.join("opt/a/b"), "b").unwrap();
    let out = t.path().join("x.tar.zst");
    let rels = [b"opt/a".to_vec(), b"opt/a/b".to_vec(), b"opt/c".to_vec()];
    let (st, missing) =
        archive::write_paths(&root, &rels, &out, &archive::WriteOptions::default()).unwrap();
    assert_eq!(missing, ["opt/c"]);
    let (names, err) = our_listing(&out);
    assert_eq!(names, ["opt/a", "opt/a/b"]);
    assert!(err.is_none(), "{err:?}");
    assert!(archive::verify_archive(&out, &st.sha256, st.archive_bytes).is_empty());
}

/// An archive compressed with a window of `log` (zstd `windowLog`), as a
/// streaming writer does it: the frame asks the decoder for that window.
fn with_window(tar: &RawTar, log: u32, p: &Path) {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.window_log(log).unwrap();
    enc.include_checksum(true).unwrap();
    std::io::Write::write_all(&mut enc, &tar.tar()).unwrap();
    std::fs::write(p, enc.finish().unwrap()).unwrap();
}

/// The reader's window limit (`read::WINDOW_LOG_MAX`, issue 25 item 3):
/// an archive with the largest window any version writes (2^23: `backup
/// --level 19`) reads; one that asks for a larger window, which only a
/// hostile writer makes, is refused as damaged instead of making the
/// reader hold it (zstd's own limit is 2^27).
#[test]
fn a_window_larger_than_any_writer_uses_is_refused() {
    let t = TempDir::new("window");
    let ar = t.path().join("a.tar.zst");
    let mut tar = RawTar::new();
    tar.dir(b".").file(b"f", &vec![b'x'; 64 << 10]);
    with_window(&tar, 23, &ar);
    let c = archive::check_archive(&ar).map_err(|e| format!("{e:#}"));
    assert_eq!(c.map(|c| c.files), Ok(1));
    with_window(&tar, 24, &ar);
    let e = format!("{:#}", archive::check_archive(&ar).unwrap_err());
    assert!(e.contains("a.tar.zst") && e.contains("memory"), "{e}");
    let (names, e) = our_listing(&ar);
    assert!(names.is_empty() && e.is_some(), "{names:?} {e:?}");
}
