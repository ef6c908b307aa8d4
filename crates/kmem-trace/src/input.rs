//! Trace input: a file, plain text or zstd (told apart by the magic bytes, whatever the
//! name), read in large blocks ([`Fill`]: here, or a few blocks ahead on another thread,
//! [`read_ahead`]) and split into lines in place ([`Lines`]).
//!
//! The decompressor writes straight into a block buffer, which is handed out as chunks of
//! whole lines ([`Lines::next_chunk`]; the last newline is found with `memrchr`) and split
//! into lines with `memchr` ([`items`]): no copy, no allocation per line. A line that runs on
//! past a block's end is copied to just before the next block's bytes. A line longer than
//! [`MAX_LINE`] is an [`Item::TooLong`] (its first bytes only); one that does not fit the
//! buffer is skipped up to the next newline without being buffered ([`Chunk::TooLong`]), so
//! endless input without newlines (`/dev/zero`) is read in constant memory.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

pub use crate::ahead::{read_ahead, ReadAhead};
pub use crate::lines::{items, Chunk, Fill, Item, Lines, Reading};

/// zstd's frame magic (little-endian 0xFD2FB528).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Bytes of read-ahead for the file under a decoder.
const BUF: usize = 256 << 10;

/// Bytes per block of decompressed text: a few thousand lines, small enough to stay in the
/// parsing core's L2 cache between the decoder's write and the parser's read.
pub const BLOCK: usize = 256 << 10;

/// The longest line kept (bytes, newline excluded); longer ones are malformed.
pub const MAX_LINE: usize = 64 << 10;

/// Bytes of a too-long line kept for the report.
pub const TOO_LONG_HEAD: usize = 120;

/// A trace opened for reading (it may be read on another thread).
pub type Reader = Box<dyn Read + Send>;

/// A zstd stream, buffered.
pub type Compressed = Box<dyn BufRead + Send>;

/// How a trace is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain text.
    None,
    /// A zstd stream.
    Zstd,
}

/// A trace opened, its compression told apart: a zstd stream is still compressed
/// ([`Trace::into_reader`] decompresses it; [`crate::run::replay_trace`] and
/// [`crate::run::parse_trace`] decode it straight into the parser's buffer,
/// [`crate::zring::ZstdRing`]).
pub enum Trace {
    /// Plain text.
    Plain(Reader),
    /// A zstd stream, from its first byte.
    Zstd(Compressed),
}

impl Trace {
    /// Opens a trace file.
    pub fn open(path: &Path) -> io::Result<Trace> {
        let f = File::open(path)?;
        if f.metadata()?.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "is a directory"));
        }
        Trace::from_reader(f)
    }

    /// A byte stream (plain or zstd, detected from its first bytes).
    pub fn from_reader<R: Read + Send + 'static>(mut r: R) -> io::Result<Trace> {
        let mut head = [0; 4];
        let mut n = 0;
        while n < head.len() {
            match r.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let r = io::Cursor::new(head).take(n as u64).chain(r);
        if n == 4 && head == ZSTD_MAGIC {
            return Ok(Trace::Zstd(Box::new(BufReader::with_capacity(BUF, r))));
        }
        // Plain text goes straight from the file into the line reader's block.
        Ok(Trace::Plain(Box::new(r)))
    }

    /// How it is stored.
    pub fn compression(&self) -> Compression {
        match self {
            Trace::Plain(_) => Compression::None,
            Trace::Zstd(_) => Compression::Zstd,
        }
    }

    /// Its text, decompressed by zstd's streaming decoder if it is compressed.
    pub fn into_reader(self) -> io::Result<Reader> {
        match self {
            Trace::Plain(r) => Ok(r),
            Trace::Zstd(r) => {
                let mut raw = zstd::stream::raw::Decoder::new()?;
                // The content checksum (xxhash64 over every decompressed byte) is a fifth of
                // zstd's work per line here; a corrupt capture still fails zstd's block
                // checks, and what parses is validated line by line anyway.
                raw.set_parameter(zstd::zstd_safe::DParameter::ForceIgnoreChecksum(true))?;
                Ok(Box::new(zstd::stream::zio::Reader::new(r, raw)))
            }
        }
    }
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Trace({:?})", self.compression())
    }
}

/// Opens a trace file for reading (decompressed, [`Trace::into_reader`]).
pub fn open(path: &Path) -> io::Result<(Reader, Compression)> {
    let t = Trace::open(path)?;
    let c = t.compression();
    Ok((t.into_reader()?, c))
}

/// Wraps a byte stream (plain or zstd, detected from its first bytes) for reading
/// (decompressed, [`Trace::into_reader`]).
pub fn from_reader<R: Read + Send + 'static>(r: R) -> io::Result<(Reader, Compression)> {
    let t = Trace::from_reader(r)?;
    let c = t.compression();
    Ok((t.into_reader()?, c))
}

/// The first `lines` lines of a stream (`kmem replay --lines`). It may read past the last
/// line from the stream underneath, but never hands those bytes out.
#[derive(Debug)]
pub struct TakeLines<R> {
    inner: R,
    left: u64,
}

impl<R: Read> TakeLines<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, lines: u64) -> Self {
        Self { inner, left: lines }
    }
}

impl<R: Read> Read for TakeLines<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(out)?;
        let mut newlines = memchr::memchr_iter(b'\n', &out[..n]);
        let mut seen = 0;
        while seen < self.left {
            match newlines.next() {
                Some(at) if seen + 1 == self.left => {
                    self.left = 0;
                    return Ok(at + 1);
                }
                Some(_) => seen += 1,
                None => break,
            }
        }
        self.left -= seen;
        Ok(n)
    }
}

/// The error of a stream that holds no event in its first bytes ([`NotATrace::LIMIT`];
/// [`Lines::set_limit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotATrace;

impl NotATrace {
    /// Bytes read without finding an event before a stream is given up on.
    pub const LIMIT: u64 = 16 << 20;

    /// Whether `e` is this error.
    pub fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|e| e.is::<NotATrace>())
    }
}

impl std::fmt::Display for NotATrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a kmem trace")
    }
}

impl std::error::Error for NotATrace {}

impl From<NotATrace> for io::Error {
    fn from(e: NotATrace) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// The repository's excerpt of a real kmem capture (`fixtures/traces/fsops-excerpt.trace.zst`,
/// the first 50,000 lines of the team's `fsops.trace.zst`; `fixtures/README.md`), relative
/// to a crate of this workspace.
pub fn excerpt_trace(crate_dir: &Path) -> std::path::PathBuf {
    crate_dir.join("../../fixtures/traces/fsops-excerpt.trace.zst")
}

/// The largest sample capture at hand, for benchmarks and examples: `$KMEM_TRACE` if set,
/// else the full capture `shared/traces/fsops.trace.zst` when a `shared/` directory lies in
/// `crate_dir` or one of its parents (the team's checkouts have one beside them), else the
/// repository's excerpt ([`excerpt_trace`]). Tests use the excerpt, whatever is at hand.
pub fn sample_trace(crate_dir: &Path) -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("KMEM_TRACE") {
        return p.into();
    }
    crate_dir
        .ancestors()
        .map(|d| d.join("shared/traces/fsops.trace.zst"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| excerpt_trace(crate_dir))
}

#[cfg(test)]
#[path = "input_tests.rs"]
mod tests;
