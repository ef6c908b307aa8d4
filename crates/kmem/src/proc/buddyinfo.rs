//! `/proc/buddyinfo` (`mm/vmstat.c`: `frag_show` / `frag_show_print`).

#![forbid(unsafe_code)]

use core::fmt::{self, Write};

use crate::addr::Order;
use crate::machine::Kmem;
use crate::platform::Platform;

/// Writes `/proc/buddyinfo`: one line per populated zone, node by node, lowest zone first.
///
/// ```text
/// Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3
/// ```
///
/// Column `k` is the number of free *blocks* of order `k` (not pages), over all migratetypes
/// (`free_area[k].nr_free`). Every line ends with a space before the newline, as in Linux
/// (`"%6lu "` per order). There is no header line.
pub fn buddyinfo<P: Platform>(k: &Kmem<P>, w: &mut dyn Write) -> fmt::Result {
    for z in k.zones().filter(|z| z.is_populated()) {
        write!(w, "Node {}, zone {:>8} ", z.node(), z.name())?;
        for order in Order::all() {
            write!(w, "{:>6} ", z.area.nr_free(order))?;
        }
        w.write_char('\n')?;
    }
    Ok(())
}
