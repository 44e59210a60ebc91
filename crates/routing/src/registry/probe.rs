//! Provider checks and model discovery: `GET {base_url}/models` with the provider's own auth
//! (OpenAI-compatible servers, Bifrost and Anthropic all answer it with `{"data": [{"id"}]}`).
//!
//! One request does both jobs: a provider that answers is healthy, and when it has
//! `discover_models` its list is what discovery found. Errors are short labels (`connect`,
//! `timeout`, `status 503`, …): never a URL with credentials, never a key.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::{Discovered, Registry};
use dualrouter_core::config::raw::ProviderKind;
use dualrouter_core::config::Provider;

/// The most a model list may weigh; a bigger answer is an error, not a memory sink.
pub const MAX_LIST_BYTES: usize = 4 << 20;
/// The most models one provider may list.
pub const MAX_LISTED_MODELS: usize = 10_000;

fn client(provider: &Provider, timeout: Duration) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("dualrouter/", env!("CARGO_PKG_VERSION")));
    if let Some(file) = &provider.ca_file {
        let pem = std::fs::read(file).map_err(|e| format!("ca_file: {}", e.kind()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|_| "ca_file is not PEM certificates".to_string())?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build()
        .map_err(|_| "cannot build an HTTP client".to_string())
}

/// The models `provider` lists, or why it could not be asked.
pub async fn list_models(provider: &Provider, timeout: Duration) -> Result<Vec<String>, String> {
    let scheme = if provider.tls { "https" } else { "http" };
    let url = format!(
        "{scheme}://{}:{}{}/models",
        bracket_v6(&provider.host),
        provider.port,
        provider.base_path
    );
    let mut req = client(provider, timeout)?.get(&url);
    if provider.kind == ProviderKind::Anthropic {
        req = req.header("anthropic-version", dualrouter_wire::ANTHROPIC_VERSION);
    }
    for (name, value) in &provider.headers {
        req = req.header(name.clone(), value.clone());
    }
    if let Some(key) = &provider.api_key {
        req = match provider.kind {
            ProviderKind::Anthropic => req.header("x-api-key", key.expose()),
            ProviderKind::Openai => req.bearer_auth(key.expose()),
        };
    }
    let resp = req.send().await.map_err(|e| {
        if e.is_timeout() {
            "timeout".to_string()
        } else if e.is_connect() {
            "connect".to_string()
        } else {
            "request failed".to_string()
        }
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("status {}", status.as_u16()));
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if e.is_timeout() {
                "timeout".to_string()
            } else {
                "broken answer".to_string()
            }
        })?;
        if body.len() + chunk.len() > MAX_LIST_BYTES {
            return Err(format!("model list over {MAX_LIST_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    parse_model_list(&body)
}

/// `{"data": [{"id": "…"}, …]}` → the ids, in order, without duplicates.
pub fn parse_model_list(body: &[u8]) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct List {
        data: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        id: String,
    }
    let list: List =
        serde_json::from_slice(body).map_err(|_| "not a model list ({\"data\": [{\"id\"}]})")?;
    if list.data.len() > MAX_LISTED_MODELS {
        return Err(format!("more than {MAX_LISTED_MODELS} models listed"));
    }
    let mut seen = std::collections::HashSet::new();
    Ok(list
        .data
        .into_iter()
        .map(|e| e.id)
        .filter(|id| !id.trim().is_empty() && id.len() <= 200 && !id.contains(['\r', '\n']))
        .filter(|id| seen.insert(id.clone()))
        .collect())
}

/// An answer with a 4xx status (but not 429, which is a busy server).
fn is_client_error(e: &str) -> bool {
    e.strip_prefix("status ")
        .and_then(|c| c.parse::<u16>().ok())
        .is_some_and(|c| (400..500).contains(&c) && c != 429)
}

fn bracket_v6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Asks the providers with `discover_models` for their lists (at start and on reload), each
/// within `timeout`; a provider that does not answer is logged and left out of the result.
pub async fn discover(providers: &[Arc<Provider>], timeout: Duration) -> Discovered {
    let asks = providers
        .iter()
        .filter(|p| p.discover_models)
        .map(|p| async move { (p.name.clone(), list_models(p, timeout).await) });
    let mut found = Discovered::new();
    for (name, result) in futures::future::join_all(asks).await {
        match result {
            Ok(ids) => {
                tracing::info!(provider = %name, models = ids.len(), "discovered models");
                found.insert(name, ids);
            }
            Err(e) => tracing::warn!(provider = %name, error = %e, "model discovery failed"),
        }
    }
    found
}

/// One round of checks: every provider asked once, concurrently, within `timeout`; each answer
/// recorded in `registry`. Returns the lists of the providers with `discover_models` that
/// answered.
pub async fn check_providers(
    providers: &[Arc<Provider>],
    timeout: Duration,
    registry: &Registry,
) -> Discovered {
    let asks = providers
        .iter()
        .map(|p| async move { (p, list_models(p, timeout).await) });
    let mut found = Discovered::new();
    for (provider, result) in futures::future::join_all(asks).await {
        match result {
            Ok(ids) => {
                registry.record_check(&provider.name, Ok(()));
                if provider.discover_models {
                    found.insert(provider.name.clone(), ids);
                }
            }
            // It answered: not every OpenAI-compatible server lists models (404), and a key
            // without that right (401/403) still serves chat. Reachable is healthy here.
            Err(e) if is_client_error(&e) => {
                registry.record_check(&provider.name, Ok(()));
                if provider.discover_models {
                    tracing::warn!(provider = %provider.name, error = %e, "model discovery failed");
                }
            }
            Err(e) => {
                tracing::debug!(provider = %provider.name, error = %e, "provider check failed");
                registry.record_check(&provider.name, Err(e));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_lists_parse_both_providers_shapes() {
        let openai = br#"{"object":"list","data":[{"id":"gpt-4o","object":"model"},{"id":"gpt-4o"},{"id":""},{"id":"o3"}]}"#;
        assert_eq!(parse_model_list(openai).unwrap(), ["gpt-4o", "o3"]);
        let anthropic = br#"{"data":[{"type":"model","id":"claude-sonnet-4-5","display_name":"Claude"}],"has_more":false}"#;
        assert_eq!(parse_model_list(anthropic).unwrap(), ["claude-sonnet-4-5"]);
        assert!(parse_model_list(b"<html>").is_err());
        assert!(parse_model_list(br#"{"models":[]}"#).is_err());
    }

    #[test]
    fn a_provider_that_answers_4xx_is_reachable() {
        assert!(is_client_error("status 404"));
        assert!(is_client_error("status 401"));
        assert!(!is_client_error("status 429"));
        assert!(!is_client_error("status 503"));
        assert!(!is_client_error("connect"));
    }
}
