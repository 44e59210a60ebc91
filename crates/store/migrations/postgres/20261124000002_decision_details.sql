-- Routing details of a decision (policy, reasoning, every attempt of the fallback chain) and
-- the prompt's MIRT features (encoder id, embedding, built-in features) so logged outcomes can
-- be trained on without storing the prompt. Keep in step with ../sqlite/.
ALTER TABLE routing_decisions ADD COLUMN details JSONB NOT NULL DEFAULT '{}';
ALTER TABLE routing_decisions ADD COLUMN features JSONB;
