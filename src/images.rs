//! Container images in the backup (opt-in): copied by the node's own
//! `skopeo` from its containers-storage into an OCI layout under the backup
//! dir (`images/`), digests preserved, each blob stored once; and back.

use crate::cmd::{self, Tools};
use crate::host::Host;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DIR: &str = crate::store::layout::IMAGES;
const STORAGE_CONF: &str = "/etc/containers/storage.conf";

/// The `[storage]` table of `storage.conf` (pure parser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConf {
    pub driver: String,
    pub graphroot: String,
    pub runroot: String,
}

pub fn parse_storage_conf(text: &str) -> Result<StorageConf> {
    let mut table = String::new();
    let mut kv = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            table = line.trim_matches(['[', ']']).trim().to_string();
            continue;
        }
        if table != "storage" {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            bail!("line {}: expected key = \"value\", found {raw:?}", n + 1);
        };
        kv.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
    }
    let get = |k: &str| {
        kv.get(k)
            .cloned()
            .with_context(|| format!("[storage] has no {k}"))
    };
    Ok(StorageConf {
        driver: get("driver")?,
        graphroot: get("graphroot")?,
        runroot: get("runroot")?,
    })
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
}

impl Store {
    /// The node's container storage as its storage.conf says, under the root.
    pub fn open(host: &Host) -> Result<Store> {
        let p = host.path(STORAGE_CONF);
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let c = parse_storage_conf(&text).with_context(|| format!("in {}", p.display()))?;
        Ok(Store {
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
    let out = cmd::run_text(tools.command("crictl")?.args(["ps", "-o", "json"]))?;
    let v: serde_json::Value =
        serde_json::from_str(&out).context("crictl ps -o json: malformed JSON")?;
    let mut refs: Vec<String> = v["containers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c["image"]["image"].as_str().map(str::to_string))
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

/// Copy the images into `<staging>/images`, once per digest.
pub fn save(host: &Host, tools: &Tools, refs: &[String], staging: &Path) -> Result<Vec<Image>> {
    let store = Store::open(host)?;
    let layout = staging.join(DIR);
    let mut out: Vec<Image> = Vec::new();
    for r in refs {
        let inspect = cmd::run_text(tools.command("skopeo")?.args(["inspect", &store.image(r)]))
            .with_context(|| format!("the image {r} is not in the node's container storage"))?;
        let digest = serde_json::from_str::<serde_json::Value>(&inspect)?["Digest"]
            .as_str()
            .context("skopeo inspect: no Digest")?
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
pub fn verify(dir: &Path, images: &[Image]) -> Vec<String> {
    let layout = dir.join(DIR);
    let mut problems = Vec::new();
    let blobs = layout.join("blobs/sha256");
    match std::fs::read_dir(&blobs) {
        Err(e) => problems.push(format!("{}: {e}", blobs.display())),
        Ok(rd) => {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                match crate::verify::file_sha256(&e.path()) {
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
pub fn load(host: &Host, tools: &Tools, dir: &Path, images: &[Image]) -> Result<()> {
    let store = Store::open(host)?;
    let layout = dir.join(DIR);
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_conf() {
        let c = parse_storage_conf(
            "# c\n[storage]\ndriver = \"overlay\"\nrunroot = \"/run/containers/storage\"\ngraphroot = \"/var/lib/containers/storage\"\n[storage.options]\nadditionalimagestores = []\n",
        )
        .unwrap();
        assert_eq!(c.driver, "overlay");
        assert_eq!(c.graphroot, "/var/lib/containers/storage");
        assert!(parse_storage_conf("[storage]\ndriver = \"vfs\"\n").is_err());
        assert_eq!(
            layout_name("quay.io/a/b:c@sha256:1"),
            "quay.io_a_b_c_sha256_1"
        );
    }
}
