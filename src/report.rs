//! `report --to FILE.tar.gz`: the node-side facts support asks for, in one
//! bundle. Never key material: only what is listed here is collected, and
//! every text is scrubbed of PEM private keys and token-shaped strings.

use crate::cmd::{self, Tools};
use crate::host::Host;
use crate::{ibu, manifest, stateroot, status, verify};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct Item {
    pub name: String,
    pub collected: bool,
    pub note: String,
}

/// Replace PEM private keys, bearer tokens, OpenShift `sha256~` tokens, JWTs
/// and `token:`/`password:` values with `<redacted>`.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_key = false;
    for line in text.split_inclusive('\n') {
        if line.contains("-----BEGIN") && line.contains("PRIVATE KEY-----") {
            in_key = true;
            out.push_str("<redacted private key>\n");
            continue;
        }
        if in_key {
            if line.contains("-----END") {
                in_key = false;
            }
            continue;
        }
        out.push_str(&scrub_line(line));
    }
    out
}

fn scrub_line(line: &str) -> String {
    let mut line = line.to_string();
    // A PEM key inside one line (JSON with escaped newlines).
    while let Some(b) = line.find("-----BEGIN") {
        let Some(k) = line[b..].find("PRIVATE KEY-----").map(|k| b + k) else {
            break;
        };
        let end = line[k + 16..]
            .find("PRIVATE KEY-----")
            .map_or(line.len(), |e| k + 16 + e + 16);
        line.replace_range(b..end, "<redacted private key>");
    }
    for key in ["token", "password", "secret", "bearer"] {
        for sep in ["\": \"", "\":\"", ": ", "="] {
            let pat = format!("{key}{sep}");
            let mut from = 0;
            while let Some(i) = line[from..].to_ascii_lowercase().find(&pat) {
                let start = from + i + pat.len();
                let end = line[start..]
                    .find(['"', '\n', ',', '}', ' '])
                    .map_or(line.len(), |e| start + e);
                if end > start && !line[start..].starts_with("<redacted>") {
                    line.replace_range(start..end, "<redacted>");
                }
                from = start;
            }
        }
    }
    let line = line.as_str();
    let mut s = line.to_string();
    for word in line.split(|c: char| c.is_whitespace() || "\"',;:()[]{}".contains(c)) {
        let tokenish = word.starts_with("sha256~") && word.len() > 20
            || (word.starts_with("eyJ") && word.matches('.').count() == 2 && word.len() > 40);
        if tokenish {
            s = s.replace(word, "<redacted>");
        }
    }
    s
}

impl Item {
    /// `ok      name` or `missing name: why`.
    fn line(&self) -> String {
        let why = self
            .note
            .lines()
            .next()
            .map(|n| format!(": {n}"))
            .unwrap_or_default();
        format!(
            "{} {}{why}",
            if self.collected { "ok     " } else { "missing" },
            self.name
        )
    }
}

struct Bundle {
    files: Vec<(String, Vec<u8>)>,
    items: Vec<Item>,
}

impl Bundle {
    fn add(&mut self, name: &str, r: Result<String>) {
        match r {
            Ok(text) => {
                self.files
                    .push((name.to_string(), scrub(&text).into_bytes()));
                self.items.push(Item {
                    name: name.into(),
                    collected: true,
                    note: String::new(),
                });
            }
            Err(e) => self.items.push(Item {
                name: name.into(),
                collected: false,
                note: format!("{e:#}"),
            }),
        }
    }
}

fn json<T: Serialize>(v: &T) -> Result<String> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

pub fn collect(host: &Host, to: &Path) -> Result<Vec<Item>> {
    let tools = Tools::require(&["ostree"], &["rpm-ostree", "oc", "crictl", "journalctl"])?;
    let dir = host.backup_dir();
    let mut b = Bundle {
        files: Vec::new(),
        items: Vec::new(),
    };
    b.add("status.json", status::gather(host).and_then(|s| json(&s)));
    b.add(
        "stateroots.json",
        stateroot::list(host, &tools).and_then(|l| json(&l)),
    );
    b.add(
        "ostree-admin-status.txt",
        cmd::run_text(
            tools
                .command("ostree")?
                .arg("admin")
                .args(crate::ostree::sysroot_args(host))
                .arg("status"),
        ),
    );
    b.add(
        "backup/manifest.json",
        std::fs::read_to_string(dir.join(manifest::FILE)).context("no backup manifest"),
    );
    b.add(
        "backup/verify.json",
        verify::verify(&dir).and_then(|(_, r)| json(&r)),
    );
    b.add(
        "backup/etc.exclude.list",
        std::fs::read_to_string(dir.join(crate::store::layout::EXCLUDE_LIST))
            .context("no etc.exclude.list"),
    );
    b.add(
        "recovery/journal.json",
        std::fs::read_to_string(dir.join(crate::journal::FILE)).context("no recovery in progress"),
    );
    b.add("disk.txt", disk(host));
    b.add(
        "log/upgrade-recovery.journal.txt",
        if tools.has("journalctl") {
            cmd::run_text(tools.command("journalctl")?.args([
                "-t",
                "upgrade-recovery",
                "--no-pager",
                "-o",
                "short-iso",
                "-n",
                "5000",
            ]))
        } else {
            Err(anyhow::anyhow!("journalctl not found"))
        },
    );
    b.add(
        "containers.json",
        if tools.has("crictl") {
            cmd::run_text(tools.command("crictl")?.args(["ps", "-a", "-o", "json"]))
        } else {
            Err(anyhow::anyhow!("crictl not found"))
        },
    );
    if tools.has("oc") {
        b.add(
            "ibu/status.json",
            ibu::status(host, &tools).and_then(|s| json(&s)),
        );
        for (file, args) in [
            (
                "ibu/imagebasedupgrade.json",
                vec![
                    "get",
                    "imagebasedupgrades.lca.openshift.io",
                    "upgrade",
                    "-o",
                    "json",
                ],
            ),
            (
                "oadp/backups.json",
                vec![
                    "get",
                    "backups.velero.io",
                    "-n",
                    "openshift-adp",
                    "-o",
                    "json",
                ],
            ),
            (
                "oadp/restores.json",
                vec![
                    "get",
                    "restores.velero.io",
                    "-n",
                    "openshift-adp",
                    "-o",
                    "json",
                ],
            ),
            (
                "oadp/backupstoragelocations.json",
                vec![
                    "get",
                    "backupstoragelocations.velero.io",
                    "-n",
                    "openshift-adp",
                    "-o",
                    "json",
                ],
            ),
        ] {
            b.add(
                file,
                ibu::oc(host, &tools).and_then(|mut c| cmd::run_text(c.args(&args))),
            );
        }
    }
    let index = b
        .items
        .iter()
        .map(|i| format!("{}\n", i.line()))
        .collect::<String>();
    b.files
        .push(("index.txt".into(), scrub(&index).into_bytes()));
    write_tgz(to, &b.files)?;
    Ok(b.items)
}

fn disk(host: &Host) -> Result<String> {
    let mut s = String::new();
    for p in [host.backup_dir(), host.sysroot()] {
        if let Ok(st) = rustix::fs::statvfs(&p) {
            s.push_str(&format!(
                "{}: {} free of {}; {} used below\n",
                p.display(),
                crate::fsutil::human(st.f_bavail * st.f_frsize),
                crate::fsutil::human(st.f_blocks * st.f_frsize),
                crate::fsutil::human(crate::backup::du(&p))
            ));
        }
    }
    Ok(s)
}

fn write_tgz(to: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("creating {}", to.display()))?;
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::default());
    let now = crate::fsutil::unix_now();
    for (name, data) in files {
        let meta = crate::archive::tar::Meta {
            mode: 0o600,
            mtime: now,
            size: data.len() as u64,
            ..Default::default()
        };
        let path = format!("upgrade-recovery-report/{name}");
        gz.write_all(&crate::archive::tar::encode(
            path.as_bytes(),
            crate::archive::tar::Kind::File,
            &meta,
            data.len() as u64,
        ))?;
        gz.write_all(data)?;
        gz.write_all(&vec![0u8; crate::archive::tar::padding(data.len() as u64)])?;
    }
    gz.write_all(&[0u8; 1024])?;
    gz.finish()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(())
}

pub fn render(items: &[Item], to: &Path) -> String {
    let ok = items.iter().filter(|i| i.collected).count();
    let mut s = format!(
        "Support report written to {} ({ok} of {} items):\n",
        to.display(),
        items.len()
    );
    for i in items {
        s.push_str(&format!("  {}\n", i.line()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_keys_and_tokens() {
        let t = "a\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\nuser: {token: sha256~abcdefghijklmnopqrstuvwxyz}\n\"password\": \"hunter2\"\nx eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U y\n";
        let s = scrub(t);
        assert!(
            !s.contains("MIIE") && !s.contains("PRIVATE KEY-----\n"),
            "{s}"
        );
        assert!(!s.contains("sha256~abc"), "{s}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(!s.contains("eyJhbGci"), "{s}");
        assert!(s.starts_with("a\n"));
        let j = scrub(
            "{\"k\": \"-----BEGIN PRIVATE KEY-----\\nMIIB\\n-----END PRIVATE KEY-----\\n\"}\n",
        );
        assert!(
            !j.contains("MIIB") && !j.contains("PRIVATE KEY-----"),
            "{j}"
        );
    }
}
