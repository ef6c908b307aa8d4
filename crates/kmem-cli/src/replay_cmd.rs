//! `kmem replay TRACE`: replays a Linux kmem ftrace capture against a machine (see the
//! `kmem-trace` crate) and reports what happened.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use kmem_trace::render::{self, Report};
use kmem_trace::run::{replay_stream, replay_trace, MachineMem};
use kmem_trace::{input, summary, Frontend, Replayer};

use crate::opts::MachineOpts;
use crate::views::View;

/// The `--json` keys, for `--help`.
const JSON_HELP: &str = "\
JSON output (--json): one object with these keys (stable; counts are integers):
  trace      path, compression (none|zstd), lines, events (all kinds), ignored_lines,
             lost_events, malformed, malformed_first [{line, error, text}] (first 10),
             unknown_events {name: count}, traced_failures, gfp_unknown_tokens,
             nofail_requests, kmalloc_cache_events, zero_dropped
  machine    preset, ram_bytes, cpus, nodes
  events, replayed, failures, unmatched_frees, missed_frees
             per event kind: kmalloc, kfree, kmem_cache_alloc, kmem_cache_free,
             mm_page_alloc, mm_page_free, mm_page_free_batched
  totals     ops, replayed, failures, unmatched_frees, missed_frees, null_frees,
             batched_after_free, cross_kind_frees, order_mismatches, cache_create_failures,
             frees_of_failed
  timing     total_s, replay_s, events_per_s (including parsing), replay_ops_per_s
  memory     live_bytes and peak_bytes {slab, kmalloc, kmalloc_large, pages},
             peak_total_bytes, machine_slab_pages, machine_peak_slab_pages,
             machine_used_pages, machine_peak_used_pages
  caches     [{name, bytes_req, bytes_alloc, objsize, objperslab, pagesperslab, live,
             active_objs, num_objs, num_slabs, waste_bytes, frag_pct, slab_tail_bytes,
             size_mismatches, missed_frees}], most waste first
  reports    the machine's report counts: bad_page, page_alloc_failure, warning,
             sleep_in_atomic, slab_bug, info
  oom        notifier_calls, kills, pressure_kills, objects_freed, blocks_freed, bytes_freed,
             victim_frees {per event kind}, nofail, nofail_by_replayer, nofail_failed,
             reclaimed_blocks, reclaimed_bytes, reclaimed_frees {per event kind},
             allocstall, pgsteal_direct, machine_oom, nofail_sleeps: the replay's OOM
             killer (it frees the trace's oldest live allocations; their later traced
             frees are victim_frees), its reclaim of the trace's movable pages (the
             replay-lru shrinker), and the machine's reclaim
  audit      ok, live_objects, live_blocks, caches_checked, mismatches [{cache, expected,
             found}], kmalloc_large_pages, machine_large_pages, bad_blocks
  views      {name: text} of the --then views (only with --then)

Unmatched frees are frees of objects allocated before the capture started (skipped);
missed frees are allocations of a pointer still live (the old one is freed first).
Seconds, rates and percentages are rounded to 3 decimals (null when not finite).";

/// `kmem replay` options.
#[derive(Args, Debug)]
#[command(after_long_help = JSON_HELP)]
pub struct ReplayArgs {
    /// The capture: ftrace text (trace_pipe, trace, `trace-cmd report`), plain or zstd
    /// (detected from the content); `-` reads standard input.
    pub trace: PathBuf,
    #[command(flatten)]
    pub machine: MachineOpts,
    /// Print one JSON object (keys: see --help) instead of the report.
    #[arg(long)]
    pub json: bool,
    /// After the replay, print a /proc view (repeatable): any view `kmem proc` knows
    /// (buddyinfo, slabinfo, meminfo...).
    #[arg(long = "then", value_name = "VIEW")]
    pub then: Vec<String>,
    /// Show the busiest caches (slabtop-style) on stderr while replaying, every 0.5 s.
    #[arg(long)]
    pub top: bool,
    /// Caches listed in the report.
    #[arg(long, default_value_t = 15)]
    pub caches: usize,
    /// Replay only the first N lines.
    #[arg(long, value_name = "N")]
    pub lines: Option<u64>,
    /// Drop __GFP_ZERO from every allocation (zeroing pages is memory bandwidth, most of the
    /// replay's time on page-heavy traces; the replayed memory is never read).
    #[arg(long)]
    pub no_zero: bool,
    /// Let the trace's caches merge with compatible ones, as Linux does (off: each cache is
    /// its own, so it is reported on its own).
    #[arg(long)]
    pub merge: bool,
    /// Ask the host for transparent huge pages for the machine's RAM (`MADV_HUGEPAGE`): fewer
    /// host faults where huge pages are cheap, but on a VM that reports free memory to its
    /// host every huge page is backed again at first touch (the shared capture: 10x slower).
    #[arg(long)]
    pub thp: bool,
    /// After the replay, write the page-frame map of the replayed state to PATH.png and
    /// PATH.svg (or name one with its extension; a directory gets kmem-pfmap.png and
    /// kmem-pfmap.svg inside it), and print the unusable free space index.
    #[arg(long, value_name = "PATH")]
    pub map: Option<PathBuf>,
}

/// The machine a replay runs on: anonymous RAM (a replay touches hundreds of MiB, cheaper
/// host faults than a memfd's; the capture has no vmalloc events, which would need memfd
/// RAM), in small pages unless `--thp` (`MachineBuilder::ram_hugepages`).
fn replay_machine(a: &ReplayArgs) -> Result<kmem_hosted::Machine, String> {
    a.machine.builder().anonymous_ram(true).ram_hugepages(a.thp).build().map_err(|e| e.to_string())
}

fn parse_views(names: &[String]) -> Result<Vec<View>, String> {
    names
        .iter()
        .map(|n| {
            View::from_str(n, true).map_err(|_| {
                let known: Vec<&str> = View::ALL.iter().map(|v| v.name()).collect();
                format!("unknown view '{n}' for --then (expected one of: {})", known.join(", "))
            })
        })
        .collect()
}

/// `kmem replay`.
pub fn run(a: &ReplayArgs) -> Result<(), String> {
    let views = parse_views(&a.then)?;
    let shown = a.trace.display().to_string();
    let opened = if a.trace.as_os_str() == "-" {
        input::Trace::from_reader(std::io::stdin())
    } else {
        input::Trace::open(&a.trace)
    };
    let trace = opened.map_err(|e| format!("cannot read trace {shown}: {e}"))?;
    let compression = trace.compression();
    let m = replay_machine(a)?;
    // Created now, so that an unwritable path fails before the replay.
    let map_files = a.map.as_deref().map(crate::pfmap::MapFiles::create).transpose()?;
    let mut fe = Frontend::new();
    fe.set_drop_zero(a.no_zero);
    let mut rp = Replayer::new(&m, a.merge);
    let mut mem = MachineMem::default();
    let live_view = a.top;
    let mut next = Instant::now() + Duration::from_millis(500);
    let mut screen = String::new();
    let on_batch = |rp: &Replayer<'_>, lines| {
        if live_view && Instant::now() >= next {
            screen.clear();
            let _ = render::top(rp, lines, 20, &mut screen);
            let _ = std::io::stderr().write_all(screen.as_bytes());
            next = Instant::now() + Duration::from_millis(500);
        }
    };
    let timing = match a.lines {
        None => replay_trace(trace, &mut fe, &mut rp, &mut mem, on_batch),
        // `--lines` counts lines of the text: the decompressed stream, cut.
        Some(n) => trace
            .into_reader()
            .and_then(|r| replay_stream(&mut input::TakeLines::new(r, n), &mut fe, &mut rp, &mut mem, on_batch)),
    }
    .map_err(|e| match input::NotATrace::is(&e) {
        true => format!("{shown}: {e}"),
        false => format!("reading trace {shown}: {e}"),
    })?;
    if live_view {
        screen.clear();
        let _ = render::top(&rp, fe.counts.lines, 20, &mut screen);
        let _ = std::io::stderr().write_all(screen.as_bytes());
    }
    mem.sample(&m);
    let caches = summary::cache_rows(&rp, fe.caches());
    let rendered: Vec<(&'static str, String)> = views.iter().map(|v| (v.name(), v.render(&m))).collect();
    let audit = summary::audit(&rp, fe.caches());
    let report = Report {
        path: &shown,
        compression,
        machine: (m.preset().to_string(), m.boot_info().ram_bytes, m.nr_cpus(), m.nr_nodes()),
        trace: &fe.counts,
        replay: &rp.counts,
        timing,
        mem,
        caches,
        top: a.caches,
        reports: render::report_counts(&m),
        reclaim: m.reclaim_events(),
        audit,
        views: rendered,
    };
    let mut out = String::new();
    if a.json {
        render::json(&report, &mut out);
    } else {
        render::human(&report, &mut out).map_err(|e| e.to_string())?;
        for (name, text) in &report.views {
            out.push_str(&format!("\n== /proc/{name}\n{text}"));
        }
    }
    if let Some(files) = map_files {
        let title = format!("{} after replaying {shown} ({} events)", m.preset(), fe.counts.lines);
        let unusable = crate::views::View::UnusableIndex.render(&m);
        let mut extra = vec![String::new(), "Unusable free space index per order:".to_owned()];
        extra.extend(unusable.lines().map(str::to_owned));
        let (png, svg) = (files.png.clone(), files.svg.clone());
        let legend = files.write(&m, &title, &extra)?;
        if !a.json {
            out.push_str(&format!("\n== page-frame map: wrote {} and {}\n", png.display(), svg.display()));
            for l in legend {
                out.push_str(&l);
                out.push('\n');
            }
            out.push_str("  unusable free space index per order (0.000: every free page usable; 1.000: none):\n");
            for l in unusable.lines() {
                out.push_str(&format!("  {l}\n"));
            }
        }
    }
    std::io::stdout().write_all(out.as_bytes()).map_err(|e| format!("writing the report: {e}"))?;
    drop(report);
    rp.release_all();
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        replay: super::ReplayArgs,
    }

    fn args(extra: &[&str]) -> super::ReplayArgs {
        Cmd::parse_from(["kmem-replay", "trace", "--ram", "256M"].into_iter().chain(extra.iter().copied())).replay
    }

    #[test]
    fn the_replay_machine_is_anonymous_small_page_ram_unless_thp_is_asked() {
        let m = super::replay_machine(&args(&[])).unwrap();
        assert!(m.ram_is_anonymous(), "anonymous RAM");
        assert!(!m.ram_hugepages(), "small pages by default: huge ones are slow on VMs that report free memory");
        let m = super::replay_machine(&args(&["--thp"])).unwrap();
        assert!(m.ram_is_anonymous() && m.ram_hugepages(), "--thp asks for huge pages");
    }
}
