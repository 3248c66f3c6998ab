//! The backup's parts, each with its estimate (bytes it will need) and its
//! writer: the OS (os.rs: keep the active deployment only, pinned), etcd
//! (etcd.rs: the snapshot and the static-pod resources), the three trees
//! (trees.rs), the machine-config files outside them (extras.rs), the
//! images (images.rs, opt-in); plan.rs reads the node into a [`Plan`],
//! space.rs decides the space. [`build`] writes the parts into a new
//! generation; `commands::backup` checks, plans, and runs it.

pub mod etcd;
pub mod extras;
pub mod images;
pub mod os;
pub mod plan;
pub mod space;
pub mod trees;

pub use extras::parse_currentconfig;
pub use plan::{DryRun, Plan};
pub use space::du;

use crate::archive::WriteOptions;
use crate::node::cmd::Tools;
use crate::node::host::Host;
use crate::store::layout;
use crate::store::manifest::{self, Manifest, PinnedDeployment};
use crate::util::fsutil;
use crate::util::progress::Progress;
use crate::{node::ostree, store::verify, util::fault};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
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
    /// Replace a backup that the lifecycle rule keeps (an upgrade after it
    /// did not complete, or the API cannot tell), or a damaged one
    /// (`--replace-backup`). Never over a staged deployment.
    pub replace_backup: bool,
    /// Check and print the plan; change nothing (`--dry-run`).
    pub dry_run: bool,
}

impl Options {
    /// The flags that choose what this run does, as an admin types them
    /// (not `--dry-run`): what the command to run again must carry, so that
    /// it is refused or accepted as this run was (`--replace-backup` over a
    /// backup the lifecycle rule keeps).
    pub fn flags(&self) -> String {
        let mut f: Vec<String> = Vec::new();
        if self.min_free != 10 << 30 {
            f.push(format!("--min-free {}", self.min_free));
        }
        if let Some(n) = self.threads {
            f.push(format!("--threads {n}"));
        }
        if self.level != 3 {
            f.push(format!("--level {}", self.level));
        }
        if self.etcd == EtcdMode::Script {
            f.push("--etcd-backup script".into());
        }
        if self.etcd_timeout != Duration::from_secs(180) {
            f.push(format!("--etcd-timeout {}s", self.etcd_timeout.as_secs()));
        }
        if !self.nice {
            f.push("--no-nice".into());
        }
        if self.with_images && self.images.is_empty() {
            f.push("--with-images".into());
        }
        for i in &self.images {
            f.push(format!("--image {}", crate::node::cmd::quote(i)));
        }
        if self.replace_backup {
            f.push("--replace-backup".into());
        }
        f.join(" ")
    }
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
    /// `--dry-run`: what the backup would do; nothing was changed.
    DryRun(Box<DryRun>),
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
pub fn be_nice() {
    // SAFETY: plain syscalls on this process only.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
        // IOPRIO_WHO_PROCESS = 1; class best-effort (2) at its lowest level (7).
        libc::syscall(libc::SYS_ioprio_set, 1, 0, (2 << 13) | 7);
    }
}

pub fn mkdir_private(p: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .with_context(|| format!("creating {}", p.display()))?;
    // Root's alone (issue 23): a group inherited from a setgid parent, or
    // any owner but root, could choose what root restores and runs.
    std::os::unix::fs::chown(p, Some(0), Some(0))
        .with_context(|| format!("chown root:root {}", p.display()))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 0700 {}", p.display()))
}

/// Install the binary and the wrapper (for the backup dir `node_dir`, as
/// the node names it) into `dir`; their records for the manifest (the
/// documented recovery command runs them: `verify` checks them).
pub fn install_self(dir: &Path, node_dir: &Path) -> Result<manifest::ToolFiles> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    let exe = std::fs::read("/proc/self/exe").context("reading the running binary")?;
    fsutil::write_atomic(&dir.join(layout::BINARY), &exe, 0o700)?;
    let sh = layout::wrapper(node_dir);
    fsutil::write_atomic(&dir.join(layout::WRAPPER), sh.as_bytes(), 0o700)?;
    std::fs::set_permissions(
        dir.join(layout::WRAPPER),
        std::fs::Permissions::from_mode(0o700),
    )?;
    let blob = |file: &str, bytes: &[u8]| crate::store::blob::Blob {
        file: file.to_string(),
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
    };
    Ok(manifest::ToolFiles {
        binary: blob(layout::BINARY, &exe),
        wrapper: blob(layout::WRAPPER, sh.as_bytes()),
    })
}

/// What the lifecycle rule hands the backup (`recovery::lifecycle`): the
/// deployments the replaced backup pinned (its own, and those it was to
/// release after its switch: the only pinned deployments the OS part may
/// unpin and undeploy, after the switch) and the cluster it is taken from.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    pub previous: Vec<ostree::DeploymentId>,
    /// The backup replaced was damaged (its manifest reads; a part does
    /// not): what `status` says of it, for a warning.
    pub replaces_damaged: Option<String>,
    pub cluster: Option<manifest::ClusterAtBackup>,
}

/// Write every part into `staging`, then the manifest; sync and verify.
/// The OS part (keep the active deployment only, pinned) comes first: a
/// backup is of the OS it pins.
pub fn build(
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
    mkdir_private(staging)?;
    mkdir_private(&staging.join(layout::CLUSTER))?;
    let mut parts = Vec::new();
    let (pinned, undeployed, kept_pinned) = os::write(host, tools, &plan.base.previous)?;
    for k in &kept_pinned {
        warnings.push(format!(
            "kept {k}: it is pinned, and not by the backup this one replaces (another backup dir, TALM's script, or an admin may rely on it); if nothing does, `ostree admin pin --unpin INDEX` and the next backup removes it"
        ));
    }

    let progress = Progress::start(opts.quiet, plan.estimate());
    let meter = progress.meter();
    let (snapshot, static_pods, p) = etcd::write(
        host,
        opts,
        &plan.etcd,
        &plan.revisions,
        staging,
        &stamp,
        &meter,
    )?;
    parts.extend(p);
    // The exclude list, as today's file.
    let mut ex = plan.excludes.join("\n");
    ex.push('\n');
    fsutil::write_atomic(&staging.join(layout::EXCLUDE_LIST), ex.as_bytes(), 0o600)?;
    let wopts = WriteOptions {
        level: opts.level,
        threads: opts
            .threads
            .unwrap_or_else(|| WriteOptions::default().threads),
        check: true,
    };
    let (mut trees, p) = trees::write(
        host,
        &plan.trees,
        &plan.excludes,
        staging,
        &wopts,
        &meter,
        warnings,
    )?;
    parts.extend(p);
    let (tree, p) = extras::write(host, &plan.extras, staging, &wopts, &meter, warnings)?;
    trees.push(tree);
    parts.push(p);
    let mut saved_images = Vec::new();
    if opts.with_images {
        let (saved, p) = images::write(host, tools, &plan.image_refs, staging, &meter)?;
        saved_images = saved;
        parts.push(p);
    }
    drop(progress);

    let tool = install_self(staging, &host.dir)?;
    let m = Manifest {
        format: manifest::FORMAT,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        created: fsutil::rfc3339(created_unix),
        created_unix,
        boot_id: host.boot_id()?,
        deployment: Some(pinned.clone()),
        etcd: Some(snapshot),
        static_pods: Some(static_pods),
        trees,
        images: saved_images,
        warnings: warnings.clone(),
        cluster: plan.base.cluster.clone(),
        // Released after the switch; recorded first, so that the next
        // backup releases them if this run is killed before it does.
        release: plan
            .base
            .previous
            .iter()
            .filter(|p| **p != pinned.id())
            .map(|p| PinnedDeployment {
                stateroot: p.stateroot.clone(),
                checksum: p.checksum.clone(),
                serial: p.serial,
                version: None,
            })
            .collect(),
        tool: Some(tool),
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
    // Each archive was checked as it was written (`WriteOptions::check`):
    // here its file on disk is read back for its sha256; the other parts
    // are checked in full.
    let checked: Vec<&str> = m
        .trees
        .iter()
        .filter(|t| t.stats.checked)
        .map(|t| t.archive.as_str())
        .collect();
    verify::require_intact_written(staging, &checked).context("the new backup does not verify")?;
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
