//! Property tests of the archive reader and the restore against mutated
//! archives: random trees (dirs, files, symlinks to `..`, `/` and outside,
//! hard links, FIFOs) archived by the tool, then bit flips, truncation,
//! padding to the recorded size, reordered and duplicated entries. Whatever
//! the bytes: no panic, nothing written outside the target, bounded time (a
//! timeout) and memory (the peak RSS of the case), an archive that verify
//! passes is restored without stopping part-way, and when the tool reads an
//! archive to its end, GNU tar lists the same entries. Few cases, so they
//! run in well under a minute.

mod common;

use common::*;
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use upgrade_recovery::testing::archive::{self, read::Reader, SyncOptions};

/// One node of a random tree, in creation order.
#[derive(Debug, Clone)]
enum Node {
    Dir,
    File(Vec<u8>),
    /// An index into [`TARGETS`].
    Symlink(usize),
    /// A hard link to the n-th file created before it (if any).
    HardLink(usize),
    Fifo,
}

/// Symlink targets: inside, above, the root, and the victim dir outside.
const TARGETS: [&str; 5] = ["..", "../..", "/", "a", "VICTIM"];

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        3 => Just(Node::Dir),
        4 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Node::File),
        2 => (0..TARGETS.len()).prop_map(Node::Symlink),
        1 => (0usize..8).prop_map(Node::HardLink),
        1 => Just(Node::Fifo),
    ]
}

/// (parent index among the dirs so far, name, node).
fn tree() -> impl Strategy<Value = Vec<(usize, String, Node)>> {
    proptest::collection::vec((0usize..6, "[abc]{1,2}", node()), 1..14)
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Pad(u16),
    Reorder(usize, usize),
    Duplicate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<u16>().prop_map(Mutation::Pad),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Reorder(a, b)),
        any::<usize>().prop_map(Mutation::Duplicate),
    ]
}

/// Create the tree under `top`; symlinks to VICTIM point at `victim`.
fn build(top: &Path, spec: &[(usize, String, Node)], victim: &Path) {
    std::fs::create_dir_all(top).unwrap();
    let mut dirs: Vec<PathBuf> = vec![top.to_path_buf()];
    let mut files: Vec<PathBuf> = Vec::new();
    for (parent, name, node) in spec {
        let p = dirs[parent % dirs.len()].join(name);
        if std::fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        match node {
            Node::Dir => {
                std::fs::create_dir(&p).unwrap();
                dirs.push(p);
            }
            Node::File(data) => {
                std::fs::write(&p, data).unwrap();
                files.push(p);
            }
            Node::Symlink(t) => {
                let t = if TARGETS[*t] == "VICTIM" {
                    victim.display().to_string()
                } else {
                    TARGETS[*t].to_string()
                };
                std::os::unix::fs::symlink(t, &p).unwrap();
            }
            Node::HardLink(n) => {
                if !files.is_empty() {
                    std::fs::hard_link(&files[n % files.len()], &p).unwrap();
                }
            }
            Node::Fifo => {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &p,
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o600),
                    0,
                )
                .unwrap();
            }
        }
    }
}

/// The byte ranges of the entries of a tar (a PAX header with the entry it
/// belongs to), read by a walk of our own over the size fields.
fn entries(tar: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut start = None;
    while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|&b| b != 0) {
        let h = &tar[at..at + 512];
        let size = std::str::from_utf8(&h[124..135])
            .ok()
            .and_then(|s| {
                u64::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok()
            })
            .unwrap_or(0) as usize;
        let flag = h[156];
        let data = if matches!(flag, b'0' | b'x' | 0) {
            size.div_ceil(512) * 512
        } else {
            0
        };
        if start.is_none() {
            start = Some(at);
        }
        at += 512 + data;
        if flag != b'x' {
            out.push((start.take().unwrap(), at.min(tar.len())));
        }
    }
    out
}

/// The archive (zstd) after one mutation of its tar (or of its bytes).
fn mutate(z: &[u8], m: &Mutation) -> Vec<u8> {
    let tar = zstd::decode_all(z).unwrap();
    let es = entries(&tar);
    let mut t = tar.clone();
    match m {
        Mutation::Flip(i, b) => {
            let i = i % t.len();
            t[i] ^= 1 << b;
        }
        Mutation::Truncate(i) => t.truncate(i % t.len()),
        Mutation::Pad(n) => {
            // After the zstd frame, as to a recorded size.
            let mut z = z.to_vec();
            z.extend(std::iter::repeat_n(0u8, usize::from(*n) + 1));
            return z;
        }
        Mutation::Reorder(a, b) => {
            if es.len() > 2 {
                // Move entry a (not the top) after entry b.
                let (a, b) = (1 + a % (es.len() - 1), b % es.len());
                let moved = tar[es[a].0..es[a].1].to_vec();
                let mut rest: Vec<u8> = [&tar[..es[a].0], &tar[es[a].1..]].concat();
                let at = if b < a {
                    es[b].1
                } else {
                    es[b].1 - moved.len()
                };
                rest.splice(at..at, moved);
                t = rest;
            }
        }
        Mutation::Duplicate(a) => {
            let (s, e) = es[a % es.len()];
            let copy = tar[s..e].to_vec();
            t.splice(e..e, copy);
        }
    }
    zstd::encode_all(&t[..], 1).unwrap()
}

/// Peak RSS since the last reset (`clear_refs` 5 resets it), in KiB.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn listing(ar: &Path) -> Result<Vec<String>, String> {
    let mut r = Reader::open(ar).map_err(|e| format!("{e:#}"))?;
    let mut v = Vec::new();
    while let Some(h) = r.next_header().map_err(|e| format!("{e:#}"))? {
        v.push(String::from_utf8_lossy(&h.path).into_owned());
    }
    r.finish().map_err(|e| format!("{e:#}"))?;
    Ok(v)
}

fn gnu_listing(ar: &Path) -> Vec<String> {
    sh(&format!(
        "zstd -dc {} 2>/dev/null | tar -tf - 2>/dev/null || true",
        q(ar)
    ))
    .lines()
    .map(|l| l.trim_end_matches('/').to_string())
    .collect()
}

/// One mutated archive through every reader; panics on a broken property.
fn one_case(dir: &Path, z: &[u8], victim: &Path, what: &str) {
    let ar = dir.join("m.tar.zst");
    std::fs::write(&ar, z).unwrap();
    let sha = hex::encode(Sha256::digest(z));
    let size = z.len() as u64;
    let outer = dir.join("outer");
    let _ = std::fs::remove_dir_all(&outer);
    let target = outer.join("top");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(outer.join("keep"), "k").unwrap();
    reset_peak();
    let (a2, t2) = (ar.clone(), target.clone());
    let (listed, checked, restored) = within(20, what, move || {
        let listed = listing(&a2);
        let checked = archive::verify_archive(&a2, &sha, size);
        let restored = archive::restore_tree(
            &a2,
            &sha,
            size,
            &t2,
            &SyncOptions {
                delete: true,
                check_files: true,
                ..SyncOptions::default()
            },
        )
        .map_err(|e| format!("{e:#}"));
        (listed, checked, restored)
    });
    let peak = peak_kib();
    assert!(peak < 256 << 10, "{what}: peak RSS {peak} KiB");
    // Nothing outside the target.
    let mut names: Vec<String> = std::fs::read_dir(&outer)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["keep", "top"], "{what}");
    assert_eq!(std::fs::read(outer.join("keep")).unwrap(), b"k", "{what}");
    assert_eq!(
        std::fs::read_dir(victim).unwrap().count(),
        0,
        "{what}: written through a symlink"
    );
    // What verify (and so each phase's check) calls intact, the restore
    // restores: it never stops part-way on an archive the check passed.
    if checked.is_empty() {
        assert!(
            restored.is_ok(),
            "{what}: verify passed, restore failed: {restored:?}"
        );
    }
    // What the tool reads to the end, GNU tar lists the same way.
    if let Ok(ours) = listed {
        assert_eq!(ours, gnu_listing(&ar), "{what}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_archives_stay_inside_bounded_and_read_as_gnu_tar_reads(
        spec in tree(),
        muts in proptest::collection::vec(mutation(), 4..8),
    ) {
        let t = TempDir::new("aprop");
        let victim = t.path().join("victim");
        std::fs::create_dir_all(&victim).unwrap();
        let top = t.path().join("src");
        build(&top, &spec, &victim);
        let ar = t.path().join("a.tar.zst");
        let st = archive::write_tree(&top, &ar, &archive::WriteOptions::default(), None).unwrap();
        let z = std::fs::read(&ar).unwrap();
        // Unchanged: intact, restored exactly (rsync finds nothing to do).
        prop_assert!(archive::verify_archive(&ar, &st.sha256, st.archive_bytes).is_empty());
        one_case(t.path(), &z, &victim, "the archive as written");
        let diff = rsync_diff(&top, &t.path().join("outer/top"), "");
        prop_assert!(diff.is_empty(), "{:?}", diff);
        for m in &muts {
            let z2 = mutate(&z, m);
            one_case(t.path(), &z2, &victim, &format!("{m:?}"));
            if let Mutation::Pad(_) = m {
                // Padded to a recorded size: refused on its sha256 alone.
                let p = t.path().join("m.tar.zst");
                let problems = archive::verify_archive(&p, &st.sha256, z2.len() as u64);
                prop_assert!(problems.len() == 1 && problems[0].contains("sha256"), "{:?}", problems);
            }
        }
    }
}
