//! Under an address-space limit (`RLIMIT_AS`, `ulimit -v`), the machine's hotplug reserve
//! is sized to fit (`global::hotplug_max`): the machine boots and grows. Before, its 64 GiB
//! reserve could not be mapped, the machine never booted, and allocations failed once the
//! bootstrap arena was used up (Python could not start under `ulimit -v 2000000`). The test
//! re-runs this binary with the limit set, as its own process (the machine is booted by the
//! first allocation, before any test runs).

use std::alloc::{GlobalAlloc, Layout};
use std::os::unix::process::CommandExt;
use std::process::Command;

use kmem_alloc::{global, KmemAlloc};

#[global_allocator]
static A: KmemAlloc = KmemAlloc;

mod common;

const LIMIT: u64 = 2 << 30;

#[test]
#[ignore = "run in a child process by the_machine_boots_and_grows_under_an_address_space_limit"]
fn child_allocates_under_the_limit() {
    let m = global::machine().expect("the machine booted under the limit");
    assert!(global::hotplug_max() <= LIMIT / 2, "a reserve of {} bytes", global::hotplug_max());
    // 400 MB of small blocks: past the boot section, so the machine grows.
    let l = Layout::from_size_align(200, 8).unwrap();
    let blocks: Vec<usize> = (0..2_000_000)
        .map(|i| {
            // SAFETY: a non-zero size.
            let p = unsafe { A.alloc(l) };
            assert!(!p.is_null(), "allocation {i} failed");
            // SAFETY: a fresh block of 200 bytes.
            unsafe { p.write(i as u8) };
            p as usize
        })
        .collect();
    assert!(global::online_bytes() > global::BOOT_RAM, "the machine grew");
    for (i, p) in blocks.into_iter().enumerate() {
        // SAFETY: allocated above with `l`, written, freed once.
        unsafe {
            assert_eq!(*(p as *const u8), i as u8);
            A.dealloc(p as *mut u8, l);
        }
    }
    m.verify().unwrap();
    println!("child done");
}

#[test]
fn the_machine_boots_and_grows_under_an_address_space_limit() {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `r` is a valid, writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut r) }, 0);
    if r.rlim_max != libc::RLIM_INFINITY && r.rlim_max < LIMIT {
        // A tighter hard limit than the test's cannot be raised without privilege.
        println!(
            "SKIPPED: the_machine_boots_and_grows_under_an_address_space_limit: RLIMIT_AS hard limit {}",
            r.rlim_max
        );
        return;
    }
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_allocates_under_the_limit", "--ignored", "--nocapture", "--test-threads=1"]);
    cmd.env_remove("KMEM_RAM_MAX");
    // SAFETY: only `setrlimit` runs between fork and exec (async-signal-safe, no allocation).
    unsafe {
        cmd.pre_exec(|| {
            let r = libc::rlimit { rlim_cur: LIMIT, rlim_max: LIMIT };
            if libc::setrlimit(libc::RLIMIT_AS, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Before the fix, the child hung (asleep, once the bootstrap arena ran out): two minutes
    // at most, then a failure rather than a hung test.
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the child ran for two minutes under the limit: hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    common::assert_child_done(&out);
}
