//! KFENCE (`kmem::kfence`): Linux's kfence_test scenarios on a hosted machine. Each bad
//! access faults for real (guard pages and freed objects are `PROT_NONE`), the machine's
//! `SIGSEGV` handler turns it into the report, and the test goes on afterwards.

use crate::common;

use kmem::kfence::KfenceConfig;
use kmem::{Gfp, Platform, ReportKind, SlabFlags, PAGE_SIZE};
use kmem_hosted::{in_irq, Machine, MachineBuilder};

/// A machine whose KFENCE samples only when a test forces it (an hour's interval).
fn machine() -> Machine {
    let cfg = KfenceConfig { sample_interval_ms: 3_600_000, num_objects: 31 };
    MachineBuilder::new().ram_mib(64).cpus(2).kfence(cfg).build().unwrap()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Left,
    Right,
}

/// kfence_test's `test_alloc`: a KFENCE kmalloc of `size` placed against the `side` guard.
fn alloc(m: &Machine, size: usize, side: Side) -> *mut u8 {
    for _ in 0..200 {
        assert!(m.kfence_force_next());
        let p = m.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr();
        assert!(m.is_kfence_address(p), "a forced allocation comes from the pool");
        let left = p as usize % PAGE_SIZE == 0;
        if left == (side == Side::Left) {
            return p;
        }
        // SAFETY: ours, unused.
        unsafe { m.kfree(p) };
    }
    panic!("no {side:?} placement in 200 draws");
}

/// The KFENCE reports so far, and their titles (the line after the rule).
fn reports(m: &Machine) -> Vec<String> {
    m.reports().texts(ReportKind::Kfence)
}

fn title(report: &str) -> &str {
    report.lines().find(|l| l.starts_with("BUG: KFENCE: ")).expect("a KFENCE title")
}

/// The one new report, checked to have title `want` (up to the function).
fn expect_report(m: &Machine, before: usize, want: &str) -> String {
    let r = reports(m);
    assert_eq!(r.len(), before + 1, "exactly one new KFENCE report: {r:#?}");
    let text = r[before].clone();
    let t = title(&text);
    assert!(t.starts_with(&format!("{want} in ")), "title {t:?}, want {want:?}\n{text}");
    text
}

/// Keeps going: the machine allocates and frees, KFENCE included.
fn still_works(m: &Machine) {
    // A configuration call ends the armed state forced allocations left (the fast paths
    // come back), keeping the interval.
    assert!(m.kfence_set_sample_interval(m.kfence_sample_interval()));
    common::assert_still_works(m);
    let p = alloc(m, 64, Side::Left);
    // SAFETY: a live 64-byte object.
    unsafe {
        p.write_bytes(0x11, 64);
        m.kfree(p);
    }
}

#[test]
fn forced_allocation_is_placed_and_canaried() {
    let m = machine();
    let left = alloc(&m, 32, Side::Left);
    let right = alloc(&m, 32, Side::Right);
    assert_eq!(right as usize % PAGE_SIZE, PAGE_SIZE - 32, "right objects end at the guard page");
    // SAFETY: live objects; the canary bytes after a left object are on its own page.
    unsafe {
        assert_eq!(*left.add(32), 0xaa ^ ((left as usize + 32) & 7) as u8, "the canary pattern");
        m.kfree(left);
        m.kfree(right);
    }
    let st = m.kfence_stats();
    assert!(st.enabled);
    assert_eq!((st.allocated, st.bugs), (0, 0));
    assert!(st.allocs >= 2 && st.frees == st.allocs);
    assert_eq!(m.report_count(ReportKind::Kfence), 0);
}

#[test]
fn out_of_bounds_read_on_both_sides() {
    let m = machine();
    let p = alloc(&m, 32, Side::Left);
    // SAFETY: a deliberate out-of-bounds read: the guard page before the object faults,
    // KFENCE reports and maps it back, the read completes.
    let _ = unsafe { p.sub(1).read_volatile() };
    let text = expect_report(&m, 0, "BUG: KFENCE: out-of-bounds read");
    assert!(text.contains("(1B left of kfence-#"), "{text}");
    assert!(text.contains(", size=32, cache=kmalloc-32"), "{text}");
    assert!(text.contains("allocated by task "), "{text}");
    // SAFETY: ours.
    unsafe { m.kfree(p) };

    let p = alloc(&m, 32, Side::Right);
    // SAFETY: as above, past the end: the guard page after the object.
    let _ = unsafe { p.add(32).read_volatile() };
    let text = expect_report(&m, 1, "BUG: KFENCE: out-of-bounds read");
    assert!(text.contains("(32B right of kfence-#"), "{text}");
    // SAFETY: ours.
    unsafe { m.kfree(p) };
    assert_eq!(m.kfence_stats().errors[0], 2);
    still_works(&m);
    assert_eq!(m.report_count(ReportKind::Kfence), 2);
}

#[test]
fn out_of_bounds_write_on_both_sides() {
    let m = machine();
    let p = alloc(&m, 32, Side::Left);
    // SAFETY: a deliberate out-of-bounds write into the guard page (reported, then done).
    unsafe { p.sub(1).write_volatile(0x42) };
    let text = expect_report(&m, 0, "BUG: KFENCE: out-of-bounds write");
    assert!(text.contains("Out-of-bounds write at 0x"), "{text}");
    // SAFETY: ours.
    unsafe { m.kfree(p) };
    let p = alloc(&m, 32, Side::Right);
    // SAFETY: as above, after the object.
    unsafe { p.add(32).write_volatile(0x42) };
    expect_report(&m, 1, "BUG: KFENCE: out-of-bounds write");
    // SAFETY: ours.
    unsafe { m.kfree(p) };
    still_works(&m);
}

#[test]
fn use_after_free_read_and_write() {
    let m = machine();
    let p = alloc(&m, 32, Side::Left);
    // SAFETY: freed, then read on purpose: the page is protected, KFENCE reports.
    unsafe { m.kfree(p) };
    // SAFETY: deliberate use after free (KFENCE catches it).
    let _ = unsafe { p.read_volatile() };
    let text = expect_report(&m, 0, "BUG: KFENCE: use-after-free read");
    assert!(text.contains("Use-after-free read at 0x"), "{text}");
    assert!(text.contains("freed by task "), "both records: {text}");

    let p = alloc(&m, 32, Side::Right);
    // SAFETY: as above, a write.
    unsafe { m.kfree(p) };
    // SAFETY: deliberate use after free (KFENCE catches it).
    unsafe { p.write_volatile(1) };
    expect_report(&m, 1, "BUG: KFENCE: use-after-free write");
    assert_eq!(m.kfence_stats().errors[1], 2);
    still_works(&m);
}

#[test]
fn double_free_and_invalid_free() {
    let m = machine();
    let p = alloc(&m, 32, Side::Left);
    // SAFETY: the second free is the bug; KFENCE refuses it.
    unsafe {
        m.kfree(p);
        m.kfree(p);
    }
    let text = expect_report(&m, 0, "BUG: KFENCE: invalid free");
    assert!(title(&text).contains("tests/kfence.rs"), "the free's call site: {text}");
    assert!(text.contains("Invalid free of 0x"), "{text}");

    let p = alloc(&m, 32, Side::Left);
    // SAFETY: an interior pointer: refused, the object stays live.
    unsafe { m.kfree(p.add(1)) };
    expect_report(&m, 1, "BUG: KFENCE: invalid free");
    assert_eq!(m.kfence_stats().allocated, 1, "the object is still allocated");
    // SAFETY: the real free.
    unsafe { m.kfree(p) };
    assert_eq!(m.kfence_stats().allocated, 0);
    assert_eq!(m.kfence_stats().errors[4], 2);
    still_works(&m);
}

#[test]
fn canary_corruption_is_found_at_free() {
    let m = machine();
    let p = alloc(&m, 32, Side::Left);
    // SAFETY: a write just past a left object stays on its page: only the canary sees it.
    unsafe {
        p.add(32).write_volatile(0x42);
        m.kfree(p);
    }
    let text = expect_report(&m, 0, "BUG: KFENCE: memory corruption");
    assert!(text.contains("Corrupted memory at 0x"), "{text}");
    assert!(text.contains("[ 0x42 . ."), "the damaged byte shown: {text}");

    let p = alloc(&m, 32, Side::Right);
    // SAFETY: before a right object, on its page.
    unsafe {
        p.sub(3).write_volatile(0x43);
        m.kfree(p);
    }
    expect_report(&m, 1, "BUG: KFENCE: memory corruption");

    // kfence_test's test_kmalloc_aligned_oob_write: 73 bytes in kmalloc-96 (8-aligned), right:
    // the bytes between the object's end and the guard page are canary.
    let p = alloc(&m, 73, Side::Right);
    assert!(PAGE_SIZE - p as usize % PAGE_SIZE > 73);
    // SAFETY: past the object, before the guard page.
    unsafe {
        p.add(73).write_volatile(0);
        m.kfree(p);
    }
    let text = expect_report(&m, 2, "BUG: KFENCE: memory corruption");
    assert!(text.contains("size=73, cache=kmalloc-96"), "{text}");
    assert_eq!(m.kfence_stats().errors[2], 3);
    still_works(&m);
}

fn ctor(b: &mut [u8]) {
    b.fill(0x5a);
}

#[test]
fn kmem_cache_objects_with_and_without_ctor() {
    let m = machine();
    for with_ctor in [false, true] {
        let c =
            m.kmem_cache_create("kfence_test_cache", 48, 0, SlabFlags::NONE, with_ctor.then_some(ctor as _)).unwrap();
        assert!(m.kfence_force_next());
        let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
        assert!(m.is_kfence_address(p.as_ptr()));
        // SAFETY: a live 48-byte object.
        let b = unsafe { core::slice::from_raw_parts(p.as_ptr(), 48) };
        if with_ctor {
            assert!(b.iter().all(|&x| x == 0x5a), "the constructor ran");
        }
        // SAFETY: ours, from `c`.
        unsafe { m.kmem_cache_free(&c, p) };
        // A use after free of a cache object is caught too.
        // SAFETY: deliberate.
        let _ = unsafe { p.as_ptr().read_volatile() };
        let t = reports(&m).pop().unwrap();
        assert!(title(&t).starts_with("BUG: KFENCE: use-after-free read in "), "{t}");
        assert!(t.contains("size=48, cache=kfence_test_cache"), "{t}");
        m.kmem_cache_destroy(c);
    }
    // zeroed allocations from the pool are zeroed over the object only
    let c = m.kmem_cache_create("kfence_zero", 40, 0, SlabFlags::NONE, None).unwrap();
    assert!(m.kfence_force_next());
    let p = m.kmem_cache_zalloc(&c, Gfp::KERNEL).unwrap();
    // SAFETY: live, 40 bytes.
    assert!(unsafe { core::slice::from_raw_parts(p.as_ptr(), 40) }.iter().all(|&x| x == 0));
    // SAFETY: ours.
    unsafe { m.kmem_cache_free(&c, p) };
    assert_eq!(m.report_count(ReportKind::Kfence), 2);
    m.kmem_cache_destroy(c);
    still_works(&m);
}

/// `SLAB_TYPESAFE_BY_RCU` caches are not sampled: their objects may be read by RCU readers
/// after the free, which a protected KFENCE page would report as a use-after-free.
#[test]
fn typesafe_by_rcu_caches_are_not_sampled() {
    let m = machine();
    let c = m.kmem_cache_create("kfence_rcu", 64, 0, SlabFlags::TYPESAFE_BY_RCU, None).unwrap();
    let skipped = m.kfence_stats().skip_incompat;
    assert!(m.kfence_force_next());
    let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    assert!(!m.is_kfence_address(p.as_ptr()), "a TYPESAFE_BY_RCU object came from the pool");
    assert_eq!(m.kfence_stats().skip_incompat, skipped + 1);
    // SAFETY: ours, from `c`.
    unsafe { m.kmem_cache_free(&c, p) };
    // The gate stayed open: the next compatible allocation is sampled.
    let q = m.kmalloc(64, Gfp::KERNEL).unwrap();
    assert!(m.is_kfence_address(q.as_ptr()));
    // SAFETY: ours.
    unsafe { m.kfree(q.as_ptr()) };
    m.kmem_cache_destroy(c);
    assert_eq!(m.report_count(ReportKind::Kfence), 0);
    still_works(&m);
}

#[test]
fn krealloc_and_ksize_of_kfence_objects() {
    let m = machine();
    let p = alloc(&m, 32, Side::Left);
    // SAFETY: a live object; ksize is the size asked for, not the bucket.
    assert_eq!(unsafe { m.ksize(p) }, 32);
    // SAFETY: live, 32 bytes.
    unsafe { p.write_bytes(0x77, 32) };
    // Within the size: in place.
    // SAFETY: ours.
    let q = unsafe { m.krealloc(p, 16, Gfp::KERNEL) }.unwrap().as_ptr();
    assert_eq!(q, p);
    // Larger: a new (ordinary) block with the contents; the old object is freed.
    // SAFETY: ours.
    let n = unsafe { m.krealloc(p, 100, Gfp::KERNEL) }.unwrap().as_ptr();
    assert!(!m.is_kfence_address(n));
    // SAFETY: the new block holds the old 32 bytes.
    assert!(unsafe { core::slice::from_raw_parts(n, 32) }.iter().all(|&b| b == 0x77));
    assert_eq!(m.kfence_stats().allocated, 0, "the old object was freed");
    // The old pointer is dead: kfence_test's test_krealloc reads it.
    // SAFETY: deliberate.
    let _ = unsafe { p.read_volatile() };
    expect_report(&m, 0, "BUG: KFENCE: use-after-free read");
    // SAFETY: ours.
    unsafe { m.kfree(n) };
    // kvfree takes KFENCE objects to kfree (the pool is not vmalloc memory).
    let p = alloc(&m, 64, Side::Right);
    assert!(!m.is_vmalloc_addr(p));
    // SAFETY: ours.
    unsafe { m.kvfree(p) };
    assert_eq!(m.kfence_stats().allocated, 0);
    still_works(&m);
}

#[test]
fn allocations_from_irq_context() {
    let m = machine();
    let p = in_irq(|| {
        assert!(m.platform().in_interrupt());
        assert!(m.kfence_force_next());
        m.kmalloc(48, Gfp::ATOMIC).unwrap().as_ptr() as usize
    });
    assert!(m.is_kfence_address(p as *const u8));
    in_irq(|| {
        // SAFETY: ours; the free from IRQ context, then a use after free in it.
        unsafe { m.kfree(p as *const u8) };
        // SAFETY: deliberate use after free (KFENCE catches it).
        let _ = unsafe { (p as *const u8).read_volatile() };
    });
    expect_report(&m, 0, "BUG: KFENCE: use-after-free read");
    assert_eq!(m.report_count(ReportKind::SleepInAtomic), 0);
    still_works(&m);
}

#[test]
fn sampling_interval_gates_the_careful_path() {
    let cfg = KfenceConfig { sample_interval_ms: 1, num_objects: 15 };
    let m = MachineBuilder::new().ram_mib(64).cpus(1).kfence(cfg).build().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3));
    // A node request always takes the careful path, where the gate is.
    let p = m.kmalloc_node(64, Gfp::KERNEL, Some(0)).unwrap().as_ptr();
    assert!(m.is_kfence_address(p), "the first careful allocation after the interval");
    let q = m.kmalloc_node(64, Gfp::KERNEL, Some(0)).unwrap().as_ptr();
    assert!(!m.is_kfence_address(q), "one allocation per interval");
    // SAFETY: ours.
    unsafe { m.kfree(p) };
    // SAFETY: ours.
    unsafe { m.kfree(q) };
    // 0 disables at run time.
    assert!(m.kfence_set_sample_interval(0));
    assert!(!m.kfence_stats().enabled);
    std::thread::sleep(std::time::Duration::from_millis(3));
    let p = m.kmalloc_node(64, Gfp::KERNEL, Some(0)).unwrap().as_ptr();
    assert!(!m.is_kfence_address(p));
    // SAFETY: ours.
    unsafe { m.kfree(p) };
    assert_eq!(m.kfence_stats().allocs, 1);
}

#[test]
fn cache_destroy_turns_live_objects_into_zombies() {
    let m = machine();
    let c = m.kmem_cache_create("kfence_zombie", 24, 0, SlabFlags::NONE, None).unwrap();
    assert!(m.kfence_force_next());
    let p = m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
    assert!(m.is_kfence_address(p.as_ptr()));
    m.kmem_cache_destroy(c);
    let st = m.kfence_stats();
    assert_eq!((st.zombies, st.allocated), (1, 0));
    let mut objs = String::new();
    m.kfence_write_objects(&mut objs).unwrap();
    assert!(objs.contains("size=24, cache=<destroyed>"), "{objs}");
    still_works(&m);
}

#[test]
fn kfence_off_by_default_and_other_faults_still_kill() {
    let plain = MachineBuilder::new().ram_mib(32).build().unwrap();
    assert!(!plain.kfence_force_next());
    assert_eq!(plain.kfence_stats().num_objects, 0);
    let m = machine();
    // A vmalloc guard page outside the pool: the previous SIGSEGV action (death) still runs.
    let v = m.vmalloc(PAGE_SIZE).unwrap();
    let end = v.as_ptr() as usize + PAGE_SIZE;
    // SAFETY: deliberate, in a forked child.
    assert_eq!(common::in_child(|| unsafe { (end as *mut u8).write_volatile(1) }), Some(libc::SIGSEGV));
    // SAFETY: ours.
    unsafe { m.vfree(v.as_ptr()) };
}

#[test]
fn debugfs_stats_and_objects_views() {
    let m = machine();
    let p = alloc(&m, 40, Side::Left);
    let q = alloc(&m, 40, Side::Left);
    // SAFETY: ours; the second free of `q` is a bug KFENCE counts.
    unsafe {
        m.kfree(q);
        m.kfree(q);
    }
    let st = m.kfence_stats();
    let mut s = String::new();
    kmem::proc::kfence_stats(&m, &mut s).unwrap();
    let want = format!(
        "enabled: 1\ncurrently allocated: 1\ntotal allocations: {}\ntotal frees: {}\nzombie allocations: 0\n\
         total bugs: 1\nskipped allocations (incompatible): 0\nskipped allocations (capacity): 0\n\
         skipped allocations (covered): 0\n",
        st.allocs, st.frees
    );
    assert_eq!(s, want);
    let mut o = String::new();
    kmem::proc::kfence_objects(&m, &mut o).unwrap();
    let live =
        format!("0x{:016x}-0x{:016x}, size=40, cache=kmalloc-64\n\nallocated by task ", p as usize, p as usize + 39);
    assert!(o.contains(&live), "{o}");
    assert!(o.contains("\nfreed by task "), "the freed object's record: {o}");
    assert_eq!(o.matches("---------------------------------\n").count() as u64, st.allocs.min(31));
    // SAFETY: ours.
    unsafe { m.kfree(p) };
    // Without a pool: enabled 0, zero counters, no objects.
    let plain = MachineBuilder::new().ram_mib(32).build().unwrap();
    let mut s = String::new();
    kmem::proc::kfence_stats(&plain, &mut s).unwrap();
    assert!(s.starts_with("enabled: 0\ncurrently allocated: 0\n"));
    let mut o = String::new();
    kmem::proc::kfence_objects(&plain, &mut o).unwrap();
    assert!(o.is_empty());
}

#[test]
fn faults_of_other_threads_are_reported_too() {
    let m = machine();
    std::thread::scope(|s| {
        s.spawn(|| {
            // A thread started after the machine: its first use gives it a signal stack
            // large enough for the report.
            let p = alloc(&m, 32, Side::Right);
            // SAFETY: deliberate out-of-bounds read past a right-placed object.
            let _ = unsafe { p.add(40).read_volatile() };
            // SAFETY: ours.
            unsafe { m.kfree(p) };
        });
    });
    let text = expect_report(&m, 0, "BUG: KFENCE: out-of-bounds read");
    assert!(text.contains("(40B right of kfence-#"), "{text}");
    still_works(&m);
}

#[test]
fn invalid_access_to_the_pool_and_bulk_frees() {
    let m = machine();
    // kfence_test's test_invalid_access: the pool's first page belongs to no object.
    let (start, end) = m.kfence_pool_range().unwrap();
    assert_eq!(end.as_usize() - start.as_usize(), 2 * (31 + 1) * PAGE_SIZE);
    let a = (start.as_usize() + 10) as *const u8;
    // SAFETY: deliberate: a read of a KFENCE guard page.
    let _ = unsafe { a.read_volatile() };
    let text = expect_report(&m, 0, "BUG: KFENCE: invalid read");
    assert!(text.contains(&format!("Invalid read at 0x{:016x}:", a as usize)), "{text}");
    assert_eq!(m.kfence_stats().errors[3], 1);
    // kfence_test's test_free_bulk: KFENCE objects freed with kmem_cache_free_bulk.
    let c = m.kmem_cache_create("kfence_bulk", 64, 0, SlabFlags::NONE, None).unwrap();
    let mut objs = [None, None, None];
    for o in &mut objs {
        assert!(m.kfence_force_next());
        *o = Some(m.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap());
    }
    assert!(objs.iter().all(|o| m.is_kfence_address(o.unwrap().as_ptr())));
    // SAFETY: ours, from `c`.
    unsafe { m.kmem_cache_free_bulk(&c, &mut objs) };
    assert_eq!(m.kfence_stats().allocated, 0);
    assert_eq!(m.report_count(ReportKind::Kfence), 1);
    m.kmem_cache_destroy(c);
    still_works(&m);
}
