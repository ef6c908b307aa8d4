//! The policy modules ARCHITECTURE.md calls safe say so to the compiler: each file starts
//! with `#![forbid(unsafe_code)]`, so an `unsafe` block (or `unsafe fn`) added there fails
//! the build instead of quietly breaking the claim. Mechanism (`memmap`, `page`, `boot`,
//! `highmem`, `boot/pagesets`, `percpu`, the slab's object access...) keeps the `unsafe`.

/// The files that must forbid `unsafe` (the layer diagram's "policy, safe" modules).
const POLICY: &[&str] = &[
    "src/addr.rs",
    "src/fault/attr.rs",
    "src/fault/handle.rs",
    "src/fault/hooks.rs",
    "src/gfp/mod.rs",
    "src/report.rs",
    "src/mm/alloc_flags.rs",
    "src/mm/buddy.rs",
    "src/mm/frame.rs",
    "src/mm/free_area.rs",
    "src/mm/node.rs",
    "src/mm/page_alloc.rs",
    "src/mm/page_alloc/nolock.rs",
    "src/mm/page_alloc/slowpath.rs",
    "src/mm/page_reporting.rs",
    "src/mm/pcp.rs",
    "src/mm/pcp/paths.rs",
    "src/mm/pfn_list.rs",
    "src/mm/show_mem.rs",
    "src/mm/verify.rs",
    "src/mm/watermark.rs",
    "src/mm/zone.rs",
    "src/mm/zone_type.rs",
    "src/proc/mod.rs",
    "src/proc/buddyinfo.rs",
    "src/proc/extfrag.rs",
    "src/proc/meminfo.rs",
    "src/proc/pagetypeinfo.rs",
    "src/proc/slabinfo.rs",
    "src/proc/vmallocinfo.rs",
    "src/proc/vmstat.rs",
    "src/proc/zoneinfo.rs",
    "src/reclaim/nofail.rs",
    "src/reclaim/oom.rs",
    "src/reclaim/shrinker.rs",
    "src/reclaim/vmscan.rs",
];

#[test]
fn policy_modules_forbid_unsafe_code() {
    let root = env!("CARGO_MANIFEST_DIR");
    let missing: Vec<_> = POLICY
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(format!("{root}/{f}")).unwrap_or_else(|e| panic!("{f}: {e}"));
            // An inner attribute: before the first item, after the module docs.
            !text
                .lines()
                .take_while(|l| !l.starts_with("use ") && !l.starts_with("pub "))
                .any(|l| l.trim() == "#![forbid(unsafe_code)]")
        })
        .collect();
    assert!(missing.is_empty(), "policy modules without #![forbid(unsafe_code)]: {missing:?}");
}
