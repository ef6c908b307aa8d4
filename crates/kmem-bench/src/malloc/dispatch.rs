//! [`Dispatch`], a global allocator for the bench binaries that sends the calling thread's
//! allocations to a chosen peer while [`with_global`]'s closure runs (std's `BTreeMap` has
//! no stable `new_in`, so it cannot be given an allocator otherwise).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::Peer;

thread_local! {
    /// The peer [`Dispatch`] sends this thread's allocations to: `Peer::index() + 1`, or 0 for
    /// `System`.
    static ROUTE: Cell<u8> = const { Cell::new(0) };
    /// Calls [`Dispatch`] has sent to a peer on this thread.
    static ROUTED: Cell<u64> = const { Cell::new(0) };
}

/// A global allocator for the bench binaries: the calling thread's allocations go to the
/// peer chosen by [`with_global`] while its closure runs, to `System` otherwise. A block must
/// be freed under the same choice it was allocated under (the closures free everything they
/// allocate).
///
/// ```
/// use kmem_bench::malloc::{with_global, Dispatch, Peer};
///
/// #[global_allocator]
/// static GLOBAL: Dispatch = Dispatch;
///
/// fn main() {
///     // This Vec's buffer comes from mimalloc and goes back to it.
///     let n = with_global(Peer::Mimalloc, || vec![1u8; 100].len());
///     assert_eq!(n, 100);
/// }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Dispatch;

#[inline]
fn route() -> Option<Peer> {
    let r = ROUTE.try_with(Cell::get).unwrap_or(0);
    if r == 0 {
        return None;
    }
    let _ = ROUTED.try_with(|c| c.set(c.get() + 1));
    Some(Peer::ALL[usize::from(r - 1)])
}

macro_rules! dispatch {
    (|$a:ident| $body:expr) => {
        match route() {
            None => {
                let $a = &System;
                $body
            }
            Some(p) => $crate::peer_match!(p, |$a| $body),
        }
    };
}

// SAFETY: every call goes to one allocator, the same for a block's allocation and its free
// (the contract of `with_global`), which upholds GlobalAlloc's contract itself.
unsafe impl GlobalAlloc for Dispatch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        dispatch!(|a| unsafe { a.alloc(layout) })
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        dispatch!(|a| unsafe { a.alloc_zeroed(layout) })
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract; allocated under the same route.
        dispatch!(|a| unsafe { a.dealloc(ptr, layout) })
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract; allocated under the same route.
        dispatch!(|a| unsafe { a.realloc(ptr, layout, new_size) })
    }
}

/// Runs `f` with this thread's global allocations sent to `peer`, if the binary's global
/// allocator is [`Dispatch`]. Everything `f` allocates must be freed before it returns, and
/// it must free nothing allocated outside.
///
/// # Panics
///
/// If `f` allocated and the global allocator is not [`Dispatch`] (nothing was routed).
pub fn with_global<R>(peer: Peer, f: impl FnOnce() -> R) -> R {
    struct Restore(u8);
    impl Drop for Restore {
        fn drop(&mut self) {
            ROUTE.with(|r| r.set(self.0));
        }
    }
    peer.prepare();
    let before = ROUTED.with(Cell::get);
    let restore = Restore(ROUTE.with(|r| r.replace(peer.index() + 1)));
    let out = f();
    drop(restore);
    assert!(ROUTED.with(Cell::get) > before, "with_global: the global allocator is not kmem_bench::malloc::Dispatch");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_routes_only_inside_with_global() {
        let before = ROUTED.with(Cell::get);
        drop(std::hint::black_box(vec![0u8; 100]));
        assert_eq!(ROUTED.with(Cell::get), before);
        with_global(Peer::Talc, || drop(std::hint::black_box(vec![0u8; 100])));
        assert!(ROUTED.with(Cell::get) >= before + 2);
    }
}
