-- Corral schema version 6: networking. Networks with a VLAN or VXLAN
-- segment, subnets, ports, static IPAM (one row per allocated address, the
-- primary key makes a double allocation impossible), security groups and
-- their rules, the hosts' tunnel endpoints, and a generation that every
-- networking write bumps so that agents' watches across corrald replicas
-- notice changes with one cheap read.

CREATE TABLE networks (
    id           TEXT PRIMARY KEY,
    revision     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    name         TEXT NOT NULL,
    project_id   TEXT NOT NULL,
    segment_type TEXT NOT NULL,
    segment_id   BIGINT NOT NULL,
    description  TEXT NOT NULL,
    UNIQUE (segment_type, segment_id)
);

CREATE TABLE subnets (
    id               TEXT PRIMARY KEY,
    revision         BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    name             TEXT NOT NULL,
    network_id       TEXT NOT NULL REFERENCES networks (id) ON DELETE CASCADE,
    cidr             TEXT NOT NULL,
    gateway_ip       TEXT NOT NULL,
    allocation_pools TEXT NOT NULL,
    dns_servers      TEXT NOT NULL,
    description      TEXT NOT NULL
);
CREATE INDEX subnets_network ON subnets (network_id);

CREATE TABLE ports (
    id          TEXT PRIMARY KEY,
    revision    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    name        TEXT NOT NULL,
    network_id  TEXT NOT NULL REFERENCES networks (id) ON DELETE RESTRICT,
    project_id  TEXT NOT NULL,
    mac_address TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    host_id     TEXT NOT NULL,
    description TEXT NOT NULL,
    UNIQUE (network_id, mac_address)
);
CREATE INDEX ports_host ON ports (host_id);
CREATE INDEX ports_device ON ports (device_id);
CREATE INDEX ports_project ON ports (project_id, id);

CREATE TABLE ip_allocations (
    subnet_id  TEXT NOT NULL REFERENCES subnets (id) ON DELETE RESTRICT,
    ip_address TEXT NOT NULL,
    port_id    TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    PRIMARY KEY (subnet_id, ip_address)
);
CREATE INDEX ip_allocations_port ON ip_allocations (port_id);

CREATE TABLE security_groups (
    id          TEXT PRIMARY KEY,
    revision    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    name        TEXT NOT NULL,
    project_id  TEXT NOT NULL,
    description TEXT NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE security_group_rules (
    id              TEXT PRIMARY KEY,
    group_id        TEXT NOT NULL REFERENCES security_groups (id) ON DELETE CASCADE,
    created_at      BIGINT NOT NULL,
    direction       TEXT NOT NULL,
    protocol        TEXT NOT NULL,
    port_range_min  BIGINT NOT NULL,
    port_range_max  BIGINT NOT NULL,
    remote_cidr     TEXT NOT NULL,
    remote_group_id TEXT NOT NULL
);
CREATE INDEX security_group_rules_group ON security_group_rules (group_id);
CREATE INDEX security_group_rules_remote ON security_group_rules (remote_group_id);

CREATE TABLE port_security_groups (
    port_id  TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    group_id TEXT NOT NULL REFERENCES security_groups (id) ON DELETE RESTRICT,
    PRIMARY KEY (port_id, group_id)
);
CREATE INDEX port_security_groups_group ON port_security_groups (group_id);

CREATE TABLE host_tunnel_endpoints (
    host_id    TEXT PRIMARY KEY REFERENCES hosts (id) ON DELETE CASCADE,
    ip         TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE network_generation (
    id         INTEGER PRIMARY KEY,
    generation BIGINT NOT NULL
);
INSERT INTO network_generation (id, generation) VALUES (1, 0);
