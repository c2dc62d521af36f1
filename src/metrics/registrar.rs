//! Registering families on the explicit registry, and resolving per-label children once.

use prometheus::core::{MetricVec, MetricVecBuilder};
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// One child of a one-label family per value, in the order given.
pub(super) fn row<B: MetricVecBuilder>(family: &MetricVec<B>, values: &[&str]) -> Vec<B::M> {
    values
        .iter()
        .map(|value| family.with_label_values(&[value]))
        .collect()
}

/// One child of a two-label family per (row, column) value pair, indexed
/// `[row][column]` in the order given (the enums' `ALL` order).
pub(super) fn grid(
    family: &IntCounterVec,
    rows: &[&str],
    columns: &[&str],
) -> Vec<Vec<IntCounter>> {
    rows.iter()
        .map(|row| {
            columns
                .iter()
                .map(|column| family.with_label_values(&[row, column]))
                .collect()
        })
        .collect()
}

/// Registers families, panicking only on a programming error (a duplicate or
/// malformed constant name), which every test run would hit first.
pub(super) struct Registrar<'a>(pub(super) &'a Registry);

impl Registrar<'_> {
    pub(super) fn add<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        self.0
            .register(Box::new(c.clone()))
            .expect("metric names are unique constants");
        c
    }

    pub(super) fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    pub(super) fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    pub(super) fn int_counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("valid metric"))
    }

    pub(super) fn int_gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("valid metric"))
    }

    pub(super) fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.add(Gauge::new(name, help).expect("valid metric"))
    }
}
