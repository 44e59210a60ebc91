//! A fault-injecting mock upstream for tests and load runs: real HTTP/1.1 (hyper) speaking
//! OpenAI's chat completions (`POST /v1/chat/completions`) and Anthropic's Messages API
//! (`POST /v1/messages`), whose behaviour is chosen per request by the model name, or by an
//! `x-fault` header (which wins when both are there; the proxy does not forward client headers,
//! so through the proxy the model name, i.e. the model's `upstream_id`, is what picks it).
//!
//! | name | behaviour |
//! |---|---|
//! | `ok` | a short answer (8 chunks of 16 bytes when streamed) |
//! | `ok-sse-NxS[-gapMS]` | N content chunks of S bytes each (MS ms apart), then the finish chunk, the usage chunk (OpenAI, when asked) and `[DONE]`; not streamed: one answer holding the same text |
//! | `fault-slow-first-byte-MS` | waits MS ms before the response header, then answers like `ok` |
//! | `fault-stall-after-N` | N chunks, then silence with the connection open |
//! | `fault-reset` | reads the request, then resets the connection (TCP RST) without a byte |
//! | `fault-reset-after-N` | N chunks, then a reset |
//! | `fault-CODE[-ra-S]` | status CODE (e.g. 429, 500, 503) with the format's error body and `Retry-After: S` when given |
//! | `fault-malformed-sse` | `200 text/event-stream` whose events are not JSON, an event without `data:`, and no `[DONE]` |
//! | `fault-endless[-gapMS]` | chunks every MS ms (default 10) forever |
//! | `fault-huge-SIZE` | SIZE (`64mib`, `512kib`, `1000`) bytes of answer text, with `content-length` when not streamed |
//!
//! Content is deterministic ([`piece`]), so a load generator can compare every byte a client
//! receives with [`openai_stream`]. `GET /stats` counts requests per behaviour;
//! `PUT /force` with a behaviour name as the body makes every request behave so (an empty body
//! undoes it), for a provider that goes bad and then recovers.
//!
//! `dualrouter mock-upstream --listen ADDR` runs it as a process; tests start it in-process
//! with [`FaultMock::start`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

/// The largest request body the mock reads.
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

type Body = BoxBody<Bytes, std::io::Error>;

/// Which wire format a request speaks (from its path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
}

/// A parsed behaviour name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    Ok {
        chunks: usize,
        size: usize,
        gap: Duration,
    },
    SlowFirstByte(Duration),
    StallAfter(usize),
    Reset {
        after: Option<usize>,
    },
    Status {
        code: u16,
        retry_after: Option<u64>,
    },
    MalformedSse,
    Endless {
        gap: Duration,
    },
    Huge(usize),
}

impl Behaviour {
    /// Reads a behaviour name (see the module's table); `None` for an unknown one.
    pub fn parse(name: &str) -> Option<Behaviour> {
        let parts: Vec<&str> = name.trim().split('-').collect();
        let ms = |s: &str| s.parse::<u64>().ok().map(Duration::from_millis);
        let gap = |p: &[&str]| match p {
            [] => Some(Duration::ZERO),
            [g] => g.strip_prefix("gap").and_then(ms),
            _ => None,
        };
        match parts.as_slice() {
            ["ok"] => Some(Behaviour::Ok {
                chunks: 8,
                size: 16,
                gap: Duration::ZERO,
            }),
            ["ok", "sse", dims, rest @ ..] => {
                let (n, s) = dims.split_once('x')?;
                Some(Behaviour::Ok {
                    chunks: n.parse().ok()?,
                    size: s.parse().ok()?,
                    gap: gap(rest)?,
                })
            }
            ["fault", "slow", "first", "byte", t] => Some(Behaviour::SlowFirstByte(ms(t)?)),
            ["fault", "stall", "after", n] => Some(Behaviour::StallAfter(n.parse().ok()?)),
            ["fault", "reset"] => Some(Behaviour::Reset { after: None }),
            ["fault", "reset", "after", n] => Some(Behaviour::Reset {
                after: Some(n.parse().ok()?),
            }),
            ["fault", "malformed", "sse"] => Some(Behaviour::MalformedSse),
            ["fault", "endless", rest @ ..] => Some(Behaviour::Endless {
                gap: if rest.is_empty() {
                    Duration::from_millis(10)
                } else {
                    gap(rest)?
                },
            }),
            ["fault", "huge", size] => Some(Behaviour::Huge(parse_size(size)?)),
            ["fault", code, rest @ ..] => {
                let code: u16 = code.parse().ok()?;
                if !(400..=599).contains(&code) {
                    return None;
                }
                let retry_after = match rest {
                    [] => None,
                    ["ra", s] => Some(s.parse().ok()?),
                    _ => return None,
                };
                Some(Behaviour::Status { code, retry_after })
            }
            _ => None,
        }
    }
}

/// `64mib`, `512kib`, `1000`.
fn parse_size(s: &str) -> Option<usize> {
    let s = s.to_ascii_lowercase();
    let (num, mult) = if let Some(n) = s.strip_suffix("mib") {
        (n, 1024 * 1024)
    } else if let Some(n) = s.strip_suffix("kib") {
        (n, 1024)
    } else {
        (s.as_str(), 1)
    };
    num.parse::<usize>().ok()?.checked_mul(mult)
}

/// The text of content chunk `i`, exactly `size` bytes of `[0-9a-z:]` (JSON-safe), different
/// for every `i`, so a reordered, lost or doubled chunk shows.
pub fn piece(i: usize, size: usize) -> String {
    let head = format!("{i}:");
    let mut s = String::with_capacity(size);
    for (j, c) in head.chars().enumerate() {
        if j < size {
            s.push(c);
        }
    }
    let mut k = s.len();
    while s.len() < size {
        s.push((b'a' + ((i * 31 + k * 7) % 26) as u8) as char);
        k += 1;
    }
    s
}

const OPENAI_ID: &str = "chatcmpl-fault";
const ANTHROPIC_ID: &str = "msg_fault";

fn openai_chunk(model: &str, delta: Value, finish: Value) -> Bytes {
    let c = json!({
        "id": OPENAI_ID, "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    Bytes::from(format!("data: {c}\n\n"))
}

fn usage(chunks: usize) -> Value {
    json!({"prompt_tokens": 11, "completion_tokens": chunks, "total_tokens": 11 + chunks})
}

/// Content chunk `i` as an SSE event of `wire`.
fn content_event(wire: Wire, model: &str, i: usize, size: usize) -> Bytes {
    match wire {
        Wire::OpenAi => openai_chunk(model, json!({"content": piece(i, size)}), Value::Null),
        Wire::Anthropic => {
            let d = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece(i, size)}});
            Bytes::from(format!("event: content_block_delta\ndata: {d}\n\n"))
        }
    }
}

/// What comes before the content chunks.
fn stream_head(wire: Wire, model: &str) -> Vec<Bytes> {
    match wire {
        Wire::OpenAi => vec![openai_chunk(
            model,
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )],
        Wire::Anthropic => {
            let start = json!({"type": "message_start", "message": {
                "id": ANTHROPIC_ID, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 11, "output_tokens": 1}}});
            let block = json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}});
            vec![
                Bytes::from(format!("event: message_start\ndata: {start}\n\n")),
                Bytes::from(format!("event: content_block_start\ndata: {block}\n\n")),
            ]
        }
    }
}

/// What comes after the content chunks.
fn stream_tail(wire: Wire, model: &str, chunks: usize, include_usage: bool) -> Vec<Bytes> {
    match wire {
        Wire::OpenAi => {
            let mut v = vec![openai_chunk(model, json!({}), json!("stop"))];
            if include_usage {
                let u = json!({"id": OPENAI_ID, "object": "chat.completion.chunk", "created": 1,
                    "model": model, "choices": [], "usage": usage(chunks)});
                v.push(Bytes::from(format!("data: {u}\n\n")));
            }
            v.push(Bytes::from_static(b"data: [DONE]\n\n"));
            v
        }
        Wire::Anthropic => {
            let stop = json!({"type": "content_block_stop", "index": 0});
            let delta = json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": chunks}});
            vec![
                Bytes::from(format!("event: content_block_stop\ndata: {stop}\n\n")),
                Bytes::from(format!("event: message_delta\ndata: {delta}\n\n")),
                Bytes::from_static(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
            ]
        }
    }
}

/// Every byte of an `ok-sse-NxS` OpenAI stream as this mock sends it for `model` (the
/// upstream model id). With `include_usage` false it is also what an OpenAI client of the
/// proxy must receive (the proxy drops the usage chunk it asked for on the client's behalf).
pub fn openai_stream(model: &str, chunks: usize, size: usize, include_usage: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for b in stream_head(Wire::OpenAi, model) {
        out.extend_from_slice(&b);
    }
    for i in 0..chunks {
        out.extend_from_slice(&content_event(Wire::OpenAi, model, i, size));
    }
    for b in stream_tail(Wire::OpenAi, model, chunks, include_usage) {
        out.extend_from_slice(&b);
    }
    out
}

/// A whole (non-streamed) answer whose text is `text`.
fn whole_answer(wire: Wire, model: &str, text: &str, chunks: usize) -> Value {
    match wire {
        Wire::OpenAi => json!({
            "id": OPENAI_ID, "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage(chunks),
        }),
        Wire::Anthropic => json!({
            "id": ANTHROPIC_ID, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 11, "output_tokens": chunks},
        }),
    }
}

fn error_body(wire: Wire, code: u16, message: &str) -> Value {
    match wire {
        Wire::OpenAi => {
            json!({"error": {"message": message, "type": if code == 429 { "rate_limit_error" } else { "server_error" }, "param": null, "code": null}})
        }
        Wire::Anthropic => {
            let kind = match code {
                429 => "rate_limit_error",
                503 | 529 => "overloaded_error",
                400..=499 => "invalid_request_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
    }
}

/// Request counts, per behaviour name.
#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    /// Streams the client (the proxy) closed before their end.
    pub streams_dropped: AtomicU64,
    by_name: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    pub fn count(&self, name: &str) -> u64 {
        self.by_name
            .lock()
            .map(|m| m.get(name).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn snapshot(&self) -> Value {
        let by = self.by_name.lock().map(|m| m.clone()).unwrap_or_default();
        json!({
            "requests": self.requests.load(Ordering::SeqCst),
            "streams_dropped": self.streams_dropped.load(Ordering::SeqCst),
            "by_behaviour": by,
        })
    }
}

#[derive(Default)]
struct Shared {
    stats: Stats,
    forced: Mutex<Option<String>>,
}

/// A running mock (stops when dropped).
pub struct FaultMock {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultMock {
    /// Binds `listen` (port 0: any free port) and serves on the current tokio runtime.
    pub async fn start(listen: &str) -> std::io::Result<FaultMock> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(serve(listener, shared.clone()));
        Ok(FaultMock { addr, shared, task })
    }

    /// `http://ADDR/v1`, a provider's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    pub fn requests(&self) -> u64 {
        self.shared.stats.requests.load(Ordering::SeqCst)
    }

    /// Every request behaves as `behaviour`, whatever its model; `None` undoes it.
    pub fn force(&self, behaviour: Option<&str>) {
        if let Ok(mut f) = self.shared.forced.lock() {
            *f = behaviour.map(str::to_string);
        }
    }
}

impl Drop for FaultMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `dualrouter mock-upstream`: serves until killed.
pub fn run_standalone(listen: &str, threads: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mock = FaultMock::start(listen).await?;
        println!("fault mock upstream listening on {}", mock.base_url());
        futures::future::pending::<()>().await;
        Ok(())
    })
}

async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let reset = Arc::new(tokio::sync::Notify::new());
            let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
            let svc = {
                let reset = reset.clone();
                hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    let reset = reset.clone();
                    async move { Ok::<_, Infallible>(handle(req, &shared, reset).await) }
                })
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc);
            tokio::select! {
                _ = conn => {}
                _ = reset.notified() => {
                    // SO_LINGER 0: closing the socket sends RST instead of FIN. The socket is
                    // still open here (the connection future owns it until dropped below).
                    abort_on_close(fd);
                }
            }
        });
    }
}

fn abort_on_close(fd: std::os::fd::RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is the connection's socket, open until the caller drops the connection; the
    // option value is a properly sized `linger`.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let body: Bytes = body.into();
    let mut r = Response::new(
        Full::new(body)
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    full(status, "application/json", v.to_string())
}

/// A streamed body fed by a task: each item waits its delay, then is sent; `then` says what
/// happens after the last one.
enum Then {
    End,
    Stall,
    Reset(Arc<tokio::sync::Notify>),
    Forever { gap: Duration, wire: Wire },
}

fn streamed(
    shared: &Arc<Shared>,
    content_type: &str,
    items: Vec<(Duration, Bytes)>,
    then: Then,
    model: String,
) -> Response<Body> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let shared = shared.clone();
    tokio::spawn(async move {
        for (delay, b) in items {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(b).await.is_err() {
                shared.stats.streams_dropped.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
        match then {
            Then::End => {}
            Then::Stall => {
                tx.closed().await;
                shared.stats.streams_dropped.fetch_add(1, Ordering::SeqCst);
            }
            Then::Reset(n) => {
                // Give hyper a moment to write what was sent, then reset. The body stays open
                // meanwhile (dropping `tx` would end it cleanly first).
                tokio::time::sleep(Duration::from_millis(20)).await;
                n.notify_one();
                tx.closed().await;
            }
            Then::Forever { gap, wire } => {
                let mut i = 0usize;
                loop {
                    tokio::time::sleep(gap).await;
                    if tx.send(content_event(wire, &model, i, 32)).await.is_err() {
                        shared.stats.streams_dropped.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    i += 1;
                }
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|b| Ok::<_, std::io::Error>(Frame::data(b))))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    r
}

async fn handle(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    reset: Arc<tokio::sync::Notify>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let header_fault = req
        .headers()
        .get("x-fault")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match http_body_util::Limited::new(req.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"error": {"message": "mock: body too large or broken"}}),
            )
        }
    };
    let wire = match (method.as_str(), path.as_str()) {
        ("GET", "/stats") => return json_response(StatusCode::OK, &shared.stats.snapshot()),
        ("PUT", "/force") => {
            let text = String::from_utf8_lossy(&body).trim().to_string();
            if !text.is_empty() && Behaviour::parse(&text).is_none() {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": {"message": format!("unknown behaviour '{text}'")}}),
                );
            }
            if let Ok(mut f) = shared.forced.lock() {
                *f = (!text.is_empty()).then_some(text.clone());
            }
            return json_response(StatusCode::OK, &json!({"forced": text}));
        }
        ("GET", "/healthz") => return json_response(StatusCode::OK, &json!({"status": "ok"})),
        ("POST", "/v1/chat/completions") => Wire::OpenAi,
        ("POST", "/v1/messages") => Wire::Anthropic,
        _ => {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({"error": {"message": format!("mock: no route for {method} {path}")}}),
            )
        }
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &error_body(wire, 400, "mock: the body is not JSON"),
        );
    };
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let forced = shared.forced.lock().ok().and_then(|f| f.clone());
    let name = forced.or(header_fault).unwrap_or_else(|| model.clone());
    shared.stats.requests.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut m) = shared.stats.by_name.lock() {
        *m.entry(name.clone()).or_insert(0) += 1;
    }
    let Some(behaviour) = Behaviour::parse(&name) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &error_body(wire, 404, &format!("mock: unknown behaviour '{name}'")),
        );
    };
    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    respond(shared, behaviour, wire, model, stream, include_usage, reset).await
}

fn sse_type() -> &'static str {
    "text/event-stream"
}

async fn respond(
    shared: &Arc<Shared>,
    behaviour: Behaviour,
    wire: Wire,
    model: String,
    stream: bool,
    include_usage: bool,
    reset: Arc<tokio::sync::Notify>,
) -> Response<Body> {
    let now = |b: Bytes| (Duration::ZERO, b);
    // A stream of `n` content chunks (`gap` apart), with or without its head and tail.
    let chunks = |n: usize, size: usize, gap: Duration, tail: bool| {
        let mut v: Vec<(Duration, Bytes)> =
            stream_head(wire, &model).into_iter().map(now).collect();
        v.extend((0..n).map(|i| (gap, content_event(wire, &model, i, size))));
        if tail {
            v.extend(
                stream_tail(wire, &model, n, include_usage)
                    .into_iter()
                    .map(now),
            );
        }
        v
    };
    // Not streamed, cut after `n` chunks of text: the start of a JSON answer.
    let partial_json = |n: usize| {
        let text: String = (0..n).map(|i| piece(i, 16)).collect();
        let whole = whole_answer(wire, &model, &text, n).to_string();
        let cut = whole
            .find(&text)
            .map_or(whole.len() / 2, |at| at + text.len());
        Bytes::from(whole[..cut].to_string())
    };
    match behaviour {
        Behaviour::Ok {
            chunks: n,
            size,
            gap,
        } if stream => streamed(
            shared,
            sse_type(),
            chunks(n, size, gap, true),
            Then::End,
            model,
        ),
        Behaviour::Ok {
            chunks: n,
            size,
            gap,
        } => {
            if !gap.is_zero() {
                tokio::time::sleep(gap * n as u32).await;
            }
            let text: String = (0..n).map(|i| piece(i, size)).collect();
            json_response(StatusCode::OK, &whole_answer(wire, &model, &text, n))
        }
        Behaviour::SlowFirstByte(wait) => {
            tokio::time::sleep(wait).await;
            Box::pin(respond(
                shared,
                Behaviour::parse("ok").unwrap_or(Behaviour::Ok {
                    chunks: 8,
                    size: 16,
                    gap: Duration::ZERO,
                }),
                wire,
                model,
                stream,
                include_usage,
                reset,
            ))
            .await
        }
        Behaviour::StallAfter(n) if stream => streamed(
            shared,
            sse_type(),
            chunks(n, 16, Duration::ZERO, false),
            Then::Stall,
            model,
        ),
        Behaviour::StallAfter(n) => streamed(
            shared,
            "application/json",
            vec![now(partial_json(n))],
            Then::Stall,
            model,
        ),
        Behaviour::Reset { after: None } => {
            reset.notify_one();
            // Never answered: the connection is reset under this response.
            futures::future::pending::<()>().await;
            json_response(StatusCode::OK, &json!({}))
        }
        Behaviour::Reset { after: Some(n) } if stream => streamed(
            shared,
            sse_type(),
            chunks(n, 16, Duration::ZERO, false),
            Then::Reset(reset),
            model,
        ),
        Behaviour::Reset { after: Some(n) } => streamed(
            shared,
            "application/json",
            vec![now(partial_json(n))],
            Then::Reset(reset),
            model,
        ),
        Behaviour::Status { code, retry_after } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = json_response(
                status,
                &error_body(wire, code, &format!("mock: injected {code}")),
            );
            if let Some(s) = retry_after {
                if let Ok(v) = s.to_string().parse() {
                    r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
                }
            }
            r
        }
        Behaviour::MalformedSse => {
            let items = vec![
                now(Bytes::from_static(
                    b"data: {\"id\": \"chatcmpl-fault\", \"choices\": [\n\n",
                )),
                now(Bytes::from_static(
                    b"this line is not an SSE field at all\n\n",
                )),
                now(Bytes::from_static(b"data: not json either\n\n")),
                now(Bytes::from_static(b"event: content_block_delta\n\n")),
            ];
            streamed(shared, sse_type(), items, Then::End, model)
        }
        Behaviour::Endless { gap } => {
            let head = if stream {
                stream_head(wire, &model).into_iter().map(now).collect()
            } else {
                vec![now(partial_json(1))]
            };
            let ct = if stream {
                sse_type()
            } else {
                "application/json"
            };
            streamed(shared, ct, head, Then::Forever { gap, wire }, model)
        }
        Behaviour::Huge(bytes) if stream => {
            const PIECE: usize = 16 * 1024;
            let n = bytes.div_ceil(PIECE);
            streamed(
                shared,
                sse_type(),
                chunks(n, PIECE, Duration::ZERO, true),
                Then::End,
                model,
            )
        }
        Behaviour::Huge(bytes) => {
            let text = piece(0, bytes);
            json_response(StatusCode::OK, &whole_answer(wire, &model, &text, 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(
            Behaviour::parse("ok-sse-200x64"),
            Some(Behaviour::Ok {
                chunks: 200,
                size: 64,
                gap: Duration::ZERO
            })
        );
        assert_eq!(
            Behaviour::parse("ok-sse-20x8-gap5"),
            Some(Behaviour::Ok {
                chunks: 20,
                size: 8,
                gap: Duration::from_millis(5)
            })
        );
        assert_eq!(
            Behaviour::parse("fault-slow-first-byte-2000"),
            Some(Behaviour::SlowFirstByte(Duration::from_secs(2)))
        );
        assert_eq!(
            Behaviour::parse("fault-stall-after-50"),
            Some(Behaviour::StallAfter(50))
        );
        assert_eq!(
            Behaviour::parse("fault-reset"),
            Some(Behaviour::Reset { after: None })
        );
        assert_eq!(
            Behaviour::parse("fault-429-ra-3"),
            Some(Behaviour::Status {
                code: 429,
                retry_after: Some(3)
            })
        );
        assert_eq!(
            Behaviour::parse("fault-503"),
            Some(Behaviour::Status {
                code: 503,
                retry_after: None
            })
        );
        assert_eq!(
            Behaviour::parse("fault-huge-64mib"),
            Some(Behaviour::Huge(64 << 20))
        );
        assert_eq!(
            Behaviour::parse("fault-endless"),
            Some(Behaviour::Endless {
                gap: Duration::from_millis(10)
            })
        );
        for bad in [
            "",
            "okay",
            "fault-200",
            "fault-stall-after-x",
            "ok-sse-3",
            "fault-503-ra",
        ] {
            assert_eq!(Behaviour::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn pieces_are_exact_and_distinct() {
        assert_eq!(piece(7, 64).len(), 64);
        assert_eq!(piece(123456, 3).len(), 3);
        assert_ne!(piece(1, 32), piece(2, 32));
        assert!(piece(9, 100)
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b':'));
        let s = openai_stream("m", 3, 8, false);
        let text = String::from_utf8(s).unwrap();
        assert_eq!(text.matches("data: ").count(), 1 + 3 + 1 + 1);
        assert!(text.ends_with("data: [DONE]\n\n"));
    }
}
