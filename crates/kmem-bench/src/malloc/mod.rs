//! General-purpose allocation: kmem as a process's allocator ([`kmem_alloc::KmemAlloc`])
//! against six peers, on the same workloads, side by side in one run (the `malloc` bench
//! and the `malloc_cost` instruction-count example).
//!
//! Only one `#[global_allocator]` can exist per binary, so every allocator is called
//! through its `GlobalAlloc` methods directly ([`Peer`]; [`with_peer!`](crate::with_peer) runs generic code
//! on the allocator of a peer, monomorphised per allocator, so fast paths inline as they
//! would in a program that installs it):
//!
//! | peer | allocator | memory |
//! |---|---|---|
//! | `kmem` | `kmem_alloc::KmemAlloc`: kmalloc's size classes, its page path, host mappings above 4 MiB | its lazily booted global machine (128 MiB of private RAM, grows by hot-add) |
//! | `mimalloc` | `mimalloc::MiMalloc` | the host (mmap) |
//! | `jemalloc` | `tikv_jemallocator::Jemalloc` | the host (mmap) |
//! | `system` | `std::alloc::System`: glibc's malloc | the host (brk/mmap) |
//! | `talc` | `talc::TalcLock<spinning_top::RawSpinlock, Manual>` | an [`ARENA_BYTES`] arena |
//! | `linked_list_allocator` | `linked_list_allocator::LockedHeap` | an [`ARENA_BYTES`] arena |
//! | `buddy_system_allocator` | `buddy_system_allocator::LockedHeap<32>` | an [`ARENA_BYTES`] arena |
//!
//! The arenas are anonymous private mappings, **not pre-faulted**: their pages are faulted
//! in on first touch, as the host allocators' are, so that peak RSS compares what each
//! allocator touches. The bench runs every workload once per allocator before timing it, so
//! timed runs reuse pages the arena peers have already touched (the host allocators may give
//! pages back and fault them in again: that is part of their cost).
//!
//! Workloads ([`Workload`]), all single-threaded but [`prodcons`]; blocks are 8-aligned
//! (what most Rust types need; kmem rounds larger alignments up to a power of two):
//!
//! - [`Workload::Pair`]: one hot alloc + free of one size (16 to 1024 bytes);
//! - [`Workload::AllocNFreeN`]: n allocations of 64 bytes, then n frees in allocation order;
//! - [`Workload::Random`]: a seeded, closed sequence ([`SizeMix`]) of allocations of sizes
//!   drawn log-uniformly from 8 bytes to 8 KiB and frees of random live blocks, at most
//!   [`MIX_MAX_LIVE`] live; the first byte of each block is written;
//! - [`Workload::Realloc`]: [`REALLOC_BUFS`] buffers grown in turn by `realloc`, an eighth
//!   (at least 16 bytes) at a time, from 16 bytes to [`REALLOC_MAX`], the last byte written
//!   after each step;
//! - [`Workload::Vec`], [`Workload::HashMap`]: an `allocator_api2` `Vec<u64>` pushed
//!   [`COLLECTION_N`] times from empty, and a `hashbrown` map of as many `u64` keys to
//!   `allocator_api2` byte vectors of 8 to 71 bytes, both in the peer through [`Api2`];
//! - [`Workload::Churn`]: [`CHURN_LIVE`] live blocks of random sizes (8 to 1000 bytes,
//!   uniform), each step frees a random one and allocates a new one in its place
//!   ([`churn`], over [`ChurnSteps`]): random-order frees on one thread;
//! - [`Workload::BTreeMap`]: std's `BTreeMap` of as many `u64` keys to boxed byte slices of
//!   8 to 71 bytes. Its `new_in` is unstable, so it runs under [`with_global`]: the binary's
//!   global allocator is [`Dispatch`], which sends the calling thread's allocations to the
//!   peer while the closure runs (and to `System` otherwise);
//! - [`prodcons`]: a producer thread allocates 64-byte blocks, a consumer thread frees them
//!   (cross-thread frees), batches of [`PRODCONS_BATCH`] through a ring;
//! - [`threads`]: larson, threadtest and a pool of short-lived threads, with 2 to 8 threads
//!   (the `threads` bench).
//!
//! ```
//! use kmem_bench::malloc::{run_once, Inputs, Peer, Workload};
//! let mut inputs = Inputs::new();
//! for peer in Peer::ALL {
//!     for w in [Workload::Pair(64), Workload::AllocNFreeN(100), Workload::Realloc] {
//!         assert!(run_once(peer, w, &mut inputs) > 0);
//!     }
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::Once;
use std::time::Duration;

use allocator_api2::alloc::{AllocError, Allocator};
use kmem_alloc::KmemAlloc;
use mimalloc::MiMalloc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use talc::source::Manual;
#[cfg(feature = "jemalloc")]
use tikv_jemallocator::Jemalloc;

mod api2;
mod dispatch;
mod prodcons;
pub mod threads;
mod workloads;

pub use api2::Api2;
pub use dispatch::{with_global, Dispatch};
pub use prodcons::prodcons;
pub use threads::{run_mt, MtResult, MtWorkload, MT_THREADS};
pub use workloads::*;

/// Bytes of each arena peer's arena.
pub const ARENA_BYTES: usize = 512 << 20;
/// `buddy_system_allocator`'s size classes: blocks up to 2 GiB, enough for the arena.
pub const BSA_HEAP_ORDER: usize = 32;
/// Most blocks live at once in [`Workload::Random`].
pub const MIX_MAX_LIVE: usize = 2000;
/// Random steps of [`SizeMix::generate`] before the frees that close the sequence.
pub const MIX_STEPS: usize = 1 << 16;
/// Buffers of [`Workload::Realloc`].
pub const REALLOC_BUFS: usize = 4;
/// Final size of each buffer of [`Workload::Realloc`].
pub const REALLOC_MAX: usize = 256 << 10;
/// Elements of the collection workloads.
pub const COLLECTION_N: usize = 20_000;
/// Live blocks of [`Workload::Churn`].
pub const CHURN_LIVE: usize = 2000;
/// Steps (a free and an allocation) of [`Workload::Churn`] after the fill.
pub const CHURN_STEPS: usize = 1 << 16;
/// Pairs per run of [`Workload::Pair`].
pub const PAIRS_PER_RUN: usize = 10_000;
/// Blocks per hand-over in [`prodcons`].
pub const PRODCONS_BATCH: usize = 64;
/// Block size of [`prodcons`].
pub const PRODCONS_SIZE: usize = 64;
/// Alignment of every workload's blocks (but the collections', which use their types').
pub const ALIGN: usize = 8;

/// kmem's global allocator (boots its machine on first use).
pub static KMEM: KmemAlloc = KmemAlloc;
/// mimalloc.
pub static MIMALLOC: MiMalloc = MiMalloc;
/// jemalloc.
#[cfg(feature = "jemalloc")]
pub static JEMALLOC: Jemalloc = Jemalloc;
/// glibc's malloc.
pub static SYSTEM: System = System;
/// talc over its arena (claimed by [`Peer::prepare`]).
pub static TALC: talc::TalcLock<spinning_top::RawSpinlock, Manual> = talc::TalcLock::new(Manual);
/// linked_list_allocator over its arena (initialised by [`Peer::prepare`]).
pub static LLA: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();
/// buddy_system_allocator over its arena (initialised by [`Peer::prepare`]).
pub static BSA: buddy_system_allocator::LockedHeap<BSA_HEAP_ORDER> = buddy_system_allocator::LockedHeap::new();

/// One allocator under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// [`KMEM`].
    Kmem,
    /// [`MIMALLOC`].
    Mimalloc,
    /// [`JEMALLOC`] (feature `jemalloc`, off by default).
    #[cfg(feature = "jemalloc")]
    Jemalloc,
    /// [`SYSTEM`].
    System,
    /// [`TALC`].
    Talc,
    /// [`LLA`].
    LinkedList,
    /// [`BSA`].
    Buddy,
}

/// Runs `$body` with `$a` bound to `&'static` the allocator of peer `$p` (its own type, so
/// generic code is monomorphised for each allocator), after [`Peer::prepare`].
#[macro_export]
macro_rules! with_peer {
    ($p:expr, |$a:ident| $body:expr) => {{
        let p: $crate::malloc::Peer = $p;
        p.prepare();
        $crate::peer_match!(p, |$a| $body)
    }};
}

/// [`with_peer!`] without [`Peer::prepare`].
#[doc(hidden)]
#[macro_export]
macro_rules! peer_match {
    ($p:expr, |$a:ident| $body:expr) => {
        match $p {
            $crate::malloc::Peer::Kmem => {
                let $a = &$crate::malloc::KMEM;
                $body
            }
            $crate::malloc::Peer::Mimalloc => {
                let $a = &$crate::malloc::MIMALLOC;
                $body
            }
            #[cfg(feature = "jemalloc")]
            $crate::malloc::Peer::Jemalloc => {
                let $a = &$crate::malloc::JEMALLOC;
                $body
            }
            $crate::malloc::Peer::System => {
                let $a = &$crate::malloc::SYSTEM;
                $body
            }
            $crate::malloc::Peer::Talc => {
                let $a = &$crate::malloc::TALC;
                $body
            }
            $crate::malloc::Peer::LinkedList => {
                let $a = &$crate::malloc::LLA;
                $body
            }
            $crate::malloc::Peer::Buddy => {
                let $a = &$crate::malloc::BSA;
                $body
            }
        }
    };
}

impl Peer {
    /// Every peer, kmem first.
    #[cfg(feature = "jemalloc")]
    pub const ALL: [Peer; 7] =
        [Peer::Kmem, Peer::Mimalloc, Peer::Jemalloc, Peer::System, Peer::Talc, Peer::LinkedList, Peer::Buddy];
    /// Every peer, kmem first (built without the `jemalloc` feature).
    #[cfg(not(feature = "jemalloc"))]
    pub const ALL: [Peer; 6] = [Peer::Kmem, Peer::Mimalloc, Peer::System, Peer::Talc, Peer::LinkedList, Peer::Buddy];

    /// The name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Kmem => "kmem",
            Peer::Mimalloc => "mimalloc",
            #[cfg(feature = "jemalloc")]
            Peer::Jemalloc => "jemalloc",
            Peer::System => "system",
            Peer::Talc => "talc",
            Peer::LinkedList => "linked_list_allocator",
            Peer::Buddy => "buddy_system_allocator",
        }
    }

    /// The peer of a name ([`Peer::name`]).
    pub fn from_name(s: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|p| p.name() == s)
    }

    fn index(self) -> u8 {
        Peer::ALL.iter().position(|&p| p == self).expect("listed") as u8
    }

    /// Gives an arena peer its arena (once); boots kmem's global machine.
    ///
    /// # Panics
    ///
    /// If kmem's machine does not boot.
    pub fn prepare(self) {
        static ARENAS: [Once; 3] = [Once::new(), Once::new(), Once::new()];
        match self {
            Peer::Talc => ARENAS[0].call_once(|| {
                let base = map_arena(ARENA_BYTES);
                // SAFETY: a fresh private mapping of ARENA_BYTES, never unmapped, given to
                // talc alone.
                let end = unsafe { TALC.lock().claim(base, ARENA_BYTES) };
                assert!(end.is_some(), "talc claims its arena");
            }),
            Peer::LinkedList => ARENAS[1].call_once(|| {
                let base = map_arena(ARENA_BYTES);
                // SAFETY: as for talc.
                unsafe { LLA.lock().init(base, ARENA_BYTES) };
            }),
            Peer::Buddy => ARENAS[2].call_once(|| {
                let base = map_arena(ARENA_BYTES);
                // SAFETY: as for talc.
                unsafe { BSA.lock().init(base as usize, ARENA_BYTES) };
            }),
            Peer::Kmem => {
                // Without this check a machine that cannot boot (no address space for its
                // hotplug reserve, say) would leave KmemAlloc on its bootstrap arena, a bump
                // allocator, and the figures would be that arena's.
                assert!(kmem_alloc::global::machine().is_some(), "kmem's global machine does not boot");
            }
            _ => {}
        }
    }
}

/// An anonymous private mapping of `bytes`, not faulted in.
fn map_arena(bytes: usize) -> *mut u8 {
    use rustix::mm::{mmap_anonymous, MapFlags, ProtFlags};
    // SAFETY: a new mapping at an address of the kernel's choosing: no existing memory is
    // affected.
    let p = unsafe {
        mmap_anonymous(
            std::ptr::null_mut(),
            bytes,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        )
    };
    p.expect("arena mapping") as *mut u8
}

/// A single-threaded workload of the `malloc` bench.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// [`pairs`] of this size, [`PAIRS_PER_RUN`] per run.
    Pair(usize),
    /// [`alloc_n_free_n`] of this many 64-byte blocks.
    AllocNFreeN(usize),
    /// [`random_mix`] over [`Inputs::mix`].
    Random,
    /// [`churn`] over [`Inputs::churn`].
    Churn,
    /// [`realloc_growth`].
    Realloc,
    /// [`vec_push`] of [`COLLECTION_N`] elements.
    Vec,
    /// [`hashmap_build`] of [`COLLECTION_N`] entries.
    HashMap,
    /// [`btreemap_build`] of [`COLLECTION_N`] entries (under [`with_global`]).
    BTreeMap,
}

impl Workload {
    /// The workloads of the bench, in table order.
    pub const ALL: [Workload; 12] = [
        Workload::Pair(16),
        Workload::Pair(64),
        Workload::Pair(256),
        Workload::Pair(1024),
        Workload::AllocNFreeN(1000),
        Workload::AllocNFreeN(100_000),
        Workload::Random,
        Workload::Churn,
        Workload::Realloc,
        Workload::Vec,
        Workload::HashMap,
        Workload::BTreeMap,
    ];

    /// Its name in tables and on the command line.
    pub fn name(self) -> String {
        match self {
            Workload::Pair(s) => format!("pair/{s}"),
            Workload::AllocNFreeN(n) => format!("alloc_n_free_n/{n}"),
            Workload::Random => "random".into(),
            Workload::Churn => "churn".into(),
            Workload::Realloc => "realloc".into(),
            Workload::Vec => "vec".into(),
            Workload::HashMap => "hashmap".into(),
            Workload::BTreeMap => "btreemap".into(),
        }
    }

    /// The workload of a name ([`Workload::name`]).
    pub fn from_name(s: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == s)
    }

    /// What one operation is, for tables.
    pub fn op(self) -> &'static str {
        match self {
            Workload::Pair(_) => "alloc + free",
            Workload::AllocNFreeN(_) => "block (alloc + free)",
            Workload::Random => "step (alloc or free)",
            Workload::Churn => "step (free + alloc)",
            Workload::Realloc => "realloc",
            Workload::Vec => "push",
            Workload::HashMap | Workload::BTreeMap => "insert (+ its drop)",
        }
    }
}

/// Pre-generated inputs and scratch space of the workloads, made once per process.
#[derive(Debug)]
pub struct Inputs {
    /// The sequence of [`Workload::Random`].
    pub mix: SizeMix,
    /// The sequence of [`Workload::Churn`].
    pub churn: ChurnSteps,
    live: Vec<(*mut u8, u32)>,
    slots: Vec<*mut u8>,
}

impl Inputs {
    /// The inputs (about 1.4 MiB, in the binary's global allocator).
    pub fn new() -> Self {
        let mix = SizeMix::generate(0x6b6d_656d, MIX_STEPS, MIX_MAX_LIVE, 8, 8192);
        let churn = ChurnSteps::generate(0x6368_726e, CHURN_LIVE, CHURN_STEPS);
        Self {
            mix,
            churn,
            live: Vec::with_capacity(MIX_MAX_LIVE.max(CHURN_LIVE)),
            slots: vec![std::ptr::null_mut(); 100_000],
        }
    }
}

impl Default for Inputs {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs workload `w` once on `peer`; returns its operations.
///
/// # Panics
///
/// If an allocation fails, or for [`Workload::BTreeMap`] if the binary's global allocator
/// is not [`Dispatch`].
pub fn run_once(peer: Peer, w: Workload, inputs: &mut Inputs) -> u64 {
    match w {
        Workload::Pair(size) => {
            with_peer!(peer, |a| pairs(a, layout(size), PAIRS_PER_RUN));
            PAIRS_PER_RUN as u64
        }
        Workload::AllocNFreeN(n) => {
            if inputs.slots.len() < n {
                inputs.slots.resize(n, std::ptr::null_mut());
            }
            let slots = &mut inputs.slots[..n];
            with_peer!(peer, |a| alloc_n_free_n(a, layout(64), slots));
            n as u64
        }
        Workload::Random => {
            let (mix, live) = (&inputs.mix, &mut inputs.live);
            with_peer!(peer, |a| random_mix(a, mix, live));
            mix.len() as u64
        }
        Workload::Churn => {
            let (steps, live) = (&inputs.churn, &mut inputs.live);
            with_peer!(peer, |a| churn(a, steps, live));
            steps.pairs() as u64
        }
        Workload::Realloc => with_peer!(peer, |a| realloc_growth(a)),
        Workload::Vec => {
            with_peer!(peer, |a| vec_push(a, COLLECTION_N));
            COLLECTION_N as u64
        }
        Workload::HashMap => {
            with_peer!(peer, |a| hashmap_build(a, COLLECTION_N));
            COLLECTION_N as u64
        }
        Workload::BTreeMap => {
            with_global(peer, || btreemap_build(COLLECTION_N));
            COLLECTION_N as u64
        }
    }
}

/// The process's peak resident set (`VmHWM` of /proc/self/status), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static GLOBAL: Dispatch = Dispatch;

    #[test]
    fn size_mix_is_closed_and_bounded() {
        let mix = SizeMix::generate(1, 10_000, 100, 8, 8192);
        let mut live = 0usize;
        for s in mix.steps() {
            match *s {
                SizeStep::Alloc(n) => {
                    assert!((8..=8192).contains(&n));
                    live += 1;
                    assert!(live <= 100);
                }
                SizeStep::Free(i) => {
                    assert!((i as usize) < live);
                    live -= 1;
                }
            }
        }
        assert_eq!(live, 0);
    }

    #[test]
    fn every_workload_runs_on_every_peer() {
        let mut inputs = Inputs::new();
        for peer in Peer::ALL {
            for w in [
                Workload::Pair(16),
                Workload::Pair(1024),
                Workload::AllocNFreeN(1000),
                Workload::Random,
                Workload::Churn,
            ] {
                assert!(run_once(peer, w, &mut inputs) > 0, "{} {}", peer.name(), w.name());
            }
            assert!(run_once(peer, Workload::Realloc, &mut inputs) > 100);
            // The collections, smaller than the bench's (lla and bsa are quadratic there).
            with_peer!(peer, |a| {
                vec_push(a, 1000);
                hashmap_build(a, 1000);
            });
            with_global(peer, || btreemap_build(1000));
            assert!(prodcons(peer, 10_000) > Duration::ZERO);
        }
    }

    #[test]
    fn api2_grows_and_shrinks() {
        let mut v = allocator_api2::vec::Vec::new_in(Api2(&KMEM));
        v.extend(0..10_000u32);
        v.truncate(10);
        v.shrink_to_fit();
        assert_eq!(v.iter().sum::<u32>(), 45);
    }

    #[test]
    fn peak_rss_reads() {
        assert!(peak_rss_kib().unwrap() > 0);
    }
}
