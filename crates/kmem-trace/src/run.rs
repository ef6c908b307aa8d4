//! The streaming driver: parse a batch of lines into operations, replay the batch, sample the
//! machine, repeat. Timing the replay of whole batches gives the replay-only rate without a
//! clock read per event.

use std::io::{self, BufRead};
use std::time::{Duration, Instant};

use kmem_hosted::Machine;

use crate::input::for_each_line;
use crate::op::{Frontend, Op};
use crate::replay::Replayer;

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

/// Replays every line of `r`. `on_batch` runs after each batch (a live view, progress).
pub fn replay_stream(
    r: &mut dyn BufRead,
    fe: &mut Frontend,
    rp: &mut Replayer<'_>,
    mem: &mut MachineMem,
    mut on_batch: impl FnMut(&Replayer<'_>, &Frontend),
) -> io::Result<Timing> {
    let start = Instant::now();
    let mut replay = Duration::ZERO;
    let mut batch: Vec<Op> = Vec::with_capacity(BATCH);
    let m = rp.machine();
    let mut flush = |batch: &mut Vec<Op>, fe: &Frontend, rp: &mut Replayer<'_>| {
        let t = Instant::now();
        rp.apply_all(batch, fe.caches());
        replay += t.elapsed();
        batch.clear();
        mem.sample(m);
        on_batch(rp, fe);
    };
    for_each_line(r, |no, line| {
        if let Some(op) = fe.line(no, line) {
            batch.push(op);
            if batch.len() == BATCH {
                flush(&mut batch, fe, rp);
            }
        }
        true
    })?;
    flush(&mut batch, fe, rp);
    Ok(Timing { total: start.elapsed(), replay })
}

/// Parses every line of `r` into operations (for benchmarks: replay them later).
pub fn parse_all(r: &mut dyn BufRead, fe: &mut Frontend) -> io::Result<Vec<Op>> {
    let mut ops = Vec::new();
    for_each_line(r, |no, line| {
        ops.extend(fe.line(no, line));
        true
    })?;
    Ok(ops)
}
