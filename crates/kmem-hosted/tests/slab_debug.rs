//! Misuse of the slab allocator and `slub_debug`: each mistake is detected, reported in
//! Linux's words an exact number of times, repaired, and the cache keeps working.
//!
//! Every test boots its own machine (the taint flag and report counters are per machine).

use std::collections::HashSet;
use std::ptr::NonNull;

use kmem::{Gfp, KmemCache, Order, Platform, ReportKind, SlabFlags as F, VirtAddr};
use kmem_hosted::{Machine, MachineBuilder};

fn machine() -> Machine {
    MachineBuilder::new().ram_mib(128).cpus(2).build().unwrap()
}

fn bugs(m: &Machine) -> u64 {
    m.report_count(ReportKind::SlabBug)
}

/// The SlabBug texts made since the last call; Info reports are dropped, and there must be
/// no others.
fn take_bugs(m: &Machine) -> Vec<String> {
    let all = m.reports().take();
    assert!(all.iter().all(|(k, _)| matches!(k, ReportKind::SlabBug | ReportKind::Info)), "{all:#?}");
    all.into_iter().filter(|(k, _)| *k == ReportKind::SlabBug).map(|(_, t)| t).collect()
}

fn addr(p: NonNull<u8>) -> usize {
    p.as_ptr() as usize
}

#[track_caller]
fn alloc(m: &Machine, c: &KmemCache) -> NonNull<u8> {
    m.kmem_cache_alloc(c, Gfp::KERNEL).unwrap()
}

/// `kmem_cache_free`, for tests that free on purpose what they should not (the calls are
/// the misuse under test, and the allocator must survive them).
#[track_caller]
fn free(m: &Machine, c: &KmemCache, p: NonNull<u8>) {
    // SAFETY: `p` is an object of `c`'s machine (or a deliberately bad pointer into the
    // machine's RAM); the allocator checks every pointer before it writes through it.
    unsafe { m.kmem_cache_free(c, p) }
}

/// Byte `off` from `p` (the object, its red zones or its metadata).
fn peek(p: NonNull<u8>, off: isize) -> u8 {
    // SAFETY: `p + off` lies in a slab page of the test's machine, RAM that stays mapped as
    // long as the machine; the test is the only thread using the machine.
    unsafe { p.as_ptr().wrapping_offset(off).read_volatile() }
}

/// Writes `v` at `p + off`: the buggy write under test (into a freed object, a red zone,
/// a free pointer).
fn poke(p: NonNull<u8>, off: isize, v: u8) {
    // SAFETY: as `peek`; the byte is slab memory the allocator only checks and repairs, and
    // no Rust reference to it exists.
    unsafe { p.as_ptr().wrapping_offset(off).write_volatile(v) }
}

/// `(active_objs, num_objs)` of cache `name` in /proc/slabinfo.
fn slabinfo(m: &Machine, name: &str) -> Option<(usize, usize)> {
    let mut s = String::new();
    kmem::proc::slabinfo(m, &mut s).unwrap();
    s.lines().skip(2).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f[0] == name).then(|| (f[1].parse().unwrap(), f[2].parse().unwrap()))
    })
}

/// slabinfo numbers with the CPUs' active slabs flushed (so that free objects count as free).
fn flushed_info(m: &Machine, c: &KmemCache) -> (usize, usize) {
    m.kmem_cache_shrink(c);
    slabinfo(m, c.name()).expect("cache listed in /proc/slabinfo")
}

/// The cache still works: three slabs' worth of objects come out distinct (and distinct
/// from `live`, objects the test still holds), keep their contents, go back, and
/// validation finds nothing; no report is made meanwhile.
fn assert_works(m: &Machine, c: &KmemCache, live: &[NonNull<u8>]) {
    let before = m.reports().take();
    let n = 3 * c.objects_per_slab();
    let objs: Vec<_> = (0..n).map(|_| alloc(m, c)).collect();
    let set: HashSet<usize> = objs.iter().chain(live).map(|&p| addr(p)).collect();
    assert_eq!(set.len(), n + live.len(), "an object was handed out twice");
    for (i, p) in objs.iter().enumerate() {
        // SAFETY: a live object of `c`, ours, `object_size` bytes.
        unsafe { p.as_ptr().write_bytes(i as u8, c.object_size()) };
    }
    let v = m.validate_slab_cache(c);
    assert_eq!(v.errors, 0, "{:#?}", m.reports().take());
    for (i, p) in objs.into_iter().enumerate() {
        assert_eq!((peek(p, 0), peek(p, c.object_size() as isize - 1)), (i as u8, i as u8));
        free(m, c, p);
    }
    assert_eq!(m.validate_slab_cache(c).errors, 0, "{:#?}", m.reports().take());
    assert_eq!(m.reports().take(), vec![], "reports while the cache was used normally (before: {before:?})");
}

fn write_after_free(m: Machine, flags: F) {
    let c = m.kmem_cache_create("waf", 64, 0, flags, None).unwrap();
    let (a, b) = (alloc(&m, &c), alloc(&m, &c));
    free(&m, &c, b);
    assert_eq!(peek(b, 10), 0x6b, "a freed object is poisoned");
    assert_eq!(peek(b, 63), 0xa5, "with POISON_END last");
    poke(b, 10, 0x42);
    let v = m.validate_slab_cache(&c);
    assert_eq!((v.slabs, v.errors), (1, 1), "validate finds the write after free once");
    let t = take_bugs(&m);
    assert_eq!(t.len(), 1);
    assert!(t[0].contains("BUG waf (Not tainted): Poison overwritten\n"), "{}", t[0]);
    let at = addr(b) + 10;
    assert!(t[0].contains(&format!("0x{at:016x}-0x{at:016x} @offset=")), "{}", t[0]);
    assert!(t[0].contains("First byte 0x42 instead of 0x6b"), "{}", t[0]);
    assert!(t[0].contains(&format!("FIX waf: Restoring Poison 0x{at:016x}-0x{at:016x}=0x6b")), "{}", t[0]);
    assert_eq!(peek(b, 10), 0x6b, "the poison is restored");
    assert_eq!(m.validate_slab_cache(&c).errors, 0, "repaired: nothing left to find");
    assert_eq!(alloc(&m, &c), b, "the repaired object is handed out again, without a report");
    assert_eq!(bugs(&m), 1);

    // Now the allocation of the overwritten object finds it.
    free(&m, &c, b);
    for i in 20..24 {
        poke(b, i, 0x11);
    }
    let x = alloc(&m, &c);
    assert_ne!(x, b, "the corrupted object is not handed out");
    let t = take_bugs(&m);
    assert_eq!(t.len(), 2, "{t:#?}");
    assert!(t[0].contains("BUG waf (Tainted: B): Poison overwritten\n"), "{}", t[0]);
    let (s, e) = (addr(b) + 20, addr(b) + 23);
    assert!(t[0].contains(&format!("FIX waf: Restoring Poison 0x{s:016x}-0x{e:016x}=0x6b")), "{}", t[0]);
    assert_eq!(t[1].trim_end(), "FIX waf: Marking all objects used");
    assert!((20..24).all(|i| peek(b, i) == 0x6b), "the poison is restored");
    assert_eq!(m.validate_slab_cache(&c).errors, 0, "{:#?}", m.reports().take());
    assert_works(&m, &c, &[a, x]);
    free(&m, &c, a);
    free(&m, &c, x);
    assert_eq!(bugs(&m), 3);
}

#[test]
fn write_after_free_is_found_by_validate_and_by_the_next_allocation() {
    write_after_free(machine(), F::POISON);
}

#[test]
fn write_after_free_with_full_debugging_from_the_boot_option() {
    write_after_free(MachineBuilder::new().ram_mib(128).cpus(2).slub_debug("FZPU").build().unwrap(), F::NONE);
}

#[test]
fn red_zone_overwrites_are_caught_on_free_and_by_validate() {
    let m = machine();
    let c = m.kmem_cache_create("rz", 64, 0, F::RED_ZONE, None).unwrap();
    let l = *c.layout();
    assert_eq!((l.red_left_pad, l.inuse), (8, 72));
    let (left, right) = (alloc(&m, &c), alloc(&m, &c));
    let active = flushed_info(&m, &c).0;

    // Left red zone, on free: reported once, not freed (leaked), red zone restored.
    poke(left, -1, 0x00);
    free(&m, &c, left);
    let t = take_bugs(&m);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert!(t[0].contains("BUG rz (Not tainted): Left Redzone overwritten\n"), "{}", t[0]);
    assert!(t[0].contains("First byte 0x0 instead of 0xcc"), "{}", t[0]);
    let at = addr(left) - 1;
    assert!(t[0].contains(&format!("FIX rz: Restoring Left Redzone 0x{at:016x}-0x{at:016x}=0xcc")), "{}", t[0]);
    assert!(t[0].contains(&format!("FIX rz: Object at 0x{:016x} not freed", addr(left))), "{}", t[0]);
    assert_eq!(flushed_info(&m, &c).0, active, "not freed");
    assert_eq!(peek(left, -1), 0xcc);

    // Right red zone: two bytes hit, the range between them reported and restored.
    poke(right, 64, 0x01);
    poke(right, 70, 0x02);
    free(&m, &c, right);
    let t = take_bugs(&m);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert!(t[0].contains("Right Redzone overwritten\n"), "{}", t[0]);
    let (s, e) = (addr(right) + 64, addr(right) + 70);
    assert!(t[0].contains(&format!("0x{s:016x}-0x{e:016x} @offset=")), "{}", t[0]);
    assert!(t[0].contains("First byte 0x1 instead of 0xcc"), "{}", t[0]);
    assert!(t[0].contains(&format!("FIX rz: Object at 0x{:016x} not freed", addr(right))), "{}", t[0]);
    assert!((64..72).all(|i| peek(right, i) == 0xcc));
    assert_eq!(flushed_info(&m, &c).0, active, "not freed");
    assert_eq!(m.validate_slab_cache(&c).errors, 0, "the leaked objects are consistent allocated objects");

    // The repair is real: the objects can now be freed without a report.
    free(&m, &c, left);
    free(&m, &c, right);
    assert_eq!(flushed_info(&m, &c).0, active - 2);
    assert_eq!(bugs(&m), 2);

    // Validate finds overwrites of allocated (0xcc) and free (0xbb) objects' red zones.
    let (p, q) = (alloc(&m, &c), alloc(&m, &c));
    poke(p, -8, 0x55);
    assert_eq!(m.validate_slab_cache(&c).errors, 1);
    poke(p, 71, 0x55);
    assert_eq!(m.validate_slab_cache(&c).errors, 1);
    free(&m, &c, q);
    poke(q, 64, 0x55);
    assert_eq!(m.validate_slab_cache(&c).errors, 1);
    let t = take_bugs(&m);
    assert_eq!(t.len(), 3, "{t:#?}");
    assert!(t[0].contains("Left Redzone overwritten") && t[0].contains("First byte 0x55 instead of 0xcc"));
    assert!(t[1].contains("Right Redzone overwritten") && t[1].contains("First byte 0x55 instead of 0xcc"));
    assert!(t[2].contains("Right Redzone overwritten") && t[2].contains("First byte 0x55 instead of 0xbb"));
    assert!(!t.iter().any(|t| t.contains("not freed")), "validate frees nothing");
    assert_eq!(m.validate_slab_cache(&c).errors, 0);
    free(&m, &c, p);
    assert_works(&m, &c, &[]);
    assert_eq!(bugs(&m), 5);
}

#[test]
fn double_free_on_a_debug_cache_is_reported_and_ignored() {
    let m = machine();
    let c = m.kmem_cache_create("df_dbg", 64, 0, F::CONSISTENCY_CHECKS | F::RED_ZONE | F::POISON, None).unwrap();
    let (a, b, live) = (alloc(&m, &c), alloc(&m, &c), alloc(&m, &c));
    free(&m, &c, a);
    let info = slabinfo(&m, "df_dbg").unwrap();
    free(&m, &c, a);
    let t = take_bugs(&m);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert!(t[0].contains("BUG df_dbg (Not tainted): Object already free\n"), "{}", t[0]);
    assert!(t[0].contains(&format!("FIX df_dbg: Object at 0x{:016x} not freed", addr(a))), "{}", t[0]);
    assert_eq!(slabinfo(&m, "df_dbg").unwrap(), info, "counts unchanged");
    // Not at the head of the freelist any more: still found.
    free(&m, &c, b);
    free(&m, &c, a);
    let t = take_bugs(&m);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert!(t[0].contains("Object already free\n"), "{}", t[0]);
    assert!(t[0].contains(&format!("FIX df_dbg: Object at 0x{:016x} not freed", addr(a))), "{}", t[0]);
    let got: HashSet<usize> = (0..3).map(|_| addr(alloc(&m, &c))).collect();
    assert_eq!(got.len(), 3, "no object handed out twice");
    assert!(got.contains(&addr(a)) && got.contains(&addr(b)) && !got.contains(&addr(live)));
    assert_eq!(bugs(&m), 2, "no poison or red zone damage: {:#?}", m.reports().take());
    assert_works(&m, &c, &[live]);
}

#[test]
fn double_free_of_the_last_freed_object_is_caught_without_debugging() {
    let m = machine();
    let c = m.kmem_cache_create("df_fast", 64, 0, F::NO_MERGE, None).unwrap();
    assert!(!c.is_debug());
    // On the CPU's active slab (the fast path's check).
    let (a, b) = (alloc(&m, &c), alloc(&m, &c));
    free(&m, &c, a);
    free(&m, &c, a);
    let t = take_bugs(&m);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert!(t[0].contains("BUG df_fast (Not tainted): Object already free\n"), "{}", t[0]);
    assert!(t[0].contains(&format!("FIX df_fast: Object at 0x{:016x} not freed", addr(a))), "{}", t[0]);
    let (x, y) = (alloc(&m, &c), alloc(&m, &c));
    assert!(x != y && x != b && y != b, "no object handed out twice");
    // On a slab no CPU owns (the `__slab_free` check).
    let n = c.objects_per_slab();
    let objs: Vec<_> = (0..n + 1).map(|_| alloc(&m, &c)).collect();
    free(&m, &c, objs[0]);
    let info = flushed_info(&m, &c);
    free(&m, &c, objs[0]);
    assert_eq!(bugs(&m), 2);
    assert!(take_bugs(&m)[0].contains("Object already free"));
    assert_eq!(flushed_info(&m, &c), info, "counts unchanged");
    assert_eq!(m.validate_slab_cache(&c).errors, 0);
    let live: Vec<_> = [b, x, y].into_iter().chain(objs[1..].iter().copied()).collect();
    assert_works(&m, &c, &live);
    for p in live {
        free(&m, &c, p);
    }
    assert_eq!(bugs(&m), 2);
}

#[test]
fn invalid_pointers_are_refused() {
    let m = machine();
    for (name, flags) in [("inv_plain", F::NO_MERGE), ("inv_debug", F::CONSISTENCY_CHECKS | F::RED_ZONE | F::POISON)] {
        let before = bugs(&m);
        let c = m.kmem_cache_create(name, 40, 0, flags, None).unwrap();
        let a = alloc(&m, &c);
        let info = flushed_info(&m, &c);
        let head = m.compound_head(m.virt_to_page(VirtAddr::new(addr(a))).unwrap());
        let slab = m.page_address(head).unwrap().as_usize();
        let l = *c.layout();
        let end = slab + l.red_left_pad as usize + c.objects_per_slab() * l.size as usize;
        assert!(end < slab + (kmem::PAGE_SIZE << c.order()), "the slab has tail padding");
        let page = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
        let pa = m.page_address(page).unwrap().as_usize();
        // SAFETY: our page, PAGE_SIZE bytes.
        unsafe { (pa as *mut u8).write_bytes(0x77, kmem::PAGE_SIZE) };
        let bad = [addr(a) + 8, end, pa];
        for p in bad {
            free(&m, &c, NonNull::new(p as *mut u8).unwrap());
        }
        let t = take_bugs(&m);
        assert_eq!(t.len(), 3, "{t:#?}");
        for (t, p) in t.iter().zip(bad) {
            assert!(t.contains(&format!("BUG {name} (")), "{t}");
            assert!(t.contains(&format!("): Invalid object pointer 0x{p:016x}\n")), "{t}");
            assert!(t.contains(&format!("FIX {name}: Object at 0x{p:016x} not freed")), "{t}");
        }
        assert!(t[2].contains("is not in a slab page"), "{}", t[2]);
        // SAFETY: the page is ours; the allocator wrote nothing into it.
        assert!(unsafe { std::slice::from_raw_parts(pa as *const u8, kmem::PAGE_SIZE) }.iter().all(|&b| b == 0x77));
        // SAFETY: ours, order 0.
        unsafe { m.__free_pages(page, Order::ZERO) };
        assert_eq!(flushed_info(&m, &c), info, "nothing freed");
        assert_eq!(m.validate_slab_cache(&c).errors, 0);
        assert_works(&m, &c, &[a]);
        free(&m, &c, a);
        assert_eq!(bugs(&m), before + 3);
    }
}

#[test]
fn free_to_the_wrong_cache_frees_to_the_right_one() {
    let m = machine();
    for (i, flags) in [F::NO_MERGE, F::NO_MERGE | F::CONSISTENCY_CHECKS | F::POISON].into_iter().enumerate() {
        let before = bugs(&m);
        let (na, nb) = (format!("cache_a{i}"), format!("cache_b{i}"));
        let a = m.kmem_cache_create(&na, 64, 0, flags, None).unwrap();
        let b = m.kmem_cache_create(&nb, 64, 0, F::NO_MERGE, None).unwrap();
        let (a1, a2, b1) = (alloc(&m, &a), alloc(&m, &a), alloc(&m, &b));
        let (ia, ib) = (flushed_info(&m, &a), flushed_info(&m, &b));
        assert_eq!((ia.0, ib.0), (2, 1));
        free(&m, &b, a1);
        let t = take_bugs(&m);
        assert_eq!(t.len(), 1, "{t:#?}");
        assert!(
            t[0].contains(&format!("kmem_cache_free: Wrong slab cache. {nb} but object is from {na}\n")),
            "{}",
            t[0]
        );
        assert!(t[0].contains(file!()), "names the caller: {}", t[0]);
        assert_eq!(flushed_info(&m, &a), (1, ia.1), "freed to its own cache");
        assert_eq!(flushed_info(&m, &b), ib, "not to the wrong one");
        assert_eq!(alloc(&m, &a), a1, "and reused from there");
        assert_eq!((m.validate_slab_cache(&a).errors, m.validate_slab_cache(&b).errors), (0, 0));
        assert_works(&m, &a, &[a1, a2]);
        assert_works(&m, &b, &[b1]);
        for (c, p) in [(&a, a1), (&a, a2), (&b, b1)] {
            free(&m, c, p);
        }
        assert_eq!(bugs(&m), before + 1);
    }
}

#[test]
fn owner_tracking_names_the_allocation_and_free_sites() {
    let m = machine();
    let (cpu, pid) = (m.platform().current_cpu().0, m.platform().current_task().pid);
    let c = m.kmem_cache_create("tracked", 64, 0, F::RED_ZONE | F::POISON | F::STORE_USER, None).unwrap();
    let (line, p) = (line!(), m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap());
    poke(p, 64, 0x00);
    free(&m, &c, p);
    let t = take_bugs(&m);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert!(t[0].contains("Right Redzone overwritten"), "{}", t[0]);
    let alloc_line = t[0].lines().find(|l| l.starts_with("Allocated in ")).expect("an Allocated line");
    assert!(alloc_line.starts_with(&format!("Allocated in {}:{line}:", file!())), "{alloc_line}");
    assert!(alloc_line.contains(" age=") && alloc_line.ends_with(&format!(" cpu={cpu} pid={pid}")), "{alloc_line}");
    assert!(!t[0].contains("Freed in "), "never freed yet: {}", t[0]);

    // Freed, then written: the report names both sites.
    let (qline, q) = (line!(), alloc(&m, &c));
    let (fline, ()) = (line!(), free(&m, &c, q));
    poke(q, 5, 0x00);
    assert_eq!(m.validate_slab_cache(&c).errors, 1);
    let t = take_bugs(&m);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert!(t[0].contains("Poison overwritten"), "{}", t[0]);
    assert!(t[0].contains(&format!("Allocated in {}:{qline}:", file!())), "{}", t[0]);
    assert!(t[0].contains(&format!("Freed in {}:{fline}:", file!())), "{}", t[0]);
    free(&m, &c, p); // repaired: the leaked object can go now
    assert_works(&m, &c, &[]);
    assert_eq!(bugs(&m), 2);
}

#[test]
fn destroy_with_live_objects_names_them_and_keeps_the_cache() {
    let m = machine();
    let c = m.kmem_cache_create("leaky", 64, 0, F::NO_MERGE, None).unwrap();
    let n = c.objects_per_slab();
    let objs: Vec<_> = (0..2 * n + 3).map(|_| alloc(&m, &c)).collect();
    let slab_of = |p: NonNull<u8>| m.compound_head(m.virt_to_page(VirtAddr::new(addr(p))).unwrap()).pfn();
    let live: HashSet<usize> = [0, 5, n - 1, 2 * n + 1].into_iter().map(|i| addr(objs[i])).collect();
    let slabs: HashSet<_> = [0, 2 * n + 1].into_iter().map(|i| slab_of(objs[i])).collect();
    assert_eq!(slabs.len(), 2, "live objects in two slabs");
    for &p in objs.iter().filter(|&&p| !live.contains(&addr(p))) {
        free(&m, &c, p);
    }
    assert_eq!(bugs(&m), 0);
    m.kmem_cache_destroy(c);
    let w = m.reports().texts(ReportKind::Warning);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].contains("kmem_cache_destroy leaky: Slab cache still has objects"), "{}", w[0]);
    let t = m.reports().texts(ReportKind::SlabBug);
    assert_eq!(t.len(), 2, "one report per slab with live objects: {t:#?}");
    let mut named = HashSet::new();
    for (t, taint) in t.iter().zip(["Not tainted", "Tainted: B"]) {
        let head = format!("BUG leaky ({taint}): Objects remaining in leaky on __kmem_cache_shutdown()\n");
        assert!(t.contains(&head), "{t}");
        let here: Vec<usize> = t
            .lines()
            .filter_map(|l| l.strip_prefix("Object 0x"))
            .map(|l| usize::from_str_radix(&l[..16], 16).unwrap())
            .collect();
        assert!(!here.is_empty(), "{t}");
        let slab = slab_of(NonNull::new(here[0] as *mut u8).unwrap());
        assert!(here.iter().all(|&p| slab_of(NonNull::new(p as *mut u8).unwrap()) == slab), "{t}");
        for p in here {
            assert!(named.insert(p), "0x{p:x} named twice");
        }
    }
    assert_eq!(named, live, "exactly the live objects are named");
    assert_eq!(slabinfo(&m, "leaky").map(|i| i.0), Some(4), "the cache stays, with its objects");
}

#[test]
fn leak_report_of_a_tracking_cache_names_the_allocation_site() {
    let m = machine();
    let c = m.kmem_cache_create("leaky_u", 64, 0, F::STORE_USER, None).unwrap();
    let (line, p) = (line!(), m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap());
    m.kmem_cache_destroy(c);
    let t = m.reports().texts(ReportKind::SlabBug);
    assert_eq!(t.len(), 1, "{t:#?}");
    let want = format!("Object 0x{:016x} @offset=", addr(p));
    let l = t[0].lines().find(|l| l.starts_with(&want)).expect("the object is named");
    assert!(l.contains(&format!(" allocated at {}:{line}:", file!())), "{l}");
    assert_eq!(m.report_count(ReportKind::Warning), 1);
}

#[test]
fn slub_debug_boot_option_selects_caches() {
    let m = MachineBuilder::new().ram_mib(128).cpus(2).slub_debug("P,poisoned_*").build().unwrap();
    let a = m.kmem_cache_create("poisoned_a", 64, 0, F::NONE, None).unwrap();
    let plain = m.kmem_cache_create("plain", 64, 0, F::NONE, None).unwrap();
    let opt_out = m.kmem_cache_create("poisoned_b", 64, 0, F::NO_USER_FLAGS, None).unwrap();
    assert!(a.is_debug() && a.flags().contains(F::POISON) && !a.flags().contains(F::RED_ZONE));
    assert!(!plain.is_debug() && !plain.flags().intersects(F::DEBUG_FLAGS));
    assert!(!opt_out.is_debug() && !opt_out.flags().intersects(F::DEBUG_FLAGS));
    // The poisoning is real.
    let (keep, p) = (alloc(&m, &a), alloc(&m, &a));
    free(&m, &a, p);
    poke(p, 0, 0x00);
    assert_eq!(m.validate_slab_cache(&a).errors, 1);
    assert!(take_bugs(&m)[0].contains("BUG poisoned_a (Not tainted): Poison overwritten"));
    free(&m, &a, keep);
    assert_works(&m, &a, &[]);

    let m = MachineBuilder::new().ram_mib(128).cpus(2).slub_debug("").build().unwrap();
    let all = m.kmem_cache_create("anything", 64, 0, F::NONE, None).unwrap();
    let full = F::CONSISTENCY_CHECKS | F::RED_ZONE | F::POISON | F::STORE_USER;
    assert!(all.is_debug() && all.flags().contains(full), "{:?}", all.flags());
    let opt_out = m.kmem_cache_create("opted_out", 64, 0, F::NO_USER_FLAGS, None).unwrap();
    assert!(!opt_out.is_debug() && !opt_out.flags().intersects(F::DEBUG_FLAGS));
    assert_works(&m, &all, &[]);
    assert_works(&m, &opt_out, &[]);
}

#[test]
fn slub_debug_reaches_the_boot_cache() {
    let m = MachineBuilder::new().ram_mib(128).cpus(2).slub_debug("").build().unwrap();
    let mut plain = Vec::new();
    m.for_each_cache(|c| {
        if !c.is_debug() {
            plain.push(c.name().to_owned());
        }
    });
    assert_eq!(plain, Vec::<String>::new(), "caches without debugging under slub_debug=\"\"");
}

#[test]
fn corrupt_free_pointer_on_a_plain_cache_is_isolated() {
    let m = machine();
    let c = m.kmem_cache_create("fp_corrupt", 64, 0, F::NO_MERGE, None).unwrap();
    let off = c.layout().offset as isize;
    let set_fp = |p: NonNull<u8>, v: u64| (0..8).for_each(|i| poke(p, off + i, (v >> (8 * i)) as u8));

    // In a sheaf: the sheaf holds the object's address out of band, so a free pointer
    // overwritten after the free is never followed.
    let (a, b, d) = (alloc(&m, &c), alloc(&m, &c), alloc(&m, &c));
    free(&m, &c, b);
    set_fp(b, 0xdead_beef_0bad_f00d);
    let x = alloc(&m, &c);
    assert_eq!(x, b, "the sheaf hands the object back");
    assert_eq!(bugs(&m), 0, "{:#?}", m.reports().take());

    // On a slab's freelist (a flush put it there): the refill that follows the chain finds
    // the bad pointer, hands out the object before it and cuts the chain there.
    let n = c.objects_per_slab();
    let objs: Vec<_> = (0..2 * n).map(|_| alloc(&m, &c)).collect();
    let slab_of = |p: NonNull<u8>| m.compound_head(m.virt_to_page(VirtAddr::new(addr(p))).unwrap()).pfn();
    let victims: Vec<_> = objs.iter().copied().filter(|&p| slab_of(p) == slab_of(objs[n])).take(3).collect();
    for &p in &victims {
        free(&m, &c, p);
    }
    m.kmem_cache_shrink(&c); // the sheaves' objects go back to their slab's freelist
    let head = victims[2]; // freed last: the freelist head, pointing at victims[1]
    set_fp(head, 0xdead_beef_0bad_f00d);
    // Enough to empty every partial slab, the damaged one included.
    let got: Vec<_> = (0..2 * n).map(|_| alloc(&m, &c)).collect();
    assert!(got.contains(&head), "the object before the bad pointer is still handed out");
    assert!(!got.contains(&victims[0]) && !got.contains(&victims[1]), "the chain past it is isolated");
    let t = take_bugs(&m);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert!(t[0].contains("BUG fp_corrupt (Not tainted): Freechain corrupt\n"), "{}", t[0]);
    assert!(t[0].contains("FIX fp_corrupt: Isolate corrupted freechain"), "{}", t[0]);
    let more: Vec<_> = got.into_iter().chain(objs.into_iter().filter(|p| !victims.contains(p))).collect();
    assert_eq!(m.validate_slab_cache(&c).errors, 0, "{:#?}", m.reports().take());

    // On a slab's own freelist: found by validate, which cuts the chain and fixes the count.
    let objs: Vec<_> = (0..n + 1).map(|_| alloc(&m, &c)).collect();
    let same: Vec<_> = objs.iter().copied().filter(|&p| slab_of(p) == slab_of(objs[0])).collect();
    assert!(same.len() >= 3);
    free(&m, &c, same[0]);
    free(&m, &c, same[1]);
    m.kmem_cache_shrink(&c); // onto the slab's freelist
    set_fp(same[1], 0x0123_4567_89ab_cdef);
    assert_eq!(m.validate_slab_cache(&c).errors, 2);
    let t = take_bugs(&m);
    assert_eq!(t.len(), 2, "{t:#?}");
    assert!(t[0].contains("Freechain corrupt\n"), "{}", t[0]);
    assert!(t[0].contains(&format!("Object 0x{:016x} @offset=", addr(same[1]))), "{}", t[0]);
    assert!(t[1].contains("Wrong object count. Counter is ") && t[1].contains("FIX fp_corrupt: Object count adjusted"));
    assert_eq!(m.validate_slab_cache(&c).errors, 0, "{:#?}", m.reports().take());
    let live: Vec<_> =
        [a, d, x].into_iter().chain(more).chain(objs.into_iter().filter(|&p| p != same[0] && p != same[1])).collect();
    assert_works(&m, &c, &live);
    for p in live {
        free(&m, &c, p);
    }
    assert_eq!(bugs(&m), 3, "{:#?}", m.reports().take());
}

#[test]
fn corrupt_free_pointer_on_a_red_zoned_cache_takes_the_slab_out_of_use() {
    let m = machine();
    let c = m.kmem_cache_create("fp_rz", 64, 0, F::RED_ZONE, None).unwrap();
    let off = c.layout().offset as isize;
    assert!(off < 64, "the free pointer is inside the object");
    let objs: Vec<_> = (0..8).map(|_| alloc(&m, &c)).collect();
    free(&m, &c, objs[3]);
    free(&m, &c, objs[5]);
    (0..8).for_each(|i| poke(objs[5], off + i, 0xee)); // use after free
    let x = alloc(&m, &c);
    assert!(!objs.contains(&x), "nothing of the damaged slab is handed out");
    let t = take_bugs(&m);
    assert_eq!(t.len(), 2, "{t:#?}");
    assert!(t[0].contains("BUG fp_rz (Not tainted): Freepointer corrupt\n"), "{}", t[0]);
    assert!(t[0].contains(&format!("Object 0x{:016x} @offset=", addr(objs[5]))), "{}", t[0]);
    assert_eq!(t[1].trim_end(), "FIX fp_rz: Marking all objects used");
    // Its free objects (the chain past the corrupt pointer included) are now used for
    // good: validation checks them as such and finds nothing, the live ones can be freed.
    let v = m.validate_slab_cache(&c);
    assert_eq!((v.slabs, v.errors), (2, 0), "{:#?}", m.reports().take());
    for (i, &p) in objs.iter().enumerate().filter(|&(i, _)| i != 3 && i != 5) {
        free(&m, &c, p);
        assert_eq!(bugs(&m), 2, "object {i}: {:#?}", m.reports().take());
    }
    assert_works(&m, &c, &[x]);
}

#[test]
fn slab_trace_reports_every_alloc_and_free() {
    let m = machine();
    let c = m.kmem_cache_create("traced", 64, 0, F::TRACE, None).unwrap();
    let other = m.kmem_cache_create("untraced", 64, 0, F::NO_MERGE, None).unwrap();
    let (a, b) = (alloc(&m, &c), alloc(&m, &c));
    let o = alloc(&m, &other);
    free(&m, &c, a);
    free(&m, &c, b);
    free(&m, &other, o);
    let t: Vec<String> = m.reports().texts(ReportKind::Info).into_iter().filter(|t| t.starts_with("TRACE ")).collect();
    assert_eq!(t.len(), 4, "{t:#?}");
    for (t, (what, p)) in t.iter().zip([("alloc", a), ("alloc", b), ("free", a), ("free", b)]) {
        assert!(t.starts_with(&format!("TRACE traced {what} 0x{:016x} inuse=", addr(p))), "{t}");
    }
    assert!(t[2].contains(&format!("Object {:016x}: ", addr(a))), "a free dumps the object: {}", t[2]);
    assert_eq!(bugs(&m), 0);
}
