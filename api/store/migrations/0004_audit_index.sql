-- Corral schema version 4: audit entries are purged by age, so index it.

CREATE INDEX audit_log_at ON audit_log (at);
