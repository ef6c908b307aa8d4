//! Blocks above 4 MiB (host mappings) are reused across frees: once warm, a loop over
//! 5-25 MiB blocks, every page touched, takes next to no page fault (a fresh mapping per
//! iteration would fault every page in again).

use kmem_alloc::KmemAlloc;

#[global_allocator]
static A: KmemAlloc = KmemAlloc;

mod common;
use common::minor_faults;

#[test]
fn loop_over_5_to_25_mib_blocks_reuses_mappings() {
    const WARM: i64 = 200;
    const ITERS: i64 = 400;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut before = 0;
    for i in 0..WARM + ITERS {
        if i == WARM {
            before = minor_faults(libc::RUSAGE_SELF);
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (5 << 20) + (x % (20 << 20)) as usize;
        let mut v: Vec<u8> = Vec::with_capacity(n);
        let p = v.as_mut_ptr();
        for o in (0..n).step_by(4096) {
            // SAFETY: inside the capacity of `v`.
            unsafe { p.add(o).write(i as u8) };
        }
        // SAFETY: as above.
        assert_eq!(unsafe { p.add((n / 2) & !4095).read() }, i as u8);
        drop(v);
    }
    let faults = minor_faults(libc::RUSAGE_SELF) - before;
    // A fresh mapping per iteration would take 1280-6400 faults each.
    assert!(faults < 5 * ITERS, "{faults} page faults for {ITERS} warm iterations");
}
