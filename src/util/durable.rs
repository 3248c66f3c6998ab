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

/// Move `from` to `to` as `mv` does, durably. A rename where it can be one;
/// where `from` and `to` lie on different mounts (EXDEV) a copy: on RHCOS
/// `/etc` belongs to the deployment and `/var` is a bind mount of the
/// stateroot's var, so even on one file system the kernel refuses a rename
/// between them (seen in the VM lane: moving the etcd manifest aside into
/// /var/lib/etcd-backup failed with "Invalid cross-device link"), and a
/// separate disk for /var/lib/etcd does the same. `cluster-restore.sh`
/// moves these with `mv` (openshift/cluster-etcd-operator
/// `bindata/etcd/cluster-restore.sh`), which copies then removes across
/// mounts; so do we: `cp -a` (mode, owner, times, xattrs and the SELinux
/// label) to a temporary name beside `to`, synced, renamed into place, then
/// `from` removed. A crash half way leaves `from` whole (and at most the
/// temporary copy, replaced by the next try), or `to` whole with `from`
/// whole or gone: never neither. Both parent dirs are synced on return.
pub fn move_path(
    step: &str,
    from: &Path,
    to: &Path,
    tools: &crate::node::cmd::Tools,
) -> Result<()> {
    let dir_of = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
    match std::fs::rename(from, to) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
            let name = to.file_name().context("a move target without a name")?;
            let tmp = dir_of(to).join(format!(".{}.mv-tmp", name.to_string_lossy()));
            match std::fs::symlink_metadata(&tmp) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&tmp)?,
                Ok(_) => std::fs::remove_file(&tmp)?,
                Err(_) => {}
            }
            let mut cp = tools.command("cp")?;
            cp.arg("-a").arg("--").arg(from).arg(&tmp);
            crate::node::cmd::run(&mut cp).with_context(|| {
                format!(
                    "copying {} to {} (another mount: no rename)",
                    from.display(),
                    to.display()
                )
            })?;
            fs_of(step, &tmp)?;
            std::fs::rename(&tmp, to)
                .with_context(|| format!("renaming {} into place", to.display()))?;
            dir(step, &dir_of(to))?;
            if std::fs::symlink_metadata(from)?.is_dir() {
                std::fs::remove_dir_all(from)?;
            } else {
                std::fs::remove_file(from)?;
            }
        }
        Err(e) => {
            return Err(e).with_context(|| format!("moving {} to {}", from.display(), to.display()))
        }
    }
    dir(step, &dir_of(to))?;
    dir(step, &dir_of(from))
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
