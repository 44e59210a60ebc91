//! Stored responses of the Responses API (`store`, `previous_response_id`,
//! `GET|DELETE /v1/responses/{id}`).
//!
//! Each row keeps one turn: the input items its request added and the output items of its
//! answer, in the Responses format the client saw, plus the whole response object. A
//! conversation is the chain of `previous_id`s, read back oldest first in one recursive query.
//! Every read is scoped to the owner (the client key that made the response) and to rows not
//! yet expired; expired rows are deleted in small batches by [`Store::prune_responses`].

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Store, StoreError};

/// The longest chain of `previous_response_id`s read back for one request.
pub(crate) const MAX_CHAIN: i64 = 10_000;

/// One stored response.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// `resp_…`, as the client saw it.
    pub id: String,
    /// The client key that made it, as the proxy's ingress names it (a hash, never the key).
    pub owner: String,
    pub previous_id: Option<String>,
    pub model: Option<String>,
    pub decision_id: Option<String>,
    /// The input items this turn's request added (a JSON array).
    pub input: Value,
    /// The answer's output items (a JSON array).
    pub output: Value,
    /// The whole `response` object.
    pub response: Value,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    owner: String,
    previous_id: Option<String>,
    model: Option<String>,
    decision_id: Option<String>,
    input: String,
    output: String,
    response: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

impl From<Row> for StoredResponse {
    fn from(r: Row) -> Self {
        Self {
            id: r.id,
            owner: r.owner,
            previous_id: r.previous_id,
            model: r.model,
            decision_id: r.decision_id,
            input: parse(&r.input),
            output: parse(&r.output),
            response: parse(&r.response),
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

impl Store {
    /// Stores a response; an id already stored keeps its first row.
    pub async fn put_response(&self, r: &StoredResponse) -> Result<(), StoreError> {
        let sql = "INSERT INTO stored_responses (id, owner, previous_id, model, decision_id, \
                   input, output, response, created_at, expires_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING";
        on_pool!(self, pool, Db => {
            sqlx::query::<Db>(sql)
                .bind(&r.id)
                .bind(&r.owner)
                .bind(&r.previous_id)
                .bind(&r.model)
                .bind(&r.decision_id)
                .bind(r.input.to_string())
                .bind(r.output.to_string())
                .bind(r.response.to_string())
                .bind(r.created_at)
                .bind(r.expires_at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// A response of `owner` that has not expired by `now`.
    pub async fn get_response(
        &self,
        id: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredResponse>, StoreError> {
        let sql = "SELECT id, owner, previous_id, model, decision_id, input, output, response, \
                   created_at, expires_at FROM stored_responses \
                   WHERE id = $1 AND owner = $2 AND expires_at > $3";
        let row: Option<Row> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, Row>(sql)
                .bind(id)
                .bind(owner)
                .bind(now)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(StoredResponse::from))
    }

    /// Deletes a response of `owner`; whether there was one.
    pub async fn delete_response(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let sql = "DELETE FROM stored_responses WHERE id = $1 AND owner = $2";
        let n = on_pool!(self, pool, Db => {
            sqlx::query::<Db>(sql)
                .bind(id)
                .bind(owner)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// The conversation up to and including response `id`: every turn's input items then its
    /// output items, oldest turn first. `None` when `id` is not a live response of `owner`
    /// (a link of the chain that expired ends the chain there).
    pub async fn response_history(
        &self,
        id: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<Value>>, StoreError> {
        let sql = "WITH RECURSIVE chain(id, previous_id, input, output, depth) AS ( \
                     SELECT id, previous_id, input, output, 0 FROM stored_responses \
                       WHERE id = $1 AND owner = $2 AND expires_at > $3 \
                     UNION ALL \
                     SELECT r.id, r.previous_id, r.input, r.output, c.depth + 1 \
                       FROM stored_responses r JOIN chain c ON r.id = c.previous_id \
                       WHERE r.owner = $2 AND r.expires_at > $3 AND c.depth < $4) \
                   SELECT input, output FROM chain ORDER BY depth DESC";
        let rows: Vec<(String, String)> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, (String, String)>(sql)
                .bind(id)
                .bind(owner)
                .bind(now)
                .bind(MAX_CHAIN)
                .fetch_all(pool)
                .await?
        });
        if rows.is_empty() {
            return Ok(None);
        }
        let mut items = Vec::new();
        for (input, output) in rows {
            for text in [input, output] {
                if let Value::Array(a) = parse(&text) {
                    items.extend(a);
                }
            }
        }
        Ok(Some(items))
    }

    /// Deletes up to `batch` responses expired by `now`; how many it deleted.
    pub async fn prune_responses(&self, now: DateTime<Utc>, batch: i64) -> Result<u64, StoreError> {
        let sql = "DELETE FROM stored_responses WHERE id IN \
                   (SELECT id FROM stored_responses WHERE expires_at <= $1 LIMIT $2)";
        let n = on_pool!(self, pool, Db => {
            sqlx::query::<Db>(sql)
                .bind(now)
                .bind(batch)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }
}
