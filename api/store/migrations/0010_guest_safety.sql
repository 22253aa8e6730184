-- Corral schema version 10: never lose a guest. An agent removes a guest only
-- when corrald recorded its deletion (a tombstone, or a server in state
-- deleting); a managed guest corrald does not know is reported (unknown
-- guests) and left running, for an admin to adopt or delete. A host keeps
-- the identity of the machine it registered from, so that an agent that
-- registers again from that machine gets its host record back.

ALTER TABLE hosts ADD COLUMN machine_id TEXT NOT NULL DEFAULT '';
CREATE INDEX hosts_machine ON hosts (machine_id);

-- One row per deleted guest of a host. generation is the server's revision
-- at its delete; confirmed_at is set when the host's agent reported the
-- guest gone. Confirmed rows are purged after a retention period.
CREATE TABLE guest_tombstones (
    host_id      TEXT NOT NULL,
    server_id    TEXT NOT NULL,
    generation   BIGINT NOT NULL,
    reason       TEXT NOT NULL,
    deleted_at   BIGINT NOT NULL,
    confirmed_at BIGINT,
    PRIMARY KEY (host_id, server_id)
);

-- The unknown guests each host's agent last reported: guest is the JSON
-- types.UnknownGuest (its metadata, resources and libvirt state).
CREATE TABLE unknown_guests (
    host_id    TEXT NOT NULL,
    server_id  TEXT NOT NULL,
    guest      TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    PRIMARY KEY (host_id, server_id)
);

-- Servers already being deleted get their tombstone: agents remove only
-- guests whose deletion is recorded.
INSERT INTO guest_tombstones (host_id, server_id, generation, reason, deleted_at, confirmed_at)
    SELECT host_id, id, revision, 'server_deleted', updated_at, NULL FROM servers
    WHERE state = 'deleting' AND host_id <> '' AND kind = 'vm';
