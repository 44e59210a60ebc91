//! The plugin layer's one error type. Every variant names the plugin; [`PluginError::kind`] is
//! its low-cardinality twin for metrics, and [`PluginError::marks_unhealthy`] says which failures
//! take the plugin out of service for the cooldown.

use std::path::PathBuf;

/// Why an executor said it could not answer (the WIT `executor-error` cases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorErrorKind {
    UnknownModel,
    Unavailable,
    InvalidRequest,
    Failed,
}

impl std::fmt::Display for ExecutorErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::UnknownModel => "unknown model",
            Self::Unavailable => "unavailable",
            Self::InvalidRequest => "invalid request",
            Self::Failed => "failed",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The wasm file could not be read.
    #[error("plugin '{plugin}': cannot read {}: {source}", path.display())]
    Read {
        plugin: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a component this host can compile, or exports no known world.
    #[error("plugin '{plugin}' ({}) is not a usable component: {detail}", path.display())]
    Invalid {
        plugin: String,
        path: PathBuf,
        detail: String,
    },
    /// Built against a WIT version the host does not speak.
    #[error("plugin '{plugin}' is built for WIT {found}; this host speaks {}", supported.join(", "))]
    UnsupportedVersion {
        plugin: String,
        found: String,
        supported: Vec<String>,
    },
    /// Exports a different world than its config says.
    #[error("plugin '{plugin}' exports the {found} world but is configured as {expected}")]
    WrongKind {
        plugin: String,
        expected: String,
        found: String,
    },
    /// Imports something the host does not provide (or with another type).
    #[error("plugin '{plugin}' cannot be linked: {detail}")]
    Link { plugin: String, detail: String },
    /// Ran past its deadline; the instance was stopped.
    #[error("plugin '{plugin}' ran past its {timeout_ms} ms deadline and was stopped")]
    Timeout { plugin: String, timeout_ms: u64 },
    /// Hit its memory limit; the instance was stopped.
    #[error("plugin '{plugin}' exceeded its {limit_mb} MiB memory limit and was stopped")]
    OutOfMemory { plugin: String, limit_mb: u64 },
    /// Trapped (a panic, an unreachable, a bad memory access…); the instance was dropped.
    #[error("plugin '{plugin}' trapped: {detail}")]
    Trap { plugin: String, detail: String },
    /// Returned something the host refuses (too large, NaN, bad names…).
    #[error("plugin '{plugin}' returned garbage: {detail}")]
    Garbage { plugin: String, detail: String },
    /// Out of service after a failure, until its cooldown ends.
    #[error("plugin '{plugin}' is unhealthy ({last}); next try in {retry_in_ms} ms")]
    Unhealthy {
        plugin: String,
        last: String,
        retry_in_ms: u64,
    },
    /// Every instance was busy for the whole deadline.
    #[error("plugin '{plugin}' had no free instance within {timeout_ms} ms")]
    Busy { plugin: String, timeout_ms: u64 },
    /// The executor answered with an error of its own (the backend is down, the request is not
    /// one it serves…); the plugin itself is fine.
    #[error("executor '{plugin}' could not answer ({kind}): {message}")]
    Executor {
        plugin: String,
        kind: ExecutorErrorKind,
        message: String,
    },
    /// No loaded plugin of the right kind has this name.
    #[error("no {kind} plugin named '{plugin}'")]
    UnknownPlugin { plugin: String, kind: &'static str },
    /// The compiled-artifact cache could not be written (reading falls back to compiling).
    #[error("plugin cache {}: {detail}", path.display())]
    Cache { path: PathBuf, detail: String },
    /// The engine could not be set up.
    #[error("plugin engine: {0}")]
    Engine(String),
    /// The plugin config is invalid.
    #[error("invalid plugin config:\n  - {}", .0.join("\n  - "))]
    Config(Vec<String>),
}

impl PluginError {
    /// A low-cardinality label for metrics; never the message.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read",
            Self::Invalid { .. } => "invalid",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::WrongKind { .. } => "wrong_kind",
            Self::Link { .. } => "link",
            Self::Timeout { .. } => "timeout",
            Self::OutOfMemory { .. } => "out_of_memory",
            Self::Trap { .. } => "trap",
            Self::Garbage { .. } => "garbage",
            Self::Unhealthy { .. } => "unhealthy",
            Self::Busy { .. } => "busy",
            Self::Executor { .. } => "executor_error",
            Self::UnknownPlugin { .. } => "unknown_plugin",
            Self::Cache { .. } => "cache",
            Self::Engine(_) => "engine",
            Self::Config(_) => "config",
        }
    }

    /// Whether this failure takes the plugin out of service for the cooldown: the plugin itself
    /// misbehaved (as opposed to its backend saying no, or the host being busy).
    pub fn marks_unhealthy(&self) -> bool {
        match self {
            Self::Timeout { .. }
            | Self::OutOfMemory { .. }
            | Self::Trap { .. }
            | Self::Garbage { .. }
            | Self::Link { .. } => true,
            Self::Read { .. }
            | Self::Invalid { .. }
            | Self::UnsupportedVersion { .. }
            | Self::WrongKind { .. }
            | Self::Unhealthy { .. }
            | Self::Busy { .. }
            | Self::Executor { .. }
            | Self::UnknownPlugin { .. }
            | Self::Cache { .. }
            | Self::Engine(_)
            | Self::Config(_) => false,
        }
    }

    /// The plugin this error is about, if any.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            Self::Read { plugin, .. }
            | Self::Invalid { plugin, .. }
            | Self::UnsupportedVersion { plugin, .. }
            | Self::WrongKind { plugin, .. }
            | Self::Link { plugin, .. }
            | Self::Timeout { plugin, .. }
            | Self::OutOfMemory { plugin, .. }
            | Self::Trap { plugin, .. }
            | Self::Garbage { plugin, .. }
            | Self::Unhealthy { plugin, .. }
            | Self::Busy { plugin, .. }
            | Self::Executor { plugin, .. }
            | Self::UnknownPlugin { plugin, .. } => Some(plugin),
            Self::Cache { .. } | Self::Engine(_) | Self::Config(_) => None,
        }
    }
}
