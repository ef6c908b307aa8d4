//! The JSON report's shape, serialized with serde: one struct per object, borrowing from
//! [`Report`]. The keys are documented in `kmem replay --help` (and stay in that order).
//! Numbers: counts are integers; seconds, rates and percentages are rounded to 3 decimals
//! (`1.5`, not `1.500`), and a non-finite one is `null`.

use std::collections::BTreeMap;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::input::Compression;
use crate::op::{Kind, Malformed, TraceCounts};
use crate::render::{Report, REPORT_NAMES};
use crate::replay::Mem;
use crate::run::MachineMem;
use crate::summary::{Audit, CacheRow};

/// A float rounded to 3 decimals; `None` (`null`) when not finite.
pub fn f3(v: f64) -> Option<f64> {
    v.is_finite().then(|| (v * 1000.0).round() / 1000.0)
}

/// Serializes a float as [`f3`] rounds it (`#[serde(serialize_with)]`).
pub fn ser_f3<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    f3(*v).serialize(s)
}

/// Named counts in a fixed order: `{name: count, ...}`.
struct Named<'a>(&'a [(&'static str, u64)]);

impl Serialize for Named<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

fn per_kind(a: &[u64; Kind::COUNT]) -> Vec<(&'static str, u64)> {
    Kind::ALL.iter().map(|&k| (k.name(), a[k as usize])).collect()
}

fn per_mem(a: &[u64; 4]) -> Vec<(&'static str, u64)> {
    Mem::ALL.iter().map(|&m| (m.name(), a[m as usize])).collect()
}

#[derive(Serialize)]
struct MalformedJson<'a> {
    line: u64,
    error: String,
    text: &'a str,
}

impl<'a> From<&'a Malformed> for MalformedJson<'a> {
    fn from(m: &'a Malformed) -> Self {
        MalformedJson { line: m.line, error: m.error.to_string(), text: &m.text }
    }
}

#[derive(Serialize)]
struct TraceJson<'a> {
    path: &'a str,
    compression: &'static str,
    lines: u64,
    events: u64,
    ignored_lines: u64,
    lost_events: u64,
    malformed: u64,
    malformed_first: Vec<MalformedJson<'a>>,
    unknown_events: BTreeMap<&'a str, u64>,
    traced_failures: u64,
    gfp_unknown_tokens: u64,
    nofail_requests: u64,
    kmalloc_cache_events: u64,
    zero_dropped: u64,
}

impl<'a> TraceJson<'a> {
    fn new(r: &'a Report<'_>, t: &'a TraceCounts) -> Self {
        TraceJson {
            path: r.path,
            compression: if r.compression == Compression::Zstd { "zstd" } else { "none" },
            lines: t.lines,
            events: r.events(),
            ignored_lines: t.ignored_lines,
            lost_events: t.lost_events,
            malformed: t.malformed,
            malformed_first: t.malformed_first.iter().map(MalformedJson::from).collect(),
            unknown_events: t.unknown.iter().map(|(k, v)| (k.as_str(), *v)).collect(),
            traced_failures: t.traced_failures,
            gfp_unknown_tokens: t.gfp_unknown_tokens,
            nofail_requests: t.nofail,
            kmalloc_cache_events: t.kmalloc_caches,
            zero_dropped: t.zero_dropped,
        }
    }
}

#[derive(Serialize)]
struct MachineJson<'a> {
    preset: &'a str,
    ram_bytes: u64,
    cpus: usize,
    nodes: usize,
}

#[derive(Serialize)]
struct Totals {
    ops: u64,
    replayed: u64,
    failures: u64,
    unmatched_frees: u64,
    missed_frees: u64,
    null_frees: u64,
    batched_after_free: u64,
    cross_kind_frees: u64,
    order_mismatches: u64,
    cache_create_failures: u64,
    frees_of_failed: u64,
}

#[derive(Serialize)]
struct TimingJson {
    total_s: Option<f64>,
    replay_s: Option<f64>,
    events_per_s: Option<f64>,
    replay_ops_per_s: Option<f64>,
}

#[derive(Serialize)]
struct MemoryJson<'a> {
    live_bytes: Named<'a>,
    peak_bytes: Named<'a>,
    peak_total_bytes: u64,
    machine_slab_pages: u64,
    machine_peak_slab_pages: u64,
    machine_used_pages: u64,
    machine_peak_used_pages: u64,
}

/// The OOM killer, `__GFP_NOFAIL`, and the machine's reclaim.
#[derive(Serialize)]
struct OomJson<'a> {
    notifier_calls: u64,
    kills: u64,
    pressure_kills: u64,
    objects_freed: u64,
    blocks_freed: u64,
    bytes_freed: u64,
    victim_frees: Named<'a>,
    nofail: u64,
    nofail_by_replayer: u64,
    nofail_failed: u64,
    reclaimed_blocks: u64,
    reclaimed_bytes: u64,
    reclaimed_frees: Named<'a>,
    allocstall: u64,
    pgsteal_direct: u64,
    machine_oom: u64,
    nofail_sleeps: u64,
}

/// The audit with its verdict first.
#[derive(Serialize)]
struct AuditJson<'a> {
    ok: bool,
    #[serde(flatten)]
    audit: &'a Audit,
}

/// The `--then` views: `{name: text}` in the order given.
struct Views<'a>(&'a [(&'static str, String)]);

impl Serialize for Views<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct ReportJson<'a> {
    trace: TraceJson<'a>,
    machine: MachineJson<'a>,
    events: Named<'a>,
    replayed: Named<'a>,
    failures: Named<'a>,
    unmatched_frees: Named<'a>,
    missed_frees: Named<'a>,
    totals: Totals,
    timing: TimingJson,
    memory: MemoryJson<'a>,
    caches: &'a [CacheRow],
    reports: Named<'a>,
    oom: OomJson<'a>,
    audit: AuditJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    views: Option<Views<'a>>,
}

/// The JSON report: one object and a newline, appended to `out`.
pub fn write(r: &Report<'_>, out: &mut String) {
    let (t, c) = (r.trace, r.replay);
    let total = |a: &[u64; Kind::COUNT]| a.iter().sum::<u64>();
    let kinds = [&t.events, &c.replayed, &c.failures, &c.unmatched_frees, &c.missed_frees].map(per_kind);
    let mems = [&c.live_bytes, &c.peak_bytes].map(per_mem);
    let reports: Vec<(&'static str, u64)> = REPORT_NAMES.iter().copied().zip(r.reports).collect();
    let victim_frees = per_kind(&c.oom.victim_frees);
    let reclaimed_frees = per_kind(&c.oom.reclaimed_frees);
    let MachineMem { slab_pages, peak_slab_pages, used_pages, peak_used_pages } = r.mem;
    let j = ReportJson {
        trace: TraceJson::new(r, t),
        machine: MachineJson { preset: &r.machine.0, ram_bytes: r.machine.1, cpus: r.machine.2, nodes: r.machine.3 },
        events: Named(&kinds[0]),
        replayed: Named(&kinds[1]),
        failures: Named(&kinds[2]),
        unmatched_frees: Named(&kinds[3]),
        missed_frees: Named(&kinds[4]),
        totals: Totals {
            ops: c.ops,
            replayed: total(&c.replayed),
            failures: total(&c.failures),
            unmatched_frees: total(&c.unmatched_frees),
            missed_frees: total(&c.missed_frees),
            null_frees: c.null_frees,
            batched_after_free: c.batched_after_free,
            cross_kind_frees: c.cross_kind_frees,
            order_mismatches: c.order_mismatches,
            cache_create_failures: c.cache_create_failures,
            frees_of_failed: c.frees_of_failed,
        },
        timing: TimingJson {
            total_s: f3(r.timing.total.as_secs_f64()),
            replay_s: f3(r.timing.replay.as_secs_f64()),
            events_per_s: f3(r.rate_total()),
            replay_ops_per_s: f3(r.rate_replay()),
        },
        memory: MemoryJson {
            live_bytes: Named(&mems[0]),
            peak_bytes: Named(&mems[1]),
            peak_total_bytes: c.peak_total_bytes,
            machine_slab_pages: slab_pages,
            machine_peak_slab_pages: peak_slab_pages,
            machine_used_pages: used_pages,
            machine_peak_used_pages: peak_used_pages,
        },
        caches: &r.caches,
        reports: Named(&reports),
        oom: OomJson {
            notifier_calls: c.oom.notifier_calls,
            kills: c.oom.kills,
            pressure_kills: c.oom.pressure_kills,
            objects_freed: c.oom.objects_freed,
            blocks_freed: c.oom.blocks_freed,
            bytes_freed: c.oom.bytes_freed,
            victim_frees: Named(&victim_frees),
            nofail: c.oom.nofail,
            nofail_by_replayer: c.oom.nofail_by_replayer,
            nofail_failed: c.oom.nofail_failed,
            reclaimed_blocks: c.oom.reclaimed_blocks,
            reclaimed_bytes: c.oom.reclaimed_bytes,
            reclaimed_frees: Named(&reclaimed_frees),
            allocstall: r.reclaim.allocstall_total(),
            pgsteal_direct: r.reclaim.pgsteal_direct,
            machine_oom: r.reclaim.oom,
            nofail_sleeps: r.reclaim.nofail_waits,
        },
        audit: AuditJson { ok: r.audit.ok(), audit: &r.audit },
        views: (!r.views.is_empty()).then_some(Views(&r.views)),
    };
    out.push_str(&serde_json::to_string(&j).expect("the report serializes"));
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::f3;

    #[test]
    fn floats_round_to_three_decimals_and_non_finite_is_null() {
        assert_eq!(f3(1.5), Some(1.5));
        assert_eq!(f3(0.12345), Some(0.123));
        assert_eq!(f3(f64::NAN), None);
        assert_eq!(f3(f64::INFINITY), None);
        assert_eq!(serde_json::to_string(&f3(f64::NAN)).unwrap(), "null");
        assert_eq!(serde_json::to_string(&f3(2.0 / 3.0)).unwrap(), "0.667");
    }
}
