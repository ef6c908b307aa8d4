//! Trace input: a file, plain text or zstd (told apart by the magic bytes, whatever the
//! name), read in large blocks and split into lines in place ([`Lines`]).
//!
//! The decompressor writes straight into one reused block buffer, which is handed out as
//! chunks of whole lines ([`Lines::next_chunk`]; the last newline is found with `memrchr`)
//! and split into lines with `memchr` ([`items`]): no copy, no allocation per line. A line
//! that runs on past a block's end is moved to the buffer's start before the next read. A
//! line longer than [`MAX_LINE`] is an [`Item::TooLong`] (its first bytes only); one that
//! does not fit the buffer is skipped up to the next newline without being buffered
//! ([`Chunk::TooLong`]), so endless input without newlines (`/dev/zero`) is read in
//! constant memory.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

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

/// How a trace is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain text.
    None,
    /// A zstd stream.
    Zstd,
}

/// Opens a trace file for reading.
pub fn open(path: &Path) -> io::Result<(Reader, Compression)> {
    let f = File::open(path)?;
    if f.metadata()?.is_dir() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "is a directory"));
    }
    from_reader(f)
}

/// Wraps a byte stream (plain or zstd, detected from its first bytes) for reading.
pub fn from_reader<R: Read + Send + 'static>(mut r: R) -> io::Result<(Reader, Compression)> {
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
        let d = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(BUF, r))?;
        return Ok((Box::new(d), Compression::Zstd));
    }
    // Plain text goes straight from the file into the line reader's block.
    Ok((Box::new(r), Compression::None))
}

/// Bytes per block read ahead by [`read_ahead`].
const AHEAD_BLOCK: usize = 256 << 10;

/// Blocks [`read_ahead`] may have read and not yet handed out.
const AHEAD_BLOCKS: usize = 4;

/// A block read ahead: its buffer and how many bytes of it were read.
type AheadBlock = io::Result<(Box<[u8]>, usize)>;

/// Reads `r` on a thread of `scope` (decompressing, for a zstd stream), up to
/// [`AHEAD_BLOCKS`] blocks ahead of the returned reader, which hands the blocks out in order.
/// The thread ends at the end of the stream, at its first error, or once the reader is
/// dropped.
pub fn read_ahead<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    r: &'scope mut (dyn Read + Send),
) -> ReadAhead {
    let (tx, rx) = std::sync::mpsc::sync_channel::<AheadBlock>(AHEAD_BLOCKS);
    let (back, spare) = std::sync::mpsc::channel::<Box<[u8]>>();
    scope.spawn(move || loop {
        let mut buf = spare.try_recv().unwrap_or_else(|_| vec![0; AHEAD_BLOCK].into_boxed_slice());
        let mut n = 0;
        let read = loop {
            match r.read(&mut buf[n..]) {
                Ok(0) => break Ok(n),
                Ok(k) => {
                    n += k;
                    if n == buf.len() {
                        break Ok(n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        // A closed channel means the reader is gone.
        match read {
            Ok(k) => {
                if tx.send(Ok((buf, k))).is_err() || k == 0 {
                    return;
                }
            }
            Err(e) => {
                // The bytes before the error first.
                if n == 0 || tx.send(Ok((buf, n))).is_ok() {
                    let _ = tx.send(Err(e));
                }
                return;
            }
        }
    });
    ReadAhead { rx, back, cur: Box::default(), pos: 0, len: 0, done: false }
}

/// The reading end of [`read_ahead`].
#[derive(Debug)]
pub struct ReadAhead {
    rx: std::sync::mpsc::Receiver<AheadBlock>,
    back: std::sync::mpsc::Sender<Box<[u8]>>,
    cur: Box<[u8]>,
    pos: usize,
    len: usize,
    done: bool,
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.len {
            if self.done {
                return Ok(0);
            }
            let used = std::mem::take(&mut self.cur);
            if !used.is_empty() {
                let _ = self.back.send(used);
            }
            match self.rx.recv() {
                Ok(Ok((buf, len))) => (self.cur, self.pos, self.len, self.done) = (buf, 0, len, len == 0),
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => self.done = true,
            }
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
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

/// What [`Lines::next_chunk`] hands out.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// Whole lines, each with its newline (the last one may lack it at the end of the
    /// stream); split them with [`items`].
    Lines(&'a [u8]),
    /// A line longer than the buffer holds: its first [`TOO_LONG_HEAD`] bytes (the rest was
    /// skipped unread).
    TooLong(&'a [u8]),
}

/// A line of a [`Chunk`].
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A line, with its newline if it has one.
    Line(&'a [u8]),
    /// A line longer than [`MAX_LINE`]: its first [`TOO_LONG_HEAD`] bytes.
    TooLong(&'a [u8]),
}

/// The lines of a chunk of whole lines.
#[inline]
pub fn items(text: &[u8]) -> impl Iterator<Item = Item<'_>> {
    let mut start = 0;
    std::iter::from_fn(move || {
        let rest = text.get(start..).filter(|r| !r.is_empty())?;
        let len = memchr::memchr(b'\n', rest).map_or(rest.len(), |nl| nl + 1);
        start += len;
        let line = &rest[..len];
        let content = len - (line.last() == Some(&b'\n')) as usize;
        Some(if content > MAX_LINE { Item::TooLong(&line[..TOO_LONG_HEAD]) } else { Item::Line(line) })
    })
}

/// The lines of a stream, handed out as chunks of whole lines of one reused block buffer.
#[derive(Debug)]
pub struct Lines<R> {
    inner: R,
    buf: Box<[u8]>,
    /// The unread part of `buf` is `start..end`.
    start: usize,
    end: usize,
    /// Bytes of `start..end` known to hold no newline.
    scanned: usize,
    /// A too-long line's head, kept while its rest is skipped.
    head: [u8; TOO_LONG_HEAD],
    eof: bool,
    /// Bytes read from the stream.
    bytes: u64,
    /// Reading past this many bytes fails with [`NotATrace`].
    limit: u64,
}

impl<R: Read> Lines<R> {
    /// Lines of `inner`, read [`BLOCK`] bytes at a time.
    pub fn new(inner: R) -> Self {
        Self::with_block(inner, BLOCK)
    }

    /// Lines of `inner`, read `block` bytes at a time (at least [`MAX_LINE`] + 1).
    pub fn with_block(inner: R, block: usize) -> Self {
        let block = block.max(MAX_LINE + 1);
        Lines {
            inner,
            buf: vec![0; block].into_boxed_slice(),
            start: 0,
            end: 0,
            scanned: 0,
            head: [0; TOO_LONG_HEAD],
            eof: false,
            bytes: 0,
            limit: u64::MAX,
        }
    }

    /// Makes reads past the first `bytes` bytes of the stream fail with [`NotATrace`]
    /// (`u64::MAX`: never), also while a too-long line is skipped.
    pub fn set_limit(&mut self, bytes: u64) {
        self.limit = bytes;
    }

    /// Whether a limit is set.
    pub fn limited(&self) -> bool {
        self.limit != u64::MAX
    }

    /// Bytes read from the stream so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The next chunk of whole lines, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk<'_>>> {
        loop {
            let from = self.start + self.scanned;
            if let Some(off) = memchr::memrchr(b'\n', &self.buf[from..self.end]) {
                let (start, end) = (self.start, from + off + 1);
                self.start = end;
                self.scanned = 0;
                return Ok(Some(Chunk::Lines(&self.buf[start..end])));
            }
            self.scanned = self.end - self.start;
            if self.scanned > MAX_LINE {
                self.head.copy_from_slice(&self.buf[self.start..self.start + TOO_LONG_HEAD]);
                self.skip_line()?;
                return Ok(Some(Chunk::TooLong(&self.head)));
            }
            if self.eof {
                if self.start == self.end {
                    return Ok(None);
                }
                let start = self.start;
                self.start = self.end;
                self.scanned = 0;
                return Ok(Some(Chunk::Lines(&self.buf[start..self.end])));
            }
            self.refill()?;
        }
    }

    /// Moves the unread bytes to the buffer's start and reads more after them.
    fn refill(&mut self) -> io::Result<()> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        let n = self.read_some(self.end)?;
        self.end += n;
        self.eof = n == 0;
        Ok(())
    }

    /// Reads into `buf[at..]`, retrying interrupted reads.
    fn read_some(&mut self, at: usize) -> io::Result<usize> {
        if self.bytes >= self.limit {
            return Err(NotATrace.into());
        }
        loop {
            match self.inner.read(&mut self.buf[at..]) {
                Ok(n) => {
                    self.bytes += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Drops the buffered bytes and reads on until past the next newline (or the end).
    fn skip_line(&mut self) -> io::Result<()> {
        self.start = 0;
        self.scanned = 0;
        loop {
            let n = self.read_some(0)?;
            if n == 0 {
                (self.end, self.eof) = (0, true);
                return Ok(());
            }
            if let Some(nl) = memchr::memchr(b'\n', &self.buf[..n]) {
                (self.start, self.end) = (nl + 1, n);
                return Ok(());
            }
        }
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

/// The project's shared sample capture: `$KMEM_TRACE` if set, else the first
/// `shared/traces/fsops.trace.zst` in `from` or one of its parents (a checkout's `shared/`
/// lies beside it).
pub fn shared_trace(from: &Path) -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("KMEM_TRACE") {
        return Some(p.into());
    }
    from.ancestors().map(|d| d.join("shared/traces/fsops.trace.zst")).find(|p| p.is_file())
}

#[cfg(test)]
#[path = "input_tests.rs"]
mod tests;
