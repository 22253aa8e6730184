-- Corral schema version 12: guest bootstrap. SSH keypairs owned by a
-- project (the public half only); a server's bootstrap (its keypairs' names
-- and public keys as they were at create, and its user data) as JSON; and
-- a subnet's host routes (DHCP option 121, network-config routes) as JSON.

CREATE TABLE keypairs (
    id          TEXT PRIMARY KEY,
    revision    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    name        TEXT NOT NULL,
    project_id  TEXT NOT NULL,
    key_type    TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    UNIQUE (project_id, name)
);

ALTER TABLE servers ADD COLUMN bootstrap TEXT NOT NULL DEFAULT '';
ALTER TABLE subnets ADD COLUMN host_routes TEXT NOT NULL DEFAULT '[]';
