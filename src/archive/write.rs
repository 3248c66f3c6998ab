//! Writing a tree into a tar+zstd archive: a walk that never follows a
//! symlink below the top, stays on the top's file system, and records every
//! regular file's sha256.

use super::fsops::{self, XattrTarget};
use super::tar::{self, Kind, Meta};
use super::{HashWriter, TreeStats};
use anyhow::{bail, Context, Result};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs;
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Files up to this size are read once into memory; larger ones are read twice
/// (hash, then data) so that memory stays bounded.
const SMALL: u64 = 1 << 20;
const CHUNK: usize = 256 << 10;

/// zstd's multithreaded compressor holds an input ring of (workers + 3) jobs
/// and an output buffer per job in flight (facebook/zstd
/// lib/compress/zstdmt_compress.c, `ZSTDMT_initCStream_internal`: the
/// `roundBuff` capacity is `sectionsSize + slackSize`, the `bufPool` buffers
/// `ZSTD_compressBound(targetSectionSize)`), so its memory grows with the job
/// size times the workers. Jobs of 1 MiB (zstd's minimum is 512 KiB): peak RSS
/// of archiving a DU-like kubelet tree with 2 workers 15 MiB instead of 53 MiB
/// with 4 MiB jobs, and the archive 0.1% smaller, the CPU time the same.
const JOB_SIZE: u32 = 1 << 20;

/// Compression workers at most: the backup reads at disk speed, which four
/// cores of zstd -3 outrun; each more worker is memory (see [`JOB_SIZE`]) on
/// a node whose cores belong to its workloads.
const MAX_WORKERS: u32 = 4;

/// The compressor's window (zstd `windowLog`): level 3's own for inputs
/// over 256 KiB (facebook/zstd `lib/compress/clevels.h`), so a reader needs
/// no more memory than before. Long-distance matching over it (issue 25
/// item 3) finds what the multithreaded compressor misses: each of its jobs
/// sees only an eighth of the window before it (`ZSTDMT_computeOverlapSize`
/// in `lib/compress/zstdmt_compress.c`: overlapLog 6 for level 3's `dfast`),
/// while long-distance matching runs over the whole stream in order, the
/// full window back. Measured on the DU node (factor 1/20, scale 1, `tree
/// archive --threads 2`): the archives 0.45% smaller (1.0064 -> 1.0019 of
/// `tar | zstd -T0 -3`), the same CPU (4.62 / 4.49 s) and peak RSS (21
/// MiB). A window of 2^23 gave 1.0008 for 4 MiB more in the compressor and
/// 6 MiB more in each decoder; 2^25 gave 0.996 (duplicate binaries 16-32
/// MiB apart in `/usr/local`) for about 60 MiB more: over issue 25's 64
/// MiB. The reader accepts up to [`super::read::WINDOW_LOG_MAX`].
pub const WINDOW_LOG: u32 = 21;
const _: () = assert!(WINDOW_LOG <= super::read::WINDOW_LOG_MAX);

#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub level: i32,
    pub threads: u32,
    /// Check the archive as it is written ([`Checker`]): its compressed
    /// bytes are decompressed in other threads and every file checked
    /// against its sha256 while the walk goes on, so the backup's verify
    /// reads each archive back only for its sha256 (issue 25). It also
    /// stands for the second hash of a large file: a file that changed
    /// between its hash and its data is found there.
    pub check: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            level: 3,
            threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get() as u32)
                .min(MAX_WORKERS),
            check: false,
        }
    }
}

/// A file changed while it was being archived and could not be read stably.
#[derive(Debug, thiserror::Error)]
#[error("{0} changed while it was being archived")]
pub struct Changed(pub String);

/// A name that is no longer the object examined (a FIFO swapped in for a
/// file between `lstat` and `open`).
#[derive(Debug, thiserror::Error)]
#[error("changed type while being archived")]
struct Swapped;

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel == b"." {
        name.to_vec()
    } else {
        [rel, b"/", name].concat()
    }
}

/// A path in a message or a report: long ones with their middle cut out.
fn show(p: &[u8]) -> String {
    super::validate::short(p)
}

use super::validate::short;

/// Progress callback: (files so far, bytes just added).
pub type Progress = Box<dyn FnMut(u64, u64) + Send>;

type ZstdFile = zstd::stream::Encoder<'static, HashWriter<Tee<BufWriter<File>>>>;

/// Compressed bytes handed to the [`Checker`] in pieces of this size.
const TEE_CHUNK: usize = 256 << 10;
/// Pieces in flight to the checker: it holds the writer back when it is
/// behind, so memory stays bounded (TEE_CHUNK times this).
const TEE_DEPTH: usize = 8;

/// A writer that also hands what it writes to a [`Checker`].
pub struct Tee<W> {
    inner: W,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    pending: Vec<u8>,
}

impl<W: Write> Tee<W> {
    fn send(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let piece = std::mem::replace(&mut self.pending, Vec::with_capacity(TEE_CHUNK));
        if let Some(tx) = &self.tx {
            // A checker that stopped has said why; it is joined at the end.
            if tx.send(piece).is_err() {
                self.tx = None;
            }
        }
    }

    /// The last piece sent and the checker told the stream ended.
    fn finish(mut self) -> W {
        self.send();
        self.tx = None;
        self.inner
    }
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.tx.is_some() {
            self.pending.extend_from_slice(&buf[..n]);
            if self.pending.len() >= TEE_CHUNK {
                self.send();
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The bytes a [`Tee`] sends, as a stream to read.
struct Pieces {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl std::io::Read for Pieces {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(v) => {
                    self.cur = v;
                    self.pos = 0;
                }
                // The writer is done (or gone): the end of the stream.
                Err(_) => return Ok(0),
            }
        }
        let k = out.len().min(self.cur.len() - self.pos);
        out[..k].copy_from_slice(&self.cur[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}

/// The check of an archive as it is written: the same check as `verify`'s
/// (`archive::check_reader`: every entry validated, every file against its
/// sha256, the zstd checksum, the end marker) on the bytes the writer
/// produces, in threads of their own. They are the bytes the writer hashes
/// (its [`HashWriter`] hands them on to the [`Tee`]), so with the sha256 of
/// the file on disk equal to the writer's (the backup's verify), it is the
/// check of the file on disk; the checker counts them, it does not hash them
/// again.
type Checker = std::thread::JoinHandle<Result<super::ArchiveCheck>>;

fn start_checker(name: &Path) -> Result<(std::sync::mpsc::SyncSender<Vec<u8>>, Checker)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(TEE_DEPTH);
    let name = name.display().to_string();
    let h = std::thread::Builder::new()
        .name("check".into())
        .spawn(move || {
            let src = Pieces {
                rx,
                cur: Vec::new(),
                pos: 0,
            };
            super::check_reader(super::read::Reader::from_stream(Box::new(src), &name)?)
        })
        .context("starting the archive's check")?;
    Ok((tx, h))
}

fn zstd_file(out: &Path, opts: &WriteOptions) -> Result<(ZstdFile, Option<Checker>)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    let (tx, checker) = match opts.check {
        true => {
            let (tx, h) = start_checker(out)?;
            (Some(tx), Some(h))
        }
        false => (None, None),
    };
    let tee = Tee {
        inner: BufWriter::with_capacity(1 << 20, file),
        tx,
        pending: Vec::with_capacity(TEE_CHUNK),
    };
    let hw = HashWriter::new(tee);
    let mut enc = zstd::stream::Encoder::new(hw, opts.level)?;
    enc.include_checksum(true)?;
    if opts.threads > 1 {
        enc.multithread(opts.threads.min(MAX_WORKERS))?;
        enc.set_parameter(zstd::stream::raw::CParameter::JobSize(JOB_SIZE))?;
        // What the jobs' overlap misses ([`WINDOW_LOG`]); one thread
        // already sees the whole window.
        enc.long_distance_matching(true)?;
        enc.window_log(WINDOW_LOG)?;
    }
    Ok((enc, checker))
}

/// End the archive, flush, fsync; the stats get the archive's sha256 and
/// size. With a checker, its outcome: a file whose data does not match the
/// sha256 taken before it was read changed in between ([`Changed`]: the
/// tree is archived again); any other problem fails.
fn finish_zstd(w: Walker<ZstdFile>, out: &Path, checker: Option<Checker>) -> Result<TreeStats> {
    let (enc, mut stats) = w.finish()?;
    let (tee, digest, n) = enc.finish()?.into_parts();
    let bufw = tee.finish();
    let file = bufw.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
        .with_context(|| format!("fsync of {}", out.display()))?;
    stats.archive_bytes = n;
    stats.sha256 = hex::encode(digest);
    if let Some(h) = checker {
        let c = h
            .join()
            .map_err(|_| anyhow::anyhow!("the check of {} stopped unexpectedly", out.display()))?
            .with_context(|| format!("{} does not check as written", out.display()))?;
        if let Some(f) = c.damaged_files.first() {
            return Err(Changed(f.clone()).into());
        }
        if c.size != n {
            bail!(
                "{} does not check as written: its check read {} bytes, the writer wrote {n}",
                out.display(),
                c.size,
            );
        }
        stats.checked = true;
    }
    Ok(stats)
}

/// Archive the directory `top` (already resolved: its own symlink followed)
/// into `out`. Returns the stats, including the archive's sha256.
pub fn write_tree(
    top: &Path,
    out: &Path,
    opts: &WriteOptions,
    progress: Option<Progress>,
) -> Result<TreeStats> {
    let (enc, checker) = zstd_file(out, opts)?;
    let mut w = Walker::new(enc, true, progress);
    w.streamed = checker.is_some();
    w.add_tree(top, b".")?;
    finish_zstd(w, out, checker)
}

/// Archive chosen paths below `root` (files, links or whole directories; the
/// parents are not stored). Symlinks in the parents resolve inside `root`.
/// Returns the stats and the paths that do not exist.
pub fn write_paths(
    root: &Path,
    rels: &[Vec<u8>],
    out: &Path,
    opts: &WriteOptions,
) -> Result<(TreeStats, Vec<String>)> {
    let (enc, checker) = zstd_file(out, opts)?;
    let mut w = Walker::new(enc, true, None);
    w.streamed = checker.is_some();
    let mut missing = Vec::new();
    // In bytewise order of the whole path, as every version wrote them (the
    // caller's list is sorted so): the order the readers require of the
    // listed paths (validate::Shape).
    let mut rels: Vec<&[u8]> = rels.iter().map(Vec::as_slice).collect();
    rels.sort_unstable();
    rels.dedup();
    // A path below one already added (a listed path that is a directory on
    // the node) is in the archive already: a second entry for it would be
    // a duplicate, which every reader refuses (validate::Shape).
    let mut added: Vec<&[u8]> = Vec::new();
    for rel in rels {
        if added.iter().any(|a| super::sync::matches_prefix(rel, a)) {
            continue;
        }
        if w.add_path(root, rel)? {
            added.push(rel);
        } else {
            missing.push(show(rel));
        }
    }
    Ok((finish_zstd(w, out, checker)?, missing))
}

pub struct Walker<W: Write> {
    out: W,
    dev: u64,
    links: HashMap<(u64, u64), Vec<u8>>,
    stats: TreeStats,
    buf: Vec<u8>,
    progress: Option<Progress>,
    /// Record each file's sha256 in the archive (off for archives that
    /// other tools read, such as the static-pod tarball).
    hashes: bool,
    prefetch: Option<super::prefetch::Prefetch>,
    /// The archive is checked as it is written (a [`Checker`]): a large
    /// file's data is not hashed a second time here.
    streamed: bool,
}

impl<W: Write> Walker<W> {
    pub fn new(out: W, hashes: bool, progress: Option<Progress>) -> Self {
        Walker {
            out,
            dev: 0,
            links: HashMap::new(),
            stats: TreeStats::default(),
            buf: Vec::with_capacity(SMALL as usize),
            progress,
            hashes,
            prefetch: None,
            streamed: false,
        }
    }

    /// Add the directory `top` as `name` (`.` for the archive's top) with all
    /// below it, on its own file system.
    pub fn add_tree(&mut self, top: &Path, name: &[u8]) -> Result<()> {
        let topfd = fs::open(
            top,
            fs::OFlags::RDONLY | fs::OFlags::DIRECTORY | fs::OFlags::CLOEXEC,
            fs::Mode::empty(),
        )
        .with_context(|| format!("opening {}", top.display()))?;
        let st = fs::fstat(&topfd)?;
        self.dev = st.st_dev;
        let xattrs = fsops::read_xattrs(&XattrTarget::Fd(topfd.as_fd()))
            .with_context(|| format!("reading xattrs of {}", top.display()))?;
        let meta = Meta {
            xattrs,
            ..fsops::meta_of(&st)
        };
        self.entry(name, Kind::Dir, &meta, &[])?;
        self.prefetch = Some(super::prefetch::Prefetch::start(top));
        let r = self.walk(topfd, name, top, 0).map(drop);
        self.prefetch = None;
        r
    }

    /// Add one path below `root`; false when it does not exist.
    pub fn add_path(&mut self, root: &Path, rel: &[u8]) -> Result<bool> {
        let rootfd = fs::open(
            root,
            fs::OFlags::PATH | fs::OFlags::DIRECTORY | fs::OFlags::CLOEXEC,
            fs::Mode::empty(),
        )?;
        let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&b"."[..], rel),
        };
        let pfd = match fs::openat2(
            &rootfd,
            fsops::cstr(parent).as_c_str(),
            fs::OFlags::PATH | fs::OFlags::DIRECTORY | fs::OFlags::CLOEXEC,
            fs::Mode::empty(),
            fs::ResolveFlags::IN_ROOT | fs::ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(false),
            Err(e) => bail!("opening {}/{}: {e}", root.display(), show(parent)),
        };
        let cname = fsops::cstr(name);
        let st = match fsops::lstat_at(pfd.as_fd(), &cname) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => bail!("cannot stat {}/{}: {e}", root.display(), show(rel)),
        };
        self.dev = st.st_dev;
        let child = self
            .one(pfd.as_fd(), &cname, rel, &st, root)
            .with_context(|| format!("archiving {}/{}", root.display(), short(rel)))?;
        if let Some(child) = child {
            self.walk(child, rel, root, 1)?;
        }
        Ok(true)
    }

    /// Write the end-of-archive marker; the writer and the stats.
    pub fn finish(mut self) -> Result<(W, TreeStats)> {
        self.out.write_all(&[0u8; 2 * tar::BLOCK])?;
        self.out.flush()?;
        Ok((self.out, self.stats))
    }

    fn entry(&mut self, path: &[u8], kind: Kind, meta: &Meta, data: &[u8]) -> Result<()> {
        self.out
            .write_all(&tar::encode(path, kind, meta, data.len() as u64))?;
        self.out.write_all(data)?;
        self.pad(data.len() as u64)?;
        self.stats.entries += 1;
        Ok(())
    }

    fn pad(&mut self, n: u64) -> Result<()> {
        let p = tar::padding(n);
        self.out.write_all(&[0u8; tar::BLOCK][..p])?;
        Ok(())
    }

    /// Archive what is below `dir` (which it owns, and gives back: below
    /// [`fsops::HELD_LEVELS`] it lets go of it while a subdirectory is
    /// walked and opens it again through `..`, so that a tree of any depth
    /// needs a bounded number of open files).
    fn walk(&mut self, dir: OwnedFd, rel: &[u8], top: &Path, depth: usize) -> Result<OwnedFd> {
        let names = fsops::list_dir(dir.as_fd())
            .with_context(|| format!("listing {}/{}", top.display(), short(rel)))?;
        let mut held = Some(dir);
        for name in names {
            let path = join(rel, name.to_bytes());
            let dfd = held.as_ref().expect("held between entries");
            let dir = dfd.as_fd();
            let st = match fsops::lstat_at(dir, &name) {
                Ok(st) => st,
                Err(Errno::NOENT) => {
                    self.stats.vanished.push(show(&path));
                    continue;
                }
                Err(e) => bail!("cannot stat {}/{}: {e}", top.display(), short(&path)),
            };
            let mut r = self.one(dir, &name, &path, &st, top);
            if r.as_ref().is_err_and(|e| e.is::<Swapped>()) {
                // Replaced between the lstat and the open: look again once.
                r = match fsops::lstat_at(dir, &name) {
                    Ok(st) => self.one(dir, &name, &path, &st, top),
                    Err(e) => Err(e.into()),
                };
            }
            let child = match r {
                Err(e) if e.is::<Swapped>() => {
                    log::warn!(
                        "{}/{} changed type while being archived; left out",
                        top.display(),
                        short(&path)
                    );
                    self.stats.changed.push(show(&path));
                    continue;
                }
                Err(e) if e.downcast_ref::<Errno>() == Some(&Errno::NOENT) => {
                    self.stats.vanished.push(show(&path));
                    continue;
                }
                r => r.with_context(|| format!("archiving {}/{}", top.display(), short(&path)))?,
            };
            if let Some(child) = child {
                // No context on the walk: the level that failed names its
                // path once.
                fsops::descend(
                    &mut held,
                    child,
                    depth,
                    || format!("returning to {}/{}", top.display(), short(rel)),
                    |child| Ok(((), self.walk(child, &path, top, depth + 1)?)),
                )?;
            }
        }
        Ok(held.expect("held at the end"))
    }

    fn one(
        &mut self,
        dir: BorrowedFd,
        name: &CStr,
        path: &[u8],
        st: &fs::Stat,
        top: &Path,
    ) -> Result<Option<OwnedFd>> {
        let Some(kind) = fsops::kind_of(st) else {
            self.stats.skipped_sockets.push(show(path));
            return Ok(None);
        };
        let mut meta = fsops::meta_of(st);
        match kind {
            Kind::Dir => {
                let fd = match fsops::open_read(dir, name, true) {
                    Err(Errno::NOTDIR) | Err(Errno::LOOP) => return Err(Swapped.into()),
                    r => r?,
                };
                let st2 = fs::fstat(&fd)?;
                if !fsops::same_object(st, &st2) {
                    return Err(Swapped.into());
                }
                let st = st2;
                meta = fsops::meta_of(&st);
                meta.xattrs = fsops::read_xattrs(&XattrTarget::Fd(fd.as_fd()))?;
                self.entry(path, Kind::Dir, &meta, &[])?;
                if st.st_dev != self.dev {
                    self.stats.skipped_mounts.push(show(path));
                    return Ok(None);
                }
                return Ok(Some(fd));
            }
            Kind::File => {
                if let Some(why) = unrestorable_sparse(dir, st) {
                    log::warn!(
                        "{}/{} left out of the backup: {why}",
                        top.display(),
                        short(path)
                    );
                    self.stats.skipped_sparse.push(show(path));
                    return Ok(None);
                }
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&(st.st_dev, st.st_ino)) {
                        meta.link = first.clone();
                        meta.size = 0;
                        return self.entry(path, Kind::HardLink, &meta, &[]).map(|()| None);
                    }
                }
                crate::util::fault::swap_fifo(dir, name);
                let fd = match fsops::open_read(dir, name, false) {
                    Err(Errno::LOOP) => return Err(Swapped.into()),
                    r => r?,
                };
                if !fsops::same_object(st, &fs::fstat(&fd)?) {
                    return Err(Swapped.into());
                }
                // Later names link to this one only when it is recorded
                // with more than one link (the count of the stat it is
                // stored with, not of the lstat before): the readers
                // refuse a hard link to any other file (validate::Shape).
                if self.file(fd, path)? > 1 {
                    self.links.insert((st.st_dev, st.st_ino), path.to_vec());
                }
            }
            Kind::Symlink => {
                meta.link = fs::readlinkat(dir, name, Vec::new())?.into_bytes();
                meta.xattrs = fsops::read_xattrs(&XattrTarget::Path(&fsops::proc_at(dir, name)))?;
                meta.size = 0;
                self.entry(path, kind, &meta, &[])?;
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                meta.xattrs = fsops::read_xattrs(&XattrTarget::Path(&fsops::proc_at(dir, name)))?;
                meta.size = 0;
                self.entry(path, kind, &meta, &[])?;
            }
            Kind::HardLink => unreachable!(),
        }
        Ok(None)
    }

    /// Archive a regular file; the link count recorded for it.
    fn file(&mut self, fd: OwnedFd, path: &[u8]) -> Result<u32> {
        let st = fs::fstat(&fd)?;
        let mut meta = fsops::meta_of(&st);
        meta.xattrs = fsops::read_xattrs(&XattrTarget::Fd(fd.as_fd()))?;
        meta.nlink = st.st_nlink as u32;
        let size = st.st_size as u64;
        let sparse = (st.st_blocks as u64) * 512 < size;
        if size <= SMALL && !sparse {
            return self.small_file(fd, path, meta, st);
        }
        let ext = if sparse {
            fsops::extents(fd.as_fd(), size)?
        } else {
            vec![(0, size)]
        };
        // Pass 1: the hash of the logical content.
        let hash = hash_extents(fd.as_fd(), &ext, size, &mut self.buf)?;
        crate::util::fault::change_while_read(path, fd.as_fd());
        meta.sha256 = self.hashes.then_some(hash);
        meta.size = size;
        let mut map = Vec::new();
        let mut data_len: u64 = ext.iter().map(|e| e.1).sum();
        if !fsops::is_dense(&ext, size) {
            let mut m = ext.clone();
            if m.last().is_none_or(|&(o, l)| o + l < size) {
                m.push((size, 0));
            }
            map = tar::sparse_map(&m);
            data_len += map.len() as u64;
            meta.sparse = Some(m);
        }
        self.out
            .write_all(&tar::encode(path, Kind::File, &meta, data_len))?;
        self.out.write_all(&map)?;
        // Pass 2: the data, hashed again; a difference means it changed.
        // Checked as written, the checker hashes it (and finds the change).
        let mut h = (!self.streamed || !self.hashes).then(Sha256::new);
        let mut shrunk = false;
        let mut pos = 0u64;
        for &(off, len) in &ext {
            if let Some(h) = h.as_mut() {
                hash_zeros(h, off - pos);
            }
            let mut done = 0u64;
            while done < len {
                let want = (len - done).min(CHUNK as u64) as usize;
                self.buf.resize(want, 0);
                let n = rustix::io::pread(&fd, &mut self.buf[..], off + done)?;
                if n == 0 {
                    // Shrunk: keep the stream well-formed, then report.
                    self.buf.fill(0);
                    self.out.write_all(&self.buf[..want])?;
                    done += want as u64;
                    shrunk = true;
                    continue;
                }
                if let Some(h) = h.as_mut() {
                    h.update(&self.buf[..n]);
                }
                self.out.write_all(&self.buf[..n])?;
                done += n as u64;
            }
            pos = off + len;
            self.tick(len);
        }
        let again = h.map(|mut h| {
            hash_zeros(&mut h, size - pos);
            <[u8; 32]>::from(h.finalize())
        });
        self.pad(data_len)?;
        self.stats.entries += 1;
        self.stats.files += 1;
        self.stats.bytes += size;
        let st2 = fs::fstat(&fd)?;
        if shrunk || again.is_some_and(|a| a != hash) || changed(&st, &st2) {
            return Err(Changed(show(path)).into());
        }
        Ok(meta.nlink)
    }

    fn small_file(
        &mut self,
        fd: OwnedFd,
        path: &[u8],
        mut meta: Meta,
        st: fs::Stat,
    ) -> Result<u32> {
        let mut st = st;
        for attempt in 0..3 {
            self.buf.clear();
            let mut off = 0u64;
            loop {
                self.buf.resize(off as usize + 65536, 0);
                let n = rustix::io::pread(&fd, &mut self.buf[off as usize..], off)?;
                if n == 0 {
                    break;
                }
                off += n as u64;
            }
            self.buf.truncate(off as usize);
            crate::util::fault::change_while_read(path, fd.as_fd());
            let st2 = fs::fstat(&fd)?;
            if !changed(&st, &st2) && off == st.st_size as u64 {
                break;
            }
            if attempt == 2 {
                self.stats.changed.push(show(path));
                meta = Meta {
                    xattrs: std::mem::take(&mut meta.xattrs),
                    ..fsops::meta_of(&st2)
                };
                break;
            }
            st = st2;
            meta = Meta {
                xattrs: std::mem::take(&mut meta.xattrs),
                ..fsops::meta_of(&st)
            };
        }
        meta.size = self.buf.len() as u64;
        meta.nlink = st.st_nlink as u32;
        meta.sha256 = self.hashes.then(|| Sha256::digest(&self.buf).into());
        let data = std::mem::take(&mut self.buf);
        self.entry(path, Kind::File, &meta, &data)?;
        self.buf = data;
        self.stats.files += 1;
        self.stats.bytes += meta.size;
        self.tick(meta.size);
        Ok(meta.nlink)
    }

    fn tick(&mut self, bytes: u64) {
        if let Some(p) = &self.prefetch {
            p.consumed(bytes);
        }
        if let Some(p) = self.progress.as_mut() {
            p(self.stats.files, bytes);
        }
    }
}

/// Why a sparse file cannot be in a backup, if it cannot: its apparent size
/// is over what a backup may hold (`validate::MAX_SPARSE_SIZE`, which every
/// reader refuses) or over what the file system it lies on can hold (such a
/// file can never be filled; checking it would hash its holes for hours).
fn unrestorable_sparse(dir: BorrowedFd, st: &fs::Stat) -> Option<String> {
    let size = st.st_size as u64;
    let sparse = (st.st_blocks as u64) * 512 < size;
    if !sparse || size <= 1 << 30 {
        return None;
    }
    let max = super::validate::MAX_SPARSE_SIZE;
    if size > max {
        return Some(format!(
            "a sparse file of apparent size {size} bytes, over the {max} a backup holds"
        ));
    }
    let cap = fs::fstatvfs(dir)
        .ok()
        .map(|v| v.f_blocks.saturating_mul(v.f_frsize))?;
    (size > cap).then(|| {
        format!(
            "a sparse file of apparent size {size} bytes on a file system of {cap} bytes (no node could fill it)"
        )
    })
}

fn changed(a: &fs::Stat, b: &fs::Stat) -> bool {
    a.st_size != b.st_size
        || a.st_mtime != b.st_mtime
        || a.st_mtime_nsec != b.st_mtime_nsec
        || a.st_ctime != b.st_ctime
        || a.st_ctime_nsec != b.st_ctime_nsec
}

pub(crate) fn hash_zeros(h: &mut Sha256, mut n: u64) {
    static ZEROS: [u8; 65536] = [0; 65536];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        h.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// sha256 of a file's logical content given its data extents.
pub(crate) fn hash_extents(
    fd: BorrowedFd,
    ext: &[(u64, u64)],
    size: u64,
    buf: &mut Vec<u8>,
) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut pos = 0u64;
    for &(off, len) in ext {
        hash_zeros(&mut h, off - pos);
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(CHUNK as u64) as usize;
            buf.resize(want, 0);
            let n = rustix::io::pread(fd, &mut buf[..], off + done)?;
            if n == 0 {
                bail!("file shrank while being read");
            }
            h.update(&buf[..n]);
            done += n as u64;
        }
        pos = off + len;
    }
    hash_zeros(&mut h, size.saturating_sub(pos));
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What stands for the second hash of a large file: the checker of an
    /// archive being written names a file whose data differs from the
    /// sha256 recorded before it (a file changed between its hash and its
    /// read), in a stream that is otherwise well-formed.
    #[test]
    fn the_checker_names_a_file_whose_data_is_not_its_sha256() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("a"), vec![b'a'; 5000]).unwrap();
        std::fs::write(src.join("b"), b"bbbb").unwrap();
        let out = d.path().join("a.tar.zst");
        let opts = WriteOptions {
            check: true,
            ..WriteOptions::default()
        };
        let st = write_tree(&src, &out, &opts, None).unwrap();
        assert!(st.checked);
        let check = |bytes: &[u8]| {
            let (tx, checker) = start_checker(&out).unwrap();
            for piece in bytes.chunks(1000) {
                tx.send(piece.to_vec()).unwrap();
            }
            drop(tx);
            checker.join().unwrap()
        };
        let good = std::fs::read(&out).unwrap();
        let c = check(&good).unwrap();
        assert!(c.damaged_files.is_empty());
        assert_eq!(c.size, good.len() as u64);
        // One byte of a's data changed, the stream recompressed.
        let mut tar = zstd::decode_all(&good[..]).unwrap();
        let at = tar
            .windows(5000)
            .position(|w| w.iter().all(|&c| c == b'a'))
            .unwrap();
        tar[at + 10] = b'x';
        let bad = zstd::encode_all(&tar[..], 3).unwrap();
        assert_eq!(check(&bad).unwrap().damaged_files, vec!["a".to_string()]);
        // Cut short: the stream's end is missing.
        let e = format!("{:#}", check(&good[..good.len() / 2]).unwrap_err());
        assert!(e.contains("truncated") || e.contains("damaged"), "{e}");
    }
}
