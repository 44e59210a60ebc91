-- Whether exploration (`mirt.exploration`) chose the decision's model rather than the objective.
-- Keep in step with ../postgres/.
ALTER TABLE routing_decisions ADD COLUMN explore BOOLEAN NOT NULL DEFAULT 0;
