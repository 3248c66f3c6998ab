//! Space: what the parts take on disk, and what the backup dir has free.

use crate::util::fsutil::human;
use anyhow::{bail, Result};
use serde::Serialize;
use std::path::Path;

/// Allocated bytes below a dir, on its own file system (like `du -sx`).
pub fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(path)
        .same_file_system(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

pub(crate) use crate::util::fsutil::free_bytes;

/// The space decision of a backup: the new generation is built beside the
/// current one, which goes only after the switch, unless there is no room
/// for both.
#[derive(Debug, Clone, Serialize)]
pub struct Space {
    /// Bytes the parts will take (the sum of their estimates).
    pub estimate: u64,
    /// The margin to leave (`--min-free`).
    pub min_free: u64,
    /// Free bytes on the backup file system.
    pub free: u64,
    /// Bytes the previous backup takes (what the backup owns in the dir:
    /// `store::owned_and_foreign`, never an admin's files).
    pub previous: u64,
    /// The previous backup is removed before the new one is taken: the one
    /// window without a backup (docs/on-disk-format.md, "Space").
    pub remove_previous: bool,
    /// Entries of the backup dir that are not the backup's (an admin's
    /// files, `lost+found`), as the node names them, and their disk use:
    /// never removed, named when they take the room.
    pub foreign: Vec<(String, u64)>,
}

/// What takes the room in the backup dir, for the refusals.
fn foreign_text(dir: &Path, foreign: &[(String, u64)]) -> String {
    if foreign.is_empty() {
        return String::new();
    }
    let list: Vec<String> = foreign
        .iter()
        .map(|(p, n)| format!("{p} ({})", human(*n)))
        .collect();
    format!(
        " In {}, not part of any backup (this tool never removes them): {}.",
        dir.display(),
        list.join(", ")
    )
}

impl Space {
    /// Decide, or refuse when even without the previous backup the new one
    /// does not fit. `dir` is the backup dir as the user named it, `next`
    /// the command to run once there is room.
    pub fn decide(
        dir: &Path,
        estimate: u64,
        min_free: u64,
        free: u64,
        previous: u64,
        foreign: Vec<(String, u64)>,
        next: &str,
    ) -> Result<Space> {
        let need = estimate + min_free;
        let old = previous;
        if free < need && free + old < need {
            bail!(
                "insufficient disk space in {}: the backup needs about {} plus a margin of {} (--min-free), {} is free{}; free at least {} more. Nothing was changed{}.{} Next: free at least {} on the file system of {} (`df -h {}` shows it, `du -sh {}/*` what takes the room in the backup dir), then run `{next}`",
                dir.display(),
                human(estimate),
                human(min_free),
                human(free),
                if old > 0 { format!(" ({} more once the previous backup is removed)", human(old)) } else { String::new() },
                human(need - free - old),
                if old > 0 { "; the previous backup is intact" } else { "" },
                foreign_text(dir, &foreign),
                human(need - free - old),
                dir.display(),
                dir.display(),
                dir.display(),
            );
        }
        Ok(Space {
            estimate,
            min_free,
            free,
            previous,
            remove_previous: free < need,
            foreign,
        })
    }

    /// The warning of a run that removes the previous backup first.
    pub fn removal_warning(&self, dir: &Path) -> String {
        format!(
            "REMOVING THE PREVIOUS BACKUP in {} before taking the new one: {} free, {} needed. If this run fails, the node has NO backup",
            dir.display(),
            human(self.free),
            human(self.estimate + self.min_free)
        )
    }

    /// What the removal took and what it left, for the output.
    pub fn removed_text(&self, dir: &Path, removed: &[String]) -> String {
        let kept = if self.foreign.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = self.foreign.iter().map(|(p, _)| p.as_str()).collect();
            format!("; kept (not the backup's): {}", names.join(", "))
        };
        format!(
            "removed the previous backup from {} ({}): {}{kept}",
            dir.display(),
            human(self.previous),
            removed.join(", ")
        )
    }
}
