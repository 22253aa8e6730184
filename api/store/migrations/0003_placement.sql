-- Corral schema version 3: placement. Each host carries what is allocated on
-- it and a generation that every claim compares and bumps, so concurrent
-- schedulers (goroutines or corrald replicas) never over-allocate. Each
-- server keeps the exact resources it claimed, so deleting it frees them.

ALTER TABLE hosts ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN used_vcpus BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN used_ram_mib BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN used_disk_gib BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN used_hugepages BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN used_guests BIGINT NOT NULL DEFAULT 0;

ALTER TABLE servers ADD COLUMN claim TEXT NOT NULL DEFAULT '{}';
ALTER TABLE servers ADD COLUMN group_id TEXT NOT NULL DEFAULT '';
CREATE INDEX servers_group ON servers (group_id);

CREATE TABLE server_groups (
    id          TEXT PRIMARY KEY,
    revision    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    name        TEXT NOT NULL,
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE RESTRICT,
    role        TEXT NOT NULL,
    region_id   TEXT NOT NULL,
    spec        TEXT NOT NULL,
    UNIQUE (project_id, name)
);
