//! The /proc views, by name.

use clap::ValueEnum;
use kmem_hosted::Machine;

use crate::opts::MachineOpts;
use crate::workload;

/// A /proc file kmem can render.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum View {
    /// /proc/buddyinfo
    Buddyinfo,
    /// /proc/pagetypeinfo
    Pagetypeinfo,
    /// /proc/zoneinfo
    Zoneinfo,
    /// /proc/meminfo
    Meminfo,
    /// /proc/slabinfo
    Slabinfo,
}

impl View {
    /// Every view, in the order the demo prints them.
    pub const ALL: [View; 5] = [View::Buddyinfo, View::Pagetypeinfo, View::Zoneinfo, View::Meminfo, View::Slabinfo];

    /// The file name.
    pub fn name(self) -> &'static str {
        match self {
            View::Buddyinfo => "buddyinfo",
            View::Pagetypeinfo => "pagetypeinfo",
            View::Zoneinfo => "zoneinfo",
            View::Meminfo => "meminfo",
            View::Slabinfo => "slabinfo",
        }
    }

    /// Renders the view.
    pub fn render(self, m: &Machine) -> String {
        let mut s = String::new();
        let r = match self {
            View::Buddyinfo => kmem::proc::buddyinfo(m, &mut s),
            View::Pagetypeinfo => kmem::proc::pagetypeinfo(m, &mut s),
            View::Zoneinfo => kmem::proc::zoneinfo(m, &mut s),
            View::Meminfo => kmem::proc::meminfo(m, &mut s),
            View::Slabinfo => kmem::proc::slabinfo(m, &mut s),
        };
        r.expect("writing to a String cannot fail");
        s
    }
}

/// `kmem proc VIEW`.
pub fn proc_cmd(view: View, opts: &MachineOpts, duration: f64, seed: u64) -> Result<(), String> {
    let m = opts.build()?;
    let caches = workload::DemoCaches::new(&m)?;
    let held = workload::run(&m, &caches, duration, seed, false);
    print!("{}", view.render(&m));
    held.release(&m, &caches);
    Ok(())
}
