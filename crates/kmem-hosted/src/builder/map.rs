//! Memory maps a [`MachineBuilder`](super::MachineBuilder) makes: an x86 e820-like map for a
//! RAM size, and usable regions split between NUMA nodes.

use kmem::boot::PAGES_PER_SECTION_BYTES;
use kmem::{MemRegion, RegionKind};

use super::{BuildError, Preset, GIB, MIB};

/// An x86 e820-like map for `ram` bytes: page 0 and the legacy 640 KiB-1 MiB hole reserved;
/// on x86-64 a PCI hole from 3 GiB to 4 GiB pushes the rest above 4 GiB.
pub(super) fn x86_map(ram: u64, preset: Preset) -> Vec<MemRegion> {
    let mut v = vec![
        MemRegion::reserved(0, 0x1000),
        MemRegion::usable(0x1000, 0x9f000 - 0x1000),
        MemRegion::reserved(0x9f000, 0x10_0000 - 0x9f000),
    ];
    let pci = preset == Preset::X86_64 && ram > 3 * GIB;
    let low_end = if pci { 3 * GIB } else { ram };
    v.push(MemRegion::usable(MIB, low_end - MIB));
    if pci {
        v.push(MemRegion::reserved(3 * GIB, GIB));
        v.push(MemRegion::usable(4 * GIB, ram - 3 * GIB));
    }
    v
}

/// Splits the usable regions between `nodes` nodes at section boundaries: the sections that
/// hold usable RAM, in address order, go to nodes 0, 1, ... in runs of equal length (give or
/// take one section when they do not divide evenly), so every node has at least one. Fewer
/// such sections than nodes is an error.
pub(super) fn split_nodes(map: &[MemRegion], nodes: usize) -> Result<Vec<MemRegion>, BuildError> {
    let sec = PAGES_PER_SECTION_BYTES;
    let usable = || map.iter().filter(|r| r.kind == RegionKind::Usable && r.size > 0);
    let mut sections: Vec<u64> = Vec::new();
    for r in usable() {
        for s in r.start.as_u64() / sec..=(r.end().as_u64() - 1) / sec {
            if sections.last().is_none_or(|&l| l < s) {
                sections.push(s);
            }
        }
    }
    sections.sort_unstable();
    sections.dedup();
    let n = sections.len();
    if n < nodes {
        return Err(BuildError::Config(format!(
            "not enough RAM for {nodes} nodes of at least one 128 MiB section each ({n} sections of usable RAM)"
        )));
    }
    // The i-th section's node: `nodes` runs of n / nodes or n / nodes + 1 sections.
    let node_of = |addr: u64| -> u8 {
        let i = sections.binary_search(&(addr / sec)).unwrap_or_else(|i| i);
        ((i * nodes + nodes - 1) / n).min(nodes - 1) as u8
    };
    let mut out = Vec::new();
    for r in map {
        if r.kind != RegionKind::Usable || r.size == 0 {
            out.push(*r);
            continue;
        }
        let (mut s, end) = (r.start.as_u64(), r.end().as_u64());
        while s < end {
            let node = node_of(s);
            let mut cut = s;
            loop {
                cut = ((cut / sec + 1) * sec).min(end);
                if cut >= end || node_of(cut) != node {
                    break;
                }
            }
            out.push(MemRegion::usable(s, cut - s).on_node(node));
            s = cut;
        }
    }
    Ok(out)
}
