//! The registry's catalog in the store: `candidate_models` (every model with its source, price
//! and health) and `executor_services` (every executor plugin). Rewritten whole after each round
//! of health checks, in one transaction, so a reader never sees half a catalog. No secret is
//! ever written: plugin settings are stored without `secret_env` values.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;

use super::{Store, StoreError};
use dualrouter_core::catalog::ExecutorInfo;

/// One row of `executor_services`.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ExecutorService {
    /// The plugin's configured name.
    pub name: String,
    /// The component file.
    pub plugin: String,
    /// The executor's kind as it describes itself (`cli`, `http`, …).
    pub kind: String,
    /// The executor's id and the models it serves (JSON; never secrets).
    pub settings: Json<serde_json::Value>,
    /// `healthy` or `unhealthy`.
    pub health: String,
    pub last_check: Option<DateTime<Utc>>,
}

/// One row of `candidate_models`.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct CandidateModelRow {
    pub id: String,
    pub provider: String,
    pub source: String,
    pub cost_input_per_mtok: f64,
    pub cost_output_per_mtok: f64,
    pub context_tokens: Option<i64>,
    pub tier: Option<String>,
    pub health: String,
    pub last_check: Option<DateTime<Utc>>,
}

impl Store {
    /// Replaces both catalog tables with `models` and `services`.
    pub async fn sync_catalog(
        &self,
        models: &[ExecutorInfo],
        services: &[ExecutorService],
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            sqlx::query::<Db>("DELETE FROM candidate_models").execute(&mut *tx).await?;
            sqlx::query::<Db>("DELETE FROM executor_services").execute(&mut *tx).await?;
            for m in models {
                sqlx::query::<Db>(
                    "INSERT INTO candidate_models (id, provider, source, cost_input_per_mtok, \
                     cost_output_per_mtok, context_tokens, tier, health, last_check, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&m.id)
                .bind(&m.provider)
                .bind(&m.source)
                .bind(m.cost_per_mtok.input)
                .bind(m.cost_per_mtok.output)
                .bind(m.context_tokens.map(|c| c.min(i64::MAX as u64) as i64))
                .bind(&m.tier)
                .bind(&m.health)
                .bind(m.last_check)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            for s in services {
                sqlx::query::<Db>(
                    "INSERT INTO executor_services (name, plugin, kind, settings, health, \
                     last_check, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&s.name)
                .bind(&s.plugin)
                .bind(&s.kind)
                .bind(&s.settings)
                .bind(&s.health)
                .bind(s.last_check)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// `candidate_models`, by id.
    pub async fn list_candidate_models(&self) -> Result<Vec<CandidateModelRow>, StoreError> {
        let sql = "SELECT id, provider, source, cost_input_per_mtok, cost_output_per_mtok, \
                   context_tokens, tier, health, last_check FROM candidate_models ORDER BY id";
        let rows = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, CandidateModelRow>(sql).fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// `executor_services`, by name.
    pub async fn list_executor_services(&self) -> Result<Vec<ExecutorService>, StoreError> {
        let sql = "SELECT name, plugin, kind, settings, health, last_check \
                   FROM executor_services ORDER BY name";
        let rows = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, ExecutorService>(sql).fetch_all(pool).await?
        });
        Ok(rows)
    }
}
