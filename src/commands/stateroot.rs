//! Stateroots (`/sysroot/ostree/deploy/<name>`): list them, and remove one
//! (after an image-based upgrade was aborted or finalized) safely.

use crate::node::cmd::Tools;
use crate::node::host::{cmd_in, Host};
use crate::node::ostree::{self, Deployment, OsState};
use crate::util::error::Fail;
use anyhow::{bail, Context, Result};
use rustix::fd::AsFd;
use rustix::fs::{self, IFlags, Mode, OFlags};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Serialize)]
pub struct Stateroot {
    pub name: String,
    pub deployments: Vec<Deployment>,
    /// Bytes allocated below `ostree/deploy/<name>` (hard links into the
    /// repo counted too, as `du -sx` does).
    pub disk_bytes: u64,
    /// A directory with no deployment (left by a failed deployment).
    pub orphan: bool,
    /// Holds the booted deployment (or the default one when nothing is booted).
    pub active: bool,
}

#[derive(Debug, Serialize)]
pub struct Listing {
    pub os: OsState,
    pub stateroots: Vec<Stateroot>,
}

fn deploy_dir(host: &Host) -> PathBuf {
    host.path("/sysroot/ostree/deploy")
}

/// The node and the programs `stateroot` needs (ostree; rpm-ostree where it
/// can run), checked before anything is read.
fn require(host: &Host) -> Result<Tools> {
    host.require_node()?;
    Tools::require(&["ostree"], &["rpm-ostree"])
}

/// `stateroot list`.
pub fn run_list(host: &Host) -> Result<Listing> {
    list(host, &require(host)?)
}

/// `stateroot cleanup NAME [--dry-run]`.
pub fn run_cleanup(host: &Host, name: &str, dry_run: bool) -> Result<CleanupPlan> {
    cleanup(host, &require(host)?, name, dry_run)
}

pub fn list(host: &Host, tools: &Tools) -> Result<Listing> {
    let os = ostree::read(host, tools)?;
    let active = os.active().map(|d| d.stateroot.clone());
    let dir = deploy_dir(host);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let stateroots = names
        .into_iter()
        .map(|name| {
            let deployments: Vec<Deployment> = os
                .deployments
                .iter()
                .filter(|d| d.stateroot == name)
                .cloned()
                .collect();
            Stateroot {
                disk_bytes: crate::backup::du(&dir.join(&name)),
                orphan: deployments.is_empty(),
                active: active.as_deref() == Some(name.as_str()),
                deployments,
                name,
            }
        })
        .collect();
    Ok(Listing { os, stateroots })
}

pub fn render_list(l: &Listing) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for r in &l.stateroots {
        let mut tags = Vec::new();
        if r.active {
            tags.push("active");
        }
        if r.orphan {
            tags.push("orphan: no deployment");
        }
        let _ = writeln!(
            s,
            "{}  {}{}",
            r.name,
            crate::util::fsutil::human(r.disk_bytes),
            if tags.is_empty() {
                String::new()
            } else {
                format!("  ({})", tags.join(", "))
            }
        );
        for d in &r.deployments {
            let mut marks = Vec::new();
            for (f, m) in [
                (d.booted, "booted"),
                (d.index == 0, "default"),
                (d.pinned, "pinned"),
                (d.staged, "staged"),
                (d.pending, "pending"),
                (d.rollback, "rollback"),
            ] {
                if f {
                    marks.push(m);
                }
            }
            let _ = writeln!(
                s,
                "  {} {}.{} {}  {}",
                d.index,
                d.checksum.get(..12).unwrap_or(&d.checksum),
                d.serial,
                d.version.as_deref().unwrap_or("?"),
                marks.join(", ")
            );
        }
    }
    s
}

/// A stateroot name that cannot escape `ostree/deploy`.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Fail::Usage(format!(
            "{name:?} is not a stateroot name (a plain directory name under /sysroot/ostree/deploy)"
        ))
        .into());
    }
    Ok(())
}

/// One change of a stateroot cleanup, as the dry run prints it and the real
/// run carries it out.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// `ostree admin undeploy <index>`; the real run re-reads the
    /// deployments first and checks the index still names this one.
    Undeploy(Deployment),
    /// In a private mount namespace: remount /sysroot read-write, clear
    /// immutable flags, remove the stateroot's directory.
    RemoveDir { path: String },
}

#[derive(Debug, Serialize)]
pub struct CleanupPlan {
    pub stateroot: String,
    /// In this order: the undeploys from the highest index (so the lower
    /// indices of the plan stay valid), then the directory.
    pub actions: Vec<Action>,
    pub dry_run: bool,
}

/// `dir`: the backup dir as seen on the node (the next command carries it).
pub fn render_plan(p: &CleanupPlan, dir: &Path) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} stateroot {}:",
        if p.dry_run { "Would remove" } else { "Removed" },
        p.stateroot
    );
    for a in &p.actions {
        match a {
            Action::Undeploy(d) => {
                let _ = writeln!(s, "  ostree admin undeploy {}   # {}", d.index, d.short());
            }
            Action::RemoveDir { path } => {
                let _ = writeln!(
                    s,
                    "  in a private mount namespace: remount /sysroot read-write, clear immutable flags, remove {path}"
                );
            }
        }
    }
    if p.dry_run {
        let _ = writeln!(
            s,
            "Nothing was changed (--dry-run). Next: carry it out with `{}`.",
            cmd_in(dir, &format!("stateroot cleanup {}", p.stateroot))
        );
    } else {
        let _ = writeln!(
            s,
            "Next: `{}` shows the stateroots left.",
            cmd_in(dir, "stateroot list")
        );
    }
    s
}

fn refuse_active(host: &Host, os: &OsState, name: &str) -> Result<()> {
    if let Some(a) = os.active().filter(|a| a.stateroot == name) {
        let why = if a.booted {
            "booted"
        } else {
            "default (nothing is marked booted)"
        };
        return Err(Fail::Usage(format!(
            "refusing to remove stateroot {name}: it holds the {why} deployment {}, the OS that runs; nothing was changed. Next: `{}` lists the stateroots (only one that holds neither the booted nor the default deployment can be removed)",
            a.short(),
            host.cmd("stateroot list")
        ))
        .into());
    }
    if let Some(b) = os
        .deployments
        .iter()
        .find(|d| d.stateroot == name && d.booted)
    {
        bail!(
            "refusing to remove stateroot {name}: it holds the booted deployment {}; nothing was changed. Next: `{}` lists the stateroots (only one that holds neither the booted nor the default deployment can be removed)",
            b.short(),
            host.cmd("stateroot list")
        );
    }
    Ok(())
}

/// Undeploy every deployment of `name` (from the highest index, re-reading
/// the status each time), then remove its directory.
pub fn cleanup(host: &Host, tools: &Tools, name: &str, dry_run: bool) -> Result<CleanupPlan> {
    check_name(name)?;
    let dir = deploy_dir(host).join(name);
    if !dir.is_dir() {
        return Err(Fail::Usage(format!(
            "no stateroot {name}: {} does not exist",
            dir.display()
        ))
        .into());
    }
    let os = ostree::read(host, tools)?;
    refuse_active(host, &os, name)?;
    let plan = CleanupPlan {
        stateroot: name.to_string(),
        actions: plan_actions(&os, name),
        dry_run,
    };
    if !dry_run {
        for a in &plan.actions {
            execute(host, tools, name, &dir, a)?;
        }
    }
    Ok(plan)
}

/// The undeploys of `name`'s deployments from the highest index, then its
/// directory.
fn plan_actions(os: &OsState, name: &str) -> Vec<Action> {
    let mut actions: Vec<Action> = os
        .deployments
        .iter()
        .rev()
        .filter(|d| d.stateroot == name)
        .cloned()
        .map(Action::Undeploy)
        .collect();
    actions.push(Action::RemoveDir {
        path: format!("/sysroot/ostree/deploy/{name}"),
    });
    actions
}

/// Carry out one planned action, re-reading the deployments first: a node
/// that changed since the plan is refused, never acted on by stale indices.
fn execute(host: &Host, tools: &Tools, name: &str, dir: &Path, a: &Action) -> Result<()> {
    let now = ostree::read(host, tools)?;
    refuse_active(host, &now, name)?;
    let again = format!(
        "run `{}` to plan again from the node as it is",
        host.cmd(&format!("stateroot cleanup {name} --dry-run"))
    );
    match a {
        Action::Undeploy(d) => ostree::undeploy(host, tools, d)
            .with_context(|| format!("the deployments changed since the plan; {again}")),
        Action::RemoveDir { .. } => {
            if let Some(d) = now.deployments.iter().find(|d| d.stateroot == name) {
                bail!(
                    "stateroot {name} holds deployment {} that was not in the plan (deployed since); its directory was kept; {again}",
                    d.short()
                );
            }
            remove_in_private_namespace(host, dir)
        }
    }
}

/// In a private mount namespace (the host keeps its read-only view), remount
/// the sysroot read-write and remove `dir`, clearing immutable flags.
fn remove_in_private_namespace(host: &Host, dir: &Path) -> Result<()> {
    use rustix::mount::{mount_change, mount_remount, MountFlags, MountPropagationFlags};
    use rustix::thread::{unshare_unsafe, UnshareFlags};
    // SAFETY: only a new mount namespace; no descriptor table is unshared.
    unsafe { unshare_unsafe(UnshareFlags::NEWNS) }.context("unshare(CLONE_NEWNS)")?;
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .context("making the mounts of the new namespace private")?;
    let sysroot = host.sysroot();
    if let Err(e) = mount_remount(&sysroot, MountFlags::RELATIME | MountFlags::SILENT, "") {
        log::info!(
            "remount of {} read-write: {e} (not a mount point of its own)",
            sysroot.display()
        );
    }
    remove_tree(dir).with_context(|| format!("removing {}", dir.display()))
}

fn remove_tree(dir: &Path) -> Result<()> {
    let fd = fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    clear_immutable(fd.as_fd());
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            remove_tree(&p)?;
        } else {
            if e.file_type()?.is_file() {
                if let Ok(f) = fs::open(
                    &p,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    clear_immutable(f.as_fd());
                }
            }
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    std::fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))
}

fn clear_immutable(fd: rustix::fd::BorrowedFd) {
    if let Ok(flags) = fs::ioctl_getflags(fd) {
        if flags.contains(IFlags::IMMUTABLE) {
            let _ = fs::ioctl_setflags(fd, flags - IFlags::IMMUTABLE);
        }
    }
}
