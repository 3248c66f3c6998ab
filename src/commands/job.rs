//! `launch-backup` (the Job's `launchBackup`): prepare the `/host` jail the
//! hub's Job mounts, chroot into it, and take the backup there.
//!
//! For the run, the host's `/run/ostree-booted` is renamed to
//! `/run/ostree-booted.tmp`, and put back on every exit path: success,
//! error, panic, and SIGTERM/SIGINT/SIGHUP (the Job's deadline sends
//! SIGTERM).
//!
//! Why the rename, whatever the flag holds (TALM's launcher renames it only
//! when it is empty; ostree 2023.6 and later write a GVariant into it in
//! `ostree-prepare-root`): in the jail ostree's sysroot is `/` (the jail
//! root, `/ostree -> sysroot/ostree`, `/boot` the boot partition), and
//! libostree takes a sysroot for the booted one when the flag exists and
//! the sysroot is `/` (ostreedev/ostree `src/libostree/ostree-sysroot.c`,
//! `ostree_sysroot_initialize`: `root_is_ostree_booted = ostree_booted &&
//! root_is_sysroot`). It then looks for the deployment whose directory is
//! `/` (or the backing root the flag's content records), finds none (the
//! jail's `/` is an emptyDir) and fails: "Unexpected state:
//! /run/ostree-booted found and in / sysroot, but bootloader entry not
//! found". With the flag renamed, the sysroot is not booted: the
//! deployments load, libostree leaves the mounts alone
//! (`_ostree_sysroot_ensure_writable`: "If we aren't operating on a booted
//! system, then we don't do anything with mounts"; our writes get their own
//! namespace, see `node::ostree`), and it does not load the staged
//! deployment (`_ostree_sysroot_reload_staged` returns early), which
//! `node::ostree` therefore reads from `/run/ostree/staged-deployment`
//! itself. A rename keeps the flag's content as ostree wrote it, so putting
//! it back restores it byte for byte. So the rename stays right with
//! ostree 2023.6+, and is needed whatever the content.

use crate::backup::{self, Outcome};
use crate::node::host::Host;
use anyhow::{Context, Result};
use rustix::fs::{self, FileType, Mode};
use rustix::mount::{mount, mount_remount, MountFlags};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const FLAG: &str = "/run/ostree-booted";
const FLAG_TMP: &str = "/run/ostree-booted.tmp";

/// Whether this run renamed the flag (so that only this run puts it back).
static RENAMED: Mutex<bool> = Mutex::new(false);

fn restore_flag() {
    let mut renamed = RENAMED.lock().unwrap_or_else(|e| e.into_inner());
    if *renamed {
        match std::fs::rename(FLAG_TMP, FLAG) {
            Ok(()) => *renamed = false,
            Err(e) => eprintln!("upgrade-recovery: error: cannot put {FLAG} back: {e}; run `mv {FLAG_TMP} {FLAG}` on the node"),
        }
    }
}

struct FlagGuard;

impl Drop for FlagGuard {
    fn drop(&mut self) {
        restore_flag();
    }
}

/// Handle the termination signals in one thread: put the flag back, then
/// exit 128+signal. Call before any thread starts.
fn handle_signals() {
    crate::util::interrupt::on_termination(|sig| {
        restore_flag();
        let _ = writeln!(
            std::io::stderr(),
            "upgrade-recovery: error: stopped by signal {sig}; the backup was not completed (the previous one, if any, is intact); {FLAG} was put back"
        );
    });
}

/// Set up the jail below `host` as today's Job does, then chroot into it.
pub fn enter_jail(host: &Path) -> Result<()> {
    if !host.join("sysroot").is_dir() {
        anyhow::bail!(
            "{} does not look like the Job's host mount: {}/sysroot is missing",
            host.display(),
            host.display()
        );
    }
    let dev = host.join("dev");
    std::fs::create_dir_all(&dev)?;
    let null = dev.join("null");
    if !null.exists() {
        fs::mknodat(
            fs::CWD,
            &null,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            fs::makedev(1, 3),
        )
        .with_context(|| format!("mknod {}", null.display()))?;
    }
    let shm = dev.join("shm");
    std::fs::create_dir_all(&shm)?;
    mount(
        "tmpfs",
        &shm,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(c"mode=1777"),
    )
    .with_context(|| format!("mounting a tmpfs on {}", shm.display()))?;
    let sysroot = host.join("sysroot");
    if let Err(e) = mount_remount(&sysroot, MountFlags::BIND, "") {
        // Not a mount point of its own (a test jail): nothing to remount.
        log::info!("remount of {} read-write: {e}", sysroot.display());
    }
    for (link, target) in [
        ("lib64", "usr/lib64"),
        ("lib", "usr/lib"),
        ("bin", "usr/bin"),
        ("ostree", "sysroot/ostree"),
    ] {
        let l = host.join(link);
        if std::fs::symlink_metadata(&l).is_err() {
            std::os::unix::fs::symlink(target, &l)
                .with_context(|| format!("creating the link {}", l.display()))?;
        }
    }
    rustix::process::chroot(host).with_context(|| format!("chroot {}", host.display()))?;
    std::env::set_current_dir("/")?;
    Ok(())
}

/// The Job's entrypoint. Exit 0 only when the backup is complete and verified.
pub fn launch(host_dir: &Path, dir: &Path, opts: &backup::Options) -> Result<Outcome> {
    handle_signals();
    crate::util::progress::lines_only();
    enter_jail(host_dir)?;
    let _guard = FlagGuard;
    // A dry run (`--dry-run`) does the same: without the rename, ostree in
    // the jail cannot even read the deployments ("/run/ostree-booted found
    // and in / sysroot, but bootloader entry not found"); the flag is put
    // back on every exit path as for the real run.
    if Path::new(FLAG).exists() {
        std::fs::rename(FLAG, FLAG_TMP).with_context(|| format!("renaming {FLAG}"))?;
        *RENAMED.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }
    crate::util::fault::point("launch:jail");
    let host = Host::new(&PathBuf::from("/"), dir)?;
    crate::commands::backup::run(&host, opts)
}
