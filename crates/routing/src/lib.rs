//! Routing: [`DualRouter::route`] turns a conversation into a [`RoutingDecision`]:
//!
//! 1. classify into a route (`domain/action`), with one encoder pass whose embedding the later
//!    steps share;
//! 2. candidates: the route's policy models that the registry serves and that are not cooling
//!    down, minus those over the policy's budget or the request's price cap (none left → the
//!    default route's models);
//! 3. score each with MIRT (P of success) and weigh it against its price ([`dualrouter_ml::mirt::rank`]);
//! 4. the best, then the rest as an ordered fallback chain (session affinity may put the
//!    conversation's earlier model first).

mod affinity;
pub mod classify;
mod explore;
mod registry;
mod scorer;

pub use explore::{ExploreStats, Explorer, Scored, Selection};
pub use registry::{parse_retry_after, probe, Discovered, Registry, Verdict};
pub use scorer::Scorer;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use serde::Serialize;

use classify::arch_router::ArchRouterClient;
use classify::embedded::{EmbeddedClassifier, HeadTraining};
use classify::{Classifier, Route, RouteSource, RouteSpec};
use dualrouter_core::conversation::Conversation;

use dualrouter_core::config::mirt::MirtSettings;
use dualrouter_core::config::routing::RoutingSettings;
use dualrouter_core::config::validated::ClassifierSettings;
use dualrouter_core::config::{Config, Model};
use dualrouter_core::metrics::Metrics;
use dualrouter_core::policy::Policy;
use dualrouter_ml::encoder::{Encoder, EncoderError};
use dualrouter_ml::mirt::{MirtError, Objective};

/// The domain of the default route's policy (`default/<anything>`).
pub const DEFAULT_DOMAIN: &str = "default";

/// The router layer's error type.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    #[error(transparent)]
    ArchRouter(#[from] classify::arch_router::ArchRouterError),
    #[error(transparent)]
    Mirt(#[from] MirtError),
    #[error("the conversation has no text to route on")]
    Empty,
    #[error("routing task failed: {0}")]
    Task(String),
}

/// What a request adds to routing: its price cap, its size, its session.
#[derive(Debug, Clone, Default)]
pub struct RouteOptions {
    /// `x-dualrouter-max-cost`: USD per million tokens (blended over input and output).
    pub max_cost_per_mtok: Option<f64>,
    /// Estimated input tokens (for the cost estimate); 0 → estimated from the text.
    pub input_tokens: u64,
    /// `max_tokens` of the request, if set.
    pub max_output_tokens: Option<u64>,
    /// `x-session-id`, if sent.
    pub session_id: Option<String>,
    /// Models that cannot serve this request at all (what it asks for, their format or
    /// capabilities): never candidates.
    pub unsupported: std::collections::HashSet<String>,
    /// The most this request may cost, USD, estimated (a virtual key's per-request cap).
    pub max_cost_usd: Option<f64>,
    /// What the request's virtual key has left of its budget, USD: dearer candidates are left
    /// out (`over_key_budget`).
    pub budget_left_usd: Option<f64>,
    /// The models the request's virtual key may use; others are never candidates
    /// (`not_allowed`). `None`: every model.
    pub allowed_models: Option<std::collections::HashSet<String>>,
}

/// One scored candidate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Candidate {
    pub model: String,
    /// MIRT's P(success | prompt, model).
    pub p_success: f64,
    /// Blended price of this request on this model, USD per million tokens.
    pub cost_per_mtok: f64,
    /// Estimated cost of this request, USD.
    pub est_cost_usd: f64,
    /// The objective's value; candidates are ordered by it.
    pub score: f64,
    /// Scored from a prior (no outcomes of its own yet).
    pub cold: bool,
}

/// A model of the route's policy that was left out, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Excluded {
    pub model: String,
    /// `unknown`, `unsupported`, `not_allowed`, `cooling_down`, `unhealthy`, `over_budget`,
    /// `over_max_cost` or `over_key_budget`.
    pub reason: &'static str,
}

/// What routing decided for a conversation.
#[derive(Debug, Clone, Serialize)]
pub struct RoutingDecision {
    pub route: Route,
    /// The policy whose models were the candidates (`domain/action`, or `default`).
    pub policy: String,
    /// Scored candidates, best first (the chain's order).
    pub candidates: Vec<Candidate>,
    pub excluded: Vec<Excluded>,
    /// The model to try first.
    pub selected_model: String,
    /// The rest of the chain, in order.
    pub fallbacks: Vec<String>,
    /// The selected model was kept from earlier requests of this conversation.
    pub affinity: bool,
    /// The selected model was chosen by exploration (`mirt.exploration`), not by the objective.
    pub explore: bool,
    /// One line a person can read.
    pub reasoning: String,
    /// The checkpoint that scored (`mirt_checkpoints` version; `None`: the config's file).
    pub checkpoint_version: Option<i64>,
    /// Milliseconds per step.
    pub latencies_ms: BTreeMap<String, f64>,
    /// The prompt's embedding and MIRT features (for learning from the outcome).
    #[serde(skip)]
    pub features: Option<PromptFeatures>,
    #[serde(skip)]
    pub affinity_key: Option<[u8; 16]>,
}

/// What a logged outcome needs to be trained on later: x without the prompt text.
#[derive(Debug, Clone)]
pub struct PromptFeatures {
    pub encoder: String,
    pub embedding: Arc<[f32]>,
    /// Built-in feature values by name.
    pub extra: BTreeMap<String, f32>,
}

/// Routing found no model to send the request to.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no model is available for route '{route}': {why}")]
pub struct NoCandidate {
    pub route: String,
    pub why: String,
    /// When the first cooling-down model is offered again.
    pub retry_after: Option<std::time::Duration>,
    /// Every model left out was left out because it cannot serve the request.
    pub unsupported_only: bool,
    /// Some model was left out only because the virtual key's budget cannot pay for it.
    pub over_key_budget: bool,
}

/// The policies as routing reads them.
#[derive(Debug, Default)]
pub struct PolicyTable {
    /// As read from the store.
    all: Vec<Policy>,
    by_route: HashMap<String, Policy>,
    /// The `default/…` policy of highest priority, if any.
    default: Option<Policy>,
}

impl PolicyTable {
    pub fn new(policies: &[Policy]) -> Self {
        let mut t = Self {
            all: policies.to_vec(),
            ..Self::default()
        };
        for p in policies {
            if p.domain == DEFAULT_DOMAIN {
                if t.default.as_ref().is_none_or(|d| p.priority > d.priority) {
                    t.default = Some(p.clone());
                }
            } else {
                t.by_route.insert(p.route(), p.clone());
            }
        }
        t
    }
}

pub struct DualRouter {
    encoder: Arc<Encoder>,
    /// One permit per encoder session: a prompt waits here, not on a blocking thread, so the
    /// blocking pool runs as many encoder passes as there are sessions and does not start a
    /// thread for every prompt waiting for one (each new thread also pays ONNX Runtime's
    /// first-run costs on it).
    encoder_slots: Option<Arc<tokio::sync::Semaphore>>,
    classifier: Classifier,
    registry: Arc<Registry>,
    policies: PolicyTable,
    scorer: ArcSwap<Scorer>,
    objective: Objective,
    settings: dualrouter_core::config::routing::RoutingSettings,
    affinity: Arc<affinity::Affinity>,
    explorer: Explorer,
    metrics: Arc<Metrics>,
    /// Bytes of a long prompt's start and end the encoder gets (see [`clip`]).
    clip: (usize, usize),
}

/// Bytes per token kept when clipping: far more than any tokenizer's average (about 4 for
/// English), so the tokens the encoder keeps are the same as without clipping.
const CLIP_BYTES_PER_TOKEN: usize = 32;

/// The start and end of a long text (`head` and `tail` bytes, cut on character boundaries), so
/// that a multi-MiB prompt is not tokenized whole only for the encoder to keep its first and
/// last tokens. Texts up to `head + tail` bytes are returned as they are.
fn clip(text: &str, head: usize, tail: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= head + tail {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut h = head;
    while !text.is_char_boundary(h) {
        h -= 1;
    }
    let mut t = text.len() - tail;
    while !text.is_char_boundary(t) {
        t += 1;
    }
    std::borrow::Cow::Owned(format!("{} {}", &text[..h], &text[t..]))
}

/// Routes from policies: `domain/action`, description, examples (the default route is what
/// applies when none fits, so it is not one to classify into).
pub fn routes_from_policies(policies: &[Policy]) -> Vec<RouteSpec> {
    policies
        .iter()
        .filter(|p| p.domain != DEFAULT_DOMAIN)
        .map(|p| RouteSpec {
            name: p.route(),
            description: p.description.clone(),
            examples: p.examples.clone(),
        })
        .collect()
}

/// The config sections a router reads: its classifier, MIRT (objective and encoder limits) and
/// routing settings.
#[derive(Clone, Copy)]
pub struct RouterSections<'a> {
    pub classifier: &'a ClassifierSettings,
    pub mirt: &'a MirtSettings,
    pub routing: &'a RoutingSettings,
}

impl<'a> RouterSections<'a> {
    pub fn of(config: &'a Config) -> Self {
        Self {
            classifier: &config.classifier,
            mirt: &config.mirt,
            routing: &config.routing,
        }
    }
}

impl DualRouter {
    /// A router from its parts; `affinity` carries conversations over from the router this one
    /// replaces (a reload with the same checkpoint).
    pub fn with_parts(
        config: RouterSections<'_>,
        encoder: Arc<Encoder>,
        scorer: Scorer,
        policies: &[Policy],
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        affinity: Option<Arc<affinity::Affinity>>,
    ) -> Result<Self, RouterError> {
        let embedded = EmbeddedClassifier::train(
            routes_from_policies(policies),
            |texts| encoder.embed_batch(texts),
            config.classifier.min_confidence,
            HeadTraining::default(),
        )?;
        let arch = match &config.classifier.arch_router {
            Some(settings) => Some(ArchRouterClient::new(settings.clone())?),
            None => None,
        };
        Ok(Self {
            encoder_slots: encoder
                .concurrency()
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1)))),
            encoder,
            classifier: Classifier::new(arch, embedded, metrics.clone()),
            explorer: Explorer::new(&config.mirt.exploration),
            metrics,
            registry,
            policies: PolicyTable::new(policies),
            scorer: ArcSwap::from_pointee(scorer),
            objective: config.mirt.objective(),
            settings: config.routing.clone(),
            affinity: affinity
                .unwrap_or_else(|| Arc::new(affinity::Affinity::new(config.routing.affinity))),
            clip: {
                let e = &config.mirt.encoder;
                let head = e.head_tokens.max(1) * CLIP_BYTES_PER_TOKEN;
                let tail = e.max_tokens.saturating_sub(e.head_tokens).max(1) * CLIP_BYTES_PER_TOKEN;
                (head, tail)
            },
        })
    }

    pub fn encoder(&self) -> &Arc<Encoder> {
        &self.encoder
    }

    pub fn routes(&self) -> &[RouteSpec] {
        self.classifier.routes()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn settings(&self) -> &dualrouter_core::config::routing::RoutingSettings {
        &self.settings
    }

    /// The active scorer (checkpoint).
    pub fn scorer(&self) -> Arc<Scorer> {
        self.scorer.load_full()
    }

    /// Swaps in another checkpoint; requests being scored finish on the old one. Conversations
    /// forget their model: the new checkpoint decides afresh.
    pub fn activate(&self, scorer: Scorer) {
        tracing::info!(
            version = ?scorer.version,
            path = %scorer.path.display(),
            "MIRT checkpoint activated"
        );
        self.scorer.store(Arc::new(scorer));
        self.affinity.clear();
        self.explorer.checkpoint_changed();
    }

    /// The policies this router was built with.
    pub fn policies(&self) -> &[Policy] {
        &self.policies.all
    }

    /// The conversations' models (carried over to the router that replaces this one).
    pub fn affinity(&self) -> Arc<affinity::Affinity> {
        self.affinity.clone()
    }

    /// Remembers the model that served a conversation (session affinity).
    pub fn remember(&self, key: Option<[u8; 16]>, model: &str) {
        if let Some(k) = key {
            self.affinity.remember(k, model);
        }
    }

    /// Classifies the conversation and chooses the model chain. The encoder pass runs on a
    /// blocking thread so it never stalls the proxy's event loop.
    pub async fn route(
        &self,
        conversation: &Conversation,
        opts: &RouteOptions,
    ) -> Result<Result<RoutingDecision, NoCandidate>, RouterError> {
        let text = conversation
            .latest_user()
            .ok_or(RouterError::Empty)?
            .to_string();
        let mut latencies_ms = BTreeMap::new();
        let started = Instant::now();
        let encoder = self.encoder.clone();
        let (head, tail) = (self.clip.0, self.clip.1);
        // Feature-extractor plugins read the whole conversation, on the same blocking thread
        // as the encoder (each under its own deadline; one that fails adds nothing).
        let extractors = self
            .registry
            .plugins()
            .filter(|h| {
                !h.plugin_names(dualrouter_plugins::PluginKind::FeatureExtractor)
                    .is_empty()
            })
            .map(|h| (h.clone(), conversation.clone()));
        // A prompt the cache holds needs no session: it does not queue behind those that do.
        let slot = match &self.encoder_slots {
            Some(slots) if !self.encoder.is_cached(&clip(&text, head, tail)) => Some(
                slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| RouterError::Task(e.to_string()))?,
            ),
            _ => None,
        };
        let (embedding, text, extra) = tokio::task::spawn_blocking(move || {
            let e = encoder.embed(&clip(&text, head, tail));
            drop(slot);
            let extra = extractors
                .map(|(host, conv)| host.extract_features(&conv))
                .unwrap_or_default();
            (e, text, extra)
        })
        .await
        .map_err(|e| RouterError::Task(e.to_string()))?;
        let embedding = embedding?;
        latencies_ms.insert("embed".to_string(), ms(started));

        let started = Instant::now();
        let route = self.classifier.classify(conversation, &embedding).await;
        latencies_ms.insert("classify".to_string(), ms(started));

        let started = Instant::now();
        let affinity_key = self.affinity.key(opts.session_id.as_deref(), conversation);
        let decided = self.choose(route, &embedding, &text, &extra, opts, affinity_key);
        latencies_ms.insert("score".to_string(), ms(started));
        Ok(decided.map(|mut d| {
            d.latencies_ms.extend(latencies_ms);
            d
        }))
    }

    /// Steps 2–4 for a classified conversation.
    fn choose(
        &self,
        route: Route,
        embedding: &Arc<[f32]>,
        text: &str,
        plugin_features: &HashMap<String, f32>,
        opts: &RouteOptions,
        affinity_key: Option<[u8; 16]>,
    ) -> Result<RoutingDecision, NoCandidate> {
        let policies = &self.policies;
        let input_tokens = if opts.input_tokens > 0 {
            opts.input_tokens
        } else {
            estimate_tokens(text)
        };
        // The request's own output cap when it sets one: the budget and the price cap then
        // hold for the longest answer it allows.
        let output_tokens = opts
            .max_output_tokens
            .unwrap_or(self.settings.expected_output_tokens);

        let mut excluded = Vec::new();
        let policy = policies.by_route.get(&route.name());
        let mut policy_name = policy.map_or(DEFAULT_DOMAIN.to_string(), |p| p.route());
        let mut models = match policy {
            Some(p) => self.eligible(
                &p.models,
                p.budget_usd,
                opts,
                input_tokens,
                output_tokens,
                &mut excluded,
            ),
            None => Vec::new(),
        };
        if models.is_empty() {
            let (name, list, budget) = match &policies.default {
                Some(p) => (p.route(), p.models.clone(), p.budget_usd),
                None if !self.settings.default_models.is_empty() => (
                    DEFAULT_DOMAIN.to_string(),
                    self.settings.default_models.clone(),
                    None,
                ),
                None => (
                    DEFAULT_DOMAIN.to_string(),
                    self.registry.models().map(|m| m.id.clone()).collect(),
                    None,
                ),
            };
            let mut excluded_default = Vec::new();
            models = self.eligible(
                &list,
                budget,
                opts,
                input_tokens,
                output_tokens,
                &mut excluded_default,
            );
            if models.is_empty() {
                excluded.extend(excluded_default);
                let cooling: Vec<String> = excluded
                    .iter()
                    .filter(|e| e.reason == "cooling_down")
                    .map(|e| e.model.clone())
                    .collect();
                let unsupported_only =
                    !excluded.is_empty() && excluded.iter().all(|e| e.reason == "unsupported");
                let over_key_budget = excluded.iter().any(|e| e.reason == "over_key_budget");
                return Err(NoCandidate {
                    route: route.name(),
                    why: describe_exclusions(&excluded),
                    retry_after: self.registry.soonest_retry(&cooling),
                    unsupported_only,
                    over_key_budget,
                });
            }
            policy_name = name;
            excluded.extend(excluded_default);
        }

        let scorer = self.scorer.load();
        let x = scorer.features_with(embedding, text, plugin_features);
        let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
        let p = scorer.p_success(&x, &ids);
        let cost: Vec<f64> = models
            .iter()
            .map(|m| m.cost.usd(input_tokens, output_tokens))
            .collect();
        // The objective weighs price against the dearest model there is, so a route whose
        // candidates are all cheap does not make small price gaps look large.
        let cost_ref = self
            .registry
            .models()
            .map(|m| m.cost.usd(input_tokens, output_tokens))
            .fold(0.0, f64::max);
        let scored: Vec<Scored<'_>> = ids
            .iter()
            .zip(&p)
            .zip(&cost)
            .map(|((&model, &p), &cost)| Scored {
                model,
                p,
                cost,
                outcomes: scorer.outcomes(model),
            })
            .collect();
        let Selection { order, explore } = self.explorer.select(&scored, cost_ref, self.objective);
        let tokens = (input_tokens + output_tokens).max(1) as f64;
        let mut candidates: Vec<Candidate> = order
            .iter()
            .map(|&i| Candidate {
                model: models[i].id.clone(),
                p_success: f64::from(p[i]),
                cost_per_mtok: cost[i] / tokens * 1e6,
                est_cost_usd: cost[i],
                score: objective_value(self.objective, f64::from(p[i]), cost[i], cost_ref),
                cold: scorer.is_cold(&models[i].id),
            })
            .collect();

        let mut affinity = false;
        if let Some(remembered) = affinity_key.and_then(|k| self.affinity.get(&k)) {
            if let Some(pos) = candidates.iter().position(|c| c.model == remembered) {
                let c = candidates.remove(pos);
                candidates.insert(0, c);
                affinity = true;
            }
        }
        let explore = explore && !affinity;
        if explore {
            self.metrics
                .explored
                .with_label_values(&[&candidates[0].model])
                .inc();
        }
        let selected_model = candidates[0].model.clone();
        let fallbacks = candidates[1..]
            .iter()
            .take(self.settings.max_attempts.saturating_sub(1))
            .map(|c| c.model.clone())
            .collect();
        // Every plugin feature is logged (a later refit may use it), then the checkpoint's.
        let mut extra: BTreeMap<String, f32> = plugin_features
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let at = scorer.mirt.layout().features_at(embedding.len());
        for (name, v) in scorer.mirt.features.iter().zip(&x[at..]) {
            extra.insert(name.clone(), *v);
        }
        let reasoning = reasoning(&route, &candidates, affinity, explore);
        Ok(RoutingDecision {
            route,
            policy: policy_name,
            candidates,
            excluded,
            selected_model,
            fallbacks,
            affinity,
            explore,
            reasoning,
            checkpoint_version: scorer.version,
            latencies_ms: BTreeMap::new(),
            features: Some(PromptFeatures {
                encoder: self.encoder.id().to_string(),
                embedding: embedding.clone(),
                extra,
            }),
            affinity_key,
        })
    }

    /// The models of `list` a request may use now, in list order.
    fn eligible(
        &self,
        list: &[String],
        budget_usd: Option<f64>,
        opts: &RouteOptions,
        input_tokens: u64,
        output_tokens: u64,
        excluded: &mut Vec<Excluded>,
    ) -> Vec<Arc<Model>> {
        let tokens = (input_tokens + output_tokens).max(1) as f64;
        let mut out = Vec::new();
        for id in list {
            let mut out_because = |reason| {
                excluded.push(Excluded {
                    model: id.clone(),
                    reason,
                })
            };
            let Some(m) = self.registry.get(id) else {
                out_because("unknown");
                continue;
            };
            if opts.unsupported.contains(id) {
                out_because("unsupported");
                continue;
            }
            if opts
                .allowed_models
                .as_ref()
                .is_some_and(|allowed| !allowed.contains(id))
            {
                out_because("not_allowed");
                continue;
            }
            if self.registry.is_cooling(id) {
                out_because("cooling_down");
                continue;
            }
            if !self.registry.is_healthy(id) {
                out_because("unhealthy");
                continue;
            }
            let cost = m.cost.usd(input_tokens, output_tokens);
            if budget_usd.is_some_and(|b| cost > b) {
                out_because("over_budget");
                continue;
            }
            if opts
                .max_cost_per_mtok
                .is_some_and(|max| cost / tokens * 1e6 > max)
                || opts.max_cost_usd.is_some_and(|max| cost > max)
            {
                out_because("over_max_cost");
                continue;
            }
            if opts.budget_left_usd.is_some_and(|left| cost > left) {
                out_because("over_key_budget");
                continue;
            }
            out.push(m.clone());
        }
        out
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Input tokens of a text, roughly (4 bytes a token, as providers' rules of thumb say).
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}

/// The value the objective ranks by (higher is better).
fn objective_value(obj: Objective, p: f64, cost: f64, cost_ref: f64) -> f64 {
    let rel = if cost_ref > 0.0 { cost / cost_ref } else { 0.0 };
    match obj {
        Objective::CostWeight(w) => p - w * rel,
        // Meeting the target counts first, then the cheaper; below it, the likelier.
        Objective::CheapestAbove(t) if p >= t => 1.0 + (1.0 - rel),
        Objective::CheapestAbove(_) => p,
    }
}

fn describe_exclusions(excluded: &[Excluded]) -> String {
    if excluded.is_empty() {
        return "the policy lists no model".into();
    }
    excluded
        .iter()
        .map(|e| format!("{} ({})", e.model, e.reason.replace('_', " ")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `Arch: programming/bug-fix (embedded, 0.91) → Candidates: [a, b] → MIRT: b (P=0.86, $0.40/Mtok)`
fn reasoning(route: &Route, candidates: &[Candidate], affinity: bool, explore: bool) -> String {
    let names: Vec<&str> = candidates.iter().map(|c| c.model.as_str()).collect();
    let best = &candidates[0];
    let how = if affinity {
        "affinity"
    } else if explore {
        "exploration"
    } else {
        "MIRT"
    };
    let source = match route.source {
        RouteSource::ArchRouter => "arch-router",
        RouteSource::Embedded => "embedded",
        RouteSource::Default => "default",
    };
    format!(
        "Arch: {} ({source}, {:.2}) → Candidates: [{}] → {how}: {} (P={:.2}, ${:.2}/Mtok)",
        route.name(),
        route.confidence,
        names.join(", "),
        best.model,
        best.p_success,
        best.cost_per_mtok
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_both_ends_on_char_boundaries() {
        assert_eq!(clip("short", 4, 4), "short");
        let long = format!("début {} fin", "é".repeat(1000));
        let c = clip(&long, 8, 6);
        assert!(c.starts_with("début"), "{c}");
        assert!(c.ends_with(" fin"), "{c}");
        assert!(c.len() <= 8 + 6 + 1);
    }
}
