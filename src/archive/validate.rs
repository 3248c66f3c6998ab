//! Everything read from a backup is checked here, in one place, before it is
//! used: archive entries (paths, link targets, xattr names, sparse maps) and
//! the files of the backup themselves (opened without following a symlink,
//! and only when they are regular files). A backup is read in an outage: our
//! reader is the last line of defence, whoever wrote the bytes.

use super::tar::{Header, Kind};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest logical file size an archive may claim (1 PiB: more than any
/// file system of a node holds, far less than `u64::MAX`).
pub const MAX_FILE_SIZE: u64 = 1 << 50;
/// The largest apparent size of a sparse file (1 TiB). Checking one hashes
/// its holes as zeros (measured: `tree archive` of a 4 GiB file of holes
/// hashes 8 GiB in 24 s, 0.35 GB/s, on the shared 2-core test machine), so
/// a sparse entry of 1 PiB with no data would keep `verify` busy for weeks;
/// 1 TiB is more than the disk of a single-node OpenShift node (120 GB and
/// up) usually holds, so no file a node could fill is refused, and checking
/// the largest is bounded (under an hour at that rate). The backup leaves out (with a warning) a sparse file larger
/// than this or than the file system it lies on (`skipped_sparse`).
pub const MAX_SPARSE_SIZE: u64 = 1 << 40;
/// The most extents a sparse map may list.
pub const MAX_EXTENTS: usize = 1 << 20;
/// The longest path an entry may have (paths longer than PATH_MAX are
/// legal in a tree and restored relative to directory descriptors).
pub const MAX_PATH: usize = 1 << 20;

/// A path shown in a message: at most 200 bytes, the middle cut out.
pub fn short(p: &[u8]) -> String {
    const KEEP: usize = 96;
    if p.len() <= 2 * KEEP + 8 {
        return String::from_utf8_lossy(p).into_owned();
    }
    format!(
        "{}...({} bytes)...{}",
        String::from_utf8_lossy(&p[..KEEP]),
        p.len() - 2 * KEEP,
        String::from_utf8_lossy(&p[p.len() - KEEP..])
    )
}

/// Whether `p` is a path relative to a tree that stays inside it: `.` (the
/// top itself), or non-empty components separated by single `/`, none of
/// them `.` or `..`, no NUL, not absolute.
pub fn check_rel_path(p: &[u8]) -> Result<(), &'static str> {
    if p == b"." {
        return Ok(());
    }
    if p.is_empty() {
        return Err("an empty path");
    }
    if p.len() > MAX_PATH {
        return Err("a path longer than 1 MiB");
    }
    if p.contains(&0) {
        return Err("a NUL byte in the path");
    }
    if p[0] == b'/' {
        return Err("an absolute path");
    }
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" => return Err("an empty path component"),
            b".." => return Err("a `..` component (it leaves the tree)"),
            b"." => return Err("a `.` component"),
            _ => {}
        }
    }
    Ok(())
}

/// Check one decoded entry: its path, its link target, its xattr names and
/// its sparse map. Called by the archive reader for every entry, so verify,
/// restore, extract and the preflight all refuse the same entries.
pub fn check_header(h: &Header) -> Result<()> {
    let name = short(&h.path);
    if let Err(why) = check_rel_path(&h.path) {
        bail!("entry {name:?} has {why}");
    }
    if h.path == b"." && h.kind != Kind::Dir {
        bail!("entry \".\" (the top of the tree) is not a directory");
    }
    match h.kind {
        Kind::HardLink => {
            if h.meta.link == b"." {
                bail!("hard link {name:?} points at the top of the tree");
            }
            if let Err(why) = check_rel_path(&h.meta.link) {
                bail!("hard link {name:?} has a target with {why}");
            }
        }
        Kind::Symlink => {
            // A symlink's target is stored as is (it is never followed by
            // the restore), but it must be one the kernel can create.
            if h.meta.link.is_empty() {
                bail!("symlink {name:?} has an empty target");
            }
            if h.meta.link.contains(&0) {
                bail!("symlink {name:?} has a NUL byte in its target");
            }
            if h.meta.link.len() > 4095 {
                bail!("symlink {name:?} has a target longer than 4095 bytes");
            }
        }
        _ => {}
    }
    for (k, v) in &h.meta.xattrs {
        if k.is_empty() || k.contains(&0) || k.len() > 255 {
            bail!("entry {name:?} has an xattr name that is empty, too long or holds a NUL byte");
        }
        if v.len() > 64 << 10 {
            bail!("entry {name:?} has an xattr value over 64 KiB");
        }
    }
    if h.meta.mtime_nsec >= 1_000_000_000 {
        bail!("entry {name:?} has a nanosecond field over one second");
    }
    if h.kind == Kind::File && h.meta.size > MAX_FILE_SIZE {
        bail!("entry {name:?} claims a size of {} bytes", h.meta.size);
    }
    Ok(())
}

/// What an entry is, for [`Shape`]: only whether later entries may lie
/// below it or link to it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Seen {
    Dir,
    File,
    Other(Kind),
}

/// The shape of the archive so far, for the checks between entries: an
/// archive no backup can produce is refused by the reader, so `verify`, each
/// phase's check and the restore refuse the same archives, and the phase
/// check does before the first change. A backup writes each path once, a
/// directory before what is below it (or, for the extras, no entry for a
/// parent at all), and a hard link after the regular file it names.
///
/// Paths are kept as 16-byte digests (sha256, prefix of), not as paths:
/// memory grows by about 50 bytes an entry and a directory, whatever the
/// path lengths.
#[derive(Default)]
pub struct Shape {
    /// Each entry's path, with what it is.
    seen: std::collections::HashMap<[u8; 16], Seen>,
    /// Every directory some entry lies below (entries or not).
    parents: std::collections::HashSet<[u8; 16]>,
    /// Whether the archive is a whole tree (its first entry is `.`): then
    /// each entry's directory is an entry before it. The extras archive
    /// holds chosen paths without their parents (restored with the parents
    /// made as needed).
    whole: Option<bool>,
}

fn digest(h: &sha2::Sha256) -> [u8; 16] {
    use sha2::Digest;
    let d = h.clone().finalize();
    d[..16].try_into().expect("16 of 32 bytes")
}

fn path_digest(p: &[u8]) -> [u8; 16] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(p);
    digest(&h)
}

impl Shape {
    /// Check one entry (already checked by [`check_header`]) against those
    /// before it, and remember it.
    pub fn check(&mut self, h: &Header) -> Result<()> {
        use sha2::Digest;
        let name = short(&h.path);
        let me = path_digest(&h.path);
        let whole = *self.whole.get_or_insert(h.path == b".");
        if self.seen.contains_key(&me) {
            bail!("entry {name:?} appears twice (a backup writes each path once)");
        }
        // Every parent that is itself an entry must be a directory: a file
        // below a symlink (`a -> ..`, then `a/x`) or below a regular file
        // would be written through it.
        let mut hasher = sha2::Sha256::new();
        let mut start = 0;
        let mut parents = Vec::new();
        if h.path != b"." {
            // `.` holds every top-level entry.
            parents.push(path_digest(b"."));
            for (i, &b) in h.path.iter().enumerate() {
                if b == b'/' {
                    hasher.update(&h.path[start..i]);
                    start = i;
                    let d = digest(&hasher);
                    match self.seen.get(&d) {
                        Some(Seen::Dir) => {}
                        None if !whole => {}
                        None => bail!(
                            "entry {name:?} comes before its directory {:?} (a backup writes a directory before what it holds)",
                            short(&h.path[..i])
                        ),
                        Some(k) => bail!(
                            "entry {name:?} lies below {:?}, which is {} in the archive, not a directory",
                            short(&h.path[..i]),
                            what(*k)
                        ),
                    }
                    parents.push(d);
                }
            }
        }
        let kind = match h.kind {
            Kind::Dir => Seen::Dir,
            Kind::File => Seen::File,
            k => Seen::Other(k),
        };
        if kind != Seen::Dir && self.parents.contains(&me) {
            bail!(
                "entry {name:?} is {} but earlier entries lie below it",
                what(kind)
            );
        }
        if h.kind == Kind::HardLink {
            if h.meta.link == h.path {
                bail!("hard link {name:?} points at itself");
            }
            match self.seen.get(&path_digest(&h.meta.link)) {
                Some(Seen::File) => {}
                other => bail!(
                    "hard link {name:?} points at {:?}, which is {} (a backup links only to a regular file written before)",
                    short(&h.meta.link),
                    other.map_or("not an earlier entry", |k| what(*k))
                ),
            }
        }
        for d in parents.into_iter().rev() {
            // Insert from the nearest parent outwards; one already there
            // has its own parents there too.
            if !self.parents.insert(d) {
                break;
            }
        }
        self.seen.insert(me, kind);
        Ok(())
    }
}

fn what(k: Seen) -> &'static str {
    match k {
        Seen::Dir => "a directory",
        Seen::File => "a regular file",
        Seen::Other(Kind::Symlink) => "a symlink",
        Seen::Other(Kind::HardLink) => "a hard link",
        Seen::Other(Kind::Fifo) => "a FIFO",
        Seen::Other(_) => "a device node",
    }
}

/// Check a sparse map against the real size and the bytes stored after it:
/// extents in order, not overlapping, inside the real size, and exactly as
/// many data bytes as the member holds.
pub fn check_sparse(h: &Header, ext: &[(u64, u64)], stored: u64) -> Result<()> {
    let name = short(&h.path);
    let size = h.meta.size;
    if size > MAX_SPARSE_SIZE {
        bail!(
            "sparse entry {name:?} claims an apparent size of {size} bytes, more than {MAX_SPARSE_SIZE} (1 TiB, more than a node's disk holds; a backup never stores such a file)"
        );
    }
    if ext.len() > MAX_EXTENTS {
        bail!("sparse entry {name:?} lists {} extents", ext.len());
    }
    let mut end = 0u64;
    let mut total = 0u64;
    for &(off, len) in ext {
        let e = off.checked_add(len).filter(|&e| e <= size);
        let Some(e) = e else {
            bail!("sparse entry {name:?} has an extent ({off}, {len}) beyond its size {size}");
        };
        if off < end {
            bail!("sparse entry {name:?} has extents out of order or overlapping at {off}");
        }
        end = e;
        total += len;
    }
    if total != stored {
        bail!("sparse entry {name:?} maps {total} data bytes but holds {stored}");
    }
    Ok(())
}

/// Open a file of a backup for reading: never through a symlink (the last
/// component), never blocking (a FIFO or device in its place), and only a
/// regular file. A FIFO planted as `manifest.json` must not hang `verify`,
/// and a symlink to /dev/zero must not be read forever.
pub fn open_regular(p: &Path) -> std::io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags())
        .open(p)
        .map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                std::io::Error::other("is a symlink (a backup file must be a regular file)")
            } else {
                e
            }
        })?;
    let ft = f.metadata()?.file_type();
    if !ft.is_file() {
        let what = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_dir() {
            "a directory"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(std::io::Error::other(format!(
            "is {what} (a backup file must be a regular file)"
        )));
    }
    // Regular files ignore O_NONBLOCK; clear it anyway for clarity.
    rustix::fs::fcntl_setfl(&f, rustix::fs::OFlags::empty())?;
    Ok(f)
}

fn libc_flags() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC)
        .bits() as i32
}

/// Read a whole (small) backup file with [`open_regular`], at most `max`
/// bytes.
pub fn read_regular(p: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = open_regular(p)?;
    let mut v = Vec::new();
    f.take(max + 1).read_to_end(&mut v)?;
    if v.len() as u64 > max {
        return Err(std::io::Error::other(format!("is larger than {max} bytes")));
    }
    Ok(v)
}

/// Whether a manifest's file name is a plain name inside the backup dir
/// (one component, or `images/...`-like relative components; never `..`,
/// never absolute, no NUL).
pub fn check_backup_name(n: &str) -> Result<()> {
    check_rel_path(n.as_bytes())
        .map_err(anyhow::Error::msg)
        .and_then(|()| {
            if n == "." {
                bail!("the backup dir itself")
            }
            Ok(())
        })
        .with_context(|| {
            format!(
                "{:?} is not a file name inside the backup dir",
                short(n.as_bytes())
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_paths() {
        for ok in [&b"."[..], b"a", b"a/b", b"..a", b"a..", b".a/b."] {
            assert!(check_rel_path(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            &b""[..],
            b"..",
            b"a/..",
            b"../a",
            b"a/../b",
            b"/a",
            b"a//b",
            b"a/",
            b"./a",
            b"a/.",
            b"a\0b",
        ] {
            assert!(check_rel_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn short_cuts_the_middle() {
        let p = vec![b'x'; 1 << 20];
        assert!(short(&p).len() < 260);
        assert_eq!(short(b"a/b"), "a/b");
    }
}
