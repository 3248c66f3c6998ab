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
        "tar" => "extracts the static-pod resources",
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

fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Run to completion; stdout on success, a descriptive error otherwise.
pub fn run(cmd: &mut Command) -> Result<Vec<u8>> {
    let line = describe(cmd);
    log::debug!("run: {line}");
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !out.status.success() {
        let err = tail(&out.stderr, 8);
        bail!(
            "`{line}` failed ({}){}{}",
            out.status,
            if err.is_empty() { "" } else { ":\n" },
            err
        );
    }
    Ok(out.stdout)
}

/// Run and return stdout as text.
pub fn run_text(cmd: &mut Command) -> Result<String> {
    let out = run(cmd)?;
    String::from_utf8(out).context("program output is not UTF-8")
}

/// Run with a time limit; the child is killed when it is exceeded.
pub fn run_timeout(cmd: &mut Command, limit: Duration) -> Result<Vec<u8>> {
    let line = describe(cmd);
    log::debug!("run (limit {}s): {line}", limit.as_secs());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
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
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}):\n{}",
            out.status,
            tail(&out.stderr, 8)
        );
    }
    Ok(out.stdout)
}

/// Whether a program path exists and is executable (for optional node scripts).
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
