//! A raw tar writer, independent of the tool's, for crafted archives
//! (tests/hostile.rs, tests/hostile_archive.rs, tests/archive_prop.rs).

use sha2::{Digest, Sha256};
use std::path::Path;

/// A raw tar writer, independent of the tool's: ustar blocks, each entry
/// preceded by a PAX header with exactly the records given.
pub struct RawTar(pub Vec<u8>);

pub fn octal(f: &mut [u8], v: u64) {
    let w = f.len() - 1;
    let s = format!("{v:0w$o}");
    f[..w].copy_from_slice(&s.as_bytes()[s.len() - w..]);
}

pub fn block(name: &[u8], flag: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], 0o755);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = flag;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

pub fn record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while body + len.to_string().len() != len {
        len = body + len.to_string().len();
    }
    [len.to_string().as_bytes(), b" ", key, b"=", value, b"\n"].concat()
}

pub fn pad(v: &mut Vec<u8>) {
    v.resize(v.len().div_ceil(512) * 512, 0);
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar(Vec::new())
    }
    /// An entry with PAX records `pax`, then `data` (already laid out).
    pub fn entry(
        &mut self,
        name: &[u8],
        flag: u8,
        pax: &[(&[u8], &[u8])],
        data: &[u8],
    ) -> &mut Self {
        let p: Vec<u8> = pax.iter().flat_map(|(k, v)| record(k, v)).collect();
        self.0
            .extend_from_slice(&block(b"././@PaxHeader", b'x', p.len() as u64, b""));
        self.0.extend_from_slice(&p);
        pad(&mut self.0);
        let link = pax
            .iter()
            .find(|(k, _)| *k == b"linkpath")
            .map(|(_, v)| *v)
            .unwrap_or(b"");
        self.0
            .extend_from_slice(&block(name, flag, data.len() as u64, link));
        self.0.extend_from_slice(data);
        pad(&mut self.0);
        self
    }
    pub fn dir(&mut self, name: &[u8]) -> &mut Self {
        self.entry(name, b'5', &[(b"path", name)], b"")
    }
    pub fn file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        let sha = hex::encode(Sha256::digest(data));
        self.entry(
            name,
            b'0',
            &[
                (b"path", name),
                (b"UPGRADE_RECOVERY.sha256", sha.as_bytes()),
            ],
            data,
        )
    }
    /// zstd-compressed with the end marker, as the tool's archives are.
    pub fn write(&self, p: &Path) -> (String, u64) {
        let mut raw = self.0.clone();
        raw.extend_from_slice(&[0u8; 1024]);
        let z = zstd::encode_all(&raw[..], 3).unwrap();
        std::fs::write(p, &z).unwrap();
        (hex::encode(Sha256::digest(&z)), z.len() as u64)
    }
}

impl RawTar {
    /// Bytes as they are (blocks made by hand), padded to a block.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        pad(&mut self.0);
        self
    }
    /// The uncompressed archive with its end marker.
    pub fn tar(&self) -> Vec<u8> {
        let mut raw = self.0.clone();
        raw.extend_from_slice(&[0u8; 1024]);
        raw
    }
}
