//! The Prometheus families fed by the per-request recorders: request counts and
//! latency, tier operation latency, origin latency and time saved. They are built from
//! the sharded recorders at scrape time (a custom collector), so a request touches no
//! shared Prometheus atomics; the text format is the same as the client library's.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

use super::function::{Function, Functions};
use super::recorder::{Recorder, Totals};
use super::{Outcome, TierOp};
use crate::names::TierKind;

/// Every recorder a request or an operation writes to.
pub struct Recorders {
    /// The `function` label values: the lanes of `outcomes` and `origin`.
    pub functions: Functions,
    /// By `Outcome::index`, a lane per function.
    pub outcomes: Vec<Recorder>,
    /// By `tier * TierOp::ALL.len() + op`.
    pub tier_ops: Vec<Recorder>,
    /// A lane per function.
    pub origin: Recorder,
    /// Published elsewhere -> applied here.
    pub invalidation_lag: Recorder,
}

impl Recorders {
    pub fn tier_op(&self, tier: TierKind, op: TierOp) -> &Recorder {
        &self.tier_ops[tier.index() * TierOp::ALL.len() + op as usize]
    }

    pub fn outcome(&self, outcome: Outcome) -> &Recorder {
        &self.outcomes[outcome.index()]
    }

    /// The slot of `function` (`other` if it was not listed at start-up).
    pub fn function(&self, name: &str) -> Function {
        self.functions.slot(name)
    }
}

struct Family {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

const REQUESTS: Family = Family {
    name: "codette_cache_requests_total",
    help: "Requests served through the chain, by function, the tier that answered and the result.",
    labels: &["function", "tier", "result"],
};
const REQUEST_SECONDS: Family = Family {
    name: "codette_cache_request_duration_seconds",
    help: "End-to-end latency of requests served through the chain, received to response ready, by function, tier and result.",
    labels: &["function", "tier", "result"],
};
const TIER_SECONDS: Family = Family {
    name: "codette_cache_tier_operation_duration_seconds",
    help: "Tier operation latency by tier and operation.",
    labels: &["tier", "op"],
};
const ORIGIN_SECONDS: Family = Family {
    name: "codette_cache_origin_request_duration_seconds",
    help: "Origin call latency, by function.",
    labels: &["function"],
};
const TIME_SAVED: Family = Family {
    name: "codette_cache_time_saved_seconds_total",
    help: "Sum over hits of (mean miss latency at that moment - the hit's latency).",
    labels: &[],
};
const INVALIDATION_LAG: Family = Family {
    name: "codette_cache_invalidation_lag_seconds",
    help: "Broadcast invalidations: published by another instance -> applied here.",
    labels: &[],
};
const FAMILIES: [Family; 6] = [
    REQUESTS,
    REQUEST_SECONDS,
    TIER_SECONDS,
    ORIGIN_SECONDS,
    TIME_SAVED,
    INVALIDATION_LAG,
];

/// Collects the recorder-fed families.
pub struct LatencyCollector {
    recorders: Arc<Recorders>,
    descs: Vec<Desc>,
}

impl LatencyCollector {
    pub fn new(recorders: Arc<Recorders>) -> Self {
        let descs = FAMILIES
            .iter()
            .map(|f| {
                let labels = f.labels.iter().map(|l| (*l).to_owned()).collect();
                Desc::new(f.name.into(), f.help.into(), labels, HashMap::new())
                    .expect("metric names are valid constants")
            })
            .collect();
        Self { recorders, descs }
    }
}

impl Collector for LatencyCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let r = &self.recorders;
        let mut requests = Vec::new();
        let mut seconds = Vec::new();
        let mut saved_nanos = 0u64;
        for (lane, function) in r.functions.iter() {
            for outcome in Outcome::all() {
                let recorder = r.outcome(outcome);
                let totals = recorder.lane_totals(lane);
                let (tier, result) = outcome.labels();
                let labels = [("function", function), ("result", result), ("tier", tier)];
                requests.push(counter(&labels, totals.count as f64));
                seconds.push(histogram(&labels, recorder, &totals));
                saved_nanos = saved_nanos.saturating_add(totals.saved_nanos);
            }
        }
        let mut tier_ops = Vec::new();
        for tier in TierKind::ALL {
            for op in TierOp::ALL {
                let recorder = r.tier_op(tier, op);
                let labels = [("op", op.as_str()), ("tier", tier.as_str())];
                tier_ops.push(histogram(&labels, recorder, &recorder.totals()));
            }
        }
        let origin = r
            .functions
            .iter()
            .map(|(lane, function)| {
                histogram(
                    &[("function", function)],
                    &r.origin,
                    &r.origin.lane_totals(lane),
                )
            })
            .collect();
        let lag = histogram(&[], &r.invalidation_lag, &r.invalidation_lag.totals());
        vec![
            family(&REQUESTS, MetricType::COUNTER, requests),
            family(&REQUEST_SECONDS, MetricType::HISTOGRAM, seconds),
            family(&TIER_SECONDS, MetricType::HISTOGRAM, tier_ops),
            family(&ORIGIN_SECONDS, MetricType::HISTOGRAM, origin),
            family(
                &TIME_SAVED,
                MetricType::COUNTER,
                vec![counter(&[], saved_nanos as f64 / 1e9)],
            ),
            family(&INVALIDATION_LAG, MetricType::HISTOGRAM, vec![lag]),
        ]
    }
}

fn family(f: &Family, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(f.name.into());
    family.set_help(f.help.into());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

/// Label pairs, which must come sorted by name.
fn labelled(labels: &[(&str, &str)]) -> proto::Metric {
    let pairs = labels
        .iter()
        .map(|(name, value)| {
            let mut pair = proto::LabelPair::default();
            pair.set_name((*name).into());
            pair.set_value((*value).into());
            pair
        })
        .collect();
    proto::Metric::from_label(pairs)
}

fn counter(labels: &[(&str, &str)], value: f64) -> proto::Metric {
    let mut metric = labelled(labels);
    let mut c = proto::Counter::default();
    c.set_value(value);
    metric.set_counter(c);
    metric
}

fn histogram(labels: &[(&str, &str)], recorder: &Recorder, totals: &Totals) -> proto::Metric {
    let mut metric = labelled(labels);
    let mut h = proto::Histogram::default();
    h.set_sample_count(totals.count);
    h.set_sample_sum(totals.nanos as f64 / 1e9);
    h.set_bucket(
        recorder
            .bounds_seconds()
            .zip(&totals.cumulative)
            .map(|(bound, &n)| {
                let mut b = proto::Bucket::default();
                b.set_upper_bound(bound);
                b.set_cumulative_count(n);
                b
            })
            .collect(),
    );
    metric.set_histogram(h);
    metric
}
