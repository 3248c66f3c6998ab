//! Machine-config files outside the three trees (from `currentconfig`) and
//! the exclude list of /etc (from /etc/tmpfiles.d).

use super::space::du;
use super::Part;
use crate::archive::{self, WriteOptions};
use crate::node::host::Host;
use crate::store::layout;
use crate::store::manifest::Tree;
use crate::util::progress::Meter;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Bytes the machine-config files outside the trees take.
pub fn estimate(host: &Host, extras: &[String]) -> u64 {
    extras.iter().map(|x| du(&host.path(x))).sum()
}

/// The machine-config files outside the trees as `extras.tar.zst` in
/// `staging`: its record and summary line; a listed file that does not
/// exist is a warning.
pub fn write(
    host: &Host,
    extras: &[String],
    staging: &Path,
    wopts: &WriteOptions,
    meter: &Meter,
    warnings: &mut Vec<String>,
) -> Result<(Tree, Part)> {
    let t = Instant::now();
    meter.phase("extras");
    let rels: Vec<Vec<u8>> = extras
        .iter()
        .map(|p| p.trim_start_matches('/').as_bytes().to_vec())
        .collect();
    let (stats, missing) = archive::write_paths(
        &host.root,
        &rels,
        &staging.join(layout::archive(layout::EXTRAS)),
        wopts,
    )?;
    for m in missing {
        warnings.push(format!(
            "machine-config file /{m} does not exist on the node; not backed up"
        ));
    }
    let part = Part {
        name: "extras".into(),
        source: format!("{} paths from {CURRENTCONFIG}", extras.len()),
        files: stats.files,
        bytes: stats.bytes,
        stored_bytes: stats.archive_bytes,
        seconds: t.elapsed().as_secs_f64(),
    };
    let tree = Tree {
        name: "extras".into(),
        source: "/".into(),
        resolved: None,
        archive: layout::archive(layout::EXTRAS),
        excludes: Vec::new(),
        only: Some(extras.to_vec()),
        stats,
    };
    Ok((tree, part))
}

pub(crate) const CURRENTCONFIG: &str = "/etc/machine-config-daemon/currentconfig";

/// Paths under `/etc` that `/etc/tmpfiles.d/*` manage, relative to /etc, plus
/// `.updated` and `kubernetes/manifests`: what restore must not touch.
///
/// Nothing here refuses the backup: a node without `/etc/tmpfiles.d`, a file
/// that is not UTF-8 and lines that are not `Type Path ...` are skipped with a
/// warning in `warnings` (restore then restores those paths from the backup).
/// That is what systemd-tmpfiles does with them (systemd
/// src/tmpfiles/tmpfiles.c, parse_line: a bad line is logged with log_syntax
/// and marks the config invalid; conf_file_read goes on with the next line).
pub fn exclude_list(host: &Host, warnings: &mut Vec<String>) -> Result<Vec<String>> {
    let dir = host.path("/etc/tmpfiles.d");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            warnings.push(
                "/etc/tmpfiles.d does not exist: the exclude list holds only .updated and kubernetes/manifests".into(),
            );
            Vec::new()
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    files.sort();
    let mut out = Vec::new();
    for f in files.iter().filter(|f| f.is_file()) {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let Ok(text) = String::from_utf8(bytes) else {
            warnings.push(format!(
                "{} is not UTF-8 text: skipped, the paths it manages are not in the exclude list",
                node_name(f)
            ));
            continue;
        };
        let (paths, bad) = parse_tmpfiles_lines(&text);
        if !bad.is_empty() {
            let lines: Vec<String> = bad.iter().take(5).map(|n| n.to_string()).collect();
            warnings.push(format!(
                "{}: {} line{} not of the form `Type Path ...` skipped (line {}{})",
                node_name(f),
                bad.len(),
                if bad.len() > 1 { "s" } else { "" },
                lines.join(", "),
                if bad.len() > 5 { ", ..." } else { "" }
            ));
        }
        out.extend(paths);
    }
    out.push(".updated".into());
    out.push("kubernetes/manifests".into());
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    Ok(out)
}

/// A file of /etc/tmpfiles.d as named on the node.
fn node_name(f: &Path) -> String {
    format!(
        "/etc/tmpfiles.d/{}",
        f.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// The paths under /etc of a tmpfiles.d file, relative to /etc, and the
/// numbers (from 1) of the lines that are not `Type Path ...` with an
/// absolute path (or a `%` specifier, which systemd resolves).
pub fn parse_tmpfiles_lines(text: &str) -> (Vec<String>, Vec<usize>) {
    let mut paths = Vec::new();
    let mut bad = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.split('#').next().unwrap_or("");
        let mut words = l.split_whitespace();
        let Some(_kind) = words.next() else { continue };
        match words.next() {
            Some(p) if p.starts_with('/') || p.starts_with('%') => {
                if let Some(p) = p.strip_prefix("/etc/") {
                    let p = p.trim_end_matches('/');
                    if !p.is_empty() {
                        paths.push(p.to_string());
                    }
                }
            }
            _ => bad.push(i + 1),
        }
    }
    (paths, bad)
}

/// Machine-config managed files outside the three trees, from
/// `currentconfig`. None when the file does not exist.
pub fn extras_from_currentconfig(host: &Host) -> Result<Option<Vec<String>>> {
    let p = host.path(CURRENTCONFIG);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    parse_currentconfig(&text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{} {e}; nothing was changed", p.display()))
}

/// The machine-config file paths of a `currentconfig` outside the trees:
/// absolute, normal paths only (no `..`, no empty component, no NUL).
pub fn parse_currentconfig(text: &str) -> Result<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "is not valid JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let files = v
        .pointer("/spec/config/storage/files")
        .and_then(|f| f.as_array())
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<String> = files
        .iter()
        .filter_map(|f| f.get("path").and_then(|p| p.as_str()))
        .filter(|p| {
            p.strip_prefix('/').is_some_and(|r| {
                crate::archive::validate::check_rel_path(r.as_bytes()).is_ok() && r != "."
            })
        })
        .filter(|p| {
            ![
                "/etc/",
                "/usr/local/",
                "/var/usrlocal/",
                "/var/lib/kubelet/",
            ]
            .iter()
            .any(|t| p.starts_with(t))
        })
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}
