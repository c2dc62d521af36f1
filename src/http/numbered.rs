//! Header values that end in a number of seconds (`Age: 12`, `Cache-Status:
//! codette-cache; hit; ttl=288`), made once for 0 to [`MAX`] and shared. Why: made per
//! answer, each cost an allocation or two, ~450 of a proxied hit's ~20k instructions
//! (callgrind). A clone of one of these is a copy: they point at static text.

use std::sync::LazyLock;

use warp::http::HeaderValue;

/// The largest number kept: an hour covers the usual TTLs and ages.
const MAX: u64 = 3600;

/// `prefix` followed by each number from 0 to [`MAX`].
struct Table(Vec<HeaderValue>);

impl Table {
    fn new(prefix: &str) -> Self {
        let mut text = String::new();
        let mut ends = Vec::new();
        for n in 0..=MAX {
            text.push_str(prefix);
            text.push_str(itoa::Buffer::new().format(n));
            ends.push(text.len());
        }
        // Once per table, for the process's life: `from_static` values clone for free.
        let text: &'static str = Box::leak(text.into_boxed_str());
        let mut start = 0;
        let values = ends
            .into_iter()
            .map(|end| {
                let value = HeaderValue::from_static(&text[start..end]);
                start = end;
                value
            })
            .collect();
        Self(values)
    }

    fn get(&self, n: u64) -> Option<HeaderValue> {
        usize::try_from(n).ok().and_then(|n| self.0.get(n)).cloned()
    }
}

static AGES: LazyLock<Table> = LazyLock::new(|| Table::new(""));
static HIT_TTLS: LazyLock<Table> = LazyLock::new(|| Table::new(HIT_TTL));

/// What [`hit_ttl`] puts before the number.
pub const HIT_TTL: &str = "codette-cache; hit; ttl=";

/// `Age: secs`.
pub fn age(secs: u64) -> HeaderValue {
    AGES.get(secs).unwrap_or_else(|| HeaderValue::from(secs))
}

/// `codette-cache; hit; ttl=left`, when `left` is in the table (else the caller writes it).
pub fn hit_ttl(left: i64) -> Option<HeaderValue> {
    u64::try_from(left).ok().and_then(|n| HIT_TTLS.get(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kept values and made ones read the same, at both ends of the table and past it.
    #[test]
    fn values_are_the_numbers() {
        for n in [0, 1, 9, 10, 299, 300, MAX - 1, MAX, MAX + 1, u64::MAX] {
            assert_eq!(age(n), n.to_string().as_str());
        }
        for n in [0, 7, 288, MAX as i64] {
            assert_eq!(hit_ttl(n).unwrap(), format!("{HIT_TTL}{n}").as_str());
        }
        assert_eq!(hit_ttl(-1), None);
        assert_eq!(hit_ttl(MAX as i64 + 1), None);
    }
}
