-- Cached prompt tokens per decision (priced on their own), and the Responses API's stored
-- responses (`store`, `previous_response_id`, `GET|DELETE /v1/responses/{id}`). A response keeps
-- its own turn's input items and its output items; a conversation is the chain of
-- `previous_id`s. JSON is kept as text (JSONB refuses the \u0000 a prompt may hold). Keep in
-- step with ../sqlite/.
ALTER TABLE routing_decisions ADD COLUMN cache_read_tokens BIGINT;
ALTER TABLE routing_decisions ADD COLUMN cache_write_tokens BIGINT;

CREATE TABLE stored_responses (
    id           TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    previous_id  TEXT,
    model        TEXT,
    decision_id  TEXT,
    input        TEXT NOT NULL,
    output       TEXT NOT NULL,
    response     TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX stored_responses_expires_at ON stored_responses (expires_at);
