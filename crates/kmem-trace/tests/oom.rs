//! The replay's OOM killer and `__GFP_NOFAIL` (`kmem_trace::oom`): a replay on a machine too
//! small for the trace keeps every `__GFP_NOFAIL`, frees the trace's oldest live allocations
//! when kmem's OOM path asks, counts their later traced frees as freed by OOM, and never
//! sleeps for ever.

use std::path::Path;

use kmem::ReportKind;
use kmem_hosted::{Machine, MachineBuilder};
use kmem_trace::run::{replay_stream, MachineMem};
use kmem_trace::{input, summary, Frontend, Kind, Replayer};

fn machine(mib: u64) -> Machine {
    MachineBuilder::new().ram_mib(mib).cpus(2).quiet_reports().build().unwrap()
}

fn pa(pfn: u64, order: u8, gfp: &str) -> String {
    format!("t-1 [000] ..... 1.0: mm_page_alloc: page=0 pfn={pfn:#x} order={order} migratetype=0 gfp_flags={gfp}\n")
}

fn pf(pfn: u64, order: u8) -> String {
    format!("t-1 [000] ...1. 1.0: mm_page_free: page=0 pfn={pfn:#x} order={order}\n")
}

fn replay_lines<'m>(fe: &mut Frontend, rp: &mut Replayer<'m>, trace: &str) {
    for l in trace.lines() {
        if let Some(op) = fe.line(fe.counts.lines + 1, l.as_bytes()) {
            rp.apply(&op, fe.caches());
        }
    }
}

/// Pages the machine has free now (buddy and per-CPU lists).
fn free_pages(m: &Machine) -> usize {
    m.zones().map(|z| z.free_pages() + z.pcp_pages()).sum()
}

#[test]
fn nofail_pages_beyond_ram_kill_the_oldest_and_their_frees_are_counted() {
    let m = machine(32);
    let ram_pages = m.totalram_pages() as u64;
    let (mut fe, mut rp) = (Frontend::new(), Replayer::new(&m, false));
    assert!(rp.oom_notifier_registered());
    // Twice the machine's RAM in order-0 GFP_NOFS|__GFP_NOFAIL pages (after one plain page:
    // with nothing to kill, the replayer would serve the first itself): every one succeeds.
    let n = 2 * ram_pages;
    let t: String = [pa(0xf_0000, 0, "GFP_KERNEL")]
        .into_iter()
        .chain((0..n).map(|i| pa(0x10_0000 + i, 0, "GFP_NOFS|__GFP_NOFAIL")))
        .collect();
    replay_lines(&mut fe, &mut rp, &t);
    let c = rp.counts.clone();
    assert_eq!(fe.counts.nofail, n);
    assert_eq!(c.oom.nofail, n);
    assert_eq!(c.replayed[Kind::PageAlloc as usize], n + 1, "no __GFP_NOFAIL request fails");
    assert_eq!(c.failures, [0; Kind::COUNT]);
    assert_eq!(c.oom.nofail_by_replayer, 0, "kmem's reclaim and OOM path served them");
    // Not movable: nothing for LRU reclaim; the oldest are killed under reclaim pressure.
    assert_eq!(c.oom.reclaimed_blocks, 0);
    assert!(c.oom.kills + c.oom.pressure_kills > 0 && c.oom.blocks_freed >= ram_pages / 2, "{:?}", c.oom);
    assert_eq!(c.oom.bytes_freed, c.oom.blocks_freed * 4096);
    let (live, killed) = (rp.live().1, rp.oom_killed_live().1);
    assert_eq!(killed as u64, c.oom.blocks_freed);
    assert_eq!(live + killed, fe.live().1, "live or killed: the trace's view");
    assert!(m.reclaim_events().allocstall_total() > 0);

    // The oldest went first: the first page's free is a victim's, the last one's is not.
    let before = c.replayed[Kind::PageFree as usize];
    replay_lines(&mut fe, &mut rp, &(pf(0xf_0000, 0) + &pf(0x10_0000 + n - 1, 0)));
    assert_eq!(rp.counts.oom.victim_frees[Kind::PageFree as usize], 1);
    assert_eq!(rp.counts.replayed[Kind::PageFree as usize], before + 1);
    assert_eq!(rp.counts.frees_of_failed, 0);
    assert_eq!(rp.oom_killed_live().1, killed - 1);

    let a = summary::audit(&rp, fe.caches());
    assert!(a.ok(), "{a:?}");
    let free_before_release = free_pages(&m);
    rp.release_all();
    assert!(free_pages(&m) > free_before_release);
    m.verify().unwrap();
}

#[test]
fn nofail_the_oom_path_cannot_serve_is_served_by_the_replayer() {
    let m = machine(32);
    let (mut fe, mut rp) = (Frontend::new(), Replayer::new(&m, false));
    // Fill the machine with plain GFP_KERNEL pages (the OOM killer frees old ones as needed).
    let n = m.totalram_pages() as u64 + 64;
    let t: String = (0..n).map(|i| pa(0x10_0000 + i, 0, "GFP_KERNEL")).collect();
    replay_lines(&mut fe, &mut rp, &t);
    assert!(rp.counts.oom.kills + rp.counts.oom.pressure_kills > 0);
    // Atomic and costly __GFP_NOFAIL requests: kmem would spin or sleep for ever on one
    // thread; the replayer frees victims until they succeed.
    let t = [pa(0x1, 0, "GFP_ATOMIC|__GFP_NOFAIL"), pa(0x20, 4, "GFP_KERNEL|__GFP_NOFAIL")].concat();
    replay_lines(&mut fe, &mut rp, &t);
    let o = rp.counts.oom;
    assert_eq!(o.nofail, 2);
    assert_eq!(o.nofail_by_replayer, 2);
    assert_eq!(o.nofail_failed, 0);
    assert_eq!(rp.counts.replayed[Kind::PageAlloc as usize], n + 2);
    rp.release_all();
    m.verify().unwrap();
}

#[test]
fn nofail_with_nothing_to_kill_fails_and_the_replay_goes_on() {
    let m = machine(32);
    let (mut fe, mut rp) = (Frontend::new(), Replayer::new(&m, false));
    // An order-10 block (4 MiB) can exist; an order-10 __GFP_NOFAIL beyond what is free
    // after everything is killed cannot: take the machine's big blocks first outside the
    // replay.
    let mut held = Vec::new();
    while let Ok(p) = m.alloc_pages(kmem::Gfp::KERNEL | kmem::Gfp::NOWARN, kmem::Order::new(10).unwrap()) {
        held.push(p);
    }
    let t = [pa(0x40, 10, "GFP_KERNEL|__GFP_NOFAIL"), pa(0x41, 0, "GFP_KERNEL")].concat();
    replay_lines(&mut fe, &mut rp, &t);
    let o = rp.counts.oom;
    assert_eq!((o.nofail, o.nofail_by_replayer, o.nofail_failed), (1, 1, 1));
    assert_eq!(rp.counts.failures[Kind::PageAlloc as usize], 1);
    assert_eq!(rp.counts.replayed[Kind::PageAlloc as usize], 1, "the replay went on");
    rp.release_all();
    for p in held {
        // SAFETY: allocated above with this order, freed once.
        unsafe { m.__free_pages(p, kmem::Order::new(10).unwrap()) };
    }
    m.verify().unwrap();
}

#[test]
fn fixture_on_a_tiny_machine_shows_reclaim_and_oom() {
    let path = input::excerpt_trace(Path::new(env!("CARGO_MANIFEST_DIR")));
    let (r, _) = input::open(&path).unwrap();
    let mut r = input::TakeLines::new(r, 50_000);
    let m = machine(TINY_MIB);
    let mut fe = Frontend::new();
    let mut rp = Replayer::new(&m, false);
    let mut mem = MachineMem::default();
    replay_stream(&mut r, &mut fe, &mut rp, &mut mem, |_, _| {}).unwrap();

    let (t, c) = (&fe.counts, &rp.counts);
    assert!(t.nofail > 2000, "the excerpt has __GFP_NOFAIL requests: {}", t.nofail);
    assert_eq!(c.oom.nofail, t.nofail, "all replayed with the flag");
    assert_eq!(c.oom.nofail_failed, 0);
    let rc = m.reclaim_events();
    assert!(rc.allocstall_total() > 0 && rc.pgsteal_direct > 0, "direct reclaim ran: {rc:?}");
    assert!(c.oom.reclaimed_blocks > 0 && c.oom.reclaimed_frees.iter().sum::<u64>() > 0, "{:?}", c.oom);
    assert!(c.oom.kills + c.oom.pressure_kills > 0 && c.oom.objects_freed + c.oom.blocks_freed > 0, "{:?}", c.oom);
    assert!(c.oom.victim_frees_total() > 0, "killed allocations were freed later by the trace");
    assert!(c.frees_of_failed <= c.failures.iter().sum::<u64>(), "a killed allocation's free is not a failed one's");

    // Every event is accounted for exactly once.
    let ix = |k: Kind| k as usize;
    for k in Kind::ALL.into_iter().filter(|k| k.is_alloc()) {
        let traced = t.events[ix(k)] - if k == Kind::PageAlloc { t.traced_failures } else { 0 };
        assert_eq!(c.replayed[ix(k)] + c.failures[ix(k)], traced, "{k:?}");
    }
    let frees = |k: Kind| {
        c.replayed[ix(k)] + c.unmatched_frees[ix(k)] + c.oom.victim_frees[ix(k)] + c.oom.reclaimed_frees[ix(k)]
    };
    let free_kinds = [Kind::Kfree, Kind::CacheFree, Kind::PageFree, Kind::PageFreeBatched];
    let accounted: u64 =
        free_kinds.into_iter().map(frees).sum::<u64>() + c.null_frees + c.batched_after_free + c.frees_of_failed;
    assert_eq!(accounted, free_kinds.into_iter().map(|k| t.events[ix(k)]).sum::<u64>());
    // What the trace holds: live on the machine, killed, or failed.
    let (live, killed) = (rp.live(), rp.oom_killed_live());
    let failed = c.failures.iter().sum::<u64>() as usize;
    assert!(live.0 + killed.0 <= fe.live().0 && fe.live().0 <= live.0 + killed.0 + failed);
    assert!(live.1 + killed.1 <= fe.live().1 && fe.live().1 <= live.1 + killed.1 + failed);
    assert!(mem.peak_used_pages <= m.totalram_pages() as u64);

    let a = summary::audit(&rp, fe.caches());
    assert!(a.ok(), "{a:?}");
    rp.release_all();
    assert_eq!(m.report_count(ReportKind::SlabBug), 0);
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
    m.verify().unwrap();
}

/// Small enough that the excerpt (about 19 MiB at its peak, 2.5 MiB of it slab) needs LRU
/// reclaim and then the OOM killer.
const TINY_MIB: u64 = 4;
