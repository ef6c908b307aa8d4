//! The `kmem` binary end to end: the demo writes a valid PNG and SVG page-frame map (at the
//! given path, or the default one), every `proc` view prints its first line, and every bad
//! input ends with one `kmem: error:` line and a non-zero status, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const KMEM: &str = env!("CARGO_BIN_EXE_kmem");

/// A fresh empty directory under the system's temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "kmem-cli-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn kmem(args: &[&str], cwd: &Path) -> Output {
    Command::new(KMEM).args(args).current_dir(cwd).output().expect("run kmem")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Checks the PNG signature and IHDR, decodes the image, and returns (width, height).
fn check_png(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR", "first chunk is IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("a decodable PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("image data");
    assert_eq!((info.width, info.height), (w, h));
    (w, h)
}

fn check_svg(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "an SVG document");
    assert!(s.trim_end().ends_with("</svg>"));
    assert_eq!(s.matches("<g").count(), s.matches("</g>").count(), "groups are closed");
    s
}

#[test]
fn demo_writes_the_page_frame_map() {
    let dir = temp_dir("demo");
    let o =
        kmem(&["demo", "--ram", "64M", "--cpus", "2", "--duration", "0.2", "--no-progress", "--map", "out/map"], &dir);
    // The map's folder does not exist: a clear error, before any work.
    assert!(!o.status.success());
    assert!(stderr(&o).starts_with("kmem: error: cannot write the page-frame map out/map.png"));
    std::fs::create_dir(dir.join("out")).unwrap();
    let o =
        kmem(&["demo", "--ram", "64M", "--cpus", "2", "--duration", "0.2", "--no-progress", "--map", "out/map"], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // The default views: two short ones; the rest on request (--views).
    for h in ["== memory pressure", "== /proc/buddyinfo", "== /proc/slabinfo", "== page-frame map"] {
        assert!(out.contains(h), "missing {h}");
    }
    for h in ["== /proc/zoneinfo", "== /proc/meminfo", "== /sys/kernel/debug/extfrag/unusable_index"] {
        assert!(!out.contains(h), "{h} printed without --views");
    }
    // The conclusions come last, and short.
    let summary = &out[out.rfind("\n== ").unwrap()..];
    assert!(summary.starts_with("\n== summary\n"), "the summary is the last section: {summary}");
    assert!(summary.lines().count() <= 10, "a short summary: {summary}");
    assert!(summary.contains("page-frame map: out/map.png and out/map.svg"), "{summary}");
    assert!(summary.contains("misuse: 5 reports"), "{summary}");
    assert!(summary.contains("more /proc views: --views all"), "{summary}");
    assert!(summary.trim_end().ends_with("all memory returned; free lists verified"), "{summary}");
    assert!(out.contains("wrote out/map.png and out/map.svg"));
    assert!(out.contains("free, buddy order 10"), "the legend is printed");
    assert!(out.contains("slab: dentry"));
    assert!(out.contains("free lists verified"));
    assert!(!stderr(&o).contains("panicked"));
    // 64 MiB = 16384 frames: 512 per row, 32 rows, one pixel per frame, plus title and legend.
    let (w, h) = check_png(&dir.join("out/map.png"));
    assert!(w >= 6 + 6 + 2 + 512 + 6, "the map and its axes: {w}");
    assert!(out.contains("PNG: 1 pixel = 1 page frame (4 KiB), 512 frames per row"), "{out}");
    assert!(h > 32 + 40, "map and legend: {h}");
    let svg = check_svg(&dir.join("out/map.svg"));
    for s in
        ["free, buddy order 0", "free, per-CPU list", "slab: task_struct", "kmalloc-large", "reserved", "hole (no RAM)"]
    {
        assert!(svg.contains(s), "SVG legend lacks {s}");
    }
    assert!(svg.contains("Unusable free space index per order"));
    assert!(svg.contains("Node 0, zone    DMA32 0."));
}

#[test]
fn demo_views_are_chosen() {
    let dir = temp_dir("views");
    let demo = |views: &str| {
        let o =
            kmem(&["demo", "--ram", "64M", "--cpus", "1", "--duration", "0", "--no-progress", "--views", views], &dir);
        assert!(o.status.success(), "{views}: {}", stderr(&o));
        stdout(&o)
    };
    let headers = |out: &str| -> Vec<String> {
        out.lines().filter(|l| l.starts_with("== /")).map(|l| l[3..].to_owned()).collect()
    };
    let all = demo("all");
    assert_eq!(
        headers(&all),
        [
            "/proc/buddyinfo",
            "/proc/pagetypeinfo",
            "/proc/zoneinfo",
            "/proc/meminfo",
            "/proc/slabinfo",
            "/proc/vmallocinfo",
            "/proc/vmstat",
            "/sys/kernel/debug/extfrag/unusable_index",
            "/sys/kernel/debug/extfrag/extfrag_index"
        ]
    );
    assert!(!all.contains("more /proc views"), "all of them printed");
    assert_eq!(headers(&demo("zoneinfo,meminfo")), ["/proc/zoneinfo", "/proc/meminfo"]);
    assert_eq!(
        headers(&demo("unusable-index,zoneinfo,zoneinfo")),
        ["/sys/kernel/debug/extfrag/unusable_index", "/proc/zoneinfo"]
    );
    let none = demo("none");
    assert!(headers(&none).is_empty() && none.contains("\n== summary\n"), "{none}");
    let o = kmem(&["demo", "--ram", "64M", "--views", "buddyinfo,nosuch"], &dir);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown view 'nosuch' (expected all, none, or a list of: buddyinfo, "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_name_what_is_wrong_and_the_help_to_read() {
    let dir = temp_dir("usage");
    let err = |args: &[&str]| {
        let o = kmem(args, &dir);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(o.stdout.is_empty());
        stderr(&o)
    };
    assert_eq!(
        err(&["proc"]),
        "kmem: error: the following required arguments were not provided: <VIEW> [possible values: buddyinfo, \
         pagetypeinfo, zoneinfo, meminfo, slabinfo, unusable_index, extfrag_index, vmallocinfo, vmstat, kfence_stats, kfence_objects] (see kmem proc --help)\n"
    );
    assert!(err(&["proc", "nosuch"]).ends_with(" (see kmem proc --help)\n"));
    assert!(err(&["proc", "nosuch"]).contains("[possible values: buddyinfo, "));
    assert!(err(&["demo", "--ram", "lots"]).ends_with("(see kmem demo --help)\n"));
    assert!(err(&["replay"]).contains("<TRACE> (see kmem replay --help)"));
    assert!(err(&["frobnicate"]).ends_with("(see kmem --help)\n"));
}

#[test]
fn help_is_the_same_for_every_subcommand() {
    let dir = temp_dir("help");
    for sub in ["demo", "proc", "replay"] {
        let long = kmem(&[sub, "--help"], &dir);
        let short = kmem(&[sub, "-h"], &dir);
        let via_help = kmem(&["help", sub], &dir);
        for o in [&long, &short, &via_help] {
            assert!(o.status.success(), "{sub}: {}", stderr(o));
            assert!(stdout(o).contains(&format!("Usage: kmem {sub} ")), "{sub}: {}", stdout(o));
            assert!(stdout(o).contains("-h, --help"), "{sub}: {}", stdout(o));
        }
        assert_eq!(stdout(&long), stdout(&via_help), "kmem help {sub} is kmem {sub} --help");
        assert!(stdout(&short).len() <= stdout(&long).len(), "-h is the summary of --help");
    }
}

#[test]
fn demo_default_and_inferred_map_paths() {
    let dir = temp_dir("paths");
    let o = kmem(&["demo", "--ram", "32M", "--cpus", "1", "--duration", "0", "--no-progress"], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    check_png(&dir.join("kmem-pfmap.png"));
    check_svg(&dir.join("kmem-pfmap.svg"));
    let o = kmem(&["demo", "--ram", "32M", "--cpus", "1", "--duration", "0", "--no-progress", "--map", "m.svg"], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    check_png(&dir.join("m.png"));
    check_svg(&dir.join("m.svg"));
    // A directory gets the default names inside it, nothing beside it ("maps/" alike).
    std::fs::create_dir(dir.join("maps")).unwrap();
    for map in ["maps", "maps/"] {
        let o = kmem(&["demo", "--ram", "32M", "--cpus", "1", "--duration", "0", "--no-progress", "--map", map], &dir);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("wrote maps/kmem-pfmap.png and maps/kmem-pfmap.svg"), "{}", stdout(&o));
        check_png(&dir.join("maps/kmem-pfmap.png"));
        check_svg(&dir.join("maps/kmem-pfmap.svg"));
        assert!(!dir.join("maps.png").exists() && !dir.join("maps.svg").exists(), "files beside the directory");
        std::fs::remove_file(dir.join("maps/kmem-pfmap.png")).unwrap();
    }
    // A directory that does not exist (trailing slash): a clear error, nothing written.
    let o = kmem(&["demo", "--ram", "32M", "--cpus", "1", "--duration", "0", "--map", "nosuch/"], &dir);
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with("kmem: error: cannot write the page-frame map nosuch/kmem-pfmap.png"),
        "{}",
        stderr(&o)
    );
    // The help says so.
    let o = kmem(&["demo", "--help"], &dir);
    assert!(stdout(&o).contains("a directory gets kmem-pfmap.png and kmem-pfmap.svg inside it"), "{}", stdout(&o));
}

#[test]
fn demo_x86_32_marks_highmem() {
    let dir = temp_dir("x86-32");
    let args =
        ["demo", "--preset", "x86-32", "--ram", "1G", "--cpus", "1", "--duration", "0", "--no-progress", "--map", "hm"];
    let o = kmem(&args, &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("HighMem: colours at 55%"), "{out}");
    assert!(out.contains("gutter: node 0 HighMem"));
    assert!(out.contains("Node 0, zone  HighMem "), "unusable index of HighMem");
    assert!(out.contains("== highmem: kmap, kmap_local_page, and kmap_atomic from IRQ context"), "{out}");
    assert!(out.contains(" 0 pages read back wrong; pkmap slots in use: "), "{out}");
    assert!(out.contains(" of 1024 at the peak, 64 now; "), "{out}");
    assert!(
        out.contains("kmapped (HighMem)                       64 frames"),
        "the map shows the kmapped pages: {out}"
    );
    let (w, _) = check_png(&dir.join("hm.png"));
    // 1 GiB = 262144 frames: still one pixel per frame, 512 per row.
    assert!(w >= 532, "{w}");
    assert!(out.contains("PNG: 1 pixel = 1 page frame (4 KiB), 512 frames per row"), "{out}");
}

#[test]
fn every_proc_view_prints_its_first_line() {
    let dir = temp_dir("proc");
    let views = [
        ("buddyinfo", "Node 0, zone      DMA "),
        ("pagetypeinfo", "Page block order: 9"),
        ("zoneinfo", "Node 0, zone      DMA"),
        ("meminfo", "MemTotal:"),
        ("slabinfo", "slabinfo - version: 2.1"),
        ("unusable_index", "Node 0, zone      DMA 0."),
        ("extfrag_index", "Node 0, zone      DMA "),
        ("kfence_stats", "enabled: 1\ncurrently allocated: 0\ntotal allocations: 0\n"),
    ];
    for (view, first) in views {
        let o = kmem(&["proc", view, "--ram", "64M", "--cpus", "2", "--duration", "0"], &dir);
        assert!(o.status.success(), "{view}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(out.starts_with(first), "{view} starts with {first:?}: {out}");
    }
    // KFENCE samples the workload's allocations (every millisecond here).
    let args = ["proc", "kfence_objects", "--ram", "64M", "--duration", "0.3", "--kfence-sample-interval", "1"];
    let o = kmem(&args, &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("kfence-#0: 0x"), "{}", stdout(&o));
    // The debugfs files' second line is DMA32 on this machine.
    let o = kmem(&["proc", "extfrag_index", "--ram", "64M", "--duration", "0"], &dir);
    assert!(stdout(&o).lines().nth(1).unwrap().starts_with("Node 0, zone    DMA32 "));
    // A fresh machine has no vmalloc areas; after the workload (and its vmalloc phase) it has.
    let o = kmem(&["proc", "vmallocinfo", "--ram", "64M", "--duration", "0"], &dir);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");
    let o = kmem(&["proc", "vmallocinfo", "--ram", "256M", "--duration", "0.1"], &dir);
    let out = stdout(&o);
    let first = out.lines().next().unwrap();
    assert!(first.starts_with("0x") && first.contains(" vmalloc"), "{out}");
    assert!(out.lines().all(|l| l.len() > 38 && &l[18..21] == "-0x"), "{out}");
}

#[test]
fn bad_input_is_one_error_line() {
    let dir = temp_dir("errors");
    let cases: &[&[&str]] = &[
        &["demo", "--preset", "arm64"],
        &["demo", "--ram", "1K"],
        &["demo", "--ram", "lots"],
        &["demo", "--ram", "99999999999G"],
        &["demo", "--cpus", "0", "--ram", "32M"],
        &["demo", "--cpus", "257", "--ram", "32M"],
        &["demo", "--ram", "32M", "--duration=-1"],
        &["demo", "--ram", "32M", "--map", "/nonexistent-dir/x/map"],
        &["proc", "nosuch"],
        &["proc"],
        &["demo", "--views", "nosuch"],
        &["proc", "buddyinfo", "--cpus", "0"],
        &["proc", "buddyinfo", "--preset", "sparc"],
        &["proc", "buddyinfo", "--nodes", "0"],
        &["proc", "buddyinfo", "--nodes", "4294967296"],
        &["demo", "--nodes", "65", "--ram", "16G"],
        &["demo", "--nodes", "3", "--ram", "256M"],
        &["proc", "buddyinfo", "--cpus", "4294967296"],
        &["frobnicate"],
    ];
    for args in cases {
        let o = kmem(args, &dir);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err:?}");
        assert!(err.starts_with("kmem: error: "), "{args:?}: {err:?}");
        assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{args:?}: {err:?}");
    }
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none(), "no map files left by failed runs");
}

#[test]
fn node_counts_are_checked_before_the_ram_is_split() {
    let dir = temp_dir("nodes");
    // Each must fail at once with its reason: 0 nodes used to boot one, 2^32 used to hang
    // while growing memory at about 1 GB/s.
    let cases: &[(&[&str], &str)] = &[
        (&["--nodes", "0"], "kmem: error: node count 0 out of range 1..=64\n"),
        (&["--nodes", "4294967296"], "kmem: error: node count 4294967296 out of range 1..=64\n"),
        (&["--nodes", "65", "--ram", "16G"], "kmem: error: node count 65 out of range 1..=64\n"),
        (
            &["--nodes", "3", "--ram", "256M"],
            "kmem: error: not enough RAM for 3 nodes of at least one 128 MiB section each (2 sections of usable RAM)\n",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["proc", "buddyinfo", "--duration", "0"];
        args.extend_from_slice(extra);
        let o = kmem(&args, &dir);
        assert!(!o.status.success(), "{args:?}");
        assert_eq!(stderr(&o), *want, "{args:?}");
    }
    // The limits themselves boot: 64 nodes of one section each, and 2 nodes in 256 MiB.
    let o = kmem(&["proc", "buddyinfo", "--duration", "0", "--nodes", "64", "--ram", "8G"], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Node 63, zone "), "{}", stdout(&o));
    let o = kmem(&["proc", "buddyinfo", "--duration", "0", "--nodes", "2", "--ram", "256M"], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Node 1, zone "), "{}", stdout(&o));
}

#[test]
fn small_demo_fits_its_machine_whatever_the_seed() {
    // 256 MiB, 4 CPUs, 0.3 s (enough for a debug build to fill the RAM): the workload used to keep up to 512 blocks per CPU whatever the
    // RAM, filling it to the watermarks, so the vmalloc phase's vzalloc and the misuse
    // section's GFP_KERNEL allocation failed (reported; exit 1 about one run in ten). Only
    // the misuse section's deliberate DMA order-10 failure may be reported now.
    let dir = temp_dir("small-demo");
    for seed in 1..=6 {
        let seed = seed.to_string();
        let o =
            kmem(&["demo", "--ram", "256M", "--duration", "0.3", "--seed", &seed, "--no-progress", "--map", "m"], &dir);
        let (out, err) = (stdout(&o), stderr(&o));
        assert!(o.status.success(), "seed {seed}: {}\n{err}", o.status);
        assert_eq!(err, "", "seed {seed}: nothing on stderr");
        assert!(out.contains("(NOWARN: 0 reports)"), "seed {seed}: pressure phase reported:\n{out}");
        assert!(
            out.contains("reports so far: BadPage=1 PageAllocFailure=1 Warning=1 SlabBug=2\n"),
            "seed {seed}: an allocation failure besides the deliberate one:\n{out}"
        );
        assert!(out.contains("all memory returned; free lists verified"), "seed {seed}");
    }
}

#[test]
fn demo_pressure_shows_reclaim_at_work() {
    let dir = temp_dir("pressure");
    let o = kmem(&["demo", "--pressure", "--ram", "64M", "--cpus", "2"], &dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.starts_with("== memory pressure: "), "{out}");
    assert!(out.contains("\n  reclaim       | "), "{out}");
    let counts = out.lines().find(|l| l.starts_with("  shrinker calls ")).unwrap();
    assert!(counts.ends_with("; OOM 0"), "{counts}");
    assert!(!counts.contains("kswapd wake-ups 0,"), "{counts}");
    // The PNG plot of the same samples, where the default --plot names it.
    assert!(out.contains("\n  PNG plot of the same samples: kmem-pressure.png\n"), "{out}");
    assert_eq!(check_png(&dir.join("kmem-pressure.png")), (900, 466));
    let o = kmem(&["demo", "--pressure", "--ram", "64M", "--plot", "/nonexistent/dir/p.png"], &dir);
    assert!(!o.status.success() && stderr(&o).contains("cannot write /nonexistent/dir/p.png"), "{}", stderr(&o));
}
