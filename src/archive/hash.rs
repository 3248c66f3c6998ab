//! The sha256 of a whole file, as the manifest records it.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// sha256 and size of a file.
pub fn file_sha256(p: &Path) -> std::io::Result<(String, u64)> {
    reader_sha256(crate::archive::validate::open_regular(p)?)
}

/// sha256 and size of what `r` reads to its end.
pub fn reader_sha256(mut r: impl Read) -> std::io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let n = each_chunk(&mut r, |chunk| h.update(chunk))?;
    Ok((hex::encode(h.finalize()), n))
}

/// A file read from an offset with `pread`, as a stream: it leaves the
/// file's own offset alone, so another reader of the same open file is not
/// disturbed.
pub struct At<'a> {
    f: &'a std::fs::File,
    off: u64,
}

impl<'a> At<'a> {
    /// From the start of `f`.
    pub fn new(f: &'a std::fs::File) -> Self {
        At { f, off: 0 }
    }
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.f, buf, self.off)?;
        self.off += n as u64;
        Ok(n)
    }
}

/// Read `r` to its end in 1 MiB chunks, handing each to `f`; the number of
/// bytes read. The one read loop of the whole-file checks (this file's
/// sha256, the etcd snapshot's sha256 and trailer).
pub fn each_chunk(r: &mut impl Read, mut f: impl FnMut(&[u8])) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        f(&buf[..k]);
        n += k as u64;
    }
}
