//! The "`_locked`" functions take the guard of the lock they need and check it is that
//! lock (Linux's `lockdep_assert_held`): a guard of another lock fails in debug builds.

use crate::sync::RawSpinLock;
use crate::testing;

#[test]
#[should_panic(expected = "g.holds(&self.list_lock)")]
fn the_cache_registry_checks_the_slab_mutex() {
    let k = testing::machine(64);
    let other = RawSpinLock::new();
    let g = other.lock_irqsave(k.platform());
    k.slab().for_each_locked(&g, |_| {});
}

#[test]
fn the_cache_registry_works_under_the_slab_mutex() {
    let k = testing::machine(64);
    let st = k.slab();
    let g = st.list_lock.lock_irqsave(k.platform());
    let mut n = 0;
    st.for_each_locked(&g, |_| n += 1);
    drop(g);
    assert_eq!(n, k.nr_caches());
}

#[test]
#[should_panic(expected = "g.holds(&self.lock)")]
fn a_barn_checks_its_lock() {
    let k = testing::machine(64);
    let barn = super::sheaf::Barn::new();
    let other = RawSpinLock::new();
    let g = other.lock_irqsave(k.platform());
    barn.take_locked(&g, true);
}
