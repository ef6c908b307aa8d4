//! The /proc views, by name.

use clap::ValueEnum;
use kmem_hosted::Machine;

use crate::opts::MachineOpts;
use crate::workload;

/// A /proc (or debugfs) file kmem can render.
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
    /// /sys/kernel/debug/extfrag/unusable_index
    #[value(name = "unusable_index", alias = "unusable-index")]
    UnusableIndex,
    /// /sys/kernel/debug/extfrag/extfrag_index
    #[value(name = "extfrag_index", alias = "extfrag-index")]
    ExtfragIndex,
    /// /proc/vmallocinfo
    Vmallocinfo,
    /// /proc/vmstat
    Vmstat,
    /// /sys/kernel/debug/kfence/stats (the machine boots with KFENCE)
    #[value(name = "kfence_stats", alias = "kfence-stats")]
    KfenceStats,
    /// /sys/kernel/debug/kfence/objects (the machine boots with KFENCE)
    #[value(name = "kfence_objects", alias = "kfence-objects")]
    KfenceObjects,
}

impl View {
    /// The views the demo prints, in order (the KFENCE views only when asked for: the demo
    /// machine has no KFENCE unless `--kfence-sample-interval` is given).
    pub const ALL: [View; 9] = [
        View::Buddyinfo,
        View::Pagetypeinfo,
        View::Zoneinfo,
        View::Meminfo,
        View::Slabinfo,
        View::Vmallocinfo,
        View::Vmstat,
        View::UnusableIndex,
        View::ExtfragIndex,
    ];

    /// The file name.
    pub fn name(self) -> &'static str {
        match self {
            View::Buddyinfo => "buddyinfo",
            View::Pagetypeinfo => "pagetypeinfo",
            View::Zoneinfo => "zoneinfo",
            View::Meminfo => "meminfo",
            View::Slabinfo => "slabinfo",
            View::UnusableIndex => "unusable_index",
            View::ExtfragIndex => "extfrag_index",
            View::Vmallocinfo => "vmallocinfo",
            View::Vmstat => "vmstat",
            View::KfenceStats => "kfence_stats",
            View::KfenceObjects => "kfence_objects",
        }
    }

    /// The file's path on Linux.
    pub fn path(self) -> String {
        match self {
            View::UnusableIndex | View::ExtfragIndex => format!("/sys/kernel/debug/extfrag/{}", self.name()),
            View::KfenceStats => "/sys/kernel/debug/kfence/stats".to_owned(),
            View::KfenceObjects => "/sys/kernel/debug/kfence/objects".to_owned(),
            _ => format!("/proc/{}", self.name()),
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
            View::UnusableIndex => kmem::proc::unusable_index(m, &mut s),
            View::ExtfragIndex => kmem::proc::extfrag_index(m, &mut s),
            View::Vmallocinfo => kmem::proc::vmallocinfo(m, &mut s),
            View::Vmstat => kmem::proc::vmstat(m, &mut s),
            View::KfenceStats => kmem::proc::kfence_stats(m, &mut s),
            View::KfenceObjects => kmem::proc::kfence_objects(m, &mut s),
        };
        r.expect("writing to a String cannot fail");
        s
    }
}

/// Parses `--views`: comma-separated view names, `all` or `none`.
pub fn parse_view_list(s: &str) -> Result<crate::demo::ViewList, String> {
    let s = s.trim();
    if s == "all" {
        return Ok(crate::demo::ViewList(View::ALL.to_vec()));
    }
    if s == "none" || s.is_empty() {
        return Ok(crate::demo::ViewList(Vec::new()));
    }
    let mut views = Vec::new();
    for name in s.split(',').map(str::trim) {
        let v = View::from_str(name, true).map_err(|_| {
            let known: Vec<&str> = View::ALL.iter().map(|v| v.name()).collect();
            format!("unknown view '{name}' (expected all, none, or a list of: {})", known.join(", "))
        })?;
        if !views.contains(&v) {
            views.push(v);
        }
    }
    Ok(crate::demo::ViewList(views))
}

/// `kmem proc VIEW`.
pub fn proc_cmd(view: View, opts: &MachineOpts, duration: f64, seed: u64) -> Result<(), String> {
    let duration = crate::demo::check_duration(duration)?;
    let mut b = opts.builder();
    if matches!(view, View::KfenceStats | View::KfenceObjects) && opts.kfence_sample_interval.is_none() {
        // The KFENCE views boot it at Linux's default interval.
        b = b.kfence(kmem::kfence::KfenceConfig::default());
    }
    let m = b.build().map_err(|e| e.to_string())?;
    let caches = workload::DemoCaches::new(&m)?;
    let held = workload::run(&m, &caches, duration, seed, false);
    let vheld = (duration > 0.0).then(|| crate::phases::vmalloc_phase(&m, seed));
    print!("{}", view.render(&m));
    held.release(&m, &caches);
    if let Some(v) = vheld {
        v.release(&m);
    }
    Ok(())
}
