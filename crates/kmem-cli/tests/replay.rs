//! `kmem replay` as a user runs it: the built binary on the repository's excerpt of a real
//! capture (`fixtures/traces/fsops-excerpt.trace.zst`, 50,000 lines) and on small traces
//! written here; success, `--json`, `--then`, `--top`, and the error paths.

use std::path::Path;
use std::process::{Command, Output};

fn kmem(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmem")).args(args).output().expect("run kmem")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// The repository's excerpt of the fsops capture (`fixtures/README.md`).
fn excerpt() -> String {
    let p = kmem_trace::input::excerpt_trace(Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(p.is_file(), "{} is missing from the checkout", p.display());
    p.to_string_lossy().into_owned()
}

fn temp(name: &str, contents: &[u8]) -> String {
    let dir = std::env::temp_dir().join(format!("kmem-replay-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p.to_string_lossy().into_owned()
}

const SMALL: &str = "\
# tracer: nop
 bash-1 [000] ..... 1.0: kmem_cache_alloc: call_site=f+0x1/0x2 ptr=00000000000000a1 name=dentry bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1 accounted=true
 bash-1 [001] ..... 1.1: kmalloc: call_site=f+0x1/0x2 ptr=00000000000000a2 bytes_req=60 bytes_alloc=64 gfp_flags=GFP_NOFS|__GFP_ZERO node=-1 accounted=false
 bash-1 [001] ..... 1.2: mm_page_alloc: page=0000000000000001 pfn=0x1000 order=1 migratetype=0 gfp_flags=GFP_KERNEL|__GFP_COMP
 bash-1 [000] ..... 1.3: kfree: call_site=f+0x1/0x2 ptr=00000000000000a2
 bash-1 [000] ...1. 1.4: mm_page_free: page=0000000000000001 pfn=0x1000 order=1
";

#[test]
fn excerpt_report() {
    let o = kmem(&["replay", &excerpt()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("== kmem replay: ") && out.contains("(zstd), 50000 lines"), "{out}");
    assert!(out.contains("replayed 40234 of 50000 events in "), "{out}");
    assert!(out.contains("M events/s including parsing"));
    assert!(out.contains("failures 0,"), "{out}");
    assert!(out.contains("all accounted for"), "{out}");
    assert!(out.contains("== slab caches"));
    assert!(!err.contains("panicked"));
}

#[test]
fn excerpt_json_and_views() {
    let o = kmem(&["replay", &excerpt(), "--json", "--then", "slabinfo", "--then", "meminfo"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(v["trace"]["compression"], "zstd");
    assert_eq!(v["totals"]["failures"], 0);
    assert_eq!(v["audit"]["ok"], true);
    assert!(v["events"]["kmem_cache_alloc"].as_u64().unwrap() > 0);
    assert!(v["timing"]["replay_ops_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["caches"].as_array().unwrap().iter().any(|c| c["name"] == "dentry"));
    assert!(v["views"]["slabinfo"].as_str().unwrap().starts_with("slabinfo - version: 2.1"));
    assert!(v["views"]["meminfo"].as_str().unwrap().starts_with("MemTotal:"));
    // The counts of an awk count of the file (fixtures/README.md).
    assert_eq!(v["trace"]["lines"], 50_000);
    assert_eq!(v["events"]["kmem_cache_alloc"], 16_384);
    assert_eq!(v["events"]["mm_page_free_batched"], 5_920);
    // What the replay made of them: frees of objects allocated before the excerpt starts are
    // unmatched, every batched free follows its mm_page_free, and the 7,587 objects still live
    // at the end are found in the machine's caches (the audit).
    assert_eq!(v["totals"]["replayed"], 40_234);
    assert_eq!(v["totals"]["unmatched_frees"], 1_327);
    assert_eq!(v["totals"]["batched_after_free"], 5_920);
    assert_eq!(v["audit"]["live_objects"], 7_587);
    assert_eq!(v["caches"].as_array().unwrap().len(), 32);
}

#[test]
fn small_trace_then_slabinfo_and_top() {
    let p = temp("small.trace", SMALL.as_bytes());
    let o = kmem(&["replay", &p, "--then", "slabinfo", "--top", "--ram", "64M", "--cpus", "2"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("(none), 6 lines"), "{out}");
    assert!(out.contains("== /proc/slabinfo\nslabinfo - version: 2.1"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("dentry ")), "{out}");
    assert!(out.contains("malformed lines 0, ignored lines 1"));
    // The live view's last frame.
    assert!(err.contains("\x1b[2J") && err.contains("OBJ SIZE") && err.contains("dentry"), "{err}");
}

#[test]
fn standard_input() {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_kmem"))
        .args(["replay", "-", "--json", "--ram", "64M"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(SMALL.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["trace"]["path"].as_str(), v["totals"]["replayed"].as_u64()), (Some("-"), Some(5)));
}

#[test]
fn garbage_is_counted_not_fatal() {
    let mut g = b"this is not a trace\n\xff\xfe binary \x00 junk\n".to_vec();
    g.extend_from_slice(SMALL.as_bytes());
    g.extend_from_slice(b"x-1 [000] ..... 2.0: kfree: ptr=nothex\n");
    let p = temp("garbage.trace", &g);
    let o = kmem(&["replay", &p, "--json", "--ram", "64M"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["trace"]["malformed"], 3);
    let first: Vec<u64> =
        v["trace"]["malformed_first"].as_array().unwrap().iter().map(|m| m["line"].as_u64().unwrap()).collect();
    assert_eq!(first, [1, 2, 9]);
    assert_eq!(v["totals"]["replayed"], 5);
    let o = kmem(&["replay", &p, "--ram", "64M"]);
    assert!(text(&o).0.contains("  line 9: malformed number in ptr=: x-1 [000]"));
}

fn assert_error(o: &Output, what: &str) {
    let (out, err) = text(o);
    assert!(!o.status.success());
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("kmem: error: ") && err.contains(what), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn errors_are_one_line() {
    assert_error(&kmem(&["replay", "/nonexistent/trace.zst"]), "cannot read trace /nonexistent/trace.zst");
    assert_error(&kmem(&["replay", "/"]), "cannot read trace /: is a directory");
    let p = temp("small2.trace", SMALL.as_bytes());
    assert_error(&kmem(&["replay", &p, "--then", "nosuchview"]), "unknown view 'nosuchview'");
    // A zstd stream cut short.
    let z = zstd_prefix();
    assert_error(&kmem(&["replay", &temp("cut.zst", &z), "--ram", "64M"]), "reading trace");
}

#[test]
fn endless_input_without_events_ends() {
    // No newline ever: one over-long line, skipped without being buffered, until the limit.
    assert_error(&kmem(&["replay", "/dev/zero", "--ram", "64M"]), "kmem: error: /dev/zero: not a kmem trace");
    // Lines, but none an event, in the first 16 MiB.
    let line = [&b"no event here "[..], &[b'x'; 1009], b"\n"].concat();
    let p = temp("junk.trace", &line.repeat(17 << 10));
    assert_error(&kmem(&["replay", &p, "--ram", "64M"]), &format!("kmem: error: {p}: not a kmem trace"));
}

/// The first 4 KiB of the excerpt: a zstd stream cut short.
fn zstd_prefix() -> Vec<u8> {
    std::fs::read(excerpt()).unwrap()[..4096].to_vec()
}

#[test]
fn map_of_the_replayed_state() {
    let trace = excerpt();
    let out = std::env::temp_dir().join(format!("kmem-replay-map-{}", std::process::id()));
    let o = kmem(&["replay", &trace, "--ram", "1G", "--map", out.to_str().unwrap()]);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{se}");
    assert!(so.contains("== page-frame map: wrote "), "{so}");
    assert!(so.lines().any(|l| l.contains("slab: ") && l.contains(" frames ")), "{so}");
    assert!(so.contains("Node 0, zone    DMA32 "), "{so}");
    let png = std::fs::read(out.with_extension("png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(out.with_extension("svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{}", &svg[..40]);
    let _ = std::fs::remove_file(out.with_extension("png"));
    let _ = std::fs::remove_file(out.with_extension("svg"));
    // An unwritable map path fails before the replay, in one line.
    let o = kmem(&["replay", &trace, "--map", "/nonexistent-dir/x"]);
    assert!(!o.status.success());
    assert!(text(&o).1.starts_with("kmem: error: cannot write the page-frame map"), "{:?}", text(&o).1);
}

#[test]
fn over_long_lines_are_malformed_and_dev_zero_ends() {
    // A 1 MiB line between events: counted as malformed, skipped, the rest replayed.
    let mut t = SMALL.as_bytes().to_vec();
    t.extend(std::iter::repeat_n(b'x', 1 << 20));
    t.push(b'\n');
    t.extend_from_slice(SMALL.as_bytes());
    let p = temp("long-line.trace", &t);
    let o = kmem(&["replay", &p]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("malformed lines 1,"), "{out}");
    assert!(out.contains("line 7: line longer than 65536 bytes: xxxx"), "{out}");
    // /dev/zero has no event in its first 16 MiB: refused at once, not read forever.
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmem"))
        .args(["replay", "/dev/zero"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("kmem replay /dev/zero still running after 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert_eq!(err, "kmem: error: /dev/zero: not a kmem trace\n");
}

/// On the x86-32 preset, `GFP_HIGHUSER*` page events land in HighMem (and kernel ones never
/// do): HighFree drops while slab memory stays in lowmem.
#[test]
fn x86_32_replays_highuser_pages_into_highmem() {
    let trace = temp(
        "highuser.trace",
        b"# tracer: nop
 bash-1 [000] ..... 1.0: mm_page_alloc: page=0000000000000001 pfn=0x1000 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_COMP
 bash-1 [000] ..... 1.1: mm_page_alloc: page=0000000000000002 pfn=0x1001 order=2 migratetype=0 gfp_flags=GFP_HIGHUSER
 bash-1 [000] ..... 1.2: mm_page_alloc: page=0000000000000003 pfn=0x1005 order=0 migratetype=0 gfp_flags=GFP_KERNEL
",
    );
    let o =
        kmem(&["replay", &trace, "--preset", "x86-32", "--ram", "1G", "--cpus", "1", "--json", "--then", "meminfo"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    let meminfo = v["views"]["meminfo"].as_str().expect("the meminfo view");
    let kb = |name: &str| -> u64 {
        let l = meminfo.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {meminfo}"));
        l[16..].trim().trim_end_matches(" kB").trim().parse().unwrap()
    };
    assert_eq!(kb("HighTotal:") - kb("HighFree:"), 5 * 4, "1 + 4 HighMem pages in use: {meminfo}");
}

/// A capture larger than the machine: the replay's GFP_KERNEL page allocations reclaim, and the
/// replay's OOM killer frees the trace's oldest pages (under reclaim pressure: nothing of the
/// trace is movable), so none fails; the report says so.
#[test]
fn too_small_machine_shows_reclaim_and_oom() {
    let mut t = String::from("# tracer: nop\n");
    for i in 0..20_000u32 {
        t.push_str(&format!(
            " bash-1 [000] ..... 1.{i}: mm_page_alloc: page={:016x} pfn=0x{:x} order=0 migratetype=0 gfp_flags=GFP_KERNEL\n",
            i + 1,
            0x1000 + i
        ));
    }
    let p = temp("too-big.trace", t.as_bytes());
    let o = kmem(&["replay", &p, "--ram", "64M", "--cpus", "2"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let line = out.lines().find(|l| l.starts_with("reclaim: direct reclaims ")).expect("a reclaim line");
    let n = |key: &str| -> u64 {
        let rest = &line[line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    assert!(n("direct reclaims ") > 0, "{line}");
    let oom = out.lines().find(|l| l.starts_with("OOM killer ")).expect("an OOM killer line");
    let kills = |key: &str| -> u64 {
        let rest = &oom[oom.find(key).unwrap_or_else(|| panic!("{key} in {oom}")) + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    assert!(kills(", kills ") + kills("(and ") > 0, "{oom}");
    assert!(out.contains("\nfailures 0,"), "{out}");
}
