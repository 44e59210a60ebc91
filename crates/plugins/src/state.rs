//! What each plugin instance's `Store` holds, and the host side of the WIT imports: `log`,
//! `config`, `process`, `http`. WASI is linked (wasm32-wasip2 guests import it) over an empty
//! context: no preopened directories, no environment, no arguments, no sockets, stdin closed,
//! stdout discarded, stderr kept as a short tail for error messages.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::v0_1_0::{config, http, log, process, types};
use super::capabilities::{self, HttpCapability};
use super::stderr_tail::StderrTail;
use dualrouter_core::config::plugins::{PluginConfig, MAX_LOG_LINE_BYTES};

/// Most instances, tables and memories one plugin instance may create (a Rust guest needs one
/// of each, plus WASI's).
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 16;
/// Most elements in one table.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// The memory limit, remembering whether the guest ran into it (so the error says so).
pub(crate) struct Limiter {
    pub memory_bytes: usize,
    pub hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }
    fn tables(&self) -> usize {
        MAX_TABLES
    }
    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// One instance's store data.
pub(crate) struct HostState {
    pub cfg: Arc<PluginConfig>,
    pub http: Arc<HttpCapability>,
    pub limiter: Limiter,
    /// When the current call must be over; capability calls are cut to it.
    pub deadline: Instant,
    pub stderr: StderrTail,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub(crate) fn new(cfg: Arc<PluginConfig>, http: Arc<HttpCapability>) -> Self {
        let stderr = StderrTail::default();
        let mut b = WasiCtx::builder();
        b.stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let memory_bytes = cfg.memory_bytes;
        Self {
            cfg,
            http,
            limiter: Limiter {
                memory_bytes,
                hit: false,
            },
            deadline: Instant::now(),
            stderr,
            wasi: b.build(),
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_LINE_BYTES {
            let mut cut = MAX_LOG_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let plugin = self.cfg.name.as_str();
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.cfg
            .config
            .get(&key)
            .cloned()
            .or_else(|| self.cfg.secrets.get(&key).map(|s| s.expose().to_string()))
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self
            .cfg
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(
                self.cfg
                    .secrets
                    .iter()
                    .map(|(k, s)| (k.clone(), s.expose().to_string())),
            )
            .collect();
        all.sort();
        all
    }
}

impl process::Host for HostState {
    fn run(
        &mut self,
        command: process::Command,
    ) -> Result<process::CommandOutput, process::CommandError> {
        capabilities::run_command(&self.cfg, command, self.deadline)
    }
}

impl http::Host for HostState {
    fn send(&mut self, request: http::Request) -> Result<http::Response, http::HttpError> {
        self.http.send(&self.cfg, request, self.deadline)
    }
}
