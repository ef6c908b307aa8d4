//! RCU on the bare-metal example (one CPU, `preempt_disable` a plain counter): no platform
//! support beyond the preempt-off section is needed.

use std::ptr::NonNull;

use kmem::{Gfp, Kmem, MemRegion, Platform, RcuHead, ReportKind};
use kmem_minimal::{MinimalPlatform, StaticRam};

const MAP: [MemRegion; 1] = [MemRegion::usable(1 << 20, 31 << 20)];

static RAN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe fn cb(k: &Kmem<MinimalPlatform>, head: NonNull<RcuHead>) {
    RAN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: the head is the start of a kmalloc object queued once by the test.
    unsafe { k.kfree(head.as_ptr() as *const u8) };
}

#[test]
fn grace_periods_callbacks_and_kfree_rcu_on_one_cpu() {
    static RAM: StaticRam<{ 32 << 20 }> = StaticRam::new();
    let (ram, bytes) = RAM.take().unwrap();
    // SAFETY: the static region is ours for ever (taken once); this thread alone uses it.
    let platform = unsafe { MinimalPlatform::new(ram, bytes) };
    let m = kmem_minimal::boot(platform, &MAP).expect("boots");
    {
        let _r = m.rcu_read();
        assert!(m.rcu_read_lock_held());
        assert_eq!(m.platform().preempt_count(), 1, "a read-side section is a preempt-off one");
        let c = m.get_state_synchronize_rcu();
        assert!(!m.poll_state_synchronize_rcu(c), "the only CPU is reading");
    }
    assert_eq!(m.platform().preempt_count(), 0);
    m.synchronize_rcu();
    for _ in 0..1000 {
        let p = m.kmalloc(64, Gfp::KERNEL).unwrap();
        // SAFETY: a fresh object whose start holds the head; freed by the callback.
        unsafe {
            p.cast::<RcuHead>().as_ptr().write(RcuHead::new());
            m.call_rcu(p.cast(), cb);
        }
    }
    for _ in 0..1000 {
        let p = m.kmalloc(100, Gfp::KERNEL).unwrap();
        // SAFETY: live, ours; the head lies at its start.
        unsafe { m.kfree_rcu(p.as_ptr(), p.cast()) };
    }
    m.kvfree_rcu_barrier();
    assert_eq!(RAN.load(std::sync::atomic::Ordering::Relaxed), 1000);
    assert_eq!(m.rcu_stats().pending_callbacks, 0);
    assert_eq!(m.rcu_stats().kfree_blocks, 0);
    m.rcu_read_unlock();
    assert_eq!(m.report_count(ReportKind::Warning), 1, "unlock without lock is reported");
    m.verify().unwrap();
}
