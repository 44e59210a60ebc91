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

mod access;
mod admission;
mod deadline;
mod error;
mod executor;
mod forward;
mod ingress;
mod keys;
mod otel;
mod ready;
mod relay;
mod respond;
mod side;
mod sse;
mod stored;

pub use admission::Admission;
pub use deadline::GuardedProxy;
pub use error::Format;
pub use forward::Upstream;
pub use ingress::{
    count_tokens_request, embeddings_request, feedback_request, route_request, ChatRequest,
};
pub use otel::start as start_traces;
pub use ready::{readiness, Readiness};
pub use sse::{event_data, usage_of_body, SseFilter};
pub use stored::prune_forever as prune_stored_responses;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use serde_json::json;

use dualrouter_wire as wire;

use crate::error::ApiError;
use dualrouter_core::config::validated::Backend;
use dualrouter_core::config::{Config, Model};
use dualrouter_core::conversation::Conversation;
use dualrouter_core::metrics::Metrics;
use dualrouter_routing::Verdict;
use dualrouter_routing::{DualRouter, RouteOptions, RoutingDecision};
use dualrouter_store::{
    prompt_hash, Attempt, CandidateScore, DecisionDetails, DecisionLog, DecisionRecord,
    ExcludedModel, Store, StoredFeatures,
};
use ingress::Endpoint;

/// What a request needs: one generation of the live state, built by the app (its `live`
/// module) and swapped whole on a reload.
pub struct ProxyState {
    pub config: Arc<Config>,
    pub upstream: forward::Upstream,
    pub metrics: Arc<Metrics>,
    /// Every forwarded request leaves one record here (never waits on the store).
    pub decision_log: DecisionLog,
    pub router: Arc<DualRouter>,
    pub store: Store,
    /// The control runtime, where store calls run (the store's pool lives there).
    pub control: tokio::runtime::Handle,
    /// Virtual keys (`auth.virtual_keys`): the cache, the counters and the settlement writer,
    /// one for the process, shared by every generation.
    pub keys: Option<Arc<dualrouter_store::Keyring>>,
    /// sha256 of the config's checkpoint file when this state was built (a reload that changes
    /// it makes the config's checkpoint active).
    pub checkpoint_sha: String,
}

pub struct Proxy {
    /// The live state; each request takes the current one once and finishes on it.
    pub states: Arc<ArcSwap<ProxyState>>,
    /// Requests being served (a graceful shutdown waits for it to reach 0).
    pub in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// Chat, messages and route requests being served: admission control
    /// (`limits.max_in_flight`).
    pub busy: Arc<std::sync::atomic::AtomicUsize>,
    /// Connection admission; its recent accept waits also refuse requests on open connections.
    pub admission: Arc<admission::Admission>,
}

/// Counts a request in flight for as long as it lives (cancelled ones included).
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(counter.clone())
    }
}

/// A slot under `limits.max_in_flight`, or the 503 that says there is none; also the 503 when
/// the proxy's own workers are saturated (`limits.max_queue_ms`).
///
/// A concurrency cap alone does not see CPU saturation: with fast upstreams the requests in
/// flight stay few while every one of them, and every connection not yet read, waits longer
/// and longer for a worker. So each request also measures how long one trip through the
/// workers' run queue takes now (a yield, then the time until it is polled again); past
/// `max_queue_ms` the request is refused, which sheds exactly the excess. Requests are also
/// refused while new connections keep waiting longer than that for a worker
/// ([`admission::Admission::saturated`]).
///
/// Before a refusal, a small request body is read and dropped so that the connection stays
/// open ([`ingress::drain_refused_body`]): under overload a closed connection costs the client
/// a new one for its next request, which only adds to the load.
async fn admit(
    proxy: &Proxy,
    session: &mut Session,
    limits: &dualrouter_core::config::Limits,
) -> Result<InFlight, ApiError> {
    match try_admit(proxy, limits).await {
        Ok(slot) => Ok(slot),
        Err(e) => {
            ingress::drain_refused_body(session, limits).await;
            Err(e)
        }
    }
}

async fn try_admit(
    proxy: &Proxy,
    limits: &dualrouter_core::config::Limits,
) -> Result<InFlight, ApiError> {
    let busy = &proxy.busy;
    let overloaded = |why| ApiError::Overloaded {
        why,
        retry_after_s: limits.overload_retry_after_s,
    };
    let before = busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let slot = InFlight(busy.clone());
    if before >= limits.max_in_flight {
        return Err(overloaded("limits.max_in_flight requests in flight"));
    }
    if proxy.admission.saturated(limits.max_queue) {
        return Err(overloaded("its workers are saturated: limits.max_queue_ms"));
    }
    Ok(slot)
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Per-request state.
pub struct RequestCtx {
    pub started: Instant,
    pub decision_id: uuid::Uuid,
    pub format: Format,
    /// The configured model id, once known (metric label).
    pub model: Option<String>,
    /// `domain/action` of a routed request (`x-dualrouter-route`).
    pub route: Option<String>,
    /// The decision record, once the request is bound for an upstream.
    pub record: Option<DecisionRecord>,
    /// The conversation's session-affinity key (routed requests).
    pub affinity_key: Option<[u8; 16]>,
    /// The kind of the error answered, if any.
    pub error_kind: Option<&'static str>,
    /// The client key's id (`key:` and 16 hex digits of its SHA-256), when keys are configured.
    pub key_id: Option<String>,
    /// A non-SSE answer was cut after its header went out: the connection is closed without
    /// ending the body, so the client sees a truncated response rather than a complete one.
    pub abort_downstream: bool,
    /// The virtual key's budget reservation, settled when the request ends.
    pub(crate) key_use: Option<keys::KeyUse>,
    /// The virtual key's `x-ratelimit-*` headers for the answer.
    pub(crate) rate_headers: Vec<(&'static str, String)>,
    /// The request's trace context and spans, when traces are on ([`otel`]).
    pub(crate) trace: Option<Box<otel::RequestTrace>>,
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            decision_id: uuid::Uuid::now_v7(),
            format: Format::Chat,
            model: None,
            route: None,
            record: None,
            affinity_key: None,
            error_kind: None,
            key_id: None,
            abort_downstream: false,
            key_use: None,
            rate_headers: Vec::new(),
            trace: None,
        }
    }

    /// Answers every request; `Ok(true)` tells Pingora the response was sent.
    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let _in_flight = InFlight::enter(&self.in_flight);
        let state = self.states.load_full();
        // The header is in: the next one on this connection has `limits.client_header_ms`
        // from the end of this answer (see `deadline`).
        deadline::header_done(session);
        let status = match handle(&state, session, ctx, self).await {
            Ok(status) => status,
            Err(e) => {
                ctx.error_kind = Some(e.kind());
                respond::error(&state, session, ctx, &e).await
            }
        };
        if let Some(k) = ctx.key_use.take() {
            k.settle(&state, ctx.record.as_ref(), status);
        }
        let model = ctx.model.as_deref().unwrap_or("none");
        state
            .metrics
            .requests
            .with_label_values(&[model, status.as_str()])
            .inc();
        let mut rec = ctx.record.take();
        if let Some(rec) = rec.as_mut() {
            rec.http_status = Some(status.as_u16());
            if rec.status == "ok" && (status.is_client_error() || status.is_server_error()) {
                rec.status = "error".into();
            }
            rec.error_kind = ctx.error_kind.map(str::to_string).or(rec.error_kind.take());
            rec.total_latency_ms = Some(ctx.started.elapsed().as_secs_f64() * 1e3);
        }
        access::log(session, ctx, status, rec.as_ref());
        if ctx.trace.is_some() {
            let h = session.req_header();
            otel::finish(ctx, &h.method, h.uri.path(), status, rec.as_ref());
        }
        if let Some(rec) = rec.as_ref() {
            count_usage(&state.metrics, rec);
        }
        if let Some(rec) = rec {
            state.decision_log.record(rec);
        }
        deadline::await_next_header(session, state.config.limits.client_header);
        if ctx.abort_downstream {
            // Pingora would end the chunked body properly on `Ok(true)`; a downstream error
            // makes it drop the connection instead, writing nothing more.
            let mut e = pingora::Error::explain(
                pingora::ErrorType::ConnectionClosed,
                "upstream answer cut after its header; closing the client connection",
            );
            e.as_down();
            return Err(e);
        }
        Ok(true)
    }

    /// The deliberate close above is not an error worth Pingora's log line.
    fn suppress_error_log(
        &self,
        _session: &Session,
        ctx: &RequestCtx,
        _e: &pingora::Error,
    ) -> bool {
        ctx.abort_downstream
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
    proxy: &Proxy,
) -> Result<http::StatusCode, ApiError> {
    let header = session.req_header();
    let path = header.uri.path();
    // A path of Anthropic's or the Responses API answers errors (a 404 too) in its format.
    if path.starts_with("/v1/messages") {
        ctx.format = Format::Messages;
    } else if path.starts_with("/v1/responses") {
        ctx.format = Format::Responses;
    }
    let endpoint = ingress::endpoint(&header.method, path)?;
    if !matches!(endpoint, Endpoint::Health | Endpoint::Ready) {
        ctx.trace = otel::begin(ctx.started, &header.headers);
    }
    ctx.format = endpoint.format();
    let auth = state.config.auth.as_ref();
    let caller = if matches!(endpoint, Endpoint::Health | Endpoint::Ready) {
        keys::Caller::Open
    } else {
        keys::authenticate(state, auth, &session.req_header().headers).await?
    };
    // A virtual key's stored responses belong to the key (its id), so they survive a rotation.
    let owner = match &caller {
        keys::Caller::Virtual(k) => format!("vkey:{}", k.id),
        keys::Caller::Open | keys::Caller::Static => {
            ingress::key_owner(auth, &session.req_header().headers)
        }
    };
    // The access line names the caller as the decision record does: a virtual key by its id, a
    // config key by the hash prefix its stored responses are filed under.
    ctx.key_id = match &caller {
        keys::Caller::Virtual(k) => Some(k.id.clone()),
        keys::Caller::Static => Some(owner.clone()),
        keys::Caller::Open => auth.is_some().then(|| owner.clone()),
    };
    match endpoint {
        Endpoint::Health => {
            respond::json(session, http::StatusCode::OK, &json!({"status": "ok"}), &[]).await
        }
        Endpoint::Ready => {
            let r = ready::readiness(state).await;
            if !r.ready {
                return Err(ApiError::NotReady(r.body));
            }
            respond::json(session, http::StatusCode::OK, &r.body, &[]).await
        }
        Endpoint::Models => {
            let anthropic = wants_anthropic_shape(session.req_header());
            let allowed = match &caller {
                keys::Caller::Virtual(k) => k.models.as_deref(),
                keys::Caller::Open | keys::Caller::Static => None,
            };
            let list = models_list(&state.config, state.router.registry(), anthropic, allowed);
            respond::json(session, http::StatusCode::OK, &list, &[]).await
        }
        Endpoint::Model(id) => {
            let anthropic = wants_anthropic_shape(session.req_header());
            let hidden = matches!(&caller, keys::Caller::Virtual(k) if !k.allows(&id)
                && !state.config.routing.is_alias(&id));
            let m = model_object(&state.config, state.router.registry(), &id, anthropic)
                .filter(|_| !hidden)
                .ok_or(ApiError::UnknownModel(id))?;
            respond::json(session, http::StatusCode::OK, &m, &[]).await
        }
        Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses => {
            let _slot = admit(proxy, session, &state.config.limits).await?;
            chat(state, session, ctx, &owner, &caller).await
        }
        Endpoint::ResponseGet(id) => {
            let r = stored::get(state, &id, &owner).await?;
            respond::json(session, http::StatusCode::OK, &r.response, &[]).await
        }
        Endpoint::ResponseInputItems(id) => {
            let r = stored::get(state, &id, &owner).await?;
            respond::json(session, http::StatusCode::OK, &stored::input_items(&r), &[]).await
        }
        Endpoint::ResponseDelete(id) => {
            stored::delete(state, &id, &owner).await?;
            let v = json!({"id": id, "object": "response", "deleted": true});
            respond::json(session, http::StatusCode::OK, &v, &[]).await
        }
        Endpoint::CountTokens => {
            let _slot = admit(proxy, session, &state.config.limits).await?;
            side::count_tokens(state, session, ctx).await
        }
        Endpoint::Embeddings => {
            let _slot = admit(proxy, session, &state.config.limits).await?;
            side::embeddings(state, session, ctx, &caller).await
        }
        Endpoint::Route => {
            let _slot = admit(proxy, session, &state.config.limits).await?;
            let opts = route_options(session.req_header(), 0, None)?;
            let body = ingress::read_body(session, &state.config.limits).await?;
            let conversation = ingress::route_request(&body)?;
            let decision = state
                .router
                .route(&conversation, &opts)
                .await
                .map_err(routing_error)?
                .map_err(ApiError::NoCandidate)?;
            let v = decision_json(&ctx.decision_id.to_string(), &decision);
            respond::json(session, http::StatusCode::OK, &v, &[]).await
        }
        Endpoint::Feedback => {
            let body = ingress::read_body(session, &state.config.limits).await?;
            let fb = ingress::feedback_request(&body)?;
            record_feedback(state, &fb).await?;
            respond::json(
                session,
                http::StatusCode::OK,
                &json!({"decision_id": fb.decision_id, "score": fb.score, "recorded": true}),
                &[],
            )
            .await
        }
    }
}

/// Anthropic's SDKs send `anthropic-version`: their model listings get Anthropic's shape.
fn wants_anthropic_shape(header: &pingora::http::RequestHeader) -> bool {
    header.headers.contains_key("anthropic-version")
}

/// A routing failure as the client sees it: nothing to route on is the request's fault.
fn routing_error(e: dualrouter_routing::RouterError) -> ApiError {
    match e {
        dualrouter_routing::RouterError::Empty => ApiError::BadRequest(
            "nothing to route on: the conversation has no user message with text".into(),
        ),
        e => ApiError::Routing(e.to_string()),
    }
}

/// The decision as `POST /v1/route` and `dualrouter route --json` print it.
pub fn decision_json(decision_id: &str, d: &RoutingDecision) -> serde_json::Value {
    let mut v = serde_json::to_value(d).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("decision_id".into(), json!(decision_id));
    }
    v
}

/// What the request's headers add to routing: `x-dualrouter-max-cost` (USD per million
/// tokens) and `x-session-id`.
fn route_options(
    header: &pingora::http::RequestHeader,
    input_tokens: u64,
    max_output_tokens: Option<u64>,
) -> Result<RouteOptions, ApiError> {
    let text = |name: &str| -> Result<Option<String>, ApiError> {
        match header.headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(s.trim().to_string()))
                .map_err(|_| ApiError::BadRequest(format!("header '{name}' is not valid text"))),
        }
    };
    let max_cost_per_mtok = match text(MAX_COST_HEADER)? {
        None => None,
        Some(s) => match s.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Some(v),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "header '{MAX_COST_HEADER}' must be a number >= 0 (USD per million tokens), got '{s}'"
                )))
            }
        },
    };
    let session_id = text(SESSION_HEADER)?.filter(|s| !s.is_empty());
    if session_id.as_ref().is_some_and(|s| s.len() > 256) {
        return Err(ApiError::BadRequest(format!(
            "header '{SESSION_HEADER}' is longer than 256 bytes"
        )));
    }
    Ok(RouteOptions {
        max_cost_per_mtok,
        input_tokens,
        max_output_tokens,
        session_id,
        ..Default::default()
    })
}

/// `x-dualrouter-max-cost`: the most a routed request may cost, USD per million tokens.
pub const MAX_COST_HEADER: &str = "x-dualrouter-max-cost";
/// `x-session-id`: keeps a conversation on one model (session affinity).
pub const SESSION_HEADER: &str = "x-session-id";

/// Records feedback in the store. The decision may still sit in the log's queue, so a miss
/// flushes the log once before answering 404.
async fn record_feedback(state: &ProxyState, fb: &ingress::Feedback) -> Result<(), ApiError> {
    let store = state.store.clone();
    let log = state.decision_log.clone();
    let fb = fb.clone();
    let task = state.control.spawn(async move {
        let unavailable = |e: dualrouter_store::StoreError| {
            tracing::warn!("feedback not recorded: {e}");
            ApiError::Unavailable("the decision store")
        };
        let mut known = store
            .get_decision(&fb.decision_id)
            .await
            .map_err(unavailable)?;
        if known.is_none() {
            log.flush()
                .await
                .map_err(|_| ApiError::Unavailable("the decision store"))?;
            known = store
                .get_decision(&fb.decision_id)
                .await
                .map_err(unavailable)?;
        }
        if known.is_none() {
            return Err(ApiError::UnknownDecision(fb.decision_id.clone()));
        }
        store
            .record_feedback(&fb.decision_id, fb.score, fb.comment.as_deref())
            .await
            .map_err(unavailable)
    });
    task.await
        .map_err(|e| ApiError::Internal(format!("feedback task: {e}")))?
}

async fn chat(
    state: &ProxyState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    owner: &str,
    caller: &keys::Caller,
) -> Result<http::StatusCode, ApiError> {
    let limits = state.config.limits;
    let body = ingress::read_body(session, &limits).await?;
    state.metrics.bytes_in.inc_by(body.len() as u64);
    let prepared = Instant::now();
    // The request stays in the client's format; each upstream gets its own translation.
    let mut request = ChatRequest::parse_as(ctx.format, &body)?;
    let body_len = body.len();
    // A Responses request: what its answer repeats, and the conversation it continues.
    let mut sink = None;
    // A Responses answer repeats fields of the request as the client sent them: the body's
    // text is kept for that, and read while the upstream works on the request.
    let mut echo_source = (ctx.format == Format::Responses).then(|| body.clone());
    if ctx.format == Format::Responses {
        let previous_id = request
            .body
            .get("previous_response_id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string);
        let wants_store = request.body.get("store") != Some(&serde_json::Value::Bool(false))
            && state.config.response_store.enabled;
        // This turn's own input (what a stored response keeps), before any history is added.
        let turn_input = if previous_id.is_some() || wants_store {
            stored::turn_input(&request.body)
        } else {
            serde_json::Value::Null
        };
        if let Some(prev) = &previous_id {
            let history = stored::history(state, prev, owner).await?;
            let mut body = serde_json::Map::clone(&request.body);
            body.remove("previous_response_id");
            let mut input = history;
            if let serde_json::Value::Array(turn) = &turn_input {
                input.extend(turn.iter().cloned());
            }
            body.insert("input".into(), serde_json::Value::Array(input));
            request.set_body(body)?;
        }
        if wants_store {
            sink = Some(stored::Sink {
                store: state.store.clone(),
                control: state.control.clone(),
                owner: owner.to_string(),
                previous_id,
                turn_input,
                decision_id: ctx.decision_id.to_string(),
                retention: state.config.response_store.retention,
                metrics: state.metrics.clone(),
            });
        }
    }
    drop(body);
    let conversation = request.conversation();
    otel::request(ctx, &request);
    let mut record = new_record(state, ctx, &request, &conversation);
    let registry = state.router.registry().clone();
    // Models that cannot serve this request at all (a JSON schema to a model without
    // structured output, `n` > 1 to a format with one answer, …): routing leaves them out.
    // A concrete model is checked alone.
    let routed = state.router.settings().is_alias(&request.model);
    let mut unsupported: std::collections::HashMap<String, ApiError> = Default::default();
    let checked: Vec<Arc<Model>> = if routed {
        registry.models().cloned().collect()
    } else {
        registry.get(&request.model).cloned().into_iter().collect()
    };
    for m in checked {
        let upstream = match &m.backend {
            Backend::Provider(p) => forward::upstream_format(p, ctx.format),
            Backend::Plugin(_) => Format::Chat,
        };
        if let Err(e) = request.servable_by(upstream, m.caps) {
            unsupported.insert(m.id.clone(), e);
        }
    }
    // A virtual key: its models, its rate window, and (routed) what its budget has left.
    let admitted = match caller {
        keys::Caller::Virtual(key) => {
            record.key_id = Some(key.id.clone());
            if !routed && registry.get(&request.model).is_some() {
                keys::check_model(state, key, &request.model)?;
            }
            let admitted = keys::gate(state, key, routed).await?;
            ctx.rate_headers = admitted.rate_headers();
            Some(admitted)
        }
        keys::Caller::Open | keys::Caller::Static => None,
    };
    let chain: Vec<Arc<Model>> = if state.router.settings().is_alias(&request.model) {
        let mut opts = route_options(
            session.req_header(),
            (body_len as u64).div_ceil(4),
            request.max_output_tokens(),
        )?;
        opts.unsupported = unsupported.keys().cloned().collect();
        if let Some(a) = &admitted {
            a.route_limits(&mut opts);
        }
        let route_started = Instant::now();
        let decided = state
            .router
            .route(&conversation, &opts)
            .await
            .map_err(routing_error)?;
        let decision = match decided {
            Ok(d) => d,
            Err(none) => {
                ctx.record = Some(record);
                // Nothing could serve what the request asks for: say which field.
                if none.unsupported_only {
                    if let Some(e) = unsupported.into_values().next() {
                        return Err(e);
                    }
                }
                if let (true, Some(a)) = (none.over_key_budget, &admitted) {
                    return Err(keys::budget_refusal(state, a));
                }
                return Err(ApiError::NoCandidate(none));
            }
        };
        ctx.route = Some(decision.route.name());
        fill_record(&mut record, &decision);
        otel::routed(ctx, route_started, &decision);
        if !state.config.retention.store_embeddings {
            record.features = None;
        }
        let chain = std::iter::once(&decision.selected_model)
            .chain(&decision.fallbacks)
            .filter_map(|id| registry.get(id).cloned())
            .collect();
        ctx.record = Some(record);
        ctx.affinity_key = decision.affinity_key;
        chain
    } else {
        ctx.record = Some(record);
        let model = registry
            .get(&request.model)
            .cloned()
            .ok_or_else(|| ApiError::UnknownModel(request.model.clone()))?;
        if let Some(e) = unsupported.remove(&model.id) {
            return Err(e);
        }
        vec![model]
    };
    if let Some(a) = admitted {
        // The reservation covers the dearest model of the chain, at the request's own output
        // cap (or `routing.expected_output_tokens`) and its body's size as input tokens.
        let input = (body_len as u64).div_ceil(4);
        let output = request
            .max_output_tokens()
            .unwrap_or(state.router.settings().expected_output_tokens);
        let estimate = chain
            .iter()
            .map(|m| m.cost.usd(input, output))
            .fold(0.0, f64::max);
        if !routed {
            if let Some(m) = chain.first() {
                keys::check_cap(state, &a.key, &m.id, estimate)?;
            }
        }
        ctx.key_use = Some(keys::reserve(state, a, estimate).await?);
    }
    let deadline = Instant::now() + limits.total;
    let mut last_err: Option<ApiError> = None;
    let mut echo_fields: Option<wire::EchoFields> = None;
    for (i, model) in chain.iter().enumerate() {
        if Instant::now() >= deadline {
            break;
        }
        if !registry.admit(&model.id) {
            push_attempt(state, ctx, model, "skipped", None, Instant::now());
            continue;
        }
        let tried = Instant::now();
        ctx.model = Some(model.id.clone());
        let provider = match &model.backend {
            Backend::Provider(p) => p.clone(),
            Backend::Plugin(plugin) => {
                let attempt = executor::attempt(
                    state,
                    session,
                    ctx,
                    executor::Call {
                        model,
                        plugin,
                        request: &request,
                        deadline,
                        sink: sink.as_ref(),
                    },
                )
                .await;
                match attempt {
                    Ok(executor::Attempt::Answered(status)) => {
                        registry.report(&model.id, Verdict::Success, None);
                        push_attempt(state, ctx, model, "ok", Some(status.as_u16()), tried);
                        state.router.remember(ctx.affinity_key, &model.id);
                        return Ok(status);
                    }
                    Ok(executor::Attempt::ClientGone) => {
                        registry.release_probe(&model.id);
                        state.metrics.client_disconnects.inc();
                        if let Some(rec) = ctx.record.as_mut() {
                            rec.status = "cancelled".into();
                        }
                        return Ok(http::StatusCode::from_u16(499)
                            .unwrap_or(http::StatusCode::BAD_REQUEST));
                    }
                    Ok(executor::Attempt::Failed(e)) => {
                        registry.report(
                            &model.id,
                            Verdict::Failure { retry_after: None },
                            Some(e.kind()),
                        );
                        push_attempt(
                            state,
                            ctx,
                            model,
                            executor::Attempt::outcome(&e),
                            None,
                            tried,
                        );
                        tracing::info!(decision_id = %ctx.decision_id, model = %model.id, "executor attempt failed: {e}");
                        last_err = Some(e);
                        continue;
                    }
                    Err(e) => {
                        // The request cannot be put to an executor; another candidate may take it.
                        registry.release_probe(&model.id);
                        push_attempt(state, ctx, model, "translate", None, tried);
                        last_err = Some(e);
                        continue;
                    }
                }
            }
        };
        let upstream_format = forward::upstream_format(&provider, ctx.format);
        let target = wire::Target {
            format: upstream_format,
            model: &model.upstream_id,
            caps: model.caps,
        };
        let (upstream_body, notes) = match request.body_for(&target) {
            Ok(b) => b,
            Err(e) => {
                // This candidate's format cannot carry the request; another may.
                registry.release_probe(&model.id);
                push_attempt(state, ctx, model, "translate", None, tried);
                last_err = Some(e);
                continue;
            }
        };
        state
            .metrics
            .formats
            .with_label_values(&[ctx.format.as_str(), upstream_format.as_str()])
            .inc();
        let mut forwarded = forwarded_headers(session.req_header(), ctx.format, upstream_format);
        otel::propagate(ctx, &mut forwarded);
        let header = forward::upstream_request(
            &provider,
            forward::path_of(upstream_format),
            upstream_body.len(),
            request.stream,
            &forwarded,
        )?;
        let before_upstream = prepared.elapsed();
        // What the answer needs of the request (the fields a Responses answer repeats, the
        // tool names to map back) is made ready while the upstream works on the request.
        let mut echo = None;
        let prepare_echo = async {
            let fields = echo_fields_of(&mut echo_fields, &mut echo_source);
            echo = Some(echo_for(ctx, &request, upstream_format, fields));
        };
        let opened = tokio::select! {
            // `join!` polls the exchange first: the request is on its way before the echo is made.
            (ex, ()) = async {
                tokio::join!(
                    state.upstream.open(&provider, &limits, &header, &upstream_body, deadline),
                    prepare_echo,
                )
            } => ex,
            _ = relay::client_gone(session) => {
                registry.release_probe(&model.id);
                state.metrics.client_disconnects.inc();
                if let Some(rec) = ctx.record.as_mut() {
                    rec.status = "cancelled".into();
                }
                return Ok(http::StatusCode::from_u16(499).unwrap_or(http::StatusCode::BAD_REQUEST));
            }
        };
        let exchange = match opened {
            Ok(ex) => ex,
            Err(e) => {
                registry.report(
                    &model.id,
                    Verdict::Failure { retry_after: None },
                    Some(e.kind()),
                );
                let outcome = match &e {
                    ApiError::UpstreamTimeout { .. } => "timeout",
                    ApiError::UpstreamUnreachable { .. } => "connect",
                    _ => "broken",
                };
                push_attempt(state, ctx, model, outcome, None, tried);
                tracing::info!(decision_id = %ctx.decision_id, model = %model.id, "attempt failed: {e}");
                last_err = Some(e);
                continue;
            }
        };
        let status = exchange
            .response_header()
            .map(|h| h.status)
            .unwrap_or(http::StatusCode::BAD_GATEWAY);
        if status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let retry_after = exchange
                .response_header()
                .and_then(|h| h.headers.get(http::header::RETRY_AFTER))
                .and_then(|v| v.to_str().ok())
                .and_then(dualrouter_routing::parse_retry_after);
            let label = if status.as_u16() == 429 { "429" } else { "5xx" };
            registry.report(&model.id, Verdict::Failure { retry_after }, Some(label));
            push_attempt(state, ctx, model, label, Some(status.as_u16()), tried);
            let another = chain[i + 1..].iter().any(|m| !registry.is_cooling(&m.id));
            if another && Instant::now() < deadline {
                tracing::info!(decision_id = %ctx.decision_id, model = %model.id, status = status.as_u16(), "falling back");
                // Dropping the exchange closes its connection; the next candidate answers.
                continue;
            }
            // The last candidate: its own answer (status, Retry-After, error body) goes back.
        } else {
            registry.report(&model.id, Verdict::Success, None);
            push_attempt(state, ctx, model, "ok", Some(status.as_u16()), tried);
            if status.is_success() {
                state.router.remember(ctx.affinity_key, &model.id);
            }
        }
        if let Some(rec) = ctx.record.as_mut() {
            rec.served_by(model, None);
            rec.details.translation = notes;
            rec.latencies_ms.insert(
                "first_byte".into(),
                exchange.upstream_latency.as_secs_f64() * 1e3,
            );
        }
        state
            .metrics
            .upstream_latency
            .with_label_values(&[&provider.name, &model.id])
            .observe(exchange.upstream_latency.as_secs_f64());
        let echo = match echo.take() {
            Some(echo) => echo,
            None => {
                let fields = echo_fields_of(&mut echo_fields, &mut echo_source);
                echo_for(ctx, &request, upstream_format, fields)
            }
        };
        let status = relay::relay(
            state,
            session,
            ctx,
            relay::Relay {
                model,
                provider: &provider,
                exchange,
                stream: request.stream,
                client_format: ctx.format,
                upstream_format,
                echo,
                sink: sink.as_ref().filter(|_| status.is_success()),
                deadline,
                overhead_so_far: before_upstream,
            },
        )
        .await;
        return status;
    }
    Err(match last_err {
        Some(e) => e,
        None => ApiError::NoCandidate(dualrouter_routing::NoCandidate {
            route: ctx.route.clone().unwrap_or_else(|| request.model.clone()),
            why: "every candidate is cooling down".into(),
            retry_after: registry
                .soonest_retry(&chain.iter().map(|m| m.id.clone()).collect::<Vec<_>>()),
            unsupported_only: false,
            over_key_budget: false,
        }),
    })
}

/// The client headers an upstream of the client's own format gets: Anthropic's version and
/// betas, from an Anthropic client to an Anthropic upstream.
fn forwarded_headers(
    header: &pingora::http::RequestHeader,
    client: Format,
    upstream: Format,
) -> Vec<(http::HeaderName, http::HeaderValue)> {
    if client != Format::Messages || upstream != Format::Messages {
        return Vec::new();
    }
    forward::ANTHROPIC_FORWARDED
        .iter()
        .filter_map(|name| {
            let v = header.headers.get(*name)?;
            Some((http::HeaderName::from_static(name), v.clone()))
        })
        .collect()
}

/// The fields a Responses answer repeats, read from the request's text (`source`; none for
/// other formats) once per request. The text is let go once read.
fn echo_fields_of(
    cache: &mut Option<wire::EchoFields>,
    source: &mut Option<bytes::Bytes>,
) -> wire::EchoFields {
    cache
        .get_or_insert_with(|| {
            source
                .take()
                .map(|text| wire::EchoFields::from_body(&text))
                .unwrap_or_default()
        })
        .clone()
}

/// How the answer is presented in the client's format (from an upstream of `upstream`'s: the
/// decoded request is needed only when they differ).
fn echo_for(
    ctx: &RequestCtx,
    request: &ChatRequest,
    upstream: Format,
    fields: wire::EchoFields,
) -> wire::Echo {
    let ir = (upstream != ctx.format)
        .then(|| request.ir().ok())
        .flatten();
    wire::Echo {
        names: ir.map(wire::ToolNames::new).unwrap_or_default(),
        include_usage: request.include_usage,
        // Only Anthropic's stream says the prompt's size before the answer.
        input_estimate: ir
            .filter(|_| ctx.format == Format::Messages)
            .map(wire::estimate_tokens)
            .unwrap_or_default(),
        response_id: format!("resp_{}", ctx.decision_id.simple()),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        fields,
    }
}

/// Tokens and cost of an answered request, by model and provider.
fn count_usage(metrics: &Metrics, rec: &DecisionRecord) {
    let (Some(model), Some(provider)) = (rec.selected_model.as_deref(), rec.provider.as_deref())
    else {
        return;
    };
    for (kind, n) in [
        ("input", rec.input_tokens),
        ("output", rec.output_tokens),
        ("cached", rec.cache_read_tokens),
    ] {
        if let Some(n) = n.filter(|n| *n > 0) {
            metrics
                .tokens
                .with_label_values(&[model, provider, kind])
                .inc_by(n);
        }
    }
    if let Some(cost) = rec.cost_usd.filter(|c| c.is_finite() && *c > 0.0) {
        metrics
            .cost_usd
            .with_label_values(&[model, provider])
            .inc_by(cost);
    }
}

fn push_attempt(
    state: &ProxyState,
    ctx: &mut RequestCtx,
    model: &Model,
    outcome: &str,
    status: Option<u16>,
    since: Instant,
) {
    state
        .metrics
        .attempts
        .with_label_values(&[&model.id, outcome])
        .inc();
    otel::attempt(ctx, model, outcome, status, since);
    if let Some(rec) = ctx.record.as_mut() {
        rec.details.attempts.push(Attempt {
            model: model.id.clone(),
            provider: model.owner().to_string(),
            outcome: outcome.to_string(),
            status,
            ms: since.elapsed().as_secs_f64() * 1e3,
        });
    }
}

/// The record a request leaves: what was asked; routing and serving fill in the rest.
fn new_record(
    state: &ProxyState,
    ctx: &RequestCtx,
    request: &ChatRequest,
    conversation: &Conversation,
) -> DecisionRecord {
    let prompt: String = conversation
        .turns
        .iter()
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let mut rec = DecisionRecord::with_id(ctx.decision_id.to_string(), "ok");
    rec.prompt_hash = prompt_hash(&prompt);
    rec.prompt_preview = state.decision_log.preview(&prompt);
    rec.requested_model = Some(request.model.clone());
    rec.route_source = Some("explicit".into());
    rec
}

/// Copies a routing decision into the record: route, every candidate, the chain, x.
fn fill_record(rec: &mut DecisionRecord, d: &RoutingDecision) {
    rec.domain = Some(d.route.domain.clone());
    rec.action = Some(d.route.action.clone());
    rec.route_source = Some(d.route.source.as_str().to_string());
    rec.route_confidence = Some(f64::from(d.route.confidence));
    rec.candidates = d
        .candidates
        .iter()
        .map(|c| CandidateScore {
            model: c.model.clone(),
            p_success: c.p_success,
            cost: c.est_cost_usd,
            cost_per_mtok: c.cost_per_mtok,
            score: c.score,
        })
        .collect();
    rec.selected_score = d.candidates.first().map(|c| c.score);
    rec.explore = d.explore;
    rec.latencies_ms.extend(d.latencies_ms.clone());
    rec.details = DecisionDetails {
        policy: Some(d.policy.clone()),
        reasoning: Some(d.reasoning.clone()),
        fallbacks: d.fallbacks.clone(),
        excluded: d
            .excluded
            .iter()
            .map(|e| ExcludedModel {
                model: e.model.clone(),
                reason: e.reason.to_string(),
            })
            .collect(),
        attempts: Vec::new(),
        checkpoint_version: d.checkpoint_version,
        affinity: d.affinity,
        translation: Vec::new(),
    };
    rec.features = d
        .features
        .as_ref()
        .map(|f| StoredFeatures::new(&f.encoder, &f.embedding, f.extra.clone()));
}

/// `GET /v1/models`: the routing aliases (`auto`), then every model of the registry (config
/// order, then discovered models, then executor plugins' models), only those in `allowed`
/// when a virtual key limits them; in Anthropic's list shape for Anthropic's clients.
fn models_list(
    config: &Config,
    registry: &dualrouter_routing::Registry,
    anthropic: bool,
    allowed: Option<&[String]>,
) -> serde_json::Value {
    let aliases = config
        .routing
        .aliases
        .iter()
        .map(|a| (a.as_str(), "dualrouter"));
    let models = registry
        .models()
        .filter(|m| allowed.is_none_or(|a| a.contains(&m.id)))
        .map(|m| (m.id.as_str(), m.owner()));
    let data: Vec<_> = aliases
        .chain(models)
        .map(|(id, owner)| model_json(id, owner, anthropic))
        .collect();
    if anthropic {
        let first = data.first().map(|m| m["id"].clone());
        let last = data.last().map(|m| m["id"].clone());
        json!({ "data": data, "has_more": false, "first_id": first, "last_id": last })
    } else {
        json!({ "object": "list", "data": data })
    }
}

/// `GET /v1/models/{id}`: one routing alias or model.
fn model_object(
    config: &Config,
    registry: &dualrouter_routing::Registry,
    id: &str,
    anthropic: bool,
) -> Option<serde_json::Value> {
    if config.routing.is_alias(id) {
        return Some(model_json(id, "dualrouter", anthropic));
    }
    registry
        .get(id)
        .map(|m| model_json(&m.id, m.owner(), anthropic))
}

fn model_json(id: &str, owner: &str, anthropic: bool) -> serde_json::Value {
    if anthropic {
        json!({ "type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z" })
    } else {
        json!({ "id": id, "object": "model", "created": 0, "owned_by": owner })
    }
}
