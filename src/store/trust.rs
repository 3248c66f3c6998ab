//! Whether root may read and run from a backup dir (issue 23): what the
//! backup dir holds decides what the recovery writes over /etc and which
//! binary the wrapper runs, so someone else who can write there (its owner,
//! or a group or others with write access to it or to a directory above it)
//! could choose what root runs. Such a dir is refused, naming the fix, by
//! every command that reads or runs from it; `status` says it.
//!
//! The rule is the one OpenSSH applies to the paths of its keys
//! (`safe_path()` in openssh-portable misc.c): every component owned by
//! root and writable by no one else. A directory above the backup dir that
//! others may write into is accepted only with the sticky bit (`/tmp`,
//! `/var/tmp`): there, no one but root can rename or remove root's entries.

use super::layout::GEN_PREFIX;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

pub(crate) const GROUP_OTHER_WRITE: u32 = 0o022;
const STICKY: u32 = 0o1000;

/// The fix for a dir of the backup (the dir itself or a generation).
fn fix_dir(p: &Path) -> String {
    format!(
        "If it is yours, make it root's alone: `chown root:root {p} && chmod 0700 {p}`, and check what it holds (`ls -la {p}`): its owner could have put anything there",
        p = p.display()
    )
}

/// The fix for a directory above the backup dir.
fn fix_parent(p: &Path) -> String {
    format!(
        "make it root's and writable by root alone: `chown root:root {p} && chmod go-w {p}`",
        p = p.display()
    )
}

/// `owned by uid U, mode MMMM`, for messages on who could change a path.
pub(crate) fn who(md: &std::fs::Metadata) -> String {
    format!("owned by uid {}, mode {:04o}", md.uid(), md.mode() & 0o7777)
}

/// Why root must not read or run from the backup dir `dir`, None when it
/// may. A dir that does not exist yet is fine when what is above it is.
pub fn problem(dir: &Path) -> Option<String> {
    // Every directory above, as written and as it resolves (a symlink on
    // the way is checked, and so is where it leads).
    let mut above: Vec<PathBuf> = dir.ancestors().skip(1).map(Path::to_path_buf).collect();
    if let Ok(real) = std::fs::canonicalize(dir) {
        above.extend(real.ancestors().skip(1).map(Path::to_path_buf));
    }
    for a in above.iter().filter(|a| !a.as_os_str().is_empty()) {
        let Ok(md) = std::fs::symlink_metadata(a) else {
            continue;
        };
        let open = md.is_dir() && md.mode() & GROUP_OTHER_WRITE != 0 && md.mode() & STICKY == 0;
        if md.uid() != 0 || open {
            return Some(format!(
                "{} (above the backup dir {}) is {}: someone else could replace the backup dir; nothing was read from it. {}",
                a.display(),
                dir.display(),
                who(&md),
                fix_parent(a)
            ));
        }
    }
    let md = match std::fs::symlink_metadata(dir) {
        Ok(md) => md,
        Err(_) => return None,
    };
    // A symlink as the backup dir: its target is what counts.
    let md = if md.file_type().is_symlink() {
        if md.uid() != 0 {
            return Some(format!(
                "the backup dir {} is a symlink {}: nothing was read from it. Replace it with a directory of root's",
                dir.display(),
                who(&md)
            ));
        }
        match std::fs::metadata(dir) {
            Ok(m) => m,
            Err(_) => return None,
        }
    } else {
        md
    };
    if !md.is_dir() {
        return None;
    }
    if md.uid() != 0 || md.mode() & GROUP_OTHER_WRITE != 0 {
        return Some(format!(
            "the backup dir {} is {}: someone else could choose what root restores and runs from it; nothing was read from it. {}",
            dir.display(),
            who(&md),
            fix_dir(dir)
        ));
    }
    generation_problem(dir)
}

/// A generation that is not a real directory of root's, writable by root
/// alone.
fn generation_problem(dir: &Path) -> Option<String> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut gens: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(GEN_PREFIX))
        .map(|e| e.path())
        .collect();
    gens.sort();
    for g in gens {
        let Ok(md) = std::fs::symlink_metadata(&g) else {
            continue;
        };
        let t = md.file_type();
        if t.is_symlink() || t.is_fifo() || t.is_socket() || !md.is_dir() {
            return Some(format!(
                "{} is not a directory (a generation is a real directory inside the backup dir): nothing was read from it. Remove it (`rm {}`) after checking where it came from",
                g.display(),
                g.display()
            ));
        }
        if md.uid() != 0 || md.mode() & GROUP_OTHER_WRITE != 0 {
            return Some(format!(
                "the generation {} is {}: someone else could choose what root restores and runs from it; nothing was read from it. {}",
                g.display(),
                who(&md),
                fix_dir(&g)
            ));
        }
    }
    None
}

/// [`problem`] as an error (exit 1): for every command that reads or runs
/// from the backup dir, before it reads anything there.
pub fn require(dir: &Path) -> anyhow::Result<()> {
    match problem(dir) {
        Some(p) => Err(anyhow::anyhow!(p)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn owner_and_modes() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("recovery");
        assert_eq!(problem(&d), None, "not there yet");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(problem(&d), None);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o770)).unwrap();
        let p = problem(&d).unwrap();
        assert!(
            p.contains("chown root:root") && p.contains("mode 0770"),
            "{p}"
        );
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        let g = d.join("gen-1");
        std::fs::create_dir(&g).unwrap();
        std::os::unix::fs::chown(&g, Some(1000), None).unwrap();
        let p = problem(&d).unwrap();
        assert!(p.contains("gen-1") && p.contains("uid 1000"), "{p}");
        std::fs::remove_dir(&g).unwrap();
        std::os::unix::fs::symlink("/tmp", &g).unwrap();
        assert!(problem(&d).unwrap().contains("not a directory"));
    }
}
