//! What a machine's RAM mapping asks the host for, read back from `/proc/self/smaps`: anonymous
//! RAM is in small pages unless `MachineBuilder::ram_hugepages` asks for huge ones
//! (`THPeligible` of the mapping), and `Machine::ram_hugepages` says which.

use kmem_hosted::MachineBuilder;

/// `THPeligible` of the mapping that holds `addr`, from `/proc/self/smaps`.
fn thp_eligible(addr: usize) -> Option<bool> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let head = line.split_whitespace().next().unwrap_or("");
        if let Some((s, e)) = head.split_once('-') {
            if let (Ok(s), Ok(e)) = (usize::from_str_radix(s, 16), usize::from_str_radix(e, 16)) {
                inside = s <= addr && addr < e;
                continue;
            }
        }
        if inside {
            if let Some(v) = line.strip_prefix("THPeligible:") {
                return Some(v.trim() == "1");
            }
        }
    }
    None
}

/// Whether the host hands out transparent huge pages at all (`never` turns them off).
fn thp_enabled() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").is_ok_and(|s| !s.contains("[never]"))
}

#[test]
fn anonymous_ram_is_in_small_pages_unless_huge_ones_are_asked() {
    let m = MachineBuilder::new().ram_mib(256).cpus(1).anonymous_ram(true).build().unwrap();
    assert!(m.ram_is_anonymous() && !m.ram_hugepages());
    let (base, _) = m.ram_range();
    // Inside the usable RAM (its first page may be a reserved null frame, still the same VMA).
    let at = base + (64 << 20);
    assert_eq!(thp_eligible(at), Some(false), "MADV_NOHUGEPAGE on the RAM mapping");

    let huge = MachineBuilder::new().ram_mib(256).cpus(1).anonymous_ram(true).ram_hugepages(true).build().unwrap();
    assert!(huge.ram_hugepages());
    if thp_enabled() {
        let (base, _) = huge.ram_range();
        assert_eq!(thp_eligible(base + (64 << 20)), Some(true), "MADV_HUGEPAGE on the RAM mapping");
    }
}

#[test]
fn memfd_ram_asks_for_nothing() {
    let m = MachineBuilder::new().ram_mib(64).cpus(1).build().unwrap();
    assert!(!m.ram_is_anonymous() && !m.ram_hugepages());
}
