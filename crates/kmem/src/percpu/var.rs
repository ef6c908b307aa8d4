//! Per-CPU integer variables: [`Kmem::define_per_cpu`] (`DEFINE_PER_CPU`) and the
//! `this_cpu_*` operations.
//!
//! Storage is the integer's atomic type. The owning CPU updates its copy with a relaxed load
//! and a relaxed store while it cannot be preempted, so remote readers ([`Kmem::per_cpu`],
//! [`Kmem::per_cpu_sum`]) never race with a non-atomic write, and no locked instruction is
//! needed.
//!
//! **Integer semantics are C's.** The operand of `write`, `add`, `sub` and `cmpxchg` has its
//! own integer type; it is converted to the variable's type as C converts it: sign-extended if
//! the operand is signed, zero-extended if unsigned, then wrapped to the variable's width. So
//! for a `u64` variable `this_cpu_add(v, -1i32)` subtracts 1, while
//! `this_cpu_add(v, 1u32.wrapping_neg())` adds `0xffff_ffff`. `this_cpu_sub(v, x)` is
//! `this_cpu_add(v, -(typeof(v))x)`. `cmpxchg` compares with `old` converted the same way (as
//! x86's `this_cpu_cmpxchg` does; the generic C fallback compares after integer promotion,
//! which differs only when `old` does not fit the variable's type).

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::Ordering;

use super::chunk::Chunk;
use super::{IrqGuard, PercpuError, PreemptGuard};
use crate::gfp::Gfp;
use crate::machine::Kmem;
use crate::platform::Platform;

mod sealed {
    pub trait Sealed {}
}

/// An integer type a [`PerCpuVar`] can hold and a `this_cpu_*` operand can have:
/// `u8`..`u64`, `i8`..`i64`, `usize`, `isize`.
pub trait PcpuInt: sealed::Sealed + Copy + Eq + fmt::Debug + Send + Sync + 'static {
    /// The atomic type of the same size that stores a variable of this type.
    type Atomic: Send + Sync;
    /// The value as C converts it to a wider integer: sign-extended if this type is signed,
    /// zero-extended if unsigned.
    fn widen(self) -> u128;
    /// The low bits of `bits` as this type (C's conversion to a narrower type).
    fn wrap(bits: u128) -> Self;
    /// Relaxed load.
    fn load(a: &Self::Atomic) -> Self;
    /// Relaxed store.
    fn store(a: &Self::Atomic, v: Self);
}

macro_rules! pcpu_int {
    ($($(#[$cfg:meta])* $t:ty => $atomic:ident, $wide:ty;)*) => {$(
        $(#[$cfg])*
        impl sealed::Sealed for $t {}
        $(#[$cfg])*
        impl PcpuInt for $t {
            type Atomic = core::sync::atomic::$atomic;
            #[inline]
            fn widen(self) -> u128 {
                self as $wide as u128
            }
            #[inline]
            fn wrap(bits: u128) -> Self {
                bits as $t
            }
            #[inline]
            fn load(a: &Self::Atomic) -> Self {
                a.load(Ordering::Relaxed)
            }
            #[inline]
            fn store(a: &Self::Atomic, v: Self) {
                a.store(v, Ordering::Relaxed)
            }
        }
    )*};
}

pcpu_int! {
    u8 => AtomicU8, u128;
    i8 => AtomicI8, i128;
    u16 => AtomicU16, u128;
    i16 => AtomicI16, i128;
    u32 => AtomicU32, u128;
    i32 => AtomicI32, i128;
    #[cfg(target_has_atomic = "64")] u64 => AtomicU64, u128;
    #[cfg(target_has_atomic = "64")] i64 => AtomicI64, i128;
    usize => AtomicUsize, u128;
    isize => AtomicIsize, i128;
}

/// One CPU's copy of a [`PerCpuVar`], as [`Kmem::get_cpu_var`] hands it out.
#[repr(transparent)]
pub struct PcpuSlot<T: PcpuInt>(T::Atomic);

impl<T: PcpuInt> PcpuSlot<T> {
    /// The value (relaxed load).
    #[inline]
    pub fn get(&self) -> T {
        T::load(&self.0)
    }
    /// Sets the value (relaxed store). Only the owning CPU, with preemption disabled, should
    /// write its copy; anything else may lose updates (but never tears a value).
    #[inline]
    pub fn set(&self, v: T) {
        T::store(&self.0, v)
    }
    #[inline]
    fn write(&self, v: impl PcpuInt) {
        self.set(T::wrap(v.widen()))
    }
    #[inline]
    fn add(&self, v: u128) -> T {
        let new = T::wrap(self.get().widen().wrapping_add(v));
        self.set(new);
        new
    }
    #[inline]
    fn cmpxchg(&self, old: impl PcpuInt, new: impl PcpuInt) -> T {
        let cur = self.get();
        if cur == T::wrap(old.widen()) {
            self.write(new);
        }
        cur
    }
}

impl<T: PcpuInt> fmt::Debug for PcpuSlot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PcpuSlot").field(&self.get()).finish()
    }
}

/// Borrows the machine for `'m`; holds no `T` (the handle is `Send`/`Sync` like a `usize`).
type VarMarker<'m, T> = (&'m (), fn() -> T);

/// A per-CPU integer defined once per machine and never freed: kmem's `DEFINE_PER_CPU`.
/// A copyable handle, valid for as long as the machine it came from is borrowed; using it with
/// another machine panics.
pub struct PerCpuVar<'m, T: PcpuInt> {
    chunk: usize,
    off: u32,
    machine: usize,
    _m: PhantomData<VarMarker<'m, T>>,
}

impl<T: PcpuInt> Clone for PerCpuVar<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: PcpuInt> Copy for PerCpuVar<'_, T> {}

impl<T: PcpuInt> PerCpuVar<'_, T> {
    /// Byte offset of the variable inside each unit (below `PERCPU_RESERVED_SIZE` when it
    /// lives in the reserved region).
    pub fn offset(&self) -> usize {
        self.off as usize
    }
}

impl<T: PcpuInt> fmt::Debug for PerCpuVar<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PerCpuVar<{}>(chunk {:#x} + {:#x})", core::any::type_name::<T>(), self.chunk, self.off)
    }
}

/// Defines `this_cpu_$op` (preemption and IRQs disabled around it) and `__this_cpu_$op` (the
/// caller proves preemption is disabled) for one operation.
macro_rules! this_cpu_ops {
    ($($(#[$doc:meta])* $name:ident, $raw:ident ($($arg:ident : $aty:ident),*) -> $ret:ty = |$slot:ident| $body:expr;)*) => {$(
        $(#[$doc])*
        #[inline]
        pub fn $name<T: PcpuInt, $($aty: PcpuInt),*>(&self, var: PerCpuVar<'_, T>, $($arg: $aty),*) -> $ret {
            self.this_cpu_op(var, |$slot| $body)
        }
        /// As the operation without `__`, for a caller that has preemption disabled (the
        /// guard is the proof) and no IRQ handler touching the variable.
        #[inline]
        pub fn $raw<T: PcpuInt, G, $($aty: PcpuInt),*>(&self, guard: &PreemptGuard<'_, P, G>, var: PerCpuVar<'_, T>, $($arg: $aty),*) -> $ret {
            let $slot = self.pcpu_slot(self.var_chunk(var), var, guard.cpu().index());
            $body
        }
    )*};
}

impl<P: Platform> Kmem<P> {
    /// `DEFINE_PER_CPU(T, name) = init`: a per-CPU integer with `init` on every CPU, from the
    /// first chunk's reserved region, or from the dynamic area when that is full.
    pub fn define_per_cpu<T: PcpuInt>(&self, init: T) -> Result<PerCpuVar<'_, T>, PercpuError> {
        let (size, align) = (core::mem::size_of::<T::Atomic>(), core::mem::align_of::<T::Atomic>());
        let ptr = match self.pcpu_alloc(size, align, true, Gfp::KERNEL | Gfp::NOWARN) {
            Ok(p) => p,
            Err(_) => self.pcpu_alloc(size, align, false, Gfp::KERNEL)?,
        };
        let var = PerCpuVar { chunk: ptr.chunk, off: ptr.off, machine: self.machine_addr(), _m: PhantomData };
        let chunk = self.var_chunk(var);
        for cpu in 0..self.nr_cpus() {
            self.pcpu_slot(chunk, var, cpu).set(init);
        }
        Ok(var)
    }

    fn machine_addr(&self) -> usize {
        self.state() as *const _ as usize
    }

    /// The chunk of `var`, after checking that `var` belongs to this machine.
    #[inline]
    fn var_chunk<T: PcpuInt>(&self, var: PerCpuVar<'_, T>) -> &Chunk {
        assert_eq!(var.machine, self.machine_addr(), "per-CPU variable used on another machine");
        // SAFETY: `var` was made by this machine (checked), whose per-CPU variables are never
        // freed, so their chunk lives as long as the machine, which `&self` keeps alive.
        unsafe { &*(var.chunk as *const Chunk) }
    }

    #[inline]
    fn pcpu_slot<'a, T: PcpuInt>(&'a self, chunk: &'a Chunk, var: PerCpuVar<'_, T>, cpu: usize) -> &'a PcpuSlot<T> {
        assert!(cpu < self.nr_cpus(), "CPU {cpu} out of range (nr_cpus {})", self.nr_cpus());
        let addr = chunk.unit(cpu) + var.off as usize;
        // SAFETY: `[addr, addr + size_of::<T::Atomic>())` is this CPU's copy of a live, never
        // freed allocation made with the atomic's size and alignment, in RAM mapped for the
        // machine's life; it is only ever accessed through this atomic type, and
        // `PcpuSlot` is `repr(transparent)` over it.
        unsafe { &*(addr as *const PcpuSlot<T>) }
    }

    #[inline]
    fn this_cpu_op<T: PcpuInt, R>(&self, var: PerCpuVar<'_, T>, op: impl FnOnce(&PcpuSlot<T>) -> R) -> R {
        let chunk = self.var_chunk(var);
        let p = self.platform();
        p.preempt_disable();
        let irq = p.local_irq_save();
        let r = op(self.pcpu_slot(chunk, var, p.current_cpu().index()));
        p.local_irq_restore(irq);
        p.preempt_enable();
        r
    }

    /// `get_cpu()`: disables preemption and names the CPU; `put_cpu()` is the drop.
    pub fn get_cpu(&self) -> PreemptGuard<'_, P> {
        PreemptGuard::new(self.platform(), |_| ())
    }

    /// `preempt_disable()` as a guard: `preempt_enable()` when it drops. Same as
    /// [`Kmem::get_cpu`]; the guard says which CPU the caller is pinned to.
    ///
    /// ```
    /// let m = kmem_hosted::MachineBuilder::new().ram_mib(16).cpus(2).build().unwrap();
    /// let g = m.preempt_disable();
    /// assert!(kmem::Platform::in_atomic(m.platform()));
    /// assert!(g.cpu().index() < 2);
    /// drop(g);
    /// assert!(!kmem::Platform::in_atomic(m.platform()));
    /// ```
    pub fn preempt_disable(&self) -> PreemptGuard<'_, P> {
        self.get_cpu()
    }

    /// `local_irq_save()` as a guard: `local_irq_restore()` when it drops.
    pub fn local_irq_save(&self) -> IrqGuard<'_, P> {
        IrqGuard::new(self.platform())
    }

    /// `get_cpu_var(var)`: this CPU's copy with preemption disabled; `put_cpu_var` is the drop.
    pub fn get_cpu_var<'a, T: PcpuInt>(&'a self, var: PerCpuVar<'a, T>) -> PreemptGuard<'a, P, &'a PcpuSlot<T>> {
        let chunk = self.var_chunk(var);
        PreemptGuard::new(self.platform(), |cpu| self.pcpu_slot(chunk, var, cpu.index()))
    }

    /// `per_cpu(var, cpu)`: CPU `cpu`'s value, read from any CPU. Panics if `cpu >= nr_cpus()`.
    pub fn per_cpu<T: PcpuInt>(&self, var: PerCpuVar<'_, T>, cpu: usize) -> T {
        self.pcpu_slot(self.var_chunk(var), var, cpu).get()
    }

    /// The sum of every CPU's value, wrapping in `T` as the C loop
    /// `for_each_possible_cpu(cpu) sum += per_cpu(var, cpu)` does (so a count incremented on one
    /// CPU and decremented on another sums right even in an unsigned type).
    pub fn per_cpu_sum<T: PcpuInt>(&self, var: PerCpuVar<'_, T>) -> T {
        let chunk = self.var_chunk(var);
        let sum =
            (0..self.nr_cpus()).fold(0u128, |s, cpu| s.wrapping_add(self.pcpu_slot(chunk, var, cpu).get().widen()));
        T::wrap(sum)
    }

    this_cpu_ops! {
        /// `this_cpu_read(var)`.
        this_cpu_read, __this_cpu_read() -> T = |s| s.get();
        /// `this_cpu_write(var, v)`: `v` converted to `T` as C converts it.
        this_cpu_write, __this_cpu_write(v: V) -> () = |s| s.write(v);
        /// `this_cpu_add(var, v)`: `v` converted to `T` as C converts it, wrapping.
        this_cpu_add, __this_cpu_add(v: V) -> () = |s| { s.add(v.widen()); };
        /// `this_cpu_sub(var, v)`: `this_cpu_add(var, -(T)v)`.
        this_cpu_sub, __this_cpu_sub(v: V) -> () = |s| { s.add(v.widen().wrapping_neg()); };
        /// `this_cpu_inc(var)`.
        this_cpu_inc, __this_cpu_inc() -> () = |s| { s.add(1); };
        /// `this_cpu_dec(var)`.
        this_cpu_dec, __this_cpu_dec() -> () = |s| { s.add(u128::MAX); };
        /// `this_cpu_add_return(var, v)`: the new value.
        this_cpu_add_return, __this_cpu_add_return(v: V) -> T = |s| s.add(v.widen());
        /// `this_cpu_sub_return(var, v)`: the new value.
        this_cpu_sub_return, __this_cpu_sub_return(v: V) -> T = |s| s.add(v.widen().wrapping_neg());
        /// `this_cpu_cmpxchg(var, old, new)`: stores `new` if the value equals `old` (both
        /// converted to `T`); returns the value found.
        this_cpu_cmpxchg, __this_cpu_cmpxchg(old: O, new: N) -> T = |s| s.cmpxchg(old, new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::percpu::PERCPU_RESERVED_SIZE;
    use crate::testing::machine;

    #[test]
    fn operands_convert_as_c_converts_them() {
        assert_eq!((-1i32).widen(), u128::MAX, "signed: sign-extended");
        assert_eq!(u32::MAX.widen(), 0xffff_ffff, "unsigned: zero-extended");
        assert_eq!(u64::wrap((-1i32).widen()), u64::MAX);
        assert_eq!(u64::wrap(1u32.wrapping_neg().widen()), 0xffff_ffff);
        assert_eq!(i64::wrap(1u32.wrapping_neg().widen()), 0xffff_ffff);
        assert_eq!(u8::wrap(300i32.widen()), 44);
        assert_eq!(i8::wrap(200u8.widen()), -56);
        assert_eq!(i16::wrap((-2i64).widen()), -2);
        assert_eq!(usize::wrap((-1isize).widen()), usize::MAX);
    }

    /// `lib/percpu_test.c`'s `percpu_test_verify`, step by step: a native `long`/`unsigned
    /// long` takes each step in C's arithmetic (written out with explicit casts), the per-CPU
    /// variable takes it through the `__this_cpu_*`/`this_cpu_*` operations, and both must
    /// equal the expected value.
    #[test]
    fn this_cpu_arithmetic_follows_percpu_test() {
        let m = machine(64);
        let long = m.define_per_cpu(0i64).unwrap();
        let ulong = m.define_per_cpu(0u64).unwrap();
        let ui_one = 1u32;
        let g = m.get_cpu();
        let mut l = 0i64;
        let mut ul: u64;
        macro_rules! check {
            ($native:expr, $var:expr, $expected:expr) => {{
                assert_eq!($native, $expected, "native");
                assert_eq!(m.__this_cpu_read(&g, $var), $expected, "per-CPU");
            }};
        }
        l += -1;
        m.__this_cpu_add(&g, long, -1i32);
        check!(l, long, -1);
        l += 1;
        m.__this_cpu_add(&g, long, 1i32);
        check!(l, long, 0);

        ul = 0;
        m.__this_cpu_write(&g, ulong, 0i32);
        ul = ul.wrapping_add(1);
        m.__this_cpu_add(&g, ulong, 1u64);
        check!(ul, ulong, 1);
        ul = ul.wrapping_add(1u64.wrapping_neg()); // ul += -1UL
        m.__this_cpu_add(&g, ulong, 1u64.wrapping_neg());
        check!(ul, ulong, 0);
        ul = ul.wrapping_add(1u64.wrapping_neg()); // ul += -(unsigned long)1
        m.__this_cpu_add(&g, ulong, 1u64.wrapping_neg());
        check!(ul, ulong, u64::MAX);

        ul = 0;
        m.__this_cpu_write(&g, ulong, 0i32);
        ul = ul.wrapping_sub(1);
        m.__this_cpu_dec(&g, ulong);
        check!(ul, ulong, u64::MAX); // -1 and ULONG_MAX

        l += ui_one.wrapping_neg() as i64; // l += -ui_one: the unsigned int is zero-extended
        m.__this_cpu_add(&g, long, ui_one.wrapping_neg());
        check!(l, long, 0xffff_ffff);
        l += ui_one as i64;
        m.__this_cpu_add(&g, long, ui_one);
        check!(l, long, 0x1_0000_0000);

        l = 0;
        m.__this_cpu_write(&g, long, 0i32);
        l -= ui_one as i64;
        m.__this_cpu_sub(&g, long, ui_one);
        check!(l, long, -1);

        l = 0;
        m.__this_cpu_write(&g, long, 0i32);
        l += ui_one as i64;
        m.__this_cpu_add(&g, long, ui_one);
        check!(l, long, 1);
        l += ui_one.wrapping_neg() as i64;
        m.__this_cpu_add(&g, long, ui_one.wrapping_neg());
        check!(l, long, 0x1_0000_0000);

        l = 0;
        m.__this_cpu_write(&g, long, 0i32);
        l -= ui_one as i64;
        m.this_cpu_sub(long, ui_one);
        check!(l, long, -1);
        assert_eq!(m.__this_cpu_read(&g, long) as u64, u64::MAX, "and ULONG_MAX");

        ul = 0;
        m.__this_cpu_write(&g, ulong, 0i32);
        ul += ui_one as u64;
        m.__this_cpu_add(&g, ulong, ui_one);
        check!(ul, ulong, 1);

        ul = 0;
        m.__this_cpu_write(&g, ulong, 0i32);
        ul = ul.wrapping_sub(ui_one as u64);
        m.__this_cpu_sub(&g, ulong, ui_one);
        check!(ul, ulong, u64::MAX);

        m.__this_cpu_write(&g, ulong, 3i32);
        ul = m.this_cpu_sub_return(ulong, ui_one);
        check!(ul, ulong, 2);
        ul = m.__this_cpu_sub_return(&g, ulong, ui_one);
        check!(ul, ulong, 1);
    }

    #[test]
    fn mixed_signedness_add_sub_write_cmpxchg() {
        let m = machine(64);
        let v = m.define_per_cpu(100u64).unwrap();
        m.this_cpu_add(v, -1i32);
        assert_eq!(m.this_cpu_read(v), 99, "a signed operand is sign-extended: -1 subtracts 1");
        m.this_cpu_add(v, 1u32.wrapping_neg());
        assert_eq!(m.this_cpu_read(v), 99 + 0xffff_ffff, "an unsigned operand is zero-extended");
        m.this_cpu_sub(v, 1u32);
        assert_eq!(m.this_cpu_read(v), 98 + 0xffff_ffff);
        m.this_cpu_sub(v, -2i8);
        assert_eq!(m.this_cpu_read(v), 100 + 0xffff_ffff);

        // Narrow variables wrap at their width.
        let b = m.define_per_cpu(250u8).unwrap();
        assert_eq!(m.this_cpu_add_return(b, 10u64), 4);
        assert_eq!(m.this_cpu_add_return(b, 300i32), 48);
        assert_eq!(m.this_cpu_sub_return(b, 49u8), 255);
        m.this_cpu_inc(b);
        assert_eq!(m.this_cpu_read(b), 0);
        m.this_cpu_dec(b);
        assert_eq!(m.this_cpu_read(b), 255);
        let s = m.define_per_cpu(i8::MIN).unwrap();
        m.this_cpu_dec(s);
        assert_eq!(m.this_cpu_read(s), i8::MAX);
        m.this_cpu_write(s, 0x1ffi32);
        assert_eq!(m.this_cpu_read(s), -1, "write truncates to the variable's width");
        let h = m.define_per_cpu(0u16).unwrap();
        m.this_cpu_write(h, 0x1_2345u32);
        assert_eq!(m.this_cpu_read(h), 0x2345);

        // cmpxchg: `old` converted to the variable's type, returns what it found.
        m.this_cpu_write(b, 0xffu8);
        assert_eq!(m.this_cpu_cmpxchg(b, -1i32, 7u8), 0xff, "-1 as u8 is 0xff: matches");
        assert_eq!(m.this_cpu_read(b), 7);
        assert_eq!(m.this_cpu_cmpxchg(b, 8u8, 9u8), 7, "no match: unchanged");
        assert_eq!(m.this_cpu_read(b), 7);
        let l = m.define_per_cpu(-1i64).unwrap();
        assert_eq!(m.this_cpu_cmpxchg(l, u32::MAX, 5i32), -1, "u32::MAX zero-extends: no match");
        assert_eq!(m.this_cpu_read(l), -1);
        assert_eq!(m.this_cpu_cmpxchg(l, -1i8, 5i32), -1);
        assert_eq!(m.this_cpu_read(l), 5);
    }

    #[test]
    fn per_cpu_reads_sums_and_guards() {
        let m = machine(64);
        let v = m.define_per_cpu(5u32).unwrap();
        assert_eq!(m.per_cpu(v, 0), 5, "the initial value");
        {
            let slot = m.get_cpu_var(v);
            assert_eq!(slot.cpu().index(), 0);
            slot.set(slot.get() * 3);
        }
        assert_eq!(m.per_cpu(v, 0), 15);
        assert_eq!(m.per_cpu_sum(v), 15);
        // A wrapping sum, as the C loop over an unsigned counter.
        let c = m.define_per_cpu(0u32).unwrap();
        m.this_cpu_dec(c);
        assert_eq!(m.per_cpu_sum(c), u32::MAX);
        m.this_cpu_add(c, 2u8);
        assert_eq!(m.per_cpu_sum(c), 1);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn per_cpu_of_a_cpu_that_does_not_exist_panics() {
        let m = machine(64);
        let v = m.define_per_cpu(0u8).unwrap();
        m.per_cpu(v, 1);
    }

    #[test]
    fn variables_fill_the_reserved_region_then_the_dynamic_area() {
        let m = machine(64);
        // The slab allocator's boot cache already holds its per-CPU part.
        let base = m.pcpu_stats().dyn_used_bytes;
        let n = PERCPU_RESERVED_SIZE / 8;
        for i in 0..n {
            let v = m.define_per_cpu(i as u64).unwrap();
            assert!(v.offset() < PERCPU_RESERVED_SIZE, "variable {i} at {:#x}", v.offset());
        }
        let st = m.pcpu_stats();
        assert_eq!((st.reserved_used_bytes, st.dyn_used_bytes), (PERCPU_RESERVED_SIZE, base));
        let spill = m.define_per_cpu(7u64).unwrap();
        assert!(spill.offset() >= PERCPU_RESERVED_SIZE, "the reserved region is full: dynamic area");
        assert_eq!(m.pcpu_stats().dyn_used_bytes, base + 8);
        assert_eq!(m.per_cpu(spill, 0), 7);
        assert_eq!(m.platform().log.lock().unwrap().len(), 0, "the full reserved region is not reported");
    }
}
