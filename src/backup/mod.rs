//! `backup`: the pre-upgrade backup of a node. Refusals and a space check
//! first, then the backup is built in a new generation dir that becomes
//! current (`store::switch`) only when complete, fsynced and verified.

use crate::archive::{self, Changed, TreeStats, WriteOptions};
use crate::node::cmd::Tools;
use crate::node::etcd;
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

use crate::store::layout::TREES;

const CURRENTCONFIG: &str = "/etc/machine-config-daemon/currentconfig";

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

/// Paths under `/etc` that `/etc/tmpfiles.d/*` manage, relative to /etc, plus
/// `.updated` and `kubernetes/manifests`: what restore must not touch.
///
/// Nothing here refuses the backup: a node without `/etc/tmpfiles.d`, a file
/// that is not UTF-8 and lines that are not `Type Path ...` are skipped with a
/// warning in `warnings` (restore then restores those paths from the backup).
/// That is what systemd-tmpfiles does with them (systemd
/// src/tmpfiles/tmpfiles.c, parse_line: a bad line is logged with log_syntax
/// and marks the config invalid; conf_file_read goes on with the next line).
pub fn exclude_list(host: &Host, warnings: &mut Vec<String>) -> Result<Vec<String>> {
    let dir = host.path("/etc/tmpfiles.d");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            warnings.push(
                "/etc/tmpfiles.d does not exist: the exclude list holds only .updated and kubernetes/manifests".into(),
            );
            Vec::new()
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    files.sort();
    let mut out = Vec::new();
    for f in files.iter().filter(|f| f.is_file()) {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let Ok(text) = String::from_utf8(bytes) else {
            warnings.push(format!(
                "{} is not UTF-8 text: skipped, the paths it manages are not in the exclude list",
                node_name(f)
            ));
            continue;
        };
        let (paths, bad) = parse_tmpfiles_lines(&text);
        if !bad.is_empty() {
            let lines: Vec<String> = bad.iter().take(5).map(|n| n.to_string()).collect();
            warnings.push(format!(
                "{}: {} line{} not of the form `Type Path ...` skipped (line {}{})",
                node_name(f),
                bad.len(),
                if bad.len() > 1 { "s" } else { "" },
                lines.join(", "),
                if bad.len() > 5 { ", ..." } else { "" }
            ));
        }
        out.extend(paths);
    }
    out.push(".updated".into());
    out.push("kubernetes/manifests".into());
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    Ok(out)
}

/// A file of /etc/tmpfiles.d as named on the node.
fn node_name(f: &Path) -> String {
    format!(
        "/etc/tmpfiles.d/{}",
        f.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// The paths under /etc of a tmpfiles.d file, relative to /etc, and the
/// numbers (from 1) of the lines that are not `Type Path ...` with an
/// absolute path (or a `%` specifier, which systemd resolves).
pub fn parse_tmpfiles_lines(text: &str) -> (Vec<String>, Vec<usize>) {
    let mut paths = Vec::new();
    let mut bad = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.split('#').next().unwrap_or("");
        let mut words = l.split_whitespace();
        let Some(_kind) = words.next() else { continue };
        match words.next() {
            Some(p) if p.starts_with('/') || p.starts_with('%') => {
                if let Some(p) = p.strip_prefix("/etc/") {
                    let p = p.trim_end_matches('/');
                    if !p.is_empty() {
                        paths.push(p.to_string());
                    }
                }
            }
            _ => bad.push(i + 1),
        }
    }
    (paths, bad)
}

/// Machine-config managed files outside the three trees, from
/// `currentconfig`. None when the file does not exist.
pub fn extras_from_currentconfig(host: &Host) -> Result<Option<Vec<String>>> {
    let p = host.path(CURRENTCONFIG);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    parse_currentconfig(&text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{} {e}; nothing was changed", p.display()))
}

/// The machine-config file paths of a `currentconfig` outside the trees:
/// absolute, normal paths only (no `..`, no empty component, no NUL).
pub fn parse_currentconfig(text: &str) -> Result<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "is not valid JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let files = v
        .pointer("/spec/config/storage/files")
        .and_then(|f| f.as_array())
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<String> = files
        .iter()
        .filter_map(|f| f.get("path").and_then(|p| p.as_str()))
        .filter(|p| {
            p.strip_prefix('/').is_some_and(|r| {
                crate::archive::validate::check_rel_path(r.as_bytes()).is_ok() && r != "."
            })
        })
        .filter(|p| {
            ![
                "/etc/",
                "/usr/local/",
                "/var/usrlocal/",
                "/var/lib/kubelet/",
            ]
            .iter()
            .any(|t| p.starts_with(t))
        })
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Allocated bytes below a dir, on its own file system (like `du -sx`).
pub fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(path)
        .same_file_system(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

fn free_bytes(dir: &Path) -> Result<u64> {
    let st = rustix::fs::statvfs(dir).with_context(|| format!("statvfs {}", dir.display()))?;
    Ok(st.f_bavail * st.f_frsize)
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

struct Plan {
    trees: Vec<(String, String, PathBuf)>,
    excludes: Vec<String>,
    extras: Vec<String>,
    warnings: Vec<String>,
    revisions: std::collections::BTreeMap<String, u32>,
    etcd: etcd::ClientConfig,
    estimate: u64,
    image_refs: Vec<String>,
}

fn plan(host: &Host, opts: &Options) -> Result<Plan> {
    let mut warnings = Vec::new();
    let mut trees = Vec::new();
    let mut estimate = 0;
    for (name, node) in TREES {
        let top = archive::resolve_top(&host.root, node)
            .with_context(|| format!("the tree {node} cannot be backed up"))?;
        estimate += du(&top);
        trees.push((name.to_string(), node.to_string(), top));
    }
    let extras = match extras_from_currentconfig(host)? {
        Some(x) => x,
        None => {
            warnings.push(format!(
                "{CURRENTCONFIG} does not exist: no machine-config files outside the three trees are backed up"
            ));
            Vec::new()
        }
    };
    for x in &extras {
        estimate += du(&host.path(x));
    }
    let revisions = etcd::live_revisions(host)?;
    // Read again when the manifest is written; read now so that a node
    // without it is refused before anything changes.
    host.boot_id()
        .context("the node's boot id is needed for the manifest; nothing was changed")?;
    let spr = host.path("/etc/kubernetes/static-pod-resources");
    estimate += du(&spr).saturating_sub(du(&spr.join("bin")));
    estimate += std::fs::metadata(host.path("/var/lib/etcd/member/snap/db")).map_or(0, |m| m.len());
    // The copy of this binary.
    estimate += std::fs::metadata("/proc/self/exe").map_or(0, |m| m.len());
    let etcd = etcd::ClientConfig::load(host)?;
    if opts.etcd == EtcdMode::Script {
        let script = host.path("/usr/local/bin/cluster-backup.sh");
        if !crate::node::cmd::is_executable(&script) {
            bail!(
                "--etcd-backup=script: {} is missing or not executable",
                script.display()
            );
        }
    }
    Ok(Plan {
        trees,
        excludes: exclude_list(host, &mut warnings)?,
        extras,
        warnings,
        revisions,
        etcd,
        estimate,
        image_refs: Vec::new(),
    })
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
    let pinned_id = pinned.id();
    let same = |d: &ostree::Deployment| d.is(&pinned_id);
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
            let info = etcd::snapshot(&plan.etcd, &staging.join(&snap_name), opts.etcd_timeout)?;
            (snap_name, static_name, info)
        }
        EtcdMode::Script => script_backup(host, &staging.join("cluster"), opts.etcd_timeout)?,
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
            etcd::write_static_resources(host, &plan.revisions, &staging.join(&static_name))?;
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

fn warn_about(node: &str, s: &TreeStats, warnings: &mut Vec<String>) {
    if !s.skipped_mounts.is_empty() {
        log::info!(
            "{node}: mount points not crossed: {}",
            s.skipped_mounts.join(", ")
        );
    }
    for (what, list) in [
        ("vanished during the backup", &s.vanished),
        ("kept changing while read (stored as last read)", &s.changed),
        ("are sockets (not stored)", &s.skipped_sockets),
    ] {
        if !list.is_empty() {
            warnings.push(format!(
                "{node}: {} file(s) {what}: {}",
                list.len(),
                list.join(", ")
            ));
        }
    }
}

/// Archive a tree; a large file that changes while read restarts the tree,
/// three tries in all (as today's `cp` retries).
fn write_with_retries(
    top: &Path,
    out: &Path,
    opts: &WriteOptions,
    meter: &crate::util::progress::Meter,
) -> Result<TreeStats> {
    for attempt in 1..=3 {
        let m = meter.clone();
        let progress: archive::write::Progress = Box::new(move |_, bytes| m.add(1, bytes));
        match archive::write_tree(top, out, opts, Some(progress)) {
            Err(e) if attempt < 3 && e.chain().any(|c| c.downcast_ref::<Changed>().is_some()) => {
                log::warn!("{e:#}; archiving {} again", top.display());
            }
            r => return r,
        }
    }
    unreachable!()
}

/// `--etcd-backup=script`: the node's cluster-backup.sh, then the same checks.
fn script_backup(
    host: &Host,
    cluster: &Path,
    limit: Duration,
) -> Result<(String, String, etcd::SnapshotInfo)> {
    let script = host.path("/usr/local/bin/cluster-backup.sh");
    let mut c = std::process::Command::new(&script);
    c.arg("--force").arg(cluster);
    crate::node::cmd::run_timeout(&mut c, limit)?;
    let mut snap = None;
    let mut res = None;
    for e in std::fs::read_dir(cluster)? {
        let n = e?.file_name().to_string_lossy().into_owned();
        if n.starts_with("snapshot_") && n.ends_with(".db") {
            snap = Some(n);
        } else if n.starts_with("static_kuberesources_") && n.ends_with(".tar.gz") {
            res = Some(n);
        }
    }
    let (Some(snap), Some(res)) = (snap, res) else {
        bail!(
            "{} did not write a snapshot and a static_kuberesources tarball into {}",
            script.display(),
            cluster.display()
        );
    };
    let sp = cluster.join(&snap);
    let s = verify::read_snapshot(&sp)?;
    s.trailer
        .map_err(|m| anyhow::anyhow!("cluster-backup.sh wrote a bad snapshot: {m}"))?;
    let (sha256, size) = (s.sha256, s.size);
    Ok((
        format!("cluster/{snap}"),
        format!("cluster/{res}"),
        etcd::SnapshotInfo {
            size,
            sha256,
            revision: 0,
            total_keys: 0,
        },
    ))
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
