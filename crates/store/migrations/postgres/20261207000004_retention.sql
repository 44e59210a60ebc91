-- Retention (`retention:` in the config): old feedback is pruned by age, a batch at a time.
-- Decisions already have an index on created_at (routing_decisions_newest). Keep in step with
-- the other dialect's folder.
CREATE INDEX feedback_created ON feedback (created_at);
