//! Free memory known to read as zero (`pg::ZEROED`).
//!
//! A `__GFP_ZERO` allocation (kzalloc's large blocks, `vzalloc`, page tables, user pages,
//! `calloc` of large blocks through kmem-alloc, `init_on_alloc`) must hand out zeroed memory;
//! clearing it costs a pass over every byte and, on a hosted machine, the host's fault of
//! every page it touches for the first time. Memory that nobody has written yet needs
//! neither: fresh host memory reads as zero (Linux's user space relies on the same for
//! `calloc` of fresh `mmap`s), and so does a block `init_on_free` cleared when it came back
//! (Linux's `post_alloc_hook` skips clearing under `init_on_free` for the same reason).
//!
//! The page allocator keeps that knowledge per free block, in the `ZEROED` flag of the block's
//! head page, with the buddy allocator's own rules for `REPORTED`:
//! - **Set** on every block boot releases, hot-add onlines and deferred init frees, when the
//!   platform promises that RAM reads as zero ([`BootConfig::ram_zeroed`](crate::BootConfig::ram_zeroed);
//!   kmem-hosted's memfd and anonymous RAM), on a block `init_on_free` cleared, and on a block
//!   free page reporting handed back whose report says its memory now reads zero
//!   ([`Kmem::report_free_pages`](crate::Kmem::report_free_pages): kmem-alloc's
//!   `MADV_DONTNEED` of its anonymous RAM).
//! - **Split** (`expand`, the per-CPU lists' refill): every piece of a zeroed block is zeroed.
//! - **Merged** (`__free_one_page`): the merged block is zeroed only if every piece was.
//! - **Forgotten** when a block is handed out (`prep_new_page`, the order-0 fast path's
//!   `prep_order0`) and when it is freed (`set_alloc_order`): memory given to an owner counts
//!   as written, whether or not it was.
//! - **Read** by the allocation that forgets it: with `__GFP_ZERO` and the flag set, the
//!   clearing is skipped, and the block is not touched at all.
//!
//! The flag lives only on heads of free blocks (buddy lists, per-CPU lists), changed by whoever
//! owns the block then (the zone lock's holder, the CPU owning the list). Nothing of kmem's is
//! ever written into a free block (free lists link descriptors, not pages), so a block stays
//! zeroed for as long as it is free. Tests: `kmem-hosted/tests/zeroed_pages.rs` (fresh blocks
//! of every order stay unpopulated on the host, written ones are cleared after every way back).
