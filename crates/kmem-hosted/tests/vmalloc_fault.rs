//! Guard pages fault for real: a write past the end of a vmalloc area, a purged (freed) area,
//! and a recursion that overflows a kernel stack each kill a forked child with SIGSEGV, and
//! the neighbouring memory is intact.

use kmem::{Gfp, PAGE_SIZE, THREAD_SIZE};
use kmem_hosted::MachineBuilder;

use crate::common;
use common::in_child;

#[test]
fn write_past_the_end_hits_the_guard_page() {
    let m = MachineBuilder::new().ram_mib(64).cpus(1).build().unwrap();
    let p = m.vmalloc(3 * PAGE_SIZE).unwrap();
    let q = m.vmalloc(PAGE_SIZE).unwrap();
    // SAFETY: our areas.
    unsafe { q.as_ptr().write_bytes(0x77, PAGE_SIZE) };
    let end = p.as_ptr() as usize + 3 * PAGE_SIZE;
    // The last byte is writable; the next is the guard page.
    // SAFETY: inside the area.
    assert_eq!(in_child(|| unsafe { ((end - 1) as *mut u8).write_volatile(1) }), None);
    // SAFETY: deliberately out of bounds, in a child that must die.
    assert_eq!(in_child(|| unsafe { (end as *mut u8).write_volatile(1) }), Some(libc::SIGSEGV));
    // SAFETY: a byte of our q.
    assert_eq!(unsafe { q.as_ptr().read() }, 0x77);
    // A freed area faults once purged.
    // SAFETY: ours; then purged.
    unsafe { m.vfree(p.as_ptr()) };
    m.vm_unmap_aliases();
    // SAFETY: deliberately a use after free, in a child that must die.
    assert_eq!(in_child(|| unsafe { p.as_ptr().write_volatile(1) }), Some(libc::SIGSEGV));
    // SAFETY: ours.
    unsafe { m.vfree(q.as_ptr()) };
}

#[test]
fn purged_area_reused_maps_the_new_pages() {
    let m = MachineBuilder::new().ram_mib(64).cpus(1).build().unwrap();
    let a = m.vmalloc(8 * PAGE_SIZE).unwrap();
    // SAFETY: ours.
    unsafe { a.as_ptr().write_bytes(0xee, 8 * PAGE_SIZE) };
    // SAFETY: ours.
    unsafe { m.vfree(a.as_ptr()) };
    // Before the purge the range is not reused.
    let b = m.vzalloc(8 * PAGE_SIZE).unwrap();
    assert_ne!(a, b);
    m.vm_unmap_aliases();
    let c = m.vzalloc(8 * PAGE_SIZE).unwrap();
    assert_eq!(a, c, "lowest address first: the purged range is reused");
    // SAFETY: c's 8 fresh zeroed pages.
    let s = unsafe { std::slice::from_raw_parts_mut(c.as_ptr(), 8 * PAGE_SIZE) };
    assert!(s.iter().all(|&x| x == 0), "no stale mapping of the old pages");
    s.fill(0x42);
    for i in 0..8 {
        let pfn = m.vmalloc_to_pfn(c.as_ptr().wrapping_add(i * PAGE_SIZE)).unwrap();
        let dm = m.page_address(m.pfn_to_page(pfn).unwrap()).unwrap().as_mut_ptr::<u8>();
        // SAFETY: the direct-map address of c's page i.
        assert_eq!(unsafe { dm.read() }, 0x42);
    }
    // SAFETY: ours.
    unsafe {
        m.vfree(b.as_ptr());
        m.vfree(c.as_ptr());
    }
}

#[cfg(target_arch = "x86_64")]
mod stack {
    use super::*;

    /// Recurses until the stack runs out, recording the lowest frame address reached.
    #[inline(never)]
    fn deep(cell: *mut usize, n: usize) -> usize {
        let mut buf = [0u8; 256];
        std::hint::black_box(&mut buf);
        // SAFETY: `cell` is a live word of the machine's RAM, shared with the parent.
        unsafe { cell.write_volatile(buf.as_ptr() as usize) };
        if n == usize::MAX {
            return 0;
        }
        deep(cell, n + 1) + buf[n % 256] as usize
    }

    extern "C" fn overflow(cell: *mut usize) {
        std::hint::black_box(deep(cell, 0));
    }

    /// Runs `f(arg)` with the stack pointer at `top`.
    ///
    /// # Safety
    ///
    /// `top` is the 16-byte-aligned top of a mapped stack that nothing else uses.
    unsafe fn run_on_stack(top: *mut u8, f: extern "C" fn(*mut usize), arg: *mut usize) {
        // SAFETY: r12 (callee-saved) keeps our stack pointer across the call; the callee
        // follows the C ABI on the new stack, which the caller's contract makes valid.
        unsafe {
            core::arch::asm!(
                "mov r12, rsp",
                "mov rsp, {top}",
                "call {f}",
                "mov rsp, r12",
                top = in(reg) top,
                f = in(reg) f,
                in("rdi") arg,
                out("r12") _,
                clobber_abi("C"),
            );
        }
    }

    #[test]
    fn stack_overflow_hits_the_guard_page() {
        let m = MachineBuilder::new().ram_mib(64).cpus(1).build().unwrap();
        let below = m.alloc_thread_stack(None).unwrap();
        let st = m.alloc_thread_stack(None).unwrap();
        assert!((st.base() as usize) > below.base() as usize);
        assert_eq!(st.base() as usize % THREAD_SIZE, 0);
        // The neighbour below is full of a pattern.
        // SAFETY: our stack memory.
        unsafe { below.base().write_bytes(0xab, THREAD_SIZE) };
        let cell = m.kzalloc(8, Gfp::KERNEL).unwrap().as_ptr().cast::<usize>();
        // A shallow call on the kmem stack works.
        extern "C" fn shallow(cell: *mut usize) {
            // SAFETY: the shared word.
            unsafe { cell.write_volatile(1) };
        }
        // SAFETY: `st` is ours and unused.
        assert_eq!(in_child(|| unsafe { run_on_stack(st.top(), shallow, cell) }), None);
        // SAFETY: the shared word.
        assert_eq!(unsafe { cell.read_volatile() }, 1);
        // SAFETY: as above; the child overflows the stack and must die on the guard page.
        assert_eq!(in_child(|| unsafe { run_on_stack(st.top(), overflow, cell) }), Some(libc::SIGSEGV));
        // SAFETY: the shared word.
        let lowest = unsafe { cell.read_volatile() };
        let base = st.base() as usize;
        assert!(lowest >= base && lowest < base + 1024, "recursion reached the bottom: {lowest:#x} vs {base:#x}");
        // SAFETY: our stack memory: the neighbour is untouched.
        let s = unsafe { std::slice::from_raw_parts(below.base(), THREAD_SIZE) };
        assert!(s.iter().all(|&b| b == 0xab));
        let mut mi = String::new();
        kmem::proc::meminfo(&m, &mut mi).unwrap();
        assert!(mi.contains("KernelStack:          32 kB\n"), "{mi}");
        drop(st);
        drop(below);
        // Cached per CPU and reused, zeroed.
        let again = m.alloc_thread_stack(None).unwrap();
        // SAFETY: our stack memory.
        let s = unsafe { std::slice::from_raw_parts(again.base(), THREAD_SIZE) };
        assert!(s.iter().all(|&b| b == 0));
        assert_eq!(m.vmalloc_stats().stacks, 1);
        // SAFETY: our kzalloc word.
        unsafe { m.kfree(cell.cast()) };
    }
}
