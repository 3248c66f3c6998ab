//! Durability of what a journal entry records as done: each change is on
//! disk before the entry that says so is written, so that a power loss
//! never leaves a journal claiming a change the disk does not hold.
//!
//! Every sync goes through here and, for tests, is logged to the file named
//! by `UPGRADE_RECOVERY_SYNC_LOG` (with the fault points, which mark where
//! the journal entry follows), so a test can check that each sub-step has
//! its sync before its journal write (tests/recovery.rs).

use anyhow::{Context, Result};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Record a sync in the test log (a no-op unless the variable is set, and
/// in builds without the `fault-injection` feature).
pub fn log(step: &str, what: &str) {
    crate::util::fault::sync_log(format_args!("sync {step} {what}"));
}

/// fsync a directory: a rename or removal in it is durable.
pub fn dir(step: &str, d: &Path) -> Result<()> {
    if crate::util::fault::skip_syncs() {
        return Ok(());
    }
    crate::util::fsutil::fsync_dir(d)?;
    log(step, &format!("fsync-dir {}", d.display()));
    Ok(())
}

/// syncfs of the file system that holds `p` (every file written there).
pub fn fs_of(step: &str, p: &Path) -> Result<()> {
    if crate::util::fault::skip_syncs() {
        return Ok(());
    }
    let f = std::fs::File::open(p).with_context(|| format!("opening {} to sync", p.display()))?;
    rustix::fs::syncfs(&f).with_context(|| format!("syncfs of {}", p.display()))?;
    log(step, &format!("syncfs {}", p.display()));
    Ok(())
}

/// syncfs of every distinct file system among `paths` (their nearest
/// existing ancestor): files restored onto several file systems.
pub fn each_fs<'a>(step: &str, paths: impl IntoIterator<Item = &'a Path>) -> Result<usize> {
    let mut seen = HashSet::new();
    for p in paths {
        let Some(at) = p.ancestors().find(|a| a.symlink_metadata().is_ok()) else {
            continue;
        };
        let at = if at.is_dir() {
            at
        } else {
            at.parent().unwrap_or(at)
        };
        let dev = std::fs::metadata(at)
            .with_context(|| format!("{}", at.display()))?
            .dev();
        if seen.insert(dev) {
            fs_of(step, at)?;
        }
    }
    Ok(seen.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fs_syncs_once_per_file_system() {
        let d = std::env::temp_dir();
        let n = each_fs(
            "t",
            [
                d.as_path(),
                &d.join("no/such/file"),
                Path::new("/proc/self"),
            ],
        )
        .unwrap();
        // /tmp's file system and procfs (two, unless /tmp is on procfs).
        assert_eq!(n, 2);
    }
}
