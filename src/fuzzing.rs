//! Entry points for fuzzing: each takes arbitrary bytes, drives one of the parsers or
//! translators that untrusted input reaches, and checks cheap invariants on what it gets back.
//!
//! They are used by the cargo-fuzz targets in `fuzz/` and replayed over the committed corpora
//! by `tests/fuzz_corpus.rs`. None may panic for any input; an invariant that does not hold
//! panics on purpose (that is a finding).
#![allow(clippy::panic)]

use serde_json::Value;

use crate::error::ApiFormat;
use crate::proxy::ingress::ChatRequest;
use crate::proxy::sse::SseFilter;
use crate::router::classify::arch_router;
use crate::router::classify::RouteSpec;
use crate::translate;

/// A fuzz entry point and its name (the fuzz target's and its corpus directory's).
pub type Target = (&'static str, fn(&[u8]));

/// Every fuzz entry point.
pub const TARGETS: &[Target] = &[
    ("openai_request", openai_request),
    ("anthropic_request", anthropic_request),
    ("sse_parse_and_translate", sse_parse_and_translate),
    ("response_translate", response_translate),
    ("config_parse", config_parse),
    ("arch_router_answer", arch_router_answer),
];

fn must_be_json(bytes: &[u8], what: &str) {
    if let Err(e) = serde_json::from_slice::<Value>(bytes) {
        panic!(
            "{what} is not valid JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// Checks a parsed request: its upstream bodies for both formats are JSON carrying the model
/// id given, and a translation to the other format parses back as a request of that format
/// (and translates back again) without panicking.
fn check_request(req: &ChatRequest) {
    let _ = req.messages();
    let _ = req.max_output_tokens();
    let _ = crate::router::conversation::Conversation::from_openai_messages(req.messages());
    for upstream in [ApiFormat::OpenAi, ApiFormat::Anthropic] {
        let Ok(body) = req.upstream_body_for(upstream, "up/model") else {
            continue;
        };
        let v: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => panic!("upstream body for {upstream:?} is not JSON: {e}"),
        };
        assert_eq!(v["model"], "up/model", "model id not set for {upstream:?}");
        if upstream != req.format {
            // Round trip: the translation is a request of the other format; translating it
            // back must not panic either.
            if let Ok(back) = match upstream {
                ApiFormat::OpenAi => ChatRequest::parse(&body),
                ApiFormat::Anthropic => ChatRequest::parse_anthropic(&body),
            } {
                if let Ok(b) = back.upstream_body_for(req.format, "again") {
                    must_be_json(&b, "round-trip body");
                }
            }
        }
    }
    if req.format == ApiFormat::OpenAi {
        must_be_json(&req.upstream_body("m"), "OpenAI upstream body");
    }
}

/// An OpenAI chat-completions request body, as `POST /v1/chat/completions` receives it (also
/// the `/v1/route` and `/v1/feedback` bodies, which are parsed by the same JSON layer).
pub fn openai_request(data: &[u8]) {
    if let Ok(req) = ChatRequest::parse(data) {
        assert_eq!(req.format, ApiFormat::OpenAi);
        assert!(!req.model.trim().is_empty());
        check_request(&req);
    }
    let _ = crate::proxy::ingress::route_request(data);
    if let Ok(f) = crate::proxy::ingress::feedback_request(data) {
        assert!((0.0..=1.0).contains(&f.score));
        assert!(uuid::Uuid::parse_str(&f.decision_id).is_ok());
    }
}

/// An Anthropic Messages request body, as `POST /v1/messages` receives it.
pub fn anthropic_request(data: &[u8]) {
    if let Ok(req) = ChatRequest::parse_anthropic(data) {
        assert_eq!(req.format, ApiFormat::Anthropic);
        check_request(&req);
    }
}

/// An upstream SSE stream, cut into chunks at arbitrary points and run through each of the
/// four filter modes (pass-through both ways, translation both ways). The first byte chooses
/// the chunk size, so the splitter sees events cut everywhere.
pub fn sse_parse_and_translate(data: &[u8]) {
    let (step, stream) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s % 64) + 1, rest),
        None => (1, data),
    };
    let formats = [ApiFormat::OpenAi, ApiFormat::Anthropic];
    for upstream in formats {
        for client in formats {
            for include_usage in [false, true] {
                let mut f = SseFilter::between(upstream, client, include_usage);
                let mut out = Vec::new();
                for chunk in stream.chunks(step) {
                    out.extend_from_slice(&f.push(chunk));
                }
                out.extend_from_slice(&f.finish());
                let _ = f.error_event("stopped", "upstream_error");
                if upstream != client {
                    // What the proxy produces itself must be well-formed: every data line of a
                    // translated stream is JSON (or OpenAI's `[DONE]`).
                    check_translated(&out);
                }
            }
        }
    }
    let _ = crate::proxy::sse::event_data(stream);
}

fn check_translated(out: &[u8]) {
    for line in out.split(|&b| b == b'\n') {
        if let Some(d) = line.strip_prefix(b"data: ") {
            if d != b"[DONE]" {
                must_be_json(d, "a translated stream's data line");
            }
        }
    }
}

/// A whole (non-streamed) upstream response or error body, translated both ways.
pub fn response_translate(data: &[u8]) {
    let status = data.first().map_or(200, |b| 400 + u16::from(*b % 200));
    let _ = translate::anthropic_to_openai_error(status, data);
    let _ = translate::openai_to_anthropic_error(status, data);
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        let _ = crate::proxy::sse::Usage::from_body(ApiFormat::OpenAi, &v);
        let _ = crate::proxy::sse::Usage::from_body(ApiFormat::Anthropic, &v);
        let o = translate::anthropic_to_openai_response(&v);
        let a = translate::openai_to_anthropic_response(&v);
        let _ = translate::openai_to_anthropic_response(&o);
        let _ = translate::anthropic_to_openai_response(&a);
    }
}

/// A config file: parsed strictly, then validated with every secret variable set to a canary.
/// The validated config (or its error) must never show that canary.
pub fn config_parse(data: &[u8]) {
    const CANARY: &str = "fuzz-canary-secret-7f3a";
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut raw) = crate::config::parse(text, "fuzz.yaml") else {
        return;
    };
    // A keys file would be read from disk (and could be /dev/zero); the fuzzer tests parsing.
    if let Some(a) = raw.auth.as_mut() {
        a.keys_file = None;
    }
    let env = |_: &str| Some(CANARY.to_string());
    match crate::config::validated::validate(raw, &env) {
        Ok(cfg) => {
            let shown = format!("{cfg:?}");
            assert!(
                !shown.contains(CANARY),
                "a secret shows in the config's Debug"
            );
        }
        Err(e) => {
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(CANARY), "a secret shows in a config error");
        }
    }
}

/// An Arch-Router model's answer text.
pub fn arch_router_answer(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let routes = [
        RouteSpec::new("programming/bug-fix", "fixing errors in code"),
        RouteSpec::new("writing/summary", "summarising a text"),
        RouteSpec::new("other/general", "anything else"),
    ];
    if let Some(name) = arch_router::parse_answer(&text, &routes) {
        assert!(
            routes.iter().any(|r| r.name == name),
            "parse_answer returned a route that is not configured: {name}"
        );
    }
    // The answer's text can also come back as the conversation of the next prompt.
    let c = crate::router::conversation::Conversation::from_prompt(&text);
    let p = arch_router::prompt(&routes, &c, 64);
    assert!(p.contains("<routes>"));
}
