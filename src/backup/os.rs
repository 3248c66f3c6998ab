//! The OS part: keep the active deployment, pinned first; undeploy the
//! others but those pinned by anything but the backup being replaced; the
//! replaced backup's pinned deployment goes only after the switch
//! ([`release`]), so a run killed at any instant keeps a way back.

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
    /// The replaced backup's pinned deployment(s): unpinned and undeployed
    /// only after the new backup is current.
    #[serde(default)]
    pub release: Vec<String>,
    /// Pinned by anything but the backup being replaced: kept.
    #[serde(default)]
    pub kept_pinned: Vec<String>,
}

/// Read only: the deployment the backup keeps and those it undeploys, in
/// the order `ostree::keep_only_active` undeploys them.
pub fn plan(host: &Host, tools: &Tools, previous: &[DeploymentId]) -> Result<OsPlan> {
    let os = ostree::read(host, tools)?;
    ostree::refuse_staged(host, &os, "undeploying the other deployments")?;
    let (keep, go, others) =
        ostree::backup_keeps(&os, previous).context("ostree admin status lists no deployment")?;
    let (release, undeploy): (Vec<_>, Vec<_>) =
        go.iter().partition(|d| previous.iter().any(|p| d.is(p)));
    Ok(OsPlan {
        keep: keep.short(),
        undeploy: undeploy.iter().map(|d| d.short()).collect(),
        release: release.iter().map(|d| d.short()).collect(),
        kept_pinned: others.iter().map(ostree::Deployment::short).collect(),
    })
}

/// Keep the active deployment, pinned: the pinned record, what was
/// undeployed, the pinned deployments kept (`previous`: the deployments
/// the replaced backup pinned, the only pinned ones this may remove, and
/// only in [`release`], after the switch).
pub fn write(
    host: &Host,
    tools: &Tools,
    previous: &[DeploymentId],
) -> Result<(PinnedDeployment, Vec<String>, Vec<String>)> {
    let t = Instant::now();
    let (kept, undeployed, kept_pinned) = ostree::keep_only_active(host, tools, previous, false)?;
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

/// After the switch (the new backup, current, pins the active deployment):
/// unpin and undeploy what the replaced backup pinned (`previous`). What
/// was undeployed.
pub fn release(host: &Host, tools: &Tools, previous: &[DeploymentId]) -> Result<Vec<String>> {
    if previous.is_empty() {
        return Ok(Vec::new());
    }
    let (_, released, _) = ostree::keep_only_active(host, tools, previous, true)?;
    if !released.is_empty() {
        log::info!(
            "OS: released the previous backup's deployment: {}",
            released.join(", ")
        );
    }
    Ok(released)
}
