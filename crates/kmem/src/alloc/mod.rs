//! Owning handles, shaped like Rust-for-Linux's `kernel::alloc`: [`KBox`], [`VBox`],
//! [`KVBox`] and the vectors [`KVec`], [`VVec`], [`KVVec`], backed by kmalloc, vmalloc and
//! kvmalloc. They free on drop, so code that uses them needs no `unsafe`; the raw Linux
//! calls (`kmalloc`/`kfree`, `vmalloc`/`vfree`, …) stay for code ported from C.
//!
//! ```
//! use kmem::{Gfp, KBox, KVec, VBox};
//! let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
//! let b = KBox::new(&m, 42u64, Gfp::KERNEL).unwrap();
//! assert_eq!(*b, 42);
//! let mut v = KVec::new(&m);
//! for i in 0..100u32 {
//!     v.push(i, Gfp::KERNEL).unwrap();
//! }
//! assert_eq!(v.iter().sum::<u32>(), 4950);
//! let big = VBox::new(&m, [0u8; 1 << 16], Gfp::KERNEL).unwrap();
//! assert!(m.is_vmalloc_addr(big.as_ptr()));
//! ```
//!
//! # Differences from Rust-for-Linux
//!
//! - Every constructor takes the machine first: `KBox::new(&m, x, Gfp::KERNEL)` where
//!   Rust-for-Linux writes `KBox::new(x, GFP_KERNEL)` (a kernel has one allocator; kmem has
//!   one per machine). The handles borrow the machine (`'m`).
//! - Errors are the backend's: [`KmallocError`] for `KBox`/`KVBox`/`KVec`/`KVVec`,
//!   [`VmallocError`] for `VBox`/`VVec`, naming the request and its cause (Rust-for-Linux
//!   returns a bare `AllocError`).
//! - **Alignment.** kmalloc guarantees 8 bytes, and natural alignment for power-of-two
//!   sizes ([`crate::kmalloc`]). For a `T` aligned above 8 the request is padded to a power
//!   of two (at most doubling it) so the bucket's alignment covers it, as Rust-for-Linux's
//!   `Kmalloc` relies on the same guarantee. vmalloc memory is page-aligned. Alignments
//!   above a page are refused (`KmallocErrorKind::Align`, `VmallocErrorKind::BadAlign`), as
//!   Rust-for-Linux's `Vmalloc` refuses them. Every allocation is checked for alignment
//!   before use.
//! - Zero-sized types allocate nothing (a dangling, aligned pointer), as `Box` does.
//! - No `Box<[T]>`/`dyn` boxes: use the vectors for runs of values.

mod allocator;
mod kbox;
mod kvec;

pub use allocator::{Allocator, KVmalloc, Kmalloc, Vmalloc};
pub use kbox::Box;
pub use kvec::Vec;

#[cfg(doc)]
use crate::{KmallocError, VmallocError};

/// A `T` in kmalloc'ed memory (Rust-for-Linux's `KBox`).
///
/// ```
/// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let b = kmem::KBox::new(&m, (1u8, 2u32), kmem::Gfp::KERNEL).unwrap();
/// assert_eq!(b.1, 2); // dropped and kfree'd at the end of scope
/// ```
pub type KBox<'m, P, T> = Box<'m, P, T, Kmalloc>;
/// A `T` in vmalloc'ed memory (Rust-for-Linux's `VBox`): page-aligned, virtually
/// contiguous, for large values.
///
/// ```
/// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let b = kmem::VBox::new(&m, [7u64; 4096], kmem::Gfp::KERNEL).unwrap();
/// assert!(m.is_vmalloc_addr(b.as_ptr()));
/// ```
pub type VBox<'m, P, T> = Box<'m, P, T, Vmalloc>;
/// A `T` in kvmalloc'ed memory (Rust-for-Linux's `KVBox`): kmalloc, falling back to vmalloc
/// for large values.
///
/// ```
/// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let b = kmem::KVBox::new(&m, [0u8; 64], kmem::Gfp::KERNEL).unwrap();
/// assert!(!m.is_vmalloc_addr(b.as_ptr())); // small: kmalloc served it
/// ```
pub type KVBox<'m, P, T> = Box<'m, P, T, KVmalloc>;
/// A growable array in kmalloc'ed memory, grown with `krealloc` (Rust-for-Linux's `KVec`).
///
/// ```
/// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let mut v = kmem::KVec::new(&m);
/// v.push("one", kmem::Gfp::KERNEL).unwrap();
/// assert_eq!(v.as_slice(), ["one"]);
/// ```
pub type KVec<'m, P, T> = Vec<'m, P, T, Kmalloc>;
/// A growable array in vmalloc'ed memory, grown with `vrealloc` (Rust-for-Linux's `VVec`).
///
/// ```
/// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let mut v = kmem::VVec::with_capacity(&m, 1 << 16, kmem::Gfp::KERNEL).unwrap();
/// v.extend(0..1u32 << 16, kmem::Gfp::KERNEL).unwrap();
/// assert_eq!(v[65535], 65535);
/// ```
pub type VVec<'m, P, T> = Vec<'m, P, T, Vmalloc>;
/// A growable array in kvmalloc'ed memory (Rust-for-Linux's `KVVec`): kmalloc while small,
/// vmalloc once kmalloc cannot serve it; growth allocates anew and copies.
///
/// ```
/// # let m = kmem_hosted::MachineBuilder::new().ram_mib(64).build().unwrap();
/// let mut v = kmem::KVVec::new(&m);
/// v.extend_from_slice(&[1u8, 2, 3], kmem::Gfp::KERNEL).unwrap();
/// assert_eq!(v.pop(), Some(3));
/// ```
pub type KVVec<'m, P, T> = Vec<'m, P, T, KVmalloc>;
