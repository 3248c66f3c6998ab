//! The OS part: keep the active deployment only, pinned.

use crate::node::cmd::Tools;
use crate::node::host::Host;
use crate::node::ostree;
use crate::store::manifest::PinnedDeployment;
use crate::util::fault;
use anyhow::Result;
use std::time::Instant;

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
