//! `backup`: check, plan, then execute. The checks come first (no change
//! before them); the real run takes the lock, cleans up what a killed run
//! left, reads the node into the plan, and builds the plan's parts in a new
//! generation that becomes current (`store::switch`) only when complete,
//! fsynced and verified.

use crate::backup::plan::{self, Plan};
use crate::backup::space::{du, free_bytes, Space};
use crate::backup::{self, images, Options, Outcome};
use crate::node::cmd::Tools;
use crate::node::host::Host;
use crate::store::{self, layout, lock, Kind};
use crate::util::error::Fail;
use crate::util::fsutil;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The run after its checks: the tools it needs, and the lock.
struct Checked {
    tools: Tools,
    _lock: lock::Lock,
}

pub fn run(host: &Host, opts: &Options) -> Result<Outcome> {
    let t0 = Instant::now();
    let checked = match check(host, opts)? {
        Ok(c) => c,
        Err(record) => {
            return Ok(Outcome::SkippedRecoveryInProgress {
                record: record.display().to_string(),
            })
        }
    };
    let dir = host.backup_dir();
    if opts.nice {
        backup::be_nice();
    }
    // What a killed run left (old generations, temporary names, an
    // unfinished conversion of the flat format); the current backup stays.
    store::prepare(&dir)?;
    let plan = prepare(host, opts, &checked.tools)?;
    execute(host, opts, &checked.tools, &dir, plan, t0)
}

/// The checks of a backup, before any change: the node, the tools, no
/// recovery under way, the lock, no damaged backup, no failed upgrade.
/// `Err(record)`: a recovery is under way, the backup is skipped.
fn check(host: &Host, opts: &Options) -> Result<Result<Checked, PathBuf>> {
    host.require_node()?;
    let mut req = vec!["ostree"];
    if opts.with_images {
        // The node's own skopeo copies the images: their bytes are never
        // interpreted here.
        req.extend(["skopeo", "crictl"]);
    }
    let tools = Tools::require(&req, &["rpm-ostree"])?;
    let dir = host.backup_dir();
    // A recovery under way (the hub's Job pod may be started again during
    // one): nothing is touched. Checked before the lock, and after it.
    if let Some(rec) = store::recovery_record(&dir) {
        return Ok(Err(rec));
    }
    // A recovery holds the lock before its journal exists (preflight).
    let restore_holds = || match lock::holder(&dir) {
        Some(h) if h.what == lock::RESTORE => {
            Some(dir.join(format!("{} (pid {})", layout::LOCK, h.pid)))
        }
        _ => None,
    };
    let lock = {
        backup::mkdir_private(&dir)?;
        // Durability: a new backup dir's own entry is on disk before the
        // backup that relies on it.
        if let Some(parent) = dir.parent() {
            fsutil::fsync_dir(parent)?;
        }
        match lock::acquire(&dir) {
            Ok(l) => l,
            Err(e) => match restore_holds() {
                Some(rec) => return Ok(Err(rec)),
                None => return Err(e),
            },
        }
    };
    if let Some(rec) = store::recovery_record(&dir) {
        return Ok(Err(rec));
    }
    // Refusals, before any change.
    let kind = store::inspect(&dir)?;
    if let Kind::Damaged(why) = &kind {
        if !opts.replace_backup {
            return Err(Fail::Backup(format!(
                "the backup in {} is damaged: {why}. A recovery may still need what is there (the archives can still be read: `zstd -dc {}/etc.tar.zst | tar -tv`); nothing was changed. To replace it with a new backup of this node: `upgrade-recovery backup --replace-backup`",
                host.dir.display(),
                host.dir.display()
            ))
            .into());
        }
    }
    if !opts.replace_backup {
        backup::refuse_after_failed_upgrade(host, &tools, &dir)?;
    }
    Ok(Ok(Checked { tools, _lock: lock }))
}

/// Read the node into the plan: the parts and their estimates; with
/// `--with-images`, the images (the storage must be readable).
fn prepare(host: &Host, opts: &Options, tools: &Tools) -> Result<Plan> {
    let mut plan = plan::plan(host, opts)?;
    if opts.with_images {
        plan.image_refs = images::refs(host, tools, opts)?;
        plan.estimates.push(plan::Estimate {
            part: "images".into(),
            bytes: images::estimate(host),
        });
    }
    Ok(plan)
}

/// Carry out the plan: the space decision (removing the previous backup
/// first when there is no room for both), the parts in a new generation,
/// the switch.
fn execute(
    host: &Host,
    opts: &Options,
    tools: &Tools,
    dir: &Path,
    plan: Plan,
    t0: Instant,
) -> Result<Outcome> {
    let mut warnings = plan.warnings.clone();
    // Space, before any change. The new generation is built beside the
    // current one, which goes only after the switch.
    let space = Space::decide(
        &host.dir,
        plan.estimate(),
        opts.min_free,
        free_bytes(dir)?,
        du(dir),
    )?;
    if space.remove_previous {
        // The one case with a window without a backup (see README, "space").
        let msg = space.removal_warning(&host.dir);
        log::warn!("{msg}");
        warnings.push(msg);
        store::remove_current(dir)?;
    }
    let gen = store::new_generation_name(dir, fsutil::unix_now());
    let staging = dir.join(&gen);
    let result = backup::build(host, tools, opts, &plan, &staging, &mut warnings, t0);
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            let state = if store::current(dir).is_ok() {
                "the previous backup is intact"
            } else {
                "there is no backup on this node now"
            };
            return Err(e.context(format!("the backup failed; {state}")));
        }
    };
    store::switch(dir, &gen)?;
    Ok(Outcome::Done(Box::new(summary)))
}
