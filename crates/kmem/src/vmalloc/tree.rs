//! An augmented AVL tree of [`VmapArea`](super::VmapArea)s keyed by start address: Linux's vmap-area rbtrees
//! (`free_vmap_area_root` with `subtree_max_size`, the busy tree, the purge tree), with the
//! same O(log n) bounds. Every node keeps the largest area size in its subtree, so the
//! lowest-address fit (`find_vmap_lowest_match`) descends one path.
//!
//! Callers hold the vmap lock for every operation. Recursion depth is the tree height,
//! at most 1.44 log2(n) (45 for the 2^31 areas a 47-bit space could hold).

use super::area::VaRef;
#[cfg(test)]
use super::area::VmapArea;
use crate::sync::{const_fn_unless_loom, AtomicUsize, Ordering};

/// One tree: its root link.
#[derive(Debug, Default)]
pub struct Tree {
    root: AtomicUsize,
    len: AtomicUsize,
}

type Link<'a> = Option<VaRef<'a>>;

fn height(n: Link<'_>) -> usize {
    n.map_or(0, VaRef::height)
}

fn max_size(n: Link<'_>) -> usize {
    n.map_or(0, VaRef::subtree_max)
}

/// Recomputes a node's height and augment from its children.
fn update(n: VaRef<'_>) {
    let (l, r) = (n.left(), n.right());
    n.set_height(1 + height(l).max(height(r)));
    n.set_subtree_max(n.size().max(max_size(l)).max(max_size(r)));
}

fn rotate_right(y: VaRef<'_>) -> VaRef<'_> {
    let x = y.left().expect("rotate_right needs a left child");
    y.set_left(x.right());
    x.set_right(Some(y));
    update(y);
    update(x);
    x
}

fn rotate_left(x: VaRef<'_>) -> VaRef<'_> {
    let y = x.right().expect("rotate_left needs a right child");
    x.set_right(y.left());
    y.set_left(Some(x));
    update(x);
    update(y);
    y
}

fn balance(n: VaRef<'_>) -> VaRef<'_> {
    update(n);
    let (hl, hr) = (height(n.left()), height(n.right()));
    if hl > hr + 1 {
        let l = n.left().expect("taller left side exists");
        if height(l.left()) < height(l.right()) {
            n.set_left(Some(rotate_left(l)));
        }
        return rotate_right(n);
    }
    if hr > hl + 1 {
        let r = n.right().expect("taller right side exists");
        if height(r.right()) < height(r.left()) {
            n.set_right(Some(rotate_right(r)));
        }
        return rotate_left(n);
    }
    n
}

fn insert<'a>(root: Link<'a>, x: VaRef<'a>) -> VaRef<'a> {
    let Some(n) = root else {
        x.set_left(None);
        x.set_right(None);
        update(x);
        return x;
    };
    if x.start() < n.start() {
        n.set_left(Some(insert(n.left(), x)));
    } else {
        n.set_right(Some(insert(n.right(), x)));
    }
    balance(n)
}

fn remove_min(n: VaRef<'_>) -> (Link<'_>, VaRef<'_>) {
    match n.left() {
        None => (n.right(), n),
        Some(l) => {
            let (l2, m) = remove_min(l);
            n.set_left(l2);
            (Some(balance(n)), m)
        }
    }
}

/// Removes the node whose start is `key`; returns the new subtree and whether it was found.
fn remove(root: Link<'_>, key: usize) -> (Link<'_>, bool) {
    let Some(n) = root else { return (None, false) };
    if key < n.start() {
        let (l, found) = remove(n.left(), key);
        n.set_left(l);
        return (Some(balance(n)), found);
    }
    if key > n.start() {
        let (r, found) = remove(n.right(), key);
        n.set_right(r);
        return (Some(balance(n)), found);
    }
    let out = match (n.left(), n.right()) {
        (None, r) => r,
        (l, None) => l,
        (Some(l), Some(r)) => {
            let (r2, m) = remove_min(r);
            m.set_left(Some(l));
            m.set_right(r2);
            Some(balance(m))
        }
    };
    (out, true)
}

/// Recomputes the augment on the path to `key` (after a node's range changed in place
/// without changing its order).
fn fix_path(n: Link<'_>, key: usize) {
    let Some(n) = n else { return };
    if key < n.start() {
        fix_path(n.left(), key);
    } else if key > n.start() {
        fix_path(n.right(), key);
    }
    update(n);
}

/// Whether `[start, end)` holds `size` bytes at an `align`-aligned address at or above
/// `vstart`, and where (`is_within_this_va`).
fn fit(start: usize, end: usize, size: usize, align: usize, vstart: usize) -> Option<usize> {
    let base = start.max(vstart).checked_next_multiple_of(align)?;
    (base.checked_add(size)? <= end).then_some(base)
}

fn lowest<'a>(n: Link<'a>, size: usize, align: usize, vstart: usize, length: usize) -> Option<(VaRef<'a>, usize)> {
    let n = n?;
    if max_size(n.left()) >= length && vstart < n.start() {
        if let Some(r) = lowest(n.left(), size, align, vstart, length) {
            return Some(r);
        }
    }
    if let Some(at) = fit(n.start(), n.end(), size, align, vstart) {
        return Some((n, at));
    }
    if max_size(n.right()) >= length {
        return lowest(n.right(), size, align, vstart, length);
    }
    None
}

impl Tree {
    const_fn_unless_loom! {
        /// An empty tree.
        pub fn new() -> Self {
            Self { root: AtomicUsize::new(0), len: AtomicUsize::new(0) }
        }
    }

    fn root<'a>(&self) -> Link<'a> {
        let p = self.root.load(Ordering::Relaxed);
        // SAFETY: the root link holds 0 or a live linked area (set only by `set_root` from a
        // `VaRef`; see area.rs for the invariant).
        (p != 0).then(|| unsafe { VaRef::from_addr(p) })
    }

    fn set_root(&self, n: Link<'_>) {
        self.root.store(n.map_or(0, VaRef::addr), Ordering::Relaxed);
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Inserts `x` (its range set; no node with the same start may be present).
    pub(crate) fn insert(&self, x: VaRef<'_>) {
        self.set_root(Some(insert(self.root(), x)));
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    /// Unlinks the node starting at `start`; false if there is none.
    pub(crate) fn remove(&self, start: usize) -> bool {
        let (r, found) = remove(self.root(), start);
        self.set_root(r);
        if found {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        found
    }

    /// Changes the range of linked node `n` in place; the new range must keep the node's
    /// order among its neighbours.
    pub(crate) fn resize(&self, n: VaRef<'_>, start: usize, end: usize) {
        n.set_range(start, end);
        // The order is unchanged, so the search path for the new start still ends at `n`.
        fix_path(self.root(), start);
    }

    /// The node containing `addr` (`start <= addr < end`).
    pub(crate) fn find<'a>(&self, addr: usize) -> Option<VaRef<'a>> {
        let mut n = self.root();
        while let Some(v) = n {
            if addr < v.start() {
                n = v.left();
            } else if addr >= v.end() {
                n = v.right();
            } else {
                return Some(v);
            }
        }
        None
    }

    /// The node with the greatest start below `addr`.
    pub(crate) fn prev<'a>(&self, addr: usize) -> Option<VaRef<'a>> {
        let (mut n, mut best) = (self.root(), None);
        while let Some(v) = n {
            if v.start() < addr {
                best = Some(v);
                n = v.right();
            } else {
                n = v.left();
            }
        }
        best
    }

    /// The node with the least start at or above `addr`.
    pub(crate) fn next<'a>(&self, addr: usize) -> Option<VaRef<'a>> {
        let (mut n, mut best) = (self.root(), None);
        while let Some(v) = n {
            if v.start() >= addr {
                best = Some(v);
                n = v.left();
            } else {
                n = v.right();
            }
        }
        best
    }

    /// The lowest-address node with room for `size` bytes aligned to `align` at or above
    /// `vstart`, and the address inside it (`find_vmap_lowest_match`). `length` is the size
    /// the augment is compared with: `size`, or `size + align - 1` when a large alignment
    /// must be guaranteed to fit.
    pub(crate) fn lowest_match<'a>(
        &self,
        size: usize,
        align: usize,
        vstart: usize,
        length: usize,
    ) -> Option<(VaRef<'a>, usize)> {
        lowest(self.root(), size, align, vstart, length)
    }

    /// Largest node size (the root's augment).
    pub(crate) fn max_size(&self) -> usize {
        max_size(self.root())
    }

    /// Detaches every node and returns them as a list in address order, linked through
    /// their right links (left links cleared).
    pub(crate) fn take_sorted<'a>(&self) -> Option<VaRef<'a>> {
        fn flatten<'a>(n: Link<'a>, tail: Link<'a>) -> Link<'a> {
            let Some(n) = n else { return tail };
            let r = flatten(n.right(), tail);
            n.set_right(r);
            let l = n.left();
            n.set_left(None);
            flatten(l, Some(n))
        }
        let head = flatten(self.root(), None);
        self.set_root(None);
        self.len.store(0, Ordering::Relaxed);
        head
    }

    /// Checks key order (no overlaps), AVL balance, heights, augments and the length;
    /// returns the number of nodes, or the start of the first bad node.
    pub(crate) fn check(&self) -> Result<usize, usize> {
        fn chk(n: Link<'_>, lo: usize, hi: usize) -> Result<(usize, usize, usize), usize> {
            let Some(n) = n else { return Ok((0, 0, 0)) };
            if n.start() < lo || n.end() > hi || n.start() >= n.end() {
                return Err(n.start());
            }
            let (hl, ml, cl) = chk(n.left(), lo, n.start())?;
            let (hr, mr, cr) = chk(n.right(), n.end(), hi)?;
            let m = n.size().max(ml).max(mr);
            if hl.abs_diff(hr) > 1 || n.height() != 1 + hl.max(hr) || n.subtree_max() != m {
                return Err(n.start());
            }
            Ok((1 + hl.max(hr), m, cl + cr + 1))
        }
        let (_, _, c) = chk(self.root(), 0, usize::MAX)?;
        if c != self.len() {
            return Err(0);
        }
        Ok(c)
    }
}

/// A node for tests: `VmapArea`s live in a caller-owned slice.
#[cfg(test)]
pub(crate) fn node(va: &VmapArea, start: usize, end: usize) -> VaRef<'_> {
    let r = VaRef::new(va);
    r.reset(start, end);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::std;

    #[test]
    fn insert_remove_keeps_invariants() {
        let nodes: std::vec::Vec<VmapArea> = (0..500).map(|_| VmapArea::default()).collect();
        let t = Tree::new();
        // Insert in a scrambled order.
        for i in 0..500usize {
            let k = (i * 193) % 500;
            t.insert(node(&nodes[k], k * 100, k * 100 + 10 + k % 7));
            if i % 50 == 0 {
                t.check().unwrap();
            }
        }
        assert_eq!(t.check(), Ok(500));
        assert_eq!(t.max_size(), 16);
        assert_eq!(t.find(4305).map(|v| v.start()), Some(4300));
        assert!(t.find(4399).is_none());
        assert_eq!(t.prev(4300).map(|v| v.start()), Some(4200));
        assert_eq!(t.next(4301).map(|v| v.start()), Some(4400));
        for k in (0..500).step_by(3) {
            assert!(t.remove(k * 100));
            assert!(!t.remove(k * 100));
        }
        t.check().unwrap();
        let mut seen = std::vec::Vec::new();
        let mut at = 0;
        while let Some(v) = t.next(at) {
            seen.push(v.start());
            at = v.start() + 1;
        }
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(seen.len(), 500 - 167);
    }

    #[test]
    fn lowest_match_is_lowest_fit() {
        let nodes: std::vec::Vec<VmapArea> = (0..64).map(|_| VmapArea::default()).collect();
        let t = Tree::new();
        // Holes of size 1..=64 (in units of 0x1000) at increasing addresses, sizes scrambled.
        for (i, n) in nodes.iter().enumerate() {
            let sz = ((i * 37) % 64 + 1) * 0x1000;
            t.insert(node(n, i * 0x100000, i * 0x100000 + sz));
        }
        t.check().unwrap();
        for want in 1..=64usize {
            let size = want * 0x1000;
            let (v, at) = t.lowest_match(size, 0x1000, 0, size).expect("a hole fits");
            let expect = (0..64).find(|&i| ((i * 37) % 64 + 1) >= want).unwrap();
            assert_eq!(v.start(), expect * 0x100000);
            assert_eq!(at, v.start());
        }
        assert!(t.lowest_match(65 * 0x1000, 0x1000, 0, 65 * 0x1000).is_none());
        // Alignment: 64 KiB-aligned 4 KiB inside the first hole that holds it.
        let (v, at) = t.lowest_match(0x1000, 0x10000, 0, 0x1000 + 0xffff).unwrap();
        assert_eq!(at % 0x10000, 0);
        assert!(at >= v.start() && at + 0x1000 <= v.end());
    }

    #[test]
    fn resize_and_take_sorted() {
        let nodes: std::vec::Vec<VmapArea> = (0..100).map(|_| VmapArea::default()).collect();
        let t = Tree::new();
        for (i, n) in nodes.iter().enumerate() {
            t.insert(node(n, i * 1000, i * 1000 + 100));
        }
        let v = t.find(50_050).unwrap();
        t.resize(v, 50_000, 50_900);
        assert_eq!(t.check(), Ok(100));
        assert_eq!(t.max_size(), 900);
        let v = t.find(20_000).unwrap();
        t.resize(v, 20_050, 20_100);
        t.check().unwrap();
        let mut head = t.take_sorted();
        let mut last = 0;
        let mut n = 0;
        while let Some(v) = head {
            assert!(v.start() >= last);
            last = v.start();
            n += 1;
            head = v.right();
        }
        assert_eq!(n, 100);
        assert_eq!(t.len(), 0);
    }
}
