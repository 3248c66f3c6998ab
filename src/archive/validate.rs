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
/// below it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Seen {
    Dir,
    File,
    Other(Kind),
}

impl Seen {
    fn of(k: Kind) -> Seen {
        match k {
            Kind::Dir => Seen::Dir,
            Kind::File => Seen::File,
            k => Seen::Other(k),
        }
    }
}

/// The shape of the archive so far, for the checks between entries: an
/// archive no backup can produce is refused by the reader, so `verify`, each
/// phase's check and the restore refuse the same archives, and the phase
/// check does before the first change.
///
/// Every archive a backup writes is in sorted pre-order, and the checks rest
/// on it, so that memory follows the depth of the tree and the files with
/// more than one link, never the number of entries (issue 25: 45-80 bytes
/// an entry when every path was remembered, 90-110 MiB at a DU's 1.1M):
///
/// - A whole tree (`write::write_tree`: its first entry is `.`) is written
///   by `Walker::walk`: a directory's entry, then its names in the order of
///   `fsops::list_dir` (sorted bytewise, in every version of the tool), each
///   followed by all below it. Each entry's path is then greater than the
///   one before in [`cmp_paths`]' order, and its directory is the innermost
///   directory entry on the way to the entry before it.
/// - The extras (`write::write_paths`) hold listed paths without their
///   parents: each listed path, then (a directory) all below it in the walk's
///   order. The listed paths come in bytewise order of the whole path (the
///   order of `backup::extras::parse_currentconfig`'s `sort`, in every
///   version; `write_paths` sorts them too), which is not [`cmp_paths`]'
///   order (`opt/a-b` comes before `opt/a/c`); none lies below another.
///
/// A path is then never seen twice: within a walk the order is strict;
/// across listed paths, the bytewise order is strict and a listed path
/// below an earlier one is refused (the earlier one's walk held it). An
/// entry below a non-directory (a file through `a -> ..`) is refused. A hard
/// link names a regular file written before it with more than one link
/// (the writer records `tar::KEY_NLINK` on each: a file with one name has
/// no other name to link to).
#[derive(Default)]
pub struct Shape {
    /// Whether the archive is a whole tree (its first entry is `.`); None
    /// before the first entry.
    whole: Option<bool>,
    /// The path of the entry before (empty for the top, `.`).
    prev: Vec<u8>,
    /// The entries on the way to the entry before, itself included: the
    /// length of their path in `prev` (0 for the top) and what they are.
    chain: Vec<(usize, Seen)>,
    /// Extras: the last listed path (an entry whose directory is not in
    /// `chain`).
    listed: Vec<u8>,
    /// Extras: the listed paths that are a prefix of `listed` (bytes, not
    /// components: every listed path below one of them lies between the two
    /// in bytewise order, so each stays here until then), their length and
    /// what they are.
    listed_chain: Vec<(usize, Seen)>,
    /// 16-byte digests (sha256, prefix of) of the paths of the regular
    /// files recorded with more than one link.
    linked: std::collections::HashSet<[u8; 16]>,
}

fn path_digest(p: &[u8]) -> [u8; 16] {
    use sha2::Digest;
    let d = sha2::Sha256::digest(p);
    d[..16].try_into().expect("16 of 32 bytes")
}

/// The order of a backup's walk: by components, each compared bytewise (a
/// directory's names sorted as `fsops::list_dir` sorts them, all below a
/// name before the next name). It is the bytewise order with `/` below
/// every other byte (a path holds no NUL: [`check_rel_path`]).
pub fn cmp_paths(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let key = |&c: &u8| if c == b'/' { 0 } else { c };
    a.iter().map(key).cmp(b.iter().map(key))
}

/// Whether `path` lies below `dir` (`dir` empty: the top, which holds all).
fn below(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty() || (path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/')
}

impl Shape {
    /// Check one entry (already checked by [`check_header`]) against those
    /// before it, and remember what the later ones need.
    pub fn check(&mut self, h: &Header) -> Result<()> {
        let name = short(&h.path);
        let kind = Seen::of(h.kind);
        let first = self.whole.is_none();
        let whole = *self.whole.get_or_insert(h.path == b".");
        if h.path == b"." {
            if !first {
                bail!(
                    "entry \".\" (the top of the tree) {}",
                    if whole {
                        "appears twice (a backup writes each path once)"
                    } else {
                        "is not the archive's first entry (a backup writes the top first)"
                    }
                );
            }
            self.chain.push((0, Seen::Dir));
            return Ok(());
        }
        let path = &h.path[..];
        // The entries on the way to the one before that hold this one.
        while let Some(&(len, _)) = self.chain.last() {
            if below(path, &self.prev[..len]) {
                break;
            }
            self.chain.pop();
        }
        // None may be other than a directory: a file below a symlink
        // (`a -> ..`, then `a/x`) or below a regular file would be written
        // through it. Only the innermost can be: the others held an entry.
        if let Some(&(len, k)) = self.chain.last().filter(|(_, k)| *k != Seen::Dir) {
            bail!(
                "entry {name:?} lies below {:?}, which is {} in the archive, not a directory",
                short(&path[..len]),
                what(k)
            );
        }
        let parent = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
        let in_walk = self.chain.last().is_some_and(|&(len, _)| len == parent);
        if in_walk || whole {
            in_order(
                cmp_paths(&self.prev, path),
                &name,
                &self.prev,
                "each directory's names in sorted order, after the directory",
            )?;
        }
        if !in_walk {
            if let Some(&(len, _)) = self.chain.last() {
                // A directory on the way to it is missing (extras: below
                // a listed directory, whose walk writes all it holds).
                let from = if len == 0 { 0 } else { len + 1 };
                let end = path[from..]
                    .iter()
                    .position(|&b| b == b'/')
                    .map_or(path.len(), |i| from + i);
                bail!(
                    "entry {name:?} comes before its directory {:?} (a backup writes a directory before what it holds)",
                    short(&path[..end])
                );
            }
            // Extras: a listed path.
            self.check_listed(path, kind)?;
        }
        if h.kind == Kind::HardLink {
            if h.meta.link == h.path {
                bail!("hard link {name:?} points at itself");
            }
            if !self.linked.contains(&path_digest(&h.meta.link)) {
                bail!(
                    "hard link {name:?} points at {:?}, which is not a regular file with more than one link written before it (a backup links only to such a file, with its link count recorded)",
                    short(&h.meta.link)
                );
            }
        }
        if h.kind == Kind::File && h.meta.nlink > 1 {
            self.linked.insert(path_digest(path));
        }
        self.prev.clear();
        self.prev.extend_from_slice(path);
        self.chain.push((path.len(), kind));
        Ok(())
    }

    /// An entry of the extras that starts a listed path: after the last one
    /// in bytewise order, and below none before it.
    fn check_listed(&mut self, path: &[u8], kind: Seen) -> Result<()> {
        let name = short(path);
        if !self.listed.is_empty() {
            in_order(
                self.listed.as_slice().cmp(path),
                &name,
                &self.listed,
                "the listed paths in sorted order",
            )?;
        }
        while let Some(&(len, _)) = self.listed_chain.last() {
            if path.starts_with(&self.listed[..len]) {
                break;
            }
            self.listed_chain.pop();
        }
        if let Some(&(len, k)) = self
            .listed_chain
            .iter()
            .find(|&&(len, _)| below(path, &self.listed[..len]))
        {
            let dir = short(&self.listed[..len]);
            if k == Seen::Dir {
                bail!(
                    "entry {name:?} lies below the directory {dir:?}, written before it with all it held (a backup writes each path once)"
                );
            }
            bail!(
                "entry {name:?} lies below {dir:?}, which is {} in the archive, not a directory",
                what(k)
            );
        }
        self.listed.clear();
        self.listed.extend_from_slice(path);
        self.listed_chain.push((path.len(), kind));
        Ok(())
    }
}

/// An entry against the one before it (`ord`: the earlier one's order to
/// it): after it, never equal (a duplicate), never before it.
fn in_order(ord: std::cmp::Ordering, name: &str, prev: &[u8], how: &str) -> Result<()> {
    match ord {
        std::cmp::Ordering::Less => Ok(()),
        std::cmp::Ordering::Equal => {
            bail!("entry {name:?} appears twice (a backup writes each path once)")
        }
        std::cmp::Ordering::Greater => bail!(
            "entry {name:?} is out of order after {:?} (a backup writes {how})",
            short(prev)
        ),
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
