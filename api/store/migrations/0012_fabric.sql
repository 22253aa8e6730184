-- Corral schema version 12 (issue 11, fabric): provider networks and
-- allowed address pairs.
--
-- networks.physnet binds a "vlan" or "flat" network to a physical network
-- name that each host's agent maps to an uplink. A flat network carries
-- no VLAN ID: its segment_id is an internal discriminator (1, 2, …) kept
-- only so that UNIQUE (segment_type, segment_id) holds, and the API shows
-- 0; at most one flat network per physical network.
--
-- ports.allowed_address_pairs is a JSON list of {"ip_address": CIDR,
-- "mac_address": MAC or ""}: other sources the port may send from.

ALTER TABLE networks ADD COLUMN physnet TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX networks_flat_physnet ON networks (physnet) WHERE segment_type = 'flat';
ALTER TABLE ports ADD COLUMN allowed_address_pairs TEXT NOT NULL DEFAULT '[]';
