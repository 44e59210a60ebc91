//! The access log: one `dualrouter::access` line per request, written when it is answered.
//!
//! It carries what an operator looks a request up by and what it cost, never a secret: the
//! decision id, the client key's id (a hash prefix, not the key), method and path (no query),
//! route, model, provider, status, outcome, error kind, tokens in/out/cached, cost, how many
//! upstream attempts it took, the latency of each step and in total, and the trace id when
//! traces are on.

use pingora::proxy::Session;

use crate::RequestCtx;
use dualrouter_store::DecisionRecord;

pub(crate) fn log(
    session: &Session,
    ctx: &RequestCtx,
    status: http::StatusCode,
    rec: Option<&DecisionRecord>,
) {
    if !tracing::enabled!(target: "dualrouter::access", tracing::Level::INFO) {
        return;
    }
    let header = session.req_header();
    let steps = rec.filter(|r| !r.latencies_ms.is_empty()).map(|r| {
        let rounded: std::collections::BTreeMap<&str, f64> = r
            .latencies_ms
            .iter()
            .map(|(k, v)| (k.as_str(), (v * 1000.0).round() / 1000.0))
            .collect();
        serde_json::to_string(&rounded).unwrap_or_default()
    });
    let trace_id = ctx
        .trace
        .as_deref()
        .map(crate::otel::RequestTrace::trace_id_hex);
    tracing::info!(
        target: "dualrouter::access",
        decision_id = %ctx.decision_id,
        trace_id = trace_id.as_deref(),
        key_id = ctx.key_id.as_deref(),
        method = %header.method,
        path = header.uri.path(),
        route = ctx.route.as_deref(),
        model = ctx.model.as_deref(),
        provider = rec.and_then(|r| r.provider.as_deref()),
        status = status.as_u16(),
        outcome = rec.map(|r| r.status.as_str()),
        error_kind = ctx.error_kind,
        input_tokens = rec.and_then(|r| r.input_tokens),
        output_tokens = rec.and_then(|r| r.output_tokens),
        cached_tokens = rec.and_then(|r| r.cache_read_tokens),
        cost_usd = rec.and_then(|r| r.cost_usd),
        attempts = rec.map(|r| r.details.attempts.len()),
        steps_ms = steps.as_deref(),
        latency_ms = (ctx.started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        "request"
    );
}
