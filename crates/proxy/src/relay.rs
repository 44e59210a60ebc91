//! Relay: the upstream's answer goes back to the client chunk by chunk as it arrives, never
//! buffered whole. SSE streams pass through [`super::sse::SseFilter`] (usage captured, the
//! usage-only chunk dropped unless asked for). A client that goes away closes the upstream
//! exchange; an upstream that stalls or breaks after the first byte ends the stream with an
//! error event (SSE) or a cut connection (anything else), since the status was already sent.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use dualrouter_wire as wire;

use super::forward::Exchange;
use super::respond::{DECISION_HEADER, MODEL_HEADER, ROUTE_HEADER};
use super::sse::SseFilter;
use super::{ProxyState, RequestCtx};
use crate::error::{ApiError, Format};
use dualrouter_core::config::{Model, Provider};

/// How much of a non-streamed response is kept to read its usage from.
const USAGE_SCAN_BYTES: usize = 1024 * 1024;

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus those the proxy sets.
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    DECISION_HEADER,
    MODEL_HEADER,
    ROUTE_HEADER,
];

pub(crate) struct Relay<'a> {
    pub model: &'a Model,
    /// The provider answering (the model's backend).
    pub provider: &'a Provider,
    pub exchange: Exchange,
    pub stream: bool,
    /// The client's wire format; the answer is translated when the upstream's differs.
    pub client_format: Format,
    /// The format the upstream answers in.
    pub upstream_format: Format,
    /// What the client's format needs of its request to present the answer.
    pub echo: wire::Echo,
    /// Where a Responses client's answer is stored (before its last bytes reach the client,
    /// so a follow-up naming it always finds it).
    pub sink: Option<&'a super::stored::Sink>,
    pub deadline: Instant,
    /// Time the proxy spent before the upstream call (parse, rewrite).
    pub overhead_so_far: Duration,
}

/// Resolves when the client has closed its connection (never while it stays open).
pub(crate) async fn client_gone(session: &mut Session) {
    loop {
        match session.downstream_session.read_body_or_idle(true).await {
            Err(_) => return,
            Ok(None) => return,
            Ok(Some(_)) => continue,
        }
    }
}

pub(crate) async fn relay(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    r: Relay<'_>,
) -> Result<http::StatusCode, ApiError> {
    let started = Instant::now();
    let Relay {
        model,
        provider,
        mut exchange,
        stream,
        client_format,
        upstream_format,
        echo,
        sink,
        deadline,
        overhead_so_far,
    } = r;
    let keep_answer = sink.is_some();
    let up = exchange
        .response_header()
        .ok_or_else(|| ApiError::UpstreamBroken {
            provider: provider.name.clone(),
            detail: "no response header".into(),
        })?
        .clone();
    let status = up.status;
    let is_sse = up
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let filter_sse = stream && is_sse && status.is_success();
    let cap = state.config.limits.max_response_bytes;
    let declared = up
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        // Nothing has reached the client yet: refuse it whole rather than cut it later.
        return Err(too_large(&provider.name, cap));
    }
    // A whole body in the other format (an answer, an error) is read whole and translated.
    let translate_whole = client_format != upstream_format && !filter_sse;
    // An error is read whole too, so that the provider's key is taken out of it: some
    // providers repeat the key they were given ("Incorrect API key provided: sk-…").
    let read_all = translate_whole || !status.is_success();
    let mut whole = None;
    if read_all {
        match read_whole(state, session, &mut exchange, provider, deadline).await? {
            Some(body) => {
                let body = match &provider.api_key {
                    Some(key) => redact(&body, key.expose()),
                    None => body,
                };
                whole = Some(if translate_whole {
                    translate_body(
                        upstream_format,
                        client_format,
                        status,
                        &body,
                        &provider.name,
                        &echo,
                    )?
                } else {
                    (body, None)
                })
            }
            None => {
                state.metrics.client_disconnects.inc();
                if let Some(rec) = ctx.record.as_mut() {
                    rec.status = "cancelled".into();
                }
                return Ok(status);
            }
        }
    }

    let mut resp = ResponseHeader::build(status, Some(up.headers.len() + 3)).map_err(|e| {
        ApiError::Internal(format!("building the response: {}", e.etype().as_str()))
    })?;
    for (name, value) in up.headers.iter() {
        let n = name.as_str();
        if NOT_FORWARDED.contains(&n)
            || ((filter_sse || read_all) && n == "content-length")
            || (translate_whole && (n == "content-type" || n == "content-encoding"))
        {
            continue;
        }
        resp.append_header(name.clone(), value.clone())
            .map_err(|e| {
                ApiError::Internal(format!("copying a response header: {}", e.etype().as_str()))
            })?;
    }
    let set = |resp: &mut ResponseHeader, k: &'static str, v: String| {
        resp.insert_header(k, v).map_err(|e| {
            ApiError::Internal(format!("setting a response header: {}", e.etype().as_str()))
        })
    };
    if let Some((body, _)) = &whole {
        if translate_whole {
            set(&mut resp, "content-type", "application/json".into())?;
        }
        set(&mut resp, "content-length", body.len().to_string())?;
    }
    let chunked = !resp.headers.contains_key(http::header::CONTENT_LENGTH);
    if chunked {
        set(&mut resp, "transfer-encoding", "chunked".into())?;
    }
    set(&mut resp, DECISION_HEADER, ctx.decision_id.to_string())?;
    set(&mut resp, MODEL_HEADER, model.id.clone())?;
    if let Some(route) = &ctx.route {
        set(&mut resp, ROUTE_HEADER, route.clone())?;
    }
    // A virtual key's own limits replace whatever the provider said of its account's.
    for (name, value) in &ctx.rate_headers {
        set(&mut resp, name, value.clone())?;
    }

    if session
        .write_response_header(Box::new(resp), false)
        .await
        .is_err()
    {
        state.metrics.client_disconnects.inc();
        return Ok(status);
    }
    state
        .metrics
        .overhead
        .observe((overhead_so_far + started.elapsed()).as_secs_f64());

    let mut filter = filter_sse.then(|| {
        let mut f = SseFilter::between(upstream_format, client_format, echo);
        f.keep_final = keep_answer;
        f
    });
    // A passed-through answer is scanned for its usage (and kept whole when it is to be
    // stored), within bounds.
    let scan_cap = if keep_answer { cap } else { USAGE_SCAN_BYTES };
    let mut scan = BytesMut::new();
    let mut sent: u64 = 0;
    let mut received: usize = 0;
    let mut whole_usage = None;
    // The answer as the client gets it, for the trace (`telemetry.capture_content`), bounded.
    let mut told: Option<BytesMut> = super::otel::captures(ctx).then(BytesMut::new);
    // The first bytes of a streamed answer to reach the client (time to first token).
    let mut first_event: Option<Instant> = None;
    let outcome = if let Some((body, answered)) = whole {
        sent = body.len() as u64;
        if let Some(usage) = answered {
            whole_usage = usage;
            if let (Some(sink), true) = (sink, status.is_success()) {
                if let Ok(answer) = serde_json::from_slice::<serde_json::Value>(&body) {
                    sink.save(&answer).await;
                }
            }
        }
        keep_told(&mut told, &body);
        if session.write_response_body(Some(body), true).await.is_err() {
            Outcome::ClientGone
        } else {
            Outcome::Complete
        }
    } else {
        loop {
            let next = tokio::select! {
                n = exchange.next_chunk(provider, state.config.limits.idle, deadline) => n,
                _ = client_gone(session) => break Outcome::ClientGone,
            };
            let (data, end) = match next {
                Ok(Some(chunk)) if received + chunk.len() > cap => {
                    break Outcome::UpstreamFailed(too_large(&provider.name, cap));
                }
                Ok(Some(chunk)) => {
                    received += chunk.len();
                    if filter.is_none() && status.is_success() && scan.len() < scan_cap {
                        scan.extend_from_slice(&chunk);
                    }
                    // The upstream's last chunk ends the client's response at once: a client that
                    // has its whole answer may send its next request on this connection, which must
                    // not be mistaken for a disconnect.
                    let end = exchange.response_done();
                    match filter.as_mut() {
                        Some(f) => {
                            let mut out = bytes::BytesMut::from(&f.push(&chunk)[..]);
                            if end {
                                out.extend_from_slice(&f.finish());
                            }
                            (out.freeze(), end)
                        }
                        None => {
                            if end && status.is_success() {
                                save_whole(sink, &scan).await;
                            }
                            (chunk, end)
                        }
                    }
                }
                Ok(None) => {
                    if filter.is_none() && status.is_success() {
                        save_whole(sink, &scan).await;
                    }
                    (
                        filter.as_mut().map(SseFilter::finish).unwrap_or_default(),
                        true,
                    )
                }
                Err(e) => break Outcome::UpstreamFailed(e),
            };
            // A stream's closing event waits until its answer is stored.
            if let (Some(sink), Some(f)) = (sink, filter.as_mut()) {
                if let Some(answer) = f.final_response.take() {
                    sink.save(&answer).await;
                }
            }
            if filter_sse && first_event.is_none() && !data.is_empty() {
                let now = Instant::now();
                first_event = Some(now);
                let ttft = now.duration_since(ctx.started).as_secs_f64();
                state
                    .metrics
                    .time_to_first_token
                    .with_label_values(&[&model.id])
                    .observe(ttft);
                if let Some(rec) = ctx.record.as_mut() {
                    rec.latencies_ms.insert("first_token".into(), ttft * 1e3);
                }
            }
            sent += data.len() as u64;
            keep_told(&mut told, &data);
            if session.write_response_body(Some(data), end).await.is_err() {
                break Outcome::ClientGone;
            }
            if end {
                break Outcome::Complete;
            }
        }
    };
    state.metrics.bytes_out.inc_by(sent);

    let usage = match &filter {
        Some(f) => f.usage,
        None if whole_usage.is_some() => whole_usage,
        None => wire::usage_of_answer(upstream_format, &scan),
    };
    if let Some(rec) = ctx.record.as_mut() {
        if let Some(u) = &usage {
            rec.served_by(model, Some(u));
        }
        rec.latencies_ms
            .insert("stream".into(), started.elapsed().as_secs_f64() * 1e3);
        match &outcome {
            Outcome::Complete => {}
            Outcome::ClientGone => rec.status = "cancelled".into(),
            Outcome::UpstreamFailed(e) => {
                rec.status = "error".into();
                rec.error_kind = Some(e.kind().to_string());
            }
        }
    }
    if let (Some(first), Outcome::Complete) = (first_event, &outcome) {
        state
            .metrics
            .stream_duration
            .with_label_values(&[&model.id])
            .observe(first.elapsed().as_secs_f64());
    }
    if let (Some(told), Outcome::Complete, true) = (&told, &outcome, status.is_success()) {
        super::otel::answer(ctx, client_format, filter_sse, told);
    }
    match outcome {
        Outcome::Complete => {
            if exchange.response_done() {
                state.upstream.release(exchange, &state.config.limits).await;
            }
        }
        Outcome::ClientGone => {
            state.metrics.client_disconnects.inc();
            session.set_keepalive(None);
            tracing::info!(decision_id = %ctx.decision_id, model = %model.id, "client went away; upstream request closed");
            // Dropping `exchange` closes the upstream connection: the provider stops generating.
        }
        Outcome::UpstreamFailed(e) => {
            state.metrics.errors.with_label_values(&[e.kind()]).inc();
            tracing::warn!(decision_id = %ctx.decision_id, model = %model.id, "after the first byte: {e}");
            if let Some(f) = filter.as_mut() {
                let event = f.error_event(&e.to_string(), e.kind());
                let _ = session.write_response_body(Some(event), true).await;
            } else {
                ctx.abort_downstream = true;
            }
            session.set_keepalive(None);
        }
    }
    Ok(status)
}

/// Keeps what went to the client for the trace, up to `otel::ANSWER_CAPTURE_BYTES` (past it,
/// nothing: a cut answer is not put on the span).
fn keep_told(told: &mut Option<BytesMut>, data: &[u8]) {
    if let Some(t) = told {
        if t.len() + data.len() > super::otel::ANSWER_CAPTURE_BYTES {
            *told = None;
        } else {
            t.extend_from_slice(data);
        }
    }
}

/// Stores a passed-through whole answer (its bytes, scanned as they went by).
async fn save_whole(sink: Option<&super::stored::Sink>, scan: &[u8]) {
    if let Some(sink) = sink {
        if let Ok(answer) = serde_json::from_slice::<serde_json::Value>(scan) {
            sink.save(&answer).await;
        }
    }
}

/// An upstream answer over `limits.max_response_bytes`.
fn too_large(provider: &str, cap: usize) -> ApiError {
    ApiError::UpstreamBroken {
        provider: provider.to_string(),
        detail: format!("the response exceeds limits.max_response_bytes ({cap} bytes)"),
    }
}

/// Reads a whole upstream body (bounded by `max_response_bytes`); `None` if the client went
/// away.
async fn read_whole(
    state: &ProxyState,
    session: &mut Session,
    exchange: &mut Exchange,
    provider: &Provider,
    deadline: Instant,
) -> Result<Option<bytes::Bytes>, ApiError> {
    let cap = state.config.limits.max_response_bytes;
    let mut buf = BytesMut::new();
    loop {
        if exchange.response_done() {
            return Ok(Some(buf.freeze()));
        }
        let next = tokio::select! {
            n = exchange.next_chunk(provider, state.config.limits.idle, deadline) => n?,
            _ = client_gone(session) => return Ok(None),
        };
        match next {
            Some(chunk) => {
                if buf.len() + chunk.len() > cap {
                    return Err(too_large(&provider.name, cap));
                }
                buf.extend_from_slice(&chunk);
            }
            None => return Ok(Some(buf.freeze())),
        }
    }
}

/// `body` with every occurrence of `secret` replaced by `[redacted]`.
pub(crate) fn redact(body: &[u8], secret: &str) -> bytes::Bytes {
    let needle = secret.as_bytes();
    if needle.is_empty() || body.len() < needle.len() {
        return bytes::Bytes::copy_from_slice(body);
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(needle) {
            out.extend_from_slice(b"[redacted]");
            i += needle.len();
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    bytes::Bytes::from(out)
}

/// Translates a whole upstream body into the client's format: a success answer, or an error
/// with its status kept. Returns the body and, for a success, the answer's usage (if the
/// upstream stated it).
fn translate_body(
    upstream: Format,
    client: Format,
    status: http::StatusCode,
    body: &[u8],
    provider: &str,
    echo: &wire::Echo,
) -> Result<(bytes::Bytes, Option<Option<wire::Usage>>), ApiError> {
    let broken = |detail: String| ApiError::UpstreamBroken {
        provider: provider.to_string(),
        detail,
    };
    if status.is_success() {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| broken("the response is not JSON".into()))?;
        let answer = wire::decode_response(upstream, &v)
            .map_err(|e| broken(format!("the response cannot be read: {e}")))?;
        let out = wire::encode_response(client, &answer, echo);
        Ok((bytes::Bytes::from(out), Some(answer.usage)))
    } else {
        let out = wire::translate_error(upstream, client, status.as_u16(), body);
        Ok((bytes::Bytes::from(out.to_string()), None))
    }
}

enum Outcome {
    Complete,
    ClientGone,
    UpstreamFailed(ApiError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_takes_every_copy_of_the_key_out() {
        let key = "sk-secret-123";
        let body =
            br#"{"error":{"message":"Incorrect API key provided: sk-secret-123 (sk-secret-123)"}}"#;
        let out = redact(body, key);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(!text.contains(key), "{text}");
        assert_eq!(text.matches("[redacted]").count(), 2);
        assert_eq!(&redact(b"nothing here", key)[..], b"nothing here");
        assert_eq!(&redact(b"sk-secret-12", key)[..], b"sk-secret-12");
        assert_eq!(&redact(b"x", "")[..], b"x");
    }
}
