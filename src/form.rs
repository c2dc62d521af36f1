//! Form-encoded query strings (`a=x+y&b=%20`), as the context route and the proxy read
//! them. A component that is not UTF-8 once decoded is refused rather than decoded
//! lossily: two different requests must never read as the same one, or they would share
//! a cache key.

use std::borrow::Cow;

/// The `name=value` pairs of a query, decoded; empty pairs are skipped and a pair
/// without `=` has an empty value. `Err(())` for a component that is not UTF-8.
pub fn pairs(query: &str) -> impl Iterator<Item = Result<(Cow<'_, str>, Cow<'_, str>), ()>> {
    raw_pairs(query).map(|(name, value)| Ok((decode(name).ok_or(())?, decode(value).ok_or(())?)))
}

/// The `name=value` pairs of a query as they are, for a caller that decodes only some.
pub fn raw_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// One form-encoded component (`+` is a space), or `None` when it is not UTF-8 once
/// decoded. Borrows when there is nothing to decode (a parameter name, most often);
/// otherwise decodes into one buffer of the component's length, which the result never
/// exceeds (the conversion `percent_encoding` offers grows its buffer byte by byte: a
/// tenth of a memory hit's instructions went there).
pub fn decode(component: &str) -> Option<Cow<'_, str>> {
    let bytes = component.as_bytes();
    if memchr::memchr2(b'+', b'%', bytes).is_none() {
        return Some(Cow::Borrowed(component));
    }
    let mut out = Vec::with_capacity(component.len());
    // Each run between `+`s decoded in turn: a `%XX` never spans a `+`.
    for (i, run) in component.split('+').enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend(percent_encoding::percent_decode_str(run));
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decoded as `form_urlencoded` decodes valid input; invalid UTF-8 is refused.
    #[test]
    fn pairs_decode_like_a_form() {
        let query = "a=x+y&&b=%20%2B&c&d=%G1%&e=caf%C3%A9";
        let ours: Vec<(String, String)> = pairs(query)
            .map(|p| p.map(|(n, v)| (n.into_owned(), v.into_owned())).unwrap())
            .collect();
        let theirs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(ours, theirs);
        assert_eq!(ours[1], ("b".into(), " +".into()));
        assert!(pairs("a=%FF").any(|p| p.is_err()));
        assert!(pairs("%FE=1").any(|p| p.is_err()));
    }

    proptest::proptest! {
        /// Any query of `+`, `%`, hex digits, `&`, `=` and text (escapes whole, cut
        /// short or spanning a `+`) decodes as `form_urlencoded` decodes it wherever
        /// that is UTF-8, and is refused where it is not.
        #[test]
        fn decodes_any_query_like_a_form(query in "([+%&=aF0-9é]|%[0-9a-fA-F]{2}){0,40}") {
            let theirs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            let ours: Result<Vec<(String, String)>, ()> = pairs(&query)
                .map(|p| p.map(|(n, v)| (n.into_owned(), v.into_owned())))
                .collect();
            match ours {
                Ok(ours) => proptest::prop_assert_eq!(ours, theirs),
                // Refused only where the lossy decoder had to replace bytes.
                Err(()) => {
                    let lossy = theirs.iter().any(|(n, v)| n.contains(char::REPLACEMENT_CHARACTER) || v.contains(char::REPLACEMENT_CHARACTER));
                    proptest::prop_assert!(lossy, "refused {:?}, decoded as {:?}", query, theirs);
                }
            }
        }
    }
}
