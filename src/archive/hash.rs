//! The sha256 of a whole file, as the manifest records it.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// sha256 and size of a file.
pub fn file_sha256(p: &Path) -> std::io::Result<(String, u64)> {
    let mut f = crate::archive::validate::open_regular(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}
