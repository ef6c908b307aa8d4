//! The single-threaded workloads, generic over the allocator.

use super::*;

// ---------------------------------------------------------------------------------------
// Workloads.

/// Allocates `layout` from `a`.
///
/// # Panics
///
/// Through `handle_alloc_error` on failure: the workloads are sized to fit.
#[inline(always)]
pub(super) fn get<A: GlobalAlloc>(a: &A, layout: Layout) -> *mut u8 {
    // SAFETY: every layout here has a non-zero size.
    let p = unsafe { a.alloc(layout) };
    if p.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    p
}

pub(super) fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("valid layout")
}

/// `n` hot pairs: alloc `layout`, free it.
#[inline]
pub fn pairs<A: GlobalAlloc>(a: &A, layout: Layout, n: usize) {
    for _ in 0..n {
        let p = get(a, layout);
        // SAFETY: just allocated with `layout`, never used.
        unsafe { a.dealloc(black_box(p), layout) };
    }
}

/// Allocates a block of `layout` into every slot, then frees them in the same order.
#[inline]
pub fn alloc_n_free_n<A: GlobalAlloc>(a: &A, layout: Layout, slots: &mut [*mut u8]) {
    for s in slots.iter_mut() {
        *s = get(a, layout);
    }
    for s in slots.iter_mut() {
        // SAFETY: allocated just above with `layout`, freed once.
        unsafe { a.dealloc(black_box(*s), layout) };
    }
}

/// One step of a [`SizeMix`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeStep {
    /// Allocate this many bytes and append the block to the live list.
    Alloc(u32),
    /// Free the live block at this index; the last live block takes its place.
    Free(u32),
}

/// A closed sequence of allocations of random sizes and frees of random live blocks: it
/// starts and ends with nothing live.
#[derive(Clone, Debug)]
pub struct SizeMix {
    steps: Vec<SizeStep>,
}

impl SizeMix {
    /// `steps` random steps (allocate with probability 1/2 while fewer than `max_live` are
    /// live, else free a uniformly chosen live block), sizes log-uniform in `[min, max]`,
    /// then frees of every block still live, in random order.
    pub fn generate(seed: u64, steps: usize, max_live: usize, min: usize, max: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let (lo, hi) = ((min as f64).ln(), (max as f64).ln());
        let mut live = 0usize;
        let mut out = Vec::with_capacity(steps + max_live);
        for _ in 0..steps {
            if live < max_live && (live == 0 || rng.gen_bool(0.5)) {
                let size = rng.gen_range(lo..=hi).exp().round() as u32;
                out.push(SizeStep::Alloc(size.clamp(min as u32, max as u32)));
                live += 1;
            } else {
                out.push(SizeStep::Free(rng.gen_range(0..live) as u32));
                live -= 1;
            }
        }
        while live > 0 {
            out.push(SizeStep::Free(rng.gen_range(0..live) as u32));
            live -= 1;
        }
        Self { steps: out }
    }

    /// The steps.
    pub fn steps(&self) -> &[SizeStep] {
        &self.steps
    }

    /// Steps in one cycle.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True without steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// The pre-drawn inputs of [`churn`]: `live` block sizes for the fill, then for each step
/// the slot to free and the size of its new block.
#[derive(Clone, Debug)]
pub struct ChurnSteps {
    fill: Vec<u16>,
    steps: Vec<(u16, u16)>,
}

impl ChurnSteps {
    /// `live` blocks (at most 65,536) and `steps` steps; sizes uniform in
    /// [`MT_MIN`](threads::MT_MIN)`..=`[`MT_MAX`](threads::MT_MAX).
    pub fn generate(seed: u64, live: usize, steps: usize) -> Self {
        assert!((1..=1 << 16).contains(&live), "1 to 65536 live blocks");
        let mut rng = threads::Rng64::new(seed);
        let fill = (0..live).map(|_| rng.size() as u16).collect();
        let steps = (0..steps).map(|_| (rng.below(live) as u16, rng.size() as u16)).collect();
        Self { fill, steps }
    }

    /// Alloc + free pairs of one run: the fill and its final frees, and every step.
    pub fn pairs(&self) -> usize {
        self.fill.len() + self.steps.len()
    }
}

/// Fills `live` with blocks of `c`'s fill sizes, then for each step frees the block of a
/// random slot and allocates one of a random size in its place, then frees everything in slot
/// order. The first byte of every block is written.
#[inline]
pub fn churn<A: GlobalAlloc>(a: &A, c: &ChurnSteps, live: &mut Vec<(*mut u8, u32)>) {
    live.clear();
    for &size in &c.fill {
        let p = get(a, layout(usize::from(size)));
        // SAFETY: a fresh block of at least one byte.
        unsafe { p.write(size as u8) };
        live.push((p, u32::from(size)));
    }
    for &(i, size) in &c.steps {
        let slot = &mut live[usize::from(i)];
        // SAFETY: a live block of this size, freed once (replaced just below).
        unsafe { a.dealloc(slot.0, layout(slot.1 as usize)) };
        let p = get(a, layout(usize::from(size)));
        // SAFETY: a fresh block of at least one byte.
        unsafe { p.write(size as u8) };
        *slot = (p, u32::from(size));
    }
    for (p, size) in live.drain(..) {
        // SAFETY: live, of this size, freed once.
        unsafe { a.dealloc(p, layout(size as usize)) };
    }
}

/// Replays `mix` on `a` once; `live` is scratch space (left empty).
#[inline]
pub fn random_mix<A: GlobalAlloc>(a: &A, mix: &SizeMix, live: &mut Vec<(*mut u8, u32)>) {
    for &s in mix.steps() {
        match s {
            SizeStep::Alloc(size) => {
                let p = get(a, layout(size as usize));
                // SAFETY: a fresh block of at least one byte.
                unsafe { p.write(size as u8) };
                live.push((p, size));
            }
            SizeStep::Free(i) => {
                let (p, size) = live.swap_remove(i as usize);
                // SAFETY: a live block of this size, freed once.
                unsafe { a.dealloc(p, layout(size as usize)) };
            }
        }
    }
    debug_assert!(live.is_empty());
}

/// [`REALLOC_BUFS`] buffers grown in turn from 16 bytes to [`REALLOC_MAX`] by an eighth (at
/// least 16 bytes) per `realloc`, the last byte written after each; then freed. Returns the
/// number of `realloc` calls.
#[inline]
pub fn realloc_growth<A: GlobalAlloc>(a: &A) -> u64 {
    let mut bufs = [(std::ptr::null_mut::<u8>(), 0usize); REALLOC_BUFS];
    for b in &mut bufs {
        *b = (get(a, layout(16)), 16);
    }
    let mut calls = 0;
    loop {
        let mut grew = false;
        for (p, size) in &mut bufs {
            if *size >= REALLOC_MAX {
                continue;
            }
            let new = (*size + (*size / 8).max(16)).min(REALLOC_MAX);
            // SAFETY: `p` is live with `size` bytes and this layout; on success only the new
            // pointer is used.
            let n = unsafe { a.realloc(*p, layout(*size), new) };
            if n.is_null() {
                std::alloc::handle_alloc_error(layout(new));
            }
            // SAFETY: `new` bytes are ours.
            unsafe { n.add(new - 1).write(1) };
            (*p, *size) = (n, new);
            calls += 1;
            grew = true;
        }
        if !grew {
            break;
        }
    }
    for (p, size) in bufs {
        // SAFETY: live, of this size, freed once.
        unsafe { a.dealloc(p, layout(size)) };
    }
    calls
}

/// Key `i` of the map workloads: a bijective scramble of `i`, so the trees see random order.
#[inline]
fn key(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

/// An `allocator_api2` `Vec<u64>` in `a`, pushed `n` times from empty, then dropped.
#[inline]
pub fn vec_push<A: GlobalAlloc>(a: &A, n: usize) {
    let mut v = allocator_api2::vec::Vec::new_in(Api2(a));
    for i in 0..n {
        v.push(i as u64);
    }
    black_box(&v);
}

/// A `hashbrown::HashMap` in `a` of `n` keys to `allocator_api2` byte vectors of 8 to 71
/// bytes, also in `a`, built from empty, then dropped.
#[inline]
pub fn hashmap_build<A: GlobalAlloc>(a: &A, n: usize) {
    let mut m = hashbrown::HashMap::with_hasher_in(hashbrown::DefaultHashBuilder::default(), Api2(a));
    for i in 0..n {
        let len = 8 + i % 64;
        let mut v = allocator_api2::vec::Vec::with_capacity_in(len, Api2(a));
        v.resize(len, i as u8);
        m.insert(key(i), v);
    }
    black_box(&m);
}

/// std's `BTreeMap` of `n` keys to boxed byte slices of 8 to 71 bytes, built from empty,
/// then dropped, in the global allocator (see [`with_global`]).
#[inline(never)]
pub fn btreemap_build(n: usize) {
    let mut m = std::collections::BTreeMap::new();
    for i in 0..n {
        m.insert(key(i), vec![i as u8; 8 + i % 64].into_boxed_slice());
    }
    black_box(&m);
}
