//! The hub's side of an image-based group upgrade: after an admin has
//! recovered or cleaned up a managed cluster by hand, the
//! `lcm.openshift.io/ibgu-<action>-completed` / `-failed` labels on its
//! ManagedCluster must say so, or TALM does not go on managing it.
//!
//! openshift-kni/cluster-group-upgrades-operator commit dacf199e:
//! - `controllers/utils/constants.go`: `IBGUActionCompletedLabelTemplate =
//!   "lcm.openshift.io/ibgu-%s-completed"`, `IBGUActionFailedLabelTemplate =
//!   "lcm.openshift.io/ibgu-%s-failed"`, `%s` the action in lower case
//!   (`controllers/imagebasedgroupupgrade.go`, `ensureClusterLabels`).
//! - `ensureClusterLabels`: a completed Abort, AbortOnFailure,
//!   FinalizeUpgrade or FinalizeRollback removes every
//!   `lcm\.openshift\.io/ibgu-[a-zA-Z]+-(completed|failed)` label; other
//!   actions add theirs.
//! - `controllers/utils/manifestworkreplicaset.go`: a step that starts with
//!   AbortOnFailure selects the clusters labelled `ibgu-upgrade-failed` or
//!   `ibgu-prep-failed`; Abort those without `ibgu-upgrade-completed`.
//! - `pkg/api/imagebasedgroupupgrades/v1alpha1/types.go`: the plan is append
//!   only and must be one of [`PLANS`] (the CRD's XValidation rule).
//!
//! The ManagedCluster's name is the klusterlet's `spec.clusterName`
//! (open-cluster-management-io/api `operator/v1/types_klusterlet.go`,
//! `KlusterletSpec.ClusterName`), read on the node.

use super::*;

/// The actions of an IBGU plan (types.go constants).
pub const ACTIONS: [&str; 7] = [
    "Prep",
    "Upgrade",
    "Rollback",
    "Abort",
    "AbortOnFailure",
    "FinalizeRollback",
    "FinalizeUpgrade",
];

/// The CRD's rule on `spec.plan` (types.go, XValidation "invalid
/// combinations of actions in the plan"), transcribed.
pub const PLANS: &[&[&[&str]]] = &[
    &[&["Prep"]],
    &[&["Prep"], &["Upgrade"]],
    &[&["Prep", "Upgrade"]],
    &[&["Prep"], &["Upgrade"], &["FinalizeUpgrade"]],
    &[&["Prep"], &["Upgrade", "FinalizeUpgrade"]],
    &[&["Prep", "Upgrade"], &["FinalizeUpgrade"]],
    &[&["Prep", "Upgrade", "FinalizeUpgrade"]],
    &[&["Rollback"]],
    &[&["Rollback"], &["FinalizeRollback"]],
    &[&["Rollback", "FinalizeRollback"]],
    &[&["Upgrade"]],
    &[&["Upgrade"], &["FinalizeUpgrade"]],
    &[&["Upgrade", "FinalizeUpgrade"]],
    &[&["FinalizeUpgrade"]],
    &[&["FinalizeRollback"]],
    &[&["Abort"]],
    &[&["AbortOnFailure"]],
    &[&["Prep"], &["Abort"]],
    &[&["Prep"], &["AbortOnFailure"]],
    &[&["Prep"], &["AbortOnFailure"], &["Upgrade"]],
    &[
        &["Prep"],
        &["AbortOnFailure"],
        &["Upgrade"],
        &["AbortOnFailure"],
    ],
    &[&["Prep"], &["Upgrade"], &["AbortOnFailure"]],
    &[&["Prep", "Upgrade"], &["AbortOnFailure"]],
    &[
        &["Prep"],
        &["AbortOnFailure"],
        &["Upgrade"],
        &["AbortOnFailure"],
        &["FinalizeUpgrade"],
    ],
    &[
        &["Prep"],
        &["Upgrade"],
        &["AbortOnFailure"],
        &["FinalizeUpgrade"],
    ],
    &[
        &["Prep", "Upgrade"],
        &["AbortOnFailure"],
        &["FinalizeUpgrade"],
    ],
];

/// The actions a step for clusters that failed may start with (OpenShift's
/// IBGU docs; the selectors in manifestworkreplicaset.go).
pub const AFTER_FAILURE: [&str; 3] = ["Abort", "AbortOnFailure", "Rollback"];

pub fn completed_label(action: &str) -> String {
    format!("lcm.openshift.io/ibgu-{}-completed", action.to_lowercase())
}
pub fn failed_label(action: &str) -> String {
    format!("lcm.openshift.io/ibgu-{}-failed", action.to_lowercase())
}

type Step = Vec<String>;

/// For every plan the hub may hold whose last step ran `action`: that plan
/// and the steps the rule lets the hub append next (append only: the plan
/// must stay one of [`PLANS`]), those for failed clusters only when
/// `failed`.
pub fn next_steps(action: &str, failed: bool) -> Vec<(Vec<Step>, Vec<Step>)> {
    let own = |p: &[&[&str]]| -> Vec<Step> {
        p.iter()
            .map(|s| s.iter().map(|a| a.to_string()).collect())
            .collect()
    };
    let mut out: Vec<(Vec<Step>, Vec<Step>)> = Vec::new();
    for p in PLANS {
        for n in 1..=p.len() {
            let prefix = &p[..n];
            if !prefix[n - 1].contains(&action) || out.iter().any(|(q, _)| *q == own(prefix)) {
                continue;
            }
            let mut next: Vec<Step> = Vec::new();
            for q in PLANS {
                if q.len() == n + 1 && q[..n] == *prefix {
                    let s: Step = q[n].iter().map(|a| a.to_string()).collect();
                    if (!failed || AFTER_FAILURE.contains(&s[0].as_str())) && !next.contains(&s) {
                        next.push(s);
                    }
                }
            }
            out.push((own(prefix), next));
        }
    }
    out
}

/// What the node's IBU says the hub's last action on it was, and whether it
/// failed: a stage whose `<Stage>Completed` condition is False/Failed, or
/// the Idle condition's AbortFailed / FinalizeFailed
/// (lifecycle-agent 0e1bf182 `controllers/utils/conditions.go`).
pub fn last_action(cr: &Cr) -> Option<(Vec<&'static str>, bool)> {
    let cond = |t: &str| cr.conditions.iter().find(|c| c.kind == t);
    match cr.failed_reason() {
        Some("AbortFailed") => return Some((vec!["Abort", "AbortOnFailure"], true)),
        Some("FinalizeFailed") => return Some((vec!["FinalizeUpgrade", "FinalizeRollback"], true)),
        _ => {}
    }
    let stage = ["Prep", "Upgrade", "Rollback"]
        .into_iter()
        .find(|s| *s == cr.stage)?;
    let c = cond(&format!("{stage}Completed"))?;
    match (c.status.as_str(), c.reason.as_str()) {
        ("False", "Failed" | "TimedOut") => Some((vec![stage], true)),
        ("True", _) => Some((vec![stage], false)),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// `ibu status`: the node as it is.
    Status,
    /// The end of `ibu cleanup`: LCA retries the abort/finalize and goes
    /// Idle, as if the hub's Abort/Finalize had completed.
    AfterCleanup,
}

#[derive(Debug, Serialize)]
pub struct HubAdvice {
    /// The ManagedCluster's name, when the node can tell it.
    pub managed_cluster: Option<String>,
    /// Why it cannot, and how to find it on the hub.
    pub name_help: Option<String>,
    /// The exact commands to run on the hub.
    pub commands: Vec<String>,
    /// Plans the hub's IBGU may hold and the steps it may append next.
    pub plan_steps: Vec<String>,
}

/// `klusterlets.operator.open-cluster-management.io/klusterlet` `spec.clusterName`.
pub fn parse_klusterlet(v: &Value) -> Result<String> {
    match v["spec"]["clusterName"].as_str().map(str::trim) {
        Some(n) if !n.is_empty() && !n.contains(char::is_whitespace) => Ok(n.to_string()),
        _ => bail!("the klusterlet has no spec.clusterName"),
    }
}

const KLUSTERLET: Get<'static> = Get {
    kind: "klusterlets.operator.open-cluster-management.io",
    name: Some("klusterlet"),
    namespace: crate::node::oc::Namespace::Default,
    selector: None,
};

/// The hub's commands for this cluster, or None when no hub manages it (no
/// klusterlet) or the IBU does not tell what the hub did last.
pub fn advice(host: &Host, tools: &Tools, moment: Moment) -> Option<HubAdvice> {
    let oc = Oc::new(host, tools);
    let kl = match oc.get_opt::<Value>(KLUSTERLET) {
        Ok(None) => return None,
        Err(e) if format!("{e:#}").contains("doesn't have a resource type") => return None,
        Ok(Some(v)) => parse_klusterlet(&v),
        Err(e) => Err(e),
    };
    let cr = get_cr(host, tools).ok()?;
    let (actions, failed) = last_action(&cr)?;
    let (managed_cluster, name_help) = match kl {
        Ok(n) => (Some(n), None),
        Err(e) => {
            let id = cluster_id(host, tools).ok();
            (
                None,
                Some(format!(
                    "this node cannot tell its ManagedCluster name ({e:#}). On the hub: `oc get managedclusters {}` lists it{}; then use that name for <managed-cluster> below",
                    match &id {
                        Some(id) => format!("-l clusterID={id}"),
                        None => "-L clusterID".into(),
                    },
                    match &id {
                        Some(_) => " (ACM labels each ManagedCluster with its cluster ID)".to_string(),
                        None => " with each one's cluster ID; this cluster's is `spec.clusterID` of `oc get clusterversion version -o yaml` here".into(),
                    }
                )),
            )
        }
    };
    let name = managed_cluster
        .clone()
        .unwrap_or_else(|| "<managed-cluster>".into());
    let every: Vec<String> = ACTIONS
        .iter()
        .flat_map(|a| {
            [
                format!("{}-", completed_label(a)),
                format!("{}-", failed_label(a)),
            ]
        })
        .collect();
    let mut commands = Vec::new();
    let mut plan_steps = Vec::new();
    let recovered = moment == Moment::AfterCleanup;
    if recovered {
        // As TALM does when an Abort/AbortOnFailure/Finalize completes.
        commands.push(format!(
            "oc label managedcluster {name} {}",
            every.join(" ")
        ));
    } else {
        for a in &actions {
            let (add, drop) = if failed {
                (failed_label(a), completed_label(a))
            } else {
                (completed_label(a), failed_label(a))
            };
            commands.push(format!("oc label managedcluster {name} {add}= {drop}-"));
        }
        for a in &actions {
            for (plan, next) in next_steps(a, failed) {
                let show = |p: &[Step]| {
                    p.iter()
                        .map(|s| format!("[{}]", s.join(", ")))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                plan_steps.push(if next.is_empty() {
                    format!(
                        "plan [{}]: no step may be added{}",
                        show(&plan),
                        if failed {
                            " for a failed cluster; create a new ImageBasedGroupUpgrade with plan [[Abort]], [[AbortOnFailure]] or [[Rollback]] for it"
                        } else {
                            ""
                        }
                    )
                } else {
                    format!(
                        "plan [{}]: append {}",
                        show(&plan),
                        next.iter()
                            .map(|s| format!("{{actions: [{}]}}", s.join(", ")))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    )
                });
            }
        }
    }
    Some(HubAdvice {
        managed_cluster,
        name_help,
        commands,
        plan_steps,
    })
}

pub fn render(h: &HubAdvice) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Hub (ImageBasedGroupUpgrade): ManagedCluster {}",
        h.managed_cluster.as_deref().unwrap_or("unknown")
    );
    if let Some(n) = &h.name_help {
        let _ = writeln!(s, "  {n}");
    }
    for c in &h.commands {
        let _ = writeln!(s, "  on the hub: {c}");
    }
    for p in &h.plan_steps {
        let _ = writeln!(s, "  {p}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule's continuations: after a failed Upgrade the hub may append
    /// only AbortOnFailure (never Rollback, which only starts a plan).
    #[test]
    fn next_steps_follow_the_crd_rule() {
        let n = next_steps("Upgrade", true);
        let plan = |p: &[&[&str]]| -> Vec<Step> {
            p.iter()
                .map(|s| s.iter().map(|a| a.to_string()).collect())
                .collect()
        };
        let find = |p: Vec<Step>| n.iter().find(|(q, _)| *q == p).unwrap().1.clone();
        assert_eq!(
            find(plan(&[&["Prep"], &["Upgrade"]])),
            vec![vec!["AbortOnFailure".to_string()]]
        );
        assert!(find(plan(&[&["Upgrade"]])).is_empty());
        let ok = next_steps("Upgrade", false);
        let after = &ok
            .iter()
            .find(|(q, _)| *q == plan(&[&["Prep"], &["Upgrade"]]))
            .unwrap()
            .1;
        assert!(after.contains(&vec!["FinalizeUpgrade".to_string()]));
        assert!(after.contains(&vec!["AbortOnFailure".to_string()]));
        // Every plan in the rule uses only the CRD's actions.
        for p in PLANS {
            for s in *p {
                assert!(s.iter().all(|a| ACTIONS.contains(a)));
            }
        }
        assert_eq!(
            completed_label("AbortOnFailure"),
            "lcm.openshift.io/ibgu-abortonfailure-completed"
        );
    }

    #[test]
    fn klusterlet_name() {
        assert_eq!(
            parse_klusterlet(&json!({"spec": {"clusterName": "sno-17"}})).unwrap(),
            "sno-17"
        );
        for bad in [
            json!({}),
            json!({"spec": {"clusterName": ""}}),
            json!({"spec": {"clusterName": 4}}),
        ] {
            assert!(parse_klusterlet(&bad).is_err());
        }
    }
}
