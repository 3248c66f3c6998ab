//! The images part (`--with-images`, `--image`): the images of the running
//! containers and those named, copied by the node's own skopeo.

use super::space::du;
use super::{Options, Part};
use crate::node::cmd::Tools;
use crate::node::host::Host;
use crate::node::images::{self, Image};
use crate::store::layout;
use crate::util::progress::Meter;
use anyhow::Result;
use std::path::Path;
use std::time::Instant;

/// The references to copy: the running containers' images and `--image`;
/// the container storage must be readable.
pub fn refs(host: &Host, tools: &Tools, opts: &Options) -> Result<Vec<String>> {
    let mut refs = images::running(tools)?;
    refs.extend(opts.images.iter().cloned());
    refs.sort();
    refs.dedup();
    // The storage must be readable before anything changes.
    images::Store::open(host)?;
    Ok(refs)
}

/// Bytes the images may take: the node's container storage.
pub fn estimate(host: &Host) -> u64 {
    du(&host.path("/var/lib/containers/storage"))
}

/// The images into `images/` of `staging` (OCI layout): their records and
/// summary line.
pub fn write(
    host: &Host,
    tools: &Tools,
    refs: &[String],
    staging: &Path,
    meter: &Meter,
) -> Result<(Vec<Image>, Part)> {
    let t = Instant::now();
    meter.phase("images");
    let saved = images::save(host, tools, refs, &staging.join(layout::IMAGES))?;
    let part = Part {
        name: "images".into(),
        source: format!("{} image(s)", saved.len()),
        files: saved.len() as u64,
        bytes: saved.iter().map(|i| i.size).sum(),
        stored_bytes: du(&staging.join(layout::IMAGES)),
        seconds: t.elapsed().as_secs_f64(),
    };
    Ok((saved, part))
}
