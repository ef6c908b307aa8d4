//! Target `trace`: the ftrace text front end of `kmem-trace`, through its public entry points
//! only ([`Frontend::line`], [`run::parse_all`]), so that it survives rewrites of the parser
//! behind them; then the replay of what it produced on a small machine.
//!
//! Properties: no panic; parsing line by line and parsing the stream give the same
//! operations and counts; the counts are consistent (every line is counted once; at most
//! [`MALFORMED_KEPT`] malformed lines are kept, each with its line number and at most 120
//! bytes); replaying the operations and releasing everything leaves a machine whose lists
//! verify, that reported no bad page or slab bug, and whose free pages are back where they
//! were.

use std::io::Cursor;

use kmem::{Gfp, ReportKind};
use kmem_hosted::MachineBuilder;
use kmem_trace::op::MALFORMED_KEPT;
use kmem_trace::{run, Frontend, Replayer};

/// Tokens of ftrace's kmem events.
pub const DICT: &[&[u8]] = &[
    b"kmalloc: ",
    b"kfree: ",
    b"kmem_cache_alloc: ",
    b"kmem_cache_free: ",
    b"mm_page_alloc: ",
    b"mm_page_free: ",
    b"mm_page_free_batched: ",
    b"call_site=",
    b" ptr=",
    b" bytes_req=",
    b" bytes_alloc=",
    b" gfp_flags=",
    b" node=",
    b" name=",
    b" pfn=",
    b" order=",
    b" migratetype=",
    b" page=",
    b"GFP_KERNEL|__GFP_ZERO",
    b" [000] ",
    b" [001] d.h1. ",
    b"1234.567890: ",
    b"0x",
    b"CPU:1 [LOST 7 EVENTS]\n",
    b"# tracer: nop\n",
    b"\n",
    b"4294967295",
    b"18446744073709551615",
];

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let mut fe = Frontend::new();
    let mut ops = Vec::new();
    let mut lines = 0u64;
    for line in data.split_inclusive(|&b| b == b'\n') {
        lines += 1;
        ops.extend(fe.line(lines, line));
    }
    let c = &fe.counts;
    assert_eq!(c.lines, lines);
    assert!(c.malformed <= lines && c.ignored_lines <= lines);
    assert!(c.events.iter().sum::<u64>() <= lines);
    assert_eq!(c.malformed_first.len() as u64, c.malformed.min(MALFORMED_KEPT as u64));
    for m in &c.malformed_first {
        assert!(m.line >= 1 && m.line <= lines && m.text.len() <= 120 * 3, "{m:?}");
    }

    let mut fe2 = Frontend::new();
    let ops2 = run::parse_all(&mut Cursor::new(data), &mut fe2).expect("reading from memory cannot fail");
    assert_eq!(ops2.len(), ops.len(), "stream and line-by-line parsing disagree");
    assert_eq!((fe2.counts.lines, fe2.counts.malformed, fe2.counts.events), (c.lines, c.malformed, c.events));
    assert_eq!(fe2.caches().len(), fe.caches().len());

    let m = MachineBuilder::new().ram_mib(32).cpus(2).vmalloc_size(64 << 20).build().expect("boot");
    let free = || crate::alloc_ops::settled_free_pages(&m);
    // The kmalloc caches stay once made: make them before the baseline.
    for g in [Gfp::KERNEL, Gfp::KERNEL | Gfp::DMA, Gfp::KERNEL | Gfp::RECLAIMABLE] {
        let p = m.kmalloc(8, g).expect("kmalloc at boot");
        // SAFETY: ours.
        unsafe { m.kfree(p.as_ptr()) };
    }
    let kmalloc_caches = nr_caches(&m);
    // The replayer registers its OOM notifier and shrinker; the first registration allocates
    // the machine's reclaim tables, which stay: the baseline comes after.
    let mut rp = Replayer::new(&m, false);
    let before = free();
    for op in &ops {
        rp.apply(op, fe.caches());
    }
    rp.release_all();
    m.verify().expect("free lists after the replay");
    assert_eq!(
        m.report_count(ReportKind::BadPage) + m.report_count(ReportKind::SlabBug),
        0,
        "{:?}",
        m.reports().take()
    );
    assert_eq!(nr_caches(&m), kmalloc_caches, "the replay's caches were destroyed");
    assert_eq!(free(), before, "the replay gave back every page");
}

fn nr_caches(m: &kmem_hosted::Machine) -> usize {
    let mut n = 0;
    m.for_each_cache(|_| n += 1);
    n
}
