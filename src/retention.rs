//! Retention: decisions and feedback older than `retention.decisions_days` /
//! `retention.feedback_days` are deleted every `retention.interval_s`, `retention.batch_rows`
//! at a time with a pause between batches, so the decision-log writer is never held up for
//! longer than one small statement. The settings are read from the live state each round, so
//! a reload changes them.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use dualrouter_core::config::retention::RetentionSettings;
use dualrouter_core::metrics::Metrics;
use dualrouter_proxy::ProxyState;
use dualrouter_store::{Store, StoreError};

/// The pause between two batches: the writer's transactions get in between.
const BETWEEN_BATCHES: Duration = Duration::from_millis(20);

/// Prunes now, then every `retention.interval_s`, until the process ends.
pub async fn prune_forever(states: Arc<ArcSwap<ProxyState>>) {
    loop {
        let state = states.load_full();
        let settings = state.config.retention;
        if let Err(e) = prune_once(&state.store, &state.metrics, &settings).await {
            tracing::warn!("retention: pruning stopped for this round: {e}");
        }
        drop(state);
        tokio::time::sleep(Duration::from_secs(settings.interval_s.max(1))).await;
    }
}

/// One round: every decision and feedback row past its age, batch by batch. Returns how many
/// rows of each it deleted.
pub async fn prune_once(
    store: &Store,
    metrics: &Metrics,
    settings: &RetentionSettings,
) -> Result<(u64, u64), StoreError> {
    let batch = i64::from(settings.batch_rows.max(1));
    let cutoff = |days: u32| chrono::Utc::now() - chrono::Duration::days(i64::from(days));
    let mut decisions = 0;
    if settings.decisions_days > 0 {
        let before = cutoff(settings.decisions_days);
        loop {
            let n = store.prune_decisions(before, batch).await?;
            decisions += n;
            metrics
                .pruned
                .with_label_values(&["routing_decisions"])
                .inc_by(n);
            if n < batch as u64 {
                break;
            }
            tokio::time::sleep(BETWEEN_BATCHES).await;
        }
    }
    let mut feedback = 0;
    if settings.feedback_days > 0 {
        let before = cutoff(settings.feedback_days);
        loop {
            let n = store.prune_feedback(before, batch).await?;
            feedback += n;
            metrics.pruned.with_label_values(&["feedback"]).inc_by(n);
            if n < batch as u64 {
                break;
            }
            tokio::time::sleep(BETWEEN_BATCHES).await;
        }
    }
    if decisions + feedback > 0 {
        tracing::info!(decisions, feedback, "retention: pruned old rows");
    }
    Ok((decisions, feedback))
}
