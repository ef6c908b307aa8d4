//! The `/proc` views on real hosted machines: golden texts derived by hand, the line layout of
//! every view against the Linux 6.18 captures in `fixtures/linux-6.18-proc/`, and the
//! views following allocations, HighMem and NUMA. (`/proc/vmallocinfo`'s line shape is
//! checked in `proc_vmallocinfo.rs`.)

use std::fmt::{self, Write};

use kmem::{Gfp, Kmem, Order, ReportKind};
use kmem_hosted::{pin_current_thread, HostedPlatform, Machine, MachineBuilder, Preset};

type View = fn(&Kmem<HostedPlatform>, &mut dyn Write) -> fmt::Result;

const BUDDYINFO: View = kmem::proc::buddyinfo;
const PAGETYPEINFO: View = kmem::proc::pagetypeinfo;
const ZONEINFO: View = kmem::proc::zoneinfo;
const MEMINFO: View = kmem::proc::meminfo;

/// The Linux 6.18 captures, vendored in the repository (`fixtures/README.md`).
const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/linux-6.18-proc/");

fn sample(name: &str) -> String {
    let path = format!("{SAMPLES}{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading the 6.18 capture {path}: {e}"))
}

fn show(m: &Machine, view: View) -> String {
    let mut s = String::new();
    view(m, &mut s).unwrap();
    s
}

/// The small deterministic machine of the golden tests.
///
/// x86-64, 256 MiB, 2 CPUs. The generated e820 map: page 0 reserved, usable [0x1000, 0x9f000),
/// legacy hole [0x9f000, 1 MiB), usable [1 MiB, 256 MiB). So:
/// - DMA spans pfns [1, 4096): spanned 4095; present (0x9f - 1) + (4096 - 256) = 158 + 3840 =
///   3998; nothing is carved below 16 MiB, so managed = free = 3998.
/// - DMA32 spans [4096, 65536): spanned = present = 61440. Boot carves its metadata top-down
///   from 256 MiB: the page descriptors of the 2 present 128 MiB sections (2 x 32768 x 32 B =
///   2 MiB = 512 pages) below the machine state, section table and node (~9 KiB at 64-byte
///   alignment, touching 3 pages), then the per-CPU first chunk below them: 2 units of 32 KiB
///   (16 pages) and its two chunk headers (3 pages, page-rounded). 515 + 19 = 534 pages
///   reserved: managed = free = 61440 - 534 = 60906, the free range being pfns [4096, 65002).
/// - totalram = 3998 + 60906 = 64904 pages = 259616 kB.
fn small() -> Machine {
    let m = MachineBuilder::new().ram_mib(256).cpus(2).build().unwrap();
    let b = m.boot_info();
    assert_eq!(b.memmap_bytes, 2 << 20, "derivation assumes 2 present sections of 1 MiB of descriptors");
    let small_meta = b.metadata_bytes - b.memmap_bytes;
    assert!((8193..=12288).contains(&small_meta), "derivation assumes ~9 KiB on 3 pages, got {small_meta}");
    assert_eq!(b.percpu_bytes, (2 * 32 + 12) << 10, "derivation assumes 2 units and 3 header pages");
    assert_eq!(m.totalram_pages(), 64904);
    m
}

#[test]
fn golden_buddyinfo() {
    // DMA, free pfns [1, 159) and [256, 4096) in maximal aligned blocks:
    //   [1,159): 1(o0) 2(o1) 4(o2) 8(o3) 16(o4) 32(o5) 64(o6) 128(o4) 144(o3) 152(o2) 156(o1) 158(o0)
    //   [256,4096): 256(o8) 512(o9) 1024, 2048, 3072(o10)
    //   -> o0..o4: 2 each, o5: 1, o6: 1, o7: 0, o8: 1, o9: 1, o10: 3 (= 3998 pages).
    // DMA32, free pfns [4096, 65002): 4096 is 1024-aligned; 59 blocks of o10 up to 64512, then
    //   490 = 0b1_1110_1010 pages: o8 o7 o6 o5 o3 o1 -> o0 = o2 = o4 = o9 = 0.
    let want = concat!(
        "Node 0, zone      DMA      2      2      2      2      2      1      1      0      1      1      3 \n",
        "Node 0, zone    DMA32      0      1      0      1      0      1      1      1      1      0     59 \n",
    );
    assert_eq!(show(&small(), BUDDYINFO), want);
}

#[test]
fn golden_pagetypeinfo() {
    // Boot frees everything onto the Movable lists and every pageblock starts Movable.
    // Blocks: DMA walks pfns 1, 513, ..., 3585 from its unaligned start: 8 blocks; DMA32
    // 61440 / 512 = 120 (the reserved top blocks count: their first pfns have descriptors).
    let z = "     0      0      0      0      0      0      0      0      0      0      0 \n";
    let want = [
        "Page block order: 9\n",
        "Pages per block:  512\n",
        "\n",
        "Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10 \n",
        &format!("Node    0, zone      DMA, type    Unmovable {z}"),
        "Node    0, zone      DMA, type      Movable      2      2      2      2      2      1      1      0      1      1      3 \n",
        &format!("Node    0, zone      DMA, type  Reclaimable {z}"),
        &format!("Node    0, zone      DMA, type   HighAtomic {z}"),
        &format!("Node    0, zone      DMA, type      Isolate {z}"),
        &format!("Node    0, zone    DMA32, type    Unmovable {z}"),
        "Node    0, zone    DMA32, type      Movable      0      1      0      1      0      1      1      1      1      0     59 \n",
        &format!("Node    0, zone    DMA32, type  Reclaimable {z}"),
        &format!("Node    0, zone    DMA32, type   HighAtomic {z}"),
        &format!("Node    0, zone    DMA32, type      Isolate {z}"),
        "\n",
        "Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic      Isolate \n",
        "Node 0, zone      DMA            0            8            0            0            0 \n",
        "Node 0, zone    DMA32            0          120            0            0            0 \n",
    ]
    .concat();
    assert_eq!(show(&small(), PAGETYPEINFO), want);
}

/// The per-node block of the 6.18 capture with every value 0 (kmem keeps no node statistics).
fn node_stats_zero() -> String {
    let mut s = String::from("  per-node stats\n");
    for line in sample("zoneinfo.txt").lines().skip(2).take_while(|l| !l.starts_with("  pages free")) {
        let (name, _) = line.trim_start().split_once(' ').unwrap();
        writeln!(s, "      {name:<12} 0").unwrap();
    }
    assert_eq!(s.lines().count(), 52, "the capture lists 51 node statistics");
    s
}

fn zone_stats(free: usize, free_blocks: usize) -> String {
    format!(
        "      nr_free_pages {free}
      nr_free_pages_blocks {free_blocks}
      nr_zone_inactive_anon 0
      nr_zone_active_anon 0
      nr_zone_inactive_file 0
      nr_zone_active_file 0
      nr_zone_unevictable 0
      nr_zone_write_pending 0
      nr_mlock     0
      nr_zspages   0
      nr_free_cma  0
      numa_hit     0
      numa_miss    0
      numa_foreign 0
      numa_interleave 0
      numa_local   0
      numa_other   0
"
    )
}

/// Two CPUs with the boot pageset.
/// Fresh pagesets: count 0, `high` = `high_min` (kmem does not auto-tune).
fn pagesets(threshold: u32, batch: usize, high_min: usize, high_max: usize) -> String {
    let cpu = |n| {
        format!(
            "    cpu: {n}
              count:    0
              high:     {high_min}
              batch:    {batch}
              high_min: {high_min}
              high_max: {high_max}
  vm stats threshold: {threshold}
"
        )
    };
    format!("  pagesets\n{}{}", cpu(0), cpu(1))
}

#[test]
fn golden_zoneinfo() {
    // min_free_kbytes = int_sqrt(259616 kB * 16) = 2038; pages_min = 2038 >> 2 = 509.
    // DMA:   min = 509 * 3998 / 64904 = 31;    step = max(31 >> 2, 3998 / 1000) = 7.
    // DMA32: min = 509 * 60906 / 64904 = 477;  step = max(477 >> 2, 60906 / 1000) = 119.
    // Normal (empty): 0; Movable (empty): min clamped to SWAP_CLUSTER_MAX = 32, step 0.
    // Device: never set up, 0.
    // Protection (DMA, DMA32, Normal, Movable, Device): DMA keeps 60925 / 256 = 237 against
    //   anything that may use DMA32 or above (60906 / 256 = 237 too); DMA32 has nothing above
    //   it populated.
    // Threshold: 2 * fls(2 CPUs) * (1 + fls(managed >> 15)): DMA 4 * (1 + 0) = 4,
    //   DMA32 4 * (1 + fls(1)) = 8.
    // nr_free_pages_blocks (orders >= 9): DMA 512 + 3 * 1024 = 3584; DMA32 59 * 1024 = 60416.
    // Pagesets (zone_batchsize, zone_highsize over the node's 2 CPUs):
    //   DMA:   batch max(1, pow2((3998 >> 10) / 4 ...) - 1) = 1; high_min = low 38 / 2 = 19;
    //          high_max = (3998 / 8) / 2 = 249.
    //   DMA32: batch: (60906 >> 10) / 4 = 14, 14 + 7 = 21 -> 16 - 1 = 15; high_min = 596 / 2 = 298;
    //          high_max = (60906 / 8) / 2 = 3806.
    let empty = |name: &str, wm: usize| {
        format!(
            "Node 0, zone {name:>8}
  pages free     0
        boost    0
        min      {wm}
        low      {wm}
        high     {wm}
        promo    {wm}
        spanned  0
        present  0
        managed  0
        cma      0
        protection: (0, 0, 0, 0, 0)
"
        )
    };
    let want = [
        "Node 0, zone      DMA\n",
        &node_stats_zero(),
        "  pages free     3998
        boost    0
        min      31
        low      38
        high     45
        promo    52
        spanned  4095
        present  3998
        managed  3998
        cma      0
        protection: (0, 237, 237, 237, 237)
",
        &zone_stats(3998, 3584),
        &pagesets(4, 1, 19, 249),
        "  node_unreclaimable:  0\n  start_pfn:           1\n",
        "Node 0, zone    DMA32
  pages free     60906
        boost    0
        min      477
        low      596
        high     715
        promo    834
        spanned  61440
        present  61440
        managed  60906
        cma      0
        protection: (0, 0, 0, 0, 0)
",
        &zone_stats(60906, 60416),
        &pagesets(8, 15, 298, 3806),
        "  node_unreclaimable:  0\n  start_pfn:           4096\n",
        &empty("Normal", 0),
        &empty("Movable", 32),
        &empty("Device", 0),
    ]
    .concat();
    let got = show(&small(), ZONEINFO);
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        assert_eq!(g, w, "zoneinfo line {}", i + 1);
    }
    assert_eq!(got, want);
}

#[test]
fn golden_meminfo() {
    // MemTotal = MemFree = 64904 pages = 259616 kB.
    // totalreserve = per zone min(max lowmem_reserve + high watermark, managed):
    //   DMA 237 + 45 = 282, DMA32 0 + 715 = 715, empty zones 0 (capped at managed) -> 997.
    // MemAvailable = 64904 - 997 = 63907 pages = 255628 kB (no page cache, no slab).
    // CommitLimit = 64904 * 50 / 100 = 32452 pages = 129808 kB.
    // Percpu = the first chunk's 2 units of 8 pages = 64 kB.
    // Direct map [0, 256 MiB): the first 2 MiB in 4k pages, the other 254 MiB in 2M pages.
    let want = "\
MemTotal:         259616 kB
MemFree:          259616 kB
MemAvailable:     255628 kB
Buffers:               0 kB
Cached:                0 kB
SwapCached:            0 kB
Active:                0 kB
Inactive:              0 kB
Active(anon):          0 kB
Inactive(anon):        0 kB
Active(file):          0 kB
Inactive(file):        0 kB
Unevictable:           0 kB
Mlocked:               0 kB
SwapTotal:             0 kB
SwapFree:              0 kB
Zswap:                 0 kB
Zswapped:              0 kB
Dirty:                 0 kB
Writeback:             0 kB
AnonPages:             0 kB
Mapped:                0 kB
Shmem:                 0 kB
KReclaimable:          0 kB
Slab:                  0 kB
SReclaimable:          0 kB
SUnreclaim:            0 kB
KernelStack:           0 kB
PageTables:            0 kB
SecPageTables:         0 kB
NFS_Unstable:          0 kB
Bounce:                0 kB
WritebackTmp:          0 kB
CommitLimit:      129808 kB
Committed_AS:          0 kB
VmallocTotal:   33554432 kB
VmallocUsed:           0 kB
VmallocChunk:          0 kB
Percpu:               64 kB
AnonHugePages:         0 kB
ShmemHugePages:        0 kB
ShmemPmdMapped:        0 kB
FileHugePages:         0 kB
FilePmdMapped:         0 kB
Balloon:               0 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:               0 kB
DirectMap4k:        2048 kB
DirectMap2M:      260096 kB
DirectMap1G:           0 kB
";
    assert_eq!(show(&small(), MEMINFO), want);
}

// ---------------------------------------------------------------------------------------------
// Layout against the 6.18 captures.

/// One space-separated chunk of a line and the spaces before it.
#[derive(Debug)]
enum Tok<'a> {
    Text {
        gap: usize,
        text: &'a str,
    },
    /// A number, with the punctuation glued to it (`(0,` in a protection line).
    Num {
        gap: usize,
        digits: usize,
        pre: &'a str,
        post: &'a str,
    },
}

fn tokens(line: &str) -> Vec<Tok<'_>> {
    let mut out = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        let gap = rest.len() - rest.trim_start_matches(' ').len();
        rest = &rest[gap..];
        let end = rest.find(' ').unwrap_or(rest.len());
        let chunk = &rest[..end];
        rest = &rest[end..];
        if chunk.is_empty() {
            break;
        }
        let core = chunk.trim_start_matches('(').trim_end_matches([',', ')']);
        let pre = &chunk[..chunk.len() - chunk.trim_start_matches('(').len()];
        let post = &chunk[pre.len() + core.len()..];
        if !core.is_empty() && core.bytes().all(|b| b.is_ascii_digit()) {
            out.push(Tok::Num { gap, digits: core.len(), pre, post });
        } else {
            out.push(Tok::Text { gap, text: chunk });
        }
    }
    out
}

/// Checks that `ours` lays out every line as `theirs` does: same number of lines, same text
/// tokens at the same distances, numbers in the same columns (right-aligned views: the same
/// end column; left-aligned ones: the same start column), same trailing spaces.
///
/// A number of 9 or more digits in the capture overflowed its field (`VmallocTotal:
/// 34359738367 kB`; no field in these files is wider than 8, but for pagetypeinfo's `%12lu`,
/// which the capture never fills): it may end further right than ours, eating its padding
/// (ours may fill the field exactly: a 32 GiB vmalloc range prints `33554432`).
fn assert_same_layout(what: &str, ours: &str, theirs: &str, right_aligned: bool) {
    let (o, t): (Vec<_>, Vec<_>) = (ours.lines().collect(), theirs.lines().collect());
    for (i, (ol, tl)) in o.iter().zip(&t).enumerate() {
        let fail = |why: &str| panic!("{what} line {}: {why}\n  kmem:  {ol:?}\n  linux: {tl:?}", i + 1);
        let (ot, tt) = (tokens(ol), tokens(tl));
        if ot.len() != tt.len() {
            fail("different number of fields");
        }
        for (a, b) in ot.iter().zip(&tt) {
            match (a, b) {
                (Tok::Text { gap: g1, text: t1 }, Tok::Text { gap: g2, text: t2 }) => {
                    if t1 != t2 || g1 != g2 {
                        fail(&format!("label {t1:?} after {g1} spaces, Linux {t2:?} after {g2}"));
                    }
                }
                (
                    Tok::Num { gap: g1, digits: d1, pre: p1, post: s1 },
                    Tok::Num { gap: g2, digits: d2, pre: p2, post: s2 },
                ) => {
                    let overflow = *d2 > 8 && g2 <= g1 && g2 + d2 > g1 + d1;
                    let aligned = if right_aligned { g1 + d1 == g2 + d2 } else { g1 == g2 };
                    if p1 != p2 || s1 != s2 || !(aligned || overflow) {
                        fail("a number in another column");
                    }
                }
                _ => fail(&format!("{a:?} where Linux has {b:?}")),
            }
        }
        let trailing = |l: &str| l.len() - l.trim_end_matches(' ').len();
        if trailing(ol) != trailing(tl) {
            fail("different trailing spaces");
        }
    }
    assert_eq!(o.len(), t.len(), "{what}: kmem prints {} lines, Linux {}", o.len(), t.len());
    assert_eq!(ours.ends_with('\n'), theirs.ends_with('\n'), "{what}: final newline");
}

/// A machine shaped like the capture's: x86-64 with DMA, DMA32 and Normal populated (RAM
/// above the 3-4 GiB PCI hole), Movable and Device empty, 2 CPUs, one node.
fn like_the_capture() -> Machine {
    MachineBuilder::new().ram_mib(5 << 10).cpus(2).build().unwrap()
}

#[test]
fn layout_matches_linux_6_18() {
    let m = like_the_capture();
    assert_same_layout("buddyinfo", &show(&m, BUDDYINFO), &sample("buddyinfo.txt"), true);
    assert_same_layout("pagetypeinfo", &show(&m, PAGETYPEINFO), &sample("pagetypeinfo.txt"), true);
    assert_same_layout("zoneinfo", &show(&m, ZONEINFO), &sample("zoneinfo.txt"), false);
    assert_same_layout("meminfo", &show(&m, MEMINFO), &sample("meminfo.txt"), true);
}

#[test]
fn layout_checker_catches_a_wrong_width() {
    // The shape check itself must be able to fail: one column narrower, one label renamed.
    let theirs = sample("meminfo.txt");
    let narrow = theirs.replacen("MemFree:        22419040 kB", "MemFree:        2241904 kB", 1);
    let renamed = theirs.replacen("Buffers:  ", "Buffer:   ", 1);
    for bad in [narrow, renamed] {
        let r = std::panic::catch_unwind(|| assert_same_layout("meminfo", &bad, &theirs, true));
        assert!(r.is_err(), "the layout check accepted a changed line");
    }
}

// ---------------------------------------------------------------------------------------------
// The views follow the allocator.

/// `(node, zone, [blocks per order])` for each buddyinfo line.
fn buddy_rows(s: &str) -> Vec<(usize, String, Vec<usize>)> {
    s.lines()
        .map(|l| {
            let rest = l.strip_prefix("Node ").unwrap();
            let (node, rest) = rest.split_once(", zone ").unwrap();
            let mut f = rest.split_whitespace();
            let zone = f.next().unwrap().to_string();
            (node.parse().unwrap(), zone, f.map(|n| n.parse().unwrap()).collect())
        })
        .collect()
}

fn buddy_pages(rows: &[(usize, String, Vec<usize>)]) -> usize {
    rows.iter().flat_map(|(_, _, c)| c.iter().enumerate().map(|(o, n)| n << o)).sum()
}

fn meminfo_kb(s: &str, label: &str) -> usize {
    let line = s.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label} line"));
    line[label.len()..].trim().trim_end_matches(" kB").parse().unwrap()
}

/// The text of one zone's block in zoneinfo.
fn zone_block<'a>(s: &'a str, node: usize, zone: &str) -> &'a str {
    let head = format!("Node {node}, zone {zone:>8}\n");
    let start = s.find(&head).unwrap_or_else(|| panic!("no {head:?}"));
    let len = s[start + 1..].find("\nNode ").map_or(s.len() - start, |e| e + 2);
    &s[start..start + len]
}

fn field(block: &str, name: &str) -> usize {
    let line = block.lines().find(|l| l.trim_start().starts_with(name)).unwrap_or_else(|| panic!("no {name}"));
    line.trim_start()[name.len()..].trim().parse().unwrap()
}

#[test]
fn buddyinfo_follows_allocations() {
    pin_current_thread(0);
    let m = small();
    // This test follows the buddy lists block by block, so it bypasses the per-CPU lists.
    m.set_pcp_enabled(false);
    let check = |dma32: [usize; 11], unmovable_blocks: usize| {
        let b = buddy_rows(&show(&m, BUDDYINFO));
        assert_eq!(b[0], (0, "DMA".into(), vec![2, 2, 2, 2, 2, 1, 1, 0, 1, 1, 3]), "GFP_KERNEL never touches DMA");
        assert_eq!(b[1], (0, "DMA32".into(), dma32.to_vec()));
        let free: usize = m.zones().map(|z| z.free_pages()).sum();
        assert_eq!(buddy_pages(&b), free, "buddyinfo adds up to the free pages");
        assert_eq!(meminfo_kb(&show(&m, MEMINFO), "MemFree:"), free * 4);
        let zi = show(&m, ZONEINFO);
        let dma32_free = buddy_pages(&b[1..]);
        assert_eq!(field(zone_block(&zi, 0, "DMA32"), "pages free"), dma32_free);
        assert_eq!(field(zone_block(&zi, 0, "DMA32"), "nr_free_pages "), dma32_free);
        let blocks = show(&m, PAGETYPEINFO);
        let row = blocks.lines().find(|l| l.starts_with("Node 0, zone    DMA32 ")).unwrap();
        let counts: Vec<usize> = row[21..].split_whitespace().map(|n| n.parse().unwrap()).collect();
        assert_eq!(counts, [unmovable_blocks, 120 - unmovable_blocks, 0, 0, 0]);
    };
    let start = [0, 1, 0, 1, 0, 1, 1, 1, 1, 0, 59];
    check(start, 0);
    // Order 0, unmovable: no Unmovable block yet, so the allocator claims the largest Movable
    // block (an order-10 block: two pageblocks turn Unmovable) and splits it: one more free
    // block of each order 0..=9, one fewer of order 10.
    let a0 = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    check([1, 2, 1, 2, 1, 2, 2, 2, 2, 1, 58], 2);
    // Order 3 and 9 come from the Unmovable halves of that split.
    let a3 = m.alloc_pages(Gfp::KERNEL, Order::of(3)).unwrap();
    check([1, 2, 1, 1, 1, 2, 2, 2, 2, 1, 58], 2);
    let a9 = m.alloc_pages(Gfp::KERNEL, Order::of(9)).unwrap();
    check([1, 2, 1, 1, 1, 2, 2, 2, 2, 0, 58], 2);
    // Order 10 claims another whole Movable order-10 block.
    let a10 = m.alloc_pages(Gfp::KERNEL, Order::of(10)).unwrap();
    check([1, 2, 1, 1, 1, 2, 2, 2, 2, 0, 57], 4);
    for (p, o) in [(a10, 10), (a9, 9), (a3, 3), (a0, 0)] {
        // SAFETY: each block is ours and unused from here on.
        unsafe { m.__free_pages(p, Order::of(o)) };
    }
    // Everything merges back; the claimed pageblocks stay Unmovable.
    check(start, 4);
    assert_eq!(m.report_count(ReportKind::BadPage), 0);
}

#[test]
fn x86_32_shows_highmem() {
    pin_current_thread(0);
    let m = MachineBuilder::new().preset(Preset::X86_32).ram_mib(2048).cpus(2).build().unwrap();
    let b = buddy_rows(&show(&m, BUDDYINFO));
    let zones: Vec<&str> = b.iter().map(|(_, z, _)| z.as_str()).collect();
    assert_eq!(zones, ["DMA", "Normal", "HighMem"]);
    // HighMem is [896 MiB, 2 GiB): 1152 MiB = 288 free blocks of 4 MiB, nothing carved there.
    assert_eq!(b[2].2, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 288]);

    let zi = show(&m, ZONEINFO);
    let heads: Vec<&str> = zi.lines().filter(|l| l.starts_with("Node ")).collect();
    assert_eq!(
        heads,
        [
            "Node 0, zone      DMA",
            "Node 0, zone   Normal",
            "Node 0, zone  HighMem",
            "Node 0, zone  Movable",
            "Node 0, zone   Device"
        ]
    );
    let high = zone_block(&zi, 0, "HighMem");
    assert_eq!(field(high, "managed"), 294_912);
    assert_eq!(field(high, "start_pfn:"), (896 << 20) >> 12);
    // One reserve entry per zone type of x86-32; HighMem has no ratio, so it keeps nothing back.
    assert!(high.contains("\n        protection: (0, 0, 0, 0, 0)\n"), "{high}");

    let mi = show(&m, MEMINFO);
    assert_eq!(meminfo_kb(&mi, "HighTotal:"), 1_179_648);
    assert_eq!(meminfo_kb(&mi, "HighFree:"), 1_179_648);
    assert_eq!(meminfo_kb(&mi, "LowTotal:") + 1_179_648, meminfo_kb(&mi, "MemTotal:"));
    let labels: Vec<&str> = mi.lines().map(|l| l.split(':').next().unwrap()).collect();
    let at = labels.iter().position(|&l| l == "Mlocked").unwrap();
    assert_eq!(labels[at + 1..at + 6], ["HighTotal", "HighFree", "LowTotal", "LowFree", "SwapTotal"]);
    // 32-bit: no gigabyte pages; the 896 MiB direct map is 2 MiB of 4k pages and 2M pages.
    assert_eq!(labels[labels.len() - 2..], ["DirectMap4k", "DirectMap2M"]);
    assert_eq!(meminfo_kb(&mi, "DirectMap2M:"), 894 << 10);

    // A highmem page comes from HighMem and shows in HighFree.
    let p = m.alloc_pages(Gfp::HIGHUSER, Order::ZERO).unwrap();
    let mi = show(&m, MEMINFO);
    assert_eq!(meminfo_kb(&mi, "HighFree:"), 1_179_648 - 4);
    assert_eq!(meminfo_kb(&mi, "LowFree:"), meminfo_kb(&mi, "LowTotal:"));
    // SAFETY: the page is ours and unused from here on.
    unsafe { m.__free_pages(p, Order::ZERO) };
    assert_eq!(meminfo_kb(&show(&m, MEMINFO), "HighFree:"), 1_179_648);
}

#[test]
fn two_nodes_show_both() {
    pin_current_thread(0);
    let m = MachineBuilder::new().ram_mib(1024).nodes(2).cpus(2).build().unwrap();
    // The builder gives each node 4 of the 8 sections: node 0 [0, 512 MiB), node 1 [512 MiB, 1 GiB).
    let b = buddy_rows(&show(&m, BUDDYINFO));
    let zones: Vec<(usize, &str)> = b.iter().map(|(n, z, _)| (*n, z.as_str())).collect();
    assert_eq!(zones, [(0, "DMA"), (0, "DMA32"), (1, "DMA32")]);
    // Node 1: 512 MiB = 128 blocks of 4 MiB; its 4 sections' descriptors (4 MiB) and its node
    // (~8 KiB) are carved at its top, eating into the last two blocks: 126 whole blocks remain.
    assert_eq!(b[2].2[10], 126);

    let pt = show(&m, PAGETYPEINFO);
    assert_eq!(pt.matches("Page block order: 9\n").count(), 2, "pagetypeinfo repeats per node");
    assert!(pt.contains("\nNode 1, zone    DMA32            0          256            0            0            0 \n"));

    // CPU 0 is on node 0; an allocation that prefers node 1 is a hit there and "other".
    let p1 = m.alloc_pages_node(Some(1), Gfp::KERNEL, Order::ZERO).unwrap();
    let p0 = m.alloc_pages(Gfp::KERNEL, Order::ZERO).unwrap();
    let zi = show(&m, ZONEINFO);
    assert_eq!(zi.matches("  per-node stats\n").count(), 2);
    let n0 = zone_block(&zi, 0, "DMA32");
    let n1 = zone_block(&zi, 1, "DMA32");
    assert!(zone_block(&zi, 0, "DMA").contains("per-node stats"));
    assert!(n1.contains("per-node stats"), "node 1's first populated zone is DMA32");
    assert!(!zone_block(&zi, 1, "DMA").contains("pagesets"), "node 1 has no DMA: header lines only");
    assert_eq!([field(n0, "numa_hit"), field(n0, "numa_local"), field(n0, "numa_other")], [1, 1, 0]);
    assert_eq!([field(n1, "numa_hit"), field(n1, "numa_local"), field(n1, "numa_other")], [1, 0, 1]);
    assert_eq!(field(n1, "start_pfn:"), (512 << 20) >> 12);
    for (p, nid) in [(p0, 0), (p1, 1)] {
        assert_eq!(m.page_zone(p.page()).node(), nid);
        // SAFETY: the page is ours and unused from here on.
        unsafe { m.__free_pages(p, Order::ZERO) };
    }
}
