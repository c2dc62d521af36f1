//! Cache keys: the only place they are built. The layout is the original server's, so
//! both can share one Redis: `context:` + lowercase hex MD5 of
//! `message + ":" + (filename or "none")`. Clients never choose a raw key. Answers of
//! any other RPC function than the original's live under their own namespace,
//! `context:<function>:`, so daemons calling different functions can share one Redis.

use md5::{Digest, Md5};

/// A derived cache key, e.g. `context:367ac8be2a4e9fccd1f5aa007d810371`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(String);

impl Key {
    /// The namespace of `get_codette_context` answers.
    pub const PREFIX: &'static str = "context:";

    /// The RPC function whose answers use the original's namespace.
    pub const ORIGINAL_FUNCTION: &'static str = "get_codette_context";

    /// The key prefix of one RPC function's answers: [`Key::PREFIX`] for the original's
    /// function (schema-qualified as `public.` or not) and for none (the sample origin),
    /// `context:<function>:` for any other.
    pub fn namespace(function: Option<&str>) -> String {
        match function.map(|f| f.strip_prefix("public.").unwrap_or(f)) {
            None => Self::PREFIX.to_owned(),
            Some(f) if f == Self::ORIGINAL_FUNCTION => Self::PREFIX.to_owned(),
            Some(f) => format!("{}{f}:", Self::PREFIX),
        }
    }

    /// Derives the key of a context request of the original's function.
    pub fn derive(message: &str, filename: Option<&str>, normalize: bool) -> Key {
        Self::derive_in(Self::PREFIX, message, filename, normalize)
    }

    /// Derives the key of a context request under a [`Key::namespace`]. An empty
    /// filename counts as none, as in the original (`filename or "none"`). With
    /// `normalize`, the message is trimmed, inner whitespace collapsed and lowercased
    /// first, so near-identical queries share a key.
    pub fn derive_in(
        namespace: &str,
        message: &str,
        filename: Option<&str>,
        normalize: bool,
    ) -> Key {
        let mut hasher = Md5::new();
        if normalize {
            hasher.update(normalized(message).as_bytes());
        } else {
            hasher.update(message.as_bytes());
        }
        hasher.update(b":");
        hasher.update(
            filename
                .filter(|f| !f.is_empty())
                .unwrap_or("none")
                .as_bytes(),
        );
        let digest = hasher.finalize();
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(namespace.len() + 32);
        text.push_str(namespace);
        // By hand: hex::encode collects chars one by one (4.6 % of a memory hit).
        for byte in digest {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        Key(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Trim, collapse runs of whitespace to one space, lowercase.
pub fn normalized(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for word in message.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The original's test vectors (reference/original-system.md).
    #[test]
    fn keys_match_the_original_server() {
        assert_eq!(
            Key::derive("how to use reverb in mixing", None, false).as_str(),
            "context:367ac8be2a4e9fccd1f5aa007d810371"
        );
        assert_eq!(
            Key::derive("audio analysis", Some("effect_chain.ts"), false).as_str(),
            "context:7d3cdfad59cc1144595ae297f6a5c951"
        );
        // `filename or "none"`: an empty filename is no filename.
        assert_eq!(
            Key::derive("how to use reverb in mixing", Some(""), false),
            Key::derive("how to use reverb in mixing", None, false)
        );
    }

    /// The original's function keeps the original's keys; any other has its own
    /// namespace, so the same message cannot collide across functions.
    #[test]
    fn functions_have_their_own_namespace() {
        for function in [
            None,
            Some("get_codette_context"),
            Some("public.get_codette_context"),
        ] {
            assert_eq!(Key::namespace(function), "context:");
        }
        let other = Key::namespace(Some("public.get_codette_summary"));
        assert_eq!(other, "context:get_codette_summary:");
        let key = Key::derive_in(&other, "how to use reverb in mixing", None, false);
        assert_eq!(
            key.as_str(),
            "context:get_codette_summary:367ac8be2a4e9fccd1f5aa007d810371"
        );
        assert_ne!(key, Key::derive("how to use reverb in mixing", None, false));
    }

    /// Normalisation merges case and whitespace variants, and only when asked.
    #[test]
    fn normalisation_merges_variants() {
        let a = Key::derive("  How to use   REVERB\tin mixing ", None, true);
        let b = Key::derive("how to use reverb in mixing", None, true);
        assert_eq!(a, b);
        assert_eq!(b, Key::derive("how to use reverb in mixing", None, false));
        assert_ne!(
            Key::derive("How to use reverb in mixing", None, false),
            Key::derive("how to use reverb in mixing", None, false)
        );
    }

    proptest! {
        /// Any input gives a well-formed key; normalising is idempotent.
        #[test]
        fn derivation_is_total(message in any::<String>(), filename in proptest::option::of(any::<String>())) {
            let key = Key::derive(&message, filename.as_deref(), true);
            prop_assert_eq!(key.as_str().len(), 40);
            prop_assert!(key.as_str()[8..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            let once = normalized(&message);
            prop_assert_eq!(normalized(&once), once.clone());
        }
    }
}
