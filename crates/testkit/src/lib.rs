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
//!
//! The **upstream model id** in the request picks the behaviour, one naming scheme for all three
//! formats (the proxy rewrites public ids to these):
//!
//! | upstream model id | behaviour |
//! |---|---|
//! | `echo`            | text "received N bytes" (N: the request body's size); streamed as "tok0 tok1 tok2 " |
//! | `stream:N:MS`     | a stream of N text pieces "tok0 " … "tok{N-1} ", MS ms apart, then the end (chat: usage chunk if asked, `[DONE]`); a whole answer of the same text without `stream` |
//! | `slow:MS`         | waits MS ms, then answers "slow answer" (streamed like `echo`) |
//! | `stall:N`         | a stream (even without `stream`) that sends its start and N text pieces, then nothing, never ending |
//! | `forever:MS`      | a stream (even without `stream`) that sends its start, then a text piece every MS ms, forever |
//! | `fail:N`          | a stream (even without `stream`) that sends its start and N text pieces, then the format's error event (chat: `data: {"error":…}`, Anthropic: `event: error`, Responses: `response.failed`) and ends |
//! | `error:CODE[:S]`  | status CODE with the format's error body (message "mock upstream error"), and `Retry-After: S` when S is given |
//! | `tools`           | text "Let me check." then a `get_weather` tool call `{"city": "Paris"}` (ids `call_mock` / `toolu_mock` / `fc_mock`); arguments streamed in two pieces |
//! | `agent`           | a scripted coding-agent turn (below) |
//! | `think`           | reasoning "Thinking it through: the user wants an answer." then text "The answer is 42." (chat: `reasoning_content`; Anthropic: a `thinking` block with a `signature`; Responses: a `reasoning` item with a summary, and `encrypted_content` when `include` has `reasoning.encrypted_content`) |
//! | `cached`          | like `echo`, but the usage reports 1000 input tokens of which 800 are cache reads (Anthropic: `input_tokens` 100, `cache_read_input_tokens` 800, `cache_creation_input_tokens` 100) |
//! | any id [`Mock::list`] set | like `echo` |
//! | anything else     | 404 in the format's error body |
//!
//! Usage, unless said otherwise: 11 input tokens (none cached), 7 output tokens; `think` reports 27
//! output tokens of which 20 are reasoning.
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
//! recovers). Every request is recorded ([`Seen`]: method, path, query, headers, body, JSON).
//!
//! The chat streams of `echo`, `stream`, `stall`, `forever`, `fail` and `cached` carry only the
//! content chunks (no role chunk, no `finish_reason` chunk), as the mock the tests used before did;
//! `tools`, `agent` and `think` send the full sequence the API sends.
//!
//! [`agents`] builds the commands that run the real agent clients (Claude Code, the Codex CLI,
//! the OpenAI Agents SDK) against a base URL.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};

pub mod agents;
mod anthropic;
mod chat;
mod convo;
pub mod freshness;
mod responses;

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
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
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
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
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
            _ => Behaviour::Unknown,
        }
    }
}

/// The behaviour a request gets: the forced one, else its model id; a listed id is `echo`.
pub(crate) fn behaviour_for(state: &MockState, model: &str) -> (String, Behaviour) {
    let forced = state.forced.lock().expect("lock").clone();
    let mut name = forced.unwrap_or_else(|| model.to_string());
    if state.listed.lock().expect("lock").contains(&name) {
        name = "echo".into();
    }
    let b = Behaviour::parse(&name);
    (name, b)
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
        },
        Behaviour::Think => Answer {
            reasoning: pieces("Thinking it through: the user wants an answer."),
            text: pieces("The answer is 42."),
            gap: Duration::ZERO,
            calls: Vec::new(),
            usage: Usage::THINK,
            bare: false,
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
                }
            }
        },
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

/// Makes one more event of an endless stream.
pub(crate) type Endless = Box<dyn FnMut() -> Bytes + Send>;

/// An SSE response sending `events` (each after its delay), then, with `then`, one event from
/// the generator every interval forever (a zero-sized generator list: silence forever).
pub(crate) fn sse(
    state: Arc<MockState>,
    events: Vec<(Duration, Bytes)>,
    then: Option<(Duration, Option<Endless>)>,
) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(4);
    tokio::spawn(async move {
        let mut guard = DropGuard {
            state,
            finished: false,
        };
        for (delay, ev) in events {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Ok(ev)).await.is_err() {
                return; // the guard counts the drop
            }
        }
        match then {
            Some((every, Some(mut next))) => loop {
                tokio::time::sleep(every).await;
                if tx.send(Ok(next())).await.is_err() {
                    return;
                }
            },
            Some((_, None)) => {
                // Silence, until the client gives up (the send fails only once it is gone).
                tx.closed().await;
            }
            None => {
                guard.finished = true;
                drop(tx);
            }
        }
    });
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    (
        [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
        ],
        body,
    )
        .into_response()
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
