//! The command line: clap types, dispatch, output format, exit codes.

use crate::commands::{extract, ibu, report, restore, rollback, stateroot, status, tree, verify};
use crate::node::host::Host;
use crate::util::error::exit_code;
use crate::{backup, recovery, util::logger};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
#[cfg(feature = "docs")]
use std::path::Path;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "upgrade-recovery",
    version,
    about = "Pre-upgrade backup and recovery of a single-node OpenShift node",
    max_term_width = 80,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The node's root directory; every host path resolves under it
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// The backup directory, as a path on the node (the wrapper
    /// `<dir>/upgrade-recovery.sh` sets UPGRADE_RECOVERY_DIR to its own)
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "UPGRADE_RECOVERY_DIR",
        default_value = "/var/recovery"
    )]
    pub dir: PathBuf,
    /// Output format
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// More detail on stderr (-vv: every command run)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Job entrypoint: prepare the /host jail, chroot, back up
    #[command(alias = "launchBackup")]
    LaunchBackup(LaunchArgs),
    /// Take the backup on this host (pin OS, etcd, trees, extras)
    Backup(BackupArgs),
    /// Recovery: restore the backup in phases across a reboot
    Restore(RestoreArgs),
    /// Backup summary, recovery progress, OS deployments, next action
    Status,
    /// Check a backup against its manifest; exit 0 only if intact
    Verify,
    /// Platform OS rollback by the decision table
    Rollback(RollbackArgs),
    /// OS stateroots: list, cleanup
    #[command(subcommand)]
    Stateroot(StaterootCmd),
    /// Copy files out of a backup (no system change)
    Extract(ExtractArgs),
    /// OADP checks for image-based upgrades
    #[command(subcommand)]
    Oadp(OadpCmd),
    /// Image-based upgrade (Lifecycle Agent) troubleshooting on the node
    #[command(subcommand)]
    Ibu(IbuCmd),
    /// Support bundle of the node-side facts (no key material)
    Report {
        /// The .tar.gz to write
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// One tree archive alone, for benchmarks and debugging
    #[command(hide = true, subcommand)]
    Tree(TreeOp),
    /// Write man pages and shell completions into DIR/man, DIR/completions
    #[cfg(feature = "docs")]
    #[command(hide = true)]
    GenerateDocs {
        dir: PathBuf,
        /// Also rewrite the table of states between its markers in this
        /// file (the README)
        #[arg(long, value_name = "FILE")]
        readme: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TreeOp {
    /// Archive DIR into OUT (tar+zstd with per-file sha256)
    Archive {
        #[arg(value_name = "DIR")]
        tree: PathBuf,
        out: PathBuf,
        #[arg(long, default_value_t = 3)]
        level: i32,
        #[arg(long)]
        threads: Option<u32>,
    },
    /// Make DIR equal ARCHIVE (verified first); extra files deleted
    Sync {
        archive: PathBuf,
        #[arg(value_name = "DIR")]
        tree: PathBuf,
        /// A file of paths relative to DIR to leave alone
        #[arg(long)]
        exclude_from: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Where the Job mounts the host's file systems
    #[arg(long, value_name = "DIR", default_value = "/host")]
    pub host_dir: PathBuf,
    #[command(flatten)]
    pub backup: BackupArgs,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Free space to leave on the backup file system beyond the backup
    #[arg(long, value_name = "SIZE", default_value = "10G", value_parser = backup::parse_size)]
    pub min_free: u64,
    /// Compression threads (default: the CPUs this process may use)
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// zstd level
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// How the etcd snapshot is taken
    #[arg(long, value_enum, value_name = "HOW", default_value_t = backup::EtcdMode::Native)]
    pub etcd_backup: backup::EtcdMode,
    /// Time limit of the etcd snapshot (e.g. 180s, 3m; a bare number is seconds)
    #[arg(long, value_name = "DURATION", default_value = "180s", value_parser = parse_secs)]
    pub etcd_timeout: std::time::Duration,
    /// Keep normal CPU and I/O priority (default: lowered)
    #[arg(long)]
    pub no_nice: bool,
    /// Also back up the images of the running containers (node's skopeo)
    #[arg(long)]
    pub with_images: bool,
    /// An image to back up too (repeatable; implies --with-images)
    #[arg(long = "image", value_name = "REF")]
    pub images: Vec<String>,
    /// Replace the existing backup even when it pins another OS than the
    /// booted one (a failed upgrade) or is damaged: a new baseline
    #[arg(long)]
    pub replace_backup: bool,
    /// Run the checks and print the plan (deployments, cleanup, estimates,
    /// space); change nothing
    #[arg(long)]
    pub dry_run: bool,
}

impl BackupArgs {
    pub fn options(&self, quiet: bool) -> backup::Options {
        backup::Options {
            min_free: self.min_free,
            threads: self.threads,
            level: self.level,
            etcd: self.etcd_backup,
            etcd_timeout: self.etcd_timeout,
            nice: !self.no_nice,
            quiet,
            with_images: self.with_images || !self.images.is_empty(),
            images: self.images.clone(),
            replace_backup: self.replace_backup,
            dry_run: self.dry_run,
        }
    }
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Continue the recovery under way after its last completed step
    #[arg(long)]
    pub resume: bool,
    /// Forget the recovery under way and start from the first step
    #[arg(long, conflicts_with = "resume")]
    pub restart: bool,
    /// Stop after each phase
    #[arg(long)]
    pub step: bool,
    /// Skip the reboot check before the cluster phase (the OS deployment
    /// check stays)
    #[arg(long)]
    pub force: bool,
    /// Last resort: restore the files although another OS deployment than
    /// the one pinned at backup is active (roll back instead if you can)
    #[arg(long)]
    pub restore_onto_other_os: bool,
    /// Print the plan with what is done; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// How etcd is restored
    #[arg(long, value_enum, value_name = "HOW", default_value_t = recovery::EtcdRestore::Auto)]
    pub etcd_restore: recovery::EtcdRestore,
    /// Time limit of each wait (containers, redeployments), e.g. 20m, 1h,
    /// 90s; a bare number is seconds
    #[arg(long, value_name = "DURATION", default_value = "20m", value_parser = parse_secs)]
    pub wait_timeout: std::time::Duration,
    /// Time between checks while waiting (a bare number is milliseconds)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_millis, hide = true)]
    pub poll_interval: std::time::Duration,
    /// After the files phase, install a oneshot unit that runs
    /// `restore --resume` on the next boot (it removes itself)
    #[arg(long)]
    pub auto_resume: bool,
    /// Started by that unit (it is removed first)
    #[arg(long, hide = true)]
    pub from_unit: bool,
    /// With --resume: do the redeploy step STEP (redeploy-etcd, ...) again
    /// from its start: a new forceRedeploymentReason, a new revision to
    /// wait for (when the one asked for never appeared)
    #[arg(long, value_name = "STEP", requires = "resume")]
    pub redo: Option<String>,
    /// Recover again from a backup that a recovery already completed from,
    /// with no failed upgrade since (puts its etcd snapshot back: every
    /// write since that recovery is lost)
    #[arg(long, conflicts_with = "resume")]
    pub again: bool,
}

impl RestoreArgs {
    pub fn options(&self, quiet: bool) -> recovery::Options {
        recovery::Options {
            quiet,
            auto_resume: self.auto_resume,
            from_unit: self.from_unit,
            redo: self.redo.clone(),
            resume: self.resume || self.from_unit,
            restart: self.restart,
            again: self.again,
            step: self.step,
            force: self.force,
            other_os: self.restore_onto_other_os,
            dry_run: self.dry_run,
            etcd_restore: self.etcd_restore,
            wait: self.wait_timeout,
            poll: self.poll_interval,
        }
    }
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Print the decision and the commands; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Reboot at the end (systemctl reboot), once the next default is checked
    #[arg(long)]
    pub reboot: bool,
}

#[derive(Debug, Subcommand)]
pub enum StaterootCmd {
    /// Stateroots with their deployments, booted and pinned marks, disk use
    List,
    /// Undeploy a stateroot's deployments and remove its directory
    Cleanup {
        /// The stateroot (a directory name under /sysroot/ostree/deploy)
        name: String,
        /// Print the exact steps; change nothing
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum IbuCmd {
    /// The ImageBasedUpgrade CR, stateroots, LCA workspace, OADP locations
    Status,
    /// The manual cleanup after AbortFailed/FinalizeFailed, then the
    /// annotation that makes LCA retry
    Cleanup {
        /// List the steps; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Run even when the CR is not in AbortFailed/FinalizeFailed
        #[arg(long)]
        force: bool,
        /// When a BackupStorageLocation is not Available: delete the Backup
        /// CRs without their data, which stays in the bucket
        #[arg(long)]
        without_bucket: bool,
        /// Seconds to wait for Velero to process each DeleteBackupRequest
        #[arg(long, value_name = "SECONDS", default_value_t = crate::commands::ibu::DBR_WAIT_SECONDS)]
        wait: u64,
        /// Seconds to wait for the pod of LCA's stateroot setup Job to go
        /// before removing stateroots (LCA's own bound)
        #[arg(long, value_name = "SECONDS", default_value_t = crate::commands::ibu::cleanup::STATEROOT_POD_WAIT_SECONDS)]
        pod_wait: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum OadpCmd {
    /// Check Backup/Restore CRs (YAML or JSON, multi-document, or the
    /// ConfigMaps that hold them) for the LVM Storage fields and the pairing
    /// of Restores with Backups; exit 1 on findings, 2 on unreadable input
    Lint {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Node paths to copy out, e.g. /etc/kubernetes/kubelet.conf
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Directory to copy them into (created; node paths kept below it)
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Also recreate device nodes, setuid/setgid bits and file capabilities
    #[arg(long)]
    pub exact: bool,
}

/// A duration with a unit: `500ms`, `90s`, `20m`, `1h`, `1h30m`; a bare
/// number is in `bare` units (seconds or milliseconds, as the option was).
pub fn parse_duration(text: &str, bare_ms: bool) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let bad =
        || format!("`{text}` is not a duration: give a number with a unit, e.g. 90s, 20m, 1h");
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = t.parse().map_err(|_| bad())?;
        return Ok(if bare_ms {
            std::time::Duration::from_millis(n)
        } else {
            std::time::Duration::from_secs(n)
        });
    }
    let mut total = std::time::Duration::ZERO;
    let mut rest = t;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let ms = match unit {
            "ms" => 1,
            "s" | "sec" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        total += std::time::Duration::from_millis(n.checked_mul(ms).ok_or_else(bad)?);
    }
    Ok(total)
}

fn parse_secs(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text, false)
}

fn parse_millis(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text, true)
}

/// Print a value as JSON, or the text rendering.
///
/// A reader that went away (`status | head -1`) is not an error: what the
/// command did stands, its exit code is kept, the rest of the output is
/// dropped. Handled here rather than by resetting SIGPIPE to its default in
/// main: with SIG_DFL any write to a pipe whose reader ended (a `| tee`
/// killed during a recovery) would kill the tool between two changes of the
/// node, without its journal entry or its message.
pub fn emit<T: Serialize>(out: Output, value: &T, text: impl FnOnce() -> String) -> Result<()> {
    use std::io::Write;
    let text = match out {
        Output::Json => serde_json::to_string_pretty(value)? + "\n",
        Output::Text => text(),
    };
    let mut o = std::io::stdout().lock();
    match o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write the output to stdout")
        }
        _ => Ok(()),
    }
}

/// Today's flags (`upgrade-recovery.sh --take-backup --dir D`, `--resume`,
/// ...) become the matching subcommand; other command lines pass unchanged.
pub fn translate_legacy(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const SUBCOMMANDS: [&str; 14] = [
        "ibu",
        "report",
        "oadp",
        "tree",
        "generate-docs",
        "rollback",
        "stateroot",
        "backup",
        "restore",
        "launch-backup",
        "launchBackup",
        "status",
        "verify",
        "extract",
    ];
    let words: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if words
        .iter()
        .skip(1)
        .any(|w| SUBCOMMANDS.contains(&w.as_str()))
    {
        return args;
    }
    let mut out = vec![args[0].clone()];
    if words.iter().any(|w| w == "--take-backup") {
        out.push("backup".into());
        out.extend(args.into_iter().skip(1).filter(|a| a != "--take-backup"));
        return out;
    }
    let as_script = std::path::Path::new(&words[0])
        .file_name()
        .is_some_and(|n| n == crate::store::layout::WRAPPER)
        || std::env::var_os("UPGRADE_RECOVERY_AS_SCRIPT").is_some_and(|v| v == "1");
    let legacy = ["--resume", "--restart", "--step", "--force"];
    if as_script || words.iter().skip(1).any(|w| legacy.contains(&w.as_str())) {
        out.push("restore".into());
        out.extend(args.into_iter().skip(1));
        return out;
    }
    args
}

/// A typo is answered with visible commands only: hidden ones (`tree`,
/// `generate-docs`) are for the project, not for an admin in an outage.
fn visible_suggestions_only(e: &mut clap::Error) {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use clap::CommandFactory;
    if e.kind() != ErrorKind::InvalidSubcommand {
        return;
    }
    let hidden: Vec<String> = Cli::command()
        .get_subcommands()
        .filter(|c| c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect();
    if let Some(ContextValue::Strings(s)) = e.get(ContextKind::SuggestedSubcommand) {
        let visible: Vec<String> = s.iter().filter(|n| !hidden.contains(n)).cloned().collect();
        if !visible.is_empty() {
            e.insert(
                ContextKind::SuggestedSubcommand,
                ContextValue::Strings(visible),
            );
            return;
        }
        // No visible match: the same error without a tip.
        let mut n = clap::Error::new(ErrorKind::InvalidSubcommand).with_cmd(&Cli::command());
        for (k, v) in e.context() {
            if k != ContextKind::SuggestedSubcommand {
                n.insert(k, v.clone());
            }
        }
        *e = n;
    }
}

pub fn main() -> i32 {
    let args = translate_legacy(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(mut e) => {
            visible_suggestions_only(&mut e);
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    logger::init(cli.global.verbose, cli.global.quiet);
    install_interrupt(&cli.command, &cli.global.dir);
    let (code, error) = match run(&cli) {
        Ok(code) => (code, None),
        Err(e) => {
            let e = with_next(&cli, e);
            // To stderr and the journal.
            log::error!("{e:#}");
            (exit_code(&e), Some(format!("{e:#}")))
        }
    };
    remember(&cli, code, error.as_deref());
    code
}

/// A damaged backup (exit 4) whose message names no command (a manifest
/// that does not parse, read by any command: the independent tester found
/// every one ending on its one line) gets the ways on: another copy and
/// `verify` in an outage, a new backup on a healthy node.
fn with_next(cli: &Cli, e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    use crate::util::error::Fail;
    // (A quoted field name of a parse error is not a command.)
    let names_command = text.contains("`upgrade-recovery") || text.contains("upgrade-recovery.sh");
    if exit_code(&e) != Fail::Backup(String::new()).code() || names_command {
        return e;
    }
    let Ok(host) = Host::new(&cli.global.root, &cli.global.dir) else {
        return e;
    };
    Fail::Backup(format!(
        "{text}\nNothing was changed. Do not restore from this backup. In an outage: use another copy of the backup (put it in {} and check it with `{}`). On a healthy node, replace it with a new backup: `{}`.",
        host.dir.display(),
        host.cmd("verify"),
        host.cmd("backup --replace-backup")
    ))
    .into()
}

/// The commands whose last failure `status` names (store/failures.rs): the
/// runs that change the node, not their dry runs. (name, the command line
/// from the subcommand on.) A passing `verify` clears the records itself.
fn remembered(c: &Command) -> Option<(&'static str, String)> {
    let flags = |name: &'static str, set: &[(bool, &str)]| {
        let mut line = name.to_string();
        for (on, f) in set {
            if *on {
                line.push(' ');
                line.push_str(f);
            }
        }
        Some((name, line))
    };
    match c {
        // The flags as the dry run's command names them (`Options::flags`).
        Command::Restore(a) if !a.dry_run => {
            let f = a.options(true).flags();
            Some(("restore", format!("restore {f}").trim_end().to_string()))
        }
        Command::Rollback(a) if !a.dry_run => flags("rollback", &[(a.reboot, "--reboot")]),
        // A completed backup clears the records itself (the Job's too:
        // commands::backup::run); its refusals, and `extract`, write
        // nothing into the backup dir; `verify` notes its own outcome.
        _ => None,
    }
}

fn remember(cli: &Cli, code: i32, error: Option<&str>) {
    let Some((name, line)) = remembered(&cli.command) else {
        return;
    };
    if let Ok(host) = Host::new(&cli.global.root, &cli.global.dir) {
        crate::store::failures::note(&host.backup_dir(), name, &line, code, error);
    }
}

/// Commands that change the node end on SIGTERM/SIGINT/SIGHUP with what
/// they were doing, what is done and the next command.
fn install_interrupt(c: &Command, dir: &std::path::Path) {
    use crate::node::host::cmd_in;
    use crate::util::interrupt::{install, Where};
    match c {
        Command::Restore(a) if !a.dry_run => install(Where {
            doing: "the checks before the recovery's next step".into(),
            done: "nothing in this run".into(),
            next: format!(
                "`{}` says where the recovery stands and the command to run",
                cmd_in(dir, "status")
            ),
        }),
        Command::Backup(a) if !a.dry_run => install(Where {
            doing: "the backup".into(),
            done: "the new backup is built in a staging dir and only swapped in when complete and verified; the backup dir holds the previous backup, if it was kept, or none, never a partial one".into(),
            next: format!(
                "take the backup again with `{}`; `{}` says what the backup dir holds",
                cmd_in(dir, "backup"),
                cmd_in(dir, "status")
            ),
        }),
        Command::Rollback(a) if !a.dry_run => install(Where {
            doing: "the OS rollback".into(),
            done: "each ostree change is atomic; some deployments may already be undeployed or reordered".into(),
            next: format!(
                "run `{}` again: it re-reads the deployments and does what is left",
                cmd_in(dir, "rollback --reboot")
            ),
        }),
        _ => {}
    }
}

pub fn run(cli: &Cli) -> Result<i32> {
    let g = &cli.global;
    if let Command::Oadp(OadpCmd::Lint { files }) = &cli.command {
        let findings = crate::commands::oadp::lint_files(files)?;
        emit(g.output, &findings, || {
            crate::commands::oadp::render(&findings)
        })?;
        return Ok(i32::from(!findings.is_empty()));
    }
    #[cfg(feature = "docs")]
    if let Command::GenerateDocs { dir, readme } = &cli.command {
        generate_docs(dir)?;
        if let Some(f) = readme {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let new = recovery::states::with_table(&text).with_context(|| {
                format!(
                    "{} has no markers for the table of states ({} ... {})",
                    f.display(),
                    recovery::states::BEGIN,
                    recovery::states::END
                )
            })?;
            std::fs::write(f, new).with_context(|| format!("writing {}", f.display()))?;
        }
        return Ok(0);
    }
    if let Command::LaunchBackup(a) = &cli.command {
        let o = crate::commands::job::launch(&a.host_dir, &g.dir, &a.backup.options(g.quiet))?;
        emit(g.output, &o, || crate::commands::backup::render(&o, &g.dir))?;
        return Ok(0);
    }
    let host = Host::new(&g.root, &g.dir)?;
    match &cli.command {
        Command::LaunchBackup(_) => unreachable!(),
        Command::Backup(a) => {
            // The journal notes a backup that changes the node, not a dry run.
            let note = |msg: &str| (!a.dry_run).then(|| crate::util::logger::note(true, msg));
            note(&format!("backup started in {}", host.dir.display()));
            let o = crate::commands::backup::run(&host, &a.options(g.quiet))?;
            note("backup finished");
            emit(g.output, &o, || {
                crate::commands::backup::render(&o, &host.dir)
            })?;
            Ok(0)
        }
        Command::Restore(a) => {
            let o = restore::run(&host, &a.options(g.quiet))?;
            emit(g.output, &o, || restore::render(&o))?;
            Ok(0)
        }
        Command::Rollback(a) => {
            let p = rollback::run(&host, a.dry_run, a.reboot)?;
            emit(g.output, &p, || rollback::render(&p))?;
            Ok(0)
        }
        Command::Stateroot(StaterootCmd::List) => {
            let l = stateroot::run_list(&host)?;
            emit(g.output, &l, || stateroot::render_list(&l))?;
            Ok(0)
        }
        Command::Stateroot(StaterootCmd::Cleanup { name, dry_run }) => {
            let p = stateroot::run_cleanup(&host, name, *dry_run)?;
            emit(g.output, &p, || stateroot::render_plan(&p, &host.dir))?;
            Ok(0)
        }
        Command::Ibu(c) => {
            let tools = ibu::require(&host)?;
            match c {
                IbuCmd::Status => {
                    let st = ibu::status(&host, &tools)?;
                    emit(g.output, &st, || ibu::render_status(&st))?;
                }
                IbuCmd::Cleanup {
                    dry_run,
                    force,
                    without_bucket,
                    wait,
                    pod_wait,
                } => {
                    let o = ibu::CleanupOptions {
                        pod_wait_seconds: *pod_wait,
                        dry_run: *dry_run,
                        force: *force,
                        without_bucket: *without_bucket,
                        wait_seconds: *wait,
                    };
                    let r = ibu::cleanup(&host, &tools, &o)?;
                    emit(g.output, &r, || ibu::render_cleanup(&r))?;
                    if !r.failures.is_empty() {
                        return Ok(1);
                    }
                }
            }
            Ok(0)
        }
        Command::Report { to } => {
            let items = report::collect(&host, to)?;
            emit(g.output, &items, || report::render(&items, to))?;
            Ok(0)
        }
        Command::Tree(TreeOp::Archive {
            tree: dir,
            out,
            level,
            threads,
        }) => {
            let st = tree::archive(dir, out, *level, *threads)?;
            emit(g.output, &st, || tree::render_archive(&st, out))?;
            Ok(0)
        }
        Command::Tree(TreeOp::Sync {
            archive,
            tree: dir,
            exclude_from,
        }) => {
            let st = tree::sync(archive, dir, exclude_from.as_deref())?;
            emit(g.output, &st, || tree::render_sync(&st, dir))?;
            Ok(0)
        }
        #[cfg(feature = "docs")]
        Command::GenerateDocs { .. } => unreachable!(),
        Command::Oadp(_) => unreachable!(),
        Command::Status => {
            let st = status::gather(&host)?;
            emit(g.output, &st, || status::render(&st))?;
            Ok(0)
        }
        Command::Verify => {
            let report = verify::run(&host)?;
            emit(g.output, &report, || verify::render(&report, &host))?;
            let code = verify::exit_code(&report);
            // A verify that passes clears the failures on record; one that
            // finds damage records it, so that `status` does not call the
            // backup ready right after "DAMAGED".
            let found =
                (code != 0).then(|| format!("damaged:\n  {}", report.problems.join("\n  ")));
            crate::store::failures::note(
                &host.backup_dir(),
                "verify",
                "verify",
                code,
                found.as_deref(),
            );
            Ok(code)
        }
        Command::Extract(a) => {
            let stats = extract::run(&host, &a.paths, &a.to, a.exact)?;
            emit(g.output, &stats, || {
                extract::render(&stats, &a.to, &host.dir)
            })?;
            Ok(0)
        }
    }
}

/// Man pages (one per command) and bash/zsh/fish completions, generated from
/// the clap definitions; CI checks the committed ones are current.
/// Only in builds with the `docs` feature (`make docs`, the tests): the node
/// binary does not link clap_mangen and clap_complete.
#[cfg(feature = "docs")]
pub fn generate_docs(dir: &Path) -> Result<()> {
    use clap::CommandFactory;
    let man = dir.join("man");
    let comp = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&comp)?;
    let cmd = Cli::command();
    fn pages(cmd: &clap::Command, prefix: &str, man: &Path) -> Result<()> {
        let name = if prefix.is_empty() {
            cmd.get_name().to_string()
        } else {
            format!("{prefix}-{}", cmd.get_name())
        };
        let page = cmd.clone().name(name.clone());
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        std::fs::write(man.join(format!("{name}.1")), buf)?;
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            pages(sub, &name, man)?;
        }
        Ok(())
    }
    pages(&cmd, "", &man)?;
    for (shell, file) in [
        (clap_complete::Shell::Bash, "upgrade-recovery.bash"),
        (clap_complete::Shell::Zsh, "_upgrade-recovery"),
        (clap_complete::Shell::Fish, "upgrade-recovery.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "upgrade-recovery", &mut buf);
        std::fs::write(comp.join(file), buf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("20m", false), Ok(Duration::from_secs(1200)));
        assert_eq!(
            parse_duration("1h30m", false),
            Ok(Duration::from_secs(5400))
        );
        assert_eq!(parse_duration("90s", false), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1200", false), Ok(Duration::from_secs(1200)));
        assert_eq!(parse_duration("100", true), Ok(Duration::from_millis(100)));
        assert_eq!(
            parse_duration("250ms", false),
            Ok(Duration::from_millis(250))
        );
        for bad in ["", "m", "20x", "-5s", "1.5h", "99999999999999999999h"] {
            assert!(parse_duration(bad, false).is_err(), "{bad}");
        }
        let cli =
            Cli::try_parse_from(["upgrade-recovery", "restore", "--wait-timeout", "20m"]).unwrap();
        let Command::Restore(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.wait_timeout, Duration::from_secs(1200));
    }

    #[test]
    fn the_wrapper_runs_restore() {
        std::env::set_var("UPGRADE_RECOVERY_AS_SCRIPT", "1");
        let t = |a: &[&str]| -> Vec<String> {
            translate_legacy(a.iter().map(Into::into).collect())
                .into_iter()
                .map(|s| s.into_string().unwrap())
                .collect()
        };
        assert_eq!(
            t(&["/var/recovery/upgrade-recovery"]),
            ["/var/recovery/upgrade-recovery", "restore"]
        );
        assert_eq!(t(&["x", "--resume"]), ["x", "restore", "--resume"]);
        assert_eq!(t(&["x", "status"]), ["x", "status"]);
        std::env::remove_var("UPGRADE_RECOVERY_AS_SCRIPT");
    }
}
