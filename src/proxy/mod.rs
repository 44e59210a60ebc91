//! The proxy port: Pingora's `ProxyHttp`, with every request answered from `request_filter`.
//!
//! Phase by phase: [`ingress`] (endpoint, client key, body, parse) → [`forward`] (upstream
//! exchange through Pingora's pooled connector) → [`relay`] (the answer streamed back chunk by
//! chunk, SSE filtered by [`sse`]). [`respond`] writes the proxy's own answers and errors.
//!
//! Why not Pingora's `upstream_peer` path: routing needs the whole body before choosing an
//! upstream, and Pingora replays a consumed body only from a 64 KiB retry buffer, so larger
//! prompts would reach the upstream empty. Holding the body ourselves also lets one request be
//! replayed on another upstream (fallback) and answered by non-HTTP executors later.

pub mod forward;
pub mod ingress;
pub mod relay;
pub mod respond;
pub mod sse;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use serde_json::json;

use crate::config::Config;
use crate::error::{ApiError, ApiFormat};
use crate::metrics::Metrics;
use crate::router::conversation::Conversation;
use crate::router::DualRouter;
use crate::store::{prompt_hash, DecisionLog, DecisionRecord};
use ingress::{ChatRequest, Endpoint};

/// What every request needs, built once at start.
pub struct ProxyState {
    pub config: Arc<Config>,
    pub upstream: forward::Upstream,
    pub metrics: Arc<Metrics>,
    /// Every forwarded request leaves one record here (never waits on the store).
    pub decision_log: DecisionLog,
    pub router: Arc<DualRouter>,
}

pub struct Proxy {
    pub state: Arc<ProxyState>,
}

/// Per-request state.
pub struct RequestCtx {
    pub started: Instant,
    pub decision_id: uuid::Uuid,
    pub format: ApiFormat,
    /// The configured model id, once known (metric label).
    pub model: Option<String>,
    /// The decision record, once the request is bound for an upstream.
    pub record: Option<DecisionRecord>,
    /// The kind of the error answered, if any.
    pub error_kind: Option<&'static str>,
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            decision_id: uuid::Uuid::now_v7(),
            format: ApiFormat::OpenAi,
            model: None,
            record: None,
            error_kind: None,
        }
    }

    /// Answers every request; `Ok(true)` tells Pingora the response was sent.
    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let status = match handle(&self.state, session, ctx).await {
            Ok(status) => status,
            Err(e) => respond::error(&self.state, session, ctx, &e).await,
        };
        let model = ctx.model.as_deref().unwrap_or("none");
        self.state
            .metrics
            .requests
            .with_label_values(&[model, status.as_str()])
            .inc();
        if let Some(mut rec) = ctx.record.take() {
            rec.http_status = Some(status.as_u16());
            if rec.status == "ok" && (status.is_client_error() || status.is_server_error()) {
                rec.status = "error".into();
            }
            rec.error_kind = ctx.error_kind.map(str::to_string).or(rec.error_kind);
            rec.total_latency_ms = Some(ctx.started.elapsed().as_secs_f64() * 1e3);
            self.state.decision_log.record(rec);
        }
        Ok(true)
    }

    /// Never reached: `request_filter` answers every request.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        Err(pingora::Error::explain(
            pingora::ErrorType::InternalError,
            "dualrouter forwards from request_filter",
        ))
    }
}

/// Serves one request; returns the status sent, or the error to answer with.
async fn handle(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<http::StatusCode, ApiError> {
    let header = session.req_header();
    let path = header.uri.path();
    if path.starts_with("/v1/messages") {
        // Anthropic's API (e.g. an unsupported `/v1/messages/count_tokens`): its error format.
        ctx.format = ApiFormat::Anthropic;
    }
    let endpoint = ingress::endpoint(&header.method, path)?;
    ctx.format = endpoint.format();
    match endpoint {
        Endpoint::Health => {
            respond::json(session, http::StatusCode::OK, &json!({"status": "ok"}), &[]).await
        }
        Endpoint::Models => {
            ingress::authorize(state.config.auth.as_ref(), &session.req_header().headers)?;
            respond::json(
                session,
                http::StatusCode::OK,
                &models_list(&state.config),
                &[],
            )
            .await
        }
        Endpoint::ChatCompletions | Endpoint::Messages => {
            ingress::authorize(state.config.auth.as_ref(), &session.req_header().headers)?;
            chat(state, session, ctx).await
        }
        Endpoint::Route => {
            ingress::authorize(state.config.auth.as_ref(), &session.req_header().headers)?;
            let body = ingress::read_body(session, &state.config.limits).await?;
            let conversation = ingress::route_request(&body)?;
            let decision = state
                .router
                .route(&conversation)
                .await
                .map_err(|e| ApiError::Routing(e.to_string()))?;
            let mut v =
                serde_json::to_value(&decision).map_err(|e| ApiError::Internal(e.to_string()))?;
            v["decision_id"] = json!(ctx.decision_id.to_string());
            respond::json(session, http::StatusCode::OK, &v, &[]).await
        }
    }
}

async fn chat(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<http::StatusCode, ApiError> {
    let limits = state.config.limits;
    let body = ingress::read_body(session, &limits).await?;
    state.metrics.bytes_in.inc_by(body.len() as u64);
    let prepared = Instant::now();
    // The request stays in the client's format; each upstream gets its own translation.
    let request = match ctx.format {
        ApiFormat::OpenAi => ChatRequest::parse(&body)?,
        ApiFormat::Anthropic => ChatRequest::parse_anthropic(&body)?,
    };
    // Seam for routing (`model: "auto"`): choose the model here, from `request`.
    let model = state
        .config
        .models
        .get(&request.model)
        .cloned()
        .ok_or_else(|| ApiError::UnknownModel(request.model.clone()))?;
    ctx.model = Some(model.id.clone());
    ctx.record = Some(new_record(state, ctx, &request, &model));
    let upstream_format = forward::format_of(model.provider.kind);
    let upstream_body = request.upstream_body_for(upstream_format, &model.upstream_id)?;
    drop(body);
    let header = forward::upstream_request(&model.provider, upstream_body.len(), request.stream)?;
    let before_upstream = prepared.elapsed();

    let deadline = Instant::now() + limits.total;
    let exchange = tokio::select! {
        ex = state.upstream.open(&model.provider, &limits, &header, &upstream_body, deadline) => ex?,
        _ = relay::client_gone(session) => {
            state.metrics.client_disconnects.inc();
            if let Some(rec) = ctx.record.as_mut() {
                rec.status = "cancelled".into();
            }
            return Ok(http::StatusCode::from_u16(499).unwrap_or(http::StatusCode::BAD_REQUEST));
        }
    };
    if let Some(rec) = ctx.record.as_mut() {
        rec.latencies_ms.insert(
            "first_byte".into(),
            exchange.upstream_latency.as_secs_f64() * 1e3,
        );
    }
    state
        .metrics
        .upstream_latency
        .with_label_values(&[&model.provider.name])
        .observe(exchange.upstream_latency.as_secs_f64());
    relay::relay(
        state,
        session,
        ctx,
        relay::Relay {
            model: &model,
            exchange,
            stream: request.stream,
            include_usage: request.include_usage,
            client_format: ctx.format,
            deadline,
            overhead_so_far: before_upstream,
        },
    )
    .await
}

/// The record a forwarded request leaves: what was asked, and who serves it.
fn new_record(
    state: &ProxyState,
    ctx: &RequestCtx,
    request: &ChatRequest,
    model: &crate::config::Model,
) -> DecisionRecord {
    let messages = request.messages();
    let prompt: String = Conversation::from_openai_messages(messages)
        .turns
        .iter()
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let mut rec = DecisionRecord::new("ok");
    rec.decision_id = ctx.decision_id.to_string();
    rec.prompt_hash = prompt_hash(&prompt);
    rec.prompt_preview = state.decision_log.preview(&prompt);
    rec.requested_model = Some(request.model.clone());
    rec.route_source = Some("explicit".into());
    rec.served_by(model, None, None);
    rec
}

fn models_list(config: &Config) -> serde_json::Value {
    let data: Vec<_> = config
        .model_order
        .iter()
        .filter_map(|id| config.models.get(id))
        .map(|m| {
            json!({
                "id": m.id,
                "object": "model",
                "created": 0,
                "owned_by": m.provider.name,
            })
        })
        .collect();
    json!({ "object": "list", "data": data })
}
