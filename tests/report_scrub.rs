//! The support report: what it copies from the node is an allow-list of
//! named fields (`pick`), and every text is scrubbed; one fixture a shape of
//! secret (tests/fixtures/scrub/), none of which survives.

use serde_json::json;
use upgrade_recovery::testing::report::{pick, scrub};

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scrub")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// (fixture, what must go, what must stay).
fn cases() -> Vec<(&'static str, Vec<String>, Vec<&'static str>)> {
    let pem = fixture("wrapped-pem.txt");
    let pem_lines: Vec<String> = pem
        .lines()
        .filter(|l| l.len() >= 16 && !l.contains(':'))
        .map(str::to_string)
        .collect();
    assert!(pem_lines.len() >= 2, "{pem}");
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        (
            "pgp-private.asc",
            s(&["lQOYBGRkZmcBCADFm2Xn0pQv8sT5k3hJ9wLrN4", "=Qz9a"]),
            vec!["after: kept"],
        ),
        (
            "passphrase.yaml",
            s(&["Tr0ub4dor&3", "c0rrect-horse"]),
            vec!["name: kept-name", "passphrase: <redacted>"],
        ),
        (
            "azure.txt",
            s(&["Zm9vYmFyYmF6cXV4c2VjcmV0a2V5", "AbCdEf%2BGhIjKl"]),
            vec![
                "AccountName=acct",
                "EndpointSuffix=core.windows.net",
                "sv=2021-08-06",
                "se=2030-01-01",
            ],
        ),
        (
            "github.txt",
            s(&["ghp_1234567890abcdefghij"]),
            vec!["remote token", "in the log"],
        ),
        (
            "wrapped-pem.txt",
            pem_lines,
            vec!["key.b64:", "after: kept"],
        ),
        (
            "shadow.txt",
            s(&[
                "saltsalt",
                "Nk7P0qE1oYk0H8w3eQq1u2R3",
                "X3DX6M94c7o",
                "F5Jx5fExrKuPp53xLKQ",
            ]),
            vec!["root:<redacted>:19000:0:99999:7:::", "core:*:19000::::::"],
        ),
        (
            "dockerconfigjson.yaml",
            s(&["eyJhdXRocyI6eyJxdWF5"]),
            vec!["type: kubernetes.io/dockerconfigjson", "kind: Secret"],
        ),
        (
            "tls-secret.yaml",
            s(&[
                "LS0tSECRETVALUEAAAA",
                "Q0FLRVlTRUNSRVQ=",
                "c2lnbmluZy1rZXktc2VjcmV0",
                "bW9yZS1zZWNyZXQ=",
            ]),
            vec![
                "tls.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t",
                "name: kept-name",
                "signingKey: |",
            ],
        ),
        (
            "cookies.txt",
            s(&["abc123secret", "xyz789secret", "a3fWa"]),
            vec!["Host: kept.example.com", "Cookie: <redacted>"],
        ),
        (
            "token-tab.env",
            s(&["q8w7e6r5t4y3u2i1"]),
            vec!["USER\tkept-user"],
        ),
        (
            "userinfo.txt",
            s(&["Sup3rS3cret", "hunter22", "admin:", "deploy:"]),
            vec![
                "@proxy.example.com:3128",
                "@git.example.com:repo.git",
                "image: quay.io/org/img@sha256:0123abcd",
            ],
        ),
        (
            "openssh-oneline.txt",
            s(&["b3BlbnNzaC1rZXktdjEAAAAA"]),
            vec!["line-after-1: kept", "line-after-2: kept too"],
        ),
    ]
}

#[test]
fn no_secret_of_any_shape_survives_the_scrubber() {
    for (file, gone, kept) in cases() {
        let text = fixture(file);
        for g in &gone {
            assert!(text.contains(g.as_str()), "{file}: the fixture lacks {g}");
        }
        let out = scrub(&text);
        for g in &gone {
            assert!(!out.contains(g.as_str()), "{file}: {g} left in\n{out}");
        }
        for k in kept {
            assert!(out.contains(k), "{file}: {k} lost\n{out}");
        }
    }
}

#[test]
fn the_report_copies_named_fields_only() {
    // A velero BackupStorageLocation list as `oc get -o json` gives it:
    // credentials in spec.config and an annotation, a secret reference.
    let bsl = json!({"apiVersion": "v1", "kind": "List", "items": [{
        "kind": "BackupStorageLocation",
        "metadata": {"name": "default", "namespace": "openshift-adp",
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"secret\":\"s3cr3t-annotation\"}"}},
        "spec": {"provider": "aws", "objectStorage": {"bucket": "b", "prefix": "p"},
                 "config": {"s3Url": "https://minio:Hidden1@minio.example.com", "region": "r"},
                 "credential": {"name": "cloud-credentials", "key": "cloud"}},
        "status": {"phase": "Available", "lastValidationTime": "2026-01-01T00:00:00Z"}}]});
    let fields = [
        "items/[]/kind",
        "items/[]/metadata/name",
        "items/[]/spec/provider",
        "items/[]/spec/objectStorage/bucket",
        "items/[]/status/phase",
    ];
    let got = pick(&bsl, &fields);
    assert_eq!(
        got,
        json!({"items": [{"kind": "BackupStorageLocation", "metadata": {"name": "default"},
                          "spec": {"provider": "aws", "objectStorage": {"bucket": "b"}},
                          "status": {"phase": "Available"}}]})
    );
    let text = got.to_string();
    for g in [
        "s3cr3t-annotation",
        "Hidden1",
        "cloud-credentials",
        "region",
    ] {
        assert!(!text.contains(g), "{g} copied: {text}");
    }
    // Keys with dots (labels) are one step of a path; absent fields are
    // left out, not made up.
    let ps = json!({"containers": [{"id": "c1", "labels": {"io.kubernetes.pod.name": "etcd-sno", "secret": "x"},
                                    "envs": [{"key": "PASSWORD", "value": "p"}]}]});
    assert_eq!(
        pick(
            &ps,
            &[
                "containers/[]/id",
                "containers/[]/state",
                "containers/[]/labels/io.kubernetes.pod.name"
            ]
        ),
        json!({"containers": [{"id": "c1", "labels": {"io.kubernetes.pod.name": "etcd-sno"}}]})
    );
}
