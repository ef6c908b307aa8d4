//! Events to replay operations: the [`Frontend`] resolves what the replay engine should not
//! redo per event (GFP text, cache names) into a compact, `'static` [`Op`], and counts what
//! the trace contains (events by kind, unknown events, malformed lines).

use std::collections::HashMap;

use kmem::Gfp;

use crate::gfp_text::GfpTable;
use crate::keys::{SlotMap, TextMemo, NO_SLOT};
use crate::parse::{parse_line, Event, EventKind, Front, Line, ParseError};

/// The event kinds, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// `kmalloc`.
    Kmalloc,
    /// `kfree`.
    Kfree,
    /// `kmem_cache_alloc`.
    CacheAlloc,
    /// `kmem_cache_free`.
    CacheFree,
    /// `mm_page_alloc`.
    PageAlloc,
    /// `mm_page_free`.
    PageFree,
    /// `mm_page_free_batched`.
    PageFreeBatched,
}

impl Kind {
    /// Number of kinds.
    pub const COUNT: usize = 7;
    /// Every kind, in report order.
    pub const ALL: [Kind; Kind::COUNT] = [
        Kind::Kmalloc,
        Kind::Kfree,
        Kind::CacheAlloc,
        Kind::CacheFree,
        Kind::PageAlloc,
        Kind::PageFree,
        Kind::PageFreeBatched,
    ];
    /// The ftrace event name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Kmalloc => "kmalloc",
            Kind::Kfree => "kfree",
            Kind::CacheAlloc => "kmem_cache_alloc",
            Kind::CacheFree => "kmem_cache_free",
            Kind::PageAlloc => "mm_page_alloc",
            Kind::PageFree => "mm_page_free",
            Kind::PageFreeBatched => "mm_page_free_batched",
        }
    }
    /// Whether the kind allocates.
    pub fn is_alloc(self) -> bool {
        matches!(self, Kind::Kmalloc | Kind::CacheAlloc | Kind::PageAlloc)
    }
}

/// `Op::cache` of an operation that names no cache.
pub const NO_CACHE: u32 = u32::MAX;

/// One operation to replay: 32 bytes, no borrows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// The trace's pointer (slab kinds) or pfn (page kinds).
    pub key: u64,
    /// GFP flags of an allocation.
    pub gfp: Gfp,
    /// Bytes requested (kmalloc).
    pub size: u32,
    /// Index into [`Frontend::caches`] (kmem_cache_alloc) or [`NO_CACHE`].
    pub cache: u32,
    /// The allocation's slot ([`crate::keys`]): where an allocation goes, or which one a
    /// free frees ([`NO_SLOT`]: none is live, an unmatched free). Object and page slots are
    /// numbered separately.
    pub slot: u32,
    /// The trace's CPU (truncated to 16 bits).
    pub cpu: u16,
    /// What to do.
    pub kind: Kind,
    /// Page order.
    pub order: u8,
    /// From interrupt context.
    pub irq: bool,
    /// An allocation of a key already live (a missed free, or one the replay's OOM killer
    /// freed): the engine empties the slot first. False for every other operation.
    pub relive: bool,
}

const _: () = assert!(core::mem::size_of::<Op>() == 32, "an Op stays 32 bytes");

/// A cache the trace names, as first seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheDef {
    /// Its name (`size-<bytes_alloc>` when the trace names none).
    pub name: String,
    /// `bytes_req` of the first allocation (the traced `object_size`).
    pub bytes_req: u32,
    /// `bytes_alloc` of the first allocation (the traced slot size): kmem's object size.
    pub bytes_alloc: u32,
    /// Later allocations whose `bytes_alloc` differed (the first size is kept).
    pub size_mismatches: u64,
}

/// A malformed line, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed {
    /// 1-based line number.
    pub line: u64,
    /// What was wrong.
    pub error: ParseError,
    /// The line's start (at most 120 bytes, lossy UTF-8).
    pub text: String,
}

/// How many malformed lines are kept with their text.
pub const MALFORMED_KEPT: usize = 10;

/// What the trace held, counted while parsing.
#[derive(Clone, Debug, Default)]
pub struct TraceCounts {
    /// Lines read.
    pub lines: u64,
    /// Events per [`Kind`] (index `Kind as usize`).
    pub events: [u64; Kind::COUNT],
    /// Events of other names, skipped.
    pub unknown: HashMap<String, u64>,
    /// Blank, comment and header lines.
    pub ignored_lines: u64,
    /// Events the ring buffer lost (`[LOST N EVENTS]`).
    pub lost_events: u64,
    /// Lines that are not events.
    pub malformed: u64,
    /// The first [`MALFORMED_KEPT`] of them.
    pub malformed_first: Vec<Malformed>,
    /// `mm_page_alloc` events of failed allocations (not replayed).
    pub traced_failures: u64,
    /// GFP tokens not known (skipped: their bits are not set).
    pub gfp_unknown_tokens: u64,
    /// Allocations carrying `__GFP_NOFAIL` (kept: see [`crate::oom`]).
    pub nofail: u64,
    /// `kmem_cache_alloc` of a `kmalloc-*` cache, replayed as kmalloc.
    pub kmalloc_caches: u64,
    /// Allocations whose `__GFP_ZERO` was dropped ([`Frontend::set_drop_zero`]).
    pub zero_dropped: u64,
}

impl TraceCounts {
    /// Events of every kind, known or not.
    pub fn total_events(&self) -> u64 {
        self.events.iter().sum::<u64>() + self.unknown.values().sum::<u64>()
    }
}

/// Turns trace lines into [`Op`]s.
#[derive(Debug, Default)]
pub struct Frontend {
    gfp: GfpTable,
    names: TextMemo<u32>,
    anon: HashMap<u32, u32>,
    caches: Vec<CacheDef>,
    objs: SlotMap,
    pages: SlotMap,
    drop_zero: bool,
    /// What the trace held.
    pub counts: TraceCounts,
}

impl Frontend {
    /// A front end that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops `__GFP_ZERO` from every allocation (`kmem replay --no-zero`): nothing reads the
    /// replayed memory, and zeroing is most of the replay's time on a trace full of
    /// `GFP_HIGHUSER_MOVABLE|__GFP_ZERO` pages (it is memory bandwidth, not allocator work).
    pub fn set_drop_zero(&mut self, on: bool) {
        self.drop_zero = on;
    }

    /// Objects (slab and kmalloc) and page blocks live in the trace so far: allocated and
    /// not freed.
    pub fn live(&self) -> (usize, usize) {
        (self.objs.live(), self.pages.live())
    }

    /// The caches seen so far, indexed by [`Op::cache`].
    pub fn caches(&self) -> &[CacheDef] {
        &self.caches
    }

    /// Parses line `no` (1-based) and returns its operation, if it has one; everything else
    /// (ignored, unknown, malformed, traced failures) is counted.
    pub fn line(&mut self, no: u64, line: &[u8]) -> Option<Op> {
        self.parsed(no, line, &parse_line(line))
    }

    /// [`Frontend::line`] of a line parsed already (`parsed` is `parse_line(line)`). It and
    /// [`Frontend::event`] are inlined into each parsing loop (`kmem replay`'s, `parse_all`'s
    /// and `parse_trace`'s: with three, the compiler's own choice was a call per line).
    #[inline(always)]
    pub fn parsed(&mut self, no: u64, line: &[u8], parsed: &Result<Line<'_>, ParseError>) -> Option<Op> {
        self.parsed_in(no, line, parsed, None)
    }

    /// [`Frontend::parsed`] of a line whose tail was read through a
    /// [`crate::parse::TailMemo`] (`front`: its entry's values, `None` until this resolves
    /// them): a line with a tail seen before takes its GFP flags and cache from there instead
    /// of looking them up, with the same operation and counts.
    #[inline(always)]
    pub fn parsed_in(
        &mut self,
        no: u64,
        line: &[u8],
        parsed: &Result<Line<'_>, ParseError>,
        front: Option<&mut Front>,
    ) -> Option<Op> {
        self.counts.lines += 1;
        match parsed {
            Ok(Line::Event(ev)) => self.event_in(ev, front),
            Ok(Line::Ignored) => {
                self.counts.ignored_lines += 1;
                None
            }
            Ok(Line::Lost(n)) => {
                self.counts.lost_events += n;
                None
            }
            Err(error) => {
                self.malformed(no, *error, line);
                None
            }
        }
    }

    /// Prefetches the slot-table entry of a parsed line's key (a hint: nothing changes), so
    /// that [`Frontend::parsed`] finds it in cache a few lines later.
    #[inline]
    pub fn prefetch(&self, parsed: &Result<Line<'_>, ParseError>) {
        let Ok(Line::Event(ev)) = parsed else { return };
        match ev.kind {
            EventKind::Kmalloc { ptr, .. }
            | EventKind::CacheAlloc { ptr, .. }
            | EventKind::Kfree { ptr }
            | EventKind::CacheFree { ptr, .. } => self.objs.prefetch(ptr),
            EventKind::PageAlloc { pfn: Some(pfn), .. }
            | EventKind::PageFree { pfn, .. }
            | EventKind::PageFreeBatched { pfn } => self.pages.prefetch(pfn),
            EventKind::PageAlloc { pfn: None, .. } | EventKind::Other { .. } => {}
        }
    }

    /// Counts line `no`, longer than [`crate::input::MAX_LINE`] bytes, as malformed (`head`:
    /// its start).
    pub fn too_long(&mut self, no: u64, head: &[u8]) {
        self.counts.lines += 1;
        self.malformed(no, ParseError::TooLong, head);
    }

    #[cold]
    fn malformed(&mut self, no: u64, error: ParseError, line: &[u8]) {
        self.counts.malformed += 1;
        if self.counts.malformed_first.len() < MALFORMED_KEPT {
            let text = String::from_utf8_lossy(&line[..line.len().min(120)]).trim_end().to_owned();
            self.counts.malformed_first.push(Malformed { line: no, error, text });
        }
    }

    #[inline]
    fn gfp(&mut self, text: &str) -> Gfp {
        let (mut g, unknown) = self.gfp.get(text);
        let dropped = self.drop_zero && g.contains(Gfp::ZERO);
        if dropped {
            g = g.without(Gfp::ZERO);
        }
        self.count_gfp(g, unknown, dropped);
        g
    }

    /// Counts an allocation's flags `g` (`__GFP_ZERO` already dropped if `dropped`) and
    /// their `unknown` tokens.
    #[inline(always)]
    fn count_gfp(&mut self, g: Gfp, unknown: u32, dropped: bool) {
        self.counts.gfp_unknown_tokens += unknown as u64;
        self.counts.zero_dropped += dropped as u64;
        self.counts.nofail += g.contains(Gfp::NOFAIL) as u64;
    }

    /// [`Frontend::gfp`] of `text`, through a tail's `front` values (`[flags, unknown
    /// tokens, __GFP_ZERO dropped, cache]`: resolved here the first time).
    #[inline(always)]
    fn gfp_in(&mut self, text: &str, front: &mut Option<&mut Front>) -> Gfp {
        match front.as_deref_mut() {
            Some(Some(f)) => {
                let g = Gfp::from_bits(f[0]);
                self.count_gfp(g, f[1], f[2] != 0);
                g
            }
            Some(slot @ None) => {
                let (raw, unknown) = self.gfp.get(text);
                let g = self.gfp(text);
                *slot = Some([g.bits(), unknown, (g != raw) as u32, NO_CACHE]);
                g
            }
            None => self.gfp(text),
        }
    }

    #[inline]
    fn cache(&mut self, name: &str, bytes_req: u32, bytes_alloc: u32) -> u32 {
        let next = self.caches.len() as u32;
        let i = if name.is_empty() {
            *self.anon.entry(bytes_alloc).or_insert(next)
        } else {
            self.names.get(name.as_bytes(), || next)
        };
        if i == next {
            let name = if name.is_empty() { format!("size-{bytes_alloc}") } else { name.to_owned() };
            self.caches.push(CacheDef { name, bytes_req, bytes_alloc, size_mismatches: 0 });
        } else {
            let c = &mut self.caches[i as usize];
            if c.bytes_alloc != bytes_alloc {
                c.size_mismatches += 1;
            }
        }
        i
    }

    /// The operation of a parsed event (counting it).
    #[inline(always)]
    pub fn event(&mut self, ev: &Event<'_>) -> Option<Op> {
        self.event_in(ev, None)
    }

    /// [`Frontend::event`], through a tail's values ([`Frontend::parsed_in`]).
    #[inline(always)]
    fn event_in(&mut self, ev: &Event<'_>, mut front: Option<&mut Front>) -> Option<Op> {
        let mut op = Op {
            key: 0,
            gfp: Gfp::empty(),
            size: 0,
            cache: NO_CACHE,
            slot: NO_SLOT,
            cpu: ev.cpu as u16,
            kind: Kind::Kfree,
            order: 0,
            irq: ev.irq,
            relive: false,
        };
        match ev.kind {
            EventKind::Kmalloc { ptr, bytes_req, gfp, .. } => {
                (op.kind, op.key, op.size, op.gfp) = (Kind::Kmalloc, ptr, bytes_req, self.gfp_in(gfp, &mut front));
                (op.slot, op.relive) = self.objs.alloc(ptr);
            }
            EventKind::Kfree { ptr } => (op.kind, op.key, op.slot) = (Kind::Kfree, ptr, self.objs.free(ptr)),
            EventKind::CacheAlloc { ptr, name, bytes_req, bytes_alloc, gfp } => {
                (op.key, op.gfp) = (ptr, self.gfp_in(gfp, &mut front));
                (op.slot, op.relive) = self.objs.alloc(ptr);
                // The tail's cache (resolved by `gfp_in` before): `NO_CACHE` until known
                // (a kmalloc cache stays `NO_CACHE`, tested again each time).
                let known = front.as_deref().and_then(|f| f.map(|f| f[3])).unwrap_or(NO_CACHE);
                if known != NO_CACHE {
                    if self.caches[known as usize].bytes_alloc != bytes_alloc {
                        self.caches[known as usize].size_mismatches += 1;
                    }
                    (op.kind, op.cache) = (Kind::CacheAlloc, known);
                } else if is_kmalloc_cache(name) {
                    self.counts.kmalloc_caches += 1;
                    (op.kind, op.size) = (Kind::Kmalloc, bytes_req);
                } else {
                    (op.kind, op.cache) = (Kind::CacheAlloc, self.cache(name, bytes_req, bytes_alloc));
                    if let Some(Some(f)) = front {
                        f[3] = op.cache;
                    }
                }
                self.counts.events[Kind::CacheAlloc as usize] += 1;
                return Some(op);
            }
            EventKind::CacheFree { ptr, .. } => {
                (op.kind, op.key, op.slot) = (Kind::CacheFree, ptr, self.objs.free(ptr))
            }
            EventKind::PageAlloc { pfn, order, gfp } => {
                self.counts.events[Kind::PageAlloc as usize] += 1;
                let Some(pfn) = pfn else {
                    self.counts.traced_failures += 1;
                    return None;
                };
                (op.kind, op.key, op.order, op.gfp) = (Kind::PageAlloc, pfn, order, self.gfp_in(gfp, &mut front));
                (op.slot, op.relive) = self.pages.alloc(pfn);
                return Some(op);
            }
            EventKind::PageFree { pfn, order } => {
                (op.kind, op.key, op.order, op.slot) = (Kind::PageFree, pfn, order, self.pages.free(pfn));
            }
            EventKind::PageFreeBatched { pfn } => {
                (op.kind, op.key, op.slot) = (Kind::PageFreeBatched, pfn, self.pages.free(pfn));
            }
            EventKind::Other { name } => {
                match self.counts.unknown.get_mut(name) {
                    Some(n) => *n += 1,
                    None => {
                        self.counts.unknown.insert(name.to_owned(), 1);
                    }
                }
                return None;
            }
        }
        self.counts.events[op.kind as usize] += 1;
        Some(op)
    }
}

/// `kmalloc-64`, `kmalloc-rcl-128`, `kmalloc-cg-8k`, `dma-kmalloc-512`: the kmalloc caches,
/// which the replay reaches through kmalloc rather than creating a cache of that name.
fn is_kmalloc_cache(name: &str) -> bool {
    name.starts_with("kmalloc-") || name.starts_with("dma-kmalloc-")
}
