//! The backup parts a phase still needs, checked before the phase's first
//! change.
//!
//! A phase checks what its remaining steps will read and no more: the files
//! phase the /etc, /usr/local and extras archives and `etc.exclude.list`,
//! the cluster phase the kubelet archive, the images, the etcd snapshot and
//! the static-pod resources. Each part costs one sequential read: an archive
//! is hashed as stored (sha256 and size against the manifest; the restore
//! that follows decompresses it once and checks every file's own sha256 on
//! the way), the snapshot's sha256 and its trailer come from the same read.
//! Damage found here changes nothing: the phase has not started.

use super::{Phase, STEPS};
use crate::store::blob::{sha256_mismatch, size_mismatch};
use crate::store::manifest::Manifest;
use std::path::Path;

/// One part of the backup and how to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A tree archive (`etc`, `local`, `extras`, `kubelet`).
    Archive {
        file: String,
        sha256: String,
        size: u64,
    },
    /// The etcd snapshot: sha256, size and its own trailer.
    Snapshot {
        file: String,
        sha256: String,
        size: u64,
    },
    /// A plain file with a recorded sha256 (static-pod resources).
    File {
        file: String,
        sha256: String,
        size: u64,
    },
    /// `etc.exclude.list` (no recorded sha256: readable, no NUL byte).
    ExcludeList,
    /// The OCI layout of the images.
    Images,
}

impl Part {
    pub fn name(&self) -> &str {
        match self {
            Part::Archive { file, .. } | Part::Snapshot { file, .. } | Part::File { file, .. } => {
                file
            }
            Part::ExcludeList => crate::store::layout::EXCLUDE_LIST,
            Part::Images => crate::store::layout::IMAGES,
        }
    }
}

/// What the given steps read from the backup, in step order.
pub fn parts_for(m: &Manifest, steps: &[&str]) -> Vec<Part> {
    let tree = |name: &str| {
        m.tree(name).map(|t| Part::Archive {
            file: t.archive.clone(),
            sha256: t.stats.sha256.clone(),
            size: t.stats.archive_bytes,
        })
    };
    let mut out = Vec::new();
    for s in steps {
        match *s {
            "restore-usr-local" => out.extend(tree("local")),
            "restore-etc" => {
                out.extend(tree("etc"));
                out.push(Part::ExcludeList);
            }
            "restore-extras" => out.extend(tree("extras")),
            "restore-kubelet" => out.extend(tree("kubelet")),
            "restore-images" if !m.images.is_empty() => out.push(Part::Images),
            "restore-etcd" => {
                if let Some(e) = &m.etcd {
                    out.push(Part::Snapshot {
                        file: e.file.clone(),
                        sha256: e.sha256.clone(),
                        size: e.size,
                    });
                }
                if let Some(s) = &m.static_pods {
                    out.push(Part::File {
                        file: s.file.clone(),
                        sha256: s.sha256.clone(),
                        size: s.size,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// The steps of `phase` that `done` does not hold.
pub fn remaining(phase: Phase, done: impl Fn(&str) -> bool) -> Vec<&'static str> {
    STEPS
        .iter()
        .filter(|s| s.phase == phase && !done(s.id.as_str()))
        .map(|s| s.id.as_str())
        .collect()
}

/// Every part that exists and has its recorded size: a look (no read) at
/// all of the backup, for the preflight.
pub fn sizes(dir: &Path, parts: &[Part]) -> Vec<String> {
    let mut problems = Vec::new();
    for p in parts {
        let (file, size) = match p {
            Part::Archive { file, size, .. }
            | Part::Snapshot { file, size, .. }
            | Part::File { file, size, .. } => (file, *size),
            Part::ExcludeList | Part::Images => continue,
        };
        let path = dir.join(file);
        match std::fs::symlink_metadata(&path) {
            Err(e) => problems.push(format!("{}: {e}", path.display())),
            Ok(md) if !md.is_file() => {
                problems.push(format!("{}: not a regular file", path.display()))
            }
            Ok(md) if md.len() != size => problems.push(size_mismatch(&path, md.len(), size)),
            Ok(_) => {}
        }
    }
    problems
}

/// Check the parts, each with one sequential read; the problems found.
pub fn check(dir: &Path, m: &Manifest, parts: &[Part]) -> Vec<String> {
    let mut problems = Vec::new();
    for p in parts {
        match p {
            // An archive is read once in full: its sha256, and every entry
            // validated (nothing leaving the tree) and checked against its own
            // sha256, before the phase changes anything (issue 18: restore
            // refuses a hostile archive before any change).
            Part::Archive { file, sha256, size } => problems.extend(
                crate::archive::verify_archive(&dir.join(file), sha256, *size),
            ),
            Part::File { file, sha256, size } => {
                if let Err(e) = hashed(&dir.join(file), sha256, *size, false) {
                    problems.push(e);
                }
            }
            Part::Snapshot { file, sha256, size } => {
                if let Err(e) = hashed(&dir.join(file), sha256, *size, true) {
                    problems.push(e);
                }
            }
            Part::ExcludeList => {
                if let Err(e) = exclude_list(dir).map(drop) {
                    problems.push(e);
                }
            }
            Part::Images => problems.extend(crate::node::images::verify(
                &dir.join(crate::store::layout::IMAGES),
                &m.images,
            )),
        }
    }
    problems
}

/// `etc.exclude.list` of the backup: None when absent (the manifest's copy
/// is used then); an error when it is there but unreadable or holds a NUL.
pub fn exclude_list(dir: &Path) -> Result<Option<Vec<u8>>, String> {
    let p = dir.join(crate::store::layout::EXCLUDE_LIST);
    match std::fs::symlink_metadata(&p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", p.display())),
        Ok(md) if !md.is_file() => return Err(format!("{}: not a regular file", p.display())),
        Ok(_) => {}
    }
    let b = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    if b.contains(&0) {
        return Err(format!(
            "{}: holds a NUL byte, not an exclude list",
            p.display()
        ));
    }
    Ok(Some(b))
}

/// One read of `p`: its size and sha256 against the manifest, and for a
/// snapshot the sha256 trailer (of everything before the last 32 bytes).
/// Opened without following symlinks, regular files only.
fn hashed(p: &Path, want: &str, size: u64, trailer: bool) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", p.display());
    let (got, len, trailer_ok) = if trailer {
        let s = crate::node::etcd::read_snapshot(p).map_err(err)?;
        (s.sha256, s.size, s.trailer)
    } else {
        let (sha, len) = crate::archive::file_sha256(p).map_err(err)?;
        (sha, len, Ok(()))
    };
    if len != size {
        return Err(size_mismatch(p, len, size));
    }
    trailer_ok?;
    if got != want {
        return Err(sha256_mismatch(p, &got, want));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn snapshot_trailer_and_sha_in_one_read() {
        let d = std::env::temp_dir().join(format!("ur-checks-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let body = vec![7u8; 1024];
        let mut data = body.clone();
        data.extend_from_slice(&Sha256::digest(&body));
        let p = d.join("snap.db");
        std::fs::write(&p, &data).unwrap();
        let sha = hex::encode(Sha256::digest(&data));
        let n = data.len() as u64;
        assert_eq!(hashed(&p, &sha, n, true), Ok(()));
        assert!(hashed(&p, &sha, n + 1, true).unwrap_err().contains("size"));
        assert!(hashed(&p, "00", n, true).unwrap_err().contains("sha256"));
        // A snapshot written with a wrong trailer, recorded as such.
        data[1030] ^= 1;
        std::fs::write(&p, &data).unwrap();
        let sha = hex::encode(Sha256::digest(&data));
        assert!(hashed(&p, &sha, n, true).unwrap_err().contains("trailer"));
        assert_eq!(hashed(&p, &sha, n, false), Ok(()));
        assert!(hashed(&d.join("none"), &sha, n, false).is_err());
        // The exclude list: absent is None, a NUL is damage.
        assert_eq!(exclude_list(&d), Ok(None));
        std::fs::write(d.join(crate::store::layout::EXCLUDE_LIST), b"a\0b\n").unwrap();
        assert!(exclude_list(&d).unwrap_err().contains("NUL"));
        std::fs::write(d.join(crate::store::layout::EXCLUDE_LIST), b"a\n").unwrap();
        assert_eq!(exclude_list(&d), Ok(Some(b"a\n".to_vec())));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn each_phase_reads_only_its_parts() {
        let names = |phase| -> Vec<&str> { remaining(phase, |_| false) };
        let files = names(Phase::Files);
        assert!(files.contains(&"restore-etc") && !files.contains(&"restore-kubelet"));
        let cluster = names(Phase::Cluster);
        assert!(cluster.contains(&"restore-etcd") && !cluster.contains(&"restore-etc"));
        assert!(remaining(Phase::Files, |s| s != "restore-extras") == vec!["restore-extras"]);
    }
}
