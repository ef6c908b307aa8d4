//! The slab allocator on hosted machines: constructor semantics, layout guarantees, zeroing,
//! bulk, shrink, destroy, merging, creation errors, out of memory, NUMA, the /proc views, and
//! concurrency with contents checked.

use crate::common;

use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{check, free, slabinfo_line, stamp, under_memcheck};
use kmem::slab::{CacheError, LayoutError, SlabAllocError};
use kmem::{Gfp, ReportKind, SlabFlags};
use kmem_hosted::{in_irq, Machine, MachineBuilder};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn machine() -> Machine {
    MachineBuilder::new().ram_mib(256).cpus(2).build().unwrap()
}

fn meminfo_kb(m: &Machine, label: &str) -> u64 {
    let mut s = String::new();
    kmem::proc::meminfo(m, &mut s).unwrap();
    let line = s.lines().find(|l| l.starts_with(label)).unwrap();
    line[label.len()..].trim().trim_end_matches(" kB").trim().parse().unwrap()
}

#[test]
fn alloc_free_reuse_and_contents() {
    let m = machine();
    let c = m.kmem_cache_create("t64", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let objs: Vec<_> = (0..1000u32).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
    let set: HashSet<usize> = objs.iter().map(|p| p.as_ptr() as usize).collect();
    assert_eq!(set.len(), 1000, "no object handed out twice");
    for (i, p) in objs.iter().enumerate() {
        assert_eq!(p.as_ptr() as usize % 8, 0);
        stamp(*p, 64, i as u8);
    }
    for (i, p) in objs.iter().enumerate() {
        check(*p, 64, i as u8);
    }
    for p in objs {
        free(&m, &c, p);
    }
    assert_eq!(m.report_count(ReportKind::SlabBug), 0, "{:?}", m.reports().take());
    assert_eq!(m.validate_slab_cache(&c).errors, 0);
    assert_eq!(m.kmem_cache_shrink(&c), 0, "everything free: shrink leaves no slab");
    drop(c);
    assert_eq!(m.report_count(ReportKind::SlabBug) + m.report_count(ReportKind::Warning), 0);
}

static CTOR_CALLS: AtomicUsize = AtomicUsize::new(0);

fn counting_ctor(obj: &mut [u8]) {
    CTOR_CALLS.fetch_add(1, Ordering::Relaxed);
    obj.fill(0x42);
}

#[test]
fn constructor_runs_once_per_object_when_a_slab_is_populated() {
    let m = machine();
    let c = m.kmem_cache_create("ctor_cache", 96, 0, SlabFlags::NONE, Some(counting_ctor)).unwrap();
    assert_eq!(CTOR_CALLS.load(Ordering::Relaxed), 0, "no slab yet, no constructor call");
    let per_slab = c.objects_per_slab();
    let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    assert_eq!(CTOR_CALLS.load(Ordering::Relaxed), per_slab, "a whole slab is constructed at once");
    check_all(p, 96, 0x42);
    // Objects come back in the state the user left them (constructed state is the user's
    // promise), and no constructor runs again for them.
    free(&m, &c, p);
    let mut objs: Vec<_> = (0..per_slab).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
    assert_eq!(CTOR_CALLS.load(Ordering::Relaxed), per_slab, "reuse does not construct again");
    for p in &objs {
        check_all(*p, 96, 0x42);
    }
    objs.push(m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap());
    assert_eq!(CTOR_CALLS.load(Ordering::Relaxed), 2 * per_slab, "the next slab is constructed whole");
    assert!(
        !c.layout().freeptr_outside() || c.layout().offset >= 96,
        "the free pointer never overlaps a ctor'd object"
    );
    for p in objs {
        free(&m, &c, p);
    }
    // __GFP_ZERO on a ctor'd cache is a caller bug: Linux's WARN_ON_ONCE.
    let p = m.kmem_cache_alloc(&c, Gfp::KERNEL | Gfp::ZERO).unwrap();
    assert_eq!(m.report_count(ReportKind::Warning), 1);
    free(&m, &c, p);
}

fn check_all(p: NonNull<u8>, len: usize, v: u8) {
    // SAFETY: callers pass objects they own of at least `len` bytes.
    let b = unsafe { std::slice::from_raw_parts(p.as_ptr(), len) };
    assert!(b.iter().all(|&x| x == v), "object {p:?} is not all {v:#x}: {b:?}");
}

#[test]
fn alignment_and_size_guarantees_for_every_flag_combination() {
    let m = MachineBuilder::new().ram_mib(256).cpus(2).build().unwrap();
    let flag_sets = [
        SlabFlags::NONE,
        SlabFlags::HWCACHE_ALIGN,
        SlabFlags::RED_ZONE,
        SlabFlags::POISON,
        SlabFlags::STORE_USER,
        SlabFlags::RED_ZONE | SlabFlags::POISON | SlabFlags::STORE_USER | SlabFlags::CONSISTENCY_CHECKS,
        SlabFlags::HWCACHE_ALIGN | SlabFlags::RED_ZONE | SlabFlags::POISON,
        SlabFlags::COLOUR,
        SlabFlags::CACHE_DMA32,
        SlabFlags::RECLAIM_ACCOUNT,
    ];
    // Under valgrind (scripts/memcheck.sh sets KMEM_MEMCHECK) every flag set with fewer
    // sizes and alignments: the whole grid is a minute there, and adds no path.
    let (sizes, aligns): (&[usize], &[usize]) = if under_memcheck() {
        (&[1, 24, 100, 4096, 9000], &[0, 64, 512])
    } else {
        (&[1, 8, 13, 24, 64, 100, 192, 256, 1000, 4096, 9000], &[0, 8, 16, 64, 512])
    };
    let mut n = 0;
    for flags in flag_sets {
        for &size in sizes {
            for &align in aligns {
                n += 1;
                let name = format!("align_{n}");
                let c = m.kmem_cache_create(&name, size, align, flags | SlabFlags::NO_MERGE, None).unwrap();
                let want = align.max(8).max(if flags.contains(SlabFlags::HWCACHE_ALIGN) && size > 32 { 64 } else { 8 });
                let objs: Vec<_> = (0..20).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
                for (i, p) in objs.iter().enumerate() {
                    assert_eq!(p.as_ptr() as usize % want, 0, "{name}: size {size} align {align} {flags:?}");
                    stamp(*p, size, i as u8);
                    if flags.contains(SlabFlags::CACHE_DMA32) {
                        let pa = m.virt_to_phys(kmem::VirtAddr::new(p.as_ptr() as usize)).unwrap();
                        assert!(pa.as_u64() < 4 << 30, "DMA32 objects lie below 4 GiB");
                    }
                }
                for (i, p) in objs.iter().enumerate() {
                    check(*p, size, i as u8);
                }
                for p in objs {
                    free(&m, &c, p);
                }
                assert!(c.layout().ksize() as usize >= size);
                assert_eq!(m.validate_slab_cache(&c).errors, 0, "{name}");
            }
        }
    }
    assert_eq!(m.report_count(ReportKind::SlabBug), 0, "{:?}", m.reports().take());
}

#[test]
fn zalloc_zeroes_a_dirty_object() {
    let m = machine();
    let c = m.kmem_cache_create("zc", 200, 0, SlabFlags::NO_MERGE, None).unwrap();
    let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    stamp(p, 200, 7);
    free(&m, &c, p);
    let q = m.kmem_cache_zalloc(&c, Gfp::KERNEL).unwrap();
    assert_eq!(q, p, "LIFO reuse of the object just freed");
    check_all(q, 200, 0);
    free(&m, &c, q);
}

#[test]
fn bulk_is_all_or_nothing() {
    let m = MachineBuilder::new().ram_mib(32).cpus(2).build().unwrap();
    let c = m.kmem_cache_create("bulk64", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let mut out = vec![None; 300];
    assert_eq!(m.kmem_cache_alloc_bulk(&c, Gfp::KERNEL, &mut out), 300);
    let set: HashSet<usize> = out.iter().map(|p| p.unwrap().as_ptr() as usize).collect();
    assert_eq!(set.len(), 300);
    for (i, p) in out.iter().enumerate() {
        stamp(p.unwrap(), 64, i as u8);
    }
    for (i, p) in out.iter().enumerate() {
        check(p.unwrap(), 64, i as u8);
    }
    // SAFETY: all ours, unused from here.
    unsafe { m.kmem_cache_free_bulk(&c, &mut out) };
    assert!(out.iter().all(Option::is_none));
    assert_eq!(m.kmem_cache_shrink(&c), 0);

    // More than the machine has: 0, and nothing stays allocated.
    let big = m.kmem_cache_create("bulk64k", 64 << 10, 0, SlabFlags::NO_MERGE, None).unwrap();
    let before = common::free_pages(&m);
    let mut out = vec![None; 1000];
    assert_eq!(m.kmem_cache_alloc_bulk(&big, Gfp::KERNEL | Gfp::NOWARN, &mut out), 0);
    assert!(out.iter().all(Option::is_none), "a failed bulk hands nothing out");
    m.kmem_cache_shrink(&big);
    m.drain_all_pages();
    assert_eq!(common::free_pages(&m), before, "everything the failed bulk took went back");
    assert_eq!(m.report_count(ReportKind::PageAllocFailure), 0, "NOWARN");
}

#[test]
fn shrink_and_destroy_give_every_page_back() {
    let m = machine();
    // The first creation allocates the registry table and the descriptor's slab.
    let warm = m.kmem_cache_create("warm", 32, 0, SlabFlags::NO_MERGE, None).unwrap();
    m.drain_all_pages();
    let before = common::free_pages(&m);
    let slab_kb = meminfo_kb(&m, "Slab:");
    let c = m.kmem_cache_create("shrinkme", 512, 0, SlabFlags::NO_MERGE, None).unwrap();
    let objs: Vec<_> = (0..5000).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
    assert!(meminfo_kb(&m, "Slab:") >= slab_kb + 5000 * 512 / 1024, "Slab: counts the slabs");
    for p in objs {
        free(&m, &c, p);
    }
    let kept: usize = c.nodes().map(|(_, n)| n.nr_slabs()).sum();
    assert!(kept >= 1, "some empty slabs are kept (min_partial) until shrink");
    assert_eq!(m.kmem_cache_shrink(&c), 0);
    assert_eq!(c.nodes().map(|(_, n)| n.nr_slabs()).sum::<usize>(), 0);
    drop(c);
    m.drain_all_pages();
    assert_eq!(common::free_pages(&m), before, "shrink and destroy returned every page");
    assert_eq!(meminfo_kb(&m, "Slab:"), slab_kb);
    drop(warm);
}

#[test]
fn compatible_caches_merge_and_show_under_the_first_name() {
    let m = machine();
    let a = m.kmem_cache_create("merge_a", 120, 0, SlabFlags::NONE, None).unwrap();
    let b = m.kmem_cache_create("merge_b", 116, 0, SlabFlags::NONE, None).unwrap();
    assert!(std::ptr::eq(&*a, &*b), "same size class: merged");
    assert_eq!(a.aliases(), 1);
    assert!(slabinfo_line(&m, "merge_a").is_some());
    assert!(slabinfo_line(&m, "merge_b").is_none(), "aliases have no line of their own");
    // Never merged: debug flags, a constructor, NO_MERGE, a different MERGE_SAME flag.
    let d = m.kmem_cache_create("merge_dbg", 120, 0, SlabFlags::RED_ZONE, None).unwrap();
    let n = m.kmem_cache_create("merge_no", 120, 0, SlabFlags::NO_MERGE, None).unwrap();
    let r = m.kmem_cache_create("merge_rcl", 120, 0, SlabFlags::RECLAIM_ACCOUNT, None).unwrap();
    let k = m.kmem_cache_create("merge_ctor", 120, 0, SlabFlags::NONE, Some(|_| {})).unwrap();
    for other in [&d, &n, &r, &k] {
        assert!(!std::ptr::eq(&**other, &*a), "{} must not merge", other.name());
    }
    // Destroying one alias keeps the cache for the other.
    let p = m.kmem_cache_alloc(&b, Gfp::KERNEL).unwrap();
    drop(a);
    assert_eq!(b.aliases(), 0);
    assert!(slabinfo_line(&m, "merge_a").is_some(), "the cache keeps its first name");
    free(&m, &b, p);
    drop(b);
    assert!(slabinfo_line(&m, "merge_a").is_none());
    assert_eq!(m.report_count(ReportKind::Warning), 0);

    let nm = MachineBuilder::new().ram_mib(64).slab_nomerge(true).build().unwrap();
    let a = nm.kmem_cache_create("nm_a", 120, 0, SlabFlags::NONE, None).unwrap();
    let b = nm.kmem_cache_create("nm_b", 120, 0, SlabFlags::NONE, None).unwrap();
    assert!(!std::ptr::eq(&*a, &*b), "slab_nomerge");
}

#[test]
fn creation_errors_are_errors_with_linux_warnings() {
    let m = machine();
    let warns = || m.report_count(ReportKind::Warning);
    assert_eq!(m.kmem_cache_create("", 64, 0, SlabFlags::NONE, None).unwrap_err(), CacheError::Invalid);
    assert_eq!(warns(), 1);
    assert!(m.reports().texts(ReportKind::Warning)[0].contains("kmem_cache_create() integrity check failed"));
    assert_eq!(m.kmem_cache_create("zero", 0, 0, SlabFlags::NONE, None).unwrap_err(), CacheError::Invalid);
    assert_eq!(m.kmem_cache_create("huge", (4 << 20) + 1, 0, SlabFlags::NONE, None).unwrap_err(), CacheError::Invalid);
    assert_eq!(warns(), 3);
    assert_eq!(
        m.kmem_cache_create("align3", 64, 3, SlabFlags::NONE, None).unwrap_err(),
        CacheError::Layout(LayoutError::BadAlign(3))
    );
    assert!(matches!(
        m.kmem_cache_create("bits", 64, 0, SlabFlags::from_bits(1), None),
        Err(CacheError::BadFlags(f)) if f == SlabFlags::from_bits(1)
    ));
    let long = "x".repeat(64);
    assert_eq!(m.kmem_cache_create(&long, 64, 0, SlabFlags::NONE, None).unwrap_err(), CacheError::NameTooLong(64));
    let before = warns();
    assert_eq!(
        in_irq(|| m.kmem_cache_create("irq", 64, 0, SlabFlags::NONE, None).unwrap_err()),
        CacheError::InInterrupt
    );
    assert_eq!(warns(), before + 1);
    let sp = m.kmem_cache_create("has space", 64, 0, SlabFlags::NONE, None).unwrap();
    assert_eq!(warns(), before + 2, "a space in the name is a warning, not an error");
    assert_eq!(sp.name(), "has space");
    // The largest object: one MAX_PAGE_ORDER block.
    let max = m.kmem_cache_create("max", 4 << 20, 0, SlabFlags::NONE, None).unwrap();
    assert_eq!((max.order(), max.objects_per_slab()), (10, 1));
    let p = m.kmem_cache_alloc(&max, Gfp::KERNEL).unwrap();
    stamp(p, 4 << 20, 3);
    check(p, 4 << 20, 3);
    free(&m, &max, p);
}

#[test]
#[should_panic(expected = "Failed to create slab 'panicky'")]
fn slab_panic_panics_on_failure() {
    let m = machine();
    let _ = m.kmem_cache_create("panicky", 0, 0, SlabFlags::PANIC, None);
}

#[test]
fn out_of_memory_is_an_err_and_the_cache_recovers() {
    let m = MachineBuilder::new().ram_mib(16).cpus(1).build().unwrap();
    let c = m.kmem_cache_create("oom", 60 << 10, 0, SlabFlags::NO_MERGE, None).unwrap();
    let mut live = Vec::new();
    let err = loop {
        match m.kmem_cache_alloc(&c, Gfp::KERNEL) {
            Ok(p) => live.push(p),
            Err(e) => break e,
        }
        assert!(live.len() < 1000, "a 16 MiB machine cannot hold this many");
    };
    assert!(matches!(err, SlabAllocError::NoMemory(_)));
    let oom = m.reports().texts(ReportKind::PageAllocFailure);
    assert!(oom.iter().any(|t| t.starts_with("SLUB: Unable to allocate memory on node -1")), "{oom:?}");
    assert!(oom.iter().any(|t| t.contains("cache: oom, object size: 61440")), "{oom:?}");
    let reports = m.report_count(ReportKind::PageAllocFailure);
    assert!(m.kmem_cache_alloc(&c, Gfp::KERNEL | Gfp::NOWARN).is_err());
    assert_eq!(m.report_count(ReportKind::PageAllocFailure), reports, "NOWARN: silent");
    let n = live.len();
    for p in live.drain(..) {
        free(&m, &c, p);
    }
    for _ in 0..n {
        live.push(m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap());
    }
    for p in live {
        free(&m, &c, p);
    }
    assert_eq!(m.validate_slab_cache(&c).errors, 0);
}

#[test]
fn sleeping_allocation_in_atomic_context_is_reported_and_served() {
    let m = machine();
    let c = m.kmem_cache_create("atomic", 64, 0, SlabFlags::NO_MERGE, None).unwrap();
    let g = m.preempt_disable();
    let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    let q = m.kmem_cache_alloc(&c, Gfp::ATOMIC).unwrap();
    drop(g);
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 1, "GFP_KERNEL under preempt_disable only");
    assert!(m.reports().texts(ReportKind::SleepInAtomic)[0]
        .starts_with("BUG: sleeping function called from invalid context at mm/slub.c"));
    let r = in_irq(|| m.kmem_cache_alloc(&c, Gfp::ATOMIC).unwrap());
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 1, "GFP_ATOMIC from an interrupt is fine");
    for x in [p, q, r] {
        free(&m, &c, x);
    }
}

#[test]
fn slabinfo_has_linux_format_and_numbers() {
    let m = machine();
    let c = m.kmem_cache_create("golden_cache", 100, 0, SlabFlags::NO_MERGE, None).unwrap();
    let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    // 100 bytes -> 104-byte slots; 2 CPUs: min_objects 12, order 0, 39 objects. The active
    // slab's free objects count as active (SLUB counts only partial-list free objects).
    assert_eq!(
        slabinfo_line(&m, "golden_cache").unwrap(),
        "golden_cache          39     39    104   39    1 : tunables    0    0    0 : slabdata      1      1      0"
    );
    let mut s = String::new();
    kmem::proc::slabinfo(&m, &mut s).unwrap();
    let mut lines = s.lines();
    assert_eq!(lines.next(), Some("slabinfo - version: 2.1"));
    assert_eq!(
        lines.next(),
        Some(
            "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> \
             <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>"
        )
    );
    assert_eq!(lines.next().unwrap().split_whitespace().next(), Some("golden_cache"), "newest first");
    assert_eq!(s.lines().last().unwrap().split_whitespace().next(), Some("kmem_cache"), "the boot cache is oldest");
    free(&m, &c, p);
    m.kmem_cache_shrink(&c);
    assert_eq!(
        slabinfo_line(&m, "golden_cache").unwrap(),
        "golden_cache           0      0    104   39    1 : tunables    0    0    0 : slabdata      0      0      0"
    );
}

#[test]
fn reclaimable_caches_count_as_sreclaimable() {
    let m = machine();
    let before = (meminfo_kb(&m, "SReclaimable:"), meminfo_kb(&m, "SUnreclaim:"));
    let r = m.kmem_cache_create("dentry_like", 192, 0, SlabFlags::RECLAIM_ACCOUNT, None).unwrap();
    let objs: Vec<_> = (0..2000).map(|_| m.kmem_cache_alloc(&r, Gfp::KERNEL).unwrap()).collect();
    let after = (meminfo_kb(&m, "SReclaimable:"), meminfo_kb(&m, "SUnreclaim:"));
    assert!(after.0 >= before.0 + 2000 * 192 / 1024, "{before:?} -> {after:?}");
    // The descriptor's slab (kmem_cache, order 1 once its descriptors carry a sheaf address
    // per CPU: 8 KiB) and a slab of sheaves (kmem_sheaf, order 2: 16 KiB).
    assert!(
        after.1 - before.1 <= 24,
        "only the descriptor's and the sheaves' slabs may be unreclaimable: {before:?} -> {after:?}"
    );
    assert_eq!(meminfo_kb(&m, "KReclaimable:"), after.0);
    assert_eq!(meminfo_kb(&m, "Slab:"), after.0 + after.1);
    let mut z = String::new();
    kmem::proc::zoneinfo(&m, &mut z).unwrap();
    let pages: u64 = z
        .lines()
        .find(|l| l.trim_start().starts_with("nr_slab_reclaimable"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pages * 4, after.0);
    for p in objs {
        free(&m, &r, p);
    }
    m.kmem_cache_shrink(&r);
    assert_eq!(meminfo_kb(&m, "SReclaimable:"), before.0);
}

#[test]
fn alloc_node_takes_objects_from_that_node() {
    let m = MachineBuilder::new().ram_mib(512).cpus(4).nodes(2).build().unwrap();
    let c = m.kmem_cache_create("numa", 256, 0, SlabFlags::NO_MERGE, None).unwrap();
    for nid in [0usize, 1, 0, 1] {
        let objs: Vec<_> = (0..300).map(|_| m.kmem_cache_alloc_node(&c, Gfp::KERNEL, Some(nid)).unwrap()).collect();
        for p in &objs {
            let page = m.virt_to_page(kmem::VirtAddr::new(p.as_ptr() as usize)).unwrap();
            assert_eq!(page.page().node(), nid, "kmem_cache_alloc_node({nid})");
        }
        for p in objs {
            free(&m, &c, p);
        }
    }
    assert_eq!(m.kmem_cache_alloc_node(&c, Gfp::KERNEL, Some(2)).unwrap_err(), SlabAllocError::NoSuchNode(2));
    assert!(c.node(1).nr_slabs() > 0, "node 1 has its own slabs");
    assert_eq!(m.kmem_cache_shrink(&c), 0);
}

#[test]
fn typed_cache_boxes_drop_their_value_and_free() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Inode {
        ino: u64,
        name: String,
    }
    impl Drop for Inode {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }
    let m = machine();
    let cache = m.typed_cache::<Inode>("inode_like", SlabFlags::HWCACHE_ALIGN).unwrap();
    let boxes: Vec<_> =
        (0..100).map(|i| cache.alloc(Gfp::KERNEL, Inode { ino: i, name: format!("file{i}") }).unwrap()).collect();
    for (i, b) in boxes.iter().enumerate() {
        assert_eq!((b.ino, b.name.as_str()), (i as u64, format!("file{i}").as_str()));
        assert_eq!(&**b as *const Inode as usize % std::mem::align_of::<Inode>(), 0);
    }
    drop(boxes);
    assert_eq!(DROPS.load(Ordering::Relaxed), 100);
    assert_eq!(m.kmem_cache_shrink(cache.cache()), 0);
}

/// A property test against a model: random allocations from several caches and frees of
/// random live objects never hand out overlapping memory, keep contents, and freeing
/// everything empties every cache.
#[test]
fn random_operations_match_a_model() {
    let m = MachineBuilder::new().ram_mib(64).cpus(2).build().unwrap();
    let sizes = [8usize, 40, 96, 512, 2048, 9000];
    let caches: Vec<_> = sizes
        .iter()
        .map(|&sz| m.kmem_cache_create(&format!("model-{sz}"), sz, 0, SlabFlags::NO_MERGE, None).unwrap())
        .collect();
    // Two seeds under valgrind (scripts/memcheck.sh), eight otherwise.
    for seed in 0..if under_memcheck() { 2 } else { 8u64 } {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut live: Vec<(usize, usize, u8)> = Vec::new();
        let mut ranges = std::collections::BTreeMap::new();
        for step in 0..3000u32 {
            if live.is_empty() || rng.gen_bool(0.55) {
                let ci = rng.gen_range(0..caches.len());
                let p = m.kmem_cache_alloc(&caches[ci], Gfp::KERNEL).unwrap().as_ptr() as usize;
                let (lo, hi) = (p, p + sizes[ci]);
                if let Some((&s, &e)) = ranges.range(..hi).next_back() {
                    assert!(e <= lo || s >= hi, "seed {seed} step {step}: [{lo:#x},{hi:#x}) overlaps [{s:#x},{e:#x})");
                }
                ranges.insert(lo, hi);
                let tag = step as u8;
                stamp(NonNull::new(p as *mut u8).unwrap(), sizes[ci], tag);
                live.push((ci, p, tag));
            } else {
                let (ci, p, tag) = live.swap_remove(rng.gen_range(0..live.len()));
                let np = NonNull::new(p as *mut u8).unwrap();
                check(np, sizes[ci], tag);
                ranges.remove(&p);
                free(&m, &caches[ci], np);
            }
        }
        for (ci, p, tag) in live {
            let np = NonNull::new(p as *mut u8).unwrap();
            check(np, sizes[ci], tag);
            free(&m, &caches[ci], np);
        }
        for c in &caches {
            assert_eq!(m.validate_slab_cache(c).errors, 0);
            assert_eq!(m.kmem_cache_shrink(c), 0, "seed {seed}: {} empty", c.name());
        }
    }
    assert_eq!(m.report_count(ReportKind::SlabBug), 0);
}

/// `kmem_cache_zalloc` and `kzalloc` served from a warm sheaf (the fast path) zero the whole
/// object: the objects just freed there were dirtied first.
#[test]
fn zeroed_allocations_from_a_warm_sheaf_are_zeroed() {
    let m = MachineBuilder::new().ram_mib(64).thread_cpus(2).build().unwrap();
    let c = m.kmem_cache_create("zero_fast", 200, 0, SlabFlags::NO_MERGE, None).unwrap();
    for _ in 0..3 {
        let ps: Vec<_> = (0..64).map(|_| m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap()).collect();
        let ks: Vec<_> = (0..64).map(|_| m.kmalloc(100, Gfp::KERNEL).unwrap()).collect();
        for p in &ps {
            // SAFETY: 200 bytes of ours.
            unsafe { p.as_ptr().write_bytes(0xee, 200) };
        }
        for k in &ks {
            // SAFETY: kmalloc-128's object: 128 bytes of ours.
            unsafe { k.as_ptr().write_bytes(0xee, 128) };
        }
        for p in ps {
            free(&m, &c, p);
        }
        for k in ks {
            // SAFETY: ours.
            unsafe { m.kfree(k.as_ptr()) };
        }
        let zs: Vec<_> = (0..64).map(|_| m.kmem_cache_zalloc(&c, Gfp::KERNEL).unwrap()).collect();
        let kz: Vec<_> = (0..64).map(|_| m.kzalloc(100, Gfp::KERNEL).unwrap()).collect();
        for z in &zs {
            check_all(*z, 200, 0);
        }
        for z in &kz {
            check_all(*z, 128, 0);
        }
        for z in zs {
            free(&m, &c, z);
        }
        for z in kz {
            // SAFETY: ours.
            unsafe { m.kfree(z.as_ptr()) };
        }
    }
    assert_eq!(m.report_count(ReportKind::Warning) + m.report_count(ReportKind::SlabBug), 0);
    m.kmem_cache_destroy(c);
}

/// `kmem_cache_create` with Linux 6.18's `kmem_cache_args` (`kmem_cache_create_args`): the
/// sheaf capacity asked for is what each CPU's sheaves hold, clamped to the machine's
/// largest sheaf; a cache that asks is never merged; `Default` is `kmem_cache_create`'s; the
/// alignment may exceed a page.
#[test]
fn cache_args_set_the_sheaf_capacity_and_keep_the_cache_apart() {
    use kmem::KmemCacheArgs;
    let m = machine();
    let plain = m.kmem_cache_create("args_plain", 4096, 0, SlabFlags::NONE, None).unwrap();
    let args = KmemCacheArgs { sheaf_capacity: 4, ..Default::default() };
    let small = m.kmem_cache_create_args("args_small", 4096, &args, SlabFlags::NONE).unwrap();
    assert!(!std::ptr::eq(&*small, &*plain), "a cache that sets its sheaf capacity merges with none");
    assert_eq!(small.sheaf_capacity(), 4);
    assert!(plain.sheaf_capacity() >= 32, "kmem's default: {}", plain.sheaf_capacity());
    let same = m.kmem_cache_create_args("args_same", 4096, &KmemCacheArgs::default(), SlabFlags::NONE).unwrap();
    assert!(std::ptr::eq(&*same, &*plain), "default arguments: kmem_cache_create's cache, merged");
    let huge = KmemCacheArgs { sheaf_capacity: 100_000, ..Default::default() };
    let big = m.kmem_cache_create_args("args_big", 64, &huge, SlabFlags::NONE).unwrap();
    assert!(big.sheaf_capacity() < 100_000 && big.sheaf_capacity() >= 32, "clamped: {}", big.sheaf_capacity());
    // Aligned as asked, beyond a page.
    let aligned = KmemCacheArgs { align: 16384, sheaf_capacity: 2, ..Default::default() };
    let a16 = m.kmem_cache_create_args("args_16k", 16384, &aligned, SlabFlags::NONE).unwrap();
    kmem_hosted::pin_current_thread(0);
    let objs: Vec<_> = (0..8).map(|_| m.kmem_cache_alloc(&a16, Gfp::KERNEL).unwrap()).collect();
    assert!(objs.iter().all(|p| p.as_ptr() as usize % 16384 == 0));
    for p in objs {
        // SAFETY: ours, freed once.
        unsafe { m.kmem_cache_free(&a16, p) };
    }
    assert_eq!(m.report_count(ReportKind::SlabBug), 0);
    drop((plain, small, same, big, a16));
}
