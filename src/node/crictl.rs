//! The node's containers through `crictl`: a typed container list (parsed
//! by a pure function, tested on generated JSON), the ids of the containers
//! with a label, and removing every pod.

use crate::node::cmd::{self, Tools};
use crate::util::json::lenient;
use anyhow::{Context, Result};
use serde::Deserialize;

/// One entry of `crictl ps -o json` (the fields the tool reads).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Container {
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub metadata: Option<Metadata>,
    #[serde(default, deserialize_with = "lenient")]
    pub image: Option<ImageSpec>,
    /// `CONTAINER_RUNNING`, `CONTAINER_EXITED`, ...
    #[serde(default, deserialize_with = "lenient")]
    pub state: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Metadata {
    #[serde(default, deserialize_with = "lenient")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ImageSpec {
    /// The image reference the container runs.
    #[serde(default, deserialize_with = "lenient")]
    pub image: Option<String>,
}

impl Container {
    pub fn name(&self) -> &str {
        self.metadata
            .as_ref()
            .and_then(|m| m.name.as_deref())
            .unwrap_or_default()
    }
    pub fn image_ref(&self) -> Option<&str> {
        self.image.as_ref().and_then(|i| i.image.as_deref())
    }
    /// Running, or no state given.
    pub fn running(&self) -> bool {
        self.state
            .as_deref()
            .is_none_or(|s| s == "CONTAINER_RUNNING")
    }
}

#[derive(Deserialize)]
struct PsList {
    #[serde(default)]
    containers: Option<Vec<Container>>,
}

/// Parse `crictl ps -o json`.
pub fn parse_ps(json: &str) -> Result<Vec<Container>> {
    let l: PsList = serde_json::from_str(json).context("crictl ps -o json: malformed JSON")?;
    Ok(l.containers.unwrap_or_default())
}

/// `crictl` on the node.
#[derive(Clone, Copy)]
pub struct Crictl<'a> {
    tools: &'a Tools,
}

impl<'a> Crictl<'a> {
    pub fn new(tools: &'a Tools) -> Self {
        Crictl { tools }
    }

    /// `crictl ps -o json`: the running containers.
    pub fn ps(&self) -> Result<Vec<Container>> {
        parse_ps(&cmd::run_text(
            self.tools.command("crictl")?.args(["ps", "-o", "json"]),
        )?)
    }

    /// `crictl ps -a -o json` as crictl wrote it (every container, for
    /// the report).
    pub fn ps_all_raw(&self) -> Result<String> {
        cmd::run_text(
            self.tools
                .command("crictl")?
                .args(["ps", "-a", "-o", "json"]),
        )
    }

    /// `crictl ps --label <label> -q`: the ids of the running containers
    /// with that label.
    pub fn ids_labelled(&self, label: &str) -> Result<Vec<String>> {
        let out = cmd::run_text(
            self.tools
                .command("crictl")?
                .args(["ps", "--label", label, "-q"]),
        )?;
        Ok(out.split_whitespace().map(str::to_string).collect())
    }

    /// `crictl rmp -fa`: stop and remove every pod.
    pub fn remove_all_pods(&self) -> Result<()> {
        cmd::run(self.tools.command("crictl")?.args(["rmp", "-fa"])).map(drop)
    }
}

#[cfg(test)]
mod tests {
    /// An entry with a field of another shape keeps the rest of the list
    /// (the untyped reads skipped such a field too).
    #[test]
    fn a_field_of_another_shape_does_not_fail_the_list() {
        let l = parse_ps(
            r#"{"containers":[{"id":"a","image":"quay.io/x","metadata":{"name":"etcd"},"state":"CONTAINER_RUNNING"},{"id":"b","metadata":{"name":7}}]}"#,
        )
        .unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].name(), l[0].image_ref()), ("etcd", None));
        assert_eq!(l[1].name(), "");
        assert!(parse_ps("{").is_err());
    }

    use super::*;

    #[test]
    fn ps_json_as_crictl_writes_it() {
        let j = r#"{"containers":[
            {"id":"a1","metadata":{"name":"etcd","attempt":0},"image":{"image":"quay.io/x@sha256:1"},"state":"CONTAINER_RUNNING"},
            {"id":"b2","metadata":{"name":"old"},"state":"CONTAINER_EXITED"},
            {"metadata":{}}]}"#;
        let cs = parse_ps(j).unwrap();
        assert_eq!(cs.len(), 3);
        assert_eq!(cs[0].name(), "etcd");
        assert_eq!(cs[0].id.as_deref(), Some("a1"));
        assert_eq!(cs[0].image_ref(), Some("quay.io/x@sha256:1"));
        assert!(cs[0].running());
        assert!(!cs[1].running());
        assert_eq!(cs[2].name(), "");
        assert!(cs[2].running() && cs[2].id.is_none() && cs[2].image_ref().is_none());
        assert!(parse_ps("{}").unwrap().is_empty());
        assert!(parse_ps(r#"{"containers":null}"#).unwrap().is_empty());
        let e = parse_ps("[").unwrap_err();
        assert!(format!("{e:#}").starts_with("crictl ps -o json: malformed JSON"));
    }
}
