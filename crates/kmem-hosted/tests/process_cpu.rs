//! The process machine (`Machine::make_process_machine`): its threads reach their CPU with
//! `ProcessCpu::current` (the thread's fast gate on that machine, published without the
//! machine), which exists exactly while the machine's own fast pin would take the CPU with
//! no look at a careful section, and whose pin serves the machine's `*_with` fast paths.
//!
//! The only test of this binary that makes a process machine (one per process, for good).

use kmem::kmalloc::kmalloc_index;
use kmem::{Gfp, Platform, ReportKind};
use kmem_hosted::{Machine, MachineBuilder, ProcessCpu};

fn machine() -> &'static Machine {
    Box::leak(Box::new(MachineBuilder::new().ram_mib(32).thread_cpus(4).build().unwrap()))
}

#[test]
fn the_process_cpu_follows_the_threads_fast_gate_and_serves_the_with_paths() {
    let shared: &'static Machine = Box::leak(Box::new(MachineBuilder::new().ram_mib(16).cpus(2).build().unwrap()));
    assert!(!shared.make_process_machine(), "a machine of shared CPUs cannot be");
    let m = machine();
    // A thread of its own: this one may own CPUs of other tests' machines, not of this one.
    std::thread::spawn(move || {
        let p = m.platform();
        // The thread owns a CPU of the machine before it becomes the process machine (as
        // kmem-alloc's booting thread does).
        let a = m.kmalloc(64, Gfp::KERNEL).unwrap();
        // SAFETY: ours, freed once.
        unsafe { m.kfree(a.as_ptr()) };
        assert!(ProcessCpu::current().is_none(), "not the process machine yet");
        assert!(m.make_process_machine());
        assert!(m.make_process_machine(), "asking again changes nothing");
        assert!(ProcessCpu::current().is_none(), "the gate opens at the machine's next fast pin");
        let a = m.kmalloc(64, Gfp::KERNEL).unwrap();
        // SAFETY: ours, freed once.
        unsafe { m.kfree(a.as_ptr()) };
        let cpu = ProcessCpu::current().expect("the fast pins opened the gate with the process token");
        assert!(core::ptr::eq(cpu.machine().expect("the process machine"), m));
        // The `_with` paths on its pin: the object the free put on the CPU's sheaf comes back.
        let index = kmalloc_index(64);
        // SAFETY: the pin goes to its own machine's fast path.
        let b = m.kmalloc_try_fast_index_with(index, Gfp::KERNEL, || unsafe { cpu.try_pin() }).expect("fast");
        assert_eq!(b, a, "last in, first out");
        let mut others = 0;
        // SAFETY: ours, freed once (through the CPU's sheaf: `other` never runs); the pin
        // goes to its own machine's fast path.
        unsafe { m.kfree_slab_or_then_with(b.as_ptr(), || cpu.try_pin(), |_| others += 1, || {}) };
        assert_eq!(others, 0);
        // SAFETY: as above.
        let c = m.kmalloc_try_fast_index_with(index, Gfp::KERNEL, || unsafe { cpu.try_pin() }).expect("fast");
        assert_eq!(c, a, "the free went to the CPU's sheaf");
        // SAFETY: ours, freed once by size; the pin goes to its own machine's fast path.
        unsafe { m.kfree_sized_or_then_with(c.as_ptr(), 64, || cpu.try_pin(), |_| others += 1, || {}) };
        assert_eq!(others, 0);
        // Closed inside every careful section, and after it until a fast pin of the machine
        // finds the CPU idle and opens it again.
        p.preempt_disable();
        assert!(ProcessCpu::current().is_none(), "inside preempt_disable");
        p.preempt_enable();
        assert!(ProcessCpu::current().is_none(), "closed until the next fast pin");
        let pin = p.try_pin_cpu().expect("the machine's own fast pin");
        p.unpin_cpu_fast(pin);
        assert!(ProcessCpu::current().is_some(), "opened by it");
        let irq = p.local_irq_save();
        assert!(ProcessCpu::current().is_none(), "with interrupts off");
        p.local_irq_restore(irq);
        let d = m.kmalloc(64, Gfp::KERNEL).unwrap();
        assert!(ProcessCpu::current().is_some(), "kmalloc's fast path opened it");
        assert!(p.run_on_cpu(p.current_cpu(), &mut || assert!(ProcessCpu::current().is_none(), "running as a CPU")));
        // SAFETY: ours, freed once.
        unsafe { m.kfree(d.as_ptr()) };
        assert!(ProcessCpu::current().is_some());
        // A thread that takes its CPU now has the process token from the start.
        std::thread::spawn(move || {
            assert!(ProcessCpu::current().is_none(), "no CPU before the thread's first use");
            let x = m.kmalloc(64, Gfp::KERNEL).unwrap();
            // SAFETY: ours, freed once.
            unsafe { m.kfree(x.as_ptr()) };
            assert!(ProcessCpu::current().is_some());
        })
        .join()
        .unwrap();
        // Another machine's CPU of the same thread is not the process CPU.
        let other = MachineBuilder::new().ram_mib(16).thread_cpus(2).build().unwrap();
        let e = other.kmalloc(64, Gfp::KERNEL).unwrap();
        // SAFETY: ours, freed once.
        unsafe { other.kfree(e.as_ptr()) };
        let f = other.kmalloc(64, Gfp::KERNEL).unwrap();
        // SAFETY: as above.
        unsafe { other.kfree(f.as_ptr()) };
        assert!(ProcessCpu::current().is_none(), "the thread's gate is on the other machine now");
        let g = m.kmalloc(64, Gfp::KERNEL).unwrap();
        // SAFETY: ours, freed once.
        unsafe { m.kfree(g.as_ptr()) };
        assert!(ProcessCpu::current().is_some(), "and back on the process machine's");
        assert_eq!(m.report_count(ReportKind::SlabBug) + other.report_count(ReportKind::SlabBug), 0);
    })
    .join()
    .unwrap();
    // (Here: building a machine takes a CPU of it, which would have changed the thread's
    // owned machine above.)
    assert!(!machine().make_process_machine(), "one per process");
}
