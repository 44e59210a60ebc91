//! The `telemetry:` section: OpenTelemetry traces exported over OTLP (gRPC or HTTP/protobuf).
//!
//! Traces are off unless configured: by this section, or by the standard variables alone
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_TRACES_SAMPLER`,
//! …). A key written in the section wins over its variable; a variable fills what the
//! section leaves out. Read at start (a change needs a restart).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validated::EnvLookup;
use super::Secret;

/// The `telemetry:` section as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// `false` turns traces off whatever the variables say; unset: on when the section or an
    /// `OTEL_*` variable names an endpoint or a sampler.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The collector: a base URL (`http://127.0.0.1:4318`; HTTP adds `/v1/traces` unless the
    /// path already names it) or, for gRPC, `http://HOST:4317`.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Share of new traces recorded, 0.0..=1.0 (default 1.0).
    #[serde(default)]
    pub sample_ratio: Option<f64>,
    /// A client's `traceparent` decides whether its request is recorded (its sampled flag);
    /// `false`: the ratio decides for every request. Default `true`.
    #[serde(default)]
    pub parent_based: Option<bool>,
    /// `service.name` of the spans (default `dualrouter`).
    #[serde(default)]
    pub service_name: Option<String>,
    /// Headers sent to the collector, in the clear in this file: nothing secret here.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The name of a variable holding more headers as `name=value,name2=value2` (tokens).
    #[serde(default)]
    pub headers_env: Option<String>,
    /// Prompt and answer text on the spans (`gen_ai.input.messages`,
    /// `gen_ai.output.messages`). Default `false`.
    #[serde(default)]
    pub capture_content: bool,
    /// Most spans waiting for export; past it a request's spans are dropped (and counted).
    #[serde(default = "default_queue_spans")]
    pub queue_spans: usize,
    /// Most spans in one export call.
    #[serde(default = "default_batch_spans")]
    pub batch_spans: usize,
    /// How long spans wait to fill a batch before it is sent anyway.
    #[serde(default = "default_interval_ms")]
    pub export_interval_ms: u64,
    /// The most one export call may take (connect included).
    #[serde(default = "default_timeout_ms")]
    pub export_timeout_ms: u64,
}

fn default_queue_spans() -> usize {
    4096
}
fn default_batch_spans() -> usize {
    512
}
fn default_interval_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Traces as the exporter and the proxy use them (only when they are on).
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// HTTP: the full URL spans are POSTed to (`…/v1/traces`); gRPC: the server's URL.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    pub sample_ratio: f64,
    pub parent_based: bool,
    pub service_name: String,
    /// Header names (lower case) and values; values may be secrets (never logged).
    pub headers: Vec<(String, Secret)>,
    pub capture_content: bool,
    pub queue_spans: usize,
    pub batch_spans: usize,
    pub export_interval: Duration,
    pub export_timeout: Duration,
}

/// The section (or its absence) and the `OTEL_*` variables → traces on (`Some`) or off;
/// every problem with its field path (or variable name).
pub fn validate(
    raw: Option<&RawTelemetry>,
    env: EnvLookup<'_>,
) -> Result<Option<Telemetry>, Vec<String>> {
    let default = RawTelemetry {
        queue_spans: default_queue_spans(),
        batch_spans: default_batch_spans(),
        export_interval_ms: default_interval_ms(),
        export_timeout_ms: default_timeout_ms(),
        ..Default::default()
    };
    let section = raw.is_some();
    let raw = raw.unwrap_or(&default);
    let var = |name: &str| {
        env(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut out = Vec::new();

    let sdk_disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let exporter_none = var("OTEL_TRACES_EXPORTER").is_some_and(|v| v == "none");
    let traces_endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let base_endpoint = var("OTEL_EXPORTER_OTLP_ENDPOINT");
    let sampler = var("OTEL_TRACES_SAMPLER");
    let env_on = traces_endpoint.is_some() || base_endpoint.is_some() || sampler.is_some();
    let on = match raw.enabled {
        Some(on) => on,
        None => (section || env_on) && !sdk_disabled && !exporter_none,
    };
    if !on {
        return Ok(None);
    }

    let protocol_text = raw
        .protocol
        .clone()
        .map(|p| ("telemetry.protocol", p))
        .or_else(|| {
            var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .map(|p| ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", p))
        })
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL").map(|p| ("OTEL_EXPORTER_OTLP_PROTOCOL", p)));
    let protocol = match protocol_text {
        None => OtlpProtocol::HttpProtobuf,
        Some((_, p)) if p == "grpc" => OtlpProtocol::Grpc,
        Some((_, p)) if p == "http/protobuf" => OtlpProtocol::HttpProtobuf,
        Some((field, p)) => {
            out.push(format!(
                "{field}:{} is not grpc or http/protobuf (http/json is not supported)",
                shown(field, &p)
            ));
            OtlpProtocol::HttpProtobuf
        }
    };

    // The section's endpoint and OTEL_EXPORTER_OTLP_ENDPOINT are bases; the traces variable is
    // the URL itself.
    let (field, url, base) = match (&raw.otlp_endpoint, traces_endpoint, base_endpoint) {
        (Some(e), _, _) => ("telemetry.otlp_endpoint", e.trim().to_string(), true),
        (None, Some(e), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", e, false),
        (None, None, Some(e)) => ("OTEL_EXPORTER_OTLP_ENDPOINT", e, true),
        (None, None, None) => (
            "telemetry.otlp_endpoint",
            match protocol {
                OtlpProtocol::Grpc => "http://localhost:4317".to_string(),
                OtlpProtocol::HttpProtobuf => "http://localhost:4318".to_string(),
            },
            true,
        ),
    };
    let endpoint = match url.parse::<http::Uri>() {
        Ok(u)
            if matches!(u.scheme_str(), Some("http") | Some("https"))
                && u.host().is_some_and(|h| !h.is_empty()) =>
        {
            match protocol {
                OtlpProtocol::HttpProtobuf if base && !u.path().ends_with("/v1/traces") => {
                    format!("{}/v1/traces", url.trim_end_matches('/'))
                }
                _ => url.clone(),
            }
        }
        _ => {
            out.push(format!(
                "{field}:{} is not an http:// or https:// URL with a host",
                shown(field, &url)
            ));
            String::new()
        }
    };

    let mut sample_ratio = raw.sample_ratio;
    let mut parent_based = raw.parent_based;
    if let Some(s) = &sampler {
        let arg = var("OTEL_TRACES_SAMPLER_ARG");
        let ratio_arg = || match arg.as_deref().map(str::parse::<f64>) {
            None => Some(1.0),
            Some(Ok(r)) if (0.0..=1.0).contains(&r) => Some(r),
            Some(_) => None,
        };
        let (ratio, parent) = match s.as_str() {
            "always_on" => (Some(1.0), false),
            "always_off" => (Some(0.0), false),
            "traceidratio" => (ratio_arg(), false),
            "parentbased_always_on" => (Some(1.0), true),
            "parentbased_always_off" => (Some(0.0), true),
            "parentbased_traceidratio" => (ratio_arg(), true),
            _ => {
                out.push(
                    "OTEL_TRACES_SAMPLER: not one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio".into()
                );
                (Some(1.0), true)
            }
        };
        if ratio.is_none() {
            out.push("OTEL_TRACES_SAMPLER_ARG: not a ratio in 0.0..=1.0".into());
        }
        sample_ratio = sample_ratio.or(ratio);
        parent_based = parent_based.or(Some(parent));
    }
    let sample_ratio = sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        out.push(format!(
            "telemetry.sample_ratio: {sample_ratio} is not in 0.0..=1.0"
        ));
    }

    let service_name = raw
        .service_name
        .clone()
        .or_else(|| var("OTEL_SERVICE_NAME"))
        .unwrap_or_else(|| "dualrouter".to_string());
    if service_name.trim().is_empty() {
        out.push("telemetry.service_name: must not be empty".into());
    }

    let mut headers: Vec<(String, Secret)> = Vec::new();
    let mut add = |field: &str, name: &str, value: String, out: &mut Vec<String>| {
        let name = name.trim().to_ascii_lowercase();
        if http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || http::HeaderValue::from_str(&value).is_err()
        {
            // The value may be a token: only the name is named.
            out.push(format!(
                "{field}: header '{name}' is not a valid HTTP header"
            ));
            return;
        }
        headers.retain(|(n, _)| *n != name);
        headers.push((name, Secret::new(value)));
    };
    for var_name in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        if let Some(list) = var(var_name) {
            parse_header_list(
                &list,
                var_name,
                &mut |n, v, out| add(var_name, n, v, out),
                &mut out,
            );
        }
    }
    if let Some(name) = &raw.headers_env {
        match env(name) {
            Some(list) => {
                let field = format!("telemetry.headers_env ({name})");
                parse_header_list(
                    &list,
                    &field,
                    &mut |n, v, out| add(&field, n, v, out),
                    &mut out,
                );
            }
            None => out.push(format!(
                "telemetry.headers_env: the variable {name} is not set"
            )),
        }
    }
    for (n, v) in &raw.headers {
        add("telemetry.headers", n, v.clone(), &mut out);
    }

    if !(1..=1_000_000).contains(&raw.queue_spans) {
        out.push("telemetry.queue_spans: must be in 1..=1000000".into());
    }
    if !(1..=100_000).contains(&raw.batch_spans) {
        out.push("telemetry.batch_spans: must be in 1..=100000".into());
    }
    if !(1..=600_000).contains(&raw.export_interval_ms) {
        out.push("telemetry.export_interval_ms: must be in 1..=600000".into());
    }
    if !(1..=600_000).contains(&raw.export_timeout_ms) {
        out.push("telemetry.export_timeout_ms: must be in 1..=600000".into());
    }
    if !out.is_empty() {
        return Err(out);
    }
    Ok(Some(Telemetry {
        endpoint,
        protocol,
        sample_ratio,
        parent_based: parent_based.unwrap_or(true),
        service_name,
        headers,
        capture_content: raw.capture_content,
        queue_spans: raw.queue_spans,
        // A batch never holds more than the queue can.
        batch_spans: raw.batch_spans.min(raw.queue_spans),
        export_interval: Duration::from_millis(raw.export_interval_ms),
        export_timeout: Duration::from_millis(raw.export_timeout_ms),
    }))
}

/// `name=value,name2=value2` (values percent-decoded, as the OTLP exporter spec says).
fn parse_header_list(
    list: &str,
    field: &str,
    add: &mut dyn FnMut(&str, String, &mut Vec<String>),
    out: &mut Vec<String>,
) {
    for (i, pair) in list.split(',').enumerate() {
        if pair.trim().is_empty() {
            continue;
        }
        match pair.split_once('=') {
            Some((n, v)) if !n.trim().is_empty() => add(n, percent_decode(v.trim()), out),
            _ => out.push(format!("{field}: entry {} is not name=value", i + 1)),
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A value as an error message shows it: a value from the config file, quoted; one from an
/// environment variable, not at all (the environment holds secrets, and an endpoint URL may
/// carry credentials).
fn shown(field: &str, value: &str) -> String {
    if field.starts_with("OTEL_") {
        String::new()
    } else {
        format!(" '{value}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn off_unless_configured() {
        assert!(validate(None, &env_of(&[])).unwrap().is_none());
        let off = RawTelemetry {
            enabled: Some(false),
            ..Default::default()
        };
        let env = env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
        assert!(validate(Some(&off), &env).unwrap().is_none());
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert!(validate(None, &env).unwrap().is_none());
    }

    #[test]
    fn variables_alone_turn_it_on() {
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20abc,x-tenant=a",
            ),
            ("OTEL_SERVICE_NAME", "gw"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]);
        let t = validate(None, &env).unwrap().unwrap();
        assert_eq!(t.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(t.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(t.service_name, "gw");
        assert_eq!(t.sample_ratio, 0.25);
        assert!(!t.parent_based);
        assert_eq!(t.headers[0].0, "authorization");
        assert_eq!(t.headers[0].1.expose(), "Bearer abc");

        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        let t = validate(None, &env).unwrap().unwrap();
        assert_eq!(t.endpoint, "http://c:4317");
        assert_eq!(t.protocol, OtlpProtocol::Grpc);
        assert!(t.parent_based);
        assert_eq!(t.sample_ratio, 1.0);
    }

    #[test]
    fn the_section_wins_over_variables() {
        let raw: RawTelemetry = serde_yaml_ng::from_str(
            "{ otlp_endpoint: 'http://127.0.0.1:4318', protocol: http/protobuf, sample_ratio: 0.5, headers: {x-a: b} }",
        )
        .unwrap();
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        let t = validate(Some(&raw), &env).unwrap().unwrap();
        assert_eq!(t.endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(t.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(t.sample_ratio, 0.5);
        assert_eq!(t.headers.len(), 1);
    }

    #[test]
    fn bad_values_are_named() {
        let raw: RawTelemetry = serde_yaml_ng::from_str(
            "{ otlp_endpoint: 'collector:4318', protocol: http/json, sample_ratio: 2, queue_spans: 0, headers_env: NOPE }",
        )
        .unwrap();
        let e = validate(Some(&raw), &env_of(&[("OTEL_TRACES_SAMPLER", "sometimes")])).unwrap_err();
        let all = e.join("\n");
        for needle in [
            "telemetry.protocol",
            "telemetry.otlp_endpoint",
            "telemetry.sample_ratio",
            "telemetry.queue_spans",
            "telemetry.headers_env",
            "OTEL_TRACES_SAMPLER",
        ] {
            assert!(all.contains(needle), "{needle} missing from {all}");
        }
        assert!(serde_yaml_ng::from_str::<RawTelemetry>("{ endpoint: x }").is_err());
    }

    /// A bad value from the environment is named by its variable, never shown: the
    /// environment holds secrets, and an endpoint URL may carry credentials.
    #[test]
    fn bad_variables_are_named_not_shown() {
        const SECRET: &str = "canary-token-0451";
        let e = validate(
            None,
            &env_of(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", SECRET),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", SECRET),
                ("OTEL_TRACES_SAMPLER", SECRET),
            ]),
        )
        .unwrap_err()
        .join("\n");
        for needle in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_TRACES_SAMPLER",
        ] {
            assert!(e.contains(needle), "{needle} missing from {e}");
        }
        assert!(!e.contains(SECRET), "{e}");
    }

    #[test]
    fn secret_header_values_stay_out_of_errors() {
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=sk-secret\nx"),
        ]);
        let e = validate(None, &env).unwrap_err().join("\n");
        assert!(e.contains("authorization"));
        assert!(!e.contains("sk-secret"));
    }
}
