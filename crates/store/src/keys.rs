//! Virtual keys and the counters that hold them to their limits, on either database.
//!
//! - `virtual_keys`: one row per key. The secret is never stored: only its SHA-256 (hex) and
//!   a short prefix for display.
//! - `key_budgets`: the budget counter per key and period, in integer nano-USD. An instance
//!   reserves a lease (a slice it hands out to requests from memory) with one conditional
//!   `UPDATE … WHERE spent + reserved + $n <= budget RETURNING …` ([`Store::reserve_budget`]),
//!   and each request settles its part with its real cost ([`Store::settle`]; an unused lease
//!   goes back the same way). On PostgreSQL every instance shares the same row, so the check
//!   and the reservation are one atomic step for all of them.
//! - `key_rate`: requests and tokens per key per minute, counted in advance by one
//!   conditional upsert per lease of several requests ([`Store::lease_rate`]).
//! - `key_spend`: spend and tokens per key, team, model and hour (`GET /api/spend`).

use std::io::Read;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;

use super::{Store, StoreError};

/// The PostgreSQL channel that carries "a key changed" between instances.
pub const KEY_CHANNEL: &str = "dualrouter_keys";

/// Nano-USD per USD: budgets and spend are counted in integers, so sums are exact.
pub(crate) const NANO_PER_USD: f64 = 1e9;

/// USD → nano-USD, rounded up (a reservation or charge never rounds in the key's favour).
pub fn to_nano(usd: f64) -> i64 {
    if !usd.is_finite() || usd <= 0.0 {
        return 0;
    }
    let n = (usd * NANO_PER_USD).ceil();
    if n >= i64::MAX as f64 {
        i64::MAX
    } else {
        n as i64
    }
}

/// nano-USD → USD.
pub fn to_usd(nano: i64) -> f64 {
    nano as f64 / NANO_PER_USD
}

/// How long a budget lasts before it starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    /// The UTC day.
    Day,
    /// The UTC calendar month.
    Month,
    /// Never resets.
    Total,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
            Self::Total => "total",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Self::Day),
            "month" => Some(Self::Month),
            "total" => Some(Self::Total),
            _ => None,
        }
    }

    /// The counter row this instant falls in: `d:2026-12-07`, `m:2026-12` or `total`.
    pub fn key_at(self, at: DateTime<Utc>) -> String {
        match self {
            Self::Day => format!("d:{:04}-{:02}-{:02}", at.year(), at.month(), at.day()),
            Self::Month => format!("m:{:04}-{:02}", at.year(), at.month()),
            Self::Total => "total".into(),
        }
    }
}

/// A key's budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBudget {
    pub usd: f64,
    pub period: BudgetPeriod,
}

/// A key's rate limits, per minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
}

/// What an admin sets on a key (validated by the admin API before it reaches the store).
#[derive(Debug, Clone, PartialEq)]
pub struct KeySpec {
    pub name: String,
    pub team: Option<String>,
    /// The models the key may use (and `auto` may pick for it); `None`: every model.
    pub models: Option<Vec<String>>,
    pub budget: Option<KeyBudget>,
    pub rate_limit: RateLimit,
    pub max_cost_per_request_usd: Option<f64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub metadata: serde_json::Value,
}

/// A stored key (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirtualKey {
    pub id: String,
    pub name: String,
    /// The secret's first characters, to tell keys apart in a listing.
    pub prefix: String,
    pub team: Option<String>,
    pub models: Option<Vec<String>>,
    pub budget: Option<KeyBudget>,
    pub rate_limit: RateLimit,
    pub max_cost_per_request_usd: Option<f64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub metadata: serde_json::Value,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Hex SHA-256 of the secret (how a presented key is found); not shown by the API.
    #[serde(skip)]
    pub secret_hash: String,
}

/// Whether a key may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Revoked,
    Expired,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

impl VirtualKey {
    pub fn status(&self, now: DateTime<Utc>) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|e| e <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    /// May this key use `model`?
    pub fn allows(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == model))
    }

    /// The spec it was made from (what a PATCH starts from).
    pub fn spec(&self) -> KeySpec {
        KeySpec {
            name: self.name.clone(),
            team: self.team.clone(),
            models: self.models.clone(),
            budget: self.budget,
            rate_limit: self.rate_limit,
            max_cost_per_request_usd: self.max_cost_per_request_usd,
            expires_at: self.expires_at,
            metadata: self.metadata.clone(),
        }
    }
}

/// Hex SHA-256 of a presented key: how it is looked up, and all that is stored of it.
pub fn hash_secret(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Characters of the secret kept for display.
const PREFIX_CHARS: usize = 10;

/// A new secret: `sk-dr-` and 48 hex digits (24 bytes from the kernel's CSPRNG).
fn new_secret() -> Result<String, StoreError> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
    Ok(format!("sk-dr-{}", hex::encode(bytes)))
}

const KEY_COLUMNS: &str = "id, name, prefix, secret_hash, team, models, budget_nusd, \
    budget_period, rpm, tpm, max_cost_per_request_usd, expires_at, metadata, revoked_at, \
    created_at, updated_at";

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    name: String,
    prefix: String,
    secret_hash: String,
    team: Option<String>,
    models: Option<Json<Vec<String>>>,
    budget_nusd: Option<i64>,
    budget_period: Option<String>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    max_cost_per_request_usd: Option<f64>,
    expires_at: Option<DateTime<Utc>>,
    metadata: Json<serde_json::Value>,
    revoked_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<KeyRow> for VirtualKey {
    fn from(r: KeyRow) -> Self {
        let budget = match (
            r.budget_nusd,
            r.budget_period.as_deref().and_then(BudgetPeriod::parse),
        ) {
            (Some(n), Some(period)) => Some(KeyBudget {
                usd: to_usd(n),
                period,
            }),
            _ => None,
        };
        let positive = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        VirtualKey {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            secret_hash: r.secret_hash,
            team: r.team,
            models: r.models.map(|m| m.0),
            budget,
            rate_limit: RateLimit {
                rpm: positive(r.rpm),
                tpm: positive(r.tpm),
            },
            max_cost_per_request_usd: r.max_cost_per_request_usd,
            expires_at: r.expires_at,
            metadata: r.metadata.0,
            revoked_at: r.revoked_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn key_conflict(e: sqlx::Error, name: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::DuplicateKey(name.to_string())
        }
        _ => StoreError::Db(e),
    }
}

fn as_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// The outcome of counting one request against a key's per-minute window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateCount {
    /// False: the request is over a limit and was not counted.
    pub admitted: bool,
    /// Requests counted in this minute (this one included when admitted).
    pub requests: u64,
    /// Tokens charged in this minute so far.
    pub tokens: u64,
}

/// A budget counter: what is spent and what requests in flight have reserved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BudgetCount {
    pub spent_nusd: i64,
    pub reserved_nusd: i64,
}

/// One request's real cost, applied to its key's counters by [`Store::settle`].
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pub key_id: String,
    pub team: Option<String>,
    /// The budget counter row the request reserved on (or, for a request admitted while the
    /// store was unreachable, the row its cost goes to); `None`: the key has no budget.
    pub period: Option<String>,
    /// What the request reserved on the store's counter (released now).
    pub reserved_nusd: i64,
    /// What it really cost (spent now).
    pub cost_nusd: i64,
    /// The served model; `None` when nothing was served (no spend row is written then).
    pub model: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    /// The minute window the request was counted in (its tokens go there).
    pub minute: i64,
    pub at: DateTime<Utc>,
}

/// A row of `GET /api/spend`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendRow {
    /// The key id, team or model.
    pub group: String,
    /// The key's name (`by=key` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub cost_usd: f64,
}

/// What `GET /api/spend` groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendBy {
    Key,
    Team,
    Model,
}

#[derive(sqlx::FromRow)]
struct SpendSql {
    grp: String,
    name: Option<String>,
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
    cached_tokens: i64,
    cost_nusd: i64,
}

/// The start of the hour `at` falls in.
pub(crate) fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_minute(0))
        .unwrap_or(at)
}

/// The minute window (Unix seconds / 60) of `at`, and the seconds until it ends.
pub(crate) fn minute_of(at: DateTime<Utc>) -> (i64, u64) {
    let secs = at.timestamp();
    (secs.div_euclid(60), 60 - secs.rem_euclid(60) as u64)
}

impl Store {
    // ---- virtual keys ----

    /// Creates a key; returns it and its secret (the only time the secret exists outside the
    /// client). A name already taken is [`StoreError::DuplicateKey`].
    pub async fn create_key(&self, spec: &KeySpec) -> Result<(VirtualKey, String), StoreError> {
        let secret = new_secret()?;
        let id = format!("key_{}", uuid::Uuid::now_v7().simple());
        let now = Utc::now();
        let sql = format!(
            "INSERT INTO virtual_keys ({KEY_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, $14, $14) \
             RETURNING {KEY_COLUMNS}"
        );
        let row: KeyRow = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, KeyRow>(&sql)
                .bind(&id)
                .bind(&spec.name)
                .bind(secret.chars().take(PREFIX_CHARS).collect::<String>())
                .bind(hash_secret(&secret))
                .bind(&spec.team)
                .bind(spec.models.as_ref().map(Json))
                .bind(spec.budget.map(|b| to_nano(b.usd)))
                .bind(spec.budget.map(|b| b.period.as_str()))
                .bind(as_i64(spec.rate_limit.rpm))
                .bind(as_i64(spec.rate_limit.tpm))
                .bind(spec.max_cost_per_request_usd)
                .bind(spec.expires_at)
                .bind(Json(&spec.metadata))
                .bind(now)
                .fetch_one(pool)
                .await
                .map_err(|e| key_conflict(e, &spec.name))?
        });
        self.notify_keys_changed().await;
        Ok((row.into(), secret))
    }

    /// Every key (revoked ones too), oldest first.
    pub async fn list_keys(&self) -> Result<Vec<VirtualKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM virtual_keys ORDER BY created_at, id");
        let rows: Vec<KeyRow> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, KeyRow>(&sql).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(VirtualKey::from).collect())
    }

    pub async fn get_key(&self, id: &str) -> Result<VirtualKey, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM virtual_keys WHERE id = $1");
        let row: Option<KeyRow> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, KeyRow>(&sql).bind(id).fetch_optional(pool).await?
        });
        row.map(VirtualKey::from)
            .ok_or_else(|| StoreError::KeyNotFound(id.to_string()))
    }

    /// The key whose secret hashes to `hash`, if any.
    pub async fn find_key_by_hash(&self, hash: &str) -> Result<Option<VirtualKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM virtual_keys WHERE secret_hash = $1");
        let row: Option<KeyRow> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, KeyRow>(&sql).bind(hash).fetch_optional(pool).await?
        });
        Ok(row.map(VirtualKey::from))
    }

    /// Replaces a key's settings (not its secret, not its revocation).
    pub async fn update_key(&self, id: &str, spec: &KeySpec) -> Result<VirtualKey, StoreError> {
        let sql = format!(
            "UPDATE virtual_keys SET name = $2, team = $3, models = $4, budget_nusd = $5, \
             budget_period = $6, rpm = $7, tpm = $8, max_cost_per_request_usd = $9, \
             expires_at = $10, metadata = $11, updated_at = $12 WHERE id = $1 \
             RETURNING {KEY_COLUMNS}"
        );
        let row: Option<KeyRow> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, KeyRow>(&sql)
                .bind(id)
                .bind(&spec.name)
                .bind(&spec.team)
                .bind(spec.models.as_ref().map(Json))
                .bind(spec.budget.map(|b| to_nano(b.usd)))
                .bind(spec.budget.map(|b| b.period.as_str()))
                .bind(as_i64(spec.rate_limit.rpm))
                .bind(as_i64(spec.rate_limit.tpm))
                .bind(spec.max_cost_per_request_usd)
                .bind(spec.expires_at)
                .bind(Json(&spec.metadata))
                .bind(Utc::now())
                .fetch_optional(pool)
                .await
                .map_err(|e| key_conflict(e, &spec.name))?
        });
        let key = row
            .map(VirtualKey::from)
            .ok_or_else(|| StoreError::KeyNotFound(id.to_string()))?;
        self.notify_keys_changed().await;
        Ok(key)
    }

    /// Revokes a key at once (idempotent: the first revocation time stays).
    pub async fn revoke_key(&self, id: &str) -> Result<VirtualKey, StoreError> {
        let now = Utc::now();
        let sql = format!(
            "UPDATE virtual_keys SET revoked_at = COALESCE(revoked_at, $2), updated_at = $2 \
             WHERE id = $1 RETURNING {KEY_COLUMNS}"
        );
        let row: Option<KeyRow> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, KeyRow>(&sql).bind(id).bind(now).fetch_optional(pool).await?
        });
        let key = row
            .map(VirtualKey::from)
            .ok_or_else(|| StoreError::KeyNotFound(id.to_string()))?;
        self.notify_keys_changed().await;
        Ok(key)
    }

    /// Gives a key a new secret; the old one stops working at once. Returns the new secret.
    pub async fn rotate_key(&self, id: &str) -> Result<(VirtualKey, String), StoreError> {
        let secret = new_secret()?;
        let sql = format!(
            "UPDATE virtual_keys SET secret_hash = $2, prefix = $3, updated_at = $4 \
             WHERE id = $1 AND revoked_at IS NULL RETURNING {KEY_COLUMNS}"
        );
        let row: Option<KeyRow> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, KeyRow>(&sql)
                .bind(id)
                .bind(hash_secret(&secret))
                .bind(secret.chars().take(PREFIX_CHARS).collect::<String>())
                .bind(Utc::now())
                .fetch_optional(pool)
                .await?
        });
        let key = row
            .map(VirtualKey::from)
            .ok_or_else(|| StoreError::KeyNotFound(id.to_string()))?;
        self.notify_keys_changed().await;
        Ok((key, secret))
    }

    /// Tells every instance sharing this PostgreSQL database that keys changed.
    pub async fn notify_keys_changed(&self) {
        if let Store::Postgres(pool) = self {
            if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
                .bind(KEY_CHANNEL)
                .execute(pool)
                .await
            {
                tracing::warn!("could not notify other instances of a key change: {e}");
            }
        }
    }

    /// A listener for key changes made by any instance (PostgreSQL only).
    pub async fn listen_keys(&self) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(pool) => {
                let mut l = sqlx::postgres::PgListener::connect_with(pool).await?;
                // A lost connection is reported at once (not after reconnecting, which waits
                // for the server): it is how the keyring first learns the store is away.
                l.eager_reconnect(false);
                l.listen(KEY_CHANNEL).await?;
                Ok(Some(l))
            }
        }
    }

    // ---- counters ----

    /// Counts one request in the key's window `minute` unless that would pass `rpm`, or the
    /// window's tokens already reached `tpm`; one statement, atomic on both databases.
    pub async fn hit_rate(
        &self,
        key_id: &str,
        minute: i64,
        rpm: Option<u64>,
        tpm: Option<u64>,
    ) -> Result<RateCount, StoreError> {
        self.lease_rate(key_id, minute, 1, rpm, tpm).await
    }

    /// Counts `n` requests at once in the key's window `minute` (an instance's lease of the
    /// window: it admits them from memory) unless that would pass `rpm`, or the window's tokens
    /// already reached `tpm`: all `n` or none, in one statement, atomic on both databases.
    /// `admitted: false` carries the window's counts as they are.
    pub async fn lease_rate(
        &self,
        key_id: &str,
        minute: i64,
        n: u64,
        rpm: Option<u64>,
        tpm: Option<u64>,
    ) -> Result<RateCount, StoreError> {
        let rpm = as_i64(rpm).unwrap_or(i64::MAX);
        let tpm = as_i64(tpm).unwrap_or(i64::MAX);
        let n = as_i64(Some(n.max(1))).unwrap_or(1);
        if n > rpm {
            // Not even an empty window could take them.
            let now = self.rate_count(key_id, minute).await?;
            return Ok(RateCount {
                admitted: false,
                ..now
            });
        }
        let hit = "INSERT INTO key_rate (key_id, minute, requests, tokens) VALUES ($1, $2, $5, 0) \
            ON CONFLICT (key_id, minute) DO UPDATE SET requests = key_rate.requests + $5 \
            WHERE key_rate.requests + $5 <= $3 AND key_rate.tokens < $4 \
            RETURNING requests, tokens";
        let row: Option<(i64, i64)> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, (i64, i64)>(hit)
                .bind(key_id)
                .bind(minute)
                .bind(rpm)
                .bind(tpm)
                .bind(n)
                .fetch_optional(pool)
                .await?
        });
        match row {
            Some((requests, tokens)) => Ok(RateCount {
                admitted: true,
                requests: u64::try_from(requests).unwrap_or(0),
                tokens: u64::try_from(tokens).unwrap_or(0),
            }),
            None => self.rate_count(key_id, minute).await,
        }
    }

    /// The key's window `minute` as it is (`admitted: false`; zero when nothing was counted).
    pub async fn rate_count(&self, key_id: &str, minute: i64) -> Result<RateCount, StoreError> {
        let read = "SELECT requests, tokens FROM key_rate WHERE key_id = $1 AND minute = $2";
        let row: Option<(i64, i64)> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, (i64, i64)>(read)
                .bind(key_id)
                .bind(minute)
                .fetch_optional(pool)
                .await?
        });
        let (requests, tokens) = row.unwrap_or_default();
        Ok(RateCount {
            admitted: false,
            requests: u64::try_from(requests).unwrap_or(0),
            tokens: u64::try_from(tokens).unwrap_or(0),
        })
    }

    /// Deletes rate windows older than `before` (a minute number), and the ids of settlement
    /// batches applied more than a day ago (a retry comes within seconds).
    pub async fn prune_rate(&self, before: i64) -> Result<u64, StoreError> {
        let day_ago = Utc::now().timestamp() - 86_400;
        let n = on_pool!(self, pool, Db => {
            sqlx::query::<Db>("DELETE FROM key_settlement_batches WHERE applied_at < $1")
                .bind(day_ago)
                .execute(pool)
                .await?;
            sqlx::query::<Db>("DELETE FROM key_rate WHERE minute < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }

    /// Reserves `amount` nano-USD on the key's counter for `period` if spent + reserved +
    /// amount stays within `budget`: `Some(counter after)`; `None` and nothing reserved
    /// otherwise. One conditional UPDATE, so concurrent requests on any number of instances
    /// cannot reserve past the budget together.
    pub async fn reserve_budget(
        &self,
        key_id: &str,
        period: &str,
        amount: i64,
        budget: i64,
    ) -> Result<Option<BudgetCount>, StoreError> {
        let reserve = "UPDATE key_budgets SET reserved_nusd = reserved_nusd + $3 \
            WHERE key_id = $1 AND period = $2 AND spent_nusd + reserved_nusd + $3 <= $4 \
            RETURNING spent_nusd, reserved_nusd";
        let create = "INSERT INTO key_budgets (key_id, period, spent_nusd, reserved_nusd) \
            VALUES ($1, $2, 0, 0) ON CONFLICT (key_id, period) DO NOTHING";
        let row: Option<(i64, i64)> = on_pool!(self, pool, Db => {
            let first: Option<(i64, i64)> = sqlx::query_as::<Db, (i64, i64)>(reserve)
                .bind(key_id)
                .bind(period)
                .bind(amount)
                .bind(budget)
                .fetch_optional(pool)
                .await?;
            match first {
                Some(r) => Some(r),
                None => {
                    // The period's row may not exist yet (this request or a concurrent one
                    // creates it): make sure it does, then try once more.
                    sqlx::query::<Db>(create)
                        .bind(key_id)
                        .bind(period)
                        .execute(pool)
                        .await?;
                    sqlx::query_as::<Db, (i64, i64)>(reserve)
                        .bind(key_id)
                        .bind(period)
                        .bind(amount)
                        .bind(budget)
                        .fetch_optional(pool)
                        .await?
                }
            }
        });
        Ok(row.map(|(spent_nusd, reserved_nusd)| BudgetCount {
            spent_nusd,
            reserved_nusd,
        }))
    }

    /// The key's counter for `period` (zero when nothing was reserved in it yet).
    pub async fn budget_count(
        &self,
        key_id: &str,
        period: &str,
    ) -> Result<BudgetCount, StoreError> {
        let sql =
            "SELECT spent_nusd, reserved_nusd FROM key_budgets WHERE key_id = $1 AND period = $2";
        let row: Option<(i64, i64)> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, (i64, i64)>(sql)
                .bind(key_id)
                .bind(period)
                .fetch_optional(pool)
                .await?
        });
        Ok(row
            .map(|(spent_nusd, reserved_nusd)| BudgetCount {
                spent_nusd,
                reserved_nusd,
            })
            .unwrap_or_default())
    }

    /// Applies settlements in one transaction: each releases its reservation and adds its real
    /// cost to the budget counter, its tokens to its rate window, and its spend to `key_spend`.
    /// (A batch of its own: see [`Store::settle_once`] for one that may be retried.)
    pub async fn settle(&self, batch: &[Settlement]) -> Result<(), StoreError> {
        self.settle_once(&uuid::Uuid::now_v7().to_string(), batch)
            .await
            .map(|_| ())
    }

    /// [`Store::settle`] for a batch that may be sent again: a retry after an error whose
    /// transaction did commit (the acknowledgement lost with the connection) finds `batch_id`
    /// applied and changes nothing. Returns whether this call applied the batch.
    pub async fn settle_once(
        &self,
        batch_id: &str,
        batch: &[Settlement],
    ) -> Result<bool, StoreError> {
        if batch.is_empty() {
            return Ok(false);
        }
        let mark = "INSERT INTO key_settlement_batches (batch_id, applied_at) VALUES ($1, $2) \
            ON CONFLICT (batch_id) DO NOTHING";
        let budget = "INSERT INTO key_budgets (key_id, period, spent_nusd, reserved_nusd) \
            VALUES ($1, $2, $3, $4) ON CONFLICT (key_id, period) DO UPDATE SET \
            spent_nusd = key_budgets.spent_nusd + excluded.spent_nusd, \
            reserved_nusd = key_budgets.reserved_nusd + excluded.reserved_nusd";
        let rate = "UPDATE key_rate SET tokens = tokens + $3 WHERE key_id = $1 AND minute = $2";
        let spend = "INSERT INTO key_spend (key_id, team, model, hour, requests, input_tokens, \
            output_tokens, cached_tokens, cost_nusd) VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8) \
            ON CONFLICT (key_id, model, hour) DO UPDATE SET \
            team = excluded.team, requests = key_spend.requests + 1, \
            input_tokens = key_spend.input_tokens + excluded.input_tokens, \
            output_tokens = key_spend.output_tokens + excluded.output_tokens, \
            cached_tokens = key_spend.cached_tokens + excluded.cached_tokens, \
            cost_nusd = key_spend.cost_nusd + excluded.cost_nusd";
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let applied = on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            let first = sqlx::query::<Db>(mark)
                .bind(batch_id)
                .bind(Utc::now().timestamp())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if !first {
                tx.rollback().await?;
                return Ok(false);
            }
            for s in batch {
                if let Some(period) = &s.period {
                    sqlx::query::<Db>(budget)
                        .bind(&s.key_id)
                        .bind(period)
                        .bind(s.cost_nusd)
                        .bind(-s.reserved_nusd)
                        .execute(&mut *tx)
                        .await?;
                }
                let tokens = n(s.input_tokens.saturating_add(s.output_tokens));
                if tokens > 0 {
                    sqlx::query::<Db>(rate)
                        .bind(&s.key_id)
                        .bind(s.minute)
                        .bind(tokens)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(model) = &s.model {
                    sqlx::query::<Db>(spend)
                        .bind(&s.key_id)
                        .bind(s.team.as_deref().unwrap_or(""))
                        .bind(model)
                        .bind(hour_of(s.at))
                        .bind(n(s.input_tokens))
                        .bind(n(s.output_tokens))
                        .bind(n(s.cached_tokens))
                        .bind(s.cost_nusd)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            true
        });
        Ok(applied)
    }

    /// Spend since `since` (from the start of its hour), grouped, dearest first.
    pub async fn spend(
        &self,
        by: SpendBy,
        since: DateTime<Utc>,
    ) -> Result<Vec<SpendRow>, StoreError> {
        let (grp, name, join) = match by {
            SpendBy::Key => (
                "s.key_id",
                "MAX(k.name)",
                " LEFT JOIN virtual_keys k ON k.id = s.key_id",
            ),
            SpendBy::Team => ("s.team", "NULL", ""),
            SpendBy::Model => ("s.model", "NULL", ""),
        };
        let sql = format!(
            "SELECT {grp} AS grp, {name} AS name, CAST(SUM(s.requests) AS BIGINT) AS requests, \
             CAST(SUM(s.input_tokens) AS BIGINT) AS input_tokens, \
             CAST(SUM(s.output_tokens) AS BIGINT) AS output_tokens, \
             CAST(SUM(s.cached_tokens) AS BIGINT) AS cached_tokens, \
             CAST(SUM(s.cost_nusd) AS BIGINT) AS cost_nusd \
             FROM key_spend s{join} WHERE s.hour >= $1 GROUP BY {grp} \
             ORDER BY cost_nusd DESC, grp"
        );
        let rows: Vec<SpendSql> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, SpendSql>(&sql)
                .bind(hour_of(since))
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| SpendRow {
                group: r.grp,
                name: r.name,
                requests: r.requests,
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                cached_tokens: r.cached_tokens,
                cost_usd: to_usd(r.cost_nusd),
            })
            .collect())
    }
}
