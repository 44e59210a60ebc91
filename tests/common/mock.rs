//! A mock OpenAI-compatible upstream on 127.0.0.1:0. The upstream model id in the request picks
//! the behaviour (the proxy rewrites public ids to these):
//!
//! | upstream model id | behaviour |
//! |---|---|
//! | `echo`            | a chat.completion whose content reports the body size it received; a stream of 3 chunks when `stream` is set |
//! | `stream:N:MS`     | N content chunks, MS ms apart, then usage (if asked) and `[DONE]` |
//! | `slow:MS`         | waits MS ms before answering like `echo` |
//! | `stall:N`         | N stream chunks, then silence forever |
//! | `forever:MS`      | a stream chunk every MS ms, forever |
//! | `error:CODE[:S]`  | status CODE with an OpenAI error body (and `Retry-After: S` when S is given) |
//! | `tools`           | text "Let me check." and a `get_weather` tool call for Paris (streamed in pieces when `stream` is set) |
//! | any id [`Mock::list`] set | like `echo`; `GET /v1/models` lists these ids (503 while forced to an `error:…`) |
//!
//! [`Mock::start_anthropic`] starts the same kind of mock speaking Anthropic's Messages API
//! (`anthropic_mock.rs`).
//!
//! [`Mock::force`] makes every request behave as one of these whatever its model id (a provider
//! that goes bad, then recovers). Every request is recorded (headers, body) so tests can check
//! what reached the upstream.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct Seen {
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
pub struct MockState {
    pub requests: Mutex<Vec<Seen>>,
    pub count: AtomicUsize,
    /// Streams whose body was dropped before it finished (the proxy closed the connection).
    pub streams_dropped: AtomicUsize,
    /// A behaviour every request gets, whatever its model id.
    pub forced: Mutex<Option<String>>,
    /// What `GET /v1/models` lists (it answers 503 while a forced `error:…` behaviour holds).
    pub listed: Mutex<Vec<String>>,
    /// `GET /v1/models` requests received, and the headers of the last one.
    pub list_count: AtomicUsize,
    pub list_headers: Mutex<Option<HeaderMap>>,
}

pub struct Mock {
    pub addr: std::net::SocketAddr,
    pub state: Arc<MockState>,
    task: tokio::task::JoinHandle<()>,
}

impl Mock {
    /// Plain HTTP mock.
    pub async fn start() -> Mock {
        let state = Arc::new(MockState::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Mock { addr, state, task }
    }

    /// Plain HTTP mock of Anthropic's Messages API (`POST /v1/messages`).
    pub async fn start_anthropic() -> Mock {
        let state = Arc::new(MockState::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = super::anthropic_mock::router(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Mock { addr, state, task }
    }

    /// HTTPS mock with a certificate for `localhost` signed by its own CA; returns the CA PEM.
    pub async fn start_tls() -> (Mock, String) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "dualrouter test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();

        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let certs = vec![leaf.der().clone()];
        let key =
            tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
                .unwrap();
        let tls = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let state = Arc::new(MockState::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
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

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn count(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Seen {
        self.state
            .requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request reached the mock")
    }

    /// Every request behaves as `behaviour` (a model id of the table above); `None` undoes it.
    pub fn force(&self, behaviour: Option<&str>) {
        *self.state.forced.lock().unwrap() = behaviour.map(str::to_string);
    }

    /// What `GET /v1/models` lists from now on.
    pub fn list(&self, ids: &[&str]) {
        *self.state.listed.lock().unwrap() = ids.iter().map(|s| s.to_string()).collect();
    }

    pub fn streams_dropped(&self) -> usize {
        self.state.streams_dropped.load(Ordering::SeqCst)
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", axum::routing::get(list_models))
        .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
        .with_state(state)
}

/// `GET /v1/models`: the listed models, or 503 while the mock is forced to fail.
async fn list_models(State(state): State<Arc<MockState>>, headers: HeaderMap) -> Response {
    state.list_count.fetch_add(1, Ordering::SeqCst);
    *state.list_headers.lock().unwrap() = Some(headers);
    let forced = state.forced.lock().unwrap().clone();
    if forced.is_some_and(|f| f.starts_with("error:")) {
        return (StatusCode::SERVICE_UNAVAILABLE, "{}").into_response();
    }
    let data: Vec<Value> = state
        .listed
        .lock()
        .unwrap()
        .iter()
        .map(|id| json!({"id": id, "object": "model", "owned_by": "mock"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

fn completion(model: &str, content: &str) -> Value {
    json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    })
}

fn chunk(model: &str, i: usize) -> Bytes {
    let c = json!({
        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [{"index": 0, "delta": {"content": format!("tok{i} ")}, "finish_reason": null}]
    });
    Bytes::from(format!("data: {c}\n\n"))
}

fn usage_chunk(model: &str) -> Bytes {
    let c = json!({
        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    });
    Bytes::from(format!("data: {c}\n\n"))
}

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

pub(crate) fn sse(
    state: Arc<MockState>,
    events: Vec<(Duration, Bytes)>,
    then_forever: Option<Duration>,
    model: String,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(4);
    tokio::spawn(async move {
        let mut guard = DropGuard {
            state,
            finished: false,
        };
        for (delay, ev) in events {
            tokio::time::sleep(delay).await;
            if tx.send(Ok(ev)).await.is_err() {
                return; // guard counts the drop
            }
        }
        match then_forever {
            Some(every) => {
                let mut i = 1000;
                loop {
                    tokio::time::sleep(every).await;
                    if tx.send(Ok(chunk(&model, i))).await.is_err() {
                        return;
                    }
                    i += 1;
                }
            }
            None => {
                guard.finished = true;
                // Keep the stream open only until the receiver finishes reading.
                drop(tx);
            }
        }
    });
    let body = Body::from_stream(tokio_stream_from(rx));
    ([("content-type", "text/event-stream")], body).into_response()
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::convert::Infallible>>,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn chat(State(state): State<Arc<MockState>>, headers: HeaderMap, body: Bytes) -> Response {
    state.count.fetch_add(1, Ordering::SeqCst);
    state.requests.lock().unwrap().push(Seen {
        headers: headers.clone(),
        body: body.clone(),
    });
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "mock: not JSON").into_response();
    };
    let forced = state.forced.lock().unwrap().clone();
    let mut model = forced.unwrap_or_else(|| req["model"].as_str().unwrap_or("").to_string());
    // A model `GET /v1/models` lists is served like `echo`.
    if state.listed.lock().unwrap().contains(&model) {
        model = "echo".into();
    }
    let include_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let parts: Vec<&str> = model.split(':').collect();
    let num = |i: usize| {
        parts
            .get(i)
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(0)
    };
    match parts[0] {
        "echo" if req["stream"] == json!(true) => {
            let mut events: Vec<(Duration, Bytes)> =
                (0..3).map(|i| (Duration::ZERO, chunk(&model, i))).collect();
            if include_usage {
                events.push((Duration::ZERO, usage_chunk(&model)));
            }
            events.push((Duration::ZERO, Bytes::from_static(b"data: [DONE]\n\n")));
            sse(state.clone(), events, None, model)
        }
        "echo" => axum::Json(completion(
            &model,
            &format!("received {} bytes", body.len()),
        ))
        .into_response(),
        "tools" if req["stream"] == json!(true) => {
            let c = |delta: Value, finish: Value| {
                let c = json!({
                    "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
                });
                (Duration::ZERO, Bytes::from(format!("data: {c}\n\n")))
            };
            let mut events = vec![
                c(json!({"role": "assistant", "content": ""}), Value::Null),
                c(json!({"content": "Let me check."}), Value::Null),
                c(
                    json!({"tool_calls": [{"index": 0, "id": "call_mock", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                    Value::Null,
                ),
                c(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
                    Value::Null,
                ),
                c(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": " \"Paris\"}"}}]}),
                    Value::Null,
                ),
                c(json!({}), json!("tool_calls")),
            ];
            if include_usage {
                events.push((Duration::ZERO, usage_chunk(&model)));
            }
            events.push((Duration::ZERO, Bytes::from_static(b"data: [DONE]\n\n")));
            sse(state.clone(), events, None, model)
        }
        "tools" => axum::Json(json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Let me check.",
                "tool_calls": [{"id": "call_mock", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        }))
        .into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_millis(num(1))).await;
            axum::Json(completion(&model, "slow answer")).into_response()
        }
        "error" => {
            let code =
                StatusCode::from_u16(num(1) as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let err = json!({"error": {"message": "mock upstream error", "type": "server_error", "param": null, "code": null}});
            let mut resp = (code, axum::Json(err)).into_response();
            if parts.len() > 2 {
                resp.headers_mut()
                    .insert("retry-after", num(2).to_string().parse().unwrap());
            }
            resp
        }
        "stream" => {
            let gap = Duration::from_millis(num(2));
            let mut events: Vec<(Duration, Bytes)> = (0..num(1) as usize)
                .map(|i| (gap, chunk(&model, i)))
                .collect();
            if include_usage {
                events.push((Duration::ZERO, usage_chunk(&model)));
            }
            events.push((Duration::ZERO, Bytes::from_static(b"data: [DONE]\n\n")));
            sse(state.clone(), events, None, model)
        }
        "stall" => {
            let events = (0..num(1) as usize)
                .map(|i| (Duration::ZERO, chunk(&model, i)))
                .collect();
            sse(
                state.clone(),
                events,
                Some(Duration::from_secs(3600)),
                model,
            )
        }
        "forever" => sse(
            state.clone(),
            Vec::new(),
            Some(Duration::from_millis(num(1))),
            model,
        ),
        _ => (StatusCode::NOT_FOUND, "mock: unknown behaviour").into_response(),
    }
}
