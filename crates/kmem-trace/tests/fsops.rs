//! End to end on a real kmem capture (a filesystem workload on a 2-CPU 6.x kernel): the
//! event counts match an awk count of the file, nothing fails on the default 4 GiB machine,
//! and every object still live at the end is accounted for, by the replay and by the
//! machine's own counters. The test suite replays the repository's excerpt
//! (`fixtures/traces/fsops-excerpt.trace.zst`, the capture's first 50,000 lines); the full
//! capture (1,034,647 lines, not in the repository) is an ignored test:
//! `KMEM_TRACE=path/to/fsops.trace.zst cargo test --release -p kmem-trace --test fsops -- --ignored`.

use std::path::Path;

use kmem::ReportKind;
use kmem_hosted::MachineBuilder;
use kmem_trace::run::{read_ahead_pays, replay_stream_with, replay_trace_with, MachineMem};
use kmem_trace::{input, summary, Frontend, Kind, Replayer};

/// `zstd -dc fsops.trace.zst | awk '{for(i=1;i<=NF;i++) if ($i ~ /^(kmalloc|...):$/) {c[$i]++; break}}'`,
/// in `Kind::ALL` order: kmalloc, kfree, kmem_cache_alloc, kmem_cache_free, mm_page_alloc,
/// mm_page_free, mm_page_free_batched.
const FULL: (u64, [u64; 7]) = (1_034_647, [31_412, 80_437, 292_517, 214_489, 190_359, 118_529, 106_904]);
/// The same over the excerpt (`fixtures/README.md`).
const EXCERPT: (u64, [u64; 7]) = (50_000, [1_158, 3_568, 16_384, 8_880, 7_882, 6_208, 5_920]);

#[test]
fn excerpt_replays_and_accounts_for_everything() {
    let path = input::excerpt_trace(Path::new(env!("CARGO_MANIFEST_DIR")));
    replay_and_check(&path, EXCERPT, Feed::Ahead);
}

/// The same, decompressing on the parsing thread (what `replay_stream` does on fewer than
/// three CPUs).
#[test]
fn excerpt_replays_the_same_without_read_ahead() {
    let path = input::excerpt_trace(Path::new(env!("CARGO_MANIFEST_DIR")));
    replay_and_check(&path, EXCERPT, Feed::Here);
}

/// The same, zstd decoding straight into the parser's buffer (what `replay_trace` does on
/// fewer than three CPUs).
#[test]
fn excerpt_replays_the_same_decoded_in_place() {
    let path = input::excerpt_trace(Path::new(env!("CARGO_MANIFEST_DIR")));
    replay_and_check(&path, EXCERPT, Feed::InPlace);
}

#[test]
#[ignore = "needs the full capture, not in the repository: KMEM_TRACE=path/to/fsops.trace.zst, --release"]
fn full_capture_replays_and_accounts_for_everything() {
    let path = std::env::var_os("KMEM_TRACE").expect("KMEM_TRACE=path/to/fsops.trace.zst (the full capture)");
    replay_and_check(Path::new(&path), FULL, if read_ahead_pays() { Feed::Ahead } else { Feed::InPlace });
}

/// How the replay reads the capture.
enum Feed {
    /// Decompressed a few blocks ahead on a thread of its own.
    Ahead,
    /// Decompressed on the parsing thread by zstd's streaming decoder.
    Here,
    /// Decoded on the parsing thread straight into its buffer (`replay_trace_with`; the
    /// whole file: `lines` must be all of it).
    InPlace,
}

fn replay_and_check(path: &Path, (lines, counts): (u64, [u64; 7]), feed: Feed) {
    let trace = input::Trace::open(path).unwrap();
    assert_eq!(trace.compression(), input::Compression::Zstd);
    let m = MachineBuilder::new().build().unwrap();
    let mut fe = Frontend::new();
    let mut rp = Replayer::new(&m, false);
    let mut mem = MachineMem::default();
    match feed {
        Feed::InPlace => replay_trace_with(trace, &mut fe, &mut rp, &mut mem, false, |_, _| {}).unwrap(),
        Feed::Ahead | Feed::Here => {
            let mut r = input::TakeLines::new(trace.into_reader().unwrap(), lines);
            let ahead = matches!(feed, Feed::Ahead);
            replay_stream_with(&mut r, &mut fe, &mut rp, &mut mem, ahead, |_, _| {}).unwrap()
        }
    };

    let t = &fe.counts;
    assert_eq!(t.lines, lines);
    assert_eq!(t.events, counts);
    assert_eq!((t.malformed, t.ignored_lines, t.traced_failures, t.gfp_unknown_tokens), (0, 0, 0, 0));
    assert!(t.unknown.is_empty());

    let c = &rp.counts;
    assert_eq!(c.failures, [0; 7], "no allocation fails on a 4 GiB machine");
    assert_eq!(c.cache_create_failures, 0);
    assert_eq!(c.frees_of_failed, 0);
    // Every event is accounted for exactly once.
    let ix = |k: Kind| k as usize;
    for k in Kind::ALL.into_iter().filter(|k| k.is_alloc()) {
        assert_eq!(c.replayed[ix(k)], counts[ix(k)], "{k:?}");
    }
    assert_eq!(
        c.replayed[ix(Kind::Kfree)] + c.unmatched_frees[ix(Kind::Kfree)] + c.null_frees,
        counts[ix(Kind::Kfree)]
    );
    assert_eq!(c.replayed[ix(Kind::CacheFree)] + c.unmatched_frees[ix(Kind::CacheFree)], counts[ix(Kind::CacheFree)]);
    assert_eq!(c.replayed[ix(Kind::PageFree)] + c.unmatched_frees[ix(Kind::PageFree)], counts[ix(Kind::PageFree)]);
    // Linux traces mm_page_free and then mm_page_free_batched for each page free_unref_folios
    // frees: every batched event of this capture follows its page's mm_page_free.
    assert_eq!(c.batched_after_free, counts[ix(Kind::PageFreeBatched)]);

    // Live objects: allocations - matched frees - allocations over a live pointer.
    let obj_allocs = c.replayed[ix(Kind::Kmalloc)] + c.replayed[ix(Kind::CacheAlloc)];
    let obj_frees = c.replayed[ix(Kind::Kfree)] + c.replayed[ix(Kind::CacheFree)];
    let obj_missed = c.missed_frees[ix(Kind::Kmalloc)] + c.missed_frees[ix(Kind::CacheAlloc)];
    let (live_objs, live_blocks) = rp.live();
    assert_eq!(live_objs as u64, obj_allocs - obj_frees - obj_missed);
    let page_frees = c.replayed[ix(Kind::PageFree)] + c.replayed[ix(Kind::PageFreeBatched)];
    assert_eq!(live_blocks as u64, c.replayed[ix(Kind::PageAlloc)] - page_frees - c.missed_frees[ix(Kind::PageAlloc)]);
    assert_eq!(rp.live(), fe.live(), "the machine holds what the trace holds");

    // The machine agrees: per cache (after flushing CPU slabs), large kmalloc pages, blocks.
    let a = summary::audit(&rp, fe.caches());
    assert!(a.ok(), "{a:?}");
    assert_eq!(a.live_objects, live_objs as u64);
    assert!(a.caches_checked >= fe.caches().len());
    assert!(mem.peak_used_pages >= mem.used_pages && mem.peak_slab_pages > 0);
    assert_eq!(m.report_count(ReportKind::PageAllocFailure), 0);

    // Freeing everything leaves consistent free lists and no leak reports on destroy.
    rp.release_all();
    assert_eq!(m.report_count(ReportKind::SlabBug), 0);
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
    m.verify().unwrap();
}
