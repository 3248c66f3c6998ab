//! Every next command the tool prints works as printed, whatever `--dir`
//! (issue 22 item 6): it is rendered by `Host::cmd` (`upgrade-recovery
//! [--dir D] ARGS`) or `Host::wrapper_cmd` (`D/upgrade-recovery.sh ARGS`),
//! never written as a literal that assumes the default dir.
//!
//! 1. A guard over the source: no string literal outside the renderer
//!    starts a command line of this tool or names the default dir's wrapper.
//! 2. The procedure and its refusals played with `--dir /var/recovery2`:
//!    every command line of this tool in the output carries that dir, and
//!    the printed next commands of the main path are run as printed.

mod common;

use clap::CommandFactory;
use common::*;
use std::path::{Path, PathBuf};

/// The literals that may name a command of this tool without the renderer,
/// each with its reason: (file, a piece of the literal, reason).
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "src/node/host.rs",
        "upgrade-recovery --dir {} {args}",
        "the renderer itself",
    ),
    (
        "src/store/mod.rs",
        "(`upgrade-recovery extract` needs the manifest)",
        "says which command does not work without a manifest; not a command to run",
    ),
];

/// The subcommands (and their aliases) of the tool, from its clap
/// definition: `upgrade-recovery <one of them>` is a command line.
fn subcommands() -> Vec<String> {
    let cli = upgrade_recovery::cli::Cli::command();
    let mut v = Vec::new();
    for s in cli.get_subcommands() {
        v.push(s.get_name().to_string());
        v.extend(s.get_all_aliases().map(str::to_string));
    }
    v
}

/// The string literals of Rust source outside the items the release binary
/// does not have (`#[cfg(test)]`, `#[cfg(any(feature = "docs", test))]`):
/// (line,
/// contents as written, escapes kept). Comments and char literals are
/// skipped; raw strings are read to their closing quote and hashes.
fn literals(src: &str) -> Vec<(usize, String)> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    // Depth of braces, and the depth at which a `#[cfg(test)]` item began.
    let mut depth = 0usize;
    let mut skip_from: Option<usize> = None;
    let mut cfg_test_pending = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
            continue;
        }
        if src[i..].starts_with("//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if src[i..].starts_with("/*") {
            let mut d = 0;
            while i < b.len() {
                if src[i..].starts_with("/*") {
                    d += 1;
                    i += 2;
                } else if src[i..].starts_with("*/") {
                    d -= 1;
                    i += 2;
                    if d == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            continue;
        }
        if src[i..].starts_with("#[cfg(") {
            // An item the release binary does not have: tests, or the
            // `docs` feature (the README's table, man pages).
            let end = i + src[i..].find(']').expect("attribute closed");
            let attr = &src[i..end];
            if !attr.contains("not(") && (attr.contains("test") || attr.contains("\"docs\"")) {
                cfg_test_pending = true;
            }
            i = end + 1;
            continue;
        }
        // Raw strings: r"..", r#".."#, br#".."#.
        let raw_at = if c == b'r' {
            Some(i + 1)
        } else if c == b'b' && b.get(i + 1) == Some(&b'r') {
            Some(i + 2)
        } else {
            None
        };
        let ident_before = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if let (Some(mut j), false) = (raw_at, ident_before) {
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) == Some(&b'"') {
                let close = format!("\"{}", "#".repeat(hashes));
                let start = j + 1;
                let end = start + src[start..].find(&close).expect("raw string closed");
                let text = &src[start..end];
                if skip_from.is_none() {
                    out.push((line, text.to_string()));
                }
                line += text.matches('\n').count();
                i = end + close.len();
                continue;
            }
        }
        if c == b'"' {
            let start = i + 1;
            let mut j = start;
            while b[j] != b'"' {
                if b[j] == b'\\' {
                    j += 1;
                }
                j += 1;
            }
            let text = &src[start..j];
            if skip_from.is_none() {
                out.push((line, text.to_string()));
            }
            line += text.matches('\n').count();
            i = j + 1;
            continue;
        }
        if c == b'\'' {
            // A char literal ('"', '\'', '\n', '{'), else a lifetime.
            if b.get(i + 1) == Some(&b'\\') {
                let close = src[i + 2..].find('\'').map_or(i + 1, |k| i + 2 + k);
                i = close + 1;
                continue;
            }
            let ch_len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
            if b.get(i + 1 + ch_len) == Some(&b'\'') {
                i += 2 + ch_len;
                continue;
            }
            i += 1;
            continue;
        }
        if c == b'{' {
            if cfg_test_pending && skip_from.is_none() {
                skip_from = Some(depth);
            }
            cfg_test_pending = false;
            depth += 1;
        } else if c == b'}' {
            depth -= 1;
            if skip_from == Some(depth) {
                skip_from = None;
            }
        } else if c == b';' && cfg_test_pending && skip_from.is_none() {
            // `#[cfg(test)] use ...;` or a field: the item ends here.
            cfg_test_pending = false;
        }
        i += 1;
    }
    out
}

/// What in `lit` names a command of this tool without the renderer, if
/// anything: `upgrade-recovery <subcommand|--flag>` or the default dir's
/// wrapper.
fn offence(lit: &str, subs: &[String]) -> Option<String> {
    if lit.contains("/var/recovery/upgrade-recovery.sh") {
        return Some("names /var/recovery/upgrade-recovery.sh".into());
    }
    for (at, _) in lit.match_indices("upgrade-recovery ") {
        let rest = &lit[at + "upgrade-recovery ".len()..];
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if word.starts_with("--") || subs.contains(&word) {
            return Some(format!("starts a command: `upgrade-recovery {word} ...`"));
        }
    }
    None
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every literal of `src/` that names a command of this tool outside the
/// renderer and the allow-list: (file:line, why, literal).
fn offences(root: &Path) -> (Vec<String>, Vec<&'static str>) {
    let subs = subcommands();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut found = Vec::new();
    let mut used = vec![false; ALLOWED.len()];
    for f in &files {
        let rel = f.strip_prefix(root).unwrap().display().to_string();
        let src = std::fs::read_to_string(f).unwrap();
        for (line, lit) in literals(&src) {
            let Some(why) = offence(&lit, &subs) else {
                continue;
            };
            if let Some(k) = ALLOWED
                .iter()
                .position(|(file, piece, _)| *file == rel && lit.contains(piece))
            {
                used[k] = true;
                continue;
            }
            found.push(format!("{rel}:{line}: {why}: \"{lit}\""));
        }
    }
    // An entry that matches nothing is stale: the allow-list stays exact.
    let stale = ALLOWED
        .iter()
        .zip(used)
        .filter(|(_, u)| !u)
        .map(|((_, piece, _), _)| *piece)
        .collect();
    (found, stale)
}

#[test]
fn the_scanner_reads_literals_as_rust_does() {
    let src = r###"
        // "upgrade-recovery status" in a comment
        let a = "x `upgrade-recovery restore` y"; let c = '"'; let d = '\'';
        /* "upgrade-recovery verify" */
        let b = r#"raw "upgrade-recovery --dir D status""#;
        fn f<'a>(x: &'a str) {}
        #[cfg(test)]
        mod tests { fn t() { let x = "upgrade-recovery backup"; } }
        #[cfg(any(feature = "docs", test))]
        fn table() -> String { "upgrade-recovery status".into() }
        let e = "after\"upgrade-recovery rollback\"";
    "###;
    let subs = subcommands();
    let lits: Vec<String> = literals(src).into_iter().map(|(_, l)| l).collect();
    let bad: Vec<&String> = lits
        .iter()
        .filter(|l| offence(l, &subs).is_some())
        .collect();
    assert_eq!(bad.len(), 3, "{lits:?}");
    assert!(bad[0].contains("restore") && bad[1].contains("--dir") && bad[2].contains("rollback"));
    assert!(offence("another upgrade-recovery run holds it", &subs).is_none());
    assert!(offence("/var/recovery/upgrade-recovery.sh --resume", &subs).is_some());
    assert!(subs.iter().any(|s| s == "launchBackup"), "{subs:?}");
}

/// No literal in `src/` names a command of this tool outside the renderer
/// (`Host::cmd`, `Host::wrapper_cmd`, `cmd_in`, `wrapper_in`), save the
/// allow-list, whose every entry is still needed.
#[test]
fn every_next_command_goes_through_the_renderer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (found, stale) = offences(root);
    assert!(
        found.is_empty(),
        "{} literal(s) name a command of this tool without the renderer (use Host::cmd / Host::wrapper_cmd, or node::host::cmd_in / wrapper_in with the dir):\n{}",
        found.len(),
        found.join("\n")
    );
    assert!(
        stale.is_empty(),
        "allow-list entries that match nothing: {stale:?}"
    );
}

/// The backup dir of the played procedure: not the default one.
const D: &str = "/var/recovery2";

/// The spans between backquotes that are command lines of this tool.
fn printed_commands(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|c| c.starts_with("upgrade-recovery ") || c.contains("/upgrade-recovery.sh"))
        .map(str::to_string)
        .collect()
}

/// The lines of `text` that name a command of this tool for another dir
/// than `dir` (or none): `upgrade-recovery <subcommand|--flag>` without
/// `--dir DIR` first, or a wrapper path `X/upgrade-recovery.sh` with X not
/// DIR. `also` are dirs a run may point to on purpose (a backup elsewhere).
fn wrong_dir(text: &str, dir: &str, also: &[&str]) -> Vec<String> {
    let subs = subcommands();
    let default = dir == "/var/recovery";
    let mut bad = Vec::new();
    for line in text.lines() {
        let mut ok = true;
        for (k, _) in line.match_indices("upgrade-recovery") {
            let after = &line[k + "upgrade-recovery".len()..];
            if after.starts_with(".sh") {
                let before = &line[..k];
                let start = before
                    .rfind([' ', '`', '(', '"', '\''])
                    .map_or(0, |i| i + 1);
                let path = &before[start..];
                if path.starts_with('/') {
                    let d = path.trim_end_matches('/');
                    ok &= d == dir || also.contains(&d);
                }
            } else if let Some(rest) = after.strip_prefix(' ') {
                let word: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                if !(word.starts_with("--") || subs.contains(&word)) {
                    continue;
                }
                let named = rest
                    .strip_prefix("--dir ")
                    .map(|r| r.split(' ').next().unwrap_or(""));
                ok &= match named {
                    Some(n) => n == dir || also.contains(&n),
                    None => default,
                };
            }
        }
        if !ok {
            bad.push(line.to_string());
        }
    }
    bad
}

#[test]
fn the_check_of_printed_commands_reads_dirs_right() {
    let t = "run `upgrade-recovery --dir /var/recovery2 restore`, or `/var/recovery2/upgrade-recovery.sh --resume`\nfollow `journalctl -t upgrade-recovery -f` or -u upgrade-recovery-resume\nthe old upgrade-recovery.sh; another upgrade-recovery run\n";
    assert_eq!(wrong_dir(t, D, &[]), Vec::<String>::new());
    assert_eq!(
        printed_commands(t),
        [
            "upgrade-recovery --dir /var/recovery2 restore",
            "/var/recovery2/upgrade-recovery.sh --resume"
        ]
    );
    for bad in [
        "then run `upgrade-recovery restore`",
        "then `/var/recovery/upgrade-recovery.sh --resume`",
        "`upgrade-recovery --dir /var/recovery3 status`",
        "to keep them: upgrade-recovery extract --exact --to /t ...",
    ] {
        assert_eq!(wrong_dir(bad, D, &[]), [bad], "{bad}");
    }
    assert!(wrong_dir("`upgrade-recovery restore`", "/var/recovery", &[]).is_empty());
}

/// One run of the admin: its command line and what it printed.
struct Said {
    cmd: String,
    dir: String,
    code: i32,
    text: String,
}

struct Admin<'a> {
    sb: &'a Sandbox,
    said: Vec<Said>,
}

impl Admin<'_> {
    /// Run `cmd` as printed (common::admin), in the backup dir `dir`; its
    /// output is kept for the check of every command it names.
    fn run_in(&mut self, dir: &str, cmd: &str) -> (i32, String, String) {
        let (code, out, err) = common::admin::admin(self.sb, cmd);
        self.said.push(Said {
            cmd: cmd.to_string(),
            dir: dir.to_string(),
            code,
            text: format!("{out}{err}"),
        });
        (code, out, err)
    }
    fn run(&mut self, cmd: &str) -> (i32, String, String) {
        self.run_in(D, cmd)
    }
    /// Every command of this tool printed by every run names the run's dir.
    fn check(&self, also: &[&str]) {
        let mut bad = Vec::new();
        for s in &self.said {
            for l in wrong_dir(&s.text, &s.dir, also) {
                bad.push(format!("`{}` (exit {}): {l}", s.cmd, s.code));
            }
        }
        assert!(
            bad.is_empty(),
            "{} printed line(s) name a command for another dir than the run's:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }
}

/// The printed command of `text` that contains `piece`, exactly one.
fn the_command(text: &str, piece: &str) -> String {
    let c: Vec<String> = printed_commands(text)
        .into_iter()
        .filter(|c| c.contains(piece))
        .collect();
    assert!(
        !c.is_empty(),
        "no printed command with {piece:?} in:\n{text}"
    );
    c[0].clone()
}

/// The procedure with `--dir /var/recovery2` on the `rhcos` profile: the
/// backup, a failed upgrade, the rollback, the files phase, its reboot, the
/// resume, each next command run exactly as the previous run printed it;
/// the node equals the backup at the end (rsync, xattrs, etcd keys). Every
/// line of every run that names a command of this tool names that dir.
#[test]
fn the_procedure_in_another_dir_runs_the_commands_it_prints() {
    let sb = Sandbox::with_profile("rhcos");
    let mut a = Admin {
        sb: &sb,
        said: Vec::new(),
    };
    let (code, out, err) = a.run(&format!("upgrade-recovery --dir {D} backup"));
    assert_eq!(code, 0, "{out}{err}");
    let before = common::recovery::capture(&sb);
    common::admin::fail_upgrade(&sb);
    common::recovery::record_failed_upgrade(&sb, 1);

    // status names the rollback; run as printed.
    let (code, out, err) = a.run(&format!("upgrade-recovery --dir {D} status"));
    assert_eq!(code, 0, "{out}{err}");
    let next = the_command(&out, "rollback");
    assert_eq!(
        next,
        format!("upgrade-recovery --dir {D} rollback --reboot")
    );
    let (code, out, err) = a.run(&next);
    assert_eq!(code, 0, "{out}{err}");
    // "the node reboots now; after the reboot, run `status` ..., then `restore`"
    let look = the_command(&out, " status");
    let restore = the_command(&out, " restore");
    assert_eq!(look, format!("upgrade-recovery --dir {D} status"));
    assert!(sb.ctl().join("state/reboot-requested").exists());
    sb.reboot();
    let (code, out, err) = a.run(&look);
    assert_eq!(code, 0, "{out}{err}");

    // The files phase: "reboot now, then run `D/upgrade-recovery.sh --resume`".
    let (code, out, err) = a.run(&restore);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    let resume = the_command(&out, "--resume");
    assert_eq!(resume, format!("{D}/upgrade-recovery.sh --resume"));
    // Before the reboot it refuses, naming the same command.
    let (code, out, err) = a.run(&resume);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(the_command(&err, "--resume"), resume, "{err}");
    sb.reboot();
    let (code, out, err) = a.run(&resume);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Recovery complete"), "{out}");
    common::recovery::check_restored(&sb, &before, "--dir /var/recovery2");
    assert!(!sb.root().join("var/recovery2/journal.json").exists());
    // Nothing was written into the default dir (the sandbox makes it empty).
    let default: Vec<_> = std::fs::read_dir(sb.root().join("var/recovery"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(default.is_empty(), "{default:?}");

    // Refusals in that state: nothing to resume, a recovery completed.
    let (code, out, err) = a.run(&resume);
    assert_eq!(code, 1, "{out}{err}");
    let (code, out, err) = a.run(&format!("upgrade-recovery --dir {D} restore"));
    assert_eq!(code, 1, "{out}{err}");
    a.check(&[]);
}

/// The refusals an admin meets with `--dir /var/recovery2`, provoked
/// cheaply on one node: nothing to resume, a recovery holding the lock
/// (restore exit 3, backup skipped), a damaged part (exit 4), no backup in
/// a third dir (exit 4), a stateroot that cannot go, a full backup dir
/// before the recovery and in its middle. Every printed command line of
/// the tool names the run's dir; the full disk's next command, run as
/// printed once there is room, continues the recovery.
#[test]
fn refusals_in_another_dir_name_commands_for_it() {
    let sb = Sandbox::with_profile("rhcos");
    let mut a = Admin {
        sb: &sb,
        said: Vec::new(),
    };
    let rec = sb.root().join(D.trim_start_matches('/'));
    let (code, out, err) = a.run(&format!("upgrade-recovery --dir {D} backup"));
    assert_eq!(code, 0, "{out}{err}");
    common::recovery::diverge(&sb, 1);

    // Nothing to resume.
    let (code, out, err) = a.run(&format!("{D}/upgrade-recovery.sh --resume"));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no recovery is in progress"), "{err}");

    // A recovery holds the lock (its holder line names restore).
    let lock = rec.join(".lock");
    std::fs::write(
        &lock,
        "4242 restore\nrecovery step wipe-crio (phase files)\n",
    )
    .unwrap();
    let mut holder = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec 9>>{}; flock -x 9; echo locked; exec sleep 120",
            q(&lock)
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut l = String::new();
        std::io::BufReader::new(holder.stdout.as_mut().unwrap())
            .read_line(&mut l)
            .unwrap();
        assert_eq!(l.trim(), "locked");
    }
    let (code, out, err) = a.run(&format!("upgrade-recovery --dir {D} restore"));
    assert_eq!(code, 3, "{out}{err}");
    assert_eq!(
        the_command(&err, " status"),
        format!("upgrade-recovery --dir {D} status")
    );
    let (code, out, err) = a.run(&format!("upgrade-recovery --dir {D} backup"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the backup was skipped"), "{out}");
    assert_eq!(a.run(&format!("upgrade-recovery --dir {D} status")).0, 0);
    holder.kill().unwrap();
    holder.wait().unwrap();

    // A damaged part: the dry run and the run refuse (exit 4) before any change.
    let part = std::fs::read_dir(rec.join("current"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .expect("an archive in the backup");
    let good = std::fs::read(&part).unwrap();
    std::fs::write(&part, &good[..good.len() / 2]).unwrap();
    for cmd in ["restore --dry-run", "restore", "verify", "status"] {
        let (code, out, err) = a.run(&format!("upgrade-recovery --dir {D} {cmd}"));
        let want = if cmd == "status" { 0 } else { 4 };
        assert_eq!(code, want, "{cmd}: {out}{err}");
    }
    std::fs::write(&part, &good).unwrap();
    assert_eq!(a.run(&format!("upgrade-recovery --dir {D} verify")).0, 0);

    // No backup in a third dir.
    let d3 = "/var/recovery3";
    for cmd in ["restore", "verify", "extract /etc/hostname --to /tmp/x"] {
        let (code, out, err) = a.run_in(d3, &format!("upgrade-recovery --dir {d3} {cmd}"));
        assert_eq!(code, 4, "{cmd}: {out}{err}");
        assert!(err.contains("no backup in"), "{err}");
    }
    // The booted stateroot cannot be cleaned up.
    let (code, out, err) = a.run(&format!(
        "upgrade-recovery --dir {D} stateroot cleanup rhcos --dry-run"
    ));
    assert_ne!(code, 0, "{out}{err}");

    // A full backup dir: refused before the recovery, named in its middle.
    sh(&format!(
        "set -e; d={d}; t=$(mktemp -d); cp -a $d/. $t/; mount -t tmpfs -o size=24m,mode=0700 tmpfs $d; cp -a $t/. $d/; rm -rf $t",
        d = q(&rec)
    ));
    let fill = || {
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", rec.join("filler").display()))
            .output();
    };
    fill();
    let (code, out, err) = a.run(&format!("upgrade-recovery --dir {D} restore --dry-run"));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("not enough room for the recovery"), "{err}");
    std::fs::remove_file(rec.join("filler")).unwrap();
    let o = sb
        .command(&["--dir", D, "restore"])
        .env("UPGRADE_RECOVERY_CRASH_AT", "stop-kubelet")
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    fill();
    let (code, out, err) = a.run(&format!("{D}/upgrade-recovery.sh --resume"));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("is full"), "{err}");
    let next = err
        .rsplit("then run `")
        .next()
        .and_then(|r| r.split('`').next())
        .unwrap()
        .to_string();
    assert_eq!(next, format!("upgrade-recovery --dir {D} restore --resume"));
    std::fs::remove_file(rec.join("filler")).unwrap();
    let (code, out, err) = a.run(&next);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(&rec)
        .status();
    a.check(&[D]);
}

/// `restore --auto-resume` with `--dir /var/recovery2` (issue 22.6): after
/// the files phase the message says the resume unit finishes the recovery
/// after the reboot and how to watch it, with `--resume` only as the
/// fallback if the unit does not run; the unit's own command line, run as
/// systemd would after the reboot, completes the recovery.
#[test]
fn auto_resume_says_the_unit_continues_and_the_unit_does() {
    let sb = Sandbox::new();
    let mut a = Admin {
        sb: &sb,
        said: Vec::new(),
    };
    let (code, out, err) = a.run(&format!("upgrade-recovery --dir {D} backup"));
    assert_eq!(code, 0, "{out}{err}");
    let before = common::recovery::capture(&sb);
    common::recovery::diverge(&sb, 1);
    let (code, out, err) = a.run(&format!("upgrade-recovery --dir {D} restore --auto-resume"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    let unit = "upgrade-recovery-resume.service";
    let (first, fallback) = out
        .split_once("Only if the unit does not run")
        .unwrap_or_else(|| panic!("no fallback part: {out}"));
    assert!(
        first.contains(&format!(
            "{unit} (installed and enabled) finishes the recovery by itself"
        )) && first.contains("`journalctl -u upgrade-recovery-resume -f`")
            && first.contains(&format!("`upgrade-recovery --dir {D} status`")),
        "{out}"
    );
    assert!(
        !first.contains("--resume"),
        "--resume before the fallback: {out}"
    );
    assert_eq!(
        the_command(fallback, "--resume"),
        format!("{D}/upgrade-recovery.sh --resume")
    );
    assert!(sb.ctl().join("state/enabled").join(unit).exists());
    // After the reboot, systemd runs the unit's ExecStart.
    sb.reboot();
    let text = std::fs::read_to_string(sb.root().join("etc/systemd/system").join(unit)).unwrap();
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let mut words = exec.split_whitespace();
    let prog = words.next().unwrap();
    let o = std::process::Command::new(sb.root().join(prog.trim_start_matches('/')))
        .arg("--root")
        .arg(sb.root())
        .args(words)
        .args(["--poll-interval", "100ms", "--wait-timeout", "60s"])
        .env("PATH", sb.path_env())
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(0), "{exec}: {out}{err}");
    assert!(out.contains("Recovery complete"), "{out}");
    // The node is the backup's, save the time of the dir the unit was
    // installed in and removed from (after the restore of /etc).
    for (name, node) in common::recovery::trees(&sb) {
        let extra = match name {
            "etc" => common::recovery::ETC_EXCLUDES,
            "opt" => "-x --omit-dir-times",
            _ => "-x",
        };
        let diff: Vec<String> = rsync_diff(&before.dir.path().join(name), &node, extra)
            .into_iter()
            .filter(|l| !(name == "etc" && l == ".d..t...... systemd/system/"))
            .collect();
        assert_eq!(diff, Vec::<String>::new(), "{name} differs from the backup");
    }
    assert_eq!(common::recovery::etcd_dump(&sb), before.keys, "etcd keys");
    assert!(!sb.root().join("var/recovery2/journal.json").exists());
    a.check(&[]);
}

/// A power cut in the files phase of a recovery started with
/// `--auto-resume`: the `--resume` that status names (without the flag)
/// finishes the files phase and installs the resume unit as the first run
/// would have, and says so (the journal records the choice).
#[test]
fn auto_resume_survives_a_crash_in_the_files_phase() {
    let sb = Sandbox::new();
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    common::recovery::diverge(&sb, 1);
    let (code, out, err) =
        common::recovery::restore(&sb, &["--auto-resume"], Some("restore-usr-local:before"));
    assert_ne!(code, Some(0), "the crash did not happen: {out}{err}");
    let unit = "upgrade-recovery-resume.service";
    assert!(!sb.ctl().join("state/enabled").join(unit).exists());
    sb.reboot();
    let (code, out, err) = common::recovery::restore(&sb, &["--resume"], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Reboot now"), "{out}");
    assert!(
        out.contains(&format!(
            "{unit} (installed and enabled) finishes the recovery by itself"
        )),
        "{out}"
    );
    assert!(sb.ctl().join("state/enabled").join(unit).exists());
    assert!(sb.root().join("etc/systemd/system").join(unit).is_file());
}
