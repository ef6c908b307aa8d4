//! `/proc/vmstat` against the Linux 6.18 capture: the same names in the same order (zone
//! events following the machine's zone types), `name value` lines, and the counters kmem keeps
//! moving when they should.

use kmem::{Gfp, Order};
use kmem_hosted::{MachineBuilder, Preset};

const SAMPLE: &str = include_str!("../../../fixtures/linux-6.18-proc/vmstat.txt");

fn show(m: &kmem_hosted::Machine) -> String {
    let mut s = String::new();
    kmem::proc::vmstat(m, &mut s).unwrap();
    s
}

fn names(s: &str) -> Vec<&str> {
    s.lines().map(|l| l.split(' ').next().unwrap()).collect()
}

#[test]
fn golden_names_and_format() {
    let m = MachineBuilder::new().ram_mib(256).cpus(2).build().unwrap();
    let s = show(&m);
    assert_eq!(names(&s), names(SAMPLE), "vmstat names or order differ from Linux 6.18");
    for l in s.lines() {
        let (name, v) = l.split_once(' ').unwrap();
        assert!(!name.is_empty() && v.parse::<u64>().is_ok(), "bad line {l:?}");
    }
    assert!(s.ends_with("nr_unstable 0\n"));
}

#[test]
fn highmem_machines_print_high_zone_events() {
    let m = MachineBuilder::new().preset(Preset::X86_32).ram_mib(1024).cpus(2).build().unwrap();
    let s = show(&m);
    let allocs: Vec<&str> = names(&s).into_iter().filter(|n| n.starts_with("pgalloc_")).collect();
    assert_eq!(allocs, ["pgalloc_dma", "pgalloc_normal", "pgalloc_high", "pgalloc_movable", "pgalloc_device"]);
}

#[test]
fn counters_follow_the_machine() {
    let m = MachineBuilder::new().ram_mib(64).cpus(2).quiet_reports().build().unwrap();
    let val = |name: &str| -> u64 {
        let s = show(&m);
        let l = s.lines().find(|l| l.split(' ').next() == Some(name)).unwrap().to_owned();
        l.split(' ').nth(1).unwrap().parse().unwrap()
    };
    let free: usize = m.zones().map(|z| z.free_pages()).sum();
    assert_eq!(val("nr_free_pages"), free as u64);
    let p = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    assert!(val("pgalloc_dma32") + val("pgalloc_dma") > 0);
    // SAFETY: ours, unused afterwards.
    unsafe { m.__free_pages(p, Order::ZERO) };
    assert!(val("pgfree") > 0);
    assert_eq!(val("allocstall_normal"), 0);
    let mut held = Vec::new();
    while let Ok(p) = m.alloc_pages(Gfp::KERNEL | Gfp::NOWARN, Order::ZERO) {
        held.push(p);
    }
    assert!(val("allocstall_normal") > 0, "a failed GFP_KERNEL request reclaimed directly");
    assert_eq!(val("allocstall_normal"), m.reclaim_events().allocstall[kmem::ZoneType::Normal as usize]);
    for p in held {
        // SAFETY: ours.
        unsafe { m.__free_pages(p, Order::ZERO) };
    }
}
