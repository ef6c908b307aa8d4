//! Trace input: a file, plain text or zstd (told apart by the magic bytes, whatever the
//! name), read line by line through one reused buffer. A line longer than [`MAX_LINE`] is
//! skipped unbuffered and counted as malformed; an input with no line of normal length in
//! [`MAX_SKIPPED`] bytes is refused (see [`for_each_line`]).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// zstd's frame magic (little-endian 0xFD2FB528).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Bytes of read-ahead for both the file and the decoder's output.
const BUF: usize = 256 << 10;

/// A trace opened for line reading (it may be read on another thread).
pub type Reader = Box<dyn BufRead + Send>;

/// How a trace is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain text.
    None,
    /// A zstd stream.
    Zstd,
}

/// Opens a trace file for line reading.
pub fn open(path: &Path) -> io::Result<(Reader, Compression)> {
    let f = File::open(path)?;
    if f.metadata()?.is_dir() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "is a directory"));
    }
    from_reader(f)
}

/// Wraps a byte stream (plain or zstd, detected from its first bytes) for line reading.
pub fn from_reader<R: Read + Send + 'static>(r: R) -> io::Result<(Reader, Compression)> {
    let mut r = BufReader::with_capacity(BUF, r);
    let head = r.fill_buf()?;
    if head.len() >= 4 && head[..4] == ZSTD_MAGIC {
        let d = zstd::stream::read::Decoder::with_buffer(r)?;
        return Ok((Box::new(BufReader::with_capacity(BUF, d)), Compression::Zstd));
    }
    Ok((Box::new(r), Compression::None))
}

/// The first `lines` lines of a stream (`kmem replay --lines`).
#[derive(Debug)]
pub struct TakeLines<R> {
    inner: R,
    left: u64,
    /// Bytes `fill_buf` offered, and whether they end a line.
    offered: (usize, bool),
}

impl<R: BufRead> TakeLines<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, lines: u64) -> Self {
        Self { inner, left: lines, offered: (0, false) }
    }
}

impl<R: BufRead> Read for TakeLines<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let buf = self.fill_buf()?;
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for TakeLines<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.left == 0 {
            return Ok(&[]);
        }
        let buf = self.inner.fill_buf()?;
        self.offered = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        Ok(&buf[..self.offered.0])
    }
    fn consume(&mut self, n: usize) {
        if self.offered.1 && n == self.offered.0 {
            self.left -= 1;
        }
        self.offered = (0, false);
        self.inner.consume(n);
    }
}

/// The longest line [`for_each_line`] hands over, newline excluded: a kernel's ftrace lines
/// are under 1 KiB.
pub const MAX_LINE: usize = 64 << 10;

/// Bytes of over-long lines in a row (with no line of normal length between them) after
/// which [`for_each_line`] gives up: the input is not a trace (`/dev/zero`, a binary file).
pub const MAX_SKIPPED: u64 = 4 << 30;

/// What [`for_each_line`] hands over for a line longer than [`MAX_LINE`]: the line itself
/// is skipped, never buffered, and this stands for it, a line no parser takes for an event,
/// so that it is counted as malformed (its text says why).
pub const TOO_LONG: &[u8] = b"line too long, skipped\n";

/// Limits of [`for_each_line_limited`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineLimits {
    /// The longest line handed over, newline excluded.
    pub max_line: usize,
    /// Bytes of over-long lines in a row after which reading fails.
    pub max_skipped: u64,
}

impl LineLimits {
    /// [`MAX_LINE`] and [`MAX_SKIPPED`].
    pub const DEFAULT: LineLimits = LineLimits { max_line: MAX_LINE, max_skipped: MAX_SKIPPED };
}

/// Calls `f(line_number, line)` for every line (numbered from 1, newline included), reusing
/// one buffer. Stops at the first read error or when `f` returns `false`. A line over
/// [`MAX_LINE`] bytes is skipped without being buffered and handed over as [`TOO_LONG`];
/// after [`MAX_SKIPPED`] bytes of such lines in a row, reading fails with
/// `InvalidData` ("not a kmem trace ...").
pub fn for_each_line(r: &mut dyn BufRead, f: impl FnMut(u64, &[u8]) -> bool) -> io::Result<u64> {
    for_each_line_limited(r, LineLimits::DEFAULT, f)
}

/// [`for_each_line`] with other limits (tests use small ones).
pub fn for_each_line_limited(
    r: &mut dyn BufRead,
    lim: LineLimits,
    mut f: impl FnMut(u64, &[u8]) -> bool,
) -> io::Result<u64> {
    let mut buf = Vec::with_capacity(512);
    let mut n = 0;
    // Bytes of over-long lines since the last line of normal length.
    let mut skipped = 0u64;
    loop {
        buf.clear();
        // At most one byte past the limit is read into the buffer.
        if Read::take(&mut *r, lim.max_line as u64 + 1).read_until(b'\n', &mut buf)? == 0 {
            return Ok(n);
        }
        n += 1;
        let line: &[u8] = if buf.len() > lim.max_line && buf.last() != Some(&b'\n') {
            skipped += buf.len() as u64;
            // The rest of the line, read and dropped (up to the cap).
            let room = lim.max_skipped.saturating_sub(skipped);
            let rest = Read::take(&mut *r, room).skip_until(b'\n')? as u64;
            skipped += rest;
            if rest == room {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "not a kmem trace: {skipped} bytes from line {n} on without a line of at most {} bytes",
                        lim.max_line
                    ),
                ));
            }
            TOO_LONG
        } else {
            skipped = 0;
            &buf
        };
        if !f(n, line) {
            return Ok(n);
        }
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
mod tests {
    use super::*;

    fn lines(bytes: Vec<u8>) -> (Vec<String>, Compression) {
        let (mut r, c) = from_reader(io::Cursor::new(bytes)).unwrap();
        let mut out = Vec::new();
        for_each_line(&mut *r, |_, l| {
            out.push(String::from_utf8_lossy(l).into_owned());
            true
        })
        .unwrap();
        (out, c)
    }

    #[test]
    fn take_lines() {
        let r = TakeLines::new(io::Cursor::new(b"a\nbb\nccc\n".to_vec()), 2);
        let mut r: Box<dyn BufRead> = Box::new(r);
        let mut n = Vec::new();
        for_each_line(&mut *r, |no, l| {
            n.push((no, l.to_vec()));
            true
        })
        .unwrap();
        assert_eq!(n, vec![(1, b"a\n".to_vec()), (2, b"bb\n".to_vec())]);
    }

    #[test]
    fn plain_and_zstd_by_magic() {
        let text = b"a\nbb\nccc".to_vec();
        assert_eq!(lines(text.clone()), (vec!["a\n".into(), "bb\n".into(), "ccc".into()], Compression::None));
        let z = zstd::stream::encode_all(&text[..], 3).unwrap();
        assert_eq!(lines(z), (vec!["a\n".into(), "bb\n".into(), "ccc".into()], Compression::Zstd));
        assert_eq!(lines(Vec::new()).0.len(), 0);
    }
}
