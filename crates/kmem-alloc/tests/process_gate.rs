//! The process allocator's fast gate (`kmem_hosted::ProcessCpu`): a careful section of the
//! thread's CPU (here the careful pin; in practice every slow path) closes it, and the next
//! fast path opens it again, a free as well as an allocation. Were a free that finds its
//! block to take the careful way instead, it would leave the gate closed, and so would every
//! free after it. A test binary of its own: another test's stop of the CPUs (a drain, a
//! shrink) would make a free take the careful way for a reason of its own.

use kmem::Platform;
use kmem_alloc::KmemAlloc;

#[global_allocator]
static A: KmemAlloc = KmemAlloc;

fn check() {
    let cpu = kmem_hosted::ProcessCpu::fast();
    let a = Box::new([1u8; 64]);
    let b = Box::new([2u8; 64]);
    drop(a);
    // A block taken after that free leaves room on the CPU's sheaf for `b`'s free: a full
    // sheaf would send it down the slow path, which closes the gate again.
    let room = Box::new([4u8; 64]);
    assert!(cpu.is_open(), "open after a free");
    let m = cpu.machine().expect("booted");
    let p = m.platform().pin_cpu();
    m.platform().unpin_cpu(p);
    assert!(!cpu.is_open(), "a careful section closes the gate");
    drop(b);
    assert!(cpu.is_open(), "the next free opens it again");
    let p = m.platform().pin_cpu();
    m.platform().unpin_cpu(p);
    assert!(!cpu.is_open());
    let c = Box::new([3u8; 64]);
    assert!(cpu.is_open(), "and the next allocation");
    drop(c);
    drop(room);
}

#[test]
fn the_first_free_after_a_careful_section_opens_the_gate_again() {
    check();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(check);
        }
    });
}
