//! Runtime config: what [`super::raw`] becomes once every value has been checked.
//!
//! Validation collects every problem (with its field path) instead of stopping at the first,
//! so one start-up tells the operator everything to fix.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::raw::{ProviderKind, RawConfig, RawLimits, RawProvider};
use super::{ConfigError, Secret};

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin: AdminConfig,
    /// Log format (read at start) and level (applied by reloads).
    pub log: crate::config::log::LogSettings,
    /// OpenTelemetry traces, when on (read at start).
    pub telemetry: Option<crate::config::telemetry::Telemetry>,
    pub auth: Option<ClientAuth>,
    pub limits: Limits,
    pub server: ServerSettings,
    pub demo: Option<DemoSettings>,
    pub providers: Vec<Arc<Provider>>,
    /// Every routable model by its public id.
    pub models: HashMap<String, Arc<Model>>,
    /// Public ids in config order (for `GET /v1/models`).
    pub model_order: Vec<String>,
    pub classifier: ClassifierSettings,
    pub routing: crate::config::routing::RoutingSettings,
    pub reload: crate::config::reload::ReloadSettings,
    /// MIRT and the prompt encoder it shares with the embedded classifier.
    pub mirt: crate::config::mirt::MirtSettings,
    /// The store's URL (`sqlite://…` or `postgres://…`); may hold a password: log it through
    /// `store::redact_url`.
    pub database: String,
    pub decision_log: DecisionLogConfig,
    /// Pruning of old decisions and feedback; storing embeddings (applied by reloads).
    pub retention: crate::config::retention::RetentionSettings,
    pub response_store: ResponseStoreSettings,
    /// Policies that seed the store at start.
    pub policies: Vec<crate::policy::PolicySpec>,
    /// WASM plugins to load at start (`dualrouter_plugins::PluginHost::new`).
    pub plugins: crate::config::plugins::PluginsConfig,
}

/// The decision-log writer's settings (see `raw::RawDecisionLog`).
/// Stored responses of the Responses API.
#[derive(Debug, Clone, Copy)]
pub struct ResponseStoreSettings {
    pub enabled: bool,
    pub retention: Duration,
    pub prune_interval: Duration,
    pub prune_batch: i64,
}

#[derive(Debug, Clone)]
pub struct DecisionLogConfig {
    pub queue_capacity: usize,
    pub batch_rows: usize,
    pub batch_ms: Duration,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub prompt_preview_chars: usize,
}

impl Default for DecisionLogConfig {
    fn default() -> Self {
        let raw = super::raw::RawDecisionLog::default();
        Self {
            queue_capacity: raw.queue_capacity,
            batch_rows: raw.batch_rows,
            batch_ms: Duration::from_millis(raw.batch_ms),
            spool_dir: raw.spool_dir,
            spool_max_bytes: raw.spool_max_bytes,
            prompt_preview_chars: raw.prompt_preview_chars,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClassifierSettings {
    pub arch_router: Option<crate::config::ArchRouterSettings>,
    pub min_confidence: f32,
}

#[derive(Debug, Clone, Copy)]
pub struct DemoSettings {
    pub listen: SocketAddr,
    pub chunk_delay: Duration,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// `None`: no token configured, so the admin listener must be loopback-only.
    pub token: Option<Secret>,
    pub token_env: Option<String>,
}

/// Client keys: a request must carry one of them (`Authorization: Bearer` or `x-api-key`).
#[derive(Debug, Clone)]
pub struct ClientAuth {
    pub keys: Vec<Secret>,
    /// `auth.virtual_keys: true`: keys from the store are accepted too.
    pub virtual_keys: Option<VirtualKeyAuth>,
}

/// How virtual keys behave while the store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VirtualKeyAuth {
    /// `auth.on_store_failure: fail_open`: keys known to this instance keep working, each
    /// within `fail_open_allowance_usd`; `fail_closed` (the default) refuses them (503).
    pub fail_open: bool,
    /// The most one key may spend on one instance while the store is unreachable (USD).
    pub fail_open_allowance_usd: f64,
}

/// `auth.fail_open_allowance_usd` when not set.
pub const DEFAULT_FAIL_OPEN_ALLOWANCE_USD: f64 = 1.0;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub upstream_connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
    pub client_body: Duration,
    pub upstream_pool_idle: Duration,
    pub client_header: Duration,
    pub max_in_flight: usize,
    pub max_connections: usize,
    pub max_queue: Duration,
    pub refused_linger: Duration,
    pub overload_retry_after_s: u64,
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub threads: usize,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    pub drain_linger: Duration,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// OpenAI kind: whether it serves the Responses API too, or only.
    pub responses: crate::config::raw::ResponsesMode,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix from `base_url` without a trailing slash, e.g. `/v1`.
    pub base_path: String,
    /// The `Host` header value (host, plus the port when not the scheme's default).
    pub host_header: String,
    pub api_key: Option<Secret>,
    pub api_key_env: Option<String>,
    /// Extra trusted CAs (PEM file), added to the system's roots.
    pub ca_file: Option<PathBuf>,
    pub discover_models: bool,
    /// Price and tier of the models discovery adds.
    pub discovered_cost: Cost,
    pub discovered_tier: Option<String>,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// What answers a model's requests.
#[derive(Debug, Clone)]
pub enum Backend {
    /// An HTTP provider of the config (its own models, or ones read from its `GET /models`).
    Provider(Arc<Provider>),
    /// An executor plugin, by its configured name (`executors:` / `plugins:`).
    Plugin(String),
}

/// Where the registry learned of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSource {
    /// Listed under a provider in the config.
    Config,
    /// Read from a provider's `GET /models` (`discover_models: true`).
    Discovered,
    /// Declared by an executor plugin's `describe`.
    Plugin,
}

impl ModelSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Discovered => "discovered",
            Self::Plugin => "plugin",
        }
    }
}

#[derive(Debug)]
pub struct Model {
    pub id: String,
    /// The id the backend knows the model by.
    pub upstream_id: String,
    pub backend: Backend,
    pub source: ModelSource,
    pub cost: Cost,
    pub context_tokens: Option<u64>,
    pub tier: Option<String>,
    /// The checkpoint model whose ability this one borrows while it has no outcomes.
    pub mirt_model: Option<String>,
    /// What it can take when a request is translated for it.
    pub caps: dualrouter_wire::Caps,
}

impl Model {
    /// The provider's or the executor plugin's name.
    pub fn owner(&self) -> &str {
        match &self.backend {
            Backend::Provider(p) => &p.name,
            Backend::Plugin(name) => name,
        }
    }

    /// The HTTP provider, unless an executor plugin serves the model.
    pub fn provider(&self) -> Option<&Arc<Provider>> {
        match &self.backend {
            Backend::Provider(p) => Some(p),
            Backend::Plugin(_) => None,
        }
    }
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    pub input: f64,
    pub output: f64,
    /// Input read from the provider's prompt cache.
    pub cache_read: f64,
    /// Input written to the provider's prompt cache.
    pub cache_write: f64,
}

impl Cost {
    /// Input and output prices; cached input at the input price.
    pub fn new(input: f64, output: f64) -> Self {
        Self {
            input,
            output,
            cache_read: input,
            cache_write: input,
        }
    }

    /// From the config's `cost_per_mtok` (cache prices default to the input price).
    pub fn from_raw(raw: &crate::config::raw::RawCost) -> Self {
        Self {
            cache_read: raw.cache_read.unwrap_or(raw.input),
            cache_write: raw.cache_write.unwrap_or(raw.input),
            ..Self::new(raw.input, raw.output)
        }
    }

    /// USD for this many tokens, every input token at the input price (an estimate before
    /// the answer says what was cached).
    pub fn usd(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (self.input * input_tokens as f64 + self.output * output_tokens as f64) / 1_000_000.0
    }

    /// USD for an answer's usage: uncached input, cache reads and writes, output, each at its
    /// own price.
    pub fn usd_of(&self, u: &dualrouter_wire::Usage) -> f64 {
        (self.input * u.input as f64
            + self.cache_read * u.cache_read as f64
            + self.cache_write * u.cache_write as f64
            + self.output * u.output as f64)
            / 1_000_000.0
    }
}

/// Reads environment variables through a function so tests can validate without touching
/// the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Which of the secrets a config names a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// `serve`: every secret the config names must be set; a missing one is an error.
    Required,
    /// Commands that serve nothing (`route`, `train`): a secret that is set is read, a missing
    /// one is left out (the admin token, client keys, and provider and plugin keys are then
    /// absent, which such a command does not need).
    IfSet,
}

struct Problems(Vec<String>, Secrets);

impl Problems {
    fn push(&mut self, path: impl std::fmt::Display, msg: impl std::fmt::Display) {
        self.0.push(format!("{path}: {msg}"));
    }
}

/// Validates for `serve`: every secret must be set ([`Secrets::Required`]).
pub fn validate(raw: RawConfig, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
    validate_with(raw, env, Secrets::Required)
}

/// Validates every section, naming every problem; `secrets` says whether a missing secret is
/// one.
pub fn validate_with(
    raw: RawConfig,
    env: EnvLookup<'_>,
    secrets: Secrets,
) -> Result<Config, ConfigError> {
    let mut p = Problems(Vec::new(), secrets);

    let listen = addr(&raw.listen, "listen", &mut p);
    let admin_listen = addr(&raw.admin.listen, "admin.listen", &mut p);
    let admin_token = raw
        .admin
        .token_env
        .as_deref()
        .and_then(|name| secret_from_env(name, "admin.token_env", env, &mut p));
    if let (Some(a), None, Secrets::Required) = (admin_listen, &admin_token, secrets) {
        if !a.ip().is_loopback() {
            p.push(
                "admin.listen",
                format!(
                    "{a} is not a loopback address and no admin token is configured; \
                     set admin.token_env (and that variable) or listen on 127.0.0.1"
                ),
            );
        }
    }

    let auth = raw.auth.as_ref().and_then(|a| client_auth(a, env, &mut p));
    let limits = limits(&raw.limits, &mut p);
    if raw.server.threads == 0 {
        p.push("server.threads", "must be at least 1");
    }
    let demo = raw.demo.as_ref().and_then(|d| {
        addr(&d.listen, "demo.listen", &mut p).map(|listen| DemoSettings {
            listen,
            chunk_delay: Duration::from_millis(d.chunk_delay_ms),
        })
    });

    let mut providers = Vec::new();
    let mut models = HashMap::new();
    let mut model_order = Vec::new();
    let mut provider_names = HashMap::new();
    for (i, rp) in raw.providers.iter().enumerate() {
        let path = format!("providers[{i}]");
        if let Some(prev) = provider_names.insert(rp.name.clone(), i) {
            p.push(
                format!("{path}.name"),
                format!(
                    "provider name '{}' is already used by providers[{prev}]",
                    rp.name
                ),
            );
        }
        let Some(provider) = provider(rp, &path, env, &mut p) else {
            continue;
        };
        let provider = Arc::new(provider);
        for (j, rm) in rp.models.iter().enumerate() {
            let mpath = format!("{path}.models[{j}]");
            if rm.id.trim().is_empty() {
                p.push(format!("{mpath}.id"), "must not be empty");
                continue;
            }
            if rm.id == "auto" {
                p.push(
                    format!("{mpath}.id"),
                    "'auto' is reserved for routed requests",
                );
            }
            for (field, v) in [
                ("input", rm.cost_per_mtok.input),
                ("output", rm.cost_per_mtok.output),
                ("cache_read", rm.cost_per_mtok.cache_read.unwrap_or(0.0)),
                ("cache_write", rm.cost_per_mtok.cache_write.unwrap_or(0.0)),
            ] {
                if !v.is_finite() || v < 0.0 {
                    p.push(
                        format!("{mpath}.cost_per_mtok.{field}"),
                        "must be a finite number >= 0",
                    );
                }
            }
            let model = Arc::new(Model {
                id: rm.id.clone(),
                upstream_id: rm.upstream_id.clone().unwrap_or_else(|| rm.id.clone()),
                backend: Backend::Provider(provider.clone()),
                source: ModelSource::Config,
                cost: Cost::from_raw(&rm.cost_per_mtok),
                context_tokens: rm.context_tokens,
                tier: rm.tier.clone(),
                mirt_model: rm.mirt_model.clone(),
                caps: dualrouter_wire::Caps {
                    reasoning: rm.reasoning,
                    structured_output: rm.structured_output,
                },
            });
            if let Some(prev) = models.insert(rm.id.clone(), model) {
                p.push(
                    format!("{mpath}.id"),
                    format!(
                        "model '{}' is already served by provider '{}'",
                        rm.id,
                        prev.owner()
                    ),
                );
            } else {
                model_order.push(rm.id.clone());
            }
        }
        providers.push(provider);
    }

    let classifier = classifier(&raw.classifier, env, &mut p);
    let mut mirt = raw.mirt.clone().unwrap_or_default();
    if mirt.encoder.sessions == 0 {
        mirt.encoder.sessions = raw.server.threads.max(1);
    }
    if let Err(e) = mirt.validate() {
        // The message starts with its field path (`mirt.…: …`).
        p.0.push(e);
    }
    if !(raw.database.starts_with("sqlite:")
        || raw.database.starts_with("postgres://")
        || raw.database.starts_with("postgresql://"))
    {
        p.push(
            "database",
            format!(
                "'{}' is not sqlite://FILE or postgres://USER@HOST/DB",
                crate::config::redact_url(&raw.database)
            ),
        );
    }
    p.0.extend(raw.reload.problems());
    p.0.extend(raw.log.problems());
    p.0.extend(raw.retention.problems());
    let telemetry = crate::config::telemetry::validate(raw.telemetry.as_ref(), env).unwrap_or_else(
        |problems| {
            p.0.extend(problems);
            None
        },
    );
    let decision_log = decision_log(&raw.decision_log, &mut p);
    let rs = &raw.response_store;
    for (field, v) in [
        ("retention_hours", rs.retention_hours),
        ("prune_interval_s", rs.prune_interval_s),
        ("prune_batch", rs.prune_batch),
    ] {
        if v == 0 {
            p.push(format!("response_store.{field}"), "must be greater than 0");
        }
    }
    let response_store = ResponseStoreSettings {
        enabled: rs.enabled,
        retention: Duration::from_secs(rs.retention_hours.min(1 << 30) * 3600),
        prune_interval: Duration::from_secs(rs.prune_interval_s),
        prune_batch: i64::try_from(rs.prune_batch).unwrap_or(i64::MAX),
    };
    let plugins = crate::config::plugins::validate(
        crate::config::plugins::RawPluginLists {
            plugins: &raw.plugins,
            executors: &raw.executors,
            feature_extractors: &raw.feature_extractors,
            host: &raw.plugin_host,
        },
        env,
        secrets,
    )
    .unwrap_or_else(|problems| {
        p.0.extend(problems);
        Default::default()
    });
    // Models that executor plugins declare, or that providers list at `GET /models`, are known
    // only once the plugins are loaded and the providers asked; the registry checks the names
    // this config cannot place then (`Registry::unplaced`).
    let dynamic = providers.iter().any(|p| p.discover_models)
        || plugins
            .plugins
            .iter()
            .any(|p| p.kind == crate::config::plugins::PluginKind::Executor);
    let known = |m: &str| dynamic || models.contains_key(m);
    p.0.extend(
        raw.routing
            .problems(&|m: &str| models.contains_key(m), dynamic),
    );
    let policies = policies(&raw.policies, &known, &mut p);

    if !p.0.is_empty() {
        return Err(ConfigError::Invalid(p.0));
    }
    // Every `addr` call above succeeded, or `p` would not be empty.
    let (Some(listen), Some(admin_listen)) = (listen, admin_listen) else {
        return Err(ConfigError::Invalid(vec!["listen: invalid address".into()]));
    };
    Ok(Config {
        listen,
        admin: AdminConfig {
            listen: admin_listen,
            token: admin_token,
            token_env: raw.admin.token_env.clone(),
        },
        log: raw.log.clone(),
        telemetry,
        auth,
        limits,
        server: ServerSettings {
            threads: raw.server.threads,
            grace_period_seconds: raw.server.grace_period_seconds,
            graceful_shutdown_timeout_seconds: raw.server.graceful_shutdown_timeout_seconds,
            drain_linger: Duration::from_millis(raw.server.drain_linger_ms),
            pid_file: raw.server.pid_file.clone(),
            upgrade_sock: raw.server.upgrade_sock.clone(),
        },
        demo,
        providers,
        models,
        model_order,
        classifier,
        routing: raw.routing.clone(),
        reload: raw.reload,
        mirt,
        database: raw.database.clone(),
        decision_log,
        retention: raw.retention,
        response_store,
        policies,
        plugins,
    })
}

fn classifier(
    c: &super::raw::RawClassifier,
    env: EnvLookup<'_>,
    p: &mut Problems,
) -> ClassifierSettings {
    let arch_router = c.arch_router.as_ref().map(|a| {
        if !(a.base_url.starts_with("http://") || a.base_url.starts_with("https://")) {
            p.push(
                "classifier.arch_router.base_url",
                format!("'{}' must start with http:// or https://", a.base_url),
            );
        }
        if a.timeout_ms == 0 {
            p.push(
                "classifier.arch_router.timeout_ms",
                "must be greater than 0",
            );
        }
        if a.breaker_failures == 0 {
            p.push(
                "classifier.arch_router.breaker_failures",
                "must be at least 1",
            );
        }
        crate::config::ArchRouterSettings {
            base_url: a.base_url.clone(),
            model: a.model.clone(),
            api_key: a.api_key_env.as_deref().and_then(|name| {
                secret_from_env(name, "classifier.arch_router.api_key_env", env, p)
            }),
            timeout: Duration::from_millis(a.timeout_ms),
            max_tokens: a.max_tokens,
            context_tokens: a.context_tokens,
            breaker_failures: a.breaker_failures,
            breaker_cooldown: Duration::from_millis(a.breaker_cooldown_ms),
        }
    });
    if !(0.0..=1.0).contains(&c.embedded.min_confidence) {
        p.push(
            "classifier.embedded.min_confidence",
            "must be between 0 and 1",
        );
    }
    ClassifierSettings {
        arch_router,
        min_confidence: c.embedded.min_confidence,
    }
}

fn decision_log(d: &super::raw::RawDecisionLog, p: &mut Problems) -> DecisionLogConfig {
    for (field, v) in [
        ("queue_capacity", d.queue_capacity as u64),
        ("batch_rows", d.batch_rows as u64),
        ("batch_ms", d.batch_ms),
        ("spool_max_bytes", d.spool_max_bytes),
    ] {
        if v == 0 {
            p.push(format!("decision_log.{field}"), "must be greater than 0");
        }
    }
    if d.spool_dir.as_os_str().is_empty() {
        p.push("decision_log.spool_dir", "must not be empty");
    }
    DecisionLogConfig {
        queue_capacity: d.queue_capacity,
        batch_rows: d.batch_rows,
        batch_ms: Duration::from_millis(d.batch_ms),
        spool_dir: d.spool_dir.clone(),
        spool_max_bytes: d.spool_max_bytes,
        prompt_preview_chars: d.prompt_preview_chars,
    }
}

fn policies(
    raw: &[crate::policy::PolicySpec],
    known: &dyn Fn(&str) -> bool,
    p: &mut Problems,
) -> Vec<crate::policy::PolicySpec> {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, rp) in raw.iter().enumerate() {
        let spec = rp.clone();
        for problem in spec.problems(known) {
            p.push(
                format!("policies[{i}].{}", problem.field()),
                match &problem {
                    crate::policy::PolicyProblem::UnknownModel { model, .. } => {
                        format!("model '{model}' is not served by any provider")
                    }
                    crate::policy::PolicyProblem::Invalid { message, .. } => message.clone(),
                },
            );
        }
        if let Some(prev) = seen.insert((rp.domain.clone(), rp.action.clone()), i) {
            p.push(
                format!("policies[{i}]"),
                format!(
                    "{}/{} is already defined by policies[{prev}]",
                    rp.domain, rp.action
                ),
            );
        }
        out.push(spec);
    }
    out
}

fn addr(s: &str, path: &str, p: &mut Problems) -> Option<SocketAddr> {
    match s.to_socket_addrs().map(|mut it| it.next()) {
        Ok(Some(a)) => Some(a),
        Ok(None) | Err(_) => {
            p.push(path, format!("'{s}' is not a host:port address"));
            None
        }
    }
}

fn secret_from_env(name: &str, path: &str, env: EnvLookup<'_>, p: &mut Problems) -> Option<Secret> {
    match env(name) {
        Some(v) if !v.trim().is_empty() => Some(Secret::new(v.trim().to_string())),
        _ if p.1 == Secrets::IfSet => None,
        _ => {
            p.push(
                path,
                format!("environment variable {name} is not set (or empty)"),
            );
            None
        }
    }
}

fn client_auth(
    a: &super::raw::RawAuth,
    env: EnvLookup<'_>,
    p: &mut Problems,
) -> Option<ClientAuth> {
    let mut keys = Vec::new();
    if let Some(name) = &a.keys_env {
        if let Some(all) = secret_from_env(name, "auth.keys_env", env, p) {
            keys.extend(
                all.expose()
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(|k| Secret::new(k.to_string())),
            );
        }
    }
    if let Some(file) = &a.keys_file {
        match std::fs::read_to_string(file) {
            Ok(text) => keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|k| Secret::new(k.to_string())),
            ),
            Err(e) => p.push(
                "auth.keys_file",
                format!("cannot read {}: {e}", file.display()),
            ),
        }
    }
    let fail_open = match a.on_store_failure.as_deref() {
        None | Some("fail_closed") => false,
        Some("fail_open") => true,
        Some(other) => {
            p.push(
                "auth.on_store_failure",
                format!("must be fail_closed or fail_open, got '{other}'"),
            );
            false
        }
    };
    let allowance = a
        .fail_open_allowance_usd
        .unwrap_or(DEFAULT_FAIL_OPEN_ALLOWANCE_USD);
    if !allowance.is_finite() || allowance < 0.0 {
        p.push(
            "auth.fail_open_allowance_usd",
            "must be a finite number >= 0",
        );
    }
    let virtual_keys = a.virtual_keys.then_some(VirtualKeyAuth {
        fail_open,
        fail_open_allowance_usd: allowance.max(0.0),
    });
    if !a.virtual_keys && (a.on_store_failure.is_some() || a.fail_open_allowance_usd.is_some()) {
        p.push(
            "auth.on_store_failure",
            "applies to virtual keys only: set auth.virtual_keys: true",
        );
    }
    if a.keys_env.is_none() && a.keys_file.is_none() && !a.virtual_keys {
        p.push(
            "auth",
            "name keys_env or keys_file, or set virtual_keys: true (or remove the auth section)",
        );
        return None;
    }
    if keys.is_empty() && !a.virtual_keys {
        if p.1 == Secrets::IfSet {
            return None;
        }
        p.push("auth", "no client keys found");
        return None;
    }
    Some(ClientAuth { keys, virtual_keys })
}

impl Limits {
    /// The `limits:` section validated on its own (every problem named).
    pub fn from_raw(l: &RawLimits) -> Result<Limits, Vec<String>> {
        let mut p = Problems(Vec::new(), Secrets::Required);
        let out = limits(l, &mut p);
        if p.0.is_empty() {
            Ok(out)
        } else {
            Err(p.0)
        }
    }
}

fn limits(l: &RawLimits, p: &mut Problems) -> Limits {
    let ms = |v: u64, path: &str, p: &mut Problems| {
        if v == 0 {
            p.push(format!("limits.{path}"), "must be greater than 0");
        }
        Duration::from_millis(v)
    };
    if l.max_body_bytes == 0 {
        p.push("limits.max_body_bytes", "must be greater than 0");
    }
    if l.max_response_bytes == 0 {
        p.push("limits.max_response_bytes", "must be greater than 0");
    }
    if l.max_in_flight == 0 {
        p.push("limits.max_in_flight", "must be greater than 0");
    }
    if l.max_connections == 0 {
        p.push("limits.max_connections", "must be greater than 0");
    }
    Limits {
        max_body_bytes: usize::try_from(l.max_body_bytes).unwrap_or(usize::MAX),
        upstream_connect: ms(l.upstream_connect_ms, "upstream_connect_ms", p),
        first_byte: ms(l.first_byte_ms, "first_byte_ms", p),
        idle: ms(l.idle_ms, "idle_ms", p),
        total: ms(l.total_ms, "total_ms", p),
        client_body: ms(l.client_body_ms, "client_body_ms", p),
        upstream_pool_idle: ms(l.upstream_pool_idle_ms, "upstream_pool_idle_ms", p),
        client_header: ms(l.client_header_ms, "client_header_ms", p),
        max_in_flight: l.max_in_flight,
        max_connections: l.max_connections,
        max_queue: ms(l.max_queue_ms, "max_queue_ms", p),
        refused_linger: ms(l.refused_linger_ms, "refused_linger_ms", p),
        overload_retry_after_s: l.overload_retry_after_s,
        max_response_bytes: usize::try_from(l.max_response_bytes).unwrap_or(usize::MAX),
    }
}

fn provider(
    rp: &RawProvider,
    path: &str,
    env: EnvLookup<'_>,
    p: &mut Problems,
) -> Option<Provider> {
    if rp.name.trim().is_empty() {
        p.push(format!("{path}.name"), "must not be empty");
    }
    let uri: http::Uri = match rp.base_url.parse() {
        Ok(u) => u,
        Err(e) => {
            p.push(
                format!("{path}.base_url"),
                format!("'{}' is not a URL: {e}", rp.base_url),
            );
            return None;
        }
    };
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            p.push(
                format!("{path}.base_url"),
                format!("'{}' must start with http:// or https://", rp.base_url),
            );
            return None;
        }
    };
    let Some(host) = uri.host().map(|h| h.trim_matches(['[', ']']).to_string()) else {
        p.push(
            format!("{path}.base_url"),
            format!("'{}' has no host", rp.base_url),
        );
        return None;
    };
    if uri.query().is_some() {
        p.push(format!("{path}.base_url"), "must not have a query string");
    }
    let default_port = if tls { 443 } else { 80 };
    let port = uri.port_u16().unwrap_or(default_port);
    let host_header = match uri.port_u16() {
        Some(port) if port != default_port => format!("{}:{port}", uri.host().unwrap_or(&host)),
        _ => uri.host().unwrap_or(&host).to_string(),
    };
    let api_key = rp
        .api_key_env
        .as_deref()
        .and_then(|name| secret_from_env(name, &format!("{path}.api_key_env"), env, p));
    for (field, v) in [
        ("input", rp.discovered_cost_per_mtok.input),
        ("output", rp.discovered_cost_per_mtok.output),
    ] {
        if !v.is_finite() || v < 0.0 {
            p.push(
                format!("{path}.discovered_cost_per_mtok.{field}"),
                "must be a finite number >= 0",
            );
        }
    }
    if let Some(ca) = &rp.ca_file {
        if !tls {
            p.push(
                format!("{path}.ca_file"),
                "set for a plain http:// base_url",
            );
        }
        if let Err(e) = std::fs::metadata(ca) {
            p.push(
                format!("{path}.ca_file"),
                format!("cannot read {}: {e}", ca.display()),
            );
        }
    }
    let mut headers = Vec::new();
    for (k, v) in &rp.headers {
        match (
            http::HeaderName::try_from(k.as_str()),
            http::HeaderValue::try_from(v.as_str()),
        ) {
            (Ok(name), Ok(value)) => headers.push((name, value)),
            _ => p.push(format!("{path}.headers.{k}"), "not a valid HTTP header"),
        }
    }
    if rp.kind == ProviderKind::Anthropic && rp.responses != crate::config::raw::ResponsesMode::None
    {
        p.push(
            format!("{path}.responses"),
            "only an OpenAI-kind provider serves the Responses API",
        );
    }
    Some(Provider {
        name: rp.name.clone(),
        kind: rp.kind,
        responses: rp.responses,
        tls,
        host,
        port,
        base_path: uri.path().trim_end_matches('/').to_string(),
        host_header,
        api_key,
        api_key_env: rp.api_key_env.clone(),
        ca_file: rp.ca_file.clone(),
        discover_models: rp.discover_models,
        discovered_cost: Cost::from_raw(&rp.discovered_cost_per_mtok),
        discovered_tier: rp.discovered_tier.clone(),
        headers,
    })
}
