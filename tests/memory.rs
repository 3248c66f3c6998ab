//! Peak memory of the archive writer (issue 25: at most 64 MiB at every
//! size, whatever the node's core count): zstd's multithreaded compressor
//! holds buffers of (workers + 3) jobs, so the job size and the worker count
//! bound it (src/archive/write.rs, JOB_SIZE and MAX_WORKERS).

mod common;

use common::*;

/// Peak RSS in KiB of `tree archive --threads N` of a tree with 40 MiB of
/// text (many compression jobs), and the archive restored equal (rsync -c).
fn archive_rss(threads: u32) -> u64 {
    let t = TempDir::new("mem");
    let src = t.path().join("src");
    sh(&format!(
        "mkdir -p {s} && head -c 30M /dev/urandom | base64 > {s}/log && echo small > {s}/small",
        s = q(&src)
    ));
    let out = t.path().join("a.tar.zst");
    let rss = sh(&format!(
        "/usr/bin/time -f %M -o {m} {b} -q tree archive --threads {threads} {s} {o} >/dev/null && cat {m}",
        m = q(&t.path().join("rss")),
        b = q(&binary()),
        s = q(&src),
        o = q(&out)
    ));
    let back = t.path().join("back");
    sh(&format!(
        "{} -q tree sync {} {}",
        q(&binary()),
        q(&out),
        q(&back)
    ));
    assert!(rsync_diff(&src, &back, "").is_empty(), "restored differs");
    rss.trim().parse().expect("a KiB figure")
}

#[test]
fn two_workers_stay_small() {
    // 4 MiB jobs took 53 MiB here; 1 MiB jobs about 15 MiB.
    let kib = archive_rss(2);
    assert!(kib < 32 << 10, "peak RSS {kib} KiB with 2 workers");
}

#[test]
fn many_cores_do_not_multiply_memory() {
    // 16 workers of 4 MiB jobs: over 100 MiB; capped at 4 workers of 1 MiB.
    let kib = archive_rss(16);
    assert!(kib < 40 << 10, "peak RSS {kib} KiB with 16 threads asked");
}

/// The restore's deletion pass remembers each path of the archive: peak RSS
/// of `tree sync` of 30k entries with paths of about 970 bytes, 100 a
/// directory, into an empty dir (the paths took about 30 MiB when kept
/// whole: 48 MiB peak), and the result equal.
#[test]
fn restore_memory_does_not_hold_the_paths() {
    let t = TempDir::new("memsync");
    let src = t.path().join("src");
    let long = "n".repeat(240);
    sh(&format!(
        "d={s}/{l}/{l} && for j in $(seq 300); do mkdir -p $d/{l}$j && (cd $d/{l}$j && for i in $(seq 100); do : > {l}$i; done); done",
        s = q(&src),
        l = long
    ));
    let out = t.path().join("a.tar.zst");
    sh(&format!(
        "{} -q tree archive {} {} >/dev/null",
        q(&binary()),
        q(&src),
        q(&out)
    ));
    let dst = t.path().join("dst");
    let rss = sh(&format!(
        "/usr/bin/time -f %M -o {m} {b} -q tree sync {o} {d} >/dev/null && cat {m}",
        m = q(&t.path().join("rss")),
        b = q(&binary()),
        o = q(&out),
        d = q(&dst)
    ));
    assert!(rsync_diff(&src, &dst, "").is_empty(), "restored differs");
    let kib: u64 = rss.trim().parse().expect("a KiB figure");
    assert!(kib < 28 << 10, "peak RSS {kib} KiB for 30k long paths");
}

/// A whole-tree archive of `dirs` directories of `per` FIFOs each (ustar
/// headers only, in the order a backup writes them), streamed into zstd at
/// `out`: a million entries in a few MB. Its sha256 and size.
fn many_entries(out: &std::path::Path, dirs: usize, per: usize) -> (String, u64) {
    use common::rawtar::block;
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let f = std::fs::File::create(out).unwrap();
    let mut z = zstd::stream::write::Encoder::new(std::io::BufWriter::new(f), 1).unwrap();
    z.include_checksum(true).unwrap();
    z.write_all(&block(b".", b'5', 0, b"")).unwrap();
    for d in 0..dirs {
        let dir = format!("d{d:05}");
        z.write_all(&block(dir.as_bytes(), b'5', 0, b"")).unwrap();
        for p in 0..per {
            let name = format!("{dir}/p{p:05}");
            z.write_all(&block(name.as_bytes(), b'6', 0, b"")).unwrap();
        }
    }
    z.write_all(&[0u8; 1024]).unwrap();
    z.finish().unwrap().flush().unwrap();
    let bytes = std::fs::read(out).unwrap();
    (hex::encode(Sha256::digest(&bytes)), bytes.len() as u64)
}

/// `verify` keeps what the checks between entries need, not a record an
/// entry (issue 25: the reader's `validate::Shape` took 45-80 bytes an
/// entry, 90-110 MiB at a DU's 1.1M): the peak RSS of `verify` of a backup
/// whose kubelet archive holds 1.2M entries (the getrusage of the child, by
/// /usr/bin/time), and the backup found intact.
#[test]
fn verify_memory_does_not_grow_with_the_entries() {
    let sb = Sandbox::new();
    let (code, _, err) = sb.run(&["backup", "--min-free", "0"]);
    assert_eq!(code, 0, "{err}");
    let ar = std::fs::canonicalize(sb.backup_dir().join("current/kubelet.tar.zst")).unwrap();
    let (sha, size) = many_entries(&ar, 1200, 1000);
    sb.set_tree("kubelet", &sha, size);
    let m = sb.root().join("../rss");
    let out = std::process::Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&m)
        .arg(binary())
        .arg("--root")
        .arg(sb.root())
        .arg("verify")
        .env("PATH", sb.path_env())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("intact"), "{text}");
    let kib: u64 = std::fs::read_to_string(&m)
        .unwrap()
        .trim()
        .parse()
        .expect("a KiB figure");
    eprintln!("verify of 1.2M entries: peak RSS {kib} KiB");
    // Measured (debug build): 13.7 MiB; 72.1 MiB when the checks kept a
    // record an entry.
    assert!(kib < 40 << 10, "peak RSS {kib} KiB for 1.2M entries");
}
