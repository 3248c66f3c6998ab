//! Space: what the parts take on disk, and what the backup dir has free.

use anyhow::{Context, Result};
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

pub(crate) fn free_bytes(dir: &Path) -> Result<u64> {
    let st = rustix::fs::statvfs(dir).with_context(|| format!("statvfs {}", dir.display()))?;
    Ok(st.f_bavail * st.f_frsize)
}
