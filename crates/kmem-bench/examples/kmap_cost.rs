//! Instruction cost of the highmem mappings, for callgrind, on the hosted platform (an x86-32
//! machine with HighMem, a CPU-per-thread machine):
//!
//! - `local`: one `kmap_local_page` + `kunmap_local` pair of a HighMem page. The slot keeps
//!   its mapping after the unmap, so the steady state makes no system call.
//! - `kmap`: one `kmap` + `kunmap` pair of a page that is already kmapped (its pkmap slot is
//!   found through the page-address hash; no page-table change).
//!
//! ```sh
//! cargo build --profile perf -p kmem-bench --example kmap_cost
//! valgrind --tool=callgrind --toggle-collect='*kmap_cost::pair*' target/perf/examples/kmap_cost local
//! ```
//! Total instructions collected divided by `ITERS` is the cost of one pair
//! (`scripts/cost_check.sh` does this). The first pair runs before and outside the count.

use kmem::{Gfp, Kmem, Order, PageRef, Platform};
use kmem_hosted::{MachineBuilder, Preset};

/// Pairs collected.
const ITERS: usize = 4000;

#[inline(never)]
fn pair_local<P: Platform>(m: &Kmem<P>, p: PageRef<'_>) {
    let va = m.kmap_local_page(p).expect("kmap_local_page");
    m.kunmap_local(std::hint::black_box(va));
}

#[inline(never)]
fn pair_kmap<P: Platform>(m: &Kmem<P>, p: PageRef<'_>) {
    std::hint::black_box(m.kmap(p).expect("kmap"));
    m.kunmap(p);
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "local".into());
    let m = MachineBuilder::new().ram_mib(1024).preset(Preset::X86_32).thread_cpus(1).build().expect("boot");
    let p = m.alloc_pages(Gfp::HIGHUSER, Order::ZERO).expect("a HighMem page");
    assert!(m.page_is_highmem(p));
    let f: fn(&Kmem<_>, PageRef<'_>) = match which.as_str() {
        "local" => pair_local,
        "kmap" => {
            m.kmap(p).expect("kmap"); // held: the pairs find the page mapped
            pair_kmap
        }
        other => {
            eprintln!("usage: kmap_cost [local|kmap]; not {other:?}");
            std::process::exit(2);
        }
    };
    let first = m.kmap_local_page(p).expect("kmap_local_page");
    m.kunmap_local(first);
    for _ in 0..ITERS {
        f(std::hint::black_box(&m), p);
    }
    assert_eq!(m.report_count(kmem::ReportKind::Warning), 0, "kmem reported");
    assert!(m.kmap_stats().maps <= 2, "the steady state changed page tables: {:?}", m.kmap_stats());
}
