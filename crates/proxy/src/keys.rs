//! Virtual keys on the request path: who the caller is, the gate before routing (rate window,
//! budget left), the reservation before forwarding, and the settlement with the real cost when
//! the request ends (a guard settles on drop, so no path forgets to).
//!
//! Store calls run on the control runtime, where the store's pool lives; a key found in the
//! keyring's cache costs no store call at all, and neither does its rate window or budget
//! reservation while this instance's leases of them have room.

use std::collections::HashSet;
use std::sync::Arc;

use dualrouter_core::config::validated::{ClientAuth, VirtualKeyAuth};
use dualrouter_store::{
    to_nano, to_usd, Charge, Gate, KeyPolicy, Keyring, Lookup, Refusal, Reservation, VirtualKey,
};

use crate::error::ApiError;
use crate::ProxyState;

/// Who sent a request.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// No client keys configured.
    Open,
    /// One of the config's static keys (`auth.keys_env`, `auth.keys_file`).
    Static,
    /// A virtual key from the store.
    Virtual(Arc<VirtualKey>),
}

fn policy(v: &VirtualKeyAuth) -> KeyPolicy {
    KeyPolicy {
        fail_open: v.fail_open,
        allowance_nusd: to_nano(v.fail_open_allowance_usd),
    }
}

fn refused(state: &ProxyState, reason: &str) {
    state
        .metrics
        .key_refusals
        .with_label_values(&[reason])
        .inc();
}

/// Checks the presented key: a static key (constant-time comparison), else a virtual key
/// when `auth.virtual_keys` is on.
pub(crate) async fn authenticate(
    state: &ProxyState,
    auth: Option<&ClientAuth>,
    headers: &http::HeaderMap,
) -> Result<Caller, ApiError> {
    let Some(auth) = auth else {
        return Ok(Caller::Open);
    };
    if crate::ingress::authorize(Some(auth), headers).is_ok() {
        return Ok(Caller::Static);
    }
    let presented = crate::ingress::presented_key(headers);
    let (Some(_), Some(keyring), false) = (auth.virtual_keys, &state.keys, presented.is_empty())
    else {
        return Err(ApiError::Unauthorized);
    };
    let found = match keyring.cached(presented) {
        Some(found) => found,
        None => {
            let keyring = keyring.clone();
            let secret = presented.to_string();
            state
                .control
                .spawn(async move { keyring.lookup(&secret).await })
                .await
                .map_err(|e| ApiError::Internal(format!("key lookup task: {e}")))?
        }
    };
    match found {
        Lookup::Key(k) => Ok(Caller::Virtual(k)),
        Lookup::Unknown => {
            refused(state, "invalid_key");
            Err(ApiError::Unauthorized)
        }
        Lookup::Revoked => {
            refused(state, "invalid_key");
            Err(ApiError::KeyRejected("has been revoked"))
        }
        Lookup::Expired => {
            refused(state, "invalid_key");
            Err(ApiError::KeyRejected("has expired"))
        }
        // A key not in the cache cannot be checked without the store, whatever the policy.
        Lookup::Unavailable => {
            refused(state, "store_unavailable");
            Err(ApiError::Unavailable("the key store"))
        }
    }
}

/// A refusal of the keyring as the client sees it.
fn refusal(state: &ProxyState, key: &VirtualKey, r: Refusal) -> ApiError {
    match r {
        Refusal::RateLimited {
            tokens,
            count,
            reset_s,
        } => {
            refused(
                state,
                if tokens {
                    "rate_tokens"
                } else {
                    "rate_requests"
                },
            );
            let rl = key.rate_limit;
            ApiError::RateLimited {
                tokens,
                limit_requests: rl.rpm,
                remaining_requests: rl.rpm.map(|l| l.saturating_sub(count.requests)),
                limit_tokens: rl.tpm,
                remaining_tokens: rl.tpm.map(|l| l.saturating_sub(count.tokens)),
                reset_s,
            }
        }
        Refusal::BudgetExceeded { count, budget_nusd } => {
            refused(state, "budget");
            ApiError::BudgetExceeded {
                period: key.budget.map_or("total", |b| b.period.as_str()),
                budget_usd: to_usd(budget_nusd),
                spent_usd: to_usd(count.spent_nusd),
                reserved_usd: to_usd(count.reserved_nusd),
            }
        }
        Refusal::Unavailable => {
            refused(state, "store_unavailable");
            ApiError::Unavailable("the key store")
        }
    }
}

/// What routing must respect for a key, and what the gate found.
pub(crate) struct Admitted {
    pub(crate) key: Arc<VirtualKey>,
    pub(crate) gate: Gate,
}

impl Admitted {
    /// The key's `x-ratelimit-*` headers after this request was counted (none without limits).
    pub(crate) fn rate_headers(&self) -> Vec<(&'static str, String)> {
        let Some(count) = self.gate.rate else {
            return Vec::new();
        };
        let rl = self.key.rate_limit;
        crate::error::ratelimit_headers(
            rl.rpm.map(|l| (l, l.saturating_sub(count.requests))),
            rl.tpm.map(|l| (l, l.saturating_sub(count.tokens))),
            self.gate.reset_s,
        )
    }

    /// The key's limits as routing options.
    pub(crate) fn route_limits(&self, opts: &mut dualrouter_routing::RouteOptions) {
        opts.allowed_models = self
            .key
            .models
            .as_ref()
            .map(|m| m.iter().cloned().collect::<HashSet<_>>());
        opts.max_cost_usd = self.key.max_cost_per_request_usd;
        opts.budget_left_usd = self.gate.budget_left_nusd.map(to_usd);
    }
}

/// Before routing: the key's rate window (the request is counted) and, for a routed request,
/// the budget left. A budget already spent is refused here.
pub(crate) async fn gate(
    state: &ProxyState,
    key: &Arc<VirtualKey>,
    routed: bool,
) -> Result<Admitted, ApiError> {
    let (Some(keyring), Some(vk)) = (
        state.keys.clone(),
        state.config.auth.as_ref().and_then(|a| a.virtual_keys),
    ) else {
        return Err(ApiError::Internal("virtual keys are not set up".into()));
    };
    let policy = policy(&vk);
    // From this instance's leases in memory when they can answer (no task hop, no store
    // call); else on the control runtime, which asks the store.
    let gate = match keyring.try_gate(key, routed, policy) {
        Some(gate) => gate,
        None => {
            let k = key.clone();
            state
                .control
                .spawn(async move { keyring.gate(&k, routed, policy).await })
                .await
                .map_err(|e| ApiError::Internal(format!("key gate task: {e}")))?
        }
    }
    .map_err(|r| refusal(state, key, r))?;
    if gate.budget_left_nusd.is_some_and(|left| left <= 0) {
        let budget = key.budget.map_or(0.0, |b| b.usd);
        refused(state, "budget");
        return Err(ApiError::BudgetExceeded {
            period: key.budget.map_or("total", |b| b.period.as_str()),
            budget_usd: budget,
            spent_usd: budget - gate.budget_left_nusd.map_or(0.0, to_usd),
            reserved_usd: 0.0,
        });
    }
    Ok(Admitted {
        key: key.clone(),
        gate,
    })
}

/// Routing found nothing the key's budget can pay for.
pub(crate) fn budget_refusal(state: &ProxyState, a: &Admitted) -> ApiError {
    refused(state, "budget");
    let budget = a.key.budget.map_or(0.0, |b| b.usd);
    let left = a.gate.budget_left_nusd.map_or(0.0, to_usd);
    ApiError::BudgetExceeded {
        period: a.key.budget.map_or("total", |b| b.period.as_str()),
        budget_usd: budget,
        spent_usd: budget - left,
        reserved_usd: 0.0,
    }
}

/// A concrete model the key may not use.
pub(crate) fn check_model(
    state: &ProxyState,
    key: &VirtualKey,
    model: &str,
) -> Result<(), ApiError> {
    if key.allows(model) {
        Ok(())
    } else {
        refused(state, "model_not_allowed");
        Err(ApiError::ModelNotAllowed(model.to_string()))
    }
}

/// A concrete model whose estimate passes the key's per-request cap.
pub(crate) fn check_cap(
    state: &ProxyState,
    key: &VirtualKey,
    model: &str,
    estimate_usd: f64,
) -> Result<(), ApiError> {
    match key.max_cost_per_request_usd {
        Some(cap) if estimate_usd > cap => {
            refused(state, "max_cost");
            Err(ApiError::OverKeyCap {
                model: model.to_string(),
                estimate_usd,
                cap_usd: cap,
            })
        }
        _ => Ok(()),
    }
}

/// Reserves the request's estimated cost on the key's budget.
pub(crate) async fn reserve(
    state: &ProxyState,
    admitted: Admitted,
    estimate_usd: f64,
) -> Result<KeyUse, ApiError> {
    let (Some(keyring), Some(vk)) = (
        state.keys.clone(),
        state.config.auth.as_ref().and_then(|a| a.virtual_keys),
    ) else {
        return Err(ApiError::Internal("virtual keys are not set up".into()));
    };
    let policy = policy(&vk);
    let Admitted { key, gate } = admitted;
    let (k, kr) = (key.clone(), keyring.clone());
    let amount = to_nano(estimate_usd);
    // From this instance's lease of the key's budget when it has room (no task hop, no store
    // call); else on the control runtime, which tops the lease up from the store.
    let reservation = match kr.try_reserve(&k, &gate, amount, policy) {
        Some(r) => r,
        None => state
            .control
            .spawn(async move { kr.reserve(&k, &gate, amount, policy).await })
            .await
            .map_err(|e| ApiError::Internal(format!("key reservation task: {e}")))?,
    }
    .map_err(|r| refusal(state, &key, r))?;
    Ok(KeyUse {
        keyring,
        key,
        reservation: Some(reservation),
    })
}

/// A request's hold on its key's budget. [`KeyUse::settle`] charges the real cost; dropped
/// unsettled (a path that returned early, a cancelled task), it charges what it reserved.
pub(crate) struct KeyUse {
    keyring: Arc<Keyring>,
    key: Arc<VirtualKey>,
    reservation: Option<Reservation>,
}

impl KeyUse {
    /// Settles with what the decision record says the request used: its cost when the
    /// upstream reported usage; what was reserved when an answer went out without usage (the
    /// provider may have generated it all); nothing when no answer was served.
    pub(crate) fn settle(
        mut self,
        state: &ProxyState,
        rec: Option<&dualrouter_store::DecisionRecord>,
        status: http::StatusCode,
    ) {
        let Some(r) = self.reservation.take() else {
            return;
        };
        let served = rec.and_then(|r| r.selected_model.clone());
        let cost_usd = rec.and_then(|r| r.cost_usd);
        let cancelled = rec.is_some_and(|r| r.status == "cancelled");
        let cost_nusd = match (cost_usd, &served) {
            (Some(c), _) => to_nano(c),
            (None, Some(_)) if status.is_success() || cancelled => r.amount_nusd(),
            _ => 0,
        };
        let input = rec.and_then(|r| r.input_tokens).unwrap_or(0);
        let output = rec.and_then(|r| r.output_tokens).unwrap_or(0);
        let cached = rec.and_then(|r| r.cache_read_tokens).unwrap_or(0);
        if let Some(model) = &served {
            let label = state.metrics.key_label(&self.key.name);
            if cost_nusd > 0 {
                state
                    .metrics
                    .key_spend
                    .with_label_values(&[&label, model])
                    .inc_by(to_usd(cost_nusd));
            }
            for (kind, n) in [("input", input), ("output", output), ("cached", cached)] {
                if n > 0 {
                    state
                        .metrics
                        .key_tokens
                        .with_label_values(&[&label, model, kind])
                        .inc_by(n);
                }
            }
        }
        self.keyring.settle(
            r,
            Charge {
                cost_nusd,
                model: served.filter(|_| cost_nusd > 0 || input + output > 0),
                input_tokens: input,
                output_tokens: output,
                cached_tokens: cached,
            },
        );
    }
}

impl Drop for KeyUse {
    fn drop(&mut self) {
        if let Some(r) = self.reservation.take() {
            let cost_nusd = r.amount_nusd();
            self.keyring.settle(
                r,
                Charge {
                    cost_nusd,
                    ..Charge::default()
                },
            );
        }
    }
}
