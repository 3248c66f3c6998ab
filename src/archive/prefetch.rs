//! Read-ahead for cold caches: a thread walks the tree in the same order as
//! the archive (sorted, pre-order, same file system, no symlinks followed)
//! and asks the kernel to read each file ahead (`posix_fadvise(WILLNEED)`),
//! staying at most a window of bytes ahead of the consumer. The kernel then
//! has many reads in flight instead of one, which is what a cold walk of many
//! small files needs.

use super::fsops;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{self, Advice, FileType, Mode, OFlags};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WINDOW: u64 = 96 << 20;

/// Dropping it stops the thread.
pub struct Prefetch {
    consumed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Prefetch {
    pub fn start(top: &Path) -> Prefetch {
        Prefetch::ahead(top, 0)
    }

    /// [`Prefetch::start`] with `budget` bytes already taken as consumed:
    /// the thread reads ahead that much (and the window) with no consumer,
    /// then waits. For a tree that is read later (the restore's targets,
    /// while the backup parts are checked).
    pub fn ahead(top: &Path, budget: u64) -> Prefetch {
        let consumed = Arc::new(AtomicU64::new(budget));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (consumed.clone(), stop.clone());
        let top = top.to_path_buf();
        let _ = std::thread::Builder::new()
            .name("prefetch".into())
            .spawn(move || {
                if let Ok(fd) = fs::open(
                    &top,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    if let Ok(st) = fs::fstat(&fd) {
                        let mut issued = 0u64;
                        walk(fd.as_fd(), st.st_dev, &c, &s, &mut issued, 0);
                    }
                }
            });
        Prefetch { consumed, stop }
    }

    /// The consumer has dealt with `bytes` more bytes of file data.
    pub fn consumed(&self, bytes: u64) {
        self.consumed.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn walk(
    dir: BorrowedFd,
    dev: u64,
    consumed: &AtomicU64,
    stop: &AtomicBool,
    issued: &mut u64,
    depth: usize,
) -> bool {
    let Ok(names) = fsops::list_dir(dir) else {
        return true;
    };
    for name in names {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let Ok(st) = fsops::lstat_at(dir, &name) else {
            continue;
        };
        match FileType::from_raw_mode(st.st_mode) {
            // Not deeper than the walker keeps open: one descriptor a level,
            // and the walker needs them (a pod can nest 1,100 levels).
            FileType::Directory if st.st_dev == dev && depth < fsops::HELD_LEVELS => {
                if let Ok(d) = fsops::open_read(dir, &name, true) {
                    if !walk(d.as_fd(), dev, consumed, stop, issued, depth + 1) {
                        return false;
                    }
                }
            }
            FileType::RegularFile if st.st_size > 0 => {
                while *issued > consumed.load(Ordering::Relaxed) + WINDOW {
                    if stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                if let Ok(f) = fsops::open_read(dir, &name, false) {
                    let _ = fs::fadvise(&f, 0, None, Advice::WillNeed);
                }
                *issued += st.st_size as u64;
            }
            _ => {}
        }
    }
    true
}
