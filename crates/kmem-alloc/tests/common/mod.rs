//! Helpers shared by the give-back tests (each test file is a process of its own, with kmem
//! as its global allocator).

/// The process's resident set, in KiB (`/proc/self/statm`).
pub fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    s.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4
}
