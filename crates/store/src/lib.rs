//! The store: routing policies, the decision log, feedback, MIRT checkpoints and training data,
//! on SQLite (the embedded default, WAL) or PostgreSQL (shared by several proxy instances).
//!
//! [`Store`] is an enum over the two pools. Every query is written once: the [`on_pool!`] macro
//! expands the same body for each backend, and all SQL uses `$n` placeholders (which SQLite
//! accepts too) with bound parameters only. The two migration sets (`migrations/sqlite`,
//! `migrations/postgres`) hold the same tables with each dialect's types (JSON: TEXT vs JSONB;
//! time: RFC 3339 TEXT vs TIMESTAMPTZ); sqlx's `Json<T>` and `DateTime<Utc>` read and write both.
//!
//! [`DecisionLog`] is the request path's way in: it never waits on the database.

mod decision;
mod log;
mod spool;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::types::Json;

pub use decision::{
    prompt_hash, prompt_preview, Attempt, CandidateScore, DecisionDetails, DecisionQuery,
    DecisionRecord, ExcludedModel, StoredFeatures,
};
pub use dualrouter_core::policy::{Policy, PolicyProblem, PolicySpec};
pub use log::{DecisionLog, DecisionLogError, DecisionLogMetrics, FlushError};
pub use responses::StoredResponse;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

pub use dualrouter_core::config::{redact_url, DEFAULT_DATABASE_URL};

/// The most rows `GET /api/decisions` returns at once.
pub const MAX_DECISIONS_PAGE: u32 = 1000;

/// Rows per multi-row INSERT of decisions: a batch is cut into chunks of these sizes, largest
/// first, so that every batch uses one of four statements, which each connection prepares once
/// and keeps (27 columns each: 64 rows stay well under both backends' parameter limits).
const INSERT_CHUNK_SIZES: [usize; 4] = [64, 16, 4, 1];

/// `records` cut into chunks of [`INSERT_CHUNK_SIZES`], largest first, each with the index of
/// its size.
fn insert_chunks<T>(mut records: &[T]) -> impl Iterator<Item = (usize, &[T])> {
    std::iter::from_fn(move || {
        let (i, size) = INSERT_CHUNK_SIZES
            .into_iter()
            .enumerate()
            .find(|&(_, size)| size <= records.len())?;
        let (chunk, rest) = records.split_at(size);
        records = rest;
        Some((i, chunk))
    })
}

/// The PostgreSQL channel that carries "the policies changed" between instances.
pub const POLICY_CHANNEL: &str = "dualrouter_policies";

/// The store layer's one error type.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database URL scheme in '{0}': use sqlite://FILE or postgres://USER@HOST/DB"
    )]
    UnsupportedUrl(String),
    #[error("a policy for {domain}/{action} already exists")]
    DuplicatePolicy { domain: String, action: String },
    #[error("policy {0} not found")]
    PolicyNotFound(i64),
    #[error("a key named '{0}' already exists")]
    DuplicateKey(String),
    #[error("key {0} not found")]
    KeyNotFound(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// True when the database could not be reached (as opposed to refusing a statement).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Db(
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::WorkerCrashed
            )
        )
    }
}

/// A connection pool to the one database this instance uses.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same body against whichever pool the store holds; `$db` names the backend's
/// `sqlx::Database` type inside the body.
macro_rules! on_pool {
    ($store:expr, $pool:ident, $db:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => {
                #[allow(dead_code)]
                type $db = sqlx::Sqlite;
                $body
            }
            Store::Postgres($pool) => {
                #[allow(dead_code)]
                type $db = sqlx::Postgres;
                $body
            }
        }
    };
}

// After the macro: they use `on_pool!`.
mod catalog;
mod keyring;
mod keys;
mod responses;
mod retention;
mod stats;
pub use catalog::{CandidateModelRow, ExecutorService};
pub use keyring::{Charge, Gate, KeyPolicy, Keyring, Lookup, Refusal, Reservation};
pub use keys::{
    hash_secret, to_nano, to_usd, BudgetCount, BudgetPeriod, KeyBudget, KeySpec, KeyStatus,
    RateCount, RateLimit, Settlement, SpendBy, SpendRow, VirtualKey, KEY_CHANNEL,
};
pub use stats::{ModelStats, Stats};

const POLICY_COLUMNS: &str =
    "id, domain, action, description, examples, models, priority, budget_usd, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct PolicyRow {
    id: i64,
    domain: String,
    action: String,
    description: String,
    examples: Json<Vec<String>>,
    models: Json<Vec<String>>,
    priority: i32,
    budget_usd: Option<f64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<PolicyRow> for Policy {
    fn from(r: PolicyRow) -> Self {
        Policy {
            id: r.id,
            domain: r.domain,
            action: r.action,
            description: r.description,
            examples: r.examples.0,
            models: r.models.0,
            priority: r.priority,
            budget_usd: r.budget_usd,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

const DECISION_COLUMNS: &str = "decision_id, created_at, prompt_hash, prompt_preview, \
    requested_model, domain, action, route_source, route_confidence, candidates, selected_model, \
    selected_score, provider, status, http_status, error_kind, input_tokens, output_tokens, \
    cost_usd, latencies_ms, total_latency_ms, feedback_score, details, features, \
    cache_read_tokens, cache_write_tokens, key_id, explore";

/// How many columns [`DECISION_COLUMNS`] names: the values each row binds.
const DECISION_COLUMN_COUNT: usize = 28;

/// The `INSERT` of `INSERT_CHUNK_SIZES[size]` decision rows in PostgreSQL's (`$n`) or SQLite's
/// (`?`) placeholders, written once per process.
fn insert_decisions_sql(postgres: bool, size: usize) -> &'static str {
    static WRITTEN: [[std::sync::OnceLock<String>; INSERT_CHUNK_SIZES.len()]; 2] =
        [const { [const { std::sync::OnceLock::new() }; INSERT_CHUNK_SIZES.len()] }; 2];
    WRITTEN[usize::from(postgres)][size].get_or_init(|| {
        let mut sql = format!("INSERT INTO routing_decisions ({DECISION_COLUMNS}) VALUES ");
        for row in 0..INSERT_CHUNK_SIZES[size] {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for col in 0..DECISION_COLUMN_COUNT {
                if col > 0 {
                    sql.push_str(", ");
                }
                if postgres {
                    sql.push_str(&format!("${}", row * DECISION_COLUMN_COUNT + col + 1));
                } else {
                    sql.push('?');
                }
            }
            sql.push(')');
        }
        sql.push_str(" ON CONFLICT (decision_id) DO NOTHING");
        sql
    })
}

/// The columns read back, with the latest feedback (which may arrive before or after the
/// decision row) taking precedence over the logged score.
const DECISION_SELECT: &str = "SELECT d.decision_id, d.created_at, d.prompt_hash, \
    d.prompt_preview, d.requested_model, d.domain, d.action, d.route_source, d.route_confidence, \
    d.candidates, d.selected_model, d.selected_score, d.provider, d.status, d.http_status, \
    d.error_kind, d.input_tokens, d.output_tokens, d.cost_usd, d.latencies_ms, \
    d.total_latency_ms, COALESCE((SELECT f.score FROM feedback f \
      WHERE f.decision_id = d.decision_id ORDER BY f.created_at DESC, f.id DESC LIMIT 1), \
      d.feedback_score) AS feedback_score, d.details, d.features, \
    d.cache_read_tokens, d.cache_write_tokens, d.key_id, d.explore \
    FROM routing_decisions d";

#[derive(sqlx::FromRow)]
struct DecisionRow {
    decision_id: String,
    created_at: DateTime<Utc>,
    prompt_hash: String,
    prompt_preview: Option<String>,
    requested_model: Option<String>,
    domain: Option<String>,
    action: Option<String>,
    route_source: Option<String>,
    route_confidence: Option<f64>,
    candidates: Json<Vec<CandidateScore>>,
    selected_model: Option<String>,
    selected_score: Option<f64>,
    provider: Option<String>,
    status: String,
    http_status: Option<i32>,
    error_kind: Option<String>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    cost_usd: Option<f64>,
    latencies_ms: Json<std::collections::BTreeMap<String, f64>>,
    total_latency_ms: Option<f64>,
    feedback_score: Option<f64>,
    details: Json<DecisionDetails>,
    features: Option<Json<StoredFeatures>>,
    cache_read_tokens: Option<i64>,
    cache_write_tokens: Option<i64>,
    key_id: Option<String>,
    explore: bool,
}

impl From<DecisionRow> for DecisionRecord {
    fn from(r: DecisionRow) -> Self {
        DecisionRecord {
            decision_id: r.decision_id,
            created_at: r.created_at,
            prompt_hash: r.prompt_hash,
            prompt_preview: r.prompt_preview,
            requested_model: r.requested_model,
            domain: r.domain,
            action: r.action,
            route_source: r.route_source,
            route_confidence: r.route_confidence,
            candidates: r.candidates.0,
            selected_model: r.selected_model,
            selected_score: r.selected_score,
            provider: r.provider,
            status: r.status,
            http_status: r.http_status.and_then(|s| u16::try_from(s).ok()),
            error_kind: r.error_kind,
            input_tokens: r.input_tokens.and_then(|v| u64::try_from(v).ok()),
            output_tokens: r.output_tokens.and_then(|v| u64::try_from(v).ok()),
            cost_usd: r.cost_usd,
            latencies_ms: r.latencies_ms.0,
            total_latency_ms: r.total_latency_ms,
            feedback_score: r.feedback_score,
            details: r.details.0,
            features: r.features.map(|f| f.0),
            cache_read_tokens: r.cache_read_tokens.and_then(|v| u64::try_from(v).ok()),
            cache_write_tokens: r.cache_write_tokens.and_then(|v| u64::try_from(v).ok()),
            key_id: r.key_id,
            explore: r.explore,
        }
    }
}

fn to_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// Maps a unique-constraint violation on `routing_policies` to [`StoreError::DuplicatePolicy`].
fn policy_conflict(e: sqlx::Error, spec: &PolicySpec) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::DuplicatePolicy {
            domain: spec.domain.clone(),
            action: spec.action.clone(),
        },
        _ => StoreError::Db(e),
    }
}

impl Store {
    /// Connects (SQLite: creating the file if missing, in WAL mode). Does not migrate.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let mut opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            if !in_memory {
                // The file is created if missing, and so is its folder.
                if let Some(folder) = opts.get_filename().parent() {
                    if !folder.as_os_str().is_empty() {
                        std::fs::create_dir_all(folder).map_err(sqlx::Error::Io)?;
                    }
                }
                opts = opts
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
            }
            let pool = SqlitePoolOptions::new()
                // An in-memory database lives in one connection.
                .max_connections(if in_memory { 1 } else { 4 })
                .min_connections(if in_memory { 1 } else { 0 })
                .idle_timeout(if in_memory {
                    None
                } else {
                    Some(Duration::from_secs(600))
                })
                .max_lifetime(if in_memory {
                    None
                } else {
                    Some(Duration::from_secs(3600))
                })
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(opts)
                .await?;
            Ok(Store::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(8)
                // Fail fast when the server is down: the decision log spools instead of waiting.
                .acquire_timeout(Duration::from_secs(2))
                .idle_timeout(Duration::from_secs(600))
                .connect_lazy(url)?;
            // Surface a wrong URL or a down server at start-up rather than on the first request.
            pool.acquire().await?;
            Ok(Store::Postgres(pool))
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }

    /// Connects and applies the migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            Store::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection (waits for checked-out ones to come back).
    pub async fn close(&self) {
        on_pool!(self, pool, Db => pool.close().await)
    }

    /// One round trip (`SELECT 1`): is the database answering?
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool, Db => {
            sqlx::query::<Db>("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    // ---- policies ----

    /// Every policy, highest priority first.
    pub async fn list_policies(&self) -> Result<Vec<Policy>, StoreError> {
        let sql = format!(
            "SELECT {POLICY_COLUMNS} FROM routing_policies ORDER BY priority DESC, domain, action"
        );
        let rows: Vec<PolicyRow> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, PolicyRow>(&sql).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(Policy::from).collect())
    }

    pub async fn get_policy(&self, id: i64) -> Result<Policy, StoreError> {
        let sql = format!("SELECT {POLICY_COLUMNS} FROM routing_policies WHERE id = $1");
        let row: Option<PolicyRow> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, PolicyRow>(&sql).bind(id).fetch_optional(pool).await?
        });
        row.map(Policy::from).ok_or(StoreError::PolicyNotFound(id))
    }

    /// The policy for a route, if any.
    pub async fn find_policy(
        &self,
        domain: &str,
        action: &str,
    ) -> Result<Option<Policy>, StoreError> {
        let sql = format!(
            "SELECT {POLICY_COLUMNS} FROM routing_policies WHERE domain = $1 AND action = $2"
        );
        let row: Option<PolicyRow> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, PolicyRow>(&sql)
                .bind(domain)
                .bind(action)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(Policy::from))
    }

    /// Inserts a policy; a second policy for the same domain/action is
    /// [`StoreError::DuplicatePolicy`]. Validate the spec first ([`PolicySpec::problems`]).
    pub async fn create_policy(&self, spec: &PolicySpec) -> Result<Policy, StoreError> {
        let now = Utc::now();
        let sql = format!(
            "INSERT INTO routing_policies \
             (domain, action, description, examples, models, priority, budget_usd, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING {POLICY_COLUMNS}"
        );
        let row: PolicyRow = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, PolicyRow>(&sql)
                .bind(&spec.domain)
                .bind(&spec.action)
                .bind(&spec.description)
                .bind(Json(&spec.examples))
                .bind(Json(&spec.models))
                .bind(spec.priority)
                .bind(spec.budget_usd)
                .bind(now)
                .fetch_one(pool)
                .await
                .map_err(|e| policy_conflict(e, spec))?
        });
        self.notify_policies_changed().await;
        Ok(row.into())
    }

    /// Replaces a policy's fields (its id and creation time stay).
    pub async fn update_policy(&self, id: i64, spec: &PolicySpec) -> Result<Policy, StoreError> {
        let now = Utc::now();
        let sql = format!(
            "UPDATE routing_policies SET domain = $1, action = $2, description = $3, \
             examples = $4, models = $5, priority = $6, budget_usd = $7, updated_at = $8 \
             WHERE id = $9 RETURNING {POLICY_COLUMNS}"
        );
        let row: Option<PolicyRow> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, PolicyRow>(&sql)
                .bind(&spec.domain)
                .bind(&spec.action)
                .bind(&spec.description)
                .bind(Json(&spec.examples))
                .bind(Json(&spec.models))
                .bind(spec.priority)
                .bind(spec.budget_usd)
                .bind(now)
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(|e| policy_conflict(e, spec))?
        });
        let policy = row
            .map(Policy::from)
            .ok_or(StoreError::PolicyNotFound(id))?;
        self.notify_policies_changed().await;
        Ok(policy)
    }

    pub async fn delete_policy(&self, id: i64) -> Result<(), StoreError> {
        let sql = "DELETE FROM routing_policies WHERE id = $1";
        let affected = on_pool!(self, pool, Db => {
            sqlx::query::<Db>(sql).bind(id).execute(pool).await?.rows_affected()
        });
        if affected == 0 {
            return Err(StoreError::PolicyNotFound(id));
        }
        self.notify_policies_changed().await;
        Ok(())
    }

    /// Tells every instance sharing this PostgreSQL database that the policies changed
    /// (`NOTIFY dualrouter_policies`); nothing to do on SQLite (one instance). A failed notify
    /// is logged: the instances' periodic resync catches up.
    pub async fn notify_policies_changed(&self) {
        if let Store::Postgres(pool) = self {
            if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
                .bind(POLICY_CHANNEL)
                .execute(pool)
                .await
            {
                tracing::warn!("could not notify other instances of a policy change: {e}");
            }
        }
    }

    /// A listener for policy changes made by any instance (PostgreSQL only).
    pub async fn listen_policies(&self) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(pool) => {
                let mut l = sqlx::postgres::PgListener::connect_with(pool).await?;
                l.listen(POLICY_CHANNEL).await?;
                Ok(Some(l))
            }
        }
    }

    /// Upserts the config file's policies by (domain, action) in one transaction; policies
    /// not in the config are left alone. Returns how many were written.
    pub async fn seed_policies(&self, specs: &[PolicySpec]) -> Result<usize, StoreError> {
        let now = Utc::now();
        let sql = "INSERT INTO routing_policies \
             (domain, action, description, examples, models, priority, budget_usd, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (domain, action) DO UPDATE SET description = excluded.description, \
             examples = excluded.examples, models = excluded.models, priority = excluded.priority, \
             budget_usd = excluded.budget_usd, updated_at = excluded.updated_at";
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            for spec in specs {
                sqlx::query::<Db>(sql)
                    .bind(&spec.domain)
                    .bind(&spec.action)
                    .bind(&spec.description)
                    .bind(Json(&spec.examples))
                    .bind(Json(&spec.models))
                    .bind(spec.priority)
                    .bind(spec.budget_usd)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        self.notify_policies_changed().await;
        Ok(specs.len())
    }

    // ---- decisions ----

    /// Inserts decision records in one transaction; a record whose id is already stored is
    /// skipped (`ON CONFLICT DO NOTHING`). Returns the number of new rows.
    pub async fn insert_decisions(&self, records: &[DecisionRecord]) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let inserted = on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            let mut inserted = 0u64;
            for (size, chunk) in insert_chunks(records) {
                let sql = insert_decisions_sql(<Db as sqlx::Database>::NAME == "PostgreSQL", size);
                let mut q = sqlx::query::<Db>(sql);
                for r in chunk {
                    q = q
                        .bind(&r.decision_id)
                        .bind(r.created_at)
                        .bind(&r.prompt_hash)
                        .bind(&r.prompt_preview)
                        .bind(&r.requested_model)
                        .bind(&r.domain)
                        .bind(&r.action)
                        .bind(&r.route_source)
                        .bind(r.route_confidence)
                        .bind(Json(&r.candidates))
                        .bind(&r.selected_model)
                        .bind(r.selected_score)
                        .bind(&r.provider)
                        .bind(&r.status)
                        .bind(r.http_status.map(i32::from))
                        .bind(&r.error_kind)
                        .bind(to_i64(r.input_tokens))
                        .bind(to_i64(r.output_tokens))
                        .bind(r.cost_usd)
                        .bind(Json(&r.latencies_ms))
                        .bind(r.total_latency_ms)
                        .bind(r.feedback_score)
                        .bind(Json(&r.details))
                        .bind(r.features.as_ref().map(Json))
                        .bind(to_i64(r.cache_read_tokens))
                        .bind(to_i64(r.cache_write_tokens))
                        .bind(&r.key_id)
                        .bind(r.explore);
                }
                // Cached by the driver: four statement shapes in all (see
                // `INSERT_CHUNK_SIZES`), their text written once per process. One statement
                // per batch size, as before, was re-parsed every batch and would grow the
                // driver's cache (up to 100 per connection, the larger ones megabytes each) if
                // it were kept.
                inserted += q
                    .persistent(true)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
            inserted
        });
        Ok(inserted)
    }

    /// Decisions newest first, filtered by domain and selected model; `limit` is clamped to
    /// 1..=[`MAX_DECISIONS_PAGE`].
    pub async fn list_decisions(
        &self,
        q: &DecisionQuery,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let limit = i64::from(q.limit.clamp(1, MAX_DECISIONS_PAGE));
        let sql = format!(
            "{DECISION_SELECT} WHERE ($1 IS NULL OR d.domain = $1) \
             AND ($2 IS NULL OR d.selected_model = $2) \
             ORDER BY d.created_at DESC, d.decision_id DESC LIMIT $3"
        );
        let rows: Vec<DecisionRow> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, DecisionRow>(&sql)
                .bind(q.domain.as_deref())
                .bind(q.model.as_deref())
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(DecisionRecord::from).collect())
    }

    pub async fn get_decision(&self, id: &str) -> Result<Option<DecisionRecord>, StoreError> {
        let sql = format!("{DECISION_SELECT} WHERE d.decision_id = $1");
        let row: Option<DecisionRow> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, DecisionRow>(&sql).bind(id).fetch_optional(pool).await?
        });
        Ok(row.map(DecisionRecord::from))
    }

    /// `(rows, distinct decision ids)` in `routing_decisions`; equal unless the key is broken.
    pub async fn count_decisions(&self) -> Result<(i64, i64), StoreError> {
        let sql = "SELECT COUNT(*), COUNT(DISTINCT decision_id) FROM routing_decisions";
        let counts: (i64, i64) = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, (i64, i64)>(sql).fetch_one(pool).await?
        });
        Ok(counts)
    }

    // ---- feedback ----

    /// Records an outcome score in [0, 1] for a decision (which may not be written yet).
    pub async fn record_feedback(
        &self,
        decision_id: &str,
        score: f64,
        comment: Option<&str>,
    ) -> Result<(), StoreError> {
        self.record_feedback_at(decision_id, score, comment, Utc::now())
            .await
    }

    /// [`Store::record_feedback`] with the time it was given (feedback imported from elsewhere).
    pub async fn record_feedback_at(
        &self,
        decision_id: &str,
        score: f64,
        comment: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            sqlx::query::<Db>(
                "INSERT INTO feedback (decision_id, score, comment, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(decision_id)
            .bind(score)
            .bind(comment)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query::<Db>("UPDATE routing_decisions SET feedback_score = $1 WHERE decision_id = $2")
                .bind(score)
                .bind(decision_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}

/// A registered MIRT checkpoint (a `mirt_checkpoints` row).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct CheckpointRow {
    pub version: i64,
    pub path: String,
    pub sha256: Option<String>,
    pub dim: i32,
    #[sqlx(json)]
    pub models: Vec<String>,
    #[sqlx(json)]
    pub metrics: serde_json::Value,
    pub train_rows: i64,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// A logged outcome to train on: the prompt's features and the scores its attempts earned.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub decision_id: String,
    pub features: StoredFeatures,
    /// (model, score): 0 for each attempt that failed, the feedback for the model that served.
    pub scores: Vec<(String, f32)>,
}

#[derive(sqlx::FromRow)]
struct OutcomeRow {
    decision_id: String,
    selected_model: Option<String>,
    details: Json<DecisionDetails>,
    features: Option<Json<StoredFeatures>>,
    feedback_score: Option<f64>,
}

const CHECKPOINT_COLUMNS: &str =
    "version, path, sha256, dim, models, metrics, train_rows, active, created_at";

impl Store {
    // ---- MIRT checkpoints and outcomes ----

    /// Registers a checkpoint file (not active); returns its row with the next version.
    pub async fn register_checkpoint(
        &self,
        path: &str,
        sha256: &str,
        dim: i32,
        models: &[String],
        metrics: &serde_json::Value,
        train_rows: i64,
    ) -> Result<CheckpointRow, StoreError> {
        let now = Utc::now();
        let sql = format!(
            "INSERT INTO mirt_checkpoints ({CHECKPOINT_COLUMNS}) \
             SELECT COALESCE(MAX(version), 0) + 1, $1, $2, $3, $4, $5, $6, FALSE, $7 FROM mirt_checkpoints \
             RETURNING {CHECKPOINT_COLUMNS}"
        );
        let row: CheckpointRow = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, CheckpointRow>(&sql)
                .bind(path)
                .bind(sha256)
                .bind(dim)
                .bind(Json(models))
                .bind(Json(metrics))
                .bind(train_rows)
                .bind(now)
                .fetch_one(pool)
                .await?
        });
        Ok(row)
    }

    /// Every checkpoint, newest first.
    pub async fn list_checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError> {
        let sql =
            format!("SELECT {CHECKPOINT_COLUMNS} FROM mirt_checkpoints ORDER BY version DESC");
        let rows = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, CheckpointRow>(&sql).fetch_all(pool).await?
        });
        Ok(rows)
    }

    pub async fn get_checkpoint(&self, version: i64) -> Result<Option<CheckpointRow>, StoreError> {
        let sql = format!("SELECT {CHECKPOINT_COLUMNS} FROM mirt_checkpoints WHERE version = $1");
        let row = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, CheckpointRow>(&sql).bind(version).fetch_optional(pool).await?
        });
        Ok(row)
    }

    /// Marks `version` the active checkpoint (and no other).
    pub async fn set_active_checkpoint(&self, version: i64) -> Result<(), StoreError> {
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            sqlx::query::<Db>("UPDATE mirt_checkpoints SET active = (version = $1)")
                .bind(version)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Outcomes of routed decisions logged with features from encoder `encoder`, oldest first.
    pub async fn outcomes(&self, encoder: &str) -> Result<Vec<Outcome>, StoreError> {
        let sql = "SELECT d.decision_id, d.selected_model, d.details, d.features, \
            (SELECT f.score FROM feedback f WHERE f.decision_id = d.decision_id \
              ORDER BY f.created_at DESC, f.id DESC LIMIT 1) AS feedback_score \
            FROM routing_decisions d WHERE d.features IS NOT NULL \
            ORDER BY d.created_at, d.decision_id";
        let rows: Vec<OutcomeRow> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, OutcomeRow>(sql).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let features = r.features?.0;
                if features.encoder != encoder {
                    return None;
                }
                let mut scores: Vec<(String, f32)> = r
                    .details
                    .0
                    .attempts
                    .iter()
                    .filter(|a| a.failed())
                    .map(|a| (a.model.clone(), 0.0))
                    .collect();
                if let (Some(m), Some(s)) = (r.selected_model, r.feedback_score) {
                    scores.retain(|(x, _)| *x != m);
                    scores.push((m, s as f32));
                }
                (!scores.is_empty()).then_some(Outcome {
                    decision_id: r.decision_id,
                    features,
                    scores,
                })
            })
            .collect())
    }
}

/// What `serve` does at start: connect to `database`, migrate, and seed the config's policies
/// (upsert by domain/action; the store stays the source of truth for the rest).
pub async fn open_and_seed(database: &str, policies: &[PolicySpec]) -> Result<Store, StoreError> {
    let store = Store::open(database).await?;
    let seeded = store.seed_policies(policies).await?;
    tracing::info!(
        database = %redact_url(database),
        backend = store.backend(),
        policies_seeded = seeded,
        "store ready"
    );
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::{insert_chunks, insert_decisions_sql, DECISION_COLUMN_COUNT, INSERT_CHUNK_SIZES};

    #[test]
    fn decision_batches_are_cut_into_the_four_statement_sizes() {
        for n in [0usize, 1, 3, 4, 5, 63, 64, 65, 100, 500, 1001] {
            let rows: Vec<usize> = (0..n).collect();
            let sized: Vec<(usize, &[usize])> = insert_chunks(&rows).collect();
            assert!(sized.iter().all(|(i, c)| INSERT_CHUNK_SIZES[*i] == c.len()));
            let chunks: Vec<&[usize]> = sized.into_iter().map(|(_, c)| c).collect();
            // Every row once, in order; largest chunks first.
            assert_eq!(chunks.concat(), rows, "n = {n}");
            assert!(chunks.windows(2).all(|w| w[0].len() >= w[1].len()));
        }
        assert_eq!(insert_chunks(&[0u8; 100]).count(), 4, "64 + 16 + 16 + 4");
    }

    #[test]
    fn insert_statements_have_a_placeholder_per_value() {
        for (i, rows) in INSERT_CHUNK_SIZES.into_iter().enumerate() {
            let values = rows * DECISION_COLUMN_COUNT;
            let sqlite = insert_decisions_sql(false, i);
            assert_eq!(sqlite.matches('?').count(), values);
            let pg = insert_decisions_sql(true, i);
            assert!(
                pg.contains(&format!("${values})")) && !pg.contains(&format!("${}", values + 1))
            );
            assert_eq!(pg.matches('$').count(), values);
            for sql in [sqlite, pg] {
                assert_eq!(
                    sql.matches('(').count(),
                    rows + 2,
                    "the column list, a row each, the conflict target"
                );
                assert!(sql.ends_with(" ON CONFLICT (decision_id) DO NOTHING"));
                // Written once: the same text each time.
                assert!(std::ptr::eq(sql, insert_decisions_sql(sql == pg, i)));
            }
        }
        let columns = super::DECISION_COLUMNS.split(',').count();
        assert_eq!(columns, DECISION_COLUMN_COUNT);
    }
}
