//! `extract`: copy node paths out of the backup, intact entries only.

use crate::archive::{self, SyncOptions};
use crate::node::host::Host;
use crate::store::manifest::Manifest;
use crate::util::error::{exit_code, Fail};
use anyhow::{Context, Result};
use serde::Serialize;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Serialize)]
pub struct ExtractStats {
    pub entries: u64,
    /// Device nodes not created (no `--exact`).
    pub skipped_devices: Vec<String>,
    /// Files written without setuid/setgid bits or capabilities (no `--exact`).
    pub stripped: Vec<String>,
}

/// The file cut by the damage was being written beside its name: remove it,
/// so what stays in the extraction is only what read intact.
fn remove_partial(dest: &Path) {
    for e in walkdir::WalkDir::new(dest)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if e.file_type().is_file() && e.file_name().as_encoded_bytes().starts_with(b".ur-tmp.") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Copy node paths out of the backup into `to`, keeping node paths below it.
///
/// Without `exact`, nothing that grants privilege is recreated (device
/// nodes, setuid/setgid bits, file capabilities). A damaged archive gives
/// the entries before the damage; entries are written only beneath `to`.
pub fn run(host: &Host, paths: &[PathBuf], to: &Path, exact: bool) -> Result<ExtractStats> {
    let dir = crate::store::current(&host.backup_dir())?;
    let m = Manifest::load(&dir)?;
    let mut groups: Vec<(&crate::store::manifest::Tree, Vec<Vec<u8>>)> = Vec::new();
    for p in paths {
        let ps = p.to_str().context("paths must be UTF-8")?;
        if !ps.starts_with('/') {
            return Err(Fail::Usage(format!("{ps}: give the absolute path on the node")).into());
        }
        // The most specific tree that holds the path.
        let tree = m
            .trees
            .iter()
            .filter_map(|t| {
                [Some(t.source.as_str()), t.resolved.as_deref()]
                    .into_iter()
                    .flatten()
                    .filter_map(|src| {
                        let rel = if src == "/" {
                            Some(ps.trim_start_matches('/'))
                        } else {
                            ps.strip_prefix(src)
                                .filter(|r| r.is_empty() || r.starts_with('/'))
                                .map(|r| r.trim_start_matches('/'))
                        }?;
                        Some((
                            src.len(),
                            t,
                            if rel.is_empty() {
                                ".".to_string()
                            } else {
                                rel.to_string()
                            },
                        ))
                    })
                    .max_by_key(|x| x.0)
            })
            .max_by_key(|x| x.0)
            .with_context(|| format!("{ps} is in no tree of the backup"))?;
        let (_, t, rel) = tree;
        match groups.iter_mut().find(|(g, _)| g.name == t.name) {
            Some((_, v)) => v.push(rel.into_bytes()),
            None => groups.push((t, vec![rel.into_bytes()])),
        }
    }
    let mut total = 0;
    let mut damaged = Vec::new();
    let mut absent = Vec::new();
    let mut skipped_devices = Vec::new();
    let mut stripped = Vec::new();
    for (t, only) in groups {
        let archive = dir.join(&t.archive);
        let dest = to.join(t.source.trim_start_matches('/'));
        let wanted = only.clone();
        // Below `to`, only real directories: a symlink there would lead the
        // copy outside `--to`.
        let mut at = to.to_path_buf();
        for c in Path::new(t.source.trim_start_matches('/')).components() {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Ok(md) if !md.is_dir() => {
                    return Err(Fail::Usage(format!(
                        "{} exists and is not a directory (a symlink would lead the copy outside {}); nothing was extracted there",
                        at.display(),
                        to.display()
                    ))
                    .into())
                }
                _ => {}
            }
        }
        let only = if only.iter().any(|o| o == b".") {
            None
        } else {
            Some(only)
        };
        let opts = SyncOptions {
            only,
            in_root: t.source == "/",
            plain: !exact,
            ..SyncOptions::default()
        };
        match archive::restore_tree(
            &archive,
            &t.stats.sha256,
            t.stats.archive_bytes,
            &dest,
            &opts,
        ) {
            Ok(st) => {
                total += st.written + st.unchanged;
                skipped_devices.extend(st.skipped_devices);
                stripped.extend(st.stripped);
            }
            Err(e) if exit_code(&e) == 4 => {
                // A damaged archive: take what reads intact, up to the damage.
                let stop = match archive::sync_tree(&archive, &dest, &opts) {
                    Ok(st) => {
                        total += st.written + st.unchanged;
                        skipped_devices.extend(st.skipped_devices);
                        stripped.extend(st.stripped);
                        None
                    }
                    Err(e2) => {
                        remove_partial(&dest);
                        Some(format!("{e2:#}"))
                    }
                };
                // The problem alone: the refusal's "nothing was changed"
                // is not true of an extract that went on up to the damage.
                let why = format!("{e:#}");
                let why = why
                    .split_once(archive::REFUSED_DAMAGED)
                    .map_or(why.clone(), |(_, p)| p.to_string());
                damaged.push((t.archive.clone(), why, stop));
            }
            Err(e) => return Err(e),
        }
        for w in wanted.iter().filter(|w| w.as_slice() != b".") {
            let p = dest.join(std::ffi::OsStr::from_bytes(w));
            if std::fs::symlink_metadata(&p).is_err() {
                absent.push(format!(
                    "{}/{}",
                    t.source.trim_end_matches('/'),
                    String::from_utf8_lossy(w)
                ));
            }
        }
    }
    if !damaged.is_empty() {
        let mut text = String::new();
        for (a, why, stop) in &damaged {
            text.push_str(&format!(
                "the archive {a} is damaged ({why}); the entries before the damage were extracted into {}{}. ",
                to.display(),
                stop.as_ref()
                    .map(|s| format!(", reading stopped at: {s}"))
                    .unwrap_or_default()
            ));
        }
        if !absent.is_empty() {
            text.push_str(&format!("Not extracted: {}. ", absent.join(", ")));
        }
        text.push_str(&format!(
            "Only {} was written; nothing else on the node was changed. For the rest, use another copy of the backup.",
            to.display()
        ));
        return Err(Fail::Backup(text).into());
    }
    if !absent.is_empty() {
        return Err(anyhow::anyhow!(
            "not in the backup: {}; {} entries were extracted into {}. `upgrade-recovery extract` copies only what the backup holds (see the tree archives with `zstd -dc {}/<tree>.tar.zst | tar -tvf -`)",
            absent.join(", "),
            total,
            to.display(),
            crate::store::archives_on_node(host).display()
        ));
    }
    Ok(ExtractStats {
        entries: total,
        skipped_devices,
        stripped,
    })
}

/// What was extracted, and what was left out without `--exact`.
pub fn render(stats: &ExtractStats, to: &Path) -> String {
    let mut s = format!(
        "extracted {} entries into {}\n",
        stats.entries,
        to.display()
    );
    if !stats.skipped_devices.is_empty() || !stats.stripped.is_empty() {
        s.push_str(&format!(
            "left out {} device nodes and the setuid/setgid bits or file capabilities of {} files; to keep them: upgrade-recovery extract --exact --to {} ...\n",
            stats.skipped_devices.len(),
            stats.stripped.len(),
            to.display()
        ));
    }
    s
}
