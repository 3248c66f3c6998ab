//! Restoring a tree from an archive so that afterwards it equals the archive
//! exactly: unchanged files are left alone, changed and new ones are written
//! beside their final name and renamed into place, extra ones are deleted.
//! Excluded paths and mount points are neither written nor deleted.
//!
//! Every path is opened beneath the tree's top with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)`, and every final component without
//! following it, so a symlink planted in the target (a pod can write under
//! /var/lib/kubelet) never leads a write outside the tree.

use super::fsops::{self, cstr, XattrTarget};
use super::read::{for_each_piece, Reader};
use super::tar::{Header, Kind, Meta};
use super::write::hash_extents;
use anyhow::{bail, Context, Result};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self, AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;
use serde::Serialize;
use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// What restore neither writes nor deletes (rsync `--exclude-from`
    /// semantics, src/archive/exclude.rs).
    pub excludes: super::exclude::Excludes,
    /// Delete what the archive does not hold (restore); off for extract.
    pub delete: bool,
    /// Only these paths and what is below them (extract); None for all.
    pub only: Option<Vec<Vec<u8>>>,
    /// Resolve parent directories inside the top, following symlinks there
    /// (as `chroot` would), and create missing ones: for machine-config
    /// files restored over `/`, whose parents the archive does not hold.
    pub in_root: bool,
    /// Leave out what grants privilege (extract without `--exact`): no
    /// device nodes, no setuid/setgid bits, no file capabilities.
    pub plain: bool,
    /// Hash each file as it is written and rename it into place only when
    /// it matches its recorded sha256 (extract, which may read a damaged
    /// archive up to the damage); one that does not is removed and named in
    /// `SyncStats::mismatched`.
    pub check_files: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncStats {
    pub entries: u64,
    pub written: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub excluded: u64,
    pub skipped_mounts: Vec<String>,
    /// Device nodes not created (`plain`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_devices: Vec<String>,
    /// Files written without their setuid/setgid bits or capabilities (`plain`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stripped: Vec<String>,
    /// Paths left alone because a directory on the way changed (to a
    /// symlink, say) while the tree was restored: a warning each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Files not written because their bytes do not match their recorded
    /// sha256 (`check_files`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatched: Vec<String>,
}

/// Fault injection for tests: stop (as if killed) after this many entries.
fn crash_after() -> Option<u64> {
    crate::util::fault::sync_crash_after()
}

/// A relative path cut at `/` into pieces of at most `max` bytes (a single
/// component is at most 255).
pub(crate) fn path_pieces(rel: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut last_slash = None;
    for (i, &b) in rel.iter().enumerate() {
        if b == b'/' {
            if i - start > max {
                if let Some(j) = last_slash {
                    out.push(&rel[start..j]);
                    start = j + 1;
                }
            }
            last_slash = Some(i);
        }
    }
    if rel.len() - start > max {
        if let Some(j) = last_slash.filter(|&j| j > start) {
            out.push(&rel[start..j]);
            start = j + 1;
        }
    }
    out.push(&rel[start..]);
    out
}

pub fn matches_prefix(path: &[u8], prefix: &[u8]) -> bool {
    path == prefix
        || (path.len() > prefix.len() && path.starts_with(prefix) && path[prefix.len()] == b'/')
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b".", path),
    }
}

/// Whether `only` (None: everything) selects `path`: it or a path below
/// it, and the directories on the way to one.
fn wanted(only: &Option<Vec<Vec<u8>>>, path: &[u8], kind: Kind) -> bool {
    match only {
        None => true,
        Some(only) => only.iter().any(|o| {
            matches_prefix(path, o)
                || (kind == Kind::Dir && (path == b"." || matches_prefix(o, path)))
        }),
    }
}

/// A path in a message or a report: long ones with their middle cut out.
fn show(p: &[u8]) -> String {
    super::validate::short(p)
}

fn tmp_name(name: &[u8]) -> CString {
    if name.len() < 200 {
        cstr(&[b".ur-tmp.", name].concat())
    } else {
        use sha2::Digest;
        cstr(format!(".ur-tmp.{}", hex::encode(&sha2::Sha256::digest(name)[..16])).as_bytes())
    }
}

/// A directory of the archive being restored: what the archive holds in it
/// so far (names only), and its metadata, applied when it is done. The
/// restore keeps one per level of the directory it is in, never one per
/// path of the tree (issue 23: a set of every full path took 2 GB for a
/// 296 KB archive of 400 levels of 250-byte names).
struct Frame {
    /// The length of [`Syncer::cur`] before this directory's name was added.
    up: usize,
    /// None for a directory without an entry of its own before its contents.
    meta: Option<Meta>,
    /// The names of the entries the archive holds directly in it.
    names: HashSet<Vec<u8>>,
    /// Whether what the archive does not hold in it is deleted when it is
    /// done: only for a directory entered once, from its own entry.
    prune: bool,
}

/// Why a directory of the target was not opened.
enum Skip {
    /// It lies below a mount point.
    Mount,
    /// A directory on the way is no longer one (it changed while restored).
    Changed,
}

struct Syncer {
    prefetch: Option<super::prefetch::Prefetch>,
    root: OwnedFd,
    dev: u64,
    opts: SyncOptions,
    /// The directories from the top to the one being restored.
    stack: Vec<Frame>,
    /// The path of the innermost of them (`.` for the top).
    cur: Vec<u8>,
    /// The top, for messages.
    target: std::path::PathBuf,
    stats: SyncStats,
    buf: Vec<u8>,
    cache: Option<(Vec<u8>, OwnedFd)>,
    /// With `only`: the regular files a wanted hard link names but that
    /// are not wanted themselves, and, once written, the name at the top
    /// they were written under (removed at the end): the link's data.
    link_data: std::collections::HashMap<Vec<u8>, Option<CString>>,
}

/// Make the directory `target` equal the archive (which must already have
/// been verified by the caller or is verified here when `verify` is set).
///
/// A target file with more links than the file had at backup is never
/// changed in place: another name of it may lie outside the tree.
pub fn sync_tree(archive: &Path, target: &Path, opts: &SyncOptions) -> Result<SyncStats> {
    std::fs::create_dir_all(target).with_context(|| format!("creating {}", target.display()))?;
    let root = fs::open(
        target,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", target.display()))?;
    let prefetch = super::prefetch::Prefetch::start(target);
    sync_at(archive, root, target, opts, Some(prefetch))
}

/// [`sync_tree`] into the directory `root` (an O_PATH descriptor opened by
/// the caller, who resolved it without a window for a swap), named `target`
/// in messages only.
pub fn sync_tree_at(
    archive: &Path,
    root: OwnedFd,
    target: &Path,
    opts: &SyncOptions,
) -> Result<SyncStats> {
    sync_at(archive, root, target, opts, None)
}

/// With `only`, the regular files that a wanted hard link names but that
/// are not wanted themselves (one pass over the headers): their data is
/// written for the link (`extract` of a second name without its first).
fn link_data(
    archive: &Path,
    opts: &SyncOptions,
) -> Result<std::collections::HashMap<Vec<u8>, Option<CString>>> {
    let mut out = std::collections::HashMap::new();
    if opts.only.is_none() {
        return Ok(out);
    }
    let mut r = Reader::open(archive)?;
    // Up to the damage, if any: the sync reads that far too.
    while let Ok(Some(h)) = r.next_header() {
        if h.kind == Kind::HardLink
            && wanted(&opts.only, &h.path, h.kind)
            && !wanted(&opts.only, &h.meta.link, Kind::File)
        {
            out.insert(h.meta.link.clone(), None);
        }
    }
    Ok(out)
}

fn sync_at(
    archive: &Path,
    root: OwnedFd,
    target: &Path,
    opts: &SyncOptions,
    prefetch: Option<super::prefetch::Prefetch>,
) -> Result<SyncStats> {
    // A damaged archive read up to the damage (extract) still gives the
    // links before it their data.
    let link_data = link_data(archive, opts)?;
    let dev = fs::fstat(&root)?.st_dev;
    let mut s = Syncer {
        root,
        dev,
        opts: opts.clone(),
        stack: vec![Frame {
            up: 0,
            meta: None,
            names: HashSet::new(),
            prune: true,
        }],
        cur: b".".to_vec(),
        target: target.to_path_buf(),
        stats: SyncStats::default(),
        buf: vec![0u8; 256 << 10],
        cache: None,
        prefetch,
        link_data,
    };
    let mut r = Reader::open(archive)?;
    let crash = crash_after();
    let read = (|| {
        while let Some(h) = r.next_header()? {
            if crash == Some(s.stats.entries) {
                std::process::exit(137);
            }
            s.stats.entries += 1;
            s.entry(&mut r, &h)
                .with_context(|| format!("restoring {}/{}", target.display(), show(&h.path)))?;
        }
        anyhow::Ok(())
    })();
    // The data written only for hard links goes, whatever happened.
    for staged in s.link_data.values().flatten() {
        let _ = fs::unlinkat(&s.root, staged, AtFlags::empty());
    }
    read?;
    s.cache = None;
    s.prefetch = None;
    while !s.stack.is_empty() {
        s.close()?;
    }
    let top = fs::openat(
        &s.root,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if !crate::util::fault::skip_syncs() {
        fs::syncfs(&top).with_context(|| format!("syncfs of {}", target.display()))?;
    }
    Ok(s.stats)
}

impl Syncer {
    /// Make the innermost open directory the parent of `path`, closing the
    /// directories the archive has left, and record `path`'s name in it.
    /// A directory the archive enters without its own entry (or again,
    /// after leaving it) is opened without metadata and never pruned: what
    /// it holds was not all seen together.
    fn place(&mut self, path: &[u8]) -> Result<()> {
        if path == b"." {
            return Ok(());
        }
        let (parent, name) = split(path);
        while self.stack.len() > 1 && !matches_prefix(parent, &self.cur) {
            self.close()?;
        }
        if parent != self.cur.as_slice() {
            let skip = if self.cur == b"." {
                0
            } else {
                self.cur.len() + 1
            };
            let rest = parent[skip..].to_vec();
            for comp in rest.split(|&b| b == b'/') {
                self.open_frame(comp, None, false);
            }
        }
        self.top().names.insert(name.to_vec());
        Ok(())
    }

    fn top(&mut self) -> &mut Frame {
        self.stack
            .last_mut()
            .expect("the top is open until the end")
    }

    /// Enter the directory `name` of the innermost one.
    fn open_frame(&mut self, name: &[u8], meta: Option<Meta>, prune: bool) {
        self.top().names.insert(name.to_vec());
        // 0: back to the top, `.`, when this one is done.
        let up = if self.cur == b"." { 0 } else { self.cur.len() };
        if self.cur == b"." {
            self.cur.clear();
        } else {
            self.cur.push(b'/');
        }
        self.cur.extend_from_slice(name);
        self.stack.push(Frame {
            up,
            meta,
            names: HashSet::new(),
            prune,
        });
    }

    /// The innermost directory is done: delete what the archive does not
    /// hold in it (restore), then set its metadata (writing inside it
    /// changes its mtime, so this comes last). Its state is let go of.
    fn close(&mut self) -> Result<()> {
        let f = self.stack.pop().expect("a directory is open");
        let path = std::mem::take(&mut self.cur);
        let top = path == b".";
        let shown = format!("{}/{}", self.target.display(), show(&path));
        if self.opts.delete && f.prune {
            match self.open_dir_read(&path)? {
                Ok(fd) => drop(
                    self.prune(fd, &path, 0, Some(&f.names))
                        .with_context(|| format!("removing extra files under {shown}"))?,
                ),
                Err(Skip::Mount) => {}
                Err(Skip::Changed) => self.changed(&path),
            }
        }
        if let Some(meta) = &f.meta {
            crate::util::fault::flip_dir("meta", self.root.as_fd(), &path);
            if top {
                let fd = fs::openat(
                    &self.root,
                    c".",
                    OFlags::PATH | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                apply_meta_fd(fd.as_fd(), false, None, Kind::Dir, meta)?;
            } else {
                let (parent, name) = split(&path);
                match self.open_dir(parent)? {
                    Ok(pfd) => match self.open_kind(pfd.as_fd(), &cstr(name), Kind::Dir) {
                        Ok(fd) => apply_meta_fd(
                            fd.as_fd(),
                            false,
                            Some((pfd.as_fd(), &cstr(name))),
                            Kind::Dir,
                            meta,
                        )
                        .with_context(|| format!("setting metadata of {shown}"))?,
                        Err(_) => self.changed(&path),
                    },
                    Err(Skip::Mount) => {}
                    Err(Skip::Changed) => self.changed(&path),
                }
            }
        }
        self.cur = path;
        if f.up == 0 {
            self.cur = b".".to_vec();
        } else {
            self.cur.truncate(f.up);
        }
        Ok(())
    }

    /// A path left alone because a directory on the way changed type while
    /// the tree was restored (a pod can do that under /var/lib/kubelet).
    fn changed(&mut self, path: &[u8]) {
        log::warn!(
            "{}: a directory on the way changed (to a symlink?) while it was restored; left alone",
            show(path)
        );
        self.stats.changed.push(show(path));
    }

    /// A directory beneath the top, open for reading (for the delete pass).
    fn open_dir_read(&mut self, rel: &[u8]) -> Result<Result<OwnedFd, Skip>> {
        if rel == b"." {
            return Ok(Ok(fs::openat(
                &self.root,
                c".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?));
        }
        let (parent, name) = split(rel);
        let pfd = match self.open_dir(parent)? {
            Ok(fd) => fd,
            Err(skip) => return Ok(Err(skip)),
        };
        match fsops::open_read(pfd.as_fd(), &cstr(name), true) {
            Ok(fd) if fs::fstat(&fd)?.st_dev == self.dev => Ok(Ok(fd)),
            Ok(_) => Ok(Err(Skip::Mount)),
            Err(Errno::LOOP | Errno::NOTDIR | Errno::NOENT) => Ok(Err(Skip::Changed)),
            Err(e) => Err(e).with_context(|| format!("opening {}", show(rel))),
        }
    }

    fn excluded(&self, path: &[u8], is_dir: bool) -> bool {
        self.opts.excludes.excludes(path, is_dir)
    }

    fn wanted(&self, path: &[u8], kind: Kind) -> bool {
        wanted(&self.opts.only, path, kind)
    }

    /// A directory beneath the top, never through a symlink or a mount;
    /// the reason when the path lies below a mount point or a directory on
    /// the way is no longer one.
    fn open_dir(&mut self, rel: &[u8]) -> Result<Result<OwnedFd, Skip>> {
        if self.opts.in_root && rel != b"." {
            return self.open_dir_in_root(rel).map(Ok);
        }
        if rel == b"." {
            return Ok(Ok(fs::openat(
                &self.root,
                c".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?));
        }
        // Paths longer than PATH_MAX are resolved a piece at a time, each
        // piece beneath the directory the previous one reached (entry paths
        // were validated: no `..`, so "beneath" holds for the whole path).
        let mut at: Option<OwnedFd> = None;
        for piece in path_pieces(rel, 3072) {
            let from = match &at {
                Some(fd) => fd.as_fd(),
                None => self.root.as_fd(),
            };
            let r = fs::openat2(
                from,
                cstr(piece).as_c_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::empty(),
                ResolveFlags::BENEATH
                    | ResolveFlags::NO_SYMLINKS
                    | ResolveFlags::NO_MAGICLINKS
                    | ResolveFlags::NO_XDEV,
            );
            at = Some(match r {
                Ok(fd) => fd,
                // With `..` refused by the reader, only a mount point
                // crossed gives EXDEV here, never a path leaving the tree.
                Err(Errno::XDEV) => return Ok(Err(Skip::Mount)),
                // A directory on the way is now a symlink or a file: the
                // pass skips what lies below it, with a warning.
                Err(Errno::LOOP | Errno::NOTDIR) => return Ok(Err(Skip::Changed)),
                Err(e) => bail!("cannot open directory {} beneath the top: {e}", show(rel)),
            });
        }
        Ok(Ok(at.expect("a path has a piece")))
    }

    fn open_dir_in_root(&mut self, rel: &[u8]) -> Result<OwnedFd> {
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut at = fs::openat(&self.root, c".", flags, Mode::empty())?;
        let mut sofar: Vec<u8> = Vec::new();
        for comp in rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            if !sofar.is_empty() {
                sofar.push(b'/');
            }
            sofar.extend_from_slice(comp);
            let c = cstr(&sofar);
            at = match fs::openat2(&self.root, c.as_c_str(), flags, Mode::empty(), how) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    fs::mkdirat(&at, cstr(comp).as_c_str(), Mode::from_raw_mode(0o755))?;
                    fs::openat2(&self.root, c.as_c_str(), flags, Mode::empty(), how)?
                }
                Err(e) => bail!("cannot open directory {}: {e}", show(&sofar)),
            };
        }
        Ok(at)
    }

    fn parent_fd(&mut self, parent: &[u8]) -> Result<Result<BorrowedFd<'_>, Skip>> {
        let hit = matches!(&self.cache, Some((p, _)) if p == parent);
        if !hit {
            self.cache = None;
            match self.open_dir(parent)? {
                Ok(fd) => self.cache = Some((parent.to_vec(), fd)),
                Err(skip) => return Ok(Err(skip)),
            }
        }
        Ok(Ok(self.cache.as_ref().expect("cached").1.as_fd()))
    }

    /// Record an entry not restored for `skip`.
    fn skipped(&mut self, path: &[u8], skip: Skip) {
        match skip {
            Skip::Mount => self.stats.skipped_mounts.push(show(path)),
            Skip::Changed => self.changed(path),
        }
    }

    fn entry(&mut self, r: &mut Reader, h: &Header) -> Result<()> {
        if self.opts.plain {
            if matches!(h.kind, Kind::Char | Kind::Block) {
                if self.wanted(&h.path, h.kind) && !self.excluded(&h.path, h.kind == Kind::Dir) {
                    self.stats
                        .skipped_devices
                        .push(super::validate::short(&h.path));
                }
                return Ok(());
            }
            let caps = |x: &(Vec<u8>, Vec<u8>)| x.0 == b"security.capability";
            if h.meta.mode & 0o6000 != 0 || h.meta.xattrs.iter().any(caps) {
                let mut h = h.clone();
                h.meta.mode &= !0o6000;
                h.meta.xattrs.retain(|x| !caps(x));
                if self.wanted(&h.path, h.kind) && !self.excluded(&h.path, h.kind == Kind::Dir) {
                    self.stats.stripped.push(super::validate::short(&h.path));
                }
                return self.entry_as_is(r, &h);
            }
        }
        self.entry_as_is(r, h)
    }

    fn entry_as_is(&mut self, r: &mut Reader, h: &Header) -> Result<()> {
        let path = h.path.as_slice();
        if self.excluded(path, h.kind == Kind::Dir) {
            self.stats.excluded += 1;
            return Ok(());
        }
        if !self.wanted(path, h.kind) {
            if h.kind == Kind::File && self.link_data.contains_key(path) {
                // Only a hard link to it is wanted: its data, at the top
                // under a temporary name, for the link (removed at the end).
                let staged = cstr(
                    format!(
                        ".ur-tmp.link.{}",
                        hex::encode(
                            &sha2::Digest::finalize(
                                <sha2::Sha256 as sha2::Digest>::new_with_prefix(path)
                            )[..16]
                        )
                    )
                    .as_bytes(),
                );
                let top = fs::openat(
                    &self.root,
                    c".",
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let existing = fsops::lstat_at(top.as_fd(), &staged).ok();
                if self.write_file(r, h, top.as_fd(), &staged, existing.as_ref())? {
                    self.link_data.insert(path.to_vec(), Some(staged));
                }
            }
            return Ok(());
        }
        self.place(path)?;
        if path == b"." {
            self.stack[0].meta = Some(h.meta.clone());
            return Ok(());
        }
        let (parent, name) = split(path);
        let parent = parent.to_vec();
        let name = cstr(name);
        crate::util::fault::flip_dir("write", self.root.as_fd(), &parent);
        let pfd = match self.parent_fd(&parent)? {
            Ok(fd) => rustix::io::dup(fd)?,
            Err(skip) => {
                self.skipped(path, skip);
                return Ok(());
            }
        };
        let pfd = pfd.as_fd();
        let existing = match fsops::lstat_at(pfd, &name) {
            Ok(st) => Some(st),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(e.into()),
        };
        let ekind = existing.as_ref().and_then(fsops::kind_of);
        match h.kind {
            Kind::Dir => {
                match (&existing, ekind) {
                    (Some(st), Some(Kind::Dir)) => {
                        if st.st_dev != self.dev {
                            self.stats.skipped_mounts.push(show(path));
                            return Ok(());
                        }
                        // A mount point on the same device type is caught by
                        // openat2(RESOLVE_NO_XDEV) for its children.
                    }
                    (Some(st), _) => {
                        self.remove(pfd, &name, st)?;
                        fs::mkdirat(pfd, &name, Mode::from_raw_mode(0o700))?;
                        self.stats.written += 1;
                    }
                    (None, _) => {
                        fs::mkdirat(pfd, &name, Mode::from_raw_mode(0o700))?;
                        self.stats.written += 1;
                    }
                }
                self.open_frame(name.to_bytes(), Some(h.meta.clone()), true);
            }
            Kind::File => {
                if let (Some(st), Some(p)) = (&existing, &self.prefetch) {
                    if ekind == Some(Kind::File) {
                        p.consumed(st.st_size as u64);
                    }
                }
                if let (Some(st), Some(Kind::File)) = (&existing, ekind) {
                    let names = u64::from(h.meta.nlink.max(1));
                    if st.st_nlink <= names && st.st_size as u64 == h.meta.size {
                        crate::util::fault::swap_fifo(pfd, &name);
                        if let Some(fd) = self.same_content(pfd, &name, &h.meta)? {
                            // Another name of this inode may lie outside the
                            // tree (a pod's hard link to a host file, issue
                            // 23): its metadata is changed in place only when
                            // this is its one name; else it is replaced.
                            let st = fs::fstat(&fd)?;
                            let x = XattrTarget::Fd(fd.as_fd());
                            if st.st_nlink == 1 || meta_is(&st, &x, Kind::File, &h.meta)? {
                                apply_meta_fd(fd.as_fd(), true, None, Kind::File, &h.meta)?;
                                self.stats.unchanged += 1;
                                return Ok(());
                            }
                        }
                    }
                }
                self.write_file(r, h, pfd, &name, existing.as_ref())?;
            }
            Kind::Symlink => {
                if let (Some(_), Some(Kind::Symlink)) = (&existing, ekind) {
                    let cur = fs::readlinkat(pfd, &name, Vec::new())?;
                    if cur.as_bytes() == h.meta.link.as_slice()
                        && self.apply_meta_unshared(pfd, &name, Kind::Symlink, &h.meta)?
                    {
                        self.stats.unchanged += 1;
                        return Ok(());
                    }
                }
                let tmp = tmp_name(name.to_bytes());
                let _ = fs::unlinkat(pfd, &tmp, AtFlags::empty());
                fs::symlinkat(cstr(&h.meta.link).as_c_str(), pfd, &tmp)?;
                self.apply_meta(pfd, &tmp, Kind::Symlink, &h.meta)?;
                self.replace(pfd, &tmp, &name, existing.as_ref())?;
            }
            Kind::HardLink => {
                if self.excluded(&h.meta.link, false) {
                    bail!("hard link to excluded path {}", show(&h.meta.link));
                }
                let (sp, sn) = match self.link_data.get(&h.meta.link) {
                    Some(Some(staged)) => (&b"."[..], staged.clone()),
                    _ => {
                        let (sp, sn) = split(&h.meta.link);
                        (sp, cstr(sn))
                    }
                };
                let sfd = match self.open_dir(sp)? {
                    Ok(fd) => fd,
                    Err(skip) => {
                        self.skipped(path, skip);
                        return Ok(());
                    }
                };
                let src = fsops::lstat_at(sfd.as_fd(), &sn).with_context(|| {
                    format!("hard link target {} is missing", show(&h.meta.link))
                })?;
                if let Some(st) = &existing {
                    if st.st_ino == src.st_ino && st.st_dev == src.st_dev {
                        self.stats.unchanged += 1;
                        return Ok(());
                    }
                }
                let tmp = tmp_name(name.to_bytes());
                let _ = fs::unlinkat(pfd, &tmp, AtFlags::empty());
                fs::linkat(sfd.as_fd(), &sn, pfd, &tmp, AtFlags::empty())?;
                self.replace(pfd, &tmp, &name, existing.as_ref())?;
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                let dev = fs::makedev(h.meta.rdev_major, h.meta.rdev_minor);
                if let Some(st) = &existing {
                    if ekind == Some(h.kind)
                        && (h.kind == Kind::Fifo || st.st_rdev == dev)
                        && self.apply_meta_unshared(pfd, &name, h.kind, &h.meta)?
                    {
                        self.stats.unchanged += 1;
                        return Ok(());
                    }
                }
                let tmp = tmp_name(name.to_bytes());
                let _ = fs::unlinkat(pfd, &tmp, AtFlags::empty());
                let ft = match h.kind {
                    Kind::Char => fs::FileType::CharacterDevice,
                    Kind::Block => fs::FileType::BlockDevice,
                    _ => fs::FileType::Fifo,
                };
                fs::mknodat(pfd, &tmp, ft, Mode::from_raw_mode(0o600), dev)?;
                self.apply_meta(pfd, &tmp, h.kind, &h.meta)?;
                self.replace(pfd, &tmp, &name, existing.as_ref())?;
            }
        }
        Ok(())
    }

    /// Write a file entry's data beside `name` and rename it into place;
    /// false when `check_files` found it does not match its sha256 (then
    /// nothing is left in place of it).
    fn write_file(
        &mut self,
        r: &mut Reader,
        h: &Header,
        pfd: BorrowedFd,
        name: &CStr,
        existing: Option<&fs::Stat>,
    ) -> Result<bool> {
        let tmp = tmp_name(name.to_bytes());
        let create = || {
            fs::openat(
                pfd,
                &tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        };
        let fd = match create() {
            // Left by a crash: start that file over.
            Err(Errno::EXIST) => {
                fs::unlinkat(pfd, &tmp, AtFlags::empty())?;
                create()?
            }
            r => r?,
        };
        let mut buf = std::mem::take(&mut self.buf);
        let mut hasher = self
            .opts
            .check_files
            .then(<sha2::Sha256 as sha2::Digest>::new);
        let mut pos = 0u64;
        let res = for_each_piece(r, h, &mut buf, |off, data| {
            if let Some(hs) = hasher.as_mut() {
                super::write::hash_zeros(hs, off - pos);
                sha2::Digest::update(hs, data);
                pos = off + data.len() as u64;
            }
            let mut done = 0;
            while done < data.len() {
                done += rustix::io::pwrite(&fd, &data[done..], off + done as u64)?;
            }
            Ok(())
        });
        self.buf = buf;
        if let Err(e) = res {
            let _ = fs::unlinkat(pfd, &tmp, AtFlags::empty());
            return Err(e);
        }
        if h.meta.sparse.is_some() {
            // A hole at the end is not written: set the length.
            fs::ftruncate(&fd, h.meta.size)?;
        }
        if let Some(mut hs) = hasher {
            super::write::hash_zeros(&mut hs, h.meta.size.saturating_sub(pos));
            let got: [u8; 32] = sha2::Digest::finalize(hs).into();
            if h.meta.sha256 != Some(got) {
                drop(fd);
                fs::unlinkat(pfd, &tmp, AtFlags::empty())?;
                self.stats.mismatched.push(show(&h.path));
                return Ok(false);
            }
        }
        apply_meta_fd(fd.as_fd(), true, None, Kind::File, &h.meta)?;
        drop(fd);
        self.replace(pfd, &tmp, name, existing)?;
        Ok(true)
    }

    /// Rename `tmp` over `name`, removing a directory that stands there.
    fn replace(
        &mut self,
        pfd: BorrowedFd,
        tmp: &CStr,
        name: &CStr,
        existing: Option<&fs::Stat>,
    ) -> Result<()> {
        if let Some(st) = existing {
            if fsops::kind_of(st) == Some(Kind::Dir) {
                self.remove(pfd, name, st)?;
            }
        }
        fs::renameat(pfd, tmp, pfd, name)?;
        self.stats.written += 1;
        Ok(())
    }

    /// The target file, open, when its content equals the archived one.
    fn same_content(
        &mut self,
        pfd: BorrowedFd,
        name: &CStr,
        meta: &Meta,
    ) -> Result<Option<OwnedFd>> {
        let Some(want) = meta.sha256 else {
            return Ok(None);
        };
        let fd = fsops::open_read(pfd, name, false)?;
        let st = fs::fstat(&fd)?;
        if fsops::kind_of(&st) != Some(Kind::File) || st.st_size as u64 != meta.size {
            return Ok(None);
        }
        let size = st.st_size as u64;
        let ext = if (st.st_blocks as u64) * 512 >= size {
            vec![(0, size)]
        } else {
            fsops::extents(fd.as_fd(), size)?
        };
        let same = hash_extents(fd.as_fd(), &ext, size, &mut self.buf)? == want;
        Ok(same.then_some(fd))
    }

    fn apply_meta(&self, pfd: BorrowedFd, name: &CStr, kind: Kind, meta: &Meta) -> Result<()> {
        let fd = self.open_kind(pfd, name, kind)?;
        apply_meta_fd(fd.as_fd(), false, Some((pfd, name)), kind, meta)
    }

    /// The entry `name`, O_PATH, never through a symlink; of kind `kind`.
    fn open_kind(&self, pfd: BorrowedFd, name: &CStr, kind: Kind) -> Result<OwnedFd> {
        let fd = fs::openat(
            pfd,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = fs::fstat(&fd)?;
        if fsops::kind_of(&st) != Some(kind) {
            bail!(
                "{} changed type while being restored",
                name.to_string_lossy()
            );
        }
        Ok(fd)
    }

    /// Apply `meta` to an existing entry (the "unchanged" path) unless its
    /// inode has other names and would change: another name may lie outside
    /// the tree (issue 23). False: nothing was changed; replace the entry.
    fn apply_meta_unshared(
        &self,
        pfd: BorrowedFd,
        name: &CStr,
        kind: Kind,
        meta: &Meta,
    ) -> Result<bool> {
        let fd = self.open_kind(pfd, name, kind)?;
        let st = fs::fstat(&fd)?;
        if st.st_nlink > 1 {
            let path = fsops::proc_at(pfd, name);
            let proc = fsops::proc_fd(fd.as_fd());
            let x = match kind {
                Kind::Symlink => XattrTarget::Path(&path),
                _ => XattrTarget::Follow(&proc),
            };
            if !meta_is(&st, &x, kind, meta)? {
                return Ok(false);
            }
        }
        apply_meta_fd(fd.as_fd(), false, Some((pfd, name)), kind, meta)?;
        Ok(true)
    }

    /// Remove an entry; a directory with all below it, never crossing into a
    /// mount (a mount point is left in place and reported).
    fn remove(&mut self, pfd: BorrowedFd, name: &CStr, st: &fs::Stat) -> Result<()> {
        if fsops::kind_of(st) != Some(Kind::Dir) {
            fs::unlinkat(pfd, name, AtFlags::empty())
                .with_context(|| format!("removing {}", show(name.to_bytes())))?;
            return Ok(());
        }
        if st.st_dev != self.dev {
            self.stats.skipped_mounts.push(show(name.to_bytes()));
            bail!(
                "{} is a mount point; not removing it",
                show(name.to_bytes())
            );
        }
        let dfd = match fsops::open_read(pfd, name, true) {
            Ok(fd) => fd,
            // No longer a directory (a symlink now, say): the name goes.
            Err(Errno::LOOP | Errno::NOTDIR) => {
                return fs::unlinkat(pfd, name, AtFlags::empty())
                    .with_context(|| format!("removing {}", show(name.to_bytes())));
            }
            Err(e) => return Err(e.into()),
        };
        drop(self.empty_dir(dfd, 0)?);
        fs::unlinkat(pfd, name, AtFlags::REMOVEDIR)
            .with_context(|| format!("removing directory {}", show(name.to_bytes())))?;
        Ok(())
    }

    /// Remove all below the directory `dir` (owned, and given back; below
    /// [`fsops::HELD_LEVELS`] let go of while a subdirectory is emptied).
    fn empty_dir(&mut self, dir: OwnedFd, depth: usize) -> Result<OwnedFd> {
        let mut held = Some(dir);
        for child in fsops::list_dir(held.as_ref().expect("held").as_fd())? {
            let d = held.as_ref().expect("held between entries");
            let cst = fsops::lstat_at(d.as_fd(), &child)?;
            if fsops::kind_of(&cst) != Some(Kind::Dir) {
                fs::unlinkat(d, &child, AtFlags::empty())
                    .with_context(|| format!("removing {}", show(child.to_bytes())))?;
                continue;
            }
            if cst.st_dev != self.dev {
                self.stats.skipped_mounts.push(show(child.to_bytes()));
                bail!(
                    "{} is a mount point; not removing it",
                    show(child.to_bytes())
                );
            }
            let sub = fsops::open_read(d.as_fd(), &child, true)?;
            fsops::descend(
                &mut held,
                sub,
                depth,
                || format!("returning from {}", show(child.to_bytes())),
                |sub| Ok(((), self.empty_dir(sub, depth + 1)?)),
            )?;
            let d = held.as_ref().expect("held again");
            fs::unlinkat(d, &child, AtFlags::REMOVEDIR)
                .with_context(|| format!("removing directory {}", show(child.to_bytes())))?;
        }
        Ok(held.expect("held at the end"))
    }

    /// Delete what the archive did not hold in `dir` (owned, given back;
    /// below [`fsops::HELD_LEVELS`] let go of while a subdirectory is
    /// pruned): `names` are the entries it holds there (None: none, below a
    /// directory it does not hold). A directory it holds was pruned when the
    /// restore left it.
    fn prune(
        &mut self,
        dir: OwnedFd,
        rel: &[u8],
        depth: usize,
        names: Option<&HashSet<Vec<u8>>>,
    ) -> Result<OwnedFd> {
        let mut held = Some(dir);
        for (name, ftype) in fsops::list_dir_typed(held.as_ref().expect("held").as_fd())? {
            let dfd = held.as_ref().expect("held between entries");
            let dir = dfd.as_fd();
            let path = if rel == b"." {
                name.to_bytes().to_vec()
            } else {
                [rel, b"/", name.to_bytes()].concat()
            };
            let dir_hint = match ftype {
                Some(t) => t == fs::FileType::Directory,
                None => fsops::lstat_at(dir, &name)
                    .is_ok_and(|st| fsops::kind_of(&st) == Some(Kind::Dir)),
            };
            if self.excluded(&path, dir_hint) {
                continue;
            }
            let seen = names.is_some_and(|n| n.contains(name.to_bytes()));
            // A seen entry that is not a directory needs no look: d_type says.
            if seen && ftype.is_some_and(|t| t != fs::FileType::Directory) {
                continue;
            }
            let st = match fsops::lstat_at(dir, &name) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            let is_dir = fsops::kind_of(&st) == Some(Kind::Dir);
            if is_dir && st.st_dev != self.dev {
                if !seen {
                    self.stats.skipped_mounts.push(show(&path));
                }
                continue;
            }
            if !seen {
                if is_dir && self.holds_mount(dir, &name)? {
                    self.stats.skipped_mounts.push(show(&path));
                    continue;
                }
                if is_dir && !self.opts.excludes.is_empty() {
                    // As rsync --delete: what the excludes protect below a
                    // deleted directory stays, and so does the directory.
                    let sub = match fsops::open_read(dir, &name, true) {
                        Ok(sub) => sub,
                        Err(Errno::LOOP | Errno::NOTDIR | Errno::NOENT) => {
                            self.changed(&path);
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    self.prune_below(&mut held, sub, rel, &path, depth)?;
                    let dir = held.as_ref().expect("held after the subdirectory").as_fd();
                    match fs::unlinkat(dir, &name, AtFlags::REMOVEDIR) {
                        Ok(()) => self.stats.deleted += 1,
                        Err(Errno::NOTEMPTY) => {}
                        Err(e) => {
                            return Err(e).with_context(|| format!("removing {}", show(&path)))
                        }
                    }
                    continue;
                }
                self.remove(dir, &name, &st)
                    .with_context(|| format!("removing {}", show(&path)))?;
                self.stats.deleted += 1;
            }
            // A directory the archive holds was pruned when it was done.
        }
        Ok(held.expect("held at the end"))
    }

    /// Prune `sub`, the subdirectory `path` of the directory `rel` held in
    /// `*held` at `depth` (let go of and taken back as `fsops::descend` does).
    fn prune_below(
        &mut self,
        held: &mut Option<OwnedFd>,
        sub: OwnedFd,
        rel: &[u8],
        path: &[u8],
        depth: usize,
    ) -> Result<()> {
        fsops::descend(
            held,
            sub,
            depth,
            || format!("returning to {}", show(rel)),
            |sub| Ok(((), self.prune(sub, path, depth + 1, None)?)),
        )
    }

    /// Whether a directory has a mount point somewhere below it.
    fn holds_mount(&self, dir: BorrowedFd, name: &CStr) -> Result<bool> {
        let d = fsops::open_read(dir, name, true)?;
        Ok(self.mount_below(d, 0)?.0)
    }

    /// Whether a mount point lies below `d` (owned, given back).
    fn mount_below(&self, d: OwnedFd, depth: usize) -> Result<(bool, OwnedFd)> {
        let mut held = Some(d);
        for child in fsops::list_dir(held.as_ref().expect("held").as_fd())? {
            let d = held.as_ref().expect("held between entries");
            let st = fsops::lstat_at(d.as_fd(), &child)?;
            if fsops::kind_of(&st) != Some(Kind::Dir) {
                continue;
            }
            if st.st_dev != self.dev {
                return Ok((true, held.expect("held")));
            }
            let sub = fsops::open_read(d.as_fd(), &child, true)?;
            let found = fsops::descend(
                &mut held,
                sub,
                depth,
                || format!("returning from {}", show(child.to_bytes())),
                |sub| self.mount_below(sub, depth + 1),
            )?;
            if found {
                return Ok((true, held.expect("held again")));
            }
        }
        Ok((false, held.expect("held at the end")))
    }
}

/// Whether the object (`st`, its xattrs through `x`) already has the
/// archived owner, mode, xattrs and mtime: applying `meta` would change
/// nothing.
fn meta_is(st: &fs::Stat, x: &XattrTarget, kind: Kind, meta: &Meta) -> Result<bool> {
    let mut want = meta.xattrs.clone();
    want.sort();
    Ok(st.st_uid == meta.uid
        && st.st_gid == meta.gid
        && (kind == Kind::Symlink || st.st_mode & 0o7777 == meta.mode)
        && st.st_mtime == meta.mtime
        && st.st_mtime_nsec as u32 == meta.mtime_nsec
        && fsops::read_xattrs(x).context("reading xattrs")? == want)
}

/// Set owner, mode, xattrs and mtime on an object held by `fd`, changing
/// only what differs. `fd` is an O_PATH descriptor, or (`opened`) one opened
/// for reading or writing, which the f* calls take directly. `at` (parent,
/// name) addresses symlinks for the l* calls.
fn apply_meta_fd(
    fd: BorrowedFd,
    opened: bool,
    at: Option<(BorrowedFd, &CStr)>,
    kind: Kind,
    meta: &Meta,
) -> Result<()> {
    let mut st = fs::fstat(fd)?;
    if st.st_uid != meta.uid || st.st_gid != meta.gid {
        fs::chownat(
            fd,
            c"",
            Some(fs::Uid::from_raw(meta.uid)),
            Some(fs::Gid::from_raw(meta.gid)),
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        )
        .context("chown")?;
        st = fs::fstat(fd)?;
    }
    let proc = (!opened).then(|| fsops::proc_fd(fd));
    if kind != Kind::Symlink && st.st_mode & 0o7777 != meta.mode {
        let mode = Mode::from_raw_mode(meta.mode);
        match &proc {
            Some(p) => fs::chmodat(fs::CWD, p, mode, AtFlags::empty()),
            None => fs::fchmod(fd, mode),
        }
        .context("chmod")?;
    }
    match (kind, at, &proc) {
        (Kind::Symlink, Some((p, n)), _) => {
            let path = fsops::proc_at(p, n);
            fsops::apply_xattrs(&XattrTarget::Path(&path), &meta.xattrs)
        }
        (Kind::Symlink, None, _) => Ok(()),
        (_, _, Some(p)) => fsops::apply_xattrs(&XattrTarget::Follow(p), &meta.xattrs),
        (_, _, None) => fsops::apply_xattrs(&XattrTarget::Fd(fd), &meta.xattrs),
    }
    .context("setting xattrs")?;
    // Setting xattrs (an ACL) changes ctime, not mtime; the stat is current.
    if st.st_mtime != meta.mtime || st.st_mtime_nsec as u32 != meta.mtime_nsec {
        let t = Timespec {
            tv_sec: meta.mtime,
            tv_nsec: meta.mtime_nsec as _,
        };
        let times = Timestamps {
            last_access: t,
            last_modification: t,
        };
        match (at, &proc) {
            (Some((p, n)), _) if kind == Kind::Symlink => {
                fs::utimensat(p, n, &times, AtFlags::SYMLINK_NOFOLLOW)
            }
            (_, Some(p)) => fs::utimensat(fs::CWD, p, &times, AtFlags::empty()),
            (_, None) => fs::futimens(fd, &times),
        }
        .context("setting mtime")?;
    }
    Ok(())
}
