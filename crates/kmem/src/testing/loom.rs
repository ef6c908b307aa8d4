//! Support for the core's loom models (`scripts/loom.sh`): the model runner, a platform whose
//! CPUs are loom threads, and a small zone over a few real page descriptors.
//!
//! A model thread stands for a CPU that has already pinned itself: preemption and interrupts
//! are not modelled (the hosted CPU-slot models in `kmem-hosted` cover what pins a CPU), so
//! the platform's pin and IRQ calls do nothing, and `cpu_relax` yields to loom's scheduler.

use core::mem::MaybeUninit;

use super::std::{self, borrow::ToOwned, vec::Vec};

use crate::addr::{Order, Pfn};
use crate::mm::buddy;
use crate::mm::memmap::{Memmap, Section};
use crate::mm::page::{pg, Page};
use crate::mm::zone::Zone;
use crate::mm::zone_type::{Migratetype, ZoneType};

/// Schedule points one execution may take when `LOOM_MAX_BRANCHES` is not set. Every atomic
/// operation is one, and a model's setup (a zone's buddy lists, a section's pageblock types,
/// four frames freed and merged) already takes a few hundred: loom's default of 1,000 is too
/// few.
pub const DEFAULT_BRANCHES: usize = 20_000;

/// Runs `f` under loom over every interleaving (no preemption bound) unless
/// `LOOM_MAX_PREEMPTIONS` sets one. Other settings come from the environment (`LOOM_*`).
pub fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    run(None, f);
}

/// Runs `f` under loom over every interleaving with at most `preemptions` preemptions, unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise: for models too large to explore without a bound.
pub fn model_bounded<F: Fn() + Sync + Send + 'static>(preemptions: usize, f: F) {
    run(Some(preemptions), f);
}

fn run<F: Fn() + Sync + Send + 'static>(preemptions: Option<usize>, f: F) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = preemptions;
    }
    if std::env::var_os("LOOM_MAX_BRANCHES").is_none() {
        b.max_branches = DEFAULT_BRANCHES;
    }
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    b.check(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let name = std::thread::current().name().unwrap_or("model").to_owned();
    let bound = b.preemption_bound.map_or("no bound".to_owned(), |n| std::format!("at most {n} preemptions"));
    std::eprintln!("{name}: {} executions explored ({bound})", runs.load(std::sync::atomic::Ordering::Relaxed));
}

/// Runs `a` and `b` on two new model threads and joins them. The main thread only joins, so a
/// failed assertion in either ends the model cleanly (a panic on the main thread while a join
/// handle is alive aborts the test process).
pub fn both(a: impl FnOnce() + Send + 'static, b: impl FnOnce() + Send + 'static) {
    let ta = loom::thread::spawn(a);
    let tb = loom::thread::spawn(b);
    ta.join().unwrap();
    tb.join().unwrap();
}

/// The platform of a model (see [`TestPlatform::model`]).
pub type ModelPlatform = super::TestPlatform;

/// A set of frame numbers below 64 that refuses duplicates: the conservation check of the
/// models (every frame is in exactly one place).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Frames(pub u64);

impl Frames {
    /// All of `0..n` (`n` at most 64).
    pub fn first(n: usize) -> Self {
        Self(u64::MAX.checked_shr(64 - n as u32).unwrap_or(0))
    }
    /// Adds the `2^order` frames of the block at `pfn`; panics naming `place` if one is
    /// already in the set (a block listed twice, or in two places at once).
    pub fn add(&mut self, pfn: Pfn, order: Order, place: &str) {
        for f in pfn.as_usize()..pfn.as_usize() + order.nr_pages() {
            assert!(f < 64, "frame {f} out of the model's range");
            assert!(self.0 & 1 << f == 0, "frame {f} found twice (again in {place}); frames so far {:#b}", self.0);
            self.0 |= 1 << f;
        }
    }
}

/// A Normal zone spanning frames `0..nr` of one memory section, with a real memory map
/// (descriptors for those frames only), buddy lists and zone lock. Every frame starts free in
/// the buddy lists, merged as boot would merge them.
#[derive(Debug)]
pub struct ModelZone {
    /// The machine's platform.
    pub platform: ModelPlatform,
    /// The memory map over `pages`.
    pub mm: Memmap,
    /// The zone.
    pub zone: Zone,
    nr: usize,
    // The memory map points into these; they live (and do not move) as long as `self`.
    _table: Vec<MaybeUninit<Section>>,
    _pages: Vec<Page>,
}

impl ModelZone {
    /// A zone of `nr` frames (at most 64), all free. Call inside a model.
    pub fn new(nr: usize) -> Self {
        assert!(nr <= 64);
        // One section and its map word (`Memmap::table_bytes(1)` bytes, `Section`-aligned).
        let slots = Memmap::table_bytes(1).div_ceil(core::mem::size_of::<Section>());
        let mut table: Vec<MaybeUninit<Section>> = Vec::with_capacity(slots);
        table.resize_with(slots, MaybeUninit::uninit);
        let pages: Vec<Page> = (0..nr).map(|_| Page::new_boot(ZoneType::Normal.index() as u8, 0, 0, 0)).collect();
        // SAFETY: `table` holds `table_bytes(1)` writable, aligned bytes. Its heap buffer is never
        // resized, is used for nothing else, and lives as long as the returned `ModelZone`,
        // which owns it; the models use `mm` only through a borrow of that `ModelZone`.
        let mm = unsafe { Memmap::init(table.as_mut_ptr().cast::<Section>(), 1) };
        // SAFETY: `pages` holds initialised descriptors for frames `0..nr` of section 0, which
        // is not present yet; the buffer is never resized and is owned by the returned
        // `ModelZone`, as `table` is. The zone spans only `0..nr`, and the buddy and per-CPU
        // code look up only frames of the span or on its lists, so no frame at or beyond `nr`
        // is ever looked up (the short-map case of the contract).
        unsafe { mm.set_section_map(0, pages.as_ptr(), 0) };
        let zone = Zone::new(ZoneType::Normal, 0);
        zone.set_span(Pfn::new(0), Pfn::new(nr));
        zone.add_present(nr);
        zone.add_managed(nr);
        let platform = ModelPlatform::model();
        {
            let g = zone.area.lock(&platform);
            for (i, page) in pages.iter().enumerate() {
                page.clear_exclusive(pg::RESERVED);
                page.set_refcount(0);
                buddy::free_one_page(&g, &zone, &mm, Pfn::new(i), Order::ZERO, Migratetype::Movable, true);
            }
        }
        Self { platform, mm, zone, nr, _table: table, _pages: pages }
    }

    /// Number of frames.
    pub fn nr(&self) -> usize {
        self.nr
    }

    /// Adds the zone's free blocks to `frames`, checking the free lists (links, `PG_buddy`,
    /// orders, alignment) and that the zone's free counter matches them.
    pub fn collect_free(&self, frames: &mut Frames) {
        let g = self.zone.area.lock(&self.platform);
        let pages = self.zone.area.check(&g, &self.mm).expect("buddy lists are well formed");
        assert_eq!(pages, self.zone.free_pages(), "zone free counter against its lists");
        for order in Order::all() {
            for mt in Migratetype::ALL {
                let mut cur = self.zone.area.first(&g, order, mt);
                while let Some(pfn) = cur {
                    frames.add(pfn, order, "the buddy lists");
                    let (next, _) = self.mm.page(pfn).expect("listed frame has a descriptor").links();
                    cur = (next != crate::mm::page::NIL).then(|| Pfn::new(next as usize));
                }
            }
        }
    }
}
