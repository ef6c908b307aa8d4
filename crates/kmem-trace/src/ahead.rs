//! Reading a stream a few blocks ahead on another thread ([`read_ahead`]): the thread reads
//! (and, for a zstd stream, decompresses) into recycled blocks, and [`Lines`](crate::lines::Lines)
//! takes the blocks themselves as its buffer ([`Fill`]), with no copy but that of the line
//! that runs across from one block into the next.

use std::io::{self, Read};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};
use std::thread::Scope;

use crate::input::MAX_LINE;
use crate::lines::Fill;

/// Bytes read into each block.
const AHEAD_BLOCK: usize = 256 << 10;

/// Room before a block's bytes for the unread end of the block before it (at most
/// [`MAX_LINE`] bytes: [`Lines`](crate::lines::Lines) never keeps more).
const ROOM: usize = MAX_LINE + 1;

/// Blocks read and not yet handed out, at most.
const AHEAD_BLOCKS: usize = 4;

/// A block read ahead: its buffer and how many bytes were read into it after [`ROOM`].
type Block = io::Result<(Box<[u8]>, usize)>;

/// Reads `r` on a thread of `scope`, up to four 256 KiB blocks ahead of the returned
/// [`Fill`]. The thread ends at the end of the stream, at its first error (handed out after
/// the bytes before it), or once the `ReadAhead` is dropped.
pub fn read_ahead<'scope>(scope: &'scope Scope<'scope, '_>, r: &'scope mut (dyn Read + Send)) -> ReadAhead {
    let (tx, rx) = sync_channel::<Block>(AHEAD_BLOCKS);
    let (back, spare) = channel::<Box<[u8]>>();
    scope.spawn(move || loop {
        let mut buf = spare.try_recv().unwrap_or_else(|_| vec![0; ROOM + AHEAD_BLOCK].into_boxed_slice());
        let mut n = 0;
        let read = loop {
            match r.read(&mut buf[ROOM + n..]) {
                Ok(0) => break Ok(n),
                Ok(k) => {
                    n += k;
                    if ROOM + n == buf.len() {
                        break Ok(n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        // A closed channel means the reading end is gone.
        match read {
            Ok(k) => {
                if tx.send(Ok((buf, k))).is_err() || k == 0 {
                    return;
                }
            }
            Err(e) => {
                if n == 0 || tx.send(Ok((buf, n))).is_ok() {
                    let _ = tx.send(Err(e));
                }
                return;
            }
        }
    });
    ReadAhead { rx, back }
}

/// The reading end of [`read_ahead`].
#[derive(Debug)]
pub struct ReadAhead {
    rx: Receiver<Block>,
    back: Sender<Box<[u8]>>,
}

impl Fill for ReadAhead {
    fn fill(&mut self, buf: &mut Box<[u8]>, start: usize, end: usize) -> io::Result<(usize, usize)> {
        match self.rx.recv() {
            Ok(Ok((mut block, n))) if n > 0 => {
                // The unread bytes go just before the new ones.
                let kept = end - start;
                block[ROOM - kept..ROOM].copy_from_slice(&buf[start..end]);
                let used = std::mem::replace(buf, block);
                if used.len() == ROOM + AHEAD_BLOCK {
                    let _ = self.back.send(used);
                }
                Ok((ROOM - kept, ROOM + n))
            }
            Ok(Err(e)) => Err(e),
            // The end of the stream (the thread is gone after it).
            Ok(Ok(_)) | Err(_) => Ok((start, end)),
        }
    }
}
