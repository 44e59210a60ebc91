//! The process's log: `log.format` (text or JSON lines on stderr, chosen at start) and a level
//! filter behind a reload handle, so a config reload changes the level of the running process.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use dualrouter_core::config::log::{LogFormat, LogSettings};

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// The filter text for `settings`: `log.level` when set, else `DUALROUTER_LOG`, else `info`.
fn directives(settings: &LogSettings) -> String {
    match &settings.level {
        Some(level) => level.clone(),
        None => std::env::var("DUALROUTER_LOG").unwrap_or_else(|_| "info".into()),
    }
}

/// The level filter `settings` asks for, or why it does not parse (a reload is then refused).
pub fn filter(settings: &LogSettings) -> Result<EnvFilter, String> {
    let text = directives(settings);
    EnvFilter::try_new(&text)
        .map_err(|e| format!("log.level: '{text}' is not a tracing filter: {e}"))
}

/// Installs the process's subscriber (once; later calls do nothing).
pub fn init(settings: &LogSettings) {
    let filter = filter(settings).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let output = match settings.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    if tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .is_ok()
    {
        let _ = FILTER.set(handle);
    }
}

/// Applies `settings`' level to the running process (after a reload); the format stays.
pub fn apply(settings: &LogSettings) {
    let Some(handle) = FILTER.get() else { return };
    match filter(settings) {
        Ok(f) => {
            if let Err(e) = handle.reload(f) {
                tracing::warn!("log level not changed: {e}");
            }
        }
        Err(e) => tracing::warn!("{e}"),
    }
}
