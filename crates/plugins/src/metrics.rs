//! The plugin layer's Prometheus instruments. Labels are the plugin's configured name, the call
//! (`extract`, `invoke`, `health`, `describe`, `instantiate`) and the error kind
//! ([`super::PluginError::kind`]): all low-cardinality.

use std::time::Duration;

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use super::error::PluginError;

#[derive(Clone)]
pub struct PluginMetrics {
    /// Plugin failures and refusals, by plugin and kind.
    pub errors: IntCounterVec,
    /// 1 while a plugin is in service, 0 while it is out (cooldown or reported unhealthy).
    pub healthy: GaugeVec,
    /// Time spent in plugin calls, by plugin and call.
    pub call_seconds: HistogramVec,
}

impl PluginMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let errors = IntCounterVec::new(
            Opts::new(
                "dualrouter_plugin_errors_total",
                "Plugin failures and refusals, by plugin and kind",
            ),
            &["plugin", "kind"],
        )?;
        let healthy = GaugeVec::new(
            Opts::new(
                "dualrouter_plugin_healthy",
                "1 while a plugin is in service, 0 while it is out",
            ),
            &["plugin"],
        )?;
        let call_seconds = HistogramVec::new(
            HistogramOpts::new(
                "dualrouter_plugin_call_seconds",
                "Time spent in plugin calls, by plugin and call",
            )
            .buckets(vec![
                0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
                30.0, 120.0,
            ]),
            &["plugin", "call"],
        )?;
        Ok(Self {
            errors,
            healthy,
            call_seconds,
        })
    }

    /// Adds every instrument to `registry` (e.g. the proxy's `Metrics::registry`).
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.errors.clone()))?;
        registry.register(Box::new(self.healthy.clone()))?;
        registry.register(Box::new(self.call_seconds.clone()))?;
        Ok(())
    }

    pub fn count_error(&self, plugin: &str, err: &PluginError) {
        self.errors.with_label_values(&[plugin, err.kind()]).inc();
    }

    pub fn set_healthy(&self, plugin: &str, healthy: bool) {
        self.healthy
            .with_label_values(&[plugin])
            .set(if healthy { 1.0 } else { 0.0 });
    }

    pub fn observe(&self, plugin: &str, call: &str, took: Duration) {
        self.call_seconds
            .with_label_values(&[plugin, call])
            .observe(took.as_secs_f64());
    }

    /// The count of errors of `kind` for `plugin` so far.
    pub fn error_count(&self, plugin: &str, kind: &str) -> u64 {
        self.errors.with_label_values(&[plugin, kind]).get()
    }
}
