-- Virtual keys, their budgets, rate-limit windows and spend. Keep in step with ../postgres/.
-- Money is integer nano-USD (1e-9 USD) so that sums are exact. The secret is never stored:
-- `secret_hash` is the hex SHA-256 of the key, `prefix` its first characters for display.
CREATE TABLE virtual_keys (
    id                       TEXT PRIMARY KEY,
    name                     TEXT NOT NULL UNIQUE,
    prefix                   TEXT NOT NULL,
    secret_hash              TEXT NOT NULL UNIQUE,
    team                     TEXT,
    models                   TEXT,            -- JSON array of model ids; NULL: every model
    budget_nusd              INTEGER,
    budget_period            TEXT,             -- day | month | total
    rpm                      INTEGER,
    tpm                      INTEGER,
    max_cost_per_request_usd REAL,
    expires_at               TEXT,
    metadata                 TEXT NOT NULL DEFAULT '{}',
    revoked_at               TEXT,
    created_at               TEXT NOT NULL,
    updated_at               TEXT NOT NULL
);

-- The counter that enforces a key's budget: one row per key and period (`d:2026-12-07`,
-- `m:2026-12`, `total`). A request reserves its estimate with a conditional UPDATE
-- (spent + reserved + estimate <= budget), and settles it with its real cost.
CREATE TABLE key_budgets (
    key_id        TEXT NOT NULL,
    period        TEXT NOT NULL,
    spent_nusd    INTEGER NOT NULL DEFAULT 0,
    reserved_nusd INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, period)
);

-- Requests and tokens per key per minute (`minute`: Unix seconds / 60).
CREATE TABLE key_rate (
    key_id   TEXT NOT NULL,
    minute   INTEGER NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    tokens   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, minute)
);

-- Spend by key, team and model per hour (what GET /api/spend sums).
CREATE TABLE key_spend (
    key_id        TEXT NOT NULL,
    team          TEXT NOT NULL DEFAULT '',
    model         TEXT NOT NULL,
    hour          TEXT NOT NULL,
    requests      INTEGER NOT NULL DEFAULT 0,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    cost_nusd     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, model, hour)
);
CREATE INDEX key_spend_hour ON key_spend (hour);

ALTER TABLE routing_decisions ADD COLUMN key_id TEXT;
