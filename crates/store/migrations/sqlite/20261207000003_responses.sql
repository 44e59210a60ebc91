-- Cached prompt tokens per decision (priced on their own), and the Responses API's stored
-- responses (`store`, `previous_response_id`, `GET|DELETE /v1/responses/{id}`). A response keeps
-- its own turn's input items and its output items; a conversation is the chain of
-- `previous_id`s. JSON is kept as text. Keep in step with ../postgres/.
ALTER TABLE routing_decisions ADD COLUMN cache_read_tokens INTEGER;
ALTER TABLE routing_decisions ADD COLUMN cache_write_tokens INTEGER;

CREATE TABLE stored_responses (
    id           TEXT PRIMARY KEY,
    -- The client key that made it (a hash of the key, never the key), or 'anonymous'.
    owner        TEXT NOT NULL,
    previous_id  TEXT,
    model        TEXT,
    decision_id  TEXT,
    input        TEXT NOT NULL,
    output       TEXT NOT NULL,
    response     TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
CREATE INDEX stored_responses_expires_at ON stored_responses (expires_at);
