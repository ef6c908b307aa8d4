//! Reports reach stderr by default (problems only, rate-limited as printk_ratelimit), and
//! `quiet_reports` keeps them in the log only.

#![forbid(unsafe_code)]

use kmem::kmalloc::KMALLOC_MAX_SIZE;
use kmem::{Gfp, ReportKind};
use kmem_hosted::{Machine, MachineBuilder, ReportEcho};

/// A kmalloc and its kfree through the safe handles: `TRACE` lines on a `slub_debug=T`
/// machine.
fn traced_kmalloc(m: &Machine) {
    drop(kmem::KBox::new(m, 1u64, Gfp::KERNEL).unwrap());
}

/// Twenty problem reports, made as fast as kmem can.
fn twenty_warnings(m: &Machine) -> u64 {
    let before = m.report_count(ReportKind::Warning);
    for _ in 0..20 {
        assert!(m.kmalloc(KMALLOC_MAX_SIZE + 1, Gfp::KERNEL).is_err());
    }
    m.report_count(ReportKind::Warning) - before
}

#[test]
fn problems_are_echoed_by_default_and_rate_limited() {
    let m = MachineBuilder::new().ram_mib(64).slub_debug("T").build().unwrap();
    traced_kmalloc(&m);
    assert!(m.report_count(ReportKind::Info) > 0, "SLAB_TRACE lines are reports");
    assert_eq!(m.reports().echoed(), 0, "informational reports are not echoed by default");
    let made = twenty_warnings(&m);
    assert!(made >= 20, "each oversized kmalloc warns: {made}");
    let log = m.reports();
    assert_eq!(log.echoed() + log.suppressed(), made, "every problem report is echoed or counted as suppressed");
    assert!(log.echoed() >= 10, "the first burst of 10 is echoed: {}", log.echoed());
    assert_eq!(log.texts(ReportKind::Warning).len() as u64, made, "the log keeps every report");
}

#[test]
fn quiet_machines_echo_nothing_and_still_log() {
    let m = MachineBuilder::new().ram_mib(64).quiet_reports().build().unwrap();
    let made = twenty_warnings(&m);
    assert_eq!((m.reports().echoed(), m.reports().suppressed()), (0, 0));
    assert_eq!(m.reports().texts(ReportKind::Warning).len() as u64, made);
}

#[test]
fn echo_all_shows_informational_reports_too() {
    let m = MachineBuilder::new().ram_mib(64).slub_debug("T").report_echo(ReportEcho::All).build().unwrap();
    traced_kmalloc(&m);
    let log = m.reports();
    assert_eq!(log.echoed() + log.suppressed(), m.report_count(ReportKind::Info));
    assert!(log.echoed() > 0);
}
