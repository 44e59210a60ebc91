//! The proxy port's side endpoints: Anthropic's `POST /v1/messages/count_tokens` and OpenAI's
//! `POST /v1/embeddings`. Each is forwarded whole to one provider of its own format (no
//! fallback: neither generates anything worth retrying elsewhere), or, for a token count the
//! routed model's provider cannot make, answered with the documented estimate.

use std::time::Instant;

use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::{json, Value};

use dualrouter_wire as wire;

use super::ingress;
use super::respond;
use super::{forward, route_options, routing_error, ProxyState, RequestCtx};
use crate::error::ApiError;
use dualrouter_core::config::raw::ProviderKind;
use dualrouter_core::config::validated::Backend;
use dualrouter_core::config::{Model, Provider};
use dualrouter_store::DecisionRecord;

/// The header saying a token count is the proxy's estimate, not the provider's.
pub(crate) const ESTIMATE_HEADER: &str = "x-dualrouter-token-count";

/// `POST /v1/messages/count_tokens`: the count of the model the request names, or of the one
/// routing picks for `auto`. An Anthropic model's provider counts; for any other model the
/// answer is [`wire::estimate_tokens`] (and says so in `x-dualrouter-token-count: estimate`).
pub(crate) async fn count_tokens(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<http::StatusCode, ApiError> {
    let body = ingress::read_body(session, &state.config.limits).await?;
    let request = ingress::count_tokens_request(&body)?;
    drop(body);
    let registry = state.router.registry().clone();
    let model = if state.router.settings().is_alias(&request.model) {
        let opts = route_options(session.req_header(), 0, None)?;
        let decision = state
            .router
            .route(&request.conversation(), &opts)
            .await
            .map_err(routing_error)?
            .map_err(ApiError::NoCandidate)?;
        ctx.route = Some(decision.route.name());
        registry.get(&decision.selected_model).cloned()
    } else {
        registry.get(&request.model).cloned()
    }
    .ok_or_else(|| ApiError::UnknownModel(request.model.clone()))?;
    ctx.model = Some(model.id.clone());
    let model_header = (respond::MODEL_HEADER, model.id.clone());
    match &model.backend {
        Backend::Provider(p) if p.kind == ProviderKind::Anthropic => {
            let mut body = serde_json::Map::clone(&request.body);
            body.insert("model".into(), Value::String(model.upstream_id.clone()));
            let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
            let forwarded: Vec<_> = forward::ANTHROPIC_FORWARDED
                .iter()
                .filter_map(|n| {
                    let v = session.req_header().headers.get(*n)?.clone();
                    Some((http::HeaderName::from_static(n), v))
                })
                .collect();
            let header = forward::upstream_request(
                p,
                "/messages/count_tokens",
                body.len(),
                false,
                &forwarded,
            )?;
            let (status, _) =
                pass_whole(state, session, ctx, p, &header, &body, &[model_header]).await?;
            Ok(status)
        }
        _ => {
            let n = request.ir().map(wire::estimate_tokens)?;
            respond::json(
                session,
                http::StatusCode::OK,
                &json!({ "input_tokens": n }),
                &[model_header, (ESTIMATE_HEADER, "estimate".into())],
            )
            .await
        }
    }
}

/// `POST /v1/embeddings`: a concrete model of an OpenAI-compatible provider, its body passed on
/// with the provider's model id; the tokens it reports are charged at the model's input price.
pub(crate) async fn embeddings(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    caller: &super::keys::Caller,
) -> Result<http::StatusCode, ApiError> {
    let body = ingress::read_body(session, &state.config.limits).await?;
    let body_len = body.len() as u64;
    let (name, mut obj) = ingress::embeddings_request(&body)?;
    drop(body);
    if state.router.settings().is_alias(&name) {
        return Err(ApiError::Unsupported(wire::WireError::new(
            "model",
            "embeddings need a concrete model id (routing chooses among chat models)",
        )));
    }
    let registry = state.router.registry().clone();
    let model: std::sync::Arc<Model> = registry
        .get(&name)
        .cloned()
        .ok_or_else(|| ApiError::UnknownModel(name.clone()))?;
    let provider = match &model.backend {
        Backend::Provider(p) if p.kind == ProviderKind::Openai => p.clone(),
        _ => {
            let why = format!(
                "'{}' is not served by an OpenAI-compatible provider (only those have embeddings)",
                model.id
            );
            return Err(ApiError::Unsupported(wire::WireError::new("model", why)));
        }
    };
    ctx.model = Some(model.id.clone());
    let mut rec = DecisionRecord::with_id(ctx.decision_id.to_string(), "ok");
    rec.requested_model = Some(name);
    rec.route_source = Some("explicit".into());
    // A virtual key: its models, its rate window, and a reservation of the input's price.
    if let super::keys::Caller::Virtual(key) = caller {
        rec.key_id = Some(key.id.clone());
        super::keys::check_model(state, key, &model.id)?;
        let admitted = super::keys::gate(state, key, false).await?;
        ctx.rate_headers = admitted.rate_headers();
        let estimate = model.cost.usd(body_len.div_ceil(4), 0);
        super::keys::check_cap(state, key, &model.id, estimate)?;
        ctx.record = Some(rec);
        ctx.key_use = Some(super::keys::reserve(state, admitted, estimate).await?);
    } else {
        ctx.record = Some(rec);
    }
    obj.insert("model".into(), Value::String(model.upstream_id.clone()));
    let body = Bytes::from(serde_json::to_vec(&obj).unwrap_or_default());
    let header = forward::upstream_request(&provider, "/embeddings", body.len(), false, &[])?;
    let extra: Vec<(&str, String)> = std::iter::once((respond::MODEL_HEADER, model.id.clone()))
        .chain(ctx.rate_headers.iter().cloned())
        .collect();
    let (status, answer) =
        pass_whole(state, session, ctx, &provider, &header, &body, &extra).await?;
    let usage = serde_json::from_slice::<Value>(&answer)
        .ok()
        .and_then(|v| v.get("usage").and_then(wire::decode_chat_usage));
    if let Some(rec) = ctx.record.as_mut() {
        rec.served_by(&model, usage.as_ref());
    }
    Ok(status)
}

/// One exchange whose whole answer (bounded by `limits.max_response_bytes`, the provider's key
/// taken out) goes back with its status. Returns the status and the body sent.
async fn pass_whole(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    provider: &Provider,
    header: &pingora::http::RequestHeader,
    body: &Bytes,
    extra: &[(&str, String)],
) -> Result<(http::StatusCode, Bytes), ApiError> {
    let limits = state.config.limits;
    let deadline = Instant::now() + limits.total;
    let mut exchange = tokio::select! {
        ex = state.upstream.open(provider, &limits, header, body, deadline) => ex?,
        _ = super::relay::client_gone(session) => {
            return Ok((http::StatusCode::from_u16(499).unwrap_or(http::StatusCode::BAD_REQUEST), Bytes::new()));
        }
    };
    let status = exchange
        .response_header()
        .map(|h| h.status)
        .unwrap_or(http::StatusCode::BAD_GATEWAY);
    let mut answer = bytes::BytesMut::new();
    loop {
        if exchange.response_done() {
            break;
        }
        match exchange.next_chunk(provider, limits.idle, deadline).await? {
            Some(chunk) => {
                if answer.len() + chunk.len() > limits.max_response_bytes {
                    return Err(ApiError::UpstreamBroken {
                        provider: provider.name.clone(),
                        detail: format!(
                            "the response exceeds limits.max_response_bytes ({} bytes)",
                            limits.max_response_bytes
                        ),
                    });
                }
                answer.extend_from_slice(&chunk);
            }
            None => break,
        }
    }
    let answer = match &provider.api_key {
        Some(key) => super::relay::redact(&answer, key.expose()),
        None => answer.freeze(),
    };
    if exchange.response_done() {
        state.upstream.release(exchange, &limits).await;
    }
    let mut headers = vec![(respond::DECISION_HEADER, ctx.decision_id.to_string())];
    headers.extend(extra.iter().cloned());
    respond::raw(
        session,
        status,
        answer.clone(),
        "application/json",
        &headers,
    )
    .await?;
    Ok((status, answer))
}
