//! `verify`: check a backup against its manifest, every byte.

use crate::archive;
use crate::store::layout;
use crate::store::manifest::Manifest;
use crate::util::error::Fail;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

pub use crate::archive::file_sha256;
pub use crate::node::etcd::check_snapshot_trailer;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dir: String,
    pub intact: bool,
    pub checked: Vec<String>,
    pub problems: Vec<String>,
}

/// Check a plain file against a recorded sha256 and size.
fn check_file(dir: &Path, rel: &str, sha: &str, size: u64, problems: &mut Vec<String>) {
    let p = dir.join(rel);
    match file_sha256(&p) {
        Err(e) => problems.push(format!("{}: {e}", p.display())),
        Ok((_, n)) if n != size => problems.push(format!(
            "{}: size {n} but the manifest records {size}",
            p.display()
        )),
        Ok((h, _)) if h != sha => problems.push(format!(
            "{}: sha256 {h} but the manifest records {sha}",
            p.display()
        )),
        Ok(_) => {}
    }
}

/// Verify the current backup of the backup dir `dir` (its generation, or the
/// flat files), and the documented paths that lead into it. No backup, or a
/// damaged one without a manifest, is an error (exit 4).
pub fn verify(dir: &Path) -> Result<(Manifest, Report)> {
    let gen = crate::store::current(dir)?;
    let (m, mut report) = verify_generation(&gen)?;
    report.problems.extend(crate::store::link_problems(dir));
    report.intact = report.problems.is_empty();
    report.dir = dir.display().to_string();
    Ok((m, report))
}

/// Verify everything the manifest of the backup files in `dir` lists. The
/// report lists each problem.
pub fn verify_generation(dir: &Path) -> Result<(Manifest, Report)> {
    let m = Manifest::load(dir)?;
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    for t in &m.trees {
        let p = dir.join(&t.archive);
        problems.extend(archive::verify_archive(
            &p,
            &t.stats.sha256,
            t.stats.archive_bytes,
        ));
        checked.push(t.archive.clone());
    }
    if let Some(e) = &m.etcd {
        let before = problems.len();
        check_file(dir, &e.file, &e.sha256, e.size, &mut problems);
        if problems.len() == before {
            if let Err(msg) = check_snapshot_trailer(&dir.join(&e.file)) {
                problems.push(msg);
            }
        }
        checked.push(e.file.clone());
    }
    if !m.images.is_empty() {
        problems.extend(crate::node::images::verify(
            &dir.join(layout::IMAGES),
            &m.images,
        ));
        checked.push(format!("{}/ ({} images)", layout::IMAGES, m.images.len()));
    }
    if let Some(s) = &m.static_pods {
        check_file(dir, &s.file, &s.sha256, s.size, &mut problems);
        checked.push(s.file.clone());
    }
    let report = Report {
        dir: dir.display().to_string(),
        intact: problems.is_empty(),
        checked,
        problems,
    };
    Ok((m, report))
}

/// Verify one generation's files, and turn damage into a `Fail::Backup`
/// (exit 4) naming each item.
pub fn require_intact_generation(dir: &Path) -> Result<Manifest> {
    intact(verify_generation(dir)?, dir)
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
