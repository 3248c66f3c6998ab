//! `restore`: the recovery, in phases across a reboot, as an explicit list of
//! idempotent steps with stable ids. The journal records each completed step;
//! a crash anywhere is followed by `--resume` to the same end state.

use crate::archive::{self, SyncOptions};
use crate::node::cmd::{self, Tools};
use crate::node::host::Host;
use crate::store::journal::{Done, Failure, Journal};
use crate::store::manifest::{Manifest, Tree};
use crate::util::error::Fail;
use crate::util::fault;
use crate::util::fsutil;
use crate::{node::etcd, node::ostree, store, store::lock};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub mod checks;
use crate::util::durable;
pub mod selinux;
pub mod state;
pub mod steps;

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

use steps::{phase_of, Step};
pub use steps::{StepId, STEPS};

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
    /// Restore the files even though another OS than the pinned one is active.
    pub other_os: bool,
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
const RESUME_UNIT_TEXT: &str = include_str!("../../packaging/upgrade-recovery-resume.service");

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
        .map(|s| PlanStep {
            id: s.id.as_str(),
            phase: s.phase,
            description: s.description,
            done: j.is_some_and(|j| j.is_done(s.id.as_str())),
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
    /// Held for the whole run; notes the current step for `status`.
    lock: lock::Lock,
    tools: Tools,
    /// `--etcd-restore` resolved: Script or Native.
    etcd_mode: EtcdRestore,
    opts: &'a Options,
    m: Manifest,
    /// The backup dir (the journal, the lock).
    dir: PathBuf,
    /// The dir of the backup's files: its generation (or `dir`, flat).
    gen: PathBuf,
    j: Journal,
    /// Phases whose backup parts this run checked (recovery/checks.rs).
    checked: Vec<Phase>,
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
        return Err(crate::util::error::Fail::Usage(format!(
            "--etcd-restore=script: {} is missing or not executable; nothing was changed; run `upgrade-recovery restore --etcd-restore=native`",
            host.path(CLUSTER_RESTORE).display()
        ))
        .into());
    }
    // The generation the recovery under way uses (the journal records it),
    // else the current one; None is the flat format.
    let generation = match &existing {
        Some(j) if !opts.restart => j.generation.clone(),
        _ => store::current_generation(&dir)?,
    };
    let gen = store::generation_dir(&dir, generation.as_deref())?;
    let m = Manifest::load(&gen)?;
    let (mut req, opt) = required_tools(etcd_mode);
    if !m.images.is_empty() {
        req.push("skopeo");
    }
    let tools = Tools::require(&req, &opt)?;
    let lock = lock::acquire_for(&dir, lock::RESTORE)?;
    let legacy = dir.join(store::layout::LEGACY_PROGRESS);
    if existing.is_none() && opts.resume && !opts.restart && !legacy.exists() {
        // Nothing to continue: starting a new recovery here would restore the
        // old etcd snapshot again and lose every write since.
        drop(lock);
        if opts.from_unit {
            // The auto-resume unit found nothing to continue: it never runs again.
            let unit = host.path(format!("/etc/systemd/system/{RESUME_UNIT}"));
            if unit.exists() {
                if let Ok(mut c) = tools.command("systemctl") {
                    let _ = cmd::run(c.args(["disable", RESUME_UNIT]));
                }
                let _ = std::fs::remove_file(&unit);
            }
        }
        return Err(nothing_to_resume(host, &tools));
    }
    if let Some(j) = existing.as_ref() {
        let boot = host.boot_id().ok();
        if !(opts.resume || opts.restart || opts.force)
            && next_step(j).is_some_and(|s| s.after_reboot)
            && j.files_boot_id.is_some()
            && j.files_boot_id == boot
        {
            return Err(Fail::InProgress(format!(
                "the recovery's files phase is done and the node has not rebooted since; nothing was changed. Reboot first (`systemctl reboot`), then run `{}`",
                state::resume_command(host)
            ))
            .into());
        }
    }
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
            let next = next_step(&j).map_or("none", |s| s.id.as_str());
            return Err(Fail::InProgress(format!(
                "a recovery is already in progress ({} of {} steps done, next: {next}); nothing was changed. Continue it with `{}`, or start over with `upgrade-recovery restore --restart`",
                j.completed.len(),
                STEPS.len(),
                state::resume_command(host)
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
        format: crate::store::journal::FORMAT,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        started: fsutil::rfc3339(fsutil::unix_now()),
        backup_created: m.created.clone(),
        generation,
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
        lock,
        tools,
        etcd_mode,
        opts,
        m,
        dir,
        gen,
        j,
        checked: Vec::new(),
    };
    if fresh {
        // Before the first change, and before a journal exists: a refusal
        // here leaves no recovery "in progress".
        let t = Instant::now();
        ctx.lock.note("recovery step preflight (phase files)");
        crate::util::interrupt::update(|w| {
            *w = interrupt_where(host, &ctx.j, StepId::Preflight.as_str(), Phase::Files)
        });
        fault::point("preflight:before");
        ctx.preflight()?;
        fault::point(StepId::Preflight.as_str());
        ctx.j.completed.push(Done {
            id: StepId::Preflight.as_str().into(),
            at: fsutil::unix_now(),
            seconds: t.elapsed().as_secs_f64(),
            boot_id: host.boot_id()?,
        });
        ctx.j.save(&ctx.dir)?;
    }
    ctx.run_steps()
}

/// `--resume` with no recovery in progress: refuse, say the node's state
/// and the command that fits it.
fn nothing_to_resume(host: &Host, tools: &Tools) -> anyhow::Error {
    let os = ostree::read(host, tools).ok();
    let st = state::assess(host, os.as_ref());
    let last = crate::store::journal::LastRecovery::load(&host.backup_dir())
        .map(|l| format!("The last recovery completed at {}. ", l.completed))
        .unwrap_or_else(|| "No recovery has completed with this backup dir. ".into());
    anyhow::anyhow!(
        "--resume: no recovery is in progress (no {} in {}); nothing was changed. {last}The node now: {}.\nNext: {}",
        crate::store::journal::FILE,
        host.dir.display(),
        st.text,
        st.next
    )
}

/// The message for a signal while `step` runs (None: preflight, no journal).
fn interrupt_where(
    host: &Host,
    j: &Journal,
    step: &str,
    phase: Phase,
) -> crate::util::interrupt::Where {
    let resume = state::resume_command(host);
    if j.completed.is_empty() {
        return crate::util::interrupt::Where {
            doing: format!("recovery step {step} (phase {})", phase.name()),
            done: "nothing; the preflight makes no change and no recovery is recorded".into(),
            next: "start the recovery again with `upgrade-recovery restore`".into(),
        };
    }
    crate::util::interrupt::Where {
        doing: format!("recovery step {step} (phase {})", phase.name()),
        done: format!(
            "{} of {} steps (last: {}), recorded in {}; step {step} was not finished and is safe to run again",
            j.completed.len(),
            STEPS.len(),
            j.completed.last().map_or("none", |d| d.id.as_str()),
            host.dir.join(crate::store::journal::FILE).display()
        ),
        next: format!("continue the recovery with `{resume}`"),
    }
}

/// What to do with a damaged backup in an outage (never "take a new backup").
pub fn damaged_next(host: &Host) -> String {
    format!(
        "Nothing was changed. Do not restore from this backup. In an outage: use another copy of the backup (put it in {} and check it with `upgrade-recovery verify`), or copy intact files out with `upgrade-recovery extract PATH --to DIR`.",
        host.dir.display()
    )
}

fn next_step(j: &Journal) -> Option<&'static Step> {
    STEPS.iter().find(|s| !j.is_done(s.id.as_str()))
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
        let files_done = self.j.is_done(steps::last_of(Phase::Files).as_str());
        let files_boots: Vec<&str> = self
            .j
            .completed
            .iter()
            .filter(|d| phase_of(&d.id) == Some(Phase::Files) && d.id != StepId::Preflight.as_str())
            .map(|d| d.boot_id.as_str())
            .collect();
        if !files_done && files_boots.iter().any(|b| *b != boot) {
            log::warn!("the node rebooted during the files phase: running that phase again");
            self.j.completed.retain(|d| {
                phase_of(&d.id) != Some(Phase::Files) || d.id == StepId::Preflight.as_str()
            });
            self.j.save(&self.dir)?;
        }
        let mut phase_at_start: Option<Phase> = None;
        while let Some(&Step {
            id: sid,
            phase,
            after_reboot,
            ends_phase,
            ..
        }) = next_step(&self.j)
        {
            let id = sid.as_str();
            if after_reboot && !self.j.is_done(id) {
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
            self.lock
                .note(&format!("recovery step {id} (phase {})", phase.name()));
            crate::util::interrupt::update(|w| *w = interrupt_where(self.host, &self.j, id, phase));
            // Before the phase's first change in this run: the parts it reads.
            if !self.checked.contains(&phase) {
                self.check_phase(phase)?;
            }
            fault::point(&format!("{id}:before"));
            let t = Instant::now();
            crate::util::logger::note(self.opts.quiet, &format!("step {id} started"));
            if let Err(e) = self.step(sid) {
                let msg = format!("{e:#}");
                self.j.failed = Some(Failure {
                    step: id.into(),
                    error: msg,
                    at: fsutil::unix_now(),
                });
                let _ = self.j.save(&self.dir);
                crate::util::logger::note(
                    true,
                    &format!(
                        "step {id} failed after {:.1}s: {e:#}",
                        t.elapsed().as_secs_f64()
                    ),
                );
                let text = format!(
                    "recovery step {id} failed: {e:#}\nThe node now: {}.\nNext: fix the cause above, then run `{}` (or start over with `upgrade-recovery restore --restart`); `upgrade-recovery status` shows where the recovery stands",
                    self.describe(),
                    state::resume_command(self.host)
                );
                return Err(crate::util::error::with_code_of(&e, text));
            }
            fault::point(id);
            self.j.failed = None;
            self.j.completed.push(Done {
                id: id.into(),
                at: fsutil::unix_now(),
                seconds: t.elapsed().as_secs_f64(),
                boot_id: boot.clone(),
            });
            if phase == Phase::Files && ends_phase {
                self.j.files_boot_id = Some(boot.clone());
            }
            self.j.save(&self.dir)?;
            crate::util::logger::note(
                self.opts.quiet,
                &format!("step {id} done ({:.1}s)", t.elapsed().as_secs_f64()),
            );
            if phase == Phase::Files && ends_phase {
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
        // Durable before the journal goes: "recovery completed at T".
        crate::store::journal::LastRecovery {
            completed: fsutil::rfc3339(fsutil::unix_now()),
            started: self.j.started.clone(),
            backup_created: self.j.backup_created.clone(),
            steps: steps.len(),
        }
        .save(&self.dir)?;
        // Before the journal goes: a crash in between resumes and gets here.
        selinux::forget(&self.dir)?;
        Journal::remove(&self.dir)?;
        crate::util::logger::note(true, "recovery complete");
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
        // Durable: the unit and its link, before the journal says "reboot".
        durable::fs_of(
            "install-resume-unit",
            &self.host.path("/etc/systemd/system"),
        )?;
        crate::util::logger::note(
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
            // Durable: the unit never runs again, even after a power loss.
            durable::fs_of("remove-resume-unit", &self.host.path("/etc/systemd/system"))?;
            self.systemctl(&["daemon-reload"])?;
        }
        Ok(())
    }

    fn check_rebooted(&self, boot: &str) -> Result<()> {
        if self.j.files_boot_id.as_deref() == Some(boot) && !self.opts.force {
            bail!(
                "the files phase finished in this boot ({boot}); the node must reboot before the cluster phase. Nothing was changed. Reboot first (`systemctl reboot`), then run `{}`",
                state::resume_command(self.host)
            );
        }
        Ok(())
    }

    /// What the node looks like, for messages.
    fn describe(&self) -> String {
        let done: Vec<&str> = self.j.completed.iter().map(|d| d.id.as_str()).collect();
        let phase = next_step(&self.j).map_or("done", |s| s.phase.name());
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

    fn step(&mut self, sid: StepId) -> Result<()> {
        let id = sid.as_str();
        match sid {
            StepId::Preflight => self.preflight(),
            StepId::SelinuxPermissive | StepId::ClusterSelinuxPermissive => {
                if self.j.selinux_mode.is_none() {
                    self.j.selinux_mode = Some(self.selinux_mode_to_restore()?);
                    self.j.save(&self.dir)?;
                }
                if self.j.selinux_mode.as_deref() == Some("Disabled") {
                    return Ok(());
                }
                cmd::run(self.tools.command("setenforce")?.arg("0")).map(drop)
            }
            StepId::StopKubelet => self.systemctl(&["stop", "kubelet.service"]).map(drop),
            StepId::RemovePods => {
                if !self.is_active("crio.service")? {
                    log::info!("crio is not running: no pods to remove");
                    return Ok(());
                }
                cmd::run(self.tools.command("crictl")?.args(["rmp", "-fa"])).map(drop)
            }
            StepId::StopCrio => self.systemctl(&["stop", "crio.service"]).map(drop),
            StepId::WipeCrio => {
                cmd::run(self.tools.command("crio")?.args(["wipe", "-f"])).map(drop)
            }
            StepId::RestoreUsrLocal => self.restore_tree(id, "local"),
            StepId::RestoreEtc => self.restore_tree(id, "etc"),
            StepId::RestoreExtras => self.restore_tree(id, "extras"),
            StepId::DaemonReload => self.systemctl(&["daemon-reload"]).map(drop),
            StepId::DisableKubelet => {
                self.systemctl(&["disable", "kubelet.service"])?;
                // Durable: systemctl removed the wants/ links without a sync.
                durable::fs_of(id, &self.host.path("/etc/systemd/system"))
            }
            StepId::SelinuxRestore | StepId::ClusterSelinuxRestore => {
                match self.j.selinux_mode.as_deref() {
                    Some("Enforcing") => {
                        cmd::run(self.tools.command("setenforce")?.arg("1")).map(drop)
                    }
                    _ => Ok(()),
                }
            }
            StepId::RestoreKubelet => self.restore_tree(id, "kubelet"),
            StepId::StartCrio => {
                if !self.is_active("crio.service")? {
                    self.systemctl(&["start", "crio.service"])?;
                }
                Ok(())
            }
            StepId::RecordContainers => {
                if self.j.containers.is_empty() {
                    self.j.containers = self.containers()?;
                    self.j.save(&self.dir)?;
                }
                Ok(())
            }
            StepId::RestoreEtcd => self.restore_etcd(),
            StepId::RestoreImages => crate::node::images::load(
                self.host,
                &self.tools,
                &self.gen.join(crate::store::layout::IMAGES),
                &self.m.images,
            ),
            StepId::RestartKubelet => self.systemctl(&["restart", "kubelet.service"]).map(drop),
            StepId::EnableKubelet => {
                self.systemctl(&["enable", "kubelet.service"])?;
                // Durable: the wants/ link systemctl made.
                durable::fs_of(id, &self.host.path("/etc/systemd/system"))
            }
            StepId::RestartCrio => self.systemctl(&["restart", "crio.service"]).map(drop),
            StepId::WaitContainers => self.wait_containers(),
            StepId::RedeployEtcd
            | StepId::RedeployKubeapiserver
            | StepId::RedeployKubecontrollermanager
            | StepId::RedeployKubescheduler => self.redeploy(&id["redeploy-".len()..]),
        }
    }

    /// The mode the first run of the files phase recorded for this backup,
    /// else the node's mode now, recorded durably before `setenforce 0`.
    fn selinux_mode_to_restore(&self) -> Result<String> {
        if let Some(r) = selinux::recorded(&self.dir, &self.m.created) {
            crate::util::logger::note(
                self.opts.quiet,
                &format!(
                    "SELinux mode to put back: {} (recorded at {} by the first run of this recovery)",
                    r.mode,
                    fsutil::rfc3339(r.at)
                ),
            );
            return Ok(r.mode);
        }
        let out = cmd::run_text(&mut self.tools.command("getenforce")?)?;
        let mode = out.trim();
        if !selinux::valid(mode) {
            bail!("getenforce printed '{mode}', not Enforcing, Permissive or Disabled; nothing was changed");
        }
        selinux::record(&self.dir, mode, &self.m.created)?;
        Ok(mode.to_string())
    }

    /// Check the backup parts the rest of `phase` reads (one read each);
    /// damage is exit 4 with nothing changed in that phase.
    fn check_phase(&mut self, phase: Phase) -> Result<()> {
        let steps = checks::remaining(phase, |id| self.j.is_done(id));
        let parts = checks::parts_for(&self.m, &steps);
        if !parts.is_empty() {
            let names: Vec<&str> = parts.iter().map(|p| p.name()).collect();
            crate::util::logger::note(
                self.opts.quiet,
                &format!(
                    "phase {}: checking the backup parts it reads: {}",
                    phase.name(),
                    names.join(", ")
                ),
            );
        }
        let problems = checks::check(&self.gen, &self.m, &parts);
        if !problems.is_empty() {
            let started = self
                .j
                .completed
                .iter()
                .any(|d| d.id != StepId::Preflight.as_str());
            let next = if started {
                "upgrade-recovery restore --resume"
            } else {
                "upgrade-recovery restore"
            };
            return Err(Fail::Backup(format!(
                "the backup parts that phase {phase} needs are damaged. Nothing was changed in this phase (the node now: {state}):\n  {list}\nIn an outage: put another copy of the backup in {dir} (the same backup, e.g. from the hub or a USB copy) and run `{next}`; or take the intact files out with `upgrade-recovery extract PATH... --to DIR`. `upgrade-recovery verify` lists every damaged part.",
                phase = phase.name(),
                state = self.describe(),
                list = problems.join("\n  "),
                dir = self.dir.display(),
            ))
            .into());
        }
        self.checked.push(phase);
        Ok(())
    }

    fn preflight(&mut self) -> Result<()> {
        // Every part is there with its recorded size (a look, no read); the
        // bytes of each are checked by the phase that reads them.
        let all: Vec<&str> = STEPS.iter().map(|s| s.id.as_str()).collect();
        let problems = checks::sizes(&self.gen, &checks::parts_for(&self.m, &all));
        if !problems.is_empty() {
            return Err(Fail::Backup(format!(
                "the backup in {} is damaged. Nothing was changed. Damaged:\n  {}\nIn an outage: put another copy of the backup there and run `upgrade-recovery restore`; or take the intact files out with `upgrade-recovery extract PATH... --to DIR`. `upgrade-recovery verify` lists every damaged part.",
                self.dir.display(),
                problems.join("\n  ")
            ))
            .into());
        }
        self.check_phase(Phase::Files)?;
        let os = ostree::read(self.host, &self.tools)?;
        let Some(pinned) = &self.m.deployment else {
            return Ok(());
        };
        let active = os.active().context("no OS deployment found")?;
        if active.checksum == pinned.checksum && active.serial == pinned.serial {
            return Ok(());
        }
        let what = if active.booted { "booted" } else { "default" };
        let pinned_name = format!(
            "{} {}.{} ({})",
            pinned.stateroot,
            pinned.checksum.get(..12).unwrap_or(&pinned.checksum),
            pinned.serial,
            pinned.version.as_deref().unwrap_or("?"),
        );
        let forced = if self.opts.force {
            "--force does not skip this check: it would restore the files of one OS onto another. "
        } else {
            ""
        };
        let msg = format!(
            "the {what} OS deployment is {}, but the backup was taken on {pinned_name}. {forced}Restoring the files of {pinned_name} onto {} would mix OS versions; nothing was changed.\n{}Next: roll the OS back to the pinned deployment with `upgrade-recovery rollback --reboot`; after the reboot, run `upgrade-recovery restore`.",
            active.short(),
            active.short(),
            state::render_os(&os),
        );
        if self.opts.other_os {
            log::warn!(
                "--restore-onto-other-os: restoring the files of {pinned_name} onto {} ({what}); the node will run files of one OS version on another",
                active.short()
            );
            return Ok(());
        }
        if self.opts.force {
            // Named only to the admin who tried to force it, never as an
            // alternative to the rollback.
            bail!(
                "{msg}\n(Only if the pinned deployment can no longer boot and you accept files of another OS version: `--restore-onto-other-os`.)"
            )
        }
        bail!(msg)
    }

    fn tree(&self, name: &str) -> Result<&Tree> {
        self.m
            .tree(name)
            .with_context(|| format!("the backup has no {name} tree"))
    }

    fn restore_tree(&self, id: &str, name: &str) -> Result<()> {
        let t = self.tree(name)?;
        let archive = self.gen.join(&t.archive);
        let phase = if name == "kubelet" {
            Phase::Cluster
        } else {
            Phase::Files
        };
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
                    excludes: self.excludes(t)?,
                    delete: true,
                    ..SyncOptions::default()
                },
            )
        };
        // The phase check of this run read the archive once already: no
        // second hash here (the sync checks every file's own sha256).
        let st = if self.checked.contains(&phase) {
            archive::sync_tree(&archive, &target, &opts)?
        } else {
            archive::restore_tree(
                &archive,
                &t.stats.sha256,
                t.stats.archive_bytes,
                &target,
                &opts,
            )?
        };
        // Durable: the tree sync ends with a syncfs of the target's file
        // system; the extras lie on several (/etc on the root, others on
        // /var...): each file system touched is synced.
        if t.source == "/" {
            let paths: Vec<PathBuf> = t
                .only
                .iter()
                .flatten()
                .map(|p| self.host.path(p))
                .chain([self.host.root.clone()])
                .collect();
            durable::each_fs(id, paths.iter().map(PathBuf::as_path))?;
        } else {
            durable::fs_of(id, &target)?;
        }
        crate::util::logger::note(
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

    /// What the restore of `t` leaves alone: for /etc, the backup's
    /// `etc.exclude.list` read as rsync reads `--exclude-from` (the admin
    /// may have edited it, as with the old script); without that file, the
    /// list the manifest recorded, with the same meaning.
    fn excludes(&self, t: &Tree) -> Result<archive::exclude::Excludes> {
        if t.name != "etc" {
            return Ok(archive::exclude::Excludes::parse(
                t.excludes.join("\n").as_bytes(),
            ));
        }
        match checks::exclude_list(&self.gen).map_err(Fail::Backup)? {
            Some(b) => Ok(archive::exclude::Excludes::parse(&b)),
            None => {
                log::warn!(
                    "{} is not in the backup: using the exclude list recorded in the manifest",
                    crate::store::layout::EXCLUDE_LIST
                );
                Ok(archive::exclude::Excludes::parse(
                    t.excludes.join("\n").as_bytes(),
                ))
            }
        }
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
                crate::util::logger::note(
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
            c.arg(self.gen.join(store::layout::CLUSTER));
            cmd::run_timeout(&mut c, self.opts.wait)?;
            // Durable: what the script restored (etcd data, manifests).
            durable::fs_of("restore-etcd", &self.host.path("/var/lib/etcd"))?;
            return durable::fs_of("restore-etcd", &self.host.path("/etc/kubernetes"));
        }
        let snap = self.gen.join(
            &self
                .m
                .etcd
                .as_ref()
                .context("the backup has no etcd snapshot")?
                .file,
        );
        let res = self.gen.join(
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
            // Durable: the rename, in both parent dirs.
            durable::dir("manifest-aside", manifest.parent().unwrap())?;
            durable::dir("manifest-aside", aside.parent().unwrap())
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
            // Durable: the renames, in both parent dirs.
            for d in [data.as_path(), saved.parent().unwrap()] {
                if d.is_dir() {
                    durable::dir("member-saved", d)?;
                }
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
            // Durable: the restored member's files, and the renames.
            durable::fs_of("snapshot-restored", &member)?;
            durable::dir("snapshot-restored", &data)?;
            durable::dir("snapshot-restored", tmp.parent().unwrap())
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
            )?;
            // Durable: tar wrote the resources without a sync.
            durable::fs_of("resources-extracted", &dest)
        })?;
        // 6. etcd back: its manifest into the manifests dir.
        self.sub("manifest-back", |_| {
            if aside.exists() {
                std::fs::rename(&aside, &manifest).context("putting the etcd manifest back")?;
            }
            // Durable: the rename, in both parent dirs.
            durable::dir("manifest-back", manifest.parent().unwrap())?;
            durable::dir("manifest-back", aside.parent().unwrap())
        })?;
        self.j.etcd_restore.clear();
        Ok(())
    }

    /// A sub-step of the native etcd restore, recorded in the journal.
    fn sub(&mut self, id: &str, f: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        debug_assert!(
            steps::ETCD_SUBSTEPS.contains(&id),
            "{id} not in ETCD_SUBSTEPS"
        );
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
                let reason = format!(
                    "{{\"spec\":{{\"forceRedeploymentReason\":\"recovery-{}\"}}}}",
                    fsutil::unix_now()
                );
                // The target is recorded only once the patch that makes it
                // succeeded: a failed patch is not a redeployment to wait
                // for, and `--resume` patches again.
                cmd::run(self.oc()?.args([
                    "patch",
                    kind,
                    "cluster",
                    "--type=merge",
                    "-p",
                    &reason,
                ]))
                .with_context(|| {
                    format!("asking {kind} for a new revision (oc patch {kind} cluster) failed; nothing is recorded, `--resume` asks again")
                })?;
                fault::point(&format!("redeploy-{kind}:patched"));
                self.j.redeploy_targets.insert(kind.to_string(), target);
                self.j.save(&self.dir)?;
                target
            }
        };
        self.wait_revision(kind, target)
    }

    /// Wait until `kind`'s node runs revision `target`. The progress lines
    /// show the current and the wanted revision; a timeout names the
    /// operator, where it is stuck, and the command to look.
    fn wait_revision(&self, kind: &str, target: i64) -> Result<()> {
        let start = Instant::now();
        let mut last_log = Instant::now();
        let look = format!("oc get {kind} cluster -o yaml");
        loop {
            let (now, err) = match self.revisions(kind) {
                Ok((cur, _)) if cur >= target => return Ok(()),
                Ok((cur, latest)) => (
                    format!("at revision {cur}, wanted {target} (latest available {latest})"),
                    None,
                ),
                Err(e) => {
                    log::info!("{kind}: {e:#}");
                    ("revision unknown".to_string(), Some(format!("{e:#}")))
                }
            };
            let why = err
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default();
            if start.elapsed() > self.opts.wait {
                bail!(
                    "timed out after {}s: {kind} is stuck {now}{why}. Look with `{look}` (status.conditions and status.nodeStatuses say why); once it moves, `upgrade-recovery restore --resume` waits again without a new redeployment",
                    self.opts.wait.as_secs()
                );
            }
            if last_log.elapsed() > Duration::from_secs(30) {
                crate::util::logger::note(
                    self.opts.quiet,
                    &format!(
                        "still waiting for {kind}: {now} ({:.0}s of {}s){why}",
                        start.elapsed().as_secs_f64(),
                        self.opts.wait.as_secs()
                    ),
                );
                last_log = Instant::now();
            }
            std::thread::sleep(self.opts.poll);
        }
    }
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
                if st.id == steps::last_of(Phase::Files).as_str() {
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
