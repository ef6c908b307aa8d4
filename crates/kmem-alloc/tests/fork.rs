//! `fork` with kmem as the global allocator: the child gets a copy of the heap (the
//! machine's RAM is private memory, not the shared memfd mapping kmem-hosted creates) and
//! finds no lock held, even while other threads allocate as the parent forks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kmem_alloc::{global, KmemAlloc};

#[global_allocator]
static A: KmemAlloc = KmemAlloc;

fn wait(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; `pid` is our child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid");
    assert!(libc::WIFEXITED(status), "child killed: status {status:#x}");
    libc::WEXITSTATUS(status)
}

#[test]
fn child_gets_a_copy_of_the_heap_and_no_held_lock() {
    let mut v: Vec<u64> = (0..100_000).collect();
    let big = vec![7u8; 3 << 20]; // kmalloc's page path
    let huge = vec![9u8; 6 << 20]; // a host mapping
    assert!(global::ram_is_private(), "the machine's RAM is private memory");

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let w: Vec<Box<[u8]>> = (0..64).map(|i| vec![t as u8; 16 << (i % 10)].into_boxed_slice()).collect();
                    n += w.iter().map(|b| b.len() as u64).sum::<u64>();
                    if n % 7 == 0 {
                        drop(vec![0u8; 5 << 20]);
                    }
                }
                n
            })
        })
        .collect();

    for round in 0..10u64 {
        // SAFETY: the child only allocates (kmem's atfork handlers made that safe), checks
        // memory and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            for x in v.iter_mut() {
                *x = u64::MAX;
            }
            let w: Vec<Vec<u8>> = (0..2000).map(|i| vec![i as u8; 100 + i]).collect();
            let h = vec![3u8; 9 << 20];
            let ok = w.iter().enumerate().all(|(i, b)| b.len() == 100 + i && b.iter().all(|&x| x == i as u8))
                && big.iter().step_by(509).all(|&b| b == 7)
                && huge.iter().step_by(509).all(|&b| b == 9)
                && h.iter().step_by(509).all(|&b| b == 3)
                && v.iter().all(|&x| x == u64::MAX);
            // SAFETY: leaves the child without running the parent's test harness.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        assert_eq!(wait(pid), 0, "round {round}: the child saw a consistent heap");
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64), "round {round}: the child's writes stayed its own");
        v.push(round);
        v.pop();
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        assert!(w.join().unwrap() > 0);
    }
    assert!(big.iter().step_by(509).all(|&b| b == 7) && huge.iter().step_by(509).all(|&b| b == 9));
}
