//! Slab reports in Linux's shapes: `slab_bug` headers, `print_trailer`, hex dumps
//! (`print_hex_dump` with `DUMP_PREFIX_ADDRESS`), and the non-debug misuse reports
//! (invalid pointer, wrong cache, double free, corrupt freelist).
//!
//! Every report is one [`ReportKind::SlabBug`] (or `Warning`) count, whatever number of
//! lines it has; its `FIX` lines say what kmem did to keep the cache working.

use core::fmt::{self, Write};

use super::super::cache::KmemCache;
use super::super::slab_page::{slab_addr, Slab};
use super::super::word::OFF_NONE;
use super::track::{print_tracking, Which};
use crate::machine::Kmem;
use crate::mm::page::write_flag_names;
use crate::platform::{Platform, ReportKind};
use crate::sync::Ordering;

/// `POISON_INUSE`: padding and fresh slab bytes.
pub const POISON_INUSE: u8 = 0x5a;
/// `POISON_FREE`: a freed object.
pub const POISON_FREE: u8 = 0x6b;
/// `POISON_END`: the last byte of a freed object.
pub const POISON_END: u8 = 0xa5;
/// `SLUB_RED_INACTIVE`: the red zone of a free object.
pub const SLUB_RED_INACTIVE: u8 = 0xbb;
/// `SLUB_RED_ACTIVE`: the red zone of an allocated object.
pub const SLUB_RED_ACTIVE: u8 = 0xcc;

pub(crate) type Body<'a> = &'a dyn Fn(&mut dyn Write) -> fmt::Result;

/// Reads byte `addr` of slab memory (volatile: a buggy user may be writing it).
pub(crate) fn peek(addr: usize) -> u8 {
    // SAFETY: callers pass addresses inside slab pages of the machine, which stay mapped.
    unsafe { core::ptr::read_volatile(addr as *const u8) }
}

impl<P: Platform> Kmem<P> {
    /// `print_tainted()`.
    pub(crate) fn taint_str(&self) -> &'static str {
        if self.slab().tainted.load(Ordering::Relaxed) {
            "Tainted: B"
        } else {
            "Not tainted"
        }
    }

    /// One `BUG <cache> (<taint>): <what>` report with `body` after the header.
    pub(crate) fn slab_bug(&self, s: &KmemCache, what: Body<'_>, body: Body<'_>) {
        let taint = self.taint_str();
        self.report(ReportKind::SlabBug, &|w| {
            writeln!(w, "=============================================================================")?;
            write!(w, "BUG {} ({taint}): ", s.name())?;
            what(w)?;
            writeln!(w)?;
            writeln!(w, "-----------------------------------------------------------------------------")?;
            writeln!(w)?;
            body(w)
        });
        self.slab().tainted.store(true, Ordering::Relaxed);
    }

    /// `print_slab_info()`.
    pub(crate) fn print_slab_info(&self, w: &mut dyn Write, s: &KmemCache, slab: Slab<'_>) -> fmt::Result {
        let word = slab.word();
        let base = s.obj_base(self, slab);
        let fp = if word.freelist == OFF_NONE { 0 } else { base + word.freelist as usize };
        let flags = slab.page.state_flags();
        write!(
            w,
            "Slab 0x{:016x} objects={} used={} fp=0x{fp:016x} flags={flags:#x}(",
            slab.page as *const _ as usize, word.objects, word.inuse
        )?;
        write_flag_names(w, flags)?;
        writeln!(w, ")")
    }

    /// `print_trailer()`: tracking, slab info, the object and its surroundings.
    pub(crate) fn print_trailer(&self, w: &mut dyn Write, s: &KmemCache, slab: Slab<'_>, obj: usize) -> fmt::Result {
        let l = s.layout;
        let addr = slab_addr(self, slab);
        let now = self.jiffies();
        if l.flags.contains(super::super::SlabFlags::STORE_USER) {
            print_tracking(self, w, s, obj, Which::Alloc, now)?;
            print_tracking(self, w, s, obj, Which::Free, now)?;
        }
        self.print_slab_info(w, s, slab)?;
        // SAFETY: `obj` is an object of `slab`.
        let fp = unsafe { s.get_fp(obj) };
        let fp = if fp == OFF_NONE as u64 { 0 } else { s.obj_base(self, slab).wrapping_add(fp as usize) };
        writeln!(w, "Object 0x{obj:016x} @offset={} fp=0x{fp:016x}", obj - addr)?;
        writeln!(w)?;
        let rz = l.flags.contains(super::super::SlabFlags::RED_ZONE);
        if rz {
            print_section(w, "Redzone  ", obj - l.red_left_pad as usize, l.red_left_pad as usize)?;
        } else if obj > addr + 16 {
            print_section(w, "Bytes b4 ", obj - 16, 16)?;
        }
        print_section(w, "Object   ", obj, (l.object_size as usize).min(crate::PAGE_SIZE))?;
        if rz {
            print_section(w, "Redzone  ", obj + l.object_size as usize, (l.inuse - l.object_size) as usize)?;
        }
        let off = l.metadata_end();
        if off != l.size_from_object() {
            print_section(w, "Padding  ", obj + off as usize, (l.size_from_object() - off) as usize)?;
        }
        Ok(())
    }

    /// `object_err()`: a report about one object.
    pub(crate) fn object_err(&self, s: &KmemCache, slab: Slab<'_>, obj: usize, reason: &str, fix: Option<Body<'_>>) {
        self.slab_bug(s, &|w| w.write_str(reason), &|w| {
            self.print_trailer(w, s, slab, obj)?;
            if let Some(f) = fix {
                write!(w, "FIX {}: ", s.name())?;
                f(w)?;
                writeln!(w)?;
            }
            Ok(())
        });
    }

    /// `slab_err()`: a report about a slab.
    pub(crate) fn slab_err(&self, s: &KmemCache, slab: Slab<'_>, what: Body<'_>, extra: Option<Body<'_>>) {
        self.slab_bug(s, what, &|w| {
            self.print_slab_info(w, s, slab)?;
            if let Some(e) = extra {
                e(w)?;
            }
            Ok(())
        });
    }

    /// `kmem_cache_free` of a pointer that is no object start (or in no slab): not freed.
    #[cold]
    pub(crate) fn invalid_object_pointer(&self, s: &KmemCache, slab: Option<Slab<'_>>, addr: usize) {
        let fix = |w: &mut dyn Write| writeln!(w, "FIX {}: Object at 0x{addr:016x} not freed", s.name());
        match slab {
            Some(slab) => self.slab_err(s, slab, &|w| write!(w, "Invalid object pointer 0x{addr:016x}"), Some(&fix)),
            None => self.slab_bug(s, &|w| write!(w, "Invalid object pointer 0x{addr:016x}"), &|w| {
                writeln!(w, "Object 0x{addr:016x} is not in a slab page")?;
                fix(w)
            }),
        }
    }

    /// `kmem_cache_free(s, x)` where `x` belongs to another cache (`cache_from_obj`'s WARN);
    /// kmem then frees the object to the cache it belongs to.
    #[cold]
    pub(crate) fn wrong_cache(&self, s: &KmemCache, real: &KmemCache, caller: &'static core::panic::Location<'static>) {
        let (cpu, pid) = (self.platform().current_cpu().0, self.platform().current_task().pid);
        self.report(ReportKind::SlabBug, &|w| {
            writeln!(w, "WARNING: CPU: {cpu} PID: {pid} at mm/slub.c cache_from_obj")?;
            writeln!(w, "kmem_cache_free: Wrong slab cache. {} but object is from {}", s.name(), real.name())?;
            writeln!(w, "called from {caller}")
        });
    }

    /// A double free seen by the hardened freelist checks (non-debug caches).
    #[cold]
    pub(crate) fn double_free(&self, s: &KmemCache, slab: Slab<'_>, obj: usize) {
        self.object_err(s, slab, obj, "Object already free", Some(&|w| write!(w, "Object at 0x{obj:016x} not freed")));
    }

    /// A free pointer that names no object of its slab: the chain is cut there
    /// (`freelist_corrupted`: the rest of the chain is leaked).
    #[cold]
    pub(crate) fn freelist_corrupt(&self, s: &KmemCache, slab: Slab<'_>, obj: usize) {
        self.object_err(s, slab, obj, "Freechain corrupt", Some(&|w| w.write_str("Isolate corrupted freechain")));
    }

    /// A `WARNING:` about a slab call (bad flags, bad arguments).
    #[cold]
    pub(crate) fn slab_warn(&self, s: &KmemCache, what: &str) {
        let (cpu, pid) = (self.platform().current_cpu().0, self.platform().current_task().pid);
        self.report(ReportKind::Warning, &|w| {
            writeln!(w, "WARNING: CPU: {cpu} PID: {pid} at mm/slub.c: {}: {what}", s.name())
        });
    }

    /// Jiffies at `HZ=1000` (ages in tracking lines).
    pub(crate) fn jiffies(&self) -> u64 {
        self.platform().now_ns() / 1_000_000
    }
}

/// `print_section()`: `print_hex_dump(KERN_ERR, text, DUMP_PREFIX_ADDRESS, 16, 1, addr, len, 1)`.
pub(crate) fn print_section(w: &mut dyn Write, text: &str, addr: usize, len: usize) -> fmt::Result {
    let mut off = 0;
    while off < len {
        let n = (len - off).min(16);
        write!(w, "{text}{:016x}: ", addr + off)?;
        let mut ascii = [b' '; 16];
        for (i, a) in ascii.iter_mut().enumerate() {
            if i < n {
                let b = peek(addr + off + i);
                write!(w, "{b:02x}")?;
                *a = if b.is_ascii_graphic() || b == b' ' { b } else { b'.' };
            } else {
                w.write_str("  ")?;
            }
            if i != 15 {
                w.write_char(' ')?;
            }
        }
        writeln!(w, "  {}", core::str::from_utf8(&ascii[..n]).unwrap_or(""))?;
        off += n;
    }
    Ok(())
}
