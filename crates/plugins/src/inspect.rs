//! `dualrouter plugin inspect FILE.wasm`: what a component is, read without granting it
//! anything: its world, WIT version, exports and imports, and for an executor the models its
//! `describe` declares (run with no capabilities and default limits).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::bindings::{PACKAGE, SUPPORTED_VERSIONS};
use super::engine::{compile_cached, new_engine, wasm_sha256};
use super::error::PluginError;
use super::host::{ComponentFacts, ExecutorModel, PluginHost};
use dualrouter_core::config::plugins::{PluginConfig, PluginKind, PluginsConfig};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    pub path: PathBuf,
    pub bytes: usize,
    pub sha256: String,
    /// `executor`, `feature-extractor`, or none when it exports neither.
    pub world: Option<String>,
    /// The `dualrouter:plugin` version it is built against.
    pub wit_version: Option<String>,
    /// Whether this host speaks that version.
    pub supported: bool,
    pub host_versions: Vec<String>,
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    /// Executors: the models `describe` declared.
    pub models: Vec<ExecutorModel>,
    /// Executors: why `describe` could not be run, if it could not.
    pub describe_error: Option<String>,
}

/// Reads a component and describes it (see the module docs).
pub fn inspect(path: &Path) -> Result<Inspection, PluginError> {
    let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
        plugin: "inspect".into(),
        path: path.to_path_buf(),
        source,
    })?;
    let engine = new_engine()?;
    let (component, _) = compile_cached(&engine, "inspect", path, &bytes, None)?;
    let facts = ComponentFacts::read(&engine, &component);
    let supported = facts
        .version
        .as_deref()
        .is_some_and(|v| SUPPORTED_VERSIONS.contains(&v));
    let mut models = Vec::new();
    let mut describe_error = None;
    if supported && facts.kind == Some(PluginKind::Executor) {
        let cfg = PluginsConfig {
            plugins: vec![PluginConfig::new("inspect", path, PluginKind::Executor)],
            cache_dir: None,
            ..PluginsConfig::default()
        };
        match PluginHost::new(&cfg) {
            Ok(host) => models = host.executor_models(),
            Err(e) => describe_error = Some(e.to_string()),
        }
    }
    Ok(Inspection {
        path: path.to_path_buf(),
        bytes: bytes.len(),
        sha256: wasm_sha256(&bytes),
        world: facts.kind.map(|k| k.world().to_string()),
        wit_version: facts.version.map(|v| format!("{PACKAGE}@{v}")),
        supported,
        host_versions: SUPPORTED_VERSIONS
            .iter()
            .map(|v| format!("{PACKAGE}@{v}"))
            .collect(),
        exports: facts.exports,
        imports: facts.imports,
        models,
        describe_error,
    })
}

/// The human-readable report.
pub fn render(i: &Inspection) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "file:     {} ({} bytes, sha256 {})",
        i.path.display(),
        i.bytes,
        i.sha256
    );
    let _ = writeln!(
        s,
        "world:    {}",
        i.world
            .as_deref()
            .unwrap_or("none (not a dualrouter plugin)")
    );
    let _ = writeln!(
        s,
        "WIT:      {} ({})",
        i.wit_version.as_deref().unwrap_or("none"),
        if i.supported {
            "supported".to_string()
        } else {
            format!(
                "NOT supported; this host speaks {}",
                i.host_versions.join(", ")
            )
        }
    );
    let _ = writeln!(s, "exports:");
    for e in &i.exports {
        let _ = writeln!(s, "  {e}");
    }
    let _ = writeln!(s, "imports:");
    for e in &i.imports {
        let _ = writeln!(s, "  {e}");
    }
    if i.world.as_deref() == Some("executor") {
        let _ = writeln!(s, "models:");
        if let Some(e) = &i.describe_error {
            let _ = writeln!(s, "  (describe failed: {e})");
        }
        for m in &i.models {
            let _ = writeln!(
                s,
                "  {}  context {}  ${}/${} per Mtok in/out  tier {}  [{}]  {}",
                m.id,
                m.context_tokens,
                m.input_cost_per_mtok,
                m.output_cost_per_mtok,
                m.tier.as_deref().unwrap_or("-"),
                m.capabilities.join(", "),
                m.description
            );
        }
    }
    s
}
