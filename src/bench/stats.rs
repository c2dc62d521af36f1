//! Small statistics for the tester: mean, sample standard deviation, the verdict.

/// Mean of the values; 0 for none.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Sample standard deviation (n - 1 in the denominator, as Python's `statistics.stdev`);
/// 0 for fewer than two values.
pub fn sample_std_dev(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values);
    let var = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
    var.sqrt()
}

/// The original tester's summary thresholds: "Excellent" above 5x, "Good" above 2x.
pub fn verdict(speedup: f64) -> &'static str {
    if speedup > 5.0 {
        "Excellent"
    } else if speedup > 2.0 {
        "Good"
    } else {
        "Low"
    }
}

/// Parses `30s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Sample std dev matches Python's statistics.stdev.
    #[test]
    fn mean_and_sample_std_dev() {
        let v = [285.63, 270.0, 290.1, 260.5, 286.0];
        assert!((mean(&v) - 278.446).abs() < 1e-9);
        assert!((sample_std_dev(&v) - 12.628_166).abs() < 1e-5);
        assert_eq!(sample_std_dev(&[1.0]), 0.0);
        assert_eq!(mean(&[]), 0.0);
    }

    /// The original's thresholds: strictly above 5x and 2x.
    #[test]
    fn verdict_thresholds() {
        assert_eq!(verdict(6.49), "Excellent");
        assert_eq!(verdict(5.0), "Good");
        assert_eq!(verdict(2.01), "Good");
        assert_eq!(verdict(2.0), "Low");
    }

    /// Durations in the forms the CLI takes; nonsense is an error, not a panic.
    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3h").is_err());
    }
}
