//! The three trees (/etc, /usr/local, /var/lib/kubelet) as archives.

use super::space::du;
use super::Part;
use crate::archive::{self, Changed, TreeStats, WriteOptions};
use crate::node::host::Host;
use crate::store::layout::TREES;
use crate::store::manifest::Tree;
use crate::util::fault;
use crate::util::progress::Meter;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A tree to archive: its name, its node path and where its top resolves.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub node: String,
    pub top: PathBuf,
}

/// The three trees, their tops resolved (`/usr/local -> ../var/usrlocal`);
/// a tree that cannot be backed up refuses the backup.
pub fn resolve(host: &Host) -> Result<Vec<Source>> {
    TREES
        .iter()
        .map(|(name, node)| {
            let top = archive::resolve_top(&host.root, node)
                .with_context(|| format!("the tree {node} cannot be backed up"))?;
            Ok(Source {
                name: name.to_string(),
                node: node.to_string(),
                top,
            })
        })
        .collect()
}

/// Bytes a tree takes (allocated, like `du -sx`).
pub fn estimate(tree: &Source) -> u64 {
    du(&tree.top)
}

/// Each tree as `<name>.tar.zst` in `staging`: their records and summary
/// lines. `excludes` are recorded for /etc.
pub fn write(
    host: &Host,
    trees: &[Source],
    excludes: &[String],
    staging: &Path,
    wopts: &WriteOptions,
    meter: &Meter,
    warnings: &mut Vec<String>,
) -> Result<(Vec<Tree>, Vec<Part>)> {
    let mut records = Vec::new();
    let mut parts = Vec::new();
    for Source { name, node, top } in trees {
        let t = Instant::now();
        meter.phase(node);
        let file = crate::store::layout::archive(name);
        let stats = write_with_retries(top, &staging.join(&file), wopts, meter)?;
        fault::point(&format!("backup:{name}"));
        warn_about(node, &stats, warnings);
        parts.push(Part {
            name: name.clone(),
            source: node.clone(),
            files: stats.files,
            bytes: stats.bytes,
            stored_bytes: stats.archive_bytes,
            seconds: t.elapsed().as_secs_f64(),
        });
        let resolved = (top != &host.path(node))
            .then(|| format!("/{}", top.strip_prefix(&host.root).unwrap_or(top).display()));
        records.push(Tree {
            name: name.clone(),
            source: node.clone(),
            resolved,
            archive: file,
            excludes: if name == "etc" {
                excludes.to_vec()
            } else {
                Vec::new()
            },
            only: None,
            stats,
        });
    }
    Ok((records, parts))
}

fn warn_about(node: &str, s: &TreeStats, warnings: &mut Vec<String>) {
    if !s.skipped_mounts.is_empty() {
        log::info!(
            "{node}: mount points not crossed: {}",
            s.skipped_mounts.join(", ")
        );
    }
    for (what, list) in [
        ("vanished during the backup", &s.vanished),
        ("kept changing while read (stored as last read)", &s.changed),
        ("are sockets (not stored)", &s.skipped_sockets),
        (
            "are sparse files larger than any node's disk (not stored)",
            &s.skipped_sparse,
        ),
    ] {
        if !list.is_empty() {
            warnings.push(format!(
                "{node}: {} file(s) {what}: {}",
                list.len(),
                list.join(", ")
            ));
        }
    }
}

/// Archive a tree; a large file that changes while read restarts the tree,
/// three tries in all (as today's `cp` retries).
pub(crate) fn write_with_retries(
    top: &Path,
    out: &Path,
    opts: &WriteOptions,
    meter: &Meter,
) -> Result<TreeStats> {
    for attempt in 1..=3 {
        let m = meter.clone();
        let progress: archive::write::Progress = Box::new(move |_, bytes| m.add(1, bytes));
        match archive::write_tree(top, out, opts, Some(progress)) {
            Err(e) if attempt < 3 && e.chain().any(|c| c.downcast_ref::<Changed>().is_some()) => {
                log::warn!("{e:#}; archiving {} again", top.display());
            }
            r => return r,
        }
    }
    unreachable!()
}
