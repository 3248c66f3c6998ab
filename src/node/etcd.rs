//! etcd: the node's `etcd.env` (pure parser), its TLS client settings, and a
//! health probe of the local member.

use crate::node::host::Host;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the node keeps the etcd scripts' environment.
pub const ENV_FILE: &str =
    "/etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-scripts/etcd.env";

/// Parse `export K="V"` lines (also `K=V`, single quotes, comments).
pub fn parse_env(text: &str) -> Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim();
        let Some((k, v)) = line.split_once('=') else {
            bail!(
                "line {}: expected export KEY=\"VALUE\", found {raw:?}",
                n + 1
            );
        };
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("line {}: bad variable name {k:?}", n + 1);
        }
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            &v[1..v.len() - 1]
        } else {
            v
        };
        vars.insert(k.to_string(), v.to_string());
    }
    Ok(vars)
}

/// The local member's client settings, paths resolved under the root.
#[derive(Debug, Clone, Serialize)]
pub struct ClientConfig {
    pub endpoint: String,
    pub cacert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The member name and peer URL, for an offline snapshot restore.
    pub name: Option<String>,
    pub peer_url: Option<String>,
}

impl ClientConfig {
    /// Read `etcd.env` on the node. Cert paths that do not exist under
    /// `static-pod-certs` are looked up under `static-pod-resources/etcd-certs`,
    /// as OpenShift's cluster-backup.sh does.
    pub fn load(host: &Host) -> Result<ClientConfig> {
        let file = host.path(ENV_FILE);
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read the node's etcd settings {}", file.display()))?;
        let vars = parse_env(&text).with_context(|| format!("in {}", file.display()))?;
        Self::from_vars(host, &vars).with_context(|| format!("in {}", file.display()))
    }

    pub fn from_vars(host: &Host, vars: &BTreeMap<String, String>) -> Result<ClientConfig> {
        let get = |k: &str| vars.get(k).with_context(|| format!("{k} is not set"));
        let endpoint = get("ETCDCTL_ENDPOINTS")?
            .split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        if endpoint.is_empty() {
            bail!("ETCDCTL_ENDPOINTS is empty");
        }
        let cert_path = |k: &str| -> Result<PathBuf> {
            let p = get(k)?;
            let direct = host.path(p);
            if direct.exists() {
                return Ok(direct);
            }
            let alt = p.replace("static-pod-certs", "static-pod-resources/etcd-certs");
            let alt = host.path(&alt);
            if alt.exists() {
                return Ok(alt);
            }
            bail!(
                "{k}: neither {} nor {} exists",
                direct.display(),
                alt.display()
            )
        };
        let name = vars
            .iter()
            .find(|(k, _)| k.starts_with("NODE_") && k.ends_with("_ETCD_NAME"))
            .map(|(_, v)| v.clone());
        let peer_url = vars
            .iter()
            .find(|(k, _)| k.starts_with("NODE_") && k.ends_with("_PEER_URL"))
            .map(|(_, v)| v.clone())
            .or_else(|| {
                vars.iter()
                    .find(|(k, _)| k.starts_with("NODE_") && k.ends_with("_ETCD_URL_HOST"))
                    .map(|(_, v)| format!("https://{v}:2380"))
            });
        Ok(ClientConfig {
            endpoint,
            cacert: cert_path("ETCDCTL_CACERT")?,
            cert: cert_path("ETCDCTL_CERT")?,
            key: cert_path("ETCDCTL_KEY")?,
            name,
            peer_url,
        })
    }

    pub async fn connect(&self, timeout: Duration) -> Result<etcd_client::Client> {
        use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
        let read =
            |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(&self.cacert)?))
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?));
        let opts = ConnectOptions::new()
            .with_tls(tls)
            .with_connect_timeout(timeout)
            .with_timeout(timeout);
        let client = tokio::time::timeout(
            timeout,
            etcd_client::Client::connect([self.endpoint.as_str()], Some(opts)),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {}s", timeout.as_secs()))?
        .map_err(plain)?;
        Ok(client)
    }
}

/// An etcd client error in words. etcd-client's Display of a gRPC status or
/// of a transport error embeds tonic's debug dump of the cause (`Os { code:
/// 111, kind: ConnectionRefused, .. }`); the status's code and message and
/// the innermost cause (the io::Error) say the same plainly.
pub fn plain(e: etcd_client::Error) -> anyhow::Error {
    fn innermost(e: &(dyn std::error::Error + 'static)) -> Option<String> {
        let mut c = e.source()?;
        while let Some(s) = c.source() {
            c = s;
        }
        Some(c.to_string())
    }
    match &e {
        etcd_client::Error::TransportError(t) => anyhow::anyhow!(
            "cannot connect: {}",
            innermost(t).unwrap_or_else(|| t.to_string())
        ),
        etcd_client::Error::GRpcStatus(st) => {
            let mut m = format!("{}: {}", st.code(), st.message());
            if let Some(c) = innermost(st) {
                if !m.ends_with(&c) {
                    m = format!("{m}: {c}");
                }
            }
            anyhow::anyhow!(m)
        }
        _ => anyhow::anyhow!(e.to_string()),
    }
}

/// What the local member says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    pub version: String,
    pub db_size: i64,
    pub revision: i64,
}

/// Run an async etcd operation on a small current-thread runtime.
pub fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}

/// Ask the member for its status, within `timeout`.
pub fn probe(cfg: &ClientConfig, timeout: Duration) -> Result<MemberStatus> {
    block_on(async {
        let mut c = cfg.connect(timeout).await?;
        let st = tokio::time::timeout(timeout, c.status())
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {}s", timeout.as_secs()))?
            .map_err(plain)?;
        Ok(MemberStatus {
            version: st.version().to_string(),
            db_size: st.db_size(),
            revision: st.header().map_or(0, |h| h.revision()),
        })
    })
    .with_context(|| format!("etcd at {} does not answer", cfg.endpoint))
}

/// What a snapshot holds, as recorded in the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    pub size: u64,
    pub sha256: String,
    pub revision: i64,
    pub total_keys: i64,
}

/// Take a snapshot of the local member through the v3 Snapshot RPC into
/// `dest`: written as `<dest>.part`, checked (size % 512 == 32, the trailing
/// sha256 matches), fsynced, renamed. The whole operation is bounded by
/// `limit` (a stream from a dying etcd would otherwise hang forever).
pub fn snapshot(
    cfg: &ClientConfig,
    dest: &std::path::Path,
    limit: Duration,
) -> Result<SnapshotInfo> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let part = dest.with_file_name(format!(
        "{}.part",
        dest.file_name().unwrap_or_default().to_string_lossy()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&part)
        .with_context(|| format!("creating {}", part.display()))?;
    let connect = Duration::from_secs(10).min(limit);
    let (revision, total_keys) = block_on(async {
        let work = async {
            let mut c = cfg.connect(connect).await?;
            let count = c
                .get(
                    vec![0u8],
                    Some(
                        etcd_client::GetOptions::new()
                            .with_from_key()
                            .with_count_only(),
                    ),
                )
                .await
                .map_err(plain)?;
            let revision = count.header().map_or(0, |h| h.revision());
            let mut stream = c.snapshot().await.map_err(plain)?;
            while let Some(msg) = stream.message().await.map_err(plain)? {
                f.write_all(msg.blob())
                    .with_context(|| format!("writing {}", part.display()))?;
            }
            Ok::<_, anyhow::Error>((revision, count.count()))
        };
        tokio::time::timeout(limit, work).await.map_err(|_| {
            anyhow::anyhow!("the snapshot did not finish within {}s", limit.as_secs())
        })?
    })
    .map_err(|e| {
        let _ = std::fs::remove_file(&part);
        e.context(format!("etcd snapshot from {} failed", cfg.endpoint))
    })?;
    // Durability: the snapshot is on disk before its rename, the rename
    // (its dir) after.
    f.sync_all()?;
    drop(f);
    // One read gives the trailer check and the file's sha256.
    let snap = read_snapshot(&part)?;
    if let Err(msg) = snap.trailer {
        let _ = std::fs::remove_file(&part);
        bail!("the snapshot from {} is not valid: {msg}", cfg.endpoint);
    }
    let (sha256, size) = (snap.sha256, snap.size);
    std::fs::rename(&part, dest).with_context(|| format!("renaming {}", part.display()))?;
    if let Some(dir) = dest.parent() {
        crate::util::fsutil::fsync_dir(dir)?;
    }
    Ok(SnapshotInfo {
        size,
        sha256,
        revision,
        total_keys,
    })
}

/// The static pods whose resources `cluster-restore.sh` needs.
pub const STATIC_PODS: [&str; 4] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
];

/// The revision a live static-pod manifest refers to: the first
/// `/etc/kubernetes/static-pod-resources/<name>-pod-<N>` in it.
pub fn manifest_revision(manifest: &str, name: &str) -> Option<u32> {
    let needle = format!("/etc/kubernetes/static-pod-resources/{name}-pod-");
    let mut rest = manifest;
    while let Some(i) = rest.find(&needle) {
        let digits: String = rest[i + needle.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(n) = digits.parse() {
            return Some(n);
        }
        rest = &rest[i + needle.len()..];
    }
    None
}

/// The live revisions of the four static pods, from the manifests.
pub fn live_revisions(host: &Host) -> Result<BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    for name in STATIC_PODS {
        let p = host.path(format!("/etc/kubernetes/manifests/{name}-pod.yaml"));
        let text = std::fs::read_to_string(&p)
            .with_context(|| format!("reading the live static-pod manifest {}", p.display()))?;
        let rev = manifest_revision(&text, name).with_context(|| {
            format!(
                "{} does not refer to a static-pod-resources/{name}-pod-N dir",
                p.display()
            )
        })?;
        let dir = host.path(format!(
            "/etc/kubernetes/static-pod-resources/{name}-pod-{rev}"
        ));
        if !dir.is_dir() {
            bail!(
                "{} refers to {} which does not exist",
                p.display(),
                dir.display()
            );
        }
        out.insert(name.to_string(), rev);
    }
    Ok(out)
}

/// Write the gzip tarball of the live static-pod resources, members under
/// `static-pod-resources/`, mode 0600, as cluster-backup.sh does.
pub fn write_static_resources(
    host: &Host,
    revisions: &BTreeMap<String, u32>,
    dest: &std::path::Path,
) -> Result<(u64, String)> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dest)
        .with_context(|| format!("creating {}", dest.display()))?;
    let gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::default());
    let mut w = crate::archive::write::Walker::new(gz, false, None);
    for (name, rev) in revisions {
        let dir = format!("static-pod-resources/{name}-pod-{rev}");
        w.add_tree(&host.path(format!("/etc/kubernetes/{dir}")), dir.as_bytes())?;
    }
    let (gz, _) = w.finish()?;
    let f = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    let (sha, size) = crate::archive::file_sha256(dest)?;
    Ok((size, sha))
}

/// An etcd snapshot ends with the sha256 of everything before it. Checked
/// in the same single read that gives the file's own sha256 and size
/// (streamed: the snapshot may be gigabytes).
pub struct Snapshot {
    pub sha256: String,
    pub size: u64,
    /// The problem with the trailer, if any.
    pub trailer: Result<(), String>,
}

/// Read a snapshot once: its sha256, size and trailer check.
pub fn read_snapshot(p: &Path) -> std::io::Result<Snapshot> {
    let mut f = crate::archive::validate::open_regular(p)?;
    let len = f.metadata()?.len();
    let mut whole = Sha256::new();
    let mut body = Sha256::new();
    let body_len = if len >= 32 && len % 512 == 32 {
        len - 32
    } else {
        len
    };
    let mut tail = Vec::with_capacity(32);
    let mut seen = 0u64;
    let n = crate::archive::hash::each_chunk(&mut f, |chunk| {
        whole.update(chunk);
        let in_body = body_len.saturating_sub(seen).min(chunk.len() as u64) as usize;
        body.update(&chunk[..in_body]);
        tail.extend_from_slice(&chunk[in_body..]);
        tail.truncate(32);
        seen += chunk.len() as u64;
    })?;
    let trailer = if len < 32 || len % 512 != 32 {
        Err(format!(
            "{}: size {len} is not a snapshot with a sha256 trailer (size % 512 must be 32)",
            p.display()
        ))
    } else if n != len || body.finalize().as_slice() != tail.as_slice() {
        Err(format!(
            "{}: the sha256 trailer does not match the data",
            p.display()
        ))
    } else {
        Ok(())
    };
    Ok(Snapshot {
        sha256: hex::encode(whole.finalize()),
        size: n,
        trailer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_lines() {
        let v = parse_env("# c\nexport A=\"x y\"\nB='z'\nexport C=plain\n\n").unwrap();
        assert_eq!(v["A"], "x y");
        assert_eq!(v["B"], "z");
        assert_eq!(v["C"], "plain");
        assert!(parse_env("export =x\n").is_err());
        assert!(parse_env("garbage line\n").is_err());
    }

    #[test]
    fn revision_from_manifest() {
        let m = "  - {name: resource-dir, hostPath: {path: /etc/kubernetes/static-pod-resources/etcd-pod-3}}\n  x: /etc/kubernetes/static-pod-resources/etcd-pod-4\n";
        assert_eq!(manifest_revision(m, "etcd"), Some(3));
        assert_eq!(manifest_revision(m, "kube-apiserver"), None);
        assert_eq!(
            manifest_revision("/etc/kubernetes/static-pod-resources/etcd-pod-x /etc/kubernetes/static-pod-resources/etcd-pod-12", "etcd"),
            Some(12)
        );
    }
}
