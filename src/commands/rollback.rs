//! `rollback`: the platform (OS) rollback of today's decision table, so that
//! the deployment pinned at backup becomes the default, checked before any
//! reboot.
//!
//! | status shows                                  | action                                   |
//! |-----------------------------------------------|------------------------------------------|
//! | one deployment, pinned                        | nothing: the OS did not change           |
//! | the pinned one is the default already         | nothing (reboot if it is not booted)     |
//! | the pinned one in another stateroot than the active one | `ostree admin set-default <index>` |
//! | the pinned one booted, only other stateroots' deployments before it | `ostree admin set-default <index>` |
//! | the pinned standby is the rollback            | roll back                                |
//! | several standbys, the pinned one not rollback | undeploy unpinned standbys, then roll back |
//! | a deployment is staged (any of the above)     | `rpm-ostree cleanup -p` first (without rpm-ostree: drop the staged record as libostree does), then the row of what is left |
//!
//! A staged deployment (the machine-config daemon's update, finalized at
//! shutdown by `ostree-finalize-staged.service` and then the default) makes
//! `rpm-ostree rollback` refuse: "Staged deployment (remove with cleanup
//! -p)" (coreos/rpm-ostree `src/daemon/rpmostreed-transaction-types.cxx`,
//! `rollback_transaction_execute`: the staged one is the pending deployment),
//! and whatever the rows do, the next boot would finalize it and boot it.
//! `rpm-ostree cleanup -p` removes it: `rpmostree_syscore_filter_deployments`
//! (`src/daemon/rpmostree-sysroot-core.cxx`) drops the booted stateroot's
//! deployments before the booted one but keeps pinned ones and other
//! stateroots', and libostree drops the staged record and directory when the
//! written list leaves it out (ostreedev/ostree
//! `src/libostree/ostree-sysroot-deploy.c`). The rows then apply to what is
//! left ([`after_cleanup_pending`] computes it the same way).
//!
//! Without rpm-ostree the rollback is a reorder by plain ostree: undeploying
//! what stands before the pinned deployment. The plan lists those undeploys,
//! and refuses, before any change and in the dry run alike, when one of them
//! is booted or pinned; the refusal names the boot menu entry to choose and
//! the `rollback` to run once it is booted.
//!
//! The active deployment is the booted one, else the default
//! ([`OsState::active`]). Another stateroot is what an image-based upgrade
//! leaves (the new release deployed in a new stateroot beside the old one).
//! `rpm-ostree rollback` cannot reach it: coreos/rpm-ostree
//! `src/daemon/rpmostreed-transaction-types.cxx`, `rollback_transaction_execute`,
//! asks `ostree_sysroot_query_deployments_for(sysroot, osname, ...)`, the
//! booted stateroot's pending and rollback deployments only, and moves one of
//! those first ("No rollback deployment found" when there is none). Nor can
//! undeploying what stands before the target without rpm-ostree: it would
//! delete the other release, which set-default does not need to touch. With
//! nothing booted (the hub's Job, where rpm-ostree cannot work) the default
//! is the reference: it is what the next boot runs, the deployments ahead of
//! the target that the plain-ostree path would undeploy start with it, and it
//! is the reference `status` and `stateroot cleanup` take too.
//! `ostree admin set-default INDEX` (ostreedev/ostree `src/ostree/ot-admin-builtin-set-default.c`) moves
//! deployment INDEX to position 0 and writes the deployments, across
//! stateroots; openshift-kni/lifecycle-agent `docs/image-based-upgrade.md`
//! ("Manually setting new default deployment") gives it as available from
//! OpenShift 4.14.7, and LCA checks for it as here, in `ostree admin --help`.
//! Where `ostree admin --help` does not list it, `rollback`
//! (and `rollback --dry-run`, as the real run) refuses with exit 1 before any
//! change and names the boot menu entry of the pinned deployment (read from
//! `/boot/loader/entries`, never written here); once that entry is booted,
//! the stateroot cleanup that makes it the default.

use crate::node::cmd::{self, Tools};
use crate::node::host::Host;
use crate::node::ostree::{self, Deployment, OsState};
use crate::store::manifest::Manifest;
use anyhow::{bail, Context, Result};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    Undeploy {
        index: usize,
        deployment: String,
    },
    Rollback {
        how: String,
    },
    /// `ostree admin set-default <index>`: the pinned deployment is in
    /// another stateroot than the active one.
    SetDefault {
        index: usize,
        deployment: String,
    },
    /// `rpm-ostree cleanup -p`: removes the staged deployment (and the
    /// booted stateroot's other unpinned pending ones).
    CleanupPending {
        staged: String,
    },
    /// Without rpm-ostree: drop the staged deployment as libostree does
    /// ([`ostree::drop_staged`]).
    DropStaged {
        staged: String,
    },
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
                    // The one answer of `pinned-deployment-gone` (state.rs).
                    let (text, next) = crate::recovery::state::pinned_gone(
                        host,
                        &format!(
                            "{} {}.{}",
                            p.stateroot,
                            p.checksum.get(..12).unwrap_or(&p.checksum),
                            p.serial
                        ),
                    );
                    format!("{text}. Nothing was changed. Next: {next}")
                });
        }
    }
    let pinned: Vec<&Deployment> = os.deployments.iter().filter(|d| d.pinned).collect();
    match pinned.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!("no backup manifest and no pinned deployment: nothing says which deployment to roll back to; nothing was changed. Next: `{}` says what backup and deployments this node has; to boot another deployment once, choose its entry in the boot menu at the next reboot", host.cmd("status")),
        _ => bail!("no backup manifest and {} pinned deployments: cannot tell which one to roll back to; nothing was changed. Next: unpin the ones that are not the OS to go back to with `ostree admin pin --unpin INDEX` (indices as `ostree admin status` lists them), then `{}`", pinned.len(), host.cmd("rollback --dry-run")),
    }
}

/// Decide, from the status, what brings `target` to the default position:
/// a staged deployment is removed first, then the row of what is left.
pub fn decide(os: &OsState, target: &Deployment, has_rpm_ostree: bool) -> (String, Vec<Action>) {
    let Some(staged) = os.staged() else {
        return decide_unstaged(os, target, has_rpm_ostree);
    };
    let (first, left, how) = if has_rpm_ostree {
        (
            Action::CleanupPending {
                staged: staged.clone(),
            },
            after_cleanup_pending(os),
            "`rpm-ostree cleanup -p` (it keeps pinned deployments)",
        )
    } else {
        (
            Action::DropStaged {
                staged: staged.clone(),
            },
            without_staged(os),
            "dropping it as libostree does (no rpm-ostree here)",
        )
    };
    let target = left
        .deployments
        .iter()
        .find(|d| same(d, target))
        .cloned()
        .unwrap_or_else(|| target.clone());
    let (case, mut actions) = decide_unstaged(&left, &target, has_rpm_ostree);
    actions.insert(0, first);
    (
        format!("a deployment is staged ({staged}), which the next boot would finalize and boot, and which makes rpm-ostree rollback refuse: remove it first, by {how}; then: {case}"),
        actions,
    )
}

/// The deployments without the staged one, indices and marks derived again.
fn without_staged(os: &OsState) -> OsState {
    let mut left = os.clone();
    left.deployments.retain(|d| !d.staged);
    left.staged_record = None;
    reindex(&mut left);
    left
}

/// What `rpm-ostree cleanup -p` leaves: of the booted stateroot, the
/// deployments before the booted one go unless pinned; the staged one goes;
/// other stateroots' stay (coreos/rpm-ostree
/// `src/daemon/rpmostree-sysroot-core.cxx`, `rpmostree_syscore_filter_deployments`).
pub fn after_cleanup_pending(os: &OsState) -> OsState {
    let mut left = without_staged(os);
    if let Some(b) = left.deployments.iter().position(|d| d.booted) {
        let root = left.deployments[b].stateroot.clone();
        let mut i = 0;
        left.deployments.retain(|d| {
            let keep = i >= b || d.stateroot != root || d.pinned;
            i += 1;
            keep
        });
    }
    reindex(&mut left);
    left
}

fn reindex(os: &mut OsState) {
    for (i, d) in os.deployments.iter_mut().enumerate() {
        d.index = i;
    }
    ostree::remark(&mut os.deployments);
}

/// The whole plan, the one the dry run prints and the real run executes:
/// the row of the table, and, without rpm-ostree, the reorder spelled out as
/// the undeploys it takes; refused (before any change) when that reorder
/// would have to undeploy a booted or pinned deployment.
pub fn plan_actions(
    host: &Host,
    os: &OsState,
    target: &Deployment,
    has_rpm_ostree: bool,
) -> Result<(String, Vec<Action>)> {
    let (case, actions) = decide(os, target, has_rpm_ostree);
    if has_rpm_ostree {
        return Ok((case, actions));
    }
    // The state each action leaves, to spell the reorder out on it.
    let mut now = os.clone();
    let mut out = Vec::new();
    for a in actions {
        match &a {
            Action::Undeploy { index, .. } => {
                now.deployments.remove(*index);
                reindex(&mut now);
            }
            Action::DropStaged { .. } => now = without_staged(&now),
            Action::Rollback { .. } => {
                let t = now
                    .deployments
                    .iter()
                    .position(|d| same(d, target))
                    .context("the pinned deployment is not deployed")?;
                for i in (0..t).rev() {
                    let ahead = &now.deployments[i];
                    if ahead.booted || ahead.pinned {
                        bail!("{}", no_reorder(host, os, target, ahead));
                    }
                    out.push(Action::Undeploy {
                        index: i,
                        deployment: ahead.short(),
                    });
                }
                continue;
            }
            _ => {}
        }
        out.push(a);
    }
    Ok((case, out))
}

/// The refusal of the plain-ostree reorder: what stands before the pinned
/// deployment is booted (or pinned), so it cannot be undeployed; the way out
/// is the boot menu.
fn no_reorder(host: &Host, os: &OsState, target: &Deployment, ahead: &Deployment) -> String {
    let index = os
        .deployments
        .iter()
        .position(|d| same(d, target))
        .unwrap_or(target.index);
    let entry = boot_entry(host, target);
    if ahead.booted {
        format!(
            "cannot make the pinned deployment {} the default without rpm-ostree: {} stands before it and is booted (a booted deployment cannot be undeployed, and only rpm-ostree reorders without undeploying). Nothing was changed: the pinned deployment is still deployment {index} in `ostree admin status`. Next: reboot with `systemctl reboot` and choose {entry} in the boot menu (that choice holds for one boot); then run `{}` (it should say the node runs the pinned OS) and `{}`, which then makes it the default by undeploying what stands before it",
            target.short(),
            ahead.short(),
            host.cmd("status"),
            host.cmd("rollback")
        )
    } else {
        format!(
            "cannot make the pinned deployment {} the default without rpm-ostree: {} stands before it and is pinned (pinned deployments are never undeployed here). Nothing was changed. Next: if that deployment is not needed, unpin it with `ostree admin pin --unpin {}` and run `{}` again; or reboot with `systemctl reboot` and choose {entry} in the boot menu for one boot",
            target.short(),
            ahead.short(),
            ahead.index,
            host.cmd("rollback")
        )
    }
}

/// "the entry \"<title>\"" of `target`'s boot menu entry, or how to find it.
fn boot_entry(host: &Host, target: &Deployment) -> String {
    match ostree::boot_entry_title(host, &target.id()) {
        Some(t) => format!("the entry \"{t}\""),
        None => format!(
            "the entry of {} (see `grep -H title /boot/loader/entries/*.conf`)",
            target.short()
        ),
    }
}

fn decide_unstaged(
    os: &OsState,
    target: &Deployment,
    has_rpm_ostree: bool,
) -> (String, Vec<Action>) {
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
    let index = os
        .deployments
        .iter()
        .position(|d| same(d, target))
        .unwrap_or(target.index);
    let set_default = vec![Action::SetDefault {
        index,
        deployment: target.short(),
    }];
    if let Some(active) = os.active().filter(|a| a.stateroot != target.stateroot) {
        return (
            format!(
                "the pinned deployment is in stateroot {}, the {} one in {}: make it the default with ostree admin set-default (rpm-ostree rollback only reorders the {} stateroot)",
                target.stateroot,
                if active.booted { "booted" } else { "default (nothing booted)" },
                active.stateroot,
                active.stateroot
            ),
            set_default,
        );
    }
    // Booted (chosen in the boot menu) with only other stateroots' deployments
    // before it: rpm-ostree has no pending deployment of this stateroot, so it
    // moves the rollback one first or fails ("No rollback deployment found").
    if target.booted
        && !os
            .deployments
            .iter()
            .take(index)
            .any(|d| d.stateroot == target.stateroot)
    {
        return (
            format!(
                "the pinned deployment is booted but not the default, only other stateroots' deployments stand before it ({}): make it the default with ostree admin set-default (rpm-ostree rollback would not move it)",
                ahead_roots(os, index).join(", ")
            ),
            set_default,
        );
    }
    // Booted (chosen in the boot menu) with a deployment of its own stateroot
    // before it. rpm-ostree rollback takes the first deployment of the
    // booted stateroot before the booted one as pending and the first after
    // it as rollback (ostree_sysroot_query_deployments_for); with a pending
    // one and no rollback one it puts the booted deployment first ("undo a
    // rollback", rpmostreed-transaction-types.cxx rollback_transaction_execute),
    // but with a rollback one it would move that one first. So the unpinned
    // deployments of this stateroot after it are undeployed first (from the
    // highest index); a pinned one there leaves set-default. Plain ostree:
    // the reorder undeploys what stands before it.
    if target.booted {
        let after: Vec<(usize, &Deployment)> = os
            .deployments
            .iter()
            .enumerate()
            .skip(index + 1)
            .filter(|(_, d)| d.stateroot == target.stateroot)
            .collect();
        if has_rpm_ostree && after.iter().any(|(_, d)| d.pinned) {
            return (
                "the pinned deployment is booted but not the default, and another pinned deployment of its stateroot stands after it (rpm-ostree rollback would move that one first): make it the default with ostree admin set-default".into(),
                set_default,
            );
        }
        let mut actions: Vec<Action> = if has_rpm_ostree {
            after
                .iter()
                .rev()
                .map(|(i, d)| Action::Undeploy {
                    index: *i,
                    deployment: d.short(),
                })
                .collect()
        } else {
            Vec::new()
        };
        actions.push(Action::Rollback { how });
        return (
            "the pinned deployment is booted but another one is the default: roll back (the booted one becomes the default)".into(),
            actions,
        );
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
    // A recovery under way in another backup dir relies on the OS it
    // booted (the lifecycle rule): no rollback to this dir's OS meanwhile.
    if let Some(d) = crate::recovery::lifecycle::recovery_elsewhere(host).and_then(|v| v.under_way)
    {
        return Err(crate::recovery::lifecycle::refuse_under_way(
            host,
            "roll the OS back",
            &d,
        ));
    }
    let mut req = vec!["ostree"];
    if reboot {
        req.push("systemctl");
    }
    let tools = Tools::require(&req, &["rpm-ostree"])?;
    let os = ostree::read(host, &tools)?;
    let target = target(host, &os)?;
    let has_rpm = ostree::rpm_ostree_usable(host, &tools);
    let (case, mut actions) = plan_actions(host, &os, &target, has_rpm)?;
    // Before any change, and the same for --dry-run (as restore and backup
    // dry runs refuse exactly like the real run).
    if actions
        .iter()
        .any(|a| matches!(a, Action::SetDefault { .. }))
        && !ostree::has_set_default(&tools)?
    {
        bail!("{}", no_set_default(host, &os, &target));
    }
    let booted_is_target = os.active().is_some_and(|d| same(d, &target));
    // Booted already (chosen in the boot menu), the pinned deployment only
    // has to become the default: no reboot.
    let reboot_needed = !booted_is_target;
    // Only --reboot reboots: a plain rollback, run once or twice, never does.
    actions.retain(|a| *a != Action::Reboot);
    if reboot && reboot_needed {
        actions.push(Action::Reboot);
    }
    // A recovery under way here (booted into another deployment than its
    // own: recovery::same_os) continues; otherwise one starts.
    let then = if crate::store::journal::Journal::path(&host.backup_dir()).exists() {
        crate::recovery::state::resume_command(host)
    } else {
        host.cmd("restore")
    };
    let after = format!(
        "after the reboot, run `{}`; it should say the node runs the pinned OS, then run `{then}`",
        host.cmd("status"),
    );
    let next = if dry_run && reboot_needed {
        format!(
            "nothing was changed (--dry-run); do it with `{}`; {after}",
            host.cmd("rollback --reboot")
        )
    } else if reboot && reboot_needed {
        format!("the node reboots now; {after}")
    } else if reboot_needed {
        format!("reboot into the pinned deployment with `systemctl reboot`; {after}")
    } else if dry_run && !actions.is_empty() {
        format!(
            "nothing was changed (--dry-run); do it with `{}` (no reboot: the pinned deployment is booted, it only becomes the default), then, if the upgrade failed, `{}`",
            host.cmd("rollback"),
            host.cmd("restore")
        )
    } else if !actions.is_empty() {
        format!(
            "the pinned deployment is booted and now the next default too (no reboot needed); if the upgrade failed, run `{}`",
            host.cmd("restore")
        )
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
            Action::Undeploy { deployment, .. } => {
                // Planned again on the node as it is now (indices shift
                // after each undeploy): the next step must be this one.
                let now = ostree::read(host, &tools)?;
                let t = now
                    .deployments
                    .iter()
                    .find(|d| same(d, &target))
                    .context("the pinned deployment disappeared")?;
                let (_, next) = plan_actions(host, &now, t, has_rpm)?;
                match next.first() {
                    Some(Action::Undeploy { index, deployment: d }) if d == deployment => {
                        ostree::undeploy(host, &tools, &now.deployments[*index])?
                    }
                    _ => bail!(
                        "the deployments changed since the plan ({deployment} was to be undeployed next); nothing more was changed; run `{}` to plan again from the node as it is",
                        host.cmd("rollback --dry-run")
                    ),
                }
            }
            Action::Rollback { .. } => roll_back(&tools)?,
            Action::SetDefault { .. } => ostree::set_default(host, &tools, &target)?,
            Action::CleanupPending { .. } => {
                cmd::run(tools.command("rpm-ostree")?.args(["cleanup", "-p"]))?;
            }
            Action::DropStaged { .. } => ostree::drop_staged(host, &tools)?,
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

/// The stateroots of the deployments before `index`, each once, in order.
fn ahead_roots(os: &OsState, index: usize) -> Vec<String> {
    let mut roots: Vec<String> = Vec::new();
    for d in &os.deployments[..index.min(os.deployments.len())] {
        if !roots.contains(&d.stateroot) {
            roots.push(d.stateroot.clone());
        }
    }
    roots
}

/// The refusal when the pinned deployment is in another stateroot and this
/// ostree has no `admin set-default`: what happened, the node's state, and
/// the next command that works.
fn no_set_default(host: &Host, os: &OsState, target: &Deployment) -> String {
    let index = os
        .deployments
        .iter()
        .position(|d| same(d, target))
        .unwrap_or(target.index);
    let lacks = "this node's ostree has no `ostree admin set-default` (`ostree admin --help` does not list it)";
    let state = format!(
        "Nothing was changed: the pinned deployment is still deployment {index} in `ostree admin status`, not the default"
    );
    let newer = format!(
        "or, with an ostree that has set-default (OpenShift 4.14.7 and later; for older releases lifecycle-agent's docs/image-based-upgrade.md, \"Manually setting new default deployment\", runs a newer ostree from a container), run `ostree admin set-default {index}`, then `{}`",
        host.cmd("rollback --reboot")
    );
    if target.booted {
        let roots = ahead_roots(os, index);
        let cleanup = roots
            .iter()
            .map(|r| {
                format!(
                    "`{}`, then the same without --dry-run",
                    host.cmd(&format!("stateroot cleanup {r} --dry-run"))
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return format!(
            "cannot make the pinned deployment {} the default: it is booted, but only deployments of other stateroots ({}) stand before it, so the next boot runs them again; `rpm-ostree rollback` only reorders the deployments of the booted stateroot, and {lacks}. {state}. Next: remove the deployments that stand before it, which makes it the default: {cleanup}; then `{}`; {newer}",
            target.short(),
            roots.join(", "),
            host.cmd("status")
        );
    }
    let (how, active) = match os.active() {
        Some(a) if a.booted => ("booted", a.short()),
        Some(a) => ("default (nothing booted)", a.short()),
        None => ("active", "none".to_string()),
    };
    let active_root = os.active().map_or("?", |a| a.stateroot.as_str());
    let entry = boot_entry(host, target);
    format!(
        "cannot make the pinned deployment the default: it is in stateroot {} ({}), the {how} one is in stateroot {active_root} ({active}); `rpm-ostree rollback` only reorders the deployments of the booted stateroot, and {lacks}. {state}. Next: reboot with `systemctl reboot` and choose {entry} in the boot menu (that choice holds for one boot); then run `{}` (it should say the node runs the pinned OS) and `{}`, which says how to keep it the default; {newer}",
        target.stateroot,
        target.short(),
        host.cmd("status"),
        host.cmd("rollback")
    )
}

/// `rpm-ostree rollback` (the plain-ostree reorder is planned as undeploys
/// by [`plan_actions`]).
fn roll_back(tools: &Tools) -> Result<()> {
    cmd::run(tools.command("rpm-ostree")?.arg("rollback"))?;
    Ok(())
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
            Action::SetDefault { index, deployment } => {
                format!("ostree admin set-default {index}   # {deployment}")
            }
            Action::CleanupPending { staged } => {
                format!("rpm-ostree cleanup -p   # staged {staged}")
            }
            Action::DropStaged { staged } => format!(
                "rm {} && ostree admin cleanup   # staged {staged}",
                ostree::STAGED_RUNSTATE
            ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::ostree::{parse_admin_status, BootedFrom};

    /// A status from `ostree admin status` lines (`*` booted) and the
    /// commits' first letters; the last field pins it.
    fn os(lines: &[(&str, &str, char, bool)]) -> OsState {
        let mut text = String::new();
        for (mark, root, c, pinned) in lines {
            // "s": listed as staged, as on a booted host.
            let (mark, suffix) = if *mark == "s" {
                (" ", " (staged)")
            } else {
                (*mark, "")
            };
            text += &format!("{mark} {root} {}.0{suffix}\n", c.to_string().repeat(64));
            if *pinned {
                text += "    Pinned: yes\n";
            }
        }
        let mut deployments = parse_admin_status(&text).unwrap();
        // As `ostree::read` derives them from the booted one.
        let b = deployments.iter().position(|d| d.booted);
        if let Some(b) = b {
            let root = deployments[b].stateroot.clone();
            if let Some(r) = (b + 1..deployments.len()).find(|&i| deployments[i].stateroot == root)
            {
                deployments[r].rollback = true;
            }
        }
        OsState {
            deployments,
            booted_from: if b.is_some() {
                BootedFrom::StatusMark
            } else {
                BootedFrom::DefaultAssumed
            },
            booted_skipped: Vec::new(),
            staged_record: None,
        }
    }

    fn pinned(os: &OsState) -> Deployment {
        os.deployments.iter().find(|d| d.pinned).unwrap().clone()
    }

    fn set_default(index: usize, deployment: &str) -> Action {
        Action::SetDefault {
            index,
            deployment: deployment.to_string(),
        }
    }

    fn rpm_rollback() -> Action {
        Action::Rollback {
            how: "rpm-ostree rollback".into(),
        }
    }

    fn reorder() -> Action {
        Action::Rollback {
            how: "ostree (reorder)".into(),
        }
    }

    /// The admin chose the pinned deployment in the boot menu after a failed
    /// upgrade of the same stateroot: rpm-ostree rollback puts the booted one
    /// first only when no deployment of its stateroot follows it, so the
    /// older standby goes first; nothing ahead of it is undeployed.
    #[test]
    fn the_pinned_deployment_booted_but_not_the_default_is_rolled_back_to() {
        let s = os(&[
            (" ", "rhcos", 'c', false),
            ("*", "rhcos", 'a', true),
            (" ", "rhcos", 'b', false),
        ]);
        let (case, actions) = decide(&s, &pinned(&s), true);
        assert_eq!(
            actions,
            [
                Action::Undeploy {
                    index: 2,
                    deployment: s.deployments[2].short()
                },
                rpm_rollback()
            ],
            "{case}"
        );
        // After that undeploy the re-decided plan is the rollback alone (the
        // run re-decides after each undeploy).
        let s = os(&[(" ", "rhcos", 'c', false), ("*", "rhcos", 'a', true)]);
        let (_, actions) = decide(&s, &pinned(&s), true);
        assert_eq!(actions, [rpm_rollback()]);
        // Plain ostree: the reorder undeploys what stands before it.
        let (_, actions) = decide(&s, &pinned(&s), false);
        assert_eq!(actions, [reorder()]);
        // Another pinned one of the stateroot after it: set-default.
        let s = os(&[
            (" ", "rhcos", 'c', false),
            ("*", "rhcos", 'a', true),
            (" ", "rhcos", 'b', true),
        ]);
        let t = s.deployments[1].clone();
        let (_, actions) = decide(&s, &t, true);
        assert_eq!(actions, [set_default(1, &t.short())]);
    }

    /// The image-based upgrade's shape: the new release booted in its own
    /// stateroot, the pinned old one in `rhcos`: set-default of its index,
    /// never `rpm-ostree rollback` (which would only look at rhcos_4.17).
    #[test]
    fn a_pinned_deployment_in_another_stateroot_is_made_the_default_by_index() {
        for rpm in [true, false] {
            let s = os(&[("*", "rhcos_4.17", 'b', false), (" ", "rhcos", 'a', true)]);
            let (case, actions) = decide(&s, &pinned(&s), rpm);
            assert_eq!(actions, [set_default(1, &pinned(&s).short())], "{case}");
            assert!(
                case.contains("stateroot rhcos, the booted one in rhcos_4.17"),
                "{case}"
            );
        }
    }

    /// Other deployments around, of both stateroots: still one set-default,
    /// of the pinned one's index, no undeploys (set-default reaches any index).
    #[test]
    fn set_default_takes_the_index_whatever_stands_around() {
        let s = os(&[
            (" ", "rhcos_4.17", 'c', false),
            ("*", "rhcos_4.17", 'b', false),
            (" ", "rhcos_4.17", 'd', false),
            (" ", "rhcos", 'e', false),
            (" ", "rhcos", 'a', true),
        ]);
        let (_, actions) = decide(&s, &pinned(&s), true);
        assert_eq!(actions, [set_default(4, &pinned(&s).short())]);
        // Nothing booted: the default's stateroot is the reference.
        let s = os(&[
            (" ", "rhcos_4.17", 'b', false),
            (" ", "rhcos", 'e', false),
            (" ", "rhcos", 'a', true),
        ]);
        let (case, actions) = decide(&s, &pinned(&s), false);
        assert_eq!(actions, [set_default(2, &pinned(&s).short())], "{case}");
        assert!(
            case.contains("the default (nothing booted) one in rhcos_4.17"),
            "{case}"
        );
    }

    /// Already the default: nothing, or a reboot when another stateroot's
    /// deployment is booted (as in the same stateroot).
    #[test]
    fn a_pinned_default_in_another_stateroot_needs_at_most_a_reboot() {
        let s = os(&[(" ", "rhcos", 'a', true), ("*", "rhcos_4.17", 'b', false)]);
        let (case, actions) = decide(&s, &pinned(&s), true);
        assert_eq!(actions, [Action::Reboot], "{case}");
        assert!(case.contains("default already"), "{case}");
        let s = os(&[("*", "rhcos", 'a', true), (" ", "rhcos_4.17", 'b', false)]);
        let (case, actions) = decide(&s, &pinned(&s), true);
        assert!(
            actions.is_empty() && case.contains("default already"),
            "{case}"
        );
    }

    /// Chosen in the boot menu (booted once) with only the other stateroot's
    /// deployments before it: rpm-ostree has no pending deployment of rhcos
    /// and would fail or move another one; set-default.
    #[test]
    fn a_booted_pinned_deployment_behind_another_stateroot_is_set_default() {
        let s = os(&[
            (" ", "rhcos_4.17", 'b', false),
            ("*", "rhcos", 'a', true),
            (" ", "rhcos", 'c', false),
        ]);
        let (case, actions) = decide(&s, &pinned(&s), true);
        assert_eq!(actions, [set_default(1, &pinned(&s).short())], "{case}");
        assert!(case.contains("(rhcos_4.17)"), "{case}");
    }

    /// The same stateroot keeps today's rows, even with another stateroot
    /// deployed beside it.
    #[test]
    fn the_same_stateroot_keeps_the_rollback_rows() {
        let s = os(&[
            ("*", "rhcos", 'b', false),
            (" ", "rhcos", 'a', true),
            (" ", "rhcos_4.17", 'c', false),
        ]);
        let (_, actions) = decide(&s, &pinned(&s), true);
        assert_eq!(actions, [rpm_rollback()]);
        let s = os(&[
            ("*", "rhcos", 'b', false),
            (" ", "rhcos", 'c', false),
            (" ", "rhcos", 'a', true),
        ]);
        let (_, actions) = decide(&s, &pinned(&s), true);
        assert!(
            matches!(actions[0], Action::Undeploy { index: 1, .. }),
            "{actions:?}"
        );
        assert!(matches!(actions.last(), Some(Action::Rollback { .. })));
    }

    #[test]
    fn set_default_renders_and_serialises_like_the_other_actions() {
        let s = os(&[("*", "rhcos_4.17", 'b', false), (" ", "rhcos", 'a', true)]);
        let t = pinned(&s);
        let a = set_default(1, &t.short());
        let j = serde_json::to_value(&a).unwrap();
        assert_eq!(j["action"], "set-default");
        assert_eq!(j["index"], 1);
        let p = Plan {
            target: t.clone(),
            case: "c".into(),
            actions: vec![a],
            dry_run: true,
            reboot_needed: true,
            next: "n".into(),
        };
        let r = render(&p);
        assert!(
            r.contains(&format!(
                "would run: ostree admin set-default 1   # {}",
                t.short()
            )),
            "{r}"
        );
    }

    fn cleanup_pending(staged: &str) -> Action {
        Action::CleanupPending {
            staged: staged.to_string(),
        }
    }

    fn host() -> Host {
        Host::new(
            std::path::Path::new("/"),
            std::path::Path::new("/var/recovery"),
        )
        .unwrap()
    }

    /// A failed upgrade booted, the pinned one the rollback, and the MCD's
    /// next update staged (listed first on a booted host): rpm-ostree
    /// rollback would refuse ("Staged deployment (remove with cleanup -p)"),
    /// so cleanup -p comes first, then the rollback row of what is left.
    #[test]
    fn a_staged_deployment_is_cleaned_up_before_the_rollback() {
        let s = os(&[
            ("s", "rhcos", 'c', false),
            ("*", "rhcos", 'b', false),
            (" ", "rhcos", 'a', true),
        ]);
        let (case, actions) = decide(&s, &pinned(&s), true);
        let staged = s.deployments[0].short();
        assert_eq!(actions, vec![cleanup_pending(&staged), rpm_rollback()]);
        assert!(
            case.contains("staged") && case.contains("cleanup -p"),
            "{case}"
        );
        // The same plan when only /run/ostree/staged-deployment says so
        // (ostree lists no staged deployment on a sysroot not booted).
        let mut rec = os(&[("*", "rhcos", 'b', false), (" ", "rhcos", 'a', true)]);
        rec.staged_record = Some("ccc.0 (recorded)".into());
        let (_, actions) = decide(&rec, &pinned(&rec), true);
        assert_eq!(
            actions,
            vec![cleanup_pending("ccc.0 (recorded)"), rpm_rollback()]
        );
    }

    /// cleanup -p keeps pinned deployments: a pinned one before the booted
    /// one stays, and, already the default, only wants the reboot; the
    /// unpinned pending one goes with the staged one.
    #[test]
    fn cleanup_pending_keeps_the_pinned_one_and_drops_the_unpinned_pending_one() {
        let s = os(&[
            ("s", "rhcos", 'd', false),
            (" ", "rhcos", 'c', false),
            (" ", "rhcos", 'a', true),
            ("*", "rhcos", 'b', false),
        ]);
        let left = after_cleanup_pending(&s);
        let names: Vec<char> = left
            .deployments
            .iter()
            .map(|d| d.checksum.chars().next().unwrap())
            .collect();
        assert_eq!(names, vec!['a', 'b']);
        assert_eq!(left.deployments[0].index, 0);
        let (_, actions) = decide(&s, &pinned(&s), true);
        assert_eq!(
            actions,
            vec![cleanup_pending(&s.deployments[0].short()), Action::Reboot]
        );
        // Another stateroot's deployment before the booted one stays too.
        let o = os(&[
            ("s", "rhcos", 'd', false),
            (" ", "rhcos_4.17", 'e', false),
            ("*", "rhcos", 'b', false),
            (" ", "rhcos", 'a', true),
        ]);
        assert_eq!(after_cleanup_pending(&o).deployments.len(), 3);
    }

    /// Even with the pinned deployment the booted default, a staged one
    /// would be finalized and booted next: it goes first.
    #[test]
    fn a_staged_deployment_goes_even_when_nothing_else_is_to_do() {
        let s = os(&[("s", "rhcos", 'c', false), ("*", "rhcos", 'a', true)]);
        let (_, actions) = decide(&s, &pinned(&s), true);
        assert_eq!(actions, vec![cleanup_pending(&s.deployments[0].short())]);
        let (_, actions) = decide(&s, &pinned(&s), false);
        assert_eq!(
            actions,
            vec![Action::DropStaged {
                staged: s.deployments[0].short()
            }]
        );
    }

    /// Without rpm-ostree the reorder is planned as the undeploys it takes,
    /// and refused in the plan (so in the dry run too) when what stands
    /// before the pinned deployment is booted, naming the boot menu and the
    /// rollback to run after it.
    #[test]
    fn the_plain_ostree_reorder_is_planned_or_refused_before_any_change() {
        // Nothing booted (the Job): undeploy what stands before it.
        let s = os(&[(" ", "rhcos", 'c', false), (" ", "rhcos", 'a', true)]);
        let (_, actions) = plan_actions(&host(), &s, &pinned(&s), false).unwrap();
        assert_eq!(
            actions,
            vec![Action::Undeploy {
                index: 0,
                deployment: s.deployments[0].short()
            }]
        );
        // The failed upgrade booted before it: refused.
        let b = os(&[("*", "rhcos", 'c', false), (" ", "rhcos", 'a', true)]);
        let err = plan_actions(&host(), &b, &pinned(&b), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("stands before it and is booted"), "{err}");
        assert!(
            err.contains("boot menu") && err.contains("`upgrade-recovery rollback`"),
            "{err}"
        );
        assert!(err.contains("Nothing was changed"), "{err}");
        // Another pinned deployment before it: refused, naming the unpin.
        let p = os(&[(" ", "rhcos", 'c', true), (" ", "rhcos", 'a', false)]);
        let mut t = p.deployments[1].clone();
        t.pinned = true;
        let err = plan_actions(&host(), &p, &t, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is pinned") && err.contains("pin --unpin 0"),
            "{err}"
        );
        // The pinned one booted (chosen in the boot menu): the reorder works.
        let c = os(&[(" ", "rhcos", 'c', false), ("*", "rhcos", 'a', true)]);
        let (_, actions) = plan_actions(&host(), &c, &pinned(&c), false).unwrap();
        assert_eq!(actions.len(), 1);
        assert!(matches!(actions[0], Action::Undeploy { index: 0, .. }));
        // With rpm-ostree, decide's row as it is.
        assert_eq!(
            plan_actions(&host(), &b, &pinned(&b), true).unwrap().1,
            vec![rpm_rollback()]
        );
        assert_eq!(decide(&b, &pinned(&b), false).1, vec![reorder()]);
    }
}
