//! Where boot puts the section descriptor arrays (Linux's `mm/sparse.c`, `sparse_init`).
//!
//! A section is present when usable RAM overlaps it; it belongs to that RAM's node (a section
//! across two nodes is refused). When the present sections are one run of consecutive
//! sections on one node, boot carves their arrays as one buffer in pfn order, as Linux's
//! `sparse_buffer_init` does per node, and the memory map is flat (`mm/memmap.rs`): every
//! present section's map word is the same, so `pfn_to_page` is one multiply-add. A run with
//! a hole (an absent section between present ones) or sections on several nodes keeps one
//! array per section: covering a hole would cost a section's descriptors of real RAM.

use super::memblock::Memblock;
use super::BootError;
use crate::addr::PAGE_SHIFT;
use crate::mm::memmap::PAGES_PER_SECTION;

/// The node of section `nr`, or `None` if no usable RAM overlaps it.
pub(super) fn section_node(mb: &Memblock, nr: usize) -> Result<Option<u8>, BootError> {
    let s = ((nr * PAGES_PER_SECTION) as u64) << PAGE_SHIFT;
    let send = s + ((PAGES_PER_SECTION as u64) << PAGE_SHIFT);
    let mut node = None;
    for m in mb.memory().iter().filter(|m| m.start < send && s < m.end) {
        match node {
            None => node = Some(m.node),
            Some(n) if n != m.node => return Err(BootError::SectionSpansNodes { section: nr }),
            Some(_) => {}
        }
    }
    Ok(node)
}

/// `(first, count, node)` if the present sections among `0..nr_sections` (`node_of`: the
/// section's node, `None` if absent) are `count` consecutive sections from `first`, all on
/// `node`; `None` if they are not, or if none is present. Boot lays such a machine's memory
/// map out flat; a platform deciding whether it needs a vmemmap asks the same question.
pub fn flat_run(
    nr_sections: usize,
    mut node_of: impl FnMut(usize) -> Result<Option<u8>, BootError>,
) -> Result<Option<(usize, usize, u8)>, BootError> {
    let mut run: Option<(usize, usize, u8)> = None;
    let mut ended = false;
    for nr in 0..nr_sections {
        match (node_of(nr)?, &mut run) {
            (None, Some(_)) => ended = true,
            (None, None) => {}
            (Some(node), None) => run = Some((nr, 1, node)),
            (Some(node), Some((_, n, rn))) => {
                if ended || node != *rn {
                    return Ok(None);
                }
                *n += 1;
            }
        }
    }
    Ok(run)
}

/// Marks the memmap dense (`mm/memmap.rs`) when every frame below the direct-map limit
/// `limit` has a readable descriptor slot at `B + pfn * 32` that is its descriptor or reads
/// as zero: every section below the limit is present in the flat map (boot carved one array
/// for them all, or each sits at its vmemmap slot), or the platform's vmemmap reads as zero
/// where no section sits and its range holds a slot for every section below the limit.
pub(super) fn mark_dense<P: crate::Platform + ?Sized>(
    memmap: &mut crate::mm::memmap::Memmap,
    platform: &P,
    limit: u64,
) {
    let Some(base) = memmap.flat_base() else { return };
    let sections = limit.div_ceil((PAGES_PER_SECTION as u64) << PAGE_SHIFT) as usize;
    let all_present = (0..sections).all(|nr| memmap.section(nr).is_some_and(|s| s.present()));
    let zero_vmemmap = platform.vmemmap_reads_zero()
        && platform.vmemmap_range().is_some_and(|(s, e)| {
            s.as_usize() == base && e.as_usize() - s.as_usize() >= sections * super::MEMMAP_BYTES_PER_SECTION
        });
    if all_present || zero_vmemmap {
        // SAFETY: by the tests above every frame below `limit` has its slot in the flat
        // array (present sections) or in the vmemmap range, which the platform keeps reading
        // as zero until a section's descriptors are placed there (`vmemmap_reads_zero`).
        unsafe { memmap.mark_dense(limit) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(nodes: &[Option<u8>]) -> Option<(usize, usize, u8)> {
        flat_run(nodes.len(), |nr| Ok(nodes[nr])).unwrap()
    }

    #[test]
    fn flat_run_takes_one_run_on_one_node_only() {
        assert_eq!(run(&[Some(0), Some(0), Some(0)]), Some((0, 3, 0)));
        assert_eq!(run(&[None, Some(1), Some(1), None, None]), Some((1, 2, 1)), "absent sections around the run");
        assert_eq!(run(&[Some(0), None, Some(0)]), None, "a hole between present sections");
        assert_eq!(run(&[Some(0), Some(1)]), None, "two nodes");
        assert_eq!(run(&[None, None]), None, "nothing present");
    }
}
