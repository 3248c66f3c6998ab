//! `restore`: the recovery, in phases across a reboot, as an explicit list of
//! idempotent steps with stable ids. The journal records each completed step;
//! a crash anywhere is followed by `--resume` to the same end state.

use crate::archive::{self, SyncOptions};
use crate::cmd::{self, Tools};
use crate::error::Fail;
use crate::fault;
use crate::fsutil;
use crate::host::Host;
use crate::journal::{Done, Failure, Journal};
use crate::manifest::{Manifest, Tree};
use crate::{etcd, lock, ostree, verify};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Files,
    Cluster,
    Redeploy,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Files => "files",
            Phase::Cluster => "cluster",
            Phase::Redeploy => "redeploy",
        }
    }
}

/// The steps, in order: id, phase, what it does.
pub const STEPS: &[(&str, Phase, &str)] = &[
    (
        "preflight",
        Phase::Files,
        "verify the backup; the active OS deployment must be the one pinned at backup",
    ),
    (
        "selinux-permissive",
        Phase::Files,
        "record the SELinux mode, then setenforce 0",
    ),
    (
        "stop-kubelet",
        Phase::Files,
        "systemctl stop kubelet.service",
    ),
    ("remove-pods", Phase::Files, "crictl rmp -fa"),
    ("stop-crio", Phase::Files, "systemctl stop crio.service"),
    ("wipe-crio", Phase::Files, "crio wipe -f"),
    (
        "restore-usr-local",
        Phase::Files,
        "make /usr/local equal the backup",
    ),
    (
        "restore-etc",
        Phase::Files,
        "make /etc equal the backup (etc.exclude.list kept)",
    ),
    (
        "restore-extras",
        Phase::Files,
        "put back the machine-config files outside the trees",
    ),
    ("daemon-reload", Phase::Files, "systemctl daemon-reload"),
    (
        "disable-kubelet",
        Phase::Files,
        "systemctl disable kubelet.service",
    ),
    (
        "selinux-restore",
        Phase::Files,
        "put SELinux back in the recorded mode; then reboot",
    ),
    (
        "cluster-selinux-permissive",
        Phase::Cluster,
        "setenforce 0 (after the reboot)",
    ),
    (
        "restore-kubelet",
        Phase::Cluster,
        "make /var/lib/kubelet equal the backup",
    ),
    ("start-crio", Phase::Cluster, "systemctl start crio.service"),
    (
        "restore-images",
        Phase::Cluster,
        "put the backed-up container images back (none: skipped)",
    ),
    (
        "record-containers",
        Phase::Cluster,
        "record the control-plane container ids",
    ),
    (
        "restore-etcd",
        Phase::Cluster,
        "restore the etcd snapshot and the static-pod resources",
    ),
    (
        "restart-kubelet",
        Phase::Cluster,
        "systemctl restart kubelet.service",
    ),
    (
        "enable-kubelet",
        Phase::Cluster,
        "systemctl enable kubelet.service",
    ),
    (
        "restart-crio",
        Phase::Cluster,
        "systemctl restart crio.service",
    ),
    (
        "wait-containers",
        Phase::Cluster,
        "wait until the five control-plane containers run again",
    ),
    (
        "cluster-selinux-restore",
        Phase::Cluster,
        "put SELinux back in the recorded mode",
    ),
    (
        "redeploy-etcd",
        Phase::Redeploy,
        "force a redeployment of etcd and wait for it",
    ),
    (
        "redeploy-kubeapiserver",
        Phase::Redeploy,
        "force a redeployment of kube-apiserver and wait for it",
    ),
    (
        "redeploy-kubecontrollermanager",
        Phase::Redeploy,
        "force a redeployment of kube-controller-manager and wait for it",
    ),
    (
        "redeploy-kubescheduler",
        Phase::Redeploy,
        "force a redeployment of kube-scheduler and wait for it",
    ),
];

/// The containers whose restart shows the control plane came back.
pub const CONTAINERS: [&str; 5] = [
    "etcd",
    "etcd-operator",
    "kube-apiserver-operator",
    "kube-controller-manager-operator",
    "kube-scheduler-operator-container",
];

const CLUSTER_RESTORE: &str = "/usr/local/bin/cluster-restore.sh";
const ETCD_MANIFEST: &str = "/etc/kubernetes/manifests/etcd-pod.yaml";
const ETCD_MANIFEST_ASIDE: &str = "/var/lib/etcd-backup/etcd-pod.yaml";
const KUBECONFIG: &str =
    "/etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost.kubeconfig";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum EtcdRestore {
    /// The node's cluster-restore.sh when it exists, else native
    Auto,
    /// /usr/local/bin/cluster-restore.sh <dir>/cluster
    Script,
    /// Move etcd aside, `etcdctl snapshot restore`, extract the resources
    Native,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub resume: bool,
    pub restart: bool,
    pub step: bool,
    pub force: bool,
    pub dry_run: bool,
    pub etcd_restore: EtcdRestore,
    pub wait: Duration,
    pub poll: Duration,
    pub quiet: bool,
    /// Install a oneshot unit that continues the recovery after the reboot.
    pub auto_resume: bool,
    /// This run was started by that unit: remove it first.
    pub from_unit: bool,
}

/// The auto-resume unit, installed under /etc so the restored /etc keeps it.
pub const RESUME_UNIT: &str = "upgrade-recovery-resume.service";
const RESUME_UNIT_TEXT: &str = include_str!("../packaging/upgrade-recovery-resume.service");

#[derive(Debug, Serialize)]
pub struct PlanStep {
    pub id: &'static str,
    pub phase: Phase,
    pub description: &'static str,
    pub done: bool,
}

pub fn plan(j: Option<&Journal>) -> Vec<PlanStep> {
    STEPS
        .iter()
        .map(|&(id, phase, description)| PlanStep {
            id,
            phase,
            description,
            done: j.is_some_and(|j| j.is_done(id)),
        })
        .collect()
}

#[derive(Debug, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    DryRun {
        steps: Vec<PlanStep>,
    },
    /// The files phase is done: the node must reboot.
    RebootNow {
        steps_done: Vec<Done>,
    },
    /// --step: a phase ended.
    PhaseDone {
        phase: Phase,
        next: String,
    },
    Done {
        steps: Vec<Done>,
        seconds: f64,
    },
}

struct Ctx<'a> {
    host: &'a Host,
    tools: Tools,
    /// `--etcd-restore` resolved: Script or Native.
    etcd_mode: EtcdRestore,
    opts: &'a Options,
    m: Manifest,
    dir: PathBuf,
    j: Journal,
}

fn required_tools(etcd_mode: EtcdRestore) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut req = vec![
        "systemctl",
        "crictl",
        "crio",
        "setenforce",
        "getenforce",
        "ostree",
        "oc",
    ];
    if etcd_mode == EtcdRestore::Native {
        req.extend(["etcdctl", "tar"]);
    }
    (req, vec!["rpm-ostree", "etcdctl", "tar"])
}

pub fn run(host: &Host, opts: &Options) -> Result<Outcome> {
    host.require_node()?;
    let dir = host.backup_dir();
    let existing = match Journal::load(&dir) {
        // --restart is the way out of an unreadable journal: a new one replaces it.
        Err(e) if opts.restart && !opts.dry_run => {
            log::warn!("{e:#}");
            None
        }
        r => r?,
    };
    if opts.dry_run {
        return Ok(Outcome::DryRun {
            steps: plan(existing.as_ref()),
        });
    }
    // Programs first: a missing one is named before anything changes.
    let etcd_mode = match opts.etcd_restore {
        EtcdRestore::Auto if cmd::is_executable(&host.path(CLUSTER_RESTORE)) => EtcdRestore::Script,
        EtcdRestore::Auto => EtcdRestore::Native,
        m => m,
    };
    // The script is run only at restore-etcd, after the reboot: its absence
    // must stop us now, not half way.
    if etcd_mode == EtcdRestore::Script && !cmd::is_executable(&host.path(CLUSTER_RESTORE)) {
        return Err(crate::error::Fail::Usage(format!(
            "--etcd-restore=script: {} is missing or not executable; nothing was changed; run `upgrade-recovery restore --etcd-restore=native`",
            host.path(CLUSTER_RESTORE).display()
        ))
        .into());
    }
    let m = Manifest::load(&dir)?;
    let (mut req, opt) = required_tools(etcd_mode);
    if !m.images.is_empty() {
        req.push("skopeo");
    }
    let tools = Tools::require(&req, &opt)?;
    let _lock = lock::acquire(&dir)?;
    let legacy = dir.join(crate::backup::LEGACY_PROGRESS);
    let j = match existing {
        Some(j) if opts.restart => {
            log::warn!(
                "--restart: forgetting the recovery under way ({} steps done)",
                j.completed.len()
            );
            Journal::remove(&dir)?;
            None
        }
        Some(j) if !(opts.resume || opts.step) => {
            let next = next_step(&j).map_or("none", |s| s.0);
            return Err(Fail::InProgress(format!(
                "a recovery is already in progress ({} of {} steps done, next: {next}); nothing was changed. Continue it with `upgrade-recovery restore --resume`, or start over with `upgrade-recovery restore --restart`",
                j.completed.len(),
                STEPS.len()
            ))
            .into());
        }
        j => j,
    };
    if j.is_none() && legacy.exists() && !opts.restart {
        return Err(Fail::InProgress(format!(
            "{} shows a recovery started by the old upgrade-recovery.sh; nothing was changed. Start it over with `upgrade-recovery restore --restart` (every step is safe to run again)",
            legacy.display()
        ))
        .into());
    }
    if opts.restart {
        let _ = std::fs::remove_file(&legacy);
    }
    let fresh = j.is_none();
    let j = j.unwrap_or_else(|| Journal {
        format: crate::journal::FORMAT,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        started: fsutil::rfc3339(fsutil::unix_now()),
        backup_created: m.created.clone(),
        ..Journal::default()
    });
    if j.backup_created != m.created {
        bail!(
            "the recovery under way restores the backup of {}, but the backup in {} is from {}; start over with `upgrade-recovery restore --restart`",
            j.backup_created,
            dir.display(),
            m.created
        );
    }
    let mut ctx = Ctx {
        host,
        tools,
        etcd_mode,
        opts,
        m,
        dir,
        j,
    };
    if fresh {
        // Before the first change, and before a journal exists: a refusal
        // here leaves no recovery "in progress".
        let t = Instant::now();
        fault::point("preflight:before");
        ctx.preflight()?;
        fault::point("preflight");
        ctx.j.completed.push(Done {
            id: "preflight".into(),
            at: fsutil::unix_now(),
            seconds: t.elapsed().as_secs_f64(),
            boot_id: host.boot_id()?,
        });
        ctx.j.save(&ctx.dir)?;
    }
    ctx.run_steps()
}

fn next_step(j: &Journal) -> Option<&'static (&'static str, Phase, &'static str)> {
    STEPS.iter().find(|s| !j.is_done(s.0))
}

impl Ctx<'_> {
    fn run_steps(&mut self) -> Result<Outcome> {
        let t0 = Instant::now();
        if self.opts.from_unit {
            // Whatever happens next, the unit never runs again.
            self.remove_resume_unit()?;
        }
        let boot = self.host.boot_id()?;
        // A reboot in the middle of the files phase brought the services back:
        // do its service steps again (each is idempotent).
        let files_done = self.j.is_done("selinux-restore");
        let files_boots: Vec<&str> = self
            .j
            .completed
            .iter()
            .filter(|d| phase_of(&d.id) == Some(Phase::Files) && d.id != "preflight")
            .map(|d| d.boot_id.as_str())
            .collect();
        if !files_done && files_boots.iter().any(|b| *b != boot) {
            log::warn!("the node rebooted during the files phase: running that phase again");
            self.j
                .completed
                .retain(|d| phase_of(&d.id) != Some(Phase::Files) || d.id == "preflight");
            self.j.save(&self.dir)?;
        }
        let mut phase_at_start: Option<Phase> = None;
        while let Some(&(id, phase, _)) = next_step(&self.j) {
            if phase == Phase::Cluster && !self.j.is_done(id) && id == "cluster-selinux-permissive"
            {
                self.check_rebooted(&boot)?;
            }
            if self.opts.step {
                match phase_at_start {
                    None => phase_at_start = Some(phase),
                    Some(p) if p != phase => {
                        return Ok(Outcome::PhaseDone {
                            phase: p,
                            next: format!(
                            "phase {} is done; continue with `upgrade-recovery restore --resume`",
                            p.name()
                        ),
                        })
                    }
                    _ => {}
                }
            }
            fault::point(&format!("{id}:before"));
            let t = Instant::now();
            crate::logger::note(self.opts.quiet, &format!("step {id} started"));
            if let Err(e) = self.step(id) {
                let msg = format!("{e:#}");
                self.j.failed = Some(Failure {
                    step: id.into(),
                    error: msg,
                    at: fsutil::unix_now(),
                });
                let _ = self.j.save(&self.dir);
                crate::logger::note(
                    true,
                    &format!(
                        "step {id} failed after {:.1}s: {e:#}",
                        t.elapsed().as_secs_f64()
                    ),
                );
                let text = format!(
                    "recovery step {id} failed: {e:#}\nThe node now: {}.\nNext: fix the cause above, then run `upgrade-recovery restore --resume` (or start over with `upgrade-recovery restore --restart`); `upgrade-recovery status` shows where the recovery stands",
                    self.describe()
                );
                return Err(crate::error::with_code_of(&e, text));
            }
            fault::point(id);
            self.j.failed = None;
            self.j.completed.push(Done {
                id: id.into(),
                at: fsutil::unix_now(),
                seconds: t.elapsed().as_secs_f64(),
                boot_id: boot.clone(),
            });
            if id == "selinux-restore" {
                self.j.files_boot_id = Some(boot.clone());
            }
            self.j.save(&self.dir)?;
            crate::logger::note(
                self.opts.quiet,
                &format!("step {id} done ({:.1}s)", t.elapsed().as_secs_f64()),
            );
            if id == "selinux-restore" {
                if self.opts.auto_resume {
                    self.install_resume_unit()?;
                }
                return Ok(Outcome::RebootNow {
                    steps_done: self.j.completed.clone(),
                });
            }
        }
        let steps = self.j.completed.clone();
        self.remove_resume_unit()?;
        Journal::remove(&self.dir)?;
        crate::logger::note(true, "recovery complete");
        Ok(Outcome::Done {
            steps,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    fn install_resume_unit(&self) -> Result<()> {
        let p = self.host.path(format!("/etc/systemd/system/{RESUME_UNIT}"));
        let text = RESUME_UNIT_TEXT.replace("/var/recovery", &self.host.dir.display().to_string());
        fsutil::write_atomic(&p, text.as_bytes(), 0o644)?;
        self.systemctl(&["daemon-reload"])?;
        self.systemctl(&["enable", RESUME_UNIT])?;
        crate::logger::note(
            self.opts.quiet,
            &format!("installed {RESUME_UNIT}: the recovery continues by itself after the reboot"),
        );
        Ok(())
    }

    /// Remove the auto-resume unit, if any: it runs at most once.
    fn remove_resume_unit(&self) -> Result<()> {
        let p = self.host.path(format!("/etc/systemd/system/{RESUME_UNIT}"));
        if p.exists() {
            let _ = self.systemctl(&["disable", RESUME_UNIT]);
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            self.systemctl(&["daemon-reload"])?;
        }
        Ok(())
    }

    fn check_rebooted(&self, boot: &str) -> Result<()> {
        if self.j.files_boot_id.as_deref() == Some(boot) && !self.opts.force {
            bail!(
                "the files phase finished in this boot ({boot}); the node must reboot before the cluster phase. Nothing was changed. Run `systemctl reboot`, then `/var/recovery/upgrade-recovery.sh --resume` (or `upgrade-recovery restore --resume`)"
            );
        }
        Ok(())
    }

    /// What the node looks like, for messages.
    fn describe(&self) -> String {
        let done: Vec<&str> = self.j.completed.iter().map(|d| d.id.as_str()).collect();
        let phase = next_step(&self.j).map_or("done", |s| s.1.name());
        format!(
            "phase {phase}, {} of {} steps done (last: {})",
            done.len(),
            STEPS.len(),
            done.last().copied().unwrap_or("none")
        )
    }

    fn systemctl(&self, args: &[&str]) -> Result<String> {
        cmd::run_text(self.tools.command("systemctl")?.args(args))
    }

    fn is_active(&self, unit: &str) -> Result<bool> {
        let out = self
            .tools
            .command("systemctl")?
            .args(["is-active", unit])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "active")
    }

    fn step(&mut self, id: &str) -> Result<()> {
        match id {
            "preflight" => self.preflight(),
            "selinux-permissive" | "cluster-selinux-permissive" => {
                if self.j.selinux_mode.is_none() {
                    let mode = cmd::run_text(&mut self.tools.command("getenforce")?)?;
                    self.j.selinux_mode = Some(mode.trim().to_string());
                    self.j.save(&self.dir)?;
                }
                if self.j.selinux_mode.as_deref() == Some("Disabled") {
                    return Ok(());
                }
                cmd::run(self.tools.command("setenforce")?.arg("0")).map(drop)
            }
            "stop-kubelet" => self.systemctl(&["stop", "kubelet.service"]).map(drop),
            "remove-pods" => {
                if !self.is_active("crio.service")? {
                    log::info!("crio is not running: no pods to remove");
                    return Ok(());
                }
                cmd::run(self.tools.command("crictl")?.args(["rmp", "-fa"])).map(drop)
            }
            "stop-crio" => self.systemctl(&["stop", "crio.service"]).map(drop),
            "wipe-crio" => cmd::run(self.tools.command("crio")?.args(["wipe", "-f"])).map(drop),
            "restore-usr-local" => self.restore_tree("local"),
            "restore-etc" => self.restore_tree("etc"),
            "restore-extras" => self.restore_tree("extras"),
            "daemon-reload" => self.systemctl(&["daemon-reload"]).map(drop),
            "disable-kubelet" => self.systemctl(&["disable", "kubelet.service"]).map(drop),
            "selinux-restore" | "cluster-selinux-restore" => match self.j.selinux_mode.as_deref() {
                Some("Enforcing") => cmd::run(self.tools.command("setenforce")?.arg("1")).map(drop),
                _ => Ok(()),
            },
            "restore-kubelet" => self.restore_tree("kubelet"),
            "start-crio" => {
                if !self.is_active("crio.service")? {
                    self.systemctl(&["start", "crio.service"])?;
                }
                Ok(())
            }
            "record-containers" => {
                if self.j.containers.is_empty() {
                    self.j.containers = self.containers()?;
                    self.j.save(&self.dir)?;
                }
                Ok(())
            }
            "restore-etcd" => self.restore_etcd(),
            "restore-images" => {
                crate::images::load(self.host, &self.tools, &self.dir, &self.m.images)
            }
            "restart-kubelet" => self.systemctl(&["restart", "kubelet.service"]).map(drop),
            "enable-kubelet" => self.systemctl(&["enable", "kubelet.service"]).map(drop),
            "restart-crio" => self.systemctl(&["restart", "crio.service"]).map(drop),
            "wait-containers" => self.wait_containers(),
            r if r.starts_with("redeploy-") => self.redeploy(&r["redeploy-".len()..]),
            other => bail!("unknown step {other}"),
        }
    }

    fn preflight(&self) -> Result<()> {
        verify::require_intact(&self.dir)?;
        let os = ostree::read(self.host, &self.tools)?;
        let Some(pinned) = &self.m.deployment else {
            return Ok(());
        };
        let active = os.active().context("no OS deployment found")?;
        if active.checksum == pinned.checksum && active.serial == pinned.serial {
            return Ok(());
        }
        let what = if active.booted { "booted" } else { "default" };
        let msg = format!(
            "the {what} OS deployment is {}, but the backup was taken on {} {}.{} ({}). Restoring files from that OS onto another would mix versions.\n{}The decision table: roll the OS back to the pinned deployment first with `upgrade-recovery rollback` (then reboot), or pass --force to restore anyway",
            active.short(),
            pinned.stateroot,
            &pinned.checksum[..12],
            pinned.serial,
            pinned.version.as_deref().unwrap_or("?"),
            crate::status::render_os(&os),
        );
        if self.opts.force {
            log::warn!("--force: {msg}");
            return Ok(());
        }
        bail!(msg)
    }

    fn tree(&self, name: &str) -> Result<&Tree> {
        self.m
            .tree(name)
            .with_context(|| format!("the backup has no {name} tree"))
    }

    fn restore_tree(&self, name: &str) -> Result<()> {
        let t = self.tree(name)?;
        let archive = self.dir.join(&t.archive);
        let (target, opts) = if t.source == "/" {
            (
                self.host.root.clone(),
                SyncOptions {
                    in_root: true,
                    ..SyncOptions::default()
                },
            )
        } else {
            (
                archive::resolve_top(&self.host.root, &t.source)?,
                SyncOptions {
                    excludes: t.excludes.iter().map(|e| e.as_bytes().to_vec()).collect(),
                    delete: true,
                    ..SyncOptions::default()
                },
            )
        };
        let st = archive::restore_tree(
            &archive,
            &t.stats.sha256,
            t.stats.archive_bytes,
            &target,
            &opts,
        )?;
        crate::logger::note(
            self.opts.quiet,
            &format!(
                "{}: {} entries, {} written, {} unchanged, {} deleted, {} excluded{}",
                t.source,
                st.entries,
                st.written,
                st.unchanged,
                st.deleted,
                st.excluded,
                if st.skipped_mounts.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", mount points left alone: {}",
                        st.skipped_mounts.join(", ")
                    )
                }
            ),
        );
        Ok(())
    }

    fn containers(&self) -> Result<BTreeMap<String, String>> {
        let out = cmd::run_text(self.tools.command("crictl")?.args(["ps", "-o", "json"]))?;
        parse_containers(&out)
    }

    fn wait_until(&self, what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
        let start = Instant::now();
        let mut last_log = Instant::now();
        let mut last_err: Option<String>;
        loop {
            match check() {
                Ok(true) => return Ok(()),
                Ok(false) => last_err = None,
                Err(e) => {
                    log::info!("{what}: {e:#}");
                    last_err = Some(format!("{e:#}"));
                }
            }
            let why = last_err
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default();
            if start.elapsed() > self.opts.wait {
                bail!(
                    "timed out after {}s waiting for {what}{why}",
                    self.opts.wait.as_secs()
                );
            }
            if last_log.elapsed() > Duration::from_secs(30) {
                crate::logger::note(
                    self.opts.quiet,
                    &format!(
                        "still waiting for {what} ({:.0}s of {}s){why}",
                        start.elapsed().as_secs_f64(),
                        self.opts.wait.as_secs()
                    ),
                );
                last_log = Instant::now();
            }
            std::thread::sleep(self.opts.poll);
        }
    }

    fn wait_containers(&self) -> Result<()> {
        let before = self.j.containers.clone();
        self.wait_until("the control-plane containers to restart", || {
            let now = self.containers()?;
            Ok(CONTAINERS
                .iter()
                .all(|n| now.get(*n).is_some_and(|id| before.get(*n) != Some(id))))
        })
    }

    fn restore_etcd(&mut self) -> Result<()> {
        if self.etcd_mode == EtcdRestore::Script {
            let mut c = std::process::Command::new(self.host.path(CLUSTER_RESTORE));
            c.arg(self.dir.join("cluster"));
            return cmd::run_timeout(&mut c, self.opts.wait).map(drop);
        }
        let snap = self.dir.join(
            &self
                .m
                .etcd
                .as_ref()
                .context("the backup has no etcd snapshot")?
                .file,
        );
        let res = self.dir.join(
            &self
                .m
                .static_pods
                .as_ref()
                .context("the backup has no static-pod resources")?
                .file,
        );
        let manifest = self.host.path(ETCD_MANIFEST);
        let aside = self.host.path(ETCD_MANIFEST_ASIDE);
        let data = self.host.path("/var/lib/etcd");
        let member = data.join("member");
        let saved = self.host.path("/var/lib/etcd-backup/member");
        let tmp = self.host.path("/var/lib/etcd-restore.tmp");
        // 1. Stop the etcd static pod: its manifest out of the manifests dir.
        self.sub("manifest-aside", |_| {
            if manifest.exists() {
                std::fs::create_dir_all(aside.parent().unwrap())?;
                std::fs::rename(&manifest, &aside).context("moving the etcd manifest aside")?;
            } else if !aside.exists() {
                bail!(
                    "neither {} nor {} exists",
                    manifest.display(),
                    aside.display()
                );
            }
            Ok(())
        })?;
        // 2. Wait until the etcd containers are gone.
        self.sub("etcd-stopped", |c| {
            c.wait_until("the etcd containers to stop", || {
                let out = cmd::run_text(c.tools.command("crictl")?.args([
                    "ps",
                    "--label",
                    "io.kubernetes.container.name=etcd",
                    "-q",
                ]))?;
                Ok(out.trim().is_empty())
            })
        })?;
        // 3. Keep the current data: /var/lib/etcd/member -> /var/lib/etcd-backup/member.
        self.sub("member-saved", |_| {
            if member.exists() {
                if saved.exists() {
                    let old = saved.with_file_name(format!("member.{}", fsutil::unix_now()));
                    std::fs::rename(&saved, &old)?;
                }
                std::fs::create_dir_all(saved.parent().unwrap())?;
                std::fs::rename(&member, &saved).context("moving the etcd data aside")?;
            }
            Ok(())
        })?;
        // 4. The snapshot into a fresh dir, then into place.
        let cfg = etcd::ClientConfig::load(self.host)?;
        self.sub("snapshot-restored", |c| {
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp)?;
            }
            let name = cfg.name.clone().unwrap_or_else(|| "etcd".into());
            let peer = cfg
                .peer_url
                .clone()
                .unwrap_or_else(|| "https://127.0.0.1:2380".into());
            let mut e = c.tools.command("etcdctl")?;
            e.env("ETCDCTL_API", "3")
                .arg("snapshot")
                .arg("restore")
                .arg(&snap)
                .arg(format!("--name={name}"))
                .arg(format!("--initial-cluster={name}={peer}"))
                .arg(format!("--initial-advertise-peer-urls={peer}"))
                .arg(format!("--data-dir={}", tmp.display()))
                .current_dir(&c.dir);
            cmd::run(&mut e)?;
            if member.exists() {
                std::fs::remove_dir_all(&member)?;
            }
            std::fs::create_dir_all(&data)?;
            std::fs::rename(tmp.join("member"), &member)
                .context("moving the restored member into place")?;
            std::fs::remove_dir_all(&tmp)?;
            fsutil::fsync_dir(&data)
        })?;
        // 5. The static-pod resources of the backup under /etc/kubernetes.
        self.sub("resources-extracted", |c| {
            let dest = c.host.path("/etc/kubernetes");
            cmd::run(
                c.tools
                    .command("tar")?
                    .arg("-C")
                    .arg(&dest)
                    .arg("-xzpf")
                    .arg(&res)
                    .arg("--no-same-owner"),
            )
            .map(drop)
        })?;
        // 6. etcd back: its manifest into the manifests dir.
        self.sub("manifest-back", |_| {
            if aside.exists() {
                std::fs::rename(&aside, &manifest).context("putting the etcd manifest back")?;
            }
            Ok(())
        })?;
        self.j.etcd_restore.clear();
        Ok(())
    }

    /// A sub-step of the native etcd restore, recorded in the journal.
    fn sub(&mut self, id: &str, f: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        if self.j.etcd_restore.iter().any(|s| s == id) {
            return Ok(());
        }
        f(self).with_context(|| format!("etcd restore, {id}"))?;
        fault::point(&format!("restore-etcd:{id}"));
        self.j.etcd_restore.push(id.to_string());
        self.j.save(&self.dir)
    }

    fn oc(&self) -> Result<std::process::Command> {
        let mut c = self.tools.command("oc")?;
        if std::env::var_os("KUBECONFIG").is_none() {
            c.arg(format!(
                "--kubeconfig={}",
                self.host.path(KUBECONFIG).display()
            ));
        }
        Ok(c)
    }

    fn revisions(&self, kind: &str) -> Result<(i64, i64)> {
        let out = cmd::run_text(self.oc()?.args(["get", kind, "-o", "json"]))?;
        parse_revisions(&out).with_context(|| format!("oc get {kind}"))
    }

    fn redeploy(&mut self, kind: &str) -> Result<()> {
        let target = match self.j.redeploy_targets.get(kind) {
            Some(t) => *t,
            None => {
                let mut latest = 0;
                self.wait_until(&format!("the API server to answer for {kind}"), || {
                    latest = self.revisions(kind)?.1;
                    Ok(true)
                })?;
                let target = latest + 1;
                self.j.redeploy_targets.insert(kind.to_string(), target);
                self.j.save(&self.dir)?;
                let reason = format!(
                    "{{\"spec\":{{\"forceRedeploymentReason\":\"recovery-{}\"}}}}",
                    fsutil::unix_now()
                );
                cmd::run(self.oc()?.args([
                    "patch",
                    kind,
                    "cluster",
                    "--type=merge",
                    "-p",
                    &reason,
                ]))?;
                target
            }
        };
        self.wait_until(&format!("{kind} to reach revision {target}"), || {
            Ok(self.revisions(kind)?.0 >= target)
        })
    }
}

fn phase_of(id: &str) -> Option<Phase> {
    STEPS.iter().find(|s| s.0 == id).map(|s| s.1)
}

/// Names to ids of the control-plane containers in `crictl ps -o json`.
pub fn parse_containers(json: &str) -> Result<BTreeMap<String, String>> {
    let v: serde_json::Value =
        serde_json::from_str(json).context("crictl ps -o json: malformed JSON")?;
    let mut out = BTreeMap::new();
    for c in v["containers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let name = c["metadata"]["name"].as_str().unwrap_or_default();
        if CONTAINERS.contains(&name)
            && c["state"].as_str().is_none_or(|s| s == "CONTAINER_RUNNING")
        {
            if let Some(id) = c["id"].as_str() {
                out.insert(name.to_string(), id.to_string());
            }
        }
    }
    Ok(out)
}

/// (currentRevision of the first node, latestAvailableRevision) of an
/// operator list or object from `oc get ... -o json`.
pub fn parse_revisions(json: &str) -> Result<(i64, i64)> {
    let v: serde_json::Value = serde_json::from_str(json).context("malformed JSON")?;
    let obj = if v["items"].is_array() {
        &v["items"][0]
    } else {
        &v
    };
    let cur = obj["status"]["nodeStatuses"][0]["currentRevision"]
        .as_i64()
        .context("no .status.nodeStatuses[0].currentRevision")?;
    let latest = obj["status"]["latestAvailableRevision"]
        .as_i64()
        .context("no .status.latestAvailableRevision")?;
    Ok((cur, latest))
}

pub fn render(o: &Outcome) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    match o {
        Outcome::DryRun { steps } => {
            let _ = writeln!(s, "Recovery plan (nothing is changed by --dry-run):");
            let mut phase = None;
            for st in steps {
                if phase != Some(st.phase) {
                    let _ = writeln!(s, "phase {}:", st.phase.name());
                    phase = Some(st.phase);
                }
                let _ = writeln!(
                    s,
                    "  [{}] {:<32} {}",
                    if st.done { "x" } else { " " },
                    st.id,
                    st.description
                );
                if st.id == "selinux-restore" {
                    let _ = writeln!(
                        s,
                        "  --- reboot (systemctl reboot), then restore --resume ---"
                    );
                }
            }
        }
        Outcome::RebootNow { .. } => {
            let _ = writeln!(
                s,
                "Phase files is done: /usr/local, /etc and the machine-config files are restored, kubelet is disabled.\nReboot now with `systemctl reboot`, then run `/var/recovery/upgrade-recovery.sh --resume` (or `upgrade-recovery restore --resume`)."
            );
        }
        Outcome::PhaseDone { next, .. } => {
            let _ = writeln!(s, "{next}");
        }
        Outcome::Done { steps, seconds } => {
            let _ = writeln!(
                s,
                "Recovery complete ({:.0}s in this run). Time per step:",
                seconds
            );
            for d in steps {
                let _ = writeln!(s, "  {:<32} {:>7.1}s", d.id, d.seconds);
            }
            let _ = writeln!(
                s,
                "The node runs the pre-upgrade state. Check with `oc get co` and `oc get nodes`."
            );
        }
    }
    s
}
