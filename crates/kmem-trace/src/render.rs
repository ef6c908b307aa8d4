//! A replay's report, for people ([`human`]) or machines ([`json`]), and the `--top` view.

use std::fmt::Write;

use kmem::proc::slab_info;
use kmem::{ReportKind, PAGE_SIZE};
use kmem_hosted::Machine;

use crate::input::Compression;
use crate::op::{Kind, TraceCounts};
use crate::replay::{Mem, ReplayCounts, Replayer};
use crate::run::{MachineMem, Timing};
use crate::summary::{Audit, CacheRow};

/// Everything a report shows.
#[derive(Debug)]
pub struct Report<'a> {
    /// The trace file.
    pub path: &'a str,
    /// How it was stored.
    pub compression: Compression,
    /// The machine: (preset, RAM bytes, CPUs, nodes).
    pub machine: (String, u64, usize, usize),
    /// What the trace held.
    pub trace: &'a TraceCounts,
    /// What the replay did.
    pub replay: &'a ReplayCounts,
    /// Where the time went.
    pub timing: Timing,
    /// The machine's memory, sampled.
    pub mem: MachineMem,
    /// The trace's caches, most waste first.
    pub caches: Vec<CacheRow>,
    /// Caches listed in the human report.
    pub top: usize,
    /// The machine's report counts, by [`ReportKind`].
    pub reports: [u64; ReportKind::COUNT],
    /// The machine's reclaim counters (direct reclaim, kswapd, OOM).
    pub reclaim: kmem::reclaim::ReclaimStats,
    /// The audit against the machine's counters.
    pub audit: Audit,
    /// /proc views to include: (name, text).
    pub views: Vec<(&'static str, String)>,
}

/// Report names of [`ReportKind::ALL`].
pub const REPORT_NAMES: [&str; ReportKind::COUNT] =
    ["bad_page", "page_alloc_failure", "warning", "sleep_in_atomic", "slab_bug", "info", "oom", "kfence"];

/// The machine's report counts.
pub fn report_counts(m: &Machine) -> [u64; ReportKind::COUNT] {
    ReportKind::ALL.map(|k| m.report_count(k))
}

fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::None => "none",
        Compression::Zstd => "zstd",
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn total(a: &[u64]) -> u64 {
    a.iter().sum()
}

impl Report<'_> {
    pub(crate) fn events(&self) -> u64 {
        self.trace.total_events()
    }
    pub(crate) fn rate_total(&self) -> f64 {
        Timing::rate(self.events(), self.timing.total)
    }
    pub(crate) fn rate_replay(&self) -> f64 {
        Timing::rate(self.replay.ops, self.timing.replay)
    }
}

/// The human report.
pub fn human(r: &Report<'_>, w: &mut String) -> std::fmt::Result {
    let (t, c) = (r.trace, r.replay);
    let (preset, ram, cpus, nodes) = &r.machine;
    writeln!(w, "== kmem replay: {} ({}), {} lines", r.path, compression_name(r.compression), t.lines)?;
    writeln!(w, "machine: {preset}, {:.0} MiB RAM, {cpus} CPUs, {nodes} node(s)", mib(*ram))?;
    writeln!(
        w,
        "replayed {} of {} events in {:.3} s: {:.2} M events/s including parsing, {:.2} M ops/s replay only ({:.3} s)",
        total(&c.replayed),
        r.events(),
        r.timing.total.as_secs_f64(),
        r.rate_total() / 1e6,
        r.rate_replay() / 1e6,
        r.timing.replay.as_secs_f64()
    )?;
    writeln!(
        w,
        "\n{:<22} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "event", "in trace", "replayed", "failed", "unmatched", "missed"
    )?;
    for k in Kind::ALL {
        let i = k as usize;
        writeln!(
            w,
            "{:<22} {:>9} {:>9} {:>9} {:>10} {:>10}",
            k.name(),
            t.events[i],
            c.replayed[i],
            c.failures[i],
            c.unmatched_frees[i],
            c.missed_frees[i]
        )?;
    }
    let mut unknown: Vec<_> = t.unknown.iter().collect();
    unknown.sort();
    for (name, n) in unknown {
        writeln!(w, "{name:<22} {n:>9}  (unknown event, skipped)")?;
    }
    writeln!(
        w,
        "failures {}, unmatched frees {} (allocated before the capture), missed frees {}, kfree(NULL) {}",
        total(&c.failures),
        total(&c.unmatched_frees),
        total(&c.missed_frees),
        c.null_frees
    )?;
    writeln!(
        w,
        "batched frees after their mm_page_free {}, cross-kind frees {}, order mismatches {}, cache create failures {}, frees of failed allocations {}",
        c.batched_after_free, c.cross_kind_frees, c.order_mismatches, c.cache_create_failures, c.frees_of_failed
    )?;
    writeln!(
        w,
        "traced failures {}, __GFP_NOFAIL requests {} (kept), unknown GFP tokens {}, kmalloc-* cache events {} (replayed as kmalloc), lost events {}",
        t.traced_failures, t.nofail, t.gfp_unknown_tokens, t.kmalloc_caches, t.lost_events
    )?;
    writeln!(w, "malformed lines {}, ignored lines {}", t.malformed, t.ignored_lines)?;
    if t.zero_dropped > 0 {
        writeln!(w, "__GFP_ZERO dropped (--no-zero) {}", t.zero_dropped)?;
    }
    for m in &t.malformed_first {
        writeln!(w, "  line {}: {}: {}", m.line, m.error, m.text)?;
    }
    writeln!(w, "\n== memory (MiB)      {:>10} {:>10}", "peak", "final")?;
    for m in Mem::ALL {
        let i = m as usize;
        writeln!(w, "{:<20} {:>10.2} {:>10.2}", m.name(), mib(c.peak_bytes[i]), mib(c.live_bytes[i]))?;
    }
    writeln!(w, "{:<20} {:>10.2} {:>10.2}", "all (replay's view)", mib(c.peak_total_bytes), mib(total(&c.live_bytes)))?;
    let pg = |p: u64| mib(p * PAGE_SIZE as u64);
    writeln!(w, "{:<20} {:>10.2} {:>10.2}", "machine Slab:", pg(r.mem.peak_slab_pages), pg(r.mem.slab_pages))?;
    writeln!(w, "{:<20} {:>10.2} {:>10.2}", "machine used", pg(r.mem.peak_used_pages), pg(r.mem.used_pages))?;
    writeln!(
        w,
        "\n== slab caches (top {} of {} by waste; kmem layout against the trace's sizes)",
        r.top.min(r.caches.len()),
        r.caches.len()
    )?;
    writeln!(
        w,
        "{:<24} {:>8} {:>8} {:>6} {:>6} {:>7} {:>5} {:>5} {:>7} {:>10} {:>6} {:>5}",
        "cache", "live", "objs", "req", "alloc", "objsize", "o/s", "p/s", "slabs", "waste KiB", "frag%", "tail"
    )?;
    for row in r.caches.iter().take(r.top) {
        writeln!(
            w,
            "{:<24} {:>8} {:>8} {:>6} {:>6} {:>7} {:>5} {:>5} {:>7} {:>10.1} {:>6.1} {:>5}",
            row.name,
            row.live,
            row.num_objs,
            row.bytes_req,
            row.bytes_alloc,
            row.objsize,
            row.objperslab,
            row.pagesperslab,
            row.num_slabs,
            row.waste_bytes as f64 / 1024.0,
            row.frag_pct,
            row.slab_tail_bytes
        )?;
        if row.size_mismatches > 0 {
            writeln!(w, "  ({} allocations with another bytes_alloc; the first size was kept)", row.size_mismatches)?;
        }
    }
    let mut missed: Vec<&CacheRow> = r.caches.iter().filter(|c| c.missed_frees > 0).collect();
    missed.sort_by_key(|c| std::cmp::Reverse(c.missed_frees));
    if !missed.is_empty() {
        let list: Vec<String> = missed.iter().take(5).map(|c| format!("{} {}", c.name, c.missed_frees)).collect();
        writeln!(w, "missed frees by cache (freed by a path the capture did not trace): {}", list.join(", "))?;
    }
    let reports: Vec<String> =
        REPORT_NAMES.iter().zip(r.reports).filter(|(_, n)| *n > 0).map(|(k, n)| format!("{k}={n}")).collect();
    writeln!(w, "\nmachine reports: {}", if reports.is_empty() { "none".into() } else { reports.join(" ") })?;
    let rc = &r.reclaim;
    writeln!(
        w,
        "reclaim: direct reclaims {} (pages got back {}), empty slab pages given back {}, OOM {} (notifiers freed {} pages), __GFP_NOFAIL sleeps {}",
        rc.allocstall_total(),
        rc.pgsteal_direct,
        rc.slab_pages_reclaimed,
        rc.oom,
        rc.oom_notifier_freed,
        rc.nofail_waits
    )?;
    let o = &c.oom;
    writeln!(
        w,
        "OOM killer (victim: the trace's oldest live allocations): notifier calls {}, kills {} (and {} under reclaim pressure), freed {} objects and {} page blocks ({:.2} MiB), their traced frees later {}",
        o.notifier_calls,
        o.kills,
        o.pressure_kills,
        o.objects_freed,
        o.blocks_freed,
        mib(o.bytes_freed),
        o.victim_frees_total()
    )?;
    writeln!(
        w,
        "reclaim of the trace's movable pages (replay-lru shrinker, oldest first): {} blocks ({:.2} MiB), their traced frees later {}",
        o.reclaimed_blocks,
        mib(o.reclaimed_bytes),
        o.reclaimed_frees.iter().sum::<u64>()
    )?;
    writeln!(
        w,
        "__GFP_NOFAIL: {} replayed with the flag, {} served by the replayer (kmem would wait for another thread), {} failed with nothing left to free",
        o.nofail, o.nofail_by_replayer, o.nofail_failed
    )?;
    let a = &r.audit;
    writeln!(
        w,
        "audit: {} live objects, {} live page blocks, {} caches checked, large kmalloc pages {} (machine {}): {}",
        a.live_objects,
        a.live_blocks,
        a.caches_checked,
        a.kmalloc_large_pages,
        a.machine_large_pages,
        if a.ok() { "all accounted for" } else { "MISMATCH" }
    )?;
    for m in &a.mismatches {
        writeln!(w, "  {}: replay holds {}, machine counts {}", m.cache, m.expected, m.found)?;
    }
    Ok(())
}

/// The JSON report: one object, keys as documented in `kmem replay --help` (serde; see
/// [`crate::json`]).
pub fn json(r: &Report<'_>, out: &mut String) {
    crate::json::write(r, out);
}

/// The `--top` view: the busiest caches now (slabtop's columns), after an ANSI clear.
pub fn top(rp: &Replayer<'_>, fe_lines: u64, rows: usize, w: &mut String) -> std::fmt::Result {
    let m = rp.machine();
    let mut caches = Vec::new();
    m.for_each_cache(|c| {
        let i = slab_info(m, c);
        caches.push((c.name().to_owned(), i));
    });
    caches.sort_by(|a, b| (b.1.active_objs * b.1.objsize).cmp(&(a.1.active_objs * a.1.objsize)).then(a.0.cmp(&b.0)));
    w.push_str("\x1b[H\x1b[2J");
    writeln!(w, " kmem replay: {} lines, {} ops, {} live objects", fe_lines, rp.counts.ops, rp.live().0)?;
    writeln!(
        w,
        "{:>9} {:>9} {:>4} {:>9} {:>5} {:>6} {:>11} NAME",
        "OBJS", "ACTIVE", "USE", "OBJ SIZE", "SLABS", "OBJ/SLAB", "CACHE SIZE"
    )?;
    for (name, i) in caches.iter().take(rows) {
        let use_pct = 100 * i.active_objs / i.num_objs.max(1);
        let size_k = i.num_slabs * i.pagesperslab * PAGE_SIZE / 1024;
        writeln!(
            w,
            "{:>9} {:>9} {:>3}% {:>8.2}K {:>5} {:>8} {:>10}K {name}",
            i.num_objs,
            i.active_objs,
            use_pct,
            i.objsize as f64 / 1024.0,
            i.num_slabs,
            i.objperslab,
            size_k
        )?;
    }
    Ok(())
}
