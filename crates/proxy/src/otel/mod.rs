//! OpenTelemetry traces: a light recorder per request, exported by a thread of its own.
//!
//! The request path only notes ids, instants and a few attributes in its [`RequestTrace`]
//! (nothing when traces are off); when the request is answered, its spans go to a bounded
//! queue in one piece, or are dropped and counted when the queue is full. The exporter
//! thread ([`export`]) turns them into OTLP protobuf messages and sends them over gRPC or
//! HTTP. Nothing here waits on the collector.
//!
//! The span tree of a chat request (`SERVER` root, its children):
//! `ingress`, `encode`, `classify`, `score` (routed requests), one span per upstream attempt
//! (`CLIENT`, with its outcome) or executor call, and `stream` (the answer relayed to the
//! client). A client's W3C `traceparent` (and `tracestate`) is the root's parent, and each
//! upstream attempt is sent a `traceparent` naming its own attempt span.

mod export;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dualrouter_core::config::raw::ProviderKind;
use dualrouter_core::config::telemetry::Telemetry;
use dualrouter_core::config::validated::Backend;
use dualrouter_core::config::Model;
use dualrouter_core::metrics::Metrics;
use dualrouter_store::DecisionRecord;

use crate::{ChatRequest, RequestCtx};

/// The process's tracer, once [`start`] ran; `None`: traces are off.
static TRACER: OnceLock<Tracer> = OnceLock::new();

struct Tracer {
    /// Traces without a sampled parent are recorded when the low 64 bits of their id are
    /// below this (`u64::MAX` for ratio 1.0, 0 for 0.0).
    threshold: u64,
    always: bool,
    parent_based: bool,
    capture_content: bool,
    queue: tokio::sync::mpsc::UnboundedSender<TraceBatch>,
    /// Spans queued and not yet taken by the exporter (the queue's bound is in spans).
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    dropped: prometheus::IntCounter,
    dropped_by_result: prometheus::IntCounter,
}

/// Starts the exporter thread and turns traces on for every request from now on. Called once
/// by `serve`; a second call changes nothing.
pub fn start(cfg: &Telemetry, metrics: &Metrics) -> std::io::Result<()> {
    if TRACER.get().is_some() {
        return Ok(());
    }
    // Every result's series exists from the start (0), so a dashboard sees them at once.
    for result in ["exported", "dropped", "failed"] {
        metrics.trace_spans.with_label_values(&[result]);
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    export::spawn(cfg.clone(), rx, queued.clone(), metrics.trace_spans.clone())?;
    let threshold = if cfg.sample_ratio >= 1.0 {
        u64::MAX
    } else {
        (cfg.sample_ratio.max(0.0) * u64::MAX as f64) as u64
    };
    let _ = TRACER.set(Tracer {
        threshold,
        always: cfg.sample_ratio >= 1.0,
        parent_based: cfg.parent_based,
        capture_content: cfg.capture_content,
        queue: tx,
        queued,
        max_queued: cfg.queue_spans,
        dropped: metrics.trace_spans_dropped.clone(),
        dropped_by_result: metrics.trace_spans.with_label_values(&["dropped"]),
    });
    tracing::info!(
        endpoint = %cfg.endpoint,
        protocol = cfg.protocol.as_str(),
        sample_ratio = cfg.sample_ratio,
        "OpenTelemetry traces on"
    );
    Ok(())
}

/// An attribute value.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    S(String),
    I(i64),
    F(f64),
    B(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Internal,
    Server,
    Client,
}

/// One finished span, as recorded (encoded to OTLP by the exporter).
#[derive(Debug)]
pub(crate) struct SpanRec {
    pub id: [u8; 8],
    /// `None`: the request's root (whose parent is the remote one, if any).
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: Kind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attrs: Vec<(&'static str, Val)>,
    /// `Some(kind)`: the span's status is ERROR, described by this low-cardinality kind.
    pub error: Option<String>,
}

/// The spans of one request, as they go to the exporter.
#[derive(Debug)]
pub(crate) struct TraceBatch {
    pub trace_id: [u8; 16],
    pub remote_parent: Option<[u8; 8]>,
    pub tracestate: Option<String>,
    pub spans: Vec<SpanRec>,
}

/// What one request records while it runs (in `RequestCtx::trace`).
pub(crate) struct RequestTrace {
    trace_id: [u8; 16],
    root: [u8; 8],
    remote_parent: Option<[u8; 8]>,
    tracestate: Option<String>,
    sampled: bool,
    /// `ctx.started` and the wall clock at that instant (ns since the epoch).
    t0: Instant,
    wall0: u64,
    ingress_end: Option<Instant>,
    spans: Vec<SpanRec>,
    request_attrs: Vec<(&'static str, Val)>,
    /// The span id sent upstream in `traceparent`, for the attempt being made.
    pending_attempt: Option<[u8; 8]>,
    /// Where the last attempt ended (the relay starts there).
    last_attempt_end: Option<Instant>,
    provider_system: Option<&'static str>,
}

impl RequestTrace {
    /// The trace id as 32 lower-case hex digits (the access log's `trace_id`).
    pub(crate) fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    fn ns(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.t0);
        self.wall0
            .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    fn child(
        &mut self,
        name: impl Into<String>,
        kind: Kind,
        from: Instant,
        to: Instant,
        attrs: Vec<(&'static str, Val)>,
    ) -> &mut SpanRec {
        let span = SpanRec {
            id: span_id(),
            parent: Some(self.root),
            name: name.into(),
            kind,
            start_ns: self.ns(from),
            end_ns: self.ns(to.max(from)),
            attrs,
            error: None,
        };
        self.spans.push(span);
        let last = self.spans.len() - 1;
        &mut self.spans[last]
    }
}

/// The request's trace when traces are on: its context from the client's `traceparent` (or a
/// new trace), and whether it is recorded.
pub(crate) fn begin(started: Instant, headers: &http::HeaderMap) -> Option<Box<RequestTrace>> {
    let tracer = TRACER.get()?;
    let parent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent);
    let (trace_id, remote_parent, parent_sampled) = match parent {
        Some((t, s, sampled)) => (t, Some(s), Some(sampled)),
        None => (trace_id(), None, None),
    };
    let sampled = match parent_sampled {
        Some(s) if tracer.parent_based => s,
        _ => {
            tracer.always
                || u64::from_be_bytes(trace_id[8..16].try_into().unwrap_or_default())
                    < tracer.threshold
        }
    };
    let tracestate = remote_parent
        .and_then(|_| headers.get("tracestate"))
        .and_then(|v| v.to_str().ok())
        .filter(|s| s.len() <= 512)
        .map(str::to_string);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let wall0 = now.saturating_sub(u64::try_from(started.elapsed().as_nanos()).unwrap_or(0));
    Some(Box::new(RequestTrace {
        trace_id,
        root: span_id(),
        remote_parent,
        tracestate,
        sampled,
        t0: started,
        wall0,
        ingress_end: None,
        spans: Vec::new(),
        request_attrs: Vec::new(),
        pending_attempt: None,
        last_attempt_end: None,
        provider_system: None,
    }))
}

/// The chat request is read and parsed (the end of `ingress`): what it asks of the model.
pub(crate) fn request(ctx: &mut RequestCtx, request: &ChatRequest) {
    let Some(t) = ctx.trace.as_deref_mut().filter(|t| t.sampled) else {
        return;
    };
    t.ingress_end = Some(Instant::now());
    let mut attrs = vec![
        ("gen_ai.operation.name", Val::S("chat".into())),
        ("gen_ai.request.model", Val::S(request.model.clone())),
        ("dualrouter.stream", Val::B(request.stream)),
    ];
    if let Some(n) = request.max_output_tokens() {
        attrs.push(("gen_ai.request.max_tokens", Val::I(clamp_i64(n))));
    }
    for (field, name) in [
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
    ] {
        if let Some(v) = request.body.get(field).and_then(serde_json::Value::as_f64) {
            attrs.push((name, Val::F(v)));
        }
    }
    let capture = TRACER.get().is_some_and(|tr| tr.capture_content);
    if capture {
        let turns: Vec<_> = request
            .conversation()
            .turns
            .iter()
            .map(|turn| {
                serde_json::json!({
                    "role": turn.role,
                    "parts": [{"type": "text", "content": turn.text}],
                })
            })
            .collect();
        attrs.push((
            "gen_ai.input.messages",
            Val::S(serde_json::Value::Array(turns).to_string()),
        ));
    }
    t.request_attrs = attrs;
}

/// Most bytes of an answer kept for `gen_ai.output.messages` (`capture_content`); a longer
/// answer is not put on the span.
pub(crate) const ANSWER_CAPTURE_BYTES: usize = 256 * 1024;

/// Whether this request's span takes the answer's text (`capture_content`, and sampled).
pub(crate) fn captures(ctx: &RequestCtx) -> bool {
    ctx.trace.as_deref().is_some_and(|t| t.sampled)
        && TRACER.get().is_some_and(|tr| tr.capture_content)
}

/// The answer as the client got it (its bytes in its own format, whole or as SSE events) goes
/// on the request span as `gen_ai.output.messages`: the text, and the tool calls by name.
pub(crate) fn answer(
    ctx: &mut RequestCtx,
    format: dualrouter_wire::Format,
    sse: bool,
    bytes: &[u8],
) {
    use dualrouter_wire as wire;
    let Some(t) = ctx.trace.as_deref_mut().filter(|t| t.sampled) else {
        return;
    };
    let response = if sse {
        let text = String::from_utf8_lossy(bytes).replace("\r\n", "\n");
        let mut decoder = wire::Decoder::new(format);
        let mut collector = wire::Collector::default();
        let mut events = Vec::new();
        for event in text.split("\n\n") {
            if let Some(data) = crate::sse::event_data(event.as_bytes()) {
                events.clear();
                decoder.event(&data, &mut events);
                for e in &events {
                    collector.event(e);
                }
            }
        }
        collector.response
    } else {
        match serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| wire::decode_response(format, &v).ok())
        {
            Some(r) => r,
            None => return,
        }
    };
    let mut parts = vec![serde_json::json!({"type": "text", "content": response.text()})];
    for item in &response.output {
        if let wire::ir::Item::ToolCall {
            name, arguments, ..
        } = item
        {
            parts.push(
                serde_json::json!({"type": "tool_call", "name": name, "arguments": arguments}),
            );
        }
    }
    let messages = serde_json::json!([{"role": "assistant", "parts": parts}]);
    t.request_attrs
        .push(("gen_ai.output.messages", Val::S(messages.to_string())));
}

/// Routing is done: `encode`, `classify` and `score` as children, one after the other from
/// `started` (their durations are the decision's own step latencies).
pub(crate) fn routed(
    ctx: &mut RequestCtx,
    started: Instant,
    decision: &dualrouter_routing::RoutingDecision,
) {
    let Some(t) = ctx.trace.as_deref_mut().filter(|t| t.sampled) else {
        return;
    };
    let mut at = started;
    for step in ["embed", "classify", "score"] {
        let ms = decision.latencies_ms.get(step).copied().unwrap_or(0.0);
        let to = at + std::time::Duration::from_secs_f64((ms / 1e3).max(0.0));
        let attrs = match step {
            "embed" => vec![],
            "classify" => vec![
                ("dualrouter.route", Val::S(decision.route.name())),
                (
                    "dualrouter.source",
                    Val::S(decision.route.source.as_str().to_string()),
                ),
                (
                    "dualrouter.confidence",
                    Val::F(f64::from(decision.route.confidence)),
                ),
            ],
            _ => vec![
                (
                    "dualrouter.candidates",
                    Val::I(clamp_i64(decision.candidates.len() as u64)),
                ),
                (
                    "dualrouter.selected_model",
                    Val::S(decision.selected_model.clone()),
                ),
                ("dualrouter.policy", Val::S(decision.policy.clone())),
            ],
        };
        let name = if step == "embed" { "encode" } else { step };
        t.child(name, Kind::Internal, at, to, attrs);
        at = to;
    }
}

/// The headers an upstream attempt is sent: `traceparent` naming a new span (the attempt's),
/// and the client's `tracestate`. An unrecorded request passes its context on unchanged.
pub(crate) fn propagate(
    ctx: &mut RequestCtx,
    headers: &mut Vec<(http::HeaderName, http::HeaderValue)>,
) {
    let Some(t) = ctx.trace.as_deref_mut() else {
        return;
    };
    let (span, flags) = if t.sampled {
        let id = span_id();
        t.pending_attempt = Some(id);
        (id, "01")
    } else {
        match t.remote_parent {
            Some(p) => (p, "00"),
            None => return,
        }
    };
    let value = format!(
        "00-{}-{}-{flags}",
        hex::encode(t.trace_id),
        hex::encode(span)
    );
    if let Ok(v) = http::HeaderValue::from_str(&value) {
        headers.push((http::HeaderName::from_static("traceparent"), v));
    }
    if let Some(v) = t
        .tracestate
        .as_deref()
        .and_then(|s| http::HeaderValue::from_str(s).ok())
    {
        headers.push((http::HeaderName::from_static("tracestate"), v));
    }
}

/// One upstream attempt (or executor call) ended with `outcome` (`ok`, `5xx`, `connect`, …).
pub(crate) fn attempt(
    ctx: &mut RequestCtx,
    model: &Model,
    outcome: &str,
    status: Option<u16>,
    since: Instant,
) {
    let Some(t) = ctx.trace.as_deref_mut().filter(|t| t.sampled) else {
        return;
    };
    let now = Instant::now();
    let id = t.pending_attempt.take().unwrap_or_else(span_id);
    let (kind, name, system) = match &model.backend {
        Backend::Provider(p) => {
            let system = match p.kind {
                ProviderKind::Openai => "openai",
                ProviderKind::Anthropic => "anthropic",
            };
            (Kind::Client, format!("chat {}", model.upstream_id), system)
        }
        Backend::Plugin(_) => (
            Kind::Internal,
            format!("executor {}", model.id),
            "dualrouter.executor",
        ),
    };
    let mut attrs = vec![
        ("gen_ai.operation.name", Val::S("chat".into())),
        ("gen_ai.provider.name", Val::S(system.into())),
        ("gen_ai.system", Val::S(system.into())),
        ("gen_ai.request.model", Val::S(model.upstream_id.clone())),
        ("dualrouter.model", Val::S(model.id.clone())),
        ("dualrouter.provider", Val::S(model.owner().to_string())),
        ("dualrouter.attempt.outcome", Val::S(outcome.to_string())),
    ];
    if let Some(s) = status {
        attrs.push(("http.response.status_code", Val::I(i64::from(s))));
    }
    t.provider_system = Some(system);
    t.last_attempt_end = Some(now);
    let span = SpanRec {
        id,
        parent: Some(t.root),
        name,
        kind,
        start_ns: t.ns(since),
        end_ns: t.ns(now),
        attrs,
        error: (outcome != "ok").then(|| outcome.to_string()),
    };
    t.spans.push(span);
}

/// The request is answered: the root span, `ingress` and `stream`, then everything to the
/// queue (or dropped, and counted, when the queue is full).
pub(crate) fn finish(
    ctx: &mut RequestCtx,
    method: &http::Method,
    path: &str,
    status: http::StatusCode,
    rec: Option<&DecisionRecord>,
) {
    let Some(mut t) = ctx.trace.take().filter(|t| t.sampled) else {
        return;
    };
    let Some(tracer) = TRACER.get() else {
        return;
    };
    let end = Instant::now();
    let t0 = t.t0;
    t.child(
        "ingress",
        Kind::Internal,
        t0,
        t.ingress_end.unwrap_or(end),
        vec![],
    );
    if let Some(rec) = rec {
        if let Some(ms) = rec.latencies_ms.get("stream") {
            let from = t.last_attempt_end.unwrap_or(end);
            let to = from + std::time::Duration::from_secs_f64((ms / 1e3).max(0.0));
            let mut attrs = vec![("dualrouter.stream.duration_ms", Val::F(*ms))];
            if let Some(ttft) = rec.latencies_ms.get("first_token") {
                attrs.push(("gen_ai.server.time_to_first_token", Val::F(ttft / 1e3)));
                attrs.push(("dualrouter.time_to_first_token_ms", Val::F(*ttft)));
            }
            t.child("stream", Kind::Internal, from, to.min(end).max(from), attrs);
        }
    }
    let mut attrs = std::mem::take(&mut t.request_attrs);
    attrs.push(("http.request.method", Val::S(method.as_str().to_string())));
    attrs.push(("url.path", Val::S(path.to_string())));
    attrs.push((
        "http.response.status_code",
        Val::I(i64::from(status.as_u16())),
    ));
    attrs.push((
        "dualrouter.decision_id",
        Val::S(ctx.decision_id.to_string()),
    ));
    if let Some(k) = &ctx.key_id {
        attrs.push(("dualrouter.key_id", Val::S(k.clone())));
    }
    if let Some(s) = t.provider_system {
        attrs.push(("gen_ai.provider.name", Val::S(s.into())));
        attrs.push(("gen_ai.system", Val::S(s.into())));
    }
    if let Some(r) = &ctx.route {
        attrs.push(("dualrouter.route", Val::S(r.clone())));
    }
    if let Some(rec) = rec {
        let s = |k: &'static str, v: &Option<String>, attrs: &mut Vec<_>| {
            if let Some(v) = v {
                attrs.push((k, Val::S(v.clone())));
            }
        };
        s("gen_ai.response.model", &rec.selected_model, &mut attrs);
        s("dualrouter.provider", &rec.provider, &mut attrs);
        s("dualrouter.source", &rec.route_source, &mut attrs);
        s("dualrouter.outcome", &Some(rec.status.clone()), &mut attrs);
        if let Some(c) = rec.route_confidence {
            attrs.push(("dualrouter.confidence", Val::F(c)));
        }
        if let Some(n) = rec.input_tokens {
            attrs.push(("gen_ai.usage.input_tokens", Val::I(clamp_i64(n))));
        }
        if let Some(n) = rec.output_tokens {
            attrs.push(("gen_ai.usage.output_tokens", Val::I(clamp_i64(n))));
        }
        if let Some(n) = rec.cache_read_tokens {
            attrs.push(("gen_ai.usage.cache_read.input_tokens", Val::I(clamp_i64(n))));
        }
        if let Some(c) = rec.cost_usd {
            attrs.push(("dualrouter.cost_usd", Val::F(c)));
        }
        attrs.push((
            "dualrouter.attempts",
            Val::I(clamp_i64(rec.details.attempts.len() as u64)),
        ));
    }
    if let Some(kind) = ctx.error_kind {
        attrs.push(("error.type", Val::S(kind.to_string())));
    }
    let name = match rec.and_then(|r| r.requested_model.as_deref()) {
        Some(m) => format!("chat {m}"),
        None => format!("{method} {path}"),
    };
    let root = SpanRec {
        id: t.root,
        parent: None,
        name,
        kind: Kind::Server,
        start_ns: t.wall0,
        end_ns: t.ns(end),
        attrs,
        error: status
            .is_server_error()
            .then(|| ctx.error_kind.unwrap_or("http_5xx").to_string()),
    };
    t.spans.push(root);
    let n = t.spans.len();
    let batch = TraceBatch {
        trace_id: t.trace_id,
        remote_parent: t.remote_parent,
        tracestate: t.tracestate.take(),
        spans: std::mem::take(&mut t.spans),
    };
    enqueue(tracer, batch, n);
}

fn enqueue(tracer: &Tracer, batch: TraceBatch, n: usize) {
    let before = tracer.queued.fetch_add(n, Ordering::AcqRel);
    if before + n > tracer.max_queued || tracer.queue.send(batch).is_err() {
        tracer.queued.fetch_sub(n, Ordering::AcqRel);
        tracer.dropped.inc_by(n as u64);
        tracer.dropped_by_result.inc_by(n as u64);
    }
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>` (a later version: its first four
/// fields); all-zero ids and version `ff` are invalid.
fn parse_traceparent(v: &str) -> Option<([u8; 16], [u8; 8], bool)> {
    let v = v.trim();
    let mut parts = v.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2
        || version.eq_ignore_ascii_case("ff")
        || (version == "00" && parts.next().is_some())
    {
        return None;
    }
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower_hex(version) || !lower_hex(trace) || !lower_hex(span) || !lower_hex(flags) {
        return None;
    }
    let mut t = [0u8; 16];
    let mut s = [0u8; 8];
    hex::decode_to_slice(trace, &mut t).ok()?;
    hex::decode_to_slice(span, &mut s).ok()?;
    let mut f = [0u8; 1];
    hex::decode_to_slice(flags, &mut f).ok()?;
    if t == [0; 16] || s == [0; 8] {
        return None;
    }
    Some((t, s, f[0] & 1 == 1))
}

thread_local! {
    static RNG: std::cell::Cell<u64> = std::cell::Cell::new(seed());
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish() | 1
}

/// splitmix64 on a per-thread state seeded from the OS's hash randomness: ids need to be
/// unique, not secret.
fn next_u64() -> u64 {
    RNG.with(|c| {
        let s = c.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        c.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

fn span_id() -> [u8; 8] {
    loop {
        let v = next_u64();
        if v != 0 {
            return v.to_be_bytes();
        }
    }
}

fn trace_id() -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&next_u64().to_be_bytes());
    out[8..].copy_from_slice(&next_u64().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parsing() {
        let (t, s, sampled) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex::encode(t), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(s), "00f067aa0ba902b7");
        assert!(sampled);
        assert!(
            !parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .unwrap()
                .2
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "garbage",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        // A later version may add fields.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
    }

    #[test]
    fn ids_are_nonzero_and_differ() {
        let a = trace_id();
        let b = trace_id();
        assert_ne!(a, b);
        assert_ne!(span_id(), [0; 8]);
    }
}
