//! The debug checks of `mm/slub.c`: `check_bytes_and_report`, `check_object`, `check_slab`,
//! `on_freelist`, and the initialisation they check against (`init_object`).
//!
//! A failed check reports once and repairs what it found (restores the bytes, cuts a
//! corrupt chain, fixes the counters), so the cache keeps working.

use super::super::cache::{CacheNode, KmemCache};
use super::super::flags::SlabFlags;
use super::super::object::{fill, read_u32, write_u32};
use super::super::slab_page::{slab_addr, Slab};
use super::super::word::{SlabWord, OFF_NONE};
use super::report::{peek, Body, POISON_END, POISON_FREE, POISON_INUSE, SLUB_RED_ACTIVE};
use crate::machine::Kmem;
use crate::platform::Platform;

impl<P: Platform> Kmem<P> {
    /// `check_bytes_and_report()`: `[start, start + len)` must all be `value`. On a
    /// mismatch: report `<what> overwritten` with the first bad byte, restore the range, and
    /// return false. `not_freed` adds the free path's `Object at .. not freed` line.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check_bytes(
        &self,
        s: &KmemCache,
        slab: Slab<'_>,
        obj: usize,
        what: &str,
        start: usize,
        value: u8,
        len: usize,
        not_freed: bool,
    ) -> bool {
        let Some(first) = (0..len).find(|&i| peek(start + i) != value) else { return true };
        let fault = start + first;
        let mut end = start + len;
        while end > fault && peek(end - 1) == value {
            end -= 1;
        }
        let addr = slab_addr(self, slab);
        let got = peek(fault);
        self.slab_bug(s, &|w| write!(w, "{what} overwritten"), &|w| {
            writeln!(
                w,
                "0x{fault:016x}-0x{:016x} @offset={}. First byte 0x{got:x} instead of 0x{value:x}",
                end - 1,
                fault - addr
            )?;
            self.print_trailer(w, s, slab, obj)?;
            writeln!(w, "FIX {}: Restoring {what} 0x{fault:016x}-0x{:016x}=0x{value:x}", s.name(), end - 1)?;
            if not_freed {
                writeln!(w, "FIX {}: Object at 0x{obj:016x} not freed", s.name())?;
            }
            Ok(())
        });
        // SAFETY: the range is metadata or poison of an object of `slab`, which the caller
        // may write (list lock held, object being checked).
        unsafe { fill(fault, value, end - fault) };
        false
    }

    /// `init_object()`: red zones to `val`, the object poisoned if `__OBJECT_POISON` (free
    /// objects only: `val` inactive), kmalloc's unused tail red-zoned.
    pub(crate) fn init_object(&self, s: &KmemCache, obj: usize, val: u8) {
        let l = s.layout;
        let mut poison_size = l.object_size as usize;
        // SAFETY: the slot of `obj` belongs to the caller (new slab, or object being
        // allocated or freed under the list lock); all ranges stay inside the slot.
        unsafe {
            if l.flags.contains(SlabFlags::RED_ZONE) {
                fill(obj - l.red_left_pad as usize, val, l.red_left_pad as usize);
                if l.has_orig_size() && val == SLUB_RED_ACTIVE {
                    poison_size = self.get_orig_size(s, obj) as usize;
                }
            }
            if l.flags.contains(SlabFlags::OBJECT_POISON) && val != SLUB_RED_ACTIVE {
                fill(obj, POISON_FREE, l.object_size as usize - 1);
                fill(obj + l.object_size as usize - 1, POISON_END, 1);
            }
            if l.flags.contains(SlabFlags::RED_ZONE) {
                fill(obj + poison_size, val, l.inuse as usize - poison_size);
            }
        }
    }

    /// The size a kmalloc caller asked for (`get_orig_size`).
    pub(crate) fn get_orig_size(&self, s: &KmemCache, obj: usize) -> u32 {
        if !s.layout.has_orig_size() {
            return s.layout.object_size;
        }
        // SAFETY: the orig_size word lies in the object's metadata (4-aligned).
        unsafe { read_u32(obj + s.layout.orig_size_offset() as usize) }.min(s.layout.object_size)
    }

    /// `set_orig_size()`.
    pub(crate) fn set_orig_size(&self, s: &KmemCache, obj: usize, size: u32) {
        if s.layout.has_orig_size() {
            // SAFETY: as `get_orig_size`; the object is being allocated by the caller.
            unsafe { write_u32(obj + s.layout.orig_size_offset() as usize, size) };
        }
    }

    /// `check_object()`: everything about one object that its state (`val`: free
    /// `SLUB_RED_INACTIVE` or allocated `SLUB_RED_ACTIVE`) implies. Reports the first
    /// problem (alignment padding is reported and checking goes on) and repairs it.
    pub(crate) fn check_object(&self, s: &KmemCache, slab: Slab<'_>, obj: usize, val: u8, not_freed: bool) -> bool {
        let l = s.layout;
        let end = obj + l.object_size as usize;
        let tail = (l.inuse - l.object_size) as usize;
        if l.flags.contains(SlabFlags::RED_ZONE) {
            let left = obj - l.red_left_pad as usize;
            if !self.check_bytes(s, slab, obj, "Left Redzone", left, val, l.red_left_pad as usize, not_freed)
                || !self.check_bytes(s, slab, obj, "Right Redzone", end, val, tail, not_freed)
            {
                return false;
            }
            if l.has_orig_size() && val == SLUB_RED_ACTIVE {
                let orig = self.get_orig_size(s, obj);
                if l.object_size > orig {
                    let len = (l.object_size - orig) as usize;
                    if !self.check_bytes(s, slab, obj, "kmalloc Redzone", obj + orig as usize, val, len, not_freed) {
                        return false;
                    }
                }
            }
        } else if l.flags.contains(SlabFlags::POISON) && tail > 0 {
            self.check_bytes(s, slab, obj, "Alignment padding", end, POISON_INUSE, tail, not_freed);
        }
        if l.flags.contains(SlabFlags::POISON) {
            if val != SLUB_RED_ACTIVE
                && l.flags.contains(SlabFlags::OBJECT_POISON)
                && (!self.check_bytes(s, slab, obj, "Poison", obj, POISON_FREE, l.object_size as usize - 1, not_freed)
                    || !self.check_bytes(s, slab, obj, "End Poison", end - 1, POISON_END, 1, not_freed))
            {
                return false;
            }
            let pad = l.metadata_end();
            if pad != l.size_from_object() {
                let len = (l.size_from_object() - pad) as usize;
                self.check_bytes(s, slab, obj, "Object padding", obj + pad as usize, POISON_INUSE, len, not_freed);
            }
        }
        if !l.freeptr_outside() && val == SLUB_RED_ACTIVE {
            return true;
        }
        // SAFETY: `obj` is an object of `slab`.
        let fp = unsafe { s.get_fp(obj) };
        if !s.valid_next(fp, slab.word().objects) {
            self.object_err(s, slab, obj, "Freepointer corrupt", None);
            // SAFETY: as above; the caller may edit the slab's free objects.
            unsafe { s.set_fp(obj, OFF_NONE) };
            return false;
        }
        true
    }

    /// `check_slab()`: the counters fit the slab, and (with poisoning) its tail padding is
    /// intact.
    pub(crate) fn check_slab(&self, s: &KmemCache, slab: Slab<'_>) -> bool {
        let w = slab.word();
        let max = s.objects_for(slab.order());
        if w.objects > max {
            self.slab_err(s, slab, &|f| write!(f, "objects {} > max {max}", w.objects), None);
            return false;
        }
        if w.inuse > w.objects {
            self.slab_err(s, slab, &|f| write!(f, "inuse {} > max {}", w.inuse, w.objects), None);
            return false;
        }
        self.slab_pad_check(s, slab);
        true
    }

    /// `slab_pad_check()`: the bytes after the last object are still `POISON_INUSE`.
    fn slab_pad_check(&self, s: &KmemCache, slab: Slab<'_>) {
        if !s.layout.flags.contains(SlabFlags::POISON) {
            return;
        }
        let start = slab_addr(self, slab);
        let length = crate::PAGE_SIZE << slab.order();
        let remainder = length % s.layout.size as usize;
        if remainder == 0 {
            return;
        }
        let pad = start + length - remainder;
        let Some(first) = (0..remainder).find(|&i| peek(pad + i) != POISON_INUSE) else { return };
        let fault = pad + first;
        let mut end = start + length;
        while end > fault && peek(end - 1) == POISON_INUSE {
            end -= 1;
        }
        let extra: Body<'_> = &|w| {
            super::report::print_section(w, "Padding ", pad, remainder)?;
            writeln!(w, "FIX {}: Restoring slab padding 0x{fault:016x}-0x{:016x}=0x{POISON_INUSE:x}", s.name(), end - 1)
        };
        self.slab_err(
            s,
            slab,
            &|w| write!(w, "Padding overwritten. 0x{fault:016x}-0x{:016x} @offset={}", end - 1, fault - start),
            Some(extra),
        );
        // SAFETY: slab tail padding belongs to the cache (list lock held by the caller).
        unsafe { fill(fault, POISON_INUSE, end - fault) };
    }

    /// The word of `slab`, taken from the head of `n`'s partial list (list lock held), if
    /// kmem may follow it ([`KmemCache::word_ok`]). Otherwise the slab is reported in
    /// `check_slab`'s words (`Wrong number of objects`, `inuse .. > max ..`, `Freepointer
    /// corrupt`) and isolated, as `alloc_debug_processing` does (`Marking all objects used`):
    /// its word says every object is in use, it moves to the full list, and its free objects
    /// are never handed out (leaked); objects in use can still be freed into it.
    pub(crate) fn partial_slab_word(&self, s: &KmemCache, n: &CacheNode, slab: Slab<'_>) -> Option<SlabWord> {
        let w = slab.word();
        if s.word_ok(slab, w) {
            return Some(w);
        }
        self.slab_word_corrupt(s, slab, w);
        let max = s.max_objects(slab);
        slab.set_word(SlabWord { freelist: OFF_NONE, inuse: max, objects: max });
        let mm = self.memmap();
        n.partial.unlink(mm, slab.page);
        n.full.push(mm, slab.pfn, slab.page, false);
        None
    }

    /// The report of a slab word that [`KmemCache::word_ok`] refused.
    #[cold]
    pub(crate) fn slab_word_corrupt(&self, s: &KmemCache, slab: Slab<'_>, w: SlabWord) {
        let max = s.max_objects(slab);
        let what: Body<'_> = &|f| {
            if w.objects != max {
                write!(f, "Wrong number of objects. Found {} but should be {max}", w.objects)
            } else if w.inuse > w.objects {
                write!(f, "inuse {} > max {}", w.inuse, w.objects)
            } else {
                write!(f, "Freepointer corrupt: freelist offset {:#x}", w.freelist)
            }
        };
        self.slab_err(s, slab, what, Some(&|f| writeln!(f, "FIX {}: Marking all objects used", s.name())));
    }

    /// `on_freelist()`: walks the slab's freelist; true if `search` (an offset) is on it.
    /// With `search == None` it checks the counters: a corrupt link cuts the list
    /// (`Freechain corrupt`/`Freelist cleared`), wrong counts are fixed.
    pub(crate) fn on_freelist(&self, s: &KmemCache, slab: Slab<'_>, search: Option<u32>) -> bool {
        let w = slab.word();
        let base = s.obj_base(self, slab);
        // Offsets are checked against what the slab can hold, whatever its word says.
        let objects = w.objects.min(s.max_objects(slab));
        let (mut nr, mut fp, mut prev) = (0u32, w.freelist, None::<u32>);
        while fp != OFF_NONE && nr <= objects {
            if Some(fp) == search {
                return true;
            }
            if !s.valid_next(fp as u64, objects) {
                match prev {
                    Some(p) => {
                        self.object_err(s, slab, base + p as usize, "Freechain corrupt", None);
                        // SAFETY: `p` is a free object of the slab (list lock held).
                        unsafe { s.set_fp(base + p as usize, OFF_NONE) };
                    }
                    None => {
                        self.slab_err(
                            s,
                            slab,
                            &|f| f.write_str("Freepointer corrupt"),
                            Some(&|f| writeln!(f, "FIX {}: Freelist cleared", s.name())),
                        );
                        slab.set_word(SlabWord { freelist: OFF_NONE, inuse: w.objects, ..w });
                        return false;
                    }
                }
                break;
            }
            prev = Some(fp);
            // SAFETY: `fp` is a validated free object of the slab.
            fp = unsafe { s.get_fp(base + fp as usize) } as u32;
            nr += 1;
        }
        let max = s.objects_for(slab.order());
        let mut w = slab.word();
        if w.objects != max {
            let found = w.objects;
            self.slab_err(
                s,
                slab,
                &|f| write!(f, "Wrong number of objects. Found {found} but should be {max}"),
                Some(&|f| writeln!(f, "FIX {}: Number of objects adjusted", s.name())),
            );
            w.objects = max;
            slab.set_word(w);
        }
        if w.inuse != w.objects.saturating_sub(nr) {
            let (counter, counted) = (w.inuse, w.objects.saturating_sub(nr));
            self.slab_err(
                s,
                slab,
                &|f| write!(f, "Wrong object count. Counter is {counter} but counted were {counted}"),
                Some(&|f| writeln!(f, "FIX {}: Object count adjusted", s.name())),
            );
            w.inuse = counted;
            slab.set_word(w);
        }
        search.is_none()
    }
}
