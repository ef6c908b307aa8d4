//! The `slub_debug=` (`slab_debug=`) boot option: which debug flags each cache gets.
//!
//! Syntax (Documentation/mm/slub.rst): `<opts>[,<slab>[,<slab>...]][;<opts>,<slabs>...]`.
//! Letters: `F` sanity checks, `Z` red zones, `P` poisoning, `U` user tracking, `T` trace,
//! `A` failslab, `O` (accepted, no effect), `-` everything off. Empty options mean full
//! debugging (`FZPU`). A block without a slab list sets the flags of every other cache; a
//! slab name may end in `*` to match a prefix.

use super::flags::SlabFlags;

/// `DEBUG_DEFAULT_FLAGS`: `F`, `Z`, `P`, `U`.
pub const DEBUG_DEFAULT_FLAGS: SlabFlags =
    SlabFlags::CONSISTENCY_CHECKS.union(SlabFlags::RED_ZONE).union(SlabFlags::POISON).union(SlabFlags::STORE_USER);

/// Parses one option block's letters. Unknown letters are returned in `unknown`.
fn parse_opts(opts: &str, unknown: &mut Option<char>) -> SlabFlags {
    if opts.is_empty() {
        return DEBUG_DEFAULT_FLAGS;
    }
    let mut f = SlabFlags::NONE;
    for ch in opts.chars() {
        match ch.to_ascii_lowercase() {
            '-' => f = SlabFlags::NONE,
            'f' => f |= SlabFlags::CONSISTENCY_CHECKS,
            'z' => f |= SlabFlags::RED_ZONE,
            'p' => f |= SlabFlags::POISON,
            'u' => f |= SlabFlags::STORE_USER,
            't' => f |= SlabFlags::TRACE,
            'a' => f |= SlabFlags::FAILSLAB,
            'o' => {}
            c => *unknown = Some(c),
        }
    }
    f
}

fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// The debug flags the option string gives cache `name` (`kmem_cache_flags`), and the
/// first unknown option letter, if any.
///
/// ```
/// use kmem::slab::{slub_debug_flags, SlabFlags};
/// let (f, _) = slub_debug_flags("FZ;-,dentry", "task_struct");
/// assert_eq!(f, SlabFlags::CONSISTENCY_CHECKS | SlabFlags::RED_ZONE);
/// assert_eq!(slub_debug_flags("FZ;-,dentry", "dentry").0, SlabFlags::NONE);
/// assert_eq!(slub_debug_flags("P,kmalloc-*", "kmalloc-64").0, SlabFlags::POISON);
/// assert_eq!(slub_debug_flags("P,kmalloc-*", "dentry").0, SlabFlags::NONE);
/// ```
pub fn slub_debug_flags(s: &str, name: &str) -> (SlabFlags, Option<char>) {
    let mut unknown = None;
    if s.is_empty() {
        return (DEBUG_DEFAULT_FLAGS, None);
    }
    let mut global = None;
    let mut any_list = false;
    let mut matched = None;
    for block in s.split(';').filter(|b| !b.is_empty()) {
        let mut parts = block.split(',');
        let opts = parts.next().unwrap_or("");
        let flags = parse_opts(opts, &mut unknown);
        let slabs: &str = block.get(opts.len() + 1..).unwrap_or("");
        if !block.contains(',') {
            global = Some(flags);
            continue;
        }
        any_list = true;
        if matched.is_none() && slabs.split(',').any(|p| !p.is_empty() && name_matches(p, name)) {
            matched = Some(flags);
        }
    }
    let global = global.unwrap_or(if any_list { SlabFlags::NONE } else { DEBUG_DEFAULT_FLAGS });
    (matched.unwrap_or(global), unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_follow_slub_rst() {
        assert_eq!(slub_debug_flags("", "x").0, DEBUG_DEFAULT_FLAGS);
        assert_eq!(slub_debug_flags("FZPU", "x").0, DEBUG_DEFAULT_FLAGS);
        assert_eq!(slub_debug_flags(",dentry", "dentry").0, DEBUG_DEFAULT_FLAGS, "empty options: full debugging");
        assert_eq!(slub_debug_flags(",dentry", "inode").0, SlabFlags::NONE);
        assert_eq!(slub_debug_flags("-", "x").0, SlabFlags::NONE);
        assert_eq!(slub_debug_flags("Pu", "x").0, SlabFlags::POISON | SlabFlags::STORE_USER, "case-insensitive");
        assert_eq!(slub_debug_flags("U;Z,a,b", "b").0, SlabFlags::RED_ZONE);
        assert_eq!(slub_debug_flags("U;Z,a,b", "c").0, SlabFlags::STORE_USER);
        assert_eq!(slub_debug_flags("FX", "c"), (SlabFlags::CONSISTENCY_CHECKS, Some('x')));
    }
}
