//! One routing decision and what came of it: the row of `routing_decisions`.
//!
//! The proxy fills a [`DecisionRecord`] per request and hands it to
//! [`super::DecisionLog::record`]. The same struct is the spool file's line format (JSON) and
//! the admin API's answer, so a field added here must be added to both migrations and to
//! [`super::Store::insert_decisions`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A model considered for a request, with its MIRT estimate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CandidateScore {
    pub model: String,
    /// MIRT's P(success | prompt, model).
    pub p_success: f64,
    /// Estimated cost of this request on this model, USD.
    pub cost: f64,
    /// Blended price of this request on this model, USD per million tokens.
    #[serde(default)]
    pub cost_per_mtok: f64,
    /// The objective's value (P traded against cost); the highest is selected.
    pub score: f64,
}

/// The decision log's record: one per request. Everything but the id, time, hash and status is
/// optional so the proxy can log what it knows (a request that failed before routing has no
/// domain).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DecisionRecord {
    /// The key (UUIDv7 text from [`DecisionRecord::new_id`]); also `x-dualrouter-decision-id`.
    /// Writing the same id twice keeps the first row.
    pub decision_id: String,
    pub created_at: DateTime<Utc>,
    /// [`prompt_hash`] of the prompt text.
    pub prompt_hash: String,
    /// The prompt's first `decision_log.prompt_preview_chars` characters; `None` when that is 0.
    /// [`super::DecisionLog::record`] enforces the limit whatever the proxy puts here.
    pub prompt_preview: Option<String>,
    /// What the client asked for: `auto` or a concrete model id.
    pub requested_model: Option<String>,
    pub domain: Option<String>,
    pub action: Option<String>,
    /// Who chose the route: `arch-router`, `embedded`, `default`, or `explicit` (a concrete model id).
    pub route_source: Option<String>,
    pub route_confidence: Option<f64>,
    /// Every model considered, with its MIRT estimate, best first.
    pub candidates: Vec<CandidateScore>,
    pub selected_model: Option<String>,
    pub selected_score: Option<f64>,
    /// The provider (or executor) that served the request.
    pub provider: Option<String>,
    /// `ok`, `error` or `cancelled`.
    pub status: String,
    /// The HTTP status sent to the client.
    pub http_status: Option<u16>,
    /// Low-cardinality error label (the proxy's `ApiError::kind`), never a message.
    pub error_kind: Option<String>,
    /// Every prompt token, cached or not.
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Prompt tokens read from the provider's cache (part of `input_tokens`).
    pub cache_read_tokens: Option<u64>,
    /// Prompt tokens written to the provider's cache (part of `input_tokens`).
    pub cache_write_tokens: Option<u64>,
    /// USD, from the model's prices and the tokens used (cached ones at their own price).
    pub cost_usd: Option<f64>,
    /// The virtual key the request was made with (its id, never its secret).
    pub key_id: Option<String>,
    /// The selected model was chosen by exploration (`mirt.exploration`), not by the objective.
    pub explore: bool,
    /// Milliseconds per step (`classify`, `score`, `first_byte`, `upstream`, …).
    pub latencies_ms: BTreeMap<String, f64>,
    pub total_latency_ms: Option<f64>,
    /// Outcome score in [0, 1] from `POST /v1/feedback`, when given.
    pub feedback_score: Option<f64>,
    /// How routing went: policy, reasoning, exclusions, every attempt of the fallback chain.
    pub details: DecisionDetails,
    /// The prompt's MIRT features, so the outcome can be trained on (routed requests only).
    pub features: Option<StoredFeatures>,
}

/// The routing details of a decision (the `details` JSON column).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DecisionDetails {
    /// The policy whose models were the candidates (`domain/action`, or `default`).
    pub policy: Option<String>,
    pub reasoning: Option<String>,
    /// The chain after the selected model, in order.
    pub fallbacks: Vec<String>,
    /// Policy models left out, with the reason.
    pub excluded: Vec<ExcludedModel>,
    /// Every upstream attempt, in order.
    pub attempts: Vec<Attempt>,
    /// The `mirt_checkpoints` version that scored (none: the config's checkpoint file).
    pub checkpoint_version: Option<i64>,
    /// The selected model came from session affinity.
    pub affinity: bool,
    /// What translating the request for the serving upstream left out or changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub translation: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExcludedModel {
    pub model: String,
    pub reason: String,
}

/// One try of the fallback chain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attempt {
    pub model: String,
    pub provider: String,
    /// `ok`, or why the next candidate was tried: `connect`, `timeout`, `broken`, `429`,
    /// `5xx`, `skipped` (cooling down by then), or `error` for a final failure.
    pub outcome: String,
    /// The upstream's HTTP status, when one arrived.
    pub status: Option<u16>,
    pub ms: f64,
}

impl Attempt {
    /// Whether this attempt counts as the model failing the request (score 0 for learning):
    /// not when it was skipped, succeeded, or could not be sent in its format at all.
    pub fn failed(&self) -> bool {
        !matches!(self.outcome.as_str(), "ok" | "skipped" | "translate")
    }
}

/// x of a prompt without its text: the encoder's embedding and the built-in features.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredFeatures {
    /// The encoder id (embeddings of another encoder are not comparable).
    pub encoder: String,
    /// f32 little-endian, base64.
    pub embedding: String,
    pub extra: BTreeMap<String, f32>,
}

impl StoredFeatures {
    pub fn new(encoder: &str, embedding: &[f32], extra: BTreeMap<String, f32>) -> Self {
        Self {
            encoder: encoder.to_string(),
            embedding: dualrouter_core::floats::to_b64(embedding),
            extra,
        }
    }

    /// The embedding back, or `None` if the stored text is damaged.
    pub fn embedding(&self) -> Option<Vec<f32>> {
        dualrouter_core::floats::from_b64(&self.embedding).ok()
    }
}

impl DecisionRecord {
    /// A record with a fresh id, the current time and the given status; fill in the rest.
    pub fn new(status: &str) -> Self {
        Self::with_id(Self::new_id(), status)
    }

    /// A record for a decision whose id is already minted (the proxy mints it when the request
    /// arrives), with the current time and the given status.
    pub fn with_id(decision_id: String, status: &str) -> Self {
        Self {
            decision_id,
            created_at: Utc::now(),
            status: status.to_string(),
            ..Self::default()
        }
    }

    /// Sets the model that served the request, its provider, the tokens used and their cost at
    /// the model's configured price (`cost_usd` stays `None` until a token count is known).
    pub fn served_by(
        &mut self,
        model: &dualrouter_core::config::Model,
        usage: Option<&dualrouter_wire::Usage>,
    ) -> &mut Self {
        self.selected_model = Some(model.id.clone());
        self.provider = Some(model.owner().to_string());
        self.input_tokens = usage.map(|u| u.prompt());
        self.output_tokens = usage.map(|u| u.output);
        self.cache_read_tokens = usage.map(|u| u.cache_read);
        self.cache_write_tokens = usage.map(|u| u.cache_write);
        self.cost_usd = usage.map(|u| model.cost.usd_of(u));
        self
    }

    /// A fresh decision id: a UUIDv7 (time-ordered) as text.
    pub fn new_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }
}

/// The hash stored instead of the prompt: SHA-256, lowercase hex.
pub fn prompt_hash(prompt: &str) -> String {
    hex::encode(Sha256::digest(prompt.as_bytes()))
}

/// The prompt's first `chars` characters, or `None` when `chars` is 0 (previews off).
pub fn prompt_preview(prompt: &str, chars: usize) -> Option<String> {
    if chars == 0 {
        return None;
    }
    match prompt.char_indices().nth(chars) {
        Some((end, _)) => Some(prompt[..end].to_string()),
        None => Some(prompt.to_string()),
    }
}

/// Which decisions `GET /api/decisions` lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecisionQuery {
    pub limit: u32,
    pub domain: Option<String>,
    /// Matches the selected model.
    pub model: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_counts_characters_not_bytes() {
        assert_eq!(prompt_preview("héllo", 2).as_deref(), Some("hé"));
        assert_eq!(prompt_preview("hi", 10).as_deref(), Some("hi"));
        assert_eq!(prompt_preview("hi", 0), None);
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            prompt_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn record_round_trips_as_a_spool_line() {
        let mut r = DecisionRecord::new("ok");
        r.candidates.push(CandidateScore {
            model: "m".into(),
            p_success: 0.7,
            cost: 0.001,
            score: 0.6,
            cost_per_mtok: 1.5,
        });
        r.details.attempts.push(Attempt {
            model: "m".into(),
            provider: "p".into(),
            outcome: "429".into(),
            status: Some(429),
            ms: 3.0,
        });
        r.features = Some(StoredFeatures::new("enc", &[0.5, -1.25], BTreeMap::new()));
        assert_eq!(
            r.features.as_ref().unwrap().embedding().unwrap(),
            vec![0.5, -1.25]
        );
        r.latencies_ms.insert("classify".into(), 1.5);
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'));
        let back: DecisionRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
    }
}
