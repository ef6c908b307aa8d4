//! The replay's rules, one small trace each: matching, unmatched and missed frees, batched
//! frees, cross-kind frees, caches on demand, kmalloc-* caches, GFP handling, CPUs and IRQ
//! context, failures on a small machine, malformed lines.

use kmem::ReportKind;
use kmem_hosted::{Machine, MachineBuilder};
use kmem_trace::{summary, Frontend, Kind, Replayer};

fn machine(mib: u64) -> Machine {
    MachineBuilder::new().ram_mib(mib).cpus(2).build().unwrap()
}

/// Replays `trace` (one event per line, `cpu irq? event: fields`) on `m`.
fn replay<'m>(m: &'m Machine, trace: &str) -> (Frontend, Replayer<'m>) {
    let mut fe = Frontend::new();
    let mut rp = Replayer::new(m, false);
    for (i, l) in trace.lines().enumerate() {
        if let Some(op) = fe.line(i as u64 + 1, l.trim().as_bytes()) {
            rp.apply(&op, fe.caches());
        }
    }
    (fe, rp)
}

fn ca(cpu: u32, ptr: u64, name: &str, size: u32) -> String {
    format!(
        "t-1 [{cpu:03}] ..... 1.0: kmem_cache_alloc: call_site=f+0x1/0x2 ptr={ptr:016x} name={name} \
         bytes_req={size} bytes_alloc={size} gfp_flags=GFP_KERNEL node=-1 accounted=false\n"
    )
}
fn cf(ptr: u64, name: &str) -> String {
    format!("t-1 [000] ..... 1.0: kmem_cache_free: call_site=f ptr={ptr:016x} name={name}\n")
}
fn km(ptr: u64, size: u32, gfp: &str) -> String {
    format!("t-1 [001] ..... 1.0: kmalloc: call_site=f ptr={ptr:016x} bytes_req={size} bytes_alloc={size} gfp_flags={gfp} node=-1\n")
}
fn kf(ptr: u64) -> String {
    format!("t-1 [000] ..... 1.0: kfree: call_site=f ptr={ptr:016x}\n")
}
fn pa(pfn: u64, order: u8, gfp: &str) -> String {
    format!("t-1 [000] ..... 1.0: mm_page_alloc: page=0 pfn={pfn:#x} order={order} migratetype=0 gfp_flags={gfp}\n")
}
fn pf(pfn: u64, order: u8) -> String {
    format!("t-1 [000] ...1. 1.0: mm_page_free: page=0 pfn={pfn:#x} order={order}\n")
}
fn pb(pfn: u64) -> String {
    format!("t-1 [000] ...1. 1.0: mm_page_free_batched: page=0 pfn={pfn:#x} order=0\n")
}

#[test]
fn frees_match_allocations_by_pointer() {
    let m = machine(64);
    let t = [
        ca(0, 1, "dentry", 192),
        ca(1, 2, "dentry", 192),
        cf(1, "dentry"),
        cf(99, "dentry"),
        kf(0),
        km(3, 100, "GFP_KERNEL"),
        kf(3),
    ]
    .concat();
    let (fe, rp) = replay(&m, &t);
    let c = &rp.counts;
    assert_eq!(c.replayed[Kind::CacheAlloc as usize], 2);
    assert_eq!(c.replayed[Kind::CacheFree as usize], 1);
    assert_eq!(c.unmatched_frees[Kind::CacheFree as usize], 1);
    assert_eq!((c.null_frees, c.replayed[Kind::Kfree as usize]), (1, 1));
    assert_eq!(rp.live(), (1, 0));
    assert_eq!(rp.live_in_cache(0), 1);
    assert_eq!(fe.caches()[0].name, "dentry");
    assert!(summary::audit(&rp, fe.caches()).ok());
    rp.release_all();
    assert_eq!(m.report_count(ReportKind::SlabBug), 0);
    m.verify().unwrap();
}

#[test]
fn missed_and_cross_kind_frees() {
    let m = machine(64);
    // ptr 1 allocated twice (its free was not traced), then kfree'd although a cache object.
    let t = [ca(0, 1, "filp", 192), ca(0, 1, "filp", 192), kf(1), km(2, 64, "GFP_KERNEL"), cf(2, "x")].concat();
    let (_, rp) = replay(&m, &t);
    let c = &rp.counts;
    assert_eq!(c.missed_frees[Kind::CacheAlloc as usize], 1);
    assert_eq!(rp.missed_in_cache(0), 1);
    assert_eq!(c.cross_kind_frees, 2);
    assert_eq!(rp.live(), (0, 0));
    assert_eq!(c.live_bytes, [0; 4]);
    assert_eq!(c.peak_bytes[0], 192, "the missed free came first");
    rp.release_all();
    assert_eq!(m.report_count(ReportKind::SlabBug), 0);
}

#[test]
fn pages_by_pfn_and_batched_frees() {
    let m = machine(64);
    let t = [
        pa(0x100, 2, "GFP_KERNEL|__GFP_COMP"),
        pa(0x200, 0, "GFP_HIGHUSER_MOVABLE|__GFP_ZERO"),
        pa(0x300, 0, "GFP_KERNEL"),
        pf(0x100, 2),
        pf(0x200, 0),
        pb(0x200),    // after its mm_page_free: a duplicate
        pb(0x300),    // batched only: frees it
        pf(0x999, 0), // allocated before the capture
        pa(0x400, 1, "GFP_KERNEL"),
        pf(0x400, 0), // wrong order: freed with the allocation's
    ]
    .concat();
    let (_, rp) = replay(&m, &t);
    let c = &rp.counts;
    assert_eq!(c.replayed[Kind::PageAlloc as usize], 4);
    assert_eq!(c.replayed[Kind::PageFree as usize], 3);
    assert_eq!(c.replayed[Kind::PageFreeBatched as usize], 1);
    assert_eq!(c.batched_after_free, 1);
    assert_eq!(c.unmatched_frees[Kind::PageFree as usize], 1);
    assert_eq!(c.order_mismatches, 1);
    assert_eq!(rp.live(), (0, 0));
    assert_eq!(c.peak_bytes[3], (4 + 1 + 1) * 4096);
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
    rp.release_all();
    m.verify().unwrap();
}

#[test]
fn caches_on_demand_keep_their_first_size() {
    let m = machine(64);
    let t = [ca(0, 1, "inode_cache", 616), ca(0, 2, "inode_cache", 624), ca(0, 3, "kmalloc-64", 64), ca(0, 4, "", 40)]
        .concat();
    let (fe, rp) = replay(&m, &t);
    let defs = fe.caches();
    assert_eq!(defs.len(), 2, "kmalloc-64 goes through kmalloc");
    assert_eq!((defs[0].bytes_alloc, defs[0].size_mismatches), (616, 1));
    assert_eq!(defs[1].name, "size-40");
    assert_eq!(fe.counts.kmalloc_caches, 1);
    assert_eq!(rp.counts.replayed[Kind::CacheAlloc as usize], 3);
    assert_eq!(rp.counts.replayed[Kind::Kmalloc as usize], 1, "counted where it was replayed");
    assert_eq!(rp.cache(0).unwrap().object_size(), 616);
    let rows = summary::cache_rows(&rp, defs);
    let inode = rows.iter().find(|r| r.name == "inode_cache").unwrap();
    assert_eq!((inode.live, inode.bytes_req, inode.objsize), (2, 616, 616));
    assert!(inode.objperslab > 0 && inode.num_slabs == 1);
    assert!(summary::audit(&rp, defs).ok());
    rp.release_all();
}

#[test]
fn gfp_text_reaches_the_machine() {
    let m = machine(64);
    // __GFP_NOFAIL is kept (counted); DMA kmalloc uses dma-kmalloc-*.
    let t =
        [km(1, 100, "GFP_NOFS|__GFP_NOFAIL"), km(2, 100, "GFP_KERNEL|__GFP_DMA"), km(3, 100, "GFP_KERNEL|__GFP_BOGUS")]
            .concat();
    let (fe, rp) = replay(&m, &t);
    assert_eq!(fe.counts.nofail, 1);
    assert_eq!((rp.counts.oom.nofail, rp.counts.oom.nofail_by_replayer), (1, 0), "a roomy machine serves it");
    assert_eq!(fe.counts.gfp_unknown_tokens, 1);
    assert_eq!(rp.counts.replayed[Kind::Kmalloc as usize], 3);
    let a = summary::audit(&rp, fe.caches());
    assert!(a.ok(), "{a:?}");
    let mut names = Vec::new();
    m.for_each_cache(|c| names.push(c.name().to_owned()));
    assert!(names.iter().any(|n| n == "dma-kmalloc-128"));
    rp.release_all();
}

#[test]
fn cpus_and_irq_context() {
    let m = machine(64);
    let irq = "t-1 [003] d.h1. 1.0: kmalloc: call_site=f ptr=0000000000000005 bytes_req=32 bytes_alloc=32 gfp_flags=GFP_ATOMIC node=-1\n";
    let soft = "t-1 [002] ..s1. 1.0: kmem_cache_alloc: call_site=f ptr=0000000000000006 name=skb bytes_req=256 bytes_alloc=256 gfp_flags=GFP_ATOMIC node=-1\n";
    let t =
        [ca(0, 1, "dentry", 192), ca(1, 2, "dentry", 192), ca(7, 3, "dentry", 192), irq.into(), soft.into()].concat();
    let (fe, rp) = replay(&m, &t);
    assert_eq!(rp.counts.replayed[Kind::CacheAlloc as usize], 4);
    assert_eq!(rp.counts.replayed[Kind::Kmalloc as usize], 1);
    // The cache for an IRQ-context event is created outside interrupt context.
    assert_eq!(rp.counts.cache_create_failures, 0);
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 0);
    assert_eq!(m.report_count(ReportKind::Warning), 0);
    assert!(summary::audit(&rp, fe.caches()).ok());
    rp.release_all();
}

#[test]
fn failures_on_a_small_machine_are_counted() {
    let m = machine(16);
    // 2000 order-4 blocks (128 MiB) cannot fit in 16 MiB. Atomic: no reclaim, so the replay's
    // OOM killer (which would free the oldest blocks for GFP_KERNEL) is not called.
    let t: String = (0..2000).map(|i| pa(0x1000 + 16 * i, 4, "GFP_ATOMIC")).collect();
    let (_, rp) = replay(&m, &t);
    let c = &rp.counts;
    assert!(c.failures[Kind::PageAlloc as usize] > 1000);
    assert_eq!(c.failures[Kind::PageAlloc as usize] + c.replayed[Kind::PageAlloc as usize], 2000);
    // Counted exactly; the texts are rate-limited.
    assert!(m.report_count(ReportKind::PageAllocFailure) > 1000);
    assert!(m.reports().texts(ReportKind::PageAllocFailure).len() <= 20);
    assert_eq!(c.oom.objects_freed + c.oom.blocks_freed, 0);
    rp.release_all();
    m.verify().unwrap();
}

#[test]
fn malformed_lines_are_counted_with_their_numbers() {
    let m = machine(16);
    let mut t = String::from("# tracer: nop\n");
    for i in 0..15 {
        t.push_str(if i % 2 == 0 { "garbage line\n" } else { "t-1 [000] ..... 1.0: kfree: ptr=zz\n" });
    }
    t.push_str(&kf(5));
    t.push_str("t-1 [000] ..... 1.0: mm_page_pcpu_drain: page=0 pfn=0x1 order=0 migratetype=1\n");
    let (fe, rp) = replay(&m, &t);
    let c = &fe.counts;
    assert_eq!((c.ignored_lines, c.malformed, c.malformed_first.len()), (1, 15, 10));
    assert_eq!(c.malformed_first[0].line, 2);
    assert_eq!(c.malformed_first[9].line, 11);
    assert_eq!(c.unknown.get("mm_page_pcpu_drain"), Some(&1));
    assert_eq!(c.total_events(), 2);
    assert_eq!(rp.counts.unmatched_frees[Kind::Kfree as usize], 1);
}
