//! Files that change while they are archived (own test binary: it sets an
//! environment variable for the whole process).

mod common;

use common::*;
use upgrade_recovery::testing::archive::{self, WriteOptions};

#[test]
fn a_changing_file_is_detected() {
    let t = TempDir::new("changing");
    let src = t.path().join("src");
    sh(&format!(
        "mkdir -p {s} && head -c 3000000 /dev/urandom > {s}/big.log && echo small > {s}/small.log && echo calm > {s}/calm",
        s = q(&src)
    ));
    // A large file (read twice: hash, then data) that keeps changing: the
    // tree is archived again, then the run fails naming the file; the same
    // when the archive is checked as it is written (the backup's way: the
    // data is not hashed a second time by the walk).
    std::env::set_var("UPGRADE_RECOVERY_CHANGE_WHILE_READ", "big.log");
    let out = t.path().join("a.tar.zst");
    for check in [false, true] {
        let opts = WriteOptions {
            check,
            ..WriteOptions::default()
        };
        let err = archive::write_tree(&src, &out, &opts, None).unwrap_err();
        assert!(
            format!("{err:#}").contains("big.log changed while it was being archived"),
            "check {check}: {err:#}"
        );
    }
    // A small file (read once) that keeps changing: re-read, then stored as
    // last read and reported; the archive stays consistent.
    std::env::set_var("UPGRADE_RECOVERY_CHANGE_WHILE_READ", "small.log");
    let st = archive::write_tree(&src, &out, &WriteOptions::default(), None).unwrap();
    assert_eq!(st.changed, vec!["small.log".to_string()]);
    std::env::remove_var("UPGRADE_RECOVERY_CHANGE_WHILE_READ");
    let check = archive::check_archive(&out).unwrap();
    assert!(check.damaged_files.is_empty(), "{:?}", check.damaged_files);
}
