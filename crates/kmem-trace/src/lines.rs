//! Lines of a byte stream, handed out as chunks of whole lines of a block buffer
//! ([`Lines`]); where the bytes come from is a [`Fill`]: a [`Read`] read here ([`Reading`]),
//! or blocks read ahead on another thread ([`crate::ahead`]).

use std::io::{self, Read};

use crate::input::{NotATrace, BLOCK, MAX_LINE, TOO_LONG_HEAD};

/// Where [`Lines`] gets its bytes.
pub trait Fill {
    /// Puts more bytes of the stream after the unread part `buf[start..end]` (at most
    /// [`MAX_LINE`] bytes), which it may move within `buf` or into another buffer it swaps
    /// in; returns the unread part's new bounds, the new bytes included (none: the end of
    /// the stream).
    fn fill(&mut self, buf: &mut Box<[u8]>, start: usize, end: usize) -> io::Result<(usize, usize)>;
}

/// A [`Read`] as a [`Fill`]: the unread bytes move to the buffer's start, and one read puts
/// more after them.
#[derive(Debug)]
pub struct Reading<R>(pub R);

impl<R: Read> Fill for Reading<R> {
    fn fill(&mut self, buf: &mut Box<[u8]>, start: usize, end: usize) -> io::Result<(usize, usize)> {
        buf.copy_within(start..end, 0);
        let kept = end - start;
        loop {
            match self.0.read(&mut buf[kept..]) {
                Ok(n) => return Ok((0, kept + n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
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
        let len = crate::scan::find_newline(rest).map_or(rest.len(), |nl| nl + 1);
        start += len;
        let line = &rest[..len];
        let content = len - (line.last() == Some(&b'\n')) as usize;
        Some(if content > MAX_LINE { Item::TooLong(&line[..TOO_LONG_HEAD]) } else { Item::Line(line) })
    })
}

/// The lines of a stream, handed out as chunks of whole lines of a block buffer.
#[derive(Debug)]
pub struct Lines<F> {
    feed: F,
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

impl<R: Read> Lines<Reading<R>> {
    /// Lines of `inner`, read [`BLOCK`] bytes at a time.
    pub fn new(inner: R) -> Self {
        Self::with_block(inner, BLOCK)
    }

    /// Lines of `inner`, read `block` bytes at a time (at least [`MAX_LINE`] + 1).
    pub fn with_block(inner: R, block: usize) -> Self {
        Lines::from_fill(Reading(inner), vec![0; block.max(MAX_LINE + 1)].into_boxed_slice())
    }
}

impl<F: Fill> Lines<F> {
    /// Lines of the bytes `feed` puts in `buf` (where `feed` needs it, at least
    /// [`MAX_LINE`] + 1 bytes).
    pub fn from_fill(feed: F, buf: Box<[u8]>) -> Self {
        Lines {
            feed,
            buf,
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
            let kept = self.end - self.start;
            let new = self.fill()?;
            self.eof = new == kept;
        }
    }

    /// Has the feed add bytes after the unread ones; returns how many are unread now.
    fn fill(&mut self) -> io::Result<usize> {
        if self.bytes >= self.limit {
            return Err(NotATrace.into());
        }
        let kept = self.end - self.start;
        (self.start, self.end) = self.feed.fill(&mut self.buf, self.start, self.end)?;
        let unread = self.end - self.start;
        self.bytes += (unread - kept) as u64;
        Ok(unread)
    }

    /// Drops the buffered bytes and reads on until past the next newline (or the end).
    fn skip_line(&mut self) -> io::Result<()> {
        self.scanned = 0;
        loop {
            self.start = self.end;
            if self.fill()? == 0 {
                self.eof = true;
                return Ok(());
            }
            if let Some(nl) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                self.start += nl + 1;
                return Ok(());
            }
        }
    }
}
