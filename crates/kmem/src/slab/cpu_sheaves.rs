//! One CPU's sheaves for one cache (`struct slub_percpu_sheaves`): main, spare, the stash
//! of process allocators ([`SlabBootConfig::cpu_stash`](super::SlabBootConfig::cpu_stash)),
//! and the CPU's SLUB statistics. Only the CPU touches them, pinned (`sheaf.rs` has the
//! protocol).

use super::sheaf::{Sheaf, SlubStat};
use crate::sync::{array_of, const_fn_unless_loom, AtomicU32, AtomicU64, AtomicUsize, Ordering};

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
    /// The CPU's stash of sheaves beyond main and spare ([`SlabBootConfig::cpu_stash`](super::SlabBootConfig::cpu_stash)):
    /// a list through the sheaves' `next` words, full and empty ones mixed, and the objects
    /// they hold; packed in one word ([`Stash`]) so that other CPUs can count the objects
    /// without following the list.
    stash: AtomicU64,
}

/// Most sheaves a CPU stashes per cache ([`SlabBootConfig::cpu_stash`](super::SlabBootConfig::cpu_stash)
/// is clamped to it): the teardown paths collect a CPU's sheaves in arrays of this size.
pub const CPU_STASH_MAX: u8 = 16;

/// [`CpuSheaves`]' stash word: bits 0..48 the first sheaf's address (sign-extended: kernel
/// addresses have their top bits set), bits 48..64 the objects held.
#[derive(Clone, Copy)]
struct Stash(u64);

impl Stash {
    fn head(self) -> usize {
        (((self.0 << 16) as i64) >> 16) as usize
    }
    fn objects(self) -> u32 {
        (self.0 >> 48) as u32
    }
    fn new(head: usize, objects: u32) -> Self {
        Stash((head as u64 & ((1 << 48) - 1)) | (objects as u64) << 48)
    }
}

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
                stash: AtomicU64::new(0),
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
        let id = self.id_slot.load(Ordering::Relaxed);
        if id != 0 {
            // SAFETY: a word of this CPU's fast table (set by `mirror_in`), which is never
            // freed.
            unsafe { &*(id as *const AtomicUsize) }.store(new, Ordering::Release);
        }
        let class = self.class_slot.load(Ordering::Relaxed);
        // An empty entry means "fill me" as well as "cleared by arming": one that mirrored no
        // sheaf is left for the next careful allocation to fill (with its armed test).
        if class != 0 && old != 0 {
            // SAFETY: as above.
            let w = unsafe { &*(class as *const AtomicUsize) };
            let _ = w.compare_exchange(old, new, Ordering::AcqRel, Ordering::Relaxed);
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
            + Stash(self.stash.load(Ordering::Relaxed)).objects() as usize
    }
    /// Takes the first stashed sheaf that has objects (`full`) or has none (`!full`); 0 if
    /// there is none (the CPU's owner, pinned).
    pub(crate) fn stash_take(&self, full: bool) -> usize {
        let st = Stash(self.stash.load(Ordering::Relaxed));
        let (mut prev, mut cur) = (0usize, st.head());
        while cur != 0 {
            // SAFETY: stashed sheaves are live `kmem_sheaf` objects this CPU owns.
            let sh = unsafe { &*(cur as *const Sheaf) };
            let next = sh.next.load(Ordering::Relaxed);
            if (sh.size() > 0) == full {
                let head = if prev == 0 {
                    next
                } else {
                    // SAFETY: as above.
                    unsafe { &*(prev as *const Sheaf) }.next.store(next, Ordering::Relaxed);
                    st.head()
                };
                self.stash.store(Stash::new(head, st.objects() - sh.size()).0, Ordering::Relaxed);
                sh.next.store(0, Ordering::Relaxed);
                return cur;
            }
            (prev, cur) = (cur, next);
        }
        0
    }
    /// Takes any stashed sheaf (teardown); 0 if none.
    pub(crate) fn stash_pop(&self) -> usize {
        let st = Stash(self.stash.load(Ordering::Relaxed));
        let cur = st.head();
        if cur != 0 {
            // SAFETY: as in `stash_take`.
            let sh = unsafe { &*(cur as *const Sheaf) };
            self.stash
                .store(Stash::new(sh.next.load(Ordering::Relaxed), st.objects() - sh.size()).0, Ordering::Relaxed);
            sh.next.store(0, Ordering::Relaxed);
        }
        cur
    }
    /// Stashes a sheaf the CPU owns (not its main or spare) if fewer than `depth` are
    /// stashed; false otherwise.
    pub(crate) fn stash_put(&self, sheaf: usize, depth: u32) -> bool {
        let st = Stash(self.stash.load(Ordering::Relaxed));
        let mut n = 0;
        let mut cur = st.head();
        while cur != 0 {
            n += 1;
            // SAFETY: as in `stash_take`.
            cur = unsafe { &*(cur as *const Sheaf) }.next.load(Ordering::Relaxed);
        }
        if n >= depth {
            return false;
        }
        // SAFETY: the caller's sheaf.
        let sh = unsafe { &*(sheaf as *const Sheaf) };
        sh.next.store(st.head(), Ordering::Relaxed);
        self.stash.store(Stash::new(sheaf, st.objects() + sh.size()).0, Ordering::Relaxed);
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
