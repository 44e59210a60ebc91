//! Every Prometheus instrument in one struct, built once at start and shared.
//!
//! Labels are low-cardinality by construction: a configured model id (or `unknown`), an HTTP
//! status code, a provider name, an error kind. Never a message, a prompt or a key.

use prometheus::{
    CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
    Registry, TextEncoder,
};

/// Buckets of the latencies a client waits for (first token, a stream), in seconds.
const WAIT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

pub struct Metrics {
    pub registry: Registry,
    /// Requests answered, by model and HTTP status.
    pub requests: IntCounterVec,
    /// Errors the proxy produced itself, by kind.
    pub errors: IntCounterVec,
    /// Time from sending the request upstream to the upstream's response header, by provider
    /// and model.
    pub upstream_latency: HistogramVec,
    /// Tokens of answered requests by model, provider and kind (`input`, which counts cached
    /// input too; `output`; `cached`, the cache-read part of the input).
    pub tokens: IntCounterVec,
    /// USD spent at the models' prices, by model and provider.
    pub cost_usd: CounterVec,
    /// Rows deleted by retention, by table (`routing_decisions`, `feedback`).
    pub pruned: IntCounterVec,
    /// Request arrival → the first event of a streamed answer sent to the client, by model.
    pub time_to_first_token: HistogramVec,
    /// First event → end of a streamed answer that completed, by model.
    pub stream_duration: HistogramVec,
    /// Time the proxy itself spends on a request: parsing and rewriting before the upstream
    /// call, and turning the upstream's response header into the client's.
    pub overhead: Histogram,
    /// Request body bytes received from clients.
    pub bytes_in: IntCounter,
    /// Response body bytes sent to clients.
    pub bytes_out: IntCounter,
    /// Streams cut short because the client went away.
    pub client_disconnects: IntCounter,
    /// Routes decided, by source (`arch-router`, `embedded`, `default`).
    pub routes: IntCounterVec,
    /// Routed requests whose model exploration chose (`mirt.exploration`), by model.
    pub explored: IntCounterVec,
    /// Arch-Router calls that fell back to the embedded classifier, by reason.
    pub classifier_fallbacks: IntCounterVec,
    /// Upstream attempts by model and outcome (`ok`, `connect`, `timeout`, `broken`, `429`,
    /// `5xx`, `skipped`, `translate`).
    pub attempts: IntCounterVec,
    /// Live-state rebuilds by trigger (`config`, `policies`) and result (`ok`, `failed`).
    pub reloads: IntCounterVec,
    /// The live state's generation (1 at start, +1 per successful reload).
    pub generation: prometheus::IntGauge,
    /// Client connections open on the proxy port.
    pub connections_open: prometheus::IntGauge,
    /// Connections refused at accept (503 `overloaded`), by reason (`max_connections`,
    /// `max_queue_ms`).
    pub connections_refused: IntCounterVec,
    /// How long client bytes waited for a worker: from a connection's accept, or from a
    /// request header's arrival, to the poll that reads it (see `proxy::admission`).
    pub queue_delay: Histogram,
    /// Requests forwarded, by the client's wire format and the upstream's (`chat`,
    /// `responses`, `messages`): equal ones went as sent, others were translated.
    pub formats: IntCounterVec,
    /// Spend charged to virtual keys, USD, by key label ([`Metrics::key_label`]) and model.
    pub key_spend: prometheus::CounterVec,
    /// Tokens charged to virtual keys, by key label, model and kind (`input`, `output`,
    /// `cached`).
    pub key_tokens: IntCounterVec,
    /// Requests with a virtual key refused, by reason (`budget`, `rate_requests`,
    /// `rate_tokens`, `model_not_allowed`, `max_cost`, `invalid_key`, `store_unavailable`).
    pub key_refusals: IntCounterVec,
    /// Trace spans by what became of them (`exported`; `dropped`: the export queue was full;
    /// `failed`: the collector refused them or could not be reached).
    pub trace_spans: IntCounterVec,
    /// Spans dropped because the export queue was full (`dualrouter_trace_spans_dropped_total`).
    pub trace_spans_dropped: IntCounter,
    /// The key names that have a label of their own (at most [`MAX_KEY_LABELS`]).
    key_labels: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Key names that get a label of their own in the per-key metrics; every later one is
/// counted as `other`, so the series stay bounded whatever the number of keys.
pub const MAX_KEY_LABELS: usize = 50;

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "dualrouter_requests_total",
                "Requests answered, by model and HTTP status",
            ),
            &["model", "status"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "dualrouter_errors_total",
                "Errors produced by the proxy, by kind",
            ),
            &["kind"],
        )?;
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new(
                "dualrouter_upstream_latency_seconds",
                "Time from request sent upstream to the upstream's response header",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ]),
            &["provider", "model"],
        )?;
        let tokens = IntCounterVec::new(
            Opts::new(
                "dualrouter_tokens_total",
                "Tokens of answered requests, by model, provider and kind (input, output, cached)",
            ),
            &["model", "provider", "kind"],
        )?;
        let cost_usd = CounterVec::new(
            Opts::new(
                "dualrouter_cost_usd_total",
                "USD spent at the models' configured prices, by model and provider",
            ),
            &["model", "provider"],
        )?;
        let pruned = IntCounterVec::new(
            Opts::new(
                "dualrouter_pruned_rows_total",
                "Rows deleted by retention (retention.decisions_days, feedback_days), by table",
            ),
            &["table"],
        )?;
        let time_to_first_token = HistogramVec::new(
            HistogramOpts::new(
                "dualrouter_time_to_first_token_seconds",
                "Request arrival to the first event of a streamed answer sent to the client",
            )
            .buckets(WAIT_BUCKETS.to_vec()),
            &["model"],
        )?;
        let stream_duration = HistogramVec::new(
            HistogramOpts::new(
                "dualrouter_stream_duration_seconds",
                "First event to the end of a completed streamed answer",
            )
            .buckets(WAIT_BUCKETS.to_vec()),
            &["model"],
        )?;
        let overhead = Histogram::with_opts(
            HistogramOpts::new(
                "dualrouter_proxy_overhead_seconds",
                "Time the proxy itself adds to a request (excluding waiting on client and upstream)",
            )
            .buckets(vec![
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
            ]),
        )?;
        let bytes_in = IntCounter::new(
            "dualrouter_request_bytes_total",
            "Request body bytes received from clients",
        )?;
        let bytes_out = IntCounter::new(
            "dualrouter_response_bytes_total",
            "Response body bytes sent to clients",
        )?;
        let client_disconnects = IntCounter::new(
            "dualrouter_client_disconnects_total",
            "Responses cut short because the client went away",
        )?;
        let routes = IntCounterVec::new(
            Opts::new(
                "dualrouter_routes_total",
                "Routes decided, by classifier source",
            ),
            &["source"],
        )?;
        let explored = IntCounterVec::new(
            Opts::new(
                "dualrouter_explored_total",
                "Routed requests whose model exploration chose instead of the objective's best, by model",
            ),
            &["model"],
        )?;
        let classifier_fallbacks = IntCounterVec::new(
            Opts::new(
                "dualrouter_classifier_fallbacks_total",
                "Arch-Router calls that fell back to the embedded classifier, by reason",
            ),
            &["reason"],
        )?;
        let attempts = IntCounterVec::new(
            Opts::new(
                "dualrouter_upstream_attempts_total",
                "Upstream attempts of the fallback chain, by model and outcome",
            ),
            &["model", "outcome"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "dualrouter_reloads_total",
                "Live-state rebuilds, by trigger and result",
            ),
            &["trigger", "result"],
        )?;
        let generation = prometheus::IntGauge::new(
            "dualrouter_config_generation",
            "The live state's generation (1 at start, +1 per successful reload)",
        )?;
        generation.set(1);
        let connections_open = prometheus::IntGauge::new(
            "dualrouter_connections_open",
            "Client connections open on the proxy port",
        )?;
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "dualrouter_connections_refused_total",
                "Client connections refused at accept with 503 overloaded, by reason",
            ),
            &["reason"],
        )?;
        let queue_delay = Histogram::with_opts(
            HistogramOpts::new(
                "dualrouter_queue_delay_seconds",
                "How long client bytes waited for a proxy worker (accept or readable header to the poll that reads it)",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ]),
        )?;
        let formats = IntCounterVec::new(
            Opts::new(
                "dualrouter_forwarded_formats_total",
                "Requests forwarded, by client and upstream wire format (different: translated)",
            ),
            &["client", "upstream"],
        )?;
        let key_spend = prometheus::CounterVec::new(
            Opts::new(
                "dualrouter_key_spend_usd_total",
                "Spend charged to virtual keys in USD, by key (first 50 names, then other) and model",
            ),
            &["key", "model"],
        )?;
        let key_tokens = IntCounterVec::new(
            Opts::new(
                "dualrouter_key_tokens_total",
                "Tokens charged to virtual keys, by key, model and kind (input, output, cached)",
            ),
            &["key", "model", "kind"],
        )?;
        let key_refusals = IntCounterVec::new(
            Opts::new(
                "dualrouter_key_refusals_total",
                "Requests with a virtual key refused, by reason",
            ),
            &["reason"],
        )?;
        let trace_spans = IntCounterVec::new(
            Opts::new(
                "dualrouter_trace_spans_total",
                "OpenTelemetry spans by result: exported, dropped (export queue full), failed (collector error)",
            ),
            &["result"],
        )?;
        // Drops get a name of their own too, so an alert needs no label.
        let trace_spans_dropped = IntCounter::new(
            "dualrouter_trace_spans_dropped_total",
            "OpenTelemetry spans dropped because the export queue (telemetry.queue_spans) was full",
        )?;
        registry.register(Box::new(trace_spans.clone()))?;
        registry.register(Box::new(trace_spans_dropped.clone()))?;
        registry.register(Box::new(key_spend.clone()))?;
        registry.register(Box::new(key_tokens.clone()))?;
        registry.register(Box::new(key_refusals.clone()))?;
        registry.register(Box::new(formats.clone()))?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(pruned.clone()))?;
        registry.register(Box::new(cost_usd.clone()))?;
        registry.register(Box::new(time_to_first_token.clone()))?;
        registry.register(Box::new(stream_duration.clone()))?;
        registry.register(Box::new(queue_delay.clone()))?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(attempts.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(generation.clone()))?;
        registry.register(Box::new(routes.clone()))?;
        registry.register(Box::new(explored.clone()))?;
        registry.register(Box::new(classifier_fallbacks.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(upstream_latency.clone()))?;
        registry.register(Box::new(overhead.clone()))?;
        registry.register(Box::new(bytes_in.clone()))?;
        registry.register(Box::new(bytes_out.clone()))?;
        registry.register(Box::new(client_disconnects.clone()))?;
        Ok(Self {
            registry,
            requests,
            errors,
            upstream_latency,
            tokens,
            cost_usd,
            pruned,
            time_to_first_token,
            stream_duration,
            overhead,
            bytes_in,
            bytes_out,
            client_disconnects,
            routes,
            explored,
            classifier_fallbacks,
            attempts,
            reloads,
            generation,
            connections_open,
            connections_refused,
            queue_delay,
            formats,
            key_spend,
            key_tokens,
            key_refusals,
            trace_spans,
            trace_spans_dropped,
            key_labels: Default::default(),
        })
    }

    /// The `key` label for a key name: the name itself for the first [`MAX_KEY_LABELS`] names
    /// seen, `other` after that.
    pub fn key_label(&self, name: &str) -> String {
        let mut seen = self
            .key_labels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(name) {
            return name.to_string();
        }
        if seen.len() < MAX_KEY_LABELS && name != "other" {
            seen.insert(name.to_string());
            return name.to_string();
        }
        "other".into()
    }

    /// The Prometheus text exposition of every registered instrument.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on a malformed metric family, which the registry rejects.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
