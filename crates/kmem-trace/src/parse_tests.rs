use super::*;

fn ev(line: &str) -> Event<'_> {
    match parse_line(line.as_bytes()) {
        Ok(Line::Event(e)) => e,
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn kmalloc() {
    let e = ev("            bash-6842    [000] .....   286.430843: kmalloc: call_site=eventfs_set_attr+0x10d/0x140 \
                ptr=00000000e5c4c801 bytes_req=60 bytes_alloc=64 gfp_flags=GFP_NOFS|__GFP_ZERO node=-1 accounted=false\n");
    assert_eq!(e.cpu, 0);
    assert!(!e.irq);
    assert_eq!(
        e.kind,
        EventKind::Kmalloc { ptr: 0xe5c4c801, bytes_req: 60, bytes_alloc: 64, gfp: "GFP_NOFS|__GFP_ZERO" }
    );
}

#[test]
fn kfree_and_null() {
    let e = ev("bash-6842 [001] ..... 286.432339: kfree: call_site=ida_alloc_range+0x39b/0x400 ptr=0000000000000000");
    assert_eq!((e.cpu, e.kind), (1, EventKind::Kfree { ptr: 0 }));
    let e = ev("bash-6842 [001] ..... 286.432339: kfree: call_site=f+0x1/0x2 ptr=(null)");
    assert_eq!(e.kind, EventKind::Kfree { ptr: 0 });
    let e = ev("bash-6842 [001] 286.432339: kfree: call_site=f+0x1/0x2 ptr=0xffff888012345678");
    assert_eq!(e.kind, EventKind::Kfree { ptr: 0xffff_8880_1234_5678 });
}

#[test]
fn kmem_cache_alloc_and_free() {
    let e = ev("bash-6842 [000] ..... 286.431283: kmem_cache_alloc: call_site=alloc_empty_file+0x3c/0x110 \
                ptr=00000000210b47ef name=filp bytes_req=184 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1 accounted=true");
    assert_eq!(
        e.kind,
        EventKind::CacheAlloc { ptr: 0x210b47ef, name: "filp", bytes_req: 184, bytes_alloc: 192, gfp: "GFP_KERNEL" }
    );
    let e = ev("bash-6842 [000] ..... 286.431410: kmem_cache_free: call_site=__fput+0x141/0x2a0 ptr=00000000966b9a17 name=lsm_file_cache");
    assert_eq!(e.kind, EventKind::CacheFree { ptr: 0x966b9a17, name: "lsm_file_cache" });
    // Older kernels: no name=, and the _node variant.
    let e = ev("x-1 [000] ..... 1.0: kmem_cache_alloc_node: call_site=f ptr=10 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_ATOMIC node=0");
    assert_eq!(e.kind, EventKind::CacheAlloc { ptr: 0x10, name: "", bytes_req: 8, bytes_alloc: 8, gfp: "GFP_ATOMIC" });
}

#[test]
fn page_events() {
    let e = ev("cc1-6846 [001] ..... 286.431543: mm_page_alloc: page=000000002e380044 pfn=0x11a4b8 order=0 \
                migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP");
    assert_eq!(
        e.kind,
        EventKind::PageAlloc { pfn: Some(0x11a4b8), order: 0, gfp: "GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP" }
    );
    let e = ev("x-1 [001] ..... 1.0: mm_page_alloc: page=(null) pfn=0xffffffffffffffff order=3 migratetype=0 gfp_flags=GFP_KERNEL");
    assert_eq!(e.kind, EventKind::PageAlloc { pfn: None, order: 3, gfp: "GFP_KERNEL" });
    let e = ev("bash-6842 [000] ...2. 286.433736: mm_page_free: page=000000001dbac17c pfn=0x115320 order=2");
    assert_eq!(e.kind, EventKind::PageFree { pfn: 0x115320, order: 2 });
    let e = ev("bash-6842 [000] ...4. 286.433741: mm_page_free_batched: page=000000001dbac17c pfn=0x115320 order=0");
    assert_eq!(e.kind, EventKind::PageFreeBatched { pfn: 0x115320 });
}

#[test]
fn cpu_column_and_task_names() {
    // Task names with spaces and brackets; a module suffix after call_site.
    let e = ev("   kworker/u8:3 [ext4]-77 [017] d.h1. 10.5: kfree: call_site=f+0x1/0x2 [ext4] ptr=00000000000000aa");
    assert_eq!((e.cpu, e.kind), (17, EventKind::Kfree { ptr: 0xaa }));
    assert!(e.irq);
    // trace-cmd report without latency flags.
    let e = ev("  <idle>-0     [003]  5.000001: mm_page_free: page=0x1 pfn=0x20 order=1");
    assert_eq!((e.cpu, e.irq), (3, false));
}

#[test]
fn irq_flags() {
    let irq = |flags: &str| ev(&format!("t-1 [000] {flags} 1.0: kfree: call_site=f ptr=1")).irq;
    assert!(!irq("....."));
    assert!(!irq("d..1."));
    assert!(!irq(".N.2."));
    assert!(irq("..s.."));
    assert!(irq(".Ns1."));
    assert!(irq("d.h2."));
    assert!(irq("d.H1."));
}

#[test]
fn other_events_and_ignored_lines() {
    let e = ev("t-1 [000] ..... 1.0: mm_page_pcpu_drain: page=0x1 pfn=0x2 order=0 migratetype=1");
    assert_eq!(e.kind, EventKind::Other { name: "mm_page_pcpu_drain" });
    for l in ["", "   \n", "# tracer: nop", "#           TASK-PID     CPU#", "cpus=2", "version = 6", "CPU 1 is empty"]
    {
        assert_eq!(parse_line(l.as_bytes()), Ok(Line::Ignored), "{l:?}");
    }
    assert_eq!(parse_line(b"CPU:1 [LOST 123 EVENTS]\n"), Ok(Line::Lost(123)));
}

#[test]
fn malformed_lines() {
    let err = |l: &str| parse_line(l.as_bytes()).unwrap_err();
    assert_eq!(err("garbage"), ParseError::NoCpu);
    assert_eq!(err("t-1 [000] ..... notatime kfree: ptr=1"), ParseError::NoTimestamp);
    assert_eq!(err("t-1 [000] ..... 1.0:"), ParseError::NoEvent);
    assert_eq!(err("t-1 [000] ..... 1.0: kfree: call_site=f"), ParseError::MissingField("ptr"));
    assert_eq!(err("t-1 [000] ..... 1.0: kfree: ptr=xyz"), ParseError::BadNumber("ptr"));
    assert_eq!(err("t-1 [000] ..... 1.0: kfree: ptr=11111111111111111"), ParseError::BadNumber("ptr"));
    assert_eq!(
        err("t-1 [000] ..... 1.0: kmalloc: ptr=1 bytes_req=-4 bytes_alloc=8 gfp_flags=GFP_KERNEL"),
        ParseError::BadNumber("bytes_req")
    );
    assert_eq!(err("t-1 [000] ..... 1.0: mm_page_free: pfn=0x1 order=99"), ParseError::BadNumber("order"));
    assert_eq!(
        err("t-1 [000] ..... 1.0: kmalloc: ptr=1 bytes_req=4 bytes_alloc=8"),
        ParseError::MissingField("gfp_flags")
    );
    assert_eq!(parse_line(b"t-1 [000] ..... 1.0: kmem_cache_free: ptr=1 name=\xff"), Err(ParseError::NotUtf8));
    assert_eq!(err("t-1 [99999999999] ..... 1.0: kfree: ptr=1"), ParseError::NoCpu);
}
