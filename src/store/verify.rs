//! `verify`: check a backup against its manifest, every byte.

use crate::archive;
use crate::store::blob::{Check, Stored};
use crate::store::layout;
use crate::store::manifest::Manifest;
use crate::util::error::Fail;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

pub use crate::archive::file_sha256;
pub use crate::node::etcd::read_snapshot;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dir: String,
    pub intact: bool,
    pub checked: Vec<String>,
    pub problems: Vec<String>,
    /// Documented paths (`manifest.json`, `upgrade-recovery.sh`, ...) that
    /// are not their link into `current`: the backup is usable (`status`
    /// and `restore` read the generation), the path needs its link back.
    #[serde(default)]
    pub notes: Vec<String>,
    /// How to put a damaged copy of the tool (binary, wrapper) back
    /// (`recovery::checks::program_way_out`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub way_out: Option<String>,
}

/// The problems of one stored item against the manifest: the one check of
/// each kind, used by `verify` and by the recovery's per-phase checks.
pub fn check(dir: &Path, item: &Stored) -> Vec<String> {
    match item {
        Stored::Blob(b, Check::Archive) => {
            archive::verify_archive(&dir.join(&b.file), &b.sha256, b.size)
        }
        Stored::Blob(b, Check::File) => {
            let p = dir.join(&b.file);
            match file_sha256(&p) {
                Err(e) => vec![format!("{}: {e}", p.display())],
                Ok((h, n)) => b.mismatch(&p, n, &h).into_iter().collect(),
            }
        }
        // One read: the recorded sha256 and size first, then the trailer.
        Stored::Blob(b, Check::Snapshot) => {
            let p = dir.join(&b.file);
            match read_snapshot(&p) {
                Err(err) => vec![format!("{}: {err}", p.display())],
                Ok(s) => match b.mismatch(&p, s.size, &s.sha256) {
                    Some(m) => vec![m],
                    None => s.trailer.err().into_iter().collect(),
                },
            }
        }
        Stored::Blob(b, c @ (Check::Program | Check::Unrecorded)) => {
            let p = dir.join(&b.file);
            if let Some(why) = not_executable(&p) {
                return vec![why];
            }
            if *c == Check::Unrecorded {
                return Vec::new();
            }
            match file_sha256(&p) {
                Err(e) => vec![format!("{}: {e}", p.display())],
                Ok((h, n)) => b.mismatch(&p, n, &h).into_iter().collect(),
            }
        }
        Stored::Images(images) => crate::node::images::verify(&dir.join(layout::IMAGES), images),
    }
}

/// Why `p` is not a program the recovery can run: absent, not a regular
/// file (never through a symlink), or without the owner's execute bit.
fn not_executable(p: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::symlink_metadata(p) {
        Err(e) => Some(format!("{}: {e}", p.display())),
        Ok(md) if !md.is_file() => Some(format!("{}: not a regular file", p.display())),
        Ok(md) if md.permissions().mode() & 0o100 == 0 => Some(format!(
            "{}: not executable (mode {:o})",
            p.display(),
            md.permissions().mode() & 0o7777
        )),
        Ok(_) => None,
    }
}

/// Check each item (`check`), each read once: the largest first, on as
/// many threads as the CPUs this process may use, so the reads and the
/// hashing of both cores overlap (an archive's check is one thread's
/// decompression and hashing). The problems, in the order of `items`.
pub fn check_each(dir: &Path, items: &[&Stored]) -> Vec<Vec<String>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let weight = |s: &Stored| match s {
        Stored::Blob(b, _) => b.size,
        Stored::Images(i) => i.iter().map(|i| i.size).sum(),
    };
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(weight(items[i])));
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Vec<String>>>> = Mutex::new(vec![None; items.len()]);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| loop {
                    let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    let found = check(dir, items[i]);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(found);
                })
            })
            .collect();
        // A worker that panicked leaves its item unchecked (named below);
        // joined here, its panic does not end the run.
        for w in workers {
            let _ = w.join();
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .zip(items)
        .map(|(r, item)| {
            r.unwrap_or_else(|| vec![format!("{}: the check stopped unexpectedly", item.label())])
        })
        .collect()
}

/// Verify the current backup of the backup dir `dir` (its generation, or the
/// flat files), and the documented paths that lead into it. No backup, or a
/// damaged one without a manifest, is an error (exit 4).
pub fn verify(host: &crate::node::host::Host) -> Result<(Manifest, Report)> {
    let dir = &host.backup_dir();
    let gen = crate::store::current_on(host)?;
    let (m, mut report) = verify_generation(&gen)?;
    // A missing link is not damage: verify, status and restore agree that
    // the backup is usable (issue 27.5), and verify says how to relink.
    report.notes = crate::store::link_problems(dir);
    report.intact = report.problems.is_empty();
    report.dir = dir.display().to_string();
    Ok((m, report))
}

/// Verify everything the manifest of the backup files in `dir` lists. The
/// report lists each problem.
pub fn verify_generation(dir: &Path) -> Result<(Manifest, Report)> {
    verify_generation_except(dir, &[])
}

/// [`verify_generation`], with the archives named in `checked` (checked
/// as they were written: every entry, every file's sha256) checked for
/// their size and sha256 only, one read each.
fn verify_generation_except(dir: &Path, checked: &[&str]) -> Result<(Manifest, Report)> {
    let m = Manifest::load(dir)?;
    let stored: Vec<Stored> = m
        .stored()
        .into_iter()
        .map(|s| match s {
            Stored::Blob(b, Check::Archive) if checked.contains(&b.file.as_str()) => {
                Stored::Blob(b, Check::File)
            }
            s => s,
        })
        .collect();
    let checked: Vec<String> = stored.iter().map(Stored::label).collect();
    // One loop over what the manifest references. The archives are checked
    // side by side: each check is one thread's decompression and hashing,
    // so the CPUs share them; the others are checked meanwhile, in turn.
    let items: Vec<&Stored> = stored.iter().collect();
    let mut problems: Vec<String> = check_each(dir, &items).into_iter().flatten().collect();
    problems.extend(m.missing_parts());
    let report = Report {
        dir: dir.display().to_string(),
        intact: problems.is_empty(),
        checked,
        problems,
        notes: Vec::new(),
        way_out: None,
    };
    Ok((m, report))
}

/// The check of a backup just written (`backup::build`), damage a
/// `Fail::Backup` (exit 4) naming each item: the archives in `checked`
/// were checked as they were written, so they are read back for their size
/// and sha256 only; everything else is checked in full.
pub fn require_intact_written(dir: &Path, checked: &[&str]) -> Result<Manifest> {
    intact(verify_generation_except(dir, checked)?, dir)
}

fn intact((m, r): (Manifest, Report), dir: &Path) -> Result<Manifest> {
    if !r.intact {
        return Err(Fail::Backup(format!(
            "the backup in {} is damaged:\n  {}",
            dir.display(),
            r.problems.join("\n  ")
        ))
        .into());
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn snapshot(body: &[u8]) -> Vec<u8> {
        let mut v = body.to_vec();
        v.extend_from_slice(&Sha256::digest(body));
        v
    }

    #[test]
    fn one_read_of_a_snapshot_checks_its_trailer_and_gives_its_sha256() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        // Bigger than one read buffer, so the trailer straddles reads.
        let good = snapshot(&vec![7u8; (1 << 20) + 512 * 3]);
        std::fs::write(&p, &good).unwrap();
        let s = read_snapshot(&p).unwrap();
        assert_eq!(s.trailer, Ok(()));
        assert_eq!(s.size, good.len() as u64);
        assert_eq!(s.sha256, hex::encode(Sha256::digest(&good)));
        // Malformed: one byte changed, then a size that holds no trailer.
        let mut bad = good.clone();
        bad[1000] ^= 1;
        std::fs::write(&p, &bad).unwrap();
        let e = read_snapshot(&p).unwrap().trailer.unwrap_err();
        assert!(e.contains("trailer does not match"), "{e}");
        std::fs::write(&p, &good[..good.len() - 1]).unwrap();
        let e = read_snapshot(&p).unwrap().trailer.unwrap_err();
        assert!(e.contains("size % 512 must be 32"), "{e}");
        // Absent.
        std::fs::remove_file(&p).unwrap();
        assert!(read_snapshot(&p).is_err());
    }
}
