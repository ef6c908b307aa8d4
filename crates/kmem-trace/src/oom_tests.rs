//! Unit tests of the replay's OOM killer ([`super`]).

use super::*;

#[test]
fn bits() {
    let mut b = Bits::default();
    assert!(!b.take(5));
    b.set(5);
    b.set(200);
    assert_eq!(b.count(), 2);
    assert!(b.take(200) && !b.take(200));
    assert_eq!(b.count(), 1);
}

/// The notifier frees the oldest live allocations (a batch), marks them, and frees
/// nothing while the replayer holds the tables.
#[test]
fn notifier_kills_the_oldest_batch() {
    let m = kmem_hosted::MachineBuilder::new().ram_mib(32).cpus(1).build().unwrap();
    let (mut fe, mut rp) = (crate::Frontend::new(), crate::Replayer::new(&m, false));
    let line = |i: u64| {
        format!("t-1 [000] ..... 1.0: mm_page_alloc: page=0 pfn={i:#x} order=0 migratetype=0 gfp_flags=GFP_KERNEL")
    };
    for i in 0..100 {
        let op = fe.line(i + 1, line(0x1000 + i).as_bytes()).unwrap();
        rp.apply(&op, fe.caches());
    }
    {
        let _held = rp.shared().lock();
        assert_eq!(rp.shared().notify(Gfp::KERNEL, 0), 0, "tables held: nothing");
    }
    assert_eq!(rp.shared().notify(Gfp::KERNEL, 0), OOM_BATCH_PAGES);
    assert_eq!(rp.live().1, 100 - OOM_BATCH_PAGES);
    assert_eq!(rp.oom_killed_live().1, OOM_BATCH_PAGES);
    // The oldest: the first page's free is a victim's, the 33rd's is not.
    let free = |i: u64| format!("t-1 [000] ...1. 1.0: mm_page_free: page=0 pfn={i:#x} order=0");
    for (n, i) in [0x1000, 0x1000 + OOM_BATCH_PAGES as u64].into_iter().enumerate() {
        let op = fe.line(200 + n as u64, free(i).as_bytes()).unwrap();
        rp.apply(&op, fe.caches());
    }
    assert_eq!(rp.counts.oom.victim_frees[Kind::PageFree as usize], 1);
    assert_eq!(rp.counts.replayed[Kind::PageFree as usize], 1);
    // A later allocation takes in what the notifier did.
    let op = fe.line(300, line(0x9000).as_bytes()).unwrap();
    rp.apply(&op, fe.caches());
    let o = rp.counts.oom;
    assert_eq!(
        (o.notifier_calls, o.kills, o.blocks_freed),
        (1, 1, OOM_BATCH_PAGES as u64),
        "the refused call counts nothing"
    );
    assert_eq!(rp.counts.live_bytes[Mem::Pages as usize], (100 - OOM_BATCH_PAGES as u64) * PAGE_SIZE as u64);
    rp.release_all();
    m.verify().unwrap();
}

#[test]
fn which_requests_the_oom_path_serves() {
    let nofs = Gfp::NOFS | Gfp::NOFAIL;
    assert!(oom_path_serves(nofs, 0) && oom_path_serves(nofs, 3));
    assert!(!oom_path_serves(nofs, 4), "costly");
    assert!(!oom_path_serves(Gfp::ATOMIC | Gfp::NOFAIL, 0), "atomic");
    assert!(!oom_path_serves(nofs | Gfp::DMA, 0), "DMA");
    assert!(!oom_path_serves(nofs | Gfp::RETRY_MAYFAIL, 0));
}

/// Compaction keeps exactly the live entries, in allocation order, also from a queue that
/// wraps around its buffer; a stale entry (its slot reused by a later allocation, or empty)
/// goes.
#[test]
fn compaction_keeps_the_live_entries_in_order() {
    let obj = |gen| Some(Obj { addr: NonNull::dangling(), cache: 0, bytes: 8, gen });
    // Slot 0 reused (gen 7 live, gen 1 stale), slot 1 empty, slot 2 live at gen 3.
    let objs = vec![obj(7), None, obj(3)];
    let pages: Vec<Option<Block<'_>>> = Vec::new();
    let mut q = VecDeque::with_capacity(8);
    for i in 0..6 {
        q.push_back(Victim { slot: 9, gen: i });
    }
    for _ in 0..6 {
        q.pop_front();
    }
    // Now wrapped: the entries below straddle the end of the buffer.
    let entries = [(0, 1), (2, 3), (1, 2), (9 | PAGE_BIT, 4), (0, 7), (2, 5)];
    for (slot, gen) in entries {
        q.push_back(Victim { slot, gen });
    }
    assert!(!q.as_slices().1.is_empty(), "the queue wraps");
    retain_live(&mut q, &objs, &pages);
    let kept: Vec<(u32, u32)> = q.iter().map(|v| (v.slot, v.gen)).collect();
    assert_eq!(kept, [(2, 3), (0, 7)]);
}

/// Allocations freed as they come leave stale queue entries, which compaction drops: the
/// queue stays below its compaction threshold plus one countdown of pushes, and a live
/// allocation's entry survives.
#[test]
fn stale_entries_are_compacted_away() {
    let mut t = Live::new();
    let o = Obj { addr: NonNull::dangling(), cache: KMALLOC_BASE, bytes: 8, gen: 0 };
    t.put_obj(100, o);
    let kept = t.objs[100].unwrap().gen;
    for i in 0..200_000u32 {
        t.put_obj(i % 4, o);
        assert!(t.take_obj(i % 4).is_some());
    }
    assert!(t.victims.len() <= (1 << 16) + COMPACT_EVERY as usize, "{} entries", t.victims.len());
    assert!(t.victims.iter().any(|v| v.slot == 100 && v.gen == kept), "the live entry went");
    assert_eq!(t.nr_objs, 1);
}
