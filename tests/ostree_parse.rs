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
