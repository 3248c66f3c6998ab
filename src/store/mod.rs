//! The backup dir: its layout (every file name, in [`layout`]), which
//! generation is current, and the atomic switch to a new one.
//!
//! Each backup is built in its own generation dir and becomes current by one
//! `rename(2)` of the `current` symlink, followed by an fsync of the backup
//! dir. The documented paths (`manifest.json`, `cluster/`, ...) are stable
//! links through `current`, so they change with that one rename. At every
//! instant the current backup is the previous complete one or the new
//! complete one; the previous generation is removed only after the switch,
//! and what a killed run leaves is cleared by the next one ([`prepare`]).
//!
//! The flat format (files directly in the backup dir, before generations) is
//! read as it is; the first new backup converts it before building anything
//! ([`convert_flat`]): hard links of its files in a generation made current,
//! each documented path replaced by its link (a file by `rename(2)`, the
//! `cluster` dir by `renameat2(RENAME_EXCHANGE)`), then the flat names
//! removed. The files never change, so every path shows the same backup.

pub mod blob;
pub mod failures;
pub mod journal;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod trust;
pub mod verify;

use crate::node::host::Host;
use crate::util::error::Fail;
use crate::{util::fault, util::fsutil};
use anyhow::{Context, Result};
use layout::*;
use std::path::{Path, PathBuf};

/// What a backup dir holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// No backup (no dir, or nothing of a backup in it).
    Empty,
    /// The flat format: `manifest.json` and the archives in the dir itself.
    Flat,
    /// Generations; the current one's name.
    Generation(String),
    /// Parts of a backup without the manifest that makes it one.
    Damaged(String),
    /// TALM's upgrade-recovery.sh layout (cluster-group-upgrades-operator
    /// `recovery/bindata/upgrade-recovery.sh`, `take_backup`: `cluster/`,
    /// `etc/`, `local/`, `kubelet/`, `extras.tgz`, `etc.exclude.list`,
    /// `upgrade-recovery.sh`): a backup that script recovers from, taken at
    /// `created` (the Unix time its `cluster/` was written, the first part
    /// it takes). Not ours to read; replaced by the next backup under the
    /// lifecycle rule, its files removed only after the switch.
    Talm { created: i64 },
}

/// Whether TALM's copies (`etc/`, `local/`, `kubelet/`) are still in `dir`.
fn talm_layout_dirs(dir: &Path) -> bool {
    TALM_DIRS[1..]
        .iter()
        .all(|d| lstat(&dir.join(d)).is_some_and(|m| m.is_dir()))
}

/// Whether `dir` holds TALM's layout: its script as a regular file and its
/// four copies as dirs (`extras.tgz`, `etc.exclude.list` are optional:
/// the script writes them only when there is something to write).
fn talm_layout(dir: &Path) -> Option<i64> {
    use std::os::unix::fs::MetadataExt;
    if !lstat(&dir.join(WRAPPER)).is_some_and(|m| m.is_file()) {
        return None;
    }
    let mut created = None;
    for d in TALM_DIRS {
        let md = lstat(&dir.join(d)).filter(std::fs::Metadata::is_dir)?;
        if d == CLUSTER {
            created = Some(md.mtime());
        }
    }
    created
}

fn lstat(p: &Path) -> Option<std::fs::Metadata> {
    std::fs::symlink_metadata(p).ok()
}

/// What a non-regular file is, in words.
fn file_kind(md: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = md.file_type();
    if t.is_fifo() {
        "FIFO"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "directory"
    } else if t.is_socket() {
        "socket"
    } else {
        "device"
    }
}

/// A plain generation name (no `/`, no `..`).
fn is_generation_name(n: &str) -> bool {
    n.starts_with(GEN_PREFIX) && !n.contains('/') && n != "." && n != ".."
}

/// Why the generation `name` of `dir` is not one: generations are real
/// directories inside the backup dir, never a symlink (one out of the dir
/// would have root read and run what another chose).
fn not_a_generation(dir: &Path, name: &str) -> Option<String> {
    let p = dir.join(name);
    match lstat(&p) {
        Some(md) if md.is_dir() => None,
        Some(md) => Some(format!(
            "the generation {} is a {}, not a directory inside {}",
            p.display(),
            file_kind(&md),
            dir.display()
        )),
        None => Some(format!("the generation {} does not exist", p.display())),
    }
}

/// What `dir` holds. Never changes anything.
pub fn inspect(dir: &Path) -> Result<Kind> {
    if lstat(dir).is_none() {
        return Ok(Kind::Empty);
    }
    trust::require(dir)?;
    let cur = dir.join(CURRENT);
    if lstat(&cur).is_some() {
        let target = std::fs::read_link(&cur)
            .with_context(|| format!("{} is not a symlink", cur.display()))?;
        let name = target.to_string_lossy().into_owned();
        if !is_generation_name(&name) {
            return Ok(Kind::Damaged(format!(
                "{} points to {name}, which is not a generation of this dir",
                cur.display()
            )));
        }
        if let Some(why) = not_a_generation(dir, &name) {
            return Ok(Kind::Damaged(why));
        }
        let m = dir.join(&name).join(MANIFEST);
        return Ok(match lstat(&m) {
            Some(md) if md.is_file() => Kind::Generation(name),
            Some(md) => Kind::Damaged(format!(
                "{} is a {}, not a regular file",
                m.display(),
                file_kind(&md)
            )),
            None => Kind::Damaged(format!(
                "the current generation {} has no {MANIFEST}",
                dir.join(&name).display()
            )),
        });
    }
    if lstat(&dir.join(MANIFEST)).is_some_and(|m| m.is_file()) {
        return Ok(Kind::Flat);
    }
    if let Some(created) = talm_layout(dir) {
        return Ok(Kind::Talm { created });
    }
    // No manifest: parts of a backup left there make it damaged, not absent.
    let mut parts = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let n = e.file_name().to_string_lossy().into_owned();
        let Some(md) = lstat(&e.path()) else { continue };
        if md.file_type().is_symlink() || !is_backup_data(&n) {
            continue;
        }
        if md.is_dir() && std::fs::read_dir(e.path()).map_or(true, |mut r| r.next().is_none()) {
            continue;
        }
        parts.push(n);
    }
    parts.sort();
    if parts.is_empty() {
        Ok(Kind::Empty)
    } else {
        Ok(Kind::Damaged(format!(
            "{} is missing but {} {} there",
            dir.join(MANIFEST).display(),
            parts.join(", "),
            if parts.len() == 1 { "is" } else { "are" }
        )))
    }
}

/// The dir holding the current backup's files (a generation, or `dir`
/// itself in the flat format). No backup or a damaged one: exit 4. For the
/// callers that only look (status gives its own next command); a refusal a
/// person reads comes from [`current_on`], which names the next command.
pub fn current(dir: &Path) -> Result<PathBuf> {
    current_or(dir, None)
}

/// [`current`] of the host's backup dir, whose "no backup" refusal names
/// `status` with the backup's `--dir` (`Host::cmd`).
pub fn current_on(host: &Host) -> Result<PathBuf> {
    current_or(&host.backup_dir(), Some(host))
}

fn current_or(dir: &Path, host: Option<&Host>) -> Result<PathBuf> {
    match inspect(dir)? {
        Kind::Generation(g) => Ok(dir.join(g)),
        Kind::Flat => Ok(dir.to_path_buf()),
        Kind::Empty => Err(Fail::Backup(format!(
            "no backup in {}: {} does not exist. Nothing was changed. {}without a backup this tool cannot recover the node",
            dir.display(),
            dir.join(MANIFEST).display(),
            host.map(|h| format!(
                "`{}` names a backup in another dir if the node has one (then pass that dir with `--dir DIR`); ",
                h.cmd("status")
            ))
            .unwrap_or_default()
        ))
        .into()),
        Kind::Damaged(why) => Err(damaged(dir, &why).into()),
        Kind::Talm { created } => Err(Fail::Backup(talm_text(dir, created)).into()),
    }
}

/// What TALM's backup is and how to recover from it, in words.
pub fn talm_text(dir: &Path, created: i64) -> String {
    format!(
        "{} holds a backup taken by TALM's upgrade-recovery.sh on {}, not by this tool; recover with that script (`{}` of that backup)",
        dir.display(),
        fsutil::rfc3339(created),
        dir.join(WRAPPER).display()
    )
}

fn damaged(dir: &Path, why: &str) -> Fail {
    Fail::Backup(format!(
        "the backup in {} is damaged: {why}. Do not take a new backup over it while the node may need it; {}",
        dir.display(),
        read_hint(dir)
    ))
}

/// How to read the archives of a backup without its manifest: commands that
/// name an archive that is there (issue 27.5: never a path that does not
/// exist in the generation layout).
pub fn read_hint(dir: &Path) -> String {
    match archives_left(dir).first() {
        Some(a) => format!(
            "the archives that are there can still be read without it: `zstd -dc {} | tar -tvf -` lists one, `zstd -dc {} | tar -xf - -C DIR` unpacks it (`upgrade-recovery extract` needs the manifest)",
            a.display(),
            a.display()
        ),
        None => format!("no archive is left in {}", dir.display()),
    }
}

/// The dir of the current backup's files even when it is damaged: the
/// current generation (also without its manifest), else `dir` (flat). For
/// reports of what is there (issue 27.8: not "is a symlink" for the link
/// beside a generation without a manifest).
pub fn files_dir(dir: &Path) -> PathBuf {
    // Not through `current()`: its refusal names the archives found here.
    match std::fs::read_link(dir.join(CURRENT)) {
        Ok(g) if is_generation_name(&g.to_string_lossy()) && dir.join(&g).is_dir() => dir.join(g),
        _ => dir.to_path_buf(),
    }
}

/// The tree archives there are in the current generation (or, flat, in
/// `dir`), `etc.tar.zst` first: what can be read by hand when the manifest
/// is gone (issue 27.5: a hint names a path that exists).
pub fn archives_left(dir: &Path) -> Vec<PathBuf> {
    let at = files_dir(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&at)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "zst") && p.is_file())
        .collect();
    v.sort_by_key(|p| {
        (
            p.file_name() != Some(std::ffi::OsStr::new("etc.tar.zst")),
            p.clone(),
        )
    });
    v
}

/// Where the tree archives are, as the node names it: `<dir>/current`, or
/// the backup dir itself (flat).
pub fn archives_on_node(host: &crate::node::host::Host) -> PathBuf {
    if host.backup_dir().join(CURRENT).is_dir() {
        host.dir.join(CURRENT)
    } else {
        host.dir.clone()
    }
}

/// The current generation's name, None in the flat format. For the journal.
pub fn current_generation(host: &Host) -> Result<Option<String>> {
    match inspect(&host.backup_dir())? {
        Kind::Generation(g) => Ok(Some(g)),
        _ => {
            current_on(host)?;
            Ok(None)
        }
    }
}

/// The dir of a named generation (as a journal records it), or of the
/// flat backup (None).
pub fn generation_dir(dir: &Path, generation: Option<&str>) -> Result<PathBuf> {
    match generation {
        None => Ok(dir.to_path_buf()),
        Some(g) if is_generation_name(g) => {
            trust::require(dir)?;
            let p = dir.join(g);
            if let Some(why) = not_a_generation(dir, g) {
                return Err(damaged(dir, &why).into());
            }
            if !p.join(MANIFEST).is_file() {
                return Err(Fail::Backup(format!(
                    "the generation {} that the recovery uses has no {MANIFEST}",
                    p.display()
                ))
                .into());
            }
            Ok(p)
        }
        Some(g) => Err(Fail::Backup(format!("{g:?} is not a backup generation name")).into()),
    }
}

/// Problems with the documented paths of a generations dir: each must be
/// its link through `current`, or (a conversion under way) the flat file or
/// dir that holds the very same files (hard links).
pub fn link_problems(dir: &Path) -> Vec<String> {
    if !matches!(inspect(dir), Ok(Kind::Generation(_))) {
        return Vec::new();
    }
    // A replacement of TALM's backup killed during the switch: its files
    // (its script, `cluster/`, `etc.exclude.list`) may still stand where
    // the links go, or a link not be made yet, beside its copies; the generation is current and whole,
    // and the next backup's `prepare` makes the links (then removes them).
    let talm_left = talm_layout_dirs(dir);
    STABLE
        .iter()
        .filter(|n| !documented_path_ok(dir, n))
        .filter(|n| !(talm_left && lstat(&dir.join(n)).is_none_or(|m| !m.file_type().is_symlink())))
        .map(|n| {
            format!(
                "{} is not the link to {CURRENT}/{n}; restore it with `ln -sfn {CURRENT}/{n} {}`",
                dir.join(n).display(),
                dir.join(n).display()
            )
        })
        .collect()
}

fn documented_path_ok(dir: &Path, name: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let p = dir.join(name);
    let c = dir.join(CURRENT).join(name);
    let Ok(cm) = std::fs::metadata(&c) else {
        return false;
    };
    if std::fs::read_link(&p).ok().as_deref() == Some(Path::new(CURRENT).join(name).as_path()) {
        return true;
    }
    let same =
        |a: &std::fs::Metadata, b: &std::fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
    let names = |d: &Path| -> Option<Vec<std::ffi::OsString>> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        v.sort();
        Some(v)
    };
    match lstat(&p) {
        Some(m) if m.is_file() => same(&m, &cm),
        Some(m) if m.is_dir() && cm.is_dir() => match (names(&p), names(&c)) {
            (Some(a), Some(b)) if a == b => a.iter().all(|n| {
                matches!((lstat(&p.join(n)), lstat(&c.join(n))), (Some(x), Some(y)) if same(&x, &y))
            }),
            _ => false,
        },
        _ => false,
    }
}

fn remove_entry(p: &Path) -> Result<()> {
    let Some(md) = lstat(p) else { return Ok(()) };
    if md.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    }
    .with_context(|| format!("removing {}", p.display()))
}

/// A name for a new generation, unused in `dir`.
pub fn new_generation_name(dir: &Path, unix: i64) -> String {
    let base = format!("{GEN_PREFIX}{}", fsutil::backup_stamp(unix));
    let mut name = base.clone();
    let mut n = 1;
    while lstat(&dir.join(&name)).is_some() {
        n += 1;
        name = format!("{base}.{n}");
    }
    name
}

/// A name only a killed run leaves.
fn is_temporary(n: &str) -> bool {
    n == CURRENT_TMP || n == LEGACY_STAGING || (n.starts_with('.') && n.ends_with(".link"))
}

/// A name this tool (or TALM's script, whose backup it replaces) writes in
/// the backup dir. Anything else there is the admin's and is never removed.
fn written_by_us(n: &str) -> bool {
    n == CURRENT
        || n.starts_with(GEN_PREFIX)
        || is_temporary(n)
        || STABLE.contains(&n)
        || is_backup_data(n)
        || TALM_DIRS.contains(&n)
        || n == TALM_EXTRAS
}

/// Entries of `dir` that are not part of the backup `kind` describes, nor
/// the lock or a recovery record, nor a file this tool never writes: what a
/// killed run (or a replaced flat or TALM backup) left.
fn garbage(dir: &Path, kind: &Kind) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let n = e.file_name().to_string_lossy().into_owned();
        if RECORDS.contains(&n.as_str()) {
            continue;
        }
        let is_link = lstat(&e.path()).is_some_and(|m| m.file_type().is_symlink());
        let keep = match kind {
            Kind::Generation(g) => {
                n == *g || n == CURRENT || (STABLE.contains(&n.as_str()) && is_link)
            }
            // Only generation dirs and temporary names are garbage beside a
            // flat backup; everything else of it is the backup.
            Kind::Flat | Kind::Empty | Kind::Talm { .. } => {
                !(n.starts_with(GEN_PREFIX) || is_temporary(&n))
            }
            Kind::Damaged(_) => true,
        };
        if !keep && written_by_us(&n) {
            v.push(e.path());
        }
    }
    v.sort();
    Ok(v)
}

/// Before a backup (under the lock, no recovery under way): finish what a
/// killed run left: the stable links of the current generation, then remove
/// old generations, flat leftovers and temporary names. Never touches the
/// current backup.
pub fn prepare(dir: &Path) -> Result<Kind> {
    let kind = inspect(dir)?;
    if let Kind::Generation(_) = kind {
        ensure_links(dir)?;
    }
    let g = garbage(dir, &kind)?;
    for p in &g {
        log::warn!("removing {} left by an earlier backup", p.display());
        remove_entry(p)?;
    }
    if !g.is_empty() {
        // Durability: the removals are on disk before anything new is made.
        fsutil::fsync_dir(dir)?;
    }
    if kind == Kind::Flat {
        return Ok(Kind::Generation(convert_flat(dir)?));
    }
    Ok(kind)
}

/// What [`prepare`] would do in `dir`, read only (`backup --dry-run`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Leftovers {
    /// Entries a killed run left, which it would remove.
    pub remove: Vec<String>,
    /// Stable paths (`etc.tar.zst`, ...) it would make links into `current`.
    pub links: Vec<String>,
    /// Whether it would turn a flat backup into a generation (hard links,
    /// no extra room).
    pub convert_flat: bool,
}

/// What [`prepare`] would remove, link or convert in `dir`. Changes nothing.
pub fn leftovers(dir: &Path) -> Result<Leftovers> {
    let kind = inspect(dir)?;
    if kind == Kind::Empty && lstat(dir).is_none() {
        return Ok(Leftovers::default());
    }
    let mut links = Vec::new();
    if let Kind::Generation(_) = kind {
        for name in STABLE {
            let want = Path::new(CURRENT).join(name);
            if std::fs::read_link(dir.join(name)).ok().as_deref() != Some(want.as_path()) {
                links.push(dir.join(name).display().to_string());
            }
        }
    }
    Ok(Leftovers {
        remove: garbage(dir, &kind)?
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        links,
        convert_flat: kind == Kind::Flat,
    })
}

/// Turn the flat backup into a generation without changing a byte of it:
/// hard links of its files in a new generation dir (no extra room), that
/// dir made current, each documented path replaced by its link (the same
/// files, so every path shows the same backup at every instant), then the
/// flat names removed. Killed before `current` exists: the flat backup and
/// a garbage dir; after: the generation, and what `prepare` finishes.
fn convert_flat(dir: &Path) -> Result<String> {
    fault::point("convert:before");
    let created = std::fs::read_to_string(dir.join(MANIFEST))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["created_unix"].as_i64())
        .unwrap_or_else(fsutil::unix_now);
    let gen = new_generation_name(dir, created);
    let g = dir.join(&gen);
    log::info!(
        "converting the backup in {} into the generation {gen}",
        dir.display()
    );
    std::fs::create_dir(&g).with_context(|| format!("creating {}", g.display()))?;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let n = e.file_name().to_string_lossy().into_owned();
        if [
            LOCK,
            JOURNAL,
            LEGACY_PROGRESS,
            LAST_RECOVERY,
            FAILURES,
            CURRENT,
        ]
        .contains(&n.as_str())
            || n.starts_with(GEN_PREFIX)
            || is_temporary(&n)
        {
            continue;
        }
        link_tree(&e.path(), &g.join(&n))?;
    }
    // Durability: the generation's entries are on disk before it is current.
    fsutil::fsync_dir(&g)?;
    fault::point("convert:linked");
    make_current(dir, &gen)?;
    fault::point("convert:current");
    ensure_links(dir)?;
    let kind = Kind::Generation(gen.clone());
    for (i, p) in garbage(dir, &kind)?.iter().enumerate() {
        remove_entry(p)?;
        if i == 0 {
            fault::point("convert:cleanup");
        }
    }
    fsutil::fsync_dir(dir)?;
    fault::point("convert:done");
    Ok(gen)
}

/// Hard links of `src` (a file, or a dir recursively) at `dst`; symlinks
/// are copied as links. Each new dir is fsynced.
fn link_tree(src: &Path, dst: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::symlink_metadata(src)?;
    if md.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)?;
    } else if md.is_dir() {
        std::fs::create_dir(dst).with_context(|| format!("creating {}", dst.display()))?;
        std::fs::set_permissions(
            dst,
            std::fs::Permissions::from_mode(md.permissions().mode()),
        )?;
        for e in std::fs::read_dir(src)? {
            let e = e?;
            link_tree(&e.path(), &dst.join(e.file_name()))?;
        }
        fsutil::fsync_dir(dst)?;
    } else {
        std::fs::hard_link(src, dst)
            .with_context(|| format!("linking {} to {}", src.display(), dst.display()))?;
    }
    Ok(())
}

/// `current -> gen` by one rename(2), then an fsync of the dir.
fn make_current(dir: &Path, gen: &str) -> Result<()> {
    let tmp = dir.join(CURRENT_TMP);
    remove_entry(&tmp)?;
    std::os::unix::fs::symlink(gen, &tmp).with_context(|| format!("creating {}", tmp.display()))?;
    fault::point("switch:link-made");
    // The switch itself: rename(2) replaces `current` atomically.
    std::fs::rename(&tmp, dir.join(CURRENT))
        .with_context(|| format!("making {gen} the current backup"))?;
    fault::point("switch:renamed");
    // Durability: the new `current` is on disk before anything old goes.
    fsutil::fsync_dir(dir)
}

/// Make every documented path the link `NAME -> current/NAME`. A file (flat
/// format) is replaced by `rename(2)`; a dir (the flat `cluster/`) by
/// `renameat2(RENAME_EXCHANGE)`, after which the old dir is removed. Each
/// path changes in one step: it shows the old or the new backup, never none.
fn ensure_links(dir: &Path) -> Result<()> {
    for name in STABLE {
        let p = dir.join(name);
        let want = Path::new(CURRENT).join(name);
        if std::fs::read_link(&p).ok().as_deref() == Some(want.as_path()) {
            continue;
        }
        let tmp = dir.join(link_tmp(name));
        remove_entry(&tmp)?;
        std::os::unix::fs::symlink(&want, &tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        if lstat(&p).is_some_and(|m| m.is_dir()) {
            let d = std::fs::File::open(dir)?;
            rustix::fs::renameat_with(
                &d,
                tmp.file_name().unwrap(),
                &d,
                name,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .with_context(|| format!("exchanging {} with its link", p.display()))?;
            // Durability: the exchange is on disk before the old dir goes.
            fsutil::fsync_dir(dir)?;
            fault::point(&format!("convert:exchanged:{name}"));
            remove_entry(&tmp)?;
        } else {
            std::fs::rename(&tmp, &p)
                .with_context(|| format!("renaming {} into place", p.display()))?;
        }
        // Durability: the new link is on disk before the next one changes.
        fsutil::fsync_dir(dir)?;
        fault::point(&format!("convert:link:{name}"));
    }
    Ok(())
}

/// Make the complete, fsynced generation `gen` current: one rename of the
/// `current` symlink, fsync of the dir; then the stable links, then the
/// previous generation (or the flat files) removed.
pub fn switch(dir: &Path, gen: &str) -> Result<()> {
    // Durability: the generation's own entries (files fsynced by their
    // writers and by syncfs before the verify) are on disk before it can
    // become current.
    fsutil::fsync_dir(&dir.join(gen))?;
    fault::point("switch:before");
    make_current(dir, gen)?;
    fault::point("switch:current");
    ensure_links(dir)?;
    let kind = Kind::Generation(gen.to_string());
    for (i, p) in garbage(dir, &kind)?.iter().enumerate() {
        remove_entry(p)?;
        if i == 0 {
            fault::point("switch:cleanup");
        }
    }
    fsutil::fsync_dir(dir)?;
    fault::point("switch:done");
    Ok(())
}

/// The records kept beside the generations: the lock, a recovery's
/// journal (ours or today's script's `progress`), the last recovery and
/// the last failures. Never removed with a backup.
pub const RECORDS: [&str; 5] = [LOCK, JOURNAL, LEGACY_PROGRESS, LAST_RECOVERY, FAILURES];

/// The entries of `dir` a backup owns (its generations, `current`, its
/// links and files by name, a flat or TALM backup's files, what a killed run
/// left: [`written_by_us`]), without the records; `foreign`: everything
/// else, which this tool never removes (an admin's files, `lost+found`).
pub fn owned_and_foreign(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut owned, mut foreign) = (Vec::new(), Vec::new());
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok((owned, foreign));
    };
    for e in rd {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let n = e.file_name().to_string_lossy().into_owned();
        if RECORDS.contains(&n.as_str()) {
            continue;
        }
        if written_by_us(&n) {
            owned.push(e.path());
        } else {
            foreign.push(e.path());
        }
    }
    owned.sort();
    foreign.sort();
    Ok((owned, foreign))
}

/// Space-short case only: remove the current backup before the new one is
/// built. It stops being a backup first (the `current` link, or the flat
/// manifest, goes first, fsynced), so a crash leaves no backup, never a
/// partial one that looks complete. Only what the backup owns goes
/// ([`owned_and_foreign`]); the records and every foreign entry stay. The
/// names removed, for the output.
pub fn remove_current(dir: &Path) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    match inspect(dir)? {
        Kind::Generation(_) => {
            remove_entry(&dir.join(CURRENT))?;
            removed.push(CURRENT.to_string());
        }
        Kind::Flat => {
            remove_entry(&dir.join(MANIFEST))?;
            removed.push(MANIFEST.to_string());
        }
        _ => {}
    }
    fsutil::fsync_dir(dir)?;
    fault::point("backup:removed-previous");
    for p in owned_and_foreign(dir)?.0 {
        remove_entry(&p)?;
        removed.push(
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
    }
    fsutil::fsync_dir(dir)?;
    Ok(removed)
}

/// Whether a recovery is under way in `dir`: the record that says so.
pub fn recovery_record(dir: &Path) -> Option<PathBuf> {
    [JOURNAL, LEGACY_PROGRESS]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| lstat(p).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ur-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn what_a_dir_holds() {
        let d = tmp("kinds");
        assert_eq!(inspect(&d.join("none")).unwrap(), Kind::Empty);
        assert_eq!(inspect(&d).unwrap(), Kind::Empty);
        std::fs::write(d.join(LOCK), "").unwrap();
        std::fs::create_dir(d.join(CLUSTER)).unwrap();
        assert_eq!(inspect(&d).unwrap(), Kind::Empty, "an empty cluster/");
        std::fs::write(d.join("etc.tar.zst"), "x").unwrap();
        assert!(matches!(inspect(&d).unwrap(), Kind::Damaged(w) if w.contains("etc.tar.zst")));
        assert_eq!(crate::util::error::exit_code(&current(&d).unwrap_err()), 4);
        std::fs::write(d.join(MANIFEST), "{}").unwrap();
        assert_eq!(inspect(&d).unwrap(), Kind::Flat);
        assert_eq!(current(&d).unwrap(), d);
        // A generation without its manifest: damaged.
        std::fs::create_dir(d.join("gen-1")).unwrap();
        std::os::unix::fs::symlink("gen-1", d.join(CURRENT)).unwrap();
        assert!(matches!(inspect(&d).unwrap(), Kind::Damaged(_)));
        std::fs::write(d.join("gen-1").join(MANIFEST), "{}").unwrap();
        assert_eq!(inspect(&d).unwrap(), Kind::Generation("gen-1".into()));
        // Beside the generation, the flat files are garbage; the lock is not.
        let g = garbage(&d, &Kind::Generation("gen-1".into())).unwrap();
        let names: Vec<_> = g
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["cluster", "etc.tar.zst", "manifest.json"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_current_link_out_of_the_dir_is_damage() {
        let d = tmp("escape");
        std::os::unix::fs::symlink("../elsewhere", d.join(CURRENT)).unwrap();
        assert!(matches!(inspect(&d).unwrap(), Kind::Damaged(_)));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
