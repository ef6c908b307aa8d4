//! Physical memory management: page descriptors, zones, the buddy allocator.

pub mod alloc_flags;
pub(crate) mod buddy;
pub mod frame;
pub(crate) mod free_area;
pub mod meminit;
pub(crate) mod memmap;
pub mod node;
pub mod page;
pub mod page_alloc;
pub mod page_free;
pub mod page_ref;
pub mod page_reporting;
pub mod pages;
pub mod pcp;
pub(crate) mod pfn_list;
pub mod show_mem;
pub mod verify;
pub mod watermark;
pub mod zeroed;
pub mod zone;
pub mod zone_type;
