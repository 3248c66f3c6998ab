//! The OS part: keep the active deployment, pinned; undeploy the others
//! but those pinned by anything but the backup being replaced.

use crate::node::cmd::Tools;
use crate::node::host::Host;
use crate::node::ostree::{self, DeploymentId};
use crate::store::manifest::PinnedDeployment;
use crate::util::fault;
use anyhow::{Context, Result};
use serde::Serialize;
use std::time::Instant;

/// What [`write`] would do, read from `ostree admin status`.
#[derive(Debug, Clone, Serialize)]
pub struct OsPlan {
    /// The deployment kept and pinned (the booted one, else the default).
    pub keep: String,
    /// The others, undeployed from the highest index.
    pub undeploy: Vec<String>,
    /// Pinned by anything but the backup being replaced: kept.
    #[serde(default)]
    pub kept_pinned: Vec<String>,
}

/// Read only: the deployment the backup keeps and those it undeploys, in
/// the order `ostree::keep_only_active` undeploys them.
pub fn plan(host: &Host, tools: &Tools, previous: Option<&DeploymentId>) -> Result<OsPlan> {
    let os = ostree::read(host, tools)?;
    ostree::refuse_staged(host, &os, "undeploying the other deployments")?;
    let (keep, go, others) =
        ostree::backup_keeps(&os, previous).context("ostree admin status lists no deployment")?;
    Ok(OsPlan {
        keep: keep.short(),
        undeploy: go.iter().map(ostree::Deployment::short).collect(),
        kept_pinned: others.iter().map(ostree::Deployment::short).collect(),
    })
}

/// Keep the active deployment, pinned: the pinned record, what was
/// undeployed, the pinned deployments kept (`previous`: the deployment the
/// replaced backup pinned, the one pinned deployment this may remove).
pub fn write(
    host: &Host,
    tools: &Tools,
    previous: Option<&DeploymentId>,
) -> Result<(PinnedDeployment, Vec<String>, Vec<String>)> {
    let t = Instant::now();
    let (kept, undeployed, kept_pinned) = ostree::keep_only_active(host, tools, previous)?;
    fault::point("backup:os");
    let pinned = PinnedDeployment {
        stateroot: kept.stateroot.clone(),
        checksum: kept.checksum.clone(),
        serial: kept.serial,
        version: kept.version.clone(),
    };
    log::info!(
        "OS: kept and pinned {} in {:.1}s",
        kept.short(),
        t.elapsed().as_secs_f64()
    );
    Ok((pinned, undeployed, kept_pinned))
}
