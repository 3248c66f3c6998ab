//! The one way external programs are run.
//!
//! Programs are looked up on PATH once, up front ([`Tools::require`]), so a
//! missing one is named before anything changes. [`run`] gives the program a
//! null stdin, logs the command line at debug level, and on failure returns an
//! error naming the program, its arguments, the exit status and the last lines
//! of its stderr.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// External programs resolved on PATH.
#[derive(Debug, Default, Clone)]
pub struct Tools {
    found: BTreeMap<&'static str, PathBuf>,
}

impl Tools {
    /// Resolve every name in `required`; fail naming all that are missing.
    /// Names in `optional` are resolved when present.
    pub fn require(required: &[&'static str], optional: &[&'static str]) -> Result<Tools> {
        let mut found = BTreeMap::new();
        let mut missing = Vec::new();
        for &name in required {
            match which::which(name) {
                Ok(p) => {
                    found.insert(name, p);
                }
                Err(_) => missing.push(name),
            }
        }
        for &name in optional {
            if let Ok(p) = which::which(name) {
                found.insert(name, p);
            }
        }
        if !missing.is_empty() {
            let named: Vec<String> = missing
                .iter()
                .map(|n| match purpose(n) {
                    Some(p) => format!("{n} ({p})"),
                    None => (*n).to_string(),
                })
                .collect();
            bail!(
                "required program{} not found on PATH: {}; nothing was changed. Put {} on PATH and run the same command again",
                if missing.len() > 1 { "s" } else { "" },
                named.join(", "),
                if missing.len() > 1 { "them" } else { "it" }
            );
        }
        Ok(Tools { found })
    }

    /// Tools with `name` resolved to `path` (unit tests of the adapters).
    #[cfg(test)]
    pub fn with(name: &'static str, path: PathBuf) -> Tools {
        Tools {
            found: BTreeMap::from([(name, path)]),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.found.contains_key(name)
    }

    /// A command for a resolved program.
    pub fn command(&self, name: &str) -> Result<Command> {
        let path = self
            .found
            .get(name)
            .with_context(|| format!("program {name} was not resolved on PATH"))?;
        Ok(Command::new(path))
    }
}

/// What a program is needed for, so a missing one is named for its use.
pub fn purpose(name: &str) -> Option<&'static str> {
    Some(match name {
        "ostree" => "reads, pins and undeploys the OS deployments",
        "rpm-ostree" => "rolls the OS back",
        "systemctl" => "stops, starts and enables kubelet and crio",
        "crictl" => "lists and removes the containers",
        "crio" => "wipes the container storage (crio wipe)",
        "setenforce" => "sets the SELinux mode during the recovery",
        "getenforce" => "reads the SELinux mode to put back",
        "oc" => "forces the redeployment of the control plane",
        "etcdctl" => "restores the etcd snapshot",
        "etcdutl" => "restores the etcd snapshot with its revisions bumped (etcd 3.5+)",
        "tar" => "extracts the static-pod resources",
        "cp" => "moves the etcd data and manifest across mounts (as mv does)",
        "skopeo" => "copies the container images (--with-images)",
        _ => return None,
    })
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&shell_quote(a));
    }
    s
}

/// `a` as a shell word: as it is when it needs no quoting, else in single
/// quotes.
pub fn quote(a: &str) -> String {
    shell_quote(OsStr::new(a))
}

fn shell_quote(a: &OsStr) -> String {
    let s = a.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The last `lines` non-empty lines, each cut to 240 characters (a progress
/// line of dots can be megabytes long).
fn tail(bytes: &[u8], lines: usize) -> String {
    const WIDTH: usize = 240;
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| match l.char_indices().nth(WIDTH) {
            Some((i, _)) => format!("{}...", &l[..i]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a program did: its exit status and both outputs.
pub struct Output {
    /// The command line, as the error messages name it.
    pub line: String,
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The error [`run`] gives for a failure: the command line, the exit
    /// status and the last lines of stderr.
    pub fn error(&self) -> anyhow::Error {
        let err = tail(&self.stderr, 8);
        anyhow::anyhow!(
            "`{}` failed ({}){}{}",
            self.line,
            self.status,
            if err.is_empty() { "" } else { ":\n" },
            err
        )
    }

    /// stdout when the program succeeded, else [`Output::error`].
    pub fn into_stdout(self) -> Result<Vec<u8>> {
        if self.success() {
            Ok(self.stdout)
        } else {
            Err(self.error())
        }
    }
}

/// Run to completion and return what it did, failed or not (for callers
/// that read the exit status or tell a failure apart by its stderr); only a
/// program that cannot start is an error.
pub fn output(cmd: &mut Command) -> Result<Output> {
    output_with_stdin(cmd, None)
}

fn output_with_stdin(cmd: &mut Command, input: Option<&[u8]>) -> Result<Output> {
    let line = describe(cmd);
    log::debug!("run: {line}");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let out = match input {
        None => cmd.output(),
        Some(bytes) => {
            let mut child = cmd
                .spawn()
                .with_context(|| format!("cannot start `{line}`"))?;
            // Written on a thread: a program that answers before it has read
            // all its input would otherwise block us both on full pipes.
            let stdin = child.stdin.take();
            let bytes = bytes.to_vec();
            let writer = std::thread::spawn(move || {
                if let Some(mut w) = stdin {
                    use std::io::Write as _;
                    let _ = w.write_all(&bytes);
                }
            });
            let out = child.wait_with_output();
            let _ = writer.join();
            out
        }
    }
    .with_context(|| format!("cannot start `{line}`"))?;
    Ok(Output {
        line,
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

/// Run to completion; stdout on success, a descriptive error otherwise.
pub fn run(cmd: &mut Command) -> Result<Vec<u8>> {
    output(cmd)?.into_stdout()
}

/// [`run`] with `input` on the program's stdin.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Result<Vec<u8>> {
    output_with_stdin(cmd, Some(input))?.into_stdout()
}

/// Run and return stdout as text.
pub fn run_text(cmd: &mut Command) -> Result<String> {
    let out = run(cmd)?;
    String::from_utf8(out).context("program output is not UTF-8")
}

/// Run with a time limit; the child is killed when it is exceeded.
///
/// stdout and stderr are drained by two threads while the child runs: a
/// program that writes more than a pipe holds (64 KiB on Linux) before it
/// exits would otherwise block on write, never exit, and be reported as a
/// timeout (`cluster-backup.sh` and `cluster-restore.sh` write more than that).
pub fn run_timeout(cmd: &mut Command, limit: Duration) -> Result<Vec<u8>> {
    let line = describe(cmd);
    log::debug!("run (limit {}s): {line}", limit.as_secs());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let out_reader = drain(child.stdout.take());
    let err_reader = drain(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{line}` did not finish within {}s and was killed",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The readers end when every writer of the pipes has closed them; a
    // grandchild that keeps them open would hold us here, so that is bounded
    // by the same limit (the threads are then left to end on their own).
    let stdout = join_within(out_reader, start, limit);
    let stderr = join_within(err_reader, start, limit);
    if !status.success() {
        // Scripts such as cluster-backup.sh print their refusals on stdout.
        let (err, out) = (tail(&stderr, 8), tail(&stdout, 4));
        let mut msg = format!("`{line}` failed ({status})");
        if !err.is_empty() {
            msg.push_str(&format!(":\n{err}"));
        }
        if !out.is_empty() {
            msg.push_str(&format!("\nlast lines of its output:\n{out}"));
        }
        bail!(msg);
    }
    Ok(stdout)
}

type Reader = std::sync::mpsc::Receiver<Vec<u8>>;

/// Read a pipe to its end on a thread; the bytes arrive on the channel.
fn drain<R: std::io::Read + Send + 'static>(pipe: Option<R>) -> Reader {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

fn join_within(rx: Reader, start: Instant, limit: Duration) -> Vec<u8> {
    let left = limit.saturating_sub(start.elapsed()) + Duration::from_secs(1);
    rx.recv_timeout(left).unwrap_or_default()
}

/// Whether a program path exists and is executable (for optional node scripts).
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn run_failure_names_the_command_line_and_stderr_tail() {
        let err = run(Command::new("sh").args(["-c", "echo gone >&2; exit 4"]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "`sh -c 'echo gone >&2; exit 4'` failed (exit status: 4):\ngone"
        );
    }

    #[test]
    fn output_returns_a_failure_without_failing() {
        let out =
            output(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"])).unwrap();
        assert!(!out.success());
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert!(out
            .error()
            .to_string()
            .contains("failed (exit status: 3):\nerr"));
    }

    #[test]
    fn run_with_stdin_feeds_the_program() {
        let big = vec![b'y'; MIB];
        let out = run_with_stdin(Command::new("wc").arg("-c"), &big).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().trim(), MIB.to_string());
        let err = run_with_stdin(
            Command::new("sh").args(["-c", "cat >/dev/null; echo no >&2; exit 1"]),
            b"x",
        )
        .unwrap_err()
        .to_string();
        assert!(err.ends_with("failed (exit status: 1):\nno"), "{err}");
    }

    // A program writing 1 MiB (16 pipe buffers) before it exits: the limit is
    // far above what it needs, so only a stall can make it fail.
    #[test]
    fn run_timeout_drains_large_stdout() {
        let out = run_timeout(
            Command::new("sh").args(["-c", "head -c 1048576 /dev/zero | tr '\\0' x"]),
            Duration::from_secs(120),
        )
        .unwrap();
        assert_eq!(out.len(), MIB);
        assert!(out.iter().all(|&b| b == b'x'));
    }

    #[test]
    fn run_timeout_drains_large_stderr() {
        let out = run_timeout(
            Command::new("sh").args(["-c", "head -c 1048576 /dev/zero >&2; echo done"]),
            Duration::from_secs(120),
        )
        .unwrap();
        assert_eq!(out, b"done\n");
    }

    #[test]
    fn run_timeout_failure_names_stderr_tail_after_large_output() {
        let err = run_timeout(
            Command::new("sh").args([
                "-c",
                "head -c 1048576 /dev/zero; seq 1 20000 >&2; echo last-words >&2; exit 3",
            ]),
            Duration::from_secs(120),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("last-words"), "{err}");
    }

    #[test]
    fn run_timeout_failure_names_stdout_tail() {
        let err = run_timeout(
            Command::new("sh").args(["-c", "echo 'This script must be run as root'; exit 1"]),
            Duration::from_secs(120),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("This script must be run as root"), "{err}");
    }

    #[test]
    fn failure_tail_cuts_long_lines() {
        let err = run_timeout(
            Command::new("sh").args(["-c", "head -c 300000 /dev/zero | tr '\\0' . >&2; exit 1"]),
            Duration::from_secs(120),
        )
        .unwrap_err()
        .to_string();
        assert!(err.len() < 1000, "{}", err.len());
        assert!(err.ends_with("..."), "{err}");
    }

    #[test]
    fn run_timeout_kills_at_limit() {
        let err = run_timeout(
            Command::new("sh").args(["-c", "exec sleep 600"]),
            Duration::from_secs(1),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("was killed"), "{err}");
    }
}
