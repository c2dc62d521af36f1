//! How figures are shown in the JSON dashboards and the advice: one rounding rule, a
//! leaf both can use.

/// Rounds to 2 decimals, as every figure in the JSON dashboards.
pub fn round2(x: f64) -> f64 {
    if x.is_finite() {
        (x * 100.0).round() / 100.0
    } else {
        0.0
    }
}
