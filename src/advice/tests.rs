//! Each rule against crafted snapshots.

use super::*;
use crate::stats::{Snapshot, TierState};
use crate::tiers::{Health, Size, TierKind};

fn traffic(hits: u64, misses: u64) -> Snapshot {
    Snapshot {
        hits,
        misses,
        avg_hit_ms: 1.0,
        avg_miss_ms: 300.0,
        ttl_secs: 300,
        origin_kind: "sample",
        tiers: vec![tier(TierKind::Memory, Health::Active)],
        ..Snapshot::default()
    }
}

fn tier(kind: TierKind, health: Health) -> TierState {
    TierState {
        kind,
        health,
        size: Size::default(),
        hits: 0,
        errors: 0,
        ops: Vec::new(),
        rejected: Vec::new(),
        topology: None,
    }
}

fn rules_fired(s: &Snapshot) -> Vec<&'static str> {
    evaluate(s, &AdviceConfig::default())
        .iter()
        .map(|a| a.rule)
        .collect()
}

fn messages(s: &Snapshot) -> Vec<String> {
    evaluate(s, &AdviceConfig::default())
        .into_iter()
        .map(|a| a.message)
        .collect()
}

/// > 80 %: the seed's optimal line and its speedup line.
#[test]
fn optimal_band() {
    let m = messages(&traffic(42, 8));
    assert_eq!(m[0], "✅ Cache performing optimally with high hit rate");
    assert_eq!(m[1], "Maintaining 300.00x performance improvement");
}

/// 50-80 %: monitor; < 50 %: low, with the seed's wording.
#[test]
fn monitor_and_low_bands() {
    assert!(messages(&traffic(30, 20))[0].contains("monitor for optimization opportunities"));
    let low = evaluate(&traffic(10, 40), &AdviceConfig::default());
    assert!(low[0].message.contains("Cache efficiency low"));
    assert_eq!(low[0].severity, Severity::Warning);
    assert_eq!(low[0].figure.value, 20.0);
}

/// > 95 %: over-caching note beside the optimal line.
#[test]
fn over_caching() {
    assert!(rules_fired(&traffic(99, 1)).contains(&"over_caching"));
    assert!(!rules_fired(&traffic(90, 10)).contains(&"over_caching"));
}

/// Under min_requests no verdict is given, only the not-enough-traffic note.
#[test]
fn not_enough_traffic() {
    let fired = rules_fired(&traffic(3, 1));
    assert!(fired.contains(&"not_enough_traffic"));
    assert!(!fired.contains(&"hit_rate"));
}

/// Latency targets from seed Part 7.
#[test]
fn latency_targets() {
    let mut s = traffic(40, 10);
    s.avg_hit_ms = 150.0;
    s.avg_miss_ms = 500.0;
    let fired = rules_fired(&s);
    assert!(fired.contains(&"hit_latency") && fired.contains(&"miss_latency"));
}

/// Redis down is critical; no Redis suggests one, more strongly with several instances.
#[test]
fn redis_rules() {
    let mut s = traffic(40, 10);
    s.tiers.push(tier(TierKind::Redis, Health::Unavailable));
    assert!(rules_fired(&s).contains(&"redis_disconnected"));
    let alone = evaluate(&traffic(40, 10), &AdviceConfig::default());
    let hint = alone.iter().find(|a| a.rule == "no_shared_tier").unwrap();
    assert_eq!(
        hint.message,
        "Consider Redis if scaling to multiple backend instances"
    );
    let many = AdviceConfig {
        expected_instances: 3,
        ..AdviceConfig::default()
    };
    let warn = evaluate(&traffic(40, 10), &many);
    assert!(
        warn.iter()
            .any(|a| a.rule == "no_shared_tier" && a.severity == Severity::Warning)
    );
}

/// Size evictions and a nearly full memory tier are reported.
#[test]
fn memory_rules() {
    let mut s = traffic(40, 10);
    s.evictions = vec![(crate::metrics::EvictionCause::Size, 12)];
    s.tiers[0].size = Size {
        entries: Some(10),
        bytes: Some(95),
        max_bytes: Some(100),
    };
    let fired = rules_fired(&s);
    assert!(fired.contains(&"memory_evicting") && fired.contains(&"memory_near_bound"));
}

/// Case/whitespace variants suggest normalisation, unless it is already on.
#[test]
fn query_variants() {
    let mut s = traffic(40, 10);
    s.query_variants = 5;
    s.distinct_queries = 10;
    assert!(rules_fired(&s).contains(&"query_variants"));
    s.normalize_queries = true;
    assert!(!rules_fired(&s).contains(&"query_variants"));
}

/// Origin failures above the threshold are critical.
#[test]
fn origin_errors() {
    let mut s = traffic(40, 10);
    s.origin_ok = 90;
    s.origin_timeouts = 10;
    assert!(rules_fired(&s).contains(&"origin_errors"));
    s.origin_timeouts = 2;
    assert!(!rules_fired(&s).contains(&"origin_errors"));
}
