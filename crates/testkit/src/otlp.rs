//! An OTLP trace receiver for tests, built on the OpenTelemetry protobuf definitions
//! (`opentelemetry-proto`): a gRPC `TraceService` ([`Receiver::start_grpc`]) or an HTTP
//! `POST /v1/traces` taking `application/x-protobuf` ([`Receiver::start_http`]), both on
//! 127.0.0.1 with a free port. It keeps every span it is sent, with its resource's
//! attributes, and the headers (gRPC metadata) of every export call.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
pub use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// A span as received, with the attributes of its resource.
#[derive(Debug, Clone)]
pub struct Received {
    pub span: Span,
    pub resource: BTreeMap<String, String>,
}

impl Received {
    pub fn trace_id(&self) -> String {
        hex::encode(&self.span.trace_id)
    }
    pub fn span_id(&self) -> String {
        hex::encode(&self.span.span_id)
    }
    pub fn parent_id(&self) -> String {
        hex::encode(&self.span.parent_span_id)
    }
    /// An attribute as text (numbers and booleans printed), if the span has it.
    pub fn attr(&self, key: &str) -> Option<String> {
        attr_text(&self.span.attributes, key)
    }
}

fn attr_text(attrs: &[KeyValue], key: &str) -> Option<String> {
    let v = attrs
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match v {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

#[derive(Default)]
struct Collected {
    spans: Mutex<Vec<Received>>,
    headers: Mutex<Vec<BTreeMap<String, String>>>,
}

impl Collected {
    fn take(&self, req: ExportTraceServiceRequest, headers: BTreeMap<String, String>) {
        let mut spans = self.spans.lock().expect("lock");
        for rs in req.resource_spans {
            let resource: BTreeMap<String, String> = rs
                .resource
                .map(|r| {
                    r.attributes
                        .iter()
                        .filter_map(|a| Some((a.key.clone(), attr_text(&r.attributes, &a.key)?)))
                        .collect()
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(Received {
                        span,
                        resource: resource.clone(),
                    });
                }
            }
        }
        self.headers.lock().expect("lock").push(headers);
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    collected: Arc<Collected>,
    task: tokio::task::JoinHandle<()>,
}

struct Grpc(Arc<Collected>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        self.0.take(request.into_inner(), headers);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn http_export(
    State(c): State<Arc<Collected>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-protobuf") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "protobuf only").into_response();
    }
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, "not an ExportTraceServiceRequest").into_response();
    };
    let headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    c.take(req, headers);
    (
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

impl Receiver {
    /// A gRPC `opentelemetry.proto.collector.trace.v1.TraceService` on 127.0.0.1.
    pub async fn start_grpc() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let collected = Arc::new(Collected::default());
        let svc = TraceServiceServer::new(Grpc(collected.clone()));
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await;
        });
        Receiver {
            addr,
            collected,
            task,
        }
    }

    /// OTLP/HTTP: `POST /v1/traces` with a protobuf body, on 127.0.0.1.
    pub async fn start_http() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let collected = Arc::new(Collected::default());
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(http_export))
            .with_state(collected.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            collected,
            task,
        }
    }

    /// `http://127.0.0.1:PORT` (HTTP adds `/v1/traces`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Received> {
        self.collected.spans.lock().expect("lock").clone()
    }

    /// The headers (gRPC: metadata) of every export call so far.
    pub fn export_headers(&self) -> Vec<BTreeMap<String, String>> {
        self.collected.headers.lock().expect("lock").clone()
    }

    /// The spans of trace `trace_id` (32 hex digits), once at least `n` have arrived; panics
    /// after `within`.
    pub async fn wait_trace(&self, trace_id: &str, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let spans: Vec<Received> = self
                .spans()
                .into_iter()
                .filter(|s| s.trace_id() == trace_id)
                .collect();
            if spans.len() >= n {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "trace {trace_id}: {} spans after {within:?}, wanted {n}: {:?}",
                spans.len(),
                spans.iter().map(|s| &s.span.name).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
