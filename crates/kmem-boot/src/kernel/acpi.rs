//! The two ACPI tables the kernel needs (Linux: `drivers/acpi/tables.c`,
//! `arch/x86/kernel/acpi/boot.c`, `arch/x86/mm/srat.c`): the MADT for the CPUs' local APIC
//! ids, and the SRAT for NUMA nodes (memory ranges and CPUs per proximity domain). The
//! tables sit in E820-reserved RAM below 4 GiB, read through the identity map; checksums are
//! not verified (QEMU's are right).

use super::percpu::MAX_CPUS;
use crate::numa::SratMem;

/// Most SRAT memory ranges kept.
pub const MAX_SRAT_MEM: usize = 16;

/// What the tables say.
#[derive(Debug)]
pub struct AcpiInfo {
    /// Local APIC ids of the enabled CPUs, boot CPU's among them.
    pub apic_ids: [u32; MAX_CPUS],
    /// Entries of `apic_ids` in use.
    pub nr_cpus: usize,
    /// SRAT memory affinity ranges.
    pub mem: [SratMem; MAX_SRAT_MEM],
    /// Entries of `mem` in use (0: no SRAT, one node).
    pub nr_mem: usize,
    /// Proximity domain of each CPU in `apic_ids` order.
    pub cpu_pxm: [u32; MAX_CPUS],
}

fn read<T: Copy>(pa: u64) -> T {
    // SAFETY: ACPI table memory below 4 GiB (identity mapped, E820-reserved, never written).
    unsafe { (pa as *const T).read_unaligned() }
}

fn find_table(rsdp: u64, sig: &[u8; 4]) -> Option<u64> {
    let rev: u8 = read(rsdp + 15);
    let (root, entry) = if rev >= 2 { (read::<u64>(rsdp + 24), 8) } else { (read::<u32>(rsdp + 16) as u64, 4) };
    if root == 0 {
        return None;
    }
    let len: u32 = read(root + 4);
    let n = (len as u64 - 36) / entry;
    (0..n).find_map(|i| {
        let t = if entry == 8 { read::<u64>(root + 36 + i * 8) } else { read::<u32>(root + 36 + i * 4) as u64 };
        (read::<[u8; 4]>(t) == *sig).then_some(t)
    })
}

/// Finds the RSDP: the PVH start info's, else a scan of the BIOS area.
fn rsdp(hint: u64) -> Option<u64> {
    if hint != 0 {
        return Some(hint);
    }
    (0xe0000u64..0x100000).step_by(16).find(|&a| read::<[u8; 8]>(a) == *b"RSD PTR ")
}

/// Reads the MADT and the SRAT. Without an RSDP or a MADT: one CPU (`boot_apic`).
pub fn read_tables(rsdp_hint: u64, boot_apic: u32) -> AcpiInfo {
    let mut info = AcpiInfo {
        apic_ids: [0; MAX_CPUS],
        nr_cpus: 0,
        mem: [SratMem { start: 0, end: 0, pxm: 0 }; MAX_SRAT_MEM],
        nr_mem: 0,
        cpu_pxm: [0; MAX_CPUS],
    };
    let rsdp = rsdp(rsdp_hint);
    if let Some(madt) = rsdp.and_then(|r| find_table(r, b"APIC")) {
        let len: u32 = read(madt + 4);
        let mut off = 44u64;
        while off + 2 <= len as u64 {
            let (ty, l): (u8, u8) = (read(madt + off), read(madt + off + 1));
            if ty == 0 && info.nr_cpus < MAX_CPUS && read::<u32>(madt + off + 4) & 1 != 0 {
                info.apic_ids[info.nr_cpus] = read::<u8>(madt + off + 3) as u32;
                info.nr_cpus += 1;
            }
            if l == 0 {
                break;
            }
            off += l as u64;
        }
    }
    if info.nr_cpus == 0 {
        info.apic_ids[0] = boot_apic;
        info.nr_cpus = 1;
    }
    if let Some(srat) = rsdp.and_then(|r| find_table(r, b"SRAT")) {
        let len: u32 = read(srat + 4);
        let mut off = 48u64;
        while off + 2 <= len as u64 {
            let (ty, l): (u8, u8) = (read(srat + off), read(srat + off + 1));
            let e = srat + off;
            if ty == 0 && read::<u32>(e + 4) & 1 != 0 {
                let apic = read::<u8>(e + 3) as u32;
                // proximity_domain_lo, then the high 24 bits at offset 9.
                let hi = read::<[u8; 3]>(e + 9);
                let pxm = read::<u8>(e + 2) as u32 | u32::from_le_bytes([0, hi[0], hi[1], hi[2]]);
                if let Some(i) = info.apic_ids[..info.nr_cpus].iter().position(|&a| a == apic) {
                    info.cpu_pxm[i] = pxm;
                }
            } else if ty == 1 && read::<u32>(e + 28) & 1 != 0 && info.nr_mem < MAX_SRAT_MEM {
                let (base, size): (u64, u64) = (read(e + 8), read(e + 16));
                if size > 0 {
                    info.mem[info.nr_mem] = SratMem { start: base, end: base + size, pxm: read(e + 2) };
                    info.nr_mem += 1;
                }
            }
            if l == 0 {
                break;
            }
            off += l as u64;
        }
    }
    info
}
