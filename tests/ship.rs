//! What makes the tool at home on a node: journal logging, auto-resume,
//! generated man pages and completions, help within 80 columns.

mod common;

use common::*;
use std::os::unix::net::UnixDatagram;

/// A syslog socket read by a thread, as journald would.
struct Journal(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Journal {
    fn listen(path: &std::path::Path) -> Journal {
        let sock = UnixDatagram::bind(path).unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = sock.recv(&mut buf) {
                l.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        Journal(lines)
    }
}

fn collect(j: &Journal) -> Vec<String> {
    std::thread::sleep(std::time::Duration::from_millis(100));
    std::mem::take(&mut *j.0.lock().unwrap())
}

#[test]
fn runs_log_to_the_journal_and_auto_resume_removes_itself() {
    let sb = Sandbox::new();
    let t = TempDir::new("syslog");
    let path = t.path().join("log.sock");
    let sock = Journal::listen(&path);
    let run = |args: &[&str]| {
        let o = sb
            .command(args)
            .env("UPGRADE_RECOVERY_SYSLOG", &path)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&["backup", "--min-free", "0"]);
    assert_eq!(code, Some(0), "{err}");
    let lines = collect(&sock);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<14>upgrade-recovery[") && l.contains("backup started")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("backup finished")),
        "{lines:#?}"
    );

    // Auto-resume: the unit is installed after the files phase, enabled.
    let (code, out, err) = run(&["restore", "--auto-resume", "--poll-interval", "100"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let lines = collect(&sock);
    assert!(
        lines.iter().any(|l| l.contains("step restore-etc started")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("step restore-etc done (")),
        "{lines:#?}"
    );
    let unit = sb
        .root()
        .join("etc/systemd/system/upgrade-recovery-resume.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains(
            "ExecStart=/var/recovery/upgrade-recovery --dir /var/recovery restore --resume --from-unit"
        ),
        "{text}"
    );
    assert!(
        text.contains("After=network-online.target crio.service"),
        "{text}"
    );
    assert!(sb
        .ctl()
        .join("state/enabled/upgrade-recovery-resume.service")
        .exists());

    // The next boot: the unit's run removes the unit first, then recovers.
    sb.reboot();
    let (code, out, err) = run(&[
        "restore",
        "--resume",
        "--from-unit",
        "--poll-interval",
        "100",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Recovery complete"), "{out}");
    assert!(!unit.exists());
    assert!(!sb
        .ctl()
        .join("state/enabled/upgrade-recovery-resume.service")
        .exists());
    let calls = sb.calls();
    let disable = calls
        .iter()
        .position(|c| c == "systemctl disable upgrade-recovery-resume.service")
        .unwrap();
    let first_step = calls.iter().rposition(|c| c == "setenforce 0").unwrap();
    assert!(
        disable < first_step,
        "the unit is removed before the first step"
    );
    assert!(collect(&sock)
        .iter()
        .any(|l| l.contains("recovery complete")));

    // A failure goes to the journal too, as an error.
    // Nothing in progress: --resume refuses (issue 12.2), nothing starts.
    let (code, _, err) = run(&["restore", "--resume"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no recovery is in progress"), "{err}");
    assert!(!sb.root().join("var/recovery/journal.json").exists());
    std::fs::write(sb.root().join("var/recovery/journal.json"), "{").unwrap();
    let (code, _, _) = run(&["restore", "--resume"]);
    assert_eq!(code, Some(3));
    assert!(collect(&sock)
        .iter()
        .any(|l| l.starts_with("<11>") && l.contains("journal")));
}

/// The README's table of states is the one the code gives (issue 27):
/// `generate-docs --readme` on a copy changes nothing.
#[test]
fn the_readme_table_of_states_is_current() {
    let t = TempDir::new("states");
    let copy = t.path().join("README.md");
    std::fs::copy(project().join("README.md"), &copy).unwrap();
    let o = std::process::Command::new(binary())
        .arg("generate-docs")
        .arg(t.path())
        .arg("--readme")
        .arg(&copy)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let now = std::fs::read_to_string(&copy).unwrap();
    assert!(
        now.contains("| `recovery-stopped-backup-damaged` |"),
        "{now}"
    );
    assert_eq!(
        std::fs::read_to_string(project().join("README.md")).unwrap(),
        now,
        "stale table of states in README.md: run `make docs`"
    );
}

#[test]
fn man_pages_and_completions_are_current() {
    let t = TempDir::new("docs");
    let o = std::process::Command::new(binary())
        .arg("generate-docs")
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let diff = std::process::Command::new("diff")
        .args(["-r", "-u"])
        .arg(project().join("packaging/man"))
        .arg(t.path().join("man"))
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "stale man pages: run `make docs`\n{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    let diff = std::process::Command::new("diff")
        .args(["-r", "-u"])
        .arg(project().join("packaging/completions"))
        .arg(t.path().join("completions"))
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "stale completions: run `make docs`\n{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    assert!(t.path().join("man/upgrade-recovery-restore.1").exists());
    assert!(t
        .path()
        .join("man/upgrade-recovery-stateroot-cleanup.1")
        .exists());
}

#[test]
fn every_help_fits_80_columns() {
    let cmds: &[&[&str]] = &[
        &[],
        &["launch-backup"],
        &["backup"],
        &["verify"],
        &["restore"],
        &["status"],
        &["rollback"],
        &["stateroot"],
        &["stateroot", "list"],
        &["stateroot", "cleanup"],
        &["extract"],
        &["ibu"],
        &["ibu", "status"],
        &["ibu", "cleanup"],
        &["oadp", "lint"],
        &["report"],
    ];
    for c in cmds {
        let o = std::process::Command::new(binary())
            .args(*c)
            .arg("--help")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{c:?}");
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            assert!(l.chars().count() <= 80, "{c:?}: too wide: {l:?}");
        }
    }
}
