//! The /proc views (placeholder until the renderers land).

use core::fmt;

use crate::machine::Kmem;
use crate::platform::Platform;

/// `/proc/buddyinfo`.
pub fn buddyinfo<P: Platform>(_k: &Kmem<P>, _w: &mut dyn fmt::Write) -> fmt::Result {
    Ok(())
}
/// `/proc/pagetypeinfo`.
pub fn pagetypeinfo<P: Platform>(_k: &Kmem<P>, _w: &mut dyn fmt::Write) -> fmt::Result {
    Ok(())
}
/// `/proc/zoneinfo`.
pub fn zoneinfo<P: Platform>(_k: &Kmem<P>, _w: &mut dyn fmt::Write) -> fmt::Result {
    Ok(())
}
/// `/proc/meminfo`.
pub fn meminfo<P: Platform>(_k: &Kmem<P>, _w: &mut dyn fmt::Write) -> fmt::Result {
    Ok(())
}
