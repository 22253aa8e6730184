-- Corral schema version 2: the audit log, idempotency keys, and the
-- server columns that observed state needs (fault, launch time).

CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    token_id    TEXT NOT NULL,
    role        TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    status      INTEGER NOT NULL,
    resource_id TEXT NOT NULL,
    request_id  TEXT NOT NULL
);

-- One row per (principal, key). status 0 means the first request is still
-- running; otherwise status, content_type and body are its response.
CREATE TABLE idempotency_keys (
    principal    TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (principal, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

ALTER TABLE servers ADD COLUMN fault TEXT NOT NULL DEFAULT '';
ALTER TABLE servers ADD COLUMN launched_at BIGINT;
