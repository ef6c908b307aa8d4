//! KFENCE faults on the hosted platform: the machine's page-fault handler.
//!
//! A KFENCE pool lies in the machine's vmalloc range; its guard pages and freed objects are
//! `PROT_NONE`, so a bad access raises `SIGSEGV`. The first machine built with a pool
//! installs one process-wide `SIGSEGV` handler (`SA_SIGINFO | SA_ONSTACK`: it runs on the
//! thread's alternate signal stack), keeping the handler that was there before. Rust's
//! runtime gives its threads an 8 KiB signal stack, too small for the report path (formatting,
//! the report log) in a debug build, so while the handler is installed every thread gets a
//! 256 KiB one of ours on its first use of a hosted machine (and the thread that builds a
//! KFENCE machine at once); a `pthread_key_create` destructor unmaps it when the thread exits. Each machine with a pool puts an
//! alias of itself ([`kmem::Kmem::alias`]) in a fixed table of 64 slots. The handler asks
//! each registered machine's [`kmem::Kmem::kfence_handle_page_fault`] (a range compare
//! first); the owner reports, maps the page back, and the handler returns, so the access is
//! retried and goes on, as in Linux. A fault at any other address goes to the previous
//! handler: called if it was a function, else the default action is restored and the
//! access retried, which kills the process as before (Rust's own stack-overflow handler is
//! reached this way).
//!
//! Async-signal safety: the table is atomics; a machine being dropped first empties its slot,
//! then waits until no handler is using it. KFENCE's fault path takes only the object's
//! record lock (never held around an access to the pool) and makes one `mmap`. The report
//! goes through the machine's report sink, which formats into a `String` and appends to the
//! log under its mutex: that is safe here because the fault is synchronous, raised by an
//! access of kmem-managed memory, which neither the host allocator nor the log makes, so the
//! faulting thread is inside neither. A machine whose table slot could not be had (more than
//! 64 with pools) keeps its pool, but its faults are not handled.
//!
//! Linux's equivalent: the `kfence_handle_page_fault` call in x86's `page_fault_oops`.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::OnceLock;

use kmem::kfence::KfenceFault;
use kmem::Kmem;

use crate::platform::HostedPlatform;

const SLOTS: usize = 64;

/// Bytes of the alternate signal stack KFENCE gives threads (the report path formats text;
/// Rust's runtime gives threads `SIGSTKSZ`, 8 KiB, too little for it in a debug build).
const SIGNAL_STACK: usize = 256 << 10;

/// Set once the handler is installed: threads then get a large signal stack on first use.
static INSTALLED: AtomicBool = AtomicBool::new(false);

struct Slot {
    kmem: AtomicPtr<Kmem<HostedPlatform>>,
    users: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)] // an initialiser for the table only
const EMPTY: Slot = Slot { kmem: AtomicPtr::new(std::ptr::null_mut()), users: AtomicUsize::new(0) };
static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];

/// The `SIGSEGV` action that was installed before ours.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// A machine's place in the handler's table; dropping it removes the machine.
#[derive(Debug)]
pub(crate) struct Registration {
    slot: usize,
}

impl Registration {
    /// Registers `kmem` if it has a KFENCE pool (installing the handler on first use).
    pub(crate) fn new(kmem: &Kmem<HostedPlatform>) -> Option<Registration> {
        if kmem.kfence_stats().num_objects == 0 {
            return None;
        }
        install();
        ensure_signal_stack();
        // SAFETY: the alias lives in the table until `Registration::drop`, which the machine
        // runs before its memory goes (Machine::drop), and which waits for the handlers.
        let alias = Box::into_raw(Box::new(unsafe { kmem.alias() }));
        for (i, s) in TABLE.iter().enumerate() {
            if s.kmem.compare_exchange(std::ptr::null_mut(), alias, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                return Some(Registration { slot: i });
            }
        }
        // SAFETY: never published.
        drop(unsafe { Box::from_raw(alias) });
        None
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let s = &TABLE[self.slot];
        let p = s.kmem.swap(std::ptr::null_mut(), Ordering::SeqCst);
        while s.users.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
        if !p.is_null() {
            // SAFETY: made by `Box::into_raw` in `new`, out of the table, no handler uses it.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// Called on a thread's first use of a hosted machine.
pub(crate) fn thread_first_use() {
    if INSTALLED.load(Ordering::Relaxed) {
        ensure_signal_stack();
    }
}

/// `pthread_key_create`'s destructor for a thread's KFENCE signal stack: disables it if it
/// is still the thread's, then unmaps it. (A pthread key, not a Rust thread-local: a new
/// thread-local of kmem-hosted would get the local-exec TLS model in the `LD_PRELOAD`
/// library's PIE build, which cannot link (`R_X86_64_TPOFF32`), and one with `Drop` would
/// run a destructor in every thread of a process that uses kmem as its allocator; a process
/// without KFENCE machines never creates the key.)
extern "C" fn free_signal_stack(p: *mut libc::c_void) {
    // SAFETY: `p` is the mapping `ensure_signal_stack` made for this exiting thread; no
    // handler runs on it now (the thread is in its exit path, not in a handler).
    unsafe {
        let mut cur: libc::stack_t = std::mem::zeroed();
        libc::sigaltstack(std::ptr::null(), &mut cur);
        if cur.ss_sp == p {
            let off = libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
            libc::sigaltstack(&off, std::ptr::null_mut());
        }
        libc::munmap(p, SIGNAL_STACK);
    }
}

/// The key whose destructor frees signal stacks.
static STACK_KEY: OnceLock<Option<libc::pthread_key_t>> = OnceLock::new();

/// Gives the calling thread an alternate signal stack of [`SIGNAL_STACK`] bytes unless it
/// has one at least that large.
pub fn ensure_signal_stack() {
    let key = *STACK_KEY.get_or_init(|| {
        let mut k: libc::pthread_key_t = 0;
        // SAFETY: creating a key with a destructor of the right signature.
        (unsafe { libc::pthread_key_create(&mut k, Some(free_signal_stack)) } == 0).then_some(k)
    });
    let Some(key) = key else { return };
    // SAFETY: reading this thread's value of our key (null: no stack of ours yet); querying
    // the thread's signal stack; mapping fresh memory for a new one and installing it (the
    // old one, if any, stays its owner's to unmap).
    unsafe {
        if !libc::pthread_getspecific(key).is_null() {
            return;
        }
        let mut cur: libc::stack_t = std::mem::zeroed();
        if libc::sigaltstack(std::ptr::null(), &mut cur) != 0
            || (cur.ss_flags & libc::SS_DISABLE == 0 && cur.ss_size >= SIGNAL_STACK)
            || cur.ss_flags & libc::SS_ONSTACK != 0
        {
            return;
        }
        let p = libc::mmap(
            std::ptr::null_mut(),
            SIGNAL_STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return;
        }
        let st = libc::stack_t { ss_sp: p, ss_flags: 0, ss_size: SIGNAL_STACK };
        if libc::sigaltstack(&st, std::ptr::null_mut()) == 0 {
            libc::pthread_setspecific(key, p);
        } else {
            libc::munmap(p, SIGNAL_STACK);
        }
    }
}

fn install() {
    INSTALLED.store(true, Ordering::Relaxed);
    PREVIOUS.get_or_init(|| {
        // SAFETY: plain-data structs, zero is a valid value; `handler` has the signature
        // SA_SIGINFO expects.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = handler as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
            libc::sigemptyset(&mut act.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            let rc = libc::sigaction(libc::SIGSEGV, &act, &mut old);
            assert_eq!(rc, 0, "sigaction(SIGSEGV) failed");
            old
        }
    });
}

/// What the fault says: address, write, instruction pointer.
///
/// # Safety
///
/// `info` and `ctx` are the kernel's arguments to an `SA_SIGINFO` handler.
unsafe fn decode(info: *mut libc::siginfo_t, ctx: *mut libc::c_void) -> KfenceFault {
    // SAFETY: the kernel passes a valid siginfo for SIGSEGV.
    let addr = unsafe { (*info).si_addr() } as usize;
    #[cfg(target_arch = "x86_64")]
    let (is_write, ip) = {
        let uc = ctx as *const libc::ucontext_t;
        // SAFETY: `ctx` is the kernel's ucontext for this signal; REG_ERR holds the page
        // fault's error code (bit 1: write), REG_RIP the faulting instruction.
        let g = unsafe { &(*uc).uc_mcontext.gregs };
        (g[libc::REG_ERR as usize] & 2 != 0, g[libc::REG_RIP as usize] as usize)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (is_write, ip) = {
        let _ = ctx;
        (false, 0)
    };
    KfenceFault { addr, is_write, ip }
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: called by the kernel as an SA_SIGINFO handler.
    let fault = unsafe { decode(info, ctx) };
    for s in &TABLE {
        s.users.fetch_add(1, Ordering::SeqCst);
        let p = s.kmem.load(Ordering::SeqCst);
        // SAFETY: a non-null slot holds a live alias: `Registration::drop` empties the slot
        // and then waits for `users` to drop to 0 before freeing it.
        let handled = !p.is_null() && unsafe { &*p }.kfence_handle_page_fault(fault);
        s.users.fetch_sub(1, Ordering::SeqCst);
        if handled {
            return;
        }
    }
    chain(sig, info, ctx);
}

/// Hands the fault to the handler that was installed before ours.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let Some(old) = PREVIOUS.get() else { return };
    let h = old.sa_sigaction;
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        // SAFETY: restoring the default action; the access is retried and kills the process
        // with SIGSEGV, as it would have without us.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGSEGV, &dfl, std::ptr::null_mut());
        }
    } else if old.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed as an SA_SIGINFO handler.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = unsafe { std::mem::transmute(h) };
        f(sig, info, ctx);
    } else {
        // SAFETY: the previous handler was installed as a plain handler.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
        f(sig);
    }
}
