//! `/proc/vmallocinfo` (mm/vmalloc.c `vmalloc_info_show`): one line per busy area in address
//! order, then the lazily freed areas not yet purged.
//!
//! ```text
//! 0x%016lx-0x%016lx %7ld <caller> pages=N vmalloc [vmap] [user] [vpages] N0=n ...
//! 0x%016lx-0x%016lx %7ld vm_map_ram
//! 0x%016lx-0x%016lx %7ld unpurged vm_area
//! ```
//! Addresses print in full (Linux's `%pK` hashes them for unprivileged readers); the size
//! includes the guard page. The caller is the `#[track_caller]` location (`file:line`) where
//! Linux prints `symbol+offset/size`. Areas are read in batches under the vmap lock and
//! printed outside it.

#![forbid(unsafe_code)]

use core::fmt::{self, Write};
use core::panic::Location;

use crate::machine::Kmem;
use crate::mm::page::MAX_NUMNODES;
use crate::platform::Platform;
use crate::vmalloc::vm_flags;

const BATCH: usize = 8;

#[derive(Clone, Copy)]
struct Line {
    start: usize,
    end: usize,
    size: usize,
    caller: Option<&'static Location<'static>>,
    nr_pages: usize,
    flags: u32,
    nodes: [u32; MAX_NUMNODES],
}

const EMPTY: Line = Line { start: 0, end: 0, size: 0, caller: None, nr_pages: 0, flags: 0, nodes: [0; MAX_NUMNODES] };

/// Writes `/proc/vmallocinfo`.
pub fn vmallocinfo<P: Platform>(k: &Kmem<P>, w: &mut dyn Write) -> fmt::Result {
    for lazy in [false, true] {
        let mut cursor = 0usize;
        loop {
            let mut buf = [EMPTY; BATCH];
            let n = k.vmalloc_batch(
                lazy,
                cursor,
                &mut |i, start, end, vm| {
                    let l = &mut buf[i];
                    *l = Line { start, end, size: end - start, ..EMPTY };
                    if let Some(vm) = vm {
                        l.size = vm.size;
                        l.caller = Some(vm.caller);
                        l.flags = vm.flags;
                        if vm.flags & vm_flags::ALLOC != 0 {
                            l.nr_pages = vm.nr_pages;
                            for &pfn in vm.pages() {
                                let node = k.memmap().page(pfn).map_or(0, |p| p.node());
                                l.nodes[node.min(MAX_NUMNODES - 1)] += 1;
                            }
                        }
                    }
                },
                BATCH,
            );
            for l in &buf[..n] {
                write_line(w, l, lazy)?;
            }
            if n < BATCH {
                break;
            }
            cursor = buf[n - 1].start + 1;
        }
    }
    Ok(())
}

fn write_line(w: &mut dyn Write, l: &Line, lazy: bool) -> fmt::Result {
    write!(w, "0x{:016x}-0x{:016x} {:7}", l.start, l.end, l.size)?;
    if lazy {
        return writeln!(w, " unpurged vm_area");
    }
    if l.flags & vm_flags::MAP_RAM != 0 {
        return writeln!(w, " vm_map_ram");
    }
    if let Some(c) = l.caller {
        write!(w, " {}:{}", c.file(), c.line())?;
    }
    if l.nr_pages != 0 {
        write!(w, " pages={}", l.nr_pages)?;
    }
    for (flag, name) in [
        (vm_flags::IOREMAP, " ioremap"),
        (vm_flags::ALLOC, " vmalloc"),
        (vm_flags::MAP, " vmap"),
        (vm_flags::USERMAP, " user"),
        (vm_flags::VPAGES, " vpages"),
    ] {
        if l.flags & flag != 0 {
            w.write_str(name)?;
        }
    }
    for (nid, &n) in l.nodes.iter().enumerate().filter(|(_, &n)| n != 0) {
        write!(w, " N{nid}={n}")?;
    }
    writeln!(w)
}
