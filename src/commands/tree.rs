//! `tree` (hidden, for tests and benchmarks): the archive engine alone.

use crate::archive::{self, SyncOptions, SyncStats, TreeStats};
use crate::store::verify;
use anyhow::{Context, Result};
use std::path::Path;

/// Archive `dir` into `out` (tar+zstd with per-file sha256).
pub fn archive(dir: &Path, out: &Path, level: i32, threads: Option<u32>) -> Result<TreeStats> {
    let mut o = archive::WriteOptions {
        level,
        ..archive::WriteOptions::default()
    };
    if let Some(t) = threads {
        o.threads = t;
    }
    archive::write_tree(dir, out, &o, None)
}

/// Make `dir` equal `file` (verified first); extra files deleted, the paths
/// listed in `exclude_from` left alone.
pub fn sync(file: &Path, dir: &Path, exclude_from: Option<&Path>) -> Result<SyncStats> {
    let excludes = match exclude_from {
        Some(f) => archive::exclude::Excludes::parse(
            &std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
        ),
        None => Default::default(),
    };
    let (sha, size) = verify::file_sha256(file)?;
    archive::restore_tree(
        file,
        &sha,
        size,
        dir,
        &SyncOptions {
            excludes,
            delete: true,
            ..SyncOptions::default()
        },
    )
}
