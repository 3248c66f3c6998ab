//! OS deployments: parsers of `ostree admin status` and `rpm-ostree status
//! --json` (pure, fixture-tested), and reading the node's deployments.

use crate::node::booted::{self, Karg};
use crate::node::cmd::{self, Tools};
use crate::node::host::Host;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which deployment: its directory `ostree/deploy/<stateroot>/deploy/<checksum>.<serial>`.
///
/// The stateroot is part of it: ostree numbers the serial per stateroot
/// (`allocate_deployserial` in ostreedev/ostree
/// `src/libostree/ostree-sysroot-deploy.c` lists the deployment dirs of the
/// one osname), so the same commit deployed in two stateroots (an
/// image-based upgrade does that) is `<checksum>.0` in both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeploymentId {
    pub stateroot: String,
    pub checksum: String,
    pub serial: u32,
}

impl std::fmt::Display for DeploymentId {
    /// `<stateroot> <checksum>.<serial>`, as ostree prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}.{}", self.stateroot, self.checksum, self.serial)
    }
}

impl From<booted::DeploymentRef> for DeploymentId {
    fn from(r: booted::DeploymentRef) -> Self {
        DeploymentId {
            stateroot: r.stateroot,
            checksum: r.checksum,
            serial: r.serial,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Position in the list; 0 is the default (the next boot).
    pub index: usize,
    pub stateroot: String,
    pub checksum: String,
    pub serial: u32,
    pub version: Option<String>,
    pub booted: bool,
    pub pinned: bool,
    pub staged: bool,
    pub pending: bool,
    pub rollback: bool,
    pub refspec: Option<String>,
}

impl Deployment {
    pub fn id(&self) -> DeploymentId {
        DeploymentId {
            stateroot: self.stateroot.clone(),
            checksum: self.checksum.clone(),
            serial: self.serial,
        }
    }
    /// Whether this is the deployment `id` names (stateroot included).
    pub fn is(&self, id: &DeploymentId) -> bool {
        self.stateroot == id.stateroot && self.checksum == id.checksum && self.serial == id.serial
    }
    /// `<stateroot> <checksum>.<serial>`, as ostree prints it.
    pub fn name(&self) -> String {
        self.id().to_string()
    }
    pub fn short(&self) -> String {
        format!(
            "{} {}.{}{}",
            self.stateroot,
            self.checksum.get(..12).unwrap_or(&self.checksum),
            self.serial,
            self.version
                .as_deref()
                .map(|v| format!(" ({v})"))
                .unwrap_or_default()
        )
    }
}

/// How the active (booted) deployment was determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootedFrom {
    /// The `ostree=` argument of `/proc/cmdline`, resolved under the sysroot
    /// (how ostree itself knows; works in the Job).
    Cmdline,
    /// `rpm-ostree status --json` said which one is booted.
    RpmOstree,
    /// The `*` mark of `ostree admin status`.
    StatusMark,
    /// Neither said (a sysroot not booted from): the default is taken as active.
    DefaultAssumed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OsState {
    pub deployments: Vec<Deployment>,
    pub booted_from: BootedFrom,
    /// The sources asked before the one that answered, each with why it
    /// could not say (in the order asked).
    #[serde(default)]
    pub booted_skipped: Vec<String>,
    /// A staged deployment that `ostree admin status` does not list (it
    /// lists one only on a booted host): the record in [`STAGED_RUNSTATE`]
    /// under the root, described (see [`OsState::staged`]).
    #[serde(default)]
    pub staged_record: Option<String>,
}

impl OsState {
    /// The booted deployment, or the default one when nothing is booted.
    pub fn active(&self) -> Option<&Deployment> {
        self.deployments
            .iter()
            .find(|d| d.booted)
            .or_else(|| self.deployments.first())
    }
    pub fn default_deployment(&self) -> Option<&Deployment> {
        self.deployments.first()
    }
    /// The default, when a deployment is booted and the default is another
    /// one (chosen in the boot menu): the next boot leaves the booted one.
    pub fn next_boot_elsewhere(&self) -> Option<&Deployment> {
        let booted = self.deployments.iter().find(|d| d.booted)?;
        self.default_deployment().filter(|d| !d.is(&booted.id()))
    }
    /// The staged deployment, if any: the one `ostree admin status` marks
    /// `(staged)` (a booted host), else the one recorded in
    /// [`STAGED_RUNSTATE`] (the Job, a `--sysroot`), described.
    pub fn staged(&self) -> Option<String> {
        self.deployments
            .iter()
            .find(|d| d.staged)
            .map(Deployment::short)
            .or_else(|| self.staged_record.clone())
    }
}

/// Parse `ostree admin status`.
///
/// Deployment lines: `<mark> <stateroot> <checksum>.<serial>[ (staged|pending|rollback)]`
/// where mark is `*` for the booted one; indented detail lines follow.
pub fn parse_admin_status(text: &str) -> Result<Vec<Deployment>> {
    let mut out: Vec<Deployment> = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let indented = line.starts_with("    ");
        // `get`, not `[..2]`: a line may start with a multi-byte character.
        let head = line.get(..2).filter(|_| line.len() > 2);
        if !indented && matches!(head, Some("* " | "  ")) {
            let booted = line.starts_with('*');
            let mut words = line[2..].split_whitespace();
            let (Some(stateroot), Some(id)) = (words.next(), words.next()) else {
                bail!(
                    "ostree admin status line {}: cannot parse {line:?}",
                    lineno + 1
                );
            };
            let mark = words.next().unwrap_or("");
            let (checksum, serial) = id.rsplit_once('.').with_context(|| {
                format!(
                    "ostree admin status line {}: no serial in {id:?}",
                    lineno + 1
                )
            })?;
            if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!(
                    "ostree admin status line {}: bad checksum {checksum:?}",
                    lineno + 1
                );
            }
            out.push(Deployment {
                index: out.len(),
                stateroot: stateroot.to_string(),
                checksum: checksum.to_string(),
                serial: serial.parse().with_context(|| {
                    format!("ostree admin status line {}: bad serial", lineno + 1)
                })?,
                version: None,
                booted,
                pinned: false,
                staged: mark == "(staged)",
                pending: mark == "(pending)",
                rollback: mark == "(rollback)",
                refspec: None,
            });
        } else if let Some(d) = out.last_mut() {
            let t = line.trim();
            if let Some(v) = t.strip_prefix("Version:") {
                d.version = Some(v.trim().to_string());
            } else if let Some(v) = t.strip_prefix("Pinned:") {
                d.pinned = v.trim() == "yes";
            } else if let Some(v) = t.strip_prefix("origin refspec:") {
                d.refspec = Some(v.trim().to_string());
            }
        } else if !line.starts_with("No deployments") {
            bail!(
                "ostree admin status line {}: unexpected {line:?}",
                lineno + 1
            );
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct RpmOstreeStatus {
    deployments: Vec<RpmOstreeDeployment>,
}

#[derive(Deserialize)]
struct RpmOstreeDeployment {
    osname: String,
    checksum: String,
    #[serde(default)]
    serial: u32,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    booted: bool,
    #[serde(default)]
    pinned: bool,
    #[serde(default)]
    staged: bool,
    #[serde(default)]
    origin: Option<String>,
}

/// Parse `rpm-ostree status --json`; the array position is the index.
/// The pending/rollback marks are derived as ostree does: the nearest
/// deployment of the booted stateroot before (pending) or after (rollback) it.
pub fn parse_rpm_ostree_json(text: &str) -> Result<Vec<Deployment>> {
    let st: RpmOstreeStatus =
        serde_json::from_str(text).context("rpm-ostree status --json: malformed JSON")?;
    for d in &st.deployments {
        if d.checksum.len() != 64 || !d.checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "rpm-ostree status --json: bad checksum {:?}",
                crate::archive::validate::short(d.checksum.as_bytes())
            );
        }
        if d.osname.is_empty() || d.osname.contains(['/', '\0']) {
            bail!("rpm-ostree status --json: bad osname");
        }
    }
    let mut out: Vec<Deployment> = st
        .deployments
        .into_iter()
        .enumerate()
        .map(|(index, d)| Deployment {
            index,
            stateroot: d.osname,
            checksum: d.checksum,
            serial: d.serial,
            version: d.version,
            booted: d.booted,
            pinned: d.pinned,
            staged: d.staged,
            pending: false,
            rollback: false,
            refspec: d.origin,
        })
        .collect();
    mark_pending_rollback(&mut out);
    Ok(out)
}

fn mark_pending_rollback(ds: &mut [Deployment]) {
    let Some(b) = ds.iter().position(|d| d.booted) else {
        return;
    };
    let root = ds[b].stateroot.clone();
    if let Some(p) = (0..b).rev().find(|&i| ds[i].stateroot == root) {
        if !ds[p].staged {
            ds[p].pending = true;
        }
    }
    if let Some(r) = (b + 1..ds.len()).find(|&i| ds[i].stateroot == root) {
        ds[r].rollback = true;
    }
}

/// The `ostree admin` arguments that address the node's sysroot: none on a
/// booted host (ostree finds `/`), else `--sysroot=<node root>`: the
/// deployment root, where `/boot` is the boot file system and `/ostree`
/// links to `sysroot/ostree`, as TALM's script runs it in the Job's jail.
/// Not `<root>/sysroot`: on RHCOS `/boot` is a file system of its own
/// (coreos/fedora-coreos-config `overlay.d/05core/usr/lib/systemd/
/// system-generators/coreos-boot-mount-generator`) and `/sysroot/boot` is an
/// empty directory, so `ostree admin --sysroot=/sysroot status` prints "No
/// deployments." and exits 0 (ostreedev/ostree issue 2992; checked with
/// ostree 2022.7). A root without the `/ostree` link (a bare sysroot) keeps
/// `<root>/sysroot`.
pub fn sysroot_args(host: &Host) -> Vec<String> {
    if host.is_slash() && host.path("/run/ostree-booted").exists() {
        Vec::new()
    } else if host.path("/ostree/repo").is_dir() && host.path("/boot").is_dir() {
        vec![format!("--sysroot={}", host.root.display())]
    } else {
        vec![format!("--sysroot={}", host.sysroot().display())]
    }
}

/// Where libostree records a staged deployment until
/// `ostree-finalize-staged.service` writes its boot entry at shutdown
/// (ostreedev/ostree `src/libostree/ostree-sysroot-private.h`,
/// `_OSTREE_SYSROOT_RUNSTATE_STAGED`; written by `ostree-sysroot-deploy.c`
/// when staging, removed with the deployment's directory when a write of
/// the deployments drops it). libostree reads it only on a booted host
/// (`_ostree_sysroot_reload_staged` returns early otherwise), so `ostree
/// admin status` in the Job's jail, or on any sysroot given by `--sysroot`,
/// does not list the staged deployment.
pub const STAGED_RUNSTATE: &str = "/run/ostree/staged-deployment";

/// The staged deployment recorded in [`STAGED_RUNSTATE`], as
/// `<checksum>.<serial>` when the record names one. The record is a GVariant
/// `a{sv}` whose first entry is `target`, itself `a{sv}` with `name`
/// (`<checksum>.<serial>`), `osname` and `bootcsum`
/// (`serialize_deployment_to_variant` in `ostree-sysroot-deploy.c`); a
/// GVariant dictionary keeps its entries in order, so the first such name in
/// the bytes is the target's.
pub fn parse_staged_record(bytes: &[u8]) -> Option<String> {
    let is_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    (0..bytes.len().saturating_sub(66)).find_map(|i| {
        let w = &bytes[i..];
        if !w[..64].iter().all(is_hex) || w[64] != b'.' || (i > 0 && is_hex(&bytes[i - 1])) {
            return None;
        }
        let digits = w[65..].iter().take_while(|b| b.is_ascii_digit()).count();
        (digits > 0 && w.get(65 + digits) == Some(&0))
            .then(|| String::from_utf8_lossy(&w[..65 + digits]).into_owned())
    })
}

/// The staged deployment recorded under the root, described, when the
/// listed deployments have none marked staged.
fn staged_record(host: &Host, deployments: &[Deployment]) -> Option<String> {
    if deployments.iter().any(|d| d.staged) {
        return None;
    }
    let bytes = std::fs::read(host.path(STAGED_RUNSTATE)).ok()?;
    Some(match parse_staged_record(&bytes) {
        Some(name) => format!("{name} (recorded in {STAGED_RUNSTATE})"),
        None => format!("the one recorded in {STAGED_RUNSTATE}"),
    })
}

/// Refuse to write the deployments while one is staged: the MCO stages an
/// update and finalizes it at shutdown; undeploying it drops it, and any
/// write of the deployments on a sysroot that is not booted (the Job's)
/// deletes its directory, since ostree's cleanup keeps only the
/// deployments it lists (`cleanup_old_deployments` in
/// `src/libostree/ostree-sysroot-cleanup.c`): the MCD's reboot would come
/// back on the old OS.
pub fn refuse_staged(host: &Host, os: &OsState, what: &str) -> Result<()> {
    if let Some(s) = os.staged() {
        bail!(
            "a deployment is staged: {s}; the machine-config daemon is in the middle of an OS update, which it finalizes when the node reboots; {what} would drop it, so nothing was changed. Let the update finish (the node reboots into it), or remove it on purpose with `rpm-ostree cleanup -p`; then run `{}` again (in the hub's Job: let the hub run it again)",
            host.cmd("backup")
        );
    }
    Ok(())
}

/// Whether `rpm-ostree` can work here: on PATH and `/run/ostree-booted`
/// present (without the flag and `--sysroot` the real one refuses: "This
/// system was not booted via libostree; cannot operate", coreos/rpm-ostree
/// `src/app/libmain.cxx`). False in the hub's Job, which renames the flag.
pub fn rpm_ostree_usable(host: &Host, tools: &Tools) -> bool {
    tools.has("rpm-ostree") && host.path("/run/ostree-booted").exists()
}

/// Read the node's deployments: `ostree admin status`, with the booted one
/// from, in this order: the `ostree=` argument of `/proc/cmdline` resolved
/// under the sysroot (as ostree does, see [`crate::node::booted`]);
/// `rpm-ostree status --json`, only where it can work (on PATH and
/// `/run/ostree-booted` present: without the flag the real one refuses, see
/// coreos/rpm-ostree `src/app/libmain.cxx`); the `*` mark of `ostree admin
/// status`; else the default is taken as active.
pub fn read(host: &Host, tools: &Tools) -> Result<OsState> {
    let text = cmd::run_text(
        tools
            .command("ostree")?
            .arg("admin")
            .args(sysroot_args(host))
            .arg("status"),
    )?;
    let mut deployments = parse_admin_status(&text)?;
    let staged_record = staged_record(host, &deployments);
    let mut skipped = Vec::new();
    let cmdline = host.path("/proc/cmdline");
    match booted::from_cmdline(&cmdline, &host.sysroot())? {
        Karg::Found(r) => {
            let r = DeploymentId::from(r);
            let Some(i) = deployments.iter().position(|d| d.is(&r)) else {
                bail!(
                    "/proc/cmdline names the booted deployment {r}, which `ostree admin status` does not list; nothing was changed; run `ostree admin status` and `cat /proc/cmdline` to compare"
                );
            };
            for (j, d) in deployments.iter_mut().enumerate() {
                d.booted = j == i;
            }
            remark(&mut deployments);
            return Ok(OsState {
                deployments,
                booted_from: BootedFrom::Cmdline,
                booted_skipped: skipped,
                staged_record,
            });
        }
        Karg::Absent(why) => skipped.push(format!("kernel command line: {why}")),
    }
    let flag = host.path("/run/ostree-booted");
    if !tools.has("rpm-ostree") {
        skipped.push("rpm-ostree: not on PATH".to_string());
    } else if !flag.exists() {
        skipped.push(format!(
            "rpm-ostree: not asked, {} is absent (it would refuse: not booted via libostree)",
            flag.display()
        ));
    } else {
        let json = cmd::run_text(tools.command("rpm-ostree")?.args(["status", "--json"]))?;
        let mut rpm = parse_rpm_ostree_json(&json)?;
        // rpm-ostree lists the staged deployment first; ostree lists it only
        // on a booted host. Compare what both list.
        if !deployments.iter().any(|d| d.staged) {
            rpm.retain(|d| !d.staged);
        }
        let same = rpm.len() == deployments.len()
            && rpm.iter().zip(&deployments).all(|(a, b)| a.is(&b.id()));
        if !same {
            bail!("rpm-ostree and ostree disagree about the deployments; run `ostree admin status` and `rpm-ostree status` to compare");
        }
        if rpm.iter().any(|d| d.booted) {
            for (d, r) in deployments.iter_mut().zip(&rpm) {
                d.booted = r.booted;
            }
            remark(&mut deployments);
            return Ok(OsState {
                deployments,
                booted_from: BootedFrom::RpmOstree,
                booted_skipped: skipped,
                staged_record,
            });
        }
        skipped.push("rpm-ostree: marks no deployment booted".to_string());
    }
    let booted_from = if deployments.iter().any(|d| d.booted) {
        BootedFrom::StatusMark
    } else {
        skipped.push("ostree admin status: marks no deployment booted".to_string());
        BootedFrom::DefaultAssumed
    };
    Ok(OsState {
        deployments,
        booted_from,
        booted_skipped: skipped,
        staged_record,
    })
}

/// Derive pending/rollback again once the booted deployment is known.
pub fn remark(deployments: &mut [Deployment]) {
    for d in deployments.iter_mut() {
        d.pending = false;
        d.rollback = false;
    }
    mark_pending_rollback(deployments);
}

/// `ostree admin <args>`, a write: run where ostree may write, as libostree
/// itself makes it on a booted host (ostreedev/ostree
/// `src/libostree/ostree-sysroot.c`, `_ostree_sysroot_ensure_writable`:
/// `/sysroot` and `/boot` remounted writable in the mount namespace of the
/// writing process only). libostree does that only when it runs on the
/// booted root ("If we aren't operating on a booted system, then we don't
/// do anything with mounts"), which is not the case with `--sysroot` or in
/// the Job's jail, where RHCOS's `/boot` is read-only: `undeploy` there
/// fails "mkdir(boot/loader.1): Read-only file system". So the child gets
/// a private mount namespace in which the read-only mounts holding `/boot`
/// and `/sysroot` are remounted read-write; the host's mounts stay as they
/// are.
fn admin(host: &Host, tools: &Tools, args: &[String]) -> Result<String> {
    let mut c = tools.command("ostree")?;
    c.arg("admin").args(sysroot_args(host)).args(args);
    writable_boot(&mut c, host)?;
    cmd::run_text(&mut c)
}

/// `ostree admin pin [--unpin]`, made durable before it returns. libostree
/// writes the pin into the deployment's origin file with
/// `GLNX_FILE_REPLACE_DATASYNC_NEW` (ostreedev/ostree
/// `src/libostree/ostree-sysroot-deploy.c`, `ostree_sysroot_write_origin_file`):
/// the file's data is synced, the rename that puts it in place is not, and
/// nothing syncs the sysroot after it (an undeploy does: its
/// `full_system_sync`). A power cut in the VM lane right after an unpin came
/// back with the deployment pinned. The backup becomes current, and names the
/// pinned deployment as its way back, only after this returns; with /var on a
/// disk of its own, the syncfs before the switch does not reach the sysroot.
fn pin(host: &Host, tools: &Tools, index: usize, pinned: bool) -> Result<()> {
    let mut args = vec!["pin".to_string()];
    if !pinned {
        args.push("--unpin".into());
    }
    args.push(index.to_string());
    admin(host, tools, &args)?;
    crate::util::durable::fs_of("backup:os", &host.sysroot())
}

/// Make `c` run in a private mount namespace where the read-only mounts
/// that hold the node's `/boot` and `/sysroot` are writable.
pub fn writable_boot(c: &mut std::process::Command, host: &Host) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut targets: Vec<std::ffi::CString> = Vec::new();
    for p in [host.path("/boot"), host.sysroot()] {
        let Ok(real) = p.canonicalize() else { continue };
        let Some(mp) = mount_point_of(&info, &real) else {
            continue;
        };
        let ro = rustix::fs::statvfs(&mp)
            .map(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
            .unwrap_or(false);
        let t = std::ffi::CString::new(mp.as_os_str().as_bytes())?;
        if ro && !targets.contains(&t) {
            targets.push(t);
        }
    }
    if targets.is_empty() {
        return Ok(());
    }
    log::info!(
        "ostree writes with {} writable in a private mount namespace",
        targets
            .iter()
            .map(|t| t.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" and ")
    );
    // SAFETY: between fork and exec only system calls on data prepared
    // above (no allocation): a new mount namespace, its mounts private, the
    // remounts.
    unsafe {
        c.pre_exec(move || {
            use rustix::mount::{mount_change, mount_remount, MountFlags, MountPropagationFlags};
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS)?;
            // Hygiene only: a remount's flags do not propagate to peers, so
            // a root that is no mount point of its own (a chroot into a
            // plain directory: EINVAL) does not stop the write.
            let _ = mount_change(
                c"/",
                MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
            );
            for t in &targets {
                mount_remount(t.as_c_str(), MountFlags::empty(), c"")?;
            }
            Ok(())
        });
    }
    Ok(())
}

/// The mount point that holds `path` (absolute, canonical) in a
/// `/proc/self/mountinfo` text: the longest mount point that is `path` or
/// one of its parents (field 5, with the kernel's octal escapes).
pub fn mount_point_of(mountinfo: &str, path: &Path) -> Option<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mount(m)))
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
}

fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Which deployments a backup keeps: the active one (the booted one; on a
/// sysroot not booted from, the default) and every one pinned by anything
/// but the backup being replaced (`previous`: the deployments it pinned).
/// The others go, from the highest index. Read only.
pub fn backup_keeps(
    os: &OsState,
    previous: &[DeploymentId],
) -> Option<(Deployment, Vec<Deployment>, Vec<Deployment>)> {
    let keep = os.active()?.clone();
    let (mut others_pinned, mut go) = (Vec::new(), Vec::new());
    for d in os.deployments.iter().rev().filter(|d| !d.is(&keep.id())) {
        if d.pinned && !previous.iter().any(|p| d.is(p)) {
            others_pinned.push(d.clone());
        } else {
            go.push(d.clone());
        }
    }
    others_pinned.reverse();
    Some((keep, go, others_pinned))
}

/// The OS part of a backup, in the order that keeps a way back at every
/// instant: pin the active deployment first, then undeploy the others
/// that no backup needs, one at a time from the highest index, the status
/// re-read and the index checked each time. With `release` false (before
/// the new backup is current) the deployments the replaced backup pinned
/// (`previous`) stay, pinned: that backup's way back until the switch.
/// With `release` true (after the switch) they are unpinned and undeployed
/// too. A pin only sets the deployment's pinned flag (ostreedev/ostree
/// `src/ostree/ot-admin-builtin-pin.c`: `ostree_sysroot_deployment_set_pinned`,
/// any index, the booted one included, any number of them): it needs no
/// room and does not depend on the undeploys. Never the booted or a staged
/// deployment. Idempotent. Returns the kept deployment (pinned), what was
/// removed, and the pinned deployments kept.
pub fn keep_only_active(
    host: &Host,
    tools: &Tools,
    previous: &[DeploymentId],
    release: bool,
) -> Result<(Deployment, Vec<String>, Vec<String>)> {
    let first = read(host, tools)?;
    refuse_staged(host, &first, "undeploying the other deployments")?;
    let active = first
        .active()
        .context("ostree admin status lists no deployment")?;
    let keep = active.id();
    if !active.pinned {
        pin(host, tools, active.index, true)?;
    }
    let pinned_now = |host: &Host| -> Result<Deployment> {
        read(host, tools)?
            .deployments
            .into_iter()
            .find(|d| d.is(&keep))
            .filter(|d| d.pinned)
            .context("pinning the kept deployment did not take")
    };
    pinned_now(host)?;
    crate::util::fault::point("backup:os:pinned");
    let spared = |d: &Deployment| !release && previous.iter().any(|p| d.is(p));
    let mut removed = Vec::new();
    for _ in 0..64 {
        let now = read(host, tools)?;
        let Some((_, go, _)) = backup_keeps(&now, previous) else {
            break;
        };
        let Some(victim) = go.into_iter().find(|d| !spared(d)) else {
            break;
        };
        if victim.booted || victim.is(&keep) {
            bail!(
                "refusing to undeploy {}: it is the booted deployment",
                victim.name()
            );
        }
        if victim.staged {
            bail!(
                "refusing to undeploy {}: it is staged (the machine-config daemon is mid-update)",
                victim.name()
            );
        }
        if victim.index >= now.deployments.len() {
            bail!("deployment index {} out of range", victim.index);
        }
        if victim.pinned {
            log::info!(
                "unpinning {} (index {}): the backup it was pinned for is replaced",
                victim.short(),
                victim.index
            );
            pin(host, tools, victim.index, false)?;
            crate::util::fault::point("backup:release:unpinned");
        }
        log::info!("undeploying {} (index {})", victim.short(), victim.index);
        admin(host, tools, &["undeploy".into(), victim.index.to_string()])?;
        removed.push(victim.short());
        if release {
            crate::util::fault::point("backup:release:undeployed");
        }
    }
    let now = read(host, tools)?;
    let (kept, go, others) =
        backup_keeps(&now, previous).context("ostree admin status lists no deployment")?;
    if !kept.is(&keep) {
        bail!("the kept deployment disappeared");
    }
    let left = go.iter().filter(|d| !spared(d)).count();
    if left > 0 {
        bail!(
            "{} deployments remain after undeploying the others",
            now.deployments.len()
        );
    }
    Ok((
        pinned_now(host)?,
        removed,
        others.iter().map(Deployment::short).collect(),
    ))
}

/// `ostree admin undeploy <index>`, after checking that the index still
/// names this deployment and that it is not booted.
pub fn undeploy(host: &Host, tools: &Tools, d: &Deployment) -> Result<()> {
    let now = read(host, tools)?;
    let cur = now
        .deployments
        .get(d.index)
        .filter(|c| c.is(&d.id()))
        .with_context(|| format!("deployment index {} no longer names {}", d.index, d.short()))?;
    if cur.booted {
        bail!(
            "refusing to undeploy {}: it is the booted deployment",
            cur.short()
        );
    }
    if cur.staged {
        bail!(
            "refusing to undeploy {}: it is the staged deployment (the machine-config daemon's update, finalized at the next reboot); remove it on purpose with `rpm-ostree cleanup -p`",
            cur.short()
        );
    }
    log::info!("undeploying {} (index {})", d.short(), d.index);
    admin(host, tools, &["undeploy".into(), d.index.to_string()]).map(drop)
}

/// Drop the staged deployment as libostree does when a write of the
/// deployments leaves it out (ostreedev/ostree
/// `src/libostree/ostree-sysroot-deploy.c`: unlink
/// `/run/ostree/staged-deployment` and its `-locked` twin, remove the
/// deployment's directory): listed (a booted host), `ostree admin undeploy`
/// of it does exactly that; recorded only (libostree does not load it on a
/// sysroot that is not booted), the record is removed and `ostree admin
/// cleanup` removes the directory nothing references any more.
pub fn drop_staged(host: &Host, tools: &Tools) -> Result<()> {
    let now = read(host, tools)?;
    if let Some(d) = now.deployments.iter().find(|d| d.staged) {
        log::info!("dropping the staged deployment {}", d.short());
        return admin(host, tools, &["undeploy".into(), d.index.to_string()]).map(drop);
    }
    for p in [
        host.path(STAGED_RUNSTATE),
        host.path(format!("{STAGED_RUNSTATE}-locked")),
    ] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", p.display()))
            }
            _ => {}
        }
    }
    admin(host, tools, &["cleanup".into()]).map(drop)
}

/// Whether `ostree admin --help` lists the `admin` subcommand `name`.
///
/// ostree prints the list itself: `ostree_admin_option_context_new_with_commands`
/// in ostreedev/ostree `src/ostree/ot-builtin-admin.c` writes a summary
/// `Builtin "admin" Commands:` with one line `"\n  %-19s" name description`
/// per visible subcommand (`set-default`: "Make deployment INDEX the
/// default"). An unknown one fails with `Unknown "admin" subcommand
/// 'NAME'` and the same help on stderr; ostree 2022.7 (Debian 12) has no
/// `set-default`.
pub fn admin_help_lists(help: &str, name: &str) -> bool {
    let mut in_list = false;
    for line in help.lines() {
        if line.starts_with("Builtin \"admin\" Commands:") {
            in_list = true;
        } else if in_list {
            let Some(rest) = line.strip_prefix("  ") else {
                // The list ends at the first line that is not indented.
                if !line.trim().is_empty() {
                    in_list = false;
                }
                continue;
            };
            if rest.split_whitespace().next() == Some(name) {
                return true;
            }
        }
    }
    false
}

/// Whether this node's `ostree` has `ostree admin set-default` (OpenShift
/// 4.14.7 and later, per openshift-kni/lifecycle-agent
/// `docs/image-based-upgrade.md`, "Manually setting new default deployment").
pub fn has_set_default(tools: &Tools) -> Result<bool> {
    let help = cmd::run_text(tools.command("ostree")?.args(["admin", "--help"]))?;
    Ok(admin_help_lists(&help, "set-default"))
}

/// `ostree admin set-default <index>`: upstream
/// (`src/ostree/ot-admin-builtin-set-default.c`) moves deployment INDEX to
/// position 0 and writes the deployments, whatever their stateroots. The
/// index is re-read first and must still name `d`.
pub fn set_default(host: &Host, tools: &Tools, d: &Deployment) -> Result<()> {
    let now = read(host, tools)?;
    let cur = now
        .deployments
        .iter()
        .find(|c| c.is(&d.id()))
        .with_context(|| format!("{} is no longer deployed", d.short()))?;
    log::info!("making {} (index {}) the default", cur.short(), cur.index);
    admin(host, tools, &["set-default".into(), cur.index.to_string()]).map(drop)
}

/// The `title` of the boot loader entry that boots `id`, as ostree wrote it
/// (`/boot/loader/entries/*.conf`, Boot Loader Specification): the entry
/// whose `options` line holds an `ostree=` link resolving to `id` under the
/// sysroot. Read only; `None` when no entry says.
pub fn boot_entry_title(host: &Host, id: &DeploymentId) -> Option<String> {
    let sysroot = host.sysroot();
    for dir in [
        sysroot.join("boot/loader/entries"),
        host.path("/boot/loader/entries"),
    ] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            if p.extension().and_then(|e| e.to_str()) != Some("conf") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            let field = |k: &str| {
                text.lines().find_map(|l| {
                    l.strip_prefix(k)
                        .filter(|r| r.starts_with([' ', '\t']))
                        .map(|r| r.trim().to_string())
                })
            };
            let resolved = field("options")
                .as_deref()
                .and_then(booted::find_ostree_karg)
                .and_then(|v| booted::parse_bootlink(v).ok())
                .and_then(|l| booted::resolve(&sysroot, &l).ok())
                .map(DeploymentId::from);
            if resolved.as_ref() == Some(id) {
                if let Some(t) = field("title") {
                    return Some(t);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two stateroots deploying the same commit both have serial 0 (ostree
    /// numbers serials per stateroot); they are two deployments.
    #[test]
    fn the_same_commit_in_two_stateroots_is_two_deployments() {
        let c = "a".repeat(64);
        let text =
            format!("* rhcos_4.17 {c}.0\n    Version: 417\n  rhcos {c}.0\n    Version: 416\n");
        let ds = parse_admin_status(&text).unwrap();
        assert_eq!((ds[0].checksum.as_str(), ds[0].serial), (c.as_str(), 0));
        assert_eq!((ds[1].checksum.as_str(), ds[1].serial), (c.as_str(), 0));
        assert_ne!(ds[0].id(), ds[1].id());
        assert!(ds[0].is(&ds[0].id()) && !ds[0].is(&ds[1].id()));
        assert_eq!(ds[1].id().to_string(), format!("rhcos {c}.0"));
        assert_eq!(ds[1].name(), format!("rhcos {c}.0"));
    }

    /// `ostree admin --help` of ostree 2022.7 (this machine) has no
    /// `set-default`; a newer one lists it in the same table.
    #[test]
    fn the_admin_help_tells_whether_set_default_exists() {
        let old = "Usage:\n  ostree admin [OPTION…] --print-current-dir|COMMAND\n\nBuiltin \"admin\" Commands:\n  cleanup            Delete untagged deployments and repository objects\n  status             List deployments\n  undeploy           Delete deployment INDEX\n\nHelp Options:\n  -h, --help         Show help options\n";
        assert!(!admin_help_lists(old, "set-default"));
        assert!(admin_help_lists(old, "undeploy"));
        // An option line of a later section is not a subcommand.
        assert!(!admin_help_lists(old, "-h,"));
        let new = old.replace(
            "  undeploy ",
            "  set-default        Make deployment INDEX the default\n  undeploy ",
        );
        assert!(admin_help_lists(&new, "set-default"));
    }

    /// The mount that holds a path: the longest mount point that is the
    /// path or a parent of it, component by component, with the kernel's
    /// octal escapes undone (a space is `\040`).
    #[test]
    fn the_mount_point_of_a_path_is_the_longest_mount_above_it() {
        let info = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    30 22 7:0 / /var/tmp/sb\\040x/root/boot ro,nodev - ext4 /dev/loop0 ro\n\
                    31 22 0:5 / /var/tmp/sb rw - tmpfs tmpfs rw\n";
        let mp = |p: &str| mount_point_of(info, Path::new(p)).map(|m| m.display().to_string());
        assert_eq!(
            mp("/var/tmp/sb x/root/boot/loader").as_deref(),
            Some("/var/tmp/sb x/root/boot")
        );
        assert_eq!(mp("/var/tmp/sb x/root/sysroot").as_deref(), Some("/"));
        assert_eq!(
            mp("/var/tmp/sbx").as_deref(),
            Some("/"),
            "not a prefix by bytes"
        );
        assert_eq!(mp("/var/tmp/sb/root").as_deref(), Some("/var/tmp/sb"));
        assert_eq!(mount_point_of("", Path::new("/boot")), None);
    }
}
