//! Errors read as sentences: what was called, what failed, the errno last.

#![forbid(unsafe_code)]

use kmem::kmalloc::KMALLOC_MAX_SIZE;
use kmem::{Gfp, KVec, SlabFlags, VBox, VVec};
use kmem_hosted::MachineBuilder;

#[derive(Debug)]
#[repr(align(8192))]
struct TwoPages(#[allow(dead_code)] u8);

#[test]
fn errors_name_the_call_the_cause_and_the_errno() {
    let m = MachineBuilder::new().ram_mib(64).build().unwrap();
    let quiet = Gfp::KERNEL | Gfp::NOWARN;
    let e = m.kmem_cache_create("odd", 64, 3, SlabFlags::NONE, None).unwrap_err();
    assert_eq!(e.to_string(), "kmem_cache_create: alignment 3 is not a power of two (-EINVAL)");
    assert_eq!(e.errno(), -22);
    let e = m.kmem_cache_create(&"n".repeat(70), 64, 8, SlabFlags::NONE, None).unwrap_err();
    assert_eq!(e.to_string(), "kmem_cache_create: name of 70 bytes is longer than 63 (-EINVAL)");
    let e = m.kmem_cache_create("huge", 5 << 20, 8, SlabFlags::NONE, None).unwrap_err();
    assert!(e.to_string().starts_with("kmem_cache_create: ") && e.to_string().ends_with(" (-EINVAL)"), "{e}");

    let e = m.kmalloc(KMALLOC_MAX_SIZE + 1, quiet).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "kmalloc({}, GFP_KERNEL|__GFP_NOWARN): size above KMALLOC_MAX_SIZE ({KMALLOC_MAX_SIZE} bytes) (-ENOMEM)",
            KMALLOC_MAX_SIZE + 1
        )
    );
    let e = m.kmalloc_array(usize::MAX, 16, Gfp::KERNEL).unwrap_err();
    assert_eq!(e.to_string(), "kmalloc_array(n, 16, GFP_KERNEL): n * 16 overflows (-ENOMEM)");
    let e = KVec::<_, u8>::new(&m).reserve(KMALLOC_MAX_SIZE * 2, quiet).unwrap_err();
    assert!(e.to_string().ends_with("size above KMALLOC_MAX_SIZE (4194304 bytes) (-ENOMEM)"), "{e}");
    let e = kmem::KBox::new(&m, TwoPages(0), Gfp::KERNEL).unwrap_err();
    assert_eq!(e.to_string(), "kmalloc(8192, GFP_KERNEL): alignment 8192 is above a page (-EINVAL)");

    let e = m.vmalloc(0).unwrap_err();
    assert_eq!(e.to_string(), "vmalloc(0, GFP_KERNEL): size 0 (-EINVAL)");
    let e = m.__vmalloc(1 << 40, quiet).unwrap_err();
    assert_eq!(
        e.to_string(),
        "vmalloc(1099511627776, GFP_KERNEL|__GFP_NOWARN): more pages than the machine has (-ENOMEM)"
    );
    let e = VBox::new(&m, TwoPages(0), Gfp::KERNEL).unwrap_err();
    assert!(e.to_string().ends_with("alignment not a power of two, or above what vmalloc gives (-EINVAL)"), "{e}");
    let e = VVec::<_, u64>::with_capacity(&m, usize::MAX / 4, Gfp::KERNEL).unwrap_err();
    assert!(e.to_string().ends_with("(-ENOMEM)"), "{e}");
}
