//! Replays Linux kmem ftrace captures against a kmem machine.
//!
//! A capture of the `kmem` events (`kmalloc`, `kfree`, `kmem_cache_alloc`, `kmem_cache_free`,
//! `mm_page_alloc`, `mm_page_free`, `mm_page_free_batched`) as `trace_pipe` or `trace-cmd
//! report` text, plain or zstd-compressed, is read in large blocks and split into lines in
//! place ([`input`]), parsed without allocation ([`parse`]), turned into compact operations ([`op::Frontend`]) and applied to a
//! [`kmem_hosted::Machine`] ([`replay::Replayer`]), in batches ([`run::replay_stream`]).
//! [`summary`] compares the result with the trace (slab layout, waste) and audits it against
//! the machine's counters; [`render`] prints it for people or as JSON.
//!
//! ```
//! use kmem_trace::{op::Frontend, replay::Replayer};
//! let m = kmem_hosted::MachineBuilder::new().ram_mib(64).cpus(2).build().unwrap();
//! let mut fe = Frontend::new();
//! let mut rp = Replayer::new(&m, false);
//! let trace = "x-1 [001] ..... 1.0: kmem_cache_alloc: call_site=f+0x1/0x2 ptr=00000000aaaa0001 \
//!              name=dentry bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1\n\
//!              x-1 [000] ..... 1.1: kmem_cache_free: call_site=g+0x1/0x2 ptr=00000000aaaa0001 name=dentry\n";
//! for (no, line) in trace.lines().enumerate() {
//!     if let Some(op) = fe.line(no as u64 + 1, line.as_bytes()) {
//!         rp.apply(&op, fe.caches());
//!     }
//! }
//! assert_eq!(rp.counts.replayed[1..4], [0, 1, 1]);
//! assert_eq!(rp.live(), (0, 0));
//! rp.release_all();
//! ```
//!
//! # Notes and missing features
//!
//! - Pointers in a capture are `%p`-hashed: they identify objects, so frees are matched to
//!   allocations, but they say nothing about placement. The replay's own addresses are kmem's.
//! - `mm_page_alloc` events include the pages the traced kernel's slab allocator took for its
//!   slabs; kmem's caches take their own, so those pages are counted twice.
//! - `__GFP_NOFAIL` is dropped (and counted): kmem has no reclaim, so a single-threaded replay
//!   waiting for memory would wait forever.
//! - Frees the capture does not show are *missed frees*: in the shared capture 23,466 of
//!   23,468 are `maple_node` objects, which that kernel frees by a path that traces no
//!   `kmem_cache_free` (RCU-deferred frees); the replay frees the old object when its pointer
//!   is allocated again.
//! - The replay is single-threaded: it moves between the machine's CPUs as the trace does.
//! - A line over [`input::MAX_LINE`] (64 KiB) is skipped unbuffered and counted as
//!   malformed; `input::MAX_SKIPPED` (4 GiB) of such lines in a row are refused as not a
//!   trace.

pub mod ahead;
mod fast;
pub mod gfp_text;
pub mod input;
pub mod json;
pub mod keys;
pub mod lines;
pub mod op;
pub mod parse;
pub mod render;
pub mod replay;
pub mod run;
mod scan;
pub mod summary;

pub use op::{Frontend, Kind, Op};
pub use replay::Replayer;
