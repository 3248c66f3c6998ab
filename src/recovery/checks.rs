//! The backup parts a phase still needs, checked before the phase's first
//! change.
//!
//! A phase checks what its remaining steps will read and no more: the files
//! phase the /etc, /usr/local and extras archives and `etc.exclude.list`,
//! the cluster phase the kubelet archive, the images, the etcd snapshot and
//! the static-pod resources. Each part is checked by the check `verify`
//! makes (`store::verify::check`, one sequential read each): an archive is
//! read in full (its sha256 and size, every entry validated and checked
//! against its own sha256), the snapshot's sha256 and its trailer come from
//! the same read. Damage found here changes nothing: the phase has not
//! started.
//!
//! The preflight of a recovery checks, before the files phase's first
//! change, the parts of the later phases too, as issue 27.1 words it:
//! "every part that the whole recovery will read is checked in full (sha256
//! of the snapshot and of every archive, read once, in parallel); the later
//! phases check again". So the files phase's own parts are checked in full
//! (parsed: they are restored next), the later phases' parts by their size
//! and sha256 ([`by_sha256`]: an archive read once and hashed, not parsed;
//! the snapshot's trailer from the same read), all side by side. Damage
//! that keeps a part's size (a flipped byte, issue 27.1's case) changes its
//! sha256 and stops the recovery before its first change. The bytes that
//! match the manifest's sha256 are those the backup checked in full as it
//! wrote them, and that `verify` checks in full; each later phase parses its
//! own parts in full again before its own first change, so a hostile
//! archive written together with a manifest that matches it is refused
//! there (before the cluster phase changes anything, after the reboot)
//! instead of before the files phase. Parsing the kubelet archive in the
//! preflight cost the files phase most of its time at a DU's shape (issue
//! 25: ten times the data of /etc and /usr/local), for that case only.

use super::{Phase, STEPS};
use crate::store::blob::{size_mismatch, Check, Stored};
use crate::store::manifest::Manifest;
use std::path::Path;

/// One part of the backup a step reads, and how to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part<'a> {
    /// A file the manifest records (an archive, the snapshot, the
    /// static-pod resources) or the images: checked as `verify` checks it.
    Stored(Stored<'a>),
    /// `etc.exclude.list` (no recorded sha256: readable, no NUL byte).
    ExcludeList,
}

impl Part<'_> {
    pub fn name(&self) -> String {
        match self {
            Part::Stored(s) => s.label(),
            Part::ExcludeList => crate::store::layout::EXCLUDE_LIST.to_string(),
        }
    }
}

/// What the given steps read from the backup, in step order.
pub fn parts_for<'a>(m: &'a Manifest, steps: &[&str]) -> Vec<Part<'a>> {
    let tree = |name: &str| {
        m.tree(name)
            .map(|t| Part::Stored(Stored::Blob(t.blob(), Check::Archive)))
    };
    let mut out = Vec::new();
    for s in steps {
        if let Some(name) = tree_of(s) {
            out.extend(tree(name));
            if name == "etc" {
                out.push(Part::ExcludeList);
            }
            continue;
        }
        match *s {
            // The recovery's own programs: the auto-resume unit and the
            // documented `upgrade-recovery.sh --resume` run them after the
            // files phase's reboot; checked before its first change.
            "preflight" => out.extend(m.programs().into_iter().map(Part::Stored)),
            "restore-images" if !m.images.is_empty() => {
                out.push(Part::Stored(Stored::Images(&m.images)))
            }
            "restore-etcd" => {
                if let Some(e) = &m.etcd {
                    out.push(Part::Stored(Stored::Blob(e.blob.clone(), Check::Snapshot)));
                }
                if let Some(s) = &m.static_pods {
                    out.push(Part::Stored(Stored::Blob(s.blob.clone(), Check::File)));
                }
            }
            _ => {}
        }
    }
    out
}

/// The same parts checked by their size and sha256 only: an archive read
/// once for its sha256, not parsed (`Check::File`); the snapshot keeps its
/// trailer check (the same read), the others are plain files already. For
/// the parts of the later phases in the preflight (see the module's doc).
pub fn by_sha256(parts: Vec<Part>) -> Vec<Part> {
    parts
        .into_iter()
        .map(|p| match p {
            Part::Stored(Stored::Blob(b, Check::Archive)) => {
                Part::Stored(Stored::Blob(b, Check::File))
            }
            p => p,
        })
        .collect()
}

/// The tree a step restores (`local`, `etc`, `extras`, `kubelet`).
pub fn tree_of(step: &str) -> Option<&'static str> {
    match step {
        "restore-usr-local" => Some("local"),
        "restore-etc" => Some("etc"),
        "restore-extras" => Some("extras"),
        "restore-kubelet" => Some("kubelet"),
        _ => None,
    }
}

/// The tops of the trees the given steps restore that are no longer what
/// the backup found (`archive::restore_top`: a directory replaced by a
/// symlink, another link): one problem each. The extras are restored over
/// `/` file by file and have no top of their own.
pub fn tops(host: &crate::node::host::Host, m: &Manifest, steps: &[&str]) -> Vec<String> {
    steps
        .iter()
        .filter_map(|s| m.tree(tree_of(s)?))
        .filter(|t| t.source != "/")
        .filter_map(|t| {
            crate::archive::restore_top(&host.root, &t.source, t.resolved.as_deref())
                .err()
                .map(|e| format!("{e:#}"))
        })
        .collect()
}

/// The steps of `phase` that `done` does not hold.
pub fn remaining(phase: Phase, done: impl Fn(&str) -> bool) -> Vec<&'static str> {
    STEPS
        .iter()
        .filter(|s| s.phase == phase && !done(s.id.as_str()))
        .map(|s| s.id.as_str())
        .collect()
}

/// Every part that exists and has its recorded size: a look (no read) at
/// all of the backup, for the preflight.
pub fn sizes(dir: &Path, parts: &[Part]) -> Vec<String> {
    let mut problems = Vec::new();
    for p in parts {
        let Part::Stored(Stored::Blob(b, c)) = p else {
            continue;
        };
        let path = dir.join(&b.file);
        if *c == Check::Unrecorded {
            // No size recorded: its check says whether it is there.
            problems.extend(crate::store::verify::check(
                dir,
                &Stored::Blob(b.clone(), *c),
            ));
            continue;
        }
        match std::fs::symlink_metadata(&path) {
            Err(e) => problems.push(format!("{}: {e}", path.display())),
            Ok(md) if !md.is_file() => {
                problems.push(format!("{}: not a regular file", path.display()))
            }
            Ok(md) if md.len() != b.size => problems.push(size_mismatch(&path, md.len(), b.size)),
            Ok(_) => {}
        }
    }
    problems
}

/// Check the parts, each with one sequential read, as `verify` does (an
/// archive is read in full: its sha256, and every entry validated, nothing
/// leaving the tree, and checked against its own sha256, so a hostile
/// archive is refused before the phase changes anything), side by side on
/// the CPUs this process may use (`store::verify::check_each`); the problems
/// found, in the order of `parts`.
pub fn check(dir: &Path, parts: &[Part]) -> Vec<String> {
    let stored: Vec<&Stored> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Stored(s) => Some(s),
            Part::ExcludeList => None,
        })
        .collect();
    let mut found = crate::store::verify::check_each(dir, &stored).into_iter();
    let mut problems = Vec::new();
    for p in parts {
        match p {
            Part::Stored(_) => problems.extend(found.next().unwrap_or_default()),
            Part::ExcludeList => {
                if let Err(e) = exclude_list(dir).map(drop) {
                    problems.push(e);
                }
            }
        }
    }
    problems
}

/// The way out when the backup's copy of this tool (the binary, the
/// wrapper) is damaged: put intact bytes back where the documented
/// command and the auto-resume unit run them. The binary: from the one
/// running now when it is the build the backup recorded (`install`),
/// else the recorded build is named; the wrapper: its text is this tool's
/// for the dir (`store::layout::wrapper`), written back with `printf`. None when
/// both are intact.
pub fn program_way_out(host: &crate::node::host::Host, gen: &Path, m: &Manifest) -> Option<String> {
    use crate::store::layout::{BINARY, WRAPPER};
    let damaged: Vec<Stored> = m
        .programs()
        .into_iter()
        .filter(|p| !crate::store::verify::check(gen, p).is_empty())
        .collect();
    if damaged.is_empty() {
        return None;
    }
    // The generation as the node names it.
    let node_gen = host.dir.join(
        gen.file_name()
            .filter(|_| gen != host.backup_dir())
            .unwrap_or_default(),
    );
    let mut ways = Vec::new();
    for d in &damaged {
        let Stored::Blob(b, _) = d else { continue };
        if b.file == BINARY {
            // The running binary's own path (its link in /proc is not
            // read through: every file is opened without following one).
            let exe = std::fs::read_link("/proc/self/exe").ok();
            let same = exe.as_ref().is_some_and(|e| {
                crate::store::verify::file_sha256(e)
                    .is_ok_and(|(h, n)| h == b.sha256 && n == b.size)
            });
            match exe {
                Some(exe) if same || b.sha256.is_empty() => ways.push(format!(
                    "Put the binary back from the one running now ({}): `install -m 0700 {} {}`",
                    if same {
                        "the same build"
                    } else {
                        "its sha256 was not recorded"
                    },
                    exe.display(),
                    node_gen.join(BINARY).display()
                )),
                _ => ways.push(format!(
                    "Put back a copy of the build the backup recorded (sha256 {}, {} bytes; this tool's version {} as the backup Job's image ships it): `install -m 0700 COPY {}`",
                    b.sha256,
                    b.size,
                    m.tool_version,
                    node_gen.join(BINARY).display()
                )),
            }
        } else if b.file == WRAPPER {
            let text = crate::store::layout::wrapper(&host.dir);
            let quoted = text
                .replace('\\', "\\\\")
                .replace('%', "%%")
                .replace('\'', "'\\''");
            ways.push(format!(
                "Write the wrapper back (its text is this tool's for {}): `printf '{}' > {} && chmod 0700 {}`",
                host.dir.display(),
                quoted.replace('\n', "\\n"),
                node_gen.join(WRAPPER).display(),
                node_gen.join(WRAPPER).display()
            ));
        }
    }
    Some(format!(
        "The backup's copy of this tool is damaged; it is what {} and the auto-resume unit run after the files phase's reboot. {}; then check with `{}`",
        host.wrapper_cmd("--resume"),
        ways.join("; "),
        host.cmd("verify")
    ))
}

/// Room the recovery writes in the backup dir: the journal (written beside
/// itself, then renamed over it), `selinux-mode.json`, `last-recovery.json`,
/// the failure record and the lock, each a few KiB; 1 MiB is a wide margin.
pub const BACKUP_DIR_ROOM: u64 = 1 << 20;

/// A new etcd member's WAL segment: etcd preallocates each segment to
/// `SegmentSizeBytes` (etcd-io/etcd `wal/wal.go` in 3.4,
/// `server/storage/wal/wal.go` later: `64 * 1000 * 1000`), and
/// `etcdctl snapshot restore` creates one.
pub const ETCD_WAL_SEGMENT: u64 = 64 * 1000 * 1000;

/// Where the recovery writes, and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The path as on the node (`/var/recovery`).
    pub node_path: String,
    /// The path under the root, whose file system is asked.
    pub path: std::path::PathBuf,
    pub what: String,
    pub bytes: u64,
}

/// What the recovery writes besides restoring the trees (whose room is
/// what the upgrade took from them): its own records in the backup dir, and
/// the restored etcd member: a database of about the snapshot's size and a
/// WAL segment, plus the copy of the snapshot that `cluster-restore.sh`
/// makes in `/var/lib/etcd-backup` (openshift/cluster-etcd-operator
/// `bindata/etcd/cluster-restore.sh`: `cp -p ${SNAPSHOT_FILE}
/// ${ETCD_DATA_DIR_BACKUP}/snapshot.db`; counted for both ways).
pub fn room_needed(host: &crate::node::host::Host, m: &Manifest) -> Vec<Need> {
    let mut v = vec![Need {
        node_path: host.dir.display().to_string(),
        path: host.backup_dir(),
        what: "the recovery's journal and records".into(),
        bytes: BACKUP_DIR_ROOM,
    }];
    if let Some(e) = &m.etcd {
        v.push(Need {
            node_path: "/var/lib/etcd".into(),
            path: host.path("/var/lib/etcd"),
            what: "the restored etcd member (the snapshot twice, a WAL segment)".into(),
            bytes: 2 * e.blob.size + ETCD_WAL_SEGMENT,
        });
    }
    v
}

/// The nearest existing dir at or above `p`: the file system it will be on.
fn existing(p: &Path) -> &Path {
    p.ancestors()
        .find(|a| std::fs::symlink_metadata(a).is_ok())
        .unwrap_or(p)
}

/// The needs that their file systems cannot hold (needs on one file system
/// added up), with the free bytes there: `(needs, free)`.
pub fn short_of_room(needs: &[Need]) -> Vec<(Vec<&Need>, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut by_fs: Vec<(u64, Vec<&Need>)> = Vec::new();
    for n in needs {
        let dev = std::fs::metadata(existing(&n.path)).map_or(0, |m| m.dev());
        match by_fs.iter_mut().find(|(d, _)| *d == dev) {
            Some((_, v)) => v.push(n),
            None => by_fs.push((dev, vec![n])),
        }
    }
    by_fs
        .into_iter()
        .filter_map(|(_, v)| {
            let free = crate::util::fsutil::free_bytes(existing(&v[0].path)).ok()?;
            let need: u64 = v.iter().map(|n| n.bytes).sum();
            (free < need).then_some((v, free))
        })
        .collect()
}

/// Refuse, before the first change, a recovery whose own writes do not fit:
/// what is short where, and what to free.
pub fn require_room(host: &crate::node::host::Host, m: &Manifest) -> anyhow::Result<()> {
    use crate::util::fsutil::human;
    let needs = room_needed(host, m);
    let short = short_of_room(&needs);
    if short.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = short
        .iter()
        .map(|(v, free)| {
            let need: u64 = v.iter().map(|n| n.bytes).sum();
            let what: Vec<String> = v
                .iter()
                .map(|n| format!("{} in {}", n.what, n.node_path))
                .collect();
            format!(
                "the file system of {} has {} free; the recovery writes {} there ({}): free at least {} more (`df -h {}` shows it)",
                v[0].node_path,
                human(*free),
                human(need),
                what.join(", "),
                human(need - free),
                v[0].node_path
            )
        })
        .collect();
    anyhow::bail!(
        "not enough room for the recovery; nothing was changed and no recovery is recorded:\n  {}\nFree room there (files the upgrade left, old logs; never the backup in {} itself), then run `{}` to check, and `{}`.",
        lines.join("\n  "),
        host.dir.display(),
        host.cmd("restore --dry-run"),
        host.cmd("restore")
    )
}

/// `etc.exclude.list` of the backup: None when absent (the manifest's copy
/// is used then); an error when it is there but unreadable or holds a NUL.
pub fn exclude_list(dir: &Path) -> Result<Option<Vec<u8>>, String> {
    let p = dir.join(crate::store::layout::EXCLUDE_LIST);
    match std::fs::symlink_metadata(&p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", p.display())),
        Ok(md) if !md.is_file() => return Err(format!("{}: not a regular file", p.display())),
        Ok(_) => {}
    }
    let b = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    if b.contains(&0) {
        return Err(format!(
            "{}: holds a NUL byte, not an exclude list",
            p.display()
        ));
    }
    Ok(Some(b))
}

/// How `etc.exclude.list` (`file`, its bytes) differs from the list the
/// manifest recorded (`recorded`), line by line: the file has no sha256
/// (the admin may edit it, as with the old script, and the restore uses
/// the file), so an edit and a flipped byte look alike; the restore says
/// which lines differ. None when they hold the same lines.
pub fn exclude_list_changes(file: &[u8], recorded: &[String]) -> Option<String> {
    let lines: Vec<String> = String::from_utf8_lossy(file)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let only_file: Vec<&str> = lines
        .iter()
        .filter(|l| !recorded.contains(l))
        .map(String::as_str)
        .collect();
    let only_manifest: Vec<&str> = recorded
        .iter()
        .filter(|r| !lines.contains(r))
        .map(String::as_str)
        .collect();
    if only_file.is_empty() && only_manifest.is_empty() {
        return None;
    }
    Some(format!(
        "{} differs from the list the backup recorded in its manifest (edited since, or damaged: the file has no checksum); the restore of /etc uses the file. Only in the file: {}; only in the manifest: {}",
        crate::store::layout::EXCLUDE_LIST,
        if only_file.is_empty() { "nothing".to_string() } else { format!("{only_file:?}") },
        if only_manifest.is_empty() { "nothing".to_string() } else { format!("{only_manifest:?}") },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn a_snapshot_is_checked_as_verify_checks_it() {
        use crate::store::blob::Blob;
        let d = std::env::temp_dir().join(format!("ur-checks-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let body = vec![7u8; 1024];
        let mut data = body.clone();
        data.extend_from_slice(&Sha256::digest(&body));
        std::fs::write(d.join("snap.db"), &data).unwrap();
        let snap = |sha256: &str, size: u64, how: Check| {
            let b = Blob {
                file: "snap.db".into(),
                size,
                sha256: sha256.into(),
            };
            check(&d, &[Part::Stored(Stored::Blob(b, how))])
        };
        let sha = hex::encode(Sha256::digest(&data));
        let n = data.len() as u64;
        assert_eq!(snap(&sha, n, Check::Snapshot), Vec::<String>::new());
        assert!(snap(&sha, n + 1, Check::Snapshot)[0].contains("size"));
        assert!(snap("00", n, Check::Snapshot)[0].contains("sha256"));
        // A snapshot written with a wrong trailer, recorded as such.
        data[1030] ^= 1;
        std::fs::write(d.join("snap.db"), &data).unwrap();
        let sha = hex::encode(Sha256::digest(&data));
        assert!(snap(&sha, n, Check::Snapshot)[0].contains("trailer"));
        assert_eq!(snap(&sha, n, Check::File), Vec::<String>::new());
        std::fs::remove_file(d.join("snap.db")).unwrap();
        assert!(snap(&sha, n, Check::File)[0].contains("snap.db"));
        // The exclude list: absent is None, a NUL is damage.
        assert_eq!(exclude_list(&d), Ok(None));
        std::fs::write(d.join(crate::store::layout::EXCLUDE_LIST), b"a\0b\n").unwrap();
        assert!(exclude_list(&d).unwrap_err().contains("NUL"));
        assert!(check(&d, &[Part::ExcludeList])[0].contains("NUL"));
        std::fs::write(d.join(crate::store::layout::EXCLUDE_LIST), b"a\n").unwrap();
        assert_eq!(exclude_list(&d), Ok(Some(b"a\n".to_vec())));
        // Compared with the manifest's copy, line by line.
        let rec = vec!["a".to_string(), "kubernetes/manifests".to_string()];
        assert_eq!(
            exclude_list_changes(b"a\nkubernetes/manifests\n", &rec),
            None
        );
        let flipped = exclude_list_changes(b"a\nkubernetes/manifestq\n", &rec).unwrap();
        assert!(
            flipped.contains(r#"Only in the file: ["kubernetes/manifestq"]"#)
                && flipped.contains(r#"only in the manifest: ["kubernetes/manifests"]"#),
            "{flipped}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn by_sha256_reads_an_archive_for_its_sha256_and_keeps_the_snapshots_trailer() {
        use crate::store::blob::Blob;
        let b = |f: &str| Blob {
            file: f.into(),
            size: 1,
            sha256: "00".into(),
        };
        let parts = vec![
            Part::Stored(Stored::Blob(b("kubelet.tar.zst"), Check::Archive)),
            Part::Stored(Stored::Blob(b("snap.db"), Check::Snapshot)),
            Part::Stored(Stored::Blob(b("static.tar.gz"), Check::File)),
            Part::ExcludeList,
        ];
        assert_eq!(
            by_sha256(parts),
            vec![
                Part::Stored(Stored::Blob(b("kubelet.tar.zst"), Check::File)),
                Part::Stored(Stored::Blob(b("snap.db"), Check::Snapshot)),
                Part::Stored(Stored::Blob(b("static.tar.gz"), Check::File)),
                Part::ExcludeList,
            ]
        );
    }

    #[test]
    fn each_phase_reads_only_its_parts() {
        let names = |phase| -> Vec<&str> { remaining(phase, |_| false) };
        let files = names(Phase::Files);
        assert!(files.contains(&"restore-etc") && !files.contains(&"restore-kubelet"));
        let cluster = names(Phase::Cluster);
        assert!(cluster.contains(&"restore-etcd") && !cluster.contains(&"restore-etc"));
        assert!(remaining(Phase::Files, |s| s != "restore-extras") == vec!["restore-extras"]);
    }
}
