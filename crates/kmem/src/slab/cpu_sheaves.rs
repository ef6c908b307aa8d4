//! One CPU's sheaves for one cache (`struct slub_percpu_sheaves`): main, spare, the stash
//! of process allocators ([`SlabBootConfig::cpu_stash`](super::SlabBootConfig::cpu_stash)),
//! and the CPU's SLUB statistics. Only the CPU touches them, pinned (`sheaf.rs` has the
//! protocol).

use super::sheaf::{Sheaf, SlubStat};
use crate::sync::{array_of, const_fn_unless_loom, AtomicU64, AtomicUsize, Ordering};

/// One CPU's sheaves for one cache (`struct slub_percpu_sheaves`), plus its statistics.
/// Zero is the initial state: no sheaves yet (the first allocation or free on the CPU gets
/// them), no counts.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct CpuSheaves {
    // Two cache lines: the sheaf pointers, then the statistics.
    /// Address of the main sheaf, 0 if none.
    pub(super) main: AtomicUsize,
    /// Address of the spare sheaf, 0 if none.
    pub(super) spare: AtomicUsize,
    stats: [AtomicU64; SlubStat::COUNT],
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
                stats: array_of![AtomicU64::new(0); SlubStat::COUNT],
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
        old
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
        let m = self.main.load(Ordering::Relaxed);
        self.main.store(self.spare.load(Ordering::Relaxed), Ordering::Relaxed);
        self.spare.store(m, Ordering::Relaxed);
    }
    /// Counts an event (the CPU's owner, pinned).
    #[inline]
    pub(crate) fn stat(&self, s: SlubStat) {
        let c = &self.stats[s as usize];
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
    /// A counter's value.
    pub(crate) fn stat_value(&self, s: SlubStat) -> u64 {
        self.stats[s as usize].load(Ordering::Relaxed)
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
