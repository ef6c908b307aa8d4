//! CPU-per-thread machines: taking a CPU at a thread's first use of the machine (CPU
//! online), giving it back at thread exit after the machine's CPU-offline teardown, and the
//! fallbacks when the pool is used up.
//!
//! - **Claim**: the first free CPU, scanning from `thread number % nr` so threads spread.
//!   With none free, CPUs whose owner thread has died without giving them back (killed
//!   before its exit handlers ran) are taken over (`tgkill(pid, tid, 0)` says `ESRCH`).
//!   With none of those either, the thread runs on the machine's overflow CPUs (shared
//!   slots, `mod.rs`) or, on a machine without them, **borrows** CPU `thread number % nr`
//!   for each outermost section by stopping it (slow: one `membarrier` per section); either
//!   way it tries to claim again every [`RECLAIM_EVERY`] slow entries.
//! - **Thread exit**: a `pthread_key_create` destructor (set for a thread when it first
//!   claims a CPU) runs the machine's offline hook on the CPU, still owned (drain the
//!   per-CPU page lists, flush the slab sheaves...), then frees it. A thread that allocates
//!   again from a later destructor claims a CPU again and re-arms the key (glibc runs
//!   destructors up to four rounds); whatever is left after that is taken over as above.
//! - **Machines by id**: the exit destructor finds each machine through a registry of weak
//!   references, so a thread that outlives a machine gives nothing back to it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use super::{thread_no, Cpus, Ctx, Own, CTX, NO_OWN};

/// A thread without a CPU of its own (on the overflow CPUs, or borrowing) tries to claim one
/// again after this many slow entries (careful sections, `current()` outside the fast paths).
pub(crate) const RECLAIM_EVERY: u32 = 256;

/// A thread that finds no free CPU looks for CPUs of dead threads (a `tgkill` for each
/// CPU's owner) at every this many attempts (each [`RECLAIM_EVERY`] slow entries apart),
/// not at the first: a few hundred threads beyond the pool, each asking the kernel about
/// every owner, spent a tenth of their time in those calls. (An owner dies without its
/// exit handlers only when killed alone, by a raw `exit` system call, or in a `fork`
/// child, which `after_fork_child` handles.)
pub(crate) const DEAD_SCAN_EVERY: u32 = 16;

/// CPU-per-thread machines alive, by id.
static REGISTRY: Mutex<Vec<(usize, Weak<Cpus>)>> = Mutex::new(Vec::new());

pub(super) fn register(cpus: &Arc<Cpus>) {
    let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    r.retain(|(_, w)| w.strong_count() > 0);
    r.push((cpus.id, Arc::downgrade(cpus)));
}

pub(super) fn unregister(id: usize) {
    let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    r.retain(|(i, _)| *i != id);
}

fn lookup(id: usize) -> Option<Arc<Cpus>> {
    let r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    r.iter().find(|(i, _)| *i == id).and_then(|(_, w)| w.upgrade())
}

fn gettid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Whether OS thread `tid` of this process still exists.
fn thread_alive(tid: i32) -> bool {
    // SAFETY: reading and restoring this thread's errno, which the C library call below may
    // set: the allocation that got here (a process's malloc) must leave it alone.
    let saved = unsafe { *libc::__errno_location() };
    // SAFETY: tgkill with signal 0 only checks that the thread exists.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, 0) };
    // SAFETY: as above.
    let alive = r == 0 || unsafe { *libc::__errno_location() } != libc::ESRCH;
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
    alive
}

/// The key whose destructor gives a thread's CPUs back.
fn exit_key() -> libc::pthread_key_t {
    use std::sync::OnceLock;
    static KEY: OnceLock<libc::pthread_key_t> = OnceLock::new();
    *KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is valid for writing; `on_thread_exit` lives as long as the process.
        let r = unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) };
        assert_eq!(r, 0, "pthread_key_create failed");
        key
    })
}

/// Creates the exit key now (a machine's build, before any thread claims a CPU): a key
/// created early has a low number, whose value glibc keeps without allocating.
pub(super) fn prepare() {
    exit_key();
}

extern "C" fn on_thread_exit(_: *mut libc::c_void) {
    CTX.with(|c| {
        for e in &c.owned {
            let o = e.get();
            if o.machine == 0 {
                continue;
            }
            if let Some(cpus) = lookup(o.machine) {
                cpus.offline(c, o);
            }
            e.set(NO_OWN);
        }
        c.set_own_machine(0, 0);
    });
}

impl Cpus {
    /// Claims a CPU of its own for the calling thread and makes it the owned fast path;
    /// `None` if every CPU is taken by a live thread.
    pub(super) fn claim(&self, c: &Ctx) -> Option<u32> {
        if let Some(o) = c.owned.iter().map(|e| e.get()).find(|o| o.machine == self.id) {
            // Owned already (the fast path pointed at another machine).
            self.set_fast(c, o);
            return Some(o.cpu);
        }
        if c.borrowed.get() != 0 {
            // Borrowing: retry only now and then (each attempt scans the pool).
            let n = c.borrowed.get() + 1;
            c.borrowed.set(if n > RECLAIM_EVERY { 0 } else { n });
            if n <= RECLAIM_EVERY {
                return None;
            }
        }
        let me = thread_no(c);
        let tid = gettid();
        let nr = self.owned.len() as u32;
        let start = me % nr;
        let order = (0..nr).map(|i| ((start + i) % nr) as usize);
        // A warm CPU first (its caches are full), then any free one, then a dead thread's.
        let warm = self.warm_free.load(Ordering::Relaxed) > 0;
        let got = order
            .clone()
            .find(|&i| warm && self.owned[i].warm(false) && self.owned[i].claim(me, tid))
            .or_else(|| order.clone().find(|&i| self.owned[i].claim(me, tid)))
            .or_else(|| {
                let n = c.failed_claims.get() + 1;
                c.failed_claims.set(if n >= DEAD_SCAN_EVERY { 0 } else { n });
                if n < DEAD_SCAN_EVERY {
                    return None;
                }
                order.clone().find(|&i| {
                    let cpu = &self.owned[i];
                    let owner = cpu.owner();
                    owner != me && !thread_alive(cpu.tid()) && cpu.claim_from(owner, me, tid)
                })
            });
        let Some(i) = got else {
            c.borrowed.set(1);
            return None;
        };
        if self.owned[i].warm(true) {
            self.warm_free.fetch_sub(1, Ordering::Relaxed);
        }
        c.borrowed.set(0);
        // Before the thread's first section of it: the CPU comes online (its fast table
        // written: the fast paths test no entry).
        self.cpu_up(i as u32);
        let o = Own { machine: self.id, cpu: i as u32, state: &self.owned[i] };
        self.remember(c, o);
        self.set_fast(c, o);
        // Last, once the CPU is ours: glibc may allocate for a new key's value, and that
        // allocation then finds the CPU claimed.
        // SAFETY: a key from `pthread_key_create`; any non-null value arms the destructor.
        unsafe { libc::pthread_setspecific(exit_key(), std::ptr::dangling::<libc::c_void>()) };
        Some(i as u32)
    }

    fn set_fast(&self, c: &Ctx, o: Own) {
        // No longer an overflow thread: its shared home and fast pin go.
        c.home_machine.set(0);
        c.fast_machine.set(0);
        c.own_cpu.set(o.cpu);
        c.own_state.set(o.state);
        // SAFETY: `o.state` is one of this machine's owned CPUs.
        c.own_area.set(unsafe { &*o.state }.area.load(Ordering::Relaxed));
        c.set_own_machine(self.id, self.gate());
    }

    /// Records an owned CPU in the thread's table, dropping entries of machines that are
    /// gone if it is full.
    fn remember(&self, c: &Ctx, o: Own) {
        if let Some(e) = c.owned.iter().find(|e| e.get().machine == 0) {
            e.set(o);
            return;
        }
        for e in &c.owned {
            if lookup(e.get().machine).is_none() {
                e.set(NO_OWN);
            }
        }
        let e = c.owned.iter().find(|e| e.get().machine == 0).expect("a thread owns CPUs of more than 8 machines");
        e.set(o);
    }

    /// The CPU a thread without one of its own borrows for its sections.
    pub(super) fn borrow_cpu_no(&self, c: &Ctx) -> u32 {
        thread_no(c) % self.owned.len() as u32
    }

    /// Thread exit: the offline teardown on the thread's CPU `o` (still owned), then the CPU
    /// goes back to the pool. While fewer than the warm limit are free and warm, the CPU
    /// skips the teardown and keeps its caches for the next thread (as a real CPU's caches
    /// outlive the tasks that ran on it); memory pressure still reaches them (`drain_all_pages`
    /// and `kmem_cache_shrink` run as every CPU, free ones included).
    fn offline(&self, c: &Ctx, o: Own) {
        let limit = self.warm_limit.load(Ordering::Relaxed);
        let keep_warm = limit > 0
            && self
                .warm_free
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < limit).then_some(n + 1))
                .is_ok();
        if keep_warm {
            self.owned[o.cpu as usize].set_warm();
        } else {
            self.set_fast(c, o);
            let hook = self.hook.read().unwrap_or_else(|e| e.into_inner());
            if let Some(h) = hook.as_ref() {
                h(o.cpu);
            }
        }
        c.set_own_machine(0, 0);
        self.owned[o.cpu as usize].release();
    }
}
