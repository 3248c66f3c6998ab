//! File-system primitives of the archive engine, all relative to directory
//! descriptors: nothing here follows a symlink found in a tree.

use super::tar::{Kind, Meta};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{self, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::ffi::{CStr, CString};

pub fn cstr(name: &[u8]) -> CString {
    CString::new(name).expect("names from directories and archives hold no NUL")
}

/// `/proc/self/fd/N`: the inode an O_PATH descriptor holds.
pub fn proc_fd(fd: BorrowedFd) -> CString {
    cstr(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes())
}

/// `/proc/self/fd/DIR/NAME`: with the l* calls, the entry itself, never what
/// it points to, and never outside DIR.
pub fn proc_at(dir: BorrowedFd, name: &CStr) -> CString {
    let mut v = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    v.extend_from_slice(name.to_bytes());
    cstr(&v)
}

pub fn lstat_at(dir: BorrowedFd, name: &CStr) -> Result<Stat, Errno> {
    fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
}

pub fn kind_of(st: &Stat) -> Option<Kind> {
    Some(match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        FileType::CharacterDevice => Kind::Char,
        FileType::BlockDevice => Kind::Block,
        FileType::Fifo => Kind::Fifo,
        _ => return None,
    })
}

/// The stored metadata of a stat (no xattrs, link, hash).
pub fn meta_of(st: &Stat) -> Meta {
    Meta {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec as u32,
        size: st.st_size as u64,
        rdev_major: fs::major(st.st_rdev),
        rdev_minor: fs::minor(st.st_rdev),
        ..Meta::default()
    }
}

/// Name/value pairs, sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// How xattrs of one object are addressed.
pub enum XattrTarget<'a> {
    /// An open descriptor (regular file or directory opened for reading).
    Fd(BorrowedFd<'a>),
    /// A path given to the l* calls (symlinks, devices, fifos).
    Path(&'a CStr),
    /// A `/proc/self/fd/N` path given to the following calls: the object an
    /// O_PATH descriptor holds.
    Follow(&'a CStr),
}

fn split_names(list: &[u8]) -> Vec<Vec<u8>> {
    list.split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn unsupported(e: Errno) -> bool {
    e == Errno::OPNOTSUPP || e == Errno::NOTSUP
}

/// All xattrs of an object, sorted by name.
pub fn read_xattrs(t: &XattrTarget) -> Result<Xattrs, Errno> {
    for _ in 0..8 {
        let size = match t {
            XattrTarget::Fd(fd) => fs::flistxattr_query(fd),
            XattrTarget::Path(p) => fs::llistxattr_query(*p),
            XattrTarget::Follow(p) => fs::listxattr_query(*p),
        };
        let size = match size {
            Ok(0) => return Ok(Vec::new()),
            Ok(n) => n,
            Err(e) if unsupported(e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut list = vec![0u8; size];
        let n = match t {
            XattrTarget::Fd(fd) => fs::flistxattr(fd, &mut list[..]),
            XattrTarget::Path(p) => fs::llistxattr(*p, &mut list[..]),
            XattrTarget::Follow(p) => fs::listxattr(*p, &mut list[..]),
        };
        let n = match n {
            Ok(n) => n,
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        let mut raced = false;
        for name in split_names(&list[..n]) {
            let cname = cstr(&name);
            match get_xattr(t, &cname) {
                Ok(v) => out.push((name, v)),
                Err(Errno::NODATA) => {}
                Err(Errno::RANGE) => {
                    raced = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if !raced {
            out.sort();
            return Ok(out);
        }
    }
    Err(Errno::AGAIN)
}

fn get_xattr(t: &XattrTarget, name: &CStr) -> Result<Vec<u8>, Errno> {
    let size = match t {
        XattrTarget::Fd(fd) => fs::fgetxattr_query(fd, name)?,
        XattrTarget::Path(p) => fs::lgetxattr_query(*p, name)?,
        XattrTarget::Follow(p) => fs::getxattr_query(*p, name)?,
    };
    let mut v = vec![0u8; size];
    if size == 0 {
        return Ok(v);
    }
    let n = match t {
        XattrTarget::Fd(fd) => fs::fgetxattr(fd, name, &mut v[..])?,
        XattrTarget::Path(p) => fs::lgetxattr(*p, name, &mut v[..])?,
        XattrTarget::Follow(p) => fs::getxattr(*p, name, &mut v[..])?,
    };
    v.truncate(n);
    Ok(v)
}

/// Make the object's xattrs exactly `want` (set changed, remove extra).
pub fn apply_xattrs(t: &XattrTarget, want: &[(Vec<u8>, Vec<u8>)]) -> Result<(), Errno> {
    let have = read_xattrs(t)?;
    for (k, _) in &have {
        if !want.iter().any(|(w, _)| w == k) {
            let c = cstr(k);
            let r = match t {
                XattrTarget::Fd(fd) => fs::fremovexattr(fd, &c),
                XattrTarget::Path(p) => fs::lremovexattr(*p, &c),
                XattrTarget::Follow(p) => fs::removexattr(*p, &c),
            };
            match r {
                Ok(()) | Err(Errno::NODATA) => {}
                Err(e) => return Err(e),
            }
        }
    }
    for (k, v) in want {
        if have.iter().any(|(hk, hv)| hk == k && hv == v) {
            continue;
        }
        let c = cstr(k);
        match t {
            XattrTarget::Fd(fd) => fs::fsetxattr(fd, &c, v, fs::XattrFlags::empty())?,
            XattrTarget::Path(p) => fs::lsetxattr(*p, &c, v, fs::XattrFlags::empty())?,
            XattrTarget::Follow(p) => fs::setxattr(*p, &c, v, fs::XattrFlags::empty())?,
        }
    }
    Ok(())
}

/// Open a directory entry for reading without following a symlink there,
/// and without blocking: a FIFO or device swapped in after the `lstat` (a
/// pod can do that) opens at once, and the caller's `fstat` sees it.
pub fn open_read(dir: BorrowedFd, name: &CStr, directory: bool) -> Result<OwnedFd, Errno> {
    let mut flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    if directory {
        flags |= OFlags::DIRECTORY;
    }
    match fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => fs::openat(dir, name, flags, Mode::empty()),
        r => r,
    }
}

/// Names in a directory with their d_type (None when the file system does
/// not say), sorted bytewise.
pub fn list_dir_typed(dir: BorrowedFd) -> Result<Vec<(CString, Option<FileType>)>, Errno> {
    let fd = fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for e in fs::Dir::read_from(fd.as_fd())? {
        let e = e?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            let t = e.file_type();
            names.push((n.to_owned(), (t != FileType::Unknown).then_some(t)));
        }
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(names)
}

/// Names in a directory (not `.`/`..`), sorted bytewise.
pub fn list_dir(dir: BorrowedFd) -> Result<Vec<CString>, Errno> {
    Ok(list_dir_typed(dir)?.into_iter().map(|(n, _)| n).collect())
}

/// Data extents of a file (SEEK_DATA/SEEK_HOLE); one extent when dense.
pub fn extents(fd: BorrowedFd, size: u64) -> Result<Vec<(u64, u64)>, Errno> {
    let mut out = Vec::new();
    let mut off = 0u64;
    while off < size {
        let data = match fs::seek(fd, fs::SeekFrom::Data(off)) {
            Ok(d) => d,
            Err(Errno::NXIO) => break,
            Err(Errno::INVAL) => return Ok(vec![(0, size)]),
            Err(e) => return Err(e),
        };
        if data >= size {
            break;
        }
        let hole = fs::seek(fd, fs::SeekFrom::Hole(data))?.min(size);
        out.push((data, hole - data));
        off = hole;
    }
    fs::seek(fd, fs::SeekFrom::Start(0))?;
    Ok(out)
}

/// Directory levels a walk keeps open; below them it lets go of the parent
/// while a subdirectory is walked and opens it again with [`reopen_parent`].
pub const HELD_LEVELS: usize = 32;

/// Below [`HELD_LEVELS`], let go of a walk's directory while it descends:
/// its identity, for [`reopen_parent`] on the way back; None when kept.
pub fn let_go(held: &mut Option<OwnedFd>, depth: usize) -> Result<Option<Stat>, Errno> {
    if depth < HELD_LEVELS {
        return Ok(None);
    }
    let st = match held {
        Some(fd) => fs::fstat(&*fd)?,
        None => return Ok(None),
    };
    *held = None;
    Ok(Some(st))
}

/// Run `f` on `sub`, a subdirectory of the directory held in `*held` at
/// `depth`. From [`HELD_LEVELS`] down, the parent is let go of while `f`
/// runs, so the descriptors held open stay bounded however deep the tree
/// is, and taken back after through `sub`'s `..`, checked to be the
/// directory let go of (`back` names it for the error). `f` gives `sub`
/// back with its result; on return `*held` holds the parent again.
pub fn descend<T>(
    held: &mut Option<OwnedFd>,
    sub: OwnedFd,
    depth: usize,
    back: impl FnOnce() -> String,
    f: impl FnOnce(OwnedFd) -> anyhow::Result<(T, OwnedFd)>,
) -> anyhow::Result<T> {
    use anyhow::Context;
    let released = let_go(held, depth)?;
    let (out, sub) = f(sub)?;
    if let Some(parent) = released {
        *held = Some(reopen_parent(sub.as_fd(), &parent).with_context(back)?);
    }
    Ok(out)
}

/// The parent of the directory `child` through `..`, which must be the
/// directory `was` (else it was moved meanwhile, and the walk stops).
pub fn reopen_parent(child: BorrowedFd, was: &Stat) -> std::io::Result<OwnedFd> {
    let fd = fs::openat(
        child,
        c"..",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    let st = fs::fstat(&fd)?;
    if st.st_dev != was.st_dev || st.st_ino != was.st_ino {
        return Err(std::io::Error::other(
            "the directory was moved while being walked",
        ));
    }
    Ok(fd)
}

/// Whether an open descriptor holds the object an earlier `lstat` saw.
pub fn same_object(a: &Stat, b: &Stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino && kind_of(a) == kind_of(b)
}

pub fn is_dense(ext: &[(u64, u64)], size: u64) -> bool {
    size == 0 || (ext.len() == 1 && ext[0] == (0, size))
}
