//! Entry points for fuzzing: each takes arbitrary bytes, drives one of the parsers or
//! translators that untrusted input reaches, and checks cheap invariants on what it gets back.
//!
//! They are used by the cargo-fuzz targets in `fuzz/` and replayed over the committed corpora
//! by `tests/fuzz_corpus.rs` (and by this crate's own tests). None may panic for any input; an invariant that does not hold
//! panics on purpose (that is a finding).
#![allow(clippy::panic)]

use serde_json::Value;

use dualrouter_wire as wire;

use dualrouter_proxy::ChatRequest;
use dualrouter_proxy::Format;
use dualrouter_proxy::SseFilter;
use dualrouter_routing::classify::arch_router;
use dualrouter_routing::classify::RouteSpec;

/// A fuzz entry point and its name (the fuzz target's and its corpus directory's).
pub type Target = (&'static str, fn(&[u8]));

/// Every fuzz entry point.
pub const TARGETS: &[Target] = &[
    ("openai_request", openai_request),
    ("anthropic_request", anthropic_request),
    ("responses_request", responses_request),
    ("sse_parse_and_translate", sse_parse_and_translate),
    ("response_translate", response_translate),
    ("config_parse", config_parse),
    ("arch_router_answer", arch_router_answer),
];

const FORMATS: [Format; 3] = [Format::Chat, Format::Messages, Format::Responses];

fn must_be_json(bytes: &[u8], what: &str) {
    if let Err(e) = serde_json::from_slice::<Value>(bytes) {
        panic!(
            "{what} is not valid JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// Checks a parsed request: its body for an upstream of every format (when there is one) is
/// JSON carrying the model id given, and a translation parses back as a request of its format
/// and translates again without panicking.
fn check_request(req: &ChatRequest) {
    let _ = req.messages();
    let _ = req.max_output_tokens();
    let _ = req.conversation();
    if let Ok(ir) = req.ir() {
        let _ = wire::estimate_tokens(ir);
        let _ = wire::ToolNames::new(ir);
    }
    for upstream in FORMATS {
        for caps in [
            wire::Caps::default(),
            wire::Caps {
                reasoning: true,
                structured_output: true,
            },
        ] {
            let target = wire::Target {
                format: upstream,
                model: "up/model",
                caps,
            };
            let _ = req.servable_by(upstream, caps);
            let Ok((body, _)) = req.body_for(&target) else {
                continue;
            };
            let v: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => panic!("upstream body for {upstream:?} is not JSON: {e}"),
            };
            assert_eq!(v["model"], "up/model", "model id not set for {upstream:?}");
            if upstream != req.format {
                // Round trip: the translation is a request of its format; translating it again
                // must not panic either.
                if let Ok(back) = ChatRequest::parse_as(upstream, &body) {
                    let again = wire::Target {
                        format: req.format,
                        model: "again",
                        caps,
                    };
                    if let Ok((b, _)) = back.body_for(&again) {
                        must_be_json(&b, "round-trip body");
                    }
                }
            }
        }
    }
}

/// An OpenAI chat-completions request body, as `POST /v1/chat/completions` receives it (also
/// the `/v1/route`, `/v1/feedback` and `/v1/embeddings` bodies, which are parsed by the same
/// JSON layer).
pub fn openai_request(data: &[u8]) {
    if let Ok(req) = ChatRequest::parse(data) {
        assert_eq!(req.format, Format::Chat);
        assert!(!req.model.trim().is_empty());
        check_request(&req);
    }
    let _ = dualrouter_proxy::route_request(data);
    let _ = dualrouter_proxy::embeddings_request(data);
    if let Ok(f) = dualrouter_proxy::feedback_request(data) {
        assert!((0.0..=1.0).contains(&f.score));
        assert!(uuid::Uuid::parse_str(&f.decision_id).is_ok());
    }
}

/// An Anthropic Messages request body, as `POST /v1/messages` (and `count_tokens`) receive it.
pub fn anthropic_request(data: &[u8]) {
    if let Ok(req) = ChatRequest::parse_anthropic(data) {
        assert_eq!(req.format, Format::Messages);
        check_request(&req);
    }
    if let Ok(req) = dualrouter_proxy::count_tokens_request(data) {
        let _ = req.ir().map(wire::estimate_tokens);
    }
}

/// A Responses request body, as `POST /v1/responses` receives it.
pub fn responses_request(data: &[u8]) {
    if let Ok(req) = ChatRequest::parse_responses(data) {
        assert_eq!(req.format, Format::Responses);
        check_request(&req);
        let _ = dualrouter_core::conversation::Conversation::from_responses(&req.body);
    }
}

/// An upstream SSE stream, cut into chunks at arbitrary points and run through the filter for
/// every pair of formats (pass-through for equal ones, translation otherwise). The first byte
/// chooses the chunk size, so the splitter sees events cut everywhere.
pub fn sse_parse_and_translate(data: &[u8]) {
    let (step, stream) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s % 64) + 1, rest),
        None => (1, data),
    };
    for upstream in FORMATS {
        for client in FORMATS {
            for include_usage in [false, true] {
                let echo = wire::Echo {
                    include_usage,
                    input_estimate: 7,
                    response_id: "resp_fuzz".into(),
                    ..Default::default()
                };
                let mut f = SseFilter::between(upstream, client, echo);
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
    let _ = dualrouter_proxy::event_data(stream);
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

/// A whole (non-streamed) upstream response or error body, translated between every pair of
/// formats.
pub fn response_translate(data: &[u8]) {
    let status = data.first().map_or(200, |b| 400 + u16::from(*b % 200));
    for from in FORMATS {
        for to in FORMATS {
            let e = wire::translate_error(from, to, status, data);
            assert!(e.is_object());
        }
    }
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        for from in FORMATS {
            let _ = dualrouter_proxy::usage_of_body(from, &v);
            let Ok(answer) = wire::decode_response(from, &v) else {
                continue;
            };
            for to in FORMATS {
                let echo = wire::Echo {
                    response_id: "resp_fuzz".into(),
                    ..Default::default()
                };
                let out = wire::encode_response(to, &answer, &echo);
                // What the proxy writes reads back in its own format.
                let out: Value = match serde_json::from_str(&out) {
                    Ok(v) => v,
                    Err(e) => panic!("{from:?} → {to:?} answer is not JSON: {e}: {out}"),
                };
                if let Err(e) = wire::decode_response(to, &out) {
                    panic!("{from:?} → {to:?} answer does not decode: {e}: {out}");
                }
            }
        }
    }
}

/// A config file: parsed strictly, then validated with every secret variable set to a canary.
/// The validated config (or its error) must never show that canary.
pub fn config_parse(data: &[u8]) {
    const CANARY: &str = "fuzz-canary-secret-7f3a";
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut raw) = dualrouter_core::config::parse(text, "fuzz.yaml") else {
        return;
    };
    // A keys file would be read from disk (and could be /dev/zero); the fuzzer tests parsing.
    if let Some(a) = raw.auth.as_mut() {
        a.keys_file = None;
    }
    let env = |_: &str| Some(CANARY.to_string());
    match dualrouter_core::config::validated::validate(raw, &env) {
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
    let c = dualrouter_core::conversation::Conversation::from_prompt(&text);
    let p = arch_router::prompt(&routes, &c, 64);
    assert!(p.contains("<routes>"));
}
