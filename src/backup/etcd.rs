//! The etcd snapshot (native, or the node's cluster-backup.sh) and the
//! static-pod resources.

use crate::node::etcd;
use crate::node::host::Host;
use crate::store::verify;
use anyhow::{bail, Result};
use std::path::Path;
use std::time::Duration;

/// `--etcd-backup=script`: the node's cluster-backup.sh, then the same checks.
pub(crate) fn script_backup(
    host: &Host,
    cluster: &Path,
    limit: Duration,
) -> Result<(String, String, etcd::SnapshotInfo)> {
    let script = host.path("/usr/local/bin/cluster-backup.sh");
    let mut c = std::process::Command::new(&script);
    c.arg("--force").arg(cluster);
    crate::node::cmd::run_timeout(&mut c, limit)?;
    let mut snap = None;
    let mut res = None;
    for e in std::fs::read_dir(cluster)? {
        let n = e?.file_name().to_string_lossy().into_owned();
        if n.starts_with("snapshot_") && n.ends_with(".db") {
            snap = Some(n);
        } else if n.starts_with("static_kuberesources_") && n.ends_with(".tar.gz") {
            res = Some(n);
        }
    }
    let (Some(snap), Some(res)) = (snap, res) else {
        bail!(
            "{} did not write a snapshot and a static_kuberesources tarball into {}",
            script.display(),
            cluster.display()
        );
    };
    let sp = cluster.join(&snap);
    let s = verify::read_snapshot(&sp)?;
    s.trailer
        .map_err(|m| anyhow::anyhow!("cluster-backup.sh wrote a bad snapshot: {m}"))?;
    let (sha256, size) = (s.sha256, s.size);
    Ok((
        format!("cluster/{snap}"),
        format!("cluster/{res}"),
        etcd::SnapshotInfo {
            size,
            sha256,
            revision: 0,
            total_keys: 0,
        },
    ))
}
