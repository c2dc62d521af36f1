//! What PostgREST's request headers and bodies mean, as far as a cached call's key
//! needs: `Accept` and `Prefer` kept as PostgREST ranks them, and a POST body's members
//! with what parsing would lose (a repeated name, a number's exact text).

use std::borrow::Cow;

/// A JSON object's members in order, duplicates kept (a `Map` keeps only the last).
pub(super) struct Entries(pub(super) Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Whether `value` holds a number that is not an integer: parsed as an `f64`, its
/// text (`19.990`, `1e2`, `1.0`) is not what the function would receive.
pub(super) fn value_has_fraction(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(value_has_fraction),
        Value::Object(members) => members.values().any(value_has_fraction),
        Value::Null | Value::Bool(_) | Value::String(_) => false,
    }
}

/// `Accept`, when it asks only for media types PostgREST answers an RPC in; any other
/// is forwarded. PostgREST ranks the list by `q`, then specificity, then order, so the
/// list is kept whole (types lowercased, spaces dropped); only a lone `*/*` or
/// `application/json` is the same as none.
pub(super) fn accept(value: &str) -> Result<Cow<'_, str>, &'static str> {
    if matches!(value, "" | "*/*" | "application/json") {
        return Ok(Cow::Borrowed("json"));
    }
    let mut items = Vec::new();
    for item in value.split(',').filter(|i| !i.trim().is_empty()) {
        let mut parts = item.split(';').map(str::trim);
        let kind = parts.next().unwrap_or("").to_ascii_lowercase();
        if !matches!(
            kind.as_str(),
            "*/*"
                | "application/*"
                | "application/json"
                | "application/vnd.pgrst.object+json"
                | "application/vnd.pgrst.object"
                | "text/csv"
                | "text/plain"
        ) {
            return Err("accept");
        }
        items.push(
            std::iter::once(kind.as_str())
                .chain(parts)
                .collect::<Vec<_>>()
                .join(";"),
        );
    }
    Ok(Cow::Owned(items.join(",")))
}

/// The `Prefer` tokens that shape a read, exactly as sent (PostgREST's are
/// case-sensitive: `COUNT=EXACT` is not a preference, and `Asia/Tokyo` is a zone where
/// `asia/tokyo` is not); any other (`tx=`, `return=`, `params=`, …) asks for something a
/// cached answer would not give, and a preference given twice is ranked by PostgREST,
/// not here: those calls are forwarded.
pub(super) fn prefer<'a>(value: &'a str) -> Result<Vec<&'a str>, &'static str> {
    let mut tokens: Vec<&str> = Vec::new();
    for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let shaping = matches!(
            token,
            "count=exact"
                | "count=planned"
                | "count=estimated"
                | "handling=strict"
                | "handling=lenient"
        ) || token.starts_with("timezone=");
        if !shaping {
            return Err("prefer");
        }
        let name = |t: &'a str| t.split_once('=').map_or(t, |(name, _)| name);
        if tokens.iter().any(|t| name(t) == name(token)) {
            return Err("prefer");
        }
        tokens.push(token);
    }
    tokens.sort_unstable();
    Ok(tokens)
}
