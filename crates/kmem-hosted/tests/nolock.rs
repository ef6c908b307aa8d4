//! `kmalloc_nolock` / `kfree_nolock` from the hosted NMI (issue 17, "Any-context
//! allocation").
//!
//! A thread hammers kmalloc/kfree and `kmem_cache_alloc`/`free` in bursts large enough to
//! run every slow path (sheaf refills and flushes at the node's `list_lock`, barn trades,
//! new slabs and empty slabs through the zone lock), while another thread sends it
//! `SIGUSR1` with `pthread_kill` every few microseconds. The handler, which interrupts the
//! hammer wherever it is, kmem's per-CPU sections and locks included, calls the nolock
//! pair: it frees the object it allocated some signals ago (every eighth with
//! `kfree_rcu_nolock`) and allocates a new one.
//!
//! Checked: nothing deadlocks (a watchdog bounds the run), nothing corrupts (every object
//! is stamped and checked before its free, `__GFP_ZERO` objects are zero, the machine's
//! invariants hold, no report), every object comes back (the kmalloc buckets' live objects
//! return to where they were), and the handler was sometimes refused or rerouted because it
//! re-entered kmem (printed: allocations that failed with `Busy`, that came from the next
//! bucket, frees deferred to a safe point). Both hosted CPU models run it.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Once};
use std::time::Duration;

use kmem::slab::SlabFlags;
use kmem::{Gfp, Kmem, NolockError, ReportKind};
use kmem_hosted::{HostedPlatform, Machine, MachineBuilder};

/// Objects the handler keeps between signals (freed by a later signal).
const HELD: usize = 8;
/// Sizes the handler asks for.
const NMI_SIZES: [usize; 6] = [24, 64, 100, 200, 512, 1500];
/// Sizes the hammer uses (the buckets overlap the handler's).
const SIZES: [usize; 8] = [16, 32, 64, 96, 128, 192, 256, 512];
/// Objects per burst, all of one size class: more than the CPU's sheaves and the node's
/// barn hold (4096 objects), so every burst refills from and flushes to the slabs under the
/// node's `list_lock`, makes new slabs and gives empty ones back.
const BURST: usize = 6000;

/// What the handler did, per thread (the handler runs on the hammer thread).
struct NmiStats {
    signals: Cell<u64>,
    ok: Cell<u64>,
    busy: Cell<u64>,
    nomem: Cell<u64>,
    other: Cell<u64>,
    rerouted: Cell<u64>,
    /// Signals that arrived while the thread held its CPU (inside a kmem section): re-entry.
    inside: Cell<u64>,
    bad: Cell<u64>,
    held: [Cell<usize>; HELD],
    held_size: [Cell<usize>; HELD],
}

thread_local! {
    /// The machine the handler works on (null: the handler does nothing).
    static MACHINE: Cell<*const Kmem<HostedPlatform>> = const { Cell::new(std::ptr::null()) };
    /// The size the hammer allocates in its current burst: the handler asks for it every
    /// other signal, to meet the hammer in the same bucket's locks.
    static HAMMER_SIZE: Cell<usize> = const { Cell::new(0) };
    static NMI: NmiStats = const {
        NmiStats {
            signals: Cell::new(0),
            ok: Cell::new(0),
            busy: Cell::new(0),
            nomem: Cell::new(0),
            other: Cell::new(0),
            rerouted: Cell::new(0),
            inside: Cell::new(0),
            bad: Cell::new(0),
            held: [const { Cell::new(0) }; HELD],
            held_size: [const { Cell::new(0) }; HELD],
        }
    };
}

fn stamp_byte(addr: usize) -> u8 {
    ((addr >> 4) as u8) | 1
}

/// Fills `len` bytes at `p` with its address's byte.
fn stamp(p: usize, len: usize) {
    // SAFETY: `p` is a live object of at least `len` bytes that the caller owns.
    unsafe { std::ptr::write_bytes(p as *mut u8, stamp_byte(p), len) };
}

/// Whether the `len` bytes at `p` still hold its stamp.
fn stamped(p: usize, len: usize) -> bool {
    // SAFETY: as in `stamp`.
    unsafe { std::slice::from_raw_parts(p as *const u8, len) }.iter().all(|&b| b == stamp_byte(p))
}

/// The hosted NMI. Async-signal-safe as far as the test goes: thread-locals with constant
/// initialisers and no destructor, no allocation from the host, no locks.
extern "C" fn on_nmi(_sig: libc::c_int) {
    let m = MACHINE.with(Cell::get);
    if m.is_null() {
        return;
    }
    // SAFETY: the hammer sets the pointer while its machine lives and clears it (with the
    // signal blocked) before the machine goes.
    let m = unsafe { &*m };
    NMI.with(|s| {
        let i = s.signals.get() as usize;
        // Reads the thread's CPU bookkeeping only (what try_pin_cpu_nolock reads too).
        if kmem::Platform::held_cpu(m.platform()).is_some() {
            s.inside.set(s.inside.get() + 1);
        }
        s.signals.set(i as u64 + 1);
        let slot = i % HELD;
        let old = s.held[slot].replace(0);
        if old != 0 {
            if !stamped(old, s.held_size[slot].get()) {
                s.bad.set(s.bad.get() + 1);
            }
            if i % 8 == 7 && s.held_size[slot].get() >= 16 {
                // kfree_rcu_nolock with the head at the object's start (16 bytes, aligned).
                // SAFETY: as below; the head lies inside the object, which nobody reads.
                unsafe {
                    m.kfree_rcu_nolock(old as *const u8, std::ptr::NonNull::new_unchecked(old as *mut kmem::RcuHead))
                };
            } else {
                // SAFETY: allocated by an earlier signal, stamped and checked, no longer used.
                unsafe { m.kfree_nolock(old as *const u8) };
            }
        }
        let size = if i % 4 < 2 { HAMMER_SIZE.with(Cell::get).max(8) } else { NMI_SIZES[i % NMI_SIZES.len()] };
        let zero = i % 2 == 0;
        match m.kmalloc_nolock(size, if zero { Gfp::ZERO } else { Gfp::empty() }, None) {
            Ok(p) => {
                let p = p.as_ptr() as usize;
                // SAFETY: a live object of at least `size` bytes, ours.
                if zero && unsafe { std::slice::from_raw_parts(p as *const u8, size) }.iter().any(|&b| b != 0) {
                    s.bad.set(s.bad.get() + 1);
                }
                // SAFETY: as above.
                if unsafe { m.ksize(p as *const u8) } > kmem::kmalloc::kmalloc_size_roundup(size) {
                    s.rerouted.set(s.rerouted.get() + 1);
                }
                stamp(p, size);
                s.held[slot].set(p);
                s.held_size[slot].set(size);
                s.ok.set(s.ok.get() + 1);
            }
            Err(NolockError::Busy) => s.busy.set(s.busy.get() + 1),
            Err(NolockError::NoMemory) => s.nomem.set(s.nomem.get() + 1),
            Err(_) => s.other.set(s.other.get() + 1),
        }
    });
}

fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a plain handler for SIGUSR1, which nothing else in this test binary uses;
        // `sa_mask` empty, SA_RESTART so that interrupted host calls resume.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_nmi as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
        }
    });
}

/// What one run saw.
#[derive(Debug, Default)]
struct Outcome {
    rounds: u64,
    signals: u64,
    ok: u64,
    busy: u64,
    nomem: u64,
    other: u64,
    rerouted: u64,
    inside: u64,
    bad: u64,
    hammer_bad: u64,
    deferred_seen: usize,
}

/// The hammer: bursts of kmalloc and kmem_cache_alloc, stamped, checked, freed, until
/// `stop`; then it blocks the signal, gives back what the handler holds, and reports.
fn hammer(
    m: &Machine,
    cache: &kmem::slab::KmemCache,
    stop: &AtomicBool,
    tid: mpsc::Sender<libc::pthread_t>,
) -> Outcome {
    // Claim the CPU (thread CPUs) and make the kmalloc caches before the first signal.
    let first = m.kmalloc(8, Gfp::KERNEL).unwrap();
    // SAFETY: ours.
    unsafe { m.kfree(first.as_ptr()) };
    MACHINE.with(|c| c.set(&**m as *const Kmem<HostedPlatform>));
    // SAFETY: pthread_self has no preconditions.
    tid.send(unsafe { libc::pthread_self() }).unwrap();
    let mut out = Outcome::default();
    let mut objs: Vec<(usize, usize, bool)> = Vec::with_capacity(BURST);
    while !stop.load(Ordering::Relaxed) {
        let size = SIZES[out.rounds as usize % SIZES.len()];
        HAMMER_SIZE.with(|c| c.set(size));
        for i in 0..BURST {
            if i % 8 == 7 {
                let p = m.kmem_cache_alloc(cache, Gfp::KERNEL).unwrap().as_ptr() as usize;
                stamp(p, 200);
                objs.push((p, 200, true));
            } else {
                let p = m.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr() as usize;
                stamp(p, size);
                objs.push((p, size, false));
            }
        }
        // Free in an order that is not the allocation order.
        let n = objs.len();
        for k in 0..n {
            let (p, len, from_cache) = objs[(k * 7919) % n];
            if !stamped(p, len) {
                out.hammer_bad += 1;
            }
            // SAFETY: allocated above, checked, freed once (7919 is prime to BURST's factors).
            unsafe {
                if from_cache {
                    m.kmem_cache_free(cache, std::ptr::NonNull::new_unchecked(p as *mut u8));
                } else {
                    m.kfree(p as *const u8);
                }
            }
        }
        objs.clear();
        out.deferred_seen = out.deferred_seen.max(m.deferred_frees());
        out.rounds += 1;
    }
    // No more signals on this thread: block SIGUSR1 (one still pending is never delivered).
    // SAFETY: a valid signal set, this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    MACHINE.with(|c| c.set(std::ptr::null()));
    NMI.with(|s| {
        for (h, len) in s.held.iter().zip(&s.held_size) {
            let p = h.replace(0);
            if p != 0 {
                if !stamped(p, len.get()) {
                    out.bad += 1;
                }
                // SAFETY: the handler's object, checked, not used any more.
                unsafe { m.kfree_nolock(p as *const u8) };
            }
        }
        out.signals = s.signals.get();
        out.ok = s.ok.get();
        out.busy = s.busy.get();
        out.nomem = s.nomem.get();
        out.other = s.other.get();
        out.rerouted = s.rerouted.get();
        out.inside = s.inside.get();
        out.bad += s.bad.get();
    });
    out
}

/// Live objects of the kmalloc buckets both sides use and of `cache` (after a shrink, so
/// objects parked in sheaves count as free).
fn live(m: &Machine, cache: &kmem::slab::KmemCache) -> usize {
    let mut caches: Vec<&kmem::slab::KmemCache> = vec![cache];
    for &sz in SIZES.iter().chain(&NMI_SIZES).chain(&[2048]) {
        let c = m.kmalloc_slab(sz, Gfp::KERNEL).unwrap();
        if !caches.iter().any(|x| std::ptr::eq(*x, c)) {
            caches.push(c);
        }
    }
    caches
        .into_iter()
        .map(|c| {
            m.kmem_cache_shrink(c);
            kmem::proc::slab_info(m, c).active_objs
        })
        .sum()
}

fn run(m: Machine, label: &str) {
    install_handler();
    let m = Arc::new(m);
    let raw = m.kmem_cache_create("nolock_t200", 200, 0, SlabFlags::NO_MERGE, None).unwrap().into_raw();
    // SAFETY: the cache lives until destroyed at the end, after every thread using it.
    let cache: &'static kmem::slab::KmemCache = unsafe { &*raw.as_ptr() };
    let p = m.kmalloc(8, Gfp::KERNEL).unwrap();
    // SAFETY: ours.
    unsafe { m.kfree(p.as_ptr()) };
    let before = live(&m, cache);
    let secs: f64 = std::env::var("KMEM_NOLOCK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(1.5);
    let stop = Arc::new(AtomicBool::new(false));
    let (tid_tx, tid_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let (m2, stop2) = (m.clone(), stop.clone());
    let hammer_thread = std::thread::spawn(move || {
        let out = hammer(&m2, cache, &stop2, tid_tx);
        done_tx.send(out).unwrap();
    });
    let target = tid_rx.recv().unwrap();
    let stop3 = stop.clone();
    let signaller = std::thread::spawn(move || {
        let mut sent = 0u64;
        while !stop3.load(Ordering::Relaxed) {
            // SAFETY: the hammer thread lives until it has seen `stop` (it blocks the signal
            // before it returns, and is joined after this thread).
            unsafe { libc::pthread_kill(target, libc::SIGUSR1) };
            sent += 1;
            // Sleeping (not spinning) lets the hammer run on a loaded machine; a signal sent
            // while one is pending is merged into it, so faster sending gains nothing.
            std::thread::sleep(Duration::from_micros(20));
        }
        sent
    });
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let sent = signaller.join().unwrap();
    // The watchdog: a deadlocked hammer never answers.
    let out = done_rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
        panic!("{label}: the hammer thread did not finish within 60 s: deadlock");
    });
    hammer_thread.join().unwrap();
    let deferred_left = m.deferred_frees();
    m.defer_free_barrier();
    // The handler's kfree_rcu_nolock objects: a grace period, then freed.
    m.kvfree_rcu_barrier();
    eprintln!(
        "nolock {label}: {} rounds, {sent} signals sent, {} handled: {} allocated ({} from the next bucket), \
         {} Busy (refused), {} NoMemory, {} other; {} signals arrived inside a kmem section; \
         {} frees pending at most, {deferred_left} left at the end",
        out.rounds, out.signals, out.ok, out.rerouted, out.busy, out.nomem, out.other, out.inside, out.deferred_seen
    );
    assert_eq!(out.bad, 0, "{label}: a handler object was corrupted");
    assert_eq!(out.hammer_bad, 0, "{label}: a hammer object was corrupted");
    assert_eq!(out.other, 0, "{label}: unexpected nolock errors");
    assert!(out.signals > 100, "{label}: the handler ran ({} signals)", out.signals);
    assert!(out.ok > 0, "{label}: some nolock allocations succeeded");
    assert!(out.inside > 0, "{label}: no signal arrived inside a kmem section");
    assert_eq!(m.deferred_frees(), 0);
    assert_eq!(live(&m, cache), before, "{label}: every object came back");
    for kind in [ReportKind::BadPage, ReportKind::SlabBug, ReportKind::Warning, ReportKind::PageAllocFailure] {
        assert_eq!(m.report_count(kind), 0, "{label}: {kind:?}: {:?}", m.reports().take());
    }
    m.verify().unwrap();
    // SAFETY: the handle given up by `into_raw` above; no thread uses the cache any more.
    m.kmem_cache_destroy(unsafe { kmem::slab::Cache::from_raw(&m, raw) });
}

#[test]
fn nmi_on_shared_cpus() {
    run(MachineBuilder::new().ram_mib(128).cpus(2).build().unwrap(), "shared CPUs");
}

#[test]
fn nmi_on_thread_cpus() {
    run(MachineBuilder::new().ram_mib(128).thread_cpus(8).build().unwrap(), "thread CPUs");
}

/// The hammer thread on an overflow CPU: the test's thread, which booted the machine, owns
/// the only owned CPU.
#[test]
fn nmi_on_overflow_cpus() {
    let m = MachineBuilder::new().ram_mib(128).thread_cpus(2).thread_cpus_overflow(1).build().unwrap();
    let p = m.platform();
    let mine = kmem::Platform::preempt_disable_cpu(p);
    kmem::Platform::preempt_enable(p);
    assert_eq!(mine, kmem::CpuId(0), "the test's thread owns CPU 0");
    run(m, "overflow CPUs");
}

/// `node` on a machine with two nodes: objects come from the node asked for (its slabs,
/// since the CPU's sheaves hold the CPU's node's objects), from any CPU; frees of another
/// node's objects go to their slab.
#[test]
fn node_argument_on_two_nodes() {
    let m = MachineBuilder::new().ram_mib(512).cpus(2).nodes(2).build().unwrap();
    let first = m.kmalloc(8, Gfp::KERNEL).unwrap();
    // SAFETY: ours.
    unsafe { m.kfree(first.as_ptr()) };
    let mut objs = Vec::new();
    for cpu in 0..2u32 {
        kmem_hosted::pin_current_thread(cpu);
        for nid in 0..2 {
            for _ in 0..50 {
                let p = m.kmalloc_nolock(128, Gfp::ZERO, Some(nid)).unwrap();
                let page = m.virt_to_page(kmem::VirtAddr::new(p.as_ptr() as usize)).unwrap();
                assert_eq!(page.page().node(), nid, "object from node {nid} (CPU {cpu})");
                objs.push(p);
            }
        }
        assert_eq!(m.kmalloc_nolock(128, Gfp::empty(), Some(2)), Err(NolockError::Unsupported));
    }
    kmem_hosted::pin_current_thread(0);
    for p in objs {
        // SAFETY: ours, freed once.
        unsafe { m.kfree_nolock(p.as_ptr()) };
    }
    m.defer_free_barrier();
    assert_eq!(m.report_count(ReportKind::SlabBug), 0);
    m.verify().unwrap();
}
