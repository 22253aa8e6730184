-- Corral schema version 7: bare-metal nodes. A node row is also the
-- conductor's persisted state machine (state, step, deadline, attempt) and
-- its ownership (lease_owner until lease_expires), so a restarted or
-- another corrald replica resumes where the last one stopped. The BMC
-- password and the per-deploy agent token are sealed with corrald's BMC
-- key (AES-GCM); they are never returned by the API.

CREATE TABLE nodes (
    id               TEXT PRIMARY KEY,
    revision         BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    name             TEXT NOT NULL UNIQUE,
    region_id        TEXT NOT NULL REFERENCES regions (id) ON DELETE RESTRICT,
    zone_id          TEXT NOT NULL REFERENCES zones (id) ON DELETE RESTRICT,
    aggregate_id     TEXT NOT NULL,
    bmc_address      TEXT NOT NULL,
    bmc_port         INTEGER NOT NULL,
    bmc_username     TEXT NOT NULL,
    bmc_password     TEXT NOT NULL,
    macs             TEXT NOT NULL,
    provision_ip     TEXT NOT NULL,
    hardware         TEXT NOT NULL,
    state            TEXT NOT NULL,
    target           TEXT NOT NULL,
    step             TEXT NOT NULL,
    last_error       TEXT NOT NULL,
    power_state      TEXT NOT NULL,
    power_checked_at BIGINT NOT NULL,
    bmc_fault        TEXT NOT NULL,
    server_id        TEXT NOT NULL,
    image_id         TEXT NOT NULL,
    agent_token      TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    deadline         BIGINT NOT NULL,
    lease_owner      TEXT NOT NULL,
    lease_expires    BIGINT NOT NULL,
    state_changed_at BIGINT NOT NULL
);
CREATE INDEX nodes_state ON nodes (state);
CREATE INDEX nodes_server ON nodes (server_id);

-- A MAC belongs to one node: DHCP on the provisioning network answers by
-- MAC, and the iPXE script is chosen by it.
CREATE TABLE node_macs (
    mac     TEXT PRIMARY KEY,
    node_id TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE
);
CREATE INDEX node_macs_node ON node_macs (node_id);

-- Every transition and power change, with its actor and reason.
CREATE TABLE node_events (
    id         TEXT PRIMARY KEY,
    node_id    TEXT NOT NULL,
    at         BIGINT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    reason     TEXT NOT NULL,
    actor      TEXT NOT NULL
);
CREATE INDEX node_events_node ON node_events (node_id, id);
