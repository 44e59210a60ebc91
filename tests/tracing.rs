//! OpenTelemetry traces through the real binary, sent to a real OTLP receiver
//! (`dualrouter_testkit::otlp`, on the OpenTelemetry protobuf definitions): a routed request
//! that falls back once gives a SERVER span under the client's `traceparent` with its children
//! (ingress, encode, classify, score, two CLIENT attempt spans with their outcomes, stream),
//! and each upstream attempt was sent a `traceparent` naming its own span; over gRPC (config
//! section) and HTTP/protobuf (the `OTEL_*` variables alone). A collector that never answers
//! changes nothing for clients, and a full export queue counts its drops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::synthetic::{ask, config, easy};
use common::Proxy;
use dualrouter_testkit::otlp::{Received, Receiver};
use dualrouter_testkit::Mock;
use serde_json::json;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// The value of `name{labels}` in Prometheus text, if exported.
fn series(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn by_name<'a>(spans: &'a [Received], name: &str) -> Vec<&'a Received> {
    spans.iter().filter(|s| s.span.name == name).collect()
}

/// The access line (JSON log) of `decision_id`.
async fn access_line(p: &Proxy, decision_id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = p
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["target"] == "dualrouter::access" && l["decision_id"] == decision_id);
        if let Some(line) = found {
            return line;
        }
        assert!(Instant::now() < deadline, "no access line:\n{}", p.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A routed streamed request (`auto`) whose first candidate answers 503 and whose second
/// answers: checks the spans the receiver got and the context each upstream saw.
async fn routed_fallback_is_traced(receiver: &Receiver, p: &Proxy, cheap: &Mock, strong: &Mock) {
    cheap.force(Some("error:503"));
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let a = ask(
        p,
        "/v1/chat/completions",
        &json!({"model": "auto", "stream": true, "max_tokens": 64, "temperature": 0.5,
                "messages": [{"role": "user", "content": easy(7)}]}),
        &[
            ("traceparent", traceparent.as_str()),
            ("tracestate", "vendor=abc"),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.model.as_deref(), Some("strong"));
    let decision = a.decision.clone().unwrap();

    // root, ingress, encode, classify, score, two attempts, stream
    let spans = receiver.wait_trace(TRACE, 8, Duration::from_secs(15)).await;
    let roots: Vec<_> = spans.iter().filter(|s| s.span.kind == 2).collect();
    assert_eq!(roots.len(), 1, "one SERVER span: {spans:#?}");
    let root = roots[0];
    assert_eq!(root.span.name, "chat auto");
    assert_eq!(root.parent_id(), PARENT, "the client's span is the parent");
    assert_eq!(root.span.trace_state, "vendor=abc");
    for (k, v) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "auto"),
        ("gen_ai.response.model", "strong"),
        ("gen_ai.provider.name", "anthropic"),
        ("gen_ai.request.max_tokens", "64"),
        ("gen_ai.request.temperature", "0.5"),
        ("dualrouter.attempts", "2"),
        ("dualrouter.decision_id", decision.as_str()),
        ("http.response.status_code", "200"),
    ] {
        assert_eq!(root.attr(k).as_deref(), Some(v), "root {k}: {root:#?}");
    }
    assert!(root
        .attr("dualrouter.route")
        .unwrap()
        .starts_with("general/"));
    assert_eq!(root.attr("dualrouter.source").as_deref(), Some("embedded"));
    assert!(root.attr("dualrouter.confidence").is_some());
    assert!(root.attr("dualrouter.cost_usd").is_some());
    assert!(
        root.attr("gen_ai.usage.input_tokens")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(
        root.attr("gen_ai.usage.output_tokens")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    // No prompt or answer text unless capture_content is on.
    assert!(root.attr("gen_ai.input.messages").is_none());
    assert!(root.attr("gen_ai.output.messages").is_none());

    for name in ["ingress", "encode", "classify", "score", "stream"] {
        let s = by_name(&spans, name);
        assert_eq!(s.len(), 1, "{name}: {spans:#?}");
        assert_eq!(s[0].parent_id(), root.span_id(), "{name}'s parent");
        assert!(s[0].span.start_time_unix_nano >= root.span.start_time_unix_nano);
        assert!(s[0].span.end_time_unix_nano <= root.span.end_time_unix_nano + 1_000_000);
    }
    assert!(by_name(&spans, "classify")[0]
        .attr("dualrouter.route")
        .unwrap()
        .starts_with("general/"));
    assert!(by_name(&spans, "stream")[0]
        .attr("gen_ai.server.time_to_first_token")
        .is_some());

    let mut attempts: Vec<_> = spans.iter().filter(|s| s.span.kind == 3).collect();
    attempts.sort_by_key(|s| s.span.start_time_unix_nano);
    assert_eq!(attempts.len(), 2, "two CLIENT attempt spans: {spans:#?}");
    let (first, second) = (attempts[0], attempts[1]);
    assert_eq!(first.attr("dualrouter.model").as_deref(), Some("cheap"));
    assert_eq!(
        first.attr("dualrouter.attempt.outcome").as_deref(),
        Some("5xx")
    );
    assert_eq!(
        first.attr("http.response.status_code").as_deref(),
        Some("503")
    );
    assert_eq!(first.attr("error.type").as_deref(), Some("5xx"));
    assert_eq!(first.span.status.as_ref().map(|s| s.code), Some(2));
    assert_eq!(
        first.attr("gen_ai.provider.name").as_deref(),
        Some("openai")
    );
    assert_eq!(second.attr("dualrouter.model").as_deref(), Some("strong"));
    assert_eq!(
        second.attr("dualrouter.attempt.outcome").as_deref(),
        Some("ok")
    );
    assert_eq!(
        second.attr("gen_ai.provider.name").as_deref(),
        Some("anthropic")
    );
    assert!(second.span.status.as_ref().is_none_or(|s| s.code != 2));
    for a in [first, second] {
        assert_eq!(a.parent_id(), root.span_id());
        assert_eq!(a.span.name, "chat echo");
    }

    // Each upstream was sent the trace and its own attempt span.
    let seen = |m: &Mock| {
        let h = m.last().headers;
        (
            h.get("traceparent").unwrap().to_str().unwrap().to_string(),
            h.get("tracestate").unwrap().to_str().unwrap().to_string(),
        )
    };
    assert_eq!(
        seen(cheap),
        (
            format!("00-{TRACE}-{}-01", first.span_id()),
            "vendor=abc".into()
        )
    );
    assert_eq!(
        seen(strong),
        (
            format!("00-{TRACE}-{}-01", second.span_id()),
            "vendor=abc".into()
        )
    );

    // The access line carries the trace id.
    let line = access_line(p, &decision).await;
    assert_eq!(line["trace_id"], TRACE, "{line}");

    // A parent that is not sampled: nothing recorded, its context passed on unchanged.
    let unsampled = "00-11111111111111111111111111111111-2222222222222222-00";
    let a = ask(
        p,
        "/v1/chat/completions",
        &json!({"model": "strong", "messages": [{"role": "user", "content": "hi"}]}),
        &[("traceparent", unsampled)],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(strong.last().headers.get("traceparent").unwrap(), unsampled);
    // Without a traceparent: a new trace, named in the access line, whose attempt span is the
    // upstream's parent.
    let a = ask(
        p,
        "/v1/chat/completions",
        &json!({"model": "strong", "messages": [{"role": "user", "content": "hello"}]}),
        &[],
    )
    .await;
    let line = access_line(p, a.decision.as_deref().unwrap()).await;
    let new_trace = line["trace_id"].as_str().unwrap().to_string();
    assert_eq!(new_trace.len(), 32);
    assert_ne!(new_trace, TRACE);
    let spans = receiver
        .wait_trace(&new_trace, 4, Duration::from_secs(15))
        .await;
    let root = spans.iter().find(|s| s.span.kind == 2).unwrap();
    assert!(root.span.parent_span_id.is_empty(), "a root without parent");
    let attempt = spans.iter().find(|s| s.span.kind == 3).unwrap();
    assert_eq!(
        strong.last().headers.get("traceparent").unwrap(),
        &format!("00-{new_trace}-{}-01", attempt.span_id())
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        receiver
            .spans()
            .iter()
            .all(|s| s.trace_id() != "11111111111111111111111111111111"),
        "an unsampled request left spans"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_fallback_is_traced_over_grpc_from_the_config() {
    let receiver = Receiver::start_grpc().await;
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let extra = format!(
        "log: {{ format: json }}\n\
         routing: {{ breaker: {{ failures: 100 }} }}\n\
         telemetry: {{ otlp_endpoint: '{}', protocol: grpc, sample_ratio: 1.0, \
         service_name: dr-grpc, export_interval_ms: 100, headers: {{ x-tenant: t1 }} }}\n",
        receiver.endpoint()
    );
    let p = Proxy::start(&config(&cheap, &strong, &extra)).await;
    routed_fallback_is_traced(&receiver, &p, &cheap, &strong).await;
    let s = &receiver.spans()[0];
    assert_eq!(
        s.resource.get("service.name").map(String::as_str),
        Some("dr-grpc")
    );
    assert!(receiver
        .export_headers()
        .iter()
        .all(|h| h.get("x-tenant").map(String::as_str) == Some("t1")));
    let m = p.metrics().await;
    assert!(series(&m, "dualrouter_trace_spans_total{result=\"exported\"}").unwrap() >= 12.0);
    assert_eq!(
        series(&m, "dualrouter_trace_spans_dropped_total"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_fallback_is_traced_over_http_from_the_otel_variables_alone() {
    let receiver = Receiver::start_http().await;
    let cheap = Mock::start().await;
    let strong = Mock::start_anthropic().await;
    let extra = "log: { format: json }\nrouting: { breaker: { failures: 100 } }\n";
    let endpoint = receiver.endpoint();
    let p = Proxy::start_with_env(
        &config(&cheap, &strong, extra),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20otlp-token",
            ),
            ("OTEL_SERVICE_NAME", "dr-env"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.0"),
        ],
    )
    .await;
    routed_fallback_is_traced(&receiver, &p, &cheap, &strong).await;
    let s = &receiver.spans()[0];
    assert_eq!(
        s.resource.get("service.name").map(String::as_str),
        Some("dr-env")
    );
    let headers = receiver.export_headers();
    assert!(headers.iter().all(|h| {
        h.get("authorization").map(String::as_str) == Some("Bearer otlp-token")
            && h.get("content-type").map(String::as_str) == Some("application/x-protobuf")
    }));
    // The collector's token is in no log line.
    assert!(!p.log().contains("otlp-token"));
}

/// A proxy with one concrete model on `mock`, exporting to `endpoint`.
fn plain_config(mock: &Mock, telemetry: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\n\
         admin: {{ listen: 127.0.0.1:0 }}\n\
         providers:\n  - name: mock\n    kind: openai\n    base_url: {}\n    models:\n      - {{ id: m, upstream_id: echo, cost_per_mtok: {{ input: 1, output: 2 }} }}\n\
         telemetry: {telemetry}\n",
        mock.base_url()
    )
}

/// Sends `n` requests one after the other; each must answer 200, and none may take long.
async fn requests_answer_quickly(p: &Proxy, n: usize) -> Duration {
    let client = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    for i in 0..n {
        let started = Instant::now();
        let r = client
            .post(p.url("/v1/chat/completions"))
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": format!("hi {i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(1),
        "slowest request {slowest:?}"
    );
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_collector_changes_nothing_for_clients_and_a_full_queue_counts_drops() {
    // Connections are accepted (the kernel's backlog) and never answered: every export call
    // hangs until its 30 s timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mock = Mock::start().await;
    let telemetry = format!(
        "{{ otlp_endpoint: 'http://{}', protocol: http/protobuf, queue_spans: 16, \
         export_interval_ms: 50, export_timeout_ms: 30000 }}",
        silent.local_addr().unwrap()
    );
    let p = Proxy::start(&plain_config(&mock, &telemetry)).await;
    // Each request leaves 4 spans (request, ingress, attempt, stream). The exporter takes at
    // most a batch of 16 and hangs on it; the queue holds 16 more; the rest is dropped.
    requests_answer_quickly(&p, 20).await;
    let m = p.metrics().await;
    let dropped = series(&m, "dualrouter_trace_spans_dropped_total").unwrap();
    assert!(dropped >= 40.0, "dropped {dropped}:\n{m}");
    assert_eq!(
        series(&m, "dualrouter_trace_spans_total{result=\"dropped\"}"),
        Some(dropped)
    );
    assert_eq!(dropped % 4.0, 0.0, "a request's spans go or stay together");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_changes_nothing_for_clients() {
    let reserved = dualrouter_testkit::net::ReservedPort::new();
    let closed = reserved.addr();
    for protocol in ["grpc", "http/protobuf"] {
        let mock = Mock::start().await;
        let telemetry = format!(
            "{{ otlp_endpoint: 'http://{closed}', protocol: {protocol}, export_interval_ms: 20 }}"
        );
        let p = Proxy::start(&plain_config(&mock, &telemetry)).await;
        requests_answer_quickly(&p, 10).await;
        // The spans were tried and failed (counted), none dropped.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = p.metrics().await;
            let failed = series(&m, "dualrouter_trace_spans_total{result=\"failed\"}");
            if failed.is_some_and(|f| f >= 40.0) {
                assert_eq!(
                    series(&m, "dualrouter_trace_spans_dropped_total"),
                    Some(0.0)
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{protocol}: failures not counted:\n{m}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(mock.count(), 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_telemetry_settings_are_refused_with_their_path() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        plain_config(
            &mock,
            "{ otlp_endpoint: 'collector:4318', protocol: http/json, sample_ratio: 1.5 }",
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dualrouter"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "telemetry.otlp_endpoint",
        "telemetry.protocol",
        "telemetry.sample_ratio",
    ] {
        assert!(err.contains(needle), "{needle} not in:\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_and_answer_text_go_on_the_span_only_with_capture_content() {
    let receiver = Receiver::start_http().await;
    let mock = Mock::start().await;
    let telemetry = format!(
        "{{ otlp_endpoint: '{}', export_interval_ms: 50, capture_content: true }}",
        receiver.endpoint()
    );
    let p = Proxy::start(&plain_config(&mock, &telemetry)).await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let r = reqwest::Client::new()
        .post(p.url("/v1/chat/completions"))
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .json(&json!({"model": "m", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "the plan for tuesday"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    let said = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!said.is_empty());
    let spans = receiver.wait_trace(trace, 4, Duration::from_secs(15)).await;
    let root = spans.iter().find(|s| s.span.kind == 2).unwrap();
    // The answer the client got, on the same span.
    let output: serde_json::Value =
        serde_json::from_str(&root.attr("gen_ai.output.messages").unwrap()).unwrap();
    assert_eq!(output[0]["role"], "assistant");
    assert_eq!(output[0]["parts"][0]["content"], said);
    let messages: serde_json::Value =
        serde_json::from_str(&root.attr("gen_ai.input.messages").unwrap()).unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[1]["role"], "user");
    assert_eq!(messages[1]["parts"][0]["content"], "the plan for tuesday");
    // Only the request span carries it.
    assert_eq!(
        spans
            .iter()
            .filter(|s| s.attr("gen_ai.input.messages").is_some())
            .count(),
        1
    );

    // A streamed answer: the text the client put together from its deltas.
    let trace = "1bf7651916cd43dd8448eb211c80319d";
    let r = reqwest::Client::new()
        .post(p.url("/v1/chat/completions"))
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .json(&json!({"model": "m", "stream": true, "messages": [
            {"role": "user", "content": "stream the plan for wednesday"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let streamed: String = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(!streamed.is_empty(), "{body}");
    let spans = receiver.wait_trace(trace, 4, Duration::from_secs(15)).await;
    let root = spans.iter().find(|s| s.span.kind == 2).unwrap();
    let output: serde_json::Value =
        serde_json::from_str(&root.attr("gen_ai.output.messages").unwrap()).unwrap();
    assert_eq!(output[0]["parts"][0]["content"], streamed.as_str());
}
