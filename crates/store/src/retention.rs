//! Retention: decisions and feedback older than a cut-off, deleted a small batch per statement
//! so the decision-log writer (and, on SQLite, every other writer) waits at most one batch.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};

impl Store {
    /// Deletes up to `batch` decisions created before `before`; how many it deleted.
    pub async fn prune_decisions(
        &self,
        before: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64, StoreError> {
        self.delete_batch(
            "DELETE FROM routing_decisions WHERE decision_id IN \
             (SELECT decision_id FROM routing_decisions WHERE created_at < $1 LIMIT $2)",
            before,
            batch,
        )
        .await
    }

    /// Deletes up to `batch` feedback rows recorded before `before`; how many it deleted.
    pub async fn prune_feedback(
        &self,
        before: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64, StoreError> {
        self.delete_batch(
            "DELETE FROM feedback WHERE id IN \
             (SELECT id FROM feedback WHERE created_at < $1 LIMIT $2)",
            before,
            batch,
        )
        .await
    }

    /// Runs one batched delete taking the cut-off (`$1`) and the batch size (`$2`).
    async fn delete_batch(
        &self,
        sql: &'static str,
        before: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let n = on_pool!(self, pool, Db => {
            sqlx::query::<Db>(sql)
                .bind(before)
                .bind(batch)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }

    /// Rows in `feedback`.
    pub async fn count_feedback(&self) -> Result<i64, StoreError> {
        let n: (i64,) = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, (i64,)>("SELECT COUNT(*) FROM feedback").fetch_one(pool).await?
        });
        Ok(n.0)
    }
}
