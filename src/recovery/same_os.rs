//! A recovery runs on one OS deployment: the one booted when it started.
//! Its files phase restores that deployment's /etc (ostree keeps an /etc
//! per deployment, merged at deploy time: ostreedev/ostree
//! `src/libostree/ostree-sysroot-deploy.c`, `merge_configuration_from`), so
//! a run after a reboot into another deployment (the boot menu, a default
//! changed since) would restore the cluster, and start kubelet, on an OS
//! whose /etc was never restored, and then report the pre-upgrade state
//! (the independent tester of session 8). Every run after the first, and
//! `status`, compare the booted deployment with the one the journal
//! recorded (`Journal::deployment`) here, in one place.

use crate::node::cmd::Tools;
use crate::node::host::Host;
use crate::node::ostree::{self, OsState};
use crate::store::journal::Journal;
use crate::store::manifest::Manifest;

/// The recovery's deployment is not the booted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// What happened, as a clause.
    pub what: String,
    /// The way back, as a sentence: the command that boots the recovery's
    /// deployment, then the one that continues the recovery; or why the
    /// recovery must start over.
    pub way: String,
    /// The first command of `way`, alone.
    pub command: String,
    pub booted: String,
    pub recovery: String,
}

/// Whether the recovery's deployment (`Journal::deployment`) is not the
/// booted one, and the way back; `then` continues the recovery. `tools`
/// (None in `status`) is asked whether `ostree admin set-default` exists.
pub fn moved(
    host: &Host,
    j: &Journal,
    os: &OsState,
    m: Option<&Manifest>,
    tools: Option<&Tools>,
    then: &str,
) -> Option<Moved> {
    let want = j.deployment.as_ref()?;
    let booted = os.deployments.iter().find(|d| d.booted)?;
    if booted.is(want) {
        return None;
    }
    let recovery = format!(
        "{} {}.{}",
        want.stateroot,
        want.checksum.get(..12).unwrap_or(&want.checksum),
        want.serial
    );
    let what = format!(
        "the recovery runs on deployment {recovery} (its files phase restored that deployment's /etc), but {} is booted: the cluster phase would run on an OS whose /etc was not restored",
        booted.short()
    );
    let moved = |what: String, way: String, command: String| Moved {
        what,
        way,
        command,
        booted: booted.short(),
        recovery: recovery.clone(),
    };
    let Some(d) = os.deployments.iter().find(|d| d.is(want)) else {
        let command = host.cmd("restore --restart --restore-onto-other-os");
        return Some(moved(
            format!("{what}, and {recovery} is no longer deployed (its /etc is gone with it)"),
            format!(
                "start the recovery over on the booted OS with `{command}` (it restores the files into this deployment's /etc; the node then runs the backup's files on another OS version)"
            ),
            command,
        ));
    };
    let (boot_it, command) = if d.index == 0 {
        // The default already: the reboot comes back to it.
        (
            "reboot into it with `systemctl reboot` (it is the default)".to_string(),
            "systemctl reboot".to_string(),
        )
    } else if m
        .and_then(|m| m.deployment.as_ref())
        .is_some_and(|p| d.is(&p.id()))
    {
        let c = host.cmd("rollback --reboot");
        (
            format!("make it the default and reboot into it with `{c}` (it is the deployment the backup pinned)"),
            c,
        )
    } else if tools.is_some_and(|t| ostree::has_set_default(t).unwrap_or(false)) {
        let c = format!("ostree admin set-default {}", d.index);
        (
            format!("make it the default with `{c}`, then reboot into it with `systemctl reboot`"),
            c,
        )
    } else {
        let entry = ostree::boot_entry_title(host, want).map_or_else(
            || {
                format!(
                    "{} (deployment {} of `ostree admin status`)",
                    d.short(),
                    d.index
                )
            },
            |t| format!("`{t}`"),
        );
        (
            format!("reboot with `systemctl reboot` and choose {entry} in the boot menu"),
            "systemctl reboot".to_string(),
        )
    };
    Some(moved(
        what,
        format!("{boot_it}; then run `{then}`"),
        command,
    ))
}

/// Refuse, before any change, a run of a recovery under way whose
/// deployment is not the booted one (exit 1; nothing changed).
pub fn refuse_moved(host: &Host, tools: &Tools, m: &Manifest, j: &Journal) -> anyhow::Result<()> {
    if j.deployment.is_none() {
        return Ok(());
    }
    let os = ostree::read(host, tools)?;
    let resume = super::state::resume_command(host);
    match moved(host, j, &os, Some(m), Some(tools), &resume) {
        Some(mv) => anyhow::bail!(
            "{}. Nothing was changed.\n{}Next: {}.",
            mv.what,
            super::state::render_os(&os),
            mv.way
        ),
        None => Ok(()),
    }
}
