//! Loom models of the slab's lockless protocols (`scripts/loom.sh`): the per-CPU freelist
//! (`cpu.rs`) and remote frees into a frozen slab (`free.rs`, `slab_page.rs`).
//!
//! They run the real [`CpuSlab`] (`fast_pop`, `fast_push`, `lock_word`, `unlock_word`,
//! `set_active`, `active`, its local lock) and the real [`Slab`] word on a real page
//! descriptor (`Slab::word`, `Slab::cas`, `freeze_new`, `take_freelist`). Object memory is
//! modelled: each object's free-pointer word is a loom `AtomicU64` accessed with relaxed
//! loads and stores, as `object.rs` accesses real free pointers, so loom checks that every
//! free pointer a thread follows was published to it by the word's acquire/release (a stale
//! read breaks the chain and the conservation check). Free pointers are stored plain (no
//! `CONFIG_SLAB_FREELIST_HARDENED` encoding: it changes no ordering). A model "direct map"
//! covers the two model slabs' pages; a read at an address outside it, which the real code
//! would dereference, fails the model.
//!
//! **Per-CPU freelist** (`cpu_*`): thread 0 is a task on CPU 0 running the fast paths
//! (`fast_pop` twice, then `fast_push` of the first object back, whose free pointer so gets
//! a value it did not have on the list; a fast path that gives up keeps its object, as if
//! the slow path ran later). Thread 1 is a slow path holding CPU 0's
//! local lock (CPU 0's own after a preemption, or a remote flush): it locks the word with
//! `lock_word`, then either flushes (takes the chain, reuses its objects by overwriting
//! their free pointers, `set_active(None)`), switches (the same, then installs a second
//! slab with its own freelist), or frees an object it holds onto the CPU freelist under the
//! lock (`free_slow`'s branch for the active slab). Afterwards every object of the slabs in
//! play is in exactly one place (thread 0's hands, thread 1's hands, the CPU freelist walked
//! over the active slab's memory): no object handed out twice, none lost, and no object
//! pushed onto another slab's list (it would show up as an object of the active slab
//! listed twice, or one missing). The word is unlocked, the lock free. This is the
//! base/limit/word ordering argument of `cpu.rs`'s module docs, checked.
//!
//! **Remote frees** (`remote_*`): a new slab of 4 objects is frozen for CPU 0
//! (`freeze_new`); thread 1 (another CPU) frees two of its objects with `__slab_free`'s loop
//! for a frozen slab (set the free pointer, CAS the word, no list work) while thread 0, the
//! owner, calls `take_freelist` three times and walks each chain it takes. Afterwards every
//! object is in exactly one place (the owner's hands, the chains it took, the slab's own
//! freelist) and `inuse` is `objects` less the slab freelist's length.
//!
//! Each protocol has negative models (`*_is_caught`, `#[should_panic]`) that break it from
//! the caller's side and must fail: a slow path that changes the active slab without
//! `lock_word`, a fast path that trusts a re-read head instead of the tid (ABA), a remote
//! free that stores the slab word instead of compare-and-exchanging it.
//!
//! `cpu_fast_paths_against_flush_stay_mapped` found a bug (a read at `0 + head` after a
//! flush between the fast path's loads); `fast_pop` now re-checks the word after loading
//! `base`/`limit`, and the model passes.
//!
//! Search: the per-CPU models explore every interleaving with up to 3 preemptions (about
//! a thousand executions, a fraction of a second each); `LOOM_MAX_PREEMPTIONS=100` makes
//! them exhaustive (30,000 to 40,000 executions, about 6 s each). The remote-free models
//! search every interleaving (891 executions, [`REMOTE_PREEMPTIONS`]). Each of these
//! weakenings of the real code was tried and fails a model within the default bounds:
//! `cas_word` without release, `lock_word` without acquire, `load_word` relaxed,
//! `unlock_word` relaxed, `fast_push` writing the free pointer after its CAS,
//! `Page::data_cas` relaxed, `take_freelist` leaving `inuse` unchanged.

use loom::sync::Arc;

use super::cpu::{Active, CpuSlab};
use super::slab_page::{freeze_new, take_freelist, Slab};
use super::word::{cpu_head, cpu_tid, SlabWord, OFF_LOCKED, OFF_NONE};
use crate::addr::Pfn;
use crate::mm::page::Page;
use crate::mm::zone_type::ZoneType;
use crate::sync::{AtomicU64, Ordering};
use crate::testing::loom::{model_bounded, ModelPlatform};
use crate::testing::std::{format, string::String, vec::Vec};

/// Preemption bound of these models (unless `LOOM_MAX_PREEMPTIONS` is set), as the pcp
/// models: every protocol break tried on them fails within it.
const PREEMPTIONS: usize = 3;

/// Preemption bound of the remote-free models: above what they can use (10 and 100 both
/// explore the same 891 executions of the positive model), so every interleaving. Not
/// `testing::loom::model` (no bound): loom's unbounded search is plain DPOR, without the
/// conservative backtracking of its bounded one, and explores only 9 executions of
/// `remote_free_storing_the_word_is_caught`, missing its failure (any bound from 1 finds it).
const REMOTE_PREEMPTIONS: usize = 10;

/// Slot size of the model cache.
const SIZE: u32 = 16;
/// The model direct map: the pages of the two model slabs. Reads in it but outside an
/// object (a stale offset over another slab's base) return [`GARBAGE`], as real RAM would.
const MAP_START: usize = 0x1000;
const MAP_END: usize = 0x3000;
/// What a free-pointer read finds at a mapped address that is no object's free pointer.
const GARBAGE: u64 = 0x5a5a_5a5a_5a5a_5a5a;
/// What a new owner writes over the free pointer of an object it reused: a plausible
/// offset, so that only the tid (not a range check) can stop a stale pop from using it.
const REUSED: u32 = 0;

/// One model slab: where its objects start and their free-pointer words.
struct ModelSlab {
    pfn: usize,
    base: usize,
    next: Vec<AtomicU64>,
}

impl ModelSlab {
    /// A slab whose objects are all on its freelist `0 -> SIZE -> ... -> OFF_NONE`, as
    /// `new_slab` chains them.
    fn new(pfn: usize, base: usize, objects: u32) -> Self {
        let next = (0..objects)
            .map(|i| AtomicU64::new(if i + 1 < objects { ((i + 1) * SIZE) as u64 } else { OFF_NONE as u64 }))
            .collect();
        Self { pfn, base, next }
    }
    fn objects(&self) -> u32 {
        self.next.len() as u32
    }
    fn limit(&self) -> u32 {
        self.objects() * SIZE
    }
    /// The CPU's view of this slab as its active one.
    fn active(&self) -> Active {
        Active { slab: self.pfn, base: self.base, limit: self.limit(), node: 0 }
    }
    /// The free-pointer word of the object at `addr`, if `addr` is one of ours.
    fn slot(&self, addr: usize) -> Option<&AtomicU64> {
        let off = addr.checked_sub(self.base)?;
        if off % SIZE as usize != 0 {
            return None;
        }
        self.next.get(off / SIZE as usize)
    }
}

/// The object memory of a model: up to two slabs, and the checks of every access.
struct Memory {
    slabs: Vec<ModelSlab>,
    /// A read outside the model direct map fails the model (false: it returns garbage, for
    /// the model that checks the rest of the protocol around the known bad read).
    strict_map: bool,
}

impl Memory {
    fn slot(&self, addr: usize) -> Option<(usize, usize, &AtomicU64)> {
        self.slabs
            .iter()
            .enumerate()
            .find_map(|(s, slab)| slab.slot(addr).map(|w| (s, (addr - slab.base) / SIZE as usize, w)))
    }
    /// `get_fp`: what the free-pointer word of `addr` holds. A racy read of an object taken
    /// meanwhile is allowed (it is an atomic load in the real code too); a read outside the
    /// direct map is not.
    fn read_next(&self, addr: usize) -> u64 {
        match self.slot(addr) {
            Some((_, _, w)) => w.load(Ordering::Relaxed),
            None => {
                assert!(
                    !self.strict_map || (MAP_START..MAP_END).contains(&addr),
                    "free pointer read at {addr:#x}, outside the direct map (the real code would \
                     dereference it)"
                );
                GARBAGE
            }
        }
    }
    /// `set_fp`: only ever of an object (the writer owns it).
    fn write_next(&self, addr: usize, next: u32) {
        let (_, _, w) = self.slot(addr).unwrap_or_else(|| panic!("free pointer write at {addr:#x}: no object"));
        w.store(next as u64, Ordering::Relaxed);
    }
    /// The objects of a chain from `head` over `slab`'s memory, checking every link.
    fn walk(&self, slab: usize, head: u32, place: &str) -> Vec<usize> {
        let s = &self.slabs[slab];
        let mut out = Vec::new();
        let mut cur = head as u64;
        while cur != OFF_NONE as u64 {
            assert!(
                cur < s.limit() as u64 && cur % SIZE as u64 == 0,
                "{place}: link {cur:#x} is no object of slab {slab} (chain so far {out:x?})"
            );
            assert!(out.len() < s.next.len(), "{place}: chain of slab {slab} longer than the slab: {out:x?}");
            let addr = s.base + cur as usize;
            out.push(addr);
            cur = self.read_next(addr);
        }
        out
    }
}

/// Which objects have been found where: every object at most once.
struct Seen<'a> {
    mem: &'a Memory,
    bits: u64,
    log: String,
}

impl<'a> Seen<'a> {
    fn new(mem: &'a Memory) -> Self {
        Self { mem, bits: 0, log: String::new() }
    }
    fn add(&mut self, addrs: &[usize], place: &str) {
        self.log += &format!(" {place}: {addrs:x?};");
        for &a in addrs {
            let (s, i, _) = self.mem.slot(a).unwrap_or_else(|| panic!("{a:#x} in {place} is no object"));
            let bit = 1u64 << (s * 16 + i);
            assert!(self.bits & bit == 0, "object {a:#x} found twice (again in {place});{}", self.log);
            self.bits |= bit;
        }
    }
    /// Every object of slabs `0..nr_slabs` was found.
    fn all(&self, nr_slabs: usize) {
        let want = self.mem.slabs[..nr_slabs]
            .iter()
            .enumerate()
            .fold(0u64, |m, (s, slab)| m | ((1u64 << slab.objects()) - 1) << (s * 16));
        assert_eq!(self.bits, want, "objects missing (found {:#b}, want {want:#b}):{}", self.bits, self.log);
    }
}

/// Runs `a` and `b` on two new model threads, joins both, returns what they return. As
/// `testing::loom::both`: the main thread only joins, so a failed assertion in either thread
/// ends the model cleanly.
fn both_with<A: Send + 'static, B: Send + 'static>(
    a: impl FnOnce() -> A + Send + 'static,
    b: impl FnOnce() -> B + Send + 'static,
) -> (A, B) {
    let ta = loom::thread::spawn(a);
    let tb = loom::thread::spawn(b);
    (ta.join().unwrap(), tb.join().unwrap())
}

// ---------------------------------------------------------------------------------------
// The per-CPU freelist.

/// What the slow path on thread 1 does with CPU 0's freelist.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Slow {
    /// `flush_cpu`: take the chain, deactivate the slab (its objects reused), no active slab.
    Flush,
    /// `alloc_slow` with a new slab: take the chain, deactivate, install slab 1.
    Switch,
    /// `free_slow` of an object of the active slab: push it under the lock.
    FreeLocked,
    /// Broken: `Switch` with the word read and stored instead of `lock_word`.
    SwitchWithoutLockWord,
}

/// CPU 0's part of one cache, and the objects of two slabs: slab 0 (3 objects, CPU 0's
/// active slab at the start) and slab 1 (2 objects, installed by [`Slow::Switch`]).
struct Cpu0 {
    c: CpuSlab,
    mem: Memory,
}

impl Cpu0 {
    fn new(slow: Slow, strict_map: bool) -> Arc<Self> {
        let mem = Memory { slabs: [ModelSlab::new(1, 0x1000, 3), ModelSlab::new(2, 0x2000, 2)].into(), strict_map };
        if slow == Slow::FreeLocked {
            // Object 2 of slab 0 is allocated (thread 1 holds it): the CPU list is 0 -> 16.
            mem.write_next(0x1000 + SIZE as usize, OFF_NONE);
        }
        let c = CpuSlab::new(0);
        // Install slab 0 as `install_and_pop` does (without the pop).
        c.lock.lock_raw(&ModelPlatform::model());
        let (_, tid) = c.lock_word();
        c.set_active(Some(mem.slabs[0].active()));
        c.unlock_word(0, tid);
        c.lock.unlock();
        Arc::new(Self { c, mem })
    }

    fn pop(&self) -> Option<usize> {
        self.c.fast_pop(None, |obj| self.mem.read_next(obj))
    }

    fn push(&self, addr: usize) -> bool {
        self.c.fast_push(addr, |off| off % SIZE == 0, |obj, next| self.mem.write_next(obj, next))
    }

    /// Thread 0: the fast paths. Returns the objects it holds at the end.
    fn fast_paths(&self, pop: impl Fn(&Self) -> Option<usize>) -> Vec<usize> {
        let mut hands: Vec<usize> = pop(self).into_iter().chain(pop(self)).collect();
        // Free the first object: its free pointer gets the second's successor, not the value
        // it had on the list before, so a stale read of it is a broken chain.
        if let Some(&x) = hands.first() {
            if self.push(x) {
                hands.remove(0);
            }
        }
        hands
    }

    /// Takes the CPU chain of the active slab (word locked), reuses its objects. Returns them.
    fn take_chain(&self, head: u32) -> Vec<usize> {
        let a = self.c.active().expect("slab 0 is active");
        assert_eq!(a, self.mem.slabs[0].active(), "the slow path sees the slab it installed");
        let chain = self.mem.walk(0, head, "chain taken by the slow path");
        for &obj in &chain {
            // As a new owner of the object would (after `deactivate_slab` gave it back).
            self.mem.write_next(obj, REUSED);
        }
        chain
    }

    /// Thread 1: the slow path. Returns the objects it holds at the end.
    fn slow_path(&self, slow: Slow) -> Vec<usize> {
        let p = ModelPlatform::model();
        self.c.lock.lock_raw(&p);
        let held = match slow {
            Slow::Flush | Slow::Switch => {
                let (head, tid) = self.c.lock_word();
                let chain = self.take_chain(head);
                if slow == Slow::Flush {
                    self.c.set_active(None);
                    self.c.unlock_word(OFF_NONE, tid);
                } else {
                    self.c.set_active(Some(self.mem.slabs[1].active()));
                    self.c.unlock_word(0, tid);
                }
                chain
            }
            Slow::FreeLocked => {
                let obj = 0x1000 + 2 * SIZE as usize;
                let (head, tid) = self.c.lock_word();
                assert_eq!(self.c.active(), Some(self.mem.slabs[0].active()));
                assert_ne!(head, 2 * SIZE, "not a double free");
                self.mem.write_next(obj, head);
                self.c.unlock_word(2 * SIZE, tid);
                Vec::new()
            }
            Slow::SwitchWithoutLockWord => {
                let w = self.c.load_word();
                let chain = self.take_chain(cpu_head(w));
                self.c.set_active(Some(self.mem.slabs[1].active()));
                self.c.unlock_word(0, cpu_tid(w));
                chain
            }
        };
        self.c.lock.unlock();
        held
    }

    /// The conservation check, after both threads were joined.
    fn check(&self, slow: Slow, fast: &[usize], slow_held: &[usize]) {
        assert!(!self.c.lock.is_locked(), "local lock left held");
        let head = cpu_head(self.c.load_word());
        assert_ne!(head, OFF_LOCKED, "CPU word left locked");
        let mut seen = Seen::new(&self.mem);
        seen.add(fast, "thread 0's hands");
        seen.add(slow_held, "thread 1's hands");
        match self.c.active() {
            Some(a) => {
                let s = self.mem.slabs.iter().position(|s| s.pfn == a.slab).expect("a model slab is active");
                assert_eq!(a, self.mem.slabs[s].active(), "active slab fields of one slab");
                seen.add(&self.mem.walk(s, head, "the CPU freelist"), "the CPU freelist");
            }
            None => assert_eq!(head, OFF_NONE, "a CPU freelist without an active slab"),
        }
        let with_slab_1 = matches!(slow, Slow::Switch | Slow::SwitchWithoutLockWord);
        seen.all(if with_slab_1 { 2 } else { 1 });
    }
}

/// Thread 0 runs the fast paths with `pop` while thread 1 runs `slow`; then the check.
fn cpu_model(slow: Slow, strict_map: bool, pop: fn(&Cpu0) -> Option<usize>) {
    model_bounded(PREEMPTIONS, move || {
        let cpu = Cpu0::new(slow, strict_map);
        let (fast, held) = both_with(
            {
                let cpu = cpu.clone();
                move || cpu.fast_paths(pop)
            },
            {
                let cpu = cpu.clone();
                move || cpu.slow_path(slow)
            },
        );
        cpu.check(slow, &fast, &held);
    });
}

/// Fast paths against a slow path that replaces the active slab with another one
/// (`alloc_slow`'s new slab, `refill_locked`'s partial slab).
#[test]
fn cpu_fast_paths_against_switch() {
    cpu_model(Slow::Switch, true, Cpu0::pop);
}

/// Fast paths against a slow path that frees an object of the active slab under the lock
/// (`free_slow` when the fast push gave up).
#[test]
fn cpu_fast_paths_against_locked_free() {
    cpu_model(Slow::FreeLocked, true, Cpu0::pop);
}

/// Fast paths against a flush (`flush_cpu`: no active slab afterwards). Conservation only:
/// a fast pop may read a free pointer outside the direct map here (see
/// [`cpu_fast_paths_against_flush_stay_mapped`]), which this model lets return garbage.
#[test]
fn cpu_fast_paths_against_flush() {
    cpu_model(Slow::Flush, false, Cpu0::pop);
}

/// The same flush, with reads outside the direct map failing the model. It fails:
///
/// 1. thread 0, `fast_pop`: `load_word` sees head 0 (object 0 of slab 0), tid t;
/// 2. thread 1, `flush_cpu`: `lock_word`, takes the chain, `set_active(None)` (base 0,
///    limit 0), `unlock_word(OFF_NONE)`;
/// 3. thread 0: `load_base` returns 0, `obj = 0 + head = 0`, and `read_next(0)` (in the real
///    `alloc_fast`, `s.get_fp(0)`: a load at address `0 + s.layout.offset`) dereferences a
///    near-null address before the CAS that would fail. `alloc_fast`'s SAFETY comment ("the
///    slab memory is still mapped") does not hold once the base is 0. A task preempted
///    between the two loads on CPU 0 (the fast path does not disable preemption), or a
///    remote `kmem_cache_shrink` flushing CPU 0, makes it happen.
///
/// Fixed: `fast_pop` checks `head < limit` and that the word is unchanged after loading
/// `base` and `limit` before it reads `base + head`.
#[test]
fn cpu_fast_paths_against_flush_stay_mapped() {
    cpu_model(Slow::Flush, true, Cpu0::pop);
}

/// The models have teeth: a slow path that switches the active slab after reading the word
/// and then storing the new one (no `lock_word`) races with a fast path's CAS: an object
/// popped meanwhile is also in the chain it took.
#[test]
#[should_panic]
fn switch_without_lock_word_is_caught() {
    cpu_model(Slow::SwitchWithoutLockWord, true, Cpu0::pop);
}

/// A fast pop that ignores the tid: after reading the free pointer it re-reads the word and
/// publishes if only the head is unchanged. A switch to a slab whose head has the same offset
/// (0) in between is the ABA the tid exists for: the pop hands out an object of the old
/// slab the slow path took, and links the new slab's list through the old slab's pointer.
fn pop_ignoring_tid(cpu: &Cpu0) -> Option<usize> {
    let c = &cpu.c;
    loop {
        let head = cpu_head(c.load_word());
        if head >= OFF_LOCKED {
            return None;
        }
        let obj = c.load_base() + head as usize;
        let next = cpu.mem.read_next(obj);
        if next >= c.load_limit() as u64 && next != OFF_NONE as u64 {
            return None;
        }
        let now = c.load_word();
        if cpu_head(now) == head && c.cas_word(now, next as u32) {
            return Some(obj);
        }
    }
}

/// The models have teeth: [`pop_ignoring_tid`] against a switch hands out an object the
/// slow path took.
#[test]
#[should_panic]
fn pop_ignoring_the_tid_is_caught() {
    cpu_model(Slow::Switch, true, pop_ignoring_tid);
}

// ---------------------------------------------------------------------------------------
// Remote frees into a frozen slab.

/// Objects of the model slab.
const REMOTE_OBJECTS: u32 = 4;
/// The objects thread 1 frees remotely (the owner keeps objects 0 and 1).
const REMOTE_FREED: [u32; 2] = [2 * SIZE, 3 * SIZE];

/// A slab frozen for CPU 0: its head page descriptor (the real `Slab` word) and its objects.
struct Frozen {
    page: Page,
    mem: Memory,
}

impl Frozen {
    fn new() -> Arc<Self> {
        let page = Page::new_boot(ZoneType::Normal.index() as u8, 0, 0, 0);
        let mem = Memory { slabs: [ModelSlab::new(1, 0x1000, REMOTE_OBJECTS)].into(), strict_map: true };
        let f = Self { page, mem };
        // As `new_slab`, then `alloc_slow`'s `freeze_new`: the CPU takes the whole freelist
        // and allocates every object (two kept by thread 0, two passed to thread 1).
        f.slab().set_word(SlabWord { freelist: 0, inuse: 0, objects: REMOTE_OBJECTS, frozen: false });
        assert_eq!(freeze_new(f.slab()), 0);
        Arc::new(f)
    }

    fn slab(&self) -> Slab<'_> {
        Slab { pfn: Pfn::new(1), page: &self.page }
    }

    fn addr(&self, off: u32) -> usize {
        self.mem.slabs[0].base + off as usize
    }

    /// `__slab_free`'s loop for a frozen slab (no list work, no list lock).
    fn remote_free(&self, off: u32) {
        let slab = self.slab();
        loop {
            let old = slab.word();
            assert_ne!(old.freelist, off, "double free of {off:#x}");
            assert!(old.inuse > 0, "free into a slab with nothing in use");
            assert!(old.frozen, "the model's slab stays frozen");
            let new = SlabWord { freelist: off, inuse: old.inuse - 1, ..old };
            self.mem.write_next(self.addr(off), old.freelist);
            if slab.cas(old, new) {
                return;
            }
        }
    }

    /// Broken: the same push published with a store of the word instead of a CAS.
    fn remote_free_with_store(&self, off: u32) {
        let slab = self.slab();
        let old = slab.word();
        self.mem.write_next(self.addr(off), old.freelist);
        slab.set_word(SlabWord { freelist: off, inuse: old.inuse - 1, ..old });
    }

    /// Thread 0, the owner: `take_freelist` three times (`refill_locked`'s refill), walking
    /// every chain it takes. Returns the objects it took.
    fn owner(&self) -> Vec<usize> {
        let mut taken = Vec::new();
        for _ in 0..3 {
            if let Some(head) = take_freelist(self.slab()) {
                taken.extend(self.mem.walk(0, head, "a chain the owner took"));
            }
        }
        taken
    }

    fn check(&self, taken: &[usize]) {
        let w = self.slab().word();
        assert!(w.frozen, "still frozen");
        assert_eq!(w.objects, REMOTE_OBJECTS);
        let listed = self.mem.walk(0, w.freelist, "the slab freelist");
        assert_eq!(
            w.inuse as usize,
            REMOTE_OBJECTS as usize - listed.len(),
            "inuse against the slab freelist {listed:x?} (owner took {taken:x?})"
        );
        let mut seen = Seen::new(&self.mem);
        seen.add(&[self.addr(0), self.addr(SIZE)], "the owner's hands");
        seen.add(taken, "the chains the owner took");
        seen.add(&listed, "the slab freelist");
        seen.all(1);
    }
}

/// Runs the owner against thread 1 freeing [`REMOTE_FREED`] with `free`; then the check.
fn remote_model(free: fn(&Frozen, u32)) {
    model_bounded(REMOTE_PREEMPTIONS, move || {
        let f = Frozen::new();
        let (taken, ()) = both_with(
            {
                let f = f.clone();
                move || f.owner()
            },
            {
                let f = f.clone();
                move || REMOTE_FREED.iter().for_each(|&off| free(&f, off))
            },
        );
        f.check(&taken);
    });
}

/// Remote frees into the owner's active (frozen) slab against the owner taking them.
#[test]
fn remote_frees_against_take_freelist() {
    remote_model(Frozen::remote_free);
}

/// The models have teeth: a remote free that stores the word loses a take (the object the
/// owner took stays on the slab freelist too) or another free.
#[test]
#[should_panic]
fn remote_free_storing_the_word_is_caught() {
    remote_model(Frozen::remote_free_with_store);
}
