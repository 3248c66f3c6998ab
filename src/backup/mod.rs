//! `backup`: the pre-upgrade backup of a node. Refusals and a space check
//! first, then the backup is built in a new generation dir that becomes
//! current (`store::switch`) only when complete, fsynced and verified.

mod etcd;
pub mod extras;
mod plan;
pub mod space;
mod trees;

pub use extras::parse_currentconfig;
pub use space::du;

use crate::archive::{self, WriteOptions};
use crate::node::cmd::Tools;
use crate::node::etcd as node_etcd;
use crate::node::host::Host;
use crate::store::manifest::{self, EtcdSnapshot, Manifest, PinnedDeployment, StaticPods, Tree};
use crate::store::{self, layout, Kind};
use crate::util::fsutil::{self, human};
use crate::util::progress::Progress;
use crate::{node::images, node::ostree, store::lock, store::verify, util::fault};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The wrapper the backup installs as `<dir>/upgrade-recovery.sh`: today's
/// documented entry point. It marks the run as started through the script, so
/// that with no subcommand (no arguments, or only `--resume`, `--restart`,
/// `--step`, `--force`) the binary runs `restore`, whatever its own name.
pub const WRAPPER: &str = "#!/bin/sh\n# upgrade-recovery.sh: with no subcommand, runs the recovery (restore).\nUPGRADE_RECOVERY_AS_SCRIPT=1\nexport UPGRADE_RECOVERY_AS_SCRIPT\nexec \"$(dirname \"$0\")/upgrade-recovery\" \"$@\"\n";

use extras::CURRENTCONFIG;
use plan::{plan, Plan};
use space::free_bytes;
use trees::{warn_about, write_with_retries};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum EtcdMode {
    /// The v3 Snapshot RPC with the node's client certs
    Native,
    /// The node's /usr/local/bin/cluster-backup.sh --force
    Script,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub min_free: u64,
    pub threads: Option<u32>,
    pub level: i32,
    pub etcd: EtcdMode,
    pub etcd_timeout: Duration,
    pub nice: bool,
    pub quiet: bool,
    /// Back up the images of the running containers (and `images`).
    pub with_images: bool,
    pub images: Vec<String>,
    /// Replace a backup that pins another OS than the booted one, or a
    /// damaged one (`--replace-backup`).
    pub replace_backup: bool,
}

#[derive(Debug, Serialize)]
pub struct Part {
    pub name: String,
    pub source: String,
    pub files: u64,
    pub bytes: u64,
    pub stored_bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    /// A recovery is under way: nothing was touched.
    SkippedRecoveryInProgress {
        record: String,
    },
    Done(Box<Summary>),
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub dir: String,
    pub created: String,
    pub pinned: PinnedDeployment,
    pub undeployed: Vec<String>,
    pub parts: Vec<Part>,
    pub warnings: Vec<String>,
    pub seconds: f64,
}

/// Parse a size: bytes, or with a K/M/G/T suffix (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let m = match t[i..]
                .to_ascii_uppercase()
                .trim_end_matches("IB")
                .trim_end_matches('B')
            {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1u64 << 40,
                u => return Err(format!("unknown unit {u:?} in {s:?}")),
            };
            (&t[..i], m)
        }
        None => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a size: {s:?}"))?;
    Ok((n * mult as f64) as u64)
}

/// Lower our CPU and I/O priority: the node runs latency-sensitive work.
fn be_nice() {
    // SAFETY: plain syscalls on this process only.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
        // IOPRIO_WHO_PROCESS = 1; class best-effort (2) at its lowest level (7).
        libc::syscall(libc::SYS_ioprio_set, 1, 0, (2 << 13) | 7);
    }
}

fn mkdir_private(p: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .with_context(|| format!("creating {}", p.display()))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 0700 {}", p.display()))
}

/// Install the binary and the two-line wrapper into `dir`.
fn install_self(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::fs::read("/proc/self/exe").context("reading the running binary")?;
    fsutil::write_atomic(&dir.join(layout::BINARY), &exe, 0o700)?;
    let sh = WRAPPER;
    fsutil::write_atomic(&dir.join(layout::WRAPPER), sh.as_bytes(), 0o700)?;
    std::fs::set_permissions(
        dir.join(layout::WRAPPER),
        std::fs::Permissions::from_mode(0o700),
    )?;
    Ok(())
}

pub fn run(host: &Host, opts: &Options) -> Result<Outcome> {
    let t0 = Instant::now();
    host.require_node()?;
    let mut req = vec!["ostree"];
    if opts.with_images {
        // The node's own skopeo copies the images: their bytes are never
        // interpreted here.
        req.extend(["skopeo", "crictl"]);
    }
    let tools = Tools::require(&req, &["rpm-ostree"])?;
    let dir = host.backup_dir();
    let skipped = |rec: PathBuf| {
        Ok(Outcome::SkippedRecoveryInProgress {
            record: rec.display().to_string(),
        })
    };
    // A recovery under way (the hub's Job pod may be started again during
    // one): nothing is touched. Checked before the lock, and after it.
    if let Some(rec) = store::recovery_record(&dir) {
        return skipped(rec);
    }
    mkdir_private(&dir)?;
    // Durability: a new backup dir's own entry is on disk before the backup
    // that relies on it.
    if let Some(parent) = dir.parent() {
        fsutil::fsync_dir(parent)?;
    }
    let _lock = match lock::acquire(&dir) {
        Ok(l) => l,
        // A recovery holds the lock before its journal exists (preflight).
        Err(e) => match lock::holder(&dir) {
            Some(h) if h.what == lock::RESTORE => {
                return skipped(dir.join(format!("{} (pid {})", layout::LOCK, h.pid)))
            }
            _ => return Err(e),
        },
    };
    if let Some(rec) = store::recovery_record(&dir) {
        return skipped(rec);
    }
    // Refusals, before any change.
    let kind = store::inspect(&dir)?;
    if let Kind::Damaged(why) = &kind {
        if !opts.replace_backup {
            return Err(crate::util::error::Fail::Backup(format!(
                "the backup in {} is damaged: {why}. A recovery may still need what is there (the archives can still be read: `zstd -dc {}/etc.tar.zst | tar -tv`); nothing was changed. To replace it with a new backup of this node: `upgrade-recovery backup --replace-backup`",
                host.dir.display(),
                host.dir.display()
            ))
            .into());
        }
    }
    if !opts.replace_backup {
        refuse_after_failed_upgrade(host, &tools, &dir)?;
    }
    if opts.nice {
        be_nice();
    }
    // What a killed run left (old generations, temporary names, an
    // unfinished conversion of the flat format); the current backup stays.
    store::prepare(&dir)?;
    let mut plan = plan(host, opts)?;
    if opts.with_images {
        let mut refs = images::running(&tools)?;
        refs.extend(opts.images.iter().cloned());
        refs.sort();
        refs.dedup();
        // The storage must be readable before anything changes.
        images::Store::open(host)?;
        plan.estimate += du(&host.path("/var/lib/containers/storage"));
        plan.image_refs = refs;
    }
    let mut warnings = plan.warnings.clone();

    // Space, before any change. The new generation is built beside the
    // current one, which goes only after the switch.
    let need = plan.estimate + opts.min_free;
    let free = free_bytes(&dir)?;
    let old = du(&dir);
    if free < need {
        if free + old < need {
            bail!(
                "insufficient disk space in {}: the backup needs about {} plus a margin of {} (--min-free), {} is free{}; free at least {} more. Nothing was changed{}",
                host.dir.display(),
                human(plan.estimate),
                human(opts.min_free),
                human(free),
                if old > 0 { format!(" ({} more once the previous backup is removed)", human(old)) } else { String::new() },
                human(need - free - old),
                if old > 0 { "; the previous backup is intact" } else { "" }
            );
        }
        // The one case with a window without a backup (see README, "space").
        let msg = format!(
            "REMOVING THE PREVIOUS BACKUP in {} before taking the new one: {} free, {} needed. If this run fails, the node has NO backup",
            host.dir.display(),
            human(free),
            human(need)
        );
        log::warn!("{msg}");
        warnings.push(msg);
        store::remove_current(&dir)?;
    }

    let gen = store::new_generation_name(&dir, fsutil::unix_now());
    let staging = dir.join(&gen);
    let result = build(host, &tools, opts, &plan, &staging, &mut warnings, t0);
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            let state = if store::current(&dir).is_ok() {
                "the previous backup is intact"
            } else {
                "there is no backup on this node now"
            };
            return Err(e.context(format!("the backup failed; {state}")));
        }
    };
    store::switch(&dir, &gen)?;
    Ok(Outcome::Done(Box::new(summary)))
}

/// A backup on a node that booted another OS than the one the existing
/// backup pinned, while that one is still deployed, is a failed upgrade (or
/// the hub's Job run again): the backup would undeploy the way back and
/// replace the pre-upgrade backup with the failed state. Refused.
fn refuse_after_failed_upgrade(host: &Host, tools: &Tools, dir: &Path) -> Result<()> {
    let Ok(gen) = store::current(dir) else {
        return Ok(());
    };
    let Some(pinned) = Manifest::load(&gen).ok().and_then(|m| m.deployment) else {
        return Ok(());
    };
    let os = ostree::read(host, tools)?;
    let Some(active) = os.active() else {
        return Ok(());
    };
    let same = |d: &ostree::Deployment| {
        d.checksum == pinned.checksum
            && d.serial == pinned.serial
            && d.stateroot == pinned.stateroot
    };
    if same(active) || !os.deployments.iter().any(same) {
        return Ok(());
    }
    bail!(
        "refusing to take a backup: the node runs {} but the backup in {} pinned {} {}.{}, which is still deployed. This is what a failed upgrade looks like: a new backup would undeploy the way back and replace the pre-upgrade backup. Nothing was changed. To go back: `upgrade-recovery status`, then `upgrade-recovery rollback`. If this OS is the new baseline on purpose: `upgrade-recovery backup --replace-backup`",
        active.short(),
        host.dir.display(),
        pinned.stateroot,
        &pinned.checksum[..pinned.checksum.len().min(12)],
        pinned.serial
    )
}

fn build(
    host: &Host,
    tools: &Tools,
    opts: &Options,
    plan: &Plan,
    staging: &Path,
    warnings: &mut Vec<String>,
    t0: Instant,
) -> Result<Summary> {
    let created_unix = fsutil::unix_now();
    let stamp = fsutil::backup_stamp(created_unix);
    mkdir_private(&staging.join(layout::CLUSTER))?;
    let mut parts = Vec::new();

    // OS: keep the active deployment only, pinned.
    let t = Instant::now();
    let (kept, undeployed) = ostree::keep_only_active(host, tools)?;
    fault::point("backup:os");
    let pinned = PinnedDeployment {
        stateroot: kept.stateroot.clone(),
        checksum: kept.checksum.clone(),
        serial: kept.serial,
        version: kept.version.clone(),
    };
    log::info!(
        "OS: kept and pinned {} in {:.1}s",
        kept.short(),
        t.elapsed().as_secs_f64()
    );

    let progress = Progress::start(opts.quiet, plan.estimate);
    let meter = progress.meter();

    // etcd.
    let t = Instant::now();
    meter.phase("etcd");
    let snap_name = format!("cluster/snapshot_{stamp}__POSSIBLY_DIRTY__.db");
    let static_name = format!("cluster/static_kuberesources_{stamp}__POSSIBLY_DIRTY__.tar.gz");
    let (snap_name, static_name, info) = match opts.etcd {
        EtcdMode::Native => {
            let info =
                node_etcd::snapshot(&plan.etcd, &staging.join(&snap_name), opts.etcd_timeout)?;
            (snap_name, static_name, info)
        }
        EtcdMode::Script => etcd::script_backup(host, &staging.join("cluster"), opts.etcd_timeout)?,
    };
    fault::point("backup:etcd");
    parts.push(Part {
        name: "etcd".into(),
        source: plan.etcd.endpoint.clone(),
        files: 1,
        bytes: info.size,
        stored_bytes: info.size,
        seconds: t.elapsed().as_secs_f64(),
    });
    let etcd_rec = EtcdSnapshot {
        file: snap_name,
        size: info.size,
        sha256: info.sha256,
        revision: info.revision,
        total_keys: info.total_keys,
    };
    let t = Instant::now();
    meter.phase("static-pod resources");
    let static_pods = if opts.etcd == EtcdMode::Native {
        let (size, sha256) =
            node_etcd::write_static_resources(host, &plan.revisions, &staging.join(&static_name))?;
        StaticPods {
            file: static_name,
            size,
            sha256,
            revisions: plan.revisions.clone(),
        }
    } else {
        let (sha256, size) = verify::file_sha256(&staging.join(&static_name))?;
        StaticPods {
            file: static_name,
            size,
            sha256,
            revisions: plan.revisions.clone(),
        }
    };
    parts.push(Part {
        name: "static-pod resources".into(),
        source: "/etc/kubernetes/static-pod-resources".into(),
        files: plan.revisions.len() as u64,
        bytes: static_pods.size,
        stored_bytes: static_pods.size,
        seconds: t.elapsed().as_secs_f64(),
    });

    // The exclude list, as today's file.
    let mut ex = plan.excludes.join("\n");
    ex.push('\n');
    fsutil::write_atomic(&staging.join(layout::EXCLUDE_LIST), ex.as_bytes(), 0o600)?;

    // Trees.
    let wopts = WriteOptions {
        level: opts.level,
        threads: opts
            .threads
            .unwrap_or_else(|| WriteOptions::default().threads),
    };
    let mut trees = Vec::new();
    for (name, node, top) in &plan.trees {
        let t = Instant::now();
        meter.phase(node);
        let file = format!("{name}.tar.zst");
        let stats = write_with_retries(top, &staging.join(&file), &wopts, &meter)?;
        fault::point(&format!("backup:{name}"));
        warn_about(node, &stats, warnings);
        parts.push(Part {
            name: name.clone(),
            source: node.clone(),
            files: stats.files,
            bytes: stats.bytes,
            stored_bytes: stats.archive_bytes,
            seconds: t.elapsed().as_secs_f64(),
        });
        let resolved = (top != &host.path(node))
            .then(|| format!("/{}", top.strip_prefix(&host.root).unwrap_or(top).display()));
        trees.push(Tree {
            name: name.clone(),
            source: node.clone(),
            resolved,
            archive: file,
            excludes: if name == "etc" {
                plan.excludes.clone()
            } else {
                Vec::new()
            },
            only: None,
            stats,
        });
    }

    // Machine-config files outside the trees.
    let t = Instant::now();
    meter.phase("extras");
    let rels: Vec<Vec<u8>> = plan
        .extras
        .iter()
        .map(|p| p.trim_start_matches('/').as_bytes().to_vec())
        .collect();
    let (stats, missing) =
        archive::write_paths(&host.root, &rels, &staging.join("extras.tar.zst"), &wopts)?;
    for m in missing {
        warnings.push(format!(
            "machine-config file /{m} does not exist on the node; not backed up"
        ));
    }
    parts.push(Part {
        name: "extras".into(),
        source: format!("{} paths from {CURRENTCONFIG}", plan.extras.len()),
        files: stats.files,
        bytes: stats.bytes,
        stored_bytes: stats.archive_bytes,
        seconds: t.elapsed().as_secs_f64(),
    });
    trees.push(Tree {
        name: "extras".into(),
        source: "/".into(),
        resolved: None,
        archive: "extras.tar.zst".into(),
        excludes: Vec::new(),
        only: Some(plan.extras.clone()),
        stats,
    });
    let mut saved_images = Vec::new();
    if opts.with_images {
        let t = Instant::now();
        meter.phase("images");
        saved_images = images::save(host, tools, &plan.image_refs, &staging.join(layout::IMAGES))?;
        parts.push(Part {
            name: "images".into(),
            source: format!("{} image(s)", saved_images.len()),
            files: saved_images.len() as u64,
            bytes: saved_images.iter().map(|i| i.size).sum(),
            stored_bytes: du(&staging.join(layout::IMAGES)),
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    drop(progress);

    install_self(staging)?;
    let m = Manifest {
        format: manifest::FORMAT,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        created: fsutil::rfc3339(created_unix),
        created_unix,
        boot_id: host.boot_id()?,
        deployment: Some(pinned.clone()),
        etcd: Some(etcd_rec),
        static_pods: Some(static_pods),
        trees,
        images: saved_images,
        warnings: warnings.clone(),
    };
    fsutil::write_atomic(
        &staging.join(manifest::FILE),
        serde_json::to_string_pretty(&m)?.as_bytes(),
        0o600,
    )?;
    fault::point("backup:manifest");
    // Durability: everything on disk, then every byte checked before it
    // replaces anything. The archives and the static-pod tarball are
    // fsynced by their writers; syncfs also covers the entries of the
    // generation and `cluster/` (files the node's cluster-backup.sh wrote,
    // the images). `store::switch` fsyncs the generation dir again, then
    // the backup dir after each rename.
    let d = std::fs::File::open(staging)?;
    rustix::fs::syncfs(&d)?;
    let t = Instant::now();
    verify::require_intact_generation(staging).context("the new backup does not verify")?;
    log::info!(
        "verified the new backup in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    Ok(Summary {
        dir: host.dir.display().to_string(),
        created: m.created,
        pinned,
        undeployed,
        parts,
        warnings: warnings.clone(),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

pub fn render(o: &Outcome) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    match o {
        Outcome::SkippedRecoveryInProgress { record } => {
            let _ = writeln!(
                s,
                "A recovery is in progress ({record}): the backup was skipped and nothing was changed.\nContinue the recovery with `upgrade-recovery restore --resume`."
            );
        }
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
