//! Cache keys: the only place they are built. The layout is the original server's, so
//! both can share one Redis: `context:` + lowercase hex MD5 of
//! `message + ":" + (filename or "none")`. Clients never choose a raw key. Answers of
//! any other RPC function than the original's live under their own namespace,
//! `context:<function>:`, so daemons calling different functions can share one Redis.
//!
//! The original layout is ambiguous: `("a:b", none)` and `("a", "b:none")` both hash
//! `a:b:none`, and `("reverb:x", "f")` meets `("reverb", "x:f")`. So it is used only where
//! it is unambiguous: no filename (every request the original backend made), or a
//! filename where neither it nor the message contains `:` and the filename is not the
//! literal `none`. Every other pair is keyed `<namespace>p-<md5>` over
//! `len(message) ":" message filename`, which a reader can split back into the pair, so
//! two different pairs never share an answer (a property test decodes every preimage).

use std::borrow::Cow;
use std::sync::Arc;

use md5::{Digest, Md5};

/// A derived cache key, e.g. `context:367ac8be2a4e9fccd1f5aa007d810371`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Key(Arc<str>);

impl Key {
    /// The namespace of `get_codette_context` answers.
    pub const PREFIX: &'static str = "context:";

    /// The RPC function whose answers use the original's namespace.
    pub const ORIGINAL_FUNCTION: &'static str = crate::names::ORIGINAL_FUNCTION;

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
        let message = if normalize {
            Cow::Owned(normalized(message))
        } else {
            Cow::Borrowed(message)
        };
        let mut hasher = Md5::new();
        let layout = preimage(&message, filename, |part| hasher.update(part));
        let digest = hasher.finalize();
        Key::assemble(namespace, layout.mark(), &digest.into())
    }

    /// The key of a proxied RPC call of `function`: `context:rpc:<function>:` + the hex
    /// MD5 of `preimage`, everything the answer depends on as canonicalised by
    /// `proxy::request`. The extra `rpc:` segment keeps these apart from
    /// [`Key::namespace`] keys of any function.
    pub fn rpc(function: &str, preimage: &[u8]) -> Key {
        Key::assemble(
            &Self::rpc_namespace(function),
            "",
            &Md5::digest(preimage).into(),
        )
    }

    /// `namespace`, `mark` and the lowercase hex of `digest`. The hex by hand:
    /// `hex::encode` collects chars one by one.
    fn assemble(namespace: &str, mark: &str, digest: &[u8; 16]) -> Key {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(namespace.len() + mark.len() + 32);
        text.push_str(namespace);
        text.push_str(mark);
        for byte in digest {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        Key(text.into())
    }

    /// The prefix of `function`'s proxied keys: `context:rpc:<function>:`.
    pub fn rpc_namespace(function: &str) -> String {
        let mut text = String::with_capacity(Self::PREFIX.len() + 4 + function.len() + 33);
        text.push_str(Self::PREFIX);
        text.push_str("rpc:");
        text.push_str(function);
        text.push(':');
        text
    }

    /// A key as another instance names it: `context:` then up to 200 printable ASCII
    /// characters. `None` for anything else.
    pub fn parse(text: &str) -> Option<Key> {
        let valid = text.starts_with(Self::PREFIX)
            && text.len() <= Self::PREFIX.len() + 200
            && text.bytes().all(|b| b.is_ascii_graphic());
        valid.then(|| Key(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Key {
    type Error = String;
    fn try_from(text: String) -> Result<Key, String> {
        Key::parse(&text).ok_or_else(|| {
            let shown: String = text.chars().take(80).collect();
            format!("{shown:?} is not a context key (context: then up to 200 printable ASCII characters)")
        })
    }
}

impl From<Key> for String {
    fn from(key: Key) -> String {
        key.0.to_string()
    }
}

/// Which of the two preimage layouts a pair is hashed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `message ":" (filename or "none")`, the original's.
    Original,
    /// `len(message) ":" message filename`, for pairs the original's would confuse.
    Pair,
}

impl Layout {
    /// What stands between the namespace and the digest.
    fn mark(self) -> &'static str {
        match self {
            Layout::Original => "",
            Layout::Pair => "p-",
        }
    }
}

/// Feeds the bytes that are hashed for a pair to `feed`, in pieces (no allocation), and
/// says in which layout.
fn preimage(message: &str, filename: Option<&str>, mut feed: impl FnMut(&[u8])) -> Layout {
    match filename.filter(|f| !f.is_empty()) {
        Some(f) if f == "none" || f.contains(':') || message.contains(':') => {
            let mut digits = itoa::Buffer::new();
            feed(digits.format(message.len()).as_bytes());
            feed(b":");
            feed(message.as_bytes());
            feed(f.as_bytes());
            Layout::Pair
        }
        filename => {
            feed(message.as_bytes());
            feed(b":");
            feed(filename.unwrap_or("none").as_bytes());
            Layout::Original
        }
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

    /// The pairs the original's layout confuses get apart keys; unambiguous pairs keep
    /// the original's key.
    #[test]
    fn ambiguous_pairs_have_their_own_keys() {
        let key = |m: &str, f: Option<&str>| Key::derive(m, f, false);
        assert_ne!(
            key("reverb:x", Some("mixing_guide.md")),
            key("reverb", Some("x:mixing_guide.md"))
        );
        assert_ne!(key("a:b", None), key("a", Some("b:none")));
        assert_ne!(key("reverb", Some("none")), key("reverb", None));
        assert!(
            key("reverb", Some("none"))
                .as_str()
                .starts_with("context:p-")
        );
        // No filename keeps the original's key even with `:` in the message.
        let mut md5 = Md5::new();
        md5.update(b"a:b:none");
        let digest: String = md5.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(key("a:b", None).as_str(), format!("context:{digest}"));
    }

    /// Reads a preimage back into its pair: possible for every pair exactly when no two
    /// pairs share a preimage.
    fn decode(layout: Layout, bytes: &[u8]) -> (String, Option<String>) {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        match layout {
            Layout::Original => {
                let (message, filename) = text.rsplit_once(':').unwrap();
                let filename = (filename != "none").then(|| filename.to_owned());
                (message.to_owned(), filename)
            }
            Layout::Pair => {
                let (len, rest) = text.split_once(':').unwrap();
                let (message, filename) = rest.split_at(len.parse().unwrap());
                (message.to_owned(), Some(filename.to_owned()))
            }
        }
    }

    proptest! {
        /// No two different (message, filename) pairs share a key: every preimage
        /// decodes back to its own pair. The alphabet is small so that `:` and `none`
        /// turn up everywhere.
        #[test]
        fn no_two_pairs_collide(
            message in "[a:none]{0,8}",
            filename in proptest::option::of("[a:none]{0,8}"),
        ) {
            let mut bytes = Vec::new();
            let layout = preimage(&message, filename.as_deref(), |p| bytes.extend_from_slice(p));
            let filename = filename.filter(|f| !f.is_empty());
            prop_assert_eq!(decode(layout, &bytes), (message, filename));
        }

        /// Any input gives a well-formed key; normalising is idempotent.
        #[test]
        fn derivation_is_total(message in any::<String>(), filename in proptest::option::of(any::<String>())) {
            let key = Key::derive(&message, filename.as_deref(), true);
            let digest = key.as_str().trim_start_matches("context:").trim_start_matches("p-");
            prop_assert_eq!(digest.len(), 32);
            prop_assert!(digest.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            let once = normalized(&message);
            prop_assert_eq!(normalized(&once), once.clone());
        }
    }
}
