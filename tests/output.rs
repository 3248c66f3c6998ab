//! Output into a reader that went away (`status | head -1`): no panic, no
//! debug dump, the exit code the command has anyway.

mod common;

use common::*;
use std::process::{Command, Stdio};

/// (exit code, stderr) with stdout a pipe whose reader is already closed:
/// the first write to stdout fails with EPIPE, every time.
fn into_closed_pipe(mut c: Command) -> (i32, String) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills two new descriptors, each owned once below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(r);
    let o = c
        .stdout(Stdio::from(w))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// (exit code, stderr) of `cmd | head -c1`, as a user types it.
fn into_head(sb_path: &str, cmd: &str) -> (i32, String) {
    let t = TempDir::new("head");
    let err = t.path().join("err");
    let code = sh(&format!(
        "set +e +o pipefail; export PATH={}; {cmd} 2>{} | head -c1 >/dev/null; echo ${{PIPESTATUS[0]}}",
        q(std::path::Path::new(sb_path)),
        q(&err)
    ));
    (
        code.trim().parse().unwrap(),
        std::fs::read_to_string(err).unwrap(),
    )
}

fn quiet(what: &str, err: &str) {
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(!err.contains("Broken pipe"), "{what}: {err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{what}: {err}");
}

#[test]
fn status_into_a_closed_pipe_is_quiet() {
    let sb = Sandbox::new();
    assert_eq!(sb.run(&["backup", "--min-free", "0"]).0, 0);
    for args in [&["status"][..], &["--output", "json", "status"][..]] {
        let (code, out, err) = sb.run(args);
        assert!(out.len() > 1, "{out}{err}");
        let (c, e) = into_closed_pipe(sb.command(args));
        assert_eq!(c, code, "{args:?}: {e}");
        quiet("status", &e);
        let line = format!(
            "{} --root {} {}",
            q(&binary()),
            q(&sb.root()),
            args.join(" ")
        );
        let (c, e) = into_head(&sb.path_env(), &line);
        assert_eq!(c, code, "{args:?}: {e}");
        quiet("status | head -c1", &e);
    }
}

#[test]
fn oadp_lint_into_a_closed_pipe_is_quiet() {
    let f = project().join("tests/fixtures/oadp/ApplicationBackupRestoreLso.yaml");
    let lint = || {
        let mut c = Command::new(binary());
        c.args(["oadp", "lint"]).arg(&f);
        c
    };
    let o = lint().output().unwrap();
    let code = o.status.code().unwrap();
    assert!(o.stdout.len() > 1, "{o:?}");
    let (c, e) = into_closed_pipe(lint());
    assert_eq!(c, code, "{e}");
    quiet("oadp lint", &e);
    let (c, e) = into_head(
        &std::env::var("PATH").unwrap(),
        &format!("{} oadp lint {}", q(&binary()), q(&f)),
    );
    assert_eq!(c, code, "{e}");
    quiet("oadp lint | head -c1", &e);
}

/// etcd down (its pod removed, as during a recovery): status says so in
/// words, without the client library's debug dump of the error.
#[test]
fn status_with_etcd_down_has_no_debug_dump() {
    let sb = Sandbox::new();
    sb.sh("systemctl stop kubelet.service; crictl rmp -fa");
    let (code, out, err) = sb.run(&["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("is not running or refuses connections"),
        "{out}"
    );
    assert!(out.contains("Connection refused"), "the cause: {out}");
    for dump in ["Os {", "kind:", "tonic::", "ConnectError(", "Error("] {
        assert!(!out.contains(dump), "{dump}: {out}");
    }
}

#[test]
fn tree_ops_say_what_they_did_in_words() {
    let t = TempDir::new("tree-words");
    let (src, ar, dst) = (
        t.path().join("src"),
        t.path().join("a.tar.zst"),
        t.path().join("dst"),
    );
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), "x").unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(dst.join("extra"), "y").unwrap();
    let run = |args: &[&std::path::Path]| {
        let o = Command::new(binary())
            .arg("tree")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let a = run(&[std::path::Path::new("archive"), &src, &ar]);
    assert!(
        a.starts_with("archived 3 entries (1 files, 1 bytes) into "),
        "{a}"
    );
    assert!(!a.contains('{'), "a debug dump: {a}");
    let s = run(&[std::path::Path::new("sync"), &ar, &dst]);
    assert!(s.contains("now equals the archive: 3 entries"), "{s}");
    assert!(s.contains("1 deleted"), "{s}");
    assert!(!s.contains('{'), "a debug dump: {s}");
}
