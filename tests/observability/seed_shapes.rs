//! The seed's JSON shapes (Parts 1 and 3): the compatibility contract, and the checks
//! that a dashboard keeps them: same keys and JSON types, 2 decimals, a UTC timestamp.

use serde_json::Value;

pub(crate) const SEED_STATS: &str = r#"{
  "cache_enabled": true,
  "entries": 12,
  "ttl_seconds": 300,
  "metrics": {
    "hits": 42, "misses": 8, "total_requests": 50, "hit_rate_percent": 84.0,
    "average_hit_latency_ms": 45.2, "average_miss_latency_ms": 285.6,
    "performance_gain_multiplier": 6.31, "uptime_seconds": 3600.0
  },
  "timestamp": "2025-12-02T02:47:01.451643Z"
}"#;

pub(crate) const SEED_METRICS: &str = r#"{
  "performance_dashboard": {
    "cache_hit_rate": "84.0%",
    "total_requests": 50,
    "successful_hits": 42,
    "cache_misses": 8,
    "average_latency_comparison": {
      "cached_response_ms": 45.2, "uncached_response_ms": 285.6,
      "speedup_multiplier": "6.31x", "time_saved_per_hit_ms": 240.4
    },
    "cumulative_time_saved": {"total_ms": 10096.8, "total_seconds": 10.1},
    "cache_efficiency": {
      "memory_entries": 12, "ttl_seconds": 300, "uptime_seconds": 3600,
      "estimated_memory_mb": 0.048
    }
  },
  "timestamp": "2025-12-02T02:47:01.451643Z"
}"#;

pub(crate) const SEED_DASHBOARD: &str = r#"{
  "analytics": {
    "cache_performance": {
      "overall_hit_rate": "84.0%",
      "total_requests_processed": 50,
      "successful_cache_hits": 42,
      "cache_misses": 8,
      "average_response_times": {
        "with_cache_ms": 45.2, "without_cache_ms": 285.6, "speedup_multiplier": "6.31x"
      },
      "total_time_saved": {
        "milliseconds": 10096.8, "seconds": 10.1,
        "estimated_cost_savings": "Multiple RPC calls avoided"
      }
    },
    "cache_infrastructure": {
      "memory_cache_enabled": true, "redis_cache_enabled": true, "redis_connected": true,
      "memory_entries": 12, "estimated_memory_usage_mb": 0.048, "ttl_seconds": 300,
      "uptime_seconds": 3600
    },
    "optimization_recommendations": [
      "✅ Cache performing optimally with high hit rate",
      "Maintaining 6.31x performance improvement",
      "Consider Redis if scaling to multiple backend instances"
    ]
  },
  "timestamp": "2025-12-02T02:47:01.451643Z"
}"#;

pub(crate) const SEED_STATUS: &str = r#"{
  "cache_backends": {"memory_cache": "active", "redis_cache": "connected"},
  "current_mode": "dual",
  "fallback_chain": [
    "Redis (if enabled and connected)", "In-memory cache", "Fresh Supabase RPC call"
  ],
  "timestamp": "2025-12-02T02:47:01.451643Z"
}"#;

/// Every key of the seed example is present in `actual` with the same JSON type (seed
/// integers must stay integers, seed decimals stay decimals); new keys are allowed.
pub(crate) fn assert_seed_shape(seed: &str, actual: &Value) {
    let seed: Value = serde_json::from_str(seed).expect("seed example is JSON");
    shape(&seed, actual, "$");
}

fn shape(seed: &Value, actual: &Value, path: &str) {
    match seed {
        Value::Object(fields) => {
            let object = actual
                .as_object()
                .unwrap_or_else(|| panic!("{path}: {actual} is not an object"));
            for (key, want) in fields {
                let got = object
                    .get(key)
                    .unwrap_or_else(|| panic!("{path}.{key} is missing from {actual:#}"));
                shape(want, got, &format!("{path}.{key}"));
            }
        }
        Value::Array(items) => {
            let got = actual
                .as_array()
                .unwrap_or_else(|| panic!("{path}: {actual} is not an array"));
            if let Some(first) = items.first() {
                for (i, item) in got.iter().enumerate() {
                    shape(first, item, &format!("{path}[{i}]"));
                }
            }
        }
        Value::String(_) => assert!(actual.is_string(), "{path}: {actual} is not a string"),
        Value::Bool(_) => assert!(actual.is_boolean(), "{path}: {actual} is not a bool"),
        Value::Number(n) if n.is_u64() => {
            assert!(actual.is_u64(), "{path}: {actual} is not an integer");
        }
        Value::Number(_) => assert!(actual.is_f64(), "{path}: {actual} is not a decimal"),
        Value::Null => {}
    }
}

/// Every decimal anywhere in `v` has at most 2 decimals.
pub(crate) fn assert_rounded(v: &Value, path: &str) {
    match v {
        Value::Object(fields) => {
            for (key, item) in fields {
                assert_rounded(item, &format!("{path}.{key}"));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                assert_rounded(item, &format!("{path}[{i}]"));
            }
        }
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().expect("f64");
            let cents = x * 100.0;
            assert!(
                (cents - cents.round()).abs() <= 1e-6 * cents.abs().max(1.0),
                "{path} = {x} has more than 2 decimals"
            );
        }
        _ => {}
    }
}

/// `timestamp` is RFC 3339 in UTC (`Z`) and close to now.
pub(crate) fn assert_timestamp(v: &Value) {
    let ts = v["timestamp"].as_str().expect("timestamp is a string");
    let parsed = chrono::DateTime::parse_from_rfc3339(ts)
        .unwrap_or_else(|e| panic!("timestamp {ts:?} is not RFC 3339: {e}"));
    assert!(ts.ends_with('Z'), "timestamp {ts:?} is not UTC");
    let skew = chrono::Utc::now()
        .signed_duration_since(parsed)
        .num_seconds();
    assert!(skew.abs() < 60, "timestamp {ts:?} is {skew} s from now");
}

/// One advice object: rule, severity, message and the figure that triggered it.
pub(crate) fn assert_advice_shape(a: &Value) {
    assert!(a["rule"].is_string(), "{a}");
    let severity = a["severity"].as_str().expect("severity is a string");
    assert!(
        ["info", "warning", "critical"].contains(&severity),
        "severity {severity:?}"
    );
    assert!(!a["message"].as_str().expect("message").is_empty(), "{a}");
    assert!(a["figure"]["name"].is_string(), "{a}");
    assert!(a["figure"]["value"].is_number(), "{a}");
}
