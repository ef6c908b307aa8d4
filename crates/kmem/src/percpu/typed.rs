//! Typed, safe per-CPU data: [`PreemptGuard`] (a CPU you cannot leave while it lives) and
//! [`PerCpuBox`] (an owned `T` per CPU).

use core::fmt;
use core::marker::PhantomData;
use core::ops::Deref;

use super::{PercpuError, PercpuPtr};
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::{CpuId, IrqState, Platform};

/// Preemption disabled (`preempt_disable()`) until drop (`preempt_enable()`), on the CPU read
/// after disabling it; derefs to a value tied to that CPU (`get_cpu_var`, `get_cpu_ptr`).
///
/// A `&PreemptGuard` is the proof the `__this_cpu_*` operations ask for. Not `Send`:
/// preemption state belongs to the context that disabled it.
#[must_use = "preemption is enabled again when the guard is dropped"]
pub struct PreemptGuard<'a, P: Platform, T = ()> {
    platform: &'a P,
    cpu: CpuId,
    value: T,
    _not_send: PhantomData<*mut ()>,
}

impl<'a, P: Platform, T> PreemptGuard<'a, P, T> {
    /// Disables preemption, reads the CPU, and builds the value for it.
    pub(super) fn new(platform: &'a P, value: impl FnOnce(CpuId) -> T) -> Self {
        let cpu = platform.preempt_disable_cpu();
        Self { platform, cpu, value: value(cpu), _not_send: PhantomData }
    }

    /// The CPU this context stays on while the guard lives (`smp_processor_id()`).
    pub fn cpu(&self) -> CpuId {
        self.cpu
    }
}

impl<P: Platform, T> Deref for PreemptGuard<'_, P, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<P: Platform, T> Drop for PreemptGuard<'_, P, T> {
    fn drop(&mut self) {
        self.platform.preempt_enable();
    }
}

/// Interrupts disabled on this CPU (`local_irq_save`); restored on drop (`local_irq_restore`).
/// Not `Send`: the state belongs to the context that saved it.
#[must_use = "interrupts are restored when the guard drops"]
pub struct IrqGuard<'a, P: Platform> {
    platform: &'a P,
    saved: IrqState,
    _not_send: PhantomData<*mut ()>,
}

impl<'a, P: Platform> IrqGuard<'a, P> {
    pub(super) fn new(platform: &'a P) -> Self {
        Self { platform, saved: platform.local_irq_save(), _not_send: PhantomData }
    }
    /// True if interrupts were already disabled when the guard was taken.
    pub fn were_disabled(&self) -> bool {
        self.saved.0
    }
}

impl<P: Platform> Drop for IrqGuard<'_, P> {
    fn drop(&mut self) {
        self.platform.local_irq_restore(self.saved);
    }
}

impl<P: Platform> core::fmt::Debug for IrqGuard<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IrqGuard").field("were_disabled", &self.saved.0).finish()
    }
}

impl<P: Platform, T: fmt::Debug> fmt::Debug for PreemptGuard<'_, P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreemptGuard").field("cpu", &self.cpu).field("value", &self.value).finish()
    }
}

/// A `T` per CPU in a dynamic per-CPU allocation, owned: dropping the box drops every CPU's
/// `T` and frees the area (`alloc_percpu` + `free_percpu` with types).
///
/// ```
/// use core::sync::atomic::{AtomicU64, Ordering};
/// let m = kmem_hosted::MachineBuilder::new().ram_mib(64).cpus(4).build().unwrap();
/// let hits = m.alloc_percpu_with(|cpu| AtomicU64::new(cpu as u64)).unwrap();
/// hits.this_cpu().fetch_add(10, Ordering::Relaxed);
/// let total: u64 = hits.iter().map(|h| h.load(Ordering::Relaxed)).sum();
/// assert_eq!(total, 0 + 1 + 2 + 3 + 10);
/// ```
pub struct PerCpuBox<'m, P: Platform, T> {
    kmem: &'m Kmem<P>,
    ptr: PercpuPtr,
    _owns: PhantomData<T>,
}

impl<P: Platform> Kmem<P> {
    /// `alloc_percpu(T)` initialised per CPU with `init(cpu)`, as an owning handle.
    pub fn alloc_percpu_with<T: Sync>(&self, init: impl FnMut(usize) -> T) -> Result<PerCpuBox<'_, P, T>, PercpuError> {
        self.alloc_percpu_gfp_with(Gfp::KERNEL, init)
    }

    /// [`Kmem::alloc_percpu_with`] with GFP flags (`alloc_percpu_gfp`).
    pub fn alloc_percpu_gfp_with<T: Sync>(
        &self,
        gfp: Gfp,
        mut init: impl FnMut(usize) -> T,
    ) -> Result<PerCpuBox<'_, P, T>, PercpuError> {
        let size = core::mem::size_of::<T>().max(1);
        let ptr = self.__alloc_percpu_gfp(size, core::mem::align_of::<T>(), gfp)?;
        let mut bx = PerCpuBox { kmem: self, ptr, _owns: PhantomData::<T> };
        // If `init` panics, the guard drops the values written so far and frees the area.
        let mut guard = InitGuard { bx: &mut bx, written: 0 };
        for cpu in 0..self.nr_cpus() {
            let value = init(cpu);
            // SAFETY: the area is live, at least size_of::<T>() bytes and aligned for T on every
            // CPU, and ours alone; this slot holds no value yet.
            unsafe { guard.bx.slot(cpu).write(value) };
            guard.written += 1;
        }
        core::mem::forget(guard);
        Ok(bx)
    }
}

/// Undoes a partly initialised [`PerCpuBox`] when `init` panics.
struct InitGuard<'g, 'm, P: Platform, T> {
    bx: &'g mut PerCpuBox<'m, P, T>,
    written: usize,
}

impl<P: Platform, T> Drop for InitGuard<'_, '_, P, T> {
    fn drop(&mut self) {
        for cpu in 0..self.written {
            // SAFETY: the first `written` slots hold values that nobody else can reach.
            unsafe { self.bx.slot(cpu).drop_in_place() };
        }
        // SAFETY: the area is ours and unused from now on; the null pointer left behind makes
        // the box's own Drop a no-op.
        unsafe { self.bx.kmem.free_percpu(self.bx.ptr) };
        self.bx.ptr = PercpuPtr::NULL;
    }
}

impl<'m, P: Platform, T> PerCpuBox<'m, P, T> {
    /// CPU `cpu`'s slot.
    #[inline]
    fn slot(&self, cpu: usize) -> *mut T {
        assert!(cpu < self.kmem.nr_cpus(), "CPU {cpu} out of range (nr_cpus {})", self.kmem.nr_cpus());
        // SAFETY: the box owns a live allocation of this machine, and `cpu` was checked.
        unsafe { self.kmem.per_cpu_ptr_unchecked(self.ptr, cpu) as *mut T }
    }

    /// CPU `cpu`'s value (`per_cpu_ptr`). Panics if `cpu >= nr_cpus()`.
    #[inline]
    pub fn per_cpu(&self, cpu: usize) -> &T {
        // SAFETY: the slot holds an initialised T owned by the box; shared access only, and
        // T: Sync is required to build a box, so other threads may read it too.
        unsafe { &*self.slot(cpu) }
    }

    /// CPU `cpu`'s value, exclusively (the box is borrowed mutably).
    pub fn per_cpu_mut(&mut self, cpu: usize) -> &mut T {
        // SAFETY: as `per_cpu`, and `&mut self` excludes every other access to the values.
        unsafe { &mut *self.slot(cpu) }
    }

    /// The current CPU's value with preemption disabled (`get_cpu_ptr`/`put_cpu_ptr`).
    pub fn this_cpu(&self) -> PreemptGuard<'_, P, &T> {
        PreemptGuard::new(self.kmem.platform(), |cpu| self.per_cpu(cpu.index()))
    }

    /// Every CPU's value, CPU 0 first (`for_each_possible_cpu`).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &T> + '_ {
        (0..self.kmem.nr_cpus()).map(move |cpu| self.per_cpu(cpu))
    }

    /// The raw per-CPU pointer (still owned by the box).
    pub fn as_percpu_ptr(&self) -> PercpuPtr {
        self.ptr
    }

    /// Gives up ownership without dropping the values or freeing the area.
    pub fn into_raw(self) -> PercpuPtr {
        let p = self.ptr;
        core::mem::forget(self);
        p
    }

    /// Takes ownership of a raw allocation.
    ///
    /// # Safety
    ///
    /// `ptr` must be a live allocation of `kmem` of at least `size_of::<T>()` bytes aligned
    /// for `T`, holding an initialised `T` on every CPU, that nothing else owns.
    pub unsafe fn from_raw(kmem: &'m Kmem<P>, ptr: PercpuPtr) -> Self {
        Self { kmem, ptr, _owns: PhantomData }
    }
}

impl<P: Platform, T> Drop for PerCpuBox<'_, P, T> {
    fn drop(&mut self) {
        if self.ptr.is_null() {
            return;
        }
        for cpu in 0..self.kmem.nr_cpus() {
            // SAFETY: every slot holds a T owned by the box, dropped once here.
            unsafe { self.slot(cpu).drop_in_place() };
        }
        // SAFETY: the box owns the allocation; nothing uses it after this.
        unsafe { self.kmem.free_percpu(self.ptr) };
    }
}

impl<P: Platform, T: fmt::Debug> fmt::Debug for PerCpuBox<'_, P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
