//! Forward: one upstream exchange through Pingora's connector (pooled keep-alive connections,
//! TLS with certificate and host-name checks), bounded by the configured timeouts.
//!
//! The request goes out in one write (`writev` of header and body) and Pingora's HTTP/1 client
//! reads the answer. Pingora's own request writer flushes the header before the body, which costs
//! a second system call here and, on the upstream's side, a wake-up that finds a request
//! without its body (`docs/benchmarks.md#where-a-pass-through-requests-time-goes`).
//!
//! The request body is held whole in memory (it was read to route on it), so an exchange can be
//! replayed against another upstream with a body of any size: this is why the proxy drives the
//! upstream itself instead of relying on Pingora's 64 KiB retry buffer (`docs/architecture.md#why-the-proxy-drives-the-upstream-itself`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use pingora::connectors::TransportConnector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::v1::client::{http_req_header_to_wire, HttpSession};
use pingora::protocols::Stream;
use pingora::tls::x509::X509;
use pingora::upstreams::peer::{HttpPeer, Peer, ALPN};
use tokio::io::AsyncWriteExt;

use crate::error::{ApiError, Format, TimeoutPhase};
use dualrouter_core::config::raw::{ProviderKind, ResponsesMode};
use dualrouter_core::config::validated::{Limits, Provider};

/// The system's trusted roots, read once when a provider needs them beside its own CA.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Connects to providers. One per process: its pool is shared by every request.
pub struct Upstream {
    connector: TransportConnector,
    /// Per provider with a `ca_file`: the system's roots plus that file's certificates.
    cas: HashMap<String, Arc<Box<[X509]>>>,
    /// Resolved provider addresses, refreshed after [`DNS_TTL`] (lookups never block a worker).
    dns: std::sync::Mutex<HashMap<(String, u16), (std::net::SocketAddr, Instant)>>,
}

/// How long a resolved provider address is used before it is looked up again.
const DNS_TTL: Duration = Duration::from_secs(60);

impl Upstream {
    /// The connector for these providers (each one's `ca_file` read now).
    pub fn new(providers: &[Arc<Provider>]) -> anyhow::Result<Self> {
        let mut cas = HashMap::new();
        for p in providers {
            if let Some(file) = &p.ca_file {
                let mut certs = system_roots();
                let pem = std::fs::read(file).map_err(|e| {
                    anyhow::anyhow!(
                        "provider '{}': cannot read ca_file {}: {e}",
                        p.name,
                        file.display()
                    )
                })?;
                let extra = X509::stack_from_pem(&pem).map_err(|e| {
                    anyhow::anyhow!(
                        "provider '{}': ca_file {} is not PEM certificates: {e}",
                        p.name,
                        file.display()
                    )
                })?;
                if extra.is_empty() {
                    anyhow::bail!(
                        "provider '{}': ca_file {} holds no certificate",
                        p.name,
                        file.display()
                    );
                }
                certs.extend(extra);
                cas.insert(p.name.clone(), Arc::new(certs.into_boxed_slice()));
            }
        }
        Ok(Self {
            connector: TransportConnector::new(None),
            cas,
            dns: Default::default(),
        })
    }

    async fn resolve(&self, provider: &Provider) -> Result<std::net::SocketAddr, ApiError> {
        if let Ok(ip) = provider.host.parse::<std::net::IpAddr>() {
            return Ok((ip, provider.port).into());
        }
        let key = (provider.host.clone(), provider.port);
        if let Ok(cache) = self.dns.lock() {
            if let Some((addr, at)) = cache.get(&key) {
                if at.elapsed() < DNS_TTL {
                    return Ok(*addr);
                }
            }
        }
        let addr = tokio::net::lookup_host((provider.host.as_str(), provider.port))
            .await
            .ok()
            .and_then(|mut it| it.next())
            .ok_or_else(|| ApiError::UpstreamUnreachable {
                provider: provider.name.clone(),
                detail: format!("cannot resolve host '{}'", provider.host),
            })?;
        if let Ok(mut cache) = self.dns.lock() {
            cache.insert(key, (addr, Instant::now()));
        }
        Ok(addr)
    }

    fn peer(&self, provider: &Provider, addr: std::net::SocketAddr, limits: &Limits) -> HttpPeer {
        let sni = if provider.tls {
            provider.host.clone()
        } else {
            String::new()
        };
        let mut peer = HttpPeer::new(addr, provider.tls, sni);
        // Pingora's pool key leaves the trusted CAs out: without this, a connection verified
        // against one provider's private CA could be reused for another provider at the same
        // address that does not trust it. One pool per provider.
        peer.group_key = provider_key(&provider.name);
        let o = &mut peer.options;
        o.connection_timeout = Some(limits.upstream_connect);
        o.total_connection_timeout = Some(limits.upstream_connect);
        o.idle_timeout = Some(limits.upstream_pool_idle);
        o.alpn = ALPN::H1;
        o.verify_cert = true;
        o.verify_hostname = true;
        o.ca = self.cas.get(&provider.name).cloned();
        peer
    }

    /// Sends the request and waits for the response header. Nothing has reached the client when
    /// this returns, so an error here may be retried elsewhere.
    ///
    /// A pooled connection the upstream closed in the meantime fails on first use; such a
    /// failure is retried on another connection (bounded), as any HTTP client does.
    pub async fn open(
        &self,
        provider: &Provider,
        limits: &Limits,
        header: &RequestHeader,
        body: &Bytes,
        deadline: Instant,
    ) -> Result<Exchange, ApiError> {
        let addr = self.resolve(provider).await?;
        let peer = self.peer(provider, addr, limits);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (stream, reused) = self.connect(&peer, provider, deadline).await?;
            match send(stream, &peer, provider, limits, header, body, deadline).await {
                Ok((session, upstream_latency)) => {
                    return Ok(Exchange {
                        session,
                        peer,
                        upstream_latency,
                    })
                }
                Err(e)
                    if reused && attempts < 3 && !matches!(e, ApiError::UpstreamTimeout { .. }) =>
                {
                    tracing::debug!(provider = %provider.name, "pooled connection failed, retrying on a new one: {e}");
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn connect(
        &self,
        peer: &HttpPeer,
        provider: &Provider,
        deadline: Instant,
    ) -> Result<(Stream, bool), ApiError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, self.connector.get_stream(peer)).await {
            Err(_) => Err(ApiError::UpstreamTimeout {
                provider: provider.name.clone(),
                phase: TimeoutPhase::Total,
            }),
            Ok(Err(e)) => Err(classify_connect_error(provider, &e)),
            Ok(Ok(s)) => Ok(s),
        }
    }

    /// Returns a finished exchange's connection to the pool.
    pub async fn release(&self, ex: Exchange, limits: &Limits) {
        let mut session = ex.session;
        session.respect_keepalive();
        if let Some(stream) = session.reuse().await {
            self.connector.release_stream(
                stream,
                ex.peer.reuse_hash(),
                Some(limits.upstream_pool_idle),
            );
        }
    }
}

/// An upstream exchange whose response header has arrived.
pub struct Exchange {
    pub session: HttpSession,
    peer: HttpPeer,
    /// From the request written to the response header.
    pub upstream_latency: Duration,
}

impl Exchange {
    pub fn response_header(&self) -> Option<&ResponseHeader> {
        self.session.resp_header()
    }

    /// The next body chunk, waiting at most `idle` for it and never past `deadline`.
    pub async fn next_chunk(
        &mut self,
        provider: &Provider,
        idle: Duration,
        deadline: Instant,
    ) -> Result<Option<Bytes>, ApiError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let (wait, phase) = if idle < remaining {
            (idle, TimeoutPhase::Idle)
        } else {
            (remaining, TimeoutPhase::Total)
        };
        match tokio::time::timeout(wait, self.session.read_body_bytes()).await {
            Err(_) => Err(ApiError::UpstreamTimeout {
                provider: provider.name.clone(),
                phase,
            }),
            Ok(Err(e)) => Err(ApiError::UpstreamBroken {
                provider: provider.name.clone(),
                detail: format!("reading the response body: {}", e.etype().as_str()),
            }),
            Ok(Ok(chunk)) => Ok(chunk),
        }
    }

    pub fn response_done(&mut self) -> bool {
        self.session.is_body_done()
    }
}

/// Writes the request on `stream` and reads the response header; returns the HTTP/1 session
/// holding the answer and the time that took.
async fn send(
    mut stream: Stream,
    peer: &HttpPeer,
    provider: &Provider,
    limits: &Limits,
    header: &RequestHeader,
    body: &Bytes,
    deadline: Instant,
) -> Result<(HttpSession, Duration), ApiError> {
    let broken = |what: &str, e: &dyn std::fmt::Display| ApiError::UpstreamBroken {
        provider: provider.name.clone(),
        detail: format!("{what}: {e}"),
    };
    // The header is ours (built by the proxy), so this fails only on a bug; said as such.
    let head = http_req_header_to_wire(header).ok_or_else(|| {
        broken(
            "writing the request",
            &"the request line holds a forbidden byte",
        )
    })?;
    let started = Instant::now();
    let remaining = deadline.saturating_duration_since(started);
    let (budget, phase) = if limits.first_byte < remaining {
        (limits.first_byte, TimeoutPhase::FirstByte)
    } else {
        (remaining, TimeoutPhase::Total)
    };
    let exchange = async {
        // Header and body in one write: vectored on a plain connection (the stream's write
        // buffer is empty, so the slices go straight to `writev`).
        let mut request = head.freeze().chain(body.clone());
        stream
            .write_all_buf(&mut request)
            .await
            .map_err(|e| broken("writing the request", &e.kind()))?;
        stream
            .flush()
            .await
            .map_err(|e| broken("writing the request", &e.kind()))?;
        let mut session = HttpSession::new_with_options(stream, peer);
        session
            .read_response()
            .await
            .map_err(|e| broken("reading the response header", &e.etype().as_str()))?;
        Ok(session)
    };
    match tokio::time::timeout(budget, exchange).await {
        Err(_) => Err(ApiError::UpstreamTimeout {
            provider: provider.name.clone(),
            phase,
        }),
        Ok(Err(e)) => Err(e),
        Ok(Ok(session)) => Ok((session, started.elapsed())),
    }
}

fn classify_connect_error(provider: &Provider, e: &pingora::Error) -> ApiError {
    use pingora::ErrorType;
    match e.etype() {
        ErrorType::ConnectTimedout => ApiError::UpstreamTimeout {
            provider: provider.name.clone(),
            phase: TimeoutPhase::Connect,
        },
        etype => ApiError::UpstreamUnreachable {
            provider: provider.name.clone(),
            // The error type and its context (e.g. "certificate verify failed"), never headers.
            detail: match &e.context {
                Some(ctx) => format!("{}: {ctx}", etype.as_str()),
                None => etype.as_str().to_string(),
            },
        },
    }
}

fn provider_key(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

fn system_roots() -> Vec<X509> {
    for path in SYSTEM_BUNDLES {
        if let Ok(pem) = std::fs::read(path) {
            if let Ok(certs) = X509::stack_from_pem(&pem) {
                return certs;
            }
        }
    }
    tracing::warn!("no system CA bundle found; only the configured ca_file is trusted");
    Vec::new()
}

/// The wire format a provider takes a request in, for a client speaking `client`: Anthropic's
/// Messages for an Anthropic provider; for an OpenAI one, Responses when it serves them and
/// the client speaks them (or when it serves nothing else), chat completions otherwise.
pub(crate) fn upstream_format(provider: &Provider, client: Format) -> Format {
    match provider.kind {
        ProviderKind::Anthropic => Format::Messages,
        ProviderKind::Openai => match (provider.responses, client) {
            (ResponsesMode::Only, _) | (ResponsesMode::Native, Format::Responses) => {
                Format::Responses
            }
            _ => Format::Chat,
        },
    }
}

/// The API path (after the provider's base path) a request of `format` goes to.
pub(crate) fn path_of(format: Format) -> &'static str {
    match format {
        Format::Chat => "/chat/completions",
        Format::Messages => "/messages",
        Format::Responses => "/responses",
    }
}

/// Builds an upstream request: `POST {base}{path}` with `Authorization: Bearer KEY`
/// (OpenAI-compatible) or `x-api-key: KEY` and `anthropic-version` (Anthropic). Only what the
/// proxy sets goes upstream, plus `forwarded`: the client headers a provider of the client's
/// own format is meant to see (Anthropic's `anthropic-beta` and `anthropic-version`). The
/// provider's configured `headers` come last and win.
pub(crate) fn upstream_request(
    provider: &Provider,
    path: &str,
    body_len: usize,
    stream: bool,
    forwarded: &[(http::HeaderName, http::HeaderValue)],
) -> Result<RequestHeader, ApiError> {
    let anthropic = provider.kind == ProviderKind::Anthropic;
    let path = format!("{}{path}", provider.base_path);
    let internal = |e: pingora::BError| {
        ApiError::Internal(format!(
            "building the upstream request: {}",
            e.etype().as_str()
        ))
    };
    let mut req = RequestHeader::build("POST", path.as_bytes(), Some(8)).map_err(internal)?;
    req.insert_header(http::header::HOST, provider.host_header.as_str())
        .map_err(internal)?;
    req.insert_header(http::header::CONTENT_TYPE, "application/json")
        .map_err(internal)?;
    req.insert_header(http::header::CONTENT_LENGTH, body_len.to_string())
        .map_err(internal)?;
    req.insert_header(
        http::header::ACCEPT,
        if stream {
            "text/event-stream"
        } else {
            "application/json"
        },
    )
    .map_err(internal)?;
    req.insert_header(
        http::header::USER_AGENT,
        concat!("dualrouter/", env!("CARGO_PKG_VERSION")),
    )
    .map_err(internal)?;
    if anthropic {
        // Before the client's and the configured headers, so either may pin another version.
        req.insert_header("anthropic-version", dualrouter_wire::ANTHROPIC_VERSION)
            .map_err(internal)?;
    }
    for (name, value) in forwarded.iter().chain(&provider.headers) {
        req.insert_header(name.clone(), value.clone())
            .map_err(internal)?;
    }
    if let Some(key) = &provider.api_key {
        let (name, text) = if anthropic {
            (
                http::HeaderName::from_static("x-api-key"),
                key.expose().to_string(),
            )
        } else {
            (
                http::header::AUTHORIZATION,
                format!("Bearer {}", key.expose()),
            )
        };
        let mut value = http::HeaderValue::try_from(text).map_err(|_| {
            ApiError::Internal(format!(
                "provider '{}': API key is not a valid header value",
                provider.name
            ))
        })?;
        value.set_sensitive(true);
        req.insert_header(name, value).map_err(internal)?;
    }
    Ok(req)
}

/// The client headers an Anthropic upstream gets from an Anthropic client: its API version
/// and beta features (unknown betas are the provider's to judge, never an error here).
pub(crate) const ANTHROPIC_FORWARDED: &[&str] = &["anthropic-version", "anthropic-beta"];

#[cfg(test)]
mod tests {
    use super::*;
    use dualrouter_core::config::{parse, validated};

    fn provider(kind: &str) -> Arc<Provider> {
        let yaml = format!(
            "listen: 127.0.0.1:0\nproviders:\n  - name: p\n    kind: {kind}\n    base_url: https://api.example.com/v1\n    api_key_env: K\n    models:\n      - {{ id: m }}\n"
        );
        let cfg = validated::validate(parse(&yaml, "t.yaml").unwrap(), &|n: &str| {
            (n == "K").then(|| "sk-secret".to_string())
        })
        .unwrap();
        cfg.models["m"].provider().unwrap().clone()
    }

    #[test]
    fn upstream_request_per_kind() {
        let beta = [(
            http::HeaderName::from_static("anthropic-beta"),
            http::HeaderValue::from_static("x-2026"),
        )];
        let a = upstream_request(&provider("anthropic"), "/messages", 10, true, &beta).unwrap();
        assert_eq!(a.headers["anthropic-beta"], "x-2026");
        assert_eq!(a.uri.path(), "/v1/messages");
        assert_eq!(a.headers["x-api-key"], "sk-secret");
        assert_eq!(a.headers["anthropic-version"], "2023-06-01");
        assert!(a.headers.get("authorization").is_none());
        assert_eq!(a.headers["accept"], "text/event-stream");
        let o = upstream_request(&provider("openai"), "/chat/completions", 10, false, &[]).unwrap();
        assert_eq!(o.uri.path(), "/v1/chat/completions");
        assert_eq!(o.headers["authorization"], "Bearer sk-secret");
        assert!(o.headers.get("x-api-key").is_none());
        assert!(o.headers.get("anthropic-version").is_none());
    }
}
