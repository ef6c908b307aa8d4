//! Property test of the vmap-area allocator against a model: a list of busy and lazily freed
//! ranges over a small vmalloc range.
//!
//! The model knows Linux's policy exactly: an area is `pages + 1` guard page; a request gets
//! the lowest page-aligned address where it overlaps no busy and no lazy range; when none
//! exists, every lazy range is purged (becomes free) and the search retried once; a free
//! that brings the lazy pages above `lazy_max_pages()` purges. Every address kmem returns
//! must be the model's, and every live area must still hold its own pattern.

use kmem::{Gfp, PAGE_SIZE};
use kmem_hosted::MachineBuilder;
use proptest::prelude::*;

const RANGE_PAGES: usize = 256;
const LAZY_MAX: usize = 40;

#[derive(Debug, Clone)]
enum Op {
    Alloc(usize),
    Free(usize),
    Purge,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1usize..=12).prop_map(Op::Alloc),
        4 => any::<usize>().prop_map(Op::Free),
        1 => Just(Op::Purge),
    ]
}

#[derive(Default)]
struct Model {
    busy: Vec<(usize, usize)>, // (start page, pages incl. guard)
    lazy: Vec<(usize, usize)>,
    lazy_nr: usize,
}

impl Model {
    fn lowest(&self, size: usize) -> Option<usize> {
        let mut taken: Vec<(usize, usize)> = self.busy.iter().chain(&self.lazy).copied().collect();
        taken.sort_unstable();
        let mut at = 0;
        for (s, n) in taken {
            if s >= at + size {
                return Some(at);
            }
            at = at.max(s + n);
        }
        (at + size <= RANGE_PAGES).then_some(at)
    }
    fn purge(&mut self) {
        self.lazy.clear();
        self.lazy_nr = 0;
    }
    fn alloc(&mut self, size: usize) -> Option<usize> {
        let at = self.lowest(size).or_else(|| {
            self.purge();
            self.lowest(size)
        })?;
        self.busy.push((at, size));
        Some(at)
    }
    fn free(&mut self, i: usize) {
        let a = self.busy.remove(i);
        self.lazy.push(a);
        self.lazy_nr += a.1;
        if self.lazy_nr > LAZY_MAX {
            self.purge();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn area_allocator_matches_model(ops in proptest::collection::vec(op(), 1..160)) {
        let m = MachineBuilder::new()
            .ram_mib(64)
            .cpus(1)
            .vmalloc_size((RANGE_PAGES * PAGE_SIZE) as u64)
            .vmap_lazy_max_pages(LAZY_MAX)
            .vmalloc_recycle(false)
            .build()
            .unwrap();
        let (base, _) = m.vmalloc_range().unwrap();
        // Set the layer up (its caches), then start from an empty range.
        // SAFETY: ours.
        unsafe { m.vfree(m.vmalloc(PAGE_SIZE).unwrap().as_ptr()) };
        m.vm_unmap_aliases();
        let base = base.as_usize();
        let mut model = Model::default();
        let mut live: Vec<(*mut u8, usize, u8)> = Vec::new();
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Alloc(pages) => {
                    let got = m.__vmalloc(pages * PAGE_SIZE, Gfp::KERNEL | Gfp::NOWARN).ok();
                    let want = model.alloc(pages + 1);
                    prop_assert_eq!(got.map(|p| (p.as_ptr() as usize - base) / PAGE_SIZE), want, "op {}", n);
                    if let Some(p) = got {
                        let tag = n as u8;
                        for i in 0..pages {
                            // SAFETY: page i of the fresh area.
                            unsafe { p.as_ptr().add(i * PAGE_SIZE).write(tag) };
                        }
                        live.push((p.as_ptr(), pages, tag));
                    }
                }
                Op::Free(i) if !live.is_empty() => {
                    let i = i % live.len();
                    let (p, _, _) = live.remove(i);
                    let mi = model.busy.iter().position(|&(s, _)| base + s * PAGE_SIZE == p as usize).unwrap();
                    model.free(mi);
                    // SAFETY: ours, no longer used.
                    unsafe { m.vfree(p) };
                }
                Op::Free(_) => {}
                Op::Purge => {
                    m.vm_unmap_aliases();
                    model.purge();
                }
            }
            for &(p, pages, tag) in &live {
                for i in 0..pages {
                    // SAFETY: page i of a live area.
                    prop_assert_eq!(unsafe { p.add(i * PAGE_SIZE).read() }, tag);
                }
            }
            prop_assert_eq!(m.vmalloc_verify(), Ok(()));
            let st = m.vmalloc_stats();
            prop_assert_eq!(st.busy_areas, model.busy.len());
            prop_assert_eq!(st.lazy_areas, model.lazy.len());
            prop_assert_eq!(st.lazy_pages, model.lazy_nr);
        }
        for (p, _, _) in live {
            // SAFETY: ours.
            unsafe { m.vfree(p) };
        }
        m.vm_unmap_aliases();
        let st = m.vmalloc_stats();
        prop_assert_eq!((st.busy_areas, st.lazy_areas, st.free_areas, st.largest_free), (0, 0, 1, RANGE_PAGES * PAGE_SIZE));
        prop_assert_eq!(m.report_count(kmem::ReportKind::Warning), 0);
    }
}
