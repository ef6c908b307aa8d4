//! kmem-hosted's integration tests, one module per file, linked into one test binary: a
//! binary per file made 48 links, each monomorphising kmem's generic core for the hosted
//! platform again (most of `cargo test`'s build time). Tests of every file run in one
//! process, so a test must not change process-wide state another could see: KFENCE's
//! SIGSEGV handler passes faults not its own to the handler it replaced, only `nolock.rs`
//! uses SIGUSR1, and the test that re-runs itself in a child names its test by its path
//! (`boot::touch_the_pci_hole`).
//!
//! Run one file's tests with its module as the filter: `cargo test -p kmem-hosted --test
//! hosted slab::`.

mod common;
mod hardening;

mod api_model;
mod boot;
mod cpus;
mod deferred_init;
mod dense_memmap;
mod error_texts;
mod fault_injection;
mod free_map;
mod freeptr_placement;
mod handles;
mod hardening_stress;
mod highatomic;
mod highmem;
mod hotplug;
mod kfence;
mod kfree_sized;
mod kmalloc;
mod meminit;
mod misuse;
mod misuse_catalogue_frees;
mod misuse_catalogue_memory;
mod misuse_catalogue_requests;
mod model;
mod nolock;
mod page_alloc;
mod pcp;
mod percpu;
mod proc_views;
mod proc_vmallocinfo;
mod proc_vmstat;
mod process_cpu;
mod racing_frees;
mod ram_advice;
mod rcu;
mod reclaim;
mod reclaim_progress;
mod report_echo;
mod shared_pin;
mod sheaf_bursts;
mod slab;
mod slab_concurrency;
mod slab_debug;
mod slab_free_paths;
mod soundness;
mod stress;
mod thread_cpus;
mod thread_cpus_overflow;
mod typed_ctor;
mod vmalloc;
mod vmalloc_fault;
mod vmalloc_model;
mod vmalloc_stress;
mod zeroed_pages;
