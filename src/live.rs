//! The live state: everything a request reads (config, policies, registry, classifier routes,
//! MIRT checkpoint, upstream connector) built as one [`ProxyState`] and swapped in atomically.
//! A request takes the current state once, at its start, and finishes on it: it sees all-old
//! or all-new, never a mix.
//!
//! What rebuilds it:
//! - the config file changing (polled every `reload.poll_ms`, applied once it has been stable
//!   for `reload.debounce_ms`), `POST /api/reload`, or SIGHUP;
//! - a policy edited through the admin API (at once, before the API answers), or by another
//!   instance sharing the PostgreSQL database (`LISTEN dualrouter_policies`, and every
//!   `reload.resync_ms` a comparison with the store in case a notification was missed).
//!
//! A config, policy set or checkpoint that does not build keeps the old state; the reload
//! answers with every reason and `dualrouter_reloads_total{result="failed"}` counts it.
//! Listen addresses, server threads, the database, the decision log, the demo upstream and the
//! admin token are read once at start: a change to them is reported as needing a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use sha2::{Digest, Sha256};

use dualrouter_core::config::{Config, ConfigError};
use dualrouter_core::metrics::Metrics;
use dualrouter_ml::encoder::Encoder;
use dualrouter_ml::mirt::{Mirt, MirtError};
use dualrouter_proxy::ProxyState;
use dualrouter_proxy::Upstream;
use dualrouter_routing::Registry;
use dualrouter_routing::Scorer;
use dualrouter_routing::{DualRouter, RouterError, RouterSections};
use dualrouter_store::{DecisionLog, Store, StoreError};

pub use dualrouter_core::config::reload::ReloadSettings;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Router(#[from] RouterError),
    #[error(transparent)]
    Mirt(#[from] MirtError),
    #[error("{0}")]
    Other(String),
}

impl ReloadError {
    /// Every reason, one per problem (an invalid config lists each field).
    pub fn reasons(&self) -> Vec<String> {
        match self {
            Self::Config(ConfigError::Invalid(list)) => list.clone(),
            e => vec![e.to_string()],
        }
    }
}

/// What a successful reload did.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    pub generation: u64,
    pub policies: usize,
    pub models: usize,
    /// The MIRT checkpoint now scoring (registered version), if registered.
    pub checkpoint_version: Option<i64>,
    /// Changed settings that only a restart applies.
    pub restart_needed: Vec<String>,
}

/// What every generation shares: built once at start.
#[derive(Clone)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    /// The plugin instruments, registered once; every plugin host a reload loads counts here.
    pub plugin_metrics: dualrouter_plugins::PluginMetrics,
    pub decision_log: DecisionLog,
    pub store: Store,
    pub control: tokio::runtime::Handle,
    /// Virtual keys: one keyring for the process (its cache and counters outlive reloads).
    pub keys: Option<Arc<dualrouter_store::Keyring>>,
}

pub struct Live {
    /// Shared with the proxy, which loads it once per request.
    current: Arc<ArcSwap<ProxyState>>,
    config_path: PathBuf,
    shared: Shared,
    /// One rebuild at a time.
    lock: tokio::sync::Mutex<()>,
    generation: std::sync::atomic::AtomicU64,
}

impl Live {
    /// Builds the first state. `config` is the validated file (with `listen` resolved).
    pub async fn start(
        config: Config,
        config_path: &Path,
        shared: Shared,
    ) -> Result<Arc<Self>, ReloadError> {
        let discovered = discover(&config).await;
        let state = build(config, &shared, None, discovered).await?;
        Ok(Arc::new(Self {
            current: Arc::new(ArcSwap::from_pointee(state)),
            config_path: config_path.to_path_buf(),
            shared,
            lock: tokio::sync::Mutex::new(()),
            generation: std::sync::atomic::AtomicU64::new(1),
        }))
    }

    /// The state a request should use, whole.
    pub fn current(&self) -> Arc<ProxyState> {
        self.current.load_full()
    }

    /// The cell the proxy reads: each request loads the state in it once.
    pub fn states(&self) -> Arc<ArcSwap<ProxyState>> {
        self.current.clone()
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Re-reads the config file and swaps in a state built from it (and the store's
    /// policies). On any error the old state stays.
    pub async fn reload_config(&self) -> Result<ReloadReport, ReloadError> {
        let _guard = self.lock.lock().await;
        let result = async {
            let path = self.config_path.clone();
            let mut config =
                tokio::task::spawn_blocking(move || dualrouter_core::config::load(&path))
                    .await
                    .map_err(|e| ReloadError::Other(format!("reading the config: {e}")))??;
            let old = self.current();
            let restart_needed = restart_only_changes(&old.config, &mut config);
            // The config's policies seed the store on a reload as at start.
            self.shared.store.seed_policies(&config.policies).await?;
            // Lists read now win; a provider that does not answer keeps its last one.
            let mut discovered = old.router.registry().discovered().clone();
            discovered.extend(discover(&config).await);
            let state = build(config, &self.shared, Some(&old), discovered).await?;
            Ok::<_, ReloadError>((state, restart_needed))
        }
        .await;
        self.finish(result, "config")
    }

    /// Rebuilds with the same config and the store's current policies (after a policy edit,
    /// here or on another instance). Nothing happens if the policies did not change.
    pub async fn reload_policies(&self) -> Result<Option<ReloadReport>, ReloadError> {
        let _guard = self.lock.lock().await;
        let old = self.current();
        let policies = self.shared.store.list_policies().await?;
        if policies == old.router.policies() {
            return Ok(None);
        }
        let discovered = old.router.registry().discovered().clone();
        let result = build((*old.config).clone(), &self.shared, Some(&old), discovered)
            .await
            .map(|s| (s, Vec::new()));
        self.finish(result, "policies").map(Some)
    }

    /// Rebuilds with the same config and new discovery lists (a provider's `GET /models`
    /// answered differently at a health check).
    async fn reload_discovered(
        &self,
        found: dualrouter_routing::Discovered,
    ) -> Result<Option<ReloadReport>, ReloadError> {
        let _guard = self.lock.lock().await;
        let old = self.current();
        let mut discovered = old.router.registry().discovered().clone();
        discovered.extend(found);
        if &discovered == old.router.registry().discovered() {
            return Ok(None);
        }
        let result = build((*old.config).clone(), &self.shared, Some(&old), discovered)
            .await
            .map(|s| (s, Vec::new()));
        self.finish(result, "models").map(Some)
    }

    /// One round of health checks: every provider asked (`GET /models`), discovery lists
    /// refreshed, and the store's `candidate_models` / `executor_services` tables brought up to
    /// date with what the registry now holds.
    pub async fn check_health(&self) {
        let state = self.current();
        let found = dualrouter_routing::probe::check_providers(
            &state.config.providers,
            probe_timeout(&state.config),
            state.router.registry(),
        )
        .await;
        match self.reload_discovered(found).await {
            Ok(Some(r)) => tracing::info!(models = r.models, "discovered models changed"),
            Ok(None) => {}
            Err(e) => tracing::warn!("discovered models not applied: {e}"),
        }
        self.sync_catalog().await;
    }

    /// Writes the registry's models and the executor plugins to the store (what the dashboard
    /// and other tools read). A store that is down is logged; the next round retries.
    pub async fn sync_catalog(&self) {
        let state = self.current();
        let registry = state.router.registry();
        let models = crate::admin::api::Catalog::executors(registry.as_ref());
        let services: Vec<dualrouter_store::ExecutorService> = registry
            .plugins()
            .map(|h| {
                h.statuses()
                    .into_iter()
                    .filter(|s| s.kind == dualrouter_plugins::PluginKind::Executor)
                    .map(|s| executor_service(&s, &h.executor_models()))
                    .collect()
            })
            .unwrap_or_default();
        if let Err(e) = self.shared.store.sync_catalog(&models, &services).await {
            tracing::warn!("the store's model catalog is not current: {e}");
        }
    }

    fn finish(
        &self,
        result: Result<(ProxyState, Vec<String>), ReloadError>,
        what: &'static str,
    ) -> Result<ReloadReport, ReloadError> {
        match result {
            Ok((state, restart_needed)) => {
                let generation = self
                    .generation
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                let report = ReloadReport {
                    generation,
                    policies: state.router.policies().len(),
                    models: state.router.registry().models().count(),
                    checkpoint_version: state.router.scorer().version,
                    restart_needed,
                };
                crate::logging::apply(&state.config.log);
                self.current.store(Arc::new(state));
                self.shared
                    .metrics
                    .reloads
                    .with_label_values(&[what, "ok"])
                    .inc();
                self.shared.metrics.generation.set(generation as i64);
                if report.restart_needed.is_empty() {
                    tracing::info!(what, generation, "reloaded");
                } else {
                    tracing::warn!(
                        what,
                        generation,
                        "reloaded; these changes need a restart: {}",
                        report.restart_needed.join(", ")
                    );
                }
                Ok(report)
            }
            Err(e) => {
                self.shared
                    .metrics
                    .reloads
                    .with_label_values(&[what, "failed"])
                    .inc();
                tracing::warn!(
                    what,
                    "reload refused, the old state keeps serving: {}",
                    e.reasons().join("; ")
                );
                Err(e)
            }
        }
    }

    /// Starts the watchers: the config file, SIGHUP, PostgreSQL notifications and the
    /// periodic resync. Runs on the current (control) runtime.
    pub fn watch(self: &Arc<Self>) {
        let settings = self.current().config.reload;
        if settings.watch {
            let me = self.clone();
            tokio::spawn(async move { me.watch_file(settings).await });
        }
        let me = self.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the config");
                let _ = me.reload_config().await;
            }
        });
        let me = self.clone();
        tokio::spawn(async move { me.listen_policies().await });
        let me = self.clone();
        tokio::spawn(async move {
            me.sync_catalog().await;
            // `routing.health_checks.interval_ms` is read again at every wake-up, so a reload
            // that changes it (or turns the checks on or off with 0) applies within a second.
            let mut last = tokio::time::Instant::now();
            loop {
                let every = me.current().config.routing.health_checks.interval_ms;
                match next_health_check(every, last.elapsed()) {
                    HealthWait::Now => {
                        me.check_health().await;
                        last = tokio::time::Instant::now();
                    }
                    HealthWait::Sleep(d) => tokio::time::sleep(d).await,
                }
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(settings.resync_ms));
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = me.reload_policies().await {
                    tracing::debug!("policy resync: {e}");
                }
            }
        });
    }

    async fn watch_file(&self, settings: ReloadSettings) {
        let fingerprint = |p: &Path| std::fs::read(p).ok().map(|b| Sha256::digest(&b));
        let mut seen = fingerprint(&self.config_path);
        let mut tick = tokio::time::interval(Duration::from_millis(settings.poll_ms));
        loop {
            tick.tick().await;
            let now = fingerprint(&self.config_path);
            if now == seen || now.is_none() {
                continue;
            }
            // Wait until the file stops changing.
            tokio::time::sleep(Duration::from_millis(settings.debounce_ms)).await;
            let settled = fingerprint(&self.config_path);
            if settled != now {
                continue;
            }
            seen = settled;
            tracing::info!(path = %self.config_path.display(), "config file changed");
            let _ = self.reload_config().await;
        }
    }

    /// PostgreSQL: a policy change by any instance reaches this one within a notification.
    async fn listen_policies(&self) {
        let mut listener = match self.shared.store.listen_policies().await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(
                    "cannot LISTEN for policy changes ({e}); relying on the periodic resync"
                );
                return;
            }
        };
        tracing::info!("listening for policy changes of other instances");
        loop {
            match listener.recv().await {
                Ok(_) => {
                    tracing::debug!("policy change notified");
                    // Several edits in a burst: one rebuild.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while listener.next_buffered().is_some() {}
                    if let Err(e) = self.reload_policies().await {
                        tracing::warn!("policy change not applied: {e}");
                    }
                }
                Err(e) => {
                    // sqlx reconnects on the next recv; changes missed meanwhile are caught by
                    // the resync.
                    tracing::warn!("policy listener: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Settings only a restart applies: the running values stay in the new config (so it
/// describes what runs), and each changed one is named, on every reload until a restart.
fn restart_only_changes(old: &Config, new: &mut Config) -> Vec<String> {
    let mut changed = Vec::new();
    // Port 0 means "any free port": the running port stays without a word.
    if new.listen.port() == 0 {
        new.listen = old.listen;
    }
    if new.admin.listen.port() == 0 {
        new.admin.listen = old.admin.listen;
    }
    if new.listen != old.listen {
        changed.push("listen");
        new.listen = old.listen;
    }
    if new.admin.listen != old.admin.listen || new.admin.token_env != old.admin.token_env {
        changed.push("admin");
        new.admin = old.admin.clone();
    }
    if format!("{:?}", new.server) != format!("{:?}", old.server) {
        changed.push("server");
        new.server = old.server.clone();
    }
    if new.database != old.database {
        changed.push("database");
        new.database = old.database.clone();
    }
    if format!("{:?}", new.decision_log) != format!("{:?}", old.decision_log) {
        changed.push("decision_log");
        new.decision_log = old.decision_log.clone();
    }
    if format!("{:?}", new.telemetry) != format!("{:?}", old.telemetry) {
        changed.push("telemetry");
        new.telemetry = old.telemetry.clone();
    }
    if new.log.format != old.log.format {
        changed.push("log.format");
        new.log.format = old.log.format;
    }
    if format!("{:?}", new.demo) != format!("{:?}", old.demo) {
        changed.push("demo");
        new.demo = old.demo;
    }
    changed.into_iter().map(str::to_string).collect()
}

/// What the provider health loop does next.
#[derive(Debug, PartialEq)]
enum HealthWait {
    Now,
    Sleep(Duration),
}

/// With checks every `interval_ms` (0: off) and `since` the last one: check now, or sleep until
/// the next is due but at most a second (so a reloaded interval applies within a second).
fn next_health_check(interval_ms: u64, since: Duration) -> HealthWait {
    const RECHECK: Duration = Duration::from_secs(1);
    if interval_ms == 0 {
        return HealthWait::Sleep(RECHECK);
    }
    match Duration::from_millis(interval_ms).checked_sub(since) {
        Some(left) if !left.is_zero() => HealthWait::Sleep(left.min(RECHECK)),
        _ => HealthWait::Now,
    }
}

/// Builds one generation. `prev` lends what need not be rebuilt: the encoder (same settings),
/// the models' health, the conversations' models (same checkpoint).
async fn build(
    config: Config,
    shared: &Shared,
    prev: Option<&ProxyState>,
    discovered: dualrouter_routing::Discovered,
) -> Result<ProxyState, ReloadError> {
    // A level the filter cannot parse refuses the state, as any other invalid key does.
    crate::logging::filter(&config.log).map_err(|e| ConfigError::Invalid(vec![e]))?;
    let plugins = load_plugins(&config, shared, prev).await?;
    let upstream =
        Upstream::new(&config.providers).map_err(|e| ReloadError::Other(e.to_string()))?;
    let config = Arc::new(config);
    let (router, checkpoint_sha) = build_router(
        &config,
        &shared.store,
        plugins,
        &discovered,
        prev,
        shared.metrics.clone(),
    )
    .await?;
    Ok(ProxyState {
        config,
        upstream,
        metrics: shared.metrics.clone(),
        decision_log: shared.decision_log.clone(),
        router: Arc::new(router),
        store: shared.store.clone(),
        control: shared.control.clone(),
        keys: shared.keys.clone(),
        checkpoint_sha,
    })
}

/// How long a provider may take to answer a model list (discovery and health checks).
fn probe_timeout(config: &Config) -> Duration {
    Duration::from_millis(config.routing.health_checks.timeout_ms)
}

/// The lists of the providers with `discover_models` that answer now.
pub async fn discover(config: &Config) -> dualrouter_routing::Discovered {
    dualrouter_routing::probe::discover(&config.providers, probe_timeout(config)).await
}

/// The router of a generation: the store's policies and active checkpoint, the config's models
/// with those `plugins` and `discovered` add, and what `prev` lends (the encoder when its
/// settings are the same, the models' health, the conversations' models when the checkpoint is).
/// Returns it with the checkpoint's SHA-256. Every generation of `serve` and the dry run of
/// `route` are built here.
pub async fn build_router(
    config: &Arc<Config>,
    store: &Store,
    plugins: Option<Arc<dualrouter_plugins::PluginHost>>,
    discovered: &dualrouter_routing::Discovered,
    prev: Option<&ProxyState>,
    metrics: Arc<dualrouter_core::metrics::Metrics>,
) -> Result<(DualRouter, String), ReloadError> {
    let policies = store.list_policies().await?;
    let registry = Arc::new(Registry::build(
        config,
        plugins,
        discovered,
        prev.map(|p| p.router.registry().as_ref()),
    ));
    let unplaced = registry.unplaced(
        policies
            .iter()
            .flat_map(|p| &p.models)
            .chain(&config.routing.default_models),
    );
    if !unplaced.is_empty() {
        // A plugin or a provider's list may lack them for now; they are no candidates meanwhile.
        tracing::warn!(
            "policies name models no provider or executor plugin serves now: {}",
            unplaced.join(", ")
        );
    }
    let encoder = match prev {
        Some(p) if p.config.mirt.encoder == config.mirt.encoder => p.router.encoder().clone(),
        _ => {
            let cfg = config.mirt.encoder.clone();
            Arc::new(
                tokio::task::spawn_blocking(move || Encoder::load(&cfg))
                    .await
                    .map_err(|e| ReloadError::Other(format!("loading the encoder: {e}")))?
                    .map_err(RouterError::from)?,
            )
        }
    };
    let (scorer, checkpoint_sha) = active_scorer(
        store,
        config,
        prev.map(|p| p.checkpoint_sha.as_str()),
        &encoder,
        &registry,
    )
    .await?;
    let affinity = prev
        .filter(|p| {
            let s = p.router.scorer();
            s.version == scorer.version && s.path == scorer.path
        })
        .map(|p| p.router.affinity());
    let config = config.clone();
    // Training the embedded classifier's head embeds every policy example: off the runtime.
    let router = tokio::task::spawn_blocking(move || {
        DualRouter::with_parts(
            RouterSections::of(&config),
            encoder,
            scorer,
            &policies,
            registry,
            metrics,
            affinity,
        )
    })
    .await
    .map_err(|e| ReloadError::Other(format!("building the router: {e}")))??;
    Ok((router, checkpoint_sha))
}

/// The plugin host for `config`: the previous generation's when the plugin settings and files
/// are the same, else a new one (compiled components come from the disk cache).
async fn load_plugins(
    config: &Config,
    shared: &Shared,
    prev: Option<&ProxyState>,
) -> Result<Option<Arc<dualrouter_plugins::PluginHost>>, ReloadError> {
    let key = plugins_key(&config.plugins);
    if let Some(p) = prev {
        if plugins_key(&p.config.plugins) == key {
            return Ok(p.router.registry().plugins().cloned());
        }
    }
    let (cfg, metrics) = (config.plugins.clone(), shared.plugin_metrics.clone());
    tokio::task::spawn_blocking(move || dualrouter_plugins::start(&cfg, &metrics))
        .await
        .map_err(|e| ReloadError::Other(format!("loading plugins: {e}")))?
        .map_err(|e| ReloadError::Other(format!("loading plugins: {e}")))
}

/// What a plugin host depends on: the settings, and each component file's size and time.
fn plugins_key(cfg: &dualrouter_plugins::PluginsConfig) -> String {
    let files: Vec<_> = cfg
        .plugins
        .iter()
        .map(|p| {
            std::fs::metadata(&p.path)
                .ok()
                .map(|m| (m.len(), m.modified().ok()))
        })
        .collect();
    format!("{cfg:?} {files:?}")
}

/// The checkpoint that scores: the config's when it is new (first start, or the config now
/// names another file or the file changed), else the store's active one (a checkpoint activated
/// through the admin API outlives restarts and reloads). The config's checkpoint is registered
/// in the store the first time it is seen. Returns the scorer and the config file's sha256.
pub async fn active_scorer(
    store: &Store,
    config: &Config,
    prev_sha: Option<&str>,
    encoder: &Arc<Encoder>,
    registry: &Arc<Registry>,
) -> Result<(Scorer, String), ReloadError> {
    let path = config.mirt.checkpoint.clone();
    let sha = file_sha256(&path)?;
    let own_mirt = Mirt::load(&path, Some(encoder.id()))?;
    let rows = store.list_checkpoints().await?;
    let own = match rows
        .iter()
        .find(|r| r.sha256.as_deref() == Some(sha.as_str()))
    {
        Some(r) => r.clone(),
        None => {
            store
                .register_checkpoint(
                    &path.display().to_string(),
                    &sha,
                    own_mirt.dim_x() as i32,
                    &own_mirt
                        .models
                        .iter()
                        .map(|m| m.name.clone())
                        .collect::<Vec<_>>(),
                    &serde_json::json!({ "eval": own_mirt.eval, "source": "config" }),
                    own_mirt.training.rows as i64,
                )
                .await?
        }
    };
    let config_changed = prev_sha.is_some_and(|p| p != sha);
    let active = rows.iter().find(|r| r.active);
    // An active row that only a config registered (an earlier config's file) gives way to the
    // config's file now; one activated through the API or a refit outlives restarts.
    let from_config = |r: &dualrouter_store::CheckpointRow| r.metrics["source"] == "config";
    let keep_active =
        active.filter(|a| a.version != own.version && !config_changed && !from_config(a));
    if let Some(a) = keep_active {
        let active_path = PathBuf::from(&a.path);
        match Mirt::load(&active_path, Some(encoder.id())) {
            Ok(m) => {
                tracing::info!(version = a.version, path = %a.path, "the store's active MIRT checkpoint scores");
                let scorer = Scorer::new(m, Some(a.version), active_path, registry.models())?;
                return Ok((scorer, sha));
            }
            Err(e) => tracing::warn!(
                "the store's active checkpoint v{} cannot be used ({e}); the config's scores",
                a.version
            ),
        }
    }
    if active.is_none_or(|a| a.version != own.version) {
        store.set_active_checkpoint(own.version).await?;
    }
    let scorer = Scorer::new(own_mirt, Some(own.version), path, registry.models())?;
    Ok((scorer, sha))
}

/// The store's row for an executor plugin: its id, models and last error (never a secret).
fn executor_service(
    s: &dualrouter_plugins::PluginStatus,
    models: &[dualrouter_plugins::ExecutorModel],
) -> dualrouter_store::ExecutorService {
    use chrono::Utc;
    use sqlx::types::Json;

    let mine: Vec<&dualrouter_plugins::ExecutorModel> =
        models.iter().filter(|m| m.plugin == s.name).collect();
    dualrouter_store::ExecutorService {
        name: s.name.clone(),
        plugin: s.path.clone(),
        kind: mine
            .first()
            .map(|m| m.executor_kind.clone())
            .unwrap_or_else(|| "executor".into()),
        settings: Json(serde_json::json!({
            "executor_id": mine.first().map(|m| m.executor_id.clone()),
            "wit_version": s.wit_version,
            "models": mine.iter().map(|m| &m.id).collect::<Vec<_>>(),
            "last_error": s.last_error,
            "reported": s.reported,
        })),
        health: if s.healthy { "healthy" } else { "unhealthy" }.into(),
        last_check: Some(Utc::now()),
    }
}

pub fn file_sha256(path: &Path) -> Result<String, ReloadError> {
    let bytes = std::fs::read(path).map_err(|e| {
        ReloadError::Mirt(MirtError::Io {
            path: path.to_path_buf(),
            source: e,
        })
    })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_loop_follows_the_interval_it_reads() {
        let ms = Duration::from_millis;
        // Off: look again in a second.
        assert_eq!(
            next_health_check(0, ms(90_000)),
            HealthWait::Sleep(ms(1000))
        );
        // Due or overdue: now.
        assert_eq!(next_health_check(30_000, ms(30_000)), HealthWait::Now);
        assert_eq!(next_health_check(500, ms(2_000)), HealthWait::Now);
        // Not due: sleep until it is, at most a second at a time.
        assert_eq!(
            next_health_check(30_000, ms(100)),
            HealthWait::Sleep(ms(1000))
        );
        assert_eq!(
            next_health_check(30_000, ms(29_700)),
            HealthWait::Sleep(ms(300))
        );
        assert_eq!(next_health_check(200, ms(50)), HealthWait::Sleep(ms(150)));
    }
}
