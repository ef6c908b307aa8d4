//! One CPU's sheaves for one cache (`struct slub_percpu_sheaves`): main, spare, the stash
//! of process allocators ([`SlabBootConfig::cpu_stash`](super::SlabBootConfig::cpu_stash)),
//! and the CPU's SLUB statistics. Only the CPU touches them, pinned (`sheaf.rs` has the
//! protocol).

use super::sheaf::{Sheaf, SlubStat};
use crate::sync::{array_of, const_fn_unless_loom, AtomicU32, AtomicUsize, Ordering};

/// One CPU's sheaves for one cache (`struct slub_percpu_sheaves`), plus its statistics.
/// Zero is the initial state: no sheaves yet (the first allocation or free on the CPU gets
/// them), no counts.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct CpuSheaves {
    // Two cache lines: the sheaf pointers and the fast-table entries that mirror `main`,
    // then the statistics and the stash.
    /// Address of the main sheaf, 0 if none.
    pub(super) main: AtomicUsize,
    /// Address of the spare sheaf, 0 if none.
    pub(super) spare: AtomicUsize,
    /// The CPU's fast-table entries that mirror `main` (`fast_table.rs`): the address of the
    /// id entry naming these sheaves, and of the class entry, 0 for none. Set by the CPU
    /// when it fills them; every change of `main` carries through to them.
    id_slot: AtomicUsize,
    class_slot: AtomicUsize,
    /// Linux's `unsigned int stat[]` (`kmem_cache_cpu`): 32 bits a counter, wrapping, summed
    /// over the CPUs in 64.
    stats: [AtomicU32; SlubStat::COUNT],
    /// How many sheaves the stash holds (entries `0..stash_len` of `stash`).
    stash_len: AtomicU32,
    /// Objects the stashed sheaves hold, so that other CPUs can count them ([`CpuSheaves::objects`]).
    stash_objects: AtomicU32,
    /// The CPU's stash of sheaves beyond main and spare ([`SlabBootConfig::cpu_stash`](super::SlabBootConfig::cpu_stash)),
    /// full and empty ones mixed: each entry a sheaf's address, its low bit set if the sheaf
    /// holds objects (sheaves are 16-byte aligned; a stashed sheaf does not change). Here, in
    /// the CPU's own line, not a list through the sheaves' `next` words: an exchange with the
    /// stash looked at every stashed sheaf's header to find one full or empty, and to count
    /// them, lines last touched a sheaf's worth of operations earlier (a Rust loop of 1000
    /// 64-byte allocations then 1000 frees spent 7% of its time in those walks, `perf`).
    stash: [AtomicUsize; CPU_STASH_MAX as usize],
}

/// Most sheaves a CPU stashes per cache ([`SlabBootConfig::cpu_stash`](super::SlabBootConfig::cpu_stash)
/// is clamped to it): what fills the CPU's line after its sheaf pointers and statistics.
pub const CPU_STASH_MAX: u8 = 4;

/// A stash entry's flag: the sheaf holds objects.
const STASH_FULL: usize = 1;

impl CpuSheaves {
    const_fn_unless_loom! {
        /// No sheaves.
        pub(crate) fn new() -> Self {
            Self {
                main: AtomicUsize::new(0),
                spare: AtomicUsize::new(0),
                id_slot: AtomicUsize::new(0),
                class_slot: AtomicUsize::new(0),
                stats: array_of![AtomicU32::new(0); SlubStat::COUNT],
                stash_len: AtomicU32::new(0),
                stash_objects: AtomicU32::new(0),
                stash: array_of![AtomicUsize::new(0); CPU_STASH_MAX as usize],
            }
        }
    }
    /// The main sheaf.
    #[inline(always)]
    pub(crate) fn main(&self) -> Option<&Sheaf> {
        let p = self.main.load(Ordering::Relaxed);
        // SAFETY: a non-zero `main` is a live `kmem_sheaf` object owned by this CPU's
        // sheaves: it is freed only after being unlinked from here by the CPU itself.
        (p != 0).then(|| unsafe { &*(p as *const Sheaf) })
    }
    /// The spare sheaf.
    #[inline]
    pub(crate) fn spare(&self) -> Option<&Sheaf> {
        let p = self.spare.load(Ordering::Relaxed);
        // SAFETY: as for `main`.
        (p != 0).then(|| unsafe { &*(p as *const Sheaf) })
    }
    /// Replaces the main sheaf; returns the old one's address (0: none).
    #[inline]
    pub(crate) fn set_main(&self, s: usize) -> usize {
        let old = self.main.load(Ordering::Relaxed);
        self.main.store(s, Ordering::Relaxed);
        self.main_changed(old, s);
        old
    }
    /// The address `main` holds (0: none), what the fast-table entries mirror.
    #[inline]
    pub(crate) fn main_addr(&self) -> usize {
        self.main.load(Ordering::Relaxed)
    }
    /// Makes the fast-table entries that mirror `main` name `new` (it was `old`): the id
    /// entry always; the class entry only if it still names `old`, a sheaf (a
    /// compare-and-swap): arming clears class entries from other CPUs, and a stale store
    /// must not bring one back (`fast_table.rs`).
    #[inline]
    fn main_changed(&self, old: usize, new: usize) {
        if old == new {
            return;
        }
        // No main sheaf: the entries name the empty sheaf.
        let to = if new == 0 { super::sheaf::empty_sheaf() } else { new };
        let id = self.id_slot.load(Ordering::Relaxed);
        if id != 0 {
            // SAFETY: a word of this CPU's fast table (set by `mirror_in`), which is never
            // freed.
            unsafe { &*(id as *const AtomicUsize) }.store(to, Ordering::Release);
        }
        let class = self.class_slot.load(Ordering::Relaxed);
        // An empty entry (the empty sheaf) means "fill me" as well as "cleared by arming": one
        // that mirrored no sheaf is left for the next careful allocation to fill (with its
        // armed test).
        if class != 0 && old != 0 {
            // SAFETY: as above.
            let w = unsafe { &*(class as *const AtomicUsize) };
            let _ = w.compare_exchange(old, to, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
    /// Records the fast-table entries that mirror `main` (the CPU's owner, pinned, as it
    /// fills them): `id` and `class` are the entries' addresses, or 0 to leave one as is.
    pub(crate) fn mirror_in(&self, id: usize, class: usize) {
        if id != 0 {
            self.id_slot.store(id, Ordering::Relaxed);
        }
        if class != 0 {
            self.class_slot.store(class, Ordering::Relaxed);
        }
    }
    /// Replaces the spare; returns the old one's address.
    #[inline]
    pub(crate) fn set_spare(&self, s: usize) -> usize {
        let old = self.spare.load(Ordering::Relaxed);
        self.spare.store(s, Ordering::Relaxed);
        old
    }
    /// Swaps main and spare.
    #[inline]
    pub(crate) fn swap(&self) {
        let (m, sp) = (self.main.load(Ordering::Relaxed), self.spare.load(Ordering::Relaxed));
        self.main.store(sp, Ordering::Relaxed);
        self.spare.store(m, Ordering::Relaxed);
        self.main_changed(m, sp);
    }
    /// Counts an event (the CPU's owner, pinned).
    #[inline]
    pub(crate) fn stat(&self, s: SlubStat) {
        let c = &self.stats[s as usize];
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
    /// A counter's value.
    pub(crate) fn stat_value(&self, s: SlubStat) -> u64 {
        self.stats[s as usize].load(Ordering::Relaxed) as u64
    }
    /// Objects in the main and spare sheaves and the stash (racy).
    pub(crate) fn objects(&self) -> usize {
        self.main().map_or(0, |s| s.size() as usize)
            + self.spare().map_or(0, |s| s.size() as usize)
            + self.stash_objects.load(Ordering::Relaxed) as usize
    }
    /// Takes a stashed sheaf that has objects (`full`) or has none (`!full`); 0 if there is
    /// none (the CPU's owner, pinned). Looks at no sheaf but the one it takes.
    pub(crate) fn stash_take(&self, full: bool) -> usize {
        let n = self.stash_len.load(Ordering::Relaxed) as usize;
        let want = if full { STASH_FULL } else { 0 };
        for i in 0..n.min(self.stash.len()) {
            let e = self.stash[i].load(Ordering::Relaxed);
            if e & STASH_FULL == want {
                return self.stash_remove(i, n);
            }
        }
        0
    }
    /// Takes any stashed sheaf (teardown); 0 if none.
    pub(crate) fn stash_pop(&self) -> usize {
        let n = self.stash_len.load(Ordering::Relaxed) as usize;
        if n == 0 {
            return 0;
        }
        self.stash_remove(n - 1, n)
    }
    /// Removes entry `i` of the `n` stashed (the last takes its place) and returns its sheaf.
    fn stash_remove(&self, i: usize, n: usize) -> usize {
        let sheaf = self.stash[i].load(Ordering::Relaxed) & !STASH_FULL;
        self.stash[i].store(self.stash[n - 1].load(Ordering::Relaxed), Ordering::Relaxed);
        self.stash_len.store(n as u32 - 1, Ordering::Relaxed);
        // SAFETY: stashed sheaves are live `kmem_sheaf` objects this CPU owns.
        let size = unsafe { &*(sheaf as *const Sheaf) }.size();
        let objects = self.stash_objects.load(Ordering::Relaxed);
        self.stash_objects.store(objects - size, Ordering::Relaxed);
        sheaf
    }
    /// Stashes a sheaf the CPU owns (not its main or spare) if fewer than `depth` (at most
    /// [`CPU_STASH_MAX`]) are stashed; false otherwise.
    pub(crate) fn stash_put(&self, sheaf: usize, depth: u32) -> bool {
        let n = self.stash_len.load(Ordering::Relaxed);
        if n >= depth.min(CPU_STASH_MAX as u32) {
            return false;
        }
        // SAFETY: the caller's sheaf.
        let size = unsafe { &*(sheaf as *const Sheaf) }.size();
        debug_assert_eq!(sheaf & STASH_FULL, 0, "sheaves are aligned");
        let flag = if size > 0 { STASH_FULL } else { 0 };
        self.stash[n as usize].store(sheaf | flag, Ordering::Relaxed);
        self.stash_len.store(n + 1, Ordering::Relaxed);
        let objects = self.stash_objects.load(Ordering::Relaxed);
        self.stash_objects.store(objects + size, Ordering::Relaxed);
        true
    }
}

const _: () = assert!(core::mem::size_of::<CpuSheaves>() == 128 || cfg!(loom));

#[cfg(all(test, loom))]
mod loom_tests {
    //! Loom model of a class entry's protocol (`fast_table.rs`): the CPU fills its entry
    //! (Dekker's pattern with arming: store, full fence, test the armed state) and then
    //! changes its main sheaf twice (`set_main` carries the change through to the entry with
    //! a compare-and-swap), while another CPU arms (store the armed state, full fence, clear
    //! the entry). Once both are done, the entry must be empty: a class entry must never
    //! name a sheaf while something is armed. (A plain store in `main_changed` instead of
    //! the compare-and-swap fails it.)
    //!
    //! The handshake itself relies on two `SeqCst` fences (the fill's and the arming's),
    //! which loom models as acquire-release ones: with them it finds a run where the fill's
    //! test misses an arming that happened before it, which C++20's fence rules (and x86's
    //! `mfence`) exclude. The model gives the handshake the same guarantee with
    //! read-modify-writes of the armed word on both sides (totally ordered, each
    //! synchronizing with the one before it), and checks what the entries' mirroring added:
    //! the main sheaf's changes carried through. The clears are swaps, as in the code: loom
    //! let a plain store that raced with the compare-and-swap land before the value the
    //! compare-and-swap had read.

    use loom::sync::Arc;

    use super::CpuSheaves;
    use crate::sync::{AtomicUsize, Ordering};
    use crate::testing::loom::model;

    struct World {
        pcs: CpuSheaves,
        entry: AtomicUsize,
        armed: AtomicUsize,
    }

    #[test]
    fn loom_tests_arming_leaves_no_class_entry() {
        model(|| {
            let w = Arc::new(World { pcs: CpuSheaves::new(), entry: AtomicUsize::new(0), armed: AtomicUsize::new(0) });
            // Sheaf addresses are only stored and compared here, never followed.
            w.pcs.set_main(0x1000);
            let armer = {
                let w = w.clone();
                loom::thread::spawn(move || {
                    // `fast_table_disarm_classes`: the armed state (its store and fence as
                    // one read-modify-write), then the entry cleared if set.
                    w.armed.fetch_add(1, Ordering::AcqRel);
                    if w.entry.load(Ordering::Relaxed) != 0 {
                        w.entry.swap(0, Ordering::AcqRel);
                    }
                })
            };
            // The CPU's fill (`Kmem::fast_table_fill`'s class part), its fence and test of
            // the armed state as one read-modify-write.
            if w.armed.load(Ordering::Relaxed) == 0 {
                w.pcs.mirror_in(0, &w.entry as *const AtomicUsize as usize);
                w.entry.store(w.pcs.main_addr(), Ordering::Release);
                if w.armed.fetch_add(0, Ordering::AcqRel) != 0 {
                    w.entry.swap(0, Ordering::AcqRel);
                }
            }
            // Its slow paths change the main sheaf: a trade, an exchange with the spare, and
            // another trade.
            w.pcs.set_spare(0x4000);
            w.pcs.set_main(0x2000);
            w.pcs.swap();
            w.pcs.set_main(0x3000);
            armer.join().unwrap();
            assert_eq!(w.entry.load(Ordering::Relaxed), 0, "armed, and the class entry names a sheaf");
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{CpuSheaves, Sheaf, CPU_STASH_MAX};
    use crate::gfp::Gfp;
    use crate::testing;

    /// The stash hands out a sheaf of the fullness asked for, whatever the order they came
    /// in, refuses one past its depth, and counts the objects it holds.
    #[test]
    fn the_stash_takes_by_fullness_and_counts_its_objects() {
        let k = testing::machine(64);
        let c = k.kmalloc_slab(64, Gfp::KERNEL).unwrap();
        let sheaves: [usize; CPU_STASH_MAX as usize + 1] =
            core::array::from_fn(|_| k.alloc_sheaf(c, Gfp::KERNEL).expect("a sheaf"));
        let sheaf = |a: usize| {
            // SAFETY: a live sheaf of ours.
            unsafe { &*(a as *const Sheaf) }
        };
        // Two sheaves with objects (stand-ins, never popped as objects), the rest empty.
        for (i, n) in [(1, 3), (3, 1)] {
            for o in 0..n {
                assert!(sheaf(sheaves[i]).push(0x1000 + 16 * o));
            }
        }
        let pcs = CpuSheaves::new();
        let depth = CPU_STASH_MAX as u32;
        for &sh in &sheaves[..depth as usize] {
            assert!(pcs.stash_put(sh, depth));
        }
        assert!(!pcs.stash_put(sheaves[depth as usize], depth), "full at its depth");
        assert!(!pcs.stash_put(sheaves[depth as usize], 99), "and at CPU_STASH_MAX");
        assert_eq!(pcs.objects(), 4);
        let mut full = [pcs.stash_take(true), pcs.stash_take(true)];
        full.sort();
        let mut want = [sheaves[1], sheaves[3]];
        want.sort();
        assert_eq!(full, want, "the two sheaves with objects");
        assert_eq!((pcs.stash_take(true), pcs.objects()), (0, 0), "no other has objects");
        let empty = pcs.stash_take(false);
        assert!(empty == sheaves[0] || empty == sheaves[2], "an empty one");
        assert!(pcs.stash_pop() != 0 && pcs.stash_pop() == 0, "one left, then none");
        for &sh in &sheaves {
            while sheaf(sh).pop().is_some() {}
            k.free_sheaf(sh);
        }
    }
}
