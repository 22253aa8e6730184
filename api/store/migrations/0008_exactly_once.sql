-- Corral schema version 8: exactly-once requests and a failsafe that holds
-- across replicas.
--
-- Refused calls are aggregated in the audit log: one row can stand for
-- several calls of the same caller, route and status.
ALTER TABLE audit_log ADD COLUMN count INTEGER NOT NULL DEFAULT 1;

-- The memory failsafe is checked in the claim's compare-and-swap: the
-- measured free memory of the last heartbeat and the host's allocation when
-- that heartbeat was recorded. Claims since then are used_ram_mib minus
-- hb_used_ram_mib, whichever replica made them.
ALTER TABLE hosts ADD COLUMN hb_free_ram_mib BIGINT;
ALTER TABLE hosts ADD COLUMN hb_used_ram_mib BIGINT NOT NULL DEFAULT 0;
