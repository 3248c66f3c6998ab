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

/// What `tree archive` did, in words.
pub fn render_archive(st: &TreeStats, out: &Path) -> String {
    let mut s = format!(
        "archived {} entries ({} files, {} bytes) into {}: {} bytes, sha256 {}\n",
        st.entries,
        st.files,
        st.bytes,
        out.display(),
        st.archive_bytes,
        st.sha256
    );
    for (what, list) in [
        ("mount points not crossed", &st.skipped_mounts),
        ("vanished while read", &st.vanished),
        ("changed while read (stored as last read)", &st.changed),
        ("sockets not archived", &st.skipped_sockets),
        (
            "sparse files larger than any node's disk, not archived",
            &st.skipped_sparse,
        ),
    ] {
        if !list.is_empty() {
            s += &format!("{what}: {}\n", list.join(", "));
        }
    }
    s
}

/// What `tree sync` did, in words.
pub fn render_sync(st: &SyncStats, dir: &Path) -> String {
    let mut s = format!(
        "{} now equals the archive: {} entries, {} written, {} unchanged, {} deleted, {} excluded\n",
        dir.display(),
        st.entries,
        st.written,
        st.unchanged,
        st.deleted,
        st.excluded
    );
    for (what, list) in [
        ("mount points left alone", &st.skipped_mounts),
        ("device nodes not created", &st.skipped_devices),
        (
            "left alone: a directory on the way changed while restored",
            &st.changed,
        ),
        (
            "written without setuid/setgid bits or capabilities",
            &st.stripped,
        ),
    ] {
        if !list.is_empty() {
            s += &format!("{what}: {}\n", list.join(", "));
        }
    }
    s
}
