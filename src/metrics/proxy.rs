//! The proxy's families: requests by function and result, and their latency. The
//! `function` label is bounded by `[[proxy.functions]]`: any other function is `other`.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec};

use super::REQUEST_BUCKETS;
use super::registrar::Registrar;

/// How the proxy handled one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyResult {
    /// Served from a tier.
    Hit,
    /// Asked of the upstream through the chain.
    Miss,
    /// A cached function's call forwarded without the cache (unverified caller, a
    /// `Prefer` or `Accept` a cached answer cannot honour, …).
    Bypass,
    /// Not a cached function: forwarded untouched.
    Passthrough,
    /// The daemon answered an error itself (upstream unreachable, breaker open, bad request).
    Error,
}

impl ProxyResult {
    pub const ALL: [ProxyResult; 5] = [
        ProxyResult::Hit,
        ProxyResult::Miss,
        ProxyResult::Bypass,
        ProxyResult::Passthrough,
        ProxyResult::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProxyResult::Hit => "hit",
            ProxyResult::Miss => "miss",
            ProxyResult::Bypass => "bypass",
            ProxyResult::Passthrough => "passthrough",
            ProxyResult::Error => "error",
        }
    }
}

pub(super) struct ProxyFamilies {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
}

impl ProxyFamilies {
    pub fn new(r: &Registrar) -> Self {
        let requests = r.counter_vec(
            "codette_cache_proxy_requests_total",
            "Requests under the Supabase prefixes, by function (`other` for uncached ones and non-RPC paths) and result.",
            &["function", "result"],
        );
        let duration = r.add(
            HistogramVec::new(
                HistogramOpts::new(
                    "codette_cache_proxy_request_duration_seconds",
                    "Time to answer a proxied request (to its response headers for pass-through), by function and result.",
                )
                .buckets(REQUEST_BUCKETS.to_vec()),
                &["function", "result"],
            )
            .expect("valid metric"),
        );
        Self { requests, duration }
    }

    /// One function's series, resolved once so a request does no label hashing.
    pub fn children(&self, function: &str) -> ProxyChildren {
        ProxyChildren {
            requests: ProxyResult::ALL
                .map(|r| self.requests.with_label_values(&[function, r.as_str()])),
            duration: ProxyResult::ALL
                .map(|r| self.duration.with_label_values(&[function, r.as_str()])),
        }
    }
}

/// One function's proxy series, by [`ProxyResult`].
#[derive(Clone)]
pub struct ProxyChildren {
    requests: [IntCounter; 5],
    duration: [Histogram; 5],
}

impl ProxyChildren {
    pub fn record(&self, result: ProxyResult, elapsed: Duration) {
        let i = result as usize;
        self.requests[i].inc();
        self.duration[i].observe(elapsed.as_secs_f64());
    }

    /// Requests so far, by result (for the JSON dashboards).
    pub fn counts(&self) -> [(ProxyResult, u64); 5] {
        ProxyResult::ALL.map(|r| (r, self.requests[r as usize].get()))
    }
}
