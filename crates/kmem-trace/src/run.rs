//! The streaming driver: a thread reads, decompresses and parses batches of lines into
//! operations (with three CPUs or more, the reading and decompressing go to a thread of their
//! own, blocks ahead), and the calling thread replays the previous batch and samples the
//! machine. Timing the replay of whole
//! batches gives the replay-only rate without a clock read per event.

use std::io::{self, Read};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kmem_hosted::Machine;

use crate::input::{read_ahead, Chunk, Compressed, Fill, Lines, NotATrace, ReadAhead, Reading, Trace, BLOCK};
use crate::op::{CacheDef, Frontend, Op};
use crate::parse::{parse_next, ParseError, TailMemo, NO_TAIL};
use crate::replay::Replayer;
use crate::zring::ZstdRing;

/// Operations per batch.
pub const BATCH: usize = 4096;

/// Machine-wide memory, sampled after every batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineMem {
    /// Pages of slabs and large kmalloc blocks (`Slab:` in meminfo) now.
    pub slab_pages: u64,
    /// Peak of `slab_pages`.
    pub peak_slab_pages: u64,
    /// Pages not free (MemTotal - MemFree) now.
    pub used_pages: u64,
    /// Peak of `used_pages`.
    pub peak_used_pages: u64,
}

impl MachineMem {
    /// Reads the machine's counters now and updates the peaks.
    pub fn sample(&mut self, m: &Machine) {
        let slab: usize = (0..m.nr_nodes())
            .filter_map(|n| m.node(n))
            .map(|n| n.slab_reclaimable_pages() + n.slab_unreclaimable_pages())
            .sum();
        let free: usize = m.zones().map(|z| z.free_pages() + z.pcp_pages()).sum();
        self.slab_pages = slab as u64;
        self.used_pages = m.totalram_pages().saturating_sub(free) as u64;
        self.peak_slab_pages = self.peak_slab_pages.max(self.slab_pages);
        self.peak_used_pages = self.peak_used_pages.max(self.used_pages);
    }
}

/// Where the time went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timing {
    /// Reading, decompressing, parsing and replaying.
    pub total: Duration,
    /// Replaying only (batches of parsed operations).
    pub replay: Duration,
}

impl Timing {
    /// Events per second over `t`.
    pub fn rate(events: u64, t: Duration) -> f64 {
        events as f64 / t.as_secs_f64().max(1e-9)
    }
}

/// A batch from the parsing thread: operations, the caches first named in it, and the lines
/// read so far.
type Batch = (Vec<Op>, Vec<CacheDef>, u64);

/// Lines parsed ahead of the front end, so that the slot-table entries of their keys are
/// prefetched by the time it looks them up.
const GROUP: usize = 16;

/// Parses every line of `r`, calling `emit(op, frontend)` for each operation until it returns
/// `false`. A stream with no event in its first [`NotATrace::LIMIT`] bytes fails with
/// [`NotATrace`].
pub fn parse_lines(r: &mut dyn Read, fe: &mut Frontend, emit: impl FnMut(Op, &Frontend) -> bool) -> io::Result<()> {
    parse_from(Lines::new(r), fe, emit)
}

/// [`parse_lines`] of the lines of any [`Fill`].
fn parse_from<F: Fill>(
    mut lines: Lines<F>,
    fe: &mut Frontend,
    mut emit: impl FnMut(Op, &Frontend) -> bool,
) -> io::Result<()> {
    lines.set_limit(NotATrace::LIMIT);
    let mut memo = TailMemo::default();
    while let Some(chunk) = lines.next_chunk()? {
        let go = match chunk {
            Chunk::Lines(text) => parse_chunk(text, fe, &mut memo, &mut emit),
            Chunk::TooLong(head) => {
                fe.too_long(fe.counts.lines + 1, head);
                true
            }
        };
        if lines.limited() && fe.counts.total_events() > 0 {
            lines.set_limit(u64::MAX);
        }
        if !go {
            break;
        }
    }
    Ok(())
}

/// The lines of one chunk, [`GROUP`] at a time: parsed (and their keys prefetched), then
/// handed to the front end in order.
fn parse_chunk(
    text: &[u8],
    fe: &mut Frontend,
    memo: &mut TailMemo,
    emit: &mut impl FnMut(Op, &Frontend) -> bool,
) -> bool {
    let mut at = 0;
    let mut group = [(&[][..], Err(ParseError::TooLong)); GROUP];
    let mut tails = [NO_TAIL; GROUP];
    loop {
        let mut n = 0;
        while n < GROUP && at < text.len() {
            // Written in place: the parsed line is large, and copies of it cost more than
            // the front end's lookups.
            let (len, tail) = parse_next(&text[at..], &mut group[n], memo);
            (at, tails[n]) = (at + len, tail);
            fe.prefetch(&group[n].1);
            n += 1;
        }
        for ((line, parsed), &tail) in group[..n].iter().zip(&tails) {
            let front = if tail == NO_TAIL { None } else { memo.front(tail) };
            if let Some(op) = fe.parsed_in(fe.counts.lines + 1, line, parsed, front) {
                if !emit(op, fe) {
                    return false;
                }
            }
        }
        if n < GROUP {
            return true;
        }
    }
}

/// Replays every line of `r` in a pipeline: a parsing thread turns batches of [`BATCH`]
/// operations out while this one replays the previous batch (the replayer stays on the
/// calling thread, which it pins to the trace's CPUs); with three CPUs or more, a third
/// thread reads (and decompresses) `r` a few blocks ahead ([`read_ahead`], see
/// [`read_ahead_pays`]). `on_batch(replayer, lines_read)` runs after each batch (a live view,
/// progress).
pub fn replay_stream(
    r: &mut (dyn Read + Send),
    fe: &mut Frontend,
    rp: &mut Replayer<'_>,
    mem: &mut MachineMem,
    on_batch: impl FnMut(&Replayer<'_>, u64),
) -> io::Result<Timing> {
    replay_stream_with(r, fe, rp, mem, read_ahead_pays(), on_batch)
}

/// Whether a read-ahead thread pays: with fewer than three CPUs the third busy thread only
/// takes turns with the other two, and it decompresses into blocks the parsing CPU then
/// fetches from the other's cache. On the 2-CPU VM the team measures on, zstd took 150-190 ms
/// of CPU on its own thread against 52-90 ms alone, and decompressing on the parsing thread
/// cut the pipeline's CPU by a sixth (`kmem replay` of the full capture, 10 alternated runs).
pub fn read_ahead_pays() -> bool {
    std::thread::available_parallelism().map_or(true, |n| n.get() >= 3)
}

/// [`replay_stream`] of an opened trace: a zstd stream is decoded on the parsing thread
/// straight into its buffer ([`ZstdRing`]: no copy out of zstd's window) where the
/// read-ahead thread does not pay ([`read_ahead_pays`]).
pub fn replay_trace(
    trace: Trace,
    fe: &mut Frontend,
    rp: &mut Replayer<'_>,
    mem: &mut MachineMem,
    on_batch: impl FnMut(&Replayer<'_>, u64),
) -> io::Result<Timing> {
    replay_trace_with(trace, fe, rp, mem, read_ahead_pays(), on_batch)
}

/// [`replay_trace`], with or without the read-ahead thread (without it, a zstd stream is
/// decoded into the parser's buffer).
pub fn replay_trace_with(
    trace: Trace,
    fe: &mut Frontend,
    rp: &mut Replayer<'_>,
    mem: &mut MachineMem,
    ahead: bool,
    on_batch: impl FnMut(&Replayer<'_>, u64),
) -> io::Result<Timing> {
    match trace {
        Trace::Zstd(raw) if !ahead => replay_from(Feed::Ring(ZstdRing::new(raw)?), fe, rp, mem, on_batch),
        t => replay_stream_with(&mut *t.into_reader()?, fe, rp, mem, ahead, on_batch),
    }
}

/// [`replay_stream`], with or without the read-ahead thread.
pub fn replay_stream_with(
    r: &mut (dyn Read + Send),
    fe: &mut Frontend,
    rp: &mut Replayer<'_>,
    mem: &mut MachineMem,
    ahead: bool,
    on_batch: impl FnMut(&Replayer<'_>, u64),
) -> io::Result<Timing> {
    replay_from(if ahead { Feed::Ahead(r) } else { Feed::Here(r) }, fe, rp, mem, on_batch)
}

/// Where the parsing thread's text comes from.
enum Feed<'a> {
    /// Read (and decompressed) a few blocks ahead on a thread of its own.
    Ahead(&'a mut (dyn Read + Send)),
    /// Read (and decompressed) on the parsing thread.
    Here(&'a mut (dyn Read + Send)),
    /// A zstd stream decoded on the parsing thread straight into its buffer.
    Ring(ZstdRing<Compressed>),
}

/// The pipeline of [`replay_stream_with`] over any [`Feed`].
fn replay_from(
    feed: Feed<'_>,
    fe: &mut Frontend,
    rp: &mut Replayer<'_>,
    mem: &mut MachineMem,
    mut on_batch: impl FnMut(&Replayer<'_>, u64),
) -> io::Result<Timing> {
    let start = Instant::now();
    let mut replay = Duration::ZERO;
    let m = rp.machine();
    let (tx, rx) = mpsc::sync_channel::<Batch>(4);
    let (free_tx, free_rx) = mpsc::channel::<Vec<Op>>();
    let parsed = std::thread::scope(|s| {
        let lines = match feed {
            Feed::Ahead(r) => Lines::from_fill(Source::Ahead(read_ahead(s, r)), Box::default()),
            Feed::Here(r) => Lines::from_fill(Source::Here(Reading(r)), vec![0; BLOCK].into_boxed_slice()),
            Feed::Ring(z) => Lines::from_fill(Source::Ring(z), Box::default()),
        };
        let parser = s.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let mut known = fe.caches().len();
            let mut send = |batch: &mut Vec<Op>, fe: &Frontend| {
                let next = free_rx.try_recv().unwrap_or_else(|_| Vec::with_capacity(BATCH));
                let new = fe.caches()[known..].to_vec();
                known = fe.caches().len();
                // A closed channel means the replaying side is gone; stop reading.
                tx.send((std::mem::replace(batch, next), new, fe.counts.lines)).is_ok()
            };
            let r = parse_from(lines, fe, |op, fe| {
                batch.push(op);
                batch.len() < BATCH || send(&mut batch, fe)
            });
            send(&mut batch, fe);
            r
        });
        let mut defs: Vec<CacheDef> = Vec::new();
        for (mut ops, new, lines) in rx {
            defs.extend(new);
            let t = Instant::now();
            rp.apply_all(&ops, &defs);
            replay += t.elapsed();
            ops.clear();
            let _ = free_tx.send(ops);
            mem.sample(m);
            on_batch(rp, lines);
        }
        parser.join()
    });
    let parsed = parsed.map_err(|_| io::Error::other("the trace parser panicked"))?;
    parsed?;
    Ok(Timing { total: start.elapsed(), replay })
}

/// Where the parsing thread's lines come from: blocks read ahead on another thread, reads
/// (and decompression) on the parsing thread itself, or zstd decoding into its buffer.
enum Source<'a> {
    Ahead(ReadAhead),
    Here(Reading<&'a mut (dyn Read + Send)>),
    Ring(ZstdRing<Compressed>),
}

impl Fill for Source<'_> {
    fn fill(&mut self, buf: &mut Box<[u8]>, start: usize, end: usize) -> io::Result<(usize, usize)> {
        match self {
            Source::Ahead(a) => a.fill(buf, start, end),
            Source::Here(r) => r.fill(buf, start, end),
            Source::Ring(z) => z.fill(buf, start, end),
        }
    }
}

/// [`parse_all`] of an opened trace, a zstd stream decoded straight into the parser's
/// buffer ([`ZstdRing`]).
pub fn parse_trace(trace: Trace, fe: &mut Frontend) -> io::Result<Vec<Op>> {
    match trace {
        Trace::Zstd(raw) => {
            let mut ops = Vec::new();
            parse_from(Lines::from_fill(ZstdRing::new(raw)?, Box::default()), fe, |op, _| {
                ops.push(op);
                true
            })?;
            Ok(ops)
        }
        Trace::Plain(mut r) => parse_all(&mut *r, fe),
    }
}

/// Parses every line of `r` into operations (for benchmarks: replay them later).
pub fn parse_all(r: &mut dyn Read, fe: &mut Frontend) -> io::Result<Vec<Op>> {
    let mut ops = Vec::new();
    parse_lines(r, fe, |op, _| {
        ops.push(op);
        true
    })?;
    Ok(ops)
}
