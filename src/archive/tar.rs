//! The tar format as this tool writes and reads it: ustar headers, each entry
//! preceded by a PAX extended header that carries the exact metadata (path,
//! nanosecond mtime, ids, xattrs as `SCHILY.xattr.*`, the file's sha256 as
//! `UPGRADE_RECOVERY.sha256`) and GNU sparse format 1.0 for sparse files. GNU
//! tar reads these archives too (`tar --zstd -xpf ... --xattrs`).

use anyhow::{bail, Context, Result};

pub const BLOCK: usize = 512;
pub const KEY_SHA256: &str = "UPGRADE_RECOVERY.sha256";
pub const KEY_NLINK: &str = "UPGRADE_RECOVERY.nlink";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

impl Kind {
    pub fn flag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::HardLink => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        }
    }
    pub fn from_flag(f: u8) -> Option<Kind> {
        Some(match f {
            b'0' | 0 | b'7' => Kind::File,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            _ => return None,
        })
    }
}

/// Everything an entry says about one file, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Logical size of a regular file.
    pub size: u64,
    /// Symlink target or hard-link target path.
    pub link: Vec<u8>,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    /// Sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub sha256: Option<[u8; 32]>,
    /// Data extents (offset, length) of a sparse file; None when dense.
    pub sparse: Option<Vec<(u64, u64)>>,
    /// Link count at backup of a file with hard links (0: one name).
    pub nlink: u32,
}

/// One archive member header, after PAX overrides.
#[derive(Debug, Clone)]
pub struct Header {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub meta: Meta,
    /// Bytes of member data that follow the header (padded to blocks).
    pub data_len: u64,
}

pub fn padding(n: u64) -> usize {
    ((BLOCK as u64 - n % BLOCK as u64) % BLOCK as u64) as usize
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // "<len> <key>=<value>\n", where len counts the whole record, itself included.
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while body + len.to_string().len() != len {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn octal(field: &mut [u8], v: u64) {
    let w = field.len() - 1;
    let s = format!("{v:0w$o}");
    if s.len() <= w {
        field[..w].copy_from_slice(s.as_bytes());
    } else {
        field[..w].fill(b'0');
    }
    field[w] = 0;
}

fn ustar(name: &[u8], flag: u8, size: u64, meta: &Meta, link: &[u8]) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], u64::from(meta.mode & 0o7777));
    octal(&mut h[108..116], u64::from(meta.uid));
    octal(&mut h[116..124], u64::from(meta.gid));
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], meta.mtime.max(0) as u64);
    h[156] = flag;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], u64::from(meta.rdev_major));
    octal(&mut h[337..345], u64::from(meta.rdev_minor));
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// The sparse map block of GNU sparse 1.0, padded to whole blocks.
pub fn sparse_map(extents: &[(u64, u64)]) -> Vec<u8> {
    let mut m = format!("{}\n", extents.len());
    for (o, l) in extents {
        m.push_str(&format!("{o}\n{l}\n"));
    }
    let mut v = m.into_bytes();
    v.resize(v.len() + padding(v.len() as u64), 0);
    v
}

/// Encode the PAX header plus the ustar header of one entry; `data_len` is the
/// member data length that will follow (sparse map included).
pub fn encode(path: &[u8], kind: Kind, meta: &Meta, data_len: u64) -> Vec<u8> {
    let mut pax = Vec::with_capacity(256);
    let mut name = path.to_vec();
    if let Some(ext) = &meta.sparse {
        pax_record(&mut pax, b"GNU.sparse.major", b"1");
        pax_record(&mut pax, b"GNU.sparse.minor", b"0");
        pax_record(&mut pax, b"GNU.sparse.name", path);
        pax_record(
            &mut pax,
            b"GNU.sparse.realsize",
            meta.size.to_string().as_bytes(),
        );
        let _ = ext;
        let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        let dir = &path[..path.len() - base.len()];
        name = [dir, b"GNUSparseFile.0/", base].concat();
    }
    pax_record(&mut pax, b"path", &name);
    pax_record(
        &mut pax,
        b"mtime",
        format!("{}.{:09}", meta.mtime, meta.mtime_nsec).as_bytes(),
    );
    pax_record(&mut pax, b"uid", meta.uid.to_string().as_bytes());
    pax_record(&mut pax, b"gid", meta.gid.to_string().as_bytes());
    if data_len >= 0o77777777777 {
        pax_record(&mut pax, b"size", data_len.to_string().as_bytes());
    }
    if matches!(kind, Kind::Symlink | Kind::HardLink) {
        pax_record(&mut pax, b"linkpath", &meta.link);
    }
    for (k, v) in &meta.xattrs {
        pax_record(&mut pax, &[b"SCHILY.xattr.", k.as_slice()].concat(), v);
    }
    if let Some(h) = &meta.sha256 {
        pax_record(&mut pax, KEY_SHA256.as_bytes(), hex::encode(h).as_bytes());
    }
    if meta.nlink > 1 && kind == Kind::File {
        pax_record(
            &mut pax,
            KEY_NLINK.as_bytes(),
            meta.nlink.to_string().as_bytes(),
        );
    }
    let mut out = Vec::with_capacity(3 * BLOCK + pax.len());
    let xname = b"././@PaxHeader";
    out.extend_from_slice(&ustar(xname, b'x', pax.len() as u64, meta, b""));
    out.extend_from_slice(&pax);
    out.resize(out.len() + padding(pax.len() as u64), 0);
    let link: &[u8] = if matches!(kind, Kind::Symlink | Kind::HardLink) {
        &meta.link
    } else {
        b""
    };
    out.extend_from_slice(&ustar(&name, kind.flag(), data_len, meta, link));
    out
}

fn parse_octal(field: &[u8]) -> Result<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        // GNU base-256.
        let mut v: u64 = 0;
        for &b in &field[1..] {
            v = v.checked_shl(8).context("number too large")? | u64::from(b);
        }
        return Ok(v);
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .take_while(|&b| b != 0 && b != b' ')
        .skip_while(|&b| b == b' ')
        .collect();
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(std::str::from_utf8(&s)?, 8).context("bad octal number")
}

fn cstr(field: &[u8]) -> Vec<u8> {
    field.iter().copied().take_while(|&b| b != 0).collect()
}

/// Parse PAX records.
pub fn parse_pax(data: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && rest[0] != 0 {
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .context("PAX record without a length")?;
        let len: usize = std::str::from_utf8(&rest[..sp])?
            .parse()
            .context("bad PAX record length")?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            bail!("PAX record overruns its header");
        }
        let rec = &rest[sp + 1..len - 1];
        let eq = rec
            .iter()
            .position(|&b| b == b'=')
            .context("PAX record without '='")?;
        out.push((rec[..eq].to_vec(), rec[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

/// Verify a header block's checksum.
pub fn check_sum(block: &[u8; BLOCK]) -> Result<()> {
    let stored = parse_octal(&block[148..156])? as u32;
    let mut sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    sum = sum - block[148..156].iter().map(|&b| u32::from(b)).sum::<u32>() + 8 * u32::from(b' ');
    if sum != stored {
        bail!("tar header checksum mismatch");
    }
    Ok(())
}

/// The size field of a header block.
pub fn size_field(block: &[u8; BLOCK]) -> Result<u64> {
    parse_octal(&block[124..136])
}

/// Decode a ustar header block, applying the preceding PAX records.
pub fn decode(block: &[u8; BLOCK], pax: &[(Vec<u8>, Vec<u8>)]) -> Result<Header> {
    check_sum(block)?;
    let kind = Kind::from_flag(block[156])
        .with_context(|| format!("unsupported tar entry type {:?}", block[156] as char))?;
    let mut path = cstr(&block[..100]);
    if &block[257..262] == b"ustar" && block[345] != 0 {
        path = [cstr(&block[345..500]), b"/".to_vec(), path].concat();
    }
    let mut meta = Meta {
        mode: parse_octal(&block[100..108])? as u32,
        uid: parse_octal(&block[108..116])? as u32,
        gid: parse_octal(&block[116..124])? as u32,
        mtime: parse_octal(&block[136..148])? as i64,
        link: cstr(&block[157..257]),
        rdev_major: parse_octal(&block[329..337])? as u32,
        rdev_minor: parse_octal(&block[337..345])? as u32,
        ..Meta::default()
    };
    let mut data_len = parse_octal(&block[124..136])?;
    // GNU tar (1.34, src/list.c read_header: "links 0 size on tape") takes a
    // hard link's ustar size field as 0, but a PAX `size` record applies.
    if kind == Kind::HardLink {
        data_len = 0;
    }
    let mut sparse_name = None;
    let mut sparse_major = None;
    for (k, v) in pax {
        let vs = || std::str::from_utf8(v).context("non-UTF-8 PAX number");
        match k.as_slice() {
            b"path" => path = v.clone(),
            b"linkpath" => meta.link = v.clone(),
            b"uid" => meta.uid = vs()?.parse()?,
            b"gid" => meta.gid = vs()?.parse()?,
            b"size" => data_len = vs()?.parse()?,
            b"mtime" => {
                let s = vs()?;
                let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
                meta.mtime = sec.parse()?;
                let mut f = frac.to_string();
                f.truncate(9);
                while f.len() < 9 {
                    f.push('0');
                }
                meta.mtime_nsec = f.parse()?;
            }
            b"GNU.sparse.name" => sparse_name = Some(v.clone()),
            b"GNU.sparse.major" => sparse_major = Some(vs()?.to_string()),
            b"GNU.sparse.realsize" => meta.size = vs()?.parse()?,
            k if k == KEY_NLINK.as_bytes() => meta.nlink = vs()?.parse()?,
            k if k == KEY_SHA256.as_bytes() => {
                let mut h = [0u8; 32];
                hex::decode_to_slice(v, &mut h).context("bad sha256 in archive")?;
                meta.sha256 = Some(h);
            }
            k if k.starts_with(b"SCHILY.xattr.") => {
                meta.xattrs.push((k[13..].to_vec(), v.clone()));
            }
            _ => {}
        }
    }
    meta.xattrs.sort();
    meta.mode &= 0o7777;
    if let Some(name) = sparse_name {
        if sparse_major.as_deref() != Some("1") {
            bail!("unsupported GNU sparse format");
        }
        path = name;
        meta.sparse = Some(Vec::new()); // the map is read from the data
    } else if kind == Kind::File {
        meta.size = data_len;
    }
    if kind != Kind::File {
        // Read as GNU tar reads (checked with `tar -tv` on crafted archives,
        // tests/hostile_archive.rs): the data of a symlink, FIFO or device
        // entry is skipped, as is a hard link's when a PAX `size` record
        // gives it; a directory's size is never skipped (src/list.c
        // skip_member skips nothing for DIRTYPE), so what follows a
        // directory header is read as the next header.
        if kind == Kind::Dir {
            data_len = 0;
        }
        meta.size = 0;
    }
    while path.len() > 1 && path.ends_with(b"/") {
        path.pop();
    }
    Ok(Header {
        path,
        kind,
        meta,
        data_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_roundtrip_binary_values() {
        let mut v = Vec::new();
        pax_record(&mut v, b"SCHILY.xattr.security.selinux", b"a\0b\n=c");
        pax_record(&mut v, b"path", &[b'x'; 95]); // length crosses 100
        let r = parse_pax(&v).unwrap();
        assert_eq!(r[0].1, b"a\0b\n=c");
        assert_eq!(r[1].1.len(), 95);
    }

    #[test]
    fn header_roundtrip() {
        let meta = Meta {
            mode: 0o4755,
            uid: 70000,
            gid: 5,
            mtime: 1_700_000_000,
            mtime_nsec: 123_456_789,
            size: 10,
            xattrs: vec![(b"user.a".to_vec(), b"1".to_vec())],
            sha256: Some([7; 32]),
            nlink: 3,
            ..Meta::default()
        };
        let long: Vec<u8> = [&[b'd'; 150][..], b"/\xffname\nx"].concat();
        let enc = encode(&long, Kind::File, &meta, 10);
        let pax_len = parse_octal(&enc[124..136]).unwrap() as usize;
        let pax = parse_pax(&enc[BLOCK..BLOCK + pax_len]).unwrap();
        let off = BLOCK + pax_len + padding(pax_len as u64);
        let block: [u8; BLOCK] = enc[off..off + BLOCK].try_into().unwrap();
        let h = decode(&block, &pax).unwrap();
        assert_eq!(h.path, long);
        assert_eq!(h.meta, meta);
        assert_eq!(h.kind, Kind::File);
        assert_eq!(h.data_len, 10);
    }

    #[test]
    fn damaged_header_is_refused() {
        let enc = encode(b"a", Kind::Dir, &Meta::default(), 0);
        let mut block: [u8; BLOCK] = enc[enc.len() - BLOCK..].try_into().unwrap();
        block[5] ^= 1;
        assert!(decode(&block, &[]).is_err());
    }
}
