//! vmalloc+vfree pairs against anonymous mmap+munmap of the same size, side by side in one
//! run: 1 page and 100 pages, from 1 thread and from 2 threads (each on its own kmem CPU and
//! host CPU). Each pair touches one byte of every page, as Linux's `test_vmalloc`
//! `fix_size_alloc_test` writes its page, so both sides pay for making the pages present.
//!
//! kmem: `vmalloc(size)` on a 2-CPU, 1 GiB hosted machine with Linux's `lazy_max_pages()`
//! (`fls(2) * 32 MiB / PAGE_SIZE` = 16384 pages), twice: as booted by default (freed areas of
//! up to 4 pages are recycled per CPU, mapped: `kmem`), and with recycling off (`kmem
//! (lazy purge only)`): there the host mapping is one `mmap` of the RAM memfd per physically
//! contiguous run (`MAP_POPULATE`) and the unmap is deferred to the lazy purge, which unmaps
//! a run of adjacent freed areas with one call.
//!
//! A configuration runs in windows of `--secs` (default 0.4 s); rounds interleave the
//! configurations, `--reps` rounds (default 5). The table shows the median ns per pair per
//! thread and the kmem/mmap ratio (below 1: kmem is faster). Linux's published figure is
//! about 0.43 µs per 1-page vmalloc+vfree pair (LINUX-MM.md §4.3).
//!
//! `cargo bench -p kmem-bench --bench vmalloc [-- --secs 0.4 --reps 5]`; without `--bench`
//! (as under `cargo test --all-targets`) every configuration runs a few hundred pairs.

use std::time::{Duration, Instant};

use kmem::PAGE_SIZE;
use kmem_bench::scaling::{median, pin_host_cpu};
use kmem_hosted::{pin_current_thread, Machine, MachineBuilder};

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Kmem,
    KmemNoRecycle,
    Mmap,
}

const SIDES: [Side; 3] = [Side::Kmem, Side::KmemNoRecycle, Side::Mmap];

fn touch(p: *mut u8, pages: usize) {
    for i in 0..pages {
        // SAFETY: page i of a live mapping of `pages` pages.
        unsafe { p.add(i * PAGE_SIZE).write_volatile(1) };
    }
}

/// One pair on `side`.
#[inline(always)]
fn pair(m: &Machine, side: Side, pages: usize) {
    let len = pages * PAGE_SIZE;
    match side {
        Side::Kmem | Side::KmemNoRecycle => {
            let p = m.vmalloc(len).expect("vmalloc").as_ptr();
            touch(p, pages);
            // SAFETY: ours, no longer used.
            unsafe { m.vfree(p) };
        }
        Side::Mmap => {
            // SAFETY: a fresh private anonymous mapping, unmapped below.
            let p = unsafe {
                rustix::mm::mmap_anonymous(
                    std::ptr::null_mut(),
                    len,
                    rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                    rustix::mm::MapFlags::PRIVATE,
                )
            }
            .expect("mmap")
            .cast::<u8>();
            touch(p, pages);
            // SAFETY: our mapping, no longer used.
            unsafe { rustix::mm::munmap(p.cast(), len) }.expect("munmap");
        }
    }
}

/// ns per pair per thread over a window of `secs` (or `n` pairs when `n` is given).
fn window(m: &Machine, side: Side, pages: usize, threads: usize, secs: f64, n: Option<u64>) -> f64 {
    let results: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    pin_current_thread(t as u32);
                    pin_host_cpu(t);
                    let start = Instant::now();
                    let mut done = 0u64;
                    let until = Duration::from_secs_f64(secs);
                    loop {
                        for _ in 0..64 {
                            pair(m, side, pages);
                        }
                        done += 64;
                        if n.is_some_and(|n| done >= n) || (n.is_none() && start.elapsed() >= until) {
                            break;
                        }
                    }
                    start.elapsed().as_nanos() as f64 / done as f64
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("bench thread")).collect()
    });
    results.iter().sum::<f64>() / results.len() as f64
}

fn arg(args: &[String], name: &str, default: f64) -> f64 {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let secs = arg(&args, "--secs", 0.4);
    let reps = arg(&args, "--reps", 5.0) as usize;
    let mk = |recycle| MachineBuilder::new().ram_mib(1024).cpus(2).vmalloc_recycle(recycle).build().expect("machine");
    let (m, m_nr) = (mk(true), mk(false));
    let machine = |side| if side == Side::KmemNoRecycle { &m_nr } else { &m };
    let configs: Vec<(usize, usize)> = vec![(1, 1), (1, 2), (100, 1), (100, 2)];
    if !bench {
        for &(pages, threads) in &configs {
            for side in SIDES {
                window(machine(side), side, pages, threads, 0.0, Some(256));
            }
        }
        for m in [&m, &m_nr] {
            m.vm_unmap_aliases();
            let st = m.vmalloc_stats();
            assert_eq!((st.busy_areas, st.used_pages, st.lazy_areas), (0, 0, 0));
        }
        return;
    }
    let mut res: Vec<[Vec<f64>; 3]> = configs.iter().map(|_| Default::default()).collect();
    for _ in 0..reps {
        for (i, &(pages, threads)) in configs.iter().enumerate() {
            for (s, side) in SIDES.into_iter().enumerate() {
                res[i][s].push(window(machine(side), side, pages, threads, secs, None));
            }
        }
    }
    println!(
        "| pair | threads | kmem, ns | kmem (lazy purge only), ns | mmap+munmap, ns | kmem/mmap | lazy-only/mmap |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, &(pages, threads)) in configs.iter().enumerate() {
        let [k, n, mm] = [0, 1, 2].map(|s| median(&res[i][s]));
        let what = if pages == 1 { "1 page".to_string() } else { format!("{pages} pages") };
        println!("| {what} | {threads} | {k:.0} | {n:.0} | {mm:.0} | {:.2} | {:.2} |", k / mm, n / mm);
    }
    let st = m_nr.vmalloc_stats();
    println!();
    println!(
        "(median of {reps} windows of {secs} s, ns per pair per thread; purges in the lazy-only run: {}; lazy_max_pages {})",
        st.purges, st.lazy_max_pages
    );
}
