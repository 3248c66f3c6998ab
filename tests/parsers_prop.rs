//! Property tests over every parser of input the tool does not control:
//! arbitrary or mutated bytes give a value or a clear error, never a panic
//! and never a hang. Bounded (a fixed number of cases each), so they run in
//! CI with the other tests.

mod common;

use common::TempDir;
use proptest::prelude::*;
use upgrade_recovery::testing::archive::{self, tar, validate};
use upgrade_recovery::testing::{backup, etcd, images, journal, manifest, ostree, recovery};

fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A header block with random fields and a correct checksum, so the parser
/// gets past the checksum.
fn with_checksum(mut b: [u8; 512]) -> [u8; 512] {
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    b
}

/// PAX-ish records: mostly well-formed, with arbitrary keys and values.
fn pax_records() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        Just(b"path".to_vec()),
        Just(b"linkpath".to_vec()),
        Just(b"size".to_vec()),
        Just(b"uid".to_vec()),
        Just(b"mtime".to_vec()),
        Just(b"GNU.sparse.name".to_vec()),
        Just(b"GNU.sparse.major".to_vec()),
        Just(b"GNU.sparse.realsize".to_vec()),
        Just(b"UPGRADE_RECOVERY.sha256".to_vec()),
        Just(b"UPGRADE_RECOVERY.nlink".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..20)
            .prop_map(|k| [b"SCHILY.xattr.".to_vec(), k].concat()),
        proptest::collection::vec(any::<u8>(), 0..20),
    ];
    let rec =
        (key, proptest::collection::vec(any::<u8>(), 0..40), 0i32..3).prop_map(|(k, v, fuzz)| {
            let body = k.len() + v.len() + 3;
            let mut len = body + 1;
            while body + len.to_string().len() != len {
                len = body + len.to_string().len();
            }
            let len = (len as i64 + i64::from(fuzz) - 1).max(0);
            [len.to_string().as_bytes(), b" ", &k, b"=", &v, b"\n"].concat()
        });
    proptest::collection::vec(rec, 0..6).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(cfg(512))]

    #[test]
    fn pax_records_parse_or_fail(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = tar::parse_pax(&data);
    }

    #[test]
    fn tar_headers_decode_or_fail(
        raw in proptest::collection::vec(any::<u8>(), 512),
        flag in prop_oneof![Just(b'0'), Just(b'1'), Just(b'2'), Just(b'5'), any::<u8>()],
        pax in pax_records(),
    ) {
        let mut b: [u8; 512] = raw.try_into().unwrap();
        b[156] = flag;
        let b = with_checksum(b);
        if let Ok(recs) = tar::parse_pax(&pax) {
            if let Ok(h) = tar::decode(&b, &recs) {
                let _ = validate::check_header(&h);
            }
        }
    }

    /// What passes validation is a path inside the tree.
    #[test]
    fn validated_paths_stay_inside(p in proptest::collection::vec(
        prop_oneof![Just(b'/'), Just(b'.'), Just(b'a'), Just(0u8), any::<u8>()], 0..40)) {
        if validate::check_rel_path(&p).is_ok() && p != b"." {
            prop_assert!(!p.starts_with(b"/"));
            prop_assert!(!p.contains(&0));
            for c in p.split(|&b| b == b'/') {
                prop_assert!(!c.is_empty() && c != b".." && c != b".");
            }
        }
        prop_assert!(validate::short(&p).len() <= 260);
    }

    #[test]
    fn ostree_admin_status_parses_or_fails(text in "(\\PC|\n| |\\*){0,200}") {
        let _ = ostree::parse_admin_status(&text);
    }

    #[test]
    fn ostree_admin_status_lines_with_any_prefix(
        prefix in "\\PC{0,3}", rest in "[ *a-z0-9.()]{0,80}"
    ) {
        let _ = ostree::parse_admin_status(&format!("{prefix}{rest}\n    Version: 1\n"));
    }

    #[test]
    fn rpm_ostree_json_parses_or_fails(
        osname in "\\PC{0,10}", checksum in "\\PC{0,70}", serial in any::<u32>()
    ) {
        let j = serde_json::json!({"deployments": [
            {"osname": osname, "checksum": checksum, "serial": serial, "booted": true}
        ]});
        if let Ok(d) = ostree::parse_rpm_ostree_json(&j.to_string()) {
            prop_assert_eq!(d[0].checksum.len(), 64);
            let _ = d[0].short();
        }
    }

    #[test]
    fn etcd_env_parses_or_fails(text in "(\\PC|\n|=|\"|'){0,200}") {
        let _ = etcd::parse_env(&text);
    }

    #[test]
    fn storage_conf_parses_or_fails(text in "(\\PC|\n|=|\"|\\[|\\]|#){0,200}") {
        let _ = images::parse_storage_conf(&text);
    }

    #[test]
    fn crictl_and_oc_json_parse_or_fail(text in "(\\PC|\\{|\\}|\\[|\\]|:|,|\"){0,200}") {
        let _ = recovery::parse_containers(&text);
        let _ = recovery::parse_revisions(&text);
    }

    #[test]
    fn crictl_and_oc_json_shapes(name in "\\PC{0,20}", id in "\\PC{0,20}", rev in any::<i64>()) {
        let c = serde_json::json!({"containers": [
            {"id": id, "metadata": {"name": name}, "state": "CONTAINER_RUNNING"}]});
        let _ = recovery::parse_containers(&c.to_string());
        let o = serde_json::json!({"items": [{"status": {
            "nodeStatuses": [{"currentRevision": rev}], "latestAvailableRevision": rev}}]});
        prop_assert_eq!(recovery::parse_revisions(&o.to_string()).unwrap(), (rev, rev));
    }

    /// Only normal absolute paths come out of currentconfig.
    #[test]
    fn currentconfig_paths_are_normal(paths in proptest::collection::vec(
        "(/|\\.|a|\u{0}|\\PC){0,30}", 0..6)) {
        let files: Vec<_> = paths.iter().map(|p| serde_json::json!({"path": p})).collect();
        let j = serde_json::json!({"spec": {"config": {"storage": {"files": files}}}});
        for p in backup::parse_currentconfig(&j.to_string()).unwrap() {
            let rel = p.strip_prefix('/').unwrap();
            prop_assert!(validate::check_rel_path(rel.as_bytes()).is_ok(), "{:?}", p);
        }
    }
}

proptest! {
    #![proptest_config(cfg(128))]

    /// Manifest and journal: arbitrary bytes, and valid JSON with arbitrary
    /// strings in its fields, are read or refused with the contract's code.
    #[test]
    fn manifest_bytes_load_or_fail(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let t = TempDir::new("pm");
        std::fs::write(t.path().join(manifest::FILE), &data).unwrap();
        if let Err(e) = manifest::Manifest::load(t.path()) {
            let f = e.downcast_ref::<upgrade_recovery::testing::error::Fail>();
            prop_assert!(f.is_some_and(|f| f.code() == 4), "{:#}", e);
        }
        std::fs::write(t.path().join(journal::FILE), &data).unwrap();
        if let Err(e) = journal::Journal::load(t.path()) {
            let f = e.downcast_ref::<upgrade_recovery::testing::error::Fail>();
            prop_assert!(f.is_some_and(|f| f.code() == 3), "{:#}", e);
        }
    }

    #[test]
    fn manifest_fields_are_validated(
        name in prop_oneof![Just("etc".to_string()), Just("extras".to_string()), "\\PC{0,8}"],
        source in prop_oneof![Just("/etc".to_string()), Just("/".to_string()), "\\PC{0,12}"],
        archive in prop_oneof![Just("etc.tar.zst".to_string()), "(\\.|/|a|\u{0}){0,12}"],
        sha in "[0-9a-f]{0,66}",
        size in any::<u64>(),
        checksum in "\\PC{0,66}",
    ) {
        let m = serde_json::json!({
            "format": 1, "tool_version": "0", "created": "x", "created_unix": 0,
            "boot_id": "b",
            "deployment": {"stateroot": "rhcos", "checksum": checksum, "serial": 0,
                "version": null},
            "trees": [{"name": name, "source": source, "archive": archive,
                "entries": 1, "files": 0, "bytes": 0, "archive_bytes": size, "sha256": sha}]
        });
        let t = TempDir::new("pm");
        std::fs::write(t.path().join(manifest::FILE), m.to_string()).unwrap();
        if let Ok(m) = manifest::Manifest::load(t.path()) {
            let tr = &m.trees[0];
            prop_assert!(validate::check_rel_path(tr.archive.as_bytes()).is_ok());
            prop_assert!(["/etc", "/"].contains(&tr.source.as_str()));
            prop_assert!(tr.stats.archive_bytes <= validate::MAX_FILE_SIZE);
            let d = m.deployment.as_ref().unwrap();
            prop_assert_eq!(d.checksum.len(), 64);
        }
    }
}

/// A real archive of a small tree, decompressed: the base that mutations
/// start from.
fn sample_tar() -> Vec<u8> {
    let t = TempDir::new("ps");
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), "hello").unwrap();
    std::os::unix::fs::symlink("d/f", src.join("l")).unwrap();
    std::fs::hard_link(src.join("d/f"), src.join("h")).unwrap();
    let f = std::fs::File::create(src.join("sparse")).unwrap();
    f.set_len(1 << 20).unwrap();
    std::fs::write(src.join("big"), vec![7u8; 3000]).unwrap();
    let ar = t.path().join("a.tar.zst");
    archive::write_tree(&src, &ar, &archive::WriteOptions::default(), None).unwrap();
    zstd::decode_all(&std::fs::read(&ar).unwrap()[..]).unwrap()
}

proptest! {
    #![proptest_config(cfg(96))]

    /// A mutated archive (bytes changed, cut, or a header's checksum fixed
    /// up after the change) is checked or refused, never a panic or a hang.
    #[test]
    fn mutated_archives_check_or_fail(
        muts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        fix in any::<bool>(),
        truncate in any::<bool>(),
    ) {
        static BASE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let base = BASE.get_or_init(sample_tar);
        let mut raw = base.clone();
        for (i, b) in &muts {
            let i = i.index(raw.len());
            raw[i] = *b;
            if fix {
                let start = i / 512 * 512;
                let blk: [u8; 512] = raw[start..start + 512].try_into().unwrap();
                raw[start..start + 512].copy_from_slice(&with_checksum(blk));
            }
        }
        if truncate {
            raw.truncate(cut.index(raw.len()));
        }
        let t = TempDir::new("pa");
        let ar = t.path().join("m.tar.zst");
        std::fs::write(&ar, zstd::encode_all(&raw[..], 1).unwrap()).unwrap();
        let _ = archive::check_archive(&ar);
    }
}
