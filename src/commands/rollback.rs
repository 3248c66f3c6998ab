//! `rollback`: the platform (OS) rollback of today's decision table, so that
//! the deployment pinned at backup becomes the default, checked before any
//! reboot.
//!
//! | status shows                                  | action                                   |
//! |-----------------------------------------------|------------------------------------------|
//! | one deployment, pinned                        | nothing: the OS did not change           |
//! | the pinned one is the default already         | nothing (reboot if it is not booted)     |
//! | the pinned standby is the rollback            | roll back                                |
//! | several standbys, the pinned one not rollback | undeploy unpinned standbys, then roll back |

use crate::node::cmd::{self, Tools};
use crate::node::host::Host;
use crate::node::ostree::{self, Deployment, OsState};
use crate::store::manifest::Manifest;
use anyhow::{bail, Context, Result};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    Undeploy { index: usize, deployment: String },
    Rollback { how: String },
    Reboot,
}

#[derive(Debug, Serialize)]
pub struct Plan {
    pub target: Deployment,
    /// Which row of the table applies.
    pub case: String,
    pub actions: Vec<Action>,
    pub dry_run: bool,
    /// After this run the pinned deployment is the next default but not
    /// booted: the node must reboot (without --reboot, nothing reboots).
    pub reboot_needed: bool,
    /// What to run next, in a sentence that names the command.
    pub next: String,
}

fn same(a: &Deployment, b: &Deployment) -> bool {
    a.is(&b.id())
}

/// The deployment to go back to: the one the backup pinned, else the only
/// pinned one.
fn target(host: &Host, os: &OsState) -> Result<Deployment> {
    if let Ok(m) = crate::store::current(&host.backup_dir()).and_then(|g| Manifest::load(&g)) {
        if let Some(p) = m.deployment {
            return os
                .deployments
                .iter()
                .find(|d| d.is(&p.id()))
                .cloned()
                .with_context(|| {
                    format!(
                        "the deployment pinned at backup ({} {}.{}) is no longer deployed: the OS cannot be rolled back to it",
                        p.stateroot, p.checksum, p.serial
                    )
                });
        }
    }
    let pinned: Vec<&Deployment> = os.deployments.iter().filter(|d| d.pinned).collect();
    match pinned.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!("no backup manifest and no pinned deployment: nothing says which deployment to roll back to"),
        _ => bail!("no backup manifest and {} pinned deployments: cannot tell which one to roll back to", pinned.len()),
    }
}

/// Decide, from the status, what brings `target` to the default position.
pub fn decide(os: &OsState, target: &Deployment, has_rpm_ostree: bool) -> (String, Vec<Action>) {
    let how = if has_rpm_ostree {
        "rpm-ostree rollback"
    } else {
        "ostree (reorder)"
    }
    .to_string();
    if os.deployments.len() == 1 {
        return (
            "one deployment, pinned: the OS did not change".into(),
            Vec::new(),
        );
    }
    if os.deployments.first().is_some_and(|d| same(d, target)) {
        let mut a = Vec::new();
        let case = if os.deployments.iter().any(|d| d.booted && !same(d, target)) {
            a.push(Action::Reboot);
            "the pinned deployment is the default already; it is not booted: reboot".to_string()
        } else {
            "the pinned deployment is the default already".to_string()
        };
        return (case, a);
    }
    if target.rollback {
        return (
            "the pinned standby is the rollback deployment: roll back".into(),
            vec![Action::Rollback { how }],
        );
    }
    // Undeploy unpinned standbys (not booted, not the target) from the highest
    // index until the target is the rollback.
    let mut actions = Vec::new();
    let mut ds: Vec<Deployment> = os.deployments.clone();
    let booted = ds.iter().position(|d| d.booted).unwrap_or(0);
    loop {
        let t = ds.iter().position(|d| same(d, target)).unwrap();
        let between: Vec<usize> = (0..ds.len())
            .filter(|&i| i != booted && i != t && !ds[i].pinned && !ds[i].booted)
            .filter(|&i| {
                if t > booted {
                    i > booted && i < t
                } else {
                    i < t
                }
            })
            .collect();
        let Some(&i) = between.last() else { break };
        actions.push(Action::Undeploy {
            index: i,
            deployment: ds[i].short(),
        });
        ds.remove(i);
    }
    actions.push(Action::Rollback { how });
    (
        "several standbys, the pinned one not the rollback: undeploy the unpinned ones between, then roll back".into(),
        actions,
    )
}

pub fn run(host: &Host, dry_run: bool, reboot: bool) -> Result<Plan> {
    host.require_node()?;
    let mut req = vec!["ostree"];
    if reboot {
        req.push("systemctl");
    }
    let tools = Tools::require(&req, &["rpm-ostree"])?;
    let os = ostree::read(host, &tools)?;
    let target = target(host, &os)?;
    let (case, mut actions) = decide(&os, &target, ostree::rpm_ostree_usable(host, &tools));
    let booted_is_target = os.active().is_some_and(|d| same(d, &target));
    let reboot_needed = !actions.is_empty() || !booted_is_target;
    // Only --reboot reboots: a plain rollback, run once or twice, never does.
    actions.retain(|a| *a != Action::Reboot);
    if reboot && reboot_needed {
        actions.push(Action::Reboot);
    }
    let after = "after the reboot, run `upgrade-recovery status`; it should say the node runs the pinned OS, then run `upgrade-recovery restore`";
    let next = if dry_run && reboot_needed {
        format!(
            "nothing was changed (--dry-run); do it with `upgrade-recovery rollback --reboot`; {after}"
        )
    } else if reboot && reboot_needed {
        format!("the node reboots now; {after}")
    } else if reboot_needed {
        format!("reboot into the pinned deployment with `systemctl reboot`; {after}")
    } else {
        let st = crate::recovery::state::assess(host, Some(&os));
        format!(
            "nothing to do: the pinned deployment is booted. The node now: {}. Next: {}",
            st.text, st.next
        )
    };
    let plan = Plan {
        target: target.clone(),
        case,
        actions: actions.clone(),
        dry_run,
        reboot_needed,
        next,
    };
    if dry_run {
        return Ok(plan);
    }
    for a in &actions {
        match a {
            Action::Undeploy { .. } => {
                // Re-read: indices shift after each undeploy.
                let now = ostree::read(host, &tools)?;
                let (_, next) = decide(
                    &now,
                    now.deployments.iter().find(|d| same(d, &target)).unwrap(),
                    ostree::rpm_ostree_usable(host, &tools),
                );
                if let Some(Action::Undeploy { index, .. }) = next.first() {
                    ostree::undeploy(host, &tools, &now.deployments[*index])?;
                }
            }
            Action::Rollback { .. } => roll_back(host, &tools, &target)?,
            Action::Reboot => {
                check_default(host, &tools, &target)?;
                if reboot {
                    cmd::run(tools.command("systemctl")?.arg("reboot"))?;
                }
            }
        }
    }
    check_default(host, &tools, &target)?;
    Ok(plan)
}

fn roll_back(host: &Host, tools: &Tools, target: &Deployment) -> Result<()> {
    if ostree::rpm_ostree_usable(host, tools) {
        cmd::run(tools.command("rpm-ostree")?.arg("rollback"))?;
        return Ok(());
    }
    // Plain ostree: with nothing booted, undeploying what stands before the
    // target makes it the default.
    loop {
        let now = ostree::read(host, tools)?;
        let t = now
            .deployments
            .iter()
            .position(|d| same(d, target))
            .context("the target deployment disappeared")?;
        if t == 0 {
            return Ok(());
        }
        let ahead = &now.deployments[t - 1];
        if ahead.booted || ahead.pinned {
            bail!(
                "cannot make {} the default without rpm-ostree: {} stands before it and is {}",
                target.short(),
                ahead.short(),
                if ahead.booted { "booted" } else { "pinned" }
            );
        }
        ostree::undeploy(host, tools, ahead)?;
    }
}

/// rpm-ostree has been known to choose another deployment: the next default
/// must be the target, or nothing reboots.
fn check_default(host: &Host, tools: &Tools, target: &Deployment) -> Result<()> {
    let now = ostree::read(host, tools)?;
    match now.default_deployment() {
        Some(d) if same(d, target) => Ok(()),
        Some(d) => bail!(
            "after the rollback the next default is {}, not the pinned {}; NOT rebooting. Check `ostree admin status`",
            d.short(),
            target.short()
        ),
        None => bail!("no deployment left"),
    }
}

pub fn render(p: &Plan) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "Target: {} (pinned at backup)", p.target.short());
    let _ = writeln!(s, "Case: {}", p.case);
    if p.actions.is_empty() && !p.reboot_needed {
        let _ = writeln!(s, "Nothing to do.");
    }
    for a in &p.actions {
        let line = match a {
            Action::Undeploy { index, deployment } => {
                format!("ostree admin undeploy {index}   # {deployment}")
            }
            Action::Rollback { how } => how.clone(),
            Action::Reboot => "systemctl reboot".into(),
        };
        let _ = writeln!(
            s,
            "  {}{line}",
            if p.dry_run { "would run: " } else { "ran: " }
        );
    }
    if !p.dry_run && p.reboot_needed {
        let _ = writeln!(s, "The pinned deployment is the next default.");
    }
    let _ = writeln!(s, "Next: {}", p.next);
    s
}
