//! Plugin config: the `plugins:`, `executors:` and `feature_extractors:` lists and the
//! `plugin_host:` section, as written (strict serde) and as validated (every limit resolved).
//!
//! ```yaml
//! plugin_host: { cache_dir: plugin_cache, epoch_tick_ms: 5, unhealthy_cooldown_ms: 30000, health_interval_ms: 30000 }
//! executors:
//!   - { name: auggie, plugin: plugins/dist/auggie.wasm, allow_commands: [auggie], timeout_ms: 120000 }
//! feature_extractors:
//!   - { name: code-features, plugin: plugins/dist/code_features.wasm }
//! plugins:   # the same entries with an explicit kind
//!   - { name: http, path: plugins/dist/http_executor.wasm, kind: executor,
//!       allow_hosts: [api.openai.com], config: { base_url: "https://api.openai.com/v1", models: gpt-4o-mini },
//!       secret_env: { api_key: OPENAI_API_KEY } }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::Secret;

/// What a plugin is, and so which WIT world it must export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// World `executor`: serves models (`describe`, `health`, `invoke`).
    Executor,
    /// World `feature-extractor`: adds prompt features for MIRT (`extract`).
    #[serde(alias = "feature_extractor", alias = "extractor")]
    FeatureExtractor,
}

impl PluginKind {
    /// The WIT world's name.
    pub fn world(self) -> &'static str {
        match self {
            Self::Executor => "executor",
            Self::FeatureExtractor => "feature-extractor",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.world())
    }
}

/// A config value: YAML scalars are all accepted and handed to the plugin as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ScalarValue {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl std::fmt::Display for ScalarValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(s) => f.write_str(s),
            Self::Int(n) => write!(f, "{n}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// One plugin entry as written. In `executors:` and `feature_extractors:` the kind is implied
/// (and `kind`, if given, must agree); in `plugins:` it is required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// Unique among all plugins; names the plugin in logs, metrics and feature names.
    pub name: String,
    /// The component file (`.wasm`), relative to the working directory.
    #[serde(alias = "path")]
    pub plugin: PathBuf,
    #[serde(default)]
    pub kind: Option<PluginKind>,
    /// Linear memory limit per instance, MiB (default 64).
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Deadline of one call (default 100 ms for extractors, 120000 ms for executors).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Deadline of `health` and `describe` (executors; default 10000 ms).
    #[serde(default)]
    pub health_timeout_ms: Option<u64>,
    /// Live instances kept for concurrent calls (default 4); a call beyond it waits for one,
    /// within its deadline.
    #[serde(default)]
    pub max_instances: Option<usize>,
    /// Executors: largest answer text accepted, bytes (default 4 MiB). Larger is garbage.
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
    /// Extractors: most features accepted from one call (default 256). More is garbage.
    #[serde(default)]
    pub max_features: Option<usize>,
    /// Programs the plugin may run (`process` capability): bare names looked up on PATH, or
    /// absolute paths. Empty: none.
    #[serde(default)]
    pub allow_commands: Vec<String>,
    /// Longest one command may run (default: the call's `timeout_ms`).
    #[serde(default)]
    pub command_timeout_ms: Option<u64>,
    /// Most bytes a command may write to stdout before it is killed (default 8 MiB); stderr is
    /// kept up to 64 KiB.
    #[serde(default)]
    pub max_command_output_bytes: Option<usize>,
    /// Hosts the plugin may reach (`http` capability): `host` or `host:port`; `*.example.com`
    /// matches subdomains. Empty: none.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Largest HTTP response body accepted, bytes (default 8 MiB).
    #[serde(default)]
    pub max_http_response_bytes: Option<usize>,
    /// Settings handed to the plugin (`config` interface).
    #[serde(default)]
    pub config: BTreeMap<String, ScalarValue>,
    /// Secrets handed to the plugin through `config`: key → name of the env var holding it.
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
}

/// Host-wide plugin settings (`plugin_host:`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginHostSettings {
    /// Where compiled plugins are cached (created if missing), keyed by the wasm's SHA-256 and
    /// the engine's build; `null` disables the cache.
    #[serde(default = "default_cache_dir")]
    pub cache_dir: Option<PathBuf>,
    /// Resolution of every plugin deadline: the epoch ticker's period (default 5 ms).
    #[serde(default = "default_epoch_tick_ms")]
    pub epoch_tick_ms: u64,
    /// After a failure (trap, deadline, memory, garbage) a plugin is skipped this long, then
    /// tried again (default 30000 ms).
    #[serde(default = "default_unhealthy_cooldown_ms")]
    pub unhealthy_cooldown_ms: u64,
    /// How often `serve` asks every executor's `health` (default 30000 ms; 0: never).
    #[serde(default = "default_health_interval_ms")]
    pub health_interval_ms: u64,
    /// Threads that run extractor calls made from async code (default 2).
    #[serde(default = "default_extract_threads")]
    pub extract_threads: usize,
}

impl Default for PluginHostSettings {
    fn default() -> Self {
        Self {
            cache_dir: default_cache_dir(),
            epoch_tick_ms: default_epoch_tick_ms(),
            unhealthy_cooldown_ms: default_unhealthy_cooldown_ms(),
            health_interval_ms: default_health_interval_ms(),
            extract_threads: default_extract_threads(),
        }
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    Some(PathBuf::from("plugin_cache"))
}
fn default_epoch_tick_ms() -> u64 {
    5
}
fn default_unhealthy_cooldown_ms() -> u64 {
    30_000
}
fn default_health_interval_ms() -> u64 {
    30_000
}
fn default_extract_threads() -> usize {
    2
}

pub const DEFAULT_MEMORY_MB: u64 = 64;
pub const DEFAULT_EXTRACTOR_TIMEOUT_MS: u64 = 100;
pub const DEFAULT_EXECUTOR_TIMEOUT_MS: u64 = 120_000;
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_MAX_INSTANCES: usize = 4;
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 << 20;
pub const DEFAULT_MAX_FEATURES: usize = 256;
pub const DEFAULT_MAX_COMMAND_OUTPUT_BYTES: usize = 8 << 20;
pub const DEFAULT_MAX_HTTP_RESPONSE_BYTES: usize = 8 << 20;
/// Stderr kept from a command (the rest is dropped, the command is not killed for it).
pub const MAX_COMMAND_STDERR_BYTES: usize = 64 << 10;
/// Longest log line a plugin may write; longer lines are cut.
pub const MAX_LOG_LINE_BYTES: usize = 4 << 10;

/// One plugin, every limit resolved.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    pub name: String,
    pub path: PathBuf,
    pub kind: PluginKind,
    pub memory_bytes: usize,
    pub timeout: Duration,
    pub health_timeout: Duration,
    pub max_instances: usize,
    pub max_response_bytes: usize,
    pub max_features: usize,
    pub allow_commands: Vec<String>,
    pub command_timeout: Duration,
    pub max_command_output_bytes: usize,
    pub allow_hosts: Vec<String>,
    pub max_http_response_bytes: usize,
    /// Plain settings.
    pub config: BTreeMap<String, String>,
    /// Secrets read from the environment at validation (never logged).
    pub secrets: BTreeMap<String, Secret>,
}

impl PluginConfig {
    /// A config with every default, for tools and tests (`dualrouter plugin inspect`).
    pub fn new(name: &str, path: impl Into<PathBuf>, kind: PluginKind) -> Self {
        let timeout = Duration::from_millis(match kind {
            PluginKind::Executor => DEFAULT_EXECUTOR_TIMEOUT_MS,
            PluginKind::FeatureExtractor => DEFAULT_EXTRACTOR_TIMEOUT_MS,
        });
        Self {
            name: name.to_string(),
            path: path.into(),
            kind,
            memory_bytes: (DEFAULT_MEMORY_MB as usize) << 20,
            timeout,
            health_timeout: Duration::from_millis(DEFAULT_HEALTH_TIMEOUT_MS),
            max_instances: DEFAULT_MAX_INSTANCES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_features: DEFAULT_MAX_FEATURES,
            allow_commands: Vec::new(),
            command_timeout: timeout,
            max_command_output_bytes: DEFAULT_MAX_COMMAND_OUTPUT_BYTES,
            allow_hosts: Vec::new(),
            max_http_response_bytes: DEFAULT_MAX_HTTP_RESPONSE_BYTES,
            config: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }
}

/// Every plugin and the host settings, validated.
#[derive(Debug, Clone)]
pub struct PluginsConfig {
    pub plugins: Vec<PluginConfig>,
    pub cache_dir: Option<PathBuf>,
    pub epoch_tick: Duration,
    pub unhealthy_cooldown: Duration,
    /// `None`: no periodic health checks.
    pub health_interval: Option<Duration>,
    /// Threads for extractor calls made from async code.
    pub extract_threads: usize,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        let s = PluginHostSettings::default();
        Self {
            plugins: Vec::new(),
            cache_dir: s.cache_dir,
            epoch_tick: Duration::from_millis(s.epoch_tick_ms),
            unhealthy_cooldown: Duration::from_millis(s.unhealthy_cooldown_ms),
            health_interval: Some(Duration::from_millis(s.health_interval_ms)),
            extract_threads: s.extract_threads,
        }
    }
}

/// The raw lists, as the config file's three keys hold them.
pub struct RawPluginLists<'a> {
    pub plugins: &'a [PluginSpec],
    pub executors: &'a [PluginSpec],
    pub feature_extractors: &'a [PluginSpec],
    pub host: &'a PluginHostSettings,
}

/// Validates every entry; problems come back as `field.path: message` lines, all of them.
pub fn validate(
    raw: RawPluginLists<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: super::validated::Secrets,
) -> Result<PluginsConfig, Vec<String>> {
    let mut problems = Vec::new();
    let mut plugins: Vec<PluginConfig> = Vec::new();
    let lists = [
        ("plugins", raw.plugins, None),
        ("executors", raw.executors, Some(PluginKind::Executor)),
        (
            "feature_extractors",
            raw.feature_extractors,
            Some(PluginKind::FeatureExtractor),
        ),
    ];
    for (list, specs, implied) in lists {
        for (i, spec) in specs.iter().enumerate() {
            let path = format!("{list}[{i}]");
            if let Some(p) = validate_one(spec, implied, &path, env, secrets, &mut problems) {
                if plugins.iter().any(|q| q.name == p.name) {
                    problems.push(format!(
                        "{path}.name: plugin name '{}' is used twice",
                        p.name
                    ));
                } else {
                    plugins.push(p);
                }
            }
        }
    }
    if raw.host.extract_threads == 0 || raw.host.extract_threads > 64 {
        problems.push("plugin_host.extract_threads: must be between 1 and 64".into());
    }
    if raw.host.epoch_tick_ms == 0 || raw.host.epoch_tick_ms > 1000 {
        problems.push("plugin_host.epoch_tick_ms: must be between 1 and 1000".into());
    }
    if problems.is_empty() {
        Ok(PluginsConfig {
            plugins,
            cache_dir: raw.host.cache_dir.clone(),
            epoch_tick: Duration::from_millis(raw.host.epoch_tick_ms),
            unhealthy_cooldown: Duration::from_millis(raw.host.unhealthy_cooldown_ms),
            health_interval: (raw.host.health_interval_ms > 0)
                .then(|| Duration::from_millis(raw.host.health_interval_ms)),
            extract_threads: raw.host.extract_threads,
        })
    } else {
        Err(problems)
    }
}

fn validate_one(
    spec: &PluginSpec,
    implied: Option<PluginKind>,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: super::validated::Secrets,
    problems: &mut Vec<String>,
) -> Option<PluginConfig> {
    let before = problems.len();
    let kind = match (implied, spec.kind) {
        (Some(i), Some(k)) if i != k => {
            problems.push(format!("{path}.kind: '{k}' in a list of {i} plugins"));
            i
        }
        (Some(i), _) => i,
        (None, Some(k)) => k,
        (None, None) => {
            problems.push(format!(
                "{path}.kind: required here (executor or feature-extractor)"
            ));
            PluginKind::Executor
        }
    };
    let valid_name = !spec.name.is_empty()
        && spec.name.len() <= 64
        && spec
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid_name {
        problems.push(format!(
            "{path}.name: '{}' must be 1-64 of a-z, 0-9, '-' and '_'",
            spec.name
        ));
    }
    let mut cfg = PluginConfig::new(&spec.name, spec.plugin.clone(), kind);
    let positive = |field: &str, v: Option<u64>, problems: &mut Vec<String>| -> Option<u64> {
        match v {
            Some(0) => {
                problems.push(format!("{path}.{field}: must be greater than 0"));
                None
            }
            other => other,
        }
    };
    if let Some(mb) = positive("memory_mb", spec.memory_mb, problems) {
        if mb > 4096 {
            problems.push(format!("{path}.memory_mb: at most 4096"));
        }
        cfg.memory_bytes = (mb.min(4096) as usize) << 20;
    }
    if let Some(ms) = positive("timeout_ms", spec.timeout_ms, problems) {
        cfg.timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = positive("health_timeout_ms", spec.health_timeout_ms, problems) {
        cfg.health_timeout = Duration::from_millis(ms);
    }
    cfg.command_timeout = match positive("command_timeout_ms", spec.command_timeout_ms, problems) {
        Some(ms) => Duration::from_millis(ms),
        None => cfg.timeout.max(cfg.health_timeout),
    };
    let usize_field = |field: &str, v: Option<usize>, problems: &mut Vec<String>| {
        positive(field, v.map(|n| n as u64), problems).map(|n| n as usize)
    };
    if let Some(n) = usize_field("max_instances", spec.max_instances, problems) {
        cfg.max_instances = n;
    }
    if let Some(n) = usize_field("max_response_bytes", spec.max_response_bytes, problems) {
        cfg.max_response_bytes = n;
    }
    if let Some(n) = usize_field("max_features", spec.max_features, problems) {
        cfg.max_features = n;
    }
    if let Some(n) = usize_field(
        "max_command_output_bytes",
        spec.max_command_output_bytes,
        problems,
    ) {
        cfg.max_command_output_bytes = n;
    }
    if let Some(n) = usize_field(
        "max_http_response_bytes",
        spec.max_http_response_bytes,
        problems,
    ) {
        cfg.max_http_response_bytes = n;
    }
    if kind == PluginKind::FeatureExtractor
        && !(spec.allow_commands.is_empty() && spec.allow_hosts.is_empty())
    {
        problems.push(format!(
            "{path}: feature extractors get no process or network access; drop allow_commands/allow_hosts"
        ));
    }
    for (j, c) in spec.allow_commands.iter().enumerate() {
        if c.trim().is_empty() || (c.contains('/') && !c.starts_with('/')) {
            problems.push(format!(
                "{path}.allow_commands[{j}]: '{c}' must be a bare program name or an absolute path"
            ));
        }
    }
    for (j, h) in spec.allow_hosts.iter().enumerate() {
        if h.trim().is_empty() || h.contains('/') || h.contains("://") {
            problems.push(format!(
                "{path}.allow_hosts[{j}]: '{h}' must be a host or host:port (no scheme or path)"
            ));
        }
    }
    cfg.allow_commands = spec.allow_commands.clone();
    cfg.allow_hosts = spec
        .allow_hosts
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    cfg.config = spec
        .config
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    for (key, var) in &spec.secret_env {
        if cfg.config.contains_key(key) {
            problems.push(format!(
                "{path}.secret_env.{key}: also set in config; keep secrets in secret_env only"
            ));
        }
        match env(var) {
            Some(v) if !v.trim().is_empty() => {
                cfg.secrets
                    .insert(key.clone(), Secret::new(v.trim().to_string()));
            }
            _ if secrets == super::validated::Secrets::IfSet => {}
            _ => problems.push(format!(
                "{path}.secret_env.{key}: environment variable {var} is not set (or empty)"
            )),
        }
    }
    (problems.len() == before).then_some(cfg)
}

impl serde::Serialize for PluginKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.world())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validated::Secrets;

    fn specs(yaml: &str) -> Vec<PluginSpec> {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_and_implied_kind() {
        let ex = specs(
            "- { name: auggie, plugin: a.wasm, allow_commands: [auggie], timeout_ms: 120000 }",
        );
        let fe = specs("- { name: code-features, path: c.wasm, config: { depth: 3, on: true } }");
        let host = PluginHostSettings::default();
        let cfg = validate(
            RawPluginLists {
                plugins: &[],
                executors: &ex,
                feature_extractors: &fe,
                host: &host,
            },
            &|_| None,
            Secrets::Required,
        )
        .unwrap();
        assert_eq!(cfg.plugins.len(), 2);
        let a = &cfg.plugins[0];
        assert_eq!(a.kind, PluginKind::Executor);
        assert_eq!(a.timeout, Duration::from_millis(120_000));
        assert_eq!(a.memory_bytes, 64 << 20);
        let c = &cfg.plugins[1];
        assert_eq!(c.kind, PluginKind::FeatureExtractor);
        assert_eq!(c.timeout, Duration::from_millis(100));
        assert_eq!(c.config["depth"], "3");
        assert_eq!(c.config["on"], "true");
    }

    #[test]
    fn problems_are_all_reported() {
        let p = specs(
            "- { name: Bad Name, plugin: x.wasm }\n\
             - { name: ok, plugin: y.wasm, kind: feature-extractor, allow_commands: [sh], memory_mb: 0 }\n\
             - { name: s, plugin: z.wasm, kind: executor, secret_env: { api_key: NOPE_NOT_SET } }",
        );
        let host = PluginHostSettings::default();
        let err = validate(
            RawPluginLists {
                plugins: &p,
                executors: &[],
                feature_extractors: &[],
                host: &host,
            },
            &|_| None,
            Secrets::Required,
        )
        .unwrap_err();
        let all = err.join("\n");
        assert!(all.contains("plugins[0].kind: required"), "{all}");
        assert!(all.contains("plugins[0].name"), "{all}");
        assert!(all.contains("plugins[1].memory_mb"), "{all}");
        assert!(
            all.contains("plugins[1]: feature extractors get no process"),
            "{all}"
        );
        assert!(all.contains("NOPE_NOT_SET"), "{all}");
    }

    #[test]
    fn secrets_come_from_env() {
        let p =
            specs("- { name: h, plugin: h.wasm, kind: executor, secret_env: { api_key: KEY } }");
        let host = PluginHostSettings::default();
        let cfg = validate(
            RawPluginLists {
                plugins: &p,
                executors: &[],
                feature_extractors: &[],
                host: &host,
            },
            &|name| (name == "KEY").then(|| "sk-123".to_string()),
            Secrets::Required,
        )
        .unwrap();
        assert_eq!(cfg.plugins[0].secrets["api_key"].expose(), "sk-123");
        assert!(!format!("{:?}", cfg.plugins[0]).contains("sk-123"));
    }
}
