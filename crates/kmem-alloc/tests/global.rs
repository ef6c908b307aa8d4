//! kmem as this test binary's global allocator: std collections across threads, huge
//! blocks, realloc growth, alignment.

use std::collections::{BTreeMap, HashMap};

use kmem_alloc::{global, KmemAlloc};

#[global_allocator]
static A: KmemAlloc = KmemAlloc;

#[test]
fn std_collections_across_threads() {
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut h: HashMap<u64, String> = HashMap::new();
                let mut b: BTreeMap<String, Vec<u64>> = BTreeMap::new();
                for i in 0..20_000u64 {
                    h.insert(i, format!("value-{t}-{i}"));
                    b.entry(format!("k{}", i % 500)).or_default().push(i);
                    if i % 3 == 0 {
                        h.remove(&(i / 2));
                    }
                }
                let total: usize = h.values().map(String::len).sum::<usize>() + b.values().map(Vec::len).sum::<usize>();
                (t, total, h.len(), b.len())
            })
        })
        .collect();
    for h in handles {
        let (_, total, hl, bl) = h.join().unwrap();
        assert!(total > 0 && hl > 10_000 && bl == 500);
    }
    let m = global::machine().expect("the global machine booted");
    let mut s = String::new();
    kmem::proc::slabinfo(m, &mut s).unwrap();
    assert!(s.contains("kmalloc-32 "), "the collections came from kmalloc:\n{s}");
}

/// The machine sizes its slabs for the host's CPUs, as Linux would on this host
/// (`slab_min_objects = 4 * (fls(cpus) + 1)`), not for its pool of thread CPUs (at least 64,
/// which would make every kmalloc-1k slab 32 objects): kmalloc-1k's slabs hold the fewest
/// objects of a power-of-two page count that reach that minimum (at most 32, order 3).
#[test]
fn slabs_are_sized_for_the_host_cpus() {
    let blocks: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 1000]).collect();
    let m = global::machine().expect("booted");
    let mut s = String::new();
    kmem::proc::slabinfo(m, &mut s).unwrap();
    drop(blocks);
    let cpus = global::host_cpus();
    let min = 4 * (usize::BITS - cpus.leading_zeros() + 1);
    let expect = (0..=3u32).map(|order| 4u32 << order).find(|&n| n >= min).unwrap_or(32);
    let line = s.lines().find(|l| l.starts_with("kmalloc-1k ")).expect("kmalloc-1k in slabinfo");
    let objperslab: u32 = line.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert_eq!(objperslab, expect, "{cpus} host CPUs: {line}");
}

/// The process machine's sheaves: 256 objects for the classes up to 512 bytes
/// (`slab_sheaf_max(256)`, 128 KiB of objects a sheaf), 128 for 1 KiB, so that a thread's
/// burst of a thousand small blocks stays within its CPU's sheaves; the `kmem_sheaf`
/// objects are sized for them.
#[test]
fn sheaves_hold_256_small_objects() {
    let blocks: Vec<Box<[u8; 64]>> = (0..16).map(|_| Box::new([7u8; 64])).collect();
    let m = global::machine().expect("booted");
    for (size, want) in [(16, 256), (64, 256), (512, 256), (1024, 128)] {
        let c = m.kmalloc_slab(size, kmem::Gfp::KERNEL).expect("a kmalloc class");
        assert_eq!(c.sheaf_capacity(), want, "kmalloc class of {size} bytes");
    }
    let mut s = String::new();
    kmem::proc::slabinfo(m, &mut s).unwrap();
    let line = s.lines().find(|l| l.starts_with("kmem_sheaf ")).expect("kmem_sheaf in slabinfo");
    let objsize: usize = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(objsize >= 16 + 256 * 8, "a sheaf object holds 256 slots: {line}");
    drop(blocks);
}

/// A thread's frees on the process machine find their blocks through its copy of the
/// machine's free map (`ProcessCpu::free_map`): the copy every thread takes with its CPU is
/// the machine's own, and covers the machine's RAM, so that no small block's free misses it
/// (a free the map misses still frees, the machine's whole way, but slowly).
#[test]
fn every_thread_frees_through_the_machines_free_map() {
    let check = || {
        let b = Box::new([1u8; 64]);
        drop(b);
        let cpu = kmem_hosted::ProcessCpu::current().expect("the thread's gate is open after a free");
        let m = cpu.machine().expect("booted");
        assert_ne!(m.free_map(), kmem::FreeMap::EMPTY, "the process machine's memmap is dense");
        assert_eq!(cpu.free_map(), m.free_map(), "the thread's copy is the machine's");
        assert!(cpu.free_map().covers(m.ram_mapping_len() as u64), "the map covers the RAM");
    };
    check();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(check);
        }
    });
}

#[test]
fn huge_blocks_and_realloc_growth_keep_their_contents() {
    for round in 0..50usize {
        let size = (5 + round % 21) << 20; // 5..25 MiB, above KMALLOC_MAX_SIZE
        let mut v = vec![0u8; size];
        v[size - 1] = 1;
        assert_eq!(v.iter().rev().take(4096).filter(|&&b| b == 1).count(), 1);
    }
    let mut v: Vec<u64> = Vec::with_capacity(16);
    for i in 0..3_000_000u64 {
        v.push(i); // realloc growth through every size class and up to 24 MiB
    }
    assert_eq!(v.iter().sum::<u64>(), 3_000_000 * 2_999_999 / 2);
}

#[test]
fn alignment_is_honoured() {
    for align in [1usize, 8, 16, 64, 256, 4096, 1 << 16, 1 << 21, 1 << 23] {
        for size in [1usize, 24, 100, 5000, 1 << 20, 5 << 20] {
            let l = std::alloc::Layout::from_size_align(size, align).unwrap();
            // SAFETY: a non-zero-size layout; freed with the same layout.
            unsafe {
                let p = std::alloc::alloc(l);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "size {size} align {align}");
                p.write_bytes(0xaa, size);
                std::alloc::dealloc(p, l);
            }
        }
    }
}

#[test]
fn sixteen_byte_alignment_takes_the_exact_class() {
    // C's malloc promises 16; kmalloc-96 and kmalloc-192 keep it, so 80 bytes cost 96, not 128.
    for (size, usable) in [(8usize, 16usize), (80, 96), (96, 96), (150, 192), (192, 192), (200, 256)] {
        let l = std::alloc::Layout::from_size_align(size, 16).unwrap();
        // SAFETY: a non-zero-size layout; freed with the same layout.
        unsafe {
            let p = std::alloc::alloc(l);
            assert_eq!(p as usize % 16, 0, "size {size}");
            assert_eq!(kmem_alloc::raw::usable_size(p), usable, "size {size}");
            std::alloc::dealloc(p, l);
        }
    }
}

/// `dealloc` takes the block's cache from its `Layout` (`raw::free_sized`): blocks whose
/// class is not their layout's (`realloc` kept them in place in a larger bucket, zeroed and
/// over-aligned ones) are freed the long way, and every block comes back: nothing reported,
/// no misuse counted, the next allocation of the class reuses the freed block.
#[test]
fn dealloc_by_layout_frees_blocks_outside_their_layout_s_class() {
    use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
    let misuse_before = kmem_alloc::misuse::total();
    // SAFETY: every block is freed once, with the layout it has then (GlobalAlloc's rules).
    unsafe {
        // realloc shrinks kmalloc-192's block in place: its layout says 100 bytes (kmalloc-128).
        let l = Layout::from_size_align(180, 8).unwrap();
        let p = alloc(l);
        let q = realloc(p, l, 100);
        assert_eq!(p, q, "a shrink within the bucket stays in place");
        dealloc(q, Layout::from_size_align(100, 8).unwrap());
        let r = alloc(l);
        assert_eq!(r, p, "the block went back to kmalloc-192's sheaf");
        dealloc(r, l);
        // The right class, every kind of request.
        for (size, align) in [(1usize, 1usize), (24, 8), (80, 16), (1000, 8), (8192, 8), (100, 64), (5000, 4096)] {
            let l = Layout::from_size_align(size, align).unwrap();
            for zero in [false, true] {
                let p = if zero { alloc_zeroed(l) } else { alloc(l) };
                assert!(!p.is_null());
                dealloc(p, l);
                let q = alloc(l);
                assert_eq!(q, p, "size {size} align {align}: freed to its class's sheaf");
                dealloc(q, l);
            }
        }
    }
    assert_eq!(kmem_alloc::misuse::total(), misuse_before);
    let m = global::machine().expect("booted");
    let reports: u64 = kmem::ReportKind::ALL.iter().map(|&k| m.report_count(k)).sum();
    assert_eq!(reports, 0);
}

/// A program's threads, up to the machine's possible CPUs (at least
/// `global::DEFAULT_POSSIBLE_CPUS`, 256), each own a CPU: none borrows one for each operation,
/// which stops another thread's CPU and costs a thousand times a fast path (fails with the
/// former 64 on a host of fewer than 25 CPUs).
#[test]
fn a_hundred_live_threads_each_own_a_cpu() {
    const THREADS: usize = 100;
    assert!(global::possible_cpus() >= THREADS || std::env::var_os("KMEM_CPUS").is_some());
    let barrier = std::sync::Barrier::new(THREADS);
    let owned = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                drop(Box::new([1u8; 64]));
                // All alive at once: each holds its CPU while the others take theirs.
                barrier.wait();
                drop(Box::new([2u8; 64]));
                if kmem_hosted::ProcessCpu::current().is_some() {
                    owned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                barrier.wait();
            });
        }
    });
    assert_eq!(owned.into_inner(), THREADS, "every live thread owns a CPU of the machine");
}

/// Threads beyond the possible CPUs run on the machine's overflow CPUs (the last
/// `global::overflow_cpus` of them, which no thread owns), not on owned CPUs that they would
/// stop for each operation (a thousand times a fast path: 200 live threads looping on
/// `malloc` + `free` took 8.1 us a pair that way). Fails with the overflow CPUs turned off.
#[test]
fn threads_beyond_the_possible_cpus_run_on_the_overflow_cpus() {
    use kmem::Platform;
    let possible = global::possible_cpus();
    let overflow = global::overflow_cpus(possible, global::host_cpus());
    assert!(overflow > 0 || std::env::var_os("KMEM_CPUS").is_some());
    let owned_cpus = possible - overflow;
    let threads = possible + 20;
    let barrier = std::sync::Barrier::new(threads);
    // Each thread's CPU and whether it owns it, checked once all are done (a thread that
    // failed an assertion would leave the others waiting at the barrier).
    let seen = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for i in 0..threads {
            let (barrier, seen) = (&barrier, &seen);
            s.spawn(move || {
                drop(Box::new([1u8; 64]));
                barrier.wait();
                let v: Vec<u64> = (0..100).map(|j| j * i as u64).collect();
                // A fast path last (a careful one, such as the vector's first block of its
                // class, leaves the thread's fast gate closed until the next fast path).
                drop(Box::new([2u8; 64]));
                drop(Box::new([3u8; 64]));
                let m = global::machine().expect("booted");
                let cpu = m.platform().current_cpu().index();
                let owns = kmem_hosted::ProcessCpu::current().is_some();
                seen.lock().unwrap().push((cpu, owns, v[99] == 99 * i as u64));
                barrier.wait();
            });
        }
    });
    let seen = seen.into_inner().unwrap();
    assert!(seen.iter().all(|&(_, _, ok)| ok), "every thread's vector kept its contents");
    for &(cpu, owns, _) in &seen {
        if owns {
            assert!(cpu < owned_cpus, "an owner on CPU {cpu}, an overflow CPU");
        } else {
            assert!((owned_cpus..possible).contains(&cpu), "a thread without a CPU of its own on CPU {cpu}");
        }
    }
    let on_overflow = seen.iter().filter(|&&(_, owns, _)| !owns).count();
    assert!(on_overflow >= threads - owned_cpus, "{on_overflow} threads on the overflow CPUs");
    let m = global::machine().expect("booted");
    m.verify().expect("free lists consistent");
}
