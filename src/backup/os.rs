//! The OS part: keep the active deployment only, pinned.

use crate::node::cmd::Tools;
use crate::node::host::Host;
use crate::node::ostree;
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
}

/// Read only: the deployment the backup keeps and those it undeploys, in
/// the order `ostree::keep_only_active` undeploys them.
pub fn plan(host: &Host, tools: &Tools) -> Result<OsPlan> {
    let os = ostree::read(host, tools)?;
    ostree::refuse_staged(&os, "undeploying the other deployments")?;
    let keep = os
        .active()
        .context("ostree admin status lists no deployment")?;
    let kept = keep.id();
    let undeploy = os
        .deployments
        .iter()
        .rev()
        .filter(|d| !d.is(&kept))
        .map(ostree::Deployment::short)
        .collect();
    Ok(OsPlan {
        keep: keep.short(),
        undeploy,
    })
}

/// Keep the active deployment only, pinned: the pinned record and what was
/// undeployed.
pub fn write(host: &Host, tools: &Tools) -> Result<(PinnedDeployment, Vec<String>)> {
    let t = Instant::now();
    let (kept, undeployed) = ostree::keep_only_active(host, tools)?;
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
    Ok((pinned, undeployed))
}
