//! Answers from executor plugins (`docs/plugins.md`): when a model of the fallback chain belongs
//! to an executor plugin, the request goes to the plugin's `invoke` (on the blocking pool,
//! under the plugin's own `timeout_ms` and the request's total deadline), and its text comes
//! back in the client's format: OpenAI JSON, OpenAI SSE when the client streams, or Anthropic
//! (JSON or SSE) through the same translations an HTTP answer takes.
//!
//! Nothing reaches the client before the plugin has answered whole, so every failure of the
//! plugin (an error it reports, a trap, its deadline, its memory limit, garbage) lets the next
//! candidate answer.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use serde_json::Value;

use super::ingress::ChatRequest;
use super::relay::client_gone;
use super::respond::{DECISION_HEADER, MODEL_HEADER, ROUTE_HEADER};
use super::sse::SseFilter;
use super::{ProxyState, RequestCtx};
use crate::error::{ApiError, Format, TimeoutPhase};
use dualrouter_core::config::Model;
use dualrouter_core::conversation::Conversation;
use dualrouter_plugins::{openai, InvokeRequest, InvokeResponse, PluginError};

/// What one attempt on an executor plugin came to.
pub(crate) enum Attempt {
    /// The answer went to the client with this status.
    Answered(http::StatusCode),
    /// The plugin did not answer; the next candidate may.
    Failed(ApiError),
    /// The client went away while the plugin worked.
    ClientGone,
}

impl Attempt {
    /// The attempt's outcome label (decision record, `dualrouter_upstream_attempts_total`).
    pub(crate) fn outcome(err: &ApiError) -> &'static str {
        match err {
            ApiError::UpstreamTimeout { .. } => "timeout",
            _ => "executor",
        }
    }
}

/// The request for the plugin: the conversation as OpenAI-shaped turns (an Anthropic request is
/// translated first, so its system prompt and content blocks arrive as text).
fn invoke_request(request: &ChatRequest, model: &Model) -> Result<InvokeRequest, ApiError> {
    let target = dualrouter_wire::Target {
        format: Format::Chat,
        model: &model.upstream_id,
        caps: model.caps,
    };
    let (body, _) = request.body_for(&target)?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Internal(format!("re-reading the translated request: {e}")))?;
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    Ok(InvokeRequest {
        model: model.upstream_id.clone(),
        messages: Conversation::from_openai_messages(messages).turns,
        max_tokens: request
            .max_output_tokens()
            .map(|t| t.min(u64::from(u32::MAX)) as u32),
        temperature: v
            .get("temperature")
            .and_then(Value::as_f64)
            .map(|t| t as f32),
    })
}

/// The proxy's error for a plugin failure: its deadline is a timeout, the rest a failed
/// executor. The detail names the plugin and the failure's kind; it is cut short.
pub(crate) fn api_error(e: &PluginError, plugin: &str) -> ApiError {
    match e {
        PluginError::Timeout { .. } => ApiError::UpstreamTimeout {
            provider: plugin.to_string(),
            phase: TimeoutPhase::Total,
        },
        other => ApiError::ExecutorFailed {
            plugin: plugin.to_string(),
            detail: dualrouter_plugins::host::truncate(&other.to_string(), 300),
        },
    }
}

/// What one executor attempt is for.
pub(crate) struct Call<'a> {
    pub model: &'a Model,
    pub plugin: &'a str,
    pub request: &'a ChatRequest,
    pub deadline: Instant,
    /// Where a Responses client's answer is stored.
    pub sink: Option<&'a super::stored::Sink>,
}

/// One attempt: `invoke`, then the answer written in the client's format. `Err` only for what
/// no other candidate could change (the request cannot be expressed for a plugin, or writing
/// the answer failed).
pub(crate) async fn attempt(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    call: Call<'_>,
) -> Result<Attempt, ApiError> {
    let Call {
        model,
        plugin,
        request,
        deadline,
        sink,
    } = call;
    let Some(host) = state.router.registry().plugins().cloned() else {
        return Ok(Attempt::Failed(ApiError::ExecutorFailed {
            plugin: plugin.to_string(),
            detail: "no plugin of that name is loaded".into(),
        }));
    };
    let invoke = invoke_request(request, model)?;
    let call = host.invoke(plugin, invoke);
    let answered = tokio::select! {
        r = tokio::time::timeout_at(deadline.into(), call) => r,
        _ = client_gone(session) => return Ok(Attempt::ClientGone),
    };
    let resp = match answered {
        Err(_) => {
            return Ok(Attempt::Failed(ApiError::UpstreamTimeout {
                provider: plugin.to_string(),
                phase: TimeoutPhase::Total,
            }))
        }
        Ok(Err(e)) => return Ok(Attempt::Failed(api_error(&e, plugin))),
        Ok(Ok(r)) => r,
    };
    let status = write_answer(state, session, ctx, model, request, &resp, sink).await?;
    Ok(Attempt::Answered(status))
}

/// The answer's body and content type in the client's format: the plugin's answer as a
/// chat completion (or its stream), translated like any chat upstream's answer for a client of
/// another format.
pub(crate) fn render(
    format: Format,
    stream: bool,
    echo: dualrouter_wire::Echo,
    id: &str,
    model: &str,
    resp: &InvokeResponse,
) -> (&'static str, Bytes) {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match (format, stream) {
        (Format::Chat, false) => (
            "application/json",
            Bytes::from(openai::chat_completion_json(id, model, created, resp).to_string()),
        ),
        (Format::Chat, true) => (
            "text/event-stream",
            Bytes::from(
                openai::chat_completion_sse(id, model, created, resp, echo.include_usage).concat(),
            ),
        ),
        (other, false) => {
            let v = openai::chat_completion_json(id, model, created, resp);
            let out = match dualrouter_wire::decode_response(Format::Chat, &v) {
                Ok(answer) => dualrouter_wire::encode_response(other, &answer, &echo),
                Err(_) => v.to_string(),
            };
            ("application/json", Bytes::from(out))
        }
        (other, true) => {
            let events = openai::chat_completion_sse(id, model, created, resp, true).concat();
            let mut f = SseFilter::between(Format::Chat, other, echo);
            let mut out = BytesMut::from(&f.push(events.as_bytes())[..]);
            out.extend_from_slice(&f.finish());
            ("text/event-stream", out.freeze())
        }
    }
}

async fn write_answer(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    model: &Model,
    request: &ChatRequest,
    resp: &InvokeResponse,
    sink: Option<&super::stored::Sink>,
) -> Result<http::StatusCode, ApiError> {
    let id = format!("chatcmpl-{}", ctx.decision_id.simple());
    let echo = super::echo_for(
        ctx,
        request,
        Format::Chat,
        dualrouter_wire::EchoFields::from_obj(&request.body),
    );
    let (content_type, body) = render(ctx.format, request.stream, echo, &id, &model.id, resp);
    if let (Some(sink), Format::Responses) = (sink, ctx.format) {
        // The whole answer, or its stream's last event, is the response object to store.
        let answer = if request.stream {
            body.split(|&b| b == b'\n')
                .filter_map(|l| l.strip_prefix(b"data: "))
                .find_map(dualrouter_wire::final_response)
        } else {
            serde_json::from_slice(&body).ok()
        };
        if let Some(a) = answer {
            sink.save(&a).await;
        }
    }
    let status = http::StatusCode::OK;
    let header = || -> pingora::Result<ResponseHeader> {
        let mut h = ResponseHeader::build(status, Some(6))?;
        h.insert_header(http::header::CONTENT_TYPE, content_type)?;
        h.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        if request.stream {
            h.insert_header(http::header::CACHE_CONTROL, "no-cache")?;
        }
        h.insert_header(DECISION_HEADER, ctx.decision_id.to_string())?;
        h.insert_header(MODEL_HEADER, model.id.as_str())?;
        if let Some(route) = &ctx.route {
            h.insert_header(ROUTE_HEADER, route.as_str())?;
        }
        for (name, value) in &ctx.rate_headers {
            h.insert_header(*name, value.as_str())?;
        }
        Ok(h)
    };
    let h = header().map_err(|e| {
        ApiError::Internal(format!("building the response: {}", e.etype().as_str()))
    })?;
    let usage = dualrouter_wire::Usage {
        input: u64::from(resp.usage.input_tokens),
        output: u64::from(resp.usage.output_tokens),
        ..Default::default()
    };
    if let Some(rec) = ctx.record.as_mut() {
        rec.served_by(model, Some(&usage));
    }
    let sent = body.len() as u64;
    let written = async {
        session.write_response_header(Box::new(h), false).await?;
        session.write_response_body(Some(body), true).await
    }
    .await;
    if written.is_err() {
        state.metrics.client_disconnects.inc();
        if let Some(rec) = ctx.record.as_mut() {
            rec.status = "cancelled".into();
        }
        return Ok(status);
    }
    state.metrics.bytes_out.inc_by(sent);
    Ok(status)
}
