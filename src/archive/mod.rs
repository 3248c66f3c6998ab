//! Tree archives: tar (PAX) + zstd, one per tree, with every regular file's
//! sha256 inside; the writer, the verifying reader, and the exact restore.

pub mod exclude;
pub mod fsops;
pub mod hash;
pub mod prefetch;
pub mod read;
pub mod sync;
pub mod tar;
pub mod validate;
pub mod write;

use anyhow::{bail, Context, Result};
pub use hash::file_sha256;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub use sync::{sync_tree, sync_tree_at, SyncOptions, SyncStats};
pub use write::{write_paths, write_tree, Changed, WriteOptions};

/// What writing one tree produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TreeStats {
    /// Archive members (directories, files, links, ...).
    pub entries: u64,
    /// Regular files with data.
    pub files: u64,
    /// Logical bytes of regular files.
    pub bytes: u64,
    /// Size of the compressed archive.
    pub archive_bytes: u64,
    /// sha256 of the archive file.
    pub sha256: String,
    /// Mount points below the top that were not crossed.
    #[serde(default)]
    pub skipped_mounts: Vec<String>,
    /// Files that disappeared during the walk.
    #[serde(default)]
    pub vanished: Vec<String>,
    /// Files that kept changing while read (stored as last read).
    #[serde(default)]
    pub changed: Vec<String>,
    /// Sockets, which tar cannot hold (they are recreated by their owners).
    #[serde(default)]
    pub skipped_sockets: Vec<String>,
    /// Sparse files too large for any node's disk (see
    /// `validate::MAX_SPARSE_SIZE`), left out with a warning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_sparse: Vec<String>,
    /// Checked as it was written (`WriteOptions::check`): every entry and
    /// every file's sha256; what is left to check is that the file on disk
    /// has the recorded sha256. Not recorded in the manifest.
    #[serde(skip)]
    pub checked: bool,
}

/// A writer that hashes and counts what passes through.
pub struct HashWriter<W> {
    inner: W,
    h: Sha256,
    n: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            h: Sha256::new(),
            n: 0,
        }
    }
    pub fn into_parts(self) -> (W, [u8; 32], u64) {
        (self.inner, self.h.finalize().into(), self.n)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.h.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what passes through (only counts, when
/// made with [`HashReader::counting`]).
pub struct HashReader<R> {
    inner: R,
    h: Option<Sha256>,
    n: u64,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> Self {
        HashReader {
            inner,
            h: Some(Sha256::new()),
            n: 0,
        }
    }
    /// Counts, hashes nothing: for a file whose sha256 was just checked.
    pub fn counting(inner: R) -> Self {
        HashReader {
            inner,
            h: None,
            n: 0,
        }
    }
    /// The sha256 (all zeros when [`HashReader::counting`]) and the count.
    pub fn digest(self) -> ([u8; 32], u64) {
        (self.h.map_or([0; 32], |h| h.finalize().into()), self.n)
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.h.as_mut() {
            h.update(&buf[..n]);
        }
        self.n += n as u64;
        Ok(n)
    }
}

/// The outcome of checking one archive.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveCheck {
    pub entries: u64,
    pub files: u64,
    pub sha256: String,
    pub size: u64,
    /// Files whose content does not match their recorded sha256.
    pub damaged_files: Vec<String>,
}

/// Read a whole archive, checking every header, every file's sha256, the
/// zstd checksum and the end marker. `Err` when the stream itself is broken.
pub fn check_archive(path: &Path) -> Result<ArchiveCheck> {
    let f = validate::open_regular(path).with_context(|| format!("opening {}", path.display()))?;
    check_reader(read::Reader::checking(f, path)?)
}

pub(crate) fn check_reader(mut r: read::Reader) -> Result<ArchiveCheck> {
    let mut c = ArchiveCheck::default();
    let mut buf = vec![0u8; 256 << 10];
    while let Some(h) = r.next_header()? {
        c.entries += 1;
        if h.kind != tar::Kind::File {
            continue;
        }
        c.files += 1;
        let mut hasher = Sha256::new();
        let mut pos = 0u64;
        read::for_each_piece(&mut r, &h, &mut buf, |off, data| {
            write::hash_zeros(&mut hasher, off - pos);
            hasher.update(data);
            pos = off + data.len() as u64;
            Ok(())
        })?;
        write::hash_zeros(&mut hasher, h.meta.size.saturating_sub(pos));
        let got: [u8; 32] = hasher.finalize().into();
        match h.meta.sha256 {
            Some(want) if want == got => {}
            Some(_) => c.damaged_files.push(validate::short(&h.path)),
            None => bail!(
                "{}: {} has no recorded sha256 (not an upgrade-recovery archive?)",
                r.path(),
                validate::short(&h.path)
            ),
        }
    }
    let (sha, size) = r.finish()?;
    c.sha256 = sha;
    c.size = size;
    Ok(c)
}

/// `<name>: size N but the manifest records M`: the one wording of a size
/// that differs from the manifest's (`store::blob` and every check use it).
pub fn size_mismatch(name: &dyn std::fmt::Display, got: u64, recorded: u64) -> String {
    format!("{name}: size {got} but the manifest records {recorded}")
}

/// `<name>: sha256 X but the manifest records Y`: the one wording of a
/// sha256 that differs from the manifest's.
pub fn sha256_mismatch(name: &dyn std::fmt::Display, got: &str, recorded: &str) -> String {
    format!("{name}: sha256 {got} but the manifest records {recorded}")
}

/// Check an archive against the sha256 and size recorded for it: the check,
/// and a list of problems (empty when intact).
pub fn examine_archive(
    path: &Path,
    sha256: &str,
    size: u64,
) -> (Option<ArchiveCheck>, Vec<String>) {
    let name = path.display();
    let f = match validate::open_regular(path) {
        Err(e) => return (None, vec![format!("{name}: {e}")]),
        Ok(f) => f,
    };
    match f.metadata() {
        Err(e) => return (None, vec![format!("{name}: {e}")]),
        Ok(m) if m.len() != size => return (None, vec![size_mismatch(&name, m.len(), size)]),
        Ok(_) => {}
    }
    // The recorded sha256 is taken beside the parse, each on a CPU (issue
    // 25), and decides: an archive padded to its recorded size, or changed,
    // is refused for that alone, and its parse is stopped as soon as the
    // sha256 is known to differ, so it costs about one sequential read
    // whatever its entries would cost to parse. The parse reads the same
    // file from its start; it counts the bytes, hashes none.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (hashed, parsed) = std::thread::scope(|s| {
        let hasher = s.spawn(|| {
            let got = hash::reader_sha256(hash::At::new(&f));
            let differs = match &got {
                Ok((h, n)) => *n != size || h != sha256,
                Err(_) => true,
            };
            if differs {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            got
        });
        let parsed = f
            .try_clone()
            .map_err(anyhow::Error::from)
            .and_then(|f| read::Reader::checking_hashed(f, path, stop.clone()))
            .and_then(check_reader);
        let hashed = hasher
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the hash stopped unexpectedly")));
        (hashed, parsed)
    });
    match hashed {
        Err(e) => return (None, vec![format!("{name}: {e}")]),
        Ok((_, n)) if n != size => return (None, vec![size_mismatch(&name, n, size)]),
        Ok((h, _)) if h != sha256 => return (None, vec![sha256_mismatch(&name, &h, sha256)]),
        Ok(_) => {}
    }
    match parsed {
        Err(e) => (None, vec![format!("{e:#}")]),
        Ok(c) => {
            let mut p: Vec<String> = c
                .damaged_files
                .iter()
                .map(|f| format!("{name}: file {f} does not match its sha256"))
                .collect();
            if c.size != size {
                p.push(size_mismatch(&name, c.size, size));
            }
            let c = ArchiveCheck {
                sha256: sha256.to_string(),
                ..c
            };
            (Some(c), p)
        }
    }
}

/// The problems of an archive against its recorded sha256 and size.
pub fn verify_archive(path: &Path, sha256: &str, size: u64) -> Vec<String> {
    examine_archive(path, sha256, size).1
}

/// Resolve a tree's top under `root`: follow the top's own symlink (once, as
/// RHCOS `/usr/local -> ../var/usrlocal`), and no other.
pub fn resolve_top(root: &Path, node_path: &str) -> Result<PathBuf> {
    let rel = node_path.trim_start_matches('/');
    let p = root.join(rel);
    let md = std::fs::symlink_metadata(&p).with_context(|| format!("{}", p.display()))?;
    if !md.file_type().is_symlink() {
        if !md.is_dir() {
            bail!("{} is not a directory", p.display());
        }
        return Ok(p);
    }
    let target = std::fs::read_link(&p)?;
    let node_target = if target.is_absolute() {
        target
    } else {
        Path::new(node_path)
            .parent()
            .unwrap_or(Path::new("/"))
            .join(target)
    };
    // Normalise `..` lexically on the node's path, never above its root.
    let mut parts: Vec<std::ffi::OsString> = Vec::new();
    for c in node_target.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(n) => parts.push(n.to_os_string()),
            _ => {}
        }
    }
    let resolved = parts.iter().fold(root.to_path_buf(), |acc, n| acc.join(n));
    let md = std::fs::symlink_metadata(&resolved)
        .with_context(|| format!("{} (the target of {})", resolved.display(), p.display()))?;
    if !md.is_dir() {
        bail!(
            "{} -> {} is not a directory (only the top's own link is followed)",
            p.display(),
            resolved.display()
        );
    }
    Ok(resolved)
}

/// A tree's top for the restore, as the backup found it. `recorded` is the
/// manifest's `resolved`: where the top's own link led at backup (RHCOS
/// `/usr/local -> ../var/usrlocal`), None where the top was a directory.
/// The restore follows the top's link only when it is the one the backup
/// followed: a top replaced by a link since (the hints report: a
/// `/var/lib/kubelet` made a link to another dir after the backup) would
/// have the restore make the link's target equal the archive, deleting what
/// it holds. Anything else is an error that says what the top is now, what
/// the backup recorded, and the commands that put it back; nothing is
/// written through it.
pub fn restore_top(root: &Path, node_path: &str, recorded: Option<&str>) -> Result<PathBuf> {
    let p = root.join(node_path.trim_start_matches('/'));
    let md = match std::fs::symlink_metadata(&p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{node_path} is missing. Put it back as the backup found it: `{}`",
            match recorded {
                None => format!("mkdir {node_path}"),
                Some(r) => format!("ln -s {r} {node_path}"),
            }
        ),
        r => r.with_context(|| format!("{}", p.display()))?,
    };
    let on_node = |x: &Path| format!("/{}", x.strip_prefix(root).unwrap_or(x).display());
    let what = |md: &std::fs::Metadata| {
        if md.is_dir() {
            "a directory"
        } else if md.is_file() {
            "a regular file"
        } else {
            "neither a directory nor a symlink"
        }
    };
    let link = || -> String {
        let text = std::fs::read_link(&p)
            .map_or_else(|e| format!("unreadable: {e}"), |t| t.display().to_string());
        match resolve_top(root, node_path) {
            Ok(r) => format!("a symlink to {text} (that is {})", on_node(&r)),
            Err(e) => format!("a symlink to {text} ({e:#})"),
        }
    };
    match (recorded, md.file_type().is_symlink()) {
        (None, false) if md.is_dir() => Ok(p),
        // A top under /usr is the OS deployment's (ostree's /usr is read-only:
        // neither a pod nor an upgrade's files make a link there), and a
        // backup taken by the hub's Job sees its link's target as a
        // directory: TALM's Job mounts the host's /usr/local as a hostPath
        // volume, which follows the link (openshift-kni/
        // cluster-group-upgrades-operator
        // `controllers/templates/backup-templates.go`, as tests/common's
        // `Sandbox::job` mounts it), so its manifest records no `resolved`
        // for RHCOS's `/usr/local -> ../var/usrlocal`. That link is followed.
        (None, true) if node_path.starts_with("/usr/") => resolve_top(root, node_path),
        (None, false) => bail!(
            "{node_path} is {} now, but the backup recorded a directory there. Put the directory back: `mv {node_path} {node_path}.aside && mkdir {node_path}`",
            what(&md)
        ),
        (None, true) => {
            let led = resolve_top(root, node_path)
                .map_or_else(|_| "its target".to_string(), |r| on_node(&r));
            bail!(
                "{node_path} is {} now, but the backup recorded a directory there: the restore does not write through it (it would make {led} equal the backup of {node_path}, deleting what {led} holds). Nothing was written through it. Put the directory back: `rm {node_path} && mkdir {node_path}` (`rm` of the link removes the link only; {led} is left as it is)",
                link()
            )
        }
        (Some(r), true) => {
            let now = resolve_top(root, node_path).map(|x| on_node(&x));
            if now.as_deref().ok() == Some(r) {
                return resolve_top(root, node_path);
            }
            bail!(
                "{node_path} is {} now, but the backup recorded a symlink to {r} there: the restore does not write through another link. Nothing was written through it. Put the link back: `ln -sfn {r} {node_path}` (it replaces the link only)",
                link()
            )
        }
        (Some(r), false) => bail!(
            "{node_path} is {} now, but the backup recorded a symlink to {r} there: the restore does not write into it. Put the link back: `mv {node_path} {node_path}.aside && ln -s {r} {node_path}`",
            what(&md)
        ),
    }
}

/// Parse an exclude list (`etc.exclude.list`, `tree sync --exclude-from`)
/// with rsync `--exclude-from` semantics: see exclude.rs.
pub fn parse_excludes(text: &str) -> exclude::Excludes {
    exclude::Excludes::parse(text.as_bytes())
}

/// How an archive file differs from its recorded sha256 and size (one read
/// of it, nothing parsed); None when it matches.
pub fn recorded_mismatch(archive: &Path, sha256: &str, size: u64) -> Option<String> {
    match file_sha256(archive) {
        Err(e) => Some(format!("{}: {e}", archive.display())),
        Ok((_, n)) if n != size => Some(size_mismatch(&archive.display(), n, size)),
        Ok((h, _)) if h != sha256 => Some(sha256_mismatch(&archive.display(), &h, sha256)),
        Ok(_) => None,
    }
}

/// Check an archive file against its recorded sha256 and size (every byte
/// of the archive, which carries every file's sha256 too), then sync the
/// target to it. A damaged archive changes nothing. Entries are validated as
/// they are read (src/archive/validate.rs): one that matches its recorded
/// sha256 yet holds a refused entry stops the sync there, inside the tree;
/// callers check the whole archive first (restore's preflight, extract).
pub fn restore_tree(
    archive: &Path,
    sha256: &str,
    size: u64,
    target: &Path,
    opts: &SyncOptions,
) -> Result<SyncStats> {
    if let Some(p) = recorded_mismatch(archive, sha256, size) {
        return Err(crate::util::error::Fail::Backup(format!(
            "refusing to restore {} from a damaged archive (nothing was changed): {p}",
            target.display()
        ))
        .into());
    }
    sync_tree(archive, target, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_cut_into_pieces_at_slashes() {
        let names: Vec<Vec<u8>> = (0..40).map(|i| vec![b'a' + (i % 26) as u8; 250]).collect();
        let p = names.join(&b'/');
        let pieces = sync::path_pieces(&p, 3072);
        assert!(pieces.len() >= 4);
        assert!(pieces.iter().all(|x| x.len() <= 3072 && !x.is_empty()));
        assert!(pieces
            .iter()
            .all(|x| !x.starts_with(b"/") && !x.ends_with(b"/")));
        assert_eq!(pieces.join(&b'/'), p);
        assert_eq!(sync::path_pieces(b"a/b", 3072), vec![&b"a/b"[..]]);
    }

    /// A tree's top is followed for the restore only as the backup found
    /// it: a directory where it recorded one, the same link where it
    /// recorded a link; each other case names the fix.
    #[test]
    fn the_restore_follows_only_the_top_the_backup_followed() {
        let root = std::env::temp_dir().join(format!("ur-top-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["var/lib/kubelet", "var/lib/other", "var/usrlocal", "usr"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::os::unix::fs::symlink("../var/usrlocal", root.join("usr/local")).unwrap();
        let top = |node: &str, rec: Option<&str>| {
            restore_top(&root, node, rec).map_err(|e| format!("{e:#}"))
        };
        assert_eq!(
            top("/var/lib/kubelet", None),
            Ok(root.join("var/lib/kubelet"))
        );
        assert_eq!(
            top("/usr/local", Some("/var/usrlocal")),
            Ok(root.join("var/usrlocal"))
        );
        // The Job's backup saw /usr/local as a directory (a hostPath mount
        // follows the link): the OS's own link under /usr is followed.
        assert_eq!(top("/usr/local", None), Ok(root.join("var/usrlocal")));
        let e = top("/usr/local", Some("/var/elsewhere")).unwrap_err();
        assert!(
            e.contains("/usr/local is a symlink to ../var/usrlocal (that is /var/usrlocal) now, but the backup recorded a symlink to /var/elsewhere")
                && e.contains("`ln -sfn /var/elsewhere /usr/local`"),
            "{e}"
        );
        let e = top("/var/lib/kubelet", Some("/var/lib/other")).unwrap_err();
        assert!(
            e.contains("is a directory now")
                && e.contains("`mv /var/lib/kubelet /var/lib/kubelet.aside && ln -s /var/lib/other /var/lib/kubelet`"),
            "{e}"
        );
        std::fs::remove_dir(root.join("var/lib/kubelet")).unwrap();
        std::os::unix::fs::symlink("other", root.join("var/lib/kubelet")).unwrap();
        let e = top("/var/lib/kubelet", None).unwrap_err();
        assert!(
            e.contains("/var/lib/kubelet is a symlink to other (that is /var/lib/other) now, but the backup recorded a directory there")
                && e.contains("`rm /var/lib/kubelet && mkdir /var/lib/kubelet`"),
            "{e}"
        );
        // The backup follows the top's own link once and records it: the
        // restore then follows the same one.
        assert_eq!(
            resolve_top(&root, "/var/lib/kubelet").unwrap(),
            root.join("var/lib/other")
        );
        assert_eq!(
            top("/var/lib/kubelet", Some("/var/lib/other")),
            Ok(root.join("var/lib/other"))
        );
        std::fs::remove_file(root.join("var/lib/kubelet")).unwrap();
        std::fs::write(root.join("var/lib/kubelet"), b"x").unwrap();
        let e = top("/var/lib/kubelet", None).unwrap_err();
        assert!(e.contains("is a regular file now"), "{e}");
        std::fs::remove_file(root.join("var/lib/kubelet")).unwrap();
        let e = top("/var/lib/kubelet", None).unwrap_err();
        assert!(
            e.contains("is missing") && e.contains("`mkdir /var/lib/kubelet`"),
            "{e}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
