//! Misuse of the global allocator through `kmem_alloc::raw` (kmem is also this binary's
//! `#[global_allocator]`): double and invalid frees of large blocks (above 4 MiB, host
//! mappings), `realloc` of a freed block, a forged in-band header, stack, global, interior
//! and wild pointers. Each is reported exactly once ([`misuse::count`]), changes nothing,
//! never hands the same memory to two owners, and kmem keeps working afterwards. The
//! abort policy (`KMEM_ABORT_ON_MISUSE=1`) runs in a child process.

use std::process::Command;
use std::sync::Mutex;

use kmem_alloc::misuse::{self, Misuse};
use kmem_alloc::{raw, KmemAlloc};

#[global_allocator]
static A: KmemAlloc = KmemAlloc;

const BIG: usize = 8 << 20;

/// The counters are per process: tests that misuse run one at a time and compare deltas.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` and returns how many reports of each kind it made.
fn reports(f: impl FnOnce()) -> [u64; 4] {
    let kinds = [Misuse::DoubleFree, Misuse::InvalidFree, Misuse::InvalidRealloc, Misuse::Machine];
    let before = kinds.map(misuse::count);
    f();
    let after = kinds.map(misuse::count);
    [0, 1, 2, 3].map(|i| after[i] - before[i])
}

/// Fills `[p, p + n)` with a pattern of `tag` and checks it back.
fn fill(p: *mut u8, n: usize, tag: u8) {
    for o in (0..n).step_by(4096) {
        // SAFETY: inside a live block of `n` bytes.
        unsafe { p.add(o).write(tag) };
    }
    // SAFETY: as above.
    unsafe { p.add(n - 1).write(tag) };
}

fn check(p: *mut u8, n: usize, tag: u8) {
    for o in (0..n).step_by(4096) {
        // SAFETY: inside a live block of `n` bytes.
        assert_eq!(unsafe { p.add(o).read() }, tag, "byte {o} of {p:?}");
    }
}

/// kmem still works: 10,000 blocks of mixed sizes (a few large), each filled and checked,
/// none overlapping another, then freed, with no report.
fn keeps_working() {
    let r = reports(|| {
        let mut live: Vec<(usize, usize, u8)> = Vec::with_capacity(10_000);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..10_000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = match i % 1000 {
                0 => BIG + (x % (4 << 20)) as usize,
                _ => 1 + (x % 2048) as usize,
            };
            let p = raw::malloc(n);
            assert!(!p.is_null());
            fill(p, n, i as u8);
            live.push((p as usize, n, i as u8));
        }
        let mut spans: Vec<(usize, usize)> = live.iter().map(|&(p, n, _)| (p, p + n)).collect();
        spans.sort_unstable();
        assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "two live blocks overlap");
        for (p, n, tag) in live {
            check(p as *mut u8, n, tag);
            // SAFETY: live, ours, unused afterwards.
            unsafe { raw::free(p as *mut u8) };
        }
    });
    assert_eq!(r, [0; 4], "no report while used correctly");
}

#[test]
fn double_free_of_a_large_block_is_reported_once_and_never_aliases() {
    let _s = serial();
    let a = raw::malloc(BIG);
    assert!(!a.is_null());
    fill(a, BIG, 1);
    // SAFETY: live and ours.
    unsafe { raw::free(a) };
    // SAFETY: the misuse under test: `a` was freed. kmem must notice without touching it.
    let r = reports(|| unsafe { raw::free(a) });
    assert_eq!(r, [1, 0, 0, 0], "exactly one double-free report");
    two_blocks_of_their_own(BIG, 2);
    keeps_working();
}

/// Two `n`-byte blocks allocated after a misuse: distinct, disjoint, each keeping its fill.
fn two_blocks_of_their_own(n: usize, tag: u8) {
    let (b, c) = (raw::malloc(n), raw::malloc(n));
    assert!(!b.is_null() && !c.is_null());
    assert!((b as usize).abs_diff(c as usize) >= n, "two {n}-byte blocks after a misuse overlap");
    fill(b, n, tag);
    fill(c, n, tag + 1);
    check(b, n, tag);
    check(c, n, tag + 1);
    // SAFETY: live and ours.
    unsafe {
        raw::free(b);
        raw::free(c);
    }
}

/// `realloc` of a freed `n`-byte block to a size the block would hold: null, the reports
/// `want` counts, and nothing handed out twice afterwards.
fn realloc_of_freed(n: usize, want: [u64; 4]) {
    let a = raw::malloc(n);
    assert!(!a.is_null());
    // SAFETY: live and ours.
    unsafe { raw::free(a) };
    let mut r2 = core::ptr::null_mut();
    // SAFETY: the misuse under test.
    let r = reports(|| r2 = unsafe { raw::realloc_aligned(a, None, n - n / 8, 16) });
    assert!(r2.is_null(), "realloc of a freed {n}-byte block returned {r2:?}");
    assert_eq!(r, want, "exactly one report ({n} bytes)");
    two_blocks_of_their_own(n, 4);
}

/// `realloc` of a freed block inside kmem's RAM, to a size its bucket holds: resized in
/// place it would be handed to the caller while its CPU's sheaf still held it (the machine
/// reports the double free). A kmalloc class (64, 1000 bytes) and a medium block (20,000
/// bytes, `malloc-32k`).
#[test]
fn realloc_of_a_freed_small_block_fails_and_hands_nothing_out_twice() {
    let _s = serial();
    for n in [64usize, 1000, 20_000] {
        realloc_of_freed(n, [0, 0, 0, 1]);
    }
    keeps_working();
}

#[test]
fn realloc_of_a_freed_large_block_fails_and_hands_nothing_out_twice() {
    let _s = serial();
    realloc_of_freed(BIG, [0, 0, 1, 0]);
    keeps_working();
}

/// A program's own buffer, dressed up as a large block.
#[repr(C, align(4096))]
struct Forged([u8; 4 * 4096]);
static mut FORGED: Forged = Forged([0; 4 * 4096]);

#[test]
fn a_forged_header_is_not_trusted() {
    let _s = serial();
    let buf = &raw mut FORGED as *mut u8;
    let ptr = buf.wrapping_add(2 * 4096);
    // The old in-band header, just before the pointer: magic "kmemhuge", base, len, usable,
    // naming the whole buffer (and, for the eviction, more).
    let header = [0x6b6d_656d_6875_6765usize, buf as usize, 64 << 20, 2 * 4096];
    // SAFETY: our own static buffer; the header lies in its second page.
    unsafe { (ptr.sub(32) as *mut [usize; 4]).write(header) };
    // SAFETY: the misuse under test: `ptr` was never handed out.
    let r = reports(|| unsafe { raw::free(ptr) });
    assert_eq!(r, [0, 1, 0, 0], "one invalid-free report");
    // SAFETY: the misuse under test.
    assert_eq!(unsafe { raw::usable_size(ptr) }, 0);
    // The next large mallocs never return the buffer, and enough frees to evict every cached
    // mapping leave it mapped (it is read and written after).
    let mut blocks = Vec::new();
    for i in 0..40usize {
        let n = BIG + i * (1 << 20);
        let p = raw::malloc(n);
        assert!((p as usize).abs_diff(buf as usize) >= 64 << 20, "malloc returned the forged block");
        blocks.push((p, n));
    }
    for (p, _) in blocks {
        // SAFETY: live and ours.
        unsafe { raw::free(p) };
    }
    // SAFETY: our own buffer, still mapped.
    unsafe {
        buf.write(7);
        assert_eq!(buf.read(), 7);
        assert_eq!((ptr.sub(32) as *const [usize; 4]).read(), header);
    }
    keeps_working();
}

static GLOBAL_WORD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(5);

#[test]
fn stack_global_interior_and_wild_pointers_are_reported_not_freed() {
    let _s = serial();
    let mut on_stack = [0u8; 64];
    let stack = on_stack.as_mut_ptr();
    let global = GLOBAL_WORD.as_ptr() as *mut u8;
    let a = raw::malloc(BIG);
    fill(a, BIG, 9);
    let interior = a.wrapping_add(4096);
    let wild = 0x0000_7ead_0000_0000usize as *mut u8;
    for p in [stack, global, interior, wild] {
        let mut us = usize::MAX;
        // SAFETY: the misuse under test: none is a live block; none is dereferenced.
        let r = reports(|| us = unsafe { raw::usable_size(p) });
        assert_eq!((us, r), (0, [0; 4]), "malloc_usable_size({p:?}) is 0, unreported, as glibc's");
        // SAFETY: as above.
        let r = reports(|| unsafe { raw::free(p) });
        assert_eq!(r, [0, 1, 0, 0], "free({p:?}): one invalid-free report");
        let mut n = core::ptr::null_mut();
        // SAFETY: as above.
        let r = reports(|| n = unsafe { raw::realloc_aligned(p, None, 100, 16) });
        assert_eq!((n, r), (core::ptr::null_mut(), [0, 0, 1, 0]), "realloc({p:?}): null, one report");
    }
    assert_eq!(on_stack[0], 0);
    assert_eq!(GLOBAL_WORD.load(std::sync::atomic::Ordering::Relaxed), 5);
    // The large block is untouched and still live.
    check(a, BIG, 9);
    // SAFETY: live.
    assert!(unsafe { raw::usable_size(a) } >= BIG);
    // SAFETY: live and ours.
    let r = reports(|| unsafe { raw::free(a) });
    assert_eq!(r, [0; 4]);
    keeps_working();
}

#[test]
fn the_machine_s_reports_are_counted() {
    let _s = serial();
    // An interior pointer of a large kmalloc block (1 MiB: compound pages in the RAM) is
    // the machine's to report (`kfree`'s WARNING); kmem-alloc counts it.
    let a = raw::malloc(1 << 20);
    // SAFETY: the misuse under test: inside the RAM, not an object start.
    let r = reports(|| unsafe { raw::free(a.wrapping_add(8192)) });
    assert_eq!(r, [0, 0, 0, 1]);
    // SAFETY: live and ours.
    unsafe { raw::free(a) };
    keeps_working();
}

/// Run by [`abort_policy_aborts_after_the_first_report_line`] in a child process with
/// `KMEM_ABORT_ON_MISUSE=1`; it must not return.
#[test]
#[ignore = "run in a child process by abort_policy_aborts_after_the_first_report_line"]
fn child_double_free_under_abort_policy() {
    assert!(misuse::abort_on_misuse(), "{} was not read at boot", misuse::ABORT_ENV);
    let a = raw::malloc(BIG);
    // SAFETY: live and ours, then the misuse under test.
    unsafe {
        raw::free(a);
        raw::free(a);
    }
    println!("still running after a double free");
}

#[test]
fn abort_policy_aborts_after_the_first_report_line() {
    use std::os::unix::process::ExitStatusExt;
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_double_free_under_abort_policy", "--ignored", "--nocapture", "--test-threads=1"])
        .env(misuse::ABORT_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("kmem: ")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("kmem: free(): double free of a large block at 0x"), "{stderr}");
    assert!(!stdout.contains("still running"), "{stdout}");
    // Without the variable, the default: report and continue.
    assert!(!misuse::abort_on_misuse() || std::env::var_os(misuse::ABORT_ENV).is_some());
}

#[test]
fn wild_pointers_into_absent_hotplug_sections_are_reported_not_faulted() {
    let _s = serial();
    let warm = raw::malloc(64);
    let m = kmem_alloc::global::machine().expect("the global machine boots");
    assert!(m.memmap_is_dense(), "the vmemmap covers the hotplug reserve and reads as zero");
    let dm = m.direct_map();
    let limit = dm.limit.as_u64() as usize;
    let online = kmem_alloc::global::online_bytes() as usize;
    assert!(limit > online + (128 << 20), "an absent section lies below the direct-map limit");
    // The last bytes of the reserve, and the first object slot of the section after the
    // online memory: both in sections that are absent, with zero vmemmap slots.
    let first_absent = online.next_multiple_of(128 << 20);
    for pa in [limit - 64, first_absent + 64] {
        let p = (dm.base.as_usize() + pa) as *mut u8;
        // SAFETY: the misuse under test: nothing is allocated there; nothing dereferences it.
        let r = reports(|| unsafe { raw::free(p) });
        // Inside the machine's RAM mapping: the machine judges it (kfree's warning).
        assert_eq!(r, [0, 0, 0, 1], "free({p:?}) at pa {pa:#x}: one machine report");
    }
    // SAFETY: ours, live.
    unsafe { raw::free(warm) };
    keeps_working();
}
