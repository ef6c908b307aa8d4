//! NUMA nodes from the ACPI SRAT (Linux: `arch/x86/mm/srat.c`, `drivers/acpi/numa/srat.c`'s
//! `acpi_map_pxm_to_node`): pure logic, so it is unit-tested on the host.
//!
//! Node numbers are the proximity domains that have memory, in ascending order (QEMU's
//! `-numa node,nodeid=N` gives domain N, so node N). Usable E820 ranges are split where SRAT
//! ranges begin and end, each piece on its node; RAM the SRAT does not cover is on node 0.
//! A CPU takes its domain's node, or node 0 when the domain has no memory (a memoryless node
//! is folded into node 0: kmem's nodes all have RAM).

#![forbid(unsafe_code)]

use kmem::{MemRegion, RegionKind, MAX_NUMNODES};

/// One SRAT memory-affinity range: `[start, end)` in proximity domain `pxm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SratMem {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Proximity domain.
    pub pxm: u32,
}

/// Proximity domain -> node number.
#[derive(Clone, Copy, Debug)]
pub struct NodeMap {
    pxms: [u32; MAX_NUMNODES],
    nr: usize,
}

impl NodeMap {
    /// The domains of `srat` that have memory, ascending (at most `MAX_NUMNODES`).
    pub fn new(srat: &[SratMem]) -> Self {
        let mut m = NodeMap { pxms: [0; MAX_NUMNODES], nr: 0 };
        for r in srat {
            if m.pxms[..m.nr].contains(&r.pxm) || m.nr == MAX_NUMNODES {
                continue;
            }
            let at = m.pxms[..m.nr].iter().position(|&p| p > r.pxm).unwrap_or(m.nr);
            m.pxms.copy_within(at..m.nr, at + 1);
            m.pxms[at] = r.pxm;
            m.nr += 1;
        }
        m
    }

    /// Number of nodes (1 without an SRAT).
    pub fn nr_nodes(&self) -> usize {
        self.nr.max(1)
    }

    /// The node of domain `pxm` (0 for a domain without memory).
    pub fn node(&self, pxm: u32) -> u8 {
        self.pxms[..self.nr].iter().position(|&p| p == pxm).unwrap_or(0) as u8
    }
}

/// Writes the memory map `e820` into `out` with usable ranges split at SRAT boundaries, each
/// piece on its node; returns the number of entries written (what does not fit is dropped).
pub fn split_regions(e820: &[MemRegion], srat: &[SratMem], nodes: &NodeMap, out: &mut [MemRegion]) -> usize {
    let mut n = 0;
    for r in e820 {
        if r.kind != RegionKind::Usable || srat.is_empty() {
            if n < out.len() {
                out[n] = *r;
                n += 1;
            }
            continue;
        }
        let (mut s, e) = (r.start.as_u64(), r.end().as_u64());
        while s < e && n < out.len() {
            let (end, node) = match srat.iter().find(|m| m.start <= s && s < m.end) {
                Some(m) => (m.end.min(e), nodes.node(m.pxm)),
                // Not covered: up to the next SRAT range, on node 0.
                None => (srat.iter().map(|m| m.start).filter(|&b| b > s).min().unwrap_or(e).min(e), 0),
            };
            out[n] = MemRegion::usable(s, end - s).on_node(node);
            n += 1;
            s = end;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    /// QEMU q35 `-m 4G` with two 2 GiB nodes: node 1 is the RAM above 4 GiB.
    #[test]
    fn qemu_two_nodes() {
        let e820 = [
            MemRegion::usable(0, 0x9fc00),
            MemRegion::reserved(0x9fc00, 0x400),
            MemRegion::usable(1 << 20, 2 * GIB - (1 << 20)),
            MemRegion::reserved(0xb000_0000, 0x1000_0000),
            MemRegion::usable(4 * GIB, 2 * GIB),
        ];
        let srat = [
            SratMem { start: 0, end: 0xa0000, pxm: 0 },
            SratMem { start: 1 << 20, end: 2 * GIB, pxm: 0 },
            SratMem { start: 2 * GIB, end: 6 * GIB, pxm: 1 },
        ];
        let nodes = NodeMap::new(&srat);
        assert_eq!(nodes.nr_nodes(), 2);
        let mut out = [MemRegion::reserved(0, 0); 16];
        let n = split_regions(&e820, &srat, &nodes, &mut out);
        assert_eq!(n, 5);
        assert_eq!(out[2], MemRegion::usable(1 << 20, 2 * GIB - (1 << 20)));
        assert_eq!(out[4], MemRegion::usable(4 * GIB, 2 * GIB).on_node(1));
        assert_eq!(out[1].kind, RegionKind::Reserved);
    }

    /// A usable range across a node boundary is split there; RAM outside the SRAT is node 0.
    #[test]
    fn split_at_boundary_and_uncovered() {
        let e820 = [MemRegion::usable(0, 4 * GIB)];
        let srat = [SratMem { start: GIB, end: 2 * GIB, pxm: 7 }, SratMem { start: 2 * GIB, end: 3 * GIB, pxm: 3 }];
        let nodes = NodeMap::new(&srat);
        // Domains ascending: 3 -> node 0, 7 -> node 1.
        assert_eq!((nodes.node(3), nodes.node(7), nodes.node(9)), (0, 1, 0));
        let mut out = [MemRegion::reserved(0, 0); 8];
        let n = split_regions(&e820, &srat, &nodes, &mut out);
        assert_eq!(
            &out[..n],
            &[
                MemRegion::usable(0, GIB),
                MemRegion::usable(GIB, GIB).on_node(1),
                MemRegion::usable(2 * GIB, GIB),
                MemRegion::usable(3 * GIB, GIB),
            ]
        );
    }

    /// Without an SRAT: one node, the map unchanged; a full output drops the rest.
    #[test]
    fn no_srat_and_full_output() {
        let e820 = [MemRegion::usable(0, GIB), MemRegion::usable(2 * GIB, GIB)];
        let nodes = NodeMap::new(&[]);
        assert_eq!(nodes.nr_nodes(), 1);
        let mut out = [MemRegion::reserved(0, 0); 1];
        assert_eq!(split_regions(&e820, &[], &nodes, &mut out), 1);
        assert_eq!(out[0], e820[0]);
    }
}
