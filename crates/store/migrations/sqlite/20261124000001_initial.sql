-- dualrouter store, SQLite dialect. Keep in step with ../postgres/20261124000001_initial.sql:
-- same tables, same columns, same meaning. JSON is TEXT here (JSONB there), timestamps are
-- RFC 3339 TEXT here (TIMESTAMPTZ there). Timestamps are always bound by the application.

-- One row per (domain, action) route. `models` is the candidate list in rank order.
CREATE TABLE routing_policies (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    domain      TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    examples    TEXT    NOT NULL DEFAULT '[]',  -- JSON array of example utterances
    models      TEXT    NOT NULL DEFAULT '[]',  -- JSON array of model ids, rank order
    priority    INTEGER NOT NULL DEFAULT 0,     -- higher first
    budget_usd  REAL,                           -- optional spend cap for this route
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    UNIQUE (domain, action)
);

-- Models the registry knows (config, discovery, executor plugins). Never holds API keys.
CREATE TABLE candidate_models (
    id                   TEXT PRIMARY KEY,
    provider             TEXT NOT NULL,
    source               TEXT NOT NULL,            -- config | discovered | plugin
    cost_input_per_mtok  REAL NOT NULL DEFAULT 0,
    cost_output_per_mtok REAL NOT NULL DEFAULT 0,
    context_tokens       INTEGER,
    tier                 TEXT,
    health               TEXT NOT NULL DEFAULT 'unknown',
    last_check           TEXT,
    updated_at           TEXT NOT NULL
);

-- Executor plugins (CLI / HTTP executors). `settings` is JSON without secrets.
CREATE TABLE executor_services (
    name       TEXT PRIMARY KEY,
    plugin     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    settings   TEXT NOT NULL DEFAULT '{}',
    health     TEXT NOT NULL DEFAULT 'unknown',
    last_check TEXT,
    updated_at TEXT NOT NULL
);

-- The decision log. The decision id is the key, so replaying a spooled record never duplicates.
CREATE TABLE routing_decisions (
    decision_id      TEXT PRIMARY KEY,
    created_at       TEXT NOT NULL,
    prompt_hash      TEXT NOT NULL,
    prompt_preview   TEXT,                       -- NULL unless decision_log.prompt_preview_chars > 0
    requested_model  TEXT,                       -- what the client asked for ("auto" or a model id)
    domain           TEXT,
    action           TEXT,
    route_source     TEXT,                       -- arch_router | embedded | default | explicit
    route_confidence REAL,
    candidates       TEXT NOT NULL DEFAULT '[]', -- JSON [{model, p_success, cost, score}]
    selected_model   TEXT,
    selected_score   REAL,
    provider         TEXT,
    status           TEXT NOT NULL,              -- ok | error | cancelled
    http_status      INTEGER,
    error_kind       TEXT,
    input_tokens     INTEGER,
    output_tokens    INTEGER,
    cost_usd         REAL,
    latencies_ms     TEXT NOT NULL DEFAULT '{}', -- JSON {step: ms}
    total_latency_ms REAL,
    feedback_score   REAL
);
CREATE INDEX routing_decisions_newest ON routing_decisions (created_at, decision_id);
CREATE INDEX routing_decisions_domain ON routing_decisions (domain, created_at);
CREATE INDEX routing_decisions_model  ON routing_decisions (selected_model, created_at);

-- MIRT checkpoints: the weights live in a small versioned file; this row describes it.
CREATE TABLE mirt_checkpoints (
    version    INTEGER PRIMARY KEY,
    path       TEXT    NOT NULL,
    sha256     TEXT,
    dim        INTEGER NOT NULL,
    models     TEXT    NOT NULL DEFAULT '[]',  -- JSON array of model ids the checkpoint scores
    metrics    TEXT    NOT NULL DEFAULT '{}',  -- JSON evaluation metrics
    train_rows INTEGER NOT NULL DEFAULT 0,
    active     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TEXT    NOT NULL
);

-- Outcome feedback. No foreign key: the decision row may still sit in the writer's queue.
CREATE TABLE feedback (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    decision_id TEXT NOT NULL,
    score       REAL NOT NULL CHECK (score >= 0 AND score <= 1),
    comment     TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX feedback_decision ON feedback (decision_id, created_at);

-- Outcome data for MIRT training: (prompt, model, score) rows from uploads or feedback.
CREATE TABLE training_data (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset     TEXT NOT NULL,
    source      TEXT NOT NULL,                 -- upload | feedback
    prompt      TEXT NOT NULL,
    model       TEXT NOT NULL,
    score       REAL NOT NULL CHECK (score >= 0 AND score <= 1),
    split       TEXT,                          -- train | valid | test
    decision_id TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX training_data_dataset ON training_data (dataset, model);
