//! The fast tables' tests: the entries of kmalloc classes and named caches (`entries`), the
//! ids from `FAST_IDS` on, which have none (`id_tests`), and the table's layout against the
//! blocks of every kmalloc class (`layout_tests`).

mod entries {
    use super::super::{FastTable, FAST_IDS};
    use crate::gfp::Gfp;
    use crate::kmalloc::kmalloc_index;
    use crate::slab::SlabFlags;
    use crate::testing;

    /// The address of the sheaf CPU 0's entry `word` names, 0 for the empty sheaf (the test
    /// platform's caller is CPU 0).
    fn entry(k: &crate::Kmem<testing::TestPlatform>, word: usize) -> usize {
        let v = k.fast_table(0).words[word].load(crate::sync::Ordering::Relaxed);
        assert_ne!(v, 0, "CPU 0's table is written at boot");
        if v == crate::slab::sheaf::empty_sheaf() {
            0
        } else {
            v
        }
    }

    /// This thread's minor page faults so far (`/proc/thread-self/stat`, field 10).
    /// Read into a buffer on the stack: the reading itself touches no new heap page.
    fn thread_minflt() -> u64 {
        use testing::std::io::Read;
        let mut buf = [0u8; 1024];
        let mut f = testing::std::fs::File::open("/proc/thread-self/stat").unwrap();
        let n = f.read(&mut buf).unwrap();
        let stat = core::str::from_utf8(&buf[..n]).unwrap();
        // The command name (field 2) may hold spaces: count from the `)` that ends it.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(7).unwrap().parse().unwrap()
    }

    /// A CPU's first touch of its table is a write (`init`'s compare-exchange): on memory the
    /// host maps on demand, one page fault per page of the table, not a load's fault (which
    /// maps the shared zero page) and then a store's.
    #[test]
    fn a_fresh_table_costs_one_page_fault_a_page() {
        use testing::std::alloc::{alloc_zeroed, dealloc, Layout};
        const PAGE: usize = crate::PAGE_SIZE;
        // Larger than glibc's largest mmap threshold (32 MiB), so the C library maps it fresh
        // and, knowing it zero, writes none of it (`calloc` of an `mmap` chunk; a page
        // alignment would make the allocator clear it): untouched pages.
        let layout = Layout::from_size_align(64 << 20, 16).unwrap();
        // SAFETY: a non-zero size.
        let buf = unsafe { alloc_zeroed(layout) } as usize;
        assert_ne!(buf, 0);
        let page = buf.next_multiple_of(PAGE);
        // SAFETY: zeroed memory, page-aligned, large enough, ours: a table never written. The
        // first one takes the code's and statics' first faults, outside the count.
        let warm = unsafe { FastTable::at(page + 8 * PAGE) };
        warm.init();
        let at = page + 16 * PAGE;
        let pages = (at + core::mem::size_of::<FastTable>()).div_ceil(PAGE) - at / PAGE;
        // SAFETY: as above, pages nobody touched.
        // (Nothing reads it before `init`: a load would map the zero page outside the count.)
        let t = unsafe { FastTable::at(at) };
        let _ = thread_minflt(); // the reader's own first faults, before the count
        let before = thread_minflt();
        t.init();
        let after = thread_minflt();
        assert!(t.is_ready());
        assert_eq!(after - before, pages as u64, "faults writing a fresh table of {pages} page(s)");
        // SAFETY: allocated above with `layout`.
        unsafe { dealloc(buf as *mut u8, layout) };
    }

    /// A cache's id entry names its CPU's main sheaf once the CPU has used it, and nothing
    /// once the cache is destroyed: its id may name another cache next, whose frees must not
    /// reach the dead cache's sheaves.
    #[test]
    fn a_destroyed_cache_leaves_no_entry() {
        let k = testing::machine(64);
        let c = k.kmem_cache_create("ft_test", 100, 0, SlabFlags::NONE, None).unwrap();
        let id = c.id as usize;
        assert!(id < FAST_IDS, "an early cache has a fast id ({id})");
        let word = FastTable::id_word(id);
        assert_eq!(entry(&k, word), 0, "no entry before the CPU uses the cache");
        let p = k.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap();
        let main = c.pcs(&k, 0).main_addr();
        assert!(main != 0 && entry(&k, word) == main, "the careful allocation filled the entry");
        // SAFETY: ours, freed once: by kfree, through the entry.
        unsafe { k.kfree(p.as_ptr()) };
        assert_eq!(k.kmem_cache_alloc(&c, Gfp::KERNEL).unwrap(), p, "the free went to the CPU's sheaf");
        // SAFETY: as above.
        unsafe { k.kmem_cache_free(&c, p) };
        drop(c);
        assert_eq!(entry(&k, word), 0, "destroy cleared the entry");
        let d = k.kmem_cache_create("ft_test2", 200, 0, SlabFlags::NONE, None).unwrap();
        assert_eq!(d.id as usize, id, "the next cache takes the free id");
        let q = k.kmem_cache_alloc(&d, Gfp::KERNEL).unwrap();
        assert_eq!(entry(&k, word), d.pcs(&k, 0).main_addr());
        // SAFETY: ours, freed once.
        unsafe { k.kfree(q.as_ptr()) };
        assert_eq!(k.report_count(crate::ReportKind::SlabBug), 0);
    }

    /// A kmalloc class's entry exists while nothing is armed: arming failslab clears it (the
    /// allocation fast path then declines, so the careful path's injection runs), the careful
    /// path does not fill it again until failslab is disarmed, and a change of the CPU's main
    /// sheaf while armed does not bring it back.
    #[test]
    fn arming_clears_the_class_entries() {
        let k = testing::machine(64);
        let word = FastTable::class_word(kmalloc_index(64));
        let p = k.kmalloc(64, Gfp::KERNEL).unwrap();
        assert_ne!(entry(&k, word), 0, "the careful kmalloc filled the class's entry");
        // SAFETY: ours, freed once.
        unsafe { k.kfree(p.as_ptr()) };
        assert_eq!(k.kmalloc_try_fast(64, Gfp::KERNEL), Some(p), "served through the entry");
        // SAFETY: as above.
        unsafe { k.kfree(p.as_ptr()) };
        k.failslab().unwrap().set_probability(100).set_times(-1).set_verbose(0);
        assert_eq!(entry(&k, word), 0, "arming cleared it");
        assert!(k.kmalloc_try_fast(64, Gfp::ATOMIC).is_none());
        assert!(k.kmalloc(64, Gfp::ATOMIC).is_err(), "the careful path injected the failure");
        assert_eq!(entry(&k, word), 0, "and did not fill the entry while armed");
        let c = k.kmalloc_slab(64, Gfp::KERNEL).unwrap();
        let pcs = c.pcs(&k, 0);
        // Two exchanges of the main sheaf with a stand-in spare, which nothing dereferences
        // (this CPU allocates nothing meanwhile): neither may fill the cleared entry.
        let stand_in = [0u64; 4];
        let m = pcs.main_addr();
        let sp = pcs.set_spare(stand_in.as_ptr() as usize);
        pcs.swap();
        assert_eq!(entry(&k, word), 0, "a change of the main sheaf left it empty while armed");
        pcs.swap();
        pcs.set_spare(sp);
        assert_eq!((pcs.main_addr(), entry(&k, word)), (m, 0), "and so did the change back");
        k.failslab().unwrap().set_probability(0);
        assert_eq!(entry(&k, word), 0, "disarming gives no entry back");
        let q = k.kmalloc(64, Gfp::KERNEL).unwrap();
        assert_eq!(entry(&k, word), pcs.main_addr(), "the next careful allocation filled it");
        // SAFETY: ours, freed once.
        unsafe { k.kfree(q.as_ptr()) };
        assert_eq!(k.kmalloc_try_fast(64, Gfp::KERNEL), Some(q), "the fast path again");
        // SAFETY: as above.
        unsafe { k.kfree(q.as_ptr()) };
    }

    /// The entries follow the CPU's main sheaf: an allocation that empties it and a free that
    /// fills it exchange it (with the spare, the stash or the barn), and both the class entry
    /// (`kmalloc`) and the id entry (`kfree`) name the new main sheaf at once, or nothing.
    #[test]
    fn the_entries_follow_the_main_sheaf() {
        let k = testing::machine(64);
        let (cw, c) = (FastTable::class_word(kmalloc_index(64)), k.kmalloc_slab(64, Gfp::KERNEL).unwrap());
        let iw = FastTable::id_word(c.id as usize);
        let mut held = [core::ptr::null_mut::<u8>(); 1000];
        for round in 0..3 {
            for (i, h) in held.iter_mut().enumerate() {
                *h = k.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
                let main = c.pcs(&k, 0).main_addr();
                for w in [cw, iw] {
                    let e = entry(&k, w);
                    assert!(e == main || e == 0, "round {round}, allocation {i}: entry {e:#x}, main {main:#x}");
                }
            }
            for (i, &h) in held.iter().enumerate() {
                // SAFETY: ours, freed once.
                unsafe { k.kfree(h) };
                let main = c.pcs(&k, 0).main_addr();
                for w in [cw, iw] {
                    let e = entry(&k, w);
                    assert!(e == main || e == 0, "round {round}, free {i}: entry {e:#x}, main {main:#x}");
                }
            }
        }
        assert_ne!(entry(&k, iw), 0, "the frees kept the id entry");
        assert_eq!(k.report_count(crate::ReportKind::SlabBug), 0);
    }
}

mod id_tests {
    use super::super::FAST_IDS;
    use crate::gfp::Gfp;
    use crate::slab::SlabFlags;
    use crate::testing;

    /// Caches with ids from [`FAST_IDS`] on have no entries and free the careful way, and the
    /// id table's slots from there on stay 0 until an id reaches them (the table's later
    /// pages are not written when it is installed).
    #[test]
    fn caches_past_the_fast_ids_free_the_careful_way() {
        let k = testing::machine(64);
        let slot = |id: usize| {
            let t = k.slab().id_table().expect("installed by the first create");
            t[id].load(crate::sync::Ordering::Relaxed)
        };
        let mut caches: [Option<crate::slab::Cache<'_, _>>; 2 * FAST_IDS] = core::array::from_fn(|_| None);
        let mut n = 0;
        while caches[..n].last().is_none_or(|c| (c.as_ref().unwrap().id as usize) < FAST_IDS + 2) {
            caches[n] = Some(k.kmem_cache_create("ft_ids", 32 + 8 * n, 0, SlabFlags::NO_MERGE, None).unwrap());
            n += 1;
        }
        assert_eq!(slot(FAST_IDS * 4), 0, "a slot no id reached is untouched");
        for c in caches[..n].iter().flatten() {
            let p = k.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
            // SAFETY: ours, freed once (by kfree: the fast path below FAST_IDS, else careful).
            unsafe { k.kfree(p.as_ptr()) };
            assert_eq!(k.kmem_cache_alloc(c, Gfp::KERNEL).unwrap(), p, "{}: back on the CPU's sheaf", c.id);
            // SAFETY: as above.
            unsafe { k.kmem_cache_free(c, p) };
        }
        let last = caches[n - 1].take().unwrap();
        let id = last.id;
        drop(last);
        let again = k.kmem_cache_create("ft_ids2", 4000, 0, SlabFlags::NO_MERGE, None).unwrap();
        assert_eq!(again.id, id, "a freed id past FAST_IDS is reused");
        assert_eq!(k.report_count(crate::ReportKind::SlabBug), 0);
    }
}

mod layout_tests {
    use super::super::FastTable;
    use crate::kmalloc::{kmalloc_size, KMALLOC_NR};
    use core::mem::offset_of;

    /// Whether an access of `len` bytes at page offset `at` overlaps the first word (the
    /// free pointer's tag) of a block of `size` bytes from a page-aligned slab of any order.
    fn meets_a_block(at: usize, len: usize, size: usize) -> bool {
        (0..(32 << 12) / size).any(|k| {
            let start = k * size % 4096;
            start < at + len && at < start + 8
        })
    }

    #[test]
    fn no_class_entry_shares_its_blocks_low_bits() {
        let align = core::mem::align_of::<FastTable>();
        for base in (0..4096).step_by(align) {
            for class in 1..KMALLOC_NR {
                let size = kmalloc_size(class);
                if size < 16 {
                    continue;
                }
                let entry = base + offset_of!(FastTable, words) + 8 * FastTable::class_word(class);
                let fp = base + offset_of!(FastTable, class_fp) + 4 * class;
                assert!(!meets_a_block(entry % 4096, 8, size), "kmalloc-{size}'s entry, table at {base:#x}");
                assert!(!meets_a_block(fp % 4096, 4, size), "kmalloc-{size}'s offset word, table at {base:#x}");
            }
        }
    }
}
