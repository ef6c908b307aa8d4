//! `/proc/pagetypeinfo` (`mm/vmstat.c`: `pagetypeinfo_show`, `pagetypeinfo_showfree_print`,
//! `pagetypeinfo_showblockcount_print`).

#![forbid(unsafe_code)]

use core::fmt::{self, Write};

use crate::addr::{Order, Pfn, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER};
use crate::machine::Kmem;
use crate::mm::node::Node;
use crate::mm::zone::Zone;
use crate::mm::zone_type::{Migratetype, MIGRATE_TYPES};
use crate::platform::Platform;

/// Linux caps its walk of one free list at this many entries and then prints `>` before the
/// count (`pagetypeinfo_showfree_print`).
const FREECOUNT_CAP: usize = 100_000;

/// Writes `/proc/pagetypeinfo`.
///
/// Linux prints the file once per node with memory (`N_MEMORY`), header included, so a
/// machine with two nodes shows the `Page block order` header twice. Per node:
///
/// ```text
/// Page block order: 9
/// Pages per block:  512
///
/// Free pages count per migrate type at order       0      1 ...     10
/// Node    0, zone      DMA, type    Unmovable      0      0 ...      0
/// (one row per populated zone and migratetype: Unmovable, Movable, Reclaimable, HighAtomic,
///  Isolate)
///
/// Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic      Isolate
/// Node 0, zone      DMA            1            7            0            0            0
/// ```
///
/// The free counts are free *blocks* of each order on that migratetype's list; a count of
/// 100000 or more prints as `>100000`, as Linux's capped list walk does. The block counts walk
/// the zone span from `start_pfn` in pageblock steps, as Linux does, and count the pageblock
/// of each step whose frame has a descriptor (`pfn_valid`) belonging to this zone, by its
/// pageblock migratetype (a chunk whose descriptors are deferred counts as the zone's: its
/// pageblocks are counted as they will be). kmem keeps no page-owner data, so there is no "Number of mixed
/// blocks" section (Linux prints it only with `page_owner=on`).
pub fn pagetypeinfo<P: Platform>(k: &Kmem<P>, w: &mut dyn Write) -> fmt::Result {
    for node in (0..k.nr_nodes()).filter_map(|n| k.node(n)).filter(|n| n.present_pages() != 0) {
        writeln!(w, "Page block order: {PAGEBLOCK_ORDER}")?;
        writeln!(w, "Pages per block:  {PAGEBLOCK_NR_PAGES}")?;
        w.write_char('\n')?;
        show_free(node, w)?;
        show_block_count(k, node, w)?;
    }
    Ok(())
}

fn populated(node: &Node) -> impl Iterator<Item = &Zone> {
    node.zones.iter().filter(|z| z.is_populated())
}

/// `pagetypeinfo_showfree`.
fn show_free(node: &Node, w: &mut dyn Write) -> fmt::Result {
    write!(w, "{:<43} ", "Free pages count per migrate type at order")?;
    for order in Order::all() {
        write!(w, "{:>6} ", order.as_u32())?;
    }
    w.write_char('\n')?;
    for z in populated(node) {
        for mt in Migratetype::ALL {
            write!(w, "Node {:>4}, zone {:>8}, type {:>12} ", node.id(), z.name(), mt.name())?;
            for order in Order::all() {
                let n = z.area.nr_free_mt(order, mt);
                if n >= FREECOUNT_CAP {
                    write!(w, ">{FREECOUNT_CAP:>6} ")?;
                } else {
                    write!(w, "{n:>6} ")?;
                }
            }
            w.write_char('\n')?;
        }
    }
    Ok(())
}

/// `pagetypeinfo_showblockcount`.
fn show_block_count<P: Platform>(k: &Kmem<P>, node: &Node, w: &mut dyn Write) -> fmt::Result {
    write!(w, "\n{:<23}", "Number of blocks type ")?;
    for mt in Migratetype::ALL {
        write!(w, "{:>12} ", mt.name())?;
    }
    w.write_char('\n')?;
    for z in populated(node) {
        let count = block_count(k, z);
        write!(w, "Node {}, zone {:>8} ", node.id(), z.name())?;
        for n in count {
            write!(w, "{n:>12} ")?;
        }
        w.write_char('\n')?;
    }
    Ok(())
}

/// Pageblocks of each migratetype in `zone` (`pagetypeinfo_showblockcount_print`).
fn block_count<P: Platform>(k: &Kmem<P>, zone: &Zone) -> [usize; MIGRATE_TYPES] {
    let mm = k.memmap();
    let mut count = [0; MIGRATE_TYPES];
    let (start, end) = (zone.start_pfn().as_usize(), zone.end_pfn().as_usize());
    for pfn in (start..end).step_by(PAGEBLOCK_NR_PAGES).map(Pfn::new) {
        // A deferred chunk's pageblocks count as what they will be (their descriptors are not
        // written yet; their migratetype is kept in the section).
        let (nid, zidx) = match (mm.valid_page(pfn), k.deferred_frame_zone(pfn)) {
            (Some(page), _) => (page.node(), page.zone_index()),
            (None, Some((nid, zt))) => (nid, zt.index()),
            (None, None) => continue,
        };
        if nid != zone.node() || zidx != zone.zone_type().index() {
            continue;
        }
        count[mm.pageblock_migratetype(pfn).index()] += 1;
    }
    count
}
