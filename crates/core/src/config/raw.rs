//! The config file as written: strict serde structs, no logic.
//!
//! Every struct denies unknown fields so a typo (`max_body_byte`) is an error naming its path
//! instead of a silently ignored key. Defaults live here, next to the field they fill.
//! [`super::validated`] turns these into the runtime types the proxy uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Proxy listener, `host:port`. Port 0 picks a free port (printed at start).
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub admin: RawAdmin,
    /// Log format and level.
    #[serde(default)]
    pub log: crate::config::log::LogSettings,
    /// OpenTelemetry traces (OTLP); the `OTEL_*` variables alone also turn them on.
    #[serde(default)]
    pub telemetry: Option<crate::config::telemetry::RawTelemetry>,
    #[serde(default)]
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub server: RawServer,
    /// An in-process demo upstream speaking OpenAI's format, so a request works without keys.
    #[serde(default)]
    pub demo: Option<RawDemo>,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    /// MIRT scoring: checkpoint, objective, encoder (see `crate::config::mirt::MirtSettings`).
    #[serde(default)]
    pub mirt: Option<crate::config::mirt::MirtSettings>,
    /// Route classification (Arch-Router client, embedded classifier).
    #[serde(default)]
    pub classifier: RawClassifier,
    /// `model: "auto"`: aliases, fallback chain, circuit breaker, session affinity.
    #[serde(default)]
    pub routing: crate::config::routing::RoutingSettings,
    /// Watching the config file and resyncing policies (see `crate::live`).
    #[serde(default)]
    pub reload: crate::config::reload::ReloadSettings,
    /// The store: `sqlite://FILE` (embedded, WAL, created if missing) or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (shared by several instances).
    #[serde(default = "default_database")]
    pub database: String,
    #[serde(default)]
    pub decision_log: RawDecisionLog,
    /// How long decisions and feedback are kept; whether embeddings are stored.
    #[serde(default)]
    pub retention: crate::config::retention::RetentionSettings,
    /// The Responses API's stored responses (`store`, `previous_response_id`).
    #[serde(default)]
    pub response_store: RawResponseStore,
    /// Routing policies that seed the store at start (upsert by domain/action); afterwards the
    /// store is the source of truth and the admin API edits it.
    #[serde(default)]
    pub policies: Vec<crate::policy::PolicySpec>,
    /// WASM plugins with an explicit `kind` (see `dualrouter_plugins::config`).
    #[serde(default)]
    pub plugins: Vec<crate::config::plugins::PluginSpec>,
    /// Executor plugins (kind implied).
    #[serde(default)]
    pub executors: Vec<crate::config::plugins::PluginSpec>,
    /// Feature-extractor plugins (kind implied).
    #[serde(default)]
    pub feature_extractors: Vec<crate::config::plugins::PluginSpec>,
    /// Host-wide plugin settings: compiled-artifact cache, epoch tick, failure cooldown.
    #[serde(default)]
    pub plugin_host: crate::config::plugins::PluginHostSettings,
}

impl RawConfig {
    /// Makes every relative path of the config (given or defaulted) relative to `base`, the
    /// config file's folder: the spool, client key file, CA files, MIRT checkpoints and base
    /// data, the encoder's models, plugin files and their cache, and a `sqlite://` file.
    pub fn resolve_paths(&mut self, base: &Path) {
        let at = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        at(&mut self.decision_log.spool_dir);
        if let Some(f) = self.auth.as_mut().and_then(|a| a.keys_file.as_mut()) {
            at(f);
        }
        for f in self.providers.iter_mut().filter_map(|p| p.ca_file.as_mut()) {
            at(f);
        }
        let mirt = self.mirt.get_or_insert_with(Default::default);
        at(&mut mirt.checkpoint);
        at(&mut mirt.checkpoints_dir);
        at(&mut mirt.encoder.models_dir);
        if let Some(f) = mirt.base_data.as_mut() {
            at(f);
        }
        for spec in self
            .plugins
            .iter_mut()
            .chain(&mut self.executors)
            .chain(&mut self.feature_extractors)
        {
            at(&mut spec.plugin);
        }
        if let Some(d) = self.plugin_host.cache_dir.as_mut() {
            at(d);
        }
        self.database = sqlite_at(&self.database, base);
    }
}

/// A `sqlite://FILE[?OPTIONS]` URL with a relative FILE made relative to `base`; any other URL
/// as it is.
fn sqlite_at(url: &str, base: &Path) -> String {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return url.to_string();
    };
    let (file, options) = rest.split_at(rest.find('?').unwrap_or(rest.len()));
    if file.is_empty() || file.starts_with(':') || Path::new(file).is_absolute() {
        return url.to_string();
    }
    format!("sqlite://{}{options}", base.join(file).display())
}

fn default_database() -> String {
    crate::config::DEFAULT_DATABASE_URL.into()
}

/// Stored responses of the Responses API (see `store::StoredResponse`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponseStore {
    /// Keep responses whose request has `store` true or absent (the API's default). `false`:
    /// nothing is stored, and `previous_response_id` finds nothing.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long a stored response can be read or continued (default 720 h: 30 days).
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u64,
    /// How often expired responses are deleted.
    #[serde(default = "default_prune_interval_s")]
    pub prune_interval_s: u64,
    /// Most rows one pruning statement deletes (pruning goes on in such batches).
    #[serde(default = "default_prune_batch")]
    pub prune_batch: u64,
}

impl Default for RawResponseStore {
    fn default() -> Self {
        Self {
            enabled: true,
            retention_hours: default_retention_hours(),
            prune_interval_s: default_prune_interval_s(),
            prune_batch: default_prune_batch(),
        }
    }
}

fn default_retention_hours() -> u64 {
    720
}
fn default_prune_interval_s() -> u64 {
    300
}
fn default_prune_batch() -> u64 {
    500
}

/// The decision-log writer (one record per request; see `store::DecisionLog`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDecisionLog {
    /// Records held in memory for the writer; beyond that they go to the spool file.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Most rows per transaction.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Longest a record waits in memory before its batch is written.
    #[serde(default = "default_batch_ms")]
    pub batch_ms: u64,
    /// Where records wait while the database is down (one directory per instance).
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    /// Cap on the spool's size; past it records are dropped (and counted, and logged).
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// Characters of the prompt stored with each decision; 0 (the default) stores none.
    #[serde(default)]
    pub prompt_preview_chars: usize,
}

impl Default for RawDecisionLog {
    fn default() -> Self {
        Self {
            queue_capacity: default_queue_capacity(),
            batch_rows: default_batch_rows(),
            batch_ms: default_batch_ms(),
            spool_dir: default_spool_dir(),
            spool_max_bytes: default_spool_max_bytes(),
            prompt_preview_chars: 0,
        }
    }
}

fn default_queue_capacity() -> usize {
    10_000
}
fn default_batch_rows() -> usize {
    500
}
fn default_batch_ms() -> u64 {
    100
}
fn default_spool_dir() -> PathBuf {
    PathBuf::from("spool")
}
fn default_spool_max_bytes() -> u64 {
    256 * 1024 * 1024
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// Name of the env var holding the admin bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            token_env: None,
        }
    }
}

fn default_admin_listen() -> String {
    "127.0.0.1:8081".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Name of an env var holding comma-separated client keys.
    #[serde(default)]
    pub keys_env: Option<String>,
    /// A file with one client key per line (`#` comments allowed).
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    /// Virtual keys from the store (`POST /api/keys`) are accepted beside the static ones.
    #[serde(default)]
    pub virtual_keys: bool,
    /// `fail_closed` (default) or `fail_open`: what virtual keys get while the store is down.
    #[serde(default)]
    pub on_store_failure: Option<String>,
    /// Fail open: the most one virtual key may spend per instance while the store is down.
    #[serde(default)]
    pub fail_open_allowance_usd: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    #[serde(default = "default_connect_ms")]
    pub upstream_connect_ms: u64,
    #[serde(default = "default_first_byte_ms")]
    pub first_byte_ms: u64,
    /// Longest silence between two chunks of an upstream response.
    #[serde(default = "default_idle_ms")]
    pub idle_ms: u64,
    /// Longest a whole upstream exchange may take, stream included.
    #[serde(default = "default_total_ms")]
    pub total_ms: u64,
    /// Longest a client may take to send its request body.
    #[serde(default = "default_client_body_ms")]
    pub client_body_ms: u64,
    /// How long an idle pooled upstream connection is kept.
    #[serde(default = "default_pool_idle_ms")]
    pub upstream_pool_idle_ms: u64,
    /// Longest a client may take to send a request header: from the connection's start, or
    /// from the end of the previous answer on a kept-alive connection (so an idle keep-alive
    /// connection is closed after this long too).
    #[serde(default = "default_client_header_ms")]
    pub client_header_ms: u64,
    /// Most requests served at once (chat, messages, route); one more is refused at once
    /// with 503 and `Retry-After` instead of queueing.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Most client connections open at once; one more is answered 503 `overloaded` with
    /// `Retry-After` and closed, before any request on it is parsed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Longest client bytes may wait for a worker (a new connection from its accept to the
    /// first poll of its task; a readable request header until it is read; one trip through
    /// the run queue) before requests are refused (503 and `Retry-After`, like
    /// `max_in_flight`): the workers are saturated.
    #[serde(default = "default_max_queue_ms")]
    pub max_queue_ms: u64,
    /// How long a connection refused at accept is read (for its request line, to answer in
    /// its format) and then drained before it is closed.
    #[serde(default = "default_refused_linger_ms")]
    pub refused_linger_ms: u64,
    /// `Retry-After` (seconds) on a request refused because `max_in_flight` is reached.
    #[serde(default = "default_overload_retry_after_s")]
    pub overload_retry_after_s: u64,
    /// Most bytes of one upstream answer relayed to the client; a larger one is refused
    /// (502 before the first byte when its length is declared) or cut.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body(),
            upstream_connect_ms: default_connect_ms(),
            first_byte_ms: default_first_byte_ms(),
            idle_ms: default_idle_ms(),
            total_ms: default_total_ms(),
            client_body_ms: default_client_body_ms(),
            upstream_pool_idle_ms: default_pool_idle_ms(),
            client_header_ms: default_client_header_ms(),
            max_in_flight: default_max_in_flight(),
            max_connections: default_max_connections(),
            max_queue_ms: default_max_queue_ms(),
            refused_linger_ms: default_refused_linger_ms(),
            overload_retry_after_s: default_overload_retry_after_s(),
            max_response_bytes: default_max_response_bytes(),
        }
    }
}

fn default_max_body() -> u64 {
    32 * 1024 * 1024
}
fn default_connect_ms() -> u64 {
    2_000
}
fn default_first_byte_ms() -> u64 {
    30_000
}
fn default_idle_ms() -> u64 {
    60_000
}
fn default_total_ms() -> u64 {
    600_000
}
fn default_client_body_ms() -> u64 {
    30_000
}
fn default_pool_idle_ms() -> u64 {
    60_000
}
fn default_client_header_ms() -> u64 {
    30_000
}
fn default_max_in_flight() -> usize {
    1024
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_queue_ms() -> u64 {
    200
}
fn default_refused_linger_ms() -> u64 {
    200
}
fn default_overload_retry_after_s() -> u64 {
    1
}
fn default_max_response_bytes() -> u64 {
    64 * 1024 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Worker threads of the proxy service.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// On SIGTERM or SIGQUIT (upgrade): the least time the old process stays up after it stops
    /// accepting, even with no request in flight.
    #[serde(default = "default_grace")]
    pub grace_period_seconds: u64,
    /// On SIGTERM or SIGQUIT: the most time in-flight requests (long LLM streams) get to
    /// finish; the process exits as soon as none is left.
    #[serde(default = "default_shutdown_timeout")]
    pub graceful_shutdown_timeout_seconds: u64,
    /// On SIGTERM or SIGQUIT: how long a client's idle keep-alive connection stays open after
    /// the signal. A request arriving on it meanwhile is served and answered with
    /// `Connection: close`, so the client reconnects (to the new process on an upgrade) instead
    /// of losing a request written just as the connection closed.
    #[serde(default = "default_drain_linger_ms")]
    pub drain_linger_ms: u64,
    /// Pid file and upgrade socket, for Pingora's zero-downtime upgrade.
    #[serde(default)]
    pub pid_file: Option<String>,
    #[serde(default)]
    pub upgrade_sock: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            threads: default_threads(),
            grace_period_seconds: default_grace(),
            graceful_shutdown_timeout_seconds: default_shutdown_timeout(),
            drain_linger_ms: default_drain_linger_ms(),
            pid_file: None,
            upgrade_sock: None,
        }
    }
}

fn default_threads() -> usize {
    2
}
fn default_grace() -> u64 {
    1
}
fn default_shutdown_timeout() -> u64 {
    300
}
fn default_drain_linger_ms() -> u64 {
    2000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDemo {
    #[serde(default = "default_demo_listen")]
    pub listen: String,
    /// Pause between streamed chunks, so streaming is visible in a terminal.
    #[serde(default)]
    pub chunk_delay_ms: u64,
}

fn default_demo_listen() -> String {
    "127.0.0.1:8090".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI-compatible: OpenAI, Bifrost, vLLM, llama.cpp, the demo upstream.
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
}

/// Whether an OpenAI-kind provider serves the Responses API (`POST /responses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponsesMode {
    /// Chat completions only: Responses requests are translated to chat (the default).
    #[default]
    None,
    /// Both: Responses requests go to it as sent, chat requests as chat.
    Native,
    /// Responses only: every request (chat and Messages clients' too) goes as Responses.
    Only,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub kind: ProviderKind,
    /// OpenAI kind: `native` (it also serves `/responses`) or `only` (nothing else).
    #[serde(default)]
    pub responses: ResponsesMode,
    /// e.g. `https://api.openai.com/v1`; the API path (`/chat/completions`) is appended.
    pub base_url: String,
    /// Name of the env var holding this provider's API key. Absent: no auth header is sent.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Extra CA (PEM) trusted for this provider, beside the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Also route to the models this provider lists at `GET {base_url}/models` (e.g. a Bifrost
    /// gateway), read at start, on reload and at every health check. Models listed under
    /// `models:` keep their settings.
    #[serde(default)]
    pub discover_models: bool,
    /// Price of the discovered models (USD per million tokens; default 0).
    #[serde(default)]
    pub discovered_cost_per_mtok: RawCost,
    /// Tier of the discovered models (the MIRT prior while they have no outcomes).
    #[serde(default)]
    pub discovered_tier: Option<String>,
    /// Extra headers sent upstream on every request (values are not secret: use `api_key_env`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub models: Vec<RawModel>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// The id clients use (and policies name).
    pub id: String,
    /// The id this provider expects, when it differs (e.g. `openai/gpt-4o` on Bifrost).
    #[serde(default)]
    pub upstream_id: Option<String>,
    #[serde(default)]
    pub cost_per_mtok: RawCost,
    #[serde(default)]
    pub context_tokens: Option<u64>,
    /// `economy`, `standard` or `premium`: the prior of a model MIRT has no outcomes for.
    #[serde(default)]
    pub tier: Option<String>,
    /// Score this model with the ability of this checkpoint model (e.g. `gpt-4-1106-preview`)
    /// until it has outcomes of its own.
    #[serde(default)]
    pub mirt_model: Option<String>,
    /// It reasons and takes reasoning settings (OpenAI reasoning effort, Anthropic thinking)
    /// when a request of another format asks for them; without it they are left out.
    #[serde(default)]
    pub reasoning: bool,
    /// It can be held to a JSON schema (`response_format`, `text.format`,
    /// `output_config.format`); `false` makes requests asking for one go elsewhere.
    #[serde(default = "default_true")]
    pub structured_output: bool,
}

fn default_true() -> bool {
    true
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCost {
    #[serde(default)]
    pub input: f64,
    #[serde(default)]
    pub output: f64,
    /// Input tokens read from the provider's prompt cache (default: the input price).
    #[serde(default)]
    pub cache_read: Option<f64>,
    /// Input tokens written to the provider's prompt cache (default: the input price).
    #[serde(default)]
    pub cache_write: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassifier {
    /// An OpenAI-compatible server running katanemo/Arch-Router; absent → embedded only.
    #[serde(default)]
    pub arch_router: Option<RawArchRouter>,
    #[serde(default)]
    pub embedded: RawEmbedded,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArchRouter {
    pub base_url: String,
    #[serde(default = "default_arch_model")]
    pub model: String,
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default = "default_arch_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_arch_max_tokens")]
    pub max_tokens: u32,
    /// Conversation budget in tokens sent to the model (oldest turns trimmed first).
    #[serde(default = "default_arch_context")]
    pub context_tokens: usize,
    /// Consecutive failures that stop calls for `breaker_cooldown_ms`.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    #[serde(default = "default_breaker_cooldown")]
    pub breaker_cooldown_ms: u64,
}

fn default_arch_model() -> String {
    "katanemo/Arch-Router-1.5B".into()
}
fn default_arch_timeout() -> u64 {
    300
}
fn default_arch_max_tokens() -> u32 {
    32
}
fn default_arch_context() -> usize {
    2048
}
fn default_breaker_failures() -> u32 {
    3
}
fn default_breaker_cooldown() -> u64 {
    30_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmbedded {
    /// Below this probability the embedded classifier answers "no route" (default policy).
    #[serde(default = "default_min_confidence")]
    pub min_confidence: f32,
}

impl Default for RawEmbedded {
    fn default() -> Self {
        Self {
            min_confidence: default_min_confidence(),
        }
    }
}

fn default_min_confidence() -> f32 {
    0.25
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_become_the_config_folders() {
        let yaml = "database: sqlite://state/r.db?mode=rwc\n\
                    auth: { keys_file: keys.txt }\n\
                    decision_log: { spool_dir: /var/spool/dr }\n\
                    providers:\n  - { name: p, kind: openai, base_url: http://h/v1, ca_file: ca.pem, models: [ { id: m } ] }\n\
                    executors:\n  - { name: e, plugin: plugins/e.wasm }\n";
        let mut raw = crate::config::parse(yaml, "t.yaml").unwrap();
        raw.resolve_paths(Path::new("/etc/dr"));
        assert_eq!(raw.database, "sqlite:///etc/dr/state/r.db?mode=rwc");
        let keys = raw.auth.as_ref().and_then(|a| a.keys_file.clone());
        assert_eq!(keys.unwrap(), Path::new("/etc/dr/keys.txt"));
        assert_eq!(raw.decision_log.spool_dir, Path::new("/var/spool/dr"));
        assert_eq!(
            raw.providers[0].ca_file.as_deref(),
            Some(Path::new("/etc/dr/ca.pem"))
        );
        assert_eq!(raw.executors[0].plugin, Path::new("/etc/dr/plugins/e.wasm"));
        // Defaults too.
        let mirt = raw.mirt.as_ref().unwrap();
        assert_eq!(
            mirt.checkpoint,
            Path::new("/etc/dr/checkpoints/default.json")
        );
        assert_eq!(mirt.encoder.models_dir, Path::new("/etc/dr/models"));
        assert_eq!(
            raw.plugin_host.cache_dir.as_deref(),
            Some(Path::new("/etc/dr/plugin_cache"))
        );
    }

    #[test]
    fn only_relative_sqlite_files_move() {
        let base = Path::new("/srv");
        assert_eq!(sqlite_at("sqlite://a.db", base), "sqlite:///srv/a.db");
        assert_eq!(sqlite_at("sqlite:///abs/a.db", base), "sqlite:///abs/a.db");
        assert_eq!(sqlite_at("sqlite://:memory:", base), "sqlite://:memory:");
        assert_eq!(sqlite_at("sqlite::memory:", base), "sqlite::memory:");
        assert_eq!(sqlite_at("postgres://u@h/db", base), "postgres://u@h/db");
    }
}
