//! The machine the process boots: its RAM and hotplug reserve (`KMEM_RAM_MAX`, the
//! address-space limit), its CPUs (`KMEM_CPUS`, the overflow CPUs, the host's), its slabs
//! sized for the host, and the builder's settings ([`build`]).

use kmem::{MemRegion, ZoneLayout};
use kmem_hosted::{Machine, MachineBuilder};

use super::{BOOT_RAM, DEFERRED_INIT};

fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.as_bytes().last()? {
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// Possible CPUs of the global machine without `KMEM_CPUS`: `kmem::NR_CPUS` (256), as a
/// Linux kernel without firmware tables takes `NR_CPUS`. A program's threads beyond them
/// share the overflow CPUs ([`possible_cpus`], [`overflow_cpus`]).
///
/// 256 since 2026-12-06 (18:30 UTC), 128 before (four per host CPU at least, 64 before
/// 12:00): `mtbench many 256` (256 live threads looping on `malloc` + `free` of 8-1000 B)
/// took 80.6 ms with 128 (the 133 threads beyond the owned CPUs on four overflow CPUs,
/// `free_no_cpu` and `alloc_careful` a third of its samples), 73.0 with 256 (glibc 69.5),
/// alternated. The start-up they cost (the first `malloc` 153,617 -> 177,165 instructions
/// and 73 -> 90 page faults: the per-CPU page lists and units' descriptors of 128 more CPUs)
/// was paid back: the page lists are written as each CPU comes up, and boot initialises no
/// whole chunk of free frames ([`DEFERRED_INIT`]): 148,145 instructions and 68 faults.
pub const DEFAULT_POSSIBLE_CPUS: usize = kmem::NR_CPUS;

/// The hotplug reserve: `KMEM_RAM_MAX`, else 64 GiB, or half the address space the process
/// has left under its limit (`RLIMIT_AS`, `ulimit -v`) if that is less, in whole sections.
/// The reserve is address space mapped at boot (`PROT_NONE` until sections come online),
/// which the limit counts: a reserve past it could not be mapped, the machine would not
/// boot, and every allocation past the bootstrap arena would fail (under `ulimit -v
/// 2000000`, Python failed to start). The other half is left to the program's own mappings
/// and kmem's blocks above 4 MiB (host mappings). If the reserve cannot be mapped all the
/// same, boot tries half of it, down to [`BOOT_RAM`] ([`build`]).
pub fn hotplug_max() -> u64 {
    match std::env::var("KMEM_RAM_MAX").ok().and_then(|s| parse_bytes(&s)) {
        Some(max) => max.max(BOOT_RAM),
        None => (64 << 30).min(address_space_left() / 2 / BOOT_RAM * BOOT_RAM).max(BOOT_RAM),
    }
}

/// Address space the process may still map under its limit (`RLIMIT_AS`): `u64::MAX` with
/// no limit (the common case: one `getrlimit`, nothing read from `/proc`), else the limit
/// less the process's size now (`/proc/self/statm`'s first field).
fn address_space_left() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `r` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut r) } != 0 || r.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    let used = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |pages| pages * kmem::PAGE_SIZE as u64);
    r.rlim_cur.saturating_sub(used)
}

/// Possible CPUs of the global machine: `KMEM_CPUS` (1 to `kmem::NR_CPUS`), else
/// [`DEFAULT_POSSIBLE_CPUS`]. Each thread takes one for as long as it lives, but for the
/// last [`overflow_cpus`], which the threads beyond the others share (a compare-exchange an
/// operation: 1000 live threads each looping on `malloc(64)` + `free` take 10-11 ns a pair,
/// glibc 4-6.5; before, they borrowed owned CPUs, stopping them: 200 threads took 8.1 us a
/// pair). Each possible CPU costs start-up only its per-CPU unit's page descriptors (32 KiB
/// of RAM, a page of descriptors per 16 CPUs; its page lists and fast table are written as
/// it comes up).
pub fn possible_cpus() -> usize {
    std::env::var("KMEM_CPUS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_POSSIBLE_CPUS)
        .clamp(1, kmem::NR_CPUS)
}

/// Of `possible` CPUs on a host of `host` CPUs, the overflow CPUs: shared by the threads
/// that find every other CPU owned by a live thread (`MachineBuilder::thread_cpus_overflow`).
/// Two per host CPU (so that a thread descheduled inside its section holds up none of the
/// others: they take another), 4 to 16, at most an eighth of the CPUs (none below 8).
///
/// Measured (C, `LD_PRELOAD`, threads each looping on `malloc(64)` + `free`, 128 possible
/// CPUs on 2 host CPUs, 4 of them overflow): 200 live threads took 8.1 us a pair when the
/// 72 beyond the pool borrowed owned CPUs, 7-8 ns on the overflow CPUs (glibc 3-6.5 ns);
/// 1000 threads 10-11 ns (glibc 4-6.5).
pub fn overflow_cpus(possible: usize, host: usize) -> usize {
    host.saturating_mul(2).clamp(4, 16).min(possible / 8)
}

/// CPUs of the process's affinity mask: one `sched_getaffinity` (std's
/// `available_parallelism` also reads the cgroup's CPU quota, a dozen system calls at every
/// process start; a quota limits time, not how many threads run at once). The machine's
/// slabs are sized for them (`slab_min_objects`).
pub fn host_cpus() -> usize {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let ok = unsafe { libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) } == 0;
    // SAFETY: `set` is initialised (zeroed, then filled by the kernel).
    let n = if ok { (unsafe { libc::CPU_COUNT(&set) }) as usize } else { 0 };
    n.max(1)
}

/// Linux's default `slab_min_objects` for `cpus` CPUs: `4 * (fls(cpus) + 1)`.
fn slab_min_objects(cpus: usize) -> u32 {
    4 * (usize::BITS - cpus.leading_zeros() + 1)
}

/// Boots the machine with the [`hotplug_max`] reserve, else (the reserve's address space
/// refused) half of it, and so on down to [`BOOT_RAM`].
pub(super) fn build() -> Option<Machine> {
    crate::misuse::read_policy();
    let mut max = hotplug_max();
    loop {
        if let Some(m) = build_with(max) {
            return Some(m);
        }
        if max <= BOOT_RAM {
            return None;
        }
        max = (max / 2 / BOOT_RAM * BOOT_RAM).max(BOOT_RAM);
    }
}

fn build_with(hotplug_max: u64) -> Option<Machine> {
    let host = host_cpus();
    MachineBuilder::new()
        .memory_map(vec![MemRegion::usable(0, BOOT_RAM)])
        .zone_layout(ZoneLayout { dma_end: None, dma32_end: None, highmem_start: None })
        .thread_cpus(possible_cpus())
        // The last few possible CPUs are shared by the threads beyond the rest (a thread
        // pool larger than the pool of CPUs): a compare-exchange a section, not a borrowed
        // CPU stopped with a process-wide barrier (see `overflow_cpus`).
        .thread_cpus_overflow(overflow_cpus(possible_cpus(), host))
        // Exiting threads leave up to one warm CPU per host CPU for the next threads (a
        // pool of workers reuses full caches); more exits tear down and give memory back.
        .thread_cpus_warm(host)
        // Slabs sized for the host's CPUs, as Linux on this host would size them, not for the
        // pool of thread CPUs (256): with 2 host CPUs a slab aims at 12 objects, not
        // 32, so a program's first block of a size touches half the pages.
        .slab_min_objects(slab_min_objects(host))
        .hotplug_max(hotplug_max)
        .deferred_init(Some(DEFERRED_INIT))
        // Private anonymous memory (for fork), small pages; nothing can alias it: no vmalloc
        // range, huge blocks come from host mappings instead.
        .anonymous_ram(true)
        .ram_hugepages(false)
        // Hot-added sections' descriptors at their vmemmap slots: the memory map stays flat
        // as the machine grows (kmem's own pfn-to-descriptor lookups are one multiply-add).
        .vmemmap(true)
        .vmalloc_size(0)
        // Free pointers at the object's start: malloc's caller touches the first line of a
        // block, so alloc and free touch no second one (a random-order churn over 2000
        // blocks: 43% fewer simulated L1 misses; BENCHMARKS.md).
        .slab_freeptr_at_start(true)
        // Sheaves of 128 KiB (128 objects for every class up to 1 KiB, against 32 for the
        // classes above 512 B by default): threads that allocate and free hundreds of blocks
        // at a time (threadtest, a pool of short-lived threads) trade sheaves at the shared
        // barn four times less often, and get back more of their own objects. On 16 CPUs, C
        // threadtest at 16 threads went from 4.0x glibc's time to 1.1x, the thread churn
        // from 2.1x to 0.8x (BENCHMARKS.md).
        .slab_sheaf_bytes(128 << 10)
        // Sheaves of up to 256 objects (the classes up to 512 B; Linux's and kmem's default:
        // 128): a thread's burst of a thousand 64-byte allocations, then frees, stays within
        // its CPU's main, spare and stashed sheaves (six of them: 1536 objects), off the
        // barn's lock, with half the exchanges (Rust alloc_n_free_n/1000 6% faster, the C
        // loop 97 instructions a block against 102; docs/architecture/slab.md).
        .slab_sheaf_max(256)
        // Four more sheaves per CPU and cache: a thread's burst of a thousand frees, then
        // allocations, stays on its CPU with its own objects, off the shared barn.
        .slab_cpu_stash(4)
        // Barns of 16 MiB of objects per cache: a thread that allocates a hundred thousand
        // blocks and frees them parks the full sheaves there and takes them back for its next
        // allocations, rather than flushing them to their slabs (and the page allocator)
        // and rebuilding them (100,000 64-byte blocks allocated then freed: 242 -> 177
        // instructions a block).
        .slab_barn_bytes(16 << 20)
        .no_alloc_reports(true)
        .on_report(crate::misuse::machine_report)
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    /// Linux's `4 * (fls(nr_cpus) + 1)`.
    #[test]
    fn slab_min_objects_is_linux_s_for_the_host_cpus() {
        for (cpus, objs) in [(1, 8), (2, 12), (3, 12), (4, 16), (16, 24), (64, 32), (256, 40)] {
            assert_eq!(super::slab_min_objects(cpus), objs, "{cpus} CPUs");
        }
    }

    /// Two overflow CPUs per host CPU, 4 to 16, at most an eighth of the possible CPUs.
    #[test]
    fn overflow_cpus_scale_with_the_host() {
        for (possible, host, n) in
            [(128, 1, 4), (128, 2, 4), (128, 4, 8), (256, 64, 16), (16, 2, 2), (7, 2, 0), (1, 1, 0)]
        {
            assert_eq!(super::overflow_cpus(possible, host), n, "{possible} possible CPUs on {host}");
        }
    }
}
