//! What the backup will do, read from the node before any change: the
//! refusals that need no change, and each part's estimate.

use super::extras::{exclude_list, extras_from_currentconfig, CURRENTCONFIG};
use super::os::OsPlan;
use super::space::Space;
use super::{trees, EtcdMode, Options};
use crate::node::etcd;
use crate::node::host::Host;
use crate::store::Leftovers;
use anyhow::{bail, Context, Result};
use serde::Serialize;

/// The bytes one part of the backup will need.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub part: String,
    pub bytes: u64,
}

/// What the parts need, read from the node. Changes nothing.
pub struct Plan {
    pub trees: Vec<trees::Source>,
    pub excludes: Vec<String>,
    pub extras: Vec<String>,
    pub warnings: Vec<String>,
    pub revisions: std::collections::BTreeMap<String, u32>,
    pub etcd: etcd::ClientConfig,
    pub estimates: Vec<Estimate>,
    /// With `--with-images`: the images to copy.
    pub image_refs: Vec<String>,
    /// What the lifecycle rule found (set by the command after its check).
    pub base: super::Baseline,
}

impl Plan {
    /// Bytes all parts will need.
    pub fn estimate(&self) -> u64 {
        self.estimates.iter().map(|e| e.bytes).sum()
    }
}

/// What `backup --dry-run` prints: the plan the real run would execute on
/// this node now.
#[derive(Debug, Serialize)]
pub struct DryRun {
    pub dir: String,
    /// What the run would do to the backup dir itself first: create it, or
    /// make it root-only (mode 0700); None when it is so already.
    pub dir_change: Option<String>,
    /// The backup the new one would replace: the current generation's name,
    /// `flat` (today's flat format) or `damaged` (`--replace-backup`).
    pub previous: Option<String>,
    /// The generation the run would write (named from the time it starts).
    pub generation: String,
    pub os: OsPlan,
    /// What the run would clean up first (a killed run's leftovers).
    pub leftovers: Leftovers,
    pub etcd_backup: EtcdMode,
    pub parts: Vec<Estimate>,
    pub space: Space,
    /// With `--with-images`: the images it would copy.
    pub images: Vec<String>,
    pub warnings: Vec<String>,
}

/// Read the node: the trees, the machine-config files outside them, the
/// etcd revisions and client config, the boot id, the exclude list; refuse
/// (before any change) what the backup cannot take. The images are the
/// caller's (`images::refs`), after this.
pub fn plan(host: &Host, opts: &Options) -> Result<Plan> {
    let mut warnings = Vec::new();
    let mut estimates = Vec::new();
    let trees = trees::resolve(host)?;
    for t in &trees {
        estimates.push(Estimate {
            part: t.name.clone(),
            bytes: trees::estimate(t),
        });
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
    estimates.push(Estimate {
        part: "extras".into(),
        bytes: super::extras::estimate(host, &extras),
    });
    let revisions = etcd::live_revisions(host)?;
    // Read again when the manifest is written; read now so that a node
    // without it is refused before anything changes.
    host.boot_id()
        .context("the node's boot id is needed for the manifest; nothing was changed")?;
    estimates.push(Estimate {
        part: "etcd and static-pod resources".into(),
        bytes: super::etcd::estimate(host),
    });
    estimates.push(Estimate {
        part: "this binary".into(),
        bytes: std::fs::metadata("/proc/self/exe").map_or(0, |m| m.len()),
    });
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
        estimates,
        image_refs: Vec::new(),
        base: super::Baseline::default(),
    })
}
