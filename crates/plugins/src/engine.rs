//! The wasmtime engine every plugin shares, its epoch ticker (one thread), and compiling a
//! component with its compiled form cached on disk.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use super::error::PluginError;

/// The wasmtime major version the host is built on; part of every cache key.
pub(crate) const WASMTIME_MAJOR: &str = "48";

/// The shared engine: component model on, epoch interruption on (every call gets a deadline).
pub(crate) fn new_engine() -> Result<Engine, PluginError> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.parallel_compilation(true);
    Engine::new(&config).map_err(|e| PluginError::Engine(e.to_string()))
}

/// Increments the engine's epoch every `tick`, on one thread, until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub tick: Duration,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine, tick: Duration) -> Result<Self, PluginError> {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                // Ticks follow the wall clock: when the thread wakes late (a loaded machine),
                // it catches up, so a deadline of N ticks never stretches past N ticks of time.
                let start = std::time::Instant::now();
                let mut done: u128 = 0;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    let due = start.elapsed().as_nanos() / tick.as_nanos().max(1);
                    while done < due {
                        engine.increment_epoch();
                        done += 1;
                    }
                }
            })
            .map_err(|e| PluginError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        Ok(Self {
            stop,
            thread: Some(thread),
            tick,
        })
    }

    /// Epoch ticks that cover `timeout` (rounded up, plus the tick already under way).
    pub(crate) fn ticks_for(&self, timeout: Duration) -> u64 {
        let tick = self.tick.as_nanos().max(1);
        let n = timeout.as_nanos().div_ceil(tick);
        u64::try_from(n).unwrap_or(u64::MAX / 2).saturating_add(1)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The SHA-256 of a wasm file, hex.
pub(crate) fn wasm_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The cache file for a wasm with this hash on this engine: keyed by the wasm's SHA-256, the
/// wasmtime major version and the engine's compatibility hash (its settings and target).
pub(crate) fn cache_path(engine: &Engine, dir: &Path, wasm_sha: &str) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    dir.join(format!(
        "{wasm_sha}-wasmtime{WASMTIME_MAJOR}-{:016x}.cwasm",
        h.finish()
    ))
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompileSource {
    /// Deserialized from the disk cache.
    Cache,
    /// Compiled now (and written to the cache when one is configured).
    Compiled,
}

/// Compiles `bytes`, or loads the compiled form from `cache_dir` when it holds one for these
/// bytes and this engine. A cache that cannot be read or written is logged and skipped.
///
/// The cache directory must be writable by the operator only: a compiled artifact is trusted
/// machine code.
pub(crate) fn compile_cached(
    engine: &Engine,
    plugin: &str,
    path: &Path,
    bytes: &[u8],
    cache_dir: Option<&Path>,
) -> Result<(Component, CompileSource), PluginError> {
    let sha = wasm_sha256(bytes);
    let cached = cache_dir.map(|d| cache_path(engine, d, &sha));
    if let Some(file) = cached.as_deref() {
        // Read into memory rather than mmapped: a cache file changed under a running process
        // must not be able to crash it.
        if let Ok(artifact) = std::fs::read(file) {
            // SAFETY: the bytes were written by `Component::serialize` of an engine with the
            // same compatibility hash (it is in the name), in a directory only the operator
            // writes; wasmtime also checks the header and refuses a mismatched engine.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(c) => return Ok((c, CompileSource::Cache)),
                Err(e) => {
                    tracing::warn!(plugin, file = %file.display(), "cached plugin unusable, recompiling: {e}")
                }
            }
        }
    }
    let component = Component::new(engine, bytes).map_err(|e| PluginError::Invalid {
        plugin: plugin.to_string(),
        path: path.to_path_buf(),
        detail: error_chain(&e),
    })?;
    if let Some(file) = cached {
        if let Err(e) = write_cache(&component, &file) {
            tracing::warn!(plugin, "{e}");
        }
    }
    Ok((component, CompileSource::Compiled))
}

fn write_cache(component: &Component, file: &Path) -> Result<(), PluginError> {
    let err = |detail: String| PluginError::Cache {
        path: file.to_path_buf(),
        detail,
    };
    let bytes = component.serialize().map_err(|e| err(e.to_string()))?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    // Unique per writer (process and call), so concurrent loads never share a temp file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = file.with_extension(format!("tmp{}-{seq}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, file).map_err(|e| err(e.to_string()))
}

/// A wasmtime error with its causes, `outer: inner: …`.
pub(crate) fn error_chain(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}
