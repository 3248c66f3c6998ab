//! One stored file of a backup and how it is checked.
//!
//! Every part the backup writes is recorded as a [`Blob`]: the etcd snapshot
//! and the static-pod resources hold one (flattened, so their JSON is
//! today's `file`, `size`, `sha256`), a tree's archive is one under other
//! names (`archive`, `archive_bytes`, `sha256`: [`crate::store::manifest::Tree::blob`]).
//! [`crate::store::manifest::Manifest::stored`] lists them all with how each
//! is checked, so `verify` is one loop over that list and the two mismatch
//! messages below are the only place they are written.

use crate::node::images::Image;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A file of the backup: its name relative to the generation dir, its size
/// and its sha256. The field order is the manifest's (`file`, `size`,
/// `sha256`): a flattened Blob serialises as the fields it replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    /// Relative to the backup dir.
    pub file: String,
    pub size: u64,
    pub sha256: String,
}

/// How a stored blob is checked, besides its size and sha256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A plain file: size and sha256 (the static-pod resources).
    File,
    /// A tar.zst archive, read in full by `archive::verify_archive`: its
    /// size and sha256, every entry validated and checked against its own.
    Archive,
    /// The etcd snapshot: size and sha256, then its sha256 trailer, in one
    /// read (`read_snapshot`).
    Snapshot,
    /// A program the recovery runs (the binary, the wrapper): a regular
    /// file with its size and sha256 and the owner's execute bit.
    Program,
    /// A program an older manifest does not record: a regular file with
    /// the owner's execute bit (the blob's size and sha256 are empty).
    Unrecorded,
}

/// Something the manifest references in the backup dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored<'a> {
    Blob(Blob, Check),
    /// The images' OCI layout (`images/`): each blob is named by its sha256
    /// (`node::images::verify`).
    Images(&'a [Image]),
}

impl Stored<'_> {
    /// The name `verify` lists under `checked`.
    pub fn label(&self) -> String {
        match self {
            Stored::Blob(b, Check::Unrecorded) => format!("{} (not recorded)", b.file),
            Stored::Blob(b, _) => b.file.clone(),
            Stored::Images(i) => format!("{}/ ({} images)", crate::store::layout::IMAGES, i.len()),
        }
    }
}

/// `<path>: size N but the manifest records M`.
pub fn size_mismatch(path: &Path, got: u64, recorded: u64) -> String {
    crate::archive::size_mismatch(&path.display(), got, recorded)
}

/// `<path>: sha256 X but the manifest records Y`.
pub fn sha256_mismatch(path: &Path, got: &str, recorded: &str) -> String {
    crate::archive::sha256_mismatch(&path.display(), got, recorded)
}

impl Blob {
    /// The mismatch of what was read from `path` (its size, its sha256)
    /// against this record: the size first, as every check reports it.
    pub fn mismatch(&self, path: &Path, size: u64, sha256: &str) -> Option<String> {
        if size != self.size {
            Some(size_mismatch(path, size, self.size))
        } else if sha256 != self.sha256 {
            Some(sha256_mismatch(path, sha256, &self.sha256))
        } else {
            None
        }
    }
}
