//! kmem's own C and C++ programs (`tests/c`) under `LD_PRELOAD=libkmem_malloc.so`, some
//! compared with the same run on the system's malloc: the test of every export's edge cases
//! (`tests/c/edge_cases.c`), misuse and its reports, the first `malloc`'s cost, a loop over
//! 5-25 MiB blocks that must not live in the kernel; and checks of the library itself (its
//! TLS model, what it loads). Real programs (python3, git, cc, sort) are in
//! `tests/programs.rs`.
//!
//! The library under test is built once per test binary by [`lib`], as it is meant to be
//! deployed: release, `-C relocation-model=pie` (every TLS access of kmem's code is then
//! initial-exec, see the crate's README), in its own target directory,
//! `<target>/kmem-malloc-pie`, so it neither waits for nor disturbs the outer build. A program
//! that is not installed fails its test (`.ci/run` installs git, gcc, python3 and the
//! binutils), unless `KMEM_SKIP_MISSING_TOOLS=1`: then the test prints `SKIPPED: ...` and
//! passes without running. Timings (with and without kmem) are
//! printed: `cargo test -p kmem-malloc --test preload -- --nocapture`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;
use common::{check_ok, installed, lib, run, same_output, scratch};

fn compile_c(src: &str, exe: &Path, extra: &[&str]) -> bool {
    if !installed(src, "cc") {
        return false;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c").join(src);
    let out = Command::new("cc")
        .args(["-O1", "-fno-builtin", "-Wall", "-pthread", "-o"])
        .arg(exe)
        .arg(&src)
        .args(extra)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run cc");
    assert!(out.status.success(), "compiling {}: {}", src.display(), String::from_utf8_lossy(&out.stderr));
    true
}

/// Compiles `tests/c/<src>` with g++ (which the caller checked is installed) into `exe`.
fn compile_cxx(src: &str, exe: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c").join(src);
    let out = Command::new("g++")
        .args(["-O1", "-std=c++17", "-Wall", "-o"])
        .arg(exe)
        .arg(&src)
        .arg("-ldl")
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run g++");
    assert!(out.status.success(), "compiling {}: {}", src.display(), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn c_edge_cases_of_every_export() {
    let dir = scratch("edge_cases");
    let exe = dir.join("edge_cases");
    if !compile_c("edge_cases.c", &exe, &["-ldl"]) {
        return;
    }
    // On the system's malloc first, for reference (glibc differs where kmem documents a
    // choice of its own; those checks only run on kmem).
    let (sys, _) = run(Command::new(&exe), false);
    let sys_out = String::from_utf8_lossy(&sys.stdout);
    eprintln!("system malloc: {}", sys_out.lines().last().unwrap_or("(no output)"));

    let (km, t) = run(Command::new(&exe), true);
    let out = String::from_utf8_lossy(&km.stdout);
    eprintln!("kmem ({t:.2?}):\n{out}");
    assert!(
        km.status.success(),
        "edge cases failed under kmem ({}):\n{out}\n{}",
        km.status,
        String::from_utf8_lossy(&km.stderr)
    );
    assert!(out.lines().next() == Some("allocator: kmem"), "kmem_malloc_online_bytes not found: not running on kmem");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(out.contains(", 0 failed"), "{out}");
    // kmalloc's buckets, not glibc's chunk sizes (24, 24, 40, 104...).
    for (n, u) in [(1, 16), (17, 32), (100, 128), (1000, 1024)] {
        assert!(out.contains(&format!("malloc_usable_size(malloc({n})) = {u}\n")), "usable size of {n}: {out}");
    }
    let checks = out.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(checks >= 55, "only {checks} checks ran");
}

/// calloc of fresh memory touches nothing (`kmem::mm::zeroed`: the page allocator does not
/// clear a block nobody has written), and memory written and freed is cleared again.
/// `tests/c/calloc_fresh.c`: 64 MiB calloc'd grew the resident set by about 66 MiB before
/// (every block cleared), about 0.6 MiB after.
#[test]
fn calloc_of_fresh_memory_is_not_touched() {
    let dir = scratch("calloc_fresh");
    let exe = dir.join("calloc_fresh");
    if !compile_c("calloc_fresh.c", &exe, &[]) {
        return;
    }
    let (km, _) = run(Command::new(&exe), true);
    check_ok("calloc_fresh", true, &km);
    let out = String::from_utf8_lossy(&km.stdout);
    assert!(out.lines().any(|l| l == "ok"), "{out}");
    let growth: i64 = out
        .lines()
        .find_map(|l| l.strip_prefix("rss_growth_kb "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rss_growth_kb line: {out}"));
    assert!(growth < 16 << 10, "64 MiB of fresh calloc grew the resident set by {growth} kB: {out}");
}

/// C++ programs' deletes reach kmem (`src/cxx.rs`): `tests/c/cxx_delete.cpp` exercises every
/// form of `operator delete` (sized, array, aligned, nothrow; polymorphic and wrong sizes)
/// and says whether the sized delete it called is the library's. Needs `g++`, which `.ci/run`
/// installs; a machine without it skips this test with a `SKIPPED` line (the README's fresh
/// machine needs only a Rust toolchain, whose linker is `cc`).
#[test]
fn cxx_deletes_reach_kmem_with_their_sizes() {
    let dir = scratch("cxx_delete");
    let exe = dir.join("cxx_delete");
    if Command::new("g++").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        let _ = writeln!(
            std::io::stdout().lock(),
            "SKIPPED: cxx_deletes_reach_kmem_with_their_sizes: g++ is not installed"
        );
        return;
    }
    compile_cxx("cxx_delete.cpp", &exe);
    let (sys, _) = run(Command::new(&exe), false);
    check_ok("cxx_delete", false, &sys);
    assert!(String::from_utf8_lossy(&sys.stdout).starts_with("delete: other\n"));
    let (km, t) = run(Command::new(&exe), true);
    check_ok("cxx_delete", true, &km);
    let out = String::from_utf8_lossy(&km.stdout);
    eprintln!("kmem ({t:.2?}):\n{out}");
    assert!(out.starts_with("delete: kmem\n"), "the sized operator delete is not the library's:\n{out}");
    assert!(out.contains("summary: 5 checks, 0 failed"), "{out}");
    assert!(km.stderr.is_empty(), "nothing reported: {}", String::from_utf8_lossy(&km.stderr));

    // A program that replaces operator new and the unsized delete (a header of its own): the
    // sized and array deletes must reach its delete, as libstdc++'s defaults do
    // (`src/cxx.rs` forwards to them then).
    let exe = dir.join("cxx_replaced");
    compile_cxx("cxx_replaced.cpp", &exe);
    let (km, _) = run(Command::new(&exe), true);
    check_ok("cxx_replaced", true, &km);
    let out = String::from_utf8_lossy(&km.stdout);
    assert!(out.starts_with("ok: "), "the program's operator delete missed deletes:\n{out}");
    assert!(km.stderr.is_empty(), "nothing reported: {}", String::from_utf8_lossy(&km.stderr));
}

/// `tests/c/grow_maps.cpp`: threads whose heaps outgrow the boot RAM (the machine grows
/// instead of reclaiming) and buffers grown by `realloc` past 4 MiB (mappings resized, not
/// copied): the same output as on the system's malloc, and the machine grew.
#[test]
fn cxx_threads_outgrow_the_boot_ram() {
    if Command::new("g++").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        let _ = writeln!(std::io::stdout().lock(), "SKIPPED: cxx_threads_outgrow_the_boot_ram: g++ is not installed");
        return;
    }
    let dir = scratch("grow_maps");
    let exe = dir.join("grow_maps");
    compile_cxx("grow_maps.cpp", &exe);
    let (_, km) = same_output("grow_maps (4 threads, 200 MB of maps, 48 MiB reallocs)", || Command::new(&exe));
    let err = String::from_utf8_lossy(&km.stderr);
    let online: u64 = err
        .strip_prefix("allocator=kmem online=")
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("grow_maps did not run on kmem: {err}"));
    assert!(online > 128 << 20, "the machine grew past its boot RAM: {online} bytes online");
    assert_eq!(String::from_utf8_lossy(&km.stdout).lines().count(), 4);
}

/// The cases of `tests/c/misuse.c`.
const MISUSE_CASES: [&str; 5] = ["double_free", "realloc_freed", "forged_header", "bad_pointers", "machine_report"];

/// The report lines a run of `misuse.c` wrote on stderr, and those its stdout says to expect
/// (`expect LINE`, in order).
fn misuse_reports(out: &Output) -> (Vec<String>, Vec<String>) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let got = stderr
        .lines()
        .filter(|l| l.starts_with("kmem: ") || l.starts_with("WARNING: ") || l.starts_with("BUG"))
        .map(str::to_owned)
        .collect();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let want = stdout.lines().filter_map(|l| l.strip_prefix("expect ")).map(str::to_owned).collect();
    (got, want)
}

/// A machine report is matched by its prefix (`WARNING: `), kmem-alloc's lines exactly.
fn report_matches(got: &str, want: &str) -> bool {
    if want.starts_with("kmem: ") {
        got == want
    } else {
        got.starts_with(want)
    }
}

#[test]
fn misuse_is_one_report_line_and_changes_nothing() {
    let dir = scratch("misuse");
    let exe = dir.join("misuse");
    if !compile_c("misuse.c", &exe, &[]) {
        return;
    }
    for case in MISUSE_CASES {
        let mut c = Command::new(&exe);
        c.arg(case);
        let (out, _) = run(c, true);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("misuse {case}:\n{stdout}{stderr}");
        assert!(out.status.success(), "misuse {case}: {}\n{stdout}\n{stderr}", out.status);
        assert!(!stdout.contains("FAIL") && stdout.contains(", 0 failed"), "misuse {case}:\n{stdout}");
        assert!(!stderr.contains("panicked") && !stderr.contains("stack backtrace"), "misuse {case}: {stderr}");
        let (got, want) = misuse_reports(&out);
        assert!(!want.is_empty(), "misuse {case} expects no report:\n{stdout}");
        assert!(
            got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| report_matches(g, w)),
            "misuse {case}: reports on stderr\n{got:#?}\nexpected\n{want:#?}"
        );
    }
}

#[test]
fn abort_on_misuse_policy_aborts_after_the_first_report_line() {
    use std::os::unix::process::ExitStatusExt;
    let dir = scratch("misuse_abort");
    let exe = dir.join("misuse");
    if !compile_c("misuse.c", &exe, &[]) {
        return;
    }
    for case in MISUSE_CASES {
        let mut c = Command::new(&exe);
        c.arg(case).env("KMEM_ABORT_ON_MISUSE", "1");
        let (out, _) = run(c, true);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.signal(),
            Some(libc_sigabrt()),
            "misuse {case} under the abort policy: {}\n{stdout}",
            out.status
        );
        let (got, want) = misuse_reports(&out);
        assert_eq!(got.len(), 1, "misuse {case}: one report line, then abort: {got:#?}");
        assert!(report_matches(&got[0], &want[0]), "misuse {case}: {got:?} vs {want:?}");
        assert!(!stdout.contains("after the") && !stdout.contains("summary"), "misuse {case} went on:\n{stdout}");
    }
}

/// `SIGABRT` on Linux.
fn libc_sigabrt() -> i32 {
    6
}

/// Misuse among ordinary work (`tests/c/misuse_stress.c`): random mallocs, callocs, aligned
/// allocations and reallocs of 1 byte to 4 MiB, with double frees, frees and reallocs of
/// neighbour slots and interior pointers and reallocs of freed blocks mixed in, on one thread
/// and on three taking turns (so a block freed on one CPU is misused on another). No live
/// block may overlap another or lose its fill, no realloc of a non-block may return one, and
/// kmem writes exactly one report per misuse, each starting a line. (It found realloc
/// resizing freed blocks and kfree freeing kmem's own sheaves, 2026-12-07, and reports of large
/// objects cut at 4 KiB, which left the next report mid-line.)
#[test]
fn misuse_among_work_never_hands_a_block_out_twice() {
    let dir = scratch("misuse_stress");
    let exe = dir.join("misuse_stress");
    if !compile_c("misuse_stress.c", &exe, &[]) {
        return;
    }
    for (seed, threads) in [(1, 1), (2, 1), (3, 3)] {
        let mut c = Command::new(&exe);
        c.args(["40000", &seed.to_string(), &threads.to_string()]);
        let (out, _) = run(c, true);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.ends_with("ok\n"),
            "seed {seed}, {threads} threads: {}\n{stdout}",
            out.status
        );
        assert!(!stderr.contains("panicked"), "seed {seed}: {stderr}");
        let misuses: usize = stdout
            .lines()
            .find_map(|l| l.strip_prefix("misuses "))
            .and_then(|n| n.parse().ok())
            .expect("the misuse count");
        let reports = stderr
            .lines()
            .filter(|l| l.starts_with("BUG ") || l.starts_with("WARNING: ") || l.starts_with("kmem: "))
            .count();
        eprintln!("seed {seed}, {threads} threads: {misuses} misuses, {reports} reports");
        assert!(misuses > 500, "the stress misused too little: {misuses}");
        assert_eq!(reports, misuses, "seed {seed}, {threads} threads: one report line per misuse");
    }
}
/// Reports written by several threads at once come out whole (`tests/c/misuse_threads.c`: 8
/// threads, 100 double frees each of a 2000-byte block, whose reports of several KiB the
/// process machine writes in more than one `write`): one `BUG ` line per double free, and no
/// line where one report's text runs into another's. (Before reports took turns, 8 threads
/// of 200 rounds split 1,000-1,500 of their hex-dump lines.)
#[test]
fn concurrent_misuse_reports_are_written_whole() {
    let dir = scratch("misuse_threads");
    let exe = dir.join("misuse_threads");
    if !compile_c("misuse_threads.c", &exe, &[]) {
        return;
    }
    let mut c = Command::new(&exe);
    c.args(["8", "100"]);
    let (out, _) = run(c, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout == "ok\n", "{}: {stdout}", out.status);
    let bugs = stderr.lines().filter(|l| l.starts_with("BUG ")).count();
    assert_eq!(bugs, 800, "one report per double free");
    let mixed: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            let later = |m: &str| l.get(1..).is_some_and(|rest| rest.contains(m));
            ["BUG kmalloc", "Slab 0x", "Object   ", "Object 0x", "FIX kmalloc"].iter().any(|m| later(m))
                || (l.contains("=====") && !l.chars().all(|c| c == '='))
                || (l.contains("-----") && !l.chars().all(|c| c == '-'))
        })
        .take(3)
        .collect();
    assert!(mixed.is_empty(), "reports ran into one another: {mixed:#?}");
}

/// The first `malloc` of a process boots kmem's machine: lazily (`kmem_alloc::global`), so it
/// costs a few dozen page faults, not the 720 a boot that wrote a whole section of
/// descriptors and copied them into private memory cost (counted, not timed: the faults were
/// most of the time, about 2.5 us each on this project's VM).
#[test]
fn first_malloc_boots_lazily() {
    let dir = scratch("startup");
    let exe = dir.join("startup");
    if !compile_c("startup.c", &exe, &[]) {
        return;
    }
    let (out, _) = run(Command::new(&exe), true);
    check_ok("startup probe", true, &out);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("startup ")).expect("startup line");
    let w: Vec<&str> = line.split_whitespace().skip(1).collect();
    let v: std::collections::HashMap<&str, u64> = w.chunks(2).map(|p| (p[0], p[1].parse().unwrap())).collect();
    eprintln!("{line}");
    // The boot RAM mapping has a 1 MiB hole where its section's descriptors were carved:
    // they live in the machine's vmemmap range (kmem-hosted's `MachineBuilder::vmemmap`).
    assert!(
        ((120 << 10)..=(128 << 10)).contains(&v["mapping_kb"]),
        "the block is in the machine's 128 MiB of boot RAM: a mapping of {} kB",
        v["mapping_kb"]
    );
    assert!(v["minflt"] < 150, "the first malloc took {} page faults", v["minflt"]);
    assert!(v["ram_pages"] < 100, "booting touched {} pages of the machine's RAM", v["ram_pages"]);
}

/// `key value` pairs of the loop program's `rusage` line.
fn rusage(out: &[u8]) -> std::collections::HashMap<String, i64> {
    let out = String::from_utf8_lossy(out);
    let line = out.lines().find(|l| l.starts_with("rusage ")).expect("rusage line");
    let w: Vec<&str> = line.split_whitespace().skip(1).collect();
    w.chunks(2).map(|p| (p[0].to_owned(), p[1].parse().unwrap())).collect()
}

/// Memory-management system calls `cmd` makes (mmap, munmap, mremap, madvise, brk), counted
/// by `strace -f -c`; `None` if strace is missing or cannot trace here.
fn mm_syscalls(cmd: Command) -> Option<u64> {
    let out = Command::new("strace")
        .args(["-f", "-c", "-e", "trace=mmap,munmap,mremap,madvise,brk", "-o", "/dev/stderr", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .stdout(Stdio::null())
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    // "100.00    0.000833          11        73 [errors]  total": the fourth column is calls.
    let total = err.lines().find(|l| l.trim_end().ends_with("total"))?;
    total.split_whitespace().nth(3)?.parse().ok()
}

#[test]
fn large_blocks_loop_stays_out_of_the_kernel() {
    let dir = scratch("huge_loop");
    let exe = dir.join("huge_loop");
    if !compile_c("huge_loop.c", &exe, &[]) {
        return;
    }
    const ITERS: i64 = 2000;
    let make = || {
        let mut c = Command::new(&exe);
        c.arg(ITERS.to_string());
        c
    };
    let (sys, km) = same_output("loop: 2000 x malloc/free of 5-25 MiB, every page touched", make);
    let (s, k) = (rusage(&sys.stderr), rusage(&km.stderr));
    eprintln!("loop rusage: system malloc {s:?}\nloop rusage: kmem {k:?}");
    // A fresh mapping per iteration would fault in every page of it: 1280-6400 faults per
    // iteration, millions in all, and most of the time in the kernel.
    assert!(k["minflt"] < 25 * ITERS, "kmem: {} page faults for {ITERS} iterations", k["minflt"]);
    assert!(k["sys_us"] < 400_000, "kmem: {} us in the kernel", k["sys_us"]);
    assert!(k["wall_us"] < 5_000_000, "kmem: the loop took {} us", k["wall_us"]);
    let mut c = make();
    c.env("LD_PRELOAD", lib());
    match mm_syscalls(c) {
        Some(n) => {
            eprintln!("loop: {n} memory-management system calls under kmem (strace)");
            assert!(n < ITERS as u64 / 10, "kmem: {n} mmap/munmap/mremap/madvise/brk calls for {ITERS} iterations");
        }
        None => eprintln!("strace unavailable: system calls not counted (page faults and kernel time were)"),
    }
}

#[test]
fn tls_of_kmem_code_is_initial_exec() {
    let so = lib();
    if !installed("tls_of_kmem_code_is_initial_exec", "objdump")
        || !installed("tls_of_kmem_code_is_initial_exec", "readelf")
    {
        return;
    }
    let dis = Command::new("objdump").args(["-d", "-C", "--no-show-raw-insn"]).arg(so).output().expect("run objdump");
    assert!(dis.status.success());
    let dis = String::from_utf8_lossy(&dis.stdout);
    // Functions that call __tls_get_addr (general or local dynamic TLS).
    let mut func = "";
    let mut dynamic: Vec<&str> = Vec::new();
    for l in dis.lines() {
        if l.ends_with(">:") {
            func = l.split_once(' ').map_or(l, |(_, f)| f);
        } else if l.contains("call") && l.contains("<__tls_get_addr") && !dynamic.contains(&func) {
            dynamic.push(func);
        }
    }
    eprintln!("functions with dynamic TLS accesses: {dynamic:#?}");
    let ours: Vec<_> = dynamic.iter().filter(|f| f.contains("kmem")).collect();
    assert!(ours.is_empty(), "kmem code uses dynamic TLS: {ours:#?}");
    // What is left is the precompiled std's (panics, thread::current, stderr, TLS
    // destructors, and thread start-up, which kmem-hosted's kswapd threads link in; the
    // library never starts them), none of which the allocation path reaches.
    assert!(
        dynamic.iter().all(|f| f.starts_with("<std::") || f.starts_with("<<std::") || f.starts_with("<<&std::")),
        "{dynamic:#?}"
    );
    let dynsec = Command::new("readelf").args(["-d"]).arg(so).output().expect("run readelf");
    let dynsec = String::from_utf8_lossy(&dynsec.stdout);
    assert!(dynsec.contains("STATIC_TLS"), "no DF_STATIC_TLS flag: {dynsec}");
}

/// Preloading kmem loads no library but kmem: the unwinder the standard library needs is
/// linked in statically (`build.rs`), not `libgcc_s.so.1`, which costs every process about
/// 0.08 ms to load.
#[test]
fn library_loads_nothing_but_libc() {
    let so = lib();
    if !installed("library_loads_nothing_but_libc", "readelf") {
        return;
    }
    let dynsec = Command::new("readelf").args(["-d"]).arg(so).output().expect("run readelf");
    let dynsec = String::from_utf8_lossy(&dynsec.stdout);
    let needed: Vec<&str> =
        dynsec.lines().filter(|l| l.contains("(NEEDED)")).filter_map(|l| l.split('[').nth(1)).collect();
    assert!(!needed.is_empty(), "no NEEDED entries in {dynsec}");
    for lib in &needed {
        assert!(lib.starts_with("libc.so") || lib.starts_with("ld-linux"), "libkmem_malloc.so needs {lib}: {needed:?}");
    }
}
