//! KFENCE's report texts (`mm/kfence/report.c`): the title, the access line, the object
//! (`kfence-#N: 0x...-0x..., size=.., cache=..`), its allocation and free records, and the
//! CPU line, between the lines of `=` Linux prints. Call sites stand where Linux prints
//! stack traces; a fault's "function" is the faulting instruction's address, printed as
//! `%pS` prints an address it has no symbol for.

#![forbid(unsafe_code)]

use core::fmt::{self, Write};
use core::panic::Location;

use super::meta::{ErrorType, ObjectState, Snap, TrackSnap};
use super::KfenceFault;
use crate::platform::TaskId;

const RULE: &str = "==================================================================";

/// What is reported.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Error {
    /// A guard page was accessed.
    Oob { fault: KfenceFault },
    /// A freed object's page was accessed.
    Uaf { fault: KfenceFault },
    /// The canary around an object was damaged (found at free): the first bad byte and up
    /// to 16 bytes from it (`len` of them shown).
    Corruption { addr: usize, bytes: [u8; 16], len: usize, caller: &'static Location<'static> },
    /// A fault in the pool near no object.
    Invalid { fault: KfenceFault },
    /// A free of something that is not a live object's start.
    InvalidFree { addr: usize, caller: &'static Location<'static> },
}

impl Error {
    pub(crate) fn error_type(&self) -> ErrorType {
        match self {
            Error::Oob { .. } => ErrorType::Oob,
            Error::Uaf { .. } => ErrorType::Uaf,
            Error::Corruption { .. } => ErrorType::Corruption,
            Error::Invalid { .. } => ErrorType::Invalid,
            Error::InvalidFree { .. } => ErrorType::InvalidFree,
        }
    }
}

/// `%pS` of a "function": a call site, or an instruction address.
enum Site {
    Caller(&'static Location<'static>),
    Ip(usize),
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Site::Caller(l) => write!(f, "{l}"),
            Site::Ip(ip) => write!(f, "0x{ip:x}"),
        }
    }
}

fn access(is_write: bool) -> &'static str {
    if is_write {
        "write"
    } else {
        "read"
    }
}

/// `kfence_report_error()`.
pub(crate) fn write_report(
    w: &mut dyn Write,
    e: &Error,
    obj: Option<&Snap>,
    now: u64,
    cpu: u32,
    task: &TaskId,
) -> fmt::Result {
    writeln!(w, "{RULE}")?;
    let idx = obj.map_or(0, |o| o.idx);
    let site = match *e {
        Error::Oob { fault } | Error::Uaf { fault } | Error::Invalid { fault } => Site::Ip(fault.ip),
        Error::Corruption { caller, .. } | Error::InvalidFree { caller, .. } => Site::Caller(caller),
    };
    match *e {
        Error::Oob { fault } => {
            let a = access(fault.is_write);
            writeln!(w, "BUG: KFENCE: out-of-bounds {a} in {site}\n")?;
            let o = obj.expect("an out-of-bounds report names its object");
            let left = fault.addr < o.addr;
            let dist = if left { o.addr - fault.addr } else { fault.addr - o.addr };
            let side = if left { "left" } else { "right" };
            writeln!(w, "Out-of-bounds {a} at 0x{:016x} ({dist}B {side} of kfence-#{idx}):", fault.addr)?;
        }
        Error::Uaf { fault } => {
            let a = access(fault.is_write);
            writeln!(w, "BUG: KFENCE: use-after-free {a} in {site}\n")?;
            writeln!(w, "Use-after-free {a} at 0x{:016x} (in kfence-#{idx}):", fault.addr)?;
        }
        Error::Corruption { addr, bytes, len, .. } => {
            writeln!(w, "BUG: KFENCE: memory corruption in {site}\n")?;
            write!(w, "Corrupted memory at 0x{addr:016x} [")?;
            for (k, b) in bytes[..len].iter().enumerate() {
                if *b == super::core_ops::canary(addr + k) {
                    w.write_str(" .")?;
                } else {
                    write!(w, " 0x{b:02x}")?;
                }
            }
            writeln!(w, " ] (in kfence-#{idx}):")?;
        }
        Error::Invalid { fault } => {
            let a = access(fault.is_write);
            writeln!(w, "BUG: KFENCE: invalid {a} in {site}\n")?;
            writeln!(w, "Invalid {a} at 0x{:016x}:", fault.addr)?;
        }
        Error::InvalidFree { addr, .. } => {
            writeln!(w, "BUG: KFENCE: invalid free in {site}\n")?;
            match obj {
                Some(_) => writeln!(w, "Invalid free of 0x{addr:016x} (in kfence-#{idx}):")?,
                None => writeln!(w, "Invalid free of 0x{addr:016x}:")?,
            }
        }
    }
    writeln!(w, " {site}")?;
    if let Some(o) = obj {
        writeln!(w)?;
        print_object(w, o, now)?;
    }
    writeln!(w, "\nCPU: {cpu} PID: {} Comm: {}", task.pid, task.comm())?;
    writeln!(w, "{RULE}")
}

/// `kfence_print_object()`: the object line and its records.
pub(crate) fn print_object(w: &mut dyn Write, o: &Snap, now: u64) -> fmt::Result {
    let end = o.addr + o.size.max(1) - 1;
    writeln!(w, "kfence-#{}: 0x{:016x}-0x{end:016x}, size={}, cache={}\n", o.idx, o.addr, o.size, o.cache_name())?;
    print_track(w, "allocated", &o.alloc, now)?;
    if o.state == ObjectState::Freed {
        writeln!(w)?;
        print_track(w, "freed", &o.free, now)?;
    }
    Ok(())
}

/// `kfence_print_stack()`: `<what> by task P on cpu C at S.UUUUUUs (S.UUUUUUs ago):` and the
/// call site.
fn print_track(w: &mut dyn Write, what: &str, t: &TrackSnap, now: u64) -> fmt::Result {
    let ago = now.saturating_sub(t.ts_ns);
    writeln!(
        w,
        "{what} by task {} on cpu {} at {}.{:06}s ({}.{:06}s ago):",
        t.pid,
        t.cpu,
        t.ts_ns / 1_000_000_000,
        t.ts_ns % 1_000_000_000 / 1000,
        ago / 1_000_000_000,
        ago % 1_000_000_000 / 1000
    )?;
    match t.caller {
        Some(l) => writeln!(w, " {l}"),
        None => writeln!(w, " (no call site)"),
    }
}
