//! Reading an archive as a stream of entries, checking as it goes: header
//! checksums, the zstd frame checksum, each file's sha256 (by the caller),
//! and the archive's own sha256 and end marker at the end.
//!
//! The archive file is read, hashed and decompressed by a thread of its own,
//! a few chunks ahead of the consumer: decompression then runs on one CPU
//! while the consumer (hashing files, writing the tree) runs on another.

use super::tar::{self, Header, Kind};
use super::HashReader;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Decompressed bytes per chunk, and chunks in flight (bounded memory).
const CHUNK: usize = 256 << 10;
const AHEAD: usize = 4;

enum Msg {
    Data(Vec<u8>),
    /// The end of the zstd stream: the archive file's sha256 and size.
    End([u8; 32], u64),
    Failed(std::io::Error),
}

pub struct Reader {
    rx: Receiver<Msg>,
    /// Spent chunks go back to the decompressing thread.
    back: SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
    end: Option<([u8; 32], u64)>,
    /// Member data not yet consumed, then the padding.
    remaining: u64,
    pad: usize,
    finished: bool,
    path: String,
}

fn decompress(f: File, tx: SyncSender<Msg>, back: Receiver<Vec<u8>>) {
    let run = || -> std::io::Result<Option<([u8; 32], u64)>> {
        let mut dec = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
            1 << 20,
            HashReader::new(f),
        ))?;
        loop {
            let mut buf = back.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
            buf.resize(CHUNK, 0);
            let mut n = 0;
            while n < CHUNK {
                match dec.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if n == 0 {
                break;
            }
            buf.truncate(n);
            if tx.send(Msg::Data(buf)).is_err() {
                return Ok(None); // the consumer stopped
            }
        }
        let mut inner = dec.finish().into_inner();
        // Anything after the zstd frame still counts towards the file's hash.
        std::io::copy(&mut inner, &mut std::io::sink())?;
        Ok(Some(inner.digest()))
    };
    let msg = match run() {
        Ok(Some((d, n))) => Msg::End(d, n),
        Ok(None) => return,
        Err(e) => Msg::Failed(e),
    };
    let _ = tx.send(msg);
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader> {
        let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let (tx, rx) = sync_channel(AHEAD);
        let (back, back_rx) = sync_channel(AHEAD + 2);
        std::thread::Builder::new()
            .name("decompress".into())
            .spawn(move || decompress(f, tx, back_rx))
            .context("starting the decompression thread")?;
        Ok(Reader {
            rx,
            back,
            chunk: Vec::new(),
            at: 0,
            end: None,
            remaining: 0,
            pad: 0,
            finished: false,
            path: path.display().to_string(),
        })
    }

    /// The next chunk of decompressed bytes; false at the end of the stream.
    fn next_chunk(&mut self) -> Result<bool> {
        if self.end.is_some() {
            return Ok(false);
        }
        let spent = std::mem::take(&mut self.chunk);
        if spent.capacity() > 0 {
            let _ = self.back.try_send(spent);
        }
        self.at = 0;
        match self.rx.recv() {
            Ok(Msg::Data(d)) => {
                self.chunk = d;
                Ok(true)
            }
            Ok(Msg::End(d, n)) => {
                self.end = Some((d, n));
                Ok(false)
            }
            Ok(Msg::Failed(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                bail!("{} is truncated", self.path)
            }
            Ok(Msg::Failed(e)) => bail!("{} is damaged: {e}", self.path),
            Err(_) => bail!("{}: the decompression thread stopped", self.path),
        }
    }

    fn fill(&mut self, mut buf: &mut [u8]) -> Result<()> {
        while !buf.is_empty() {
            if self.at == self.chunk.len() && !self.next_chunk()? {
                bail!("{} is truncated", self.path);
            }
            let k = buf.len().min(self.chunk.len() - self.at);
            buf[..k].copy_from_slice(&self.chunk[self.at..self.at + k]);
            self.at += k;
            buf = &mut buf[k..];
        }
        Ok(())
    }

    fn skip(&mut self, mut n: u64) -> Result<()> {
        while n > 0 {
            if self.at == self.chunk.len() && !self.next_chunk()? {
                bail!("{} is truncated", self.path);
            }
            let k = n.min((self.chunk.len() - self.at) as u64);
            self.at += k as usize;
            n -= k;
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
            if h.meta.sparse.is_some() {
                let map = self.read_sparse_map()?;
                h.meta.sparse = Some(map);
            }
            return Ok(Some(h));
        }
    }

    fn read_sparse_map(&mut self) -> Result<Vec<(u64, u64)>> {
        // Decimal numbers, one a line: count, then offset/length pairs;
        // padded to whole blocks.
        let mut text = Vec::new();
        let mut block = [0u8; tar::BLOCK];
        let mut nums: Vec<u64> = Vec::new();
        loop {
            if self.remaining < tar::BLOCK as u64 {
                bail!("{} is damaged: bad sparse map", self.path);
            }
            self.fill(&mut block)?;
            self.remaining -= tar::BLOCK as u64;
            text.extend_from_slice(&block);
            nums.clear();
            let mut lines = text.split(|&b| b == b'\n');
            let mut complete = Vec::new();
            let mut all: Vec<&[u8]> = lines.by_ref().collect();
            all.pop(); // the part after the last newline is incomplete
            for l in all {
                complete.push(
                    std::str::from_utf8(l)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .with_context(|| format!("{} is damaged: bad sparse map", self.path))?,
                );
            }
            if let Some(&count) = complete.first() {
                if complete.len() as u64 > 2 * count {
                    let ext = complete[1..1 + 2 * count as usize]
                        .chunks(2)
                        .map(|c| (c[0], c[1]))
                        .collect();
                    return Ok(ext);
                }
            }
            if text.len() > 1 << 24 {
                bail!("{} is damaged: sparse map too long", self.path);
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
        if self.at < self.chunk.len() || self.next_chunk()? {
            bail!(
                "{} is damaged: data after the end of the archive",
                self.path
            );
        }
        let (digest, n) = self.end.context("no end of the stream")?;
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
