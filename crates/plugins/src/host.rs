//! [`PluginHost`]: loads every configured plugin once, keeps pre-instantiated components and a
//! small pool of live instances per plugin, and runs each call under the plugin's limits.
//!
//! A call takes an idle instance (or instantiates one from the `InstancePre`), sets the epoch
//! deadline, runs, validates what came back, and returns the instance to the pool. A call that
//! traps, runs past its deadline, hits the memory limit or returns garbage drops its instance,
//! marks the plugin unhealthy for the cooldown (logged with the plugin's name, counted in
//! [`PluginMetrics`]), and yields a [`PluginError`]; other plugins and other instances are not
//! touched.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store};

use super::bindings::v0_1_0::{self, types};
use super::bindings::{PACKAGE, SUPPORTED_VERSIONS};
use super::capabilities::HttpCapability;
use super::engine::{compile_cached, error_chain, new_engine, CompileSource, EpochTicker};
use super::error::{ExecutorErrorKind, PluginError};
use super::metrics::PluginMetrics;
use super::state::HostState;
use dualrouter_core::config::plugins::{PluginConfig, PluginKind, PluginsConfig};
use dualrouter_core::conversation::{Conversation, Turn};

use v0_1_0::executor::{Executor, ExecutorPre};
use v0_1_0::extractor::{FeatureExtractor, FeatureExtractorPre};

/// Longest feature name accepted (bytes).
const MAX_FEATURE_NAME_BYTES: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A model an executor plugin serves, as its `describe` declared it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExecutorModel {
    /// The plugin's configured name (what [`PluginHost::invoke`] takes).
    pub plugin: String,
    /// The executor's own id and kind (`cli`, `http`, …).
    pub executor_id: String,
    pub executor_kind: String,
    /// The model id clients and policies use.
    pub id: String,
    pub description: String,
    pub context_tokens: u64,
    pub input_cost_per_mtok: f64,
    pub output_cost_per_mtok: f64,
    pub tier: Option<String>,
    pub capabilities: Vec<String>,
    /// The plugin is in service and its last health report (if any) was not `unhealthy`.
    pub healthy: bool,
}

/// An executor's own verdict on its backend (the WIT `health-report`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthReport {
    pub status: HealthStatus,
    pub detail: String,
}

/// A chat request for an executor plugin.
#[derive(Debug, Clone, Default)]
pub struct InvokeRequest {
    pub model: String,
    pub messages: Vec<Turn>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

/// Token counts of one exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// The plugin reported none; these are the host's estimates (about four bytes a token).
    pub estimated: bool,
}

/// An executor plugin's answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InvokeResponse {
    pub text: String,
    pub usage: Usage,
    pub finish_reason: String,
}

/// One plugin's state, as `GET /api/executors` or a dashboard would show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub kind: PluginKind,
    pub wit_version: String,
    pub path: String,
    /// In service (not in a failure cooldown).
    pub healthy: bool,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// The last `health` report (executors), if checked.
    pub reported: Option<HealthReport>,
    /// How the component was obtained at load.
    pub from_cache: bool,
}

enum Pre {
    Executor(ExecutorPre<HostState>),
    Extractor(FeatureExtractorPre<HostState>),
}

enum Bindings {
    Executor(Executor),
    Extractor(FeatureExtractor),
}

struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
}

#[derive(Default)]
struct Health {
    failures: u32,
    last_error: Option<String>,
    out_until: Option<Instant>,
    reported: Option<HealthReport>,
}

struct Plugin {
    cfg: Arc<PluginConfig>,
    version: String,
    pre: Pre,
    idle: Mutex<Vec<Instance>>,
    /// Instances in existence (idle or in a call), and the signal that one was freed.
    live: Mutex<usize>,
    freed: Condvar,
    health: Mutex<Health>,
    models: Vec<ExecutorModel>,
    from_cache: bool,
}

/// Every loaded plugin, and the engine they share. Cheap to share behind an `Arc`; every
/// method takes `&self` and is safe to call from many threads at once.
pub struct PluginHost {
    engine: Engine,
    ticker: EpochTicker,
    http: Arc<HttpCapability>,
    plugins: Vec<Plugin>,
    by_name: HashMap<String, usize>,
    by_model: HashMap<String, usize>,
    cooldown: Duration,
    metrics: PluginMetrics,
    /// Threads extractor calls made from async code run on (made on first such call).
    extract_pool: std::sync::OnceLock<Option<rayon::ThreadPool>>,
    extract_threads: usize,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.by_name.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What a component says about itself, read from its type before anything runs.
#[derive(Debug, Clone)]
pub struct ComponentFacts {
    /// The version of `dualrouter:plugin` it is built against (`None`: it uses no version of it).
    pub version: Option<String>,
    /// The world its exports make it: `executor`, `feature-extractor`, or none.
    pub kind: Option<PluginKind>,
    /// Exported names, with functions as `interface#function`.
    pub exports: Vec<String>,
    /// Imported interface names.
    pub imports: Vec<String>,
}

impl ComponentFacts {
    pub fn read(engine: &Engine, component: &Component) -> Self {
        let ty = component.component_type();
        let mut exports = Vec::new();
        let mut version = None;
        let mut kind = None;
        for (name, ext) in ty.exports(engine) {
            if let Some(v) = package_version(name) {
                version.get_or_insert(v);
            }
            if interface_name(name) == Some("executor-api") {
                kind = Some(PluginKind::Executor);
            } else if interface_name(name) == Some("extractor-api") {
                kind = Some(PluginKind::FeatureExtractor);
            }
            match ext.ty {
                wasmtime::component::types::ComponentItem::ComponentInstance(inst) => {
                    let mut funcs: Vec<String> = inst
                        .exports(engine)
                        .filter(|(_, e)| {
                            matches!(
                                e.ty,
                                wasmtime::component::types::ComponentItem::ComponentFunc(_)
                            )
                        })
                        .map(|(f, _)| format!("{name}#{f}"))
                        .collect();
                    funcs.sort();
                    exports.extend(funcs);
                }
                _ => exports.push(name.to_string()),
            }
        }
        let mut imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        imports.sort();
        if version.is_none() {
            version = imports.iter().find_map(|n| package_version(n));
        }
        Self {
            version,
            kind,
            exports,
            imports,
        }
    }
}

/// `dualrouter:plugin/x@1.2.3` → `1.2.3`.
fn package_version(name: &str) -> Option<String> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    rest.split_once('@').map(|(_, v)| v.to_string())
}

/// `dualrouter:plugin/x@1.2.3` → `x`.
fn interface_name(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    Some(rest.split('@').next().unwrap_or(rest))
}

struct Linkers {
    executor: Linker<HostState>,
    extractor: Linker<HostState>,
}

impl Linkers {
    fn new(engine: &Engine) -> Result<Self, PluginError> {
        let e = |e: wasmtime::Error| PluginError::Engine(error_chain(&e));
        let mut executor = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut executor).map_err(e)?;
        Executor::add_to_linker::<HostState, HasSelf<HostState>>(&mut executor, |s| s)
            .map_err(e)?;
        let mut extractor = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut extractor).map_err(e)?;
        FeatureExtractor::add_to_linker::<HostState, HasSelf<HostState>>(&mut extractor, |s| s)
            .map_err(e)?;
        Ok(Self {
            executor,
            extractor,
        })
    }
}

impl PluginHost {
    /// Loads every plugin of `config`: compiles each (or takes it from the cache), checks its
    /// WIT version and world, pre-instantiates it, and asks executors to `describe` themselves.
    /// The first plugin that cannot be loaded fails the whole load, naming it.
    pub fn new(config: &PluginsConfig) -> Result<Self, PluginError> {
        let metrics = PluginMetrics::new().map_err(|e| PluginError::Engine(e.to_string()))?;
        Self::with_metrics(config, metrics)
    }

    /// [`Self::new`] counting into `metrics` (shared by the hosts a server loads on reloads).
    pub fn with_metrics(
        config: &PluginsConfig,
        metrics: PluginMetrics,
    ) -> Result<Self, PluginError> {
        let engine = new_engine()?;
        let ticker = EpochTicker::start(&engine, config.epoch_tick)?;
        let http = Arc::new(HttpCapability::new());
        let linkers = Linkers::new(&engine)?;
        let mut host = Self {
            engine,
            ticker,
            http,
            plugins: Vec::new(),
            by_name: HashMap::new(),
            by_model: HashMap::new(),
            cooldown: config.unhealthy_cooldown,
            metrics,
            extract_pool: std::sync::OnceLock::new(),
            extract_threads: config.extract_threads.max(1),
        };
        for cfg in &config.plugins {
            let started = Instant::now();
            let plugin = host.load(&linkers, cfg, config.cache_dir.as_deref())?;
            tracing::info!(
                plugin = %cfg.name,
                kind = %cfg.kind,
                wit = %plugin.version,
                cached = plugin.from_cache,
                models = plugin.models.len(),
                ms = started.elapsed().as_secs_f64() * 1e3,
                "plugin loaded"
            );
            let index = host.plugins.len();
            for m in &plugin.models {
                if let Some(prev) = host.by_model.insert(m.id.clone(), index) {
                    return Err(PluginError::Garbage {
                        plugin: cfg.name.clone(),
                        detail: format!(
                            "model '{}' is already served by plugin '{}'",
                            m.id, host.plugins[prev].cfg.name
                        ),
                    });
                }
            }
            host.by_name.insert(cfg.name.clone(), index);
            host.metrics.set_healthy(&cfg.name, true);
            host.plugins.push(plugin);
        }
        Ok(host)
    }

    fn load(
        &self,
        linkers: &Linkers,
        cfg: &PluginConfig,
        cache_dir: Option<&std::path::Path>,
    ) -> Result<Plugin, PluginError> {
        let name = cfg.name.clone();
        let bytes = std::fs::read(&cfg.path).map_err(|source| PluginError::Read {
            plugin: name.clone(),
            path: cfg.path.clone(),
            source,
        })?;
        let (component, source) =
            compile_cached(&self.engine, &name, &cfg.path, &bytes, cache_dir)?;
        let facts = ComponentFacts::read(&self.engine, &component);
        let Some(version) = facts.version.clone() else {
            return Err(PluginError::Invalid {
                plugin: name,
                path: cfg.path.clone(),
                detail: format!(
                    "it uses no version of {PACKAGE} (exports: {})",
                    if facts.exports.is_empty() {
                        "none".to_string()
                    } else {
                        facts.exports.join(", ")
                    }
                ),
            });
        };
        if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
            return Err(PluginError::UnsupportedVersion {
                plugin: name,
                found: format!("{PACKAGE}@{version}"),
                supported: SUPPORTED_VERSIONS
                    .iter()
                    .map(|v| format!("{PACKAGE}@{v}"))
                    .collect(),
            });
        }
        match facts.kind {
            Some(k) if k == cfg.kind => {}
            Some(k) => {
                return Err(PluginError::WrongKind {
                    plugin: name,
                    expected: cfg.kind.to_string(),
                    found: k.to_string(),
                })
            }
            None => {
                return Err(PluginError::Invalid {
                    plugin: name,
                    path: cfg.path.clone(),
                    detail: "it exports neither executor-api nor extractor-api".into(),
                })
            }
        }
        let link = |e: wasmtime::Error| PluginError::Link {
            plugin: name.clone(),
            detail: error_chain(&e),
        };
        let pre = match cfg.kind {
            PluginKind::Executor => Pre::Executor(
                ExecutorPre::new(linkers.executor.instantiate_pre(&component).map_err(link)?)
                    .map_err(link)?,
            ),
            PluginKind::FeatureExtractor => Pre::Extractor(
                FeatureExtractorPre::new(
                    linkers
                        .extractor
                        .instantiate_pre(&component)
                        .map_err(link)?,
                )
                .map_err(link)?,
            ),
        };
        let mut plugin = Plugin {
            cfg: Arc::new(cfg.clone()),
            version,
            pre,
            idle: Mutex::new(Vec::new()),
            live: Mutex::new(0),
            freed: Condvar::new(),
            health: Mutex::new(Health::default()),
            models: Vec::new(),
            from_cache: source == CompileSource::Cache,
        };
        if cfg.kind == PluginKind::Executor {
            plugin.models = self.describe(&plugin)?;
        }
        Ok(plugin)
    }

    /// The counters and gauges of every plugin; register them where metrics are served with
    /// [`PluginMetrics::register`].
    pub fn metrics(&self) -> &PluginMetrics {
        &self.metrics
    }

    /// Names of the loaded plugins of a kind, in config order.
    pub fn plugin_names(&self, kind: PluginKind) -> Vec<String> {
        self.plugins
            .iter()
            .filter(|p| p.cfg.kind == kind)
            .map(|p| p.cfg.name.clone())
            .collect()
    }

    fn plugin(&self, name: &str, kind: PluginKind) -> Result<&Plugin, PluginError> {
        self.by_name
            .get(name)
            .map(|&i| &self.plugins[i])
            .filter(|p| p.cfg.kind == kind)
            .ok_or_else(|| PluginError::UnknownPlugin {
                plugin: name.to_string(),
                kind: kind.world(),
            })
    }

    // ---- extractors -------------------------------------------------------------------------

    /// Features from every feature-extractor plugin, named `<plugin>.<feature>`. A plugin that
    /// fails (or is in its cooldown) adds nothing; the failure is logged and counted. Blocks the
    /// calling thread for at most the sum of the extractors' deadlines.
    pub fn extract_features(&self, conversation: &Conversation) -> HashMap<String, f32> {
        let mut out = HashMap::new();
        for p in self
            .plugins
            .iter()
            .filter(|p| p.cfg.kind == PluginKind::FeatureExtractor)
        {
            if let Ok(features) = self.extract_from(p, conversation) {
                for (name, value) in features {
                    out.insert(format!("{}.{name}", p.cfg.name), value);
                }
            }
        }
        out
    }

    /// Features from one extractor plugin, unprefixed, or why there are none.
    pub fn extract(
        &self,
        plugin: &str,
        conversation: &Conversation,
    ) -> Result<Vec<(String, f32)>, PluginError> {
        let p = self.plugin(plugin, PluginKind::FeatureExtractor)?;
        self.extract_from(p, conversation)
    }

    fn extract_from(
        &self,
        p: &Plugin,
        conversation: &Conversation,
    ) -> Result<Vec<(String, f32)>, PluginError> {
        let conv = types::Conversation {
            messages: conversation
                .turns
                .iter()
                .map(|t| types::Message {
                    role: t.role.clone(),
                    content: t.text.clone(),
                })
                .collect(),
        };
        self.call(
            p,
            "extract",
            p.cfg.timeout,
            |store, b| match b {
                Bindings::Extractor(x) => x
                    .dualrouter_plugin_extractor_api()
                    .call_extract(store, &conv),
                Bindings::Executor(_) => Err(wasmtime::format_err!("not a feature extractor")),
            },
            |features| {
                if features.len() > p.cfg.max_features {
                    return Err(format!(
                        "{} features, more than max_features {}",
                        features.len(),
                        p.cfg.max_features
                    ));
                }
                features
                    .into_iter()
                    .map(|f| {
                        if !valid_feature_name(&f.name) {
                            return Err(format!(
                                "feature name {:?} is not 1-64 of a-z 0-9 _ -",
                                truncate(&f.name, 80)
                            ));
                        }
                        if !f.value.is_finite() {
                            return Err(format!("feature '{}' is {}", f.name, f.value));
                        }
                        Ok((f.name, f.value))
                    })
                    .collect()
            },
        )
    }

    // ---- executors --------------------------------------------------------------------------

    /// Every model of every executor plugin, with the plugin's current health.
    pub fn executor_models(&self) -> Vec<ExecutorModel> {
        self.plugins
            .iter()
            .flat_map(|p| {
                let healthy = self.is_healthy(p);
                p.models.iter().map(move |m| ExecutorModel {
                    healthy,
                    ..m.clone()
                })
            })
            .collect()
    }

    /// The executor plugin serving `model`, if any.
    pub fn plugin_for_model(&self, model: &str) -> Option<&str> {
        self.by_model
            .get(model)
            .map(|&i| self.plugins[i].cfg.name.as_str())
    }

    fn describe(&self, p: &Plugin) -> Result<Vec<ExecutorModel>, PluginError> {
        let info = self.call(
            p,
            "describe",
            p.cfg.health_timeout,
            |store, b| match b {
                Bindings::Executor(x) => x.dualrouter_plugin_executor_api().call_describe(store),
                Bindings::Extractor(_) => Err(wasmtime::format_err!("not an executor")),
            },
            Ok,
        )?;
        let garbage = |detail: String| PluginError::Garbage {
            plugin: p.cfg.name.clone(),
            detail,
        };
        let mut seen = std::collections::HashSet::new();
        let mut models = Vec::new();
        for m in info.models {
            if m.id.trim().is_empty() || m.id == "auto" || m.id.len() > 200 {
                return Err(garbage(format!(
                    "describe declared a bad model id {:?}",
                    truncate(&m.id, 80)
                )));
            }
            if !seen.insert(m.id.clone()) {
                return Err(garbage(format!("describe declared model '{}' twice", m.id)));
            }
            for (what, v) in [
                ("input", m.input_cost_per_mtok),
                ("output", m.output_cost_per_mtok),
            ] {
                if !v.is_finite() || v < 0.0 {
                    return Err(garbage(format!("model '{}' has {what} cost {v}", m.id)));
                }
            }
            models.push(ExecutorModel {
                plugin: p.cfg.name.clone(),
                executor_id: info.id.clone(),
                executor_kind: info.kind.clone(),
                id: m.id,
                description: m.description,
                context_tokens: m.context_tokens,
                input_cost_per_mtok: m.input_cost_per_mtok,
                output_cost_per_mtok: m.output_cost_per_mtok,
                tier: m.tier,
                capabilities: m.capabilities,
                healthy: true,
            });
        }
        Ok(models)
    }

    /// Asks an executor plugin how its backend is (its `health` export, under
    /// `health_timeout_ms`), and remembers the answer: an `unhealthy` report takes its models out
    /// of [`Self::executor_models`]' healthy set until a later report says otherwise. Blocking.
    pub fn check_health(&self, plugin: &str) -> Result<HealthReport, PluginError> {
        let p = self.plugin(plugin, PluginKind::Executor)?;
        let report = self.call(
            p,
            "health",
            p.cfg.health_timeout,
            |store, b| match b {
                Bindings::Executor(x) => x.dualrouter_plugin_executor_api().call_health(store),
                Bindings::Extractor(_) => Err(wasmtime::format_err!("not an executor")),
            },
            |h| {
                Ok(HealthReport {
                    status: match h.status {
                        types::HealthStatus::Healthy => HealthStatus::Healthy,
                        types::HealthStatus::Degraded => HealthStatus::Degraded,
                        types::HealthStatus::Unhealthy => HealthStatus::Unhealthy,
                    },
                    detail: truncate(&h.detail, 500),
                })
            },
        );
        let mut health = lock(&p.health);
        health.reported = Some(match &report {
            Ok(r) => r.clone(),
            Err(e) => HealthReport {
                status: HealthStatus::Unhealthy,
                detail: e.to_string(),
            },
        });
        drop(health);
        self.metrics.set_healthy(&p.cfg.name, self.is_healthy(p));
        report
    }

    /// Runs `health` on every executor plugin (see [`Self::check_health`]).
    pub fn check_all_health(&self) -> Vec<(String, Result<HealthReport, PluginError>)> {
        self.plugin_names(PluginKind::Executor)
            .into_iter()
            .map(|n| {
                let r = self.check_health(&n);
                (n, r)
            })
            .collect()
    }

    /// Answers a chat request with an executor plugin, blocking the calling thread up to the
    /// plugin's `timeout_ms`. Every error lets the caller fall back to another model. Call it
    /// from a blocking context (a plain thread or `spawn_blocking`), or use [`Self::invoke`].
    pub fn invoke_blocking(
        &self,
        plugin: &str,
        request: &InvokeRequest,
    ) -> Result<InvokeResponse, PluginError> {
        let p = self.plugin(plugin, PluginKind::Executor)?;
        let req = types::ChatRequest {
            model: request.model.clone(),
            messages: request
                .messages
                .iter()
                .map(|t| types::Message {
                    role: t.role.clone(),
                    content: t.text.clone(),
                })
                .collect(),
            max_tokens: request.max_tokens,
            temperature: request.temperature,
        };
        let answer = self.call(
            p,
            "invoke",
            p.cfg.timeout,
            |store, b| match b {
                Bindings::Executor(x) => {
                    x.dualrouter_plugin_executor_api().call_invoke(store, &req)
                }
                Bindings::Extractor(_) => Err(wasmtime::format_err!("not an executor")),
            },
            |r| match r {
                Ok(resp) if resp.text.len() > p.cfg.max_response_bytes => Err(format!(
                    "an answer of {} bytes, more than max_response_bytes {}",
                    resp.text.len(),
                    p.cfg.max_response_bytes
                )),
                other => Ok(other),
            },
        )?;
        match answer {
            Ok(resp) => {
                let usage = match resp.usage {
                    Some(u) => Usage {
                        input_tokens: u.input_tokens,
                        output_tokens: u.output_tokens,
                        estimated: false,
                    },
                    None => Usage {
                        input_tokens: estimate_tokens(
                            req.messages.iter().map(|m| m.content.len()).sum(),
                        ),
                        output_tokens: estimate_tokens(resp.text.len()),
                        estimated: true,
                    },
                };
                Ok(InvokeResponse {
                    text: resp.text,
                    usage,
                    finish_reason: if resp.finish_reason.is_empty() {
                        "stop".into()
                    } else {
                        resp.finish_reason
                    },
                })
            }
            Err(e) => {
                let (kind, message) = match e {
                    types::ExecutorError::UnknownModel(m) => (ExecutorErrorKind::UnknownModel, m),
                    types::ExecutorError::Unavailable(m) => (ExecutorErrorKind::Unavailable, m),
                    types::ExecutorError::InvalidRequest(m) => {
                        (ExecutorErrorKind::InvalidRequest, m)
                    }
                    types::ExecutorError::Failed(m) => (ExecutorErrorKind::Failed, m),
                };
                let err = PluginError::Executor {
                    plugin: p.cfg.name.clone(),
                    kind,
                    message: truncate(&message, 2000),
                };
                tracing::warn!(plugin = %p.cfg.name, model = %request.model, "{err}");
                self.metrics.count_error(&p.cfg.name, &err);
                Err(err)
            }
        }
    }

    /// [`Self::invoke_blocking`] on tokio's blocking pool.
    pub async fn invoke(
        self: &Arc<Self>,
        plugin: &str,
        request: InvokeRequest,
    ) -> Result<InvokeResponse, PluginError> {
        let host = self.clone();
        let plugin = plugin.to_string();
        let name = plugin.clone();
        tokio::task::spawn_blocking(move || host.invoke_blocking(&plugin, &request))
            .await
            .unwrap_or_else(|e| {
                Err(PluginError::Trap {
                    plugin: name,
                    detail: format!("the host task failed: {e}"),
                })
            })
    }

    /// Runs [`Self::check_all_health`] every `every` on a thread of its own, until the host is
    /// dropped (the thread holds only a weak reference).
    pub fn start_health_checks(
        host: &Arc<Self>,
        every: Duration,
    ) -> Result<std::thread::JoinHandle<()>, PluginError> {
        let weak = Arc::downgrade(host);
        std::thread::Builder::new()
            .name("plugin-health".into())
            .spawn(move || loop {
                let mut waited = Duration::ZERO;
                // Sleep in short steps so a dropped host ends the thread promptly.
                while waited < every {
                    let step = (every - waited).min(Duration::from_millis(200));
                    std::thread::sleep(step);
                    waited += step;
                    if weak.strong_count() == 0 {
                        return;
                    }
                }
                let Some(host) = weak.upgrade() else { return };
                for (plugin, report) in host.check_all_health() {
                    match report {
                        Ok(r) if r.status == HealthStatus::Unhealthy => {
                            tracing::warn!(plugin, detail = %r.detail, "executor reports unhealthy")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(plugin, "health check failed: {e}"),
                    }
                }
            })
            .map_err(|e| PluginError::Engine(format!("cannot start the health checker: {e}")))
    }

    // ---- status -----------------------------------------------------------------------------

    /// Every plugin's state.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        self.plugins
            .iter()
            .map(|p| {
                let h = lock(&p.health);
                PluginStatus {
                    name: p.cfg.name.clone(),
                    kind: p.cfg.kind,
                    wit_version: p.version.clone(),
                    path: p.cfg.path.display().to_string(),
                    healthy: h.out_until.is_none_or(|t| Instant::now() >= t)
                        && h.reported
                            .as_ref()
                            .is_none_or(|r| r.status != HealthStatus::Unhealthy),
                    consecutive_failures: h.failures,
                    last_error: h.last_error.clone(),
                    reported: h.reported.clone(),
                    from_cache: p.from_cache,
                }
            })
            .collect()
    }

    /// Whether a plugin is in service: not in a failure cooldown, and not reported unhealthy.
    pub fn is_plugin_healthy(&self, plugin: &str) -> bool {
        self.by_name
            .get(plugin)
            .is_some_and(|&i| self.is_healthy(&self.plugins[i]))
    }

    fn is_healthy(&self, p: &Plugin) -> bool {
        let h = lock(&p.health);
        h.out_until.is_none_or(|t| Instant::now() >= t)
            && h.reported
                .as_ref()
                .is_none_or(|r| r.status != HealthStatus::Unhealthy)
    }

    // ---- the call machinery -----------------------------------------------------------------

    /// Runs one export under the plugin's limits; `check` validates the result (an `Err` from it
    /// is garbage). Failures drop the instance and mark the plugin unhealthy.
    fn call<R, T: Send>(
        &self,
        p: &Plugin,
        what: &'static str,
        timeout: Duration,
        run: impl FnOnce(&mut Store<HostState>, &Bindings) -> wasmtime::Result<R> + Send,
        check: impl FnOnce(R) -> Result<T, String> + Send,
    ) -> Result<T, PluginError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.call_here(p, what, timeout, run, check);
        }
        // Called from async code: WASI's synchronous host functions block on a runtime of their
        // own, which tokio forbids on a thread inside a runtime, so the call moves to a plain
        // thread: a small pool for extractors (short deadlines, hot path), a scoped thread of
        // its own for the rest (executor calls may take minutes).
        if p.cfg.kind == PluginKind::FeatureExtractor {
            if let Some(pool) = self.extract_pool() {
                return pool.install(|| self.call_here(p, what, timeout, run, check));
            }
        }
        off_runtime(|| self.call_here(p, what, timeout, run, check))
    }

    fn extract_pool(&self) -> Option<&rayon::ThreadPool> {
        self.extract_pool
            .get_or_init(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(self.extract_threads)
                    .thread_name(|i| format!("plugin-extract-{i}"))
                    .build()
                    .inspect_err(|e| {
                        tracing::warn!("no extractor thread pool ({e}); using scoped threads")
                    })
                    .ok()
            })
            .as_ref()
    }

    fn call_here<R, T>(
        &self,
        p: &Plugin,
        what: &'static str,
        timeout: Duration,
        run: impl FnOnce(&mut Store<HostState>, &Bindings) -> wasmtime::Result<R>,
        check: impl FnOnce(R) -> Result<T, String>,
    ) -> Result<T, PluginError> {
        {
            let h = lock(&p.health);
            if let Some(until) = h.out_until {
                let now = Instant::now();
                if now < until {
                    let err = PluginError::Unhealthy {
                        plugin: p.cfg.name.clone(),
                        last: h.last_error.clone().unwrap_or_default(),
                        retry_in_ms: u64::try_from((until - now).as_millis()).unwrap_or(u64::MAX),
                    };
                    drop(h);
                    self.metrics.count_error(&p.cfg.name, &err);
                    return Err(err);
                }
            }
        }
        let started = Instant::now();
        let deadline = started + timeout;
        let mut inst = self.acquire(p, deadline, timeout)?;
        inst.store.data_mut().deadline = deadline;
        inst.store.data_mut().limiter.hit = false;
        // Only this call's stderr is quoted if it traps.
        inst.store.data().stderr.take();
        inst.store
            .set_epoch_deadline(self.ticker.ticks_for(timeout));
        let outcome = run(&mut inst.store, &inst.bindings);
        let result = match outcome {
            Ok(r) => match check(r) {
                Ok(v) => Ok(v),
                Err(detail) => Err(PluginError::Garbage {
                    plugin: p.cfg.name.clone(),
                    detail: format!("{what} returned {detail}"),
                }),
            },
            Err(e) => Err(self.classify(p, &inst.store, &e, timeout)),
        };
        self.metrics.observe(&p.cfg.name, what, started.elapsed());
        match result {
            Ok(v) => {
                self.release(p, inst);
                self.succeeded(p);
                Ok(v)
            }
            Err(err) => {
                self.discard(p, inst);
                self.failed(p, what, &err);
                Err(err)
            }
        }
    }

    /// Why a call failed, from wasmtime's error and the store's state.
    fn classify(
        &self,
        p: &Plugin,
        store: &Store<HostState>,
        e: &wasmtime::Error,
        timeout: Duration,
    ) -> PluginError {
        let plugin = p.cfg.name.clone();
        if matches!(
            e.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt)
        ) {
            return PluginError::Timeout {
                plugin,
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            };
        }
        if store.data().limiter.hit {
            return PluginError::OutOfMemory {
                plugin,
                limit_mb: (p.cfg.memory_bytes >> 20) as u64,
            };
        }
        let mut detail = error_chain(e);
        let stderr = store.data().stderr.take();
        if !stderr.is_empty() {
            detail.push_str(&format!(" (guest stderr: {})", truncate_tail(&stderr, 400)));
        }
        PluginError::Trap { plugin, detail }
    }

    /// An idle instance, or a new one when fewer than `max_instances` exist; otherwise waits for
    /// one to be freed until the deadline.
    fn acquire(
        &self,
        p: &Plugin,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Instance, PluginError> {
        loop {
            if let Some(inst) = lock(&p.idle).pop() {
                return Ok(inst);
            }
            let mut live = lock(&p.live);
            if *live < p.cfg.max_instances {
                *live += 1;
                drop(live);
                return self.instantiate(p, deadline, timeout).inspect_err(|err| {
                    *lock(&p.live) -= 1;
                    p.freed.notify_one();
                    self.failed(p, "instantiate", err);
                });
            }
            let now = Instant::now();
            if now >= deadline {
                let err = PluginError::Busy {
                    plugin: p.cfg.name.clone(),
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                };
                self.metrics.count_error(&p.cfg.name, &err);
                return Err(err);
            }
            let (guard, _) = p
                .freed
                .wait_timeout(live, deadline - now)
                .unwrap_or_else(|e| e.into_inner());
            drop(guard);
        }
    }

    fn instantiate(
        &self,
        p: &Plugin,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Instance, PluginError> {
        let mut state = HostState::new(p.cfg.clone(), self.http.clone());
        state.deadline = deadline;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.ticker.ticks_for(timeout));
        let bindings = match &p.pre {
            Pre::Executor(pre) => pre.instantiate(&mut store).map(Bindings::Executor),
            Pre::Extractor(pre) => pre.instantiate(&mut store).map(Bindings::Extractor),
        };
        match bindings {
            Ok(bindings) => Ok(Instance { store, bindings }),
            Err(e) => Err(self.classify(p, &store, &e, timeout)),
        }
    }

    fn release(&self, p: &Plugin, inst: Instance) {
        lock(&p.idle).push(inst);
        p.freed.notify_one();
    }

    fn discard(&self, p: &Plugin, inst: Instance) {
        drop(inst);
        let mut live = lock(&p.live);
        *live = live.saturating_sub(1);
        drop(live);
        p.freed.notify_one();
    }

    fn succeeded(&self, p: &Plugin) {
        let mut h = lock(&p.health);
        if h.failures > 0 || h.out_until.is_some() {
            tracing::info!(plugin = %p.cfg.name, "plugin is back in service");
            h.failures = 0;
            h.out_until = None;
            drop(h);
            self.metrics.set_healthy(&p.cfg.name, self.is_healthy(p));
        }
    }

    fn failed(&self, p: &Plugin, what: &str, err: &PluginError) {
        self.metrics.count_error(&p.cfg.name, err);
        if !err.marks_unhealthy() {
            return;
        }
        let mut h = lock(&p.health);
        h.failures = h.failures.saturating_add(1);
        h.last_error = Some(err.to_string());
        h.out_until = Some(Instant::now() + self.cooldown);
        let failures = h.failures;
        drop(h);
        tracing::error!(
            plugin = %p.cfg.name,
            call = what,
            kind = err.kind(),
            failures,
            cooldown_ms = u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX),
            "plugin stopped and marked unhealthy: {err}"
        );
        self.metrics.set_healthy(&p.cfg.name, false);
    }
}

/// Runs `f` on a scoped thread of its own (see [`PluginHost::call`]).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

fn valid_feature_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FEATURE_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn estimate_tokens(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(4)).unwrap_or(u32::MAX)
}

/// `s` cut to at most `max` bytes on a character boundary, `…` marking a cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

fn truncate_tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert_eq!(
            package_version("dualrouter:plugin/extractor-api@0.1.0").as_deref(),
            Some("0.1.0")
        );
        assert_eq!(package_version("wasi:cli/environment@0.2.0"), None);
        assert_eq!(
            interface_name("dualrouter:plugin/executor-api@0.1.0"),
            Some("executor-api")
        );
        assert!(valid_feature_name("lang_rust"));
        assert!(!valid_feature_name("Bad Name!"));
        assert_eq!(truncate("héllo", 2), "h…");
    }
}
