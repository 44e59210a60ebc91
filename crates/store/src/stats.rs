//! Aggregates of the decision log for the dashboard's charts (`GET /api/stats`): requests and
//! cost per model over time, the estimated saving against always using the dearest candidate,
//! and the mean feedback score per model.
//!
//! Everything is computed in SQL. The time buckets are a `VALUES` list joined on `created_at`
//! (both backends name its columns `column1..3`), so no date function of either dialect is
//! needed. Reading a candidate's cost out of the `candidates` JSON is the one dialect-specific
//! fragment (`json_each` in SQLite, `jsonb_array_elements` in PostgreSQL).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::QueryBuilder;

use super::{Store, StoreError};

/// One model's figures over the whole window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelStats {
    pub model: String,
    pub requests: i64,
    /// Requests whose status was not `ok`.
    pub errors: i64,
    /// Spent, USD (the logged `cost_usd`).
    pub cost_usd: f64,
    /// The routed requests this model served whose candidates had estimated costs.
    pub routed: i64,
    /// Sum of the served model's estimated cost (its `candidates[].cost`), USD.
    pub est_cost_usd: f64,
    /// Sum of the dearest candidate's estimated cost for the same requests, USD.
    pub dearest_est_usd: f64,
    /// `dearest_est_usd - est_cost_usd`: what routing saved against always using the dearest
    /// candidate, by the router's own estimates.
    pub savings_usd: f64,
    /// Mean feedback score (latest feedback per decision), `None` without any.
    pub feedback_mean: Option<f64>,
    pub feedback_n: i64,
    /// Requests per bucket (same order as [`Stats::buckets`]).
    pub series_requests: Vec<i64>,
    /// Cost per bucket, USD.
    pub series_cost_usd: Vec<f64>,
}

/// What `GET /api/stats` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub bucket_seconds: i64,
    /// The start of each bucket, oldest first.
    pub buckets: Vec<DateTime<Utc>>,
    /// Models by requests served, most first.
    pub models: Vec<ModelStats>,
}

#[derive(sqlx::FromRow)]
struct TotalRow {
    model: String,
    requests: i64,
    errors: i64,
    cost_usd: Option<f64>,
    routed: i64,
    est_cost_usd: Option<f64>,
    dearest_est_usd: Option<f64>,
    feedback_mean: Option<f64>,
    feedback_n: i64,
}

#[derive(sqlx::FromRow)]
struct BucketRow {
    bucket: i64,
    model: String,
    requests: i64,
    cost_usd: Option<f64>,
}

/// The latest feedback for a decision, else the logged score (as `DECISION_SELECT` reads it).
const FEEDBACK: &str = "COALESCE((SELECT f.score FROM feedback f \
    WHERE f.decision_id = d.decision_id ORDER BY f.created_at DESC, f.id DESC LIMIT 1), \
    d.feedback_score)";

impl Store {
    /// `(served model's estimated cost, dearest candidate's estimated cost)` as SQL
    /// expressions over `d.candidates`, in this backend's JSON dialect.
    fn candidate_cost_sql(&self) -> (&'static str, &'static str) {
        match self {
            Store::Sqlite(_) => (
                "(SELECT json_extract(c.value, '$.cost') FROM json_each(d.candidates) c \
                  WHERE json_extract(c.value, '$.model') = d.selected_model LIMIT 1)",
                "(SELECT MAX(json_extract(c.value, '$.cost')) FROM json_each(d.candidates) c)",
            ),
            Store::Postgres(_) => (
                "(SELECT (c->>'cost')::float8 FROM jsonb_array_elements(d.candidates) c \
                  WHERE c->>'model' = d.selected_model LIMIT 1)",
                "(SELECT MAX((c->>'cost')::float8) FROM jsonb_array_elements(d.candidates) c)",
            ),
        }
    }

    /// Aggregates of the decisions in `[since, until)`, cut into `buckets` equal buckets.
    /// Decisions without a selected model (refused before routing) are left out.
    pub async fn stats(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        buckets: u32,
    ) -> Result<Stats, StoreError> {
        let buckets = buckets.max(1);
        let span = (until - since).num_milliseconds().max(1);
        let step = (span / i64::from(buckets)).max(1);
        let starts: Vec<DateTime<Utc>> = (0..i64::from(buckets))
            .map(|i| since + chrono::Duration::milliseconds(step * i))
            .collect();

        let (served, dearest) = self.candidate_cost_sql();
        // CAST(... AS DOUBLE PRECISION): REAL affinity in SQLite, float8 in PostgreSQL, so a
        // sum of whole numbers still decodes as f64.
        let totals_sql = format!(
            "SELECT x.model, COUNT(*) AS requests, \
               COUNT(CASE WHEN x.status <> 'ok' THEN 1 END) AS errors, \
               CAST(SUM(x.cost_usd) AS DOUBLE PRECISION) AS cost_usd, \
               COUNT(CASE WHEN x.served IS NOT NULL AND x.dearest IS NOT NULL THEN 1 END) AS routed, \
               CAST(SUM(CASE WHEN x.dearest IS NOT NULL THEN x.served END) AS DOUBLE PRECISION) AS est_cost_usd, \
               CAST(SUM(CASE WHEN x.served IS NOT NULL THEN x.dearest END) AS DOUBLE PRECISION) AS dearest_est_usd, \
               CAST(AVG(x.fb) AS DOUBLE PRECISION) AS feedback_mean, \
               COUNT(x.fb) AS feedback_n \
             FROM (SELECT d.selected_model AS model, d.status, d.cost_usd, \
                     {served} AS served, {dearest} AS dearest, {FEEDBACK} AS fb \
                   FROM routing_decisions d \
                   WHERE d.created_at >= $1 AND d.created_at < $2 \
                     AND d.selected_model IS NOT NULL) x \
             GROUP BY x.model ORDER BY COUNT(*) DESC, x.model"
        );

        let totals: Vec<TotalRow> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, TotalRow>(&totals_sql)
                .bind(since)
                .bind(until)
                .fetch_all(pool)
                .await?
        });

        let per_bucket: Vec<BucketRow> = on_pool!(self, pool, Db => {
            let mut qb: QueryBuilder<'_, Db> = QueryBuilder::new(
                "SELECT b.column1 AS bucket, d.selected_model AS model, COUNT(*) AS requests, \
                   CAST(SUM(d.cost_usd) AS DOUBLE PRECISION) AS cost_usd \
                 FROM routing_decisions d JOIN (VALUES ",
            );
            let mut sep = qb.separated(", ");
            for (i, start) in starts.iter().enumerate() {
                let end = if i + 1 == starts.len() { until } else { starts[i + 1] };
                sep.push("(")
                    .push_bind_unseparated(i as i64)
                    .push_unseparated(", ")
                    .push_bind_unseparated(*start)
                    .push_unseparated(", ")
                    .push_bind_unseparated(end)
                    .push_unseparated(")");
            }
            qb.push(
                ") AS b ON d.created_at >= b.column2 AND d.created_at < b.column3 \
                 WHERE d.selected_model IS NOT NULL \
                 GROUP BY b.column1, d.selected_model",
            );
            qb.build_query_as::<BucketRow>()
                .persistent(false) // its shape depends on the bucket count: not worth caching
                .fetch_all(pool)
                .await?
        });

        let n = starts.len();
        let mut models: Vec<ModelStats> = totals
            .into_iter()
            .map(|t| {
                let est = t.est_cost_usd.unwrap_or(0.0);
                let dear = t.dearest_est_usd.unwrap_or(0.0);
                ModelStats {
                    model: t.model,
                    requests: t.requests,
                    errors: t.errors,
                    cost_usd: t.cost_usd.unwrap_or(0.0),
                    routed: t.routed,
                    est_cost_usd: est,
                    dearest_est_usd: dear,
                    savings_usd: dear - est,
                    feedback_mean: t.feedback_mean,
                    feedback_n: t.feedback_n,
                    series_requests: vec![0; n],
                    series_cost_usd: vec![0.0; n],
                }
            })
            .collect();
        for r in per_bucket {
            let Ok(i) = usize::try_from(r.bucket) else {
                continue;
            };
            if let Some(m) = models.iter_mut().find(|m| m.model == r.model) {
                if i < n {
                    m.series_requests[i] = r.requests;
                    m.series_cost_usd[i] = r.cost_usd.unwrap_or(0.0);
                }
            }
        }
        Ok(Stats {
            since,
            until,
            bucket_seconds: step / 1000,
            buckets: starts,
            models,
        })
    }
}
