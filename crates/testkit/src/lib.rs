//! A mock LLM upstream on 127.0.0.1 speaking the three wire formats dualrouter handles, each as
//! its API documents it (whole JSON answers, and SSE streams when the request has `stream: true`):
//!
//! | endpoint | format |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI chat completions: `chat.completion`; streams of `data: {chat.completion.chunk}` ending `data: [DONE]`, the usage chunk (`choices: []`) only when `stream_options.include_usage` is true |
//! | `POST /v1/messages` (`?beta=true` accepted) | Anthropic Messages: a `message`; streams of `event: NAME` / `data: JSON` (`message_start`, `content_block_start`, `ping`, `content_block_delta`, `content_block_stop`, `message_delta`, `message_stop`). 400 `invalid_request_error` without `anthropic-version` or `max_tokens`, like the real API |
//! | `POST /v1/messages/count_tokens` | Anthropic token count: `{"input_tokens": N}`, N the input tokens the same request's usage reports |
//! | `POST /v1/responses` | OpenAI Responses: a `response` object; streams of `event: response.*` / `data: JSON` with `type` and `sequence_number`. `previous_response_id` continues a stored response (`store` not false), 404 for an unknown one |
//! | `POST /v1/embeddings` | OpenAI embeddings: one 8-dimensional vector per input |
//! | `GET /v1/models`, `GET /v1/models/{id}` | the ids set by [`Mock::list`] (503 while forced to an `error:` behaviour) |
//! | `GET /stats` | `{"requests": N, "streams_dropped": N, "by_behaviour": {NAME: N}}`: model requests, in all and per behaviour name ([`Mock::stats`]) |
//! | `PUT /force` | the body (a behaviour) is what every request gets from now on ([`Mock::force`]); an empty body undoes it; 400 for an unknown behaviour |
//! | `GET /healthz` | `{"status": "ok"}` |
//!
//! The **upstream model id** in the request picks the behaviour, one naming scheme (`name` or
//! `name:arg:arg`) for all three formats (the proxy rewrites public ids to these). An
//! `x-mock-behaviour` header ([`BEHAVIOUR_HEADER`]) picks it instead for a client that talks to
//! the mock directly (the proxy does not forward it); [`Mock::force`] wins over both.
//!
//! | upstream model id | behaviour |
//! |---|---|
//! | `echo`            | text "received N bytes" (N: the request body's size); streamed as "tok0 tok1 tok2 " |
//! | `stream:N:MS`     | a stream of N text pieces "tok0 " … "tok{N-1} ", MS ms apart, then the end (chat: usage chunk if asked, `[DONE]`); a whole answer of the same text without `stream` |
//! | `sse:N:S[:MS]`    | N text pieces of exactly S bytes each ([`piece`]: deterministic, different for each), MS ms apart, with the format's full event sequence (chat: role chunk, pieces, finish chunk, usage chunk if asked, `[DONE]`, with fixed ids, so [`openai_sse_bytes`] gives every byte); without `stream`, after N × MS ms, a whole answer of the same text. For byte-exact load checks |
//! | `slow:MS`         | waits MS ms before the first byte, then answers "slow answer" (streamed like `echo`) |
//! | `stall:N`         | a stream that sends its start and N text pieces, then nothing, never ending; without `stream`: status 200 and a JSON answer cut after its text "tok0 … tok{N-1} ", then nothing |
//! | `forever:MS`      | a stream that sends its start, then a text piece every MS ms (10 when not given), forever; without `stream`: a JSON answer cut at its text, which then grows by a piece every MS ms |
//! | `reset`           | reads the request, then resets the connection (TCP RST) without a byte of answer |
//! | `reset:N`         | like `stall:N` (streamed or not), but then the connection is reset instead of left silent |
//! | `fail:N`          | a stream (even without `stream`) that sends its start and N text pieces, then the format's error event (chat: `data: {"error":…}`, Anthropic: `event: error`, Responses: `response.failed`) and ends |
//! | `error:CODE[:S]`  | status CODE with the format's error body (message "mock upstream error"), and `Retry-After: S` when S is given |
//! | `malformed`       | `200 text/event-stream` (streamed or not, every format) whose events are cut JSON, a line that is no SSE field, `data:` that is not JSON and an `event:` without `data:`; no end event |
//! | `huge:SIZE`       | an answer of SIZE bytes of text (`64mib`, `512kib`, `1000`): whole (with `content-length`), or streamed in pieces of 16 KiB |
//! | `tools`           | text "Let me check." then a `get_weather` tool call `{"city": "Paris"}` (ids `call_mock` / `toolu_mock` / `fc_mock`); arguments streamed in two pieces |
//! | `agent`           | a scripted coding-agent turn (below) |
//! | `think`           | reasoning "Thinking it through: the user wants an answer." then text "The answer is 42." (chat: `reasoning_content`; Anthropic: a `thinking` block with a `signature`; Responses: a `reasoning` item with a summary, and `encrypted_content` when `include` has `reasoning.encrypted_content`) |
//! | `cached`          | like `echo`, but the usage reports 1000 input tokens of which 800 are cache reads (Anthropic: `input_tokens` 100, `cache_read_input_tokens` 800, `cache_creation_input_tokens` 100) |
//! | any id [`Mock::list`] set | like `echo` |
//! | anything else     | 404 in the format's error body |
//!
//! Usage, unless said otherwise: 11 input tokens (none cached), 7 output tokens; `think` reports 27
//! output tokens of which 20 are reasoning, `sse:N:…` N output tokens.
//!
//! **`agent`.** If the conversation holds **no tool result yet**, the answer is one tool call, of a
//! tool the request offers (never another): Claude Code's `Read` → `{"file_path": P}`; else
//! Codex's `exec_command` → `{"cmd": "cat P"}`; else a shell-style tool (name `bash` or containing
//! `shell`, any case) → `cat P` in its `command` (or `cmd`) parameter (`["bash", "-lc", "cat P"]`
//! when that parameter is an array); else the first function tool with `{"path": P}`. P is the
//! first absolute path (`/…`, after whitespace, a quote or `(`) in the latest user message's text,
//! with `<tag>…</tag>` blocks (Claude Code's `<system-reminder>`, Codex's
//! `<environment_context>`) left out. Without a path, or without a tool to call, the answer is a
//! text saying so. If the conversation **has** a tool result (chat: a `role: tool` message;
//! Anthropic: a `tool_result` block; Responses: a `function_call_output` or
//! `custom_tool_call_output` item; strings or arrays of text parts), the answer is the text
//! `The file says: T`, T the latest tool result's text with `<system-reminder>` blocks removed,
//! only what follows an `Output:` line when there is one (Codex's `exec_command` result), the
//! `N→` / `N\t` line-number prefixes of Claude Code's `Read` removed (when every line has one),
//! and trimmed.
//!
//! Every answer carries the request's own model id in `model`. [`Mock::force`] makes every
//! request behave as one behaviour whatever its model id (a provider that goes bad, then
//! recovers). Every request is recorded ([`Seen`]: method, path, query, headers, body, JSON),
//! unless [`Mock::record_requests`] turned that off (load runs).
//!
//! The chat streams of `echo`, `stream`, `stall`, `forever`, `reset:N`, `fail` and `cached` carry
//! only the content chunks (no role chunk, no `finish_reason` chunk), as the mock the tests used
//! before did; `sse`, `huge`, `tools`, `agent` and `think` send the full sequence the API sends.
//!
//! The mock serves HTTP/1.1 (hyper) with `TCP_NODELAY`, on the runtime it was started on;
//! `dualrouter-mock` runs it as a program (`--threads N` for load runs).
//!
//! Beside the mock: [`agents`] builds the commands that run the real agent clients (Claude
//! Code, the Codex CLI, the OpenAI Agents SDK) against a base URL; [`fuzzing`] holds the fuzz
//! entry points (`fuzz/`); [`db`] starts a throwaway PostgreSQL cluster; [`freshness`] checks
//! that `plugins/dist/` was built from the sources as they are; the `dualrouter-load` binary is
//! the load generator of `scripts/soak.sh`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Extension;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};

pub mod agents;
mod anthropic;
mod chat;
mod conn;
mod convo;
pub mod db;
pub mod freshness;
pub mod fuzzing;
pub mod net;
pub mod otlp;
mod responses;

use conn::Conn;
pub use convo::{clean_tool_result, first_path};

/// One request the mock received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body parsed as JSON (`None` when it is not JSON).
    pub json: Option<Value>,
}

#[derive(Default)]
pub struct MockState {
    /// Model requests (`POST` to chat completions, Messages, Responses), rejected ones included.
    pub requests: Mutex<Vec<Seen>>,
    pub count: AtomicUsize,
    /// Every request of any method and path (model listings, token counts, unknown paths too).
    pub all: Mutex<Vec<Seen>>,
    /// Streams whose body was dropped before it finished (the proxy closed the connection).
    pub streams_dropped: AtomicUsize,
    /// A behaviour every request gets, whatever its model id.
    pub forced: Mutex<Option<String>>,
    /// What `GET /v1/models` lists (it answers 503 while a forced `error:…` behaviour holds).
    pub listed: Mutex<Vec<String>>,
    /// `GET /v1/models` requests received, and the headers of the last one.
    pub list_count: AtomicUsize,
    pub list_headers: Mutex<Option<HeaderMap>>,
    /// Stored Responses (`store` not false): the conversation's items, input then output.
    pub(crate) stored: Mutex<HashMap<String, Vec<Value>>>,
    /// Model requests per behaviour name (the forced one, the header's, or the model id).
    pub by_behaviour: Mutex<BTreeMap<String, usize>>,
    /// Keep no [`Seen`] (counts only): for load runs, where the recording would grow without end.
    pub discard_requests: AtomicBool,
}

pub struct Mock {
    pub addr: SocketAddr,
    pub state: Arc<MockState>,
    task: tokio::task::JoinHandle<()>,
}

impl Mock {
    /// A mock on 127.0.0.1 at a free port, serving all three formats.
    pub async fn start() -> Mock {
        Mock::bind("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("bind 127.0.0.1:0")
    }

    /// The same mock (every mock serves all three formats); kept for the tests written against
    /// the earlier Anthropic-only mock.
    pub async fn start_anthropic() -> Mock {
        Mock::start().await
    }

    /// A mock on `addr`.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Mock> {
        let state = Arc::new(MockState::default());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(conn::serve(listener, router(state.clone()), None));
        Ok(Mock { addr, state, task })
    }

    /// HTTPS mock with a certificate for `localhost` signed by its own CA; returns the CA PEM.
    pub async fn start_tls() -> (Mock, String) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "dualrouter test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let leaf_key = KeyPair::generate().expect("key");
        let leaf_params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        let leaf = leaf_params
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("leaf");

        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let certs = vec![leaf.der().clone()];
        let key =
            tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
                .expect("key DER");
        let tls = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("TLS config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let state = Arc::new(MockState::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(conn::serve(listener, router(state.clone()), Some(acceptor)));
        (Mock { addr, state, task }, ca.pem())
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL OpenAI clients take.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT`, the base URL Anthropic clients take (`ANTHROPIC_BASE_URL`).
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Model requests received (chat completions, Messages, Responses).
    pub fn count(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    /// The last model request received. Panics when there was none.
    pub fn last(&self) -> Seen {
        self.state
            .requests
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("no request reached the mock")
    }

    /// Every model request received, oldest first.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.requests.lock().expect("lock").clone()
    }

    /// Every request received, of any method and path, oldest first.
    pub fn all_requests(&self) -> Vec<Seen> {
        self.state.all.lock().expect("lock").clone()
    }

    /// Every request behaves as `behaviour` (a model id of the table above); `None` undoes it.
    pub fn force(&self, behaviour: Option<&str>) {
        *self.state.forced.lock().expect("lock") = behaviour.map(str::to_string);
    }

    /// What `GET /v1/models` lists from now on (these ids behave like `echo`).
    pub fn list(&self, ids: &[&str]) {
        *self.state.listed.lock().expect("lock") = ids.iter().map(|s| s.to_string()).collect();
    }

    pub fn streams_dropped(&self) -> usize {
        self.state.streams_dropped.load(Ordering::SeqCst)
    }

    /// `GET /v1/models` requests received.
    pub fn list_count(&self) -> usize {
        self.state.list_count.load(Ordering::SeqCst)
    }

    /// The headers of the last `GET /v1/models`.
    pub fn list_headers(&self) -> Option<HeaderMap> {
        self.state.list_headers.lock().expect("lock").clone()
    }

    /// Model requests that got `behaviour` (a name as forced, sent in `x-mock-behaviour`, or
    /// the model id).
    pub fn behaviour_count(&self, behaviour: &str) -> usize {
        self.state
            .by_behaviour
            .lock()
            .expect("lock")
            .get(behaviour)
            .copied()
            .unwrap_or(0)
    }

    /// What `GET /stats` answers: `{"requests", "streams_dropped", "by_behaviour": {NAME: N}}`.
    pub fn stats(&self) -> Value {
        stats_json(&self.state)
    }

    /// `false`: keep no [`Seen`] from now on (counts and stats go on), so a long load run does
    /// not grow the mock's memory; [`Mock::last`] and the like see nothing new.
    pub fn record_requests(&self, record: bool) {
        self.state.discard_requests.store(!record, Ordering::SeqCst);
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/messages", post(anthropic::handle))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/responses", post(responses::handle))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/stats", get(stats))
        .route("/force", put(force))
        .route("/healthz", get(healthz))
        .fallback(unknown_path)
        .layer(axum::middleware::from_fn_with_state(state.clone(), record))
        .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
        .with_state(state)
}

/// Records every request in `MockState::all` (the handlers record model requests themselves).
async fn record(
    State(state): State<Arc<MockState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if state.discard_requests.load(Ordering::Relaxed) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 256 * 1024 * 1024).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "mock: body too large").into_response();
    };
    let seen = seen(&parts.method, &parts.uri, &parts.headers, &bytes);
    state.all.lock().expect("lock").push(seen);
    next.run(axum::extract::Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn seen(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Seen {
    Seen {
        method: method.clone(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers.clone(),
        body: body.clone(),
        json: serde_json::from_slice(body).ok(),
    }
}

/// Records a model request in `MockState::requests`.
pub(crate) fn record_model_request(
    state: &MockState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) {
    state.count.fetch_add(1, Ordering::SeqCst);
    if state.discard_requests.load(Ordering::Relaxed) {
        return;
    }
    state
        .requests
        .lock()
        .expect("lock")
        .push(seen(&Method::POST, uri, headers, body));
}

async fn unknown_path(uri: Uri) -> Response {
    openai_error(
        StatusCode::NOT_FOUND,
        &format!("mock: no route for {}", uri.path()),
        None,
    )
}

/// `GET /v1/models`: the listed models, or 503 while the mock is forced to fail.
async fn list_models(State(state): State<Arc<MockState>>, headers: HeaderMap) -> Response {
    state.list_count.fetch_add(1, Ordering::SeqCst);
    *state.list_headers.lock().expect("lock") = Some(headers);
    if forced_error(&state) {
        return (StatusCode::SERVICE_UNAVAILABLE, "{}").into_response();
    }
    let data: Vec<Value> = state
        .listed
        .lock()
        .expect("lock")
        .iter()
        .map(|id| model_object(id))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /v1/models/{id}`: a listed model, else 404.
async fn get_model(State(state): State<Arc<MockState>>, Path(id): Path<String>) -> Response {
    if forced_error(&state) {
        return (StatusCode::SERVICE_UNAVAILABLE, "{}").into_response();
    }
    if state.listed.lock().expect("lock").contains(&id) {
        axum::Json(model_object(&id)).into_response()
    } else {
        openai_error(
            StatusCode::NOT_FOUND,
            &format!("The model `{id}` does not exist or you do not have access to it."),
            Some("model_not_found"),
        )
    }
}

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "mock"})
}

fn stats_json(state: &MockState) -> Value {
    json!({
        "requests": state.count.load(Ordering::SeqCst),
        "streams_dropped": state.streams_dropped.load(Ordering::SeqCst),
        "by_behaviour": *state.by_behaviour.lock().expect("lock"),
    })
}

/// `GET /stats`: model requests, dropped streams, and model requests per behaviour.
async fn stats(State(state): State<Arc<MockState>>) -> Response {
    axum::Json(stats_json(&state)).into_response()
}

/// `PUT /force` with a behaviour as the body: every request behaves so ([`Mock::force`]); an
/// empty body undoes it. 400 for a name that is no behaviour.
async fn force(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    let name = String::from_utf8_lossy(&body).trim().to_string();
    let listed = state.listed.lock().expect("lock").contains(&name);
    if !name.is_empty() && !listed && Behaviour::parse(&name) == Behaviour::Unknown {
        return openai_error(
            StatusCode::BAD_REQUEST,
            &format!("mock: unknown behaviour `{name}`"),
            None,
        );
    }
    *state.forced.lock().expect("lock") = (!name.is_empty()).then(|| name.clone());
    axum::Json(json!({"forced": name})).into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

fn forced_error(state: &MockState) -> bool {
    state
        .forced
        .lock()
        .expect("lock")
        .as_deref()
        .is_some_and(|f| f.starts_with("error:"))
}

/// `POST /v1/embeddings`: one 8-dimensional vector per input, derived from its text.
async fn embeddings(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(StatusCode::BAD_REQUEST, "mock: not JSON", None);
    };
    let model = req["model"].as_str().unwrap_or("").to_string();
    let behaviour = state
        .forced
        .lock()
        .expect("lock")
        .clone()
        .unwrap_or_else(|| model.clone());
    if let Behaviour::Error { code, retry_after } = Behaviour::parse(&behaviour) {
        return with_retry_after(openai_error(code, "mock upstream error", None), retry_after);
    }
    let inputs: Vec<String> = match &req["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|v| v.to_string()).collect(),
        _ => return openai_error(StatusCode::BAD_REQUEST, "'input' is required", None),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            let v: Vec<f64> = (0..8)
                .map(|_| {
                    for b in text.bytes() {
                        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
                    }
                    h = splitmix(h);
                    (h % 2000) as f64 / 1000.0 - 1.0
                })
                .collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    let tokens = inputs.len() * 5;
    axum::Json(json!({
        "object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
    .into_response()
}

// --- behaviours ------------------------------------------------------------------------------

/// What a model id asks the mock to do.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Behaviour {
    Echo,
    Stream {
        n: usize,
        gap: Duration,
    },
    Slow(Duration),
    Stall(usize),
    Forever(Duration),
    Fail(usize),
    Error {
        code: StatusCode,
        retry_after: Option<u64>,
    },
    Tools,
    Agent,
    Think,
    Cached,
    Sse {
        n: usize,
        size: usize,
        gap: Duration,
    },
    Reset(Option<usize>),
    Malformed,
    Huge(usize),
    Unknown,
}

impl Behaviour {
    pub(crate) fn parse(id: &str) -> Behaviour {
        let parts: Vec<&str> = id.split(':').collect();
        let num = |i: usize| {
            parts
                .get(i)
                .and_then(|p| p.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match parts[0] {
            "echo" => Behaviour::Echo,
            "stream" => Behaviour::Stream {
                n: num(1) as usize,
                gap: Duration::from_millis(num(2)),
            },
            "slow" => Behaviour::Slow(Duration::from_millis(num(1))),
            "stall" => Behaviour::Stall(num(1) as usize),
            // A zero interval would be a busy loop: 10 ms unless given.
            "forever" if parts.len() < 2 => Behaviour::Forever(Duration::from_millis(10)),
            "forever" => Behaviour::Forever(Duration::from_millis(num(1))),
            "fail" => Behaviour::Fail(num(1) as usize),
            "error" => Behaviour::Error {
                code: StatusCode::from_u16(num(1) as u16)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                retry_after: (parts.len() > 2).then(|| num(2)),
            },
            "tools" => Behaviour::Tools,
            "agent" => Behaviour::Agent,
            "think" => Behaviour::Think,
            "cached" => Behaviour::Cached,
            "sse" => Behaviour::Sse {
                n: num(1) as usize,
                size: num(2) as usize,
                gap: Duration::from_millis(num(3)),
            },
            "reset" => Behaviour::Reset((parts.len() > 1).then(|| num(1) as usize)),
            "malformed" => Behaviour::Malformed,
            "huge" => match parts.get(1).and_then(|s| parse_size(s)) {
                Some(size) => Behaviour::Huge(size),
                None => Behaviour::Unknown,
            },
            _ => Behaviour::Unknown,
        }
    }
}

/// `64mib`, `512kib`, `1000` (bytes).
fn parse_size(s: &str) -> Option<usize> {
    let s = s.to_ascii_lowercase();
    let (num, unit) = if let Some(n) = s.strip_suffix("mib") {
        (n, 1 << 20)
    } else if let Some(n) = s.strip_suffix("kib") {
        (n, 1 << 10)
    } else {
        (s.as_str(), 1)
    };
    num.parse::<usize>().ok()?.checked_mul(unit)
}

/// The header that picks a behaviour for one request (the proxy does not forward it: through
/// the proxy the model id picks).
pub const BEHAVIOUR_HEADER: &str = "x-mock-behaviour";

/// The behaviour a request gets: the forced one, else the `x-mock-behaviour` header's, else its
/// model id; a listed id is `echo`. Returns the name it was picked by, too.
pub(crate) fn behaviour_for(
    state: &MockState,
    headers: &HeaderMap,
    model: &str,
) -> (String, Behaviour) {
    let forced = state.forced.lock().expect("lock").clone();
    let header = headers
        .get(BEHAVIOUR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let name = forced.or(header).unwrap_or_else(|| model.to_string());
    if state.listed.lock().expect("lock").contains(&name) {
        return (name, Behaviour::Echo);
    }
    let b = Behaviour::parse(&name);
    (name, b)
}

/// [`behaviour_for`] for a model request, counted under its name (`GET /stats`).
pub(crate) fn model_behaviour(
    state: &MockState,
    headers: &HeaderMap,
    model: &str,
) -> (String, Behaviour) {
    let (name, b) = behaviour_for(state, headers, model);
    *state
        .by_behaviour
        .lock()
        .expect("lock")
        .entry(name.clone())
        .or_insert(0) += 1;
    (name, b)
}

/// How long a request waits before its answer: `slow`'s time; a non-streamed `sse` the time its
/// stream would take.
pub(crate) fn delay_before_answer(b: &Behaviour, stream: bool) -> Duration {
    match b {
        Behaviour::Slow(d) => *d,
        Behaviour::Sse { n, gap, .. } if !stream => *gap * (*n as u32),
        _ => Duration::ZERO,
    }
}

/// Token counts of an answer; each format reports them its own way.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Usage {
    /// All input tokens, cached ones included.
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    /// Anthropic only (OpenAI formats report these as plain input).
    pub cache_write: u64,
    pub reasoning: u64,
}

impl Usage {
    pub(crate) const PLAIN: Usage = Usage {
        input: 11,
        output: 7,
        cache_read: 0,
        cache_write: 0,
        reasoning: 0,
    };
    pub(crate) const CACHED: Usage = Usage {
        input: 1000,
        output: 7,
        cache_read: 800,
        cache_write: 100,
        reasoning: 0,
    };
    pub(crate) const THINK: Usage = Usage {
        input: 11,
        output: 27,
        cache_read: 0,
        cache_write: 0,
        reasoning: 20,
    };
}

/// One tool call of an answer, with its id in each format.
#[derive(Clone, Debug)]
pub(crate) struct Call {
    /// Chat `tool_calls[].id`, Responses `call_id`.
    pub call_id: String,
    /// Anthropic `tool_use.id`.
    pub toolu_id: String,
    /// Responses item `id`.
    pub fc_id: String,
    pub name: String,
    /// The arguments as a JSON text, streamed as `pieces` (their concatenation).
    pub pieces: Vec<String>,
}

impl Call {
    pub(crate) fn arguments(&self) -> String {
        self.pieces.concat()
    }
}

/// What an answer says, whatever the format; each format renders it whole or as a stream.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    /// Reasoning text, streamed in these pieces (none when empty).
    pub reasoning: Vec<String>,
    /// Answer text, streamed in these pieces (no text part when empty).
    pub text: Vec<String>,
    /// Pause before each text piece of a stream.
    pub gap: Duration,
    pub calls: Vec<Call>,
    pub usage: Usage,
    /// Chat streams: only content chunks (no role chunk, no finish chunk), as the earlier mock.
    pub bare: bool,
    /// Fixed ids and times (chat completions), so the stream's bytes are known in advance.
    pub fixed_ids: bool,
}

impl Answer {
    fn text(pieces: Vec<String>, usage: Usage, bare: bool) -> Answer {
        Answer {
            reasoning: Vec::new(),
            text: pieces,
            gap: Duration::ZERO,
            calls: Vec::new(),
            usage,
            bare,
            fixed_ids: false,
        }
    }

    pub(crate) fn full_text(&self) -> String {
        self.text.concat()
    }

    pub(crate) fn full_reasoning(&self) -> String {
        self.reasoning.concat()
    }
}

fn toks(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("tok{i} ")).collect()
}

/// The text of piece `i` of an `sse:N:S` stream: exactly `size` bytes of `[0-9a-z:]`
/// (JSON-safe), different for every `i`, so a piece lost, doubled or moved shows.
pub fn piece(i: usize, size: usize) -> String {
    let mut s: String = format!("{i}:").chars().take(size).collect();
    let mut k = s.len();
    while s.len() < size {
        s.push((b'a' + ((i * 31 + k * 7) % 26) as u8) as char);
        k += 1;
    }
    s
}

/// The answer of `sse:N:S:MS`: N pieces of S bytes, MS apart, the full event sequence.
pub(crate) fn sse_answer(n: usize, size: usize, gap: Duration) -> Answer {
    let usage = Usage {
        output: n as u64,
        ..Usage::PLAIN
    };
    let mut a = Answer::text((0..n).map(|i| piece(i, size)).collect(), usage, false);
    a.fixed_ids = true;
    a.gap = gap;
    a
}

/// Every byte of the chat-completions stream of `sse:N:S` (any gap) for the upstream model id
/// `model`, as the mock sends it, the usage chunk included when `include_usage`. With
/// `include_usage` false it is also exactly what an OpenAI client of the proxy receives (the
/// proxy drops the usage chunk it asked for on the client's behalf, and changes no other byte).
pub fn openai_sse_bytes(model: &str, chunks: usize, size: usize, include_usage: bool) -> Vec<u8> {
    chat::fixed_stream(
        model,
        &sse_answer(chunks, size, Duration::ZERO),
        include_usage,
    )
}

/// The answer of `huge:SIZE`: SIZE bytes of text, streamed in pieces of 16 KiB.
fn huge_answer(size: usize) -> Answer {
    const PIECE: usize = 16 * 1024;
    let pieces = (0..size.div_ceil(PIECE))
        .map(|i| piece(i, PIECE.min(size - i * PIECE)))
        .collect();
    Answer::text(pieces, Usage::PLAIN, false)
}

/// Splits a text into stream pieces of about two words each.
fn pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut words = 0;
    for (i, c) in text.char_indices() {
        cur.push(c);
        if c == ' ' {
            words += 1;
            if words == 2 && i + 1 < text.len() {
                out.push(std::mem::take(&mut cur));
                words = 0;
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Splits a JSON arguments text in two pieces (after the first `:`), as APIs stream them.
fn arg_pieces(args: &str) -> Vec<String> {
    match args.find(':') {
        Some(i) => vec![args[..=i].to_string(), args[i + 1..].to_string()],
        None => vec![args.to_string()],
    }
}

/// The answer of a behaviour that answers (not errors, stalls or the like).
pub(crate) fn answer_for(
    b: &Behaviour,
    conv: &convo::Conversation,
    stream: bool,
    body_len: usize,
) -> Option<Answer> {
    let echo = |usage| {
        if stream {
            Answer::text(toks(3), usage, true)
        } else {
            Answer::text(vec![format!("received {body_len} bytes")], usage, true)
        }
    };
    Some(match b {
        Behaviour::Echo => echo(Usage::PLAIN),
        Behaviour::Cached => echo(Usage::CACHED),
        Behaviour::Slow(_) if stream => echo(Usage::PLAIN),
        Behaviour::Slow(_) => Answer::text(vec!["slow answer".into()], Usage::PLAIN, true),
        Behaviour::Stream { n, gap } => {
            let mut a = Answer::text(toks(*n), Usage::PLAIN, true);
            a.gap = *gap;
            a
        }
        Behaviour::Tools => Answer {
            reasoning: Vec::new(),
            text: vec!["Let me check.".into()],
            gap: Duration::ZERO,
            calls: vec![Call {
                call_id: "call_mock".into(),
                toolu_id: "toolu_mock".into(),
                fc_id: "fc_mock".into(),
                name: "get_weather".into(),
                pieces: vec!["{\"city\":".into(), " \"Paris\"}".into()],
            }],
            usage: Usage::PLAIN,
            bare: false,
            fixed_ids: false,
        },
        Behaviour::Think => Answer {
            reasoning: pieces("Thinking it through: the user wants an answer."),
            text: pieces("The answer is 42."),
            gap: Duration::ZERO,
            calls: Vec::new(),
            usage: Usage::THINK,
            bare: false,
            fixed_ids: false,
        },
        Behaviour::Agent => match convo::agent_step(conv) {
            convo::Step::Say(text) => Answer::text(pieces(&text), Usage::PLAIN, false),
            convo::Step::Call { name, arguments } => {
                let args = arguments.to_string();
                Answer {
                    reasoning: Vec::new(),
                    text: Vec::new(),
                    gap: Duration::ZERO,
                    calls: vec![Call {
                        call_id: format!("call_{}", rand_b62(24)),
                        toolu_id: format!("toolu_01{}", rand_b62(22)),
                        fc_id: format!("fc_{}", rand_hex(48)),
                        name,
                        pieces: arg_pieces(&args),
                    }],
                    usage: Usage::PLAIN,
                    bare: false,
                    fixed_ids: false,
                }
            }
        },
        Behaviour::Sse { n, size, gap } => sse_answer(*n, *size, *gap),
        Behaviour::Huge(size) => huge_answer(*size),
        _ => return None,
    })
}

// --- SSE ---------------------------------------------------------------------------------------

/// Counts a stream as dropped early unless it was marked finished.
struct DropGuard {
    state: Arc<MockState>,
    finished: bool,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.state.streams_dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Makes one more event (or piece of body) of an endless response.
pub(crate) type Endless = Box<dyn FnMut() -> Bytes + Send>;

/// What a response body does once its scripted pieces are sent.
pub(crate) enum After {
    /// It ends.
    End,
    /// Nothing more, the connection open, until the client goes.
    Silence,
    /// One more piece from the generator every interval, forever.
    Every(Duration, Endless),
    /// The connection is reset (TCP RST).
    Reset(Option<Conn>),
}

pub(crate) const SSE_TYPE: &str = "text/event-stream; charset=utf-8";

/// An SSE response sending `events` (each after its delay), then doing `after`.
pub(crate) fn sse(state: Arc<MockState>, events: Vec<(Duration, Bytes)>, after: After) -> Response {
    streamed(state, SSE_TYPE, events, after)
}

/// A `content-type` response whose body is `pieces` (each after its delay), then `after`.
pub(crate) fn streamed(
    state: Arc<MockState>,
    content_type: &'static str,
    pieces: Vec<(Duration, Bytes)>,
    after: After,
) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(4);
    tokio::spawn(async move {
        let mut guard = DropGuard {
            state,
            finished: false,
        };
        for (delay, ev) in pieces {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Ok(ev)).await.is_err() {
                return; // the guard counts the drop
            }
        }
        match after {
            After::End => {
                guard.finished = true;
                drop(tx);
            }
            After::Silence => {
                // Silence, until the client gives up (the send fails only once it is gone).
                tx.closed().await;
            }
            After::Every(every, mut next) => loop {
                tokio::time::sleep(every).await;
                if tx.send(Ok(next())).await.is_err() {
                    return;
                }
            },
            After::Reset(conn) => {
                // Let the connection write what was sent, then reset it; the body stays open
                // meanwhile (dropping `tx` would end it cleanly first).
                guard.finished = true;
                tokio::time::sleep(Duration::from_millis(20)).await;
                if let Some(conn) = conn {
                    conn.reset();
                }
                tx.closed().await;
            }
        }
    });
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    (
        [
            ("content-type", content_type),
            ("cache-control", "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Marks where a whole answer is cut ([`cut_answer`]).
const CUT: &str = "\u{1}mock-cut\u{1}";

/// The text of a whole answer that [`cut_answer`] cuts after N pieces.
pub(crate) fn answer_to_cut(n: usize) -> Answer {
    let mut text = toks(n);
    text.push(CUT.into());
    Answer::text(text, Usage::PLAIN, true)
}

/// Non-streamed `stall:N`, `forever:MS`, `reset:N`: status 200 and the start of the whole JSON
/// answer (`whole`, made from [`answer_to_cut`]), up to and with its first N text pieces; then
/// silence, more text every MS ms, or a reset. `None` for any other behaviour.
pub(crate) fn cut_answer(
    state: &Arc<MockState>,
    b: &Behaviour,
    conn: Option<Conn>,
    whole: impl Fn(&Answer) -> Value,
) -> Option<Response> {
    let (n, after) = match b {
        Behaviour::Stall(n) => (*n, After::Silence),
        Behaviour::Forever(every) => {
            let mut i = 1000;
            let next = move || {
                i += 1;
                Bytes::from(format!("tok{} ", i - 1))
            };
            (0, After::Every(*every, Box::new(next)))
        }
        Behaviour::Reset(Some(n)) => (*n, After::Reset(conn)),
        _ => return None,
    };
    let text = whole(&answer_to_cut(n)).to_string();
    let marker = serde_json::to_string(CUT).expect("JSON string");
    let marker = &marker[1..marker.len() - 1];
    let head = match text.find(marker) {
        Some(at) => text[..at].to_string(),
        None => text,
    };
    Some(streamed(
        state.clone(),
        "application/json",
        vec![(Duration::ZERO, Bytes::from(head))],
        after,
    ))
}

/// `malformed`: `200 text/event-stream` whose events are cut JSON, no SSE field at all, not
/// JSON, and an event without `data:`; no end event (the same bytes in every format).
pub(crate) fn malformed(state: Arc<MockState>) -> Response {
    let events: [&[u8]; 5] = [
        b"data: {\"id\": \"chatcmpl-mock\", \"choices\": [\n\n",
        b"this line is not an SSE field at all\n\n",
        b"data: not json either\n\n",
        b"event: content_block_delta\n\n",
        b"event: response.output_text.delta\ndata: {\"type\": \"response.output_text.delta\", \"delta\":\n\n",
    ];
    let events = events
        .iter()
        .map(|e| (Duration::ZERO, Bytes::from_static(e)))
        .collect();
    sse(state, events, After::End)
}

/// `reset`: the request is read, then the connection is reset before a byte of answer.
pub(crate) async fn reset_now(conn: Option<Conn>) -> Response {
    match conn {
        Some(conn) => {
            conn.reset();
            // The connection (and this response with it) is dropped under us.
            std::future::pending::<Response>().await
        }
        None => openai_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "mock: no connection to reset",
            None,
        ),
    }
}

/// The request's connection, for the behaviours that reset it.
pub(crate) fn conn_of(ext: Option<Extension<Conn>>) -> Option<Conn> {
    ext.map(|Extension(c)| c)
}

/// `event: NAME` + `data: JSON` (Anthropic, Responses).
pub(crate) fn named_event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// `data: JSON` (chat completions).
pub(crate) fn data_event(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

// --- errors ------------------------------------------------------------------------------------

/// An OpenAI error body (chat completions, Responses, embeddings, models).
pub(crate) fn openai_error(status: StatusCode, message: &str, code: Option<&str>) -> Response {
    let ty = match status.as_u16() {
        400 | 404 | 409 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "server_error",
    };
    let body = json!({"error": {"message": message, "type": ty, "param": null, "code": code}});
    (status, axum::Json(body)).into_response()
}

pub(crate) fn with_retry_after(mut resp: Response, retry_after: Option<u64>) -> Response {
    if let Some(s) = retry_after {
        resp.headers_mut()
            .insert("retry-after", s.to_string().parse().expect("header value"));
    }
    resp
}

// --- ids, time ---------------------------------------------------------------------------------

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn rand_u64() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        splitmix(t ^ u64::from(std::process::id()))
    });
    splitmix(seed ^ splitmix(COUNTER.fetch_add(1, Ordering::Relaxed)))
}

fn rand_from(n: usize, alphabet: &[u8]) -> String {
    (0..n)
        .map(|_| alphabet[(rand_u64() % alphabet.len() as u64) as usize] as char)
        .collect()
}

/// `n` random base62 characters (ids like Anthropic's `msg_01…`).
pub(crate) fn rand_b62(n: usize) -> String {
    rand_from(
        n,
        b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    )
}

/// `n` random hex digits (ids like OpenAI's `resp_…`).
pub(crate) fn rand_hex(n: usize) -> String {
    rand_from(n, b"0123456789abcdef")
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviours_parse() {
        assert_eq!(Behaviour::parse("echo"), Behaviour::Echo);
        assert_eq!(
            Behaviour::parse("stream:3:50"),
            Behaviour::Stream {
                n: 3,
                gap: Duration::from_millis(50)
            }
        );
        assert_eq!(
            Behaviour::parse("error:429:7"),
            Behaviour::Error {
                code: StatusCode::TOO_MANY_REQUESTS,
                retry_after: Some(7)
            }
        );
        assert_eq!(
            Behaviour::parse("error:503"),
            Behaviour::Error {
                code: StatusCode::SERVICE_UNAVAILABLE,
                retry_after: None
            }
        );
        assert_eq!(Behaviour::parse("gpt-4o"), Behaviour::Unknown);
        assert_eq!(
            Behaviour::parse("sse:200:64"),
            Behaviour::Sse {
                n: 200,
                size: 64,
                gap: Duration::ZERO
            }
        );
        assert_eq!(
            Behaviour::parse("sse:20:8:5"),
            Behaviour::Sse {
                n: 20,
                size: 8,
                gap: Duration::from_millis(5)
            }
        );
        assert_eq!(Behaviour::parse("reset"), Behaviour::Reset(None));
        assert_eq!(Behaviour::parse("reset:3"), Behaviour::Reset(Some(3)));
        assert_eq!(Behaviour::parse("malformed"), Behaviour::Malformed);
        assert_eq!(Behaviour::parse("huge:64mib"), Behaviour::Huge(64 << 20));
        assert_eq!(Behaviour::parse("huge:512KiB"), Behaviour::Huge(512 << 10));
        assert_eq!(Behaviour::parse("huge:1000"), Behaviour::Huge(1000));
        assert_eq!(Behaviour::parse("huge:lots"), Behaviour::Unknown);
        assert_eq!(
            Behaviour::parse("forever"),
            Behaviour::Forever(Duration::from_millis(10))
        );
        assert_eq!(
            Behaviour::parse("forever:50"),
            Behaviour::Forever(Duration::from_millis(50))
        );
    }

    #[test]
    fn pieces_are_exact_and_distinct() {
        assert_eq!(piece(7, 64).len(), 64);
        assert_eq!(piece(123456, 3), "123");
        assert_ne!(piece(1, 32), piece(2, 32));
        assert!(piece(9, 100)
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b':'));
        let text = String::from_utf8(openai_sse_bytes("m", 3, 8, false)).unwrap();
        // role chunk, 3 pieces, finish chunk, [DONE]
        assert_eq!(text.matches("data: ").count(), 1 + 3 + 1 + 1, "{text}");
        assert!(text.contains(&piece(2, 8)));
        assert!(text.ends_with("data: [DONE]\n\n"));
        let with_usage = String::from_utf8(openai_sse_bytes("m", 3, 8, true)).unwrap();
        assert_eq!(with_usage.matches("data: ").count(), 7);
        let huge = huge_answer(40_000);
        assert_eq!(huge.full_text().len(), 40_000);
        assert_eq!(huge.text.len(), 3);
    }

    #[test]
    fn text_pieces_rejoin() {
        for t in ["The answer is 42.", "a", "The file says: x y z w"] {
            assert_eq!(pieces(t).concat(), t);
        }
        assert_eq!(pieces("The answer is 42.").len(), 2);
        assert_eq!(
            arg_pieces("{\"cmd\":\"cat /x\"}"),
            vec!["{\"cmd\":", "\"cat /x\"}"]
        );
    }

    #[test]
    fn ids_are_distinct() {
        assert_ne!(rand_b62(22), rand_b62(22));
        assert_eq!(rand_hex(48).len(), 48);
    }
}
