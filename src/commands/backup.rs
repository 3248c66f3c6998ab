//! `backup`: check, plan, then execute. The checks are the same for the real
//! run and `--dry-run`, and refuse the same way; the dry run prints the plan
//! the real run would execute and changes nothing (no lock file, no dir, no
//! undeploy, no cleanup). The real run takes the lock first, cleans up what
//! a killed run left, and builds the plan's parts in a new generation that
//! becomes current (`store::switch`) only when complete, fsynced and
//! verified.

use crate::backup::plan::{self, DryRun, Plan};
use crate::backup::space::{du, free_bytes, Space};
use crate::backup::{self, images, os, EtcdMode, Options, Outcome};
use crate::node::cmd::Tools;
use crate::node::host::Host;
use crate::node::ostree;
use crate::recovery::lifecycle;
use crate::store::manifest::{Manifest, PinnedDeployment};
use crate::store::{self, layout, lock, Kind};
use crate::util::error::Fail;
use crate::util::fsutil::{self, human};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The run after its checks: the tools it needs, and (real run) the lock.
struct Checked {
    tools: Tools,
    _lock: Option<lock::Lock>,
    /// What the lifecycle rule found: the replaced backup's pin, the cluster.
    base: backup::Baseline,
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
    if opts.dry_run {
        let plan = prepare(host, opts, &checked.tools)?;
        return Ok(Outcome::DryRun(Box::new(dry_run(
            host,
            opts,
            &checked.tools,
            &checked.base,
            &dir,
            plan,
        )?)));
    }
    if opts.nice {
        backup::be_nice();
    }
    // What a killed run left (old generations, temporary names, an
    // unfinished conversion of the flat format); the current backup stays.
    store::prepare(&dir)?;
    let mut plan = prepare(host, opts, &checked.tools)?;
    if let Some(p) = &checked.base.replaces_damaged {
        plan.warnings.push(format!(
            "the backup this one replaced was damaged ({p}); this one is complete and verified"
        ));
    }
    plan.base = checked.base;
    execute(host, opts, &checked.tools, &dir, plan, t0)
}

/// The checks of a backup, before any change: the node, the tools, no
/// recovery under way, the lock (taken by the real run; the dry run only
/// checks that no other run holds it), no damaged backup, no failed upgrade.
/// `Err(record)`: a recovery is under way, the backup is skipped.
fn check(host: &Host, opts: &Options) -> Result<Result<Checked, PathBuf>> {
    host.require_node()?;
    let mut req = vec!["ostree"];
    if opts.with_images {
        // The node's own skopeo copies the images: their bytes are never
        // interpreted here.
        req.extend(["skopeo", "crictl"]);
    }
    let tools = Tools::require(&req, &["rpm-ostree", "oc"])?;
    let dir = host.backup_dir();
    // Nothing is read from or written into a dir someone else could change.
    store::trust::require(&dir)?;
    // A recovery under way (the hub's Job pod may be started again during
    // one): nothing is touched. Checked before the lock, and after it.
    if let Some(rec) = store::recovery_record(&dir) {
        return Ok(Err(rec));
    }
    // A recovery under way in another backup dir (the lifecycle rule's
    // first question): refused (exit 3) before anything is created.
    if let Some(dir) = lifecycle::recovery_elsewhere(host).and_then(|v| v.under_way) {
        return Err(lifecycle::refuse_under_way(host, "take a backup", &dir));
    }
    // A recovery holds the lock before its journal exists (preflight).
    let restore_holds = || match lock::holder(&dir) {
        Some(h) if h.what == lock::RESTORE => {
            Some(dir.join(format!("{} (pid {})", layout::LOCK, h.pid)))
        }
        _ => None,
    };
    let lock = if opts.dry_run {
        if let Err(e) = lock::check_free(host) {
            return match restore_holds() {
                Some(rec) => Ok(Err(rec)),
                None => Err(e),
            };
        }
        None
    } else {
        backup::mkdir_private(&dir)?;
        // Durability: a new backup dir's own entry is on disk before the
        // backup that relies on it.
        if let Some(parent) = dir.parent() {
            fsutil::fsync_dir(parent)?;
        }
        match lock::acquire(host) {
            Ok(l) => Some(l),
            Err(e) => match restore_holds() {
                Some(rec) => return Ok(Err(rec)),
                None => return Err(e),
            },
        }
    };
    if let Some(rec) = store::recovery_record(&dir) {
        return Ok(Err(rec));
    }
    // Refusals, before any change. A manifest that does not parse is a
    // damaged backup like a missing one: refused, and replaced with
    // `--replace-backup` (the independent tester: every run exit 4, the
    // override refused too).
    let (kind, m) = match store::inspect(&dir)? {
        k @ (Kind::Generation(_) | Kind::Flat) => {
            match store::current(&dir).and_then(|g| Manifest::load(&g)) {
                Ok(m) => (k, Some(m)),
                Err(e) => (Kind::Damaged(format!("{e:#}")), None),
            }
        }
        k => (k, None),
    };
    if let Kind::Damaged(why) = &kind {
        if !opts.replace_backup {
            return Err(Fail::Backup(format!(
                "the backup in {} is damaged: {why}. A recovery may still need what is there ({}); nothing was changed. To replace it with a new backup of this node: `{}`",
                host.dir.display(),
                store::read_hint(&dir),
                host.cmd("backup --replace-backup")
            ))
            .into());
        }
    }
    let base = lifecycle_check(host, opts, &tools, &kind, m)?;
    Ok(Ok(Checked {
        tools,
        _lock: lock,
        base,
    }))
}

/// The lifecycle rule (`recovery::lifecycle`), before any change: a new
/// backup replaces the current one only when no upgrade after it failed
/// (or a recovery from it completed since); never while a deployment is
/// staged. Refusals are exit 1 with the reason, the facts read and the
/// override; what the backup needs of the facts is returned. `m`: the
/// current backup's manifest, read once by the caller (None when `kind`
/// has none).
fn lifecycle_check(
    host: &Host,
    opts: &Options,
    tools: &Tools,
    kind: &Kind,
    m: Option<Manifest>,
) -> Result<backup::Baseline> {
    // A backup whose manifest reads but whose parts are damaged (a part
    // missing, of another size, the tool's copy): the lifecycle rule below
    // decides as for an intact one (an upgrade after it that did not
    // complete keeps it: a recovery may still need what is intact of it);
    // else it is replaced, and the output says it was damaged. The hub's
    // next cycle is not blocked by the previous cycle's damaged backup.
    let damaged = m.as_ref().and_then(|m| {
        crate::recovery::state::backup_problem(&store::current(&host.backup_dir()).ok()?, m)
    });
    let taken = match kind {
        Kind::Talm { created } => Some(lifecycle::Taken::Talm { created: *created }),
        _ => m.as_ref().map(lifecycle::taken),
    };
    let os = ostree::read(host, tools)?;
    // The way back, from where the node stands: the pinned OS booted, or not.
    let pinned_booted = match m.as_ref().and_then(|m| m.deployment.as_ref()) {
        Some(p) => os.active().is_some_and(|a| a.is(&p.id())),
        None => os.active().is_some_and(|a| a.pinned),
    };
    let way_back = if pinned_booted {
        format!(
            "recover the cluster to the backup: `{}`",
            host.cmd("restore")
        )
    } else {
        format!(
            "roll the OS back first: `{}`; after the reboot, `{}`",
            host.cmd("rollback --reboot"),
            host.cmd("restore")
        )
    };
    let facts = lifecycle::gather(host, tools, taken, m.as_ref(), Some(os));
    let v = lifecycle::decide(&facts);
    for f in &v.facts {
        log::info!("lifecycle: {f}");
    }
    if let Some(dir) = &v.under_way {
        return Err(lifecycle::refuse_under_way(host, "take a backup", dir));
    }
    let facts_text = || format!("  {}", v.facts.join("\n  "));
    if let Some(staged) = &v.staged {
        return Err(anyhow::anyhow!(
            "refusing to take a backup: {}. Nothing was changed. The facts read:\n{}\nNext: let the update finish (the node reboots into {staged}); then run the backup again: `{}`",
            v.reason,
            facts_text(),
            host.cmd("backup")
        ));
    }
    if !v.may_replace && !opts.replace_backup {
        return Err(anyhow::anyhow!(
            "refusing to take a backup: {}. Nothing was changed: the backup in {} stays. The facts read:\n{}\nNext: if the upgrade failed, {way_back} (`{}` shows where the node stands). If this node is the new baseline on purpose, replace the backup with `{}`",
            v.reason,
            host.dir.display(),
            facts_text(),
            host.cmd("status"),
            host.cmd("backup --replace-backup")
        ));
    }
    log::info!("lifecycle: {}", v.reason);
    let cluster = match &facts.cluster {
        lifecycle::Cluster::History(h) => Some(crate::store::manifest::ClusterAtBackup {
            version: facts.cluster_version.clone(),
            newest: h.first().cloned(),
        }),
        lifecycle::Cluster::Unknown(_) => None,
    };
    if let Some(p) = &damaged {
        log::warn!("the backup this one replaces is damaged: {p}");
    }
    Ok(backup::Baseline {
        replaces_damaged: damaged,
        // The replaced backup's pin, and those it was to release after
        // its switch (a run killed before it did).
        previous: m
            .map(|m| {
                m.deployment
                    .iter()
                    .chain(&m.release)
                    .map(PinnedDeployment::id)
                    .collect()
            })
            .unwrap_or_default(),
        cluster,
    })
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

/// The plan as the dry run prints it: the OS deployments kept and
/// undeployed, the leftovers the real run would clean up first, the space
/// (and whether the previous backup would go first), the generation.
fn dry_run(
    host: &Host,
    opts: &Options,
    tools: &Tools,
    base: &backup::Baseline,
    dir: &Path,
    plan: Plan,
) -> Result<DryRun> {
    use std::os::unix::fs::PermissionsExt;
    let dir_change = match std::fs::metadata(dir) {
        Err(_) => Some(format!("create {} (mode 0700)", host.dir.display())),
        Ok(m) if m.permissions().mode() & 0o7777 != 0o700 => Some(format!(
            "make {} root-only (mode {:o} to 0700)",
            host.dir.display(),
            m.permissions().mode() & 0o7777
        )),
        Ok(_) => None,
    };
    let replaces = match store::inspect(dir)? {
        Kind::Empty => None,
        Kind::Flat => Some("flat".to_string()),
        Kind::Generation(g) => Some(g),
        Kind::Damaged(_) => Some("damaged".to_string()),
        Kind::Talm { .. } => Some("TALM's upgrade-recovery.sh backup".to_string()),
    };
    let os = os::plan(host, tools, &base.previous)?;
    let leftovers = store::leftovers(dir)?;
    // The real run measures after its cleanup: the leftovers are free
    // space then, not part of the previous backup.
    let freed: u64 = leftovers.remove.iter().map(|p| du(Path::new(p))).sum();
    let (free, previous, foreign) = if dir.exists() {
        let (previous, foreign) = previous_bytes(host, dir)?;
        (
            free_bytes(dir)? + freed,
            previous.saturating_sub(freed),
            foreign,
        )
    } else {
        let parent = dir
            .ancestors()
            .find(|a| a.exists())
            .unwrap_or(Path::new("/"));
        (free_bytes(parent)?, 0, Vec::new())
    };
    let space = Space::decide(
        &host.dir,
        plan.estimate(),
        opts.min_free,
        free,
        previous,
        foreign,
        &again(host, opts),
    )?;
    // Shown as the node names them.
    let node = |p: &String| on_node(host, Path::new(p));
    let leftovers = store::Leftovers {
        remove: leftovers.remove.iter().map(node).collect(),
        links: leftovers.links.iter().map(node).collect(),
        convert_flat: leftovers.convert_flat,
    };
    Ok(DryRun {
        dir: host.dir.display().to_string(),
        dir_change,
        previous: replaces,
        generation: store::new_generation_name(dir, fsutil::unix_now()),
        os,
        leftovers,
        etcd_backup: opts.etcd,
        parts: plan.estimates,
        space,
        images: plan.image_refs,
        warnings: plan.warnings,
    })
}

/// What the previous backup takes: nothing when there is none (a first
/// backup in an existing dir is not told of "the previous backup", issue
/// 27.8), else the disk use of what the backup owns in the dir; and the
/// foreign entries with theirs (an admin's files, `lost+found`: never
/// counted as room, never removed), as the node names them.
fn previous_bytes(host: &Host, dir: &Path) -> Result<(u64, Vec<(String, u64)>)> {
    // A link's own room only: `du` of a link follows it (`current`, the
    // documented links), which would count the generation twice.
    let room = |p: &PathBuf| match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => 0,
        _ => du(p),
    };
    let (owned, foreign) = store::owned_and_foreign(dir)?;
    let foreign = foreign
        .iter()
        .map(|p| (on_node(host, p), room(p)))
        .collect();
    Ok(match store::inspect(dir)? {
        Kind::Empty => (0, foreign),
        _ => (owned.iter().map(room).sum(), foreign),
    })
}

/// The command that runs this backup again, with the flags it was given.
fn again(host: &Host, opts: &Options) -> String {
    let flags = opts.flags();
    if flags.is_empty() {
        host.cmd("backup")
    } else {
        host.cmd(&format!("backup {flags}"))
    }
}

/// A path under the root as the node names it.
fn on_node(host: &Host, p: &Path) -> String {
    match p.strip_prefix(&host.root) {
        Ok(rel) => Path::new("/").join(rel).display().to_string(),
        Err(_) => p.display().to_string(),
    }
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
    let (previous, foreign) = previous_bytes(host, dir)?;
    let space = Space::decide(
        &host.dir,
        plan.estimate(),
        opts.min_free,
        free_bytes(dir)?,
        previous,
        foreign,
        &again(host, opts),
    )?;
    if space.remove_previous {
        // The one case with a window without a backup (see docs/on-disk-format.md, "Space").
        let msg = space.removal_warning(&host.dir);
        log::warn!("{msg}");
        warnings.push(msg);
        let removed = store::remove_current(dir)?;
        let msg = space.removed_text(&host.dir, &removed);
        log::warn!("{msg}");
        warnings.push(msg);
    }
    let gen = store::new_generation_name(dir, fsutil::unix_now());
    let staging = dir.join(&gen);
    let result = backup::build(host, tools, opts, &plan, &staging, &mut warnings, t0);
    let mut summary = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            let writing = host.dir.join(&gen);
            return Err(failed(
                host,
                dir,
                &space,
                e,
                ("the backup failed", &writing),
                &again(host, opts),
            ));
        }
    };
    if let Err(e) = store::switch(dir, &gen) {
        return Err(failed(
            host,
            dir,
            &space,
            e,
            ("the switch to the new backup failed", &host.dir),
            &again(host, opts),
        ));
    }
    // Where the backup is, for the runs in another dir (and the Job).
    crate::recovery::elsewhere::remember(host, false);
    // The new backup is verified: the failures on record were of the one
    // it replaced (a damaged part, a refused restore), whether the admin or
    // the hub's Job ran it.
    store::failures::note(dir, "backup", "backup", 0, None);
    // Only now, with the new backup current (it pins the booted
    // deployment), does the previous one's pinned deployment go.
    match os::release(host, tools, &plan.base.previous) {
        Ok(released) => summary.undeployed.extend(released),
        Err(e) => {
            let w = format!(
                "the new backup is complete, but releasing the deployment the previous backup pinned failed: {e:#}; it stays pinned, and the next backup releases it (`{}`)",
                host.cmd("backup")
            );
            log::warn!("{w}");
            summary.warnings.push(w);
        }
    }
    Ok(Outcome::Done(Box::new(summary)))
}

/// The error of a backup that failed after its space decision: what the
/// node is left with (the previous backup, intact, or none: removed first
/// for room, as the output said), and for a full file system the path, the
/// room (`df -h`) and the command to run once there is room.
fn failed(
    host: &Host,
    dir: &Path,
    space: &Space,
    e: anyhow::Error,
    (what, writing): (&str, &Path),
    next: &str,
) -> anyhow::Error {
    let state = if store::current(dir).is_ok() {
        "the previous backup is intact".to_string()
    } else if space.remove_previous {
        "there is no backup on this node now: the previous one was removed first to make room (see the warning above)".to_string()
    } else {
        format!(
            "there is no intact backup in {} (`{}` says what is there)",
            host.dir.display(),
            host.cmd("status")
        )
    };
    // An io::Error in the chain, or a program's (ostree's) or a thread's
    // error that carried it as text.
    let enospc = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::ENOSPC))
    }) || format!("{e:#}").contains("No space left on device");
    if !enospc {
        return e.context(format!("{what}; {state}"));
    }
    let free = free_bytes(dir).map(human).unwrap_or_else(|_| "?".into());
    e.context(format!(
        "{what}: the file system of {} is full (No space left on device while writing {}; {free} free now, the backup needed about {} plus the margin of {}); {state}; the next run clears what this one left. Next: free room on that file system (`df -h {}` shows it, `du -sh {}/*` what takes the room in the backup dir), then run `{next}`",
        host.dir.display(),
        writing.display(),
        human(space.estimate),
        human(space.min_free),
        host.dir.display(),
        host.dir.display(),
    ))
}

/// What the backup did (or, for `--dry-run`, would do), in words.
/// `dir`: the backup dir as seen on the node, for the next command.
pub fn render(o: &Outcome, dir: &Path) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    match o {
        Outcome::SkippedRecoveryInProgress { record } => {
            let _ = writeln!(
                s,
                "A recovery is in progress ({record}): the backup was skipped and nothing was changed.\nSee where it stands and the command to continue it with `{}` (a recovery that is running now holds the lock: let it run).",
                crate::node::host::cmd_in(dir, "status")
            );
        }
        Outcome::DryRun(d) => render_dry_run(&mut s, d),
        Outcome::Done(sum) => {
            let _ = writeln!(
                s,
                "Backup complete in {} ({:.1}s), verified.",
                sum.dir, sum.seconds
            );
            let _ = writeln!(
                s,
                "OS: pinned {} {}.{} ({}){}",
                sum.pinned.stateroot,
                sum.pinned
                    .checksum
                    .get(..12)
                    .unwrap_or(&sum.pinned.checksum),
                sum.pinned.serial,
                sum.pinned.version.as_deref().unwrap_or("?"),
                if sum.undeployed.is_empty() {
                    String::new()
                } else {
                    format!("; undeployed {}", sum.undeployed.join(", "))
                }
            );
            let _ = writeln!(
                s,
                "  {:<22} {:>9} {:>11} {:>11} {:>7}",
                "part", "files", "size", "stored", "time"
            );
            for p in &sum.parts {
                let _ = writeln!(
                    s,
                    "  {:<22} {:>9} {:>11} {:>11} {:>6.1}s",
                    p.name,
                    p.files,
                    human(p.bytes),
                    human(p.stored_bytes),
                    p.seconds
                );
            }
            for w in &sum.warnings {
                let _ = writeln!(s, "warning: {w}");
            }
        }
    }
    s
}

/// The plan of `backup --dry-run`, in the order the real run carries it out.
fn render_dry_run(s: &mut String, d: &DryRun) {
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "Dry run: the checks passed and nothing was changed. A backup in {} now would:",
        d.dir
    );
    if let Some(c) = &d.dir_change {
        let _ = writeln!(s, "  {c}");
    }
    let l = &d.leftovers;
    if !l.remove.is_empty() {
        let _ = writeln!(s, "  clean up what an earlier run left; would remove:");
        for p in &l.remove {
            let _ = writeln!(s, "    {p}");
        }
    }
    if !l.links.is_empty() {
        let _ = writeln!(s, "  make the links into current: {}", l.links.join(", "));
    }
    if l.convert_flat {
        let _ = writeln!(
            s,
            "  turn the backup of the flat format into a generation (hard links, no extra room)"
        );
    }
    if d.space.remove_previous {
        let _ = writeln!(
            s,
            "  REMOVE THE PREVIOUS BACKUP ({}) BEFORE TAKING THE NEW ONE: {} free, {} needed. If that run fails, the node has NO backup",
            human(d.space.previous),
            human(d.space.free),
            human(d.space.estimate + d.space.min_free)
        );
    }
    let _ = writeln!(
        s,
        "  keep and pin {}; {}",
        d.os.keep,
        if d.os.undeploy.is_empty() {
            "no other deployment to undeploy".to_string()
        } else {
            format!("undeploy {}", d.os.undeploy.join(", "))
        }
    );
    let _ = writeln!(
        s,
        "  write the generation {}/{} (named from the time it starts; etcd snapshot: {}), verify it, make it current{}",
        d.dir,
        d.generation,
        match d.etcd_backup {
            EtcdMode::Native => "native",
            EtcdMode::Script => "cluster-backup.sh",
        },
        match &d.previous {
            Some(p) if !d.space.remove_previous => format!(", then remove the previous backup ({p})"),
            _ => String::new(),
        }
    );
    if !d.os.release.is_empty() {
        let _ = writeln!(
            s,
            "  then (the new backup current) unpin and undeploy what the previous backup pinned: {}",
            d.os.release.join(", ")
        );
    }
    let _ = writeln!(s, "  {:<30} {:>11}", "part", "estimate");
    for e in &d.parts {
        let _ = writeln!(s, "  {:<30} {:>11}", e.part, human(e.bytes));
    }
    let _ = writeln!(
        s,
        "Space: about {} plus a margin of {} (--min-free); {} free{}.",
        human(d.space.estimate),
        human(d.space.min_free),
        human(d.space.free),
        if d.previous.is_some() {
            format!(", the previous backup takes {}", human(d.space.previous))
        } else {
            String::new()
        }
    );
    if !d.images.is_empty() {
        let _ = writeln!(s, "Images: {}", d.images.join(", "));
    }
    for w in &d.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    let _ = writeln!(s, "To take the backup: the same command without --dry-run.");
}
