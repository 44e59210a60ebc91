//! The executor registry: every model a request can be sent to, and whether it is healthy.
//!
//! Models come from the providers of the config. Each has a circuit breaker fed by the proxy's
//! attempts: `breaker.failures` consecutive failures before the first byte (or one answer with
//! `Retry-After`) open it, and the model leaves the candidates for the cool-down; then one probe
//! request is let through, and its outcome closes or re-opens the breaker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{Config, Model};
use crate::router::settings::BreakerSettings;

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

/// The health of one model as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelHealth {
    /// `healthy`, `cooling_down` (breaker open) or `probing`.
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
    settings: BreakerSettings,
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
    pub fn from_config(config: &Config) -> Self {
        Self::from_config_after(config, None)
    }

    /// A registry for a reloaded config: models that stay keep their health.
    pub fn from_config_after(config: &Config, prev: Option<&Registry>) -> Self {
        let breakers = prev
            .map(|p| {
                p.lock()
                    .iter()
                    .filter(|(id, _)| config.models.contains_key(*id))
                    .map(|(id, b)| (id.clone(), b.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            models: config.models.clone(),
            order: config.model_order.clone(),
            breakers: Mutex::new(breakers),
            settings: config.routing.breaker,
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Model>> {
        self.models.get(id)
    }

    /// Every model, in config order.
    pub fn models(&self) -> impl Iterator<Item = &Arc<Model>> {
        self.order.iter().filter_map(|id| self.models.get(id))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Breaker>> {
        // A panic while holding this lock cannot leave a breaker half-written in a way that
        // matters (every field is valid on its own), so a poisoned lock is used as is.
        self.breakers.lock().unwrap_or_else(|e| e.into_inner())
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
        let all = self.lock();
        let now = Instant::now();
        match all.get(id) {
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
        }
    }
}

impl crate::admin::api::Catalog for Registry {
    fn executors(&self) -> Vec<crate::admin::api::ExecutorInfo> {
        self.models()
            .map(|m| {
                let h = self.health(&m.id);
                crate::admin::api::ExecutorInfo {
                    id: m.id.clone(),
                    provider: m.provider.name.clone(),
                    source: "config".into(),
                    cost_per_mtok: crate::admin::api::Price {
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
        let cfg = crate::config::validated::validate(
            crate::config::parse(&yaml, "t.yaml").unwrap(),
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
