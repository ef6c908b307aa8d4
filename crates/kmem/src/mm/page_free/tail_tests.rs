//! A compound block's free checks and clears its tails in one pass
//! (`Kmem::free_tail_pages_check`): a bad tail is reported, and the block stays a whole
//! compound page, leaked, the tails before the bad one restored.

use crate::addr::Order;
use crate::gfp::Gfp;
use crate::mm::page::pg;
use crate::platform::ReportKind;
use crate::testing;

#[test]
fn a_bad_tail_is_reported_and_leaves_the_block_whole_and_leaked() {
    let k = testing::machine(64);
    let order = Order::new(4).unwrap();
    let p = k.alloc_pages(Gfp::KERNEL | Gfp::COMP, order).unwrap();
    let free =
        |k: &crate::Kmem<testing::TestPlatform>| k.zones().map(|z| z.free_pages() + z.pcp_pages()).sum::<usize>();
    let (pfn, free_before) = (p.pfn(), free(&k));
    let tails = &k.memmap().block_pages(pfn, order)[1..];
    // Tail 9 loses its mark (a corrupt descriptor).
    tails[8].clear_exclusive(pg::TAIL);
    // SAFETY: ours; the free is refused for the bad tail.
    unsafe { k.__free_pages(p, order) };
    assert_eq!(k.report_count(ReportKind::BadPage), 1);
    let head = k.memmap().pfn_to_page(pfn);
    assert!(head.test(pg::HEAD) && head.refcount() > 0, "the head is still a live compound head");
    for (i, t) in (1..).zip(tails).filter(|(i, _)| *i != 9) {
        assert!(t.test(pg::TAIL) && t.tail_back() as usize == i, "tail {i} is a tail of the head again");
    }
    assert!(free(&k) <= free_before, "nothing of the block went back");
    // A good compound free clears every tail.
    let q = k.alloc_pages(Gfp::KERNEL | Gfp::COMP, order).unwrap();
    let qpfn = q.pfn();
    // SAFETY: ours, freed once.
    unsafe { k.__free_pages(q, order) };
    assert!(k.memmap().block_pages(qpfn, order)[1..].iter().all(|t| !t.test(pg::TAIL)));
    assert_eq!(k.report_count(ReportKind::BadPage), 1);
}
