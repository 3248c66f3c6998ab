//! The three trees (/etc, /usr/local, /var/lib/kubelet) as archives.

use crate::archive::{self, Changed, TreeStats, WriteOptions};
use anyhow::Result;
use std::path::Path;

pub(crate) fn warn_about(node: &str, s: &TreeStats, warnings: &mut Vec<String>) {
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
    meter: &crate::util::progress::Meter,
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
