//! Misuse of the process's allocator: what kmem-alloc reports itself, how it is counted, and
//! the policy for every report of the global machine.
//!
//! kmem-alloc checks what only it can: pointers outside the machine's RAM (blocks above
//! 4 MiB are host mappings, `huge.rs`). A pointer it does not own is reported with one
//! line on stderr and nothing changes:
//!
//! | call | outcome | line on stderr |
//! |---|---|---|
//! | `free(p)`, `p` a large block (above 4 MiB) already freed | no-op | `kmem: free(): double free of a large block at 0x<p>` |
//! | `free(p)`, `p` neither in kmem's RAM nor a live large block (stack, global, wild, interior pointer of a large block, a forged header) | no-op | `kmem: free(): invalid pointer 0x<p>` |
//! | `realloc(p, n)`, `p` as in the line above (a freed large block included) | returns null, `p` untouched | `kmem: realloc(): invalid pointer 0x<p>` |
//! | `malloc_usable_size(p)`, `p` not kmem's and outside its RAM | returns 0 (as glibc) | none |
//!
//! Pointers inside the RAM are the machine's to judge (`kfree`'s checks, Linux's texts); its
//! reports reach `machine_report` through the machine's report sink
//! (`MachineBuilder::on_report`) and are counted as [`Misuse::Machine`] (`Info` reports are
//! not misuse and are not counted).
//!
//! **Policy** (read once at boot, from the environment): report and continue, the default;
//! with `KMEM_ABORT_ON_MISUSE=1`, `abort()` right after the first report line (of either
//! source), as glibc does for the misuse it detects. Every count is readable with [`count`].

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kmem::ReportKind;

/// A kind of misuse report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misuse {
    /// `free` of a large block already freed.
    DoubleFree = 0,
    /// `free` of a pointer kmem does not own (outside its RAM, not a live large block).
    InvalidFree = 1,
    /// `realloc` of a pointer kmem does not own (outside its RAM, not a live large block).
    InvalidRealloc = 2,
    /// A report of the global machine (`BUG: ...`, `WARNING: ...`), not `Info`.
    Machine = 3,
}

const KINDS: usize = 4;

static COUNTS: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];
static ABORT: AtomicBool = AtomicBool::new(false);

/// The environment variable that turns on the abort policy (`1`).
pub const ABORT_ENV: &str = "KMEM_ABORT_ON_MISUSE";

/// Reports of `kind` made in this process so far.
pub fn count(kind: Misuse) -> u64 {
    COUNTS[kind as usize].load(Ordering::Relaxed)
}

/// Reports of every kind made in this process so far.
pub fn total() -> u64 {
    COUNTS.iter().map(|c| c.load(Ordering::Relaxed)).sum()
}

/// Whether a report aborts the process.
pub fn abort_on_misuse() -> bool {
    ABORT.load(Ordering::Relaxed)
}

/// Sets the policy: abort on the first report (after its line) or report and continue.
pub fn set_abort_on_misuse(on: bool) {
    ABORT.store(on, Ordering::Relaxed);
}

/// At boot: the policy from [`ABORT_ENV`], read without allocating.
pub(crate) fn read_policy() {
    let name = c"KMEM_ABORT_ON_MISUSE";
    // SAFETY: a NUL-terminated name; getenv returns null or a NUL-terminated string, read at
    // once (the process's environment, as every C library reads it).
    let on = unsafe {
        let v = libc::getenv(name.as_ptr());
        !v.is_null() && *v == b'1' as libc::c_char && *v.add(1) == 0
    };
    set_abort_on_misuse(on);
}

/// A `fmt::Write` into a fixed buffer that drops what does not fit (no allocation: this
/// runs inside the process's allocator).
struct Line {
    buf: [u8; 128],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// The report line for `kind` about `p`.
fn text(kind: Misuse, p: usize, w: &mut dyn Write) -> fmt::Result {
    match kind {
        Misuse::DoubleFree => writeln!(w, "kmem: free(): double free of a large block at {p:#x}"),
        Misuse::InvalidFree => writeln!(w, "kmem: free(): invalid pointer {p:#x}"),
        Misuse::InvalidRealloc => writeln!(w, "kmem: realloc(): invalid pointer {p:#x}"),
        Misuse::Machine => Ok(()),
    }
}

/// Counts a misuse kmem-alloc found, writes its line to stderr and applies the policy.
#[cold]
pub(crate) fn report(kind: Misuse, p: *const u8) {
    COUNTS[kind as usize].fetch_add(1, Ordering::Relaxed);
    let mut line = Line { buf: [0; 128], len: 0 };
    let _ = text(kind, p as usize, &mut line);
    let _ = rustix::io::write(rustix::stdio::stderr(), &line.buf[..line.len]);
    after_report();
}

/// The global machine's report hook: its report is on stderr already; counts it and applies
/// the policy.
pub(crate) fn machine_report(kind: ReportKind) {
    if kind == ReportKind::Info {
        return;
    }
    COUNTS[Misuse::Machine as usize].fetch_add(1, Ordering::Relaxed);
    after_report();
}

fn after_report() {
    if abort_on_misuse() {
        // SAFETY: abort has no preconditions; it does not return.
        unsafe { libc::abort() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines() {
        let line = |k, p| {
            let mut l = Line { buf: [0; 128], len: 0 };
            text(k, p, &mut l).unwrap();
            String::from_utf8(l.buf[..l.len].to_vec()).unwrap()
        };
        assert_eq!(line(Misuse::InvalidFree, 0x7ffc_1234_5670), "kmem: free(): invalid pointer 0x7ffc12345670\n");
        assert_eq!(
            line(Misuse::DoubleFree, 0x7f00_0000_0000),
            "kmem: free(): double free of a large block at 0x7f0000000000\n"
        );
        assert_eq!(line(Misuse::InvalidRealloc, 0x10), "kmem: realloc(): invalid pointer 0x10\n");
    }
}
