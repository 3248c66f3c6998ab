//! The etcd snapshot (native, or the node's cluster-backup.sh) and the
//! static-pod resources.

use super::space::du;
use super::{EtcdMode, Options, Part};
use crate::node::etcd;
use crate::node::host::Host;
use crate::store::blob::Blob;
use crate::store::manifest::{EtcdSnapshot, StaticPods};
use crate::store::verify;
use crate::util::fault;
use crate::util::progress::Meter;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Bytes the snapshot and the static-pod resources take: the etcd db and
/// the static-pod resources but their `bin`.
pub fn estimate(host: &Host) -> u64 {
    let spr = host.path("/etc/kubernetes/static-pod-resources");
    du(&spr).saturating_sub(du(&spr.join("bin")))
        + std::fs::metadata(host.path("/var/lib/etcd/member/snap/db")).map_or(0, |m| m.len())
}

/// The snapshot (native, or the node's cluster-backup.sh, which writes the
/// static-pod resources too) and the static-pod resources, into `cluster/`
/// of `staging`: their records and their summary lines.
pub fn write(
    host: &Host,
    opts: &Options,
    client: &etcd::ClientConfig,
    revisions: &BTreeMap<String, u32>,
    staging: &Path,
    stamp: &str,
    meter: &Meter,
) -> Result<(EtcdSnapshot, StaticPods, Vec<Part>)> {
    let t = Instant::now();
    meter.phase("etcd");
    let snap_name = format!("cluster/snapshot_{stamp}__POSSIBLY_DIRTY__.db");
    let static_name = format!("cluster/static_kuberesources_{stamp}__POSSIBLY_DIRTY__.tar.gz");
    let (snap_name, static_name, info) = match opts.etcd {
        EtcdMode::Native => {
            let info = etcd::snapshot(client, &staging.join(&snap_name), opts.etcd_timeout)?;
            (snap_name, static_name, info)
        }
        EtcdMode::Script => script_backup(host, &staging.join("cluster"), opts.etcd_timeout)?,
    };
    fault::point("backup:etcd");
    let snapshot = EtcdSnapshot {
        blob: Blob {
            file: snap_name,
            size: info.size,
            sha256: info.sha256,
        },
        revision: info.revision,
        total_keys: info.total_keys,
    };
    let mut parts = vec![Part {
        name: "etcd".into(),
        source: client.endpoint.clone(),
        files: 1,
        bytes: snapshot.size,
        stored_bytes: snapshot.size,
        seconds: t.elapsed().as_secs_f64(),
    }];
    let t = Instant::now();
    meter.phase("static-pod resources");
    let blob = if opts.etcd == EtcdMode::Native {
        let (size, sha256) =
            etcd::write_static_resources(host, revisions, &staging.join(&static_name))?;
        Blob {
            file: static_name,
            size,
            sha256,
        }
    } else {
        let (sha256, size) = verify::file_sha256(&staging.join(&static_name))?;
        Blob {
            file: static_name,
            size,
            sha256,
        }
    };
    let static_pods = StaticPods {
        blob,
        revisions: revisions.clone(),
    };
    parts.push(Part {
        name: "static-pod resources".into(),
        source: "/etc/kubernetes/static-pod-resources".into(),
        files: revisions.len() as u64,
        bytes: static_pods.size,
        stored_bytes: static_pods.size,
        seconds: t.elapsed().as_secs_f64(),
    });
    Ok((snapshot, static_pods, parts))
}

/// `--etcd-backup=script`: the node's cluster-backup.sh, then the same checks.
fn script_backup(
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
