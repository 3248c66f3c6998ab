//! `extract`: copy node paths out of the backup, intact entries only.

use crate::archive::{self, SyncOptions};
use crate::node::host::Host;
use crate::store::manifest::Manifest;
use crate::util::error::Fail;
use anyhow::{Context, Result};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Serialize)]
pub struct ExtractStats {
    pub entries: u64,
    /// Device nodes not created (no `--exact`).
    pub skipped_devices: Vec<String>,
    /// Files written without setuid/setgid bits or capabilities (no `--exact`).
    pub stripped: Vec<String>,
}

/// Open `rel` (components below `to`) as a directory, each component
/// resolved from the descriptor of `to` opened first, beneath it and through
/// no symlink (`openat2` with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), created
/// when missing: whoever owns `--to` can swap a directory for a symlink at
/// any moment, and the copy still never leaves `--to` (there is no path
/// checked first and used later).
fn open_beneath(to_fd: BorrowedFd, to: &Path, rel: &str) -> Result<OwnedFd> {
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let mut at = fs::openat(to_fd, c".", flags, Mode::empty())?;
    let mut shown = to.to_path_buf();
    for c in rel.split('/').filter(|c| !c.is_empty()) {
        shown.push(c);
        let name = std::ffi::CString::new(c).context("a NUL byte in a tree's path")?;
        let not_dir = || {
            Fail::Usage(format!(
                "{} exists and is not a directory (a symlink would lead the copy outside {}); nothing was extracted there",
                shown.display(),
                to.display()
            ))
        };
        at = match fs::openat2(&at, name.as_c_str(), flags, Mode::empty(), how) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                match fs::mkdirat(&at, name.as_c_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => {
                        return Err(anyhow::Error::from(e))
                            .with_context(|| format!("creating {}", shown.display()))
                    }
                }
                match fs::openat2(&at, name.as_c_str(), flags, Mode::empty(), how) {
                    Ok(fd) => fd,
                    Err(Errno::LOOP | Errno::NOTDIR | Errno::XDEV) => return Err(not_dir().into()),
                    Err(e) => {
                        return Err(anyhow::Error::from(e))
                            .with_context(|| format!("opening {}", shown.display()))
                    }
                }
            }
            Err(Errno::LOOP | Errno::NOTDIR | Errno::XDEV) => return Err(not_dir().into()),
            Err(e) => {
                return Err(anyhow::Error::from(e))
                    .with_context(|| format!("opening {}", shown.display()))
            }
        };
    }
    Ok(at)
}

/// Whether `rel` exists below the directory `dir` (never through a symlink
/// leaving it; `in_root`: symlinks resolve inside it, as the copy did).
fn exists_beneath(dir: BorrowedFd, rel: &[u8], in_root: bool) -> bool {
    let how = if in_root {
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
    } else {
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
    };
    std::ffi::CString::new(rel).is_ok_and(|c| {
        fs::openat2(
            dir,
            c.as_c_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            how,
        )
        .is_ok()
    })
}

/// Copy node paths out of the backup into `to`, keeping node paths below it.
///
/// Without `exact`, nothing that grants privilege is recreated (device
/// nodes, setuid/setgid bits, file capabilities). A damaged archive gives
/// the entries before the damage; a file whose bytes do not match its
/// recorded sha256 is never left under `to` (written under a temporary
/// name, checked, then renamed), and is named. Everything is written
/// beneath the descriptor of `to`, opened once.
pub fn run(host: &Host, paths: &[PathBuf], to: &Path, exact: bool) -> Result<ExtractStats> {
    let dir = crate::store::current_on(host)?;
    let m = Manifest::load(&dir)?;
    let mut groups: Vec<(&crate::store::manifest::Tree, Vec<Vec<u8>>)> = Vec::new();
    for p in paths {
        let ps = p.to_str().context("paths must be UTF-8")?;
        if !ps.starts_with('/') {
            return Err(Fail::Usage(format!("{ps}: give the absolute path on the node")).into());
        }
        // The most specific tree that holds the path.
        let tree = m
            .trees
            .iter()
            .filter_map(|t| {
                [Some(t.source.as_str()), t.resolved.as_deref()]
                    .into_iter()
                    .flatten()
                    .filter_map(|src| {
                        let rel = if src == "/" {
                            Some(ps.trim_start_matches('/'))
                        } else {
                            ps.strip_prefix(src)
                                .filter(|r| r.is_empty() || r.starts_with('/'))
                                .map(|r| r.trim_start_matches('/'))
                        }?;
                        Some((
                            src.len(),
                            t,
                            if rel.is_empty() {
                                ".".to_string()
                            } else {
                                rel.to_string()
                            },
                        ))
                    })
                    .max_by_key(|x| x.0)
            })
            .max_by_key(|x| x.0)
            .with_context(|| format!("{ps} is in no tree of the backup"))?;
        let (_, t, rel) = tree;
        match groups.iter_mut().find(|(g, _)| g.name == t.name) {
            Some((_, v)) => v.push(rel.into_bytes()),
            None => groups.push((t, vec![rel.into_bytes()])),
        }
    }
    // `--to` as the admin gave it, opened once; all below it by descriptor.
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let to_fd = fs::open(
        to,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", to.display()))?;
    let mut total = 0;
    let mut damaged = Vec::new();
    let mut absent = Vec::new();
    let mut mismatched = Vec::new();
    let mut skipped_devices = Vec::new();
    let mut stripped = Vec::new();
    for (t, only) in groups {
        let archive = dir.join(&t.archive);
        let dest = to.join(t.source.trim_start_matches('/'));
        let wanted = only.clone();
        let dest_fd = open_beneath(to_fd.as_fd(), to, &t.source)?;
        let check_fd = rustix::io::dup(&dest_fd)?;
        let only = if only.iter().any(|o| o == b".") {
            None
        } else {
            Some(only)
        };
        let opts = SyncOptions {
            only,
            in_root: t.source == "/",
            plain: !exact,
            check_files: true,
            ..SyncOptions::default()
        };
        // A damaged archive is read too, up to the damage: each file is
        // checked against its own sha256 before it is renamed into place.
        let problem = archive::recorded_mismatch(&archive, &t.stats.sha256, t.stats.archive_bytes);
        let stop = match archive::sync_tree_at(&archive, dest_fd, &dest, &opts) {
            Ok(st) => {
                total += st.written + st.unchanged;
                skipped_devices.extend(st.skipped_devices);
                stripped.extend(st.stripped);
                mismatched.extend(
                    st.mismatched
                        .iter()
                        .map(|f| format!("{}/{f}", t.source.trim_end_matches('/'))),
                );
                None
            }
            Err(e) if problem.is_some() => Some(format!("{e:#}")),
            Err(e) => return Err(e),
        };
        if let Some(why) = problem {
            damaged.push((t.archive.clone(), why, stop));
        }
        for w in wanted.iter().filter(|w| w.as_slice() != b".") {
            if !exists_beneath(check_fd.as_fd(), w, t.source == "/") {
                absent.push(format!(
                    "{}/{}",
                    t.source.trim_end_matches('/'),
                    String::from_utf8_lossy(w)
                ));
            }
        }
    }
    if !damaged.is_empty() || !mismatched.is_empty() {
        let mut text = String::new();
        for (a, why, stop) in &damaged {
            text.push_str(&format!(
                "the archive {a} is damaged ({why}); the entries before the damage were extracted into {}{}. ",
                to.display(),
                stop.as_ref()
                    .map(|s| format!(", reading stopped at: {s}"))
                    .unwrap_or_default()
            ));
        }
        if !mismatched.is_empty() {
            text.push_str(&format!(
                "Not extracted, their bytes do not match their recorded sha256 (nothing was left under {} in their place): {}. ",
                to.display(),
                mismatched.join(", ")
            ));
        }
        if !absent.is_empty() {
            text.push_str(&format!("Not extracted: {}. ", absent.join(", ")));
        }
        text.push_str(&format!(
            "{total} entries were extracted into {}; nothing else on the node was changed. For the rest, use another copy of the backup (check one with `{}`).",
            to.display(),
            crate::node::host::cmd_in(Path::new("DIR"), "verify")
        ));
        return Err(Fail::Backup(text).into());
    }
    if !absent.is_empty() {
        return Err(anyhow::anyhow!(
            "not in the backup: {}; {} entries were extracted into {}. `{}` copies only what the backup holds (see the tree archives with `zstd -dc {}/<tree>.tar.zst | tar -tvf -`)",
            absent.join(", "),
            total,
            to.display(),
            host.cmd("extract"),
            crate::store::archives_on_node(host).display()
        ));
    }
    Ok(ExtractStats {
        entries: total,
        skipped_devices,
        stripped,
    })
}

/// What was extracted, and what was left out without `--exact`; `dir` is
/// the backup dir as seen on the node (the next command carries it).
pub fn render(stats: &ExtractStats, to: &Path, dir: &Path) -> String {
    let mut s = format!(
        "extracted {} entries into {}\n",
        stats.entries,
        to.display()
    );
    if !stats.skipped_devices.is_empty() || !stats.stripped.is_empty() {
        s.push_str(&format!(
            "left out {} device nodes and the setuid/setgid bits or file capabilities of {} files; to keep them: {}\n",
            stats.skipped_devices.len(),
            stats.stripped.len(),
            crate::node::host::cmd_in(dir, &format!("extract --exact --to {} ...", to.display()))
        ));
    }
    s
}
