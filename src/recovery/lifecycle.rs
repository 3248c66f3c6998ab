//! The lifecycle rule, in one place: whether a new backup may replace the
//! current one, and whether a recovery from it is already done. A pure
//! function ([`decide`]) over the facts ([`Facts`]); [`gather`] reads them.
//!
//! Facts: what the backup was taken from (its manifest: time, the pinned
//! deployment, the newest ClusterVersion history entry; for TALM's
//! layout only its time), the cluster's history now (`oc get clusterversion
//! version -o json`; openshift/api `config/v1/types_cluster_version.go`:
//! `status.history[]` newest first, `state` Completed or Partial,
//! `startedTime`, `completionTime`), the last completed recovery from this
//! backup (`last-recovery.json`), and the OS deployments.
//!
//! | the cluster says, of the upgrades started after the backup | a new backup | restore |
//! |---|---|---|
//! | none, or every one Completed                    | replaces it        | runs (unless recovered) |
//! | one not Completed, no recovery since it started | refused            | runs |
//! | one not Completed, a recovery completed after   | replaces it        | refused: done (`--again`) |
//! | the same, then upgrades started after the recovery, all Completed | replaces it | runs (the upgrade completed) |
//! | the API does not answer: decided from the deployments, and said so ||
//! | the booted one is the pinned one, no other deployed | replaces it    | runs (unless recovered) |
//! | the pinned one booted, a recovery completed     | replaces it        | refused: done (`--again`) |
//! | anything else (another OS booted, another deployed, the pinned one gone) | refused | runs |
//!
//! Before all of it: while a recovery is under way in another backup dir
//! (`super::elsewhere`: `/var/*/`, the auto-resume unit's `--dir`, the
//! record of backup dirs), no backup is taken and no other recovery
//! starts: exit 3, naming that dir and the command that continues it. A
//! backup now would capture a half-restored node (etcd stopped, kubelet
//! disabled) and undeploy what the recovery needs; a second recovery
//! would restore over the first.
//!
//! A staged deployment (the MCD is mid-update: ostree-finalize-staged
//! writes it at shutdown) refuses any backup, override or not: undeploying
//! it drops `/run/ostree/staged-deployment` (ostreedev/ostree
//! `src/libostree/ostree-sysroot-deploy.c`) and the MCD's reboot would come
//! back on the old OS.

use crate::node::cmd::Tools;
use crate::node::host::Host;
use crate::node::oc::{self, HistoryEntry};
use crate::node::ostree::{DeploymentId, OsState};
use crate::store::journal::LastRecovery;
use crate::store::manifest::Manifest;
use crate::util::fsutil;
use serde::Serialize;

/// Which backup the rule is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// This tool's backup: the manifest's facts.
    Ours {
        created: i64,
        pinned: Option<DeploymentId>,
        /// The newest ClusterVersion history entry then (None: an older
        /// manifest, or the API did not answer).
        newest: Option<HistoryEntry>,
    },
    /// TALM's upgrade-recovery.sh layout: only its time is known.
    Talm { created: i64 },
}

impl Taken {
    fn created(&self) -> i64 {
        match self {
            Taken::Ours { created, .. } | Taken::Talm { created } => *created,
        }
    }
    fn pinned(&self) -> Option<&DeploymentId> {
        match self {
            Taken::Ours { pinned, .. } => pinned.as_ref(),
            Taken::Talm { .. } => None,
        }
    }
}

/// What the API said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cluster {
    History(Vec<HistoryEntry>),
    /// `oc` failed or timed out: why.
    Unknown(String),
}

#[derive(Debug, Clone)]
pub struct Facts {
    /// None: no backup (nothing to replace).
    pub backup: Option<Taken>,
    pub cluster: Cluster,
    /// The version the cluster reconciles to (`status.desired.version`).
    pub cluster_version: Option<String>,
    /// The last completed recovery from this backup: when (Unix time).
    pub recovered_at: Option<i64>,
    pub os: Option<OsState>,
    /// A recovery under way in another backup dir (that dir, on the node).
    pub under_way: Option<String>,
}

impl Facts {
    /// The facts when a recovery is under way in `dir`: nothing else is
    /// read (the rule refuses on that alone, before any other read).
    pub fn recovery_under_way(dir: String) -> Facts {
        Facts {
            backup: None,
            cluster: Cluster::Unknown("not asked: a recovery is under way".into()),
            cluster_version: None,
            recovered_at: None,
            os: None,
            under_way: Some(dir),
        }
    }
}

/// Since the backup, as far as the facts tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "since", rename_all = "kebab-case")]
pub enum Since {
    NoBackup,
    /// No upgrade started after the backup.
    NoUpgrade,
    /// Every upgrade started after it Completed (newest first).
    Completed {
        versions: Vec<String>,
    },
    /// An upgrade started after it did not complete, no recovery since.
    Failed {
        upgrade: String,
    },
    /// A recovery from it completed after the last failed upgrade (or, the
    /// API down, with the pinned OS booted).
    Recovered,
    /// The API did not answer and the deployments cannot tell.
    Unknown,
    /// A recovery is under way in another backup dir.
    RecoveryUnderWay {
        dir: String,
    },
}

/// The rule's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub since: Since,
    /// A new backup may replace the current one.
    pub may_replace: bool,
    /// A recovery from this backup completed and nothing failed since:
    /// `restore` would only put the old state back again.
    pub recovered: bool,
    /// Decided from the deployments: the API did not answer.
    pub fallback: bool,
    /// A staged deployment (the MCD is mid-update): no backup now.
    pub staged: Option<String>,
    /// A recovery is under way in this other dir: no backup, no other
    /// recovery (exit 3).
    pub under_way: Option<String>,
    /// Why, in a sentence.
    pub reason: String,
    /// The facts read, one per line, as the messages list them.
    pub facts: Vec<String>,
}

/// The rule. Pure: the same facts, the same verdict.
pub fn decide(f: &Facts) -> Verdict {
    if let Some(dir) = &f.under_way {
        return Verdict {
            since: Since::RecoveryUnderWay { dir: dir.clone() },
            may_replace: false,
            recovered: false,
            fallback: false,
            staged: None,
            reason: format!("a recovery is under way in {dir}"),
            facts: vec![format!(
                "{dir}: a recovery journal (or a restore holding its lock)"
            )],
            under_way: Some(dir.clone()),
        };
    }
    let mut facts = Vec::new();
    // Listed `(staged)` on a booted host, else recorded in
    // /run/ostree/staged-deployment (`OsState::staged`).
    let staged = f.os.as_ref().and_then(OsState::staged);
    match &f.backup {
        None => facts.push("backup: none".into()),
        Some(Taken::Talm { created }) => facts.push(format!(
            "backup: taken by TALM's upgrade-recovery.sh at {}",
            fsutil::rfc3339(*created)
        )),
        Some(Taken::Ours {
            created,
            pinned,
            newest,
        }) => facts.push(format!(
            "backup: taken at {}, pinned {}, the cluster's newest update then: {}",
            fsutil::rfc3339(*created),
            pinned
                .as_ref()
                .map_or("nothing".into(), ToString::to_string),
            newest
                .as_ref()
                .map_or("not recorded".into(), HistoryEntry::describe)
        )),
    }
    if let Some(t) = f.recovered_at {
        facts.push(format!(
            "a recovery from this backup completed at {}",
            fsutil::rfc3339(t)
        ));
    }
    let (since, fallback) = match (&f.backup, &f.cluster) {
        (None, _) => (Since::NoBackup, false),
        (Some(b), Cluster::History(h)) => {
            let since = from_history(b, h, f.recovered_at, &mut facts);
            (since, false)
        }
        (Some(b), Cluster::Unknown(why)) => {
            facts.push(format!("the cluster's API did not answer ({why})"));
            (from_deployments(b, f, &mut facts), true)
        }
    };
    let recovered = since == Since::Recovered;
    let mut may_replace = matches!(
        since,
        Since::NoBackup | Since::NoUpgrade | Since::Completed { .. } | Since::Recovered
    );
    let mut reason = match &since {
        Since::NoBackup => "there is no backup to replace".to_string(),
        Since::NoUpgrade => "no upgrade started after the backup".into(),
        Since::Completed { versions } => format!(
            "every upgrade started after the backup completed ({})",
            versions.join(", ")
        ),
        Since::Failed { upgrade } => format!(
            "the upgrade to {upgrade} started after the backup and did not complete, and no recovery completed since: the backup is the way back"
        ),
        Since::Recovered => {
            "a recovery from this backup completed after the last failed upgrade".into()
        }
        Since::Unknown => {
            "the API did not answer and the deployments cannot tell whether an upgrade failed since the backup".into()
        }
        Since::RecoveryUnderWay { dir } => format!("a recovery is under way in {dir}"),
    };
    if fallback {
        reason = format!("{reason} (decided from the OS deployments: the API did not answer)");
    }
    if let Some(s) = &staged {
        may_replace = false;
        facts.push(format!("staged deployment: {s}"));
        reason = format!(
            "{s} is staged: the machine-config daemon is mid-update (the deployment is finalized at the next shutdown); a backup now would undeploy it"
        );
    }
    Verdict {
        since,
        may_replace,
        recovered,
        fallback,
        staged,
        reason,
        facts,
        under_way: None,
    }
}

/// The rule's first question, asked before anything else is read or
/// changed: is a recovery under way in another backup dir? `Some`: the
/// verdict that refuses (exit 3), with that dir.
pub fn recovery_elsewhere(host: &Host) -> Option<Verdict> {
    let found = super::elsewhere::find(host);
    let dir = found.under_way()?.dir.clone();
    Some(decide(&Facts::recovery_under_way(dir)))
}

/// The refusal of a command (`backup`, `restore`) while a recovery is
/// under way in `dir` (exit 3): nothing changed, and the command that
/// continues that recovery.
pub fn refuse_under_way(host: &Host, what: &str, dir: &str) -> anyhow::Error {
    let there = super::state::in_dir(host, dir);
    // Not visible here (the Job's jail): the record's mark said so.
    let gone = if host.path(dir).exists() {
        String::new()
    } else {
        format!(
            " ({} marks it; {dir} is not visible here: on the node, if that recovery was abandoned and {dir} removed, drop the mark with `{}`)",
            super::elsewhere::RECORD,
            super::elsewhere::forget_command(dir)
        )
    };
    // That dir's own state says how it continues: `--resume`, or the
    // reboot its files phase waits for first (the hints report: `--resume`
    // was named there, and answered "reboot first").
    let how = if host.path(dir).exists() {
        super::state::assess(&there, None).next
    } else {
        format!(
            "continue it with `{}`",
            super::state::resume_command(&there)
        )
    };
    crate::util::error::Fail::InProgress(format!(
        "refusing to {what}: a recovery is under way in {dir}{gone}. Nothing was changed (no backup or recovery runs until it completes). In {dir}: {how}; `{}` shows where it stands",
        there.cmd("status")
    ))
    .into()
}

/// The history entries started after the backup, newest first.
fn after<'h>(b: &Taken, h: &'h [HistoryEntry]) -> Vec<&'h HistoryEntry> {
    let reference = match b {
        Taken::Ours {
            newest: Some(n), ..
        } => n.started(),
        _ => b.created(),
    };
    h.iter().filter(|e| e.started() > reference).collect()
}

fn from_history(
    b: &Taken,
    h: &[HistoryEntry],
    recovered_at: Option<i64>,
    facts: &mut Vec<String>,
) -> Since {
    facts.push(match h.first() {
        Some(e) => format!("the cluster's newest update now: {}", e.describe()),
        None => "the cluster's update history is empty".into(),
    });
    let since = after(b, h);
    match since.iter().find(|e| !e.completed()) {
        None if since.is_empty() => match recovered_at {
            Some(_) => Since::Recovered,
            None => Since::NoUpgrade,
        },
        None => {
            // Completed upgrades after a recovery: the recovery is history.
            Since::Completed {
                versions: since.iter().map(|e| e.version.clone()).collect(),
            }
        }
        Some(failed) => match recovered_at {
            Some(t) if t > failed.started() => {
                // Upgrades started after that recovery, all Completed (the
                // newest one not Completed is older): the recovery is
                // history, as when etcd's restore dropped the failed entry.
                let later: Vec<String> = since
                    .iter()
                    .filter(|e| e.started() > t)
                    .map(|e| e.version.clone())
                    .collect();
                if later.is_empty() {
                    Since::Recovered
                } else {
                    Since::Completed { versions: later }
                }
            }
            _ => Since::Failed {
                upgrade: failed.describe(),
            },
        },
    }
}

fn from_deployments(b: &Taken, f: &Facts, facts: &mut Vec<String>) -> Since {
    let Some(os) = &f.os else {
        facts.push("the OS deployments could not be read".into());
        return Since::Unknown;
    };
    let Some(active) = os.active() else {
        facts.push("no OS deployment is listed".into());
        return Since::Unknown;
    };
    facts.push(format!(
        "OS: {} booted, {} deployed",
        active.short(),
        os.deployments.len()
    ));
    // TALM's backup pinned the booted deployment without a record.
    let pinned_booted = match b.pinned() {
        Some(p) => active.is(p),
        None => active.pinned,
    };
    let others = os
        .deployments
        .iter()
        .filter(|d| !d.is(&active.id()))
        .count();
    match (pinned_booted, others, f.recovered_at) {
        (true, _, Some(_)) => Since::Recovered,
        (true, 0, None) => Since::NoUpgrade,
        _ => Since::Unknown,
    }
}

/// Read the facts: the backup (`backup`: what `store::inspect` found),
/// the cluster (within [`oc::CLUSTER_VERSION_TIMEOUT`]), the last recovery
/// from this backup, the deployments (None when they cannot be read).
pub fn gather(
    host: &Host,
    tools: &Tools,
    backup: Option<Taken>,
    m: Option<&Manifest>,
    os: Option<OsState>,
) -> Facts {
    let (cluster, cluster_version) = if tools.has("oc") {
        match oc::cluster_version(host, tools, oc::CLUSTER_VERSION_TIMEOUT) {
            Ok(cv) => (Cluster::History(cv.history), cv.version),
            Err(e) => (Cluster::Unknown(one_line(&format!("{e:#}"))), None),
        }
    } else {
        (Cluster::Unknown("oc is not on PATH".into()), None)
    };
    let recovered_at = m.and_then(|m| {
        LastRecovery::load(&host.backup_dir())
            .filter(|l| l.backup_created == m.created)
            .and_then(|l| fsutil::parse_rfc3339(&l.completed))
    });
    Facts {
        backup,
        cluster,
        cluster_version,
        recovered_at,
        os,
        under_way: super::elsewhere::find(host)
            .under_way()
            .map(|f| f.dir.clone()),
    }
}

/// The facts of this tool's backup, from its manifest.
pub fn taken(m: &Manifest) -> Taken {
    Taken::Ours {
        created: m.created_unix,
        pinned: m.deployment.as_ref().map(|d| d.id()),
        newest: m.cluster.as_ref().and_then(|c| c.newest.clone()),
    }
}

/// The last line of a (multi-line) error, for a fact line.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::ostree::{BootedFrom, Deployment};

    const T0: i64 = 1_717_000_000;

    fn entry(state: &str, started: i64, version: &str) -> HistoryEntry {
        HistoryEntry {
            state: state.into(),
            started_time: fsutil::rfc3339(started),
            completion_time: (state == "Completed").then(|| fsutil::rfc3339(started + 3600)),
            version: version.into(),
        }
    }

    fn dep(i: usize, c: char, booted: bool, pinned: bool, staged: bool) -> Deployment {
        Deployment {
            index: i,
            stateroot: "rhcos".into(),
            checksum: c.to_string().repeat(64),
            serial: 0,
            version: None,
            booted,
            pinned,
            staged,
            pending: false,
            rollback: false,
            refspec: None,
        }
    }

    fn os(ds: Vec<Deployment>) -> Option<OsState> {
        Some(OsState {
            deployments: ds,
            booted_from: BootedFrom::Cmdline,
            booted_skipped: vec![],
            staged_record: None,
        })
    }

    fn ours(newest: Option<HistoryEntry>) -> Option<Taken> {
        Some(Taken::Ours {
            created: T0,
            pinned: Some(dep(0, 'a', false, false, false).id()),
            newest,
        })
    }

    /// The table of the module doc, row by row.
    #[test]
    fn the_rule_table() {
        let installed = entry("Completed", T0 - 86_400, "4.16.0");
        let good = entry("Completed", T0 + 100, "4.16.3");
        let good2 = entry("Completed", T0 + 200, "4.16.4");
        let bad = entry("Partial", T0 + 300, "4.16.5");
        let later_good = entry("Completed", T0 + 500, "4.16.6");
        let later_bad = entry("Partial", T0 + 600, "4.16.7");
        let a_booted = vec![dep(0, 'a', true, true, false)];
        let b_booted = vec![
            dep(0, 'b', true, false, false),
            dep(1, 'a', false, true, false),
        ];
        let a_back = vec![
            dep(0, 'a', true, true, false),
            dep(1, 'b', false, false, false),
        ];
        let h = |v: Vec<&HistoryEntry>| Cluster::History(v.into_iter().cloned().collect());
        let down = || Cluster::Unknown("connection refused".into());
        let n = Some(installed.clone());
        type Row = (
            &'static str,
            Option<Taken>,
            Cluster,
            Option<i64>,
            Vec<Deployment>,
            Since,
            bool,
        );
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            ("no backup", None, h(vec![&installed]), None, a_booted.clone(), Since::NoBackup, true),
            ("nothing since", ours(n.clone()), h(vec![&installed]), None, a_booted.clone(), Since::NoUpgrade, true),
            ("one good upgrade", ours(n.clone()), h(vec![&good, &installed]), None, b_booted.clone(), Since::Completed { versions: vec!["4.16.3".into()] }, true),
            ("two good upgrades", ours(n.clone()), h(vec![&good2, &good, &installed]), None, b_booted.clone(), Since::Completed { versions: vec!["4.16.4".into(), "4.16.3".into()] }, true),
            ("failed upgrade", ours(n.clone()), h(vec![&bad, &installed]), None, b_booted.clone(), Since::Failed { upgrade: bad.describe() }, false),
            ("failed, then rolled back", ours(n.clone()), h(vec![&bad, &installed]), None, a_back.clone(), Since::Failed { upgrade: bad.describe() }, false),
            ("failed, good, then a failed one", ours(n.clone()), h(vec![&bad, &good, &installed]), None, b_booted.clone(), Since::Failed { upgrade: bad.describe() }, false),
            ("failed, recovered after", ours(n.clone()), h(vec![&bad, &installed]), Some(T0 + 400), a_back.clone(), Since::Recovered, true),
            ("recovered before it failed", ours(n.clone()), h(vec![&bad, &installed]), Some(T0 + 250), a_back.clone(), Since::Failed { upgrade: bad.describe() }, false),
            ("recovered: the history restored with etcd", ours(n.clone()), h(vec![&installed]), Some(T0 + 400), a_back.clone(), Since::Recovered, true),
            ("recovered, then a good upgrade", ours(n.clone()), h(vec![&good2, &installed]), Some(T0 + 150), b_booted.clone(), Since::Completed { versions: vec!["4.16.4".into()] }, true),
            ("failed, recovered, then a good upgrade (the failed entry kept)", ours(n.clone()), h(vec![&later_good, &bad, &installed]), Some(T0 + 400), b_booted.clone(), Since::Completed { versions: vec!["4.16.6".into()] }, true),
            ("failed, recovered, a good upgrade, then a failed one", ours(n.clone()), h(vec![&later_bad, &later_good, &bad, &installed]), Some(T0 + 400), b_booted.clone(), Since::Failed { upgrade: later_bad.describe() }, false),
            ("no newest recorded: the backup's time", ours(None), h(vec![&bad, &installed]), None, b_booted.clone(), Since::Failed { upgrade: bad.describe() }, false),
            ("TALM's backup, a good upgrade", Some(Taken::Talm { created: T0 }), h(vec![&good, &installed]), None, b_booted.clone(), Since::Completed { versions: vec!["4.16.3".into()] }, true),
            ("TALM's backup, a failed upgrade", Some(Taken::Talm { created: T0 }), h(vec![&bad, &installed]), None, b_booted.clone(), Since::Failed { upgrade: bad.describe() }, false),
            ("API down, pinned booted alone", ours(n.clone()), down(), None, a_booted.clone(), Since::NoUpgrade, true),
            ("API down, another OS booted", ours(n.clone()), down(), None, b_booted.clone(), Since::Unknown, false),
            ("API down, rolled back, not recovered", ours(n.clone()), down(), None, a_back.clone(), Since::Unknown, false),
            ("API down, rolled back, recovered", ours(n.clone()), down(), Some(T0 + 400), a_back.clone(), Since::Recovered, true),
            ("API down, pinned one gone", ours(n.clone()), down(), None, vec![dep(0, 'b', true, false, false)], Since::Unknown, false),
            ("API down, TALM's pin booted alone", Some(Taken::Talm { created: T0 }), down(), None, a_booted.clone(), Since::NoUpgrade, true),
        ];
        for (what, backup, cluster, recovered_at, ds, since, replace) in rows {
            let fallback = matches!(cluster, Cluster::Unknown(_));
            let mut f = Facts {
                backup,
                cluster,
                cluster_version: None,
                recovered_at,
                os: os(ds),
                under_way: None,
            };
            // Every row again, with a recovery under way in another dir:
            // refused first, whatever the rest says (issue 22.6).
            f.under_way = Some("/var/recovery2".into());
            let u = decide(&f);
            assert_eq!(
                u.since,
                Since::RecoveryUnderWay {
                    dir: "/var/recovery2".into()
                },
                "{what}"
            );
            assert!(!u.may_replace && !u.recovered, "{what}");
            assert_eq!(u.under_way.as_deref(), Some("/var/recovery2"), "{what}");
            assert_eq!(u.reason, "a recovery is under way in /var/recovery2");
            f.under_way = None;
            let v = decide(&f);
            assert_eq!(v.under_way, None, "{what}");
            assert_eq!(v.since, since, "{what}");
            assert_eq!(v.may_replace, replace, "{what}: {}", v.reason);
            assert_eq!(v.recovered, since == Since::Recovered, "{what}");
            assert_eq!(v.fallback, fallback && v.since != Since::NoBackup, "{what}");
            if fallback && v.since != Since::NoBackup {
                assert!(
                    v.reason.contains("the API did not answer"),
                    "{what}: {}",
                    v.reason
                );
            }
        }
    }

    /// A staged deployment refuses whatever the history says, and names it.
    #[test]
    fn a_staged_deployment_refuses_any_backup() {
        let installed = entry("Completed", T0 - 86_400, "4.16.0");
        let v = decide(&Facts {
            backup: ours(Some(installed.clone())),
            cluster: Cluster::History(vec![installed]),
            cluster_version: None,
            under_way: None,
            recovered_at: None,
            os: os(vec![
                dep(0, 'c', false, false, true),
                dep(1, 'a', true, true, false),
            ]),
        });
        assert!(!v.may_replace);
        assert!(v
            .staged
            .as_deref()
            .unwrap()
            .starts_with("rhcos cccccccccccc.0"));
        assert!(v.reason.contains("is staged"), "{}", v.reason);
        let none = decide(&Facts {
            backup: None,
            cluster: Cluster::Unknown("x".into()),
            cluster_version: None,
            under_way: None,
            recovered_at: None,
            os: os(vec![
                dep(0, 'c', false, false, true),
                dep(1, 'a', true, false, false),
            ]),
        });
        assert!(!none.may_replace, "even with no backup");
        // In the Job ostree lists no staged deployment: its record says.
        let mut o = os(vec![dep(0, 'a', true, true, false)]).unwrap();
        o.staged_record = Some("rhcos dddddddddddd.0".into());
        let rec = decide(&Facts {
            backup: ours(None),
            cluster: Cluster::History(vec![]),
            cluster_version: None,
            under_way: None,
            recovered_at: None,
            os: Some(o),
        });
        assert!(
            !rec.may_replace && rec.reason.contains("rhcos dddddddddddd.0 is staged"),
            "{}",
            rec.reason
        );
    }

    /// The facts it read are in the verdict, for the refusal to list.
    #[test]
    fn the_verdict_lists_the_facts() {
        let bad = entry("Partial", T0 + 300, "4.16.5");
        let v = decide(&Facts {
            backup: ours(None),
            cluster: Cluster::History(vec![bad]),
            cluster_version: None,
            under_way: None,
            recovered_at: None,
            os: None,
        });
        let all = v.facts.join("\n");
        assert!(
            all.contains("backup: taken at 2024-05-29T16:26:40Z, pinned rhcos aaaa"),
            "{all}"
        );
        assert!(
            all.contains(
                "the cluster's newest update now: 4.16.5 (Partial, started 2024-05-29T16:31:40Z)"
            ),
            "{all}"
        );
    }
}
