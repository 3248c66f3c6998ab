//! etcd: the node's `etcd.env` (pure parser), its TLS client settings, and a
//! health probe of the local member.

use crate::host::Host;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
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
        .map_err(|_| anyhow::anyhow!("no answer within {}s", timeout.as_secs()))??;
        Ok(client)
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
            .map_err(|_| anyhow::anyhow!("no answer within {}s", timeout.as_secs()))??;
        Ok(MemberStatus {
            version: st.version().to_string(),
            db_size: st.db_size(),
            revision: st.header().map_or(0, |h| h.revision()),
        })
    })
    .with_context(|| format!("etcd at {} does not answer", cfg.endpoint))
}
