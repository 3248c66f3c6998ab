//! Parsers of `ostree admin status` and `rpm-ostree status --json` on
//! captured output.

use upgrade_recovery::testing::ostree::{parse_admin_status, parse_rpm_ostree_json};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn unbooted_sysroot_with_two_stateroots() {
    let ds = parse_admin_status(&fixture("ostree-status-unbooted-3.txt")).unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(ds[0].stateroot, "rhcos_4.17");
    assert_eq!(ds[1].stateroot, "rhcos");
    assert!(ds.iter().all(|d| !d.booted));
    assert!(ds[2].pinned && !ds[1].pinned);
    assert_eq!(ds[2].version.as_deref(), Some("416.94.1"));
    assert_eq!(ds[2].refspec.as_deref(), Some("rhcos/416.94.1"));
    assert_eq!(ds[1].index, 1);
}

#[test]
fn booted_pinned_rollback_and_staged_marks() {
    let ds = parse_admin_status(&fixture("ostree-status-booted-rollback.txt")).unwrap();
    assert_eq!(ds.len(), 3);
    assert!(ds[0].staged && !ds[0].booted);
    assert!(ds[1].booted);
    assert!(ds[2].rollback && ds[2].pinned);
    assert_eq!(ds[1].serial, 1);
}

#[test]
fn pending_mark() {
    let ds = parse_admin_status(&fixture("ostree-status-pending.txt")).unwrap();
    assert!(ds[0].pending);
    assert!(ds[1].booted && ds[1].pinned);
}

#[test]
fn rpm_ostree_json_derives_marks() {
    let ds = parse_rpm_ostree_json(&fixture("rpm-ostree-status.json")).unwrap();
    assert_eq!(ds.len(), 3);
    assert!(ds[0].booted);
    assert!(ds[1].rollback && ds[1].pinned);
    assert!(!ds[2].rollback, "another stateroot is not the rollback");
    assert_eq!(ds[2].stateroot, "rhcos_4.16");
}

#[test]
fn garbage_is_an_error_not_a_guess() {
    assert!(parse_admin_status("* rhcos notachecksum.0\n").is_err());
    assert!(parse_rpm_ostree_json("{\"deployments\": [").is_err());
    assert!(parse_admin_status("").unwrap().is_empty());
}

/// Captured from real ostree 2022.7 on a booted root (a sandbox
/// deployment chrooted into with /sysroot, /boot and /run/ostree-booted as
/// on a node): the staged deployment comes first, marked `(staged)`, with
/// no boot entry; the booted one follows (ostreedev/ostree
/// `src/ostree/ot-admin-builtin-status.c`). The staged record it read is
/// tests/fixtures/ostree-staged-deployment.gvariant.
#[test]
fn staged_deployment_as_ostree_prints_it_on_a_booted_host() {
    use upgrade_recovery::testing::ostree::{BootedFrom, OsState};
    let ds = parse_admin_status(&fixture("ostree-admin-status-staged.txt")).unwrap();
    assert_eq!(ds.len(), 3);
    assert!(ds[0].staged && !ds[0].booted && !ds[0].pending);
    assert_eq!(ds[0].version.as_deref(), Some("417.2"));
    assert!(ds[1].booted && !ds[1].staged);
    assert!(ds[2].rollback && ds[2].pinned);
    let os = OsState {
        deployments: ds,
        booted_from: BootedFrom::StatusMark,
        booted_skipped: Vec::new(),
        staged_record: None,
    };
    assert_eq!(os.staged().as_deref(), Some("rhcos 694b18d7a577.0 (417.2)"));
    // Without the mark, nothing is staged.
    let plain = parse_admin_status(&fixture("ostree-status-pending.txt")).unwrap();
    assert!(plain.iter().all(|d| !d.staged));
}

/// /run/ostree/staged-deployment as libostree writes it (a GVariant a{sv}:
/// target {name, osname, bootcsum}, then merge-deployment); the record real
/// ostree 2022.7 read to print the status above. The target's name is the
/// first `<checksum>.<serial>` in it, never the merge deployment's or a
/// bootcsum; a record naming none, empty or cut, gives none.
#[test]
fn the_staged_record_names_its_target() {
    use upgrade_recovery::testing::ostree::parse_staged_record;
    let bytes = std::fs::read(format!(
        "{}/tests/fixtures/ostree-staged-deployment.gvariant",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert_eq!(
        parse_staged_record(&bytes).as_deref(),
        Some("694b18d7a577a63d6d05bd7f406e0b538557050775efc8d13f90fa413a8003fb.0")
    );
    assert_eq!(parse_staged_record(b""), None);
    assert_eq!(parse_staged_record(&bytes[..0x50]), None, "cut in the name");
    assert_eq!(parse_staged_record(&[0xff; 300]), None, "malformed");
}
