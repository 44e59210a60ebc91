//! The exporter thread: takes finished requests' spans off the queue, batches them
//! (`telemetry.batch_spans`, or what came within `telemetry.export_interval_ms`), encodes
//! them as an OTLP `ExportTraceServiceRequest` and sends it over gRPC or HTTP/protobuf, each
//! call bounded by `telemetry.export_timeout_ms`. It runs on its own single-threaded runtime,
//! so a slow or absent collector holds up only this thread: the queue fills and the proxy
//! drops (and counts) what does not fit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use dualrouter_core::config::telemetry::{OtlpProtocol, Telemetry};

use super::{Kind, TraceBatch, Val};

pub(super) fn spawn(
    cfg: Telemetry,
    rx: tokio::sync::mpsc::UnboundedReceiver<TraceBatch>,
    queued: Arc<AtomicUsize>,
    results: prometheus::IntCounterVec,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("otel-export")
        .build()?;
    std::thread::Builder::new()
        .name("otel-export".into())
        .spawn(move || rt.block_on(run(cfg, rx, queued, results)))?;
    Ok(())
}

enum Client {
    Http(reqwest::Client),
    Grpc(TraceServiceClient<tonic::transport::Channel>),
}

async fn run(
    cfg: Telemetry,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<TraceBatch>,
    queued: Arc<AtomicUsize>,
    results: prometheus::IntCounterVec,
) {
    let mut client = match connect(&cfg) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("OpenTelemetry exporter not started: {e}; spans are dropped");
            // Keep taking spans so the queue's count stays right; they are dropped.
            while let Some(b) = rx.recv().await {
                queued.fetch_sub(b.spans.len(), Ordering::AcqRel);
                results
                    .with_label_values(&["failed"])
                    .inc_by(b.spans.len() as u64);
            }
            return;
        }
    };
    let resource = resource(&cfg);
    let mut failing = false;
    loop {
        // Wait for the first request's spans, then gather until the batch is full or the
        // interval is over.
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        let mut n = batch[0].spans.len();
        queued.fetch_sub(n, Ordering::AcqRel);
        let until = Instant::now() + cfg.export_interval;
        while n < cfg.batch_spans {
            match tokio::time::timeout_at(until.into(), rx.recv()).await {
                Ok(Some(b)) => {
                    queued.fetch_sub(b.spans.len(), Ordering::AcqRel);
                    n += b.spans.len();
                    batch.push(b);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let request = encode(&resource, batch);
        let sent = tokio::time::timeout(cfg.export_timeout, send(&mut client, &cfg, request))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", cfg.export_timeout)));
        match sent {
            Ok(()) => {
                results.with_label_values(&["exported"]).inc_by(n as u64);
                if failing {
                    tracing::info!("OpenTelemetry export to {} works again", cfg.endpoint);
                    failing = false;
                }
            }
            Err(e) => {
                results.with_label_values(&["failed"]).inc_by(n as u64);
                if !failing {
                    tracing::warn!(
                        "OpenTelemetry export to {} failed ({n} spans lost): {e}",
                        cfg.endpoint
                    );
                    failing = true;
                }
            }
        }
    }
}

fn connect(cfg: &Telemetry) -> Result<Client, String> {
    match cfg.protocol {
        OtlpProtocol::HttpProtobuf => reqwest::Client::builder()
            .timeout(cfg.export_timeout)
            .connect_timeout(cfg.export_timeout)
            .build()
            .map(Client::Http)
            .map_err(|e| format!("HTTP client: {e}")),
        OtlpProtocol::Grpc => {
            if cfg.endpoint.starts_with("https:") {
                return Err("gRPC over https is not supported: use http/protobuf for TLS".into());
            }
            let endpoint = tonic::transport::Endpoint::from_shared(cfg.endpoint.clone())
                .map_err(|e| format!("gRPC endpoint {}: {e}", cfg.endpoint))?
                .timeout(cfg.export_timeout)
                .connect_timeout(cfg.export_timeout);
            Ok(Client::Grpc(TraceServiceClient::new(
                endpoint.connect_lazy(),
            )))
        }
    }
}

async fn send(
    client: &mut Client,
    cfg: &Telemetry,
    request: ExportTraceServiceRequest,
) -> Result<(), String> {
    match client {
        Client::Http(http) => {
            let mut req = http
                .post(&cfg.endpoint)
                .header("content-type", "application/x-protobuf")
                .body(request.encode_to_vec());
            for (name, value) in &cfg.headers {
                req = req.header(name.as_str(), value.expose());
            }
            let resp = req.send().await.map_err(|e| e.to_string())?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(format!("the collector answered {}", resp.status()))
            }
        }
        Client::Grpc(grpc) => {
            let mut req = tonic::Request::new(request);
            for (name, value) in &cfg.headers {
                let key = tonic::metadata::MetadataKey::from_bytes(name.as_bytes());
                let val = tonic::metadata::MetadataValue::try_from(value.expose());
                if let (Ok(k), Ok(v)) = (key, val) {
                    req.metadata_mut().insert(k, v);
                }
            }
            grpc.export(req)
                .await
                .map(|_| ())
                .map_err(|s| format!("gRPC {:?}: {}", s.code(), s.message()))
        }
    }
}

fn resource(cfg: &Telemetry) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", Val::S(cfg.service_name.clone())),
            kv("service.version", Val::S(env!("CARGO_PKG_VERSION").into())),
            kv("telemetry.sdk.name", Val::S("dualrouter".into())),
            kv("telemetry.sdk.language", Val::S("rust".into())),
        ],
        ..Default::default()
    }
}

fn kv(key: &str, v: Val) -> KeyValue {
    let value = match v {
        Val::S(s) => any_value::Value::StringValue(s),
        Val::I(i) => any_value::Value::IntValue(i),
        Val::F(f) => any_value::Value::DoubleValue(f),
        Val::B(b) => any_value::Value::BoolValue(b),
    };
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// Requests' spans → one `ExportTraceServiceRequest` (one resource, one scope).
pub(super) fn encode(resource: &Resource, batch: Vec<TraceBatch>) -> ExportTraceServiceRequest {
    let mut spans = Vec::new();
    for b in batch {
        for s in b.spans {
            let (parent, trace_state) = match s.parent {
                Some(p) => (p.to_vec(), String::new()),
                None => (
                    b.remote_parent.map(|p| p.to_vec()).unwrap_or_default(),
                    b.tracestate.clone().unwrap_or_default(),
                ),
            };
            let kind = match s.kind {
                Kind::Internal => span::SpanKind::Internal,
                Kind::Server => span::SpanKind::Server,
                Kind::Client => span::SpanKind::Client,
            };
            let mut attributes: Vec<KeyValue> =
                s.attrs.into_iter().map(|(k, v)| kv(k, v)).collect();
            let status = match s.error {
                Some(e) => {
                    if !attributes.iter().any(|a| a.key == "error.type") {
                        attributes.push(kv("error.type", Val::S(e.clone())));
                    }
                    Some(Status {
                        message: e,
                        code: 2,
                    })
                }
                None => None,
            };
            spans.push(Span {
                trace_id: b.trace_id.to_vec(),
                span_id: s.id.to_vec(),
                trace_state,
                parent_span_id: parent,
                // W3C flags: sampled (bit 0); bits 8-9: whether the parent is known and remote.
                flags: 0x1
                    | match (s.parent, b.remote_parent) {
                        (None, Some(_)) => 0x300,
                        _ => 0x100,
                    },
                name: s.name,
                kind: kind as i32,
                start_time_unix_nano: s.start_ns,
                end_time_unix_nano: s.end_ns,
                attributes,
                status,
                ..Default::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "dualrouter".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}
