//! The executor registry: every model a request can be sent to, where it came from, and
//! whether it is healthy.
//!
//! Models come from three sources: the providers of the config, the models a provider with
//! `discover_models` lists at `GET {base_url}/models` (e.g. a Bifrost gateway), and the models
//! executor plugins declare in `describe`. A name the config gives wins over discovery, and
//! both over a plugin (a clash is logged).
//!
//! Two things keep a model out of the candidates:
//! - its circuit breaker, fed by the proxy's attempts: `breaker.failures` consecutive failures
//!   before the first byte (or one answer with `Retry-After`) open it for the cool-down; then
//!   one probe request is let through, and its outcome closes or re-opens the breaker;
//! - its backend's health: the periodic provider checks of [`probe`] (`routing.health_checks`)
//!   and an executor plugin's own state (failure cooldown, its `health` report).

pub mod probe;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use dualrouter_core::config::routing::{BreakerSettings, HealthCheckSettings};
use dualrouter_core::config::validated::{Backend, ModelSource};
use dualrouter_core::config::{Config, Cost, Model};
use dualrouter_plugins::PluginHost;

/// What discovery found: provider name → the model ids it lists.
pub type Discovered = BTreeMap<String, Vec<String>>;

/// A model's breaker.
#[derive(Debug, Clone, Default)]
struct Breaker {
    consecutive_failures: u32,
    /// Open until then; `None` when closed.
    open_until: Option<Instant>,
    /// A probe request is in flight (half-open): nobody else gets the model meanwhile.
    probing: bool,
    last_error: Option<String>,
    last_check: Option<DateTime<Utc>>,
}

/// The periodic checks' view of one provider.
#[derive(Debug, Clone, Default)]
struct ProviderCheck {
    consecutive_failures: u32,
    unhealthy: bool,
    last_error: Option<String>,
    last_check: Option<DateTime<Utc>>,
}

/// The health of one model as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelHealth {
    /// `healthy`, `cooling_down` (breaker open), `probing` (one request finds out whether it is
    /// back) or `unhealthy` (its provider's checks fail, or its executor plugin is out).
    pub state: &'static str,
    pub consecutive_failures: u32,
    /// Seconds left before a probe is allowed, while cooling down.
    pub retry_in_s: Option<f64>,
    pub last_error: Option<String>,
    pub last_check: Option<DateTime<Utc>>,
}

pub struct Registry {
    models: HashMap<String, Arc<Model>>,
    order: Vec<String>,
    breakers: Mutex<HashMap<String, Breaker>>,
    /// Provider name → its checks.
    checks: Mutex<HashMap<String, ProviderCheck>>,
    /// Provider name → what its last successful discovery listed.
    discovered: Discovered,
    plugins: Option<Arc<PluginHost>>,
    settings: BreakerSettings,
    check_settings: HealthCheckSettings,
}

/// What an attempt on a model came to, as far as its health goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Success,
    /// Failed before the first byte; `retry_after` when the upstream said how long to wait.
    Failure {
        retry_after: Option<Duration>,
    },
}

impl Registry {
    /// The config's models only (no plugins, nothing discovered).
    pub fn from_config(config: &Config) -> Self {
        Self::build(config, None, &Discovered::new(), None)
    }

    /// Every model of the config, then the discovered ones, then the executor plugins'.
    /// `prev` (the registry this one replaces) lends the health of the models that stay.
    pub fn build(
        config: &Config,
        plugins: Option<Arc<PluginHost>>,
        discovered: &Discovered,
        prev: Option<&Registry>,
    ) -> Self {
        let mut models = config.models.clone();
        let mut order = config.model_order.clone();
        let reserved = |id: &str| config.routing.is_alias(id);
        for provider in config.providers.iter().filter(|p| p.discover_models) {
            for id in discovered.get(&provider.name).into_iter().flatten() {
                if models.contains_key(id) || reserved(id) {
                    continue;
                }
                models.insert(
                    id.clone(),
                    Arc::new(Model {
                        id: id.clone(),
                        upstream_id: id.clone(),
                        backend: Backend::Provider(provider.clone()),
                        source: ModelSource::Discovered,
                        cost: provider.discovered_cost,
                        context_tokens: None,
                        tier: provider.discovered_tier.clone(),
                        mirt_model: None,
                        caps: dualrouter_wire::Caps {
                            reasoning: false,
                            structured_output: true,
                        },
                    }),
                );
                order.push(id.clone());
            }
        }
        if let Some(host) = &plugins {
            for m in host.executor_models() {
                if let Some(prev) = models.get(&m.id) {
                    tracing::warn!(
                        model = %m.id,
                        plugin = %m.plugin,
                        "executor plugin declares a model '{}' already serves; the plugin's is left out",
                        prev.owner()
                    );
                    continue;
                }
                if reserved(&m.id) {
                    tracing::warn!(model = %m.id, plugin = %m.plugin, "executor plugin declares a routing alias as a model; left out");
                    continue;
                }
                models.insert(
                    m.id.clone(),
                    Arc::new(Model {
                        id: m.id.clone(),
                        upstream_id: m.id.clone(),
                        backend: Backend::Plugin(m.plugin.clone()),
                        source: ModelSource::Plugin,
                        cost: Cost::new(m.input_cost_per_mtok, m.output_cost_per_mtok),
                        context_tokens: (m.context_tokens > 0).then_some(m.context_tokens),
                        tier: m.tier.clone(),
                        mirt_model: None,
                        // An executor answers with text: it takes no reasoning settings and
                        // cannot be held to a JSON schema.
                        caps: dualrouter_wire::Caps::default(),
                    }),
                );
                order.push(m.id);
            }
        }
        let breakers = prev
            .map(|p| {
                p.lock()
                    .iter()
                    .filter(|(id, _)| models.contains_key(*id))
                    .map(|(id, b)| (id.clone(), b.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let checks = prev
            .map(|p| {
                lock(&p.checks)
                    .iter()
                    .filter(|(name, _)| config.providers.iter().any(|q| &&q.name == name))
                    .map(|(n, c)| (n.clone(), c.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            models,
            order,
            breakers: Mutex::new(breakers),
            checks: Mutex::new(checks),
            discovered: discovered.clone(),
            plugins,
            settings: config.routing.breaker,
            check_settings: config.routing.health_checks,
        }
    }

    /// The plugin host whose executors serve some of the models.
    pub fn plugins(&self) -> Option<&Arc<PluginHost>> {
        self.plugins.as_ref()
    }

    /// What discovery found, per provider.
    pub fn discovered(&self) -> &Discovered {
        &self.discovered
    }

    /// Names among `names` this registry has no model for.
    pub fn unplaced<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        let mut out: Vec<String> = names
            .into_iter()
            .filter(|n| !self.models.contains_key(*n))
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Model>> {
        self.models.get(id)
    }

    /// Every model, in config order.
    pub fn models(&self) -> impl Iterator<Item = &Arc<Model>> {
        self.order.iter().filter_map(|id| self.models.get(id))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Breaker>> {
        lock(&self.breakers)
    }

    /// Whether the model's backend is in service: its provider's checks pass, or its executor
    /// plugin is neither in a failure cooldown nor reported unhealthy. Unknown ids are not.
    pub fn is_healthy(&self, id: &str) -> bool {
        let Some(m) = self.models.get(id) else {
            return false;
        };
        match &m.backend {
            Backend::Provider(p) => !lock(&self.checks).get(&p.name).is_some_and(|c| c.unhealthy),
            Backend::Plugin(name) => self
                .plugins
                .as_ref()
                .is_some_and(|h| h.is_plugin_healthy(name)),
        }
    }

    /// Records one health check of a provider: `Ok` when it answered, else a short reason
    /// (never a message with secrets). `health_checks.failures` failures in a row mark its
    /// models unhealthy; one success brings them back.
    pub fn record_check(&self, provider: &str, result: Result<(), String>) {
        let mut all = lock(&self.checks);
        let c = all.entry(provider.to_string()).or_default();
        c.last_check = Some(Utc::now());
        match result {
            Ok(()) => {
                if c.unhealthy {
                    tracing::info!(provider, "provider check passes again; its models are back");
                }
                c.consecutive_failures = 0;
                c.unhealthy = false;
                c.last_error = None;
            }
            Err(e) => {
                c.consecutive_failures = c.consecutive_failures.saturating_add(1);
                if !c.unhealthy && c.consecutive_failures >= self.check_settings.failures {
                    tracing::warn!(provider, error = %e, "provider check keeps failing; its models leave the candidates");
                    c.unhealthy = true;
                }
                c.last_error = Some(e);
            }
        }
    }

    /// Whether `id` may be offered to a request now. A model whose cool-down has passed is
    /// offered to exactly one request (the probe) until that request reports back.
    pub fn admit(&self, id: &str) -> bool {
        let mut all = self.lock();
        let Some(b) = all.get_mut(id) else {
            return self.models.contains_key(id);
        };
        match b.open_until {
            None => true,
            Some(_) if b.probing => false,
            Some(until) if Instant::now() >= until => {
                b.probing = true;
                true
            }
            Some(_) => false,
        }
    }

    /// Whether `id` is out of the candidates right now (without claiming a probe).
    pub fn is_cooling(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|b| {
            b.open_until
                .is_some_and(|until| b.probing || Instant::now() < until)
        })
    }

    /// The soonest time any of `ids` is offered again, if all are cooling down.
    pub fn soonest_retry(&self, ids: &[String]) -> Option<Duration> {
        let all = self.lock();
        let now = Instant::now();
        ids.iter()
            .filter_map(|id| all.get(id).and_then(|b| b.open_until))
            .map(|until| until.saturating_duration_since(now))
            .min()
    }

    /// Records an attempt's outcome. `error` is a short label (never a message with secrets).
    pub fn report(&self, id: &str, verdict: Verdict, error: Option<&str>) {
        let mut all = self.lock();
        let b = all.entry(id.to_string()).or_default();
        b.last_check = Some(Utc::now());
        b.probing = false;
        match verdict {
            Verdict::Success => {
                if b.open_until.is_some() {
                    tracing::info!(
                        model = id,
                        "probe succeeded; model is back in the candidates"
                    );
                }
                b.consecutive_failures = 0;
                b.open_until = None;
                b.last_error = None;
            }
            Verdict::Failure { retry_after } => {
                b.consecutive_failures = b.consecutive_failures.saturating_add(1);
                b.last_error = error.map(str::to_string);
                let max = Duration::from_millis(self.settings.max_retry_after_ms);
                let cooldown = Duration::from_millis(self.settings.cooldown_ms);
                let wait = match retry_after {
                    Some(ra) => Some(ra.min(max)),
                    None if b.consecutive_failures >= self.settings.failures
                        || b.open_until.is_some() =>
                    {
                        Some(cooldown)
                    }
                    None => None,
                };
                if let Some(wait) = wait {
                    if b.open_until.is_none() {
                        tracing::warn!(
                            model = id,
                            failures = b.consecutive_failures,
                            cooldown_ms = wait.as_millis() as u64,
                            "model cools down"
                        );
                    }
                    b.open_until = Some(Instant::now() + wait);
                }
            }
        }
    }

    /// Forgets a probe that never reported (e.g. the client went away before the answer).
    pub fn release_probe(&self, id: &str) {
        if let Some(b) = self.lock().get_mut(id) {
            b.probing = false;
        }
    }

    pub fn health(&self, id: &str) -> ModelHealth {
        let now = Instant::now();
        let mut h = match self.lock().get(id) {
            None => ModelHealth {
                state: "healthy",
                consecutive_failures: 0,
                retry_in_s: None,
                last_error: None,
                last_check: None,
            },
            Some(b) => ModelHealth {
                state: match b.open_until {
                    None => "healthy",
                    Some(_) if b.probing => "probing",
                    Some(_) => "cooling_down",
                },
                consecutive_failures: b.consecutive_failures,
                retry_in_s: b
                    .open_until
                    .map(|u| u.saturating_duration_since(now).as_secs_f64()),
                last_error: b.last_error.clone(),
                last_check: b.last_check,
            },
        };
        match self.models.get(id).map(|m| &m.backend) {
            Some(Backend::Provider(p)) => {
                if let Some(c) = lock(&self.checks).get(&p.name) {
                    if c.unhealthy {
                        h.state = "unhealthy";
                        h.last_error = c.last_error.clone();
                    }
                    h.last_check = h.last_check.max(c.last_check);
                }
            }
            Some(Backend::Plugin(name)) => {
                if let Some(s) = self
                    .plugins
                    .as_ref()
                    .and_then(|host| host.statuses().into_iter().find(|s| &s.name == name))
                {
                    if !s.healthy {
                        h.state = "unhealthy";
                        h.last_error = s.last_error.or_else(|| s.reported.map(|r| r.detail));
                    }
                }
            }
            None => {}
        }
        h
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave an entry half-written in a way that
    // matters (every field is valid on its own), so a poisoned lock is used as is.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl dualrouter_core::catalog::Catalog for Registry {
    fn executors(&self) -> Vec<dualrouter_core::catalog::ExecutorInfo> {
        self.models()
            .map(|m| {
                let h = self.health(&m.id);
                dualrouter_core::catalog::ExecutorInfo {
                    id: m.id.clone(),
                    provider: m.owner().to_string(),
                    source: m.source.as_str().into(),
                    cost_per_mtok: dualrouter_core::catalog::Price {
                        input: m.cost.input,
                        output: m.cost.output,
                    },
                    context_tokens: m.context_tokens,
                    tier: m.tier.clone(),
                    health: h.state.to_string(),
                    last_check: h.last_check,
                }
            })
            .collect()
    }

    fn has_model(&self, id: &str) -> bool {
        self.models.contains_key(id)
    }
}

/// `Retry-After` as a duration: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (when.with_timezone(&Utc) - Utc::now()).num_milliseconds();
    Some(Duration::from_millis(secs.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(failures: u32, cooldown_ms: u64) -> Registry {
        let yaml = format!(
            "listen: 127.0.0.1:0\nrouting: {{ breaker: {{ failures: {failures}, cooldown_ms: {cooldown_ms} }} }}\n\
             providers:\n  - {{ name: p, kind: openai, base_url: http://127.0.0.1:1/v1, models: [{{ id: a }}, {{ id: b }}] }}\n"
        );
        let cfg = dualrouter_core::config::validated::validate(
            dualrouter_core::config::parse(&yaml, "t.yaml").unwrap(),
            &|_| None,
        )
        .unwrap();
        Registry::from_config(&cfg)
    }

    #[test]
    fn opens_after_failures_probes_once_and_recovers() {
        let r = registry(2, 30);
        let fail = Verdict::Failure { retry_after: None };
        r.report("a", fail, Some("upstream_unreachable"));
        assert!(r.admit("a"), "one failure keeps it in");
        r.report("a", fail, Some("upstream_unreachable"));
        assert!(!r.admit("a"), "two failures open the breaker");
        assert_eq!(r.health("a").state, "cooling_down");
        assert!(r.admit("b"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(r.admit("a"), "cool-down over: one probe");
        assert!(!r.admit("a"), "only one probe at a time");
        r.report("a", fail, Some("upstream_timeout"));
        assert!(!r.admit("a"), "failed probe re-opens");
        std::thread::sleep(Duration::from_millis(40));
        assert!(r.admit("a"));
        r.report("a", Verdict::Success, None);
        assert!(r.admit("a") && r.admit("a"));
        assert_eq!(r.health("a").state, "healthy");
    }

    #[test]
    fn retry_after_opens_at_once_capped() {
        let r = registry(5, 10);
        r.report(
            "a",
            Verdict::Failure {
                retry_after: Some(Duration::from_secs(3600)),
            },
            Some("429"),
        );
        assert!(!r.admit("a"));
        let left = r.health("a").retry_in_s.unwrap();
        assert!(left > 290.0 && left <= 300.0, "{left}");
        assert!(r.soonest_retry(&["a".into()]).unwrap() > Duration::from_secs(290));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
