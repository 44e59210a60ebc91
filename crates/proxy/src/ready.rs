//! `GET /readyz`: whether this instance can serve routed requests now, each check named.
//!
//! Ready means: the store answers a round trip, the prompt encoder and the MIRT checkpoint are
//! loaded, and at least one model is healthy (its provider's checks pass and its circuit
//! breaker is not cooling it down). `/healthz` stays liveness: the process answers.

use std::time::Duration;

use serde_json::json;

use crate::ProxyState;

/// The longest the store's round trip may take before the store counts as not answering.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// The checks and their verdict.
pub struct Readiness {
    pub ready: bool,
    /// `{"ready": bool, "checks": {"store": …, "encoder": …, "checkpoint": …, "models": …}}`.
    pub body: serde_json::Value,
}

/// Runs every check of `state` (the store's round trip on the control runtime, bounded by
/// [`STORE_TIMEOUT`]).
pub async fn readiness(state: &ProxyState) -> Readiness {
    let store = state.store.clone();
    let ping = state
        .control
        .spawn(async move { tokio::time::timeout(STORE_TIMEOUT, store.ping()).await });
    let store_check = match ping.await {
        Ok(Ok(Ok(()))) => json!({"ok": true, "backend": state.store.backend()}),
        Ok(Ok(Err(e))) => {
            json!({"ok": false, "backend": state.store.backend(), "error": e.to_string()})
        }
        Ok(Err(_)) => json!({"ok": false, "backend": state.store.backend(),
            "error": format!("no answer within {} ms", STORE_TIMEOUT.as_millis())}),
        Err(e) => json!({"ok": false, "backend": state.store.backend(),
            "error": format!("the check did not run: {e}")}),
    };
    let router = &state.router;
    let encoder = router.encoder();
    // A live state is built only with its encoder and checkpoint loaded; they are reported
    // so an operator sees which ones serve.
    let encoder_check = json!({"ok": encoder.dim() > 0, "id": encoder.id(), "dim": encoder.dim()});
    let scorer = router.scorer();
    let checkpoint_check = json!({
        "ok": !scorer.mirt.models.is_empty(),
        "version": scorer.version,
        "models": scorer.mirt.models.len(),
    });
    let registry = router.registry();
    let total = registry.models().count();
    let healthy = registry
        .models()
        .filter(|m| registry.is_healthy(&m.id) && !registry.is_cooling(&m.id))
        .count();
    let models_check = json!({"ok": healthy > 0, "healthy": healthy, "total": total});
    let ready = [
        &store_check,
        &encoder_check,
        &checkpoint_check,
        &models_check,
    ]
    .iter()
    .all(|c| c["ok"] == json!(true));
    Readiness {
        ready,
        body: json!({
            "ready": ready,
            "checks": {
                "store": store_check,
                "encoder": encoder_check,
                "checkpoint": checkpoint_check,
                "models": models_check,
            }
        }),
    }
}
