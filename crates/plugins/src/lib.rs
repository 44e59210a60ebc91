//! The WASM plugin platform (docs/plugins.md): executor and feature-extractor plugins
//! as WebAssembly components (`wit/`, package `dualrouter:plugin`), hosted on wasmtime's
//! component model.
//!
//! - [`config`]: the `plugins:` / `executors:` / `feature_extractors:` / `plugin_host:` config.
//! - [`PluginHost`]: loads, caches, pre-instantiates and calls plugins under their limits
//!   (memory via a resource limiter, deadline via epoch interruption on one ticker thread, no
//!   ambient WASI filesystem, network or environment). Its methods are what the router and the
//!   proxy call: [`PluginHost::extract_features`], [`PluginHost::executor_models`],
//!   [`PluginHost::invoke`], [`PluginHost::check_health`], [`PluginHost::statuses`].
//! - [`openai`]: the OpenAI JSON / SSE answer built from an executor's [`InvokeResponse`].
//! - [`inspect`]: `dualrouter plugin inspect FILE.wasm`.
//!
//! The author's guide is `docs/plugins.md`.

mod bindings;
mod capabilities;
mod engine;
mod error;
pub mod host;
pub mod inspect;
mod metrics;
pub mod openai;
mod state;
mod stderr_tail;

pub use dualrouter_core::config::plugins::{PluginConfig, PluginKind, PluginSpec, PluginsConfig};
pub use error::{ExecutorErrorKind, PluginError};
pub use host::{
    ExecutorModel, HealthReport, HealthStatus, InvokeRequest, InvokeResponse, PluginHost,
    PluginStatus, Usage,
};
pub use metrics::PluginMetrics;

/// Loads the configured plugins (at start and when a reload changes them), counting into
/// `metrics` (registered once by the caller), and starts the periodic executor health checks
/// (`plugin_host.health_interval_ms`; the thread ends when the host is dropped). `None` when no
/// plugin is configured (no engine, no threads). A plugin that cannot be loaded fails the load,
/// naming it.
pub fn start(
    config: &PluginsConfig,
    metrics: &PluginMetrics,
) -> Result<Option<std::sync::Arc<PluginHost>>, PluginError> {
    if config.plugins.is_empty() {
        return Ok(None);
    }
    let host = std::sync::Arc::new(PluginHost::with_metrics(config, metrics.clone())?);
    if let Some(every) = config.health_interval {
        if !host.plugin_names(PluginKind::Executor).is_empty() {
            PluginHost::start_health_checks(&host, every)?;
        }
    }
    Ok(Some(host))
}
