-- Corral schema version 4: audit entries are purged by age, so index it;
-- an idempotent replay answers with the first answer's headers too.

CREATE INDEX audit_log_at ON audit_log (at);

ALTER TABLE idempotency_keys ADD COLUMN headers TEXT NOT NULL DEFAULT '{}';
