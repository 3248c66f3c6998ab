//! Reading an archive as a stream of entries, checking as it goes: header
//! checksums, the zstd frame checksum, each file's sha256 (by the caller),
//! and the archive's own sha256 and end marker at the end.
//!
//! A check ([`Reader::checking`], [`Reader::from_stream`]) decompresses in a
//! thread of its own, a few chunks ahead of the caller, who parses and
//! hashes the files: the two halves of a check run on both CPUs instead of
//! one after the other (issue 25). The restore reads without it
//! ([`Reader::open`]): it waits on its writes, not on the CPU.

use super::tar::{self, Header, Kind};
use super::HashReader;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::mpsc;

/// What an archive is read from: a file, or the bytes a writer sends as it
/// writes them (the backup's check of each archive as it is written).
pub type Source = Box<dyn Read + Send>;

type Decoder = zstd::stream::read::Decoder<'static, BufReader<HashReader<Source>>>;

/// Decompressed bytes handed from the decompressing thread to the parser.
const PIPE_CHUNK: usize = 256 << 10;
/// Chunks in flight between them: memory is PIPE_CHUNK times this, plus one.
const PIPE_DEPTH: usize = 4;

enum Piece {
    Data(Vec<u8>),
    Fail(std::io::Error),
    /// The end of the zstd stream: the sha256 and size of the compressed bytes.
    End([u8; 32], u64),
}

/// The decompressed stream, read here or in a thread of its own.
enum Stream {
    Direct(Box<Decoder>),
    Piped {
        rx: mpsc::Receiver<Piece>,
        cur: Vec<u8>,
        pos: usize,
        end: Option<([u8; 32], u64)>,
    },
}

fn decoder(src: Source) -> Result<Decoder> {
    decoder_of(HashReader::new(src))
}

/// The largest zstd window a reader accepts (`windowLog`): what any
/// version's writer may have used. Ours writes [`super::write::WINDOW_LOG`]
/// with several threads, the zstd level's window with one; before it,
/// the level's window always. Levels 1 to 19 (`backup --level`) use 2^23
/// at most (facebook/zstd `lib/compress/clevels.h`, levels 17-19 for
/// inputs over 256 KiB). It is also the most memory a frame can make a
/// decoder hold (its window): zstd's own default limit is 2^27
/// (`ZSTD_WINDOWLOG_LIMIT_DEFAULT`, `lib/zstd.h`), and a hostile archive
/// asking for more than this is refused as damaged instead.
pub const WINDOW_LOG_MAX: u32 = 23;

fn decoder_of(src: HashReader<Source>) -> Result<Decoder> {
    let mut d = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(1 << 20, src))?;
    d.window_log_max(WINDOW_LOG_MAX)?;
    Ok(d)
}

/// After the zstd stream's end: what is left of the source still counts
/// towards its hash; the sha256 and size of all of it.
fn drain(dec: Decoder) -> std::io::Result<([u8; 32], u64)> {
    let mut inner = dec.finish().into_inner();
    std::io::copy(&mut inner, &mut std::io::sink())?;
    Ok(inner.digest())
}

/// Set by another thread to stop a check: its outcome no longer matters.
pub type Stop = std::sync::Arc<std::sync::atomic::AtomicBool>;

/// The decompressing thread: chunks of [`PIPE_CHUNK`] until the stream ends
/// or fails, the reader is gone, or `stop` is set.
fn produce(mut dec: Decoder, tx: mpsc::SyncSender<Piece>, stop: Option<Stop>) {
    loop {
        if stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        {
            let _ = tx.send(Piece::Fail(std::io::Error::other("check stopped")));
            return;
        }
        let mut buf = vec![0u8; PIPE_CHUNK];
        let mut n = 0;
        let mut failed = None;
        while n < buf.len() {
            match dec.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if n > 0 {
            buf.truncate(n);
            if tx.send(Piece::Data(buf)).is_err() {
                return;
            }
        }
        if let Some(e) = failed {
            let _ = tx.send(Piece::Fail(e));
            return;
        }
        if n == 0 {
            let _ = tx.send(match drain(dec) {
                Ok((d, n)) => Piece::End(d, n),
                Err(e) => Piece::Fail(e),
            });
            return;
        }
    }
}

impl Stream {
    fn piped(dec: Decoder, stop: Option<Stop>) -> Stream {
        let (tx, rx) = mpsc::sync_channel(PIPE_DEPTH);
        let spawned = std::thread::Builder::new()
            .name("decompress".into())
            .spawn(move || produce(dec, tx, stop));
        match spawned {
            Ok(_) => Stream::Piped {
                rx,
                cur: Vec::new(),
                pos: 0,
                end: None,
            },
            // No thread to be had: the same stream, read here. (The
            // decoder moved into the closure that failed to start; a new
            // one cannot be made without the source, so say so.)
            Err(e) => {
                let (tx, rx) = mpsc::sync_channel(1);
                let _ = tx.send(Piece::Fail(std::io::Error::other(format!(
                    "cannot start the decompressing thread: {e}"
                ))));
                Stream::Piped {
                    rx,
                    cur: Vec::new(),
                    pos: 0,
                    end: None,
                }
            }
        }
    }

    /// The sha256 and size of the compressed bytes, once the stream ended.
    fn finish(self) -> std::io::Result<([u8; 32], u64)> {
        match self {
            Stream::Direct(dec) => drain(*dec),
            Stream::Piped { end: Some(e), .. } => Ok(e),
            Stream::Piped { .. } => Err(std::io::Error::other("the stream did not end")),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Direct(dec) => dec.read(out),
            Stream::Piped { rx, cur, pos, end } => {
                while *pos == cur.len() {
                    if end.is_some() {
                        return Ok(0);
                    }
                    match rx.recv() {
                        Ok(Piece::Data(v)) => {
                            *cur = v;
                            *pos = 0;
                        }
                        Ok(Piece::Fail(e)) => return Err(e),
                        Ok(Piece::End(d, n)) => *end = Some((d, n)),
                        Err(_) => {
                            return Err(std::io::Error::other(
                                "the decompressing thread stopped unexpectedly",
                            ))
                        }
                    }
                }
                let k = out.len().min(cur.len() - *pos);
                out[..k].copy_from_slice(&cur[*pos..*pos + k]);
                *pos += k;
                Ok(k)
            }
        }
    }
}

pub struct Reader {
    dec: Stream,
    /// Member data not yet consumed, then the padding.
    remaining: u64,
    pad: usize,
    finished: bool,
    path: String,
    /// The entries so far, for the checks between them.
    shape: super::validate::Shape,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader> {
        let f = super::validate::open_regular(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Reader::from_file(f, path)
    }

    /// Read the archive `f` (opened by the caller, at its start), named
    /// `path` in messages.
    pub fn from_file(f: File, path: &Path) -> Result<Reader> {
        Ok(Reader::new(
            Stream::Direct(Box::new(decoder(Box::new(f))?)),
            &path.display().to_string(),
        ))
    }

    /// [`Reader::from_file`] for a check: decompressed in a thread of its
    /// own, ahead of the caller.
    pub fn checking(f: File, path: &Path) -> Result<Reader> {
        Ok(Reader::new(
            Stream::piped(decoder(Box::new(f))?, None),
            &path.display().to_string(),
        ))
    }

    /// [`Reader::checking`] of a file whose sha256 another thread takes:
    /// the bytes are counted, not hashed ([`Reader::finish`] gives a sha256
    /// of zeros); the read fails once `stop` is set.
    pub fn checking_hashed(f: File, path: &Path, stop: Stop) -> Result<Reader> {
        Ok(Reader::new(
            Stream::piped(decoder_of(HashReader::counting(Box::new(f)))?, Some(stop)),
            &path.display().to_string(),
        ))
    }

    /// Read an archive from any source (decompressed in a thread of its
    /// own), named `name` in messages; its bytes are counted, not hashed
    /// (the writer that sends them hashes them).
    pub fn from_stream(src: Source, name: &str) -> Result<Reader> {
        Ok(Reader::new(
            Stream::piped(decoder_of(HashReader::counting(src))?, None),
            name,
        ))
    }

    fn new(dec: Stream, path: &str) -> Reader {
        Reader {
            dec,
            remaining: 0,
            pad: 0,
            finished: false,
            path: path.to_string(),
            shape: super::validate::Shape::default(),
        }
    }

    /// The archive's name in messages.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        self.dec.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                anyhow::anyhow!("{} is truncated", self.path)
            } else {
                anyhow::anyhow!("{} is damaged: {e}", self.path)
            }
        })
    }

    fn skip(&mut self, mut n: u64) -> Result<()> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let k = n.min(buf.len() as u64) as usize;
            self.fill(&mut buf[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    /// The next entry's header; None at the end of the archive.
    pub fn next_header(&mut self) -> Result<Option<Header>> {
        if self.finished {
            return Ok(None);
        }
        self.skip(self.remaining)?;
        self.skip(self.pad as u64)?;
        self.remaining = 0;
        self.pad = 0;
        let mut block = [0u8; tar::BLOCK];
        let mut pax = Vec::new();
        loop {
            self.fill(&mut block)?;
            if block.iter().all(|&b| b == 0) {
                self.fill(&mut block)?;
                if !block.iter().all(|&b| b == 0) {
                    bail!("{} is damaged: lone end-of-archive block", self.path);
                }
                self.finished = true;
                return Ok(None);
            }
            if block[156] == b'x' {
                tar::check_sum(&block).with_context(|| format!("{} is damaged", self.path))?;
                let len = tar::size_field(&block)?;
                if len > 16 << 20 {
                    bail!("{} is damaged: PAX header of {len} bytes", self.path);
                }
                let mut data = vec![0u8; len as usize];
                self.fill(&mut data)?;
                self.skip(tar::padding(len) as u64)?;
                pax = tar::parse_pax(&data).with_context(|| format!("{} is damaged", self.path))?;
                continue;
            }
            let mut h =
                tar::decode(&block, &pax).with_context(|| format!("{} is damaged", self.path))?;
            self.remaining = h.data_len;
            self.pad = tar::padding(h.data_len);
            super::validate::check_header(&h)
                .with_context(|| format!("{} is damaged", self.path))?;
            if h.meta.sparse.is_some() {
                let map = self.read_sparse_map()?;
                super::validate::check_sparse(&h, &map, self.remaining)
                    .with_context(|| format!("{} is damaged", self.path))?;
                h.meta.sparse = Some(map);
            }
            self.shape
                .check(&h)
                .with_context(|| format!("{} is damaged", self.path))?;
            return Ok(Some(h));
        }
    }

    /// The GNU sparse 1.0 map at the start of the member data: decimal
    /// numbers, one a line (the count, then offset/length pairs), padded to
    /// whole blocks. Parsed as the bytes arrive, each byte once: a map of
    /// any length costs time linear in it (the count is bounded by
    /// `MAX_EXTENTS`, each number by 20 digits, and the bytes must be there).
    fn read_sparse_map(&mut self) -> Result<Vec<(u64, u64)>> {
        let path = self.path.clone();
        let bad = move |why: &str| anyhow::anyhow!("{path} is damaged: bad sparse map ({why})");
        let mut block = [0u8; tar::BLOCK];
        let mut count: Option<usize> = None;
        let mut nums: Vec<u64> = Vec::new();
        let mut cur: Option<u64> = None;
        loop {
            if self.remaining < tar::BLOCK as u64 {
                return Err(bad("it runs past the entry's data"));
            }
            self.fill(&mut block)?;
            self.remaining -= tar::BLOCK as u64;
            for &b in block.iter() {
                match b {
                    b'0'..=b'9' => {
                        let v = cur
                            .unwrap_or(0)
                            .checked_mul(10)
                            .and_then(|v| v.checked_add(u64::from(b - b'0')))
                            .ok_or_else(|| bad("a number over 2^64"))?;
                        cur = Some(v);
                    }
                    b'\n' => {
                        let n = cur.take().ok_or_else(|| bad("an empty line"))?;
                        match count {
                            None => {
                                if n > super::validate::MAX_EXTENTS as u64 {
                                    return Err(bad(&format!("{n} extents")));
                                }
                                count = Some(n as usize);
                            }
                            Some(_) => nums.push(n),
                        }
                    }
                    _ => return Err(bad("a byte that is not a digit or a newline")),
                }
                if let Some(c) = count {
                    if nums.len() == 2 * c {
                        // The rest of this block is padding.
                        return Ok(nums.chunks(2).map(|p| (p[0], p[1])).collect());
                    }
                }
            }
        }
    }

    /// Read member data (after the sparse map); 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize> {
        let k = (self.remaining.min(buf.len() as u64)) as usize;
        if k == 0 {
            return Ok(0);
        }
        self.fill(&mut buf[..k])?;
        self.remaining -= k as u64;
        Ok(k)
    }

    /// After the end marker: drain the stream (checks the zstd checksum) and
    /// return the archive file's sha256 and size.
    pub fn finish(mut self) -> Result<(String, u64)> {
        while self.next_header()?.is_some() {}
        let mut sink = [0u8; 8192];
        match self.dec.read(&mut sink) {
            Ok(0) => {}
            Ok(_) => bail!(
                "{} is damaged: data after the end of the archive",
                self.path
            ),
            Err(e) => bail!("{} is damaged: {e}", self.path),
        }
        // Anything after the zstd frame still counts towards the file's hash.
        let (digest, n) = self.dec.finish()?;
        Ok((hex::encode(digest), n))
    }
}

/// Feed an entry's logical content (holes as zeros where `zeros`) to `f` as
/// (offset, bytes) pieces in order.
pub fn for_each_piece(
    r: &mut Reader,
    h: &Header,
    buf: &mut [u8],
    mut f: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    if h.kind != Kind::File {
        return Ok(());
    }
    let ext = match &h.meta.sparse {
        Some(e) => e.clone(),
        None => vec![(0, h.meta.size)],
    };
    for (off, len) in ext {
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(buf.len() as u64) as usize;
            let n = r.read_data(&mut buf[..want])?;
            if n == 0 {
                bail!("archive entry shorter than its sparse map says");
            }
            f(off + done, &buf[..n])?;
            done += n as u64;
        }
    }
    Ok(())
}
