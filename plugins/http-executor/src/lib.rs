//! Executor for an OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp, a Bifrost gateway…),
//! reached through the host's `http` capability, so the endpoint's host must be in the plugin's
//! `allow_hosts`.
//!
//! `invoke` sends `POST {base_url}/chat/completions` (non-streaming) and reads
//! `choices[0].message.content`, `finish_reason` and `usage`. `health` sends
//! `GET {base_url}/models` and wants a 2xx. Errors: 401/403/408/429/5xx and transport failures are
//! `unavailable` (the router falls back), 400/404/413/422 `invalid-request`, anything unparsable
//! `failed`.
//!
//! Config keys: `base_url` (required, e.g. `http://127.0.0.1:8000/v1`), `models`
//! (`id[=upstream-id],…`, required), `context_tokens` (128000), `input_cost_per_mtok` /
//! `output_cost_per_mtok` (0), `tier` (`standard`), `timeout_ms` (0: the host's limit), and the
//! secret `api_key` (give it with `secret_env: { api_key: ENV_VAR }`; absent → no auth header).

wit_bindgen::generate!({ world: "executor", path: "../../wit/v0.1.0" });

use dualrouter::plugin::types::{
    ChatRequest, ChatResponse, ExecutorError, ExecutorInfo, HealthReport, HealthStatus, ModelInfo,
    Usage,
};
use dualrouter::plugin::{config, http};
use exports::dualrouter::plugin::executor_api::Guest;
use serde_json::{json, Value};

struct HttpExecutor;

fn cfg_num<T: std::str::FromStr>(key: &str, default: T) -> T {
    config::get(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// `(public id, upstream id)` pairs from `models`.
fn models() -> Vec<(String, String)> {
    config::get("models")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((id, up)) => (id.trim().to_string(), up.trim().to_string()),
            None => (s.to_string(), s.to_string()),
        })
        .collect()
}

fn base_url() -> Result<String, ExecutorError> {
    config::get("base_url")
        .map(|u| u.trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ExecutorError::Unavailable("config key base_url is not set".into()))
}

fn send(method: &str, url: String, body: Vec<u8>) -> Result<http::Response, ExecutorError> {
    let mut headers = vec![("accept".to_string(), "application/json".to_string())];
    if !body.is_empty() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    if let Some(key) = config::get("api_key").filter(|k| !k.is_empty()) {
        headers.push(("authorization".into(), format!("Bearer {key}")));
    }
    http::send(&http::Request {
        method: method.into(),
        url,
        headers,
        body,
        timeout_ms: cfg_num("timeout_ms", 0),
    })
    .map_err(|e| match e {
        http::HttpError::NotAllowed(m) | http::HttpError::Failed(m) => {
            ExecutorError::Unavailable(m)
        }
        http::HttpError::InvalidRequest(m) => ExecutorError::InvalidRequest(m),
        http::HttpError::TimedOut(ms) => {
            ExecutorError::Unavailable(format!("timed out after {ms} ms"))
        }
        http::HttpError::TooLarge(n) => ExecutorError::Failed(format!("response over {n} bytes")),
    })
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    s.chars().take(300).collect()
}

impl Guest for HttpExecutor {
    fn describe() -> ExecutorInfo {
        let models = models()
            .into_iter()
            .map(|(id, upstream)| ModelInfo {
                description: format!("{upstream} on an OpenAI-compatible endpoint"),
                id,
                context_tokens: cfg_num("context_tokens", 128_000),
                input_cost_per_mtok: cfg_num("input_cost_per_mtok", 0.0),
                output_cost_per_mtok: cfg_num("output_cost_per_mtok", 0.0),
                tier: Some(config::get("tier").unwrap_or_else(|| "standard".into())),
                capabilities: vec!["chat".into()],
            })
            .collect();
        ExecutorInfo {
            id: "http".into(),
            kind: "http".into(),
            models,
        }
    }

    fn health() -> HealthReport {
        let checked = base_url().and_then(|b| send("GET", format!("{b}/models"), Vec::new()));
        match checked {
            Ok(r) if (200..300).contains(&r.status) => HealthReport {
                status: HealthStatus::Healthy,
                detail: format!("GET /models answered {}", r.status),
            },
            Ok(r) => HealthReport {
                status: HealthStatus::Unhealthy,
                detail: format!("GET /models answered {}: {}", r.status, snippet(&r.body)),
            },
            Err(e) => HealthReport {
                status: HealthStatus::Unhealthy,
                detail: format!("{e:?}"),
            },
        }
    }

    fn invoke(request: ChatRequest) -> Result<ChatResponse, ExecutorError> {
        let upstream = models()
            .into_iter()
            .find(|(id, _)| *id == request.model)
            .map(|(_, up)| up)
            .ok_or_else(|| ExecutorError::UnknownModel(request.model.clone()))?;
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| json!({ "role": m.role, "content": m.content }))
            .collect();
        let mut body = json!({ "model": upstream, "messages": messages, "stream": false });
        if let Some(n) = request.max_tokens {
            body["max_tokens"] = json!(n);
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        let url = format!("{}/chat/completions", base_url()?);
        let resp = send("POST", url, body.to_string().into_bytes())?;
        match resp.status {
            200..=299 => {}
            401 | 403 | 408 | 429 | 500..=599 => {
                return Err(ExecutorError::Unavailable(format!(
                    "upstream answered {}: {}",
                    resp.status,
                    snippet(&resp.body)
                )))
            }
            400 | 404 | 413 | 422 => {
                return Err(ExecutorError::InvalidRequest(format!(
                    "upstream answered {}: {}",
                    resp.status,
                    snippet(&resp.body)
                )))
            }
            s => {
                return Err(ExecutorError::Failed(format!(
                    "upstream answered {s}: {}",
                    snippet(&resp.body)
                )))
            }
        }
        let v: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| ExecutorError::Failed(format!("upstream sent invalid JSON: {e}")))?;
        let choice = v
            .get("choices")
            .and_then(|c| c.get(0))
            .ok_or_else(|| ExecutorError::Failed("upstream response has no choices".into()))?;
        let text = choice
            .pointer("/message/content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let finish_reason = choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .unwrap_or("stop")
            .to_string();
        let tokens = |k: &str| {
            v.get("usage")
                .and_then(|u| u.get(k))
                .and_then(Value::as_u64)
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        };
        let usage = match (tokens("prompt_tokens"), tokens("completion_tokens")) {
            (Some(input_tokens), Some(output_tokens)) => Some(Usage {
                input_tokens,
                output_tokens,
            }),
            _ => None,
        };
        Ok(ChatResponse {
            text,
            usage,
            finish_reason,
        })
    }
}

export!(HttpExecutor);
