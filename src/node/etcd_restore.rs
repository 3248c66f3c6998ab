//! The native etcd restore as OpenShift 4.18+ does it
//! (openshift/cluster-etcd-operator commit b4786ae3):
//! - `bindata/etcd/cluster-restore.sh`: move the etcd pod's manifest away and
//!   wait until all of `etcd etcdctl etcd-metrics etcd-readyz etcd-rev` have
//!   stopped (`wait_for_containers_to_stop` in `bindata/etcd/etcd-common-tools`);
//!   move `${ETCD_DATA_DIR}/member` to `/var/lib/etcd-backup`, move
//!   `revision.json` (`ETCD_REV_JSON="${ETCD_DATA_DIR}/revision.json"`) beside
//!   the snapshot, and every other entry of the data dir to
//!   `/var/lib/etcd-backup/extra-data-dir-contents`
//!   (`backup_remaining_etcd_data_dir_contents`): the restore needs an empty
//!   data dir.
//! - `bindata/etcd/restore-pod.yaml`: `etcdutl` when the image has it, else
//!   `etcdctl`; `snapshot restore --mark-compacted --bump-revision N` with N =
//!   `floor(maxRaftIndex * 1.2)` from `revision.json`, else 1,000,000,000 ("an
//!   etcd running at 1000 writes/s for about eleven days"), so that a client
//!   that saw a later revision than the snapshot's never watches a history
//!   that went backwards: its watch is refused as compacted. Then
//!   `revision.json` is copied back into the data dir for a second restore.
//! - `pkg/cmd/rev/rev.go`: `revision.json` is `{"clusterId", "raftIndex":
//!   {endpoint: index}, "maxRaftIndex", "created"}`, written by `etcd-rev`.

use crate::node::cmd::{self, Tools};
use crate::node::host::Host;
use anyhow::{bail, Result};
use serde::Deserialize;

/// The containers of the etcd static pod (cluster-restore.sh
/// `ETCD_STATIC_POD_CONTAINERS`).
pub const POD_CONTAINERS: [&str; 5] =
    ["etcd", "etcdctl", "etcd-metrics", "etcd-readyz", "etcd-rev"];
/// Written by the `etcd-rev` container.
pub const REV_JSON: &str = "/var/lib/etcd/revision.json";
/// Where cluster-restore.sh moves it, beside the snapshot.
pub const REV_JSON_SAVED: &str = "/var/lib/etcd-backup/revision.json";
/// Where cluster-restore.sh moves the data dir's other entries.
pub const EXTRAS: &str = "/var/lib/etcd-backup/extra-data-dir-contents";
/// The bump without `revision.json` (restore-pod.yaml).
pub const DEFAULT_BUMP: u64 = 1_000_000_000;

#[derive(Debug, Deserialize)]
struct RevisionJson {
    #[serde(rename = "maxRaftIndex")]
    max_raft_index: Option<u64>,
}

/// The bump from `revision.json`'s text: `floor(maxRaftIndex * 1.2)`
/// (jq's `(.maxRaftIndex*1.2|floor)`, in integers: 6/5 rounds the same).
pub fn bump_from_revision_json(text: &str) -> Result<u64> {
    let r: RevisionJson = serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("not the JSON etcd-rev writes: {e}"))?;
    match r.max_raft_index {
        Some(n) if n > 0 => Ok(((n as u128) * 6 / 5).min(u64::MAX as u128) as u64),
        _ => bail!("no maxRaftIndex in it"),
    }
}

/// The bump and where it came from, from `revision.json` (None: absent).
/// A malformed file gives the default bump too, said in the reason: the
/// restore pod's jq would fail there and leave etcd down; a bump larger
/// than needed only skips revision numbers.
pub fn bump(rev_json: Option<&str>) -> (u64, String) {
    match rev_json {
        None => (
            DEFAULT_BUMP,
            format!("no {REV_JSON}: the restore pod's default"),
        ),
        Some(t) => match bump_from_revision_json(t) {
            Ok(n) => (n, format!("maxRaftIndex of {REV_JSON} * 1.2")),
            Err(e) => (
                DEFAULT_BUMP,
                format!("{REV_JSON} is malformed ({e:#}): the restore pod's default"),
            ),
        },
    }
}

/// Whether `snapshot restore --help` offers both flags the restore pod uses.
pub fn help_has_bump(help: &str) -> bool {
    help.contains("--bump-revision") && help.contains("--mark-compacted")
}

/// The program the restore pod would use (`etcdutl` when present, else
/// `etcdctl`), checked for `--bump-revision` and `--mark-compacted`; an
/// error says why not and which mode works.
pub fn restore_tool(host: &Host, tools: &Tools) -> Result<&'static str> {
    let mut seen = Vec::new();
    for prog in ["etcdutl", "etcdctl"] {
        if !tools.has(prog) {
            continue;
        }
        let mut c = tools.command(prog)?;
        c.env("ETCDCTL_API", "3")
            .args(["snapshot", "restore", "--help"]);
        let out = cmd::output(&mut c)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if help_has_bump(&text) {
            return Ok(prog);
        }
        let mut v = tools.command(prog)?;
        v.arg("version");
        let version = cmd::output(&mut v)
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default();
        seen.push(format!("{prog} ({})", version.trim()));
    }
    bail!(
        "the native etcd restore restores as OpenShift's restore pod does, with `snapshot restore --mark-compacted --bump-revision`, so that clients that saw revisions after the backup do not watch a history that went backwards; {} on this node {}; nothing was changed. Install an etcdutl or etcdctl of etcd 3.5 or later on PATH, or run `{}`, which uses the node's /usr/local/bin/cluster-restore.sh and its restore pod",
        if seen.is_empty() {
            "neither etcdutl nor etcdctl is".to_string()
        } else {
            seen.join(" and ")
        },
        if seen.is_empty() {
            "found"
        } else {
            "lack those flags (etcd 3.4 and older)"
        },
        host.cmd("restore --etcd-restore=script")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// revision.json as etcd-rev writes it (pkg/cmd/rev/rev.go), and what
    /// the restore pod's jq gives: floor(maxRaftIndex * 1.2).
    #[test]
    fn bump_as_the_restore_pod_computes_it() {
        let t = r#"{"clusterId":15118495548433857066,"raftIndex":{"https://10.0.0.5:2379":123457},"maxRaftIndex":123457,"created":"2026-12-05 03:00:00 +0000 UTC"}"#;
        assert_eq!(bump_from_revision_json(t).unwrap(), 148148);
        assert_eq!(bump(Some(t)).0, 148148);
        assert_eq!(bump(None).0, 1_000_000_000);
        for bad in [
            "",
            "{",
            "[]",
            r#"{"maxRaftIndex":"x"}"#,
            r#"{"maxRaftIndex":-1}"#,
            "{}",
        ] {
            assert!(bump_from_revision_json(bad).is_err(), "{bad}");
            let (n, why) = bump(Some(bad));
            assert_eq!(n, DEFAULT_BUMP);
            assert!(why.contains("malformed"), "{why}");
        }
        assert_eq!(bump_from_revision_json(r#"{"maxRaftIndex":5}"#).unwrap(), 6);
    }

    #[test]
    fn restore_help_of_each_etcd() {
        // etcdutl 3.5 and etcdctl 3.5 list both; etcdctl 3.4 neither.
        assert!(help_has_bump(
            "      --bump-revision uint   How much\n      --mark-compacted   Mark"
        ));
        assert!(!help_has_bump(
            "      --data-dir=\"\"  Path to the data directory\n      --skip-hash-check[=false]"
        ));
        assert!(!help_has_bump("--bump-revision only"));
    }
}
