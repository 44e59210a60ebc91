//! The decision-log writer: the request path enqueues, one task writes.
//!
//! - [`DecisionLog::record`] never waits: a bounded channel's `try_send`. When the queue is full
//!   (or the writer has stopped) the record goes to the local spool file instead.
//! - One writer task gathers a batch (up to `batch_rows`, or whatever arrived within `batch_ms`)
//!   and inserts it in one transaction with `ON CONFLICT (decision_id) DO NOTHING`.
//! - A failed batch is kept and retried with backoff ([`RETRY_DELAYS`]); if the database is
//!   still failing (or unreachable from the start), the batch goes to the spool and the writer is *degraded*: it spools every
//!   batch (fsync'd) and probes the database by replaying the spool, with backoff up to
//!   [`MAX_REPLAY_BACKOFF`]. A replay that gets every line in switches it back.
//! - At start the spool left by an earlier process (a crash, or a database outage at shutdown)
//!   is replayed first. Replays never double a row: the decision id is the key.
//! - [`DecisionLog::flush`] writes what is queued and replays the spool; [`DecisionLog::shutdown`]
//!   does the same, then stops the writer (records still in memory go to the spool).
//!
//! Metrics (registered into the registry given to [`DecisionLog::start`]):
//! `dualrouter_decisions_{queued,written,spooled,dropped}_total` and
//! `dualrouter_decisions_spool_bytes`. `dropped` stays 0 unless the spool's cap is hit (or a
//! record is one the database refuses on its own: it is dropped so it cannot block the rest).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntGauge, Registry};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::decision::{prompt_preview, DecisionRecord};
use super::spool::Spool;
use super::Store;
use dualrouter_core::config::validated::DecisionLogConfig;

/// Waits between attempts at a failed batch before it is spooled.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
];
/// First wait before probing a database that failed.
const MIN_REPLAY_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between probes of a database that is down.
const MAX_REPLAY_BACKOFF: Duration = Duration::from_secs(5);
/// A statement that takes longer is treated as failed (a hung connection must not stall us).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);

/// The decision log's counters. All of them, in one place.
#[derive(Debug, Clone)]
pub struct DecisionLogMetrics {
    /// Records accepted into the in-memory queue.
    pub queued: IntCounter,
    /// Rows inserted into `routing_decisions` (a replayed duplicate is not counted).
    pub written: IntCounter,
    /// Records appended to the spool file.
    pub spooled: IntCounter,
    /// Records lost: the spool was full or unwritable, a spool line was unreadable (torn by a
    /// crash), or the database refused the record itself (e.g. a NUL byte in PostgreSQL text).
    pub dropped: IntCounter,
    /// Bytes waiting in the spool.
    pub spool_bytes: IntGauge,
}

impl DecisionLogMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let spool_bytes = IntGauge::new(
            "dualrouter_decisions_spool_bytes",
            "Bytes of decision records waiting in the local spool.",
        )?;
        registry.register(Box::new(spool_bytes.clone()))?;
        Ok(Self {
            queued: counter(
                "dualrouter_decisions_queued_total",
                "Decision records accepted into the writer's queue.",
            )?,
            written: counter(
                "dualrouter_decisions_written_total",
                "Decision rows inserted into the store.",
            )?,
            spooled: counter(
                "dualrouter_decisions_spooled_total",
                "Decision records written to the local spool (queue full or database down).",
            )?,
            dropped: counter(
                "dualrouter_decisions_dropped_total",
                "Decision records lost: spool full or unwritable, unreadable spool line, or refused by the database.",
            )?,
            spool_bytes,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecisionLogError {
    #[error("cannot open the decision-log spool in {dir}: {source}")]
    Spool {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot register decision-log metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("the decision log must be started inside a tokio runtime")]
    NoRuntime,
}

/// Why [`DecisionLog::flush`] could not get everything into the database.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FlushError {
    /// The database is not accepting writes; records are safe in the spool.
    #[error(
        "the database is unavailable; {spool_bytes} bytes of decision records wait in the spool"
    )]
    Degraded { spool_bytes: u64 },
    /// The writer task is not running (shut down).
    #[error("the decision-log writer has stopped")]
    Stopped,
}

enum Msg {
    Record(Box<DecisionRecord>),
    Flush(oneshot::Sender<Result<(), FlushError>>),
    Shutdown(oneshot::Sender<Result<(), FlushError>>),
}

struct Inner {
    tx: mpsc::Sender<Msg>,
    poke: Arc<tokio::sync::Notify>,
    spool: Arc<Spool>,
    metrics: DecisionLogMetrics,
    preview_chars: usize,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// The handle the proxy keeps (cheap to clone). See the module docs.
#[derive(Clone)]
pub struct DecisionLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionLog")
            .field("spool_dir", &self.inner.spool.dir())
            .finish_non_exhaustive()
    }
}

impl DecisionLog {
    /// Opens the spool, registers the metrics and spawns the writer on the current tokio
    /// runtime. Records left in the spool by an earlier process are replayed first.
    pub fn start(
        store: Store,
        cfg: &DecisionLogConfig,
        registry: &Registry,
    ) -> Result<DecisionLog, DecisionLogError> {
        let handle =
            tokio::runtime::Handle::try_current().map_err(|_| DecisionLogError::NoRuntime)?;
        Self::start_on(&handle, store, cfg, registry)
    }

    /// [`DecisionLog::start`] on a given runtime (e.g. one owned by the server's background
    /// service).
    pub fn start_on(
        handle: &tokio::runtime::Handle,
        store: Store,
        cfg: &DecisionLogConfig,
        registry: &Registry,
    ) -> Result<DecisionLog, DecisionLogError> {
        let metrics = DecisionLogMetrics::new(registry)?;
        let spool = Arc::new(Spool::open(&cfg.spool_dir, cfg.spool_max_bytes).map_err(
            |source| DecisionLogError::Spool {
                dir: cfg.spool_dir.clone(),
                source,
            },
        )?);
        metrics
            .spool_bytes
            .set(i64::try_from(spool.bytes()).unwrap_or(i64::MAX));
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let poke = Arc::new(tokio::sync::Notify::new());
        let writer = Writer {
            poke: poke.clone(),
            store,
            rx,
            spool: spool.clone(),
            metrics: metrics.clone(),
            batch_rows: cfg.batch_rows.max(1),
            batch_wait: cfg.batch_ms,
            degraded: false,
            backoff: MIN_REPLAY_BACKOFF,
            next_replay: Instant::now(),
        };
        let task = handle.spawn(writer.run());
        Ok(DecisionLog {
            inner: Arc::new(Inner {
                tx,
                poke,
                spool,
                metrics,
                preview_chars: cfg.prompt_preview_chars,
                task: std::sync::Mutex::new(Some(task)),
            }),
        })
    }

    /// Logs a decision. Never waits on the database (nor on anything but, when the queue is
    /// full, one append to the local spool file).
    pub fn record(&self, mut rec: DecisionRecord) {
        rec.prompt_preview = match rec.prompt_preview.take() {
            // PostgreSQL's TEXT cannot hold NUL.
            Some(p) => prompt_preview(&p, self.inner.preview_chars).map(|p| p.replace('\0', "")),
            None => None,
        };
        match self.inner.tx.try_send(Msg::Record(Box::new(rec))) {
            Ok(()) => self.inner.metrics.queued.inc(),
            Err(mpsc::error::TrySendError::Full(Msg::Record(rec)))
            | Err(mpsc::error::TrySendError::Closed(Msg::Record(rec))) => {
                self.inner
                    .spool
                    .append(std::slice::from_ref(&*rec), &self.inner.metrics);
            }
            // Only records are sent with `try_send`.
            Err(_) => {}
        }
    }

    /// The preview the config allows for this prompt (`None` when previews are off). Use it to
    /// fill [`DecisionRecord::prompt_preview`] without copying a large prompt.
    pub fn preview(&self, prompt: &str) -> Option<String> {
        prompt_preview(prompt, self.inner.preview_chars)
    }

    pub fn metrics(&self) -> &DecisionLogMetrics {
        &self.inner.metrics
    }

    /// Bytes of records waiting in the spool.
    pub fn spool_bytes(&self) -> u64 {
        self.inner.spool.bytes()
    }

    /// Writes everything recorded before this call and replays the spool. `Ok` means all of
    /// it is in the database; [`FlushError::Degraded`] means the database is down and the
    /// records are in the spool.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Msg::Flush(tx))
            .await
            .map_err(|_| FlushError::Stopped)?;
        self.inner.poke.notify_one();
        rx.await.map_err(|_| FlushError::Stopped)?
    }

    /// Graceful shutdown: stops taking records into the queue (later ones go to the spool),
    /// writes what is queued, replays the spool if the database is up, fsyncs, and stops the
    /// writer. Waits at most `timeout`; what is not written by then stays in the spool (or, if
    /// the writer is stuck mid-batch, is lost with the process: at most one batch).
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), FlushError> {
        let (tx, rx) = oneshot::channel();
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let result = tokio::time::timeout(timeout, async {
            self.inner
                .tx
                .send(Msg::Shutdown(tx))
                .await
                .map_err(|_| FlushError::Stopped)?;
            self.inner.poke.notify_one();
            let r = rx.await.map_err(|_| FlushError::Stopped)?;
            if let Some(task) = task {
                let _ = task.await;
            }
            r
        })
        .await;
        let _ = self.inner.spool.sync();
        match result {
            Ok(r) => r,
            Err(_) => Err(FlushError::Degraded {
                spool_bytes: self.inner.spool.bytes(),
            }),
        }
    }

    /// The spool directory.
    pub fn spool_dir(&self) -> &Path {
        self.inner.spool.dir()
    }
}

struct Writer {
    store: Store,
    rx: mpsc::Receiver<Msg>,
    spool: Arc<Spool>,
    metrics: DecisionLogMetrics,
    batch_rows: usize,
    batch_wait: Duration,
    /// Flush and shutdown wake the writer through this while it lets a batch fill.
    poke: Arc<tokio::sync::Notify>,
    /// The database failed: batches go to the spool until a replay succeeds.
    degraded: bool,
    backoff: Duration,
    next_replay: Instant,
}

/// A failed write; `unavailable` when the database could not be reached at all.
#[derive(Debug)]
struct InsertError {
    unavailable: bool,
    message: String,
}

impl std::fmt::Display for InsertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A queued message into the batch, or the control message it is.
fn take(msg: Msg, batch: &mut Vec<DecisionRecord>) -> Option<Control> {
    match msg {
        Msg::Record(r) => {
            batch.push(*r);
            None
        }
        Msg::Flush(reply) => Some(Control::Flush(reply)),
        Msg::Shutdown(reply) => Some(Control::Shutdown(reply)),
    }
}

enum Control {
    Flush(oneshot::Sender<Result<(), FlushError>>),
    Shutdown(oneshot::Sender<Result<(), FlushError>>),
    Closed,
}

impl Writer {
    async fn run(mut self) {
        let mut batch: Vec<DecisionRecord> = Vec::with_capacity(self.batch_rows);
        loop {
            let control = self.gather(&mut batch).await;
            self.persist(&mut batch).await;
            if let Err(e) = self.spool.sync() {
                tracing::error!(error = %e, "cannot fsync the decision-log spool");
            }
            match control {
                None => {
                    let due = self.degraded || self.spool.bytes() > 0;
                    if due && Instant::now() >= self.next_replay {
                        self.replay().await;
                    }
                }
                Some(Control::Flush(reply)) => {
                    if self.spool.bytes() > 0 {
                        self.replay().await;
                    }
                    let _ = reply.send(self.outcome());
                }
                Some(Control::Shutdown(reply)) => {
                    let r = self.stop().await;
                    let _ = reply.send(r);
                    return;
                }
                Some(Control::Closed) => {
                    let _ = self.stop().await;
                    return;
                }
            }
        }
    }

    fn outcome(&self) -> Result<(), FlushError> {
        let spool_bytes = self.spool.bytes();
        if self.degraded || spool_bytes > 0 {
            Err(FlushError::Degraded { spool_bytes })
        } else {
            Ok(())
        }
    }

    /// Collects records until the batch is full, `batch_wait` has passed since the first one,
    /// or a control message arrives.
    ///
    /// Only the first record wakes the writer: it then sleeps until the batch is due and takes
    /// what arrived meanwhile from the queue, so senders do not wake it (a futex and a thread
    /// switch) once per request. A flush or shutdown pokes it awake early.
    async fn gather(&mut self, batch: &mut Vec<DecisionRecord>) -> Option<Control> {
        let idle_until = Instant::now() + self.batch_wait;
        match tokio::time::timeout_at(idle_until, self.rx.recv()).await {
            Ok(Some(msg)) => {
                if let Some(control) = take(msg, batch) {
                    return Some(control);
                }
            }
            Ok(None) => return Some(Control::Closed),
            Err(_) => return None,
        }
        let due = Instant::now() + self.batch_wait;
        loop {
            while batch.len() < self.batch_rows {
                match self.rx.try_recv() {
                    Ok(msg) => {
                        if let Some(control) = take(msg, batch) {
                            return Some(control);
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return Some(Control::Closed),
                }
            }
            if batch.len() >= self.batch_rows || Instant::now() >= due {
                return None;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = self.poke.notified() => {}
            }
        }
    }

    /// Writes the batch (healthy) or spools it (degraded); the batch is empty afterwards.
    async fn persist(&mut self, batch: &mut Vec<DecisionRecord>) {
        if batch.is_empty() {
            return;
        }
        if !self.degraded {
            let mut attempt = 0;
            loop {
                match self.insert(batch).await {
                    Ok(()) => {
                        batch.clear();
                        return;
                    }
                    Err(e) => {
                        // An unreachable database is retried through the spool (with
                        // backoff); a refused statement (a deadlock, a serialization
                        // failure) is retried here first.
                        let retry = if e.unavailable {
                            None
                        } else {
                            RETRY_DELAYS.get(attempt)
                        };
                        if retry.is_none() && !e.unavailable {
                            // Refused every time: find the record(s) at fault.
                            match self.insert_each(batch).await {
                                Ok(()) => {
                                    batch.clear();
                                    return;
                                }
                                Err((done, e)) => {
                                    batch.drain(..done);
                                    tracing::warn!(error = %e, rows = batch.len(),
                                        "decision-log batch failed; spooling until the database is back");
                                    self.enter_degraded();
                                    break;
                                }
                            }
                        }
                        let Some(delay) = retry else {
                            tracing::warn!(error = %e, rows = batch.len(),
                                "decision-log batch failed; spooling until the database is back");
                            self.enter_degraded();
                            break;
                        };
                        tracing::debug!(error = %e, attempt, "decision-log batch failed; retrying");
                        attempt += 1;
                        tokio::time::sleep(*delay).await;
                    }
                }
            }
        }
        self.spool_batch(batch).await;
    }

    /// After the database refused a whole batch: inserts its records one at a time, dropping
    /// (logged, counted) each one the database refuses on its own, so one bad record cannot
    /// hold the log up. Stops when the database becomes unreachable, returning how many
    /// records were dealt with.
    async fn insert_each(&self, records: &[DecisionRecord]) -> Result<(), (usize, InsertError)> {
        for (i, r) in records.iter().enumerate() {
            match self.insert(std::slice::from_ref(r)).await {
                Ok(()) => {}
                Err(e) if e.unavailable => return Err((i, e)),
                Err(e) => {
                    tracing::error!(decision_id = %r.decision_id, error = %e,
                        "the database refuses this decision record; dropped");
                    self.metrics.dropped.inc();
                }
            }
        }
        Ok(())
    }

    async fn insert(&self, records: &[DecisionRecord]) -> Result<(), InsertError> {
        match tokio::time::timeout(STATEMENT_TIMEOUT, self.store.insert_decisions(records)).await {
            Ok(Ok(n)) => {
                self.metrics.written.inc_by(n);
                Ok(())
            }
            Ok(Err(e)) => Err(InsertError {
                unavailable: e.is_unavailable(),
                message: e.to_string(),
            }),
            Err(_) => Err(InsertError {
                unavailable: true,
                message: "timed out".into(),
            }),
        }
    }

    async fn spool_batch(&self, batch: &mut Vec<DecisionRecord>) {
        let records = std::mem::take(batch);
        let spool = self.spool.clone();
        let metrics = self.metrics.clone();
        let joined = tokio::task::spawn_blocking(move || {
            spool.append(&records, &metrics);
            spool.sync()
        })
        .await;
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot fsync the decision-log spool"),
            Err(e) => tracing::error!(error = %e, "decision-log spool task failed"),
        }
    }

    fn enter_degraded(&mut self) {
        if !self.degraded {
            self.degraded = true;
            self.backoff = MIN_REPLAY_BACKOFF;
        } else {
            self.backoff = (self.backoff * 2).min(MAX_REPLAY_BACKOFF);
        }
        self.next_replay = Instant::now() + self.backoff;
    }

    /// Replays the spool into the database: the pending replay file, then the active file
    /// (rotated). Stops at the first failure, keeping the file for the next attempt.
    async fn replay(&mut self) {
        let mut replayed_any = false;
        // At most two files: a replay file left over, then the active one rotated.
        for _ in 0..2 {
            let path = match self.spool.take_for_replay() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "cannot rotate the decision-log spool");
                    self.enter_degraded();
                    return;
                }
            };
            match self.replay_file(&path).await {
                Ok((rows, bad)) => {
                    if let Err(e) = self.spool.finish_replay(&self.metrics) {
                        tracing::error!(error = %e, "cannot remove the replayed spool file");
                        self.enter_degraded();
                        return;
                    }
                    if bad > 0 {
                        tracing::error!(lines = bad, "unreadable decision-log spool lines skipped");
                        self.metrics.dropped.inc_by(bad);
                    }
                    tracing::info!(records = rows, "decision-log spool replayed");
                    replayed_any = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "decision-log spool replay failed; will retry");
                    self.enter_degraded();
                    return;
                }
            }
        }
        if self.degraded && !replayed_any {
            // Nothing was spooled, so nothing proved the database is back: ask it.
            if let Err(e) = self.store.ping().await {
                tracing::debug!(error = %e, "database still unavailable");
                self.enter_degraded();
                return;
            }
        }
        if self.degraded {
            tracing::info!("database is back; decision log writing directly again");
        }
        self.degraded = false;
        self.backoff = MIN_REPLAY_BACKOFF;
        self.next_replay = Instant::now() + self.batch_wait;
    }

    /// Inserts every line of a spool file, `batch_rows` per transaction. Returns the records
    /// read and the number of unreadable lines (a torn last line after a crash).
    async fn replay_file(&self, path: &Path) -> Result<(u64, u64), InsertError> {
        let io_err = |e: std::io::Error| InsertError {
            unavailable: false,
            message: format!("cannot read {}: {e}", path.display()),
        };
        let file = tokio::fs::File::open(path).await.map_err(io_err)?;
        let mut lines = tokio::io::BufReader::new(file).lines();
        let mut chunk = Vec::with_capacity(self.batch_rows);
        let (mut rows, mut bad) = (0u64, 0u64);
        loop {
            let line = lines.next_line().await.map_err(io_err)?;
            let done = line.is_none();
            if let Some(line) = line {
                if !line.trim().is_empty() {
                    match serde_json::from_str::<DecisionRecord>(&line) {
                        Ok(r) => chunk.push(r),
                        Err(_) => bad += 1,
                    }
                }
            }
            if chunk.len() >= self.batch_rows || (done && !chunk.is_empty()) {
                match self.insert(&chunk).await {
                    Ok(()) => {}
                    Err(e) if e.unavailable => return Err(e),
                    Err(_) => self.insert_each(&chunk).await.map_err(|(_, e)| e)?,
                }
                rows += chunk.len() as u64;
                chunk.clear();
            }
            if done {
                return Ok((rows, bad));
            }
        }
    }

    /// Drains the queue, writes (or spools) it, replays the spool once if the database is up.
    async fn stop(&mut self) -> Result<(), FlushError> {
        self.rx.close();
        let mut pending = Vec::new();
        let mut waiting = Vec::new();
        while let Some(msg) = self.rx.recv().await {
            match msg {
                Msg::Record(r) => pending.push(*r),
                Msg::Flush(reply) | Msg::Shutdown(reply) => waiting.push(reply),
            }
        }
        for chunk in pending.chunks(self.batch_rows) {
            let mut batch = chunk.to_vec();
            self.persist(&mut batch).await;
        }
        if !self.degraded && self.spool.bytes() > 0 {
            self.replay().await;
        }
        if let Err(e) = self.spool.sync() {
            tracing::error!(error = %e, "cannot fsync the decision-log spool");
        }
        let outcome = self.outcome();
        for reply in waiting {
            let _ = reply.send(outcome.clone());
        }
        outcome
    }
}
