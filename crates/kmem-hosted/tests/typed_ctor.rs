//! Typed caches with constructors, used as a crate that depends on kmem would: no `unsafe`.
//! Linux's contract: the constructor runs once on each object when its slab is populated
//! (not per allocation), and an object keeps its state across free and reuse.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

use kmem::{Gfp, ReportKind, SlabAllocError, SlabFlags};
use kmem_hosted::{Machine, MachineBuilder};

fn machines() -> [(&'static str, Machine); 2] {
    [
        ("plain", MachineBuilder::new().ram_mib(64).cpus(2).build().unwrap()),
        ("slub_debug", MachineBuilder::new().ram_mib(64).cpus(2).slub_debug("").build().unwrap()),
    ]
}

/// A struct with a constructed part (`magic`, `list`) and a part its users change (`uses`).
struct Conn {
    magic: u64,
    list: [u32; 6],
    uses: u32,
}

static CONN_CTORS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

fn conn_ctor0(slot: &mut MaybeUninit<Conn>) -> &mut Conn {
    CONN_CTORS[0].fetch_add(1, Ordering::Relaxed);
    slot.write(Conn { magic: 0x5eed, list: [1, 2, 3, 4, 5, 6], uses: 0 })
}

#[test]
fn constructor_runs_once_per_object_per_slab_and_state_survives_reuse() {
    for (i, (what, m)) in machines().into_iter().enumerate() {
        // One constructor per machine, so that each counts its own runs.
        let cache = if i == 0 {
            m.typed_cache_with_ctor("conn", SlabFlags::NONE, conn_ctor0)
        } else {
            m.typed_cache_with_ctor("conn", SlabFlags::NONE, |slot: &mut MaybeUninit<Conn>| {
                CONN_CTORS[1].fetch_add(1, Ordering::Relaxed);
                slot.write(Conn { magic: 0x5eed, list: [1, 2, 3, 4, 5, 6], uses: 0 })
            })
        }
        .unwrap();
        let ctors = || CONN_CTORS[i].load(Ordering::Relaxed);
        assert!(cache.has_ctor());
        assert_eq!(ctors(), 0, "{what}: nothing constructed before a slab exists");
        let per_slab = cache.cache().objects_per_slab();

        let mut objs: Vec<_> = (0..per_slab).map(|_| cache.alloc_constructed(Gfp::KERNEL).unwrap()).collect();
        assert_eq!(ctors(), per_slab, "{what}: one slab populated, each object constructed once");
        assert!(objs.iter().all(|c| c.magic == 0x5eed && c.list == [1, 2, 3, 4, 5, 6] && c.uses == 0));
        for (n, c) in objs.iter_mut().enumerate() {
            c.uses = n as u32 + 1;
        }
        let left: BTreeMap<usize, u32> = objs.iter().map(|c| (&**c as *const Conn as usize, c.uses)).collect();
        drop(objs);

        // Reuse: the same objects come back in the state they were freed in; no constructor
        // runs meanwhile.
        let again: Vec<_> = (0..per_slab).map(|_| cache.alloc_constructed(Gfp::KERNEL).unwrap()).collect();
        assert_eq!(ctors(), per_slab, "{what}: reuse constructs nothing");
        let found: BTreeMap<usize, u32> = again.iter().map(|c| (&**c as *const Conn as usize, c.uses)).collect();
        assert_eq!(found, left, "{what}: every object kept the state it was freed in");
        assert!(again.iter().all(|c| c.magic == 0x5eed));

        // One more object needs a new slab: a whole slab's objects are constructed.
        let extra = cache.alloc_constructed(Gfp::KERNEL).unwrap();
        assert_eq!(ctors(), 2 * per_slab, "{what}: the second slab constructed in full");
        assert_eq!(extra.uses, 0);
        drop((again, extra));
        for k in [ReportKind::BadPage, ReportKind::SlabBug, ReportKind::Warning] {
            assert_eq!(m.report_count(k), 0, "{what}: {:?}", m.reports().last());
        }
    }
}

static DROPS: AtomicUsize = AtomicUsize::new(0);

struct Noisy(u32);

impl Drop for Noisy {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn freeing_keeps_the_value_and_alloc_with_a_value_replaces_it() {
    let m = MachineBuilder::new().ram_mib(64).build().unwrap();
    let cache =
        m.typed_cache_with_ctor("noisy", SlabFlags::NONE, |s: &mut MaybeUninit<Noisy>| s.write(Noisy(7))).unwrap();
    let a = cache.alloc_constructed(Gfp::KERNEL).unwrap();
    assert_eq!(a.0, 7);
    drop(a);
    assert_eq!(DROPS.load(Ordering::Relaxed), 0, "free does not drop a constructed object");
    let b = cache.alloc(Gfp::KERNEL, Noisy(9)).unwrap();
    assert_eq!(b.0, 9);
    assert_eq!(DROPS.load(Ordering::Relaxed), 1, "the constructed state was replaced and dropped once");
    drop(b);
    assert_eq!(cache.alloc_constructed(Gfp::KERNEL).unwrap().0, 9, "the replacing value stays for the next user");
    assert_eq!(DROPS.load(Ordering::Relaxed), 1);
}

#[test]
fn a_cache_without_constructor_has_no_constructed_objects() {
    let m = MachineBuilder::new().ram_mib(64).build().unwrap();
    let plain = m.typed_cache::<u64>("plain_u64", SlabFlags::NONE).unwrap();
    assert!(!plain.has_ctor());
    assert_eq!(plain.alloc_constructed(Gfp::KERNEL).unwrap_err(), SlabAllocError::NoConstructor);
    assert_eq!(*plain.alloc(Gfp::KERNEL, 3).unwrap(), 3);
}
