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
//! # The pipeline
//!
//! - **Input** ([`input`], `lines.rs`, `ahead.rs`): a file, plain or zstd (told by the magic
//!   bytes), read in blocks that are handed out as chunks of whole lines (the last newline
//!   found with `memrchr`, lines split with `memchr`): no copy, no allocation per line. In
//!   `kmem replay` on three CPUs or more a thread of its own reads and decompresses a few
//!   256 KiB blocks ahead, and the blocks themselves become the line reader's buffer (each
//!   has room before its bytes for the line that runs across from the previous block: the
//!   only bytes copied); on fewer CPUs the parsing thread decodes zstd straight into its
//!   line reader's buffer (`run::read_ahead_pays`: a third busy thread on two CPUs cost more
//!   than it hid; [`zring::ZstdRing`]: zstd's buffer-less API decoding block after block into
//!   a round buffer that is also zstd's window, so no byte is copied out of a window as the
//!   streaming decoder does; [`input::Trace`] keeps the stream compressed until then). A line
//!   over 64 KiB is one malformed line, skipped to its newline without being buffered; a
//!   stream with no event in its first 16 MiB is "not a kmem trace" (so `kmem replay
//!   /dev/zero` ends).
//! - **Parse** ([`parse`], `fast.rs`, `scan.rs`): one line to an `Event` borrowing from it,
//!   no allocation. The general rules (`parse_general`) define the result: the CPU column is
//!   the first `[digits]` (task names may hold spaces), optional latency flags (`h`/`H`/`s`:
//!   interrupt context), the timestamp, the event name and its `key=value` fields, the first
//!   of each name among the first 16. Most lines take a fast path that reads the kmem
//!   events' fields in their `TP_printk` order, one space apart, with byte-level scanning:
//!   whitespace (exactly, with the ASCII check of text fields), `[` and column padding found
//!   16 bytes at a time (SSE2; 8 with `u64` bit tricks elsewhere), literals compared as whole
//!   words, 16-digit pointers checked and converted in one SSE2 register, the timestamp's
//!   digits and dots in one SSE2 load, pfns and decimal numbers 8 digits at a time. It reads
//!   each line in the block itself (no scan crosses a newline) and the newline is looked for
//!   only past the last field it read (`parse::parse_next`). It returns an event only
//!   where the general rules give the same one; anything else (comments, other events, other
//!   layouts, bad values) goes to the general rules. The tests compare both on every line
//!   they hold and on 200,000 random mutations. The parsing loop reads allocations' tails
//!   (the fields after the pointer or pfn, up to the newline) through a memo
//!   (`fast_memo.rs`): a tail seen before gives its values without their scans.
//! - **Front end** ([`op`], `keys.rs`): an `Event` to a 32-byte `Op`, resolving what the
//!   engine must not redo: GFP text (memoised per distinct string),
//!   cache names (interned; the first `bytes_alloc` is the object size; both through
//!   `TextMemo`, a direct-mapped front of one compare over a `HashMap`), and the trace's
//!   hashed pointers and pfns to dense **slots**: an allocation of a new key takes a free
//!   slot, of a live key keeps its slot (a missed free), a free of an unknown key gets none
//!   (an unmatched free: allocated before the capture). The live keys are an open-addressing
//!   table (linear probing, at most half full, the key beside its slot: one cache line per
//!   lookup, deletion by shifting back); lines are parsed 16 ahead of the front end, which
//!   prefetches each key's table entry, so the lookups rarely wait on memory. A line whose
//!   tail the memo knew takes its GFP flags and cache from the memo entry
//!   (`Frontend::parsed_in`), resolved there the first time.
//! - **Engine** ([`replay`]): per `Op`, pin the thread to `cpu % nr_cpus` if it changed, run
//!   under `in_irq` if the trace says so, create the cache on first use (outside interrupt
//!   context, `SLAB_NO_MERGE` unless `--merge`), and allocate or free through the machine's
//!   API, keeping each slot's kmem object or page block in a vector.
//!
//! [`run`] streams batches of 4096 ops through two threads (three with the read-ahead): one
//! reads, decompresses and parses, and the calling thread replays the previous batch (timed
//! per batch: the replay-only rate) and samples the machine's memory. On the shared capture
//! each line costs about 390 instructions of zstd, 950 of splitting, parsing and front end,
//! and 850 of
//! replay (the OOM killer's bookkeeping, [`oom`], adds about 60: a lock of the live tables
//! per operation, one more before allocations of a live key, and the victim queues). `kmem replay` boots its machine on anonymous RAM
//! (`MachineBuilder::anonymous_ram`: a replay touches hundreds of MiB, and a host fault costs
//! less there than on a memfd) in small pages (`--thp` asks for transparent huge pages: on a
//! VM that reports free memory to its host they made the shared capture's replay 10x
//! slower); such RAM cannot be aliased, so that machine has no vmalloc range.
//!
//! [`summary`] lists kmem's layout of each trace cache against the trace's sizes and audits
//! the end state: after `kmem_cache_shrink` of every cache in use, each cache's active
//! objects equal the objects the replay holds there, slab pages outside caches equal the
//! large kmalloc pages it holds, and every held block has a reference. Linux traces
//! `mm_page_free` and then `mm_page_free_batched` for each page `free_unref_folios` frees, so
//! a batched free of a page already freed is expected.
//!
//! # Notes and missing features
//!
//! - Pointers in a capture are `%p`-hashed: they identify objects, so frees are matched to
//!   allocations, but they say nothing about placement. The replay's own addresses are kmem's.
//! - `mm_page_alloc` events include the pages the traced kernel's slab allocator took for its
//!   slabs; kmem's caches take their own, so those pages are counted twice.
//! - `__GFP_NOFAIL` is kept. On a machine too small for the capture, kmem reclaims and then
//!   calls its OOM notifiers; the replayer registers one whose victim is the trace: it frees
//!   the oldest live replayed allocations, and their later traced frees are counted as freed
//!   by OOM ([`oom`]). A `__GFP_NOFAIL` request that kmem could only wait for (the replay is
//!   one thread: nobody else frees) is served by the replayer itself, freeing victims until it
//!   succeeds, or counted as failed when nothing is left to free.
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
mod fast_memo;
pub mod gfp_text;
pub mod input;
pub mod json;
pub mod keys;
pub mod lines;
pub mod oom;
pub mod op;
pub mod parse;
pub mod render;
pub mod replay;
pub mod run;
mod scan;
pub mod summary;
mod table_lock;
pub mod zring;

pub use op::{Frontend, Kind, Op};
pub use replay::Replayer;
