//! The double-free test and the claim: what turns an allocated object into a free one.
//!
//! A free object's free-pointer word always carries the cache's tag in its high half
//! (`word.rs`); an allocated object's was cleared when it was handed out. A free reads the
//! word, and a tagged one sends it to the suspect path (`free.rs`). An untagged word is then
//! claimed with a compare-and-exchange from the value read (`object::claim_word`), not
//! stored: of two frees of one object at once on two CPUs exactly one wins, the other takes
//! the suspect path and is reported (with a store both passed, and both CPUs' sheaves took
//! the object: handed out twice). The exchange is the fast paths' one locked instruction.
//! While the platform says the caller is the process's only thread
//! ([`Platform::sole_thread`](crate::Platform::sole_thread)), the mapped frees (the process
//! allocator's) store instead, and `kfree_nolock` defers every free (`nolock.rs`), so that a
//! signal handler between the test and the store claims nothing.

use super::cache::KmemCache;
use super::object::{claim_word, read_word};
use super::word::tagged;

/// What the double-free test needs of a cache: a cache's descriptor, or the record `kfree`'s
/// fast path keeps of it ([`FastCheck`](super::fast_check::FastCheck)).
pub(crate) trait FreeTag {
    /// The address of object `obj`'s free-pointer word.
    fn fp_addr(&self, obj: usize) -> usize;
    /// The cache's marker: its high half is the tag every free object's word carries; the
    /// whole word is the sheaf marker.
    fn marker(&self) -> u64;
}

impl FreeTag for KmemCache {
    #[inline(always)]
    fn fp_addr(&self, obj: usize) -> usize {
        KmemCache::fp_addr(self, obj)
    }
    #[inline(always)]
    fn marker(&self) -> u64 {
        self.sheaf_marker()
    }
}

/// A [`FreeTag`] whose free-pointer word is the object's first, known without reading the
/// cache's offset: so that the double-free test's load of the word waits for nothing but the
/// object's address (the free map's paths, on machines whose fast records all keep the word
/// there: [`FastCheck::set`](super::fast_check::FastCheck::set)). The C loop of 1000 `malloc(64)` then 1000 `free`, whose
/// blocks' words come from L2, ran 11.6 -> 9.7 ns a block when that load stopped waiting
/// for the id's record.
pub(crate) struct AtStart<'a, T>(pub(crate) &'a T);

impl<T: FreeTag> FreeTag for AtStart<'_, T> {
    #[inline(always)]
    fn fp_addr(&self, obj: usize) -> usize {
        debug_assert_eq!(self.0.fp_addr(obj), obj, "a free pointer not at the object's start");
        obj
    }
    #[inline(always)]
    fn marker(&self) -> u64 {
        self.0.marker()
    }
}

/// The double-free test's read: the object's free-pointer word's address, the word and the
/// cache's marker, if the word is not a free object's (untagged); `None` if it is.
#[inline(always)]
fn read_untagged(t: &impl FreeTag, obj: usize) -> Option<(usize, u64, u64)> {
    let (fp, marker) = (t.fp_addr(obj), t.marker());
    // SAFETY: the free-pointer word of an object of a live slab, which the caller owns.
    let w = unsafe { read_word(fp) };
    (!tagged(w, marker)).then_some((fp, w, marker))
}

/// The double-free test: `false` if the object's free-pointer word carries the cache's tag,
/// as a free object's does, or another free claimed it since it was read (the caller's
/// suspect path decides); else the word becomes the sheaf marker (claimed with a
/// compare-and-exchange: `claim_word`), and the object a free object on its way to a sheaf.
#[inline(always)]
pub(super) fn mark_sheaf_object(t: &impl FreeTag, obj: usize) -> bool {
    let Some((fp, w, marker)) = read_untagged(t, obj) else { return false };
    // SAFETY: the object is the caller's; from now on it is a free object in a sheaf.
    unsafe { claim_word(fp, w, marker) }
}

/// [`mark_sheaf_object`] that marks with a plain store when `sole` (no other thread can
/// claim the object meanwhile: [`Platform::sole_thread`](crate::Platform::sole_thread)), the
/// mapped frees' test. The store is laid out as the straight path and the locked claim off
/// it: a process that takes the claim pays its lock, beside which a jump is nothing.
#[inline(always)]
pub(super) fn mark_sheaf_object_sole(t: &impl FreeTag, obj: usize, sole: bool) -> bool {
    let Some((fp, w, marker)) = read_untagged(t, obj) else { return false };
    if sole {
        // SAFETY: the object is the caller's; no other thread claims it meanwhile.
        unsafe { super::object::write_word(fp, marker) };
        return true;
    }
    crate::sync::cold_path();
    // SAFETY: the object is the caller's; from now on it is a free object in a sheaf.
    unsafe { claim_word(fp, w, marker) }
}
