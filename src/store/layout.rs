//! Every file name of the backup dir, defined once.
//!
//! ```text
//! <dir>/.lock                 flock of any changing run
//! <dir>/journal.json          recovery progress, beside the generations
//! <dir>/progress              today's script's recovery progress (read only)
//! <dir>/current -> gen-<TS>   the current generation (switched by rename)
//! <dir>/gen-<TS>/             one complete backup: manifest.json, cluster/,
//!                             *.tar.zst, etc.exclude.list, images/, the binary
//! <dir>/manifest.json -> current/manifest.json        (stable links: never
//! <dir>/cluster -> current/cluster                     change once made, so
//! <dir>/etc.exclude.list -> current/etc.exclude.list   the documented paths
//! <dir>/upgrade-recovery -> current/upgrade-recovery   work at every instant)
//! <dir>/upgrade-recovery.sh -> current/upgrade-recovery.sh
//! ```

/// Held (flock) by any run that changes something.
pub const LOCK: &str = ".lock";
/// The recovery journal; lives beside the generations.
pub const JOURNAL: &str = "journal.json";
/// When the last recovery with this backup dir completed.
pub const LAST_RECOVERY: &str = "last-recovery.json";
/// The last failure of each command (`status` names it until a `verify`
/// passes).
pub const FAILURES: &str = "failures.json";
/// Today's script's recovery progress file.
pub const LEGACY_PROGRESS: &str = "progress";
/// The symlink naming the current generation.
pub const CURRENT: &str = "current";
/// Generation dirs are `gen-<%Y-%m-%d_%H%M%S>[.N]`.
pub const GEN_PREFIX: &str = "gen-";
/// The staging dir of the flat format (before generations); garbage now.
pub const LEGACY_STAGING: &str = ".new";

/// In a generation (and through the stable links).
pub const MANIFEST: &str = "manifest.json";
pub const CLUSTER: &str = "cluster";
pub const EXCLUDE_LIST: &str = "etc.exclude.list";
pub const BINARY: &str = "upgrade-recovery";
pub const WRAPPER: &str = "upgrade-recovery.sh";
/// Container images (OCI layout), `backup --with-images`.
pub const IMAGES: &str = "images";

/// The documented paths: stable links `<dir>/NAME -> current/NAME`. The
/// manifest comes last, so a reader that sees the new manifest through its
/// link sees every other link too.
pub const STABLE: [&str; 5] = [BINARY, WRAPPER, EXCLUDE_LIST, CLUSTER, MANIFEST];

/// Temporary names used while switching (garbage if a run is killed).
pub const CURRENT_TMP: &str = ".current.tmp";
/// `.NAME.link`: a new stable link before it is renamed into place; after an
/// exchange with a flat directory, that directory until it is removed.
pub fn link_tmp(name: &str) -> String {
    format!(".{name}.link")
}

/// Files of a flat (pre-generation) backup: any of them without a manifest
/// means a damaged backup, not "no backup".
pub fn is_backup_data(name: &str) -> bool {
    name.ends_with(".tar.zst") || name == CLUSTER || name == IMAGES || name == EXCLUDE_LIST
}

/// A tree's archive in a generation: `<tree>.tar.zst`, fixed by the format,
/// never taken from the manifest (issue 23: a manifest that pointed tree
/// `etc` at `local.tar.zst`, with its digests, verified intact).
pub fn archive(tree: &str) -> String {
    format!("{tree}.tar.zst")
}

/// The tree of the machine-config files restored over `/` (its archive is
/// `extras.tar.zst`).
pub const EXTRAS: &str = "extras";

/// The dirs of TALM's upgrade-recovery.sh backup (its `take_backup`).
pub const TALM_DIRS: [&str; 4] = [CLUSTER, "etc", "local", "kubelet"];

/// The machine-config files archive of TALM's backup.
pub const TALM_EXTRAS: &str = "extras.tgz";

/// The trees of a backup: name (the archive is [`archive`]), node path.
pub const TREES: [(&str, &str); 3] = [
    ("etc", "/etc"),
    ("local", "/usr/local"),
    ("kubelet", "/var/lib/kubelet"),
];

/// The wrapper the backup installs as `<dir>/upgrade-recovery.sh`: today's
/// documented entry point. It marks the run as started through the script, so
/// that with no subcommand (no arguments, or only `--resume`, `--restart`,
/// `--step`, `--force`) the binary runs `restore`, whatever its own name;
/// and it carries the backup's own dir (`UPGRADE_RECOVERY_DIR`, the default
/// of `--dir`), so that a backup in another dir than /var/recovery recovers
/// from itself.
pub fn wrapper(dir: &std::path::Path) -> String {
    let d = dir.display().to_string().replace('\'', "'\\''");
    format!("#!/bin/sh\n# upgrade-recovery.sh: with no subcommand, runs the recovery (restore).\nUPGRADE_RECOVERY_AS_SCRIPT=1\nexport UPGRADE_RECOVERY_AS_SCRIPT\nUPGRADE_RECOVERY_DIR=${{UPGRADE_RECOVERY_DIR:-'{d}'}}\nexport UPGRADE_RECOVERY_DIR\nexec \"$(dirname \"$0\")/upgrade-recovery\" \"$@\"\n")
}
