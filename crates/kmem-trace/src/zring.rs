//! zstd decompressed straight into the line reader's buffer ([`ZstdRing`], a [`Fill`]): zstd's
//! buffer-less API (`ZSTD_decompressContinue`) decodes each block right after the bytes
//! before it, in a round buffer that is also zstd's history (its window), so no byte is
//! copied out of a window: the streaming decoder (`ZSTD_decompressStream`) decodes into a
//! window of its own and copies every byte out of it (a sixth of zstd's work on the team's
//! capture).
//!
//! The buffer holds a window, two blocks and [`ROOM`]; a block is decoded at the end of the
//! bytes before it while a block (and a margin) still fits, else at the start, after the
//! unread end of the last line moved there (at most [`MAX_LINE`] bytes). zstd then reads the
//! bytes before the wrap as a separate segment (its external dictionary), and the bytes it
//! may still reference (the last window before the wrap) lie past everything written at the
//! start until the next wrap: see [`ZstdRing::fill`].

use std::ffi::CStr;
use std::io::{self, Read};
use std::ptr::NonNull;

use zstd::zstd_safe::zstd_sys as sys;

use crate::input::MAX_LINE;
use crate::lines::Fill;

/// Room at the buffer's start for the unread end of the last line when decoding wraps.
const ROOM: usize = MAX_LINE + 1;

/// Bytes past a block that zstd's copies may touch (its `WILDCOPY_OVERLENGTH` is 32).
const MARGIN: usize = 64;

/// The largest window accepted (zstd's default `windowLogMax` for decoding, 2^27).
const MAX_WINDOW: u64 = 1 << 27;

/// A zstd stream (`src`: still compressed; frames one after another, skippable ones
/// skipped) decoded into the buffer of a [`Lines`](crate::lines::Lines) in place.
#[derive(Debug)]
pub struct ZstdRing<R> {
    src: R,
    dctx: NonNull<sys::ZSTD_DCtx>,
    /// The compressed bytes of the next step.
    input: Vec<u8>,
    /// The current frame's header bytes, until its first block.
    head: Vec<u8>,
    /// The current frame's largest block (0: not known yet).
    block_max: usize,
    /// A frame is begun (`ZSTD_decompressBegin`) and not finished.
    in_frame: bool,
}

// SAFETY: the decoding context is used only through `&mut self`, and zstd's contexts are not
// tied to a thread.
unsafe impl<R: Send> Send for ZstdRing<R> {}

impl<R> Drop for ZstdRing<R> {
    fn drop(&mut self) {
        // SAFETY: `dctx` came from `ZSTD_createDCtx` and is freed once, here.
        unsafe { sys::ZSTD_freeDCtx(self.dctx.as_ptr()) };
    }
}

/// A zstd result: the value, or the error as an `io::Error`.
fn check(code: usize) -> io::Result<usize> {
    // SAFETY: both take any value; the name is a static C string.
    unsafe {
        if sys::ZSTD_isError(code) == 0 {
            return Ok(code);
        }
        let name = CStr::from_ptr(sys::ZSTD_getErrorName(code)).to_string_lossy();
        // The streaming decoder's words, so that `kmem replay` reports the same.
        Err(io::Error::new(io::ErrorKind::InvalidData, name.into_owned()))
    }
}

impl<R: Read> ZstdRing<R> {
    /// Decodes `src` (a zstd stream from its first byte). Like the streaming reader of
    /// [`crate::input::from_reader`], it skips the content checksums.
    pub fn new(src: R) -> io::Result<Self> {
        // SAFETY: no precondition; a null result is handled.
        let dctx =
            NonNull::new(unsafe { sys::ZSTD_createDCtx() }).ok_or_else(|| io::Error::other("zstd: no memory"))?;
        let ring = ZstdRing { src, dctx, input: Vec::new(), head: Vec::new(), block_max: 0, in_frame: false };
        // SAFETY: a valid context, a parameter and value zstd checks.
        check(unsafe {
            sys::ZSTD_DCtx_setParameter(dctx.as_ptr(), sys::ZSTD_dParameter::ZSTD_d_experimentalParam3, 1)
        })?;
        Ok(ring)
    }

    /// Reads the `n` bytes of the next step into `input`; `false` at the end of the stream
    /// before a frame's first byte (anywhere else it is an error).
    fn read_input(&mut self, n: usize, frame_start: bool) -> io::Result<bool> {
        self.input.resize(n, 0);
        let mut got = 0;
        while got < n {
            match self.src.read(&mut self.input[got..]) {
                Ok(0) if got == 0 && frame_start => return Ok(false),
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "incomplete frame")),
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// The frame's window and largest block, from its header: makes `buf` large enough for
    /// them (the unread bytes `start..end` moved to a new buffer's start if it is replaced).
    fn size_buffer(&mut self, buf: &mut Box<[u8]>, start: &mut usize, end: &mut usize) -> io::Result<()> {
        // SAFETY: an all-zero header is a valid value of this plain C struct; zstd reads
        // `head` within its length and writes the header.
        let (code, h) = unsafe {
            let mut h: sys::ZSTD_FrameHeader = std::mem::zeroed();
            (sys::ZSTD_getFrameHeader(&mut h, self.head.as_ptr().cast(), self.head.len()), h)
        };
        if check(code)? != 0 {
            // zstd decoded this header already: it cannot be short.
            return Err(io::Error::new(io::ErrorKind::InvalidData, "Corrupted frame header"));
        }
        if h.windowSize > MAX_WINDOW {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "Frame requires too much memory for decoding"));
        }
        self.block_max = (h.blockSizeMax as usize).max(1);
        let need = ROOM + h.windowSize as usize + 2 * (self.block_max + MARGIN);
        if buf.len() < need {
            let mut bigger = vec![0; need].into_boxed_slice();
            bigger[..*end - *start].copy_from_slice(&buf[*start..*end]);
            (*start, *end) = (0, *end - *start);
            *buf = bigger;
        }
        Ok(())
    }
}

impl<R: Read> Fill for ZstdRing<R> {
    /// Decodes steps of the stream until one gives bytes (a block), after `buf[start..end]`.
    ///
    /// Why the bytes zstd references survive a wrap: with `b` = block + [`MARGIN`], the
    /// buffer holds [`ROOM`] + window + 2`b` bytes, and a wrap happens when less than `b` is
    /// left after `end`; so the last block before it ends past [`ROOM`] + window + `b`, and
    /// what zstd may still reference (a window back from there) starts past [`ROOM`] + `b`,
    /// beyond the moved bytes (at most [`ROOM`]) and the next block (at most `b`); each
    /// block after that moves the end of what is written and the start of what may be
    /// referenced on by the same amount.
    fn fill(&mut self, buf: &mut Box<[u8]>, mut start: usize, mut end: usize) -> io::Result<(usize, usize)> {
        let dctx = self.dctx.as_ptr();
        loop {
            if !self.in_frame {
                // SAFETY: a valid context.
                check(unsafe { sys::ZSTD_decompressBegin(dctx) })?;
                (self.in_frame, self.block_max) = (true, 0);
                self.head.clear();
            }
            // SAFETY: a valid context (both only read its state).
            let (n, kind) = unsafe { (sys::ZSTD_nextSrcSizeToDecompress(dctx), sys::ZSTD_nextInputType(dctx)) };
            if n == 0 {
                self.in_frame = false;
                continue;
            }
            let frame_start = self.head.is_empty() && kind == sys::ZSTD_nextInputType_e::ZSTDnit_frameHeader;
            if !self.read_input(n, frame_start)? {
                self.in_frame = false;
                return Ok((start, end));
            }
            let block =
                matches!(kind, sys::ZSTD_nextInputType_e::ZSTDnit_block | sys::ZSTD_nextInputType_e::ZSTDnit_lastBlock);
            match kind {
                sys::ZSTD_nextInputType_e::ZSTDnit_frameHeader => self.head.extend_from_slice(&self.input),
                sys::ZSTD_nextInputType_e::ZSTDnit_blockHeader if self.block_max == 0 => {
                    self.size_buffer(buf, &mut start, &mut end)?
                }
                _ => {}
            }
            let cap = if block { self.block_max + MARGIN } else { 0 };
            if block && buf.len() - end < cap {
                // Wrap: the unread bytes (at most `MAX_LINE`) go to the start.
                buf.copy_within(start..end, 0);
                (start, end) = (0, end - start);
            }
            debug_assert!(end + cap <= buf.len());
            // SAFETY: a valid context; `dst..dst + cap` lies in `buf` (the buffer was sized
            // for the frame before its first block, and a block wraps when `cap` is not left),
            // and zstd writes nothing past `dst + cap`; `input` holds the `n` bytes it
            // expects.
            let made = check(unsafe {
                sys::ZSTD_decompressContinue(dctx, buf.as_mut_ptr().add(end).cast(), cap, self.input.as_ptr().cast(), n)
            })?;
            end += made;
            if made > 0 {
                return Ok((start, end));
            }
        }
    }
}

#[cfg(test)]
#[path = "zring_tests.rs"]
mod tests;
