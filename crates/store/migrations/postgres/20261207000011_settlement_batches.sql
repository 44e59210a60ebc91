-- Settlement batches already applied (issue 22): a batch whose commit was acknowledged too late
-- (the connection dropped as the database stopped) is retried under the same id, and applied
-- once. Rows older than a day are pruned with the old rate windows. Keep in step with the
-- other backend's copy.
CREATE TABLE key_settlement_batches (
    batch_id   TEXT PRIMARY KEY,
    applied_at BIGINT NOT NULL
);
