//! The sample origin: answers in the RPC's JSON shape from a small music-production
//! knowledge file shipped in the repo (`data/sample_knowledge.json`, embedded), matched
//! by the words of the message. It is a sample, not Codette's knowledge: it exists so
//! the daemon does its main job on a fresh machine with no credentials.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{ContextOrigin, ContextRequest, OriginError};

/// The knowledge file built into the binary.
pub const EMBEDDED_KNOWLEDGE: &str = include_str!("../../data/sample_knowledge.json");

/// At most this many snippets per answer, as the real function.
const MAX_SNIPPETS: usize = 10;

/// Words too common to say anything about a query.
const STOPWORDS: &[&str] = &[
    "the", "and", "for", "how", "what", "with", "use", "using", "are", "can", "you", "your",
    "this", "that", "from", "into", "does", "why", "when", "which", "about", "best", "way",
];

/// `[origin] type = "sample"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Another knowledge file of the same shape; the embedded one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Delay added to every answer, to mimic the real RPC (about 300 ms) in demos.
    #[serde(default)]
    pub latency_ms: u64,
    /// Consecutive timeouts or connection errors that open the circuit breaker (0: never).
    #[serde(default = "super::breaker::default_failures")]
    pub breaker_failures: u32,
    /// How long the breaker stays open before one probe call.
    #[serde(default = "super::breaker::default_open_ms")]
    pub breaker_open_ms: u64,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            path: None,
            latency_ms: 0,
            breaker_failures: super::breaker::default_failures(),
            breaker_open_ms: super::breaker::default_open_ms(),
        }
    }
}

impl SampleConfig {
    pub(crate) fn validate(&self) -> Vec<String> {
        match &self.path {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => match serde_json::from_str::<Knowledge>(&text) {
                    Ok(_) => Vec::new(),
                    Err(e) => vec![format!(
                        "path {}: not a knowledge file: {e}",
                        path.display()
                    )],
                },
                Err(e) => vec![format!("path {}: {e}", path.display())],
            },
            None => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
struct Snippet {
    filename: String,
    snippet: String,
}

#[derive(Debug, Deserialize)]
struct Knowledge {
    snippets: Vec<Snippet>,
    files: Vec<serde_json::Value>,
}

/// The RPC's shape, keys in its order.
#[derive(Serialize)]
struct Context<'a> {
    snippets: Vec<&'a Snippet>,
    file: Option<&'a serde_json::Value>,
    chat_history: [(); 0],
}

/// The sample origin.
pub struct SampleOrigin {
    snippets: Vec<(Snippet, HashSet<String>)>,
    files: Vec<serde_json::Value>,
    latency: Duration,
}

impl SampleOrigin {
    /// # Errors
    /// [`OriginError::Malformed`] when the knowledge file does not parse.
    pub fn new(config: &SampleConfig) -> Result<Self, OriginError> {
        let text = match &config.path {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| OriginError::Malformed(format!("{}: {e}", path.display())))?,
            None => EMBEDDED_KNOWLEDGE.to_owned(),
        };
        let knowledge: Knowledge = serde_json::from_str(&text)
            .map_err(|e| OriginError::Malformed(format!("knowledge file: {e}")))?;
        Ok(Self {
            snippets: knowledge
                .snippets
                .into_iter()
                .map(|s| {
                    let stems = stems(&s.snippet).collect();
                    (s, stems)
                })
                .collect(),
            files: knowledge.files,
            latency: Duration::from_millis(config.latency_ms),
        })
    }

    fn answer(&self, request: &ContextRequest) -> Vec<u8> {
        let query: HashSet<String> = stems(&request.message).collect();
        let mut scored: Vec<(usize, usize)> = self
            .snippets
            .iter()
            .enumerate()
            .map(|(i, (_, words))| (query.intersection(words).count(), i))
            .filter(|&(score, _)| score > 0)
            .collect();
        // Best first; ties keep file order so answers are stable.
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let file = request.filename.as_deref().and_then(|name| {
            self.files
                .iter()
                .find(|f| f.get("filename").and_then(|v| v.as_str()) == Some(name))
        });
        let context = Context {
            snippets: scored
                .iter()
                .take(MAX_SNIPPETS)
                .map(|&(_, i)| &self.snippets[i].0)
                .collect(),
            file,
            chat_history: [],
        };
        serde_json::to_vec(&context).unwrap_or_else(|_| b"null".to_vec())
    }
}

/// Lowercase words of three letters or more, minus stopwords, with common English
/// suffixes cut so "mixing" meets "mix" and "techniques" meets "technique".
fn stems(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| w.chars().count() >= 3 && !STOPWORDS.contains(&w.as_str()))
        .map(|w| {
            for suffix in ["ations", "ation", "ings", "ing", "ies", "es", "ed", "s"] {
                if let Some(stem) = w.strip_suffix(suffix) {
                    if stem.chars().count() >= 3 {
                        return stem.to_owned();
                    }
                }
            }
            w
        })
}

impl ContextOrigin for SampleOrigin {
    async fn fetch(&self, request: &ContextRequest) -> Result<Bytes, OriginError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        Ok(Bytes::from(self.answer(request)))
    }

    async fn health(&self) -> Result<(), OriginError> {
        Ok(())
    }

    fn describe(&self) -> &'static str {
        "Sample knowledge file (no credentials)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(message: &str, filename: Option<&str>) -> serde_json::Value {
        let origin = SampleOrigin::new(&SampleConfig::default()).unwrap();
        let request = ContextRequest {
            message: message.into(),
            filename: filename.map(Into::into),
        };
        serde_json::from_slice(&origin.answer(&request)).unwrap()
    }

    /// The answer has the RPC's three keys and finds snippets by the message's words.
    #[test]
    fn answers_in_the_rpc_shape() {
        let v = ask("how to use reverb in mixing", Some("effect_chain.ts"));
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 3);
        assert!(!v["snippets"].as_array().unwrap().is_empty());
        assert_eq!(v["file"]["filename"], "effect_chain.ts");
        assert_eq!(v["chat_history"], serde_json::json!([]));
    }

    /// Unrelated words find nothing, and no filename gives a null file.
    #[test]
    fn unknown_words_find_nothing() {
        let v = ask("zzzqqq xylophones", None);
        assert_eq!(v["snippets"], serde_json::json!([]));
        assert!(v["file"].is_null());
    }
}
