//! A process with one thread (`Platform::sole_thread`, glibc's `__libc_single_threaded`):
//! the process allocator's frees mark their blocks with a store instead of the locked
//! claim, and `kfree_nolock` defers every free meanwhile, so that a signal handler between
//! a free's test and its store could claim nothing. A test binary without the harness,
//! whose `main` runs on the process's only thread until it starts one.

use kmem::{Gfp, Platform, ReportKind};
use kmem_hosted::{HostedPlatform, MachineBuilder, ProcessCpu};

fn main() {
    assert!(HostedPlatform::sole_thread(), "one thread: glibc's flag is set");
    let m: &'static kmem_hosted::Machine = Box::leak(Box::new(
        MachineBuilder::new().ram_mib(64).thread_cpus(4).slab_freeptr_at_start(true).build().unwrap(),
    ));
    assert!(HostedPlatform::sole_thread(), "booting a machine starts no thread");
    assert!(m.make_process_machine());
    let map = m.free_map();
    let k: &kmem::Kmem<_> = m;
    // A free through the machine's fast pin opens the thread's gate on the process machine.
    let first = m.kmalloc(64, Gfp::KERNEL).unwrap();
    // SAFETY: ours, freed once.
    unsafe { m.kfree(first.as_ptr()) };
    let cpu = ProcessCpu::fast();

    // The mapped free through the process CPU's pin (the process allocator's fast path,
    // marking with a store) still reports a double free.
    let p = m.kmalloc(64, Gfp::KERNEL).unwrap();
    let mut others = 0;
    for i in 0..2 {
        // SAFETY: the second free is the misuse under test; the map is this machine's, the
        // pin its CPU's.
        unsafe {
            kmem::Kmem::kfree_mapped_or_then_with(|| k, &map, p.as_ptr(), || cpu.try_pin(), |_| others += 1, || {})
        };
        if i == 0 {
            assert!(cpu.is_open(), "the first free took the fast pin (and opened the gate)");
        }
    }
    assert_eq!(others, 0, "found through the map");
    assert_eq!(m.report_count(ReportKind::SlabBug), 1, "the second free reported");
    let (a, b) = (m.kmalloc(64, Gfp::KERNEL).unwrap(), m.kmalloc(64, Gfp::KERNEL).unwrap());
    assert_ne!(a, b, "handed out once");

    // `kfree_nolock` defers while the process has one thread...
    // SAFETY: ours, freed once.
    unsafe { m.kfree_nolock(a.as_ptr()) };
    assert_eq!(m.deferred_frees(), 1, "deferred with one thread");
    m.defer_free_barrier();
    assert_eq!(m.deferred_frees(), 0);

    // ... and not once there are two.
    std::thread::spawn(|| {}).join().unwrap();
    assert!(!HostedPlatform::sole_thread(), "a second thread clears the flag for good");
    // SAFETY: ours, freed once.
    unsafe { m.kfree_nolock(b.as_ptr()) };
    assert_eq!(m.deferred_frees(), 0, "freed at once with two threads");
    assert_eq!(m.report_count(ReportKind::SlabBug), 1);
    println!("sole_thread: ok");
}
