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

mod bodies;
pub mod checks;
pub mod elsewhere;
mod last_failures;
pub mod lifecycle;
use crate::util::durable;
pub mod same_os;
pub mod selinux;
pub mod state;
pub mod states;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum EtcdRestore {
    /// The node's cluster-restore.sh when it exists, else native
    Auto,
    /// /usr/local/bin/cluster-restore.sh <dir>/cluster
    Script,
    /// As the 4.18+ restore pod: etcd aside, `etcdutl snapshot restore`
    /// with revisions bumped and compacted, the resources extracted
    Native,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub resume: bool,
    pub restart: bool,
    /// `--again`: recover again from a backup a recovery completed from.
    pub again: bool,
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
    /// `--redo STEP`: a redeploy step done again from its start (a new
    /// reason, a new target revision).
    pub redo: Option<String>,
}

impl Options {
    /// The flags that choose what this run does, as an admin types them
    /// (not `--dry-run`, nor the waits): what a dry run's plan was made
    /// with, and what the command that carries it out must carry.
    pub fn flags(&self) -> String {
        let mut f: Vec<String> = Vec::new();
        for (on, flag) in [
            (self.resume, "--resume"),
            (self.restart, "--restart"),
            (self.again, "--again"),
            (self.step, "--step"),
            (self.force, "--force"),
            (self.other_os, "--restore-onto-other-os"),
            (self.auto_resume, "--auto-resume"),
        ] {
            if on {
                f.push(flag.into());
            }
        }
        match self.etcd_restore {
            EtcdRestore::Auto => {}
            EtcdRestore::Script => f.push("--etcd-restore=script".into()),
            EtcdRestore::Native => f.push("--etcd-restore=native".into()),
        }
        if let Some(step) = &self.redo {
            f.push(format!("--redo {step}"));
        }
        f.join(" ")
    }

    /// The command that carries out what this run (a dry run) planned:
    /// the same flags without `--dry-run`; a plain `--resume` is the
    /// documented wrapper's (`state::resume_command`).
    pub fn command(&self, host: &Host) -> String {
        match self.flags().as_str() {
            "" => host.cmd("restore"),
            "--resume" => state::resume_command(host),
            f => host.cmd(&format!("restore {f}")),
        }
    }
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
        /// The command that carries out this plan.
        next: String,
    },
    /// The files phase is done: the node must reboot.
    RebootNow {
        steps_done: Vec<Done>,
        /// What continues the recovery after the reboot: the resume unit
        /// (`--auto-resume`) or the admin's command.
        next: String,
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
        // tar: the static-pod resources; cp: a move across mounts
        // (`util::durable::move_path`).
        req.push("tar");
        req.push("cp");
    }
    // The native restore's program (etcdutl, else etcdctl) is checked by
    // `etcd_restore::restore_tool` in `prepare`.
    (req, vec!["rpm-ostree", "etcdctl", "etcdutl", "tar"])
}

/// What a `restore` run will do, built by `prepare` from the read-only
/// checks before the first change: `dry_run` prints it, `execute` carries
/// it out.
pub struct Plan<'a> {
    host: &'a Host,
    opts: &'a Options,
    /// Held for the real run; None with `--dry-run` (checked free).
    lock: Option<lock::Lock>,
    tools: Tools,
    etcd_mode: EtcdRestore,
    m: Manifest,
    dir: PathBuf,
    gen: PathBuf,
    /// The journal the run continues, or the new one it starts.
    j: Journal,
    /// No recovery under way (or `--restart`): the run starts with the preflight.
    fresh: bool,
    /// `--restart`: the steps done by the recovery under way, forgotten
    /// before the first change.
    forget: Option<usize>,
}

/// The read-only checks before the first change, the same for `--dry-run`
/// and the real run (which also takes the lock here): they refuse where the
/// real run refuses, with the same code.
pub fn prepare<'a>(host: &'a Host, opts: &'a Options) -> Result<Plan<'a>> {
    host.require_node()?;
    if let Some(step) = &opts.redo {
        redeploy_kind(step)?;
    }
    let dir = host.backup_dir();
    // Before the journal: in a dir someone else could change, it (and the
    // generation it names) would choose what root restores and runs.
    store::trust::require(&dir)?;
    let existing = match Journal::load(&dir) {
        // --restart is the way out of an unreadable journal: a new one replaces it.
        Err(e) if opts.restart => {
            log::warn!("{e:#}");
            None
        }
        Err(e) => {
            return Err(crate::util::error::with_code_of(
                &e,
                format!(
                    "{e:#}; start it over with `{}` (every step is safe to run again)",
                    host.cmd("restore --restart")
                ),
            ))
        }
        Ok(j) => j,
    };
    // No recovery here, one under way in another backup dir: a second
    // one would restore over it (the lifecycle rule; exit 3, no change).
    if existing.is_none() && !dir.join(store::layout::LEGACY_PROGRESS).exists() {
        if let Some(other) = lifecycle::recovery_elsewhere(host).and_then(|v| v.under_way) {
            return Err(lifecycle::refuse_under_way(
                host,
                "start a recovery",
                &other,
            ));
        }
    }
    // Programs first: a missing one is named before anything changes.
    // The way the recovery under way was told to restore etcd, unless this
    // run says otherwise (the journal records an explicit choice).
    let recorded = existing
        .as_ref()
        .filter(|_| !opts.restart)
        .and_then(|j| j.etcd_restore_mode.as_deref())
        .and_then(|m| <EtcdRestore as clap::ValueEnum>::from_str(m, false).ok());
    let chosen = match (opts.etcd_restore, recorded) {
        (EtcdRestore::Auto, Some(m)) => m,
        (m, _) => m,
    };
    let etcd_mode = match chosen {
        EtcdRestore::Auto if cmd::is_executable(&host.path(CLUSTER_RESTORE)) => EtcdRestore::Script,
        EtcdRestore::Auto => EtcdRestore::Native,
        m => m,
    };
    // The script is run only at restore-etcd, after the reboot: its absence
    // must stop us now, not half way.
    if etcd_mode == EtcdRestore::Script && !cmd::is_executable(&host.path(CLUSTER_RESTORE)) {
        return Err(crate::util::error::Fail::Usage(format!(
            "--etcd-restore=script: {} is missing or not executable; nothing was changed; run `{}`",
            host.path(CLUSTER_RESTORE).display(),
            host.cmd("restore --etcd-restore=native")
        ))
        .into());
    }
    // The generation the recovery under way uses (the journal records it),
    // else the current one; None is the flat format.
    let generation = match &existing {
        Some(j) if !opts.restart => j.generation.clone(),
        _ => store::current_generation(host)?,
    };
    // Mid-recovery, a backup that cannot be read names the way on (issue
    // 27.6): the same backup back in place, then the same command.
    let under_way = |e: anyhow::Error| {
        match &existing {
        Some(j) if !opts.restart => crate::util::error::with_code_of(
            &e,
            format!(
                "{e:#}. Nothing was changed by this run. The recovery under way ({}) restores that backup: put another copy of the same backup in {} (with its {}), check it with `{}`, then run `{}`",
                describe(j),
                host.dir.display(),
                store::layout::MANIFEST,
                host.cmd("verify"),
                state::resume_command(host)
            ),
        ),
        _ => e,
    }
    };
    let gen = store::generation_dir(&dir, generation.as_deref()).map_err(under_way)?;
    let m = Manifest::load(&gen).map_err(under_way)?;
    let (mut req, opt) = required_tools(etcd_mode);
    if !m.images.is_empty() {
        req.push("skopeo");
    }
    let tools = Tools::require(&req, &opt)?;
    // The native etcd restore needs a program that bumps revisions as the
    // restore pod does: refused now, before the first change, without one.
    if etcd_mode == EtcdRestore::Native {
        crate::node::etcd_restore::restore_tool(host, &tools)
            .map_err(|e| crate::util::error::Fail::Usage(format!("{e:#}")))?;
    }
    let lock = if opts.dry_run {
        lock::check_free(host)?;
        None
    } else {
        Some(lock::acquire_for(host, lock::RESTORE)?)
    };
    let legacy = dir.join(store::layout::LEGACY_PROGRESS);
    if existing.is_none() && opts.resume && !opts.restart && !legacy.exists() {
        // Nothing to continue: starting a new recovery here would restore the
        // old etcd snapshot again and lose every write since.
        drop(lock);
        if opts.from_unit && !opts.dry_run {
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
    // (Only a backup with a completed recovery can be "recovered": the API
    // is asked only then.)
    let recovered_once = crate::store::journal::LastRecovery::load(&dir)
        .is_some_and(|l| l.backup_created == m.created);
    if existing.is_none() && !legacy.exists() && !opts.again && recovered_once {
        // A new recovery from a backup that a recovery already completed
        // from, with no failed upgrade since (the lifecycle rule): it would
        // put the old etcd snapshot back and lose every write since.
        let os = ostree::read(host, &tools).ok();
        let v = lifecycle::decide(&lifecycle::gather(
            host,
            &tools,
            Some(lifecycle::taken(&m)),
            Some(&m),
            os,
        ));
        if v.recovered {
            drop(lock);
            return Err(already_recovered(host, &v));
        }
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
    let mut forget = None;
    let j = match existing {
        Some(j) if opts.restart => {
            forget = Some(j.completed.len());
            None
        }
        Some(j) if !(opts.resume || opts.step) => {
            let next = next_step(&j).map_or("none", |s| s.id.as_str());
            return Err(Fail::InProgress(format!(
                "a recovery is already in progress ({} of {} steps done, next: {next}); nothing was changed. Continue it with `{}`, or start over with `{}`",
                j.completed.len(),
                STEPS.len(),
                state::resume_command(host),
                host.cmd("restore --restart")
            ))
            .into());
        }
        j => j,
    };
    if j.is_none() && legacy.exists() && !opts.restart {
        return Err(Fail::InProgress(format!(
            "{} shows a recovery started by the old upgrade-recovery.sh; nothing was changed. Start it over with `{}` (every step is safe to run again)",
            legacy.display(),
            host.cmd("restore --restart")
        ))
        .into());
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
    let mut j = j;
    j.auto_resume |= opts.auto_resume;
    if chosen != EtcdRestore::Auto {
        j.etcd_restore_mode =
            clap::ValueEnum::to_possible_value(&chosen).map(|v| v.get_name().to_string());
    }
    if let Some(step) = &opts.redo {
        redo(&mut j, step)?;
    }
    if j.backup_created != m.created {
        bail!(
            "the recovery under way restores the backup of {}, but the backup in {} is from {}; start over with `{}`",
            j.backup_created,
            dir.display(),
            m.created,
            host.cmd("restore --restart")
        );
    }
    Ok(Plan {
        host,
        opts,
        lock,
        tools,
        etcd_mode,
        m,
        dir,
        gen,
        j,
        fresh,
        forget,
    })
}

impl Plan<'_> {
    /// `--dry-run`: the read-only checks the real run makes before its
    /// first change too (the backup parts read as the real run reads
    /// them), then the plan with what is done.
    pub fn dry_run(self) -> Result<Outcome> {
        let Plan {
            host,
            opts,
            tools,
            m,
            gen,
            mut j,
            fresh,
            ..
        } = self;
        // The real run's checks before its first change: a new recovery's
        // preflight (every part of the backup read: the files phase's in
        // full, the later phases' by size and sha256; the room, the OS); a
        // recovery under way, the parts its next phase reads, in full.
        if fresh {
            bodies::check_sizes(host, &gen, &m, &opts.command(host))?;
            checks::require_room(host, &m)?;
            check_tops(host, &m, &j, &ALL_PHASES, &opts.command(host))?;
            check_parts(
                host,
                &gen,
                &m,
                &j,
                &ALL_PHASES,
                opts.quiet,
                &opts.command(host),
            )?;
            bodies::check_os(host, &tools, &m, opts)?;
            // What restore-etc will warn of (bodies.rs, `excludes`).
            if let (Some(t), Ok(Some(b))) = (m.tree("etc"), checks::exclude_list(&gen)) {
                if let Some(d) = checks::exclude_list_changes(&b, &t.excludes) {
                    log::warn!("{d}");
                }
            }
        } else {
            let boot = host.boot_id()?;
            forget_files_after_reboot(&mut j, &boot);
            same_os::refuse_moved(host, &tools, &m, &j)?;
            if let Some(s) = next_step(&j) {
                if s.after_reboot {
                    check_rebooted(host, &j, opts, &boot)?;
                }
                check_tops(host, &m, &j, &[s.phase], &opts.command(host))?;
                check_parts(
                    host,
                    &gen,
                    &m,
                    &j,
                    &[s.phase],
                    opts.quiet,
                    &opts.command(host),
                )?;
            }
        }
        Ok(Outcome::DryRun {
            steps: plan(Some(&j)),
            // Exactly what was planned (the hints report: `--restart
            // --dry-run` named a plain `restore`, refused with exit 3).
            next: opts.command(host),
        })
    }

    /// Carry the plan out: the preflight of a new recovery, then every step
    /// not done, journaled.
    pub fn execute(self) -> Result<Outcome> {
        let Plan {
            host,
            opts,
            lock,
            tools,
            etcd_mode,
            m,
            dir,
            gen,
            j,
            fresh,
            forget,
        } = self;
        let lock = lock.context("the lock was not taken")?;
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
            (StepId::Preflight.spec().run)(&mut ctx)?;
            // `--restart` forgets the recovery under way only now, once the
            // new one's checks passed: a refusal of the preflight (the OS,
            // a damaged part, the room) leaves the journal as it was, as
            // its "nothing was changed" says (the second independent
            // tester: the journal was gone after such a refusal).
            if let Some(done) = forget {
                log::warn!("--restart: forgetting the recovery under way ({done} steps done)");
                Journal::remove(&ctx.dir)?;
            }
            if opts.restart {
                let _ = std::fs::remove_file(ctx.dir.join(store::layout::LEGACY_PROGRESS));
            }
            fault::point(StepId::Preflight.as_str());
            ctx.j.completed.push(Done {
                id: StepId::Preflight.as_str().into(),
                at: fsutil::unix_now(),
                seconds: t.elapsed().as_secs_f64(),
                boot_id: host.boot_id()?,
            });
            ctx.j.save(ctx.host)?;
            // A recovery is under way in this dir from now on: recorded
            // for the runs in another dir (`elsewhere`).
            elsewhere::remember(host, true);
        }
        ctx.run_steps()
    }
}

/// `--redo STEP`: forget what the journal holds of the redeploy step STEP
/// (its target revision, its completion), so the run asks for a new
/// revision with a new reason. Only redeploy steps: every other step is
/// done again by `--resume` itself when it failed.
fn redo(j: &mut Journal, step: &str) -> Result<()> {
    let kind = redeploy_kind(step)?;
    j.redeploy_targets.remove(kind);
    j.completed.retain(|d| d.id != step);
    Ok(())
}

/// The operator of a redeploy step (`redeploy-etcd`: `etcd`); any other
/// step is a usage error.
fn redeploy_kind(step: &str) -> Result<&str> {
    let redeploys: Vec<&str> = STEPS
        .iter()
        .filter(|s| s.phase == Phase::Redeploy)
        .map(|s| s.id.as_str())
        .collect();
    match step.strip_prefix("redeploy-") {
        Some(kind) if redeploys.contains(&step) => Ok(kind),
        _ => Err(Fail::Usage(format!(
            "--redo {step}: only a redeploy step can be done again ({}); nothing was changed",
            redeploys.join(", ")
        ))
        .into()),
    }
}

/// The auto-resume unit for the backup dir `dir` (as the node names it):
/// the binary and `--dir` of that dir, so that the recovery continues from
/// the backup it started with.
fn resume_unit_text(dir: &std::path::Path) -> String {
    RESUME_UNIT_TEXT.replace("/var/recovery", &dir.display().to_string())
}

/// After the files phase: what continues the recovery after the reboot.
/// With `--auto-resume` the unit does (it is installed and enabled by now):
/// how to watch it, and the admin's command only if it does not run.
fn reboot_next(host: &Host, auto_resume: bool) -> String {
    let resume = state::resume_command(host);
    if auto_resume {
        let unit = RESUME_UNIT.trim_end_matches(".service");
        format!(
            "Reboot now with `systemctl reboot`: after the reboot {RESUME_UNIT} (installed and enabled) finishes the recovery by itself; nothing is to be run for it. Watch it with `journalctl -u {unit} -f`, or look with `{}` (it names the step under way). Only if the unit does not run (a few minutes after the boot `{}` says the recovery stopped before a step of phase cluster, not that a recovery is running, and `journalctl -u {unit}` shows nothing), continue by hand with `{resume}`.",
            host.cmd("status"),
            host.cmd("status")
        )
    } else {
        format!(
            "Reboot now with `systemctl reboot`, then run `{resume}` (or `{}`).",
            host.cmd("restore --resume")
        )
    }
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

/// A new recovery from a backup a recovery already completed from: refused
/// as `--resume` with nothing to resume is (exit 1, nothing changed), with
/// the facts, and the flag that does it again on purpose.
fn already_recovered(host: &Host, v: &lifecycle::Verdict) -> anyhow::Error {
    anyhow::anyhow!(
        "refusing to start a recovery: {}, and no upgrade failed since; a new recovery would put the backup's etcd snapshot back and lose every write since. Nothing was changed. The facts read:\n  {}\nNext: nothing to do; check the cluster with `oc get clusteroperators`. To recover from this backup again on purpose (every write since the last recovery is lost): `{}`",
        v.reason,
        v.facts.join("\n  "),
        host.cmd("restore --again")
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
            next: format!("start the recovery again with `{}`", host.cmd("restore")),
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
        "Nothing was changed. Do not restore from this backup. In an outage: use another copy of the backup (put it in {} and check it with `{}`), or copy intact files out with `{}`.",
        host.dir.display(),
        host.cmd("verify"),
        host.cmd("extract PATH --to DIR")
    )
}

fn next_step(j: &Journal) -> Option<&'static Step> {
    STEPS.iter().find(|s| !j.is_done(s.id.as_str()))
}

/// A reboot in the middle of the files phase brought the services back:
/// its service steps are done again (each is idempotent). True when steps
/// were forgotten.
fn forget_files_after_reboot(j: &mut Journal, boot: &str) -> bool {
    let files_done = j.is_done(steps::last_of(Phase::Files).as_str());
    let rebooted = j.completed.iter().any(|d| {
        phase_of(&d.id) == Some(Phase::Files)
            && d.id != StepId::Preflight.as_str()
            && d.boot_id != boot
    });
    if files_done || !rebooted {
        return false;
    }
    j.completed
        .retain(|d| phase_of(&d.id) != Some(Phase::Files) || d.id == StepId::Preflight.as_str());
    true
}

/// The cluster phase runs only after the reboot that ends the files phase.
/// (That the reboot came back to the recovery's deployment is `same_os`'s
/// check, against the deployment the journal recorded, not the pinned one:
/// a recovery started with `--restore-onto-other-os` resumes without that
/// flag, from the admin or the auto-resume unit.)
fn check_rebooted(host: &Host, j: &Journal, opts: &Options, boot: &str) -> Result<()> {
    if j.files_boot_id.as_deref() == Some(boot) && !opts.force {
        bail!(
            "the files phase finished in this boot ({boot}); the node must reboot before the cluster phase. Nothing was changed. Reboot first (`systemctl reboot`), then run `{}`",
            state::resume_command(host)
        );
    }
    Ok(())
}

impl Ctx<'_> {
    fn run_steps(&mut self) -> Result<Outcome> {
        let t0 = Instant::now();
        if self.opts.from_unit {
            // Whatever happens next, the unit never runs again.
            self.remove_resume_unit()?;
        }
        let boot = self.host.boot_id()?;
        same_os::refuse_moved(self.host, &self.tools, &self.m, &self.j)?;
        if forget_files_after_reboot(&mut self.j, &boot) {
            log::warn!("the node rebooted during the files phase: running that phase again");
            self.j.save(self.host)?;
        }
        let mut phase_at_start: Option<Phase> = None;
        while let Some(&Step {
            id: sid,
            phase,
            after_reboot,
            ends_phase,
            run,
            ..
        }) = next_step(&self.j)
        {
            let id = sid.as_str();
            if after_reboot && !self.j.is_done(id) {
                check_rebooted(self.host, &self.j, self.opts, &boot)?;
            }
            if self.opts.step {
                match phase_at_start {
                    None => phase_at_start = Some(phase),
                    Some(p) if p != phase => {
                        return Ok(Outcome::PhaseDone {
                            phase: p,
                            next: format!(
                                "phase {} is done; continue with `{}`",
                                p.name(),
                                self.host.cmd("restore --resume")
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
            if let Err(e) = run(self) {
                let msg = format!("{e:#}");
                self.j.failed = Some(Failure {
                    step: id.into(),
                    error: msg,
                    at: fsutil::unix_now(),
                });
                let _ = self.j.save(self.host);
                crate::util::logger::note(
                    true,
                    &format!(
                        "step {id} failed after {:.1}s: {e:#}",
                        t.elapsed().as_secs_f64()
                    ),
                );
                let cause = if crate::util::error::no_space(&e) {
                    "a file system is full (the path above is on it; `df -h` shows which): free room there"
                } else {
                    "fix the cause above"
                };
                let text = format!(
                    "recovery step {id} failed: {e:#}\nThe node now: {}.\nNext: {cause}, then run `{}` (or start over with `{}`); `{}` shows where the recovery stands",
                    self.describe(),
                    state::resume_command(self.host),
                    self.host.cmd("restore --restart"),
                    self.host.cmd("status")
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
            self.j.save(self.host)?;
            crate::util::logger::note(
                self.opts.quiet,
                &format!("step {id} done ({:.1}s)", t.elapsed().as_secs_f64()),
            );
            if phase == Phase::Files && ends_phase {
                if self.j.auto_resume {
                    self.install_resume_unit()?;
                }
                return Ok(Outcome::RebootNow {
                    steps_done: self.j.completed.clone(),
                    next: reboot_next(self.host, self.j.auto_resume),
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
            generation: self.j.generation.clone(),
            // The API is back at the end of the redeploy phase; if it
            // does not answer, the record says so by its absence.
            cluster_newest: crate::node::oc::cluster_version(
                self.host,
                &self.tools,
                crate::node::oc::CLUSTER_VERSION_TIMEOUT,
            )
            .ok()
            .and_then(|c| c.history.into_iter().next()),
        }
        .save(&self.dir)?;
        // Before the journal goes: a crash in between resumes and gets here.
        self.forget_step_records()?;
        Journal::remove(&self.dir)?;
        // No longer under way (the record of backup dirs, `elsewhere`).
        elsewhere::remember(self.host, false);
        crate::util::logger::note(true, "recovery complete");
        Ok(Outcome::Done {
            steps,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    fn install_resume_unit(&self) -> Result<()> {
        let p = self.host.path(format!("/etc/systemd/system/{RESUME_UNIT}"));
        let text = resume_unit_text(&self.host.dir);
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

    /// What the node looks like, for messages.
    fn describe(&self) -> String {
        describe(&self.j)
    }

    /// Check the backup parts the rest of `phase` reads (one read each);
    /// damage is exit 4 with nothing changed in that phase.
    fn check_phase(&mut self, phase: Phase) -> Result<()> {
        check_tops(
            self.host,
            &self.m,
            &self.j,
            &[phase],
            &state::resume_command(self.host),
        )?;
        check_parts(
            self.host,
            &self.gen,
            &self.m,
            &self.j,
            &[phase],
            self.opts.quiet,
            &self.opts.command(self.host),
        )?;
        self.checked.push(phase);
        Ok(())
    }
}

/// Every phase of a recovery, in order.
pub const ALL_PHASES: [Phase; 3] = [Phase::Files, Phase::Cluster, Phase::Redeploy];

/// Check the backup parts that the rest of `phases` reads, each read once,
/// side by side on the CPUs (`checks::check`): the first phase's parts in
/// full (it is the one about to run), the later phases' by their size and
/// sha256 only (`checks::by_sha256`: the preflight, issue 27.1; each of
/// them checks its parts in full before its own first change). Damage is
/// exit 4, naming each part, with nothing changed by them: the check comes
/// before their first step. The same for the real run and `--dry-run`.
fn check_parts(
    host: &Host,
    gen: &std::path::Path,
    m: &Manifest,
    j: &Journal,
    phases: &[Phase],
    quiet: bool,
    again: &str,
) -> Result<()> {
    let steps = |ps: &[Phase]| -> Vec<&str> {
        ps.iter()
            .flat_map(|p| checks::remaining(*p, |id| j.is_done(id)))
            .collect()
    };
    let (first, later) = phases
        .split_first()
        .map_or((&[][..], &[][..]), |(f, l)| (std::slice::from_ref(f), l));
    let full = checks::parts_for(m, &steps(first));
    let shallow = checks::by_sha256(checks::parts_for(m, &steps(later)));
    let whose = match phases {
        [p] => format!("phase {}", p.name()),
        _ => "the recovery".to_string(),
    };
    let names = |ps: &[checks::Part]| ps.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ");
    if !full.is_empty() || !shallow.is_empty() {
        let mut what = format!(
            "{whose}: checking the backup parts it reads: {}",
            names(&full)
        );
        if !shallow.is_empty() {
            what += &format!(
                " (in full); {} (size and sha256 now; their phase checks them in full before its first change)",
                names(&shallow)
            );
        }
        crate::util::logger::note(quiet, &what);
    }
    let parts: Vec<checks::Part> = full.into_iter().chain(shallow).collect();
    let mut problems = m.missing_parts();
    problems.extend(checks::check(gen, &parts));
    if problems.is_empty() {
        return Ok(());
    }
    let started = j
        .completed
        .iter()
        .any(|d| d.id != StepId::Preflight.as_str());
    // Before the first step: the run's own command (`restore --restart`
    // after a restart: a plain `restore` is refused while a journal is there).
    let next = if started {
        host.cmd("restore --resume")
    } else {
        again.to_string()
    };
    let programs = checks::program_way_out(host, gen, m)
        .map(|w| format!("{w}, then run `{next}`.\n"))
        .unwrap_or_default();
    Err(Fail::Backup(format!(
        "the backup parts that {whose} needs are damaged. Nothing was changed by {whose} (the node now: {state}):\n  {list}\n{programs}In an outage: put another copy of the backup in {dir} (the same backup, e.g. from the hub or a USB copy), check it with `{verify}`, then run `{next}`; or take the intact files out with `{extract}`. `{verify}` lists every damaged part.",
        state = describe(j),
        list = problems.join("\n  "),
        dir = host.backup_dir().display(),
        verify = host.cmd("verify"),
        extract = host.cmd("extract PATH... --to DIR"),
    ))
    .into())
}

/// The tops of the trees that the rest of `phases` restores must be what
/// the backup found (`checks::tops`): a directory where it recorded one,
/// the same link where it followed one. Otherwise exit 1 before the first
/// change of those phases, naming each top, where it leads, and the
/// commands that put it back; `then` is the command to run after.
fn check_tops(host: &Host, m: &Manifest, j: &Journal, phases: &[Phase], then: &str) -> Result<()> {
    let steps: Vec<&str> = phases
        .iter()
        .flat_map(|p| checks::remaining(*p, |id| j.is_done(id)))
        .collect();
    let problems = checks::tops(host, m, &steps);
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "a tree the recovery restores is not what the backup found at its top; nothing was changed (the node now: {}):\n  {}\nNext: put it back as said, then run `{then}`.",
        describe(j),
        problems.join("\n  ")
    )
}

/// What the node looks like, from the journal, for messages.
fn describe(j: &Journal) -> String {
    if j.completed.is_empty() {
        return "no recovery step done, none recorded".into();
    }
    let done: Vec<&str> = j.completed.iter().map(|d| d.id.as_str()).collect();
    let phase = next_step(j).map_or("done", |s| s.phase.name());
    format!(
        "phase {phase}, {} of {} steps done (last: {})",
        done.len(),
        STEPS.len(),
        done.last().copied().unwrap_or("none")
    )
}

/// Names to ids of the control-plane containers in `crictl ps -o json`.
pub fn parse_containers(json: &str) -> Result<BTreeMap<String, String>> {
    Ok(control_plane(&crate::node::crictl::parse_ps(json)?))
}

/// Names to ids of the running control-plane containers.
pub fn control_plane(containers: &[crate::node::crictl::Container]) -> BTreeMap<String, String> {
    containers
        .iter()
        .filter(|c| CONTAINERS.contains(&c.name()) && c.running())
        .filter_map(|c| Some((c.name().to_string(), c.id.clone()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dry run names the command with the flags it was planned with
    /// (`--dry-run` and the waits left out); a plain `--resume` is the
    /// wrapper's, as the docs write it.
    #[test]
    fn a_dry_runs_command_carries_its_flags() {
        let o = Options {
            resume: false,
            restart: false,
            again: false,
            step: false,
            force: false,
            other_os: false,
            dry_run: true,
            etcd_restore: EtcdRestore::Auto,
            wait: Duration::from_secs(1),
            poll: Duration::from_secs(1),
            quiet: true,
            auto_resume: false,
            from_unit: false,
            redo: None,
        };
        let host = Host {
            root: "/nonexistent-root".into(),
            dir: "/var/recovery2".into(),
        };
        assert_eq!(
            o.command(&host),
            "upgrade-recovery --dir /var/recovery2 restore"
        );
        let all = Options {
            resume: true,
            restart: true,
            again: true,
            step: true,
            force: true,
            other_os: true,
            auto_resume: true,
            etcd_restore: EtcdRestore::Native,
            redo: Some("redeploy-etcd".into()),
            ..o.clone()
        };
        assert_eq!(
            all.flags(),
            "--resume --restart --again --step --force --restore-onto-other-os --auto-resume --etcd-restore=native --redo redeploy-etcd"
        );
        let resume = Options {
            resume: true,
            ..o.clone()
        };
        // No wrapper under this root: the tool itself.
        assert_eq!(
            resume.command(&host),
            "upgrade-recovery --dir /var/recovery2 restore --resume"
        );
        let restart = Options { restart: true, ..o };
        assert_eq!(
            restart.command(&host),
            "upgrade-recovery --dir /var/recovery2 restore --restart"
        );
    }

    /// The auto-resume unit runs the binary of the backup's own dir with
    /// that dir, whatever it is.
    #[test]
    fn the_resume_unit_carries_the_backup_dir() {
        let t = resume_unit_text(std::path::Path::new("/var/recovery2"));
        assert!(
            t.contains("ExecStart=/var/recovery2/upgrade-recovery --dir /var/recovery2 restore --resume --from-unit"),
            "{t}"
        );
        assert!(t.contains("ConditionPathExists=/var/recovery2/journal.json"));
        assert!(!t.contains("/var/recovery/"));
    }
}
