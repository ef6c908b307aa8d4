//! The parsing loop reads allocation tails through a memo and takes their GFP flags and
//! cache from it (`fast_memo.rs`, `Frontend::parsed_in`): its operations, caches and counts
//! are those of parsing each line alone (`Frontend::line`, no memo), on a trace made to
//! stress the memo (many more distinct tails than entries, repeated tails a few lines
//! apart, kmalloc and unnamed caches, size mismatches, unknown GFP tokens, `__GFP_NOFAIL`,
//! `__GFP_ZERO` dropped or not) and on the repository's excerpt.

use std::io;
use std::path::Path;

use kmem_trace::input;
use kmem_trace::run::parse_all;
use kmem_trace::Frontend;

/// A trace of allocations whose tails repeat at varying distances, with every front-end
/// case: `n` lines.
fn stress(n: usize) -> Vec<u8> {
    let names = ["filp", "maple_node", "kmalloc-64", "dma-kmalloc-512", "vm_area_struct", ""];
    let gfps = ["GFP_KERNEL", "GFP_KERNEL|__GFP_ZERO", "GFP_NOFS|__GFP_NOFAIL", "GFP_KERNEL|__GFP_BOGUS", "0xcc0"];
    let mut t = String::new();
    let mut x: u64 = 0x1234_5678;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Tails from a small set most of the time, from a large one (evictions) otherwise.
        let r = (x % 1000) as usize;
        let variety = if r < 700 { 3 } else { 2000 };
        let k = (x >> 20) as usize % variety;
        let name = names[k % names.len()];
        let gfp = gfps[k / 7 % gfps.len()];
        let size = 8 << (k % 5);
        // The same name with another slot size now and then: a size mismatch.
        let alloc = if k % 11 == 0 { size * 2 } else { size };
        let ptr = 0x1000 + (x >> 40) % 4096 * 64;
        let line = match (x >> 12) % 4 {
            0 => format!(
                " t-1 [001] ..... {i}.5: kmem_cache_alloc: call_site=f+0x1/0x2 ptr={ptr:016x} name={name} \
                 bytes_req={size} bytes_alloc={alloc} gfp_flags={gfp} node=-1 accounted={}\n",
                k % 2 == 0
            ),
            1 => format!(
                " t-1 [002] ..... {i}.5: kmalloc: call_site=g+0x1/0x2 ptr={ptr:016x} bytes_req={size} \
                 bytes_alloc={alloc} gfp_flags={gfp} node={}\n",
                k % 3
            ),
            2 => format!(
                " t-1 [000] ..... {i}.5: mm_page_alloc: page=0000000012345678 pfn=0x{:x} order={} \
                 migratetype={} gfp_flags={gfp}\n",
                ptr >> 6,
                k % 3,
                k % 2
            ),
            _ => format!(" t-1 [001] ..... {i}.5: kfree: call_site=h+0x1/0x2 ptr={ptr:016x}\n"),
        };
        t.push_str(&line);
    }
    t.into_bytes()
}

/// Asserts that parsing `text` in the loop and line by line give the same operations, caches
/// and counts, with `__GFP_ZERO` dropped or not.
fn same_as_line_by_line(text: &[u8]) {
    for drop_zero in [false, true] {
        let mut fe = Frontend::new();
        fe.set_drop_zero(drop_zero);
        let (mut r, _) = input::from_reader(io::Cursor::new(text.to_vec())).unwrap();
        let ops = parse_all(&mut *r, &mut fe).unwrap();

        let mut alone = Frontend::new();
        alone.set_drop_zero(drop_zero);
        let want: Vec<_> = text
            .split_inclusive(|&b| b == b'\n')
            .enumerate()
            .filter_map(|(i, l)| alone.line(i as u64 + 1, l))
            .collect();
        assert_eq!(ops.len(), want.len());
        for (i, (a, b)) in ops.iter().zip(&want).enumerate() {
            assert_eq!(a, b, "operation {i}");
        }
        assert_eq!(fe.caches(), alone.caches());
        assert_eq!(format!("{:?}", fe.counts), format!("{:?}", alone.counts));
    }
}

#[test]
fn memoised_tails_give_the_operations_and_counts_of_each_line_alone() {
    let text = stress(60_000);
    same_as_line_by_line(&text);
    // The trace has what the memo must get right.
    let mut fe = Frontend::new();
    let (mut r, _) = input::from_reader(io::Cursor::new(text)).unwrap();
    parse_all(&mut *r, &mut fe).unwrap();
    let c = &fe.counts;
    assert!(c.kmalloc_caches > 1000 && c.nofail > 1000 && c.gfp_unknown_tokens > 1000, "{c:?}");
    assert!(fe.caches().iter().any(|c| c.size_mismatches > 100), "{:?}", fe.caches());
    assert!(fe.caches().iter().any(|c| c.name.starts_with("size-")), "{:?}", fe.caches());
}

#[test]
fn the_excerpt_parses_the_same_through_the_memo() {
    let path = input::excerpt_trace(Path::new(env!("CARGO_MANIFEST_DIR")));
    let mut text = Vec::new();
    io::Read::read_to_end(&mut *input::Trace::open(&path).unwrap().into_reader().unwrap(), &mut text).unwrap();
    same_as_line_by_line(&text);
}
