//! Helpers shared by the give-back and large-block tests (each test file is a process of its
//! own, with kmem as its global allocator). Not every file uses every helper.
#![allow(dead_code)]

/// The process's resident set, in KiB (`/proc/self/statm`).
pub fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    s.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4
}

/// Minor page faults so far (`getrusage`): of the whole process (`libc::RUSAGE_SELF`) or of
/// the calling thread alone (`libc::RUSAGE_THREAD`).
pub fn minor_faults(who: libc::c_int) -> i64 {
    let mut ru = core::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a valid out-pointer for one rusage.
    assert_eq!(unsafe { libc::getrusage(who, ru.as_mut_ptr()) }, 0);
    // SAFETY: initialised by getrusage.
    unsafe { ru.assume_init() }.ru_minflt
}

/// Asserts that a child run of a test binary (an `#[ignore]`d test run with `--exact`)
/// succeeded and printed `child done`; shows its output if not.
pub fn assert_child_done(out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("child done"),
        "{:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
