//! What the backup will do, read from the node before any change.

use super::extras::{exclude_list, extras_from_currentconfig, CURRENTCONFIG};
use super::space::du;
use super::{EtcdMode, Options};
use crate::archive;
use crate::node::etcd;
use crate::node::host::Host;
use crate::store::layout::TREES;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

pub(crate) struct Plan {
    pub trees: Vec<(String, String, PathBuf)>,
    pub excludes: Vec<String>,
    pub extras: Vec<String>,
    pub warnings: Vec<String>,
    pub revisions: std::collections::BTreeMap<String, u32>,
    pub etcd: etcd::ClientConfig,
    pub estimate: u64,
    pub image_refs: Vec<String>,
}

pub(crate) fn plan(host: &Host, opts: &Options) -> Result<Plan> {
    let mut warnings = Vec::new();
    let mut trees = Vec::new();
    let mut estimate = 0;
    for (name, node) in TREES {
        let top = archive::resolve_top(&host.root, node)
            .with_context(|| format!("the tree {node} cannot be backed up"))?;
        estimate += du(&top);
        trees.push((name.to_string(), node.to_string(), top));
    }
    let extras = match extras_from_currentconfig(host)? {
        Some(x) => x,
        None => {
            warnings.push(format!(
                "{CURRENTCONFIG} does not exist: no machine-config files outside the three trees are backed up"
            ));
            Vec::new()
        }
    };
    for x in &extras {
        estimate += du(&host.path(x));
    }
    let revisions = etcd::live_revisions(host)?;
    // Read again when the manifest is written; read now so that a node
    // without it is refused before anything changes.
    host.boot_id()
        .context("the node's boot id is needed for the manifest; nothing was changed")?;
    let spr = host.path("/etc/kubernetes/static-pod-resources");
    estimate += du(&spr).saturating_sub(du(&spr.join("bin")));
    estimate += std::fs::metadata(host.path("/var/lib/etcd/member/snap/db")).map_or(0, |m| m.len());
    // The copy of this binary.
    estimate += std::fs::metadata("/proc/self/exe").map_or(0, |m| m.len());
    let etcd = etcd::ClientConfig::load(host)?;
    if opts.etcd == EtcdMode::Script {
        let script = host.path("/usr/local/bin/cluster-backup.sh");
        if !crate::node::cmd::is_executable(&script) {
            bail!(
                "--etcd-backup=script: {} is missing or not executable",
                script.display()
            );
        }
    }
    Ok(Plan {
        trees,
        excludes: exclude_list(host, &mut warnings)?,
        extras,
        warnings,
        revisions,
        etcd,
        estimate,
        image_refs: Vec::new(),
    })
}
