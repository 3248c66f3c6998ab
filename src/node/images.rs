//! Container images in the backup (opt-in): copied by the node's own
//! `skopeo` from its containers-storage into an OCI layout under the backup
//! dir (`images/`, named by the store's layout), digests preserved, each
//! blob stored once; and back. Every function here takes that OCI layout dir.

use crate::node::cmd::{self, Tools};
use crate::node::host::Host;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where containers/storage looks for its configuration, in order, as read in
/// containers/storage `types/options.go` (`init`: `CONTAINERS_STORAGE_CONF`
/// replaces the override path, which is used when it exists, else the system
/// file) and `types/options_linux.go` (`defaultOverrideConfigFile`,
/// `defaultConfigFile`, `defaultRunRoot`, `defaultGraphRoot`).
pub const STORAGE_CONF_ENV: &str = "CONTAINERS_STORAGE_CONF";
pub const STORAGE_CONF: &str = "/etc/containers/storage.conf";
pub const STORAGE_CONF_SYSTEM: &str = "/usr/share/containers/storage.conf";
pub const DEFAULT_DRIVER: &str = "overlay";
pub const DEFAULT_GRAPHROOT: &str = "/var/lib/containers/storage";
pub const DEFAULT_RUNROOT: &str = "/run/containers/storage";

/// The `[storage]` table of `storage.conf` (pure parser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConf {
    pub driver: String,
    pub graphroot: String,
    pub runroot: String,
}

impl Default for StorageConf {
    /// containers/storage's built-in defaults when no file exists.
    fn default() -> Self {
        StorageConf {
            driver: DEFAULT_DRIVER.into(),
            graphroot: DEFAULT_GRAPHROOT.into(),
            runroot: DEFAULT_RUNROOT.into(),
        }
    }
}

/// Parse the `[storage]` table. Keys it does not set keep the built-in
/// defaults (as `ReloadConfigurationFile` does for runroot and graphroot;
/// an empty driver is the default `overlay`, `overlay2` is `overlay`).
/// Anything that is not TOML key = value in that table is an error: a
/// file the node cannot read either would put images in the wrong place.
pub fn parse_storage_conf(text: &str) -> Result<StorageConf> {
    let mut table = String::new();
    let mut c = StorageConf::default();
    // Open `[` of a multi-line array value (`additionalimagestores = [`).
    let mut depth = 0i32;
    for (n, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if depth > 0 {
            depth += brackets(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let rest = rest.strip_prefix('[').unwrap_or(rest);
            let Some((name, _)) = rest.split_once(']') else {
                bail!("line {}: unterminated table header {line}", n + 1);
            };
            table = name.trim().to_string();
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            bail!("line {}: expected key = value, found {line}", n + 1);
        };
        let k = k.trim();
        let v = v.trim();
        if v.is_empty() {
            bail!("line {}: {k} has no value", n + 1);
        }
        depth = brackets(v).max(0);
        if table != "storage" {
            continue;
        }
        let slot = match k {
            "driver" => &mut c.driver,
            "graphroot" => &mut c.graphroot,
            "runroot" => &mut c.runroot,
            _ => continue,
        };
        let quoted = v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')));
        if !quoted {
            bail!("line {}: {k} must be a quoted string, found {v}", n + 1);
        }
        let v = &v[1..v.len() - 1];
        if !v.is_empty() {
            *slot = v.to_string();
        }
    }
    if depth > 0 {
        bail!("an array is not closed with ]");
    }
    if c.driver == "overlay2" {
        c.driver = DEFAULT_DRIVER.into();
    }
    for (k, v) in [("graphroot", &c.graphroot), ("runroot", &c.runroot)] {
        if !v.starts_with('/') {
            bail!("{k} must be an absolute path, found {v}");
        }
    }
    Ok(c)
}

/// `[` minus `]` outside quoted strings.
fn brackets(s: &str) -> i32 {
    let mut quote: Option<char> = None;
    let mut d = 0;
    for ch in s.chars() {
        match (quote, ch) {
            (None, '"' | '\'') => quote = Some(ch),
            (Some(q), c) if c == q => quote = None,
            (None, '[') => d += 1,
            (None, ']') => d -= 1,
            _ => {}
        }
    }
    d
}

/// The line without a `#` comment outside a quoted string.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    for (i, ch) in line.char_indices() {
        match (quote, ch) {
            (None, '#') => return &line[..i],
            (None, '"' | '\'') => quote = Some(ch),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    line
}

/// Which storage configuration the node's containers/storage would use:
/// the file (None: built-in defaults) and its settings.
pub fn storage_conf(host: &Host) -> Result<(Option<PathBuf>, StorageConf)> {
    storage_conf_with(host, std::env::var_os(STORAGE_CONF_ENV).map(PathBuf::from))
}

/// As [`storage_conf`], with the value of `CONTAINERS_STORAGE_CONF` given.
pub fn storage_conf_with(
    host: &Host,
    env: Option<PathBuf>,
) -> Result<(Option<PathBuf>, StorageConf)> {
    let over = env.unwrap_or_else(|| PathBuf::from(STORAGE_CONF));
    for candidate in [host.path(&over), host.path(STORAGE_CONF_SYSTEM)] {
        let bytes = match std::fs::read(&candidate) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", candidate.display())),
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", candidate.display()))?;
        let c = parse_storage_conf(&text).with_context(|| {
            format!(
                "{} is malformed; fix it (containers/storage cannot read it either) and run the command again",
                candidate.display()
            )
        })?;
        return Ok((Some(candidate), c));
    }
    Ok((None, StorageConf::default()))
}

/// One image in the backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Image {
    /// As the node knows it, e.g. quay.io/...:tag.
    pub reference: String,
    /// Manifest digest (preserved through the copies).
    pub digest: String,
    /// Name in the OCI layout (`images:<name>`).
    pub name: String,
    /// Bytes of its config and layers.
    pub size: u64,
}

pub struct Store {
    transport: String,
    /// The graphroot under the root, synced after images are put back.
    pub graphroot: PathBuf,
}

impl Store {
    /// The node's container storage as its storage.conf says, under the root.
    pub fn open(host: &Host) -> Result<Store> {
        let (file, c) = storage_conf(host)?;
        log::info!(
            "container storage: {} {} (from {})",
            c.driver,
            c.graphroot,
            file.map_or("the built-in defaults".into(), |f| f.display().to_string())
        );
        Ok(Store {
            graphroot: host.path(&c.graphroot),
            transport: format!(
                "containers-storage:[{}@{}+{}]",
                c.driver,
                host.path(&c.graphroot).display(),
                host.path(&c.runroot).display()
            ),
        })
    }
    pub fn image(&self, reference: &str) -> String {
        format!("{}{reference}", self.transport)
    }
}

/// The image references of the node's running containers.
pub fn running(tools: &Tools) -> Result<Vec<String>> {
    let mut refs: Vec<String> = crate::node::crictl::Crictl::new(tools)
        .ps()?
        .iter()
        .filter_map(|c| c.image_ref().map(str::to_string))
        .filter(|r| !r.is_empty())
        .collect();
    refs.sort();
    refs.dedup();
    Ok(refs)
}

fn layout_name(reference: &str) -> String {
    reference
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn index(layout: &Path) -> Result<serde_json::Value> {
    let p = layout.join("index.json");
    serde_json::from_str(
        &std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
    )
    .with_context(|| format!("{} is not JSON", p.display()))
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs").join(digest.replace(':', "/"))
}

/// Copy the images into the OCI layout `oci`, once per digest.
pub fn save(host: &Host, tools: &Tools, refs: &[String], oci: &Path) -> Result<Vec<Image>> {
    let store = Store::open(host)?;
    let layout = oci.to_path_buf();
    let mut out: Vec<Image> = Vec::new();
    for r in refs {
        let inspect = cmd::run_text(tools.command("skopeo")?.args(["inspect", &store.image(r)]))
            .with_context(|| format!("the image {r} is not in the node's container storage"))?;
        let digest = serde_json::from_str::<serde_json::Value>(&inspect)
            .with_context(|| format!("`skopeo inspect` of {r} did not print JSON"))?["Digest"]
            .as_str()
            .with_context(|| format!("`skopeo inspect` of {r} printed no Digest"))?
            .to_string();
        if out.iter().any(|i| i.digest == digest) {
            continue;
        }
        let name = layout_name(r);
        cmd::run(tools.command("skopeo")?.args([
            "copy",
            "-q",
            "--preserve-digests",
            &store.image(r),
            &format!("oci:{}:{name}", layout.display()),
        ]))?;
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(&layout, &digest))?)?;
        let size = m["config"]["size"].as_u64().unwrap_or(0)
            + m["layers"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|l| l["size"].as_u64())
                .sum::<u64>();
        out.push(Image {
            reference: r.clone(),
            digest,
            name,
            size,
        });
    }
    Ok(out)
}

/// Every blob matches its digest, every recorded image is in the index.
pub fn verify(oci: &Path, images: &[Image]) -> Vec<String> {
    let layout = oci.to_path_buf();
    let mut problems = Vec::new();
    let blobs = layout.join("blobs/sha256");
    match std::fs::read_dir(&blobs) {
        Err(e) => problems.push(format!("{}: {e}", blobs.display())),
        Ok(rd) => {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                match crate::archive::file_sha256(&e.path()) {
                    Ok((h, _)) if h == name => {}
                    Ok((h, _)) => {
                        problems.push(format!("{}: content has sha256 {h}", e.path().display()))
                    }
                    Err(err) => problems.push(format!("{}: {err}", e.path().display())),
                }
            }
        }
    }
    match index(&layout) {
        Err(e) => problems.push(format!("{e:#}")),
        Ok(idx) => {
            for i in images {
                let listed = idx["manifests"]
                    .as_array()
                    .is_some_and(|ms| ms.iter().any(|m| m["digest"] == i.digest.as_str()));
                if !listed || !blob(&layout, &i.digest).exists() {
                    problems.push(format!(
                        "image {} ({}) is missing from {}",
                        i.reference,
                        i.digest,
                        layout.display()
                    ));
                }
            }
        }
    }
    problems
}

/// Put the images back into the node's container storage (idempotent).
pub fn load(host: &Host, tools: &Tools, oci: &Path, images: &[Image]) -> Result<()> {
    if images.is_empty() {
        // Nothing to put back: the node's storage configuration is not read.
        log::info!("the backup holds no container images: nothing to put back");
        return Ok(());
    }
    let store = Store::open(host)?;
    let layout = oci.to_path_buf();
    for i in images {
        cmd::run(tools.command("skopeo")?.args([
            "copy",
            "-q",
            "--preserve-digests",
            &format!("oci:{}:{}", layout.display(), i.name),
            &store.image(&i.reference),
        ]))
        .with_context(|| format!("putting back the image {}", i.reference))?;
    }
    // Durable before the journal says restore-images is done: skopeo does
    // not sync what it wrote.
    crate::util::durable::fs_of("restore-images", &store.graphroot)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_conf() {
        let c = parse_storage_conf(
            "# c\n[storage]\ndriver = \"overlay\"\nrunroot = \"/run/containers/storage\"\ngraphroot = \"/var/lib/containers/storage\" # x\n[storage.options]\nadditionalimagestores = [\n  \"/a\",\n]\n[storage.options.overlay]\nmountopt = \"nodev\"\n",
        )
        .unwrap();
        assert_eq!(c.driver, "overlay");
        assert_eq!(c.graphroot, "/var/lib/containers/storage");
        assert_eq!(
            layout_name("quay.io/a/b:c@sha256:1"),
            "quay.io_a_b_c_sha256_1"
        );
    }

    #[test]
    fn storage_conf_defaults_fill_what_is_not_set() {
        // Upstream: runroot/graphroot keep their defaults when unset; an
        // empty driver is the default; overlay2 is overlay.
        let c = parse_storage_conf("[storage]\ndriver = \"vfs\"\n").unwrap();
        assert_eq!(c.driver, "vfs");
        assert_eq!(c.graphroot, DEFAULT_GRAPHROOT);
        assert_eq!(c.runroot, DEFAULT_RUNROOT);
        let c = parse_storage_conf("[storage]\ndriver = \"\"\n").unwrap();
        assert_eq!(c, StorageConf::default());
        let c = parse_storage_conf("[storage]\ndriver = \"overlay2\"\n").unwrap();
        assert_eq!(c.driver, "overlay");
        assert_eq!(parse_storage_conf("").unwrap(), StorageConf::default());
        let c = parse_storage_conf("[storage]\ngraphroot = \"/x#y\"\n").unwrap();
        assert_eq!(c.graphroot, "/x#y");
    }

    #[test]
    fn storage_conf_malformed() {
        for bad in [
            "[storage\ndriver = \"vfs\"\n",
            "[storage]\ndriver vfs\n",
            "[storage]\ndriver = vfs\n",
            "[storage]\ndriver = \"vfs\n",
            "[storage]\ngraphroot = \"relative/path\"\n",
            "[storage]\ndriver =\n",
            "[storage.options]\nadditionalimagestores = [\n\"/a\",\n",
        ] {
            assert!(parse_storage_conf(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn storage_conf_fallback_order() {
        let root = std::env::temp_dir().join(format!("ur-storage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let host = Host::new(&root, Path::new("/var/recovery")).unwrap();
        let write = |p: &str, t: &str| {
            let p = host.path(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        // Absent everywhere: the built-in defaults.
        let (f, c) = storage_conf_with(&host, None).unwrap();
        assert_eq!((f, c), (None, StorageConf::default()));
        // Only the system file.
        write(STORAGE_CONF_SYSTEM, "[storage]\ndriver = \"vfs\"\n");
        let (f, c) = storage_conf_with(&host, None).unwrap();
        assert_eq!(f, Some(host.path(STORAGE_CONF_SYSTEM)));
        assert_eq!(c.driver, "vfs");
        // /etc overrides it.
        write(STORAGE_CONF, "[storage]\ndriver = \"btrfs\"\n");
        let (f, c) = storage_conf_with(&host, None).unwrap();
        assert_eq!(f, Some(host.path(STORAGE_CONF)));
        assert_eq!(c.driver, "btrfs");
        // CONTAINERS_STORAGE_CONF replaces /etc's file when it exists...
        write("/tmp/s.conf", "[storage]\ngraphroot = \"/g\"\n");
        let (f, c) = storage_conf_with(&host, Some("/tmp/s.conf".into())).unwrap();
        assert_eq!(f, Some(host.path("/tmp/s.conf")));
        assert_eq!((c.driver.as_str(), c.graphroot.as_str()), ("overlay", "/g"));
        // ...and when it does not, the system file is next (not /etc's).
        let (f, _) = storage_conf_with(&host, Some("/tmp/none.conf".into())).unwrap();
        assert_eq!(f, Some(host.path(STORAGE_CONF_SYSTEM)));
        // Malformed: an error naming the file, no guess.
        write(STORAGE_CONF, "[storage\n");
        let e = format!("{:#}", storage_conf_with(&host, None).unwrap_err());
        assert!(
            e.contains("etc/containers/storage.conf is malformed"),
            "{e}"
        );
        std::fs::write(host.path(STORAGE_CONF), b"\xff\xfe").unwrap();
        let e = format!("{:#}", storage_conf_with(&host, None).unwrap_err());
        assert!(e.contains("not UTF-8"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
