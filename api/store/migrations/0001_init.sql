-- Corral schema version 1: the catalogue, hosts, servers and tokens.
-- Portable SQL: it runs unchanged on SQLite and PostgreSQL. Times are unix
-- microseconds (BIGINT), booleans are INTEGER 0/1, lists and maps are JSON
-- text.

CREATE TABLE regions (
    id          TEXT PRIMARY KEY,
    revision    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL
);

CREATE TABLE zones (
    id          TEXT PRIMARY KEY,
    revision    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    name        TEXT NOT NULL,
    region_id   TEXT NOT NULL REFERENCES regions (id) ON DELETE RESTRICT,
    description TEXT NOT NULL,
    UNIQUE (region_id, name)
);

CREATE TABLE aggregates (
    id                   TEXT PRIMARY KEY,
    revision             BIGINT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    name                 TEXT NOT NULL UNIQUE,
    traits               TEXT NOT NULL,
    cpu_allocation_ratio DOUBLE PRECISION NOT NULL,
    ram_allocation_ratio DOUBLE PRECISION NOT NULL,
    reserved_memory_mib  BIGINT NOT NULL,
    reserved_cpus        BIGINT NOT NULL,
    weigher              TEXT NOT NULL,
    description          TEXT NOT NULL
);

CREATE TABLE hosts (
    id             TEXT PRIMARY KEY,
    revision       BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    name           TEXT NOT NULL UNIQUE,
    region_id      TEXT NOT NULL REFERENCES regions (id) ON DELETE RESTRICT,
    zone_id        TEXT NOT NULL REFERENCES zones (id) ON DELETE RESTRICT,
    state          TEXT NOT NULL,
    inventory      TEXT NOT NULL,
    capabilities   TEXT NOT NULL,
    usage          TEXT NOT NULL,
    last_heartbeat BIGINT NOT NULL,
    agent_version  TEXT NOT NULL
);
CREATE INDEX hosts_zone ON hosts (zone_id);
CREATE INDEX hosts_region ON hosts (region_id);

CREATE TABLE host_aggregates (
    host_id      TEXT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    aggregate_id TEXT NOT NULL REFERENCES aggregates (id) ON DELETE RESTRICT,
    PRIMARY KEY (host_id, aggregate_id)
);
CREATE INDEX host_aggregates_aggregate ON host_aggregates (aggregate_id);

CREATE TABLE flavors (
    id             TEXT PRIMARY KEY,
    revision       BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    name           TEXT NOT NULL UNIQUE,
    kind           TEXT NOT NULL,
    vcpus          BIGINT NOT NULL,
    ram_mib        BIGINT NOT NULL,
    disk_gib       BIGINT NOT NULL,
    hugepages      INTEGER NOT NULL,
    net_in_kbps    BIGINT NOT NULL,
    net_out_kbps   BIGINT NOT NULL,
    disk_iops      BIGINT NOT NULL,
    disk_bytes_sec BIGINT NOT NULL,
    description    TEXT NOT NULL
);

CREATE TABLE images (
    id           TEXT PRIMARY KEY,
    revision     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    name         TEXT NOT NULL,
    disk_format  TEXT NOT NULL,
    status       TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    min_disk_gib BIGINT NOT NULL,
    description  TEXT NOT NULL
);

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    revision    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL
);

CREATE TABLE servers (
    id            TEXT PRIMARY KEY,
    revision      BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    project_id    TEXT NOT NULL REFERENCES projects (id) ON DELETE RESTRICT,
    flavor_id     TEXT NOT NULL REFERENCES flavors (id) ON DELETE RESTRICT,
    image_id      TEXT NOT NULL REFERENCES images (id) ON DELETE RESTRICT,
    region_id     TEXT NOT NULL,
    zone_id       TEXT NOT NULL,
    aggregate_id  TEXT NOT NULL,
    desired_state TEXT NOT NULL,
    state         TEXT NOT NULL,
    host_id       TEXT NOT NULL,
    node_id       TEXT NOT NULL,
    addresses     TEXT NOT NULL
);
CREATE INDEX servers_project ON servers (project_id, id);
CREATE INDEX servers_flavor ON servers (flavor_id);
CREATE INDEX servers_image ON servers (image_id);
CREATE INDEX servers_host ON servers (host_id);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    project_id  TEXT NOT NULL,
    host_id     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT
);
CREATE INDEX tokens_expires ON tokens (expires_at);
