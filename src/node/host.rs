//! The node the tool works on: every host path resolves under one root.

use crate::util::error::Fail;
use anyhow::{Context, Result};
use std::path::{Component, Path, PathBuf};

/// The backup dir when `--dir` is not given.
pub const DEFAULT_DIR: &str = "/var/recovery";

#[derive(Debug, Clone)]
pub struct Host {
    /// The node's `/` (the real root, a sandbox node, or a jail).
    pub root: PathBuf,
    /// The backup dir as seen on the node (e.g. `/var/recovery`).
    pub dir: PathBuf,
}

/// `upgrade-recovery [--dir D] ARGS` for the backup dir `dir` as seen on
/// the node: the one renderer of this tool's command lines in messages
/// (`Host::cmd`), for the places that have the dir but no `Host`.
pub fn cmd_in(dir: &Path, args: &str) -> String {
    if dir == Path::new(DEFAULT_DIR) {
        format!("upgrade-recovery {args}")
    } else {
        format!("upgrade-recovery --dir {} {args}", dir.display())
    }
}

/// `D/upgrade-recovery.sh ARGS`: the wrapper a backup installs in its dir
/// (`store::layout::WRAPPER`), for `dir` as seen on the node.
pub fn wrapper_in(dir: &Path, args: &str) -> String {
    let w = dir.join(crate::store::layout::WRAPPER);
    if args.is_empty() {
        w.display().to_string()
    } else {
        format!("{} {args}", w.display())
    }
}

impl Host {
    pub fn new(root: &Path, dir: &Path) -> Result<Host> {
        let root = root
            .canonicalize()
            .map_err(|e| Fail::Usage(format!("--root {}: {e}", root.display())))?;
        if !dir.is_absolute() {
            return Err(Fail::Usage(format!(
                "--dir {} must be an absolute path on the node",
                dir.display()
            ))
            .into());
        }
        if dir.components().any(|c| c == Component::ParentDir) {
            return Err(
                Fail::Usage(format!("--dir {} must not contain '..'", dir.display())).into(),
            );
        }
        Ok(Host {
            root,
            dir: dir.to_path_buf(),
        })
    }

    /// Whether this is the machine's own root (not a sandbox or a jail).
    pub fn is_slash(&self) -> bool {
        self.root == Path::new("/")
    }

    /// A node path (absolute, as on the node) under the root.
    pub fn path(&self, node_path: impl AsRef<Path>) -> PathBuf {
        let p = node_path.as_ref();
        let rel = p.strip_prefix("/").unwrap_or(p);
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// A command line of this tool for messages, carrying `--dir` when the
    /// backup dir is not the default one: `upgrade-recovery [--dir D] ARGS`.
    /// Every "next command" is written with it, so that it works as printed.
    pub fn cmd(&self, args: &str) -> String {
        cmd_in(&self.dir, args)
    }

    /// The backup's own wrapper with ARGS: `D/upgrade-recovery.sh ARGS`
    /// (the wrapper exports its dir as `UPGRADE_RECOVERY_DIR`, so it needs
    /// no `--dir`). For the commands the docs give as the wrapper's.
    pub fn wrapper_cmd(&self, args: &str) -> String {
        wrapper_in(&self.dir, args)
    }

    /// The backup dir under the root.
    pub fn backup_dir(&self) -> PathBuf {
        self.path(&self.dir)
    }

    /// A file in the backup dir.
    pub fn backup_file(&self, name: &str) -> PathBuf {
        self.backup_dir().join(name)
    }

    pub fn boot_id(&self) -> Result<String> {
        let p = self.path("/proc/sys/kernel/random/boot_id");
        let s = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        Ok(s.trim().to_string())
    }

    pub fn sysroot(&self) -> PathBuf {
        self.path("/sysroot")
    }

    /// Refuse a root that has no ostree sysroot: it is not a node.
    pub fn require_node(&self) -> Result<()> {
        let repo = self.path("/sysroot/ostree/repo");
        let deploy = self.path("/sysroot/ostree/deploy");
        for p in [&repo, &deploy] {
            if !p.is_dir() {
                return Err(Fail::Usage(format!(
                    "{} is not an OpenShift node root: {} is missing (is --root right?)",
                    self.root.display(),
                    p.display()
                ))
                .into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_carry_a_non_default_dir() {
        let d = Path::new(DEFAULT_DIR);
        let d2 = Path::new("/var/recovery2");
        assert_eq!(cmd_in(d, "status"), "upgrade-recovery status");
        assert_eq!(
            cmd_in(d2, "status"),
            "upgrade-recovery --dir /var/recovery2 status"
        );
        assert_eq!(
            wrapper_in(d, "--resume"),
            "/var/recovery/upgrade-recovery.sh --resume"
        );
        assert_eq!(
            wrapper_in(d2, "--resume"),
            "/var/recovery2/upgrade-recovery.sh --resume"
        );
        assert_eq!(wrapper_in(d2, ""), "/var/recovery2/upgrade-recovery.sh");
    }
}
