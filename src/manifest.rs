//! The backup manifest: written last and atomically, so a backup exists iff
//! its manifest does. Versioned JSON.

use crate::archive::TreeStats;
use crate::error::Fail;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const FILE: &str = crate::store::layout::MANIFEST;
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub tool_version: String,
    /// RFC 3339 UTC.
    pub created: String,
    pub created_unix: i64,
    pub boot_id: String,
    #[serde(default)]
    pub deployment: Option<PinnedDeployment>,
    #[serde(default)]
    pub etcd: Option<EtcdSnapshot>,
    #[serde(default)]
    pub static_pods: Option<StaticPods>,
    pub trees: Vec<Tree>,
    /// Container images (`backup --with-images`), in `images/` (OCI layout).
    #[serde(default)]
    pub images: Vec<crate::images::Image>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PinnedDeployment {
    pub stateroot: String,
    pub checksum: String,
    pub serial: u32,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EtcdSnapshot {
    /// Relative to the backup dir.
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub revision: i64,
    pub total_keys: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StaticPods {
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// e.g. {"etcd": 3, "kube-apiserver": 7}
    pub revisions: std::collections::BTreeMap<String, u32>,
}

/// One archived tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tree {
    /// `etc`, `local`, `kubelet`, `extras`.
    pub name: String,
    /// The node path backed up (`/etc`); `/` for extras.
    pub source: String,
    /// Where the top's own symlink led (`/var/usrlocal`), when it is one.
    #[serde(default)]
    pub resolved: Option<String>,
    /// The archive file, relative to the backup dir.
    pub archive: String,
    /// Paths relative to the tree that restore neither writes nor deletes.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// For extras: only these paths (relative to `/`) are restored.
    #[serde(default)]
    pub only: Option<Vec<String>>,
    #[serde(flatten)]
    pub stats: TreeStats,
}

impl Manifest {
    /// Read the manifest of the backup in `dir`; a missing or unreadable one
    /// is a missing backup (exit 4).
    pub fn load(dir: &Path) -> Result<Manifest> {
        let p = dir.join(FILE);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Fail::Backup(format!(
                    "no backup in {}: {} does not exist",
                    dir.display(),
                    p.display()
                ))
                .into())
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
        };
        let m: Manifest = serde_json::from_str(&text).map_err(|e| {
            Fail::Backup(format!(
                "{} is damaged: {e} (line {}, column {})",
                p.display(),
                e.line(),
                e.column()
            ))
        })?;
        if m.format != FORMAT {
            return Err(Fail::Backup(format!(
                "{} has format {} but this tool reads format {FORMAT}",
                p.display(),
                m.format
            ))
            .into());
        }
        Ok(m)
    }

    pub fn tree(&self, name: &str) -> Option<&Tree> {
        self.trees.iter().find(|t| t.name == name)
    }
}
