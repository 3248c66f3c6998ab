//! Backups and recoveries in other backup dirs than this run's `--dir`
//! (issue 22, item 6): from facts, whatever deployment is pinned.
//!
//! Where the other dirs are looked for, and why:
//! - every directory `/var/*/` (one level): where admins put a second
//!   backup (`/var/recovery2`), and what the backup's own checks accept;
//! - the auto-resume unit `/etc/systemd/system/upgrade-recovery-resume.service`:
//!   installed after a files phase with `--auto-resume`, its `ExecStart`
//!   carries `--dir D` (`packaging/upgrade-recovery-resume.service`, written
//!   by `recovery::resume_unit_text`);
//! - the record [`RECORD`], `/var/lib/upgrade-recovery/backup-dirs`: one
//!   absolute dir a line, followed by a tab and [`MARK`] while a recovery
//!   is under way there; written by every backup, by every recovery when
//!   its journal is first written and when it completes. It finds a dir
//!   anywhere (`--dir /srv/backup`), and it is under `/var/lib` because
//!   the recovery never restores that tree (only `/var/lib/kubelet` and
//!   etcd) and TALM's Job mounts `/var/lib` but of the backup dirs only
//!   `/var/recovery` (cluster-group-upgrades-operator
//!   `controllers/templates/backup-templates.go`): in the Job the record
//!   is the only fact of a recovery in `/var/recovery2`.
//!
//! Nothing named is obeyed unchecked: a record or unit that is not a
//! regular file of root's, or not text of absolute paths, is ignored and
//! said (a note); a dir someone else could change (`store::trust`) or one
//! that holds neither a backup nor a recovery is not counted. A dir that
//! can be read is judged by what it holds, never by the record's mark (a
//! mark without a journal there is stale: ignored, and said); the mark is
//! obeyed only for a dir that cannot be seen (the Job's jail).

use crate::node::host::Host;
use crate::store::{self, lock, Kind};
use serde::Serialize;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// The record of backup dirs (on the node).
pub const RECORD: &str = "/var/lib/upgrade-recovery/backup-dirs";
/// The auto-resume unit as installed (on the node).
pub const UNIT: &str = "/etc/systemd/system/upgrade-recovery-resume.service";
/// The record's mark of a dir with a recovery under way.
pub const MARK: &str = "recovery-under-way";
/// A record larger than this is not ours.
const RECORD_MAX: u64 = 64 * 1024;

/// Another backup dir that holds something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// The dir as the node names it.
    pub dir: String,
    /// A recovery is under way there (a journal, today's `progress`, or a
    /// restore holding its lock).
    pub under_way: bool,
    /// Where the dir was learnt of (`/var/*/`, the unit, the record).
    pub from: String,
}

/// What was found, and what was read but not obeyed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Elsewhere {
    pub found: Vec<Found>,
    pub notes: Vec<String>,
}

impl Elsewhere {
    /// The first dir with a recovery under way.
    pub fn under_way(&self) -> Option<&Found> {
        self.found.iter().find(|f| f.under_way)
    }
}

/// A node path that a record may name: absolute, no `..`, no control
/// characters, not `/`.
fn valid_dir(s: &str) -> Result<PathBuf, String> {
    let p = Path::new(s);
    if !p.is_absolute() {
        return Err(format!("`{s}` is not an absolute path"));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(format!("`{s}` contains `..`"));
    }
    if s.chars().any(char::is_control) {
        return Err("a path with control characters".into());
    }
    if p.parent().is_none() {
        return Err("`/` is not a backup dir".into());
    }
    Ok(p.to_path_buf())
}

/// One dir of the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dir: PathBuf,
    /// Marked: a recovery was under way there when last written.
    pub under_way: bool,
}

/// The record's dirs (pure): `DIR` or `DIR<tab>recovery-under-way` a
/// line. Empty lines are skipped; any other bad line makes the whole
/// record malformed (it was not written by us). A dir named twice: the
/// last line wins.
pub fn parse_record(text: &str) -> Result<Vec<Entry>, String> {
    let mut out: Vec<Entry> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = |e: String| format!("line {}: {e}", n + 1);
        let (path, under_way) = match line.split_once('\t') {
            None => (line, false),
            Some((p, m)) if m == MARK => (p, true),
            Some((_, m)) => return Err(bad(format!("`{m}` is not `{MARK}`"))),
        };
        let dir = valid_dir(path).map_err(bad)?;
        out.retain(|e| e.dir != dir);
        out.push(Entry { dir, under_way });
    }
    Ok(out)
}

/// The record's text (the inverse of [`parse_record`]).
fn record_text(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| {
            format!(
                "{}{}\n",
                e.dir.display(),
                if e.under_way {
                    format!("\t{MARK}")
                } else {
                    String::new()
                }
            )
        })
        .collect()
}

/// The `--dir` of the resume unit's `ExecStart` (pure): `--dir D` or
/// `--dir=D`.
pub fn parse_unit_dir(text: &str) -> Result<PathBuf, String> {
    let exec = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("ExecStart="))
        .ok_or("no ExecStart= line")?;
    let mut words = exec.split_whitespace();
    while let Some(w) = words.next() {
        if w == "--dir" {
            return valid_dir(words.next().ok_or("--dir without a value")?);
        }
        if let Some(v) = w.strip_prefix("--dir=") {
            return valid_dir(v);
        }
    }
    Err("its ExecStart= has no --dir".into())
}

/// A file root wrote and only root may change, as text; None when absent.
fn read_trusted(host: &Host, node_path: &str) -> Result<Option<String>, String> {
    let p = host.path(node_path);
    let md = match std::fs::symlink_metadata(&p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
        Ok(md) => md,
    };
    if !md.is_file() {
        return Err("not a regular file".into());
    }
    if md.uid() != 0 || md.mode() & store::trust::GROUP_OTHER_WRITE != 0 {
        return Err(format!(
            "{}: someone else could have written it",
            store::trust::who(&md)
        ));
    }
    if md.len() > RECORD_MAX {
        return Err(format!("{} bytes: not a record of ours", md.len()));
    }
    let bytes = std::fs::read(&p).map_err(|e| e.to_string())?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| "not UTF-8 text".into())
}

/// The other backup dirs of the node, and what each holds.
pub fn find(host: &Host) -> Elsewhere {
    let mut out = Elsewhere::default();
    // (dir, where it was learnt of, the record's mark)
    let mut candidates: Vec<(PathBuf, String, bool)> = Vec::new();
    let mut var: Vec<PathBuf> = std::fs::read_dir(host.path("/var"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| Path::new("/var").join(e.file_name()))
        .collect();
    var.sort();
    candidates.extend(var.into_iter().map(|d| (d, "/var/*/".to_string(), false)));
    match read_trusted(host, UNIT).and_then(|t| t.map(|t| parse_unit_dir(&t)).transpose()) {
        Ok(Some(d)) => candidates.push((d, UNIT.into(), false)),
        Ok(None) => {}
        Err(e) => out.notes.push(format!("{UNIT}: {e}: ignored")),
    }
    match read_trusted(host, RECORD).and_then(|t| t.map(|t| parse_record(&t)).transpose()) {
        Ok(Some(es)) => candidates.extend(
            es.into_iter()
                .map(|e| (e.dir, RECORD.to_string(), e.under_way)),
        ),
        Ok(None) => {}
        Err(e) => out.notes.push(format!("{RECORD}: {e}: ignored")),
    }
    let mut seen: Vec<PathBuf> = vec![host.dir.clone()];
    for (d, from, marked) in candidates {
        let real = host.path(&d);
        if seen.contains(&d) {
            // Found already: the record's mark is only said when stale.
            if marked && store::recovery_record(&real).is_none() && real.exists() {
                out.notes.push(stale(&d));
            }
            continue;
        }
        seen.push(d.clone());
        if std::fs::symlink_metadata(&real).is_err() {
            // Not here (the Job's jail mounts only /var/recovery): the
            // record's mark is all there is to go by.
            if marked {
                out.found.push(Found {
                    dir: d.display().to_string(),
                    under_way: true,
                    from: format!("{from}, which marks it; the dir is not visible here"),
                });
            } else if from != "/var/*/" {
                out.notes.push(format!(
                    "{from} names {}, which is not there: ignored",
                    d.display()
                ));
            }
            continue;
        }
        let under_way = store::recovery_record(&real).is_some()
            || lock::holder(&real).is_some_and(|h| h.what == lock::RESTORE);
        let holds = !matches!(store::inspect(&real), Ok(Kind::Empty) | Err(_));
        if marked && !under_way {
            out.notes.push(stale(&d));
        }
        if !(under_way || holds) {
            if from != "/var/*/" {
                out.notes.push(format!(
                    "{from} names {}, which holds no backup and no recovery: ignored",
                    d.display()
                ));
            }
            continue;
        }
        if let Some(p) = store::trust::problem(&real) {
            out.notes.push(format!("{}: {p}", d.display()));
            continue;
        }
        out.found.push(Found {
            dir: d.display().to_string(),
            under_way,
            from,
        });
    }
    out
}

fn stale(d: &Path) -> String {
    format!(
        "{RECORD} marks a recovery under way in {}, but it has no journal: the mark is stale (ignored)",
        d.display()
    )
}

/// The command that drops the line of `dir` from the record: the way out
/// when the record marks a recovery in a dir that was removed.
pub fn forget_command(dir: &str) -> String {
    format!("sed -i '\\#^{dir}\\(\\t\\|$\\)#d' {RECORD}")
}

/// Record this run's dir in [`RECORD`], marked while a recovery is under
/// way there (a backup: `false`; a recovery: `true` when its journal is
/// first written, `false` when it completes). A record that cannot be
/// read is replaced; a failure is a warning only: the dir is still found
/// under `/var/*/`, or by `--dir`.
pub fn remember(host: &Host, under_way: bool) {
    if let Err(e) = try_remember(host, under_way) {
        log::warn!("could not record {} in {RECORD}: {e:#}", host.dir.display());
    }
}

fn try_remember(host: &Host, under_way: bool) -> anyhow::Result<()> {
    let mut dirs = read_trusted(host, RECORD)
        .ok()
        .flatten()
        .and_then(|t| parse_record(&t).ok())
        .unwrap_or_default();
    let entry = Entry {
        dir: host.dir.clone(),
        under_way,
    };
    if dirs.contains(&entry) {
        return Ok(());
    }
    dirs.retain(|e| e.dir != host.dir);
    dirs.push(entry);
    let p = host.path(RECORD);
    let parent = p.parent().expect("the record has a parent");
    std::fs::create_dir_all(parent)?;
    std::fs::set_permissions(parent, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    crate::util::fsutil::write_atomic(&p, record_text(&dirs).as_bytes(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_absolute_dirs_a_line() {
        let e = |d: &str, under_way| Entry {
            dir: d.into(),
            under_way,
        };
        let entries =
            parse_record("/var/recovery2\n\n/srv/b\trecovery-under-way\n/var/recovery2\n").unwrap();
        assert_eq!(entries, vec![e("/srv/b", true), e("/var/recovery2", false)]);
        assert_eq!(parse_record(&record_text(&entries)).unwrap(), entries);
        assert_eq!(parse_record("").unwrap(), Vec::<Entry>::new());
        for (bad, why) in [
            (
                "/var/r\tdone\n",
                "line 1: `done` is not `recovery-under-way`",
            ),
            ("recovery2\n", "line 1: `recovery2` is not an absolute path"),
            (
                "/var/r\n/var/../etc\n",
                "line 2: `/var/../etc` contains `..`",
            ),
            ("/\n", "line 1: `/` is not a backup dir"),
            (
                "/var/a\u{1b}[2J\n",
                "line 1: a path with control characters",
            ),
        ] {
            assert_eq!(parse_record(bad).unwrap_err(), why, "{bad:?}");
        }
    }

    /// The way out printed for a marked dir that is gone drops its line
    /// alone (GNU sed, as on RHCOS).
    #[test]
    fn the_forget_command_drops_one_line() {
        let d = std::env::temp_dir().join(format!("ur-forget-{}", std::process::id()));
        std::fs::write(
            &d,
            "/var/recovery2\trecovery-under-way\n/var/recovery22\n/var/recovery\n",
        )
        .unwrap();
        let cmd = forget_command("/var/recovery2").replace(RECORD, d.to_str().unwrap());
        let st = std::process::Command::new("sh")
            .args(["-c", &cmd])
            .status()
            .unwrap();
        assert!(st.success(), "{cmd}");
        assert_eq!(
            std::fs::read_to_string(&d).unwrap(),
            "/var/recovery22\n/var/recovery\n",
            "{cmd}"
        );
        let _ = std::fs::remove_file(&d);
    }

    #[test]
    fn the_units_dir_is_its_exec_start_dir() {
        let unit = include_str!("../../packaging/upgrade-recovery-resume.service")
            .replace("/var/recovery", "/var/recovery2");
        assert_eq!(parse_unit_dir(&unit).unwrap(), Path::new("/var/recovery2"));
        assert_eq!(
            parse_unit_dir("ExecStart=/x/upgrade-recovery --dir=/srv/b restore").unwrap(),
            Path::new("/srv/b")
        );
        assert_eq!(
            parse_unit_dir("[Unit]\n").unwrap_err(),
            "no ExecStart= line"
        );
        assert_eq!(
            parse_unit_dir("ExecStart=/x/upgrade-recovery restore --resume").unwrap_err(),
            "its ExecStart= has no --dir"
        );
        assert_eq!(
            parse_unit_dir("ExecStart=/x/upgrade-recovery --dir").unwrap_err(),
            "--dir without a value"
        );
        assert_eq!(
            parse_unit_dir("ExecStart=/x/u --dir rel restore").unwrap_err(),
            "`rel` is not an absolute path"
        );
    }
}
